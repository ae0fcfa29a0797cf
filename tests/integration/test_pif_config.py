"""PIF.reconfigure_ip, PIF.reconfigure_ipv6 and host.management_reconfigure:
xapi's validation and errors, and the records they change (CloudStack sets
a storage PIF's address and moves management onto a bond). The host's own
interfaces are not touched yet (issue 12)."""

import subprocess
import unittest

from harness import NULL_REF, DaemonTest, fail, ok, wait_task


def host_addresses():
    return subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout


class TestPIFConfig(DaemonTest):
    def setUp(self):
        self.host = ok(self.x.host.get_all(self.s))[0]
        mgmt = [p for p, r in ok(self.x.PIF.get_all_records(self.s)).items() if r["management"]]
        if not mgmt:
            self.skipTest("no management interface on this machine")
        self.mgmt = mgmt[0]

    def pif(self, ref):
        return ok(self.x.PIF.get_record(self.s, ref))

    def vlan_pif(self, tag):
        """A second PIF of this host: a VLAN on the management PIF's device (mode None)."""
        net = ok(self.x.network.create(self.s, {"name_label": "vlan %d" % tag, "name_description": "",
                                                "other_config": {}}))
        vlan = ok(self.x.VLAN.create(self.s, self.mgmt, str(tag), net))
        pif = ok(self.x.VLAN.get_untagged_PIF(self.s, vlan))

        def cleanup():
            if self.pif(pif)["management"]:
                ok(self.x.host.management_reconfigure(self.s, self.mgmt))
            ok(self.x.VLAN.destroy(self.s, vlan))
            ok(self.x.network.destroy(self.s, net))
        self.addCleanup(cleanup)
        return pif

    def reconfigure(self, pif, mode, ip="", netmask="", gateway="", dns=""):
        return self.x.PIF.reconfigure_ip(self.s, pif, mode, ip, netmask, gateway, dns)

    def test_static_dhcp_none_recorded(self):
        pif = self.vlan_pif(101)
        before = host_addresses()
        ok(self.reconfigure(pif, "Static", "10.1.2.3", "255.255.255.0", "10.1.2.1", "10.1.2.53,10.1.2.54"))
        r = self.pif(pif)
        self.assertEqual((r["ip_configuration_mode"], r["IP"], r["netmask"], r["gateway"], r["DNS"]),
                         ("Static", "10.1.2.3", "255.255.255.0", "10.1.2.1", "10.1.2.53,10.1.2.54"))
        ok(self.reconfigure(pif, "DHCP"))
        r = self.pif(pif)
        self.assertEqual((r["ip_configuration_mode"], r["IP"], r["netmask"], r["gateway"], r["DNS"]),
                         ("DHCP", "", "", "", ""))
        ok(self.reconfigure(pif, "None"))
        self.assertEqual(self.pif(pif)["ip_configuration_mode"], "None")
        self.assertEqual(host_addresses(), before)  # records only, until issue 12

    def test_ip_validation(self):
        pif = self.vlan_pif(102)
        cases = [
            (("Static", "", "255.255.255.0"), "IP"),
            (("Static", "10.0.0.1", ""), "netmask"),
            (("Static", "10.0.0.300", "255.255.255.0"), "IP"),
            (("Static", "10.0.0.1", "255.255.255.0", "gw"), "gateway"),
            (("Static", "10.0.0.1", "255.255.255.0", "", "10.0.0.53,x"), "DNS"),
            (("Static", "10.0.0.1", "255.255.255.0", "", "10.0.0.53,"), "DNS"),
            (("DHCP", "not-an-ip"), "IP"),
            (("DHCP", "", "bad"), "netmask"),
            (("Static", "fd00::1", "255.255.255.0"), "IP"),
        ]
        for args, param in cases:
            with self.subTest(args):
                self.assertEqual(fail(self.reconfigure(pif, *args)), ["INVALID_IP_ADDRESS_SPECIFIED", param])
        self.assertEqual(fail(self.reconfigure(pif, "Manual")), ["INVALID_VALUE", "mode", "Manual"])
        self.assertEqual(fail(self.reconfigure(NULL_REF, "DHCP")), ["HANDLE_INVALID", "PIF", NULL_REF])
        self.assertEqual(self.pif(pif)["ip_configuration_mode"], "None")

    def test_management_pif_keeps_an_address(self):
        r = self.pif(self.mgmt)
        self.assertEqual(fail(self.reconfigure(self.mgmt, "None")), ["PIF_IS_MANAGEMENT_INTERFACE", self.mgmt])
        self.assertEqual(self.pif(self.mgmt)["ip_configuration_mode"], r["ip_configuration_mode"])

    def test_ipv6(self):
        pif = self.vlan_pif(103)
        ok(self.x.PIF.reconfigure_ipv6(self.s, pif, "Static", "fd00::5/64", "fd00::1", "fd00::53"))
        r = self.pif(pif)
        self.assertEqual((r["ipv6_configuration_mode"], r["IPv6"], r["ipv6_gateway"], r["DNS"]),
                         ("Static", ["fd00::5/64"], "fd00::1", "fd00::53"))
        for args, want in [(("Static", "fd00::5", "", ""), ["INVALID_CIDR_ADDRESS_SPECIFIED", "IPv6"]),
                           (("Static", "fd00::5/129", "", ""), ["INVALID_CIDR_ADDRESS_SPECIFIED", "IPv6"]),
                           (("Static", "", "10.0.0.1", ""), ["INVALID_IP_ADDRESS_SPECIFIED", "gateway"]),
                           (("Static", "", "", "10.0.0.53"), ["INVALID_IP_ADDRESS_SPECIFIED", "DNS"])]:
            with self.subTest(args):
                self.assertEqual(fail(self.x.PIF.reconfigure_ipv6(self.s, pif, *args)), want)
        ok(self.x.PIF.reconfigure_ipv6(self.s, pif, "None", "", "", ""))
        self.assertEqual(self.pif(pif)["ipv6_configuration_mode"], "None")

    def test_management_reconfigure(self):
        pif = self.vlan_pif(104)
        self.assertEqual(fail(self.x.host.management_reconfigure(self.s, pif)),
                         ["PIF_HAS_NO_NETWORK_CONFIGURATION", pif])
        self.assertTrue(self.pif(self.mgmt)["management"])
        ok(self.reconfigure(pif, "Static", "10.1.4.3", "255.255.255.0"))
        address = ok(self.x.host.get_address(self.s, self.host))
        ok(self.x.host.management_reconfigure(self.s, pif))
        self.assertTrue(self.pif(pif)["management"])
        self.assertFalse(self.pif(self.mgmt)["management"])
        managing = [p for p, r in ok(self.x.PIF.get_all_records(self.s)).items() if r["management"]]
        self.assertEqual(managing, [pif])
        # Now the management PIF: it keeps an address, and VLAN.destroy refuses it.
        self.assertEqual(fail(self.reconfigure(pif, "None")), ["PIF_IS_MANAGEMENT_INTERFACE", pif])
        ok(self.x.host.management_reconfigure(self.s, pif))  # already: nothing to do
        ok(self.x.host.management_reconfigure(self.s, self.mgmt))
        self.assertEqual(([p for p, r in ok(self.x.PIF.get_all_records(self.s)).items() if r["management"]]),
                         [self.mgmt])
        # The address clients reach the host at stays the one it really has.
        self.assertEqual(ok(self.x.host.get_address(self.s, self.host)), address)
        self.assertEqual(fail(self.x.host.management_reconfigure(self.s, NULL_REF)),
                         ["HANDLE_INVALID", "PIF", NULL_REF])

    def test_async(self):
        pif = self.vlan_pif(105)
        task = ok(self.x.Async.PIF.reconfigure_ip(self.s, pif, "DHCP", "", "", "", ""))
        self.assertEqual(wait_task(self.x, self.s, task)["status"], "success")
        self.assertEqual(self.pif(pif)["ip_configuration_mode"], "DHCP")


if __name__ == "__main__":
    unittest.main()
