"""JSON-RPC on POST /jsonrpc (wire.md §4): v1 and v2 request and reply
shapes, errors, id echo, type mapping, sessions shared with XML-RPC,
malformed requests, and invalid Unicode."""

import json
import re
import unittest

from harness import (PASSWORD, REF_RE, DaemonTest, check_record, create_vm, ok, vm_record)


class Shapes(DaemonTest):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.host = ok(cls.x.host.get_all(cls.s))[0]

    def raw(self, obj):
        status, headers, body = self.d.post_json(json.dumps(obj).encode())
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["Content-Type"].startswith("application/json"))
        return body

    def test_v1_success(self):
        r = self.raw({"method": "host.get_name_label", "params": [self.s, self.host], "id": "xyz"})
        self.assertEqual(set(r), {"result", "error", "id"})
        self.assertIsNone(r["error"])
        self.assertEqual(r["id"], "xyz")
        self.assertEqual(r["result"], ok(self.x.host.get_name_label(self.s, self.host)))

    def test_v1_failure(self):
        r = self.raw({"method": "VM.get_record", "params": [self.s, "OpaqueRef:nope"], "id": 7})
        self.assertEqual(r, {"result": None, "error": ["HANDLE_INVALID", "VM", "OpaqueRef:nope"], "id": 7})

    def test_v2_success(self):
        r = self.raw({"jsonrpc": "2.0", "method": "host.get_name_label", "params": [self.s, self.host], "id": 3})
        self.assertEqual(set(r), {"jsonrpc", "result", "id"})
        self.assertEqual(r["jsonrpc"], "2.0")
        self.assertEqual(r["id"], 3)

    def test_v2_failure(self):
        r = self.raw({"jsonrpc": "2.0", "method": "VM.get_record", "params": ["OpaqueRef:dead", "x"], "id": 4})
        self.assertEqual(r, {"jsonrpc": "2.0", "id": 4,
                             "error": {"code": 1, "message": "SESSION_INVALID", "data": ["OpaqueRef:dead"]}})
        r = self.raw({"jsonrpc": "2.0", "method": "VM.nope", "params": [], "id": 5})
        self.assertEqual(r["error"], {"code": 1, "message": "MESSAGE_METHOD_UNKNOWN", "data": ["VM.nope"]})
        self.assertNotIn("result", r)

    def test_id_echo(self):
        for id_ in ("abc", "", "with \"quotes\" and \\ and \u00e9", 0, -1, 2 ** 53 + 1, 9223372036854775807, "1"):
            for v in (1, 2):
                with self.subTest(id=id_, version=v):
                    req = {"method": "pool.get_all", "params": [self.s], "id": id_}
                    if v == 2:
                        req["jsonrpc"] = "2.0"
                    r = self.raw(req)
                    self.assertEqual(r["id"], id_)
                    self.assertEqual(type(r["id"]), type(id_))
        # the id is echoed on failures too
        r = self.raw({"jsonrpc": "2.0", "method": "nope.nope", "params": [], "id": "e1"})
        self.assertEqual(r["id"], "e1")

    def test_types(self):
        rec = self.raw({"jsonrpc": "2.0", "method": "host.get_record", "params": [self.s, self.host], "id": 1})["result"]
        check_record(self, "host", rec, fmt="json")
        self.assertEqual(rec["API_version_major"], 2)  # a JSON integer, not a string
        self.assertIs(rec["enabled"], True)
        vm = create_vm(self.x, self.s, memory_static_max=str(3 << 40))
        vrec = self.raw({"jsonrpc": "2.0", "method": "VM.get_record", "params": [self.s, vm], "id": 1})["result"]
        check_record(self, "VM", vrec, fmt="json")
        self.assertEqual(vrec["memory_static_max"], 3 << 40)
        self.assertIs(vrec["is_a_template"], False)
        self.assertEqual(vrec["affinity"], "OpaqueRef:NULL")
        r = self.raw({"jsonrpc": "2.0", "method": "host.get_servertime", "params": [self.s, self.host], "id": 1})
        self.assertRegex(r["result"], r"^[0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
        # void
        r = self.raw({"jsonrpc": "2.0", "method": "VM.set_name_label", "params": [self.s, vm, "j"], "id": 1})
        self.assertEqual(r["result"], "")
        # full 64-bit precision in the raw text (no float rounding, no exponent)
        ok(self.x.VM.set_user_version(self.s, vm, str(2 ** 63 - 1)))
        status, _, body = self.d.http("POST", "/jsonrpc", json.dumps(
            {"jsonrpc": "2.0", "method": "VM.get_user_version", "params": [self.s, vm], "id": 1}).encode())
        self.assertIn(b'"result":9223372036854775807', body.replace(b" ", b""))

    def test_ints_in_as_numbers_or_strings(self):
        vm = create_vm(self.x, self.s)
        for v, want in ((5, "5"), ("6", "6"), (-7, "-7"), (2 ** 62, str(2 ** 62))):
            with self.subTest(value=v):
                r = self.d.jsonrpc("VM.set_user_version", [self.s, vm, v])
                self.assertEqual(r["result"], "", r)
                self.assertEqual(ok(self.x.VM.get_user_version(self.s, vm)), want)
        r = self.d.jsonrpc("VM.set_user_version", [self.s, vm, 1.5])
        self.assertEqual(r["error"]["message"], "FIELD_TYPE_ERROR")
        r = self.d.jsonrpc("VM.set_user_version", [self.s, vm, "1e3"])
        self.assertEqual(r["error"]["message"], "INVALID_VALUE")

    def test_create_with_object(self):
        r = self.d.jsonrpc("VM.create", [self.s, vm_record(name_label="json-vm", VCPUs_max=3, user_version=1,
                                                           memory_static_max=1 << 30)])
        vm = r["result"]
        self.assertRegex(vm, REF_RE)
        self.assertEqual(ok(self.x.VM.get_VCPUs_max(self.s, vm)), "3")
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), "json-vm")

    def test_v2_without_params_and_with_object_params(self):
        r = self.raw({"jsonrpc": "2.0", "method": "system.listMethods", "id": 1})
        self.assertIn("VM.get_all", r["result"])
        # an object as params is one struct argument: login takes strings, so it is a type error
        r = self.raw({"jsonrpc": "2.0", "method": "session.login_with_password", "params": {"a": "b"}, "id": 1})
        self.assertIn(r["error"]["message"], ("FIELD_TYPE_ERROR", "MESSAGE_PARAMETER_COUNT_MISMATCH"))

    def test_enums(self):
        vm = create_vm(self.x, self.s)
        self.assertEqual(self.d.jsonrpc("VM.set_actions_after_crash", [self.s, vm, "Rename_Restart"])["result"], "")
        self.assertEqual(self.d.jsonrpc("VM.get_actions_after_crash", [self.s, vm])["result"], "rename_restart")
        r = self.d.jsonrpc("VM.set_actions_after_crash", [self.s, vm, "sideways"], version=1)
        self.assertEqual(r["error"][0], "INVALID_VALUE")

    def test_sessions_shared_with_xmlrpc(self):
        r = self.d.jsonrpc("session.login_with_password", ["root", PASSWORD, "2.0", "json"])
        js = r["result"]
        self.assertRegex(js, REF_RE)
        self.assertEqual(ok(self.x.pool.get_all(js)), ok(self.x.pool.get_all(self.s)))
        self.assertEqual(self.d.jsonrpc("session.get_this_host", [self.s, self.s])["result"], self.host)
        self.assertEqual(self.d.jsonrpc("session.logout", [js])["result"], "")
        self.assertEqual(self.x.pool.get_all(js)["ErrorDescription"], ["SESSION_INVALID", js])

    def test_multicall_is_xmlrpc_only_but_harmless(self):
        r = self.raw({"jsonrpc": "2.0", "method": "system.multicall", "params": [[]], "id": 1})
        self.assertIn("jsonrpc", r)
        self.assertEqual(r["id"], 1)


class Malformed(DaemonTest):
    """Requests that are not JSON-RPC: HTTP 4xx, connection closed, daemon fine."""

    def post(self, body):
        status, headers, data = self.d.post_json(body)
        return status, headers

    def test_malformed_requests(self):
        s = self.s.encode()
        bodies = [
            b"", b"{", b"not json", b"[]", b"[1,2]", b'"str"', b"null", b"{}",
            b'{"method":"pool.get_all","params":["%s"]}' % s,  # no id
            b'{"method":"pool.get_all","params":["%s"],"id":null}' % s,  # notification
            b'{"method":"pool.get_all","params":["%s"],"id":1.5}' % s,
            b'{"method":"pool.get_all","params":["%s"],"id":[1]}' % s,
            b'{"method":"pool.get_all","params":["%s"],"id":true}' % s,
            b'{"method":"pool.get_all","id":1}',  # v1 needs params
            b'{"method":"pool.get_all","params":{"a":1},"id":1}',  # v1: params must be an array
            b'{"method":"pool.get_all","params":"x","id":1,"jsonrpc":"2.0"}',
            b'{"jsonrpc":"1.0","method":"pool.get_all","params":[],"id":1}',
            b'{"jsonrpc":2.0,"method":"pool.get_all","params":[],"id":1}',
            b'{"params":[],"id":1}', b'{"method":5,"params":[],"id":1}', b'{"method":"","params":[],"id":1}',
            b'{"method":"pool.get_all","params":[],"id":1} trailing',
            b'{"method":"pool.get_all","params":[],"id":1}{"method":"pool.get_all","params":[],"id":2}',
            b'{"method":"pool.get_all","params":[01],"id":1}', b"{'method':'x','params':[],'id':1}",
            b'{"method":"pool.get_all","params":[9223372036854775808],"id":1}',
            b'{"method":"pool.get_all","params":[],"id":99999999999999999999}',
            b'{"method":"pool.get_all","params":[],"id":"\xff"}',
        ]
        for body in bodies:
            with self.subTest(body=body):
                status, headers = self.post(body)
                self.assertTrue(400 <= status < 600 and status != 200, status)
                self.assertEqual(headers.get("Connection", "").lower(), "close")
        self.assertEqual(self.d.jsonrpc("pool.get_all", [self.s])["result"], ok(self.x.pool.get_all(self.s)))

    def test_deep_nesting(self):
        deep = b'{"jsonrpc":"2.0","method":"pool.get_all","params":["%s",' % self.s.encode() + \
            b"[" * 5000 + b"]" * 5000 + b'],"id":1}'
        status, headers = self.post(deep)
        self.assertTrue(400 <= status < 500, status)
        ok_depth = b'{"jsonrpc":"2.0","method":"VM.get_by_name_label","params":["%s",' % self.s.encode() + \
            b"[" * 10 + b"]" * 10 + b'],"id":1}'
        status, _, body = self.d.post_json(ok_depth)
        self.assertEqual(status, 200)
        self.assertEqual(body["error"]["message"], "FIELD_TYPE_ERROR")  # well-formed, wrong type

    def test_duplicate_keys_last_wins(self):
        status, _, body = self.d.post_json(
            b'{"jsonrpc":"2.0","method":"nope","method":"pool.get_all","params":["%s"],"id":1}' % self.s.encode())
        self.assertEqual(status, 200)
        self.assertEqual(body["result"], ok(self.x.pool.get_all(self.s)))


class Unicode(DaemonTest):
    """Every string parameter must be valid UTF-8, else INVALID_VALUE (wire.md §2)."""

    def setUp(self):
        self.vm = create_vm(self.x, self.s, name_label="unicode-vm")

    def call(self, raw_string):
        body = (b'{"jsonrpc":"2.0","method":"VM.set_name_label","params":["%s","%s",%s],"id":"u"}'
                % (self.s.encode(), self.vm.encode(), raw_string))
        status, headers, reply = self.d.post_json(body)
        return status, reply

    def assert_refused(self, raw_string):
        status, reply = self.call(raw_string)
        if status == 200:
            self.assertEqual(reply["error"]["message"], "INVALID_VALUE", reply)
            self.assertIn("Invalid UTF-8 string in parameter", reply["error"]["data"])
            self.assertEqual(reply["id"], "u")
        else:
            self.assertTrue(400 <= status < 500, status)
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, self.vm)), "unicode-vm")  # no partial write

    def test_valid_escapes(self):
        for raw, want in ((b'"\\u00e9\\u20ac"', "\u00e9\u20ac"), (b'"\\ud83d\\ude00"', "\U0001F600"),
                          (b'"\\uD83D\\uDE00"', "\U0001F600"), ('"\u00e9\U0001F600"'.encode(), "\u00e9\U0001F600"),
                          (b'"\\\\ud800"', "\\ud800"), (b'"\\ufffd"', "\ufffd"), (b'"a\\u0000b"', None)):
            with self.subTest(raw=raw):
                status, reply = self.call(raw)
                self.assertEqual(status, 200)
                if want is None:  # an embedded NUL: refused or kept, never truncated silently
                    if "error" not in reply:
                        got = self.d.jsonrpc("VM.get_name_label", [self.s, self.vm])["result"]
                        self.assertEqual(got, "a\x00b")
                        self.assertEqual(ok(self.x.VM.get_name_label(self.s, self.vm)), "ab")  # dropped in XML
                    continue
                self.assertEqual(reply.get("result"), "", reply)
                self.assertEqual(ok(self.x.VM.get_name_label(self.s, self.vm)), want)
                self.assertEqual(self.d.jsonrpc("VM.get_name_label", [self.s, self.vm])["result"], want)
                ok(self.x.VM.set_name_label(self.s, self.vm, "unicode-vm"))

    def test_lone_surrogates(self):
        for raw in (b'"\\ud800"', b'"a\\udfffb"', b'"\\ud83d"', b'"\\ud83dx"', b'"\\ude00\\ud83d"',
                    b'"\\ud83d\\u0041"', b'"\\uDBFF"'):
            with self.subTest(raw=raw):
                self.assert_refused(raw)

    def test_invalid_bytes(self):
        for raw in (b'"\xff"', b'"a\xc3"', b'"\xc0\xaf"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', b'"\x80abc"'):
            with self.subTest(raw=raw):
                self.assert_refused(raw)

    def test_invalid_utf8_in_map_keys_and_values(self):
        for params in (b'{"\xff":"v"}', b'{"k":"\xfe"}', b'{"\\udc00":"v"}'):
            with self.subTest(params=params):
                body = (b'{"jsonrpc":"2.0","method":"VM.set_xenstore_data","params":["%s","%s",%s],"id":1}'
                        % (self.s.encode(), self.vm.encode(), params))
                status, _, reply = self.d.post_json(body)
                if status == 200:
                    self.assertEqual(reply["error"]["message"], "INVALID_VALUE")
                else:
                    self.assertTrue(400 <= status < 500)
        self.assertEqual(ok(self.x.VM.get_xenstore_data(self.s, self.vm)), {})

    def test_invalid_utf8_in_method_name(self):
        status, _, reply = self.d.post_json(b'{"jsonrpc":"2.0","method":"VM.get_all\xff","params":["%s"],"id":1}'
                                            % self.s.encode())
        self.assertEqual(status, 200)
        self.assertEqual(reply["error"]["message"], "MESSAGE_METHOD_UNKNOWN")
        json.dumps(reply)  # the reply is valid Unicode


if __name__ == "__main__":
    unittest.main()
