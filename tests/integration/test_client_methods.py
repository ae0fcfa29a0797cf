"""Every XenAPI method that Nova's and CloudStack's drivers call (the list in
client_methods.txt) is known to xenapid: called with a wrong number of
arguments it answers a XenAPI error about the call (the arguments, the
session, or a real outcome), never MESSAGE_METHOD_UNKNOWN."""

import os
import unittest

from harness import DaemonTest

HERE = os.path.dirname(os.path.abspath(__file__))
TOO_MANY = ["x"] * 20  # more arguments than any XenAPI message takes: nothing runs


def client_methods():
    """[(method, clients, xfail reason or None)] from client_methods.txt."""
    out = []
    with open(os.path.join(HERE, "client_methods.txt")) as f:
        for line in f:
            line = line.rstrip()
            if not line or line.startswith("#"):
                continue
            head, _, xfail = line.partition("xfail:")
            name, clients = head.split()
            out.append((name, clients.split(","), xfail.strip() or None))
    return out


class TestClientMethods(DaemonTest):
    def call(self, name, *args):
        return getattr(self.x, name)(self.s, *args)

    def test_nothing_is_still_to_come(self):
        # Every method the clients name is served: no line carries an xfail mark any more.
        self.assertEqual({m: why for m, _, why in client_methods() if why}, {})

    def test_the_list_is_the_clients(self):
        methods = {m for m, _, _ in client_methods()}
        self.assertGreater(len(methods), 250)
        for m in ("VM.start_on", "host.call_plugin", "pool_patch.get_by_uuid", "Async.VM.start_on", "VGPU.create",
                  "Bond.get_uuid", "PGPU.get_all_records_where", "session.login_with_password"):
            self.assertIn(m, methods)

    def test_every_method_is_known(self):
        unknown, still_missing, landed = [], [], []
        for name, clients, xfail in client_methods():
            r = self.call(name, *TOO_MANY)
            self.assertIsInstance(r, dict, name)
            if r.get("Status") == "Failure":
                desc = r["ErrorDescription"]
                self.assertTrue(desc and all(isinstance(p, str) for p in desc), (name, desc))
                if desc[0] == "MESSAGE_METHOD_UNKNOWN":
                    (still_missing if xfail else unknown).append(name)
                    continue
                self.assertIn(desc[0], ("MESSAGE_PARAMETER_COUNT_MISMATCH", "SESSION_INVALID"), (name, desc))
            else:
                self.assertEqual(r.get("Status"), "Success", (name, r))
            if xfail:
                landed.append(name)
        self.assertEqual(unknown, [], "methods the clients call that xenapid does not know")
        self.assertEqual(landed, [], "known now: remove their xfail mark in client_methods.txt")
        if still_missing:
            print("\nexpected, brought by other issues (client_methods.txt xfail):", " ".join(still_missing))

    def test_async_forms_are_known(self):
        # What CloudStack calls as Async.<m> must be known in its synchronous form as well.
        for name, _, xfail in client_methods():
            if name.startswith("Async.") and not xfail:
                r = self.call(name[len("Async."):], *TOO_MANY)
                self.assertNotEqual(r["ErrorDescription"][0], "MESSAGE_METHOD_UNKNOWN", name)


if __name__ == "__main__":
    unittest.main()
