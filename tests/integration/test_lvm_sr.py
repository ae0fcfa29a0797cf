"""The "lvm" SR (storage/drv_lvm.c) as xapi's LVM SR answers: a volume group
VG_XenStorage-<sr uuid> on device_config "device" (comma separated), SR.probe's
SRlist, sizes from the VG, PBD.unplug/plug deactivating and activating it,
SR.destroy removing it, and xapi's errors for a missing or bad device.

The real volume group tests need root, loop devices and lvm2 (vgcreate needs no
device-mapper; making logical volumes does, so VDIs on an LVM SR are tested in
the Xen lab, tests/e2e)."""

import os
import shutil
import subprocess
import tempfile
import unittest
import xml.dom.minidom

from harness import DaemonTest, fail, ok

MiB = 1 << 20
ENV = dict(os.environ, LVM_SUPPRESS_FD_WARNINGS="1")


def can_loop():
    return os.geteuid() == 0 and shutil.which("vgcreate") is not None and os.path.exists("/dev/loop-control")


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, env=ENV)


class LvmSrErrorsTest(DaemonTest):
    def host(self):
        return ok(self.x.host.get_all(self.s))[0]

    def create(self, dc):
        return self.x.SR.create(self.s, self.host(), dc, "0", "lvm test", "", "lvm", "user", False, {})

    def test_type_is_known(self):
        self.assertIn("lvm", ok(self.x.SR.get_supported_types(self.s)))

    def test_device_missing(self):
        # sm's ConfigDeviceMissing (90), as xapi reports it.
        err = fail(self.create({}))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_90", err)
        err = fail(self.x.SR.probe(self.s, self.host(), {}, "lvm", {}))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_90", err)

    def test_bad_devices(self):
        # Each device goes to lvm2 as one argument: never an option, a relative path or a path out of /dev.
        for dev in ["sdb", "-ff", "/dev/../etc/passwd", "/tmp/x", "/dev/sdb,", "/dev/sdb dev", "/dev/sd$(id)",
                    ",".join("/dev/sd%d" % i for i in range(17))]:
            err = fail(self.create({"device": dev}))
            self.assertEqual(err[0], "SR_BACKEND_FAILURE_1", (dev, err))
        self.assertEqual([r for r in ok(self.x.SR.get_all_records(self.s)).values() if r["type"] == "lvm"], [])

    def test_absent_device(self):
        # lvm2's own refusal comes back as the SM error, with its message.
        err = fail(self.create({"device": "/dev/xenapid-no-such-disk"}))
        self.assertTrue(err[0].startswith("SR_BACKEND_FAILURE_"), err)
        self.assertIn("/dev/xenapid-no-such-disk", err[2], err)
        self.assertEqual([r for r in ok(self.x.SR.get_all_records(self.s)).values() if r["type"] == "lvm"], [])


@unittest.skipUnless(can_loop(), "needs root, lvm2 and loop devices")
class LvmSrLoopTest(DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="xenapid-lvm-")
        cls.loops = []
        for i, size in enumerate([64, 32]):
            img = os.path.join(cls.tmp, "disk%d.img" % i)
            with open(img, "wb") as f:
                f.truncate(size * MiB)
            p = run("losetup", "-f", "--show", img)
            if p.returncode != 0:
                raise unittest.SkipTest("losetup: " + p.stderr)
            cls.loops.append(p.stdout.strip())
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        for dev in cls.loops:
            vg = run("pvs", "--noheadings", "-o", "vg_name", dev).stdout.strip()
            if vg:
                run("vgremove", "-f", vg)
            run("pvremove", "-ff", "-y", dev)
            run("losetup", "-d", dev)
        shutil.rmtree(cls.tmp, True)

    def host(self):
        return ok(self.x.host.get_all(self.s))[0]

    def test_lifecycle(self):
        dc = {"device": ",".join(self.loops)}
        sr = ok(self.x.SR.create(self.s, self.host(), dc, "0", "lvm", "", "lvm", "user", False, {}))
        uuid = ok(self.x.SR.get_uuid(self.s, sr))
        vg = "VG_XenStorage-" + uuid
        self.assertEqual(run("vgs", vg).returncode, 0)
        # The sizes are the VG's: two PVs of 64 and 32 MiB less their metadata, all free.
        rec = ok(self.x.SR.get_record(self.s, sr))
        vg_size = int(run("vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", "vg_size", vg).stdout)
        self.assertEqual(int(rec["physical_size"]), vg_size)
        self.assertGreater(vg_size, 80 * MiB)
        self.assertEqual(int(rec["physical_utilisation"]), 0)
        ok(self.x.SR.scan(self.s, sr))
        self.assertEqual(ok(self.x.SR.get_VDIs(self.s, sr)), [])

        # SR.probe finds it on either device, with both devices listed.
        for dev in self.loops:
            doc = xml.dom.minidom.parseString(ok(self.x.SR.probe(self.s, self.host(), {"device": dev}, "lvm", {})))
            srs = doc.getElementsByTagName("SR")
            self.assertEqual(len(srs), 1)
            text = lambda tag: srs[0].getElementsByTagName(tag)[0].firstChild.data
            self.assertEqual(text("UUID"), uuid)
            # every device of the group, in lvm2's order (by name: loop11 before loop7)
            self.assertEqual(sorted(text("Devlist").split(",")), sorted(self.loops))
            self.assertEqual(int(text("size")), vg_size)

        # A second SR cannot take the same devices.
        err = fail(self.x.SR.create(self.s, self.host(), dc, "0", "again", "", "lvm", "user", False, {}))
        self.assertTrue(err[0].startswith("SR_BACKEND_FAILURE_"), err)

        pbd = ok(self.x.SR.get_PBDs(self.s, sr))[0]
        ok(self.x.PBD.unplug(self.s, pbd))
        ok(self.x.PBD.plug(self.s, pbd))
        self.assertTrue(ok(self.x.PBD.get_currently_attached(self.s, pbd)))
        ok(self.x.PBD.unplug(self.s, pbd))
        ok(self.x.SR.destroy(self.s, sr))
        self.assertNotEqual(run("vgs", vg).returncode, 0)
        self.assertEqual(run("pvs", self.loops[0]).returncode, 5, "the PV label is removed")
        doc = ok(self.x.SR.probe(self.s, self.host(), {"device": self.loops[0]}, "lvm", {}))
        self.assertEqual(xml.dom.minidom.parseString(doc).getElementsByTagName("SR").length, 0)


if __name__ == "__main__":
    unittest.main()
