"""VM lifecycle on the sim backend, over XML-RPC: every transition, the errors
xapi gives, the per-VM operation lock, guest-initiated shutdowns through the
simulator's control socket, and reconciliation after kill -9."""

import base64
import os
import re
import socket
import threading
import time
import unittest

from harness import NULL_REF, PASSWORD, Daemon, DaemonTest, fail, ok

MiB = 1 << 20


def sim_control(d, line):
    """Makes a simulated guest act on its own (test-only control socket)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(os.path.join(d.state_dir, "sim-control.sock"))
    s.sendall((line + "\n").encode())
    reply = s.recv(200).decode()
    s.close()
    return reply


def pv_vm(x, s, name):
    """A halted PV VM cloned from the default template, with a kernel."""
    t = ok(x.VM.get_by_name_label(s, "Generic Linux PV"))[0]
    vm = ok(x.VM.clone(s, t, name))
    ok(x.VM.set_is_a_template(s, vm, False))
    ok(x.VM.set_PV_kernel(s, vm, "/boot/vmlinuz"))
    return vm


def ignoring_vm(d, x, s, name):
    """A running PV VM whose guest ignores clean shutdown and reboot requests (sim test knob)."""
    vm = pv_vm(x, s, name)
    ok(x.VM.start(s, vm, False, False))
    assert sim_control(d, "ignore-requests " + ok(x.VM.get_uuid(s, vm))) == "ok\n"
    return vm


def wait_for(pred, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not met within %.1fs" % timeout)


class VMTestBase(DaemonTest):
    extra_config = "op_wait_timeout = 2\nclean_shutdown_timeout = 3\nsim_guest_delay_ms = 30\n"

    def template(self, name="Generic Linux PV"):
        refs = ok(self.x.VM.get_by_name_label(self.s, name))
        self.assertEqual(len(refs), 1, name)
        return refs[0]

    def new_vm(self, name="vm", memory=256 * MiB):
        vm = ok(self.x.VM.clone(self.s, self.template(), name))
        ok(self.x.VM.set_is_a_template(self.s, vm, False))
        ok(self.x.VM.set_memory_limits(self.s, vm, str(memory // 2), str(memory), str(memory), str(memory)))
        ok(self.x.VM.set_PV_kernel(self.s, vm, "/boot/vmlinuz"))
        return vm

    def vm(self, ref):
        return ok(self.x.VM.get_record(self.s, ref))

    def power(self, ref):
        return ok(self.x.VM.get_power_state(self.s, ref))

    def start(self, name, after_shutdown="destroy", after_reboot="restart", after_crash="restart"):
        vm = self.new_vm(name)
        ok(self.x.VM.set_actions_after_shutdown(self.s, vm, after_shutdown))
        ok(self.x.VM.set_actions_after_reboot(self.s, vm, after_reboot))
        ok(self.x.VM.set_actions_after_crash(self.s, vm, after_crash))
        ok(self.x.VM.start(self.s, vm, False, False))
        return vm, self.vm(vm)["uuid"], self.vm(vm)["domid"]


class TestPowerStates(VMTestBase):
    def test_backend_version_reported(self):
        host = ok(self.x.session.get_this_host(self.s, self.s))
        self.assertEqual(ok(self.x.host.get_software_version(self.s, host))["xen"], "4.17.0-sim")

    def test_templates_installed(self):
        for name in ("Other install media", "Generic Linux PV"):
            rec = self.vm(self.template(name))
            self.assertTrue(rec["is_a_template"])
            self.assertEqual(rec["other_config"].get("default_template"), "true")
            self.assertIn("disks", rec["other_config"])

    def test_halted_vm_has_domid_minus_one(self):
        vm = self.new_vm("halted")
        self.assertEqual(ok(self.x.VM.get_domid(self.s, vm)), "-1")
        self.assertEqual(self.power(vm), "Halted")
        rec = self.vm(vm)
        self.assertIn("start", rec["allowed_operations"])
        self.assertNotIn("clean_shutdown", rec["allowed_operations"])
        self.assertEqual(rec["current_operations"], {})

    def test_full_cycle(self):
        vm = self.new_vm("cycle")
        host = ok(self.x.session.get_this_host(self.s, self.s))
        ok(self.x.VM.start(self.s, vm, False, False))
        rec = self.vm(vm)
        self.assertEqual(rec["power_state"], "Running")
        self.assertNotEqual(rec["domid"], "-1")
        self.assertEqual(rec["resident_on"], host)
        self.assertIn(vm, ok(self.x.host.get_resident_VMs(self.s, host)))
        self.assertIn("clean_shutdown", rec["allowed_operations"])
        m = ok(self.x.VM_metrics.get_record(self.s, rec["metrics"]))
        self.assertEqual(m["state"], ["running"])
        self.assertEqual(m["memory_actual"], str(256 * MiB))

        ok(self.x.VM.pause(self.s, vm))
        self.assertEqual(self.power(vm), "Paused")
        ok(self.x.VM.unpause(self.s, vm))
        self.assertEqual(self.power(vm), "Running")

        domid = self.vm(vm)["domid"]
        ok(self.x.VM.clean_reboot(self.s, vm))
        self.assertEqual(self.power(vm), "Running")
        self.assertNotEqual(self.vm(vm)["domid"], domid, "a reboot makes a new domain")

        ok(self.x.VM.hard_reboot(self.s, vm))
        self.assertEqual(self.power(vm), "Running")

        ok(self.x.VM.suspend(self.s, vm))
        rec = self.vm(vm)
        self.assertEqual(rec["power_state"], "Suspended")
        self.assertEqual(rec["domid"], "-1")
        ok(self.x.VM.resume(self.s, vm, False, False))
        self.assertEqual(self.power(vm), "Running")
        self.assertEqual(self.vm(vm)["suspend_VDI"], NULL_REF)

        ok(self.x.VM.clean_shutdown(self.s, vm))
        rec = self.vm(vm)
        self.assertEqual(rec["power_state"], "Halted")
        self.assertEqual(rec["domid"], "-1")
        self.assertNotIn(vm, ok(self.x.host.get_resident_VMs(self.s, host)))

        ok(self.x.VM.start(self.s, vm, True, False))
        self.assertEqual(self.power(vm), "Paused")
        ok(self.x.VM.hard_shutdown(self.s, vm))
        self.assertEqual(self.power(vm), "Halted")

        ok(self.x.VM.start(self.s, vm, False, False))
        ok(self.x.VM.shutdown(self.s, vm))
        self.assertEqual(self.power(vm), "Halted")

    def test_start_logs_own_time(self):
        """Each VM.start logs the daemon's own time beside the backend's (the e2e boot storm's figures)."""
        started = []
        for name, paused in (("timed-1", False), ("timed-2", True)):
            vm = self.new_vm(name)
            ok(self.x.VM.start(self.s, vm, paused, False))
            started.append((self.vm(vm)["uuid"], self.vm(vm)["domid"]))
        with open(self.d.log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        for uuid, domid in started:
            m = re.findall(r"VM %s started as domain %s; own time (\d+) us wall, (\d+) us CPU; "
                           r"backend (\d+) us wall, (\d+) us CPU; record (\d+) us wall \(plumbing (\d+) us for "
                           r"\d+ VIFs, lock wait (\d+) us, locked (\d+) us, durable wait (\d+) us, then (\d+) us\); "
                           r"before the backend (\d+) us \(its networks' devices (\d+) us\); CPU before the backend "
                           r"(\d+) us, in the record (\d+) us" % (uuid, domid), log)
            self.assertEqual(len(m), 1, "no own-time line for VM %s in the log" % uuid)
            (own, own_cpu, _, _, record, plumbing, lock_wait, locked, durable, after, before, networks,
             cpu_before, cpu_record) = (int(x) for x in m[0])
            # the parts are differences of the same stamps: they add up (each rounded down to a us)
            self.assertLessEqual(abs(record - (plumbing + lock_wait + locked + durable + after)), 5)
            self.assertLessEqual(abs(own - (before + record)), 2)
            self.assertLessEqual(abs(own_cpu - (cpu_before + cpu_record)), 2)
            self.assertLessEqual(networks, before)

    def test_bad_power_state(self):
        vm = self.new_vm("bps")
        for call, expected in ((self.x.VM.clean_shutdown, "running"), (self.x.VM.pause, "running"),
                               (self.x.VM.unpause, "paused"), (self.x.VM.suspend, "running"),
                               (self.x.VM.clean_reboot, "running")):
            self.assertEqual(fail(call(self.s, vm)), ["VM_BAD_POWER_STATE", vm, expected, "halted"])
        self.assertEqual(fail(self.x.VM.resume(self.s, vm, False, False)),
                         ["VM_BAD_POWER_STATE", vm, "suspended", "halted"])
        ok(self.x.VM.start(self.s, vm, False, False))
        self.assertEqual(fail(self.x.VM.start(self.s, vm, False, False)),
                         ["VM_BAD_POWER_STATE", vm, "halted", "running"])
        self.assertEqual(fail(self.x.VM.destroy(self.s, vm)), ["VM_BAD_POWER_STATE", vm, "halted", "running"])
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_start_on_and_resume_on(self):
        """Nova starts with VM.start_on(vm, host, paused, force); resume_on as well: on this host they work,
        a ref that is no host is HANDLE_INVALID."""
        vm = self.new_vm("on")
        host = ok(self.x.host.get_all(self.s))[0]
        self.assertEqual(fail(self.x.VM.start_on(self.s, vm, vm, False, False)), ["HANDLE_INVALID", "host", vm])
        self.assertEqual(self.power(vm), "Halted")
        ok(self.x.VM.start_on(self.s, vm, host, True, False))
        self.assertEqual(self.power(vm), "Paused")
        self.assertEqual(self.vm(vm)["resident_on"], host)
        ok(self.x.VM.unpause(self.s, vm))
        ok(self.x.VM.suspend(self.s, vm))
        self.assertEqual(fail(self.x.VM.resume_on(self.s, vm, vm, False, False)), ["HANDLE_INVALID", "host", vm])
        self.assertEqual(self.power(vm), "Suspended")
        ok(self.x.VM.resume_on(self.s, vm, host, False, False))
        self.assertEqual(self.power(vm), "Running")
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_suspend_image_is_a_vdi(self):
        """As xapi: the image goes to a VDI of type suspend on the default SR (VM.suspend_VDI), which
        resume and a forced halt destroy."""
        vm = self.new_vm("susp")
        pool = ok(self.x.pool.get_all(self.s))[0]
        sr = ok(self.x.pool.get_default_SR(self.s, pool))
        for end in ("resume", "hard_shutdown"):
            with self.subTest(end):
                ok(self.x.VM.start(self.s, vm, False, False))
                before = set(ok(self.x.SR.get_VDIs(self.s, sr)))
                ok(self.x.VM.suspend(self.s, vm))
                vdi = self.vm(vm)["suspend_VDI"]
                self.assertNotEqual(vdi, NULL_REF)
                rec = ok(self.x.VDI.get_record(self.s, vdi))
                self.assertEqual((rec["type"], rec["SR"]), ("suspend", sr))
                self.assertGreaterEqual(int(rec["virtual_size"]), 256 * MiB)
                self.assertEqual(set(ok(self.x.SR.get_VDIs(self.s, sr))) - before, {vdi})
                if end == "resume":
                    ok(self.x.VM.resume(self.s, vm, False, False))
                    self.assertEqual(self.power(vm), "Running")
                    ok(self.x.VM.hard_shutdown(self.s, vm))
                else:
                    ok(self.x.VM.hard_shutdown(self.s, vm))
                self.assertEqual(self.power(vm), "Halted")
                self.assertEqual(self.vm(vm)["suspend_VDI"], NULL_REF)
                self.assertEqual(fail(self.x.VDI.get_record(self.s, vdi))[0], "HANDLE_INVALID")
                self.assertEqual(set(ok(self.x.SR.get_VDIs(self.s, sr))), before)

    def test_resume_without_image(self):
        vm = self.new_vm("lost")
        ok(self.x.VM.start(self.s, vm, False, False))
        ok(self.x.VM.suspend(self.s, vm))
        ok(self.x.VDI.destroy(self.s, self.vm(vm)["suspend_VDI"]))
        self.assertEqual(self.vm(vm)["suspend_VDI"], NULL_REF)
        self.assertEqual(fail(self.x.VM.resume(self.s, vm, False, False)), ["VM_HAS_NO_SUSPEND_VDI", vm])
        self.assertEqual(self.power(vm), "Suspended")
        ok(self.x.VM.hard_shutdown(self.s, vm))
        self.assertEqual(self.power(vm), "Halted")

    def test_vcpus_live(self):
        """CloudStack's ScaleVm: VM.set_VCPUs_number_live on a running VM, within VCPUs_max; the count
        is kept for the next start and shown in VM_metrics."""
        vm = self.new_vm("scale")
        ok(self.x.VM.set_VCPUs_max(self.s, vm, "4"))
        ok(self.x.VM.set_VCPUs_at_startup(self.s, vm, "1"))
        self.assertEqual(fail(self.x.VM.set_VCPUs_number_live(self.s, vm, "2")),
                         ["VM_BAD_POWER_STATE", vm, "running", "halted"])
        ok(self.x.VM.start(self.s, vm, False, False))
        self.assertIn("changing_VCPUs_live", self.vm(vm)["allowed_operations"])
        ok(self.x.VM.set_VCPUs_number_live(self.s, vm, "3"))
        rec = self.vm(vm)
        self.assertEqual(rec["VCPUs_at_startup"], "3")
        self.assertEqual(ok(self.x.VM_metrics.get_VCPUs_number(self.s, rec["metrics"])), "3")
        for bad in ("0", "5"):
            self.assertEqual(fail(self.x.VM.set_VCPUs_number_live(self.s, vm, bad)), ["INVALID_VALUE", "nvcpu", bad])
        self.assertEqual(self.vm(vm)["VCPUs_at_startup"], "3")
        ok(self.x.VM.hard_shutdown(self.s, vm))
        ok(self.x.VM.start(self.s, vm, False, False))
        self.assertEqual(ok(self.x.VM_metrics.get_VCPUs_number(self.s, self.vm(vm)["metrics"])), "3")
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_template_cannot_start(self):
        t = self.template()
        err = fail(self.x.VM.start(self.s, t, False, False))
        self.assertEqual(err[0], "VM_IS_TEMPLATE")
        self.assertEqual(fail(self.x.VM.destroy(self.s, t)), ["VM_CANNOT_DELETE_DEFAULT_TEMPLATE", t])

    def test_memory_constraints(self):
        vm = self.new_vm("mem")
        err = fail(self.x.VM.set_memory_limits(self.s, vm, str(512 * MiB), str(256 * MiB), str(256 * MiB),
                                               str(256 * MiB)))
        self.assertEqual(err[0], "MEMORY_CONSTRAINT_VIOLATION")
        ok(self.x.VM.set_memory_limits(self.s, vm, str(64 * MiB), str(1 << 50), str(1 << 50), str(1 << 50)))
        err = fail(self.x.VM.start(self.s, vm, False, False))
        self.assertEqual(err[0], "HOST_NOT_ENOUGH_FREE_MEMORY")
        self.assertEqual(err[1], str(1 << 50))
        self.assertTrue(int(err[2]) < (1 << 50))
        self.assertEqual(self.power(vm), "Halted")

    def test_memory_too_small_for_kernel(self):
        """A PV kernel bigger than the VM's memory: the domain builder refuses it (libxc's "segment
        kernel too large"; the simulator does the same) and VM.start says VM_MEMORY_SIZE_TOO_LOW, as
        xapi does for a VM whose memory cannot start it, not INTERNAL_ERROR."""
        kernel = os.path.join(self.d.state_dir, "big-vmlinux")
        with open(kernel, "wb") as f:
            f.truncate(40 * MiB)   # sparse: only its size matters
        vm = self.new_vm("small", memory=32 * MiB)
        ok(self.x.VM.set_PV_kernel(self.s, vm, kernel))
        self.assertEqual(fail(self.x.VM.start(self.s, vm, False, False)), ["VM_MEMORY_SIZE_TOO_LOW", vm])
        self.assertEqual(self.power(vm), "Halted")
        self.assertEqual(ok(self.x.VM.get_domid(self.s, vm)), "-1")
        ok(self.x.VM.set_memory_limits(self.s, vm, str(32 * MiB), str(64 * MiB), str(64 * MiB), str(64 * MiB)))
        ok(self.x.VM.start(self.s, vm, False, False))
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_vcpus(self):
        vm = self.new_vm("vcpus")
        ok(self.x.VM.set_VCPUs_max(self.s, vm, "4"))
        ok(self.x.VM.set_VCPUs_at_startup(self.s, vm, "2"))
        self.assertEqual(fail(self.x.VM.set_VCPUs_at_startup(self.s, vm, "8"))[0], "INVALID_VALUE")
        self.assertEqual(self.vm(vm)["VCPUs_at_startup"], "2")

    def test_destroy_removes_devices_not_disks(self):
        vm = self.new_vm("destroy")
        net = ok(self.x.network.create(self.s, {"name_label": "n", "name_description": "", "MTU": "1500",
                                               "other_config": {}, "bridge": "", "managed": True, "tags": []}))
        sr = ok(self.x.pool.get_default_SR(self.s, ok(self.x.pool.get_all(self.s))[0]))
        vdi = ok(self.x.VDI.create(self.s, {"name_label": "d", "name_description": "", "SR": sr,
                                           "virtual_size": str(4 * MiB), "type": "user", "sharable": False,
                                           "read_only": False, "other_config": {}, "xenstore_data": {},
                                           "sm_config": {}, "tags": []}))
        vbd = ok(self.x.VBD.create(self.s, {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True,
                                           "mode": "RW", "type": "Disk", "unpluggable": True, "empty": False,
                                           "other_config": {}, "qos_algorithm_type": "",
                                           "qos_algorithm_params": {}}))
        vif = ok(self.x.VIF.create(self.s, {"device": "0", "network": net, "VM": vm, "MAC": "",
                                           "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                                           "qos_algorithm_params": {}}))
        metrics = self.vm(vm)["metrics"]
        ok(self.x.VM.destroy(self.s, vm))
        self.assertEqual(fail(self.x.VBD.get_record(self.s, vbd))[0], "HANDLE_INVALID")
        self.assertEqual(fail(self.x.VIF.get_record(self.s, vif))[0], "HANDLE_INVALID")
        self.assertEqual(fail(self.x.VM_metrics.get_record(self.s, metrics))[0], "HANDLE_INVALID")
        self.assertEqual(ok(self.x.VDI.get_VBDs(self.s, vdi)), [])
        ok(self.x.VDI.get_record(self.s, vdi))


class TestConsoleAndHotplug(VMTestBase):
    def make_disk(self, size=4 * MiB):
        sr = ok(self.x.pool.get_default_SR(self.s, ok(self.x.pool.get_all(self.s))[0]))
        return ok(self.x.VDI.create(self.s, {"name_label": "d", "name_description": "", "SR": sr,
                                            "virtual_size": str(size), "type": "user", "sharable": False,
                                            "read_only": False, "other_config": {}, "xenstore_data": {},
                                            "sm_config": {}, "tags": []}))

    def make_vbd(self, vm, vdi, userdevice):
        return ok(self.x.VBD.create(self.s, {"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": False,
                                            "mode": "RW", "type": "Disk", "unpluggable": True, "empty": False,
                                            "other_config": {}, "qos_algorithm_type": "",
                                            "qos_algorithm_params": {}}))

    def console_text(self, vm):
        consoles = ok(self.x.VM.get_consoles(self.s, vm))
        self.assertEqual(len(consoles), 1)
        rec = ok(self.x.console.get_record(self.s, consoles[0]))
        self.assertEqual(rec["protocol"], "vt100")
        self.assertEqual(rec["location"], "http://127.0.0.1:%d/console?ref=%s" % (self.d.port, consoles[0]))
        status, _, body = self.d.http("GET", "/console?ref=%s&session_id=%s" % (consoles[0], self.s))
        self.assertEqual(status, 200)
        return body.decode()

    def test_console_and_hotplug(self):
        vm = self.new_vm("console")
        net = ok(self.x.network.create(self.s, {"name_label": "cn", "name_description": "", "MTU": "1500",
                                               "other_config": {}, "bridge": "", "managed": True, "tags": []}))
        self.make_vbd(vm, self.make_disk(), "0")
        vif = ok(self.x.VIF.create(self.s, {"device": "0", "network": net, "VM": vm, "MAC": "00:16:3e:00:00:01",
                                           "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                                           "qos_algorithm_params": {}}))
        self.assertEqual(ok(self.x.VM.get_consoles(self.s, vm)), [])
        ok(self.x.VM.start(self.s, vm, False, False))
        text = self.console_text(vm)
        self.assertIn("SIM-GUEST-UP", text)
        self.assertIn("SIM-DISK xvda:", text)
        self.assertIn("SIM-MAC eth0: 00:16:3e:00:00:01", text)
        self.assertTrue(ok(self.x.VIF.get_currently_attached(self.s, vif)))

        console = ok(self.x.VM.get_consoles(self.s, vm))[0]
        status, _, _ = self.d.http("GET", "/console?ref=%s" % console)
        self.assertEqual(status, 401)
        # as the disk transfers: a session cookie, or the account's password
        status, _, body = self.d.http("GET", "/console?ref=%s" % console, headers={"Cookie": "session_id=" + self.s})
        self.assertEqual((status, "SIM-GUEST-UP" in body.decode()), (200, True))
        basic = base64.b64encode(("root:" + PASSWORD).encode()).decode()
        status, _, body = self.d.http("GET", "/console?ref=%s" % console, headers={"Authorization": "Basic " + basic})
        self.assertEqual((status, "SIM-GUEST-UP" in body.decode()), (200, True))
        status, _, _ = self.d.http("GET", "/console?ref=OpaqueRef:nope&session_id=%s" % self.s)
        self.assertEqual(status, 404)

        vbd2 = self.make_vbd(vm, self.make_disk(), "1")
        self.assertFalse(ok(self.x.VBD.get_currently_attached(self.s, vbd2)))
        ok(self.x.VBD.plug(self.s, vbd2))
        self.assertTrue(ok(self.x.VBD.get_currently_attached(self.s, vbd2)))
        self.assertEqual(ok(self.x.VBD.get_device(self.s, vbd2)), "xvdb")
        self.assertEqual(fail(self.x.VBD.plug(self.s, vbd2)), ["DEVICE_ALREADY_ATTACHED", vbd2])
        vif2 = ok(self.x.VIF.create(self.s, {"device": "1", "network": net, "VM": vm, "MAC": "00:16:3e:00:00:02",
                                            "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                                            "qos_algorithm_params": {}}))
        ok(self.x.VIF.plug(self.s, vif2))
        text = self.console_text(vm)
        self.assertIn("SIM-DISK xvdb: hot-plugged", text)
        self.assertIn("SIM-MAC eth1: 00:16:3e:00:00:02 hot-plugged", text)
        self.assertEqual(fail(self.x.VBD.destroy(self.s, vbd2))[0], "OPERATION_NOT_ALLOWED")
        ok(self.x.VBD.unplug(self.s, vbd2))
        self.assertEqual(fail(self.x.VBD.unplug(self.s, vbd2)), ["DEVICE_ALREADY_DETACHED", vbd2])
        ok(self.x.VBD.destroy(self.s, vbd2))
        ok(self.x.VIF.unplug(self.s, vif2))
        ok(self.x.VM.clean_shutdown(self.s, vm))
        self.assertEqual(ok(self.x.VM.get_consoles(self.s, vm)), [])
        self.assertFalse(ok(self.x.VIF.get_currently_attached(self.s, vif)))
        self.assertEqual(fail(self.x.VBD.plug(self.s, ok(self.x.VM.get_VBDs(self.s, vm))[0])),
                         ["VM_BAD_POWER_STATE", vm, "running", "halted"])


class TestGuestActions(VMTestBase):
    def test_guest_shutdown_halts(self):
        vm, uuid, _ = self.start("g-shutdown")
        self.assertEqual(sim_control(self.d, "shutdown " + uuid), "ok\n")
        wait_for(lambda: self.power(vm) == "Halted")
        self.assertEqual(self.vm(vm)["domid"], "-1")

    def test_guest_shutdown_restart(self):
        vm, uuid, domid = self.start("g-shutdown-restart", after_shutdown="restart")
        sim_control(self.d, "shutdown " + uuid)
        wait_for(lambda: self.vm(vm)["domid"] not in (domid, "-1"))
        self.assertEqual(self.power(vm), "Running")

    def test_guest_reboot_restarts(self):
        vm, uuid, domid = self.start("g-reboot")
        sim_control(self.d, "reboot " + uuid)
        wait_for(lambda: self.vm(vm)["domid"] not in (domid, "-1"))
        self.assertEqual(self.power(vm), "Running")

    def test_guest_reboot_destroy(self):
        vm, uuid, _ = self.start("g-reboot-destroy", after_reboot="destroy")
        sim_control(self.d, "reboot " + uuid)
        wait_for(lambda: self.power(vm) == "Halted")

    def test_guest_crash_destroy(self):
        vm, uuid, _ = self.start("g-crash", after_crash="destroy")
        sim_control(self.d, "crash " + uuid)
        wait_for(lambda: self.power(vm) == "Halted")

    def test_guest_crash_restart(self):
        vm, uuid, domid = self.start("g-crash-restart", after_crash="restart")
        sim_control(self.d, "crash " + uuid)
        wait_for(lambda: self.vm(vm)["domid"] not in (domid, "-1"))

    def test_guest_crash_preserve(self):
        vm, uuid, domid = self.start("g-crash-preserve", after_crash="preserve")
        sim_control(self.d, "crash " + uuid)
        time.sleep(0.5)
        self.assertEqual(self.vm(vm)["domid"], domid)
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_clean_shutdown_times_out_when_guest_ignores(self):
        vm, uuid, _ = self.start("ignores")
        sim_control(self.d, "ignore-requests " + uuid)
        t0 = time.monotonic()
        err = fail(self.x.VM.clean_shutdown(self.s, vm))
        self.assertEqual(err, ["VM_SHUTDOWN_TIMEOUT", vm, "3"])
        self.assertGreaterEqual(time.monotonic() - t0, 2.5)
        self.assertEqual(self.power(vm), "Running")
        # VM.shutdown falls back to a hard shutdown
        ok(self.x.VM.shutdown(self.s, vm))
        self.assertEqual(self.power(vm), "Halted")

    def test_sim_control_is_not_public_api(self):
        methods = self.x.system.listMethods()
        self.assertTrue(methods)
        self.assertFalse([m for m in methods if m.lower().startswith("sim") or "sim_" in m.lower()])


class TestGuestRaces(VMTestBase):
    """An operation whose domain the guest stops under it (sim: reboot-before-next-op) answers
    a XenAPI error, and the guest's own reboot is still acted on."""

    def test_pause_racing_guest_reboot(self):
        vm, uuid, domid = self.start("race-pause")
        self.assertEqual(sim_control(self.d, "reboot-before-next-op " + uuid), "ok\n")
        self.assertEqual(fail(self.x.VM.pause(self.s, vm)), ["VM_BAD_POWER_STATE", vm, "running", "halted"])
        # the daemon's own hard_reboot for the guest's reboot ends (its record updated first)
        wait_for(lambda: self.vm(vm)["domid"] not in (domid, "-1") and self.power(vm) == "Running" and
                 self.vm(vm)["current_operations"] == {})
        ok(self.x.VM.pause(self.s, vm))
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_vcpus_and_suspend_racing_guest_reboot(self):
        vm, uuid, domid = self.start("race-other")
        for call, args in ((self.x.VM.set_VCPUs_number_live, ("1",)), (self.x.VM.suspend, ())):
            domid = self.vm(vm)["domid"]
            self.assertEqual(sim_control(self.d, "reboot-before-next-op " + uuid), "ok\n")
            self.assertEqual(fail(call(self.s, vm, *args)), ["VM_BAD_POWER_STATE", vm, "running", "halted"])
            wait_for(lambda: self.vm(vm)["domid"] not in (domid, "-1") and self.power(vm) == "Running")
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_clean_shutdown_racing_guest_reboot(self):
        """Either the guest's reboot answers the request (halted) or the call lost the race (bad power
        state, and the guest comes back): never INTERNAL_ERROR, never a wait for the timeout."""
        vm, uuid, domid = self.start("race-shutdown")
        self.assertEqual(sim_control(self.d, "reboot-before-next-op " + uuid), "ok\n")
        r = self.x.VM.clean_shutdown(self.s, vm)
        if r["Status"] == "Success":
            self.assertEqual(self.power(vm), "Halted")
        else:
            self.assertEqual(fail(r), ["VM_BAD_POWER_STATE", vm, "running", "halted"])
            wait_for(lambda: self.vm(vm)["domid"] not in (domid, "-1") and self.power(vm) == "Running")
            ok(self.x.VM.hard_shutdown(self.s, vm))


class TestDomainType(VMTestBase):
    """domain_type and HVM_boot_policy follow each other, as xapi derives them."""

    def test_older_client_switches_hvm_template_to_pv(self):
        # As older clients do it: clone "Other install media", clear the HVM boot policy, give a kernel.
        vm = ok(self.x.VM.clone(self.s, self.template("Other install media"), "to-pv"))
        ok(self.x.VM.set_is_a_template(self.s, vm, False))
        self.assertEqual(self.vm(vm)["domain_type"], "hvm")
        ok(self.x.VM.set_HVM_boot_policy(self.s, vm, ""))
        ok(self.x.VM.set_PV_kernel(self.s, vm, "/boot/vmlinuz"))
        self.assertEqual(self.vm(vm)["domain_type"], "pv")
        ok(self.x.VM.start(self.s, vm, False, False))
        metrics = self.vm(vm)["metrics"]
        self.assertEqual(ok(self.x.VM_metrics.get_current_domain_type(self.s, metrics)), "pv")
        ok(self.x.VM.hard_shutdown(self.s, vm))
        ok(self.x.VM.set_HVM_boot_policy(self.s, vm, "BIOS order"))
        self.assertEqual(self.vm(vm)["domain_type"], "hvm")

    def test_set_domain_type_sets_boot_policy(self):
        vm = self.new_vm("dt")
        ok(self.x.VM.set_domain_type(self.s, vm, "hvm"))
        self.assertEqual(self.vm(vm)["HVM_boot_policy"], "BIOS order")
        for t in ("pvh", "pv", "pv_in_pvh"):
            ok(self.x.VM.set_HVM_boot_policy(self.s, vm, "BIOS order"))
            ok(self.x.VM.set_domain_type(self.s, vm, t))
            rec = self.vm(vm)
            self.assertEqual((rec["domain_type"], rec["HVM_boot_policy"]), (t, ""))
        self.assertEqual(fail(self.x.VM.set_domain_type(self.s, vm, "unspecified")),
                         ["INVALID_VALUE", "domain_type", "unspecified"])
        self.assertEqual(self.vm(vm)["domain_type"], "pv_in_pvh")

    def test_create_derives_unspecified_domain_type(self):
        from harness import vm_record
        hvm = ok(self.x.VM.create(self.s, vm_record(name_label="c-hvm", HVM_boot_policy="BIOS order")))
        pv = ok(self.x.VM.create(self.s, vm_record(name_label="c-pv", HVM_boot_policy="")))
        self.assertEqual(self.vm(hvm)["domain_type"], "hvm")
        self.assertEqual(self.vm(pv)["domain_type"], "pv")


class TestBlockedOperations(VMTestBase):
    """blocked_operations is enforced, as xapi's first check: OPERATION_BLOCKED [vm, reason]."""

    def test_blocked_start(self):
        vm = self.new_vm("blocked")
        host = ok(self.x.session.get_this_host(self.s, self.s))
        ok(self.x.VM.set_blocked_operations(self.s, vm, {"start": "rescue in progress"}))
        self.assertNotIn("start", self.vm(vm)["allowed_operations"])
        self.assertNotIn("start_on", self.vm(vm)["allowed_operations"])
        self.assertIn("clone", self.vm(vm)["allowed_operations"])
        self.assertEqual(fail(self.x.VM.start(self.s, vm, False, False)), ["OPERATION_BLOCKED", vm, "rescue in progress"])
        # start_on is the same operation on a named host: Nova blocks "start" and calls start_on
        self.assertEqual(fail(self.x.VM.start_on(self.s, vm, host, False, False)),
                         ["OPERATION_BLOCKED", vm, "rescue in progress"])
        task = ok(self.x.Async.VM.start(self.s, vm, False, False))
        for _ in range(200):
            if ok(self.x.task.get_status(self.s, task)) != "pending":
                break
            time.sleep(0.02)
        self.assertEqual(ok(self.x.task.get_error_info(self.s, task)), ["OPERATION_BLOCKED", vm, "rescue in progress"])
        self.assertEqual(self.power(vm), "Halted")
        ok(self.x.VM.remove_from_blocked_operations(self.s, vm, "start"))
        self.assertIn("start", self.vm(vm)["allowed_operations"])
        ok(self.x.VM.start(self.s, vm, False, False))
        self.assertEqual(self.power(vm), "Running")

    def test_blocked_shutdown_leaves_others(self):
        vm, _, _ = self.start("blocked-running")
        ok(self.x.VM.add_to_blocked_operations(self.s, vm, "clean_shutdown", ""))
        self.assertEqual(fail(self.x.VM.clean_shutdown(self.s, vm)), ["OPERATION_BLOCKED", vm, ""])
        self.assertEqual(self.power(vm), "Running")
        ok(self.x.VM.hard_shutdown(self.s, vm))
        self.assertEqual(self.power(vm), "Halted")


class TestControlDomainName(unittest.TestCase):
    def control_domain(self, x, s):
        host = ok(x.host.get_all(s))[0]
        return ok(x.host.get_control_domain(s, host)), ok(x.host.get_hostname(s, host))

    def test_user_name_survives_restart_default_follows_hostname(self):
        d = Daemon().start()
        try:
            x, s = d.login()
            dom0, hostname = self.control_domain(x, s)
            self.assertEqual(ok(x.VM.get_name_label(s, dom0)), "Control domain on host: " + hostname)
            ok(x.VM.set_name_label(s, dom0, "my dom0"))
            d.restart()
            x, s = d.login()
            self.assertEqual(ok(x.VM.get_name_label(s, dom0)), "my dom0")
            # the default name (of an older hostname) is still renamed
            ok(x.VM.set_name_label(s, dom0, "Control domain on host: old-name"))
            d.restart()
            x, s = d.login()
            self.assertEqual(ok(x.VM.get_name_label(s, dom0)), "Control domain on host: " + hostname)
        finally:
            d.cleanup()


class TestConcurrency(VMTestBase):
    def test_busy_vm_waits_then_fails(self):
        vm = self.new_vm("busy")
        ok(self.x.VM.start(self.s, vm, False, False))
        uuid = self.vm(vm)["uuid"]
        sim_control(self.d, "ignore-requests " + uuid)
        task = ok(self.x.Async.VM.clean_shutdown(self.s, vm))
        wait_for(lambda: self.vm(vm)["current_operations"])
        cur = self.vm(vm)["current_operations"]
        self.assertEqual(list(cur.values()), ["clean_shutdown"])
        self.assertEqual(list(cur.keys()), [task])
        t0 = time.monotonic()
        err = fail(self.x.VM.pause(self.s, vm))
        waited = time.monotonic() - t0
        self.assertEqual(err, ["OTHER_OPERATION_IN_PROGRESS", "VM", vm, "clean_shutdown", task])
        self.assertGreaterEqual(waited, 1.5, "the second operation queued before failing")
        # a hard shutdown cuts the clean one short
        ok(self.x.VM.hard_shutdown(self.s, vm))
        self.assertEqual(self.power(vm), "Halted")
        wait_for(lambda: ok(self.x.task.get_status(self.s, task)) != "pending")
        self.assertEqual(ok(self.x.task.get_error_info(self.s, task))[0], "TASK_CANCELLED")
        self.assertEqual(self.vm(vm)["current_operations"], {})

    def test_queued_operation_runs_after(self):
        vm = self.new_vm("queue")
        ok(self.x.VM.start(self.s, vm, False, False))
        results = []

        def op(name):
            p = self.d.proxy()
            results.append((name, getattr(p.VM, name)(self.s, vm)["Status"]))

        ts = [threading.Thread(target=op, args=(n,)) for n in ("pause", "unpause")]
        ts[0].start()
        time.sleep(0.05)
        ts[1].start()
        for t in ts:
            t.join()
        self.assertEqual(sorted(s for _, s in results), ["Success", "Success"])
        self.assertEqual(self.power(vm), "Running")

    def test_different_vms_in_parallel(self):
        vms = [self.new_vm("par%d" % i) for i in range(6)]
        errors = []

        def cycle(v):
            p = self.d.proxy()
            for r in (p.VM.start(self.s, v, False, False), p.VM.clean_shutdown(self.s, v)):
                if r["Status"] != "Success":
                    errors.append(r)

        ts = [threading.Thread(target=cycle, args=(v,)) for v in vms]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])
        for v in vms:
            self.assertEqual(self.power(v), "Halted")


class TestTasks(VMTestBase):
    def test_async_start_task(self):
        vm = self.new_vm("async")
        task = ok(self.x.Async.VM.start(self.s, vm, False, False))
        wait_for(lambda: ok(self.x.task.get_status(self.s, task)) != "pending")
        rec = ok(self.x.task.get_record(self.s, task))
        self.assertEqual(rec["status"], "success")
        self.assertEqual(rec["result"], "<value></value>")
        self.assertEqual(rec["name_label"], "Async.VM.start")
        self.assertEqual(float(rec["progress"]), 1.0)
        self.assertNotEqual(str(rec["finished"]), "19700101T00:00:00Z")
        ok(self.x.task.destroy(self.s, task))
        self.assertEqual(fail(self.x.task.get_record(self.s, task))[0], "HANDLE_INVALID")
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_task_other_config_is_the_callers(self):
        """CloudStack tags its snapshot tasks: task.add_to_other_config and friends work, while the
        fields the server keeps (status, progress...) still have no generic setter."""
        vm = self.new_vm("tagged")
        task = ok(self.x.Async.VM.clone(self.s, vm, "tagged-clone"))
        ok(self.x.task.add_to_other_config(self.s, task, "CS_VM_SNAPSHOT_KEY", "snap-1"))
        self.assertEqual(fail(self.x.task.add_to_other_config(self.s, task, "CS_VM_SNAPSHOT_KEY", "again")),
                         ["MAP_DUPLICATE_KEY", "task", "other_config", ok(self.x.task.get_uuid(self.s, task)),
                          "CS_VM_SNAPSHOT_KEY"])
        self.assertEqual(ok(self.x.task.get_other_config(self.s, task)), {"CS_VM_SNAPSHOT_KEY": "snap-1"})
        ok(self.x.task.remove_from_other_config(self.s, task, "CS_VM_SNAPSHOT_KEY"))
        ok(self.x.task.set_other_config(self.s, task, {"a": "b"}))
        self.assertEqual(ok(self.x.task.get_other_config(self.s, task)), {"a": "b"})
        self.assertEqual(fail(self.x.task.set_name_label(self.s, task, "x"))[0], "MESSAGE_METHOD_UNKNOWN")
        self.assertEqual(fail(self.x.task.set_resident_on(self.s, task, "x"))[0], "MESSAGE_METHOD_UNKNOWN")
        wait_for(lambda: ok(self.x.task.get_status(self.s, task)) != "pending")
        self.assertEqual(ok(self.x.task.get_other_config(self.s, task)), {"a": "b"})

    def test_async_failure_and_clone_result(self):
        vm = self.new_vm("async2")
        task = ok(self.x.Async.VM.unpause(self.s, vm))
        wait_for(lambda: ok(self.x.task.get_status(self.s, task)) != "pending")
        self.assertEqual(ok(self.x.task.get_error_info(self.s, task)), ["VM_BAD_POWER_STATE", vm, "paused", "halted"])
        task = ok(self.x.Async.VM.clone(self.s, vm, "async-clone"))
        wait_for(lambda: ok(self.x.task.get_status(self.s, task)) != "pending")
        result = ok(self.x.task.get_result(self.s, task))
        self.assertTrue(result.startswith("<value>OpaqueRef:") and result.endswith("</value>"), result)
        clone = result[len("<value>"):-len("</value>")]
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, clone)), "async-clone")

    def test_cancel_clean_shutdown(self):
        vm = self.new_vm("cancel")
        ok(self.x.VM.start(self.s, vm, False, False))
        sim_control(self.d, "ignore-requests " + self.vm(vm)["uuid"])
        task = ok(self.x.Async.VM.clean_shutdown(self.s, vm))
        self.assertIn("cancel", ok(self.x.task.get_allowed_operations(self.s, task)))
        wait_for(lambda: self.vm(vm)["current_operations"])
        ok(self.x.task.cancel(self.s, task))
        wait_for(lambda: ok(self.x.task.get_status(self.s, task)) == "cancelled")
        self.assertEqual(ok(self.x.task.get_error_info(self.s, task)), ["TASK_CANCELLED", task])
        self.assertEqual(self.power(vm), "Running")
        wait_for(lambda: self.vm(vm)["current_operations"] == {})
        ok(self.x.VM.hard_shutdown(self.s, vm))

    def test_non_cancellable(self):
        task = ok(self.x.task.create(self.s, "t", "d"))
        self.assertEqual(fail(self.x.task.cancel(self.s, task))[0], "OPERATION_NOT_ALLOWED")


class TestCopies(VMTestBase):
    def test_clone_copy_snapshot_revert(self):
        vm = self.new_vm("orig")
        t = ok(self.x.VM.clone(self.s, self.template(), "prov"))
        ok(self.x.VM.provision(self.s, t))
        vbds = ok(self.x.VM.get_VBDs(self.s, t))
        self.assertEqual(len(vbds), 1)
        vdi = ok(self.x.VBD.get_VDI(self.s, vbds[0]))
        self.assertEqual(ok(self.x.VDI.get_virtual_size(self.s, vdi)), str(8 << 30))
        self.assertNotIn("disks", ok(self.x.VM.get_other_config(self.s, t)))
        ok(self.x.VM.set_is_a_template(self.s, t, False))

        c = ok(self.x.VM.clone(self.s, t, "clone"))
        cvbds = ok(self.x.VM.get_VBDs(self.s, c))
        self.assertEqual(len(cvbds), 1)
        self.assertNotEqual(ok(self.x.VBD.get_VDI(self.s, cvbds[0])), vdi)

        cp = ok(self.x.VM.copy(self.s, t, "copy", "OpaqueRef:NULL"))
        self.assertEqual(len(ok(self.x.VM.get_VBDs(self.s, cp))), 1)

        ok(self.x.VM.start(self.s, t, False, False))
        snap = ok(self.x.VM.snapshot(self.s, t, "snap"))
        srec = self.vm(snap)
        self.assertTrue(srec["is_a_snapshot"])
        self.assertTrue(srec["is_a_template"])
        self.assertEqual(srec["snapshot_of"], t)
        self.assertIn(snap, ok(self.x.VM.get_snapshots(self.s, t)))
        snap_vdi = ok(self.x.VBD.get_VDI(self.s, srec["VBDs"][0]))
        self.assertTrue(ok(self.x.VDI.get_is_a_snapshot(self.s, snap_vdi)))

        self.assertEqual(fail(self.x.VM.revert(self.s, t)), ["REVERT_ONLY_ALLOWED_ON_SNAPSHOT"])
        ok(self.x.VM.revert(self.s, snap))
        self.assertEqual(self.power(t), "Halted")
        new_vdi = ok(self.x.VBD.get_VDI(self.s, ok(self.x.VM.get_VBDs(self.s, t))[0]))
        self.assertNotEqual(new_vdi, vdi)
        self.assertEqual(fail(self.x.VDI.get_record(self.s, vdi))[0], "HANDLE_INVALID")

        self.assertEqual(fail(self.x.VM.provision(self.s, vm)), ["PROVISION_ONLY_ALLOWED_ON_TEMPLATE"])


class TestCloudStackCreate(VMTestBase):
    def test_create_from_template_record(self):
        rec = self.vm(self.template())
        rec["name_label"] = "cs-vm"
        rec["is_a_template"] = False
        rec["power_state"] = "Running"          # ignored: a new VM is halted
        rec["unknown_field"] = "ignored"
        rec["actions_after_softreboot"] = "UNRECOGNIZED"
        rec["memory_static_max"] = str(256 * MiB)
        rec["memory_dynamic_max"] = str(256 * MiB)
        rec["memory_dynamic_min"] = str(256 * MiB)
        rec["memory_static_min"] = str(128 * MiB)
        vm = ok(self.x.VM.create(self.s, rec))
        new = self.vm(vm)
        self.assertEqual(new["power_state"], "Halted")
        self.assertEqual(new["domid"], "-1")
        self.assertNotEqual(new["uuid"], rec["uuid"])
        self.assertNotEqual(new["metrics"], "OpaqueRef:NULL")
        ok(self.x.VM.start(self.s, vm, False, False))
        ok(self.x.VM.hard_shutdown(self.s, vm))


class TestReconcile(unittest.TestCase):
    def test_kill9_midway_then_reconcile(self):
        d = Daemon(extra_config="clean_shutdown_timeout = 30\nop_wait_timeout = 2\n").start()
        try:
            x, s = d.login()
            t = ok(x.VM.get_by_name_label(s, "Generic Linux PV"))[0]
            running = ok(x.VM.clone(s, t, "running"))
            busy = ok(x.VM.clone(s, t, "busy"))
            suspended = ok(x.VM.clone(s, t, "suspended"))
            for v in (running, busy, suspended):
                ok(x.VM.set_is_a_template(s, v, False))
                ok(x.VM.start(s, v, False, False))
            ok(x.VM.suspend(s, suspended))
            image = ok(x.VM.get_suspend_VDI(s, suspended))
            sim_control(d, "ignore-requests " + ok(x.VM.get_uuid(s, busy)))
            task = ok(x.Async.VM.clean_shutdown(s, busy))
            wait_for(lambda: ok(x.VM.get_current_operations(s, busy)))
            domid = ok(x.VM.get_domid(s, running))
            d.kill9()
            d.start()
            x, s = d.login()
            for v in (running, busy):
                rec = ok(x.VM.get_record(s, v))
                self.assertEqual(rec["current_operations"], {})
                self.assertEqual(rec["power_state"], "Running", "the domain survived the daemon")
            self.assertEqual(ok(x.VM.get_domid(s, running)), domid)
            self.assertEqual(ok(x.task.get_status(s, task)), "failure")
            ok(x.VM.hard_shutdown(s, busy))
            # a suspended VM keeps its image across the crash, and resumes from it
            self.assertEqual(ok(x.VM.get_power_state(s, suspended)), "Suspended")
            self.assertEqual(ok(x.VM.get_suspend_VDI(s, suspended)), image)
            ok(x.VM.resume(s, suspended, False, False))
            self.assertEqual(ok(x.VM.get_power_state(s, suspended)), "Running")
            self.assertEqual(fail(x.VDI.get_record(s, image))[0], "HANDLE_INVALID")
            # after a clean restart the domain is still followed: its guest's shutdown is acted on
            uuid = ok(x.VM.get_uuid(s, running))
            d.stop()
            d.start()
            x, s = d.login()
            self.assertEqual(sim_control(d, "shutdown " + uuid), "ok\n")
            wait_for(lambda: ok(x.VM.get_power_state(s, running)) == "Halted")
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
