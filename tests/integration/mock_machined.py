"""A stand-in for systemd-machined on a private bus, for test_machined.py:
owns org.freedesktop.machine1 and records each RegisterMachine and
UnregisterMachine call as a JSON line in the file given. Runs under Debian's
/usr/bin/python3 (python3-dbus, python3-gi).

usage: mock_machined.py BUS_ADDRESS RECORD_FILE [REGISTER_DELAY_SECONDS]"""

import json
import sys
import time

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

MANAGER = "org.freedesktop.machine1.Manager"


class Manager(dbus.service.Object):
    def __init__(self, bus, record, delay):
        super().__init__(bus, "/org/freedesktop/machine1")
        self.record_path = record
        self.delay = delay
        self.machines = set()
        self.leaders = {}  # machined keys machines by leader pid too

    def record(self, **entry):
        with open(self.record_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    @dbus.service.method(MANAGER, in_signature="sayssus", out_signature="o", sender_keyword="sender")
    def RegisterMachine(self, name, machine_id, service, cls, leader, root, sender=None):
        self.record(call="RegisterMachine", phase="begin", name=str(name))
        if self.delay:
            time.sleep(self.delay)  # a slow machined: the daemon must not wait for it
        if name in self.machines:
            raise dbus.exceptions.DBusException("Machine '%s' already exists" % name,
                                                name="org.freedesktop.machine1.MachineExists")
        key = int(leader) or sender  # 0: the caller's own pid, as machined resolves it
        if key in self.leaders:
            self.record(call="RegisterMachine", phase="refused", name=str(name))
            raise dbus.exceptions.DBusException("File exists", name="System.Error.EEXIST")
        self.leaders[key] = str(name)
        self.machines.add(str(name))
        self.record(call="RegisterMachine", phase="end", name=str(name), id=bytes(machine_id).hex(),
                    service=str(service), cls=str(cls), leader=int(leader), root=str(root))
        return dbus.ObjectPath("/org/freedesktop/machine1/machine/" + "".join(c if c.isalnum() else "_" for c in name))

    @dbus.service.method(MANAGER, in_signature="s", out_signature="")
    def UnregisterMachine(self, name):
        self.machines.discard(str(name))
        self.leaders = {k: v for k, v in self.leaders.items() if v != name}
        self.record(call="UnregisterMachine", name=str(name))

    @dbus.service.method(MANAGER, in_signature="s", out_signature="")
    def TerminateMachine(self, name):
        self.record(call="TerminateMachine", name=str(name))


def main():
    address, record = sys.argv[1], sys.argv[2]
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(address)
    name = dbus.service.BusName("org.freedesktop.machine1", bus)  # noqa: F841 (kept while running)
    Manager(bus, record, delay)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
