"""The vhd-util command (tools/vhd-util.c) as plugins and people run it: output
lines, exit statuses, and images that qemu-img (an independent VHD
implementation) reads and writes."""

import os
import re
import shutil
import struct
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("XENAPID_BUILD_DIR", os.path.join(ROOT, "build"))
VHD_UTIL = os.path.join(BUILD, "vhd-util")
MiB = 1 << 20
HAVE_QEMU = shutil.which("qemu-img") is not None and shutil.which("qemu-io") is not None


def run(*args):
    p = subprocess.run([VHD_UTIL] + [str(a) for a in args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def ok(*args):
    rc, out, err = run(*args)
    if rc != 0:
        raise AssertionError("vhd-util %s: rc %d, %r %r" % (args, rc, out, err))
    return out


def pattern(n, seed):
    return bytes((seed + i * 13) & 0xFF for i in range(n))


def write_sectors(path, offset, data):
    """Writes whole sectors into a dynamic or differencing VHD, independently
    of vhd-util: a new block goes where the footer is, the footer after it."""
    assert offset % 512 == 0 and len(data) % 512 == 0
    with open(path, "r+b") as f:
        f.seek(-512, os.SEEK_END)
        footer = f.read(512)
        f.seek(512)
        header = f.read(1024)
        bat_off = struct.unpack(">Q", header[16:24])[0]
        block = struct.unpack(">I", header[32:36])[0]
        bitmap_len = ((block // 512 + 7) // 8 + 511) // 512 * 512
        while data:
            blk, inb = divmod(offset, block)
            n = min(len(data), block - inb)
            f.seek(bat_off + 4 * blk)
            entry = struct.unpack(">I", f.read(4))[0]
            if entry == 0xFFFFFFFF:
                end = f.seek(0, os.SEEK_END) - 512
                entry = end // 512
                f.seek(end)
                f.write(b"\0" * (bitmap_len + block))
                f.write(footer)
                f.seek(bat_off + 4 * blk)
                f.write(struct.pack(">I", entry))
            f.seek(entry * 512)
            bm = bytearray(f.read(bitmap_len))
            for s in range(inb // 512, (inb + n) // 512):
                bm[s // 8] |= 0x80 >> (s % 8)
            f.seek(entry * 512)
            f.write(bm)
            f.seek(entry * 512 + bitmap_len + inb)
            f.write(data[:n])
            data = data[n:]
            offset += n


class VhdUtilTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vhd-util-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def p(self, name):
        return os.path.join(self.dir, name)

    def qemu_raw(self, path):
        out = self.p("out.raw")
        subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", path, out], check=True)
        with open(out, "rb") as f:
            return f.read()

    # ---- create / query ----

    def test_create_query(self):
        self.assertEqual(ok("create", "-n", self.p("a.vhd"), "-s", 5), "")
        out = ok("query", "-n", self.p("a.vhd"), "-d", "-f", "-p", "-s", "-v")  # printed in fixed order
        self.assertEqual(out, "6\n%d\n%s has no parent\nhidden: 0\nchain depth: 1\n"
                         % (os.path.getsize(self.p("a.vhd")), self.p("a.vhd")))
        self.assertEqual(ok("query", "--debug", "-vsaf", "-n", self.p("a.vhd")).split("\n")[2:4], ["hidden: 0", "0"])
        self.assertEqual(ok("query", "-n", self.p("a.vhd"), "-S"), "6\n")
        ok("create", "-n", self.p("b.vhd"), "-s", 10, "-S", 100)
        self.assertEqual(ok("query", "-n", self.p("b.vhd"), "-S"), "100\n")

    def test_create_errors(self):
        rc, out, _ = run("create", "-n", self.p("a.vhd"))
        self.assertEqual(rc, 22)
        self.assertTrue(out.startswith("options: "))
        rc, out, _ = run("create", "-n", self.p("a.vhd"), "-s", 100, "-S", 10)
        self.assertEqual((rc, out), (22, "Error: <-S size> must be greater than <-s size>\n"))
        ok("create", "-n", self.p("a.vhd"), "-s", 2)
        rc, out, _ = run("create", "-n", self.p("a.vhd"), "-s", 2)
        self.assertEqual(rc, 17)  # an existing image is never overwritten
        rc, out, _ = run("create", "-n", self.p("big.vhd"), "-s", 3 * 1024 * 1024)
        self.assertEqual(rc, 22)
        self.assertFalse(os.path.exists(self.p("big.vhd")))

    def test_query_missing_and_usage(self):
        rc, out, _ = run("query", "-n", self.p("nope.vhd"), "-v")
        self.assertEqual((rc, out), (2, "error opening %s: -2\n" % self.p("nope.vhd")))
        rc, out, err = run("frobnicate")
        self.assertEqual(rc, 22)
        self.assertIn("invalid COMMAND", err)
        self.assertEqual(run()[0], 22)

    def test_fixed(self):
        ok("create", "-n", self.p("f.vhd"), "-s", 4, "-r")
        self.assertEqual(os.path.getsize(self.p("f.vhd")), 4 * MiB + 512)
        self.assertEqual(ok("query", "-n", self.p("f.vhd"), "-v", "-s"), "4\n%d\n" % (4 * MiB + 512))
        self.assertIn("Disk type           : Fixed hard disk", ok("read", "-p", "-n", self.p("f.vhd")))

    # ---- interoperability with qemu ----

    @unittest.skipUnless(HAVE_QEMU, "qemu-img not installed")
    def test_qemu_reads_and_writes_ours(self):
        ok("create", "-n", self.p("a.vhd"), "-s", 20)
        info = subprocess.run(["qemu-img", "info", self.p("a.vhd")], capture_output=True, text=True).stdout
        self.assertIn("virtual size: 20 MiB (20971520 bytes)", info)
        subprocess.run(["qemu-io", "-c", "write -P 0xab 1M 64k", "-c", "write -P 0xcd 5M 512", self.p("a.vhd")],
                       check=True, capture_output=True)
        self.assertEqual(ok("check", "-n", self.p("a.vhd")), "%s is valid\n" % self.p("a.vhd"))
        self.assertEqual(ok("query", "-n", self.p("a.vhd"), "-a"), "2\n")
        raw = self.qemu_raw(self.p("a.vhd"))
        self.assertEqual(len(raw), 20 * MiB)
        self.assertEqual(raw[MiB:MiB + 65536], b"\xab" * 65536)
        self.assertEqual(raw[5 * MiB:5 * MiB + 512], b"\xcd" * 512)
        self.assertEqual(raw[:MiB], b"\0" * MiB)

    @unittest.skipUnless(HAVE_QEMU, "qemu-img not installed")
    def test_we_read_qemus(self):
        src = self.p("src.raw")
        with open(src, "wb") as f:
            f.write(pattern(3 * MiB, 5))
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic", src,
                        self.p("q.vhd")], check=True)
        virt = int(re.search(r"\((\d+) bytes\)", subprocess.run(
            ["qemu-img", "info", self.p("q.vhd")], capture_output=True, text=True).stdout).group(1))
        self.assertEqual(ok("query", "-n", self.p("q.vhd"), "-v", "-p"),
                         "%d\n%s has no parent\n" % (virt >> 20, self.p("q.vhd")))
        self.assertEqual(ok("check", "-n", self.p("q.vhd")), "%s is valid\n" % self.p("q.vhd"))
        # a snapshot over qemu's image, coalesced back: qemu sees the child's bytes over its own
        ok("snapshot", "-n", self.p("c.vhd"), "-p", self.p("q.vhd"))
        write_sectors(self.p("c.vhd"), 4096, pattern(8192, 99))
        self.assertEqual(ok("coalesce", "-n", self.p("c.vhd")), "Coalesced 16 sectors")
        raw = self.qemu_raw(self.p("q.vhd"))
        want = bytearray(pattern(3 * MiB, 5))
        want[4096:4096 + 8192] = pattern(8192, 99)
        self.assertEqual(raw[:3 * MiB], bytes(want))

    # ---- snapshots and chains ----

    def chain(self):
        ok("create", "-n", self.p("base.vhd"), "-s", 8)
        write_sectors(self.p("base.vhd"), 0, pattern(4096, 1))
        self.assertEqual(ok("snapshot", "-n", self.p("snap.vhd"), "-p", self.p("base.vhd")), "")

    def test_snapshot_query(self):
        self.chain()
        self.assertEqual(ok("query", "-n", self.p("snap.vhd"), "-v", "-p", "-d"),
                         "8\n%s\nchain depth: 2\n" % os.path.realpath(self.p("base.vhd")))
        self.assertEqual(ok("check", "-p", "-n", self.p("snap.vhd")), "%s is valid\n" % self.p("snap.vhd"))
        dump = ok("read", "-p", "-n", self.p("snap.vhd"))
        self.assertRegex(dump, r"Disk type\s+: Differencing hard disk")
        self.assertIn("Parent name         : base.vhd", dump)
        self.assertIn("       decoded name : ./base.vhd", dump)  # sm greps "decoded name :"
        self.assertIn("       code         : PLAT_CODE_MACX", dump)
        self.assertIn("Block size          : 2097152 (2 MB)", dump)
        # the parent moved away: the child's parent cannot be resolved
        os.rename(self.p("base.vhd"), self.p("moved.vhd"))
        rc, out, _ = run("query", "-n", self.p("snap.vhd"), "-p")
        self.assertEqual((rc, out), (2, "query failed\n"))
        self.assertEqual(ok("query", "-n", self.p("snap.vhd"), "-p", "-u"), "base.vhd\n")

    def test_read_through_the_chain(self):
        self.chain()
        write_sectors(self.p("snap.vhd"), 1024, pattern(1024, 9))
        want = bytearray(pattern(4096, 1) + b"\0" * 4096)
        want[1024:2048] = pattern(1024, 9)
        p = subprocess.run([VHD_UTIL, "read", "-n", self.p("snap.vhd"), "-r", "0", "-c", "16"], capture_output=True)
        self.assertEqual((p.returncode, p.stdout), (0, bytes(want)))
        p = subprocess.run([VHD_UTIL, "read", "-n", self.p("base.vhd"), "-r", "0", "-c", "16"], capture_output=True)
        self.assertEqual(p.stdout, pattern(4096, 1) + b"\0" * 4096)
        self.assertEqual(run("read", "-n", self.p("snap.vhd"), "-r", 8 * MiB // 512, "-c", 1)[0], 34)  # ERANGE
        out = ok("read", "-n", self.p("snap.vhd"), "-t", 2, "-c", 2)
        self.assertRegex(out, r"^logical sector 2: block number: 0, sector offset: 2, file offset: \d+\n"
                              r"logical sector 3: block number: 0, sector offset: 3, file offset: \d+\n$")
        self.assertEqual(ok("read", "-n", self.p("snap.vhd"), "-i", 2, "-c", 1), "block 0: sec: 2: 1\n")
        self.assertEqual(ok("read", "-n", self.p("snap.vhd"), "-i", 0, "-c", 1), "block 0: sec: 0: 0\n")
        self.assertEqual(ok("read", "-n", self.p("snap.vhd"), "-b", 1), "block: 1: offset: not allocated\n")
        bitmap = subprocess.run([VHD_UTIL, "read", "-n", self.p("snap.vhd"), "-m", "0"], capture_output=True).stdout
        self.assertEqual(bitmap[:1], b"\x30")  # sectors 2 and 3, MSB first
        rc, out, _ = run("read", "-n", self.p("nope.vhd"), "-p")
        self.assertEqual((rc, out), (2, "Failed to open %s: -2\n" % self.p("nope.vhd")))

    def test_snapshot_skips_empty_parents_and_limits_depth(self):
        self.chain()
        ok("snapshot", "-n", self.p("s2.vhd"), "-p", self.p("snap.vhd"))  # snap.vhd is empty
        self.assertEqual(ok("query", "-n", self.p("s2.vhd"), "-p"), os.path.realpath(self.p("base.vhd")) + "\n")
        ok("snapshot", "-n", self.p("s3.vhd"), "-p", self.p("snap.vhd"), "-e")
        self.assertEqual(ok("query", "-n", self.p("s3.vhd"), "-p", "-d"),
                         "%s\nchain depth: 3\n" % os.path.realpath(self.p("snap.vhd")))
        rc, out, _ = run("snapshot", "-n", self.p("s4.vhd"), "-p", self.p("snap.vhd"), "-l", 2)
        self.assertEqual(rc, 28)
        self.assertTrue(out.startswith("snapshot depth exceeded"))
        self.assertFalse(os.path.exists(self.p("s4.vhd")))

    def test_snapshot_in_another_directory(self):
        self.chain()
        os.mkdir(self.p("sub"))
        ok("snapshot", "-n", self.p("sub/x.vhd"), "-p", self.p("base.vhd"))
        self.assertIn("       decoded name : ../base.vhd", ok("read", "-p", "-n", self.p("sub/x.vhd")))
        self.assertEqual(ok("query", "-n", self.p("sub/x.vhd"), "-p"), os.path.realpath(self.p("base.vhd")) + "\n")

    def test_modify_parent(self):
        self.chain()
        ok("create", "-n", self.p("other.vhd"), "-s", 8)
        self.assertEqual(ok("modify", "-n", self.p("snap.vhd"), "-p", self.p("other.vhd")), "")
        self.assertEqual(ok("query", "-n", self.p("snap.vhd"), "-p"), os.path.realpath(self.p("other.vhd")) + "\n")
        self.assertEqual(ok("check", "-p", "-n", self.p("snap.vhd")), "%s is valid\n" % self.p("snap.vhd"))
        rc, out, _ = run("modify", "-n", self.p("snap.vhd"), "-p", self.p("missing.vhd"))
        self.assertEqual(rc, 2)
        self.assertIn("failed to set parent to '%s'" % self.p("missing.vhd"), out)
        rc, out, _ = run("modify", "-n", self.p("base.vhd"), "-p", self.p("other.vhd"))
        self.assertEqual(rc, 22)  # not a differencing disk
        # physical size: the footer moves to the end of the space given
        size = int(ok("query", "-n", self.p("other.vhd"), "-s"))
        ok("modify", "-n", self.p("other.vhd"), "-s", size + 4 * MiB)
        self.assertEqual(os.path.getsize(self.p("other.vhd")), size + 4 * MiB)
        self.assertEqual(ok("check", "-n", self.p("other.vhd")), "%s is valid\n" % self.p("other.vhd"))

    def test_set_hidden_and_scan(self):
        self.chain()
        self.assertEqual(ok("set", "-n", self.p("base.vhd"), "-f", "hidden", "-v", 1), "")
        self.assertEqual(ok("query", "-n", self.p("base.vhd"), "-f"), "hidden: 1\n")
        self.assertEqual(run("set", "-n", self.p("base.vhd"), "-f", "bogus", "-v", 1)[0], 22)
        out = ok("scan", "-f", "-m", self.p("*.vhd"))
        self.assertEqual(out.splitlines(), [
            "vhd=base.vhd capacity=%d size=%d hidden=1 parent=none" % (8 * MiB, os.path.getsize(self.p("base.vhd"))),
            "vhd=snap.vhd capacity=%d size=%d hidden=0 parent=base.vhd" % (8 * MiB, os.path.getsize(self.p("snap.vhd"))),
        ])
        out = ok("scan", "-f", "-p", "-m", self.p("*.vhd"))
        self.assertEqual([re.sub(r" capacity.*parent=", " ", l) for l in out.splitlines()],
                         ["vhd=base.vhd none", "   vhd=snap.vhd base.vhd"])
        # -a: the parents of what matched come along
        out = ok("scan", "-f", "-a", "-m", self.p("snap*"))
        self.assertEqual([l.split()[0] for l in out.splitlines()], ["vhd=snap.vhd", "vhd=base.vhd"])
        # a broken image: an error line; exit status unless -c
        with open(self.p("junk.vhd"), "wb") as f:
            f.write(b"x" * 4096)
        rc, out, _ = run("scan", "-f", "-m", self.p("*.vhd"))
        self.assertEqual(rc, 22)
        self.assertRegex(out, r"vhd=junk.vhd scan-error=-22 error-message='primary footer invalid: invalid cookie'")
        self.assertEqual(run("scan", "-f", "-c", "-m", self.p("*.vhd"))[0], 0)

    def test_coalesce(self):
        self.chain()
        write_sectors(self.p("snap.vhd"), 2048, pattern(1024, 7))
        write_sectors(self.p("snap.vhd"), 3 * MiB, pattern(512, 8))
        self.assertEqual(ok("coalesce", "-n", self.p("snap.vhd")), "Coalesced 3 sectors")
        self.assertEqual(ok("query", "-n", self.p("base.vhd"), "-a"), "2\n")
        if HAVE_QEMU:
            raw = self.qemu_raw(self.p("base.vhd"))
            want = bytearray(pattern(4096, 1))
            want[2048:3072] = pattern(1024, 7)
            self.assertEqual(raw[:4096], bytes(want))
            self.assertEqual(raw[3 * MiB:3 * MiB + 512], pattern(512, 8))
        rc, out, _ = run("coalesce", "-n", self.p("base.vhd"))
        self.assertEqual((rc, out), (22, "coalescing of non-differencing disks is not supported\n"))

    def test_check_refuses_corruption(self):
        ok("create", "-n", self.p("a.vhd"), "-s", 4)
        size = os.path.getsize(self.p("a.vhd"))
        with open(self.p("a.vhd"), "r+b") as f:
            f.seek(size - 512 + 70)
            f.write(b"\xff")
        rc, out, _ = run("check", "-n", self.p("a.vhd"))
        self.assertEqual(rc, 22)
        self.assertTrue(out.startswith("primary footer invalid: invalid checksum\n"))
        # still readable through the copy at 0, and repaired from it
        self.assertEqual(ok("query", "-n", self.p("a.vhd"), "-v"), "4\n")
        ok("repair", "-n", self.p("a.vhd"))
        self.assertEqual(ok("check", "-n", self.p("a.vhd")), "%s is valid\n" % self.p("a.vhd"))
        with open(self.p("a.vhd"), "r+b") as f:  # a BAT entry past the end of the file
            f.seek(1536)
            f.write(struct.pack(">I", 0x00100000))
        rc, out, _ = run("check", "-n", self.p("a.vhd"))
        self.assertEqual(rc, 22)
        self.assertIn("beyond the end of the file", out)

    def test_check_as_novas_plugin_reads_it(self):
        """Nova's glance plugin runs `check -n F -p` (exit 0 or 22) and looks
        for 'invalid' in the first line; a footer from the future is one."""
        ok("create", "-n", self.p("a.vhd"), "-s", 4)
        size = os.path.getsize(self.p("a.vhd"))
        with open(self.p("a.vhd"), "r+b") as f:
            for at in (0, size - 512):
                f.seek(at)
                footer = bytearray(f.read(512))
                footer[24:28] = struct.pack(">I", 0xF0000000)  # in 2127
                footer[64:68] = b"\0\0\0\0"
                footer[64:68] = struct.pack(">I", ~sum(footer) & 0xFFFFFFFF)
                f.seek(at)
                f.write(footer)
        rc, out, _ = run("check", "-n", self.p("a.vhd"), "-p")
        self.assertEqual(rc, 22)
        self.assertEqual(out.splitlines()[0], "primary footer invalid: creation time in future")
        self.assertEqual(run("check", "-n", self.p("a.vhd"), "-t")[0], 0)
        # overlapping blocks
        ok("create", "-n", self.p("b.vhd"), "-s", 4)
        write_sectors(self.p("b.vhd"), 0, pattern(512, 1))
        with open(self.p("b.vhd"), "r+b") as f:
            f.seek(1536)
            entry = f.read(4)
            f.write(entry)  # block 1 where block 0 is
        rc, out, _ = run("check", "-n", self.p("b.vhd"), "-p")
        self.assertEqual(rc, 22)
        self.assertIn("invalid", out.splitlines()[0])

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("losetup"), "needs root and losetup")
    def test_create_on_a_block_device(self):
        """LVM SRs create the LV first, then the VHD on it: an existing block
        device is written (an existing file never is), the footer at its end."""
        backing = self.p("lv.img")
        with open(backing, "wb") as f:
            f.truncate(16 * MiB)
        p = subprocess.run(["losetup", "-f", "--show", backing], capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest("no loop device: " + p.stderr.strip())
        dev = p.stdout.strip()
        self.addCleanup(subprocess.run, ["losetup", "-d", dev])
        self.assertEqual(ok("create", "-n", dev, "-s", 8), "")
        self.assertEqual(ok("query", "-n", dev, "-v", "-s"), "8\n2560\n")
        self.assertEqual(ok("check", "-n", dev), "%s is valid\n" % dev)
        with open(backing, "rb") as f:
            f.seek(16 * MiB - 512)
            self.assertEqual(f.read(8), b"conectix")
        ok("snapshot", "-n", self.p("child.vhd"), "-p", dev)
        self.assertEqual(ok("query", "-n", self.p("child.vhd"), "-p"), dev + "\n")
        # a BAT that must grow moves within the LV
        rc, out, _ = run("resize", "-n", dev, "-s", 64, "-j", self.p("j"))
        self.assertEqual(rc, 0)
        if HAVE_QEMU:
            self.assertIn("virtual size: 64 MiB", subprocess.run(["qemu-img", "info", "-f", "vpc", dev],
                                                                 capture_output=True, text=True).stdout)

    def test_marker_lives_in_a_batmap(self):
        ok("create", "-n", self.p("a.vhd"), "-s", 4)
        self.assertEqual(ok("query", "-n", self.p("a.vhd"), "-m"), "marker: 0\n")
        self.assertEqual(run("set", "-n", self.p("a.vhd"), "-f", "marker", "-v", 1)[0], 22)  # no batmap here
        img = os.path.join(ROOT, "tests", "fuzz", "corpus", "vhd_file", "tapdisk_batmap.vhd")
        shutil.copy(img, self.p("tap.vhd"))
        self.assertEqual(ok("set", "-n", self.p("tap.vhd"), "-f", "marker", "-v", 1), "")
        self.assertEqual(ok("query", "-n", self.p("tap.vhd"), "-m", "-f"), "hidden: 0\nmarker: 1\n")
        self.assertIn("VHD Batmap Summary:", ok("read", "-p", "-n", self.p("tap.vhd")))

    def test_resize(self):
        ok("create", "-n", self.p("a.vhd"), "-s", 4)
        write_sectors(self.p("a.vhd"), 512, pattern(512, 3))
        self.assertEqual(ok("resize", "-n", self.p("a.vhd"), "-s", 100, "-j", self.p("journal")), "")
        self.assertEqual(ok("query", "-n", self.p("a.vhd"), "-v"), "100\n")
        self.assertEqual(ok("check", "-n", self.p("a.vhd")), "%s is valid\n" % self.p("a.vhd"))
        rc, out, _ = run("resize", "-n", self.p("a.vhd"), "-s", 50, "-j", self.p("journal"))
        self.assertEqual(rc, 22)
        self.assertIn("< curr size", out)
        ok("create", "-n", self.p("b.vhd"), "-s", 4, "-S", 8)
        ok("resize", "-n", self.p("b.vhd"), "-s", 8, "-f")
        self.assertEqual(run("resize", "-n", self.p("b.vhd"), "-s", 10, "-f")[0], 22)  # beyond the preallocation
        if HAVE_QEMU:
            info = subprocess.run(["qemu-img", "info", self.p("a.vhd")], capture_output=True, text=True).stdout
            self.assertIn("virtual size: 100 MiB", info)
            self.assertEqual(self.qemu_raw(self.p("a.vhd"))[512:1024], pattern(512, 3))


if __name__ == "__main__":
    unittest.main()
