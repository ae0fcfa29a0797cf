#!/usr/bin/env python3
"""PUT /import_raw_vdi and GET /export_raw_vdi of a 1 GiB VDI, half zeros (issue 11,
benchmark 1), as raw and as VHD, on an "ext" SR (the VDI is a VHD file) and on a
"file" SR (a raw file), over loopback with curl, beside curl moving the same bytes
to and from a plain file on the same disk in the same run: goal, at least 80 % of
that floor (medians of ROUNDS).

The floor is curl itself moving the same bytes between plain files on the same
disk, with no server and no network: an import's floor is `curl -T SOURCE
file:///DEST` (every byte written, zeros too) followed by an fdatasync of DEST,
timed, since the import answers only once its data is durable (curl's time alone
is printed too: writing into the page cache); an export's floor is `curl -o OUT
file:///SOURCE` (the same output file as the export's, not synced either). xenapid
has more to do (loopback TCP, HTTP, the VDI's format) but writes no zeros (holes)
and sends none in a VHD (absent blocks). Both sides get the
same curl, the same source files (in the page cache after the first read) and the
same directory; before each transfer the last one's output is deleted and
everything synced (this disk has discard on), outside the timing. The floor and
xenapid take turns within each round, in the reverse order every other round.

The image: 1 GiB, alternately random bytes and zeros in runs of 4 MiB (2 VHD
blocks), so half of the disk is zeros and half of the VHD's blocks are absent.
The VHD source is xenapid's own export of that disk (format=vhd); both sources
are checked once against what xenapid exports after importing them.

Usage: nice bench/vdi_transfer.py [ROUNDS]   (default 3)
Needs a built tree (XENAPID_BUILD_DIR or ./build) and curl. BENCH_DIR chooses
the directory (default /tmp) that holds the SRs, the sources and the floor's
files (one disk)."""

import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import Daemon  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
RUN = 4 * MiB  # data and zeros alternate in runs of this size


def ok(r):
    if r["Status"] != "Success":
        raise RuntimeError(r["ErrorDescription"])
    return r["Value"]


def write_source(path):
    data = os.urandom(RUN)
    zeros = bytes(RUN)
    with open(path, "wb") as f:
        for i in range(GiB // RUN):
            f.write(zeros if i % 2 else data)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def curl(args):
    """Runs curl; its wall time in seconds (process start to exit, as for a user)."""
    t = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail"] + args, check=True)
    return time.perf_counter() - t


def put(src, url):
    return curl(["-o", "/dev/null", "-T", src, url])


def get(url, dst):
    return curl(["-o", dst, url])


def put_floor(src, dst, cache_times):
    """The import's floor: curl writes src into the file dst, which is then made durable."""
    t = put(src, "file://" + dst)
    cache_times.append(t)
    start = time.perf_counter()
    fd = os.open(dst, os.O_WRONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return t + time.perf_counter() - start


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    base = tempfile.mkdtemp(prefix="bench-vdi-transfer-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    d = Daemon(extra_config="sr_mount_root = %s\nlog_level = notice\n" % os.path.join(base, "sr-mount")).start()
    floor_dir = os.path.join(base, "floor")
    os.mkdir(floor_dir)
    src = {"raw": os.path.join(base, "src.raw"), "vhd": os.path.join(base, "src.vhd")}
    out = os.path.join(base, "out")
    try:
        x, s = d.login()
        host = ok(x.host.get_all(s))[0]
        srs = {"ext": ok(x.SR.create(s, host, {}, "0", "bench ext", "", "ext", "user", False, {})),
               "file": ok(x.SR.create(s, host, {"location": os.path.join(base, "file-sr")}, "0", "bench file", "",
                                      "file", "user", False, {}))}

        def new_vdi(sr):
            return ok(x.VDI.create(s, {"SR": srs[sr], "virtual_size": str(GiB), "type": "user", "sharable": False,
                                       "read_only": False, "other_config": {}, "name_label": "bench"}))

        def url(path, vdi, fmt):
            return "http://127.0.0.1:%d/%s?%s" % (d.port, path, urllib.parse.urlencode(
                {"session_id": s, "vdi": vdi, "format": fmt}))

        write_source(src["raw"])
        want = sha256(src["raw"])
        v = new_vdi("ext")
        put(src["raw"], url("import_raw_vdi", v, "raw"))
        get(url("export_raw_vdi", v, "vhd"), src["vhd"])
        get(url("export_raw_vdi", v, "raw"), out)
        assert sha256(out) == want, "the raw export differs from what was imported"
        ok(x.VDI.destroy(s, v))
        v = new_vdi("file")
        put(src["vhd"], url("import_raw_vdi", v, "vhd"))
        get(url("export_raw_vdi", v, "raw"), out)
        assert sha256(out) == want, "the VHD import differs from the raw image"
        ok(x.VDI.destroy(s, v))
        os.unlink(out)
        size = {f: os.path.getsize(p) for f, p in src.items()}

        times = {}  # (what, sr or "floor", format) -> [seconds]

        def timed(key, fn, *args):
            # Each transfer starts with no dirty data of the one before and with the blocks of the
            # last export's output freed and committed (this disk is mounted with discard).
            if os.path.exists(out):
                os.unlink(out)
            os.sync()
            times.setdefault(key, []).append(fn(*args))

        for k in range(rounds):
            # The floor and xenapid take turns in each round, in the reverse order every other
            # round: this machine's speed drifts and writeback of one run can slow the next.
            order = -1 if k % 2 else 1
            vdis = {}
            for fmt in ("raw", "vhd"):
                for sr in ("ext", "file"):
                    vdis[(sr, fmt)] = new_vdi(sr)
            imports = [(("import", "floor", fmt), put_floor, src[fmt], os.path.join(floor_dir, "in." + fmt),
                        times.setdefault(("import", "floor-cache", fmt), [])) for fmt in ("raw", "vhd")]
            imports += [(("import", sr, fmt), put, src[fmt], url("import_raw_vdi", v, fmt))
                        for (sr, fmt), v in vdis.items()]
            exports = [(("export", "floor", fmt), get, "file://" + src[fmt], out) for fmt in ("raw", "vhd")]
            exports += [(("export", sr, fmt), get, url("export_raw_vdi", v, fmt), out) for (sr, fmt), v in vdis.items()]
            for job in imports[::order] + exports[::order]:
                timed(*job)
            for name in os.listdir(floor_dir) + [out]:
                os.unlink(os.path.join(floor_dir, name))
            for v in vdis.values():
                ok(x.VDI.destroy(s, v))

        print("VDI import/export, 1 GiB (half zeros), curl over loopback, %s, medians of %d; load %s"
              % (time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), rounds,
                 " ".join("%.2f" % a for a in os.getloadavg())))
        print("%-26s %9s %9s %9s %9s %7s  %s" % ("measure", "MB", "s", "MB/s", "floor MB/s", "ratio", "verdict"))
        for what in ("import", "export"):
            for fmt in ("raw", "vhd"):
                mb = size[fmt] / 1e6
                ft = statistics.median(times[(what, "floor", fmt)])
                for sr in ("ext", "file"):
                    ts = times[(what, sr, fmt)]
                    t = statistics.median(ts)
                    r = 100 * ft / t
                    print("%-26s %9.1f %9.3f %9.1f %9.1f %6.1f%%  %s  (runs %s)"
                          % ("%s %s, %s SR" % (what, fmt, sr), mb, t, mb / t, mb / ft, r,
                             "goal met" if r >= 80 else "goal MISSED", " ".join("%.2f" % a for a in ts)))
                if what == "import":
                    ct = statistics.median(times[(what, "floor-cache", fmt)])
                    print("%-26s %9.1f %9.3f %9.1f   (curl alone, before its fdatasync: ext %.1f%%, file %.1f%%)"
                          % ("import %s, floor unsynced" % fmt, mb, ct, mb / ct,
                             100 * ct / statistics.median(times[(what, "ext", fmt)]),
                             100 * ct / statistics.median(times[(what, "file", fmt)])))
        print("floor runs (s): " + "; ".join("%s %s %s: %s" % (k[0], k[1], k[2], " ".join("%.2f" % a for a in v))
                                             for k, v in sorted(times.items()) if k[1].startswith("floor")))
    finally:
        d.cleanup()
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    main()
