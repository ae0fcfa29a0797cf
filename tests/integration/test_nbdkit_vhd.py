"""The VHD chain datapath (nbdkit/xenapid_vhd.c) off-lab: nbdkit serving
chains made by vhd-util, read and written by qemu-io / qemu-img over NBD
(clients independent of the plugin), compared byte for byte with a model of
what was written, with `vhd-util read` through the chain, and with qemu-img's
own VHD reader for a parentless image. Parents never change."""

import hashlib
import os
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("XENAPID_BUILD_DIR", os.path.join(ROOT, "build"))
VHD_UTIL = os.path.join(BUILD, "vhd-util")
PLUGIN = os.path.join(BUILD, "nbdkit-xenapid-vhd-plugin.so")
MiB = 1 << 20
SIZE = 8 * MiB


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def vhd_util(*args):
    p = subprocess.run([VHD_UTIL] + [str(a) for a in args], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("vhd-util %s: %r" % (args, p.stderr))
    return p.stdout


def sanitizer_env():
    """The sanitizer stage builds the plugin with ASan+UBSan: nbdkit itself is
    not, so the runtime is preloaded (it must come first) for nbdkit only."""
    env = dict(os.environ)
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        if "XENAPID_SANITIZE:BOOL=ON" not in f.read():
            return env
    cc = subprocess.run(["cc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    env["LD_PRELOAD"] = cc
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"  # nbdkit's own allocations at exit are not ours
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    return env


NBDKIT_ENV = sanitizer_env()
SANITIZED = "LD_PRELOAD" in NBDKIT_ENV


def serve(image, script, *params, filters=()):
    """Runs script (a shell command with $uri) against nbdkit serving image (through filters)."""
    env = dict(NBDKIT_ENV)
    preload = env.pop("LD_PRELOAD", None)
    cmd = (["nbdkit", "-U", "-"] + ["--filter=" + f for f in filters] + [PLUGIN, "file=" + image] + list(params)
           + ["--run", script])
    if preload:  # only nbdkit gets the runtime, not the clients it runs
        cmd = ["env", "LD_PRELOAD=" + preload] + cmd
        cmd[-1] = "LD_PRELOAD= " + script
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    if "runtime error" in r.stderr or "AddressSanitizer" in r.stderr:
        raise AssertionError("sanitizer report from the plugin:\n" + r.stderr)
    return r


def pattern(n, seed):
    return bytes((seed + i * 7) & 0xFF for i in range(n))


@unittest.skipUnless(shutil.which("nbdkit") and shutil.which("qemu-io"), "nbdkit and qemu-io needed")
class NbdkitVhd(unittest.TestCase):
    def setUp(self):
        self.assertTrue(os.path.exists(PLUGIN), "plugin not built (nbdkit-plugin-dev missing?)")
        self.dir = tempfile.mkdtemp(prefix="nbdkit-vhd-")
        self.model = bytearray(SIZE)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, image, writes):
        """writes: [(offset, one byte repeated)], sent by qemu-io through nbdkit."""
        cmds = []
        for off, data in writes:
            cmds.append("-c 'write -P %d %d %d'" % (data[0], off, len(data)))
            self.model[off:off + len(data)] = data
        r = serve(image, 'qemu-io -f raw "$uri" ' + " ".join(cmds))
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)

    def export(self, image, *params):
        out = self.path("export.raw")
        r = serve(image, 'qemu-img convert -f raw -O raw "$uri" ' + out, *params)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out, "rb") as f:
            data = f.read()
        os.unlink(out)
        return data

    def fill(self, n, byte):
        return bytes([byte]) * n

    def test_chain_of_three_reads_as_written_and_parents_unchanged(self):
        base, mid, leaf = self.path("base.vhd"), self.path("mid.vhd"), self.path("leaf.vhd")
        vhd_util("create", "-n", base, "-s", SIZE // MiB)
        # across a 2 MiB block boundary, unaligned head and tail, a sector in the last block
        self.write(base, [(0, self.fill(MiB, 0x11)), (2 * MiB - 700, self.fill(1500, 0x22)),
                          (SIZE - 512, self.fill(512, 0x33))])
        self.assertEqual(self.export(base), bytes(self.model))
        # qemu-img's own VHD reader agrees on the parentless image
        qraw = self.path("q.raw")
        subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", base, qraw], check=True, timeout=60)
        with open(qraw, "rb") as f:
            self.assertEqual(f.read()[:SIZE], bytes(self.model))

        vhd_util("snapshot", "-n", mid, "-p", base)
        vhd_util("set", "-n", base, "-f", "hidden", "-v", "1")
        base_sum = sha(base)
        self.write(mid, [(512 * 1024 + 3, self.fill(10, 0x44)), (3 * MiB, self.fill(MiB, 0x55))])
        self.assertEqual(sha(base), base_sum)

        vhd_util("snapshot", "-n", leaf, "-p", mid)
        vhd_util("set", "-n", mid, "-f", "hidden", "-v", "1")
        mid_sum = sha(mid)
        self.write(leaf, [(1, self.fill(1, 0x66)), (3 * MiB + 4096, self.fill(8192, 0x77)),
                          (SIZE - 100, self.fill(100, 0x88))])
        self.assertEqual(sha(base), base_sum)
        self.assertEqual(sha(mid), mid_sum)

        got = self.export(leaf)
        self.assertEqual(len(got), SIZE)
        self.assertEqual(got, bytes(self.model))
        self.assertEqual(vhd_util("read", "-n", leaf, "-r", 0, "-c", SIZE // 512), bytes(self.model))
        # the middle of the chain still reads as it was before the leaf's writes
        vhd_mid = vhd_util("read", "-n", mid, "-r", 0, "-c", SIZE // 512)
        self.assertEqual(self.export(mid, "readonly=true"), vhd_mid)
        self.assertEqual(vhd_mid[1:2], b"\x11")
        vhd_util("check", "-n", leaf)

    def clear_bitmap(self, image, block):
        """Clears allocated block's sector bitmap in the file: allocated, no sector present."""
        with open(image, "r+b") as f:
            f.seek(512 + 16)  # the dynamic header (at 512 in images vhd-util makes): BAT offset
            bat = int.from_bytes(f.read(8), "big")
            f.seek(bat + 4 * block)
            at = int.from_bytes(f.read(4), "big")
            self.assertNotEqual(at, 0xFFFFFFFF, "block %d is not allocated" % block)
            f.seek(at * 512)
            f.write(bytes(512))

    def window(self, image, off, length):
        """Bytes [off, off + length) as read through nbdkit's offset filter: requests at
        offsets and of sizes that are no multiple of a sector in the plugin."""
        out = self.path("window.raw")
        # serve(): under the sanitizer stage only nbdkit gets the ASan runtime (qemu-img's exit hangs with it)
        r = serve(image, 'qemu-img convert -f raw -O raw "$uri" ' + out, "readonly=true", "offset=%d" % off,
                  "range=%d" % length, filters=["offset"])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out, "rb") as f:
            data = f.read()
        os.unlink(out)
        return data[:length]  # qemu rounds the export up to a sector, with zeros

    def test_chain_reads_at_block_and_bitmap_edges(self):
        """The read path that resolves a run of sectors per pread and keeps the bitmaps
        (full, empty, partial) in memory: bytes at 2 MiB block edges, at sector-bitmap byte
        edges (sectors 7/8, 15/16), a block allocated with an empty bitmap, a block written
        whole over a partial parent, read whole (in parallel) and through windows at odd
        offsets, and reads after writes in one server (the cache follows them)."""
        base, mid, leaf = self.path("base.vhd"), self.path("mid.vhd"), self.path("leaf.vhd")
        B = 2 * MiB
        vhd_util("create", "-n", base, "-s", SIZE // MiB)
        self.write(base, [(0, self.fill(B, 0x11)),                    # block 0 full
                          (B + 8 * 512, self.fill(8 * 512, 0x12)),    # block 1: sectors 8..15
                          (3 * B, self.fill(B, 0x13))])               # block 3 full
        vhd_util("snapshot", "-n", mid, "-p", base)
        vhd_util("set", "-n", base, "-f", "hidden", "-v", "1")
        self.write(mid, [(B - 512, self.fill(1024, 0x21)),            # last sector of 0, first of 1
                         (7 * 512, self.fill(2 * 512, 0x22)),         # sectors 7, 8: a bitmap byte edge
                         (B + 15 * 512, self.fill(2 * 512, 0x23)),    # sectors 15, 16 of block 1
                         (3 * B + 4096, self.fill(512, 0x24))])       # block 3: allocated in mid...
        self.clear_bitmap(mid, 3)                                     # ...with no sector present
        self.model[3 * B + 4096:3 * B + 4096 + 512] = self.fill(512, 0x13)
        vhd_util("snapshot", "-n", leaf, "-p", mid)
        vhd_util("set", "-n", mid, "-f", "hidden", "-v", "1")
        self.write(leaf, [(B, self.fill(B, 0x31)),                    # block 1 whole over partial parents
                          (15 * 512, self.fill(512, 0x32)),           # sector 15 of block 0
                          (2 * B + B - 512, self.fill(512, 0x33))])   # the last sector of block 2
        model = bytes(self.model)
        self.assertEqual(self.export(leaf, "readonly=true"), model)
        for off, n in ((B - 700, 1500), (7 * 512 - 3, 2 * 512 + 9), (15 * 512 + 1, 511), (3 * B + 4000, 700),
                       (3 * B - 1, 2), (0, 1), (SIZE - 513, 513)):
            self.assertEqual(self.window(leaf, off, n), model[off:off + n], "window %d+%d" % (off, n))
        # reads, then writes into the blocks just read (full, partial, unallocated), then reads again
        cmds = ["-c 'read -P %d 0 3584'" % 0x11, "-c 'read -P %d %d 4096'" % (0x31, B + 4096),
                "-c 'read -P %d %d 4096'" % (0x13, 3 * B)]
        for off, n, byte in ((4096, 512, 0x41), (2 * B, 512, 0x42), (3 * B + 8192, 1024, 0x43)):
            cmds.append("-c 'write -P %d %d %d'" % (byte, off, n))
            self.model[off:off + n] = self.fill(n, byte)
        for off, n in ((0, B), (2 * B, B), (3 * B, B)):
            chunk = bytes(self.model[off:off + n])
            runs, i = [], 0
            while i < n:  # one read -P per run of equal bytes
                j = i
                while j < n and chunk[j] == chunk[i]:
                    j += 1
                runs.append("-c 'read -P %d %d %d'" % (chunk[i], off + i, j - i))
                i = j
            cmds.extend(runs)
        r = serve(leaf, 'qemu-io -f raw "$uri" ' + " ".join(cmds))
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        self.assertNotIn("Pattern verification failed", r.stdout + r.stderr)
        self.assertEqual(self.export(leaf, "readonly=true"), bytes(self.model))

    def test_hidden_parent_is_not_served_writable(self):
        base, leaf = self.path("base.vhd"), self.path("leaf.vhd")
        vhd_util("create", "-n", base, "-s", SIZE // MiB)
        vhd_util("snapshot", "-n", leaf, "-p", base)
        vhd_util("set", "-n", base, "-f", "hidden", "-v", "1")
        r = serve(base, "true")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("hidden", r.stderr)
        self.assertEqual(self.export(base, "readonly=true"), bytes(SIZE))

    def test_readonly_export_refuses_writes(self):
        base = self.path("base.vhd")
        vhd_util("create", "-n", base, "-s", SIZE // MiB)
        before = sha(base)
        r = serve(base, 'qemu-io -f raw "$uri" -c "write -P 9 0 4096"', "readonly=true")
        self.assertNotIn("wrote", r.stdout)
        self.assertEqual(sha(base), before)

    # With the ASan runtime preloaded, nbdkit hangs in its exit (libp11-kit's
    # destructor waiting on glibc's locale lock) after this get_ready failure;
    # the plain build runs it.
    @unittest.skipIf(SANITIZED, "nbdkit's exit hangs under a preloaded ASan runtime after this failure")
    def test_missing_parent_and_not_a_vhd_fail_to_start(self):
        base, leaf, junk = self.path("base.vhd"), self.path("leaf.vhd"), self.path("junk.vhd")
        vhd_util("create", "-n", base, "-s", SIZE // MiB)
        vhd_util("snapshot", "-n", leaf, "-p", base)
        os.unlink(base)
        r = serve(leaf, "true")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("parent", r.stderr)
        with open(junk, "wb") as f:
            f.write(os.urandom(4096))
        r = serve(junk, "true")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(junk, r.stderr)


if __name__ == "__main__":
    unittest.main()
