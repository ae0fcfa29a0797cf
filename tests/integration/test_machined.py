"""Running guests registered with systemd-machined (register_machines): on a
private bus (dbus-daemon) with a stand-in machined (mock_machined.py), a VM
that starts is registered (RegisterMachine: name, uuid bytes, service, class,
leader, root) and unregistered when it stops (UnregisterMachine, never
TerminateMachine, which would stop xenapid's own unit); a slow machined does
not hold up VM.start; register_machines = false makes no call; and a host
without a bus starts VMs all the same, saying once that it does not register."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import Daemon, new_pv_vm, ok, wait_for

SYSTEM_PYTHON = "/usr/bin/python3"
MOCK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mock_machined.py")
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def have_dbus():
    if not shutil.which("dbus-daemon") or not os.path.exists(SYSTEM_PYTHON):
        return False
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import dbus, dbus.mainloop.glib; from gi.repository import GLib"],
                       capture_output=True)
    return r.returncode == 0


@unittest.skipUnless(have_dbus(), "needs dbus-daemon and Debian's python3-dbus and python3-gi")
class MockMachined(unittest.TestCase):
    """A private bus as the daemon's system bus (DBUS_SYSTEM_BUS_ADDRESS), a stand-in machined on it."""

    def start_bus(self, delay=0, mock=True):
        tmp = tempfile.mkdtemp(prefix="xenapid-dbus-")
        self.addCleanup(shutil.rmtree, tmp, True)
        conf = os.path.join(tmp, "bus.conf")
        with open(conf, "w") as f:
            f.write(BUS_CONFIG % os.path.join(tmp, "bus"))
        bus = subprocess.Popen(["dbus-daemon", "--config-file=" + conf, "--nofork", "--print-address"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(bus.stdout.close)
        self.addCleanup(bus.wait)
        self.addCleanup(bus.terminate)
        address = bus.stdout.readline().strip()
        self.assertTrue(address.startswith("unix:"), address)
        self.record = os.path.join(tmp, "calls.jsonl")
        if not mock:
            return address
        mock = subprocess.Popen([SYSTEM_PYTHON, MOCK, address, self.record, str(delay)], stdout=subprocess.PIPE,
                                text=True)
        self.addCleanup(mock.stdout.close)
        self.addCleanup(mock.wait)
        self.addCleanup(mock.terminate)
        self.assertEqual(mock.stdout.readline().strip(), "ready")
        return address

    def calls(self):
        try:
            with open(self.record) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def daemon(self, address, extra=""):
        d = Daemon(extra_config=extra, env={"DBUS_SYSTEM_BUS_ADDRESS": address})
        self.addCleanup(d.cleanup)
        d.start()
        x, s = d.login()
        return d, x, s

    def test_register_and_unregister(self):
        d, x, s = self.daemon(self.start_bus())
        vm = new_pv_vm(x, s, "web 01")
        uuid = ok(x.VM.get_uuid(s, vm))
        ok(x.VM.start(s, vm, False, False))
        reg = wait_for(lambda: [c for c in self.calls() if c["call"] == "RegisterMachine" and c["phase"] == "end"],
                       what="RegisterMachine")
        self.assertEqual(len(reg), 1)
        self.assertEqual(reg[0], {"call": "RegisterMachine", "phase": "end", "name": "xenapid-web-01",
                                  "id": uuid.replace("-", ""), "service": "xenapid", "cls": "vm", "leader": 0,
                                  "root": ""})
        # Running on (pause, unpause) is no new registration.
        ok(x.VM.pause(s, vm))
        ok(x.VM.unpause(s, vm))
        ok(x.VM.hard_shutdown(s, vm))
        wait_for(lambda: [c for c in self.calls() if c["call"] == "UnregisterMachine"], what="UnregisterMachine")
        calls = [(c["call"], c["name"]) for c in self.calls() if c.get("phase") != "begin"]
        self.assertEqual(calls, [("RegisterMachine", "xenapid-web-01"), ("UnregisterMachine", "xenapid-web-01")])
        self.assertIn("machined: registered VM %s as xenapid-web-01 (leader xenapid)" % uuid, d.read_log())

    def test_second_guest_without_device_model(self):
        """machined keys machines by leader too: with xenapid leading one already (a simulated guest has no
        device model), a second is refused, said in the log, and the daemon carries on."""
        d, x, s = self.daemon(self.start_bus())
        first, second = new_pv_vm(x, s, "first"), new_pv_vm(x, s, "second")
        ok(x.VM.start(s, first, False, False))
        wait_for(lambda: [c for c in self.calls() if c.get("phase") == "end"], what="the first registration")
        ok(x.VM.start(s, second, False, False))
        wait_for(lambda: "leads another machine already" in d.read_log(), what="the refusal in the log")
        self.assertEqual([(c["phase"], c["name"]) for c in self.calls() if c.get("phase") != "begin"],
                         [("end", "xenapid-first"), ("refused", "xenapid-second")])
        ok(x.VM.hard_shutdown(s, first))
        ok(x.VM.hard_shutdown(s, second))
        wait_for(lambda: [c for c in self.calls() if c["call"] == "UnregisterMachine"], what="UnregisterMachine")
        self.assertEqual([c["name"] for c in self.calls() if c["call"] == "UnregisterMachine"], ["xenapid-first"])

    def test_slow_machined_does_not_hold_up_start(self):
        d, x, s = self.daemon(self.start_bus(delay=3))
        vm = new_pv_vm(x, s, "slow")
        ok(x.VM.start(s, vm, False, False))
        # VM.start has answered; machined is still busy with the registration it asked for.
        wait_for(lambda: [c for c in self.calls() if c["call"] == "RegisterMachine"], what="the RegisterMachine call")
        self.assertEqual([c["phase"] for c in self.calls()], ["begin"])
        self.assertEqual(ok(x.VM.get_power_state(s, vm)), "Running")
        wait_for(lambda: [c for c in self.calls() if c.get("phase") == "end"], what="the registration to complete")
        ok(x.VM.hard_shutdown(s, vm))
        wait_for(lambda: [c for c in self.calls() if c["call"] == "UnregisterMachine"], what="UnregisterMachine")

    def test_bus_without_machined(self):
        """A system bus on which org.freedesktop.machine1 is neither running nor activatable."""
        d, x, s = self.daemon(self.start_bus(mock=False))
        for name in ("one", "two"):
            vm = new_pv_vm(x, s, name)
            ok(x.VM.start(s, vm, False, False))
            ok(x.VM.hard_shutdown(s, vm))
        log = wait_for(lambda: (lambda t: t if "not registering xenapid-two" in t else None)(d.read_log()),
                       what="the skip in the log")
        self.assertEqual(log.count("running guests are not registered with systemd-machined"), 1)
        self.assertIn("org.freedesktop.machine1", log)

    def test_off_makes_no_call(self):
        d, x, s = self.daemon(self.start_bus(), "register_machines = false\n")
        vm = new_pv_vm(x, s, "quiet")
        ok(x.VM.start(s, vm, False, False))
        ok(x.VM.hard_shutdown(s, vm))
        # A VM started afterwards, on a daemon that does register, is the first call the mock sees.
        d2, x2, s2 = self.daemon(d.env["DBUS_SYSTEM_BUS_ADDRESS"])
        vm2 = new_pv_vm(x2, s2, "loud")
        ok(x2.VM.start(s2, vm2, False, False))
        wait_for(lambda: [c for c in self.calls() if c.get("phase") == "end"], what="RegisterMachine")
        self.assertEqual([c["name"] for c in self.calls()], ["xenapid-loud", "xenapid-loud"])


class NoMachined(unittest.TestCase):
    def test_start_works_and_the_log_says_why(self):
        d = Daemon(env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/xenapid-test-bus"})
        self.addCleanup(d.cleanup)
        d.start()
        x, s = d.login()
        for name in ("one", "two"):
            vm = new_pv_vm(x, s, name)
            ok(x.VM.start(s, vm, False, False))
            self.assertEqual(ok(x.VM.get_power_state(s, vm)), "Running")
            ok(x.VM.hard_shutdown(s, vm))
        log = wait_for(lambda: (lambda t: t if "not registering xenapid-two" in t else None)(d.read_log()),
                       what="the skip in the log")
        self.assertEqual(log.count("running guests are not registered with systemd-machined"), 1)
        self.assertIn("no system bus", log)
        self.assertIn("machined: not registering xenapid-one", log)


if __name__ == "__main__":
    unittest.main()
