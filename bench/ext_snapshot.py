#!/usr/bin/env python3
"""VDI.snapshot and VDI.clone on an "ext" SR (VHD chains, issue 11): a 10 GiB
VDI with 1 GiB written, each call timed over XML-RPC (goal: constant time,
under 50 ms, medians), beside the same calls on a "file" SR (a copy of the
data, or a reflink where the filesystem can) for scale.

Usage: nice bench/ext_snapshot.py [CALLS]   (default 10 of each)
Needs a built tree (XENAPID_BUILD_DIR or ./build)."""

import http.client
import os
import statistics
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import Daemon  # noqa: E402

GiB = 1 << 30
MiB = 1 << 20


class Body:
    """1 GiB of non-zero bytes streamed as an HTTP body."""

    def __init__(self, n):
        self.left = n
        self.chunk = bytes(range(1, 256)) * (MiB // 255 + 1)

    def read(self, k=MiB):
        k = min(k, self.left, MiB)
        self.left -= k
        return self.chunk[:k]


def ok(r):
    if r["Status"] != "Success":
        raise RuntimeError(r["ErrorDescription"])
    return r["Value"]


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    root = tempfile.mkdtemp(prefix="bench-ext-")
    d = Daemon(extra_config="sr_mount_root = %s\n" % root).start()
    try:
        x, s = d.login()
        host = ok(x.host.get_all(s))[0]
        for sr_type, dc in (("ext", {}), ("file", {"location": os.path.join(root, "file-sr")})):
            sr = ok(x.SR.create(s, host, dc, "0", "bench " + sr_type, "", sr_type, "user", False, {}))
            vdi = ok(x.VDI.create(s, {"SR": sr, "virtual_size": str(10 * GiB), "type": "user", "sharable": False,
                                      "read_only": False, "other_config": {}, "name_label": "bench"}))
            q = urllib.parse.urlencode({"session_id": s, "vdi": vdi})
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=600)
            c.putrequest("PUT", "/import_raw_vdi?" + q)
            c.putheader("Content-Length", str(GiB))
            c.endheaders()
            body = Body(GiB)
            while True:
                b = body.read()
                if not b:
                    break
                c.send(b)
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
            for op in ("snapshot", "clone"):
                times = []
                made = []
                for _ in range(calls if sr_type == "ext" else min(calls, 3)):  # file: 1 GiB copied each
                    t = time.perf_counter()
                    made.append(ok(getattr(x.VDI, op)(s, vdi, {})))
                    times.append((time.perf_counter() - t) * 1000)
                med = statistics.median(times)
                goal = "goal met" if sr_type != "ext" or med < 50 else "goal MISSED"
                print("%-4s VDI.%-8s 10 GiB, 1 GiB written: median %8.1f ms (min %.1f, max %.1f, %d calls)%s"
                      % (sr_type, op, med, min(times), max(times), len(times),
                         "  [" + goal + "]" if sr_type == "ext" else ""))
                for v in made:
                    ok(x.VDI.destroy(s, v))
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()
