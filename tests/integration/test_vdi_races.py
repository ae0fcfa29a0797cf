"""One VDI destroyed while a guest attaches it (the simulator backend), over
HTTP from two clients at once, many times over: VDI.destroy and VBD.plug, or
VDI.destroy and VM.start, never both succeed. Whichever wins, the loser fails
with a XenAPI error, and what is left is consistent: a destroyed VDI has no
VBD and no file; an attached one is there with its data."""

import os
import threading

from harness import DaemonTest, ok

MiB = 1 << 20
ROUNDS = 40


class RaceBase(DaemonTest):
    extra_config = "sim_guest_delay_ms = 1\n"

    def sr(self):
        return ok(self.x.pool.get_default_SR(self.s, ok(self.x.pool.get_all(self.s))[0]))

    def sr_path(self):
        pbd = ok(self.x.SR.get_PBDs(self.s, self.sr()))[0]
        return ok(self.x.PBD.get_device_config(self.s, pbd))["path"]

    def new_vm(self, name):
        t = ok(self.x.VM.get_by_name_label(self.s, "Generic Linux PV"))[0]
        vm = ok(self.x.VM.clone(self.s, t, name))
        ok(self.x.VM.set_is_a_template(self.s, vm, False))
        ok(self.x.VM.set_PV_kernel(self.s, vm, "/boot/vmlinuz"))
        self.addCleanup(self.x.VM.destroy, self.s, vm)
        self.addCleanup(self.x.VM.hard_shutdown, self.s, vm)
        return vm

    def new_disk(self, vm, userdevice, mode="RW"):
        vdi = ok(self.x.VDI.create(self.s, {"name_label": "raced", "SR": self.sr(), "virtual_size": str(2 * MiB),
                                           "type": "user", "sharable": False, "read_only": False,
                                           "other_config": {}}))
        vbd = ok(self.x.VBD.create(self.s, {"VM": vm, "VDI": vdi, "userdevice": str(userdevice), "bootable": False,
                                           "mode": mode, "type": "Disk", "empty": False, "other_config": {},
                                           "qos_algorithm_type": "", "qos_algorithm_params": {}}))
        return vdi, vbd, ok(self.x.VDI.get_location(self.s, vdi))

    def console_text(self, vm):
        consoles = ok(self.x.VM.get_consoles(self.s, vm))
        status, _, body = self.d.http("GET", "/console?ref=%s&session_id=%s" % (consoles[0], self.s))
        self.assertEqual(status, 200)
        return body.decode()

    def race(self, attach, vdi):
        """Runs attach() and VDI.destroy(vdi) at once, each on its own connection: their results."""
        x2, s2 = self.d.login()
        results = {}
        go = threading.Barrier(2)

        def destroy():
            go.wait()
            results["destroy"] = x2.VDI.destroy(s2, vdi)

        t = threading.Thread(target=destroy)
        t.start()
        go.wait()
        results["attach"] = attach()
        t.join(60)
        x2.session.logout(s2)
        return results["attach"], results["destroy"]

    def check_outcome(self, attached, destroyed, vdi, vbd, loc):
        won = [name for name, r in (("attach", attached), ("destroy", destroyed)) if r["Status"] == "Success"]
        self.assertNotEqual(won, ["attach", "destroy"], "both the attach and the destroy of one VDI succeeded")
        self.assertEqual(len(won), 1, (attached, destroyed))
        image = os.path.join(self.sr_path(), loc + ".vhd")
        if won == ["destroy"]:
            self.assertEqual(self.x.VDI.get_record(self.s, vdi)["ErrorDescription"][0], "HANDLE_INVALID")
            self.assertEqual(self.x.VBD.get_record(self.s, vbd)["Status"], "Failure")
            self.assertFalse(os.path.exists(image))
        else:
            self.assertEqual(destroyed["ErrorDescription"][0], "VDI_IN_USE", destroyed)
            self.assertTrue(ok(self.x.VBD.get_currently_attached(self.s, vbd)))
            self.assertTrue(os.path.exists(image))
        return won[0]


class TestAllowedWhileAttached(RaceBase):
    """A VDI a running VM uses lists only what xapi allows on an attached disk: the live operations
    (clone, snapshot, resize_online), and copy from a read-only one; and fails the others with
    VDI_IN_USE. Halted again, it lists them all."""

    def test_vm_start_and_shutdown(self):
        vm = self.new_vm("allowed")
        rw, _, _ = self.new_disk(vm, 1)
        ro, _, _ = self.new_disk(vm, 2, mode="RO")
        everything = ["clone", "copy", "destroy", "forget", "resize", "resize_online", "snapshot", "update"]
        for vdi in (rw, ro):
            self.assertEqual(sorted(ok(self.x.VDI.get_allowed_operations(self.s, vdi))), everything)
        ok(self.x.VM.start(self.s, vm, False, False))
        self.assertEqual(sorted(ok(self.x.VDI.get_allowed_operations(self.s, rw))),
                         ["clone", "resize_online", "snapshot"])
        self.assertEqual(sorted(ok(self.x.VDI.get_allowed_operations(self.s, ro))),
                         ["clone", "copy", "resize_online", "snapshot"])
        for vdi in (rw, ro):
            self.assertEqual(self.x.VDI.destroy(self.s, vdi)["ErrorDescription"], ["VDI_IN_USE", vdi, "destroy"])
            self.assertEqual(self.x.VDI.resize(self.s, vdi, str(4 * MiB))["ErrorDescription"],
                             ["VDI_IN_USE", vdi, "resize"])
        ok(self.x.VM.hard_shutdown(self.s, vm))
        for vdi in (rw, ro):
            self.assertEqual(sorted(ok(self.x.VDI.get_allowed_operations(self.s, vdi))), everything)


class TestDestroyRacesAttach(RaceBase):
    def test_destroy_and_vbd_plug(self):
        vm = self.new_vm("plug race")
        ok(self.x.VM.start(self.s, vm, False, False))
        wins = set()
        for i in range(ROUNDS):
            vdi, vbd, loc = self.new_disk(vm, 1 + i % 8)
            attached, destroyed = self.race(lambda: self.x.VBD.plug(self.s, vbd), vdi)
            won = self.check_outcome(attached, destroyed, vdi, vbd, loc)
            wins.add(won)
            if won == "attach":
                ok(self.x.VBD.unplug(self.s, vbd))
                ok(self.x.VDI.destroy(self.s, vdi))

    def test_destroy_and_vm_start(self):
        vm = self.new_vm("start race")
        for _ in range(ROUNDS):
            vdi, vbd, loc = self.new_disk(vm, 1)
            attached, destroyed = self.race(lambda: self.x.VM.start(self.s, vm, False, False), vdi)
            if attached["Status"] == destroyed["Status"] == "Success":
                # only as two calls one after the other: the VDI (and its VBD) went first, and the
                # guest started without it
                self.assertNotIn(loc, self.console_text(vm), "the guest started on a destroyed VDI")
                self.assertEqual(ok(self.x.VM.get_VBDs(self.s, vm)), [])
                self.assertFalse(os.path.exists(os.path.join(self.sr_path(), loc + ".vhd")))
                ok(self.x.VM.hard_shutdown(self.s, vm))
                continue
            won = self.check_outcome(attached, destroyed, vdi, vbd, loc)
            if won == "attach":
                ok(self.x.VM.hard_shutdown(self.s, vm))
                ok(self.x.VDI.destroy(self.s, vdi))
            else:
                # the start lost: the VM is as it was
                self.assertEqual(ok(self.x.VM.get_power_state(self.s, vm)), "Halted")
