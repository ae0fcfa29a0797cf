"""The storage-manager modules of host/sm, imported the way CloudStack's
XenServer plugins import them (their directory appended to sys.path, then
`import SR, VDI, SRCommand, util, lvutil, vhdutil, lvhdutil, xs_errors,
cleanup`), called against real VHD files made by xenapid's vhd-util."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("XENAPID_BUILD_DIR", os.path.join(ROOT, "build"))
SM_DIR = os.path.join(ROOT, "host", "sm")
VHD_UTIL = os.path.join(BUILD, "vhd-util")

# The plugins: `if os.path.exists("/opt/xensource/sm"): sys.path.extend(["/opt/xensource/sm/", ...])`
os.environ["XENAPID_VHD_UTIL"] = VHD_UTIL
LOG_DIR = tempfile.mkdtemp(prefix="sm-log-")
os.environ["XENAPID_SMLOG_FILE"] = os.path.join(LOG_DIR, "SMlog")
if os.path.exists(SM_DIR):
    sys.path.extend([SM_DIR + "/"])

import SR, VDI, SRCommand, util, lvutil  # noqa: E401,E402
from util import CommandException  # noqa: E402
import vhdutil  # noqa: E402
import lvhdutil  # noqa: E402
import xs_errors  # noqa: E402
import cleanup  # noqa: E402

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
MiB = 1 << 20


def tearDownModule():
    shutil.rmtree(LOG_DIR, True)


class ImportTest(unittest.TestCase):
    def test_modules_come_from_the_repo(self):
        for m in (SR, VDI, SRCommand, util, lvutil, vhdutil, lvhdutil, xs_errors, cleanup):
            self.assertEqual(os.path.dirname(os.path.abspath(m.__file__)), SM_DIR)
        self.assertEqual(vhdutil.VHD_UTIL, VHD_UTIL)

    def test_constants(self):
        self.assertEqual(lvhdutil.VG_PREFIX, "VG_XenStorage-")
        self.assertEqual(lvhdutil.VG_LOCATION, "/dev")
        self.assertEqual(lvhdutil.LV_PREFIX, {"vhd": "VHD-", "aio": "LV-"})
        self.assertEqual(SR.DEFAULT_TAP, "vhd")
        self.assertEqual(SR.MOUNT_BASE, "/run/sr-mount")
        self.assertEqual(vhdutil.MAX_CHAIN_SIZE, 30)
        self.assertEqual(vhdutil.FILE_EXTN_VHD, ".vhd")


class UtilTest(unittest.TestCase):
    def test_pread2_returns_stdout(self):
        self.assertEqual(util.pread2(["sh", "-c", "echo out; echo err >&2"]), "out\n")
        self.assertEqual(util.pread2(["printf", "a\\nb"]), "a\nb")

    def test_pread2_failure(self):
        cmd = ["sh", "-c", "echo some output; echo the reason >&2; exit 3"]
        with self.assertRaises(CommandException) as cm:
            util.pread2(cmd)
        e = cm.exception
        self.assertEqual((e.code, e.cmd, e.reason), (3, str(cmd), "the reason"))
        self.assertEqual(str(e), os.strerror(3))
        self.assertIsInstance(e, util.SMException)
        # no stderr: the reason is stdout
        with self.assertRaises(CommandException) as cm:
            util.pread2(["sh", "-c", "echo only stdout; exit 1"])
        self.assertEqual((cm.exception.code, cm.exception.reason), (1, "only stdout"))

    def test_pread2_signal_and_missing_program(self):
        with self.assertRaises(CommandException) as cm:
            util.pread2(["sh", "-c", "kill -KILL $$"])
        self.assertEqual(cm.exception.code, -signal.SIGKILL)
        self.assertEqual(str(cm.exception), "Signalled 9")
        with self.assertRaises(OSError):
            util.pread2(["/nonexistent/program"])

    def test_pread2_of_vhd_util_failure(self):
        with self.assertRaises(CommandException) as cm:
            util.pread2([VHD_UTIL, "query", "-n", "/nonexistent.vhd", "-v"])
        self.assertEqual(cm.exception.code, 2)
        self.assertEqual(cm.exception.reason, "error opening /nonexistent.vhd: -2")

    def test_pread3_feeds_stdin(self):
        self.assertEqual(util.pread3(["cat"], "fed"), "fed")

    def test_gen_uuid(self):
        a, b = util.gen_uuid(), util.gen_uuid()
        self.assertRegex(a, UUID_RE)
        self.assertNotEqual(a, b)
        self.assertTrue(util.exactmatch_uuid(a))
        self.assertFalse(util.exactmatch_uuid(a + "x"))

    def test_smlog(self):
        marker = util.gen_uuid()
        util.SMlog("first %s\nsecond line" % marker)
        util.SMlog(["a", "list"], ident="cloud")
        with open(os.environ["XENAPID_SMLOG_FILE"]) as f:
            lines = f.read().splitlines()
        mine = [l for l in lines if marker in l]
        self.assertEqual(len(mine), 1)
        self.assertRegex(mine[0], r" SM\[%d\] first %s$" % (os.getpid(), marker))
        i = lines.index(mine[0])
        self.assertTrue(lines[i + 1].endswith("SM[%d] second line" % os.getpid()))
        self.assertTrue(any(l.endswith("cloud[%d] ['a', 'list']" % os.getpid()) for l in lines))

    def test_roundup_and_ioretry(self):
        self.assertEqual(util.roundup(512, 0), 512)
        self.assertEqual(util.roundup(512, 513), 1024)
        self.assertEqual(util.roundup(512, 1024), 1024)
        calls = []

        def flaky():
            calls.append(1)
            if len(calls) < 3:
                raise CommandException(5, "x", "EIO")
            return "done"
        self.assertEqual(util.ioretry(flaky, period=0), "done")
        with self.assertRaises(CommandException) as cm:
            util.ioretry(lambda: util.pread2(["false"]), period=0)
        self.assertEqual(cm.exception.code, 1)  # not retried


class NamesTest(unittest.TestCase):
    def test_lvhd_extract_uuid(self):
        u = util.gen_uuid()
        self.assertEqual(lvhdutil.extractUuid("/dev/VG_XenStorage-%s/VHD-%s" % (util.gen_uuid(), u)), u)
        self.assertEqual(lvhdutil.extractUuid("LV-%s" % u), u)
        self.assertEqual(lvhdutil.extractUuid("VHD-%s\n" % u), u)
        mapper = "VG_XenStorage-%s-VHD-%s" % ("ab--cd", u.replace("-", "--"))
        self.assertEqual(lvhdutil.extractUuid("/dev/mapper/" + mapper), u)
        self.assertIsNone(lvhdutil.extractUuid("/var/run/sr-mount/x/%s.vhd" % u))
        self.assertEqual(lvhdutil.matchLV("VHD-" + u), ("vhd", u))
        self.assertEqual(lvhdutil.matchLV("MGT"), (None, None))

    def test_file_extract_uuid(self):
        u = util.gen_uuid()
        self.assertEqual(cleanup.FileVDI.extractUuid("/run/sr-mount/s/%s.vhd\n" % u), u)
        self.assertEqual(cleanup.FileVDI.extractUuid("%s.raw" % u), u)
        self.assertIsNone(cleanup.FileVDI.extractUuid("/x/notes.txt"))

    def test_xen_error(self):
        with self.assertRaises(xs_errors.SROSError) as cm:
            raise xs_errors.XenError("SRNoSpace", opterr="need 4 GiB")
        self.assertEqual(cm.exception.errno, 44)
        self.assertEqual(str(cm.exception), "There is insufficient space [opterr=need 4 GiB]")
        with self.assertRaises(xs_errors.SRException) as cm:  # CloudStack passes free text
            raise xs_errors.XenError("Could not get vhd parent of /x")
        self.assertEqual(cm.exception.errno, 1)
        self.assertEqual(str(cm.exception), "Error reporting error, unknown key Could not get vhd parent of /x")
        self.assertIn("<int>44</int>", xs_errors.XenError("SRNoSpace").toxml())


class VhdTest(unittest.TestCase):
    """vhdutil over VHDs made by xenapid's vhd-util, as in a file SR."""

    def setUp(self):
        self.sr = tempfile.mkdtemp(prefix="sm-sr-")
        self.addCleanup(shutil.rmtree, self.sr, True)
        self.base_uuid, self.snap_uuid = util.gen_uuid(), util.gen_uuid()
        self.base = self.path(self.base_uuid)
        self.snap = self.path(self.snap_uuid)
        vhdutil.create(self.base, 10 * MiB, False)
        vhdutil.snapshot(self.snap, self.base, False, checkEmpty=False)

    def path(self, uuid):
        return os.path.join(self.sr, uuid + ".vhd")

    def test_get_parent(self):
        self.assertEqual(vhdutil.getParent(self.snap, cleanup.FileVDI.extractUuid), self.base_uuid)
        self.assertIsNone(vhdutil.getParent(self.base, cleanup.FileVDI.extractUuid))
        self.assertTrue(vhdutil.hasParent(self.snap))
        self.assertFalse(vhdutil.hasParent(self.base))
        self.assertEqual(vhdutil.getDepth(self.snap), 2)
        os.unlink(self.base)  # a missing parent is a failure, not "no parent"
        with self.assertRaises(CommandException):
            vhdutil.getParent(self.snap, cleanup.FileVDI.extractUuid)

    def test_sizes(self):
        self.assertEqual(vhdutil.getSizePhys(self.base), os.path.getsize(self.base))
        self.assertEqual(vhdutil.getSizePhys(self.snap), os.path.getsize(self.snap))
        self.assertEqual(vhdutil.getSizeVirt(self.snap), 10 * MiB)
        self.assertEqual(vhdutil.getBlockSize(self.base), 2 * MiB)
        info = vhdutil.getVHDInfo(self.snap, cleanup.FileVDI.extractUuid)
        self.assertEqual((info.uuid, info.sizeVirt, info.parentUuid, info.hidden, info.sizeAllocated),
                         (self.snap_uuid, 10 * MiB, self.base_uuid, 0, 0))
        self.assertEqual(info.parentPath, os.path.realpath(self.base))
        self.assertEqual(vhdutil.validate_and_round_vhd_size(3 * MiB), 4 * MiB)
        with self.assertRaises(xs_errors.SROSError):
            vhdutil.validate_and_round_vhd_size(vhdutil.MAX_VHD_SIZE + 1)

    def test_set_hidden(self):
        self.assertEqual(vhdutil.getHidden(self.base), 0)
        vhdutil.setHidden(self.base)
        self.assertEqual(vhdutil.getHidden(self.base), 1)
        vhds = vhdutil.getAllVHDs(os.path.join(self.sr, "*.vhd"), cleanup.FileVDI.extractUuid)
        self.assertEqual(sorted(vhds), sorted([self.base_uuid, self.snap_uuid]))
        self.assertTrue(vhds[self.base_uuid].hidden)
        self.assertEqual(vhds[self.snap_uuid].parentUuid, self.base_uuid)
        self.assertEqual(vhds[self.snap_uuid].sizeVirt, 10 * MiB)
        vhdutil.setHidden(self.base, False)
        self.assertEqual(vhdutil.getHidden(self.base), 0)
        self.assertTrue(vhdutil.check(self.snap))

    def test_lvm_scan(self):
        dev = tempfile.mkdtemp(prefix="sm-dev-")
        self.addCleanup(shutil.rmtree, dev, True)
        sr = util.gen_uuid()
        vg = lvhdutil.VG_PREFIX + sr
        os.mkdir(os.path.join(dev, vg))
        lv_base, lv_snap = "VHD-" + self.base_uuid, "VHD-" + self.snap_uuid
        vhdutil.create(os.path.join(dev, vg, lv_base), 4 * MiB, False)
        vhdutil.snapshot(os.path.join(dev, vg, lv_snap), os.path.join(dev, vg, lv_base), False, checkEmpty=False)
        os.environ["XENAPID_LVM_DEV_DIR"] = dev
        try:
            info = vhdutil.getVHDInfoLVM(lv_snap, lvhdutil.extractUuid, vg)
            chain = vhdutil.getParentChain(lv_snap, lvhdutil.extractUuid, vg)
        finally:
            del os.environ["XENAPID_LVM_DEV_DIR"]
        self.assertEqual((info.uuid, info.parentUuid, info.sizeVirt), (self.snap_uuid, self.base_uuid, 4 * MiB))
        self.assertEqual(sorted(chain), sorted([self.base_uuid, self.snap_uuid]))

    def test_backup_chain_as_cloudstack_does(self):
        """A snapshot's base copy backed up: copied with dd, un-hidden, then
        re-parented onto the previous backup with `vhd-util modify -p`."""
        backups = tempfile.mkdtemp(prefix="sm-backups-")
        self.addCleanup(shutil.rmtree, backups, True)
        vhdutil.setHidden(self.base)
        prev = os.path.join(backups, util.gen_uuid() + ".vhd")
        vhdutil.create(prev, 10 * MiB, False)
        for _ in range(2):  # a second chain link over the first
            vhdutil.snapshot(self.path("tmp"), self.base, False, checkEmpty=False)
            base_copy = vhdutil.getParent(self.path("tmp"), cleanup.FileVDI.extractUuid)
            self.assertEqual(base_copy, self.base_uuid)
            os.unlink(self.path("tmp"))
            backup = os.path.join(backups, util.gen_uuid() + ".vhd")
            util.pread2(["dd", "if=" + self.snap, "of=" + backup, "bs=128k"])
            vhdutil.setHidden(backup, False)
            util.pread2([VHD_UTIL, "modify", "-p", prev, "-n", backup])
            self.assertEqual(vhdutil.getParent(backup, cleanup.FileVDI.extractUuid),
                             cleanup.FileVDI.extractUuid(prev))
            self.assertEqual(vhdutil.getHidden(backup), 0)
            prev = backup
        self.assertEqual(vhdutil.getDepth(prev), 3)
        self.assertEqual(vhdutil.coalesce(prev), 0)


class InstallTest(unittest.TestCase):
    def test_install_script_places_modules_and_vhd_util(self):
        dest = tempfile.mkdtemp(prefix="sm-install-")
        self.addCleanup(shutil.rmtree, dest, True)
        env = dict(os.environ, DESTDIR=dest, XENAPID_BUILD_DIR=BUILD)
        subprocess.run([os.path.join(ROOT, "scripts", "install-host-files.sh")], env=env, check=True)
        for d in ("opt/xensource/sm", "usr/lib/xcp/sm"):
            self.assertEqual(sorted(f for f in os.listdir(os.path.join(dest, d))),
                             sorted(f for f in os.listdir(SM_DIR) if f.endswith(".py")))
        self.assertTrue(os.access(os.path.join(dest, "usr/bin/vhd-util"), os.X_OK))
        self.assertEqual(subprocess.run([os.path.join(dest, "usr/sbin/vhd-util"), "query"],
                                        capture_output=True).returncode, 22)
        # the installed copy imports and finds vhd-util by the host path when not told otherwise
        code = ("import sys; sys.path.append(%r); import vhdutil, util; print(vhdutil.VHD_UTIL, util.gen_uuid())"
                % os.path.join(dest, "opt/xensource/sm"))
        env.pop("XENAPID_VHD_UTIL", None)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        self.assertRegex(out.stdout, r"^/usr/s?bin/vhd-util [0-9a-f-]{36}\n$")


if __name__ == "__main__":
    unittest.main()
