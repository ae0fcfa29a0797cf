"""The "nfs" SR (storage/drv_nfs.c) against a made-up NFS server
(fake_nfs.py: the daemon's nfs_mount, nfs_umount and nfs_showmount are
stand-ins that bind-mount local exports): SR.create makes <serverpath>/<sr
uuid> on the export, PBD.plug mounts it with sm's options under
sr_mount_root, the SR is a VHD directory as ext, PBD.unplug unmounts it,
SR.destroy removes the directory (with sm_config nosubdir=true the SR is the
export itself); failures of mount come back as sm's
NFSMount (73) with mount.nfs's message; SR.probe lists the exports or the SRs
of one. The Xen lab runs the same against a kernel NFS server
(tests/e2e/steps_nfs.py)."""

import os
import unittest
import uuid
import xml.dom.minidom

from fake_nfs import FakeNFS, can_bind_mount
from harness import fail, ok
from test_ext_sr import MiB, ExtBase, vhd_util

EXPORT = "/export/primary"


@unittest.skipUnless(can_bind_mount(), "needs root (the made-up server's exports are bind mounts)")
class NfsSrTest(ExtBase):
    @classmethod
    def setUpClass(cls):
        cls.nfs = FakeNFS([EXPORT])
        cls.more_config = cls.nfs.config()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.nfs.close()

    def create(self, dc=None, sm_config=None):
        dc = dc or {"server": "127.0.0.1", "serverpath": EXPORT}
        sr = ok(self.x.SR.create(self.s, self.host(), dc, "0", "nfs test", "", "nfs", "user", True,
                                 sm_config or {}))
        self.addCleanup(self.destroy_sr, sr)
        return sr

    def mounted_at(self, sr):
        return os.path.join(self.root, ok(self.x.SR.get_uuid(self.s, sr)))

    def test_create_plug_use_unplug_destroy(self):
        sr = self.create()
        sr_uuid = ok(self.x.SR.get_uuid(self.s, sr))
        rec = ok(self.x.SR.get_record(self.s, sr))
        self.assertEqual((rec["type"], rec["shared"]), ("nfs", True))
        here = self.nfs.path(EXPORT) + "/" + sr_uuid  # the SR's directory on the server
        self.assertTrue(os.path.isdir(here))
        self.assertEqual(self.nfs.mounts(), [os.path.realpath(self.mounted_at(sr))])
        mount = [c for c in self.nfs.calls() if c[0] == "mount"][-1]
        self.assertEqual(mount[5:], ["127.0.0.1:%s/%s" % (EXPORT, sr_uuid), self.mounted_at(sr)])
        opts = mount[4].split(",")
        for o in ("soft", "proto=tcp", "vers=3", "timeo=200", "retrans=4"):
            self.assertIn(o, opts)
        # a VHD directory, on the server
        vdi = self.new_vdi(sr, 4 * MiB)
        loc = ok(self.x.VDI.get_location(self.s, vdi))
        self.assertEqual(os.listdir(here), [loc + ".vhd"])
        snap = ok(self.x.VDI.snapshot(self.s, vdi, {}))
        base = ok(self.x.VDI.get_sm_config(self.s, snap))["vhd-parent"]
        self.assertEqual(ok(self.x.VDI.get_sm_config(self.s, vdi))["vhd-parent"], base)
        dropped = str(uuid.uuid4())
        vhd_util("create", "-n", os.path.join(here, dropped + ".vhd"), "-s", "2")
        ok(self.x.SR.scan(self.s, sr))
        self.assertEqual(ok(self.x.VDI.get_virtual_size(self.s, ok(self.x.VDI.get_by_uuid(self.s, dropped)))),
                         str(2 * MiB))
        # unplugged: unmounted, the mount point gone
        pbd = ok(self.x.SR.get_PBDs(self.s, sr))[0]
        ok(self.x.PBD.unplug(self.s, pbd))
        self.assertEqual(self.nfs.mounts(), [])
        self.assertFalse(os.path.exists(self.mounted_at(sr)))
        self.assertEqual(len(os.listdir(here)), 4)  # the data stays on the server
        for v in ok(self.x.SR.get_VDIs(self.s, sr)):
            if ok(self.x.VDI.get_managed(self.s, v)):
                self.assertEqual(fail(self.x.VDI.destroy(self.s, v))[0], "SR_HAS_NO_PBDS")
                break
        ok(self.x.PBD.plug(self.s, pbd))
        for u in (dropped, ok(self.x.VDI.get_uuid(self.s, snap)), ok(self.x.VDI.get_uuid(self.s, vdi))):
            ok(self.x.VDI.destroy(self.s, ok(self.x.VDI.get_by_uuid(self.s, u))))  # the base copy goes with them
        self.assertEqual(ok(self.x.SR.get_VDIs(self.s, sr)), [])
        self.assertEqual(os.listdir(here), [])
        ok(self.x.PBD.unplug(self.s, pbd))
        ok(self.x.SR.destroy(self.s, sr))
        self.assertFalse(os.path.exists(here))
        self.assertEqual(self.nfs.mounts(), [])

    def test_nosubdir_is_the_export_itself(self):
        """sm_config nosubdir=true (CloudStack's primary storage): the SR's VDIs are the export's files."""
        export = self.nfs.path(EXPORT)
        before = set(os.listdir(export))
        sr = self.create(sm_config={"nosubdir": "true"})
        self.assertEqual(set(os.listdir(export)), before)
        mount = [c for c in self.nfs.calls() if c[0] == "mount"][-1]
        self.assertEqual(mount[5:], ["127.0.0.1:" + EXPORT, self.mounted_at(sr)])
        vdi = self.new_vdi(sr, 2 * MiB)
        loc = ok(self.x.VDI.get_location(self.s, vdi))
        self.assertEqual(set(os.listdir(export)) - before, {loc + ".vhd"})
        ok(self.x.VDI.destroy(self.s, vdi))
        for p in ok(self.x.SR.get_PBDs(self.s, sr)):
            ok(self.x.PBD.unplug(self.s, p))
        ok(self.x.SR.destroy(self.s, sr))
        self.assertEqual(set(os.listdir(export)), before)
        self.assertTrue(os.path.isdir(export))  # the export stays
        self.assertEqual(self.nfs.mounts(), [])

    def test_mount_failures_are_nfs_mount_errors(self):
        for dc, message in (
                ({"server": "127.0.0.1", "serverpath": "/export/other"}, "access denied by server"),
                ({"server": "nfs.invalid", "serverpath": EXPORT}, "Failed to resolve server nfs.invalid"),
                ({"server": "127.0.0.1", "serverpath": EXPORT + "/missing"}, "No such file or directory")):
            err = fail(self.x.SR.create(self.s, self.host(), dc, "0", "bad", "", "nfs", "user", True, {}))
            self.assertEqual(err[:2], ["SR_BACKEND_FAILURE_73", ""], (dc, err))
            self.assertTrue(err[2].startswith("NFS mount error [opterr="), err)
            self.assertIn(message, err[2])
        self.assertEqual(self.nfs.mounts(), [])
        self.assertEqual(os.listdir(self.root), [])  # no mount point left behind

    def test_probe(self):
        err = fail(self.x.SR.probe(self.s, self.host(), {"server": "127.0.0.1"}, "nfs", {}))
        self.assertEqual(err[:3], ["SR_BACKEND_FAILURE_101", "", "The request is missing the serverpath parameter"])
        exports = xml.dom.minidom.parseString(err[3])
        self.assertEqual([p.firstChild.data for p in exports.getElementsByTagName("Path")], [EXPORT])
        self.assertEqual([t.firstChild.data for t in exports.getElementsByTagName("Target")], ["127.0.0.1"])
        sr_uuid = ok(self.x.SR.get_uuid(self.s, self.create()))
        found = xml.dom.minidom.parseString(ok(self.x.SR.probe(self.s, self.host(), {
            "server": "127.0.0.1", "serverpath": EXPORT}, "nfs", {})))
        self.assertIn(sr_uuid, [u.firstChild.data.strip() for u in found.getElementsByTagName("UUID")])
        self.assertEqual(self.nfs.mounts(), [os.path.realpath(os.path.join(self.root, sr_uuid))])


if __name__ == "__main__":
    unittest.main()
