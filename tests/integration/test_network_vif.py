"""A plugged VIF's backend device enforces the VIF's MTU, rate limit and
locking mode (host_networking = on), in a network namespace of the test's
own. The simulator has no backend devices, so the test makes the veth
`vif<domid>.<device>` that libxl's netback would, then plugs the VIF: xenapid
sets the MTU, a TBF qdisc for qos_algorithm_type=ratelimit (kbps, kilobytes
per second) and nftables rules (table `netdev xenapid`, a chain per device)
for locking_mode locked/disabled, follows changes while plugged, and removes
the rules at unplug. `ip`, `tc` and `nft` here only look; the daemon forks
nothing."""

import json
import socket
import struct
import subprocess
import unittest

from harness import Daemon, create_network, create_vif, create_vm, fail, ok
from test_network_host import enter_fresh_netns, ip


def run(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def have_nf_tables():
    try:
        return run("nft", "list", "tables", check=False).returncode == 0
    except FileNotFoundError:
        return False


def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(src_mac, dst_mac, src_ip, dst_ip, port, payload):
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                      socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    mac = lambda m: bytes.fromhex(m.replace(":", ""))
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + hdr + udp


class VifPolicyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        enter_fresh_netns()
        if not have_nf_tables():
            raise unittest.SkipTest("this kernel (or namespace) has no nf_tables: VIF locking not testable here")
        cls.d = Daemon(extra_config="host_networking = on\n").start()
        cls.x, cls.s = cls.d.login()

    @classmethod
    def tearDownClass(cls):
        cls.x("close")()
        cls.d.cleanup()

    def running_vm_with_device(self, name):
        """A running VM, its domain's would-be backend device made, and a halted VIF on a network of MTU 1400."""
        net = create_network(self.x, self.s, name_label=name, MTU="1400")
        vm = create_vm(self.x, self.s, name_label=name)
        ok(self.x.VM.start(self.s, vm, False, False))
        domid = int(ok(self.x.VM.get_domid(self.s, vm)))
        dev = "vif%d.0" % domid
        ip("link", "add", dev, "type", "veth", "peer", "name", "p" + dev)
        ip("link", "set", dev, "up")
        vif = create_vif(self.x, self.s, vm, net, MAC="02:16:3e:00:00:0%d" % (domid % 10), MTU="0")
        self.addCleanup(lambda: self.x.VM.hard_shutdown(self.s, vm))
        self.addCleanup(lambda: ip("link", "del", dev, check=False))
        return vm, vif, dev

    def chain(self, dev):
        r = run("nft", "-j", "list", "table", "netdev", "xenapid", check=False)
        if r.returncode != 0:
            return None
        items = json.loads(r.stdout)["nftables"]
        chains = [i["chain"] for i in items if "chain" in i and i["chain"]["name"] == dev]
        if not chains:
            return None
        rules = [i["rule"] for i in items if "rule" in i and i["rule"]["chain"] == dev]
        return chains[0], json.dumps(rules)

    def qdisc_kind(self, dev):
        return [q["kind"] for q in self.root_qdiscs(dev)]

    def root_qdiscs(self, dev):
        return [q for q in json.loads(run("tc", "-j", "qdisc", "show", "dev", dev).stdout) if q.get("root")]

    def test_plug_applies_mtu_rate_and_locking_and_unplug_removes_the_rules(self):
        vm, vif, dev = self.running_vm_with_device("locked")
        ok(self.x.VIF.set_qos_algorithm_type(self.s, vif, "ratelimit"))
        ok(self.x.VIF.set_qos_algorithm_params(self.s, vif, {"kbps": "100"}))
        ok(self.x.VIF.set_locking_mode(self.s, vif, "locked"))
        ok(self.x.VIF.add_ipv4_allowed(self.s, vif, "10.0.0.5"))
        self.assertIsNone(self.chain(dev), "nothing is applied to an unplugged VIF")
        ok(self.x.VIF.plug(self.s, vif))
        link = json.loads(ip("-j", "link", "show", dev).stdout)[0]
        self.assertEqual(link["mtu"], 1400, "the VIF's MTU is the network's")
        self.assertEqual(self.qdisc_kind(dev), ["tbf"])
        self.assertEqual(self.root_qdiscs(dev)[0]["options"]["rate"], 100 * 1024, "kbps are kilobytes per second")
        ok(self.x.VIF.set_qos_algorithm_params(self.s, vif, {"kbps": "250"}))
        self.assertEqual(self.root_qdiscs(dev)[0]["options"]["rate"], 250 * 1024, "a new rate applies at once")
        ok(self.x.VIF.set_qos_algorithm_params(self.s, vif, {"kbps": "fast"}))
        self.assertNotEqual(self.qdisc_kind(dev), ["tbf"], "a kbps that is not a number: no limit, as xapi")
        ok(self.x.VIF.set_qos_algorithm_params(self.s, vif, {"kbps": "100"}))
        chain, rules = self.chain(dev)
        self.assertEqual(chain.get("hook"), "ingress")
        self.assertEqual(chain.get("policy"), "drop")
        self.assertIn("10.0.0.5", rules)
        self.assertIn(ok(self.x.VIF.get_MAC(self.s, vif)), rules)

        # changes while plugged apply at once
        ok(self.x.VIF.add_ipv4_allowed(self.s, vif, "10.0.0.6"))
        self.assertIn("10.0.0.6", self.chain(dev)[1])
        ok(self.x.VIF.remove_ipv4_allowed(self.s, vif, "10.0.0.5"))
        self.assertNotIn("10.0.0.5", self.chain(dev)[1])
        ok(self.x.VIF.set_ipv6_allowed(self.s, vif, ["fd00::5"]))
        self.assertIn("fd00::5", self.chain(dev)[1])
        ok(self.x.VIF.set_qos_algorithm_type(self.s, vif, ""))
        self.assertNotEqual(self.qdisc_kind(dev), ["tbf"])

        ok(self.x.VIF.set_locking_mode(self.s, vif, "unlocked"))
        self.assertIsNone(self.chain(dev), "unlocked: no rules")
        ok(self.x.VIF.set_locking_mode(self.s, vif, "disabled"))
        chain, rules = self.chain(dev)
        self.assertEqual(chain.get("policy"), "drop")
        self.assertEqual(rules, "[]", "disabled: nothing passes")

        ok(self.x.VIF.unplug(self.s, vif))
        self.assertIsNone(self.chain(dev), "unplug removes the VIF's rules")

    def guest_sends(self, dev, src_mac, src_ip):
        """Whether a UDP datagram the 'guest' (the veth peer) sends from src_mac/src_ip reaches the host."""
        ip("addr", "replace", "10.77.0.1/24", "dev", dev)
        ip("link", "set", "p" + dev, "up")
        host_mac = json.loads(ip("-j", "link", "show", dev).stdout)[0]["address"]
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("10.77.0.1", 0))
        rx.settimeout(1.0)
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        tx.bind(("p" + dev, 0))
        try:
            tx.send(udp_frame(src_mac, host_mac, src_ip, "10.77.0.1", rx.getsockname()[1], b"hello"))
            return rx.recv(64) == b"hello"
        except socket.timeout:
            return False
        finally:
            rx.close()
            tx.close()

    def test_locked_vif_passes_only_its_mac_and_allowed_address(self):
        vm, vif, dev = self.running_vm_with_device("enforced")
        mac = ok(self.x.VIF.get_MAC(self.s, vif))
        ok(self.x.VIF.plug(self.s, vif))
        self.assertTrue(self.guest_sends(dev, mac, "10.77.0.9"), "unlocked: anything passes")
        ok(self.x.VIF.set_locking_mode(self.s, vif, "locked"))
        ok(self.x.VIF.set_ipv4_allowed(self.s, vif, ["10.77.0.5"]))
        self.assertTrue(self.guest_sends(dev, mac, "10.77.0.5"), "locked: the allowed address passes")
        self.assertFalse(self.guest_sends(dev, mac, "10.77.0.9"), "locked: another address is dropped")
        self.assertFalse(self.guest_sends(dev, "02:99:99:99:99:99", "10.77.0.5"), "locked: another MAC is dropped")

    def test_network_default_follows_the_network(self):
        vm, vif, dev = self.running_vm_with_device("netdefault")
        net = ok(self.x.VIF.get_network(self.s, vif))
        ok(self.x.VIF.plug(self.s, vif))
        self.assertIsNone(self.chain(dev))
        ok(self.x.network.set_default_locking_mode(self.s, net, "disabled"))
        self.assertEqual(self.chain(dev)[1], "[]")
        ok(self.x.network.set_default_locking_mode(self.s, net, "unlocked"))
        self.assertIsNone(self.chain(dev))

    def test_rules_are_made_again_after_a_restart(self):
        vm, vif, dev = self.running_vm_with_device("restart")
        ok(self.x.VIF.set_locking_mode(self.s, vif, "locked"))
        ok(self.x.VIF.plug(self.s, vif))
        self.assertIsNotNone(self.chain(dev))
        run("nft", "delete", "table", "netdev", "xenapid")
        self.d.restart()
        type(self).x, type(self).s = self.d.login()
        self.x, self.s = type(self).x, type(self).s
        self.assertIsNotNone(self.chain(dev), "a restart makes the missing rules again")

    def test_bad_addresses_get_xapi_errors(self):
        vm, vif, dev = self.running_vm_with_device("bad")
        self.assertEqual(fail(self.x.VIF.add_ipv4_allowed(self.s, vif, "10.0.0.300")),
                         ["INVALID_IP_ADDRESS_SPECIFIED", "ipv4_allowed"])
        self.assertEqual(fail(self.x.VIF.set_ipv6_allowed(self.s, vif, ["10.0.0.1"])),
                         ["INVALID_IP_ADDRESS_SPECIFIED", "ipv6_allowed"])
        self.assertEqual(fail(self.x.VIF.add_ipv4_allowed(self.s, vif, '1.2.3.4"}]}')),
                         ["INVALID_IP_ADDRESS_SPECIFIED", "ipv4_allowed"])
        self.assertEqual(ok(self.x.VIF.get_ipv4_allowed(self.s, vif)), [])


if __name__ == "__main__":
    unittest.main()
