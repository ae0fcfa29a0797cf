"""The "file" SR (storage/drv_file.c) as xapi's FileSR: a directory that
CloudStack makes an SR of to reach a template on secondary storage, holding
<uuid>.vhd images (with their parents) besides the raw <uuid>.raw files
VDI.create makes there (as earlier versions did, whose stores keep working).
SR.scan introduces both, a snapshot of a VHD is a chain as on ext, one of a
raw file a copy; VDI.create makes a VHD when sm_config type=vhd asks."""

import errno
import os
import sys
import tempfile
import uuid

from harness import fail, ok
from test_ext_sr import MiB, ExtBase, vhd_util

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compat", "plugins"))
import vhdfile  # noqa: E402


class FileSrTest(ExtBase):
    def file_sr(self):
        """createFileSR: SR.introduce of a "file" SR named by its path, a PBD on location, plug, scan."""
        path = tempfile.mkdtemp(dir=self.root)
        sr = ok(self.x.SR.introduce(self.s, str(uuid.uuid4()), path, path, "file", "file", False, {}))
        pbd = ok(self.x.PBD.create(self.s, {"host": self.host(), "SR": sr, "device_config": {"location": path}}))
        ok(self.x.PBD.plug(self.s, pbd))
        self.addCleanup(self.destroy_sr, sr)
        return sr, path

    def test_scan_takes_vhds_with_their_parents_and_raw_files(self):
        sr, d = self.file_sr()
        template, parent, child, raw = (str(uuid.uuid4()) for _ in range(4))
        vhdfile.write_fixed(os.path.join(d, template + ".vhd"), 2 * MiB, template)
        vhd_util("create", "-n", os.path.join(d, parent + ".vhd"), "-s", "8")
        vhd_util("snapshot", "-n", os.path.join(d, child + ".vhd"), "-p", os.path.join(d, parent + ".vhd"))
        with open(os.path.join(d, raw + ".raw"), "wb") as f:
            f.write(b"R" * MiB)
        with open(os.path.join(d, "template.properties"), "w") as f:  # beside CloudStack's templates
            f.write("filename=%s.vhd\n" % template)
        ok(self.x.SR.scan(self.s, sr))
        found = self.by_uuid(sr)
        self.assertEqual(sorted(found), sorted([template, parent, child, raw]))
        self.assertEqual(found[template]["sm_config"].get("vdi_type"), "vhd")
        self.assertEqual(found[template]["virtual_size"], str(2 * MiB))
        self.assertEqual(found[child]["sm_config"]["vhd-parent"], parent)
        self.assertNotIn("vhd-parent", found[parent]["sm_config"])
        self.assertEqual(found[child]["virtual_size"], str(8 * MiB))
        self.assertEqual(found[raw]["sm_config"].get("vdi_type"), "raw")
        self.assertEqual(found[raw]["virtual_size"], str(MiB))
        self.assertEqual(self.export(ok(self.x.VDI.get_by_uuid(self.s, raw))), b"R" * MiB)
        # the fixed VHD's disk is its data, not its footer
        self.assertEqual(self.export(ok(self.x.VDI.get_by_uuid(self.s, template))), bytes(2 * MiB))
        os.unlink(os.path.join(d, child + ".vhd"))
        ok(self.x.SR.scan(self.s, sr))
        self.assertNotIn(child, self.by_uuid(sr))

    def test_created_vdis_stay_raw_and_vhds_chain(self):
        sr, d = self.file_sr()
        a = self.new_vdi(sr, 4 * MiB)
        loc = self.rec(a)["location"]
        self.assertEqual(os.listdir(d), [loc + ".raw"])
        self.assertEqual(os.path.getsize(os.path.join(d, loc + ".raw")), 4 * MiB)
        self.assertEqual(self.put(a, b"A" * MiB)[0], 200)
        # a raw VDI's clone is a copy of the file, no chain
        c = ok(self.x.VDI.clone(self.s, a, {}))
        self.assertNotIn("vhd-parent", self.rec(c)["sm_config"])
        self.assertEqual(sorted(os.listdir(d)), sorted([loc + ".raw", self.rec(c)["location"] + ".raw"]))
        # a VHD dropped in snapshots as a chain: a hidden base copy under two leaves
        v = str(uuid.uuid4())
        vhd_util("create", "-n", os.path.join(d, v + ".vhd"), "-s", "4")
        ok(self.x.SR.scan(self.s, sr))
        vdi = ok(self.x.VDI.get_by_uuid(self.s, v))
        self.assertEqual(self.put(vdi, b"V" * MiB)[0], 200)
        snap = ok(self.x.VDI.snapshot(self.s, vdi, {}))
        base = self.rec(vdi)["sm_config"]["vhd-parent"]
        self.assertEqual(self.rec(snap)["sm_config"]["vhd-parent"], base)
        self.assertIs(self.rec(ok(self.x.VDI.get_by_uuid(self.s, base)))["managed"], False)
        self.assertTrue(self.rec(snap)["is_a_snapshot"])
        self.assertEqual(self.export(snap)[:MiB], b"V" * MiB)
        # and it copies to primary storage (ext) as a VHD reading the same
        ext = self.make_sr()
        copy = ok(self.x.VDI.copy(self.s, snap, ext))
        self.assertEqual(self.rec(copy)["sm_config"].get("vdi_type"), "vhd")
        self.assertEqual(self.export(copy), self.export(snap))

    def test_sm_config_type_vhd_makes_a_vhd(self):
        """VDI.create with sm_config type=vhd, as sm's FileSR takes it: a VHD image, which chains."""
        sr, d = self.file_sr()
        vdi = self.new_vdi(sr, 4 * MiB, sm_config={"type": "vhd"})
        rec = self.rec(vdi)
        self.assertEqual(os.listdir(d), [rec["location"] + ".vhd"])
        self.assertEqual(rec["sm_config"].get("vdi_type"), "vhd")
        self.assertEqual(rec["virtual_size"], str(4 * MiB))
        self.assertEqual(vhd_util("query", "-n", os.path.join(d, rec["location"] + ".vhd"), "-v"), "4")
        clone = ok(self.x.VDI.clone(self.s, vdi, {}))
        self.assertEqual(self.rec(clone)["sm_config"]["vhd-parent"], self.rec(vdi)["sm_config"]["vhd-parent"])
        raw = self.new_vdi(sr, MiB, sm_config={"type": "raw"})
        self.assertEqual(self.rec(raw)["sm_config"].get("vdi_type"), "raw")

    def test_raw_larger_than_the_filesystem_takes_is_an_invalid_size(self):
        sr, d = self.file_sr()
        size = 16 << 40  # the API's largest VDI
        with tempfile.TemporaryFile(dir=d) as f:
            try:
                os.ftruncate(f.fileno(), size)
                self.skipTest("this filesystem takes a file of 16 TiB")
            except OSError as e:
                self.assertEqual(e.errno, errno.EFBIG)
        rec = {"SR": sr, "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
               "other_config": {}, "name_label": "too big"}
        err = fail(self.x.VDI.create(self.s, rec))
        self.assertEqual(err[:2], ["SR_BACKEND_FAILURE_79", ""], err)
        self.assertTrue(err[2].startswith("VDI Invalid size"), err)
        self.assertEqual(os.listdir(d), [])
        vdi = self.new_vdi(sr, MiB)
        self.assertEqual(fail(self.x.VDI.resize(self.s, vdi, str(size)))[0], "SR_BACKEND_FAILURE_79")
        self.assertEqual(self.rec(vdi)["virtual_size"], str(MiB))


if __name__ == "__main__":
    import unittest
    unittest.main()
