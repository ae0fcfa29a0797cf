#!/usr/bin/env python3
"""A/B of GET /export_raw_vdi?format=vhd (issue 11, benchmark 1) between
xenapid binaries, in one run: each binary runs as its own daemon with its own
"ext" SR holding the same 1 GiB VDI (half zeros, as bench/vdi_transfer.py
makes it), and the exports of every binary and curl's floor (`curl -o OUT
file:///src.vhd`) take turns within each round, in a rotated order every
round, to a file and to /dev/null. The machine is shared (two Xen labs), so
only medians of one run compare; nothing here is a pass or fail.

Usage: nice bench/vhd_export_ab.py ROUNDS NAME=BINARY [NAME=BINARY...]
       (BINARY may be followed by ,KEY=VALUE... for environment variables)
BENCH_DIR chooses the directory (default /tmp); FORMATS (default "vhd")
may add "raw"."""

import os
import statistics
import subprocess
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "integration"))
import vdi_transfer as vt  # noqa: E402
from harness import Daemon  # noqa: E402


class Binary(Daemon):
    """A Daemon that runs the given binary instead of the build tree's."""

    def __init__(self, binary, **kw):
        self.binary = binary
        super().__init__(**kw)

    def command(self):
        return [self.binary] + super().command()[1:]


def body_sha256(path):
    """The sha256 of a file but for a VHD's footers and header (the VDI's uuid, times, checksums)."""
    h = vt.hashlib.sha256()
    size = os.path.getsize(path)
    skip = 1536 if path.endswith(".vhd") or size % vt.MiB else 0
    with open(path, "rb") as f:
        f.seek(skip)
        left = size - skip - (512 if skip else 0)
        while left > 0:
            b = f.read(min(left, 4 * vt.MiB))
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def main():
    rounds = int(sys.argv[1])
    variants = []
    for a in sys.argv[2:]:
        name, spec = a.split("=", 1)
        parts = spec.split(",")
        variants.append((name, parts[0], dict(p.split("=", 1) for p in parts[1:])))
    formats = os.environ.get("FORMATS", "vhd").split()
    base = tempfile.mkdtemp(prefix="bench-vhd-ab-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    daemons, urls = {}, {}
    src = {"raw": os.path.join(base, "src.raw"), "vhd": os.path.join(base, "src.vhd")}
    out = os.path.join(base, "out")
    try:
        vt.write_source(src["raw"])
        for name, binary, env in variants:
            d = Binary(binary, env=env, extra_config="sr_mount_root = %s\nlog_level = notice\n"
                       % os.path.join(base, "sr-" + name)).start()
            daemons[name] = d
            x, s = d.login()
            host = vt.ok(x.host.get_all(s))[0]
            sr = vt.ok(x.SR.create(s, host, {}, "0", "ab", "", "ext", "user", False, {}))
            v = vt.ok(x.VDI.create(s, {"SR": sr, "virtual_size": str(vt.GiB), "type": "user", "sharable": False,
                                       "read_only": False, "other_config": {}, "name_label": "ab"}))

            def url(fmt, d=d, s=s, v=v):
                return "http://127.0.0.1:%d/export_raw_vdi?%s" % (d.port, urllib.parse.urlencode(
                    {"session_id": s, "vdi": v, "format": fmt}))
            vt.put(src["raw"], "http://127.0.0.1:%d/import_raw_vdi?%s" % (d.port, urllib.parse.urlencode(
                {"session_id": s, "vdi": v, "format": "raw"})))
            urls[name] = url
        vt.get(urls[variants[0][0]]("vhd"), src["vhd"])
        want = {f: body_sha256(p) for f, p in src.items()}
        for name in urls:  # every binary exports the same bytes (but for a VHD's ids and times)
            for fmt in ("raw", "vhd"):
                vt.get(urls[name](fmt), out)
                assert body_sha256(out) == want[fmt], "%s's %s export differs" % (name, fmt)
        jobs = []
        for fmt in formats:
            for dst in ("file", "null"):
                jobs.append(((fmt, dst, "floor"), "file://" + src[fmt], dst))
                jobs += [((fmt, dst, name), urls[name](fmt), dst) for name in urls]
        times = {}
        for k in range(rounds):
            for key, u, dst in jobs[k % len(jobs):] + jobs[:k % len(jobs)]:
                if os.path.exists(out):
                    os.unlink(out)
                os.sync()
                times.setdefault(key, []).append(vt.get(u, out if dst == "file" else "/dev/null"))
        print("VHD/raw export A/B, 1 GiB (half zeros), medians of %d, one run, rotated order; load %s"
              % (rounds, " ".join("%.2f" % a for a in os.getloadavg())))
        for fmt in formats:
            for dst in ("file", "null"):
                ft = statistics.median(times[(fmt, dst, "floor")])
                for name in ["floor"] + list(urls):
                    ts = times[(fmt, dst, name)]
                    t = statistics.median(ts)
                    print("%-4s to %-5s %-12s %7.3f s  %6.1f%% of floor  (runs %s)"
                          % (fmt, dst, name, t, 100 * ft / t, " ".join("%.3f" % a for a in ts)))
    finally:
        for d in daemons.values():
            d.cleanup()
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    main()
