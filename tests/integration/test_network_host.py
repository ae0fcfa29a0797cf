"""Host networking over rtnetlink (host_networking = on), each test class in a
network namespace of its own (the test process enters a fresh one, the daemon
inherits it): veth pairs stand for the physical NICs. PIF.scan reads them
over netlink (MAC, MTU, up); a VIF's start makes its network's bridge with the network's
MTU; network.destroy removes the bridges xenapid made and only those; VLANs
and bonds get their kernel devices, or a clear XenAPI error on a kernel
without 802.1q / bonding (then the test says so and skips). `ip` here only
sets up and inspects the namespace: the daemon forks nothing."""

import ctypes
import json
import os
import subprocess
import unittest

from harness import Daemon, create_network, create_vif, create_vm, fail, ok

CLONE_NEWNET = 0x40000000


def ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), check=check, capture_output=True, text=True)


def links():
    """name -> `ip -d -j link` record of this namespace."""
    return {l["ifname"]: l for l in json.loads(ip("-d", "-j", "link").stdout)}


def kind(link):
    return link.get("linkinfo", {}).get("info_kind", "")


def enter_fresh_netns():
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root for a network namespace")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise unittest.SkipTest("cannot make a network namespace: %s" % os.strerror(ctypes.get_errno()))
    ip("link", "set", "lo", "up")


def make_nics(up):
    """eth1..eth3, veth pairs whose peers are up (eth1 up too, MTU 9000, when up)."""
    for n in ("eth1", "eth2", "eth3"):
        ip("link", "add", n, "type", "veth", "peer", "name", "peer-" + n)
        ip("link", "set", "peer-" + n, "up")
    if up:
        ip("link", "set", "eth1", "mtu", "9000")
        ip("link", "set", "eth1", "up")


def kernel_can(*add):
    """Whether this kernel makes such a link (probed in the namespace, then removed)."""
    r = ip("link", "add", "probe0", *add, check=False)
    if r.returncode == 0:
        ip("link", "del", "probe0")
    return r.returncode == 0


class HostNetBase(unittest.TestCase):
    host_networking = "on"
    nics_up = True

    @classmethod
    def setUpClass(cls):
        enter_fresh_netns()
        make_nics(up=cls.nics_up)
        cls.d = Daemon(extra_config="host_networking = %s\n" % cls.host_networking).start()
        cls.x, cls.s = cls.d.login()

    @classmethod
    def tearDownClass(cls):
        cls.x("close")()
        cls.d.cleanup()

    def host(self):
        return ok(self.x.session.get_this_host(self.s, self.s))

    def pif_of(self, device):
        for ref, rec in ok(self.x.PIF.get_all_records(self.s)).items():
            if rec["device"] == device and rec["VLAN"] == "-1" and rec["physical"]:
                return ref, rec
        self.fail("no PIF for %s" % device)

    def start_vm_on(self, net):
        vm = create_vm(self.x, self.s, name_label="on " + net)
        mem = str(256 << 20)
        ok(self.x.VM.set_memory_limits(self.s, vm, mem, mem, mem, mem))
        ok(self.x.VM.set_PV_kernel(self.s, vm, "/boot/vmlinuz"))
        create_vif(self.x, self.s, vm, net)
        ok(self.x.VM.start(self.s, vm, False, False))
        return vm

    def stop_vm(self, vm):
        ok(self.x.VM.hard_shutdown(self.s, vm))
        ok(self.x.VM.destroy(self.s, vm))


class TestPIFScan(HostNetBase):
    def test_veths_are_pifs_with_mac_mtu_and_state(self):
        ok(self.x.PIF.scan(self.s, self.host()))
        l = links()
        for dev in ("eth1", "eth2", "eth3"):
            ref, rec = self.pif_of(dev)
            self.assertEqual(rec["MAC"], l[dev]["address"])
            self.assertEqual(rec["MTU"], str(l[dev]["mtu"]))
        self.assertEqual(self.pif_of("eth1")[1]["MTU"], "9000")
        # eth1 is up, eth2 down (the datamodel has no PIF_metrics for the carrier itself)
        self.assertEqual(self.pif_of("eth1")[1]["currently_attached"], True)
        self.assertEqual(self.pif_of("eth2")[1]["currently_attached"], False)
        self.assertNotIn("lo", [r["device"] for r in ok(self.x.PIF.get_all_records(self.s)).values()])

    def test_scan_sees_a_new_nic_and_its_mtu(self):
        ip("link", "add", "eth7", "type", "veth", "peer", "name", "peer-eth7")
        ip("link", "set", "eth7", "mtu", "1400")
        try:
            ok(self.x.PIF.scan(self.s, self.host()))
            ref, rec = self.pif_of("eth7")
            self.assertEqual(rec["MTU"], "1400")
            self.assertEqual(rec["MAC"], links()["eth7"]["address"])
        finally:
            ip("link", "del", "eth7")


class TestBridges(HostNetBase):
    def test_vif_start_makes_the_bridge_with_the_mtu_and_destroy_removes_it(self):
        net = create_network(self.x, self.s, name_label="guests", MTU="1450")
        bridge = ok(self.x.network.get_bridge(self.s, net))
        self.assertNotIn(bridge, links(), "no bridge before a guest needs it")
        vm = self.start_vm_on(net)
        l = links()
        self.assertIn(bridge, l)
        self.assertEqual(kind(l[bridge]), "bridge")
        self.assertEqual(l[bridge]["mtu"], 1450)
        self.assertIn("UP", l[bridge]["flags"])
        self.stop_vm(vm)
        ok(self.x.network.destroy(self.s, net))
        self.assertNotIn(bridge, links(), "xenapid made it: it goes with its network")

    def test_adopted_bridge_is_left_alone(self):
        ip("link", "add", "adopted0", "type", "bridge")
        try:
            net = create_network(self.x, self.s, name_label="adopt", bridge="adopted0")
            vm = self.start_vm_on(net)
            self.assertIn("UP", links()["adopted0"]["flags"])
            self.stop_vm(vm)
            ok(self.x.network.destroy(self.s, net))
            self.assertIn("adopted0", links(), "a bridge xenapid did not make stays")
        finally:
            ip("link", "del", "adopted0", check=False)

    def test_bridge_survives_a_restart_and_is_still_removed(self):
        net = create_network(self.x, self.s, name_label="restart")
        bridge = ok(self.x.network.get_bridge(self.s, net))
        vm = self.start_vm_on(net)
        self.stop_vm(vm)
        self.d.restart()
        self.__class__.x, self.__class__.s = self.d.login()
        self.x, self.s = self.__class__.x, self.__class__.s
        self.assertIn(bridge, links())
        ok(self.x.network.destroy(self.s, net))
        self.assertNotIn(bridge, links())

    def test_name_of_another_kind_is_a_clear_error(self):
        ip("link", "add", "notbr0", "type", "veth", "peer", "name", "peer-notbr0")
        try:
            net = create_network(self.x, self.s, name_label="clash", bridge="notbr0")
            vm = create_vm(self.x, self.s, name_label="clash")
            mem = str(256 << 20)
            ok(self.x.VM.set_memory_limits(self.s, vm, mem, mem, mem, mem))
            ok(self.x.VM.set_PV_kernel(self.s, vm, "/boot/vmlinuz"))
            create_vif(self.x, self.s, vm, net)
            self.assertEqual(fail(self.x.VM.start(self.s, vm, False, False)),
                             ["HOST_CANNOT_ATTACH_NETWORK", self.host(), net])
            self.assertEqual(ok(self.x.VM.get_power_state(self.s, vm)), "Halted")
            ok(self.x.VM.destroy(self.s, vm))
            ok(self.x.network.destroy(self.s, net))
            self.assertEqual(kind(links()["notbr0"]), "veth")
        finally:
            ip("link", "del", "notbr0", check=False)

    def test_unused_nic_joins_its_network_bridge(self):
        ok(self.x.PIF.scan(self.s, self.host()))
        ref, rec = self.pif_of("eth3")
        bridge = ok(self.x.network.get_bridge(self.s, rec["network"]))
        vm = self.start_vm_on(rec["network"])
        try:
            self.assertEqual(links()["eth3"].get("master"), bridge)
        finally:
            self.stop_vm(vm)


class TestVLANDevices(HostNetBase):
    def test_vlan_create_makes_the_8021q_device_on_the_bridge(self):
        ref, rec = self.pif_of("eth2")
        net = create_network(self.x, self.s, name_label="vlan 100")
        bridge = ok(self.x.network.get_bridge(self.s, net))
        if not kernel_can("link", "eth2", "type", "vlan", "id", "99"):
            err = fail(self.x.VLAN.create(self.s, ref, "100", net))
            self.assertEqual(err, ["PIF_CONFIGURATION_ERROR", ref,
                                   "the kernel has no 802.1q VLAN support (module 8021q)"])
            self.assertEqual(ok(self.x.network.get_PIFs(self.s, net)), [], "records taken back")
            ok(self.x.network.destroy(self.s, net))
            print("kernel has no 802.1q: skipped")
            self.skipTest("kernel has no 802.1q")
        vlan = ok(self.x.VLAN.create(self.s, ref, "100", net))
        l = links()
        self.assertEqual(kind(l["eth2.100"]), "vlan")
        self.assertEqual(l["eth2.100"]["linkinfo"]["info_data"]["id"], 100)
        self.assertEqual(l["eth2.100"].get("master"), bridge)
        ok(self.x.VLAN.destroy(self.s, vlan))
        self.assertNotIn("eth2.100", links())
        ok(self.x.network.destroy(self.s, net))
        self.assertNotIn(bridge, links())


class TestBondDevices(HostNetBase):
    def test_bond_create_records_and_device(self):
        a, ra = self.pif_of("eth2")
        b, rb = self.pif_of("eth3")
        net = create_network(self.x, self.s, name_label="bonded")
        if not kernel_can("type", "bond"):
            err = fail(self.x.Bond.create(self.s, net, [a, b], "", "lacp", {}))
            self.assertEqual(err[0], "PIF_CONFIGURATION_ERROR")
            self.assertEqual(err[2], "the kernel has no bonding support (module bonding)")
            self.assertEqual(ok(self.x.Bond.get_all(self.s)), [], "records taken back")
            self.assertEqual(ok(self.x.PIF.get_bond_slave_of(self.s, a)), "OpaqueRef:NULL")
            ok(self.x.network.destroy(self.s, net))
            print("kernel has no bonding: skipped")
            self.skipTest("kernel has no bonding")
        bond = ok(self.x.Bond.create(self.s, net, [a, b], "", "lacp", {}))
        rec = ok(self.x.Bond.get_record(self.s, bond))
        master = ok(self.x.PIF.get_record(self.s, rec["master"]))
        self.assertEqual(master["device"], "bond0")
        self.assertEqual(master["bond_master_of"], [bond])
        self.assertEqual(sorted(rec["slaves"]), sorted([a, b]))
        self.assertEqual(ok(self.x.PIF.get_bond_slave_of(self.s, a)), bond)
        l = links()
        self.assertEqual(kind(l["bond0"]), "bond")
        self.assertEqual(l["bond0"]["linkinfo"]["info_data"]["mode"], "802.3ad")
        self.assertEqual(l["eth2"].get("master"), "bond0")
        ok(self.x.Bond.destroy(self.s, bond))
        self.assertNotIn("bond0", links())
        self.assertEqual(ok(self.x.PIF.get_bond_slave_of(self.s, a)), "OpaqueRef:NULL")
        ok(self.x.network.destroy(self.s, net))


class TestBondRecords(HostNetBase):
    """Bond.create's checks and records with host_networking off (no kernel needed)."""

    host_networking = "off"
    nics_up = False

    def pif(self, dev):
        for ref, rec in ok(self.x.PIF.get_all_records(self.s)).items():
            if rec["device"] == dev and rec["physical"]:
                return ref
        self.fail(dev)

    def test_create_and_destroy(self):
        a, b = self.pif("eth1"), self.pif("eth2")
        net = create_network(self.x, self.s, name_label="bond records")
        bond = ok(self.x.Bond.create(self.s, net, [a, b], "", "active-backup", {"x": "y"}))
        rec = ok(self.x.Bond.get_record(self.s, bond))
        self.assertEqual(rec["mode"], "active-backup")
        self.assertEqual(rec["properties"], {"x": "y"})
        self.assertEqual(rec["primary_slave"], a)
        self.assertTrue(rec["auto_update_mac"])
        master = ok(self.x.PIF.get_record(self.s, rec["master"]))
        self.assertEqual((master["device"], master["network"], master["physical"], master["VLAN"]),
                         ("bond0", net, False, "-1"))
        self.assertEqual(master["MAC"], ok(self.x.PIF.get_MAC(self.s, a)))
        self.assertEqual(ok(self.x.network.get_PIFs(self.s, net)), [rec["master"]])
        self.assertEqual(fail(self.x.Bond.create(self.s, net, [a, self.pif("eth3")], "", "lacp", {})),
                         ["PIF_ALREADY_BONDED", a])
        ok(self.x.Bond.destroy(self.s, bond))
        self.assertEqual(fail(self.x.PIF.get_record(self.s, rec["master"]))[0], "HANDLE_INVALID")
        self.assertEqual(ok(self.x.PIF.get_bond_slave_of(self.s, a)), "OpaqueRef:NULL")
        ok(self.x.network.destroy(self.s, net))

    def test_errors(self):
        a, b = self.pif("eth1"), self.pif("eth2")
        net = create_network(self.x, self.s, name_label="bond errors")
        self.assertEqual(fail(self.x.Bond.create(self.s, net, [a], "", "lacp", {})), ["PIF_BOND_NEEDS_MORE_MEMBERS"])
        self.assertEqual(fail(self.x.Bond.create(self.s, net, [a, b], "zz", "lacp", {})), ["MAC_INVALID", "zz"])
        self.assertEqual(fail(self.x.Bond.create(self.s, net, [a, "OpaqueRef:x"], "", "lacp", {})),
                         ["HANDLE_INVALID", "PIF", "OpaqueRef:x"])
        self.assertEqual(ok(self.x.Bond.get_all(self.s)), [])
        ok(self.x.network.destroy(self.s, net))


if __name__ == "__main__":
    unittest.main()
