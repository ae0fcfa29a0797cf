"""A made-up NFS server for the nfs SR tests, where none runs: `mount`,
`umount` and `showmount` programs (written to a temporary directory, their
state beside it) that xenapid runs through its config (nfs_mount, nfs_umount,
nfs_showmount = <path>) with its clean environment, so everything they need
is written into the scripts themselves.

The server's exports are local directories: `mount -t nfs -o OPTS
server:/path AT` of a path within an export bind-mounts <root>/path on AT (as
the kernel's NFS client would show the export there), after the checks and
with the messages and exit statuses (32) of mount.nfs: an unknown server, a
path outside the exports, a directory that is not there. So it needs root,
as the daemon's nfs driver does. Every call is recorded (calls())."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

COMMON = r'''#!%(python)s
import json, os, subprocess, sys
STATE = %(state)r
ROOT = %(root)r
SERVERS = %(servers)r
EXPORTS = %(exports)r

def record():
    with open(os.path.join(STATE, "calls.jsonl"), "a") as f:
        f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\n")

def mounts():
    try:
        with open(os.path.join(STATE, "mounts.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return []

def save(m):
    with open(os.path.join(STATE, "mounts.json"), "w") as f:
        json.dump(m, f)

def fail(msg, status=32):
    sys.stderr.write(msg + "\n")
    sys.exit(status)

record()
'''

MOUNT = r'''
a = sys.argv[1:]
if len(a) != 6 or a[0] != "-t" or a[1] != "nfs" or a[2] != "-o":
    fail("mount: bad usage", 1)
src, at = a[4], a[5]
server, _, path = src.partition(":")
if server not in SERVERS:
    fail("mount.nfs: Failed to resolve server %%s: Name or service not known" %% server)
path = os.path.normpath(path or "/")
if not any(path == x or path.startswith(x.rstrip("/") + "/") for x in EXPORTS):
    fail("mount.nfs: access denied by server while mounting %%s" %% src)
local = ROOT + path
if not os.path.isdir(local):
    fail("mount.nfs: mounting %%s failed, reason given by server: No such file or directory" %% src)
if not os.path.isdir(at):
    fail("mount.nfs: mount point %%s does not exist" %% at)
p = subprocess.run(["/usr/bin/mount", "--bind", local, at], capture_output=True, text=True)
if p.returncode != 0:
    fail("mount.nfs: " + p.stderr.strip())
save(mounts() + [os.path.realpath(at)])
'''

UMOUNT = r'''
a = sys.argv[1:]
p = subprocess.run(["/usr/bin/umount"] + a, capture_output=True, text=True)
if p.returncode != 0:
    fail(p.stderr.strip(), p.returncode)
save([m for m in mounts() if m != os.path.realpath(a[-1])])
'''

SHOWMOUNT = r'''
a = sys.argv[1:]
server = a[-1]
if server not in SERVERS:
    fail("clnt_create: RPC: Unknown host", 1)
for x in EXPORTS:
    print("%%s *" %% x)
'''


def can_bind_mount():
    """Root, and a bind mount works here (not in a container without CAP_SYS_ADMIN)."""
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/mount"):
        return False
    d = tempfile.mkdtemp(prefix="xenapid-can-mount-")
    try:
        if subprocess.run(["/usr/bin/mount", "--bind", d, d], capture_output=True).returncode != 0:
            return False
        subprocess.run(["/usr/bin/umount", d], capture_output=True)
        return True
    finally:
        os.rmdir(d)


class FakeNFS:
    """An NFS server at servers (127.0.0.1 by default) exporting the given paths, each a directory made
    under root."""

    def __init__(self, exports, servers=("127.0.0.1", "localhost")):
        self.dir = tempfile.mkdtemp(prefix="xenapid-fake-nfs-")
        self.root = os.path.join(self.dir, "root")
        self.state = os.path.join(self.dir, "state")
        self.bin = os.path.join(self.dir, "bin")
        for d in (self.root, self.state, self.bin):
            os.mkdir(d)
        self.exports = list(exports)
        for x in self.exports:
            os.makedirs(self.root + x)
        values = {"python": sys.executable, "state": self.state, "root": self.root, "servers": list(servers),
                  "exports": self.exports}
        for name, body in (("mount", MOUNT), ("umount", UMOUNT), ("showmount", SHOWMOUNT)):
            path = os.path.join(self.bin, name)
            with open(path, "w") as f:
                f.write((COMMON + body) % values)
            os.chmod(path, 0o755)

    def config(self):
        return "".join("nfs_%s = %s\n" % (n, os.path.join(self.bin, n)) for n in ("mount", "umount", "showmount"))

    def path(self, export_path):
        """The local directory behind server:export_path."""
        return self.root + export_path

    def calls(self):
        try:
            with open(os.path.join(self.state, "calls.jsonl")) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def mounts(self):
        try:
            with open(os.path.join(self.state, "mounts.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return []

    def close(self):
        """Unmounts what is still mounted (an SR left plugged), then removes everything."""
        for m in reversed(self.mounts()):
            subprocess.run(["/usr/bin/umount", "-l", m], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
