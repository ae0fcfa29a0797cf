"""Storage over XML-RPC against the real daemon: the local SR made at first
start, file and ISO SRs, PBDs, VDIs whose data lives in sparse raw files
(checked on disk), clone/copy/snapshot carrying the data, scans, VBD rules,
and the errors xapi gives with their parameters."""

import os
import tempfile
import time
import unittest

from harness import Daemon, DaemonTest, fail, ok

MiB = 1 << 20


class StorageBase(DaemonTest):
    def host(self):
        return ok(self.x.session.get_this_host(self.s, self.s))

    def pool(self):
        return ok(self.x.pool.get_all(self.s))[0]

    def local_sr(self):
        return ok(self.x.pool.get_default_SR(self.s, self.pool()))

    def file_sr(self):
        """A file SR of the test's own (the local SR is ext): raw files checked on disk."""
        if not getattr(self, "_file_sr", None):
            self._file_sr = self.new_sr("raw files")[0]
        return self._file_sr

    def pbd_of(self, sr):
        pbds = ok(self.x.SR.get_PBDs(self.s, sr))
        self.assertEqual(len(pbds), 1)
        return pbds[0]

    def sr_path(self, sr):
        dc = ok(self.x.PBD.get_device_config(self.s, self.pbd_of(sr)))
        return dc.get("location") or dc["path"]

    def tmpdir(self):
        return tempfile.mkdtemp(dir=self.d.tmp)

    def new_sr(self, name="test SR", type="file", path=None, content_type=""):
        path = path or os.path.join(self.tmpdir(), "sr")
        sr = ok(self.x.SR.create(self.s, self.host(), {"location": path}, "0", name, "", type, content_type,
                                 False, {}))
        return sr, path

    def vdi_rec(self, sr, size=16 * MiB, name="disk", **extra):
        rec = {"SR": sr, "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
               "other_config": {}, "name_label": name}
        rec.update(extra)
        return rec

    def new_vdi(self, sr, size=16 * MiB, name="disk", **extra):
        return ok(self.x.VDI.create(self.s, self.vdi_rec(sr, size, name, **extra)))

    def vdi(self, ref):
        return ok(self.x.VDI.get_record(self.s, ref))

    def vdi_file(self, ref):
        rec = self.vdi(ref)
        return os.path.join(self.sr_path(rec["SR"]), rec["location"] + ".raw")

    def write_at(self, path, offset, data):
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def read_at(self, path, offset, n):
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(n)

    def new_vm(self, name="vm"):
        tpl = ok(self.x.VM.get_by_name_label(self.s, "Generic Linux PV"))[0]
        vm = ok(self.x.VM.clone(self.s, tpl, name))
        ok(self.x.VM.set_is_a_template(self.s, vm, False))
        return vm

    def vbd_rec(self, vm, vdi, userdevice="autodetect", type="Disk", mode="RW", empty=False):
        return {"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": False, "mode": mode, "type": type,
                "empty": empty, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}


class TestLocalSR(StorageBase):
    def test_default_sr_is_local_ext_sr(self):
        sr = self.local_sr()
        rec = ok(self.x.SR.get_record(self.s, sr))
        self.assertEqual(rec["name_label"], "Local storage")
        self.assertEqual(rec["type"], "ext")
        self.assertEqual(rec["content_type"], "user")
        self.assertFalse(rec["shared"])
        self.assertEqual(rec["other_config"].get("i18n-key"), "local-storage")
        self.assertGreater(int(rec["physical_size"]), 0)
        self.assertGreater(int(rec["physical_utilisation"]), 0)
        self.assertIn("vdi_create", rec["allowed_operations"])
        self.assertIn("scan", rec["allowed_operations"])
        self.assertNotIn("destroy", rec["allowed_operations"])  # plugged

    def test_its_pbd_is_plugged_under_state_dir(self):
        sr = self.local_sr()
        pbd = ok(self.x.PBD.get_record(self.s, self.pbd_of(sr)))
        self.assertTrue(pbd["currently_attached"])
        self.assertEqual(pbd["host"], self.host())
        uuid = ok(self.x.SR.get_uuid(self.s, sr))
        expected = os.path.join(os.path.realpath(self.d.state_dir), "sr", uuid)
        self.assertEqual(pbd["device_config"], {"path": expected})
        self.assertTrue(os.path.isdir(expected))
        self.assertIn(self.pbd_of(sr), ok(self.x.host.get_PBDs(self.s, self.host())))

    def test_pool_and_host_srs(self):
        sr = self.local_sr()
        pool = self.pool()
        self.assertEqual(ok(self.x.pool.get_suspend_image_SR(self.s, pool)), sr)
        self.assertEqual(ok(self.x.pool.get_crash_dump_SR(self.s, pool)), sr)
        self.assertEqual(ok(self.x.host.get_suspend_image_sr(self.s, self.host())), sr)
        self.assertEqual(ok(self.x.host.get_crash_dump_sr(self.s, self.host())), sr)
        self.assertEqual(len(ok(self.x.SR.get_by_name_label(self.s, "Local storage"))), 1)

    def test_supported_types(self):
        types = ok(self.x.SR.get_supported_types(self.s))
        self.assertIn("file", types)
        self.assertIn("iso", types)


class TestFileSR(StorageBase):
    def test_create_makes_the_directory(self):
        path = os.path.join(self.tmpdir(), "a", "b")
        sr, _ = self.new_sr("made", path=path)
        self.assertTrue(os.path.isdir(path))
        rec = ok(self.x.SR.get_record(self.s, sr))
        self.assertEqual((rec["type"], rec["content_type"], rec["name_label"]), ("file", "user", "made"))
        pbd = ok(self.x.PBD.get_record(self.s, self.pbd_of(sr)))
        self.assertTrue(pbd["currently_attached"])
        self.assertEqual(pbd["device_config"], {"location": path})
        self.assertEqual(pbd["host"], self.host())
        self.assertEqual(rec["VDIs"], [])
        self.assertEqual(rec["virtual_allocation"], "0")

    def test_create_errors(self):
        host = self.host()
        r = fail(self.x.SR.create(self.s, host, {"location": self.tmpdir()}, "0", "x", "", "cslg", "", False, {}))
        self.assertEqual(r, ["SR_UNKNOWN_DRIVER", "cslg"])
        r = fail(self.x.SR.create(self.s, host, {}, "0", "x", "", "file", "", False, {}))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_94")
        self.assertEqual((r[1], r[3]), ("", ""))
        self.assertIn("location", r[2])
        r = fail(self.x.SR.create(self.s, host, {"location": "relative/dir"}, "0", "x", "", "file", "", False, {}))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_1")
        busy = self.tmpdir()
        open(os.path.join(busy, "something"), "w").close()
        r = fail(self.x.SR.create(self.s, host, {"location": busy}, "0", "x", "", "file", "", False, {}))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_42")
        r = fail(self.x.SR.create(self.s, "OpaqueRef:nope", {"location": self.tmpdir()}, "0", "x", "", "file", "",
                                  False, {}))
        self.assertEqual(r, ["HANDLE_INVALID", "host", "OpaqueRef:nope"])
        r = fail(self.x.SR.create(self.s, host, {"location": "/x", "SRmaster": "true"}, "0", "x", "", "file", "",
                                  False, {}))
        self.assertEqual(r, ["VALUE_NOT_SUPPORTED", "SRmaster", "true", "This key is for internal use only"])
        # The same directory twice.
        sr, path = self.new_sr("once")
        r = fail(self.x.SR.create(self.s, host, {"location": path}, "0", "x", "", "file", "", False, {}))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_42")
        self.assertEqual(len(ok(self.x.SR.get_by_name_label(self.s, "x"))), 0)

    def test_introduce_pbd_plug_scan_forget(self):
        """CloudStack's secondary-storage flow on a directory that already holds a disk."""
        host = self.host()
        path = self.tmpdir()
        disk_uuid = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
        with open(os.path.join(path, disk_uuid + ".raw"), "wb") as f:
            f.truncate(3 * MiB)
        sr_uuid = "5f2c1e0a-1111-4222-8333-944455556666"
        sr = ok(self.x.SR.introduce(self.s, sr_uuid, path, path, "file", "file", False, {}))
        self.assertEqual(ok(self.x.SR.get_uuid(self.s, sr)), sr_uuid)
        self.assertEqual(fail(self.x.SR.introduce(self.s, sr_uuid, "", "", "file", "", False, {})),
                         ["SR_UUID_EXISTS", sr_uuid])
        self.assertEqual(fail(self.x.SR.introduce(self.s, "not-a-uuid", "", "", "file", "", False, {})),
                         ["UUID_INVALID", "SR", "not-a-uuid"])
        self.assertEqual(fail(self.x.SR.scan(self.s, sr)), ["SR_NOT_ATTACHED", sr])
        pbd = ok(self.x.PBD.create(self.s, {"host": host, "SR": sr, "device_config": {"location": path},
                                            "other_config": {}}))
        self.assertFalse(ok(self.x.PBD.get_currently_attached(self.s, pbd)))
        r = fail(self.x.PBD.create(self.s, {"host": host, "SR": sr, "device_config": {"location": path},
                                            "other_config": {}}))
        self.assertEqual(r, ["PBD_EXISTS", sr, host, pbd])
        self.assertEqual(fail(self.x.VDI.create(self.s, self.vdi_rec(sr))), ["SR_HAS_NO_PBDS", sr])
        ok(self.x.PBD.plug(self.s, pbd))
        self.assertTrue(ok(self.x.PBD.get_currently_attached(self.s, pbd)))
        ok(self.x.SR.scan(self.s, sr))
        vdis = ok(self.x.SR.get_VDIs(self.s, sr))
        self.assertEqual(len(vdis), 1)
        rec = self.vdi(vdis[0])
        self.assertEqual((rec["uuid"], rec["location"], rec["virtual_size"]), (disk_uuid, disk_uuid, str(3 * MiB)))
        self.assertTrue(rec["managed"])
        # Removal as CloudStack does it: forget the VDIs, unplug, destroy the PBD, forget the SR.
        self.assertEqual(fail(self.x.SR.forget(self.s, sr)), ["SR_HAS_PBD", sr])
        r = fail(self.x.PBD.destroy(self.s, pbd))
        self.assertEqual(r, ["OPERATION_NOT_ALLOWED", "PBD is currently attached"])
        ok(self.x.VDI.forget(self.s, vdis[0]))
        ok(self.x.PBD.unplug(self.s, pbd))
        ok(self.x.PBD.destroy(self.s, pbd))
        ok(self.x.SR.forget(self.s, sr))
        self.assertEqual(fail(self.x.SR.get_record(self.s, sr))[0], "HANDLE_INVALID")
        self.assertTrue(os.path.exists(os.path.join(path, disk_uuid + ".raw")))  # forget keeps the data

    def test_unknown_driver_at_plug(self):
        sr = ok(self.x.SR.introduce(self.s, "", "odd", "", "cifs", "user", True, {}))
        pbd = ok(self.x.PBD.create(self.s, {"host": self.host(), "SR": sr, "device_config": {}, "other_config": {}}))
        self.assertEqual(fail(self.x.PBD.plug(self.s, pbd)), ["SR_UNKNOWN_DRIVER", "cifs"])
        # nfs is a driver: its PBD without a server fails as sm's NFSSR (ConfigServerMissing).
        nsr = ok(self.x.SR.introduce(self.s, "", "nfs", "", "nfs", "user", True, {}))
        npbd = ok(self.x.PBD.create(self.s, {"host": self.host(), "SR": nsr, "device_config": {},
                                             "other_config": {}}))
        self.assertEqual(fail(self.x.PBD.plug(self.s, npbd))[:2],
                         ["SR_BACKEND_FAILURE_100", ""])
        bad = {"server": "127.0.0.1", "serverpath": "/a/../b"}
        r = fail(self.x.SR.create(self.s, self.host(), bad, 0, "n", "", "nfs", "user", True, {}))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_102")
        r = fail(self.x.SR.create(self.s, self.host(), {"server": "127.0.0.1"}, 0, "n", "", "nfs", "user", True, {}))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_101")
        r = fail(self.x.PBD.create(self.s, {"host": self.host(), "SR": "OpaqueRef:gone", "device_config": {},
                                            "other_config": {}}))
        self.assertEqual(r, ["HANDLE_INVALID", "SR", "OpaqueRef:gone"])
        # A bare record with no SR can be made, never plugged.
        bare = ok(self.x.PBD.create(self.s, {"host": self.host(), "SR": "OpaqueRef:NULL", "device_config": {},
                                             "other_config": {}}))
        self.assertEqual(fail(self.x.PBD.plug(self.s, bare)), ["HANDLE_INVALID", "SR", "OpaqueRef:NULL"])
        ok(self.x.PBD.destroy(self.s, bare))

    def test_plug_fails_when_directory_is_gone(self):
        sr, path = self.new_sr("vanishing")
        pbd = self.pbd_of(sr)
        ok(self.x.PBD.unplug(self.s, pbd))
        os.rmdir(path)
        r = fail(self.x.PBD.plug(self.s, pbd))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_47")
        self.assertIn("No such file or directory", r[2])
        self.assertFalse(ok(self.x.PBD.get_currently_attached(self.s, pbd)))
        os.mkdir(path)
        ok(self.x.PBD.plug(self.s, pbd))
        self.assertTrue(ok(self.x.PBD.get_currently_attached(self.s, pbd)))

    def test_destroy(self):
        sr, path = self.new_sr("doomed")
        vdi = self.new_vdi(sr)
        self.assertEqual(fail(self.x.SR.destroy(self.s, sr)), ["SR_HAS_PBD", sr])
        ok(self.x.PBD.unplug(self.s, self.pbd_of(sr)))
        self.assertNotIn("destroy", ok(self.x.SR.get_allowed_operations(self.s, sr)))  # not empty
        self.assertIn("forget", ok(self.x.SR.get_allowed_operations(self.s, sr)))
        self.assertEqual(fail(self.x.SR.destroy(self.s, sr)), ["SR_NOT_EMPTY"])
        self.assertEqual(fail(self.x.VDI.destroy(self.s, vdi)), ["SR_HAS_NO_PBDS", sr])
        ok(self.x.PBD.plug(self.s, self.pbd_of(sr)))
        ok(self.x.VDI.destroy(self.s, vdi))
        ok(self.x.PBD.unplug(self.s, self.pbd_of(sr)))
        self.assertIn("destroy", ok(self.x.SR.get_allowed_operations(self.s, sr)))
        pbd = self.pbd_of(sr)
        ok(self.x.SR.destroy(self.s, sr))
        self.assertFalse(os.path.exists(path))
        self.assertEqual(fail(self.x.SR.get_record(self.s, sr)), ["HANDLE_INVALID", "SR", sr])
        self.assertEqual(fail(self.x.PBD.get_record(self.s, pbd)), ["HANDLE_INVALID", "PBD", pbd])

    def test_destroy_without_pbds(self):
        sr = ok(self.x.SR.introduce(self.s, "", "bare", "", "file", "user", False, {}))
        self.assertEqual(fail(self.x.SR.destroy(self.s, sr)), ["SR_HAS_NO_PBDS", sr])
        ok(self.x.SR.forget(self.s, sr))

    def test_scan_introduces_and_forgets(self):
        sr, path = self.new_sr("scanned")
        kept = self.new_vdi(sr, name="kept")
        gone = self.new_vdi(sr, name="gone")
        dropped = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
        with open(os.path.join(path, dropped + ".raw"), "wb") as f:
            f.truncate(5 * MiB)
        open(os.path.join(path, "notes.txt"), "w").close()  # not a VDI
        os.unlink(self.vdi_file(gone))
        ok(self.x.SR.scan(self.s, sr))
        vdis = ok(self.x.SR.get_VDIs(self.s, sr))
        self.assertIn(kept, vdis)
        self.assertNotIn(gone, vdis)
        self.assertEqual(fail(self.x.VDI.get_record(self.s, gone)), ["HANDLE_INVALID", "VDI", gone])
        new = ok(self.x.VDI.get_by_uuid(self.s, dropped))
        self.assertIn(new, vdis)
        rec = self.vdi(new)
        self.assertEqual((rec["SR"], rec["location"], rec["virtual_size"], rec["type"]),
                         (sr, dropped, str(5 * MiB), "user"))
        self.assertEqual(len(vdis), 2)
        self.assertEqual(ok(self.x.SR.get_virtual_allocation(self.s, sr)), str(16 * MiB + 5 * MiB))
        ok(self.x.SR.scan(self.s, sr))  # idempotent: same refs
        self.assertEqual(sorted(ok(self.x.SR.get_VDIs(self.s, sr))), sorted(vdis))

    def test_update_and_names(self):
        sr, _ = self.new_sr("named")
        ok(self.x.SR.update(self.s, sr))
        self.assertGreater(int(ok(self.x.SR.get_physical_size(self.s, sr))), 0)
        ok(self.x.SR.set_name_label(self.s, sr, "renamed"))
        ok(self.x.SR.set_name_description(self.s, sr, "described"))
        rec = ok(self.x.SR.get_record(self.s, sr))
        self.assertEqual((rec["name_label"], rec["name_description"]), ("renamed", "described"))
        ok(self.x.PBD.unplug(self.s, self.pbd_of(sr)))
        self.assertEqual(fail(self.x.SR.update(self.s, sr)), ["SR_NOT_ATTACHED", sr])
        self.assertEqual(fail(self.x.SR.scan(self.s, "OpaqueRef:bad")), ["HANDLE_INVALID", "SR", "OpaqueRef:bad"])

    def test_iso_sr(self):
        lib = self.tmpdir()
        with open(os.path.join(lib, "install.iso"), "wb") as f:
            f.write(b"CD001" * 1000)
        open(os.path.join(lib, "floppy.img"), "wb").close()
        open(os.path.join(lib, "readme.txt"), "w").close()
        sr, _ = self.new_sr("ISOs", type="iso", path=lib)
        rec = ok(self.x.SR.get_record(self.s, sr))
        self.assertEqual((rec["type"], rec["content_type"]), ("iso", "iso"))
        vdis = {self.vdi(v)["location"]: v for v in rec["VDIs"]}
        self.assertEqual(sorted(vdis), ["floppy.img", "install.iso"])
        iso = self.vdi(vdis["install.iso"])
        self.assertEqual((iso["name_label"], iso["virtual_size"]), ("install.iso", "5000"))
        self.assertTrue(iso["read_only"])
        self.assertEqual(fail(self.x.VDI.create(self.s, self.vdi_rec(sr))), ["SR_OPERATION_NOT_SUPPORTED", sr])
        self.assertEqual(fail(self.x.VDI.destroy(self.s, vdis["install.iso"])), ["SR_OPERATION_NOT_SUPPORTED", sr])
        self.assertEqual(fail(self.x.VDI.clone(self.s, vdis["install.iso"], {})), ["SR_OPERATION_NOT_SUPPORTED", sr])
        # Only images: other files of the directory cannot be introduced.
        r = fail(self.x.VDI.introduce(self.s, "", "", "", sr, "user", False, True, {}, "readme.txt", {}, {}))
        self.assertEqual(r, ["VDI_LOCATION_MISSING", sr, "readme.txt"])
        # New images appear with a scan.
        with open(os.path.join(lib, "second.iso"), "wb") as f:
            f.write(b"x" * 10)
        ok(self.x.SR.scan(self.s, sr))
        self.assertEqual(len(ok(self.x.SR.get_VDIs(self.s, sr))), 3)
        # An image copied to a file SR becomes an ordinary writable disk.
        copy = ok(self.x.VDI.copy(self.s, vdis["install.iso"], self.file_sr(), "", ""))
        with open(self.vdi_file(copy), "rb") as f:
            self.assertEqual(f.read(), b"CD001" * 1000)
        self.assertFalse(self.vdi(copy)["read_only"])
        ok(self.x.VDI.destroy(self.s, copy))
        # Destroying the SR leaves the library alone.
        ok(self.x.PBD.unplug(self.s, self.pbd_of(sr)))
        for v in ok(self.x.SR.get_VDIs(self.s, sr)):
            ok(self.x.VDI.forget(self.s, v))
        ok(self.x.SR.destroy(self.s, sr))
        self.assertTrue(os.path.exists(os.path.join(lib, "install.iso")))

    def test_iso_sr_errors(self):
        host = self.host()
        r = fail(self.x.SR.create(self.s, host, {}, "0", "x", "", "iso", "iso", False, {}))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_220")
        r = fail(self.x.SR.create(self.s, host, {"location": os.path.join(self.tmpdir(), "none")}, "0", "x", "",
                                  "iso", "iso", False, {}))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_47")
        r = fail(self.x.SR.create(self.s, host, {"location": "server:/isos"}, "0", "x", "", "iso", "iso", False, {}))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_226")


class TestVDI(StorageBase):
    def test_create_makes_a_sparse_file(self):
        sr, path = self.new_sr("vdis")
        vdi = self.new_vdi(sr, size=64 * MiB, name="data", other_config={"nova_disk_type": "root"})
        rec = self.vdi(vdi)
        self.assertEqual(rec["location"], rec["uuid"])
        f = os.path.join(path, rec["uuid"] + ".raw")
        st = os.stat(f)
        self.assertEqual(st.st_size, 64 * MiB)
        self.assertLess(st.st_blocks * 512, 64 * MiB)  # sparse
        self.assertEqual(rec["virtual_size"], str(64 * MiB))
        self.assertEqual(rec["physical_utilisation"], str(st.st_blocks * 512))
        self.assertEqual((rec["name_label"], rec["type"], rec["SR"]), ("data", "user", sr))
        self.assertEqual(rec["other_config"], {"nova_disk_type": "root"})
        self.assertTrue(rec["managed"])
        self.assertFalse(rec["missing"])
        self.assertFalse(rec["is_a_snapshot"])
        self.assertNotIn("vhd-parent", rec["sm_config"])
        for op in ("clone", "copy", "snapshot", "resize", "destroy"):
            self.assertIn(op, rec["allowed_operations"])
        self.assertIn(vdi, ok(self.x.SR.get_VDIs(self.s, sr)))
        self.assertEqual(ok(self.x.SR.get_virtual_allocation(self.s, sr)), str(64 * MiB))

    def test_create_errors(self):
        sr = self.file_sr()
        r = fail(self.x.VDI.create(self.s, self.vdi_rec(sr, size=-1)))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_79")
        self.assertEqual((r[1], r[3]), ("", ""))
        r = fail(self.x.VDI.create(self.s, self.vdi_rec(sr, size=1 << 50)))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_79")
        r = fail(self.x.VDI.create(self.s, self.vdi_rec(sr, type="cbt_metadata")))
        self.assertEqual(r, ["VDI_INCOMPATIBLE_TYPE", "", "cbt_metadata"])
        r = fail(self.x.VDI.create(self.s, self.vdi_rec("OpaqueRef:missing")))
        self.assertEqual(r, ["HANDLE_INVALID", "SR", "OpaqueRef:missing"])
        r = fail(self.x.VDI.create(self.s, self.vdi_rec(sr, type="no-such-type")))
        self.assertEqual(r[0], "INVALID_VALUE")
        before = len(ok(self.x.SR.get_VDIs(self.s, sr)))
        self.assertEqual(len(ok(self.x.SR.get_VDIs(self.s, sr))), before)

    def test_clone_carries_the_data(self):
        sr, path = self.new_sr("clones")
        src = self.new_vdi(sr, size=32 * MiB, name="golden", other_config={"image-id": "42"})
        f = self.vdi_file(src)
        self.write_at(f, 0, b"BOOT" * 128)
        self.write_at(f, 20 * MiB, b"tail-data")
        clone = ok(self.x.VDI.clone(self.s, src, {}))
        rec = self.vdi(clone)
        cf = os.path.join(path, rec["uuid"] + ".raw")
        self.assertNotEqual(cf, f)
        self.assertEqual(os.stat(cf).st_size, 32 * MiB)
        self.assertEqual(self.read_at(cf, 0, 512), b"BOOT" * 128)
        self.assertEqual(self.read_at(cf, 20 * MiB, 9), b"tail-data")
        self.assertEqual(self.read_at(cf, 10 * MiB, 16), b"\0" * 16)
        self.assertLess(os.stat(cf).st_blocks * 512, 32 * MiB)  # holes stay holes
        self.assertEqual((rec["name_label"], rec["other_config"], rec["virtual_size"], rec["SR"]),
                         ("golden", {"image-id": "42"}, str(32 * MiB), sr))
        self.assertFalse(rec["is_a_snapshot"])
        self.assertEqual(rec["snapshot_of"], "OpaqueRef:NULL")
        self.assertEqual(rec["current_operations"], {})
        self.assertEqual(self.vdi(src)["current_operations"], {})
        # Independent data: writing the clone leaves the source alone.
        self.write_at(cf, 0, b"XXXX")
        self.assertEqual(self.read_at(f, 0, 4), b"BOOT")

    def test_parallel_clones(self):
        """Nova clones one cached image for several instances at once."""
        sr = self.file_sr()
        src = self.new_vdi(sr, size=64 * MiB, name="cached image")
        f = self.vdi_file(src)
        for i in range(8):
            self.write_at(f, i * 8 * MiB, b"block %d" % i)
        tasks = [ok(self.x.Async.VDI.clone(self.s, src, {})) for _ in range(4)]
        clones = []
        for t in tasks:
            for _ in range(1000):
                if ok(self.x.task.get_status(self.s, t)) != "pending":
                    break
                time.sleep(0.02)
            self.assertEqual(ok(self.x.task.get_status(self.s, t)), "success", ok(self.x.task.get_error_info(self.s, t)))
            result = ok(self.x.task.get_result(self.s, t))
            clones.append(result.replace("<value>", "").replace("</value>", ""))
        self.assertEqual(len(set(clones)), 4)
        for c in clones:
            cf = self.vdi_file(c)
            for i in range(8):
                self.assertEqual(self.read_at(cf, i * 8 * MiB, 7), b"block %d" % i)
        self.assertEqual(self.vdi(src)["current_operations"], {})
        for c in clones + [src]:
            ok(self.x.VDI.destroy(self.s, c))

    def test_snapshot(self):
        sr = self.file_sr()
        src = self.new_vdi(sr, size=8 * MiB, name="live")
        self.write_at(self.vdi_file(src), 4096, b"point in time")
        t0 = time.time()
        snap = ok(self.x.VDI.snapshot(self.s, src, {}))
        self.write_at(self.vdi_file(src), 4096, b"changed after")
        rec = self.vdi(snap)
        self.assertTrue(rec["is_a_snapshot"])
        self.assertEqual(rec["snapshot_of"], src)
        self.assertIn(snap, ok(self.x.VDI.get_snapshots(self.s, src)))
        stamp = time.mktime(time.strptime(str(rec["snapshot_time"]), "%Y%m%dT%H:%M:%SZ")) - time.timezone
        self.assertLess(abs(stamp - t0), 120)
        self.assertEqual(self.read_at(self.vdi_file(snap), 4096, 13), b"point in time")
        self.assertEqual(rec["name_label"], "live")
        ok(self.x.VDI.destroy(self.s, snap))
        ok(self.x.VDI.destroy(self.s, src))

    def test_snapshot_rules(self):
        sr = self.file_sr()
        shared = self.new_vdi(sr, sharable=True)
        self.assertEqual(fail(self.x.VDI.snapshot(self.s, shared, {})), ["VDI_IS_SHARABLE", shared])
        reset = self.new_vdi(sr)
        ok(self.x.VDI.set_on_boot(self.s, reset, "reset"))
        self.assertEqual(fail(self.x.VDI.snapshot(self.s, reset, {})), ["VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION"])
        self.assertEqual(fail(self.x.VDI.clone(self.s, "OpaqueRef:x", {})), ["HANDLE_INVALID", "VDI", "OpaqueRef:x"])

    def test_copy_to_another_sr(self):
        src_sr = self.file_sr()
        dst_sr, dst_path = self.new_sr("copies")
        src = self.new_vdi(src_sr, size=4 * MiB, name="original", read_only=True)
        os.chmod(self.vdi_file(src), 0o600)
        self.write_at(self.vdi_file(src), 123, b"copied bytes")
        copy = ok(self.x.VDI.copy(self.s, src, dst_sr, "OpaqueRef:NULL", "OpaqueRef:NULL"))
        rec = self.vdi(copy)
        self.assertEqual(rec["SR"], dst_sr)
        self.assertFalse(rec["read_only"])  # copies are writable
        self.assertFalse(rec["is_a_snapshot"])
        cf = os.path.join(dst_path, rec["location"] + ".raw")
        self.assertEqual(self.read_at(cf, 123, 12), b"copied bytes")
        self.assertEqual(os.stat(cf).st_size, 4 * MiB)
        self.assertEqual(rec["name_label"], "original")
        # Async form, as CloudStack uses it.
        task = ok(self.x.Async.VDI.copy(self.s, src, dst_sr, "", ""))
        for _ in range(500):
            if ok(self.x.task.get_status(self.s, task)) != "pending":
                break
            time.sleep(0.02)
        self.assertEqual(ok(self.x.task.get_status(self.s, task)), "success")
        result = ok(self.x.task.get_result(self.s, task))
        self.assertIn("OpaqueRef:", result)
        r = fail(self.x.VDI.copy(self.s, src, "OpaqueRef:nosr", "", ""))
        self.assertEqual(r, ["HANDLE_INVALID", "SR", "OpaqueRef:nosr"])

    def test_copy_into_existing(self):
        sr = self.file_sr()
        src = self.new_vdi(sr, size=2 * MiB)
        into = self.new_vdi(sr, size=4 * MiB)
        self.write_at(self.vdi_file(into), 0, b"old old old")
        self.write_at(self.vdi_file(into), 3 * MiB, b"beyond")
        self.write_at(self.vdi_file(src), 4, b"new")
        self.assertEqual(ok(self.x.VDI.copy(self.s, src, "", "", into)), into)
        f = self.vdi_file(into)
        self.assertEqual(self.read_at(f, 0, 11), b"\0\0\0\0new\0\0\0\0")
        self.assertEqual(self.read_at(f, 3 * MiB, 6), b"beyond")  # past the source: untouched
        small = self.new_vdi(sr, size=1 * MiB)
        self.assertEqual(fail(self.x.VDI.copy(self.s, src, "", "", small)), ["VDI_TOO_SMALL", small, str(2 * MiB)])
        ro = self.new_vdi(sr, size=4 * MiB, read_only=True)
        self.assertEqual(fail(self.x.VDI.copy(self.s, src, "", "", ro)), ["VDI_READONLY", ro])

    def test_resize(self):
        sr = self.file_sr()
        vdi = self.new_vdi(sr, size=4 * MiB)
        ok(self.x.VDI.resize(self.s, vdi, str(12 * MiB)))
        self.assertEqual(os.stat(self.vdi_file(vdi)).st_size, 12 * MiB)
        self.assertEqual(self.vdi(vdi)["virtual_size"], str(12 * MiB))
        ok(self.x.VDI.resize_online(self.s, vdi, str(16 * MiB)))
        self.assertEqual(os.stat(self.vdi_file(vdi)).st_size, 16 * MiB)
        r = fail(self.x.VDI.resize(self.s, vdi, str(1 * MiB)))
        self.assertEqual(r[0], "SR_BACKEND_FAILURE_79")
        self.assertIn("shrinking not allowed", r[2])
        self.assertEqual(os.stat(self.vdi_file(vdi)).st_size, 16 * MiB)
        self.assertEqual(fail(self.x.VDI.resize(self.s, vdi, str(-5)))[0], "SR_BACKEND_FAILURE_79")
        self.assertEqual(fail(self.x.VDI.resize(self.s, vdi, str(1 << 60)))[0], "SR_BACKEND_FAILURE_79")

    def test_destroy_removes_the_file(self):
        sr = self.file_sr()
        vdi = self.new_vdi(sr)
        f = self.vdi_file(vdi)
        self.assertTrue(os.path.exists(f))
        alloc = int(ok(self.x.SR.get_virtual_allocation(self.s, sr)))
        ok(self.x.VDI.destroy(self.s, vdi))
        self.assertFalse(os.path.exists(f))
        self.assertEqual(fail(self.x.VDI.get_record(self.s, vdi)), ["HANDLE_INVALID", "VDI", vdi])
        self.assertEqual(int(ok(self.x.SR.get_virtual_allocation(self.s, sr))), alloc - 16 * MiB)
        self.assertNotIn(vdi, ok(self.x.SR.get_VDIs(self.s, sr)))

    def test_destroy_takes_detached_vbds(self):
        sr = self.file_sr()
        vm = self.new_vm("vbd owner")
        vdi = self.new_vdi(sr)
        vbd = ok(self.x.VBD.create(self.s, self.vbd_rec(vm, vdi)))
        ok(self.x.VDI.destroy(self.s, vdi))
        self.assertEqual(fail(self.x.VBD.get_record(self.s, vbd)), ["HANDLE_INVALID", "VBD", vbd])
        self.assertNotIn(vbd, ok(self.x.VM.get_VBDs(self.s, vm)))

    def test_in_use_while_attached(self):
        sr = self.file_sr()
        vm = self.new_vm("user of a disk")
        mem = str(256 * MiB)
        ok(self.x.VM.set_memory_limits(self.s, vm, mem, mem, mem, mem))
        ok(self.x.VM.set_PV_kernel(self.s, vm, "/boot/vmlinuz"))
        vdi = self.new_vdi(sr)
        vbd = ok(self.x.VBD.create(self.s, self.vbd_rec(vm, vdi, userdevice="0")))
        r = self.x.VM.start(self.s, vm, False, False)
        if r.get("Status") != "Success" or not ok(self.x.VBD.get_currently_attached(self.s, vbd)):
            self.skipTest("the VM layer could not attach the disk: %s" % r)
        try:
            self.assertEqual(fail(self.x.VDI.destroy(self.s, vdi)), ["VDI_IN_USE", vdi, "destroy"])
            self.assertEqual(fail(self.x.VDI.resize(self.s, vdi, str(32 * MiB))), ["VDI_IN_USE", vdi, "resize"])
            self.assertEqual(fail(self.x.VDI.forget(self.s, vdi)), ["VDI_IN_USE", vdi, "forget"])
            self.assertEqual(fail(self.x.PBD.unplug(self.s, self.pbd_of(sr))), ["VDI_IN_USE", vdi])
            self.assertEqual(fail(self.x.VBD.destroy(self.s, vbd))[0], "OPERATION_NOT_ALLOWED")
            snap = ok(self.x.VDI.snapshot(self.s, vdi, {}))  # live operations still work
            ok(self.x.VDI.resize_online(self.s, vdi, str(32 * MiB)))
            ok(self.x.VDI.destroy(self.s, snap))
        finally:
            ok(self.x.VM.hard_shutdown(self.s, vm))
        ok(self.x.VDI.destroy(self.s, vdi))

    def test_setters_and_update(self):
        vdi = self.new_vdi(self.file_sr())
        ok(self.x.VDI.set_name_label(self.s, vdi, "renamed"))
        ok(self.x.VDI.set_name_description(self.s, vdi, "described"))
        ok(self.x.VDI.set_read_only(self.s, vdi, True))
        ok(self.x.VDI.set_sharable(self.s, vdi, True))
        rec = self.vdi(vdi)
        self.assertEqual((rec["name_label"], rec["name_description"], rec["read_only"], rec["sharable"]),
                         ("renamed", "described", True, True))
        with open(self.vdi_file(vdi), "r+b") as f:
            f.truncate(20 * MiB)
        ok(self.x.VDI.update(self.s, vdi))
        self.assertEqual(self.vdi(vdi)["virtual_size"], str(20 * MiB))
        os.unlink(self.vdi_file(vdi))
        self.assertEqual(fail(self.x.VDI.update(self.s, vdi)), ["VDI_MISSING", self.file_sr(), vdi])
        ok(self.x.VDI.forget(self.s, vdi))

    def test_introduce(self):
        sr, path = self.new_sr("introduced")
        uuid = "1b2c3d4e-5f60-4718-8a9b-0c1d2e3f4a5b"
        with open(os.path.join(path, uuid + ".raw"), "wb") as f:
            f.truncate(MiB)
        args = [uuid, "intro", "desc", sr, "user", False, False, {"k": "v"}, uuid, {}, {}]
        vdi = ok(self.x.VDI.introduce(self.s, *args))
        rec = self.vdi(vdi)
        self.assertEqual((rec["uuid"], rec["name_label"], rec["location"], rec["virtual_size"], rec["other_config"]),
                         (uuid, "intro", uuid, str(MiB), {"k": "v"}))
        self.assertEqual(ok(self.x.VDI.introduce(self.s, *args)), vdi)  # again: the same record
        other = list(args)
        other[0] = "2b2c3d4e-5f60-4718-8a9b-0c1d2e3f4a5b"
        self.assertEqual(fail(self.x.VDI.introduce(self.s, *other)), ["LOCATION_NOT_UNIQUE", sr, uuid])
        other[8] = "nothing-here"
        self.assertEqual(fail(self.x.VDI.introduce(self.s, *other)), ["VDI_LOCATION_MISSING", sr, "nothing-here"])
        other[0] = "bad uuid"
        self.assertEqual(fail(self.x.VDI.introduce(self.s, *other)), ["UUID_INVALID", "VDI", "bad uuid"])


class TestVBD(StorageBase):
    def test_autodetect_picks_the_lowest_free_slot(self):
        vm = self.new_vm("autodetect")
        sr = self.file_sr()
        first = ok(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr), userdevice="1")))
        second = ok(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr))))
        third = ok(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr))))
        self.assertEqual(ok(self.x.VBD.get_userdevice(self.s, first)), "1")
        self.assertEqual(ok(self.x.VBD.get_userdevice(self.s, second)), "0")
        self.assertEqual(ok(self.x.VBD.get_userdevice(self.s, third)), "2")
        allowed = ok(self.x.VM.get_allowed_VBD_devices(self.s, vm))
        self.assertEqual(allowed, [str(i) for i in range(3, 16)])
        rec = ok(self.x.VBD.get_record(self.s, second))
        self.assertEqual((rec["device"], rec["currently_attached"]), ("", False))

    def test_device_errors(self):
        vm = self.new_vm("devices")
        sr = self.file_sr()
        ok(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr), userdevice="3")))
        r = fail(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr), userdevice="3")))
        self.assertEqual(r, ["DEVICE_ALREADY_EXISTS", "3"])
        for bad in ("xyz", "-1", "16", "03", ""):
            r = fail(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr), userdevice=bad)))
            self.assertEqual(r, ["INVALID_DEVICE", bad])
        for i in range(15):
            if i != 3:
                ok(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr), userdevice=str(i))))
        ok(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr))))  # slot 15
        self.assertEqual(ok(self.x.VM.get_allowed_VBD_devices(self.s, vm)), [])
        r = fail(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr))))
        self.assertEqual(r, ["INVALID_DEVICE", "autodetect"])
        self.assertEqual(len(ok(self.x.VM.get_VBDs(self.s, vm))), 16)

    def test_set_userdevice(self):
        vm = self.new_vm("renumber")
        sr = self.file_sr()
        a = ok(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr), userdevice="0")))
        ok(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr), userdevice="1")))
        self.assertEqual(fail(self.x.VBD.set_userdevice(self.s, a, "1")), ["DEVICE_ALREADY_EXISTS", "1"])
        self.assertEqual(fail(self.x.VBD.set_userdevice(self.s, a, "nope")), ["INVALID_DEVICE", "nope"])
        ok(self.x.VBD.set_userdevice(self.s, a, "5"))
        ok(self.x.VBD.set_userdevice(self.s, a, "5"))  # its own slot is not a clash
        self.assertEqual(ok(self.x.VBD.get_userdevice(self.s, a)), "5")

    def test_cd_rules(self):
        vm = self.new_vm("cd rules")
        sr = self.file_sr()
        vdi = self.new_vdi(sr)
        r = fail(self.x.VBD.create(self.s, self.vbd_rec(vm, vdi, type="CD", mode="RW")))
        self.assertEqual(r, ["VBD_CDS_MUST_BE_READONLY"])
        r = fail(self.x.VBD.create(self.s, self.vbd_rec(vm, "OpaqueRef:NULL", empty=True)))
        self.assertEqual(r, ["VBD_NOT_REMOVABLE_MEDIA", "in constructor"])
        ro = self.new_vdi(sr, read_only=True)
        self.assertEqual(fail(self.x.VBD.create(self.s, self.vbd_rec(vm, ro))), ["VDI_READONLY", ro])
        ok(self.x.VBD.create(self.s, self.vbd_rec(vm, ro, mode="RO")))
        r = fail(self.x.VBD.create(self.s, self.vbd_rec(vm, "OpaqueRef:NULL")))
        self.assertEqual(r, ["HANDLE_INVALID", "VDI", "OpaqueRef:NULL"])
        odd = self.new_vdi(sr, type="ha_statefile")
        self.assertEqual(fail(self.x.VBD.create(self.s, self.vbd_rec(vm, odd))),
                         ["VDI_INCOMPATIBLE_TYPE", odd, "ha_statefile"])
        cd = ok(self.x.VBD.create(self.s, self.vbd_rec(vm, "OpaqueRef:NULL", type="CD", mode="RO", empty=True)))
        self.assertEqual(fail(self.x.VBD.set_mode(self.s, cd, "RW")), ["VBD_CDS_MUST_BE_READONLY"])

    def test_insert_and_eject(self):
        vm = self.new_vm("cd drive")
        sr = self.file_sr()
        media = self.new_vdi(sr, name="media")
        cd = ok(self.x.VBD.create(self.s, self.vbd_rec(vm, "OpaqueRef:NULL", userdevice="3", type="CD", mode="RO",
                                                       empty=True)))
        self.assertEqual(fail(self.x.VBD.eject(self.s, cd)), ["VBD_IS_EMPTY", cd])
        ok(self.x.VBD.insert(self.s, cd, media))
        rec = ok(self.x.VBD.get_record(self.s, cd))
        self.assertEqual((rec["VDI"], rec["empty"]), (media, False))
        self.assertIn(cd, ok(self.x.VDI.get_VBDs(self.s, media)))
        self.assertEqual(fail(self.x.VBD.insert(self.s, cd, media)), ["VBD_NOT_EMPTY", cd])
        ok(self.x.VBD.eject(self.s, cd))
        rec = ok(self.x.VBD.get_record(self.s, cd))
        self.assertEqual((rec["VDI"], rec["empty"]), ("OpaqueRef:NULL", True))
        disk = ok(self.x.VBD.create(self.s, self.vbd_rec(vm, self.new_vdi(sr))))
        self.assertEqual(fail(self.x.VBD.insert(self.s, disk, media)), ["VBD_NOT_REMOVABLE_MEDIA", disk])
        self.assertEqual(fail(self.x.VBD.eject(self.s, disk)), ["VBD_NOT_REMOVABLE_MEDIA", disk])
        self.assertEqual(fail(self.x.VBD.insert(self.s, cd, "OpaqueRef:none")), ["HANDLE_INVALID", "VDI", "OpaqueRef:none"])

    def test_bad_vm(self):
        vdi = self.new_vdi(self.file_sr())
        r = fail(self.x.VBD.create(self.s, self.vbd_rec("OpaqueRef:NULL", vdi)))
        self.assertEqual(r, ["HANDLE_INVALID", "VM", "OpaqueRef:NULL"])
        self.assertEqual(fail(self.x.VM.get_allowed_VBD_devices(self.s, "OpaqueRef:z")),
                         ["HANDLE_INVALID", "VM", "OpaqueRef:z"])


class TestRestart(unittest.TestCase):
    """The local SR is made once; every start plugs it again and syncs its VDIs."""

    def test_restart_keeps_and_syncs(self):
        d = Daemon().start()
        try:
            x, s = d.login()
            pool = ok(x.pool.get_all(s))[0]
            sr = ok(x.pool.get_default_SR(s, pool))
            pbd = ok(x.SR.get_PBDs(s, sr))[0]
            path = ok(x.PBD.get_device_config(s, pbd))["path"]
            vdi = ok(x.VDI.create(s, {"SR": sr, "virtual_size": str(MiB), "type": "user", "sharable": False,
                                      "read_only": False, "other_config": {}}))
            gone = ok(x.VDI.create(s, {"SR": sr, "virtual_size": str(MiB), "type": "user", "sharable": False,
                                       "read_only": False, "other_config": {}}))
            gone_file = os.path.join(path, ok(x.VDI.get_location(s, gone)) + ".vhd")
            d.stop()
            os.unlink(gone_file)
            dropped = "3c4d5e6f-7081-4293-a4b5-c6d7e8f90a1b"
            with open(os.path.join(path, dropped + ".raw"), "wb") as f:
                f.truncate(2 * MiB)
            with open(os.path.join(path, ".%s.part" % dropped), "wb") as f:
                f.write(b"half a copy")
            d.start()
            x, s = d.login()
            self.assertEqual(ok(x.pool.get_default_SR(s, pool)), sr)
            self.assertEqual(len(ok(x.SR.get_all(s))), 1)
            self.assertEqual(ok(x.SR.get_PBDs(s, sr)), [pbd])
            self.assertTrue(ok(x.PBD.get_currently_attached(s, pbd)))
            vdis = ok(x.SR.get_VDIs(s, sr))
            self.assertIn(vdi, vdis)
            self.assertNotIn(gone, vdis)
            # a raw image dropped in is one of the ext SR's raw VDIs
            self.assertIn(ok(x.VDI.get_by_uuid(s, dropped)), vdis)
            self.assertEqual(ok(x.VDI.get_sm_config(s, ok(x.VDI.get_by_uuid(s, dropped))))["vdi_type"], "raw")
            self.assertEqual(ok(x.VDI.get_virtual_size(s, ok(x.VDI.get_by_uuid(s, dropped)))), str(2 * MiB))
            self.assertFalse(os.path.exists(os.path.join(path, ".%s.part" % dropped)))
        finally:
            d.cleanup()

    def test_start_reports_what_no_vdi_owns(self):
        """The start-up sweep: entries of the local SR no VDI owns are listed in the SR's
        other_config xenapid-leftovers (and logged), never deleted; staging files go."""
        d = Daemon().start()
        try:
            x, s = d.login()
            pool = ok(x.pool.get_all(s))[0]
            sr = ok(x.pool.get_default_SR(s, pool))
            path = ok(x.PBD.get_device_config(s, ok(x.SR.get_PBDs(s, sr))[0]))["path"]
            vdi = ok(x.VDI.create(s, {"SR": sr, "virtual_size": str(2 * MiB), "type": "user", "sharable": False,
                                      "read_only": False, "other_config": {}}))
            loc = ok(x.VDI.get_location(s, vdi))
            self.assertNotIn("xenapid-leftovers", ok(x.SR.get_other_config(s, sr)))
            d.stop()
            junk = {"notes.txt": b"mine", loc + ".raw": b"beside the vhd",
                    "0d0e0f10-1112-4314-9516-1718191a1b1c.vhd": b"not a vhd"}
            for name, data in junk.items():
                with open(os.path.join(path, name), "wb") as f:
                    f.write(data)
            os.symlink("/etc/passwd", os.path.join(path, "1d0e0f10-1112-4314-9516-1718191a1b1c.vhd"))
            with open(os.path.join(path, ".%s.vhd.part" % loc), "wb") as f:
                f.write(b"half a copy")
            d.start()
            x, s = d.login()
            listed = ok(x.SR.get_other_config(s, sr)).get("xenapid-leftovers", "")
            self.assertEqual(sorted(listed.split()), sorted(list(junk) + ["1d0e0f10-1112-4314-9516-1718191a1b1c.vhd"]))
            for name, data in junk.items():
                with open(os.path.join(path, name), "rb") as f:
                    self.assertEqual(f.read(), data, name)
            self.assertTrue(os.path.islink(os.path.join(path, "1d0e0f10-1112-4314-9516-1718191a1b1c.vhd")))
            self.assertFalse(os.path.exists(os.path.join(path, ".%s.vhd.part" % loc)))
            self.assertEqual(ok(x.SR.get_VDIs(s, sr)), [vdi])
            with open(d.log_path) as f:
                self.assertIn("notes.txt is no VDI's", f.read())
            # once they are gone, so is the key
            for name in list(junk) + ["1d0e0f10-1112-4314-9516-1718191a1b1c.vhd"]:
                os.unlink(os.path.join(path, name))
            d.stop()
            d.start()
            x, s = d.login()
            self.assertNotIn("xenapid-leftovers", ok(x.SR.get_other_config(s, sr)))
        finally:
            d.cleanup()

    def test_a_local_file_sr_of_an_earlier_version_stays(self):
        """A store made before the local SR was ext: its file SR at <state_dir>/sr/<uuid> stays the
        local SR, with its raw VDIs, and no ext SR is made beside it."""
        import uuid as uuidlib
        d = Daemon().start()
        try:
            x, s = d.login()
            pool = ok(x.pool.get_all(s))[0]
            host = ok(x.host.get_all(s))[0]
            ext = ok(x.pool.get_default_SR(s, pool))
            for pbd in ok(x.SR.get_PBDs(s, ext)):
                ok(x.PBD.unplug(s, pbd))
            ok(x.SR.destroy(s, ext))
            sr_uuid = str(uuidlib.uuid4())
            path = os.path.join(os.path.realpath(d.state_dir), "sr", sr_uuid)
            os.makedirs(path)
            sr = ok(x.SR.introduce(s, sr_uuid, "Local storage", "", "file", "user", False, {}))
            pbd = ok(x.PBD.create(s, {"host": host, "SR": sr, "device_config": {"location": path},
                                      "other_config": {}}))
            ok(x.PBD.plug(s, pbd))
            ok(x.pool.set_default_SR(s, pool, sr))
            vdi = ok(x.VDI.create(s, {"SR": sr, "virtual_size": str(MiB), "type": "user", "sharable": False,
                                      "read_only": False, "other_config": {}}))
            d.stop()
            d.start()
            x, s = d.login()
            self.assertEqual(ok(x.SR.get_all(s)), [sr])
            self.assertEqual(ok(x.pool.get_default_SR(s, pool)), sr)
            self.assertEqual(ok(x.SR.get_type(s, sr)), "file")
            self.assertTrue(ok(x.PBD.get_currently_attached(s, pbd)))
            self.assertEqual(ok(x.SR.get_VDIs(s, sr)), [vdi])
            self.assertEqual(ok(x.VDI.get_virtual_size(s, vdi)), str(MiB))
            self.assertTrue(os.path.isfile(os.path.join(path, ok(x.VDI.get_location(s, vdi)) + ".raw")))
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
