"""Nothing in a file or ISO SR's directory leads outside it: a symlink or a
hard link planted there (by whoever can write to an ISO library share, say)
is neither followed nor introduced, so export does not read, and import,
resize and copy do not write, a file elsewhere on the host."""

import os
import urllib.parse

from harness import fail, ok
from test_storage import StorageBase

MiB = 1 << 20
SECRET = b"host secret, not a disk\n" * 100
PLANTED_UUID = "0f1e2d3c-4b5a-4697-8877-665544332211"
PLANTED_VHD_UUID = "1f1e2d3c-4b5a-4697-8877-665544332211"


class LinksBase(StorageBase):
    def setUp(self):
        self.outside = os.path.join(self.tmpdir(), "outside")
        with open(self.outside, "wb") as f:
            f.write(SECRET)

    def assert_outside_untouched(self):
        with open(self.outside, "rb") as f:
            self.assertEqual(f.read(), SECRET, "a file outside the SR was written through a link")

    def plant(self, at):
        """Replaces at (a path in an SR directory) with a link to the outside file."""
        if os.path.lexists(at):
            os.unlink(at)
        if self.hard:
            os.link(self.outside, at)
        else:
            os.symlink(self.outside, at)

    def export(self, vdi):
        q = urllib.parse.urlencode({"session_id": self.s, "vdi": vdi})
        return self.d.http("GET", "/export_raw_vdi?" + q, timeout=30)

    def import_(self, vdi, body):
        """(status, headers, body); a refusal may come before the body is sent and close the
        connection under the client: that is (None, {}, b"")."""
        q = urllib.parse.urlencode({"session_id": self.s, "vdi": vdi})
        try:
            return self.d.http("PUT", "/import_raw_vdi?" + q, body, {"Content-Type": "application/octet-stream"},
                               timeout=30)
        except (BrokenPipeError, ConnectionResetError):
            return None, {}, b""

    def check_file_sr(self):
        sr, path = self.new_sr("links")
        vdi = self.new_vdi(sr, size=4 * MiB)
        other = self.new_vdi(sr, size=4 * MiB)
        self.plant(self.vdi_file(vdi))

        status, _, body = self.export(vdi)
        self.assertNotEqual(status, 200)
        self.assertNotIn(SECRET[:20], body)
        status, _, body = self.import_(vdi, b"\xee" * MiB)
        self.assertNotEqual(status, 200, body)
        self.assert_outside_untouched()

        r = fail(self.x.VDI.resize(self.s, vdi, str(8 * MiB)))
        self.assertTrue(r[0].startswith("SR_BACKEND_FAILURE"), r)
        self.assertEqual(os.path.getsize(self.outside), len(SECRET))
        self.assertEqual(fail(self.x.VDI.copy(self.s, vdi, sr, "", "")), ["VDI_MISSING", sr, vdi])
        self.assertEqual(fail(self.x.VDI.clone(self.s, vdi, {})), ["VDI_MISSING", sr, vdi])
        # the planted link as the target of a copy into an existing VDI
        r = fail(self.x.VDI.copy(self.s, other, "OpaqueRef:NULL", "", vdi))
        self.assertTrue(r[0].startswith("SR_BACKEND_FAILURE"), r)
        # a copy that failed in its I/O leaves neither VDI marked busy
        self.assertEqual(ok(self.x.VDI.get_current_operations(self.s, vdi)), {})
        self.assertEqual(ok(self.x.VDI.get_current_operations(self.s, other)), {})
        self.assert_outside_untouched()
        # and as a VM's disk
        vm = self.new_vm()
        ok(self.x.VBD.create(self.s, self.vbd_rec(vm, vdi, userdevice="0")))
        self.assertEqual(fail(self.x.VM.start(self.s, vm, False, False))[0], "VDI_MISSING")

        # a scan does not take a link for a VDI, raw or VHD
        self.plant(os.path.join(path, PLANTED_UUID + ".raw"))
        self.plant(os.path.join(path, PLANTED_VHD_UUID + ".vhd"))
        ok(self.x.SR.scan(self.s, sr))
        self.assertEqual(fail(self.x.VDI.get_by_uuid(self.s, PLANTED_UUID))[0], "UUID_INVALID")
        self.assertEqual(fail(self.x.VDI.get_by_uuid(self.s, PLANTED_VHD_UUID))[0], "UUID_INVALID")
        self.assertNotIn(vdi, ok(self.x.SR.get_VDIs(self.s, sr)))
        self.assertIn(other, ok(self.x.SR.get_VDIs(self.s, sr)))
        self.assert_outside_untouched()

    def check_iso_sr(self):
        lib = self.tmpdir()
        with open(os.path.join(lib, "real.iso"), "wb") as f:
            f.write(b"CD001" * 100)
        with open(os.path.join(lib, "later.iso"), "wb") as f:
            f.write(b"CD001")
        self.plant(os.path.join(lib, "evil.iso"))
        sr, _ = self.new_sr("ISO links", type="iso", path=lib)
        vdis = {self.vdi(v)["location"]: v for v in ok(self.x.SR.get_VDIs(self.s, sr))}
        self.assertEqual(sorted(vdis), ["later.iso", "real.iso"])
        r = fail(self.x.VDI.introduce(self.s, "", "", "", sr, "user", False, True, {}, "evil.iso", {}, {}))
        self.assertEqual(r, ["VDI_LOCATION_MISSING", sr, "evil.iso"])

        # an image replaced by a link after the scan
        self.plant(os.path.join(lib, "later.iso"))
        status, _, body = self.export(vdis["later.iso"])
        self.assertNotEqual(status, 200)
        self.assertNotIn(SECRET[:20], body)
        self.assertEqual(fail(self.x.VDI.copy(self.s, vdis["later.iso"], self.local_sr(), "", "")),
                         ["VDI_MISSING", sr, vdis["later.iso"]])
        status, _, body = self.export(vdis["real.iso"])
        self.assertEqual((status, body), (200, b"CD001" * 100))
        ok(self.x.SR.scan(self.s, sr))
        self.assertEqual([self.vdi(v)["location"] for v in ok(self.x.SR.get_VDIs(self.s, sr))], ["real.iso"])
        self.assert_outside_untouched()


class TestSymlinks(LinksBase):
    hard = False

    def test_file_sr(self):
        self.check_file_sr()

    def test_iso_sr(self):
        self.check_iso_sr()

    def test_fifo_does_not_block(self):
        sr, _ = self.new_sr("fifo")
        vdi = self.new_vdi(sr, size=MiB)
        os.unlink(self.vdi_file(vdi))
        os.mkfifo(self.vdi_file(vdi))
        for attempt in self.export, lambda v: self.import_(v, b"x" * 512):
            status, _, _ = attempt(vdi)  # before: the open waited for a writer (or a reader) for ever
            self.assertEqual(status, 404)
        self.assertEqual(fail(self.x.VDI.clone(self.s, vdi, {})), ["VDI_MISSING", sr, vdi])

    def test_file_names_the_api_cannot_carry_are_not_introduced(self):
        lib = self.tmpdir()
        for name in (b"ok.iso", b"bad\xff.iso", "nonchar\ufffe.iso".encode(), b"ctl\x1b.iso"):
            with open(os.path.join(lib.encode(), name), "wb") as f:
                f.write(b"x")
        sr, _ = self.new_sr("ISO names", type="iso", path=lib)
        recs = ok(self.x.VDI.get_all_records(self.s))  # XML-RPC: ExpatError before
        self.assertEqual(sorted(r["location"] for r in recs.values() if r["SR"] == sr), ["ok.iso"])

    def test_locations_stay_in_the_directory(self):
        lib = self.tmpdir()
        with open(os.path.join(lib, "a.iso"), "wb") as f:
            f.write(b"x")
        sr, _ = self.new_sr("ISO names", type="iso", path=lib)
        for loc in ("../outside.iso", "..", "/etc/passwd.iso", ".hidden.iso", "sub/a.iso"):
            with self.subTest(location=loc):
                r = fail(self.x.VDI.introduce(self.s, "", "", "", sr, "user", False, True, {}, loc, {}, {}))
                self.assertEqual(r, ["VDI_LOCATION_MISSING", sr, loc])


class TestHardLinks(LinksBase):
    hard = True

    def test_file_sr(self):
        self.check_file_sr()

    def test_iso_sr(self):
        self.check_iso_sr()


if __name__ == "__main__":
    import unittest
    unittest.main()
