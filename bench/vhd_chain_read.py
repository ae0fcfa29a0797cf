#!/usr/bin/env python3
"""The VHD chain datapath off-lab (issue 11, benchmark 3's server side): a
sequential read of a 256 MiB disk through nbdkit, from a raw file (nbdkit's own
file plugin: the baseline) and through xenapid's plugin (nbdkit/xenapid_vhd.c)
from a dynamic VHD holding the same bytes (depth 1) and from a chain of depth 3
over it, as the e2e step vhd-chain-read-bench builds it (the data in the base,
one 4 KiB write in each of the two levels above).

The reader is `qemu-img bench` over a Unix socket: REQ-byte requests, QD of
them in flight on one connection (the kernel's NBD client sends at most 128
KiB per request unless told otherwise, several in flight). Every server is
started anew for each run (nothing cached in it), the page cache holds the
images (as dom0's tmpfs does in the lab). The configurations take turns in each
round, the order reversed every other round; medians of ROUNDS. Printed: the
read's wall time and MiB/s, the server's CPU seconds (user + system, from
wait4: a figure busy neighbours disturb far less than the wall time), and both
as ratios to the raw baseline of the same run.

Usage: nice bench/vhd_chain_read.py [ROUNDS]   (default 5)
Environment: BENCH_MIB (256), BENCH_REQ (request bytes, 131072), BENCH_QD (8),
BENCH_DIR (default /dev/shm, else /tmp), BENCH_PLUGIN_OLD (a second build of the
plugin to compare, e.g. one from before a change), BENCH_NBDKIT_ARGS (extra
nbdkit options for xenapid's plugin, e.g. "-t 1").
Needs a built tree (XENAPID_BUILD_DIR or ./build), nbdkit and qemu-img."""

import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("XENAPID_BUILD_DIR", os.path.join(ROOT, "build"))
VHD_UTIL = os.path.join(BUILD, "vhd-util")
PLUGIN = os.path.join(BUILD, "nbdkit-xenapid-vhd-plugin.so")
MiB = 1 << 20
SIZE = int(os.environ.get("BENCH_MIB", "256")) * MiB
REQ = int(os.environ.get("BENCH_REQ", str(128 * 1024)))
QD = int(os.environ.get("BENCH_QD", "8"))
EXTRA = shlex.split(os.environ.get("BENCH_NBDKIT_ARGS", ""))


def run(*cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit("%s: %s" % (" ".join(map(str, cmd)), p.stderr.strip()))
    return p.stdout


def through_plugin(image, script):
    """A shell command with $uri, run against the plugin serving image (to write it)."""
    run("nbdkit", "-U", "-", PLUGIN, "file=" + image, "--run", script)


def make_images(d):
    raw = os.path.join(d, "data.raw")
    blk = bytes((2 + i) & 0xFF or 1 for i in range(MiB))  # the e2e step's bytes (steps_vhd_chain._chunks)
    with open(raw, "wb") as f:
        for _ in range(SIZE // MiB):
            f.write(blk)
    base, mid, leaf = (os.path.join(d, n) for n in ("base.vhd", "mid.vhd", "leaf.vhd"))
    run(VHD_UTIL, "create", "-n", base, "-s", SIZE // MiB)
    through_plugin(base, 'qemu-img convert -n -f raw -O raw %s "$uri"' % shlex.quote(raw))
    for parent, child, byte in ((base, mid, 7), (mid, leaf, 8)):
        run(VHD_UTIL, "snapshot", "-n", child, "-p", parent)
        run(VHD_UTIL, "set", "-n", parent, "-f", "hidden", "-v", "1")
        through_plugin(child, 'qemu-io -f raw -c "write -P %d 0 4096" "$uri"' % byte)
    return raw, base, leaf


def wait_ready(pidfile, proc):
    """nbdkit writes its pidfile once it listens."""
    for _ in range(1500):
        if proc.poll() is not None:
            sys.exit("nbdkit exited (%d)" % proc.returncode)
        if os.path.exists(pidfile):
            return
        time.sleep(0.02)
    sys.exit("nbdkit did not start (no %s)" % pidfile)


def one(d, server):
    """(wall seconds of the read, server CPU seconds, server context switches)."""
    sock, pidfile = os.path.join(d, "s.sock"), os.path.join(d, "s.pid")
    for f in (sock, pidfile):
        if os.path.exists(f):
            os.unlink(f)
    p = subprocess.Popen(["nbdkit", "-f", "-U", sock, "-P", pidfile] + server, stdout=subprocess.DEVNULL)
    try:
        wait_ready(pidfile, p)
        t0 = time.monotonic()
        run("qemu-img", "bench", "-f", "raw", "-c", SIZE // REQ, "-d", QD, "-s", REQ,
            "nbd+unix:///?socket=" + sock)
        wall = time.monotonic() - t0
    finally:
        p.send_signal(signal.SIGTERM)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = status
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_nvcsw + ru.ru_nivcsw


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for tool in ("nbdkit", "qemu-img", "qemu-io"):
        if not shutil.which(tool):
            sys.exit("%s needed" % tool)
    if not os.path.exists(PLUGIN):
        sys.exit("no plugin at %s (nbdkit-plugin-dev missing?)" % PLUGIN)
    where = os.environ.get("BENCH_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
    d = tempfile.mkdtemp(prefix="vhd-chain-read-", dir=where)
    try:
        raw, base, leaf = make_images(d)
        configs = [("raw file (nbdkit file plugin)", ["file", "file=" + raw]),
                   ("VHD depth 1", EXTRA + [PLUGIN, "file=" + base, "readonly=true"]),
                   ("VHD chain depth 3", EXTRA + [PLUGIN, "file=" + leaf, "readonly=true"])]
        old = os.environ.get("BENCH_PLUGIN_OLD")
        if old:
            configs.append(("VHD chain depth 3, BENCH_PLUGIN_OLD", [old, "file=" + leaf, "readonly=true"]))
        res = {name: [] for name, _ in configs}
        print("== %d MiB sequential read, %d-byte requests, %d in flight, %d rounds (in %s)"
              % (SIZE // MiB, REQ, QD, rounds, d))
        for r in range(rounds):
            order = configs if r % 2 == 0 else configs[::-1]
            for name, server in order:
                wall, cpu, cs = one(d, server)
                res[name].append((wall, cpu, cs))
                print("  round %d  %-38s %7.3f s  %7.1f MiB/s  server CPU %6.3f s  %6d context switches"
                      % (r + 1, name, wall, SIZE / MiB / wall, cpu, cs), flush=True)
        med = {name: [statistics.median(x[i] for x in res[name]) for i in range(3)] for name, _ in configs}
        bw, bc, _ = med[configs[0][0]]
        print("== medians of %d rounds (ratios: to the raw file baseline of this run)" % rounds)
        print("  %-38s %8s %8s %11s %9s %7s %7s" % ("", "wall s", "MiB/s", "server CPU", "ctx sw", "wall x", "CPU x"))
        for name, _ in configs:
            w, c, cs = med[name]
            print("  %-38s %8.3f %8.1f %11.3f %9d %7.2f %7.2f"
                  % (name, w, SIZE / MiB / w, c, cs, w / bw, c / bc if bc else 0))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
