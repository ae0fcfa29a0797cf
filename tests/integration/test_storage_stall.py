"""The API never stalls on storage: an SR whose storage stops answering (a
FUSE filesystem whose server never replies, so every access to it blocks in
the kernel as on a hard NFS mount whose server died) makes its own
operation wait until storage_io_timeout, then fail with
SR_BACKEND_FAILURE_47, while other calls, event.from and other SRs keep
being answered; the SR is busy (SR.current_operations) meanwhile, and once
an operation is stuck, further I/O on that SR fails at once until the
storage answers again."""

import ctypes
import errno
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import unittest

from harness import DaemonTest, fail, ok, proxy_from, wait_for

MiB = 1 << 20
IO_TIMEOUT = 6  # storage_io_timeout of the daemon under test, seconds
PROMPT = 4      # seconds within which the daemon must answer the calls that must not wait for the hung SR


def can_mount_fuse():
    return os.geteuid() == 0 and os.path.exists("/dev/fuse")


class HungFuse:
    """A FUSE mount at path whose server never reads its device: every request blocks. release()
    closes the device, which aborts the connection (what waited fails with ENOTCONN), and unmounts."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        libc = ctypes.CDLL(None, use_errno=True)
        opts = "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other" % self.fd
        if libc.mount(b"xenapid-hung", path.encode(), b"fuse.hung", 0, opts.encode()) != 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, "mount fuse at " + path)

    def release(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            subprocess.run(["umount", "-l", self.path], check=False)


class AnsweringFuse:
    """Makes a HungFuse answer from now on, as storage that comes back: a flat directory of the files
    named (regular files of 1 MiB, each can be unlinked once); every other request fails with ENOSYS
    (ENOENT for other names). Enough for an abandoned lstat and unlink to go through late."""

    HEADER = struct.Struct("<IIQQIIII")  # fuse_in_header
    OUT = struct.Struct("<IiQ")          # fuse_out_header
    ATTR = struct.Struct("<QQQQQQIIIIIIIIII")  # fuse_attr

    def __init__(self, fuse, names):
        self.fd = fuse.fd
        self.names = {n: 2 + i for i, n in enumerate(names)}
        self.unlinked = []
        threading.Thread(target=self.serve, daemon=True).start()

    def attr(self, ino, mode):
        return self.ATTR.pack(ino, MiB, MiB // 512, 0, 0, 0, 0, 0, 0, mode, 1, 0, 0, 0, 4096, 0)

    def reply(self, unique, error=0, body=b""):
        os.write(self.fd, self.OUT.pack(self.OUT.size + len(body), error, unique) + body)

    def serve(self):
        while True:
            try:
                req = os.read(self.fd, 1 << 20)
            except OSError:
                return
            _, op, unique, node, *_ = self.HEADER.unpack_from(req)
            arg = req[self.HEADER.size:]
            if op == 26:  # INIT: protocol 7.31, small writes
                self.reply(unique, body=struct.pack("<IIIIHHIIHHI7I", 7, 31, 0, 0, 1, 1, 4096, 1, 1, 0, 0,
                                                    *[0] * 7))
            elif op in (2, 42, 36):  # FORGET, BATCH_FORGET, INTERRUPT: no reply
                continue
            elif op == 1:  # LOOKUP
                name = arg.split(b"\0", 1)[0].decode()
                if node == 1 and name in self.names:
                    self.reply(unique, body=struct.pack("<QQQQII", self.names[name], 0, 0, 0, 0, 0) +
                               self.attr(self.names[name], 0o100644))
                else:
                    self.reply(unique, -errno.ENOENT)
            elif op == 3:  # GETATTR
                self.reply(unique, body=struct.pack("<QII", 0, 0, 0) +
                           self.attr(node, 0o40755 if node == 1 else 0o100644))
            elif op == 10:  # UNLINK
                name = arg.split(b"\0", 1)[0].decode()
                self.unlinked.append(name)
                self.reply(unique, 0 if self.names.pop(name, None) else -errno.ENOENT)
            else:
                self.reply(unique, -errno.ENOSYS)


@unittest.skipUnless(can_mount_fuse(), "needs root and /dev/fuse")
class StorageStallTest(DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="xenapid-stall-")
        cls.extra_config = "sr_mount_root = %s\nstorage_io_timeout = %d\n" % (cls.root, IO_TIMEOUT)
        super().setUpClass()
        cls.host = ok(cls.x.host.get_all(cls.s))[0]

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.root, True)

    def proxy(self, timeout=10):
        """Another client connection; a call that does not come back within timeout fails the test."""
        px = proxy_from(self.d, "127.0.0.1", timeout=timeout)
        self.addCleanup(px("close"))
        return px

    def make_sr(self, device_config=None):
        sr = ok(self.x.SR.create(self.s, self.host, device_config or {}, "0", "stall test", "", "ext", "user",
                                 False, {}))
        self.addCleanup(self.destroy_sr, sr)
        return sr

    def destroy_sr(self, sr):
        for v in ok(self.x.SR.get_VDIs(self.s, sr)):
            self.x.VDI.destroy(self.s, v)
        for p in ok(self.x.SR.get_PBDs(self.s, sr)):
            self.x.PBD.unplug(self.s, p)
        self.x.SR.destroy(self.s, sr)

    def new_vdi(self, x, sr):
        return x.VDI.create(self.s, {"name_label": "v", "name_description": "", "SR": sr,
                                     "virtual_size": str(MiB), "type": "user", "sharable": False,
                                     "read_only": False, "other_config": {}})

    def hang(self, path):
        fuse = HungFuse(path)
        self.addCleanup(fuse.release)
        return fuse

    def in_thread(self, fn):
        out = {}

        def run():
            try:
                out["r"] = fn(self.proxy(timeout=60))
            except Exception as e:  # noqa: BLE001 - reported by the test that joins
                out["r"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, out

    def others_are_served(self, other_sr):
        """What must keep working while one SR's storage hangs: reads, event.from, another SR's VDIs and
        scan; each on a connection that gives up (failing the test) if the daemon does not answer."""
        x = self.proxy(timeout=PROMPT)
        ok(x.SR.get_all_records(self.s))
        ok(getattr(x.event, "from")(self.s, ["SR", "VDI"], "", 0.0))
        v = ok(self.new_vdi(x, other_sr))
        ok(x.SR.scan(self.s, other_sr))
        self.assertIn(v, ok(x.SR.get_VDIs(self.s, other_sr)))
        ok(x.VDI.destroy(self.s, v))

    def test_scan_of_a_hung_sr_times_out_while_the_rest_is_served(self):
        hung, other = self.make_sr(), self.make_sr()
        path = os.path.join(self.root, ok(self.x.SR.get_uuid(self.s, hung)))
        fuse = self.hang(path)
        x = self.proxy(timeout=PROMPT)
        t, out = self.in_thread(lambda px: px.SR.scan(self.s, hung))

        # Busy, as xapi shows it, and a second scan refused rather than queued behind the first.
        cur = wait_for(lambda: ok(x.SR.get_current_operations(self.s, hung)), timeout=5, what="SR busy")
        self.assertEqual(list(cur.values()), ["scan"])
        err = fail(x.SR.scan(self.s, hung))
        self.assertEqual(err[:3], ["OTHER_OPERATION_IN_PROGRESS", "SR", hung])
        self.assertNotIn("scan", ok(x.SR.get_allowed_operations(self.s, hung)))
        self.others_are_served(other)

        t.join(IO_TIMEOUT * 10)
        self.assertFalse(t.is_alive(), "SR.scan of the hung SR never ended")
        err = fail(out["r"])
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_47")
        self.assertIn("SR.scan", err[2])
        self.assertIn("no answer from the storage", err[2])
        self.assertEqual(ok(x.SR.get_current_operations(self.s, hung)), {})

        # The first thread is still stuck in the kernel: the SR fails at once instead of taking more.
        err = fail(x.SR.update(self.s, hung))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_47")
        self.assertIn("still waiting", err[2])
        err = fail(self.new_vdi(x, hung))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_47")
        self.others_are_served(other)

        # The storage answers again (here: the connection aborted, the mount gone): the SR works.
        fuse.release()
        wait_for(lambda: x.SR.scan(self.s, hung)["Status"] == "Success", timeout=10, what="SR usable again")
        ok(x.SR.update(self.s, hung))

    def test_vdi_create_on_a_hung_sr_times_out_while_the_rest_is_served(self):
        hung, other = self.make_sr(), self.make_sr()
        before = ok(self.x.SR.get_VDIs(self.s, hung))
        fuse = self.hang(os.path.join(self.root, ok(self.x.SR.get_uuid(self.s, hung))))
        t, out = self.in_thread(lambda px: self.new_vdi(px, hung))
        while t.is_alive():
            self.others_are_served(other)
            t.join(0.5)
        err = fail(out["r"])
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_47")
        self.assertIn("VDI.create", err[2])
        x = self.proxy(timeout=PROMPT)
        self.assertEqual(ok(x.SR.get_VDIs(self.s, hung)), before)
        fuse.release()
        wait_for(lambda: self.new_vdi(x, hung)["Status"] == "Success", timeout=10, what="VDI.create again")

    def vdi_op_on_a_hung_sr(self, what, call, reads=False):
        """call(proxy, vdi) on a VDI of an SR whose storage hangs: other calls are served while it waits,
        the VDI shows the operation meanwhile, and it ends with SR_BACKEND_FAILURE_47 naming what, the
        VDI still there and idle; once the storage answers again, the VDI works."""
        hung, other = self.make_sr(), self.make_sr()
        vdi = ok(self.new_vdi(self.x, hung))
        size = ok(self.x.VDI.get_virtual_size(self.s, vdi))
        fuse = self.hang(os.path.join(self.root, ok(self.x.SR.get_uuid(self.s, hung))))
        x = self.proxy(timeout=PROMPT)
        t, out = self.in_thread(lambda px: call(px, vdi))
        cur = wait_for(lambda: ok(x.VDI.get_current_operations(self.s, vdi)), timeout=5, what="VDI busy")
        self.assertEqual(len(cur), 1)
        err = fail(x.VDI.destroy(self.s, vdi))
        # (reads: an operation that reads the VDI, as a copy, leaves it in use, as xapi says)
        self.assertEqual(err[:3], ["VDI_IN_USE", vdi, "destroy"] if reads else ["OTHER_OPERATION_IN_PROGRESS", "VDI", vdi])
        while t.is_alive():
            self.others_are_served(other)
            ok(x.VDI.get_record(self.s, vdi))
            t.join(0.5)
        err = fail(out["r"])
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_47", err)
        self.assertIn(what, err[2])
        self.assertIn("no answer from the storage", err[2])
        self.assertIn(vdi, ok(x.SR.get_VDIs(self.s, hung)))
        self.assertEqual(ok(x.VDI.get_current_operations(self.s, vdi)), {})
        self.assertEqual(ok(x.VDI.get_virtual_size(self.s, vdi)), size)
        # The abandoned thread still waits: the SR's next driver call fails at once.
        err = fail(x.VDI.update(self.s, vdi))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_47")
        self.assertIn("still waiting", err[2])
        fuse.release()

        def answered():
            r = x.VDI.update(self.s, vdi)
            return r if r["Status"] == "Success" or r["ErrorDescription"][0] != "SR_BACKEND_FAILURE_47" else None

        r = wait_for(answered, timeout=30, what="the SR answering again")
        # The abandoned call itself may go through once the storage answers (its result dropped, but an
        # abandoned deletion that went through drops the record too: test_vdi_destroy_that_ends_late...).
        if what != "VDI.destroy":
            ok(r)
        return vdi

    def test_vdi_destroy_on_a_hung_sr_times_out_while_the_rest_is_served(self):
        vdi = self.vdi_op_on_a_hung_sr("VDI.destroy", lambda px, vdi: px.VDI.destroy(self.s, vdi))
        r = self.x.VDI.destroy(self.s, vdi)
        if r["Status"] != "Success":  # the abandoned deletion went through, and the record with it
            self.assertEqual(r["ErrorDescription"][:2], ["HANDLE_INVALID", "VDI"])
        self.assertEqual(fail(self.x.VDI.get_uuid(self.s, vdi))[0], "HANDLE_INVALID")

    def test_vdi_destroy_that_ends_late_drops_the_record(self):
        """A VDI.destroy abandoned at the time limit whose deletion the storage then carries out: the
        record goes too (before, it stayed, without its data, until the next SR.scan)."""
        sr = self.make_sr()
        vdi = ok(self.new_vdi(self.x, sr))
        location = ok(self.x.VDI.get_location(self.s, vdi))
        fuse = self.hang(os.path.join(self.root, ok(self.x.SR.get_uuid(self.s, sr))))
        err = fail(self.proxy(timeout=60).VDI.destroy(self.s, vdi))
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_47", err)
        self.assertIn(vdi, ok(self.x.SR.get_VDIs(self.s, sr)))
        storage = AnsweringFuse(fuse, [location + ".vhd"])
        wait_for(lambda: self.x.VDI.get_uuid(self.s, vdi)["ErrorDescription"][0] == "HANDLE_INVALID"
                 if self.x.VDI.get_uuid(self.s, vdi)["Status"] != "Success" else False, timeout=20,
                 what="the late VDI.destroy's record gone")
        self.assertEqual(storage.unlinked, [location + ".vhd"])
        self.assertNotIn(vdi, ok(self.x.SR.get_VDIs(self.s, sr)))

    def test_vdi_resize_on_a_hung_sr_times_out_while_the_rest_is_served(self):
        vdi = self.vdi_op_on_a_hung_sr("VDI.resize", lambda px, vdi: px.VDI.resize(self.s, vdi, str(4 * MiB)))
        ok(self.x.VDI.resize(self.s, vdi, str(4 * MiB)))
        self.assertEqual(ok(self.x.VDI.get_virtual_size(self.s, vdi)), str(4 * MiB))

    def test_vdi_update_on_a_hung_sr_times_out_while_the_rest_is_served(self):
        self.vdi_op_on_a_hung_sr("VDI.update", lambda px, vdi: px.VDI.update(self.s, vdi))

    # VDI.snapshot, clone and copy find their source (an lstat) and publish the new VDI's data (a rename)
    # without the store lock: before, each of those waited for the hung SR with the lock held.
    def test_vdi_snapshot_on_a_hung_sr_times_out_while_the_rest_is_served(self):
        vdi = self.vdi_op_on_a_hung_sr("VDI.snapshot", lambda px, vdi: px.VDI.snapshot(self.s, vdi, {}), reads=True)
        snap = ok(self.x.VDI.snapshot(self.s, vdi, {}))
        self.assertEqual(ok(self.x.VDI.get_snapshot_of(self.s, snap)), vdi)

    def test_vdi_clone_on_a_hung_sr_times_out_while_the_rest_is_served(self):
        vdi = self.vdi_op_on_a_hung_sr("VDI.clone", lambda px, vdi: px.VDI.clone(self.s, vdi, {}), reads=True)
        ok(self.x.VDI.clone(self.s, vdi, {}))

    def test_vdi_copy_on_a_hung_sr_times_out_while_the_rest_is_served(self):
        vdi = self.vdi_op_on_a_hung_sr("VDI.copy", lambda px, vdi: px.VDI.copy(self.s, vdi, "OpaqueRef:NULL"),
                                       reads=True)
        ok(self.x.VDI.copy(self.s, vdi, "OpaqueRef:NULL"))

    def test_export_from_a_hung_sr_stalls_only_itself(self):
        """GET /export_raw_vdi of a VDI whose storage hangs waits (its file opened without the store
        lock); everything else is served meanwhile, and the export fails once the storage is gone."""
        hung, other = self.make_sr(), self.make_sr()
        vdi = ok(self.new_vdi(self.x, hung))
        fuse = self.hang(os.path.join(self.root, ok(self.x.SR.get_uuid(self.s, hung))))
        x = self.proxy(timeout=PROMPT)
        out = {}

        def export():
            try:
                out["r"] = self.d.http("GET", "/export_raw_vdi?session_id=%s&vdi=%s" % (self.s, vdi), timeout=60)
            except Exception as e:  # noqa: BLE001 - the connection may just end
                out["r"] = e

        t = threading.Thread(target=export, daemon=True)
        t.start()
        wait_for(lambda: ok(x.VDI.get_current_operations(self.s, vdi)), timeout=5, what="export's mark")
        self.assertEqual(fail(x.VDI.destroy(self.s, vdi))[0], "VDI_IN_USE")
        for _ in range(3):
            self.others_are_served(other)
            ok(x.VDI.get_record(self.s, vdi))
        self.assertTrue(t.is_alive())
        fuse.release()
        t.join(30)
        self.assertFalse(t.is_alive(), "the export never ended")
        self.assertFalse(isinstance(out["r"], tuple) and out["r"][0] == 200 and len(out["r"][2]) == MiB)
        wait_for(lambda: ok(x.VDI.get_current_operations(self.s, vdi)) == {}, timeout=10, what="mark gone")

    def test_vm_start_with_a_disk_on_a_hung_sr_times_out(self):
        """VM.start looks at its disks' files under the store lock: a disk on storage that does not
        answer fails the start with SR_BACKEND_FAILURE_47 at the time limit instead of hanging."""
        hung = self.make_sr()
        vdi = ok(self.new_vdi(self.x, hung))
        t = ok(self.x.VM.get_by_name_label(self.s, "Generic Linux PV"))[0]
        vm = ok(self.x.VM.clone(self.s, t, "on a hung SR"))
        self.addCleanup(self.x.VM.destroy, self.s, vm)
        ok(self.x.VM.set_is_a_template(self.s, vm, False))
        ok(self.x.VM.set_PV_kernel(self.s, vm, "/boot/vmlinuz"))
        ok(self.x.VBD.create(self.s, {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": False, "mode": "RW",
                                      "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
                                      "qos_algorithm_params": {}}))
        fuse = self.hang(os.path.join(self.root, ok(self.x.SR.get_uuid(self.s, hung))))
        t, out = self.in_thread(lambda px: px.VM.start(self.s, vm, False, False))
        t.join(IO_TIMEOUT * 5)
        self.assertFalse(t.is_alive(), "VM.start with a disk on the hung SR never ended")
        err = fail(out["r"])
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_47", err)
        x = self.proxy(timeout=PROMPT)
        self.assertEqual(ok(x.VM.get_power_state(self.s, vm)), "Halted")
        fuse.release()
        wait_for(lambda: x.VM.start(self.s, vm, False, False)["Status"] == "Success", timeout=30, what="VM starts")
        ok(x.VM.hard_shutdown(self.s, vm))

    def test_create_and_plug_on_a_hung_path_time_out(self):
        other = self.make_sr()
        path = tempfile.mkdtemp(prefix="hung-", dir=self.root)
        fuse = self.hang(path)
        x = self.proxy(timeout=PROMPT)
        t, out = self.in_thread(lambda px: px.SR.create(self.s, self.host, {"path": path}, "0", "on hung", "",
                                                         "ext", "user", False, {}))
        self.others_are_served(other)
        t.join(IO_TIMEOUT * 10)
        self.assertFalse(t.is_alive(), "SR.create on the hung path never ended")
        err = fail(out["r"])
        self.assertEqual(err[0], "SR_BACKEND_FAILURE_47")
        self.assertIn("SR.create", err[2])
        self.assertEqual(ok(x.SR.get_by_name_label(self.s, "on hung")), [])

        # PBD.plug of an SR introduced there: the same, with the SR busy meanwhile.
        fuse.release()
        path2 = tempfile.mkdtemp(prefix="hung-", dir=self.root)
        self.hang(path2)
        import uuid
        sr = ok(x.SR.introduce(self.s, str(uuid.uuid4()), "introduced on hung", "", "ext", "user", False, {}))
        pbd = ok(x.PBD.create(self.s, {"host": self.host, "SR": sr, "device_config": {"path": path2}}))
        t, out = self.in_thread(lambda px: px.PBD.plug(self.s, pbd))
        cur = wait_for(lambda: ok(x.SR.get_current_operations(self.s, sr)), timeout=5, what="SR busy")
        self.assertEqual(list(cur.values()), ["plug"])
        self.assertEqual(fail(x.SR.forget(self.s, sr))[0], "OTHER_OPERATION_IN_PROGRESS")
        self.others_are_served(other)
        t.join(IO_TIMEOUT * 10)
        self.assertFalse(t.is_alive(), "PBD.plug on the hung path never ended")
        self.assertEqual(fail(out["r"])[0], "SR_BACKEND_FAILURE_47")
        self.assertFalse(ok(x.PBD.get_currently_attached(self.s, pbd)))
        ok(x.PBD.destroy(self.s, pbd))
        ok(x.SR.forget(self.s, sr))


if __name__ == "__main__":
    unittest.main()
