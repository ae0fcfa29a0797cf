"""A made-up iSCSI target for the iscsi SR tests: an `iscsiadm` program (written
to a temporary directory, its state beside it) that answers as open-iscsi's does
(messages and exit statuses of iscsiadm 2.1, tests/golden/iscsi), and a sysfs
tree under which a login makes a session to the target with its LUNs, each LUN a
real loop device when the tests run as root (so that the daemon reads and
attaches its bytes), as the kernel would. xenapid runs it through its config
(iscsiadm = <path>, iscsi_sysfs_root = <dir>) with its clean environment, so
everything the fake needs is written into the script itself.

A TCP listener stands for the target's port (xenapid checks it takes a
connection before running iscsiadm, as sm does)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

SCRIPT = r'''#!%(python)s
import json, os, shutil, sys
STATE = %(state)r
SYSFS = %(sysfs)r

def load():
    with open(os.path.join(STATE, "target.json")) as f:
        return json.load(f)

def save_nodes(nodes):
    with open(os.path.join(STATE, "nodes.json"), "w") as f:
        json.dump(nodes, f)

def nodes():
    try:
        with open(os.path.join(STATE, "nodes.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}

def arg(flag, default=None):
    a = sys.argv[1:]
    return a[a.index(flag) + 1] if flag in a else default

def session_dir(iqn):
    base = os.path.join(SYSFS, "class", "iscsi_session")
    for s in (os.listdir(base) if os.path.isdir(base) else []):
        with open(os.path.join(base, s, "targetname")) as f:
            if f.read().strip() == iqn:
                return os.path.join(base, s)
    return None

def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)

def login(t, iqn, portal, rec):
    if t.get("chap") and (rec.get("node.session.auth.authmethod") != "CHAP"
                          or rec.get("node.session.auth.username") != t["chap"][0]
                          or rec.get("node.session.auth.password") != t["chap"][1]):
        sys.stderr.write("iscsiadm: Could not login to [iface: default, target: %%s, portal: %%s].\n"
                         "iscsiadm: initiator reported error (24 - iSCSI login failed due to authorization failure)\n"
                         "iscsiadm: Could not log into all portals\n" %% (iqn, portal.replace(":", ",")))
        return 24
    if session_dir(iqn):
        sys.stderr.write("iscsiadm: default: 1 session requested, but 1 already present.\n"
                         "iscsiadm: Could not log into all portals\n")
        return 15
    sid = 1
    while os.path.exists(os.path.join(SYSFS, "class", "iscsi_session", "session%%d" %% sid)):
        sid += 1
    s = os.path.join(SYSFS, "class", "iscsi_session", "session%%d" %% sid)
    write(os.path.join(s, "targetname"), iqn + "\n")
    host = 10 + sid
    write(os.path.join(s, "device", "target%%d:0:0" %% host, "%%d:0:0:0" %% host, "vendor"), "IET     \n")
    for lun in t["targets"].get(iqn, []):
        d = os.path.join(s, "device", "target%%d:0:0" %% host, "%%d:0:0:%%d" %% (host, lun["lun"]))
        write(os.path.join(d, "vendor"), "IET     \n")
        write(os.path.join(d, "wwid"), "naa." + lun["scsi_id"][1:] + "\n")
        write(os.path.join(d, "block", lun["dev"], "size"), "%%d\n" %% (lun["size"] // 512))
    print("Logging in to [iface: default, target: %%s, portal: %%s]" %% (iqn, portal.replace(":", ",")))
    print("Login to [iface: default, target: %%s, portal: %%s] successful." %% (iqn, portal.replace(":", ",")))
    return 0

def main():
    with open(os.path.join(STATE, "calls"), "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\n")
    t = load()
    mode, portal, iqn = arg("-m"), arg("-p"), arg("-T")
    if t.get("no_transport"):
        sys.stderr.write(open(os.path.join(STATE, "no_transport.err")).read())
        return 12
    if mode in ("discovery", "discoverydb"):
        if mode == "discoverydb" and "--discover" not in sys.argv:
            return 0
        for name in sorted(t["targets"]):
            print("%%s,1 %%s" %% (portal, name))
        return 0
    if mode != "node" or not iqn:
        sys.stderr.write("iscsiadm: unexpected arguments\n")
        return 7
    ns = nodes()
    key = "%%s %%s" %% (iqn, portal)
    op = arg("-o")
    if op == "new":
        if iqn not in t["targets"]:
            ns[key] = {}
        else:
            ns.setdefault(key, {})
        save_nodes(ns)
        print("New iSCSI node [tcp:[hw=,ip=,net_if=,iscsi_if=default] %%s,-1 %%s] added" %% (portal.replace(":", ","), iqn))
        return 0
    if key not in ns:
        sys.stderr.write("iscsiadm: No records found\n")
        return 21
    if op == "update":
        ns[key][arg("-n")] = arg("-v")
        save_nodes(ns)
        return 0
    if "--login" in sys.argv:
        if iqn not in t["targets"]:
            sys.stderr.write("iscsiadm: Could not login to [iface: default, target: %%s, portal: %%s].\n"
                             "iscsiadm: initiator reported error (19 - encountered non-retryable iSCSI login failure)\n"
                             "iscsiadm: Could not log into all portals\n" %% (iqn, portal.replace(":", ",")))
            return 19
        return login(t, iqn, portal, ns[key])
    if "--logout" in sys.argv:
        s = session_dir(iqn)
        if not s:
            sys.stderr.write("iscsiadm: No matching sessions found\n")
            return 21
        shutil.rmtree(s)
        print("Logging out of session [sid: 1, target: %%s, portal: %%s]" %% (iqn, portal.replace(":", ",")))
        print("Logout of [sid: 1, target: %%s, portal: %%s] successful." %% (iqn, portal.replace(":", ",")))
        return 0
    if "--rescan" in sys.argv:
        return 0
    return 7

sys.exit(main())
'''

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden", "iscsi")


def can_loop():
    return os.geteuid() == 0 and shutil.which("losetup") is not None and os.path.exists("/dev/loop-control")


class FakeTarget:
    """targets: {iqn: [{"lun": n, "size": bytes, "data": bytes written at its start}]}; chap: (user, password)."""

    def __init__(self, targets, chap=None):
        self.tmp = tempfile.mkdtemp(prefix="xenapid-iscsi-")
        self.state = os.path.join(self.tmp, "state")
        self.sysfs = os.path.join(self.tmp, "sys")
        os.makedirs(self.state)
        os.makedirs(self.sysfs)
        self.iscsiadm = os.path.join(self.tmp, "iscsiadm")
        with open(self.iscsiadm, "w") as f:
            f.write(SCRIPT % {"python": sys.executable, "state": self.state, "sysfs": self.sysfs})
        os.chmod(self.iscsiadm, 0o755)
        shutil.copy(os.path.join(GOLDEN, "discovery_no_transport.err"), os.path.join(self.state, "no_transport.err"))
        self.loops = []
        self.target = {"targets": {}, "chap": list(chap) if chap else None}
        for iqn, luns in targets.items():
            self.target["targets"][iqn] = []
            for i, lun in enumerate(luns):
                img = os.path.join(self.tmp, "lun-%d-%d.img" % (len(self.loops), lun["lun"]))
                with open(img, "wb") as f:
                    f.truncate(lun["size"])
                    f.write(lun.get("data", b""))
                p = subprocess.run(["losetup", "-f", "--show", img], capture_output=True, text=True, timeout=30)
                if p.returncode != 0:
                    raise RuntimeError("losetup: " + p.stderr)
                dev = p.stdout.strip()
                self.loops.append(dev)
                scsi_id = "36%031x" % (0xe00000000010000 + 0x10000 * len(self.target["targets"]) + lun["lun"])
                self.target["targets"][iqn].append({"lun": lun["lun"], "size": lun["size"],
                                                    "dev": os.path.basename(dev), "scsi_id": scsi_id})
        self.save()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]

    def save(self):
        with open(os.path.join(self.state, "target.json"), "w") as f:
            json.dump(self.target, f)

    def config(self):
        return "iscsiadm = %s\niscsi_sysfs_root = %s\nstorage_io_timeout = 20\n" % (self.iscsiadm, self.sysfs)

    def calls(self):
        try:
            with open(os.path.join(self.state, "calls")) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def sessions(self):
        base = os.path.join(self.sysfs, "class", "iscsi_session")
        return sorted(os.listdir(base)) if os.path.isdir(base) else []

    def luns(self, iqn):
        return self.target["targets"][iqn]

    def close(self):
        self.listener.close()
        for dev in self.loops:
            subprocess.run(["losetup", "-d", dev], capture_output=True, timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)
