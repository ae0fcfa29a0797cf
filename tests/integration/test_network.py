"""Networking over XML-RPC against the real daemon: the PIFs introspected from
this machine's interfaces, networks and their bridges, VLANs, VIF rules, and
the errors xapi gives with their parameters."""

import hashlib
import os
import re
import unittest

from harness import Daemon, DaemonTest, fail, ok

SYS_NET = "/sys/class/net"
SKIPPED = ("vif", "tap", "veth", "xenbr", "xapi", "virbr", "docker", "br-")


def physical_ifaces():
    """The interfaces the daemon must have made PIFs for."""
    out = []
    for name in os.listdir(SYS_NET):
        p = os.path.join(SYS_NET, name)
        if name == "lo" or name.startswith(SKIPPED):
            continue
        if not os.path.exists(p + "/device") or os.path.exists(p + "/bridge") or os.path.exists(p + "/bonding"):
            continue
        out.append(name)
    return sorted(out)


def sysfs(name, what):
    with open(os.path.join(SYS_NET, name, what)) as f:
        return f.read().strip()


def xapi_mac(device, seed):
    """xapi's Xapi_vif_helpers.gen_mac."""
    h = hashlib.md5(seed.encode()).digest()
    for _ in range(2 * device):
        h = hashlib.md5(h).digest()
    h2 = hashlib.md5(h).digest()
    b = [h[0], h[1], h[2], h[3], h2[1], h2[2]]
    b[0] = (b[0] | 2) & ~1 & 0xFF
    return ":".join("%02x" % x for x in b)


class NetBase(DaemonTest):
    def host(self):
        return ok(self.x.session.get_this_host(self.s, self.s))

    def pifs(self):
        return ok(self.x.PIF.get_all_records(self.s))

    def physical_pifs(self):
        return {r["device"]: (ref, r) for ref, r in self.pifs().items() if r["physical"]}

    def new_net(self, name="net", **extra):
        rec = {"name_label": name, "name_description": "", "other_config": {}}
        rec.update(extra)
        return ok(self.x.network.create(self.s, rec))

    def new_vm(self, name="vm"):
        tpl = ok(self.x.VM.get_by_name_label(self.s, "Generic Linux PV"))[0]
        vm = ok(self.x.VM.clone(self.s, tpl, name))
        ok(self.x.VM.set_is_a_template(self.s, vm, False))
        return vm

    def vif_rec(self, vm, net, device="0", mac="", mtu="0"):
        return {"device": device, "network": net, "VM": vm, "MAC": mac, "MTU": mtu, "other_config": {},
                "qos_algorithm_type": "", "qos_algorithm_params": {}}


class TestPIFs(NetBase):
    def test_a_pif_per_physical_interface(self):
        pifs = self.physical_pifs()
        self.assertEqual(sorted(pifs), physical_ifaces())
        for dev, (ref, rec) in pifs.items():
            self.assertEqual(rec["MAC"], sysfs(dev, "address"))
            self.assertEqual(rec["MTU"], sysfs(dev, "mtu"))
            self.assertEqual(rec["VLAN"], "-1")
            self.assertEqual(rec["host"], self.host())
            self.assertIn(ref, ok(self.x.host.get_PIFs(self.s, self.host())))
            self.assertIn(rec["ip_configuration_mode"], ("None", "DHCP", "Static"))
            self.assertEqual(rec["ip_configuration_mode"] == "None", rec["IP"] == "")

    def test_network_per_pif(self):
        for dev, (ref, rec) in self.physical_pifs().items():
            net = ok(self.x.network.get_record(self.s, rec["network"]))
            self.assertEqual(net["name_label"], "Pool-wide network associated with %s" % dev)
            self.assertEqual(net["PIFs"], [ref])
            m = re.fullmatch(r"eth(\d+)", dev)
            master = os.path.join(SYS_NET, dev, "master")
            if os.path.exists(master):
                self.assertEqual(net["bridge"], os.path.basename(os.readlink(master)))
            elif m:
                self.assertEqual(net["bridge"], "xenbr" + m.group(1))
            else:
                self.assertTrue(net["bridge"].startswith("xenbr"))

    def test_management_pif_holds_the_host_address(self):
        address = ok(self.x.host.get_address(self.s, self.host()))
        holders = [r for _, r in self.physical_pifs().values() if r["IP"] == address]
        managers = [r for _, r in self.physical_pifs().values() if r["management"]]
        self.assertLessEqual(len(managers), 1)
        if holders:
            self.assertEqual(managers, holders)
            mgmt = managers[0]
            self.assertTrue(mgmt["currently_attached"])
            self.assertRegex(mgmt["netmask"], r"^\d+\.\d+\.\d+\.\d+$")
            self.assertIn(mgmt["ip_configuration_mode"], ("DHCP", "Static"))
        # Nova finds the host by its management IP.
        found = ok(self.x.PIF.get_all_records_where(self.s, 'field "management" = "true"'))
        self.assertEqual(len(found), len(managers))

    def test_host_internal_management_network(self):
        nets = [r for r in ok(self.x.network.get_all_records(self.s)).values()
                if r["other_config"].get("is_host_internal_management_network") == "true"]
        self.assertEqual(len(nets), 1)
        self.assertEqual(nets[0]["bridge"], "xenapi")
        self.assertEqual(nets[0]["name_label"], "Host internal management network")
        self.assertEqual(nets[0]["other_config"]["is_guest_installer_network"], "true")
        self.assertEqual(nets[0]["PIFs"], [])

    def test_scan_keeps_refs(self):
        before = self.physical_pifs()
        ok(self.x.PIF.scan(self.s, self.host()))
        after = self.physical_pifs()
        self.assertEqual({d: r for d, (r, _) in before.items()}, {d: r for d, (r, _) in after.items()})
        self.assertEqual(fail(self.x.PIF.scan(self.s, "OpaqueRef:h")), ["HANDLE_INVALID", "host", "OpaqueRef:h"])

    def test_physical_pif_cannot_be_destroyed(self):
        for ref, _ in self.physical_pifs().values():
            self.assertEqual(fail(self.x.PIF.destroy(self.s, ref)), ["PIF_IS_PHYSICAL"])


class TestNetworks(NetBase):
    def test_bridge_names_and_mtu(self):
        a = self.new_net("a")
        b = self.new_net("b")
        ra, rb = ok(self.x.network.get_record(self.s, a)), ok(self.x.network.get_record(self.s, b))
        self.assertRegex(ra["bridge"], r"^xapi\d+$")
        self.assertRegex(rb["bridge"], r"^xapi\d+$")
        self.assertNotEqual(ra["bridge"], rb["bridge"])
        self.assertEqual((ra["MTU"], ra["managed"]), ("1500", True))
        # The lowest free number is reused.
        ok(self.x.network.destroy(self.s, a))
        c = self.new_net("c")
        self.assertEqual(ok(self.x.network.get_bridge(self.s, c)), ra["bridge"])
        d = self.new_net("d", MTU="9000", bridge="custombr0")
        self.assertEqual(ok(self.x.network.get_bridge(self.s, d)), "custombr0")
        self.assertEqual(ok(self.x.network.get_MTU(self.s, d)), "9000")
        for n in (b, c, d):
            ok(self.x.network.destroy(self.s, n))

    def test_nova_interim_network(self):
        """Nova: network.create then network.get_bridge for the OVS wiring."""
        net = self.new_net("net-12345678-9a", name_description="interim network for vif[1]",
                           other_config={"assume_network_is_shared": "true"})
        self.assertEqual(ok(self.x.network.get_by_name_label(self.s, "net-12345678-9a")), [net])
        self.assertNotEqual(ok(self.x.network.get_bridge(self.s, net)), "")
        ok(self.x.network.destroy(self.s, net))

    def test_create_errors(self):
        for bad in ("eth9", "xenbr7", "xapi3", "a-name-longer-than-15", "bad name"):
            r = fail(self.x.network.create(self.s, {"name_label": "x", "other_config": {}, "bridge": bad}))
            self.assertEqual(r, ["INVALID_VALUE", "bridge", bad])
        net = self.new_net("taken", bridge="takenbr")
        r = fail(self.x.network.create(self.s, {"name_label": "y", "other_config": {}, "bridge": "takenbr"}))
        self.assertEqual(r, ["BRIDGE_NAME_EXISTS", "takenbr"])
        r = fail(self.x.network.create(self.s, {"name_label": "y", "other_config": {}, "MTU": "70000"}))
        self.assertEqual(r, ["INVALID_VALUE", "MTU", "70000"])
        self.assertEqual(fail(self.x.network.set_MTU(self.s, net, "20")), ["INVALID_VALUE", "MTU", "20"])
        ok(self.x.network.set_MTU(self.s, net, "1400"))
        self.assertEqual(ok(self.x.network.get_MTU(self.s, net)), "1400")
        self.assertEqual(ok(self.x.network.get_by_name_label(self.s, "y")), [])
        ok(self.x.network.destroy(self.s, net))

    def test_destroy_rules(self):
        pif_ref, pif = next(iter(self.physical_pifs().values()))
        self.assertEqual(fail(self.x.network.destroy(self.s, pif["network"])), ["NETWORK_CONTAINS_PIF", pif_ref])
        internal = [ref for ref, r in ok(self.x.network.get_all_records(self.s)).items()
                    if r["other_config"].get("is_host_internal_management_network") == "true"][0]
        self.assertEqual(fail(self.x.network.destroy(self.s, internal)), ["CANNOT_DESTROY_SYSTEM_NETWORK", internal])
        # Detached VIFs go with their network.
        net = self.new_net("with vifs")
        vm = self.new_vm("net user")
        vif = ok(self.x.VIF.create(self.s, self.vif_rec(vm, net)))
        ok(self.x.network.destroy(self.s, net))
        self.assertEqual(fail(self.x.VIF.get_record(self.s, vif)), ["HANDLE_INVALID", "VIF", vif])
        self.assertEqual(ok(self.x.VM.get_VIFs(self.s, vm)), [])

    def test_destroy_with_attached_vif(self):
        net = self.new_net("busy")
        vm = self.new_vm("running user")
        mem = str(256 << 20)
        ok(self.x.VM.set_memory_limits(self.s, vm, mem, mem, mem, mem))
        ok(self.x.VM.set_PV_kernel(self.s, vm, "/boot/vmlinuz"))
        vif = ok(self.x.VIF.create(self.s, self.vif_rec(vm, net)))
        r = self.x.VM.start(self.s, vm, False, False)
        if r.get("Status") != "Success" or not ok(self.x.VIF.get_currently_attached(self.s, vif)):
            self.skipTest("the VM layer could not plug the VIF: %s" % r)
        try:
            self.assertEqual(fail(self.x.network.destroy(self.s, net)), ["NETWORK_CONTAINS_VIF", vif])
            self.assertEqual(fail(self.x.VIF.destroy(self.s, vif)),
                             ["OPERATION_NOT_ALLOWED", "VIF currently attached to a running VM"])
        finally:
            ok(self.x.VM.hard_shutdown(self.s, vm))
        ok(self.x.network.destroy(self.s, net))


class TestVLAN(NetBase):
    def base(self):
        devs = physical_ifaces()
        if not devs:
            self.skipTest("no physical interface")
        return devs[0], self.physical_pifs()[devs[0]][0]

    def test_create_and_destroy(self):
        dev, tagged = self.base()
        net = self.new_net("vlan 42")
        vlan = ok(self.x.VLAN.create(self.s, tagged, 42, net))
        rec = ok(self.x.VLAN.get_record(self.s, vlan))
        self.assertEqual((rec["tagged_PIF"], rec["tag"]), (tagged, "42"))
        untagged = ok(self.x.PIF.get_record(self.s, rec["untagged_PIF"]))
        self.assertEqual((untagged["device"], untagged["VLAN"], untagged["network"], untagged["host"]),
                         (dev, "42", net, self.host()))
        self.assertEqual(untagged["MAC"], "fe:ff:ff:ff:ff:ff")
        self.assertEqual(untagged["VLAN_master_of"], vlan)
        self.assertFalse(untagged["physical"])
        self.assertEqual(untagged["MTU"], ok(self.x.PIF.get_MTU(self.s, tagged)))
        self.assertIn(vlan, ok(self.x.PIF.get_VLAN_slave_of(self.s, tagged)))
        self.assertEqual(ok(self.x.network.get_PIFs(self.s, net)), [rec["untagged_PIF"]])
        self.assertEqual(fail(self.x.network.destroy(self.s, net)), ["NETWORK_CONTAINS_PIF", rec["untagged_PIF"]])
        # CloudStack finds it again by its network.
        found = ok(self.x.PIF.get_all_records_where(self.s, 'field "VLAN" = "42"'))
        self.assertEqual(list(found), [rec["untagged_PIF"]])
        ok(self.x.VLAN.destroy(self.s, vlan))
        self.assertEqual(fail(self.x.VLAN.get_record(self.s, vlan)), ["HANDLE_INVALID", "VLAN", vlan])
        self.assertEqual(fail(self.x.PIF.get_record(self.s, rec["untagged_PIF"]))[0], "HANDLE_INVALID")
        self.assertEqual(ok(self.x.PIF.get_VLAN_slave_of(self.s, tagged)), [])
        ok(self.x.network.destroy(self.s, net))

    def test_errors(self):
        dev, tagged = self.base()
        net = self.new_net("vlan errors")
        for bad in (4095, -1, 100000):
            self.assertEqual(fail(self.x.VLAN.create(self.s, tagged, bad, net)), ["VLAN_TAG_INVALID", str(bad)])
        vlan = ok(self.x.VLAN.create(self.s, tagged, 7, net))
        other = self.new_net("vlan errors 2")
        self.assertEqual(fail(self.x.VLAN.create(self.s, tagged, 7, other)), ["PIF_VLAN_EXISTS", dev])
        untagged = ok(self.x.VLAN.get_untagged_PIF(self.s, vlan))
        self.assertEqual(fail(self.x.VLAN.create(self.s, tagged, 8, net)),
                         ["NETWORK_ALREADY_CONNECTED", self.host(), untagged])
        self.assertEqual(fail(self.x.VLAN.create(self.s, untagged, 9, other)), ["PIF_IS_VLAN", untagged])
        self.assertEqual(fail(self.x.VLAN.create(self.s, "OpaqueRef:p", 9, other)),
                         ["HANDLE_INVALID", "PIF", "OpaqueRef:p"])
        ok(self.x.VLAN.destroy(self.s, vlan))
        for n in (net, other):
            ok(self.x.network.destroy(self.s, n))

    def test_older_forms(self):
        dev, tagged = self.base()
        net = self.new_net("pif.create_VLAN")
        pif = ok(self.x.PIF.create_VLAN(self.s, dev, net, self.host(), 100))
        self.assertEqual(ok(self.x.PIF.get_VLAN(self.s, pif)), "100")
        self.assertEqual(fail(self.x.PIF.create_VLAN(self.s, "nosuch0", net, self.host(), 101)),
                         ["INVALID_VALUE", "device", "nosuch0"])
        ok(self.x.PIF.destroy(self.s, pif))
        pifs = ok(self.x.pool.create_VLAN(self.s, dev, net, 200))
        self.assertEqual(len(pifs), 1)
        self.assertEqual(ok(self.x.PIF.get_VLAN(self.s, pifs[0])), "200")
        ok(self.x.PIF.destroy(self.s, pifs[0]))
        pifs = ok(self.x.pool.create_VLAN_from_PIF(self.s, tagged, net, 300))
        self.assertEqual(ok(self.x.PIF.get_device(self.s, pifs[0])), dev)
        fresh = self.new_net("fresh")
        self.assertEqual(fail(self.x.pool.create_VLAN(self.s, dev, fresh, 5000)), ["VLAN_TAG_INVALID", "5000"])
        self.assertEqual(ok(self.x.network.get_PIFs(self.s, fresh)), [])
        ok(self.x.VLAN.destroy(self.s, ok(self.x.PIF.get_VLAN_master_of(self.s, pifs[0]))))
        for n in (net, fresh):
            ok(self.x.network.destroy(self.s, n))


class TestVIF(NetBase):
    def test_mac_from_the_vm_seed(self):
        net = self.new_net("macs")
        vm = self.new_vm("seeded")
        ok(self.x.VM.remove_from_other_config(self.s, vm, "mac_seed"))
        seed = "0b8ac3a8-5b3c-4b3f-9e2a-7d5f6e4c3b2a"
        ok(self.x.VM.add_to_other_config(self.s, vm, "mac_seed", seed))
        for dev in (0, 1, 7):
            vif = ok(self.x.VIF.create(self.s, self.vif_rec(vm, net, device=str(dev))))
            rec = ok(self.x.VIF.get_record(self.s, vif))
            self.assertEqual(rec["MAC"], xapi_mac(dev, seed))
            self.assertTrue(rec["MAC_autogenerated"])
            self.assertEqual(rec["MTU"], "1500")  # the network's
            self.assertFalse(rec["currently_attached"])
        self.assertEqual(ok(self.x.VM.get_allowed_VIF_devices(self.s, vm)),
                         [str(i) for i in range(16) if i not in (0, 1, 7)])

    def test_generated_mac_is_unique_on_the_host(self):
        """Two VMs with the same mac_seed (a VM copied outside xapi) do not get the same MAC."""
        net = self.new_net("mac clash")
        seed = "5d1e1a52-3f0e-4a5c-8f61-1b2c3d4e5f60"
        macs = []
        for name in ("copy 1", "copy 2"):
            vm = self.new_vm(name)
            ok(self.x.VM.remove_from_other_config(self.s, vm, "mac_seed"))
            ok(self.x.VM.add_to_other_config(self.s, vm, "mac_seed", seed))
            vif = ok(self.x.VIF.create(self.s, self.vif_rec(vm, net, device="3")))
            macs.append(ok(self.x.VIF.get_MAC(self.s, vif)))
        self.assertEqual(macs[0], xapi_mac(3, seed))
        self.assertNotEqual(macs[0], macs[1])
        self.assertEqual(int(macs[1][:2], 16) & 3, 2)  # still locally administered, unicast

    def test_mac_without_seed_and_given(self):
        net = self.new_net("macs 2")
        vm = self.new_vm("unseeded")
        ok(self.x.VM.remove_from_other_config(self.s, vm, "mac_seed"))
        vif = ok(self.x.VIF.create(self.s, self.vif_rec(vm, net)))
        mac = ok(self.x.VIF.get_MAC(self.s, vif))
        self.assertRegex(mac, r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
        first = int(mac[:2], 16)
        self.assertEqual(first & 3, 2)  # locally administered, unicast
        given = ok(self.x.VIF.create(self.s, self.vif_rec(vm, net, device="1", mac="00:16:3E:AA:BB:CC",
                                                          mtu="1400")))
        rec = ok(self.x.VIF.get_record(self.s, given))
        self.assertEqual((rec["MAC"], rec["MAC_autogenerated"], rec["MTU"]), ("00:16:3E:AA:BB:CC", False, "1400"))

    def test_errors(self):
        net = self.new_net("vif errors")
        vm = self.new_vm("vif errors")
        ok(self.x.VIF.create(self.s, self.vif_rec(vm, net, device="2")))
        self.assertEqual(fail(self.x.VIF.create(self.s, self.vif_rec(vm, net, device="2"))),
                         ["DEVICE_ALREADY_EXISTS", "2"])
        for bad in ("autodetect", "-1", "eth0", "", "1234567890"):
            self.assertEqual(fail(self.x.VIF.create(self.s, self.vif_rec(vm, net, device=bad))),
                             ["INVALID_DEVICE", bad])
        for bad in ("00:11:22:33:44", "zz:11:22:33:44:55", "001122334455"):
            self.assertEqual(fail(self.x.VIF.create(self.s, self.vif_rec(vm, net, device="3", mac=bad))),
                             ["MAC_INVALID", bad])
        self.assertEqual(fail(self.x.VIF.create(self.s, self.vif_rec(vm, net, device="3", mtu="100000"))),
                         ["INVALID_VALUE", "MTU", "100000"])
        self.assertEqual(fail(self.x.VIF.create(self.s, self.vif_rec(vm, "OpaqueRef:NULL", device="3"))),
                         ["HANDLE_INVALID", "network", "OpaqueRef:NULL"])
        self.assertEqual(fail(self.x.VIF.create(self.s, self.vif_rec("OpaqueRef:NULL", net, device="3"))),
                         ["HANDLE_INVALID", "VM", "OpaqueRef:NULL"])
        self.assertEqual(len(ok(self.x.VM.get_VIFs(self.s, vm))), 1)
        self.assertEqual(fail(self.x.VM.get_allowed_VIF_devices(self.s, "OpaqueRef:v")),
                         ["HANDLE_INVALID", "VM", "OpaqueRef:v"])


class TestRestart(unittest.TestCase):
    def test_pifs_and_networks_are_stable(self):
        d = Daemon().start()
        try:
            x, s = d.login()
            pifs = ok(x.PIF.get_all_records(s))
            nets = sorted(ok(x.network.get_all(s)))
            d.restart()
            x, s = d.login()
            again = ok(x.PIF.get_all_records(s))
            self.assertEqual(sorted(again), sorted(pifs))
            for ref, rec in pifs.items():
                self.assertEqual(again[ref]["network"], rec["network"])
                self.assertEqual(again[ref]["device"], rec["device"])
            self.assertEqual(sorted(ok(x.network.get_all(s))), nets)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
