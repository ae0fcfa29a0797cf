"""Safety of ext SRs (issue 11): a failed copy, import or clone leaves no
file behind (a full disk on a small tmpfs, a transfer killed midway, a bad
VHD upload), and nothing from the API (locations, sm_config) or planted in
the directory (symlinks, hard links, a parent locator outside) leads outside
the SR."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import uuid

from harness import fail, ok
from test_ext_sr import ExtBase, vhd_util

MiB = 1 << 20
SECRET = b"host secret, not a disk\n" * 1000


class ExtSafetyBase(ExtBase):
    def small_sr(self, size):
        """An ext SR on a tmpfs of size bytes."""
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a tmpfs")
        d = tempfile.mkdtemp(prefix="xenapid-small-")
        self.addCleanup(shutil.rmtree, d, True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", d], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", d])
        return self.make_sr({"path": d}), d

    def get(self, vdi, fmt="raw"):
        q = urllib.parse.urlencode({"session_id": self.s, "vdi": vdi, "format": fmt})
        reply = self.d.http("GET", "/export_raw_vdi?" + q, timeout=60)
        self.settle(vdi)
        return reply

    def outside_file(self):
        d = tempfile.mkdtemp(prefix="xenapid-outside-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "secret")
        with open(path, "wb") as f:
            f.write(SECRET)
        return path

    def assert_untouched(self, path):
        with open(path, "rb") as f:
            self.assertEqual(f.read(), SECRET, "a file outside the SR was written")


class TestFailuresLeaveNothing(ExtSafetyBase):
    def test_copy_into_a_full_sr(self):
        src_sr = self.make_sr()
        src = self.new_vdi(src_sr, 8 * MiB)
        self.assertEqual(self.put(src, os.urandom(6 * MiB))[0], 200)
        sr, d = self.small_sr(4 * MiB)
        for sm_config in ({}, {"type": "raw"}):
            before = sorted(os.listdir(d))
            f = fail(self.x.VDI.copy(self.s, src, sr))
            self.assertEqual(f[0], "SR_BACKEND_FAILURE_44", f)
            self.assertEqual(sorted(os.listdir(d)), before)
            self.assertEqual(ok(self.x.SR.get_VDIs(self.s, sr)), [])
            self.assertEqual(self.rec(src)["current_operations"], {})
        # a raw VDI's copy (raw too) on a full SR
        raw = self.new_vdi(src_sr, 8 * MiB, sm_config={"type": "raw"})
        self.assertEqual(self.put(raw, os.urandom(6 * MiB))[0], 200)
        f = fail(self.x.VDI.copy(self.s, raw, sr))
        self.assertEqual(f[0], "SR_BACKEND_FAILURE_44", f)
        self.assertEqual(os.listdir(d), [])

    def test_clone_of_a_raw_vdi_on_a_full_sr(self):
        sr, d = self.small_sr(6 * MiB)
        raw = self.new_vdi(sr, 4 * MiB, sm_config={"type": "raw"})
        self.assertEqual(self.put(raw, b"\1" * (4 * MiB))[0], 200)
        before = sorted(os.listdir(d))
        f = fail(self.x.VDI.clone(self.s, raw, {}))
        self.assertEqual(f[0], "SR_BACKEND_FAILURE_44", f)
        self.assertEqual(sorted(os.listdir(d)), before)
        self.assertEqual(ok(self.x.SR.get_VDIs(self.s, sr)), [raw])

    def test_import_into_a_full_sr(self):
        sr, d = self.small_sr(3 * MiB)
        vdi = self.new_vdi(sr, 8 * MiB)
        before = sorted(os.listdir(d))
        status, _, body = self.put(vdi, os.urandom(6 * MiB))
        self.assertNotEqual(status, 200, body)
        self.assertEqual(sorted(os.listdir(d)), before)
        self.assertEqual(ok(self.x.SR.get_VDIs(self.s, sr)), [vdi])
        self.assertEqual(self.rec(vdi)["current_operations"], {})
        ok(self.x.VDI.destroy(self.s, vdi))
        self.assertEqual(os.listdir(d), [])

    def test_bad_vhd_upload(self):
        sr = self.make_sr()
        vdi = self.new_vdi(sr, 4 * MiB)
        self.assertEqual(self.put(vdi, b"K" * MiB)[0], 200)
        d = self.sr_dir(sr)
        before = sorted(os.listdir(d))
        footer = bytearray(512)
        footer[:8] = b"conectix"  # a footer that is not a valid one
        for body in (b"not a vhd at all" * 100, bytes(footer) * 3, bytes(2 * MiB)):
            status, _, _ = self.put(vdi, body, "vhd")
            self.assertGreaterEqual(status, 400, body[:16])
            self.assertEqual(sorted(os.listdir(d)), before)
            self.assertEqual(self.rec(vdi)["current_operations"], {})
        status, _, data = self.get(vdi)
        self.assertEqual((status, data[:MiB]), (200, b"K" * MiB))

    def test_killed_transfer(self):
        sr = self.make_sr()
        vdi = self.new_vdi(sr, 8 * MiB)
        d = self.sr_dir(sr)
        before = sorted(os.listdir(d))
        for fmt in ("raw", "vhd"):
            q = urllib.parse.urlencode({"session_id": self.s, "vdi": vdi, "format": fmt})
            c = socket.create_connection(("127.0.0.1", self.d.port), timeout=30)
            c.sendall(("PUT /import_raw_vdi?%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                       % (q, 8 * MiB)).encode())
            c.sendall(b"\2" * MiB if fmt == "raw" else vhd_prefix())
            c.close()  # the client dies midway
            # the daemon notices, ends the transfer and leaves the VDI usable: another writer (which
            # needs the VDI to itself, 409 meanwhile) gets it
            deadline = time.monotonic() + 60
            while self.put(vdi, b"\3" * 512)[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(self.rec(vdi)["current_operations"], {})
            self.assertEqual(sorted(os.listdir(d)), before)
            status, _, data = self.get(vdi)
            self.assertEqual((status, data[:512]), (200, b"\3" * 512))
        ok(self.x.VDI.snapshot(self.s, vdi, {}))
        ok(self.x.VDI.destroy(self.s, vdi))


def vhd_prefix():
    """The first bytes of a real dynamic VHD stream (footer, header, BAT), cut short."""
    d = tempfile.mkdtemp(prefix="xenapid-prefix-")
    try:
        p = os.path.join(d, "a.vhd")
        vhd_util("create", "-n", p, "-s", "8")
        with open(p, "rb") as f:
            return f.read(4096)
    finally:
        shutil.rmtree(d, True)


class TestPathsStayInTheSr(ExtSafetyBase):
    def test_introduce_locations(self):
        sr = self.make_sr()
        d = self.sr_dir(sr)
        secret = self.outside_file()
        u = str(uuid.uuid4())
        for loc in ("../x", "/etc/passwd", "../../../../etc/passwd", u + "/../" + u, secret, "", ".", u + ".vhd"):
            f = fail(self.x.VDI.introduce(self.s, "", "x", "", sr, "user", False, False, {}, loc, {}, {}))
            self.assertEqual(f[:2], ["VDI_LOCATION_MISSING", sr], loc)
        # a link planted under a VDI's name: to a file outside, a raw image or a VHD
        hard = str(uuid.uuid4())
        os.link(secret, os.path.join(d, hard + ".raw"))
        soft = str(uuid.uuid4())
        os.symlink(secret, os.path.join(d, soft + ".raw"))
        for loc in (hard, soft):
            f = fail(self.x.VDI.introduce(self.s, "", "x", "", sr, "user", False, False, {}, loc, {}, {}))
            self.assertEqual(f[0], "VDI_LOCATION_MISSING", loc)
        ok(self.x.SR.scan(self.s, sr))
        self.assertEqual(ok(self.x.SR.get_VDIs(self.s, sr)), [])
        self.assert_untouched(secret)

    def test_sm_config_does_not_redirect(self):
        sr = self.make_sr()
        secret = self.outside_file()
        vdi = self.new_vdi(sr, 2 * MiB, sm_config={"vhd-parent": "../../" + secret})
        self.assertNotIn("vhd-parent", self.rec(vdi)["sm_config"])  # what the image says, not the client
        self.assertEqual(self.put(vdi, b"S" * 512)[0], 200)
        ok(self.x.VDI.remove_from_sm_config(self.s, vdi, "vdi_type"))
        ok(self.x.VDI.add_to_sm_config(self.s, vdi, "vdi_type", "raw"))
        ok(self.x.VDI.add_to_sm_config(self.s, vdi, "vhd-parent", secret))
        # still read through the VHD (its disk, not its file's bytes)
        status, _, data = self.get(vdi)
        self.assertEqual((status, data[:513]), (200, b"S" * 512 + b"\0"))
        self.assertEqual(len(data), 2 * MiB)
        ok(self.x.VDI.destroy(self.s, vdi))
        self.assertEqual(os.listdir(self.sr_dir(sr)), [])
        self.assert_untouched(secret)

    def test_parent_locator_outside_the_sr(self):
        """A child dropped into the SR whose parent is a VHD elsewhere: the chain is never read
        outside the SR (the parent is looked for by its name in the SR only)."""
        sr = self.make_sr()
        d = self.sr_dir(sr)
        outside = tempfile.mkdtemp(prefix="xenapid-outside-")
        self.addCleanup(shutil.rmtree, outside, True)
        parent = str(uuid.uuid4())
        child = str(uuid.uuid4())
        ppath = os.path.join(outside, parent + ".vhd")
        vhd_util("create", "-n", ppath, "-s", "4")
        vhd_util("snapshot", "-n", os.path.join(d, child + ".vhd"), "-p", ppath)
        with open(ppath, "rb") as f:
            image = f.read()
        ok(self.x.SR.scan(self.s, sr))
        vdis = {self.rec(v)["uuid"]: v for v in ok(self.x.SR.get_VDIs(self.s, sr))}
        self.assertNotIn(parent, vdis)
        if child in vdis:
            status, _, _ = self.get(vdis[child])
            self.assertNotEqual(status, 200)
            self.assertGreaterEqual(self.put(vdis[child], b"W" * 512)[0], 400)
        with open(ppath, "rb") as f:
            self.assertEqual(f.read(), image, "the parent outside the SR was written")


if __name__ == "__main__":
    unittest.main()
