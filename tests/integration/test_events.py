"""event.from and the legacy event.register/next over XML-RPC: subscriptions,
coalescing, deletions, valid_ref_counts, tokens across restarts, session end."""

import threading
import time
import unittest
import xmlrpc.client

from harness import Daemon, DaemonTest, fail, ok


def vm_record(name):
    return {"name_label": name, "name_description": "", "user_version": "1", "is_a_template": False,
            "affinity": "OpaqueRef:NULL", "memory_static_max": str(256 << 20),
            "memory_dynamic_max": str(256 << 20), "memory_dynamic_min": str(256 << 20),
            "memory_static_min": str(128 << 20), "VCPUs_params": {}, "VCPUs_max": "1",
            "VCPUs_at_startup": "1", "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
            "actions_after_crash": "restart", "PV_bootloader": "", "PV_kernel": "", "PV_ramdisk": "",
            "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "", "HVM_boot_policy": "",
            "HVM_boot_params": {}, "platform": {}, "PCI_bus": "", "other_config": {}, "recommendations": ""}


class TestEventFrom(DaemonTest):
    extra_config = "event_batch_delay_ms = 10\n"

    def test_initial_snapshot_and_counts(self):
        r = ok(getattr(self.x.event, "from")(self.s, ["host", "pool"], "", 0.0))
        classes = sorted(e["class"] for e in r["events"])
        self.assertEqual(classes, ["host", "pool"])
        for e in r["events"]:
            self.assertEqual(e["operation"], "add")
            self.assertIn("uuid", e["snapshot"])
        self.assertEqual(r["valid_ref_counts"]["host"], 1)
        self.assertIsInstance(r["valid_ref_counts"]["vm"], int)
        self.assertRegex(r["token"], r"^\d{20},\d{20}$")

    def test_add_mod_del_coalesced(self):
        token = ok(getattr(self.x.event, "from")(self.s, ["vm"], "", 0.0))["token"]
        vm = ok(self.x.VM.create(self.s, vm_record("ev1")))
        for i in range(5):
            ok(self.x.VM.set_name_label(self.s, vm, "ev1-%d" % i))
        r = ok(getattr(self.x.event, "from")(self.s, ["vm"], token, 5.0))
        mine = [e for e in r["events"] if e["ref"] == vm]
        self.assertEqual(len(mine), 1, "one event per object, however many changes")
        self.assertEqual(mine[0]["operation"], "add")
        self.assertEqual(mine[0]["snapshot"]["name_label"], "ev1-4")
        token = r["token"]
        ok(self.x.VM.set_name_label(self.s, vm, "ev1-mod"))
        r = ok(getattr(self.x.event, "from")(self.s, ["vm"], token, 5.0))
        mine = [e for e in r["events"] if e["ref"] == vm]
        self.assertEqual(mine[0]["operation"], "mod")
        token = r["token"]
        ok(self.x.VM.destroy(self.s, vm))
        r = ok(getattr(self.x.event, "from")(self.s, ["vm"], token, 5.0))
        dels = [e for e in r["events"] if e["ref"] == vm]
        self.assertEqual(dels[0]["operation"], "del")
        self.assertNotIn("snapshot", dels[0])

    def test_object_subscription(self):
        a = ok(self.x.VM.create(self.s, vm_record("a")))
        b = ok(self.x.VM.create(self.s, vm_record("b")))
        token = ok(getattr(self.x.event, "from")(self.s, ["vm/" + a], "", 0.0))["token"]
        ok(self.x.VM.set_name_label(self.s, b, "b2"))
        ok(self.x.VM.set_name_label(self.s, a, "a2"))
        r = ok(getattr(self.x.event, "from")(self.s, ["vm/" + a], token, 5.0))
        self.assertEqual([e["ref"] for e in r["events"]], [a])

    def test_blocks_until_change_or_timeout(self):
        token = ok(getattr(self.x.event, "from")(self.s, ["pool"], "", 0.0))["token"]
        t0 = time.monotonic()
        r = ok(getattr(self.x.event, "from")(self.s, ["pool"], token, 0.5))
        self.assertEqual(r["events"], [])
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        pool = ok(self.x.pool.get_all(self.s))[0]
        result = {}

        def waiter():
            p = self.d.proxy()
            result["r"] = ok(getattr(p.event, "from")(self.s, ["pool"], token, 10.0))

        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.2)
        ok(self.x.pool.set_name_description(self.s, pool, "changed"))
        th.join(5)
        self.assertFalse(th.is_alive())
        self.assertEqual([e["ref"] for e in result["r"]["events"]], [pool])

    def test_bad_subscription_and_token(self):
        self.assertEqual(fail(getattr(self.x.event, "from")(self.s, ["nosuchclass"], "", 0.0)),
                         ["EVENT_SUBSCRIPTION_PARSE_FAILURE", "nosuchclass"])
        self.assertEqual(fail(getattr(self.x.event, "from")(self.s, ["vm"], "garbage", 0.0)),
                         ["EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"])

    def test_inject(self):
        pool = ok(self.x.pool.get_all(self.s))[0]
        token = ok(self.x.event.inject(self.s, "pool", pool))
        r = ok(getattr(self.x.event, "from")(self.s, ["pool"], token, 5.0))
        self.assertIn(pool, [e["ref"] for e in r["events"]])
        self.assertEqual(fail(self.x.event.inject(self.s, "pool", "OpaqueRef:nope"))[0], "HANDLE_INVALID")

    def test_logout_ends_wait(self):
        p, s2 = self.d.login()
        token = ok(getattr(p.event, "from")(s2, ["pool"], "", 0.0))["token"]
        result = {}

        def waiter():
            result["r"] = getattr(self.d.proxy().event, "from")(s2, ["pool"], token, 30.0)

        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.3)
        ok(p.session.logout(s2))
        th.join(5)
        self.assertFalse(th.is_alive())
        self.assertEqual(fail(result["r"]), ["SESSION_INVALID", s2])

    def test_task_events(self):
        token = ok(getattr(self.x.event, "from")(self.s, ["task"], "", 0.0))["token"]
        vm = ok(self.x.VM.create(self.s, vm_record("taskev")))
        task = ok(self.x.Async.VM.clone(self.s, vm, "taskev-clone"))
        deadline = time.monotonic() + 10
        done = False
        while not done and time.monotonic() < deadline:
            r = ok(getattr(self.x.event, "from")(self.s, ["task/" + task], token, 5.0))
            token = r["token"]
            for e in r["events"]:
                if e["ref"] == task and e.get("snapshot", {}).get("status") == "success":
                    done = True
        self.assertTrue(done, "the task's completion was delivered")


class TestLegacyEvents(DaemonTest):
    extra_config = "event_batch_delay_ms = 10\n"

    def test_register_next_unregister(self):
        p, s = self.d.login()
        self.assertEqual(fail(p.event.next(s)), ["SESSION_NOT_REGISTERED", s])
        ok(p.event.register(s, ["vm"]))
        vm = ok(p.VM.create(s, vm_record("legacy")))
        evs = ok(p.event.next(s))
        self.assertIn(vm, [e["ref"] for e in evs])
        ok(p.VM.set_name_label(s, vm, "legacy2"))
        evs = ok(p.event.next(s))
        self.assertEqual([e["operation"] for e in evs if e["ref"] == vm], ["mod"])
        ok(p.event.unregister(s, ["vm"]))
        self.assertIsInstance(int(ok(p.event.get_current_id(s))), int)


class TestTokensAcrossRestart(unittest.TestCase):
    def test_token_keeps_meaning(self):
        d = Daemon().start()
        try:
            x, s = d.login()
            vm = ok(x.VM.create(s, vm_record("r1")))
            token = ok(getattr(x.event, "from")(s, ["vm"], "", 0.0))["token"]
            d.kill9()
            d.start()
            x, s = d.login()
            ok(x.VM.set_name_label(s, vm, "after-restart"))
            r = ok(getattr(x.event, "from")(s, ["vm"], token, 5.0))
            mine = [e for e in r["events"] if e["ref"] == vm]
            self.assertEqual(len(mine), 1)
            self.assertEqual(mine[0]["operation"], "mod")
            self.assertEqual(mine[0]["snapshot"]["name_label"], "after-restart")
            # a deletion before a restart is still reported after it
            token = r["token"]
            ok(x.VM.destroy(s, vm))
            d.stop()
            d.start()
            x, s = d.login()
            r = ok(getattr(x.event, "from")(s, ["vm"], token, 5.0))
            self.assertEqual([(e["ref"], e["operation"]) for e in r["events"] if e["ref"] == vm], [(vm, "del")])
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
