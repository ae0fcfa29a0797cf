"""A VM.start's VIF plumbing (the backend device's MTU, rate limit and rules)
runs without the store's lock. In the Xen lab that plumbing took seconds (a
dom0 starved of CPU: 0.1-0.7 s between one system call and the next, and each
nft call read the ruleset first), and while it ran under the store's write
lock every other writer and reader of the daemon waited, the other starts of
a boot storm with them. Here the plumbing's netlink look-up is stalled on
demand (tests/integration/shim/netlink_gate.c, preloaded into the
daemon) in a network namespace of the test's own, with the VIF's would-be
backend device made as libxl's netback would: while the VM's start is held
inside its plumbing, the daemon still answers reads and writes, the VM is not
yet Running and is busy with its start; once the call goes on, the start
finishes and the device has the network's MTU."""

import json
import os
import tempfile
import threading
import unittest

from harness import BUILD, Daemon, create_network, create_vif, create_vm, ok, wait_for, wait_task
from test_network_host import enter_fresh_netns, ip

SHIM = os.path.join(BUILD, "netlink-gate.so")


class VifPlumbingOffTheLockTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(SHIM):
            raise unittest.SkipTest("no %s (built with the tree)" % SHIM)
        enter_fresh_netns()
        cls.tmp = tempfile.mkdtemp(prefix="xenapid-gate-")
        cls.gate = os.path.join(cls.tmp, "gate")
        env = {"LD_PRELOAD": SHIM, "XENAPID_TEST_NETLINK_GATE": cls.gate,
               # a sanitizer build wants its runtime first in the list: the shim comes before it here
               "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")}
        cls.d = Daemon(extra_config="host_networking = on\n", env=env).start()
        cls.x, cls.s = cls.d.login()

    @classmethod
    def tearDownClass(cls):
        if os.path.exists(cls.gate):
            os.unlink(cls.gate)
        cls.x("close")()
        cls.d.cleanup()

    def test_start_answers_others_while_its_plumbing_waits(self):
        x, s = self.x, self.s
        net = create_network(x, s, name_label="plumbed", MTU="1400")
        other = create_vm(x, s, name_label="other")
        ok(x.VM.start(s, other, False, False))
        # the simulator's domids count up: the next start's domain, and its VIF's backend device
        dev = "vif%d.0" % (int(ok(x.VM.get_domid(s, other))) + 1)
        ip("link", "add", dev, "type", "veth", "peer", "name", "p" + dev)
        self.addCleanup(lambda: ip("link", "del", dev, check=False))
        vm = create_vm(x, s, name_label="plumbed")
        create_vif(x, s, vm, net, MTU="0")

        x2, s2 = self.d.login()  # the other client's session, before a start can hold anything
        open(self.gate, "w").close()
        self.addCleanup(lambda: os.path.exists(self.gate) and os.unlink(self.gate))
        task = ok(x.Async.VM.start(s, vm, False, False))
        wait_for(lambda: os.path.exists(self.gate + ".entered"), 30, "the start to reach its VIF's plumbing")

        # The start is held in a netlink call. Another client reads and writes meanwhile.
        answers = {}

        def other_client():
            answers["power_state"] = ok(x2.VM.get_power_state(s2, vm))
            answers["current_operations"] = ok(x2.VM.get_current_operations(s2, vm))
            ok(x2.VM.set_name_description(s2, other, "written while a start plumbs"))
            answers["written"] = True
        th = threading.Thread(target=other_client, daemon=True)
        th.start()
        th.join(30)
        blocked = th.is_alive()
        os.unlink(self.gate)
        th.join(30)
        self.assertFalse(blocked, "a read and a write waited for the start's VIF plumbing (the store's lock held "
                                  "across a netlink call)")
        self.assertEqual(answers["power_state"], "Halted", "the VM is not recorded running before its devices are")
        self.assertIn("start", answers["current_operations"].values(), "the VM is busy with its start meanwhile")

        rec = wait_task(x, s, task, 30)
        self.assertEqual(rec["status"], "success", rec)
        self.assertEqual(ok(x.VM.get_power_state(s, vm)), "Running")
        vif = ok(x.VM.get_VIFs(s, vm))[0]
        self.assertTrue(ok(x.VIF.get_currently_attached(s, vif)))
        self.assertEqual(json.loads(ip("-j", "link", "show", dev).stdout)[0]["mtu"], 1400,
                         "the plumbing applied the network's MTU")


if __name__ == "__main__":
    unittest.main()
