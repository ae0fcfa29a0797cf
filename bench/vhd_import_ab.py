#!/usr/bin/env python3
"""Import of a 1 GiB image (half zeros, as bench/vdi_transfer.py makes it: random
bytes and zeros alternating in runs of 4 MiB, so 256 of the 512 VHD blocks hold
data) into a VHD VDI of an "ext" SR, as raw and as VHD, by two builds of
xenapid in the same run: A/B of a change to the VHD write path (issue 11,
"fewer writes per VHD block").

Both daemons run side by side on the same disk; each round imports with A
then B (B then A every other round: this machine's speed drifts), each
import into a fresh VDI after an os.sync(), timed as curl's wall time (the
import answers once its data is durable). Medians of ROUNDS.

Then, once per build and format, the daemon's write-side syscalls during one
import, counted by `strace -c -f -p` (strace slows the import down: only its
counts are printed), divided by the 256 blocks written.

Usage: nice bench/vhd_import_ab.py OLD_BUILD_DIR NEW_BUILD_DIR [ROUNDS]  (default 5)
BENCH_DIR chooses the directory (default /tmp) for the SRs and sources."""

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from harness import Daemon  # noqa: E402
from vdi_transfer import GiB, RUN, get, ok, put, write_source  # noqa: E402

BLOCKS_WRITTEN = GiB // RUN // 2 * (RUN // (2 << 20))  # VHD blocks (2 MiB) that hold data
COUNTED = ("pwrite64", "pwritev", "pwritev2", "pread64", "preadv", "ftruncate", "fallocate", "fdatasync", "fsync")


class BuildDaemon(Daemon):
    def __init__(self, binary, **kw):
        self.binary = binary
        super().__init__(**kw)

    def command(self):
        return [self.binary] + super().command()[1:]


def cpu_seconds(pid):
    """user + system CPU time of the process and its threads so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def strace_counts(path):
    """{syscall: calls} from an `strace -c` summary."""
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in COUNTED and parts[3].isdigit():
                counts[parts[-1]] = int(parts[3])
    return counts


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    builds = {"A": sys.argv[1], "B": sys.argv[2]}
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    base = tempfile.mkdtemp(prefix="bench-vhd-import-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    src = {"raw": os.path.join(base, "src.raw"), "vhd": os.path.join(base, "src.vhd")}
    daemons, api = {}, {}
    try:
        for k, b in builds.items():
            daemons[k] = BuildDaemon(os.path.join(b, "xenapid"), extra_config="sr_mount_root = %s\nlog_level = notice\n"
                                     % os.path.join(base, "sr-mount-" + k)).start()
            x, s = daemons[k].login()
            host = ok(x.host.get_all(s))[0]
            sr = ok(x.SR.create(s, host, {}, "0", "bench ext", "", "ext", "user", False, {}))
            api[k] = (x, s, sr)

        def new_vdi(k):
            x, s, sr = api[k]
            return ok(x.VDI.create(s, {"SR": sr, "virtual_size": str(GiB), "type": "user", "sharable": False,
                                       "read_only": False, "other_config": {}, "name_label": "bench"}))

        def url(k, path, vdi, fmt):
            return "http://127.0.0.1:%d/%s?%s" % (daemons[k].port, path, urllib.parse.urlencode(
                {"session_id": api[k][1], "vdi": vdi, "format": fmt}))

        def import_once(k, fmt):
            v = new_vdi(k)
            os.sync()
            c = cpu_seconds(daemons[k].proc.pid)
            t = put(src[fmt], url(k, "import_raw_vdi", v, fmt))
            cpu.setdefault((k, fmt), []).append(cpu_seconds(daemons[k].proc.pid) - c)
            return v, t

        cpu = {}

        write_source(src["raw"])
        v, _ = import_once("A", "raw")
        get(url("A", "export_raw_vdi", v, "vhd"), src["vhd"])
        ok(api["A"][0].VDI.destroy(api["A"][1], v))
        # both builds must store the same disk from either source
        for k in builds:
            for fmt in ("raw", "vhd"):
                v, _ = import_once(k, fmt)
                out = os.path.join(base, "out")
                get(url(k, "export_raw_vdi", v, "raw"), out)
                assert subprocess.run(["cmp", "-s", out, src["raw"]]).returncode == 0, (k, fmt)
                os.unlink(out)
                ok(api[k][0].VDI.destroy(api[k][1], v))

        times = {}
        cpu.clear()
        for r in range(rounds):
            for k in (("A", "B") if r % 2 == 0 else ("B", "A")):
                for fmt in ("raw", "vhd"):
                    v, t = import_once(k, fmt)
                    times.setdefault((k, fmt), []).append(t)
                    ok(api[k][0].VDI.destroy(api[k][1], v))

        counts = {}
        for k in builds:
            for fmt in ("raw", "vhd"):
                v = new_vdi(k)
                os.sync()
                log = os.path.join(base, "strace-%s-%s" % (k, fmt))
                st = subprocess.Popen(["strace", "-c", "-f", "-o", log, "-e", "trace=" + ",".join(COUNTED),
                                       "-p", str(daemons[k].proc.pid)], stderr=subprocess.DEVNULL)
                time.sleep(1)  # attached to every thread
                put(src[fmt], url(k, "import_raw_vdi", v, fmt))
                st.send_signal(signal.SIGINT)
                st.wait()
                counts[(k, fmt)] = strace_counts(log)
                ok(api[k][0].VDI.destroy(api[k][1], v))

        print("VHD VDI import (ext SR), 1 GiB half zeros (%d blocks of data), curl over loopback, %s, A=%s B=%s, "
              "medians of %d, A/B alternating; load %s" % (BLOCKS_WRITTEN, time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
                                                        builds["A"], builds["B"], rounds,
                                                        " ".join("%.2f" % a for a in os.getloadavg())))
        for fmt in ("raw", "vhd"):
            a, b = statistics.median(times[("A", fmt)]), statistics.median(times[("B", fmt)])
            print("import %s: A %.3f s, B %.3f s, B/A %.2f  (A runs %s; B runs %s)" % (
                fmt, a, b, b / a, " ".join("%.2f" % t for t in times[("A", fmt)]),
                " ".join("%.2f" % t for t in times[("B", fmt)])))
        for fmt in ("raw", "vhd"):
            a, b = statistics.median(cpu[("A", fmt)]), statistics.median(cpu[("B", fmt)])
            print("daemon CPU (user+sys) per import %s: A %.2f s, B %.2f s, B/A %.2f  (A %s; B %s)" % (
                fmt, a, b, b / a, " ".join("%.2f" % t for t in cpu[("A", fmt)]),
                " ".join("%.2f" % t for t in cpu[("B", fmt)])))
        for fmt in ("raw", "vhd"):
            for k in builds:
                c = counts[(k, fmt)]
                writes = sum(n for name, n in c.items() if name.startswith("pwrite"))
                print("syscalls, import %s, %s: %s; pwrite* per data block %.1f" % (
                    fmt, k, " ".join("%s %d" % kv for kv in sorted(c.items())), writes / BLOCKS_WRITTEN))
    finally:
        for d in daemons.values():
            d.cleanup()
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    main()
