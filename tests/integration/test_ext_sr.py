"""The "ext" SR (storage/drv_ext.c) as Nova's and CloudStack's XenServer code
use it: a directory of <uuid>.vhd files, VHD chains made by VDI.snapshot and
VDI.clone, SR.scan introducing chains dropped in from outside (as Nova's
image plugin does) and forgetting vanished files, base copies collected when
nothing needs them, import/export through a chain, and no file left by a
failure or followed through a link."""

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import uuid

from harness import DaemonTest, fail, ok

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("XENAPID_BUILD_DIR", os.path.join(ROOT, "build"))
VHD_UTIL = os.path.join(BUILD, "vhd-util")
MiB = 1 << 20
HAVE_QEMU = shutil.which("qemu-img") is not None


def vhd_util(*args):
    p = subprocess.run([VHD_UTIL] + [str(a) for a in args], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("vhd-util %s: %r %r" % (args, p.stdout, p.stderr))
    return p.stdout.strip()


class ExtBase(DaemonTest):
    """A daemon with its own sr_mount_root (and more_config), and helpers for ext SRs (also
    tests/integration/test_ext_safety.py, test_file_sr.py, test_nfs_sr.py)."""

    more_config = ""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="xenapid-sr-mount-")
        cls.extra_config = "sr_mount_root = %s\n" % cls.root + cls.more_config
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.root, True)

    def host(self):
        return ok(self.x.host.get_all(self.s))[0]

    def make_sr(self, device_config=None):
        sr = ok(self.x.SR.create(self.s, self.host(), device_config or {}, "0", "ext test", "", "ext", "user",
                                 False, {}))
        self.addCleanup(self.destroy_sr, sr)
        return sr

    def destroy_sr(self, sr):
        try:
            for v in ok(self.x.SR.get_VDIs(self.s, sr)):
                if ok(self.x.VDI.get_managed(self.s, v)):
                    self.x.VDI.destroy(self.s, v)
            for p in ok(self.x.SR.get_PBDs(self.s, sr)):
                self.x.PBD.unplug(self.s, p)
            self.x.SR.destroy(self.s, sr)
        except Exception:
            pass

    def sr_dir(self, sr):
        pbd = ok(self.x.SR.get_PBDs(self.s, sr))[0]
        return ok(self.x.PBD.get_device_config(self.s, pbd)).get("path") or \
            os.path.join(self.root, ok(self.x.SR.get_uuid(self.s, sr)))

    def new_vdi(self, sr, size=16 * MiB, **extra):
        rec = {"SR": sr, "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
               "other_config": {}, "name_label": "ext"}
        rec.update(extra)
        return ok(self.x.VDI.create(self.s, rec))

    def rec(self, vdi):
        return ok(self.x.VDI.get_record(self.s, vdi))

    def file_of(self, sr, vdi):
        return os.path.join(self.sr_dir(sr), self.rec(vdi)["location"] + ".vhd")

    def put(self, vdi, body, fmt="raw"):
        q = urllib.parse.urlencode({"session_id": self.s, "vdi": vdi, "format": fmt})
        return self.d.http("PUT", "/import_raw_vdi?" + q, body, {"Content-Type": "application/octet-stream"},
                           timeout=60)

    def export(self, vdi, fmt="raw"):
        q = urllib.parse.urlencode({"session_id": self.s, "vdi": vdi, "format": fmt})
        status, _, body = self.d.http("GET", "/export_raw_vdi?" + q, timeout=60)
        self.assertEqual(status, 200, body[:200])
        self.settle(vdi)
        return body

    def settle(self, vdi):
        """The export's mark on the VDI is gone once the client has the last byte (the daemon ends the
        transfer when it has read it, before sending it)."""
        self.assertEqual(self.rec(vdi)["current_operations"], {})

    def by_uuid(self, sr):
        return {self.rec(v)["uuid"]: self.rec(v) for v in ok(self.x.SR.get_VDIs(self.s, sr))}


class ExtSrTest(ExtBase):
    # ---- the SR and its VDIs ----

    def test_create_under_mount_root_and_vdi_is_a_vhd(self):
        sr = self.make_sr()
        rec = ok(self.x.SR.get_record(self.s, sr))
        self.assertEqual(rec["type"], "ext")
        self.assertTrue(os.path.isdir(self.sr_dir(sr)))
        vdi = self.new_vdi(sr, 10 * MiB)
        path = self.file_of(sr, vdi)
        self.assertEqual(vhd_util("query", "-n", path, "-v"), "10")
        v = self.rec(vdi)
        self.assertEqual(v["sm_config"].get("vdi_type"), "vhd")
        self.assertNotIn("vhd-parent", v["sm_config"])
        self.assertEqual(int(v["physical_utilisation"]), os.stat(path).st_blocks * 512)
        rec = ok(self.x.SR.get_record(self.s, sr))
        self.assertEqual(int(rec["virtual_allocation"]), 10 * MiB)
        st = os.statvfs(self.sr_dir(sr))
        self.assertEqual(int(rec["physical_size"]), st.f_blocks * st.f_frsize)
        if HAVE_QEMU:
            info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", path], capture_output=True,
                                             text=True, check=True).stdout)
            self.assertEqual(info["format"], "vpc")
            self.assertGreaterEqual(info["virtual-size"], 10 * MiB - 512 * 1024)

    def test_device_config_path(self):
        d = tempfile.mkdtemp(prefix="xenapid-ext-path-")
        self.addCleanup(shutil.rmtree, d, True)
        sr = self.make_sr({"path": d})
        vdi = self.new_vdi(sr)
        self.assertTrue(os.path.exists(os.path.join(d, self.rec(vdi)["location"] + ".vhd")))

    def test_bad_device_config(self):
        host = self.host()
        for dc in ({"path": "relative/dir"}, {"path": "/a/../b"}, {"device": "sda"}, {"device": "/dev/a,/dev/b"}):
            f = fail(self.x.SR.create(self.s, host, dc, "0", "bad", "", "ext", "user", False, {}))
            self.assertEqual(f[0], "SR_BACKEND_FAILURE_1", (dc, f))
        # a directory that is not empty is not made an SR
        d = tempfile.mkdtemp(prefix="xenapid-ext-busy-")
        self.addCleanup(shutil.rmtree, d, True)
        open(os.path.join(d, "someone's"), "w").close()
        f = fail(self.x.SR.create(self.s, host, {"path": d}, "0", "busy", "", "ext", "user", False, {}))
        self.assertEqual(f[0], "SR_BACKEND_FAILURE_42")

    # ---- chains ----

    def test_snapshot_makes_a_chain(self):
        sr = self.make_sr()
        vdi = self.new_vdi(sr)
        self.assertEqual(self.put(vdi, b"A" * MiB)[0], 200)
        orig_uuid = self.rec(vdi)["uuid"]
        snap = ok(self.x.VDI.snapshot(self.s, vdi, {}))
        s, v = self.rec(snap), self.rec(vdi)
        self.assertTrue(s["is_a_snapshot"])
        self.assertEqual(s["snapshot_of"], vdi)
        self.assertEqual(v["uuid"], orig_uuid)
        base = v["sm_config"]["vhd-parent"]
        self.assertEqual(s["sm_config"]["vhd-parent"], base)
        b = self.by_uuid(sr)[base]
        self.assertFalse(b["managed"])
        self.assertTrue(b["read_only"])
        self.assertEqual(b["name_label"], "base copy")
        d = self.sr_dir(sr)
        for leaf in (v["location"], s["location"]):
            self.assertEqual(vhd_util("query", "-n", os.path.join(d, leaf + ".vhd"), "-p"),
                             os.path.join(os.path.realpath(d), base + ".vhd"))
        self.assertEqual(vhd_util("query", "-n", os.path.join(d, base + ".vhd"), "-f").split()[-1], "1")
        # both leaves read the data through the base
        self.assertEqual(self.export(snap)[:MiB], b"A" * MiB)
        self.assertEqual(self.export(vdi)[:MiB], b"A" * MiB)
        # writes to the VDI do not reach the snapshot
        self.assertEqual(self.put(vdi, b"B" * MiB)[0], 200)
        self.assertEqual(self.export(snap)[:MiB], b"A" * MiB)
        self.assertEqual(self.export(vdi)[:MiB], b"B" * MiB)
        # a hidden base copy is no VDI a client may destroy
        f = fail(self.x.VDI.destroy(self.s, ok(self.x.VDI.get_by_uuid(self.s, base))))
        self.assertEqual(f[0], "VDI_NOT_MANAGED")

    def test_clone_and_destroy_collects_the_base(self):
        sr = self.make_sr()
        vdi = self.new_vdi(sr)
        clone = ok(self.x.VDI.clone(self.s, vdi, {}))
        self.assertFalse(self.rec(clone)["is_a_snapshot"])
        base = self.rec(vdi)["sm_config"]["vhd-parent"]
        base_file = os.path.join(self.sr_dir(sr), base + ".vhd")
        self.assertTrue(os.path.exists(base_file))
        ok(self.x.VDI.destroy(self.s, vdi))
        # the clone, the base's only child left, is folded into it: one file again
        self.assertFalse(os.path.exists(base_file))
        self.assertNotIn(base, self.by_uuid(sr))
        self.assertNotIn("vhd-parent", self.rec(clone)["sm_config"])
        self.assertEqual(os.listdir(self.sr_dir(sr)), [self.rec(clone)["location"] + ".vhd"])
        ok(self.x.VDI.destroy(self.s, clone))
        self.assertEqual(os.listdir(self.sr_dir(sr)), [])

    def test_snapshot_then_delete_coalesces_the_chain(self):
        """Nova snapshots, uploads, deletes the snapshot: the chain must not grow each time."""
        sr = self.make_sr()
        vdi = self.new_vdi(sr, 8 * MiB)
        self.assertEqual(self.put(vdi, b"F" * (2 * MiB))[0], 200)
        for i in range(35):  # past sm's chain limit of 30
            snap = ok(self.x.VDI.snapshot(self.s, vdi, {}))
            self.assertEqual(self.put(vdi, bytes([i + 1]) * 512)[0], 200)
            ok(self.x.VDI.destroy(self.s, snap))
        rec = self.rec(vdi)
        self.assertNotIn("vhd-parent", rec["sm_config"])
        self.assertEqual(os.listdir(self.sr_dir(sr)), [rec["location"] + ".vhd"])
        self.assertEqual(vhd_util("query", "-n", self.file_of(sr, vdi), "-f").split()[-1], "0")
        data = self.export(vdi)
        self.assertEqual(data[:512], bytes([35]) * 512)
        self.assertEqual(data[512:2 * MiB], b"F" * (2 * MiB - 512))
        self.assertEqual(list(self.by_uuid(sr)), [rec["uuid"]])

    def test_copy_reads_through_the_chain(self):
        sr = self.make_sr()
        vdi = self.new_vdi(sr, 4 * MiB)
        self.assertEqual(self.put(vdi, b"C" * MiB)[0], 200)
        ok(self.x.VDI.snapshot(self.s, vdi, {}))
        self.assertEqual(self.put(vdi, b"D" * 512)[0], 200)
        copy = ok(self.x.VDI.copy(self.s, vdi, sr))
        self.assertNotIn("vhd-parent", self.rec(copy)["sm_config"])
        data = self.export(copy)
        self.assertEqual(data[:512], b"D" * 512)
        self.assertEqual(data[512:MiB], b"C" * (MiB - 512))
        self.assertEqual(data[MiB:], bytes(len(data) - MiB))
        # into a file SR (whose own VDIs are raw) the copy stays a VHD, one image that reads as the chain did
        file_dir = tempfile.mkdtemp(dir=self.root)
        file_sr = ok(self.x.SR.create(self.s, self.host(), {"location": file_dir}, "0", "raw files", "", "file",
                                      "user", False, {}))
        self.addCleanup(self.destroy_sr, file_sr)
        there = ok(self.x.VDI.copy(self.s, vdi, file_sr))
        rec = self.rec(there)
        self.assertEqual(os.listdir(file_dir), [rec["location"] + ".vhd"])
        self.assertEqual(rec["sm_config"].get("vdi_type"), "vhd")
        self.assertNotIn("vhd-parent", rec["sm_config"])
        self.assertEqual(self.export(there), data)

    def test_transfers_through_a_chain_byte_for_byte(self):
        """A raw import of zero runs with edges anywhere into a leaf over a parent with data (the
        zeros must hide the parent's bytes, and need no block where the chain has none), then the
        leaf and the snapshot exported as raw and as VHD and compared byte for byte: the VHD holds
        exactly the blocks with data, whatever image of the chain has them."""
        from test_vdi_transfer import ZERO_RUN_EDGES, first_difference, odd_chunks, read_dynamic_vhd, zero_runs_image
        size = 12 * MiB
        sr = self.make_sr()
        vdi = self.new_vdi(sr, size)
        parent = bytearray(size)
        parent[0:2 * MiB] = b"\xaa" * (2 * MiB)                # block 0, hidden below by zero runs
        parent[4 * MiB + 3:4 * MiB + 5000] = os.urandom(4997)  # block 2, at odd offsets
        parent[10 * MiB + 1:12 * MiB] = b"\xbb" * (2 * MiB - 1)  # block 5, zeroed below but its first byte
        self.assertEqual(self.put(vdi, bytes(parent))[0], 200)
        snap = ok(self.x.VDI.snapshot(self.s, vdi, {}))
        leaf, _ = zero_runs_image(size, ZERO_RUN_EDGES)
        leaf = bytearray(leaf)
        leaf[2 * MiB:4 * MiB] = bytes(2 * MiB)       # block 1: zeros in every image of the chain
        leaf[10 * MiB:12 * MiB] = bytes(2 * MiB)     # block 5: zeros over the parent's data
        leaf = bytes(leaf)
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=60)
        c.request("PUT", "/import_raw_vdi?" + urllib.parse.urlencode({"session_id": self.s, "vdi": vdi, "format": "raw"}),
                  body=odd_chunks(leaf), encode_chunked=True)
        r = c.getresponse()
        self.assertEqual(r.status, 200, r.read())
        c.close()
        self.settle(vdi)

        def blocks_with_data(disk):
            return sum(1 for at in range(0, len(disk), 2 * MiB) if any(disk[at:at + 2 * MiB]))

        for v, want, what in ((vdi, leaf, "leaf"), (snap, bytes(parent), "snapshot")):
            self.assertIsNone(first_difference(self.export(v), want), what + " as raw")
            raw, stored = read_dynamic_vhd(self.export(v, "vhd"))
            self.assertIsNone(first_difference(raw, want), what + " as VHD")
            self.assertEqual(stored, blocks_with_data(want), what)
        self.assertEqual((blocks_with_data(leaf), blocks_with_data(parent)), (3, 3))

    def test_export_vhd_and_import_vhd(self):
        sr = self.make_sr()
        a = self.new_vdi(sr, 4 * MiB)
        self.assertEqual(self.put(a, b"E" * (3 * MiB))[0], 200)
        ok(self.x.VDI.snapshot(self.s, a, {}))
        image = self.export(a, "vhd")
        b = self.new_vdi(sr, 4 * MiB)
        self.assertEqual(self.put(b, image, "vhd")[0], 200)
        self.assertEqual(self.export(b)[:3 * MiB], b"E" * (3 * MiB))

    def test_suspend_image_on_ext_is_raw(self):
        """The backends write a suspend image as plain bytes: on ext it is a raw VDI, <uuid>.raw."""
        sr = self.make_sr()
        t = ok(self.x.VM.get_by_name_label(self.s, "Generic Linux PV"))[0]
        vm = ok(self.x.VM.clone(self.s, t, "ext suspend"))
        ok(self.x.VM.set_is_a_template(self.s, vm, False))
        ok(self.x.VM.set_suspend_SR(self.s, vm, sr))
        ok(self.x.VM.start(self.s, vm, False, False))
        self.addCleanup(self.x.VM.hard_shutdown, self.s, vm)
        ok(self.x.VM.suspend(self.s, vm))
        self.assertEqual(ok(self.x.VM.get_power_state(self.s, vm)), "Suspended")
        img = ok(self.x.VM.get_suspend_VDI(self.s, vm))
        rec = self.rec(img)
        self.assertEqual(rec["type"], "suspend")
        self.assertEqual(rec["sm_config"].get("vdi_type"), "raw")
        self.assertEqual(os.listdir(self.sr_dir(sr)), [rec["location"] + ".raw"])
        # a scan keeps it as it is, raw
        ok(self.x.SR.scan(self.s, sr))
        self.assertEqual(self.rec(img)["sm_config"].get("vdi_type"), "raw")
        self.assertIn(img, ok(self.x.SR.get_VDIs(self.s, sr)))
        # a checkpoint's copy of the image is raw too (no VHD chain over it)
        ok(self.x.VM.resume(self.s, vm, False, False))
        self.assertEqual(ok(self.x.VM.get_power_state(self.s, vm)), "Running")
        self.assertEqual(os.listdir(self.sr_dir(sr)), [])

    def test_raw_vdi_by_sm_config_type(self):
        """sm_config type=raw (sm's FileSR): <uuid>.raw of the exact size, copied as raw, never chained."""
        sr = self.make_sr()
        vdi = ok(self.x.VDI.create(self.s, {"SR": sr, "virtual_size": str(3 * MiB + 512), "type": "user",
                                            "sharable": False, "read_only": False, "other_config": {},
                                            "name_label": "raw", "sm_config": {"type": "raw"}}))
        rec = self.rec(vdi)
        raw = os.path.join(self.sr_dir(sr), rec["location"] + ".raw")
        self.assertEqual(rec["sm_config"].get("vdi_type"), "raw")
        self.assertEqual((rec["virtual_size"], os.path.getsize(raw)), (str(3 * MiB + 512), 3 * MiB + 512))
        self.assertEqual(os.listdir(self.sr_dir(sr)), [rec["location"] + ".raw"])
        self.assertEqual(self.put(vdi, b"R" * MiB)[0], 200)
        with open(raw, "rb") as f:
            self.assertEqual(f.read(MiB), b"R" * MiB)  # the bytes as they are: no VHD around them
        self.assertEqual(self.export(vdi, "vhd")[-512:][:8], b"conectix")
        clone = ok(self.x.VDI.clone(self.s, vdi, {}))
        crec = self.rec(clone)
        self.assertEqual(crec["sm_config"].get("vdi_type"), "raw")
        self.assertNotIn("vhd-parent", crec["sm_config"])
        self.assertEqual(sorted(os.listdir(self.sr_dir(sr))),
                         sorted([rec["location"] + ".raw", crec["location"] + ".raw"]))  # no base copy
        self.assertEqual(self.export(clone)[:MiB], b"R" * MiB)
        ok(self.x.VDI.resize(self.s, clone, str(5 * MiB)))
        self.assertEqual(os.path.getsize(os.path.join(self.sr_dir(sr), crec["location"] + ".raw")), 5 * MiB)
        self.assertEqual(self.rec(clone)["virtual_size"], str(5 * MiB))
        # a copy into a VHD of the SR reads the raw bytes
        into = self.new_vdi(sr, 4 * MiB)
        ok(self.x.VDI.copy(self.s, vdi, sr, "", into))
        self.assertEqual(self.export(into)[:MiB], b"R" * MiB)
        ok(self.x.SR.scan(self.s, sr))
        self.assertEqual(len(self.by_uuid(sr)), 3)
        ok(self.x.VDI.destroy(self.s, clone))
        ok(self.x.VDI.destroy(self.s, vdi))
        self.assertEqual(os.listdir(self.sr_dir(sr)), [self.rec(into)["location"] + ".vhd"])

    def test_raw_beside_a_vhd_is_not_the_vdi(self):
        """A <uuid>.raw dropped beside the <uuid>.vhd of a VDI: the VHD stays that VDI; the .raw is left
        out, and a .raw alone is introduced as a raw VDI."""
        sr = self.make_sr()
        vdi = self.new_vdi(sr, 2 * MiB)
        self.assertEqual(self.put(vdi, b"V" * 512)[0], 200)
        loc = self.rec(vdi)["location"]
        with open(os.path.join(self.sr_dir(sr), loc + ".raw"), "wb") as f:
            f.write(b"X" * (4 * MiB))
        alone = str(uuid.uuid4())
        with open(os.path.join(self.sr_dir(sr), alone + ".raw"), "wb") as f:
            f.truncate(MiB)
        ok(self.x.SR.scan(self.s, sr))
        found = self.by_uuid(sr)
        self.assertEqual(sorted(found), sorted([self.rec(vdi)["uuid"], alone]))
        self.assertEqual(found[self.rec(vdi)["uuid"]]["sm_config"]["vdi_type"], "vhd")
        self.assertEqual(found[self.rec(vdi)["uuid"]]["virtual_size"], str(2 * MiB))
        self.assertEqual(found[alone]["sm_config"]["vdi_type"], "raw")
        self.assertEqual(self.export(vdi)[:513], b"V" * 512 + b"\0")
        ok(self.x.VDI.destroy(self.s, vdi))
        self.assertTrue(os.path.exists(os.path.join(self.sr_dir(sr), loc + ".raw")))  # not the VDI's: left
        os.unlink(os.path.join(self.sr_dir(sr), loc + ".raw"))

    def test_no_chain_under_an_import(self):
        """A snapshot moves the VDI's file: an import writing the old one meanwhile would write the base."""
        sr = self.make_sr()
        vdi = self.new_vdi(sr, 8 * MiB)
        q = urllib.parse.urlencode({"session_id": self.s, "vdi": vdi})
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=30)
        c.putrequest("PUT", "/import_raw_vdi?" + q)
        c.putheader("Content-Length", str(4 * MiB))
        c.endheaders()
        c.send(b"G" * MiB)
        for _ in range(200):
            if ok(self.x.VDI.get_current_operations(self.s, vdi)):
                break
            time.sleep(0.05)
        self.assertEqual(fail(self.x.VDI.snapshot(self.s, vdi, {}))[0], "OTHER_OPERATION_IN_PROGRESS")
        self.assertEqual(fail(self.x.VDI.clone(self.s, vdi, {}))[0], "OTHER_OPERATION_IN_PROGRESS")
        c.send(b"G" * (3 * MiB))
        self.assertEqual(c.getresponse().status, 200)
        c.close()
        self.assertEqual(len(os.listdir(self.sr_dir(sr))), 1)

    # ---- scan ----

    def test_scan_introduces_a_dropped_chain_and_forgets_vanished(self):
        sr = self.make_sr()
        d = self.sr_dir(sr)
        parent, child = str(uuid.uuid4()), str(uuid.uuid4())
        vhd_util("create", "-n", os.path.join(d, parent + ".vhd"), "-s", "8")
        vhd_util("snapshot", "-n", os.path.join(d, child + ".vhd"), "-p", os.path.join(d, parent + ".vhd"))
        ok(self.x.SR.scan(self.s, sr))
        found = self.by_uuid(sr)
        self.assertIn(parent, found)
        self.assertIn(child, found)
        self.assertEqual(found[child]["sm_config"]["vhd-parent"], parent)
        self.assertNotIn("vhd-parent", found[parent]["sm_config"])
        self.assertEqual(int(found[child]["virtual_size"]), 8 * MiB)
        os.unlink(os.path.join(d, child + ".vhd"))
        ok(self.x.SR.scan(self.s, sr))
        self.assertNotIn(child, self.by_uuid(sr))

    def test_destroying_a_parent_hides_it_for_its_child(self):
        sr = self.make_sr()
        d = self.sr_dir(sr)
        parent, child = str(uuid.uuid4()), str(uuid.uuid4())
        vhd_util("create", "-n", os.path.join(d, parent + ".vhd"), "-s", "8")
        vhd_util("snapshot", "-n", os.path.join(d, child + ".vhd"), "-p", os.path.join(d, parent + ".vhd"))
        ok(self.x.SR.scan(self.s, sr))
        ok(self.x.VDI.destroy(self.s, ok(self.x.VDI.get_by_uuid(self.s, parent))))
        self.assertEqual(vhd_util("query", "-n", os.path.join(d, parent + ".vhd"), "-f").split()[-1], "1")
        ok(self.x.SR.scan(self.s, sr))
        self.assertFalse(self.by_uuid(sr)[parent]["managed"])
        ok(self.x.VDI.destroy(self.s, ok(self.x.VDI.get_by_uuid(self.s, child))))
        self.assertEqual(os.listdir(d), [])
        self.assertEqual(self.by_uuid(sr), {})

    def test_symlink_is_not_followed(self):
        sr = self.make_sr()
        d = self.sr_dir(sr)
        outside = tempfile.mkdtemp(prefix="xenapid-outside-")
        self.addCleanup(shutil.rmtree, outside, True)
        target = os.path.join(outside, "secret.vhd")
        vhd_util("create", "-n", target, "-s", "4")
        link = str(uuid.uuid4())
        os.symlink(target, os.path.join(d, link + ".vhd"))
        ok(self.x.SR.scan(self.s, sr))
        self.assertNotIn(link, self.by_uuid(sr))

    # ---- failures leave nothing ----

    def test_too_large_import_leaves_the_vdi(self):
        sr = self.make_sr()
        vdi = self.new_vdi(sr, 2 * MiB)
        status, _, _ = self.put(vdi, b"x" * (3 * MiB))
        self.assertNotEqual(status, 200)
        self.assertEqual(sorted(os.listdir(self.sr_dir(sr))), [self.rec(vdi)["location"] + ".vhd"])

    def test_full_sr_leaves_no_file(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a tmpfs")
        d = tempfile.mkdtemp(prefix="xenapid-small-")
        self.addCleanup(shutil.rmtree, d, True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", d])
        sr = self.make_sr({"path": d})
        f = fail(self.x.VDI.create(self.s, {"SR": sr, "virtual_size": str(1 << 40), "type": "user",
                                            "sharable": False, "read_only": False, "other_config": {},
                                            "name_label": "too big"}))
        self.assertTrue(f[0].startswith("SR_BACKEND_FAILURE"), f)
        self.assertEqual(os.listdir(d), [])

    def test_snapshot_on_a_full_sr_leaves_no_half_chain(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a tmpfs")
        d = tempfile.mkdtemp(prefix="xenapid-full-")
        self.addCleanup(shutil.rmtree, d, True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", d], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", d])
        sr = self.make_sr({"path": d})
        vdi = self.new_vdi(sr, 16 * MiB)
        before = sorted(os.listdir(d))
        fd = os.open(os.path.join(d, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\1" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        f = fail(self.x.VDI.snapshot(self.s, vdi, {}))
        self.assertEqual(f[0], "SR_BACKEND_FAILURE_44", f)
        self.assertEqual(sorted(os.listdir(d)), sorted(before + ["filler"]))
        self.assertNotIn("vhd-parent", self.rec(vdi)["sm_config"])
        self.assertEqual(len(ok(self.x.SR.get_VDIs(self.s, sr))), 1)
        self.assertEqual(self.rec(vdi)["current_operations"], {})


if __name__ == "__main__":
    unittest.main()
