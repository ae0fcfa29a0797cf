"""VM.checkpoint (and Async): a snapshot with the VM's memory, as xapi makes
it: a running VM is suspended, its disks and suspend image snapshotted, and
resumed; the snapshot is Suspended with its own suspend_VDI. A suspended VM
gives a Suspended snapshot (its image copied), a paused one a Halted
snapshot; a halted VM, a template or a snapshot is refused."""

import os
import shutil
import tempfile
import unittest

from harness import NULL_REF, DaemonTest, fail, ok, wait_task

MiB = 1 << 20


class TestCheckpoint(DaemonTest):
    extra_config = "sim_guest_delay_ms = 30\n"

    def setUp(self):
        pool = ok(self.x.pool.get_all(self.s))[0]
        self.sr = ok(self.x.pool.get_default_SR(self.s, pool))

    def new_vm(self, name):
        t = ok(self.x.VM.get_by_name_label(self.s, "Generic Linux PV"))[0]
        vm = ok(self.x.VM.clone(self.s, t, name))
        ok(self.x.VM.set_is_a_template(self.s, vm, False))
        ok(self.x.VM.set_memory_limits(self.s, vm, str(64 * MiB), str(128 * MiB), str(128 * MiB), str(128 * MiB)))
        ok(self.x.VM.set_PV_kernel(self.s, vm, "/boot/vmlinuz"))
        vdi = ok(self.x.VDI.create(self.s, {"name_label": name + " disk", "name_description": "", "SR": self.sr,
                                           "virtual_size": str(4 * MiB), "type": "user", "sharable": False,
                                           "read_only": False, "other_config": {}}))
        ok(self.x.VBD.create(self.s, {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                                     "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
                                     "qos_algorithm_params": {}}))
        return vm, vdi

    def rec(self, ref):
        return ok(self.x.VM.get_record(self.s, ref))

    def disk_of(self, vm):
        for vbd in self.rec(vm)["VBDs"]:
            r = ok(self.x.VBD.get_record(self.s, vbd))
            if r["type"] == "Disk":
                return r["VDI"]
        return None

    def check_snapshot(self, snap, vm, vdi, power_state, at):
        r = self.rec(snap)
        self.assertEqual((r["is_a_snapshot"], r["is_a_template"], r["snapshot_of"], r["name_label"]),
                         (True, True, vm, "cp"))
        self.assertEqual(r["power_state"], power_state)
        self.assertEqual(r["snapshot_info"], {"power-state-at-snapshot": at, "disk-snapshot-type": "crash_consistent"})
        self.assertIn(snap, self.rec(vm)["snapshots"])
        disk = ok(self.x.VDI.get_record(self.s, self.disk_of(snap)))
        self.assertEqual((disk["is_a_snapshot"], disk["snapshot_of"]), (True, vdi))
        return r

    def test_running_vm(self):
        vm, vdi = self.new_vm("running")
        ok(self.x.VM.start(self.s, vm, False, False))
        vdis_before = set(ok(self.x.SR.get_VDIs(self.s, self.sr)))
        snap = ok(self.x.VM.checkpoint(self.s, vm, "cp"))
        r = self.check_snapshot(snap, vm, vdi, "Suspended", "Running")
        image = ok(self.x.VDI.get_record(self.s, r["suspend_VDI"]))
        self.assertEqual((image["type"], image["SR"]), ("suspend", self.sr))
        self.assertGreaterEqual(int(image["virtual_size"]), 128 * MiB)
        # on the local ext SR the snapshot's copy of the memory image is raw too, no VHD chain over it
        self.assertEqual(image["sm_config"].get("vdi_type"), "raw")
        self.assertNotIn("vhd-parent", image["sm_config"])
        # The VM runs again; its own image was consumed by the resume.
        v = self.rec(vm)
        self.assertEqual((v["power_state"], v["suspend_VDI"]), ("Running", NULL_REF))
        self.assertGreaterEqual(int(v["domid"]), 1)
        # (on the local ext SR the disk's snapshot also made a hidden base copy, not managed)
        new = {v for v in set(ok(self.x.SR.get_VDIs(self.s, self.sr))) - vdis_before
               if ok(self.x.VDI.get_managed(self.s, v))}
        self.assertEqual(new, {r["suspend_VDI"], self.disk_of(snap)})
        self.assertIn("revert", r["allowed_operations"])
        self.assertEqual(fail(self.x.VM.resume(self.s, snap, False, False)), ["VM_IS_SNAPSHOT", snap, "resume"])
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_suspended_vm(self):
        vm, vdi = self.new_vm("suspended")
        ok(self.x.VM.start(self.s, vm, False, False))
        ok(self.x.VM.suspend(self.s, vm))
        own = self.rec(vm)["suspend_VDI"]
        self.assertIn("checkpoint", self.rec(vm)["allowed_operations"])
        snap = ok(self.x.VM.checkpoint(self.s, vm, "cp"))
        r = self.check_snapshot(snap, vm, vdi, "Suspended", "Suspended")
        self.assertNotIn(r["suspend_VDI"], (NULL_REF, own))
        self.assertEqual(ok(self.x.VDI.get_snapshot_of(self.s, r["suspend_VDI"])), own)
        # The VM stays suspended on its own image, and resumes from it.
        self.assertEqual((self.rec(vm)["power_state"], self.rec(vm)["suspend_VDI"]), ("Suspended", own))
        ok(self.x.VM.resume(self.s, vm, False, False))
        self.assertEqual(self.rec(vm)["power_state"], "Running")
        ok(self.x.VDI.get_record(self.s, r["suspend_VDI"]))  # the snapshot's image stays
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_revert_to_a_checkpoint(self):
        """The VM comes back suspended on a copy of the checkpoint's image, and resumes from it;
        the checkpoint keeps its own image for another revert."""
        vm, vdi = self.new_vm("revert")
        ok(self.x.VM.start(self.s, vm, False, False))
        snap = ok(self.x.VM.checkpoint(self.s, vm, "cp"))
        image = self.rec(snap)["suspend_VDI"]
        for _ in range(2):
            ok(self.x.VM.revert(self.s, snap))
            v = self.rec(vm)
            self.assertEqual(v["power_state"], "Suspended")
            self.assertNotIn(v["suspend_VDI"], (NULL_REF, image))
            self.assertEqual(ok(self.x.VDI.get_type(self.s, v["suspend_VDI"])), "suspend")
            self.assertNotEqual(self.disk_of(vm), vdi)
            ok(self.x.VM.resume(self.s, vm, False, False))
            self.assertEqual(self.rec(vm)["power_state"], "Running")
            self.assertEqual(self.rec(snap)["suspend_VDI"], image)
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_paused_vm(self):
        vm, vdi = self.new_vm("paused")
        ok(self.x.VM.start(self.s, vm, True, False))
        snap = ok(self.x.VM.checkpoint(self.s, vm, "cp"))
        r = self.check_snapshot(snap, vm, vdi, "Halted", "Paused")
        self.assertEqual(r["suspend_VDI"], NULL_REF)
        self.assertEqual(self.rec(vm)["power_state"], "Paused")
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_async(self):
        vm, vdi = self.new_vm("async")
        ok(self.x.VM.start(self.s, vm, False, False))
        task = ok(self.x.Async.VM.checkpoint(self.s, vm, "cp"))
        t = wait_task(self.x, self.s, task)
        self.assertEqual(t["status"], "success", t)
        snap = t["result"].replace("<value>", "").replace("</value>", "")
        self.check_snapshot(snap, vm, vdi, "Suspended", "Running")
        self.assertEqual(self.rec(vm)["power_state"], "Running")
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_refused(self):
        vm, _ = self.new_vm("refused")
        self.assertEqual(fail(self.x.VM.checkpoint(self.s, vm, "cp")),
                         ["VM_BAD_POWER_STATE", vm, "running, paused, suspended", "halted"])
        t = ok(self.x.VM.get_by_name_label(self.s, "Generic Linux PV"))[0]
        self.assertEqual(fail(self.x.VM.checkpoint(self.s, t, "cp"))[0], "VM_BAD_POWER_STATE")
        ok(self.x.VM.start(self.s, vm, False, False))
        snap = ok(self.x.VM.checkpoint(self.s, vm, "cp"))
        self.assertEqual(fail(self.x.VM.checkpoint(self.s, snap, "again")), ["VM_IS_SNAPSHOT", snap, "checkpoint"])
        self.assertEqual(fail(self.x.VM.checkpoint(self.s, NULL_REF, "cp")), ["HANDLE_INVALID", "VM", NULL_REF])
        dom0 = [v for v, r in ok(self.x.VM.get_all_records(self.s)).items() if r["is_control_domain"]][0]
        self.assertEqual(fail(self.x.VM.checkpoint(self.s, dom0, "cp"))[0], "OPERATION_NOT_ALLOWED")
        self.assertEqual(self.rec(vm)["power_state"], "Running")
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_disk_on_an_sr_without_snapshots(self):
        """Checked before the VM is suspended: it keeps running."""
        lib = tempfile.mkdtemp(prefix="xenapid-cp-iso-")
        self.addCleanup(shutil.rmtree, lib)
        with open(os.path.join(lib, "disk.iso"), "wb") as f:
            f.truncate(MiB)
        host = ok(self.x.host.get_all(self.s))[0]
        sr = ok(self.x.SR.create(self.s, host, {"location": lib}, "0", "lib", "", "iso", "iso", False, {}))
        iso = ok(self.x.SR.get_VDIs(self.s, sr))[0]
        vm, _ = self.new_vm("iso-disk")
        ok(self.x.VBD.create(self.s, {"VM": vm, "VDI": iso, "userdevice": "1", "bootable": False, "mode": "RO",
                                     "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
                                     "qos_algorithm_params": {}}))
        ok(self.x.VM.start(self.s, vm, False, False))
        domid = self.rec(vm)["domid"]
        self.assertEqual(fail(self.x.VM.checkpoint(self.s, vm, "cp")), ["SR_OPERATION_NOT_SUPPORTED", vm])
        self.assertEqual((self.rec(vm)["power_state"], self.rec(vm)["domid"]), ("Running", domid))
        self.assertEqual(self.rec(vm)["snapshots"], [])
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_snapshot_records_its_power_state(self):
        vm, _ = self.new_vm("snap")
        snap = ok(self.x.VM.snapshot(self.s, vm, "s"))
        self.assertEqual(self.rec(snap)["snapshot_info"],
                         {"power-state-at-snapshot": "Halted", "disk-snapshot-type": "crash_consistent"})
        self.assertEqual(self.rec(snap)["power_state"], "Halted")


if __name__ == "__main__":
    unittest.main()
