"""Bad input: API-level errors with xapi's codes and parameters, and
transport-level refusals (broken XML, oversized and deeply nested bodies,
slow clients) that end in an HTTP error and a closed connection. After all
of it the daemon is still alive and answering, and nothing was half-written."""

import socket
import threading
import time
import unittest

from harness import (DaemonTest, RawXML, create_network, create_vdi, create_vm, fail, ok, vm_record, xml_call)

MAX_BODY = 300 * 1024
TIMEOUT = 2  # connection_timeout configured for these tests


def read_all(sk, limit=10):
    """Everything the server sends until it closes (EOF or reset), or None if it is still open after limit s."""
    sk.settimeout(limit)
    out = b""
    try:
        while True:
            chunk = sk.recv(65536)
            if not chunk:
                return out
            out += chunk
    except ConnectionResetError:
        return out
    except socket.timeout:
        return None


class Base(DaemonTest):
    extra_config = "connection_timeout = %d\n" % TIMEOUT

    def tearDown(self):
        # no crash, no hang: the daemon still answers
        self.assertTrue(self.d.alive(), self.d.read_log())
        with self.d.proxy() as p:
            self.assertEqual(ok(p.pool.get_all(self.s)), ok(self.x.pool.get_all(self.s)))

    def send_raw(self, data, limit=10):
        """Sends data and returns what the server answered before closing. A server that refuses a
        request by its headers closes without reading the rest: sending then fails, and its answer
        may or may not have reached us first (a reset can overtake it)."""
        with self.d.raw_socket() as sk:
            try:
                sk.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                self.closed_while_sending = True
            return read_all(sk, limit)

    def post_expect_refusal(self, body, path="/", statuses=range(400, 500)):
        """POSTs body on a keep-alive connection: the reply is an HTTP error and the server closes."""
        if isinstance(body, str):
            body = body.encode()
        req = (b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nConnection: keep-alive\r\n"
               b"Content-Length: %d\r\n\r\n" % (path.encode(), len(body))) + body
        self.closed_while_sending = False
        reply = self.send_raw(req)
        self.assertIsNotNone(reply, "the server kept the connection open after refusing the request")
        if reply == b"" and self.closed_while_sending:
            return None, reply  # refused unread, the answer lost to the reset: still a refusal
        self.assertTrue(reply.startswith(b"HTTP/1.1 "), reply[:100])
        status = int(reply.split(b" ", 2)[1])
        self.assertIn(status, statuses, reply[:200])
        return status, reply


class ApiErrors(Base):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.vm = create_vm(cls.x, cls.s, name_label="victim")

    def test_unknown_method(self):
        for name in ("VM.fly", "Nope.get_all", "VM", "VM.", ".get_all", "VM..get_all", "vm.get_all",
                     "VM.get_all()", "system.nothing", "Async.", "Async.VM", "x" * 200):
            with self.subTest(name=name):
                self.assertEqual(fail(getattr(self.x, name)(self.s)), ["MESSAGE_METHOD_UNKNOWN", name])
        # an over-long name is refused as a whole request
        self.post_expect_refusal(xml_call("x" * 5000, self.s))

    def test_wrong_arity(self):
        x, s, vm = self.x, self.s, self.vm
        self.assertEqual(fail(x.VM.get_record(s)), ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "0"])
        self.assertEqual(fail(x.VM.get_record(s, vm, "extra")),
                         ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "2"])
        self.assertEqual(fail(x.VM.set_name_label(s, vm)),
                         ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.set_name_label", "2", "1"])
        self.assertEqual(fail(x.VM.add_to_xenstore_data(s, vm, "k")),
                         ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.add_to_xenstore_data", "3", "2"])
        self.assertEqual(fail(x.VM.get_all(s, "x")), ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_all", "0", "1"])
        self.assertEqual(fail(x.VM.create(s)), ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.create", "1", "0"])
        err = fail(x.session.login_with_password("root"))
        self.assertEqual(err[:2], ["MESSAGE_PARAMETER_COUNT_MISMATCH", "session.login_with_password"])
        self.assertEqual(err[3], "1")
        self.assertEqual(ok(x.VM.get_name_label(s, vm)), "victim")

    def test_handle_invalid(self):
        x, s = self.x, self.s
        for ref in ("OpaqueRef:00000000-0000-0000-0000-000000000000", "OpaqueRef:NULL", "", "junk"):
            with self.subTest(ref=ref):
                self.assertEqual(fail(x.VM.get_record(s, ref)), ["HANDLE_INVALID", "VM", ref])
                self.assertEqual(fail(x.VM.get_name_label(s, ref)), ["HANDLE_INVALID", "VM", ref])
                self.assertEqual(fail(x.VM.set_name_label(s, ref, "x")), ["HANDLE_INVALID", "VM", ref])
                self.assertEqual(fail(x.VM.destroy(s, ref)), ["HANDLE_INVALID", "VM", ref])
                self.assertEqual(fail(x.VM.add_tags(s, ref, "t")), ["HANDLE_INVALID", "VM", ref])
        # a ref of another class
        self.assertEqual(fail(x.VDI.get_record(s, self.vm)), ["HANDLE_INVALID", "VDI", self.vm])
        self.assertEqual(fail(x.session.get_record(s, self.vm)), ["HANDLE_INVALID", "session", self.vm])
        # refs inside records
        bogus = "OpaqueRef:11111111-1111-1111-1111-111111111111"
        err = fail(x.VBD.create(s, {"VM": self.vm, "VDI": bogus, "userdevice": "0", "bootable": False, "mode": "RO",
                                    "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
                                    "qos_algorithm_params": {}}))
        self.assertEqual(err, ["HANDLE_INVALID", "VDI", bogus])
        self.assertEqual(ok(x.VM.get_VBDs(s, self.vm)), [])

    def test_uuid_invalid(self):
        for uuid in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", "", ok(self.x.VM.get_uuid(self.s, self.vm))
                     .upper()):
            with self.subTest(uuid=uuid):
                self.assertEqual(fail(self.x.VM.get_by_uuid(self.s, uuid)), ["UUID_INVALID", "VM", uuid])
                self.assertEqual(fail(self.x.network.get_by_uuid(self.s, uuid)), ["UUID_INVALID", "network", uuid])

    def test_field_type_error(self):
        x, s, vm = self.x, self.s, self.vm
        for bad in ({"a": "b"}, ["a"], True, 5, 1.5):
            with self.subTest(value=bad):
                self.assertEqual(fail(x.VM.set_name_label(s, vm, bad))[0], "FIELD_TYPE_ERROR")
        self.assertEqual(fail(x.VM.set_tags(s, vm, "not-a-list"))[0], "FIELD_TYPE_ERROR")
        self.assertEqual(fail(x.VM.set_xenstore_data(s, vm, ["k", "v"]))[0], "FIELD_TYPE_ERROR")
        self.assertEqual(fail(x.VM.set_xenstore_data(s, vm, {"k": 5}))[0], "FIELD_TYPE_ERROR")
        self.assertEqual(fail(x.VM.set_is_a_template(s, vm, "maybe"))[0], "FIELD_TYPE_ERROR")
        self.assertEqual(fail(x.VM.set_user_version(s, vm, [1]))[0], "FIELD_TYPE_ERROR")
        self.assertEqual(fail(x.VM.set_actions_after_crash(s, vm, 3))[0], "FIELD_TYPE_ERROR")
        self.assertEqual(fail(x.VM.create(s, "not a record"))[0], "FIELD_TYPE_ERROR")
        self.assertEqual(fail(self.d.xml(xml_call("VM.set_name_label", s, vm, RawXML("<value><nil/></value>"))))[0],
                         "FIELD_TYPE_ERROR")
        self.assertEqual(fail(x.VM.get_record(s, ["a"]))[0], "FIELD_TYPE_ERROR")
        # the error names the field
        self.assertEqual(fail(x.VM.create(s, vm_record(VCPUs_params=["x"]))), ["FIELD_TYPE_ERROR", "VCPUs_params"])
        self.assertEqual(ok(x.VM.get_name_label(s, vm)), "victim")
        self.assertEqual(ok(x.VM.get_tags(s, vm)), [])

    def test_invalid_value(self):
        x, s, vm = self.x, self.s, self.vm
        self.assertEqual(fail(x.VM.set_actions_after_crash(s, vm, "explode")),
                         ["INVALID_VALUE", "value", "explode"])
        self.assertEqual(fail(x.VM.set_actions_after_crash(s, vm, ""))[0], "INVALID_VALUE")
        for bad in ("12abc", "", " 1", "1.0", "1 ", "99999999999999999999", "-9223372036854775809"):
            with self.subTest(int=bad):
                self.assertEqual(fail(x.VM.set_user_version(s, vm, bad))[0], "INVALID_VALUE")
        self.assertEqual(fail(x.VM.set_HVM_shadow_multiplier(s, vm, "fast"))[0], "INVALID_VALUE")
        self.assertEqual(fail(x.VM.create(s, vm_record(domain_type="zz")))[0], "INVALID_VALUE")
        self.assertEqual(fail(x.VM.get_all_where(s, 'field "x" = '))[0], "INVALID_VALUE")
        self.assertEqual(ok(x.VM.get_actions_after_crash(s, vm)), "restart")

    def test_invalid_utf8(self):
        x, s, vm = self.x, self.s, self.vm
        # raw invalid bytes in XML text are a parse error
        for raw in (b"\xff\xfe", b"a\xc3", b"\xed\xa0\x80", b"\xc0\xaf"):
            with self.subTest(raw=raw):
                body = xml_call("VM.set_name_label", s, vm, RawXML("<value>@@</value>")).encode().replace(b"@@", raw)
                self.post_expect_refusal(body)
        # XML character references to surrogates or NUL: not XML
        for ref in ("&#xD800;", "&#0;"):
            with self.subTest(ref=ref):
                self.post_expect_refusal(xml_call("VM.set_name_label", s, vm, RawXML("<value>%s</value>" % ref)))
        # base64 can carry any bytes: the dispatcher refuses invalid UTF-8
        for b64 in ("//4=", "7aCA", "wK8="):
            with self.subTest(base64=b64):
                r = self.d.xml(xml_call("VM.set_name_label", s, vm, RawXML("<value><base64>%s</base64></value>" % b64)))
                self.assertEqual(fail(r), ["INVALID_VALUE", "Invalid UTF-8 string in parameter", "value"])
        r = self.d.xml(xml_call("VM.set_name_label", s, vm, RawXML("<value><base64>w6k=</base64></value>")))
        ok(r)
        self.assertEqual(ok(x.VM.get_name_label(s, vm)), "\u00e9")
        ok(x.VM.set_name_label(s, vm, "victim"))
        # inside a map key
        r = self.d.xml(xml_call("VM.set_xenstore_data", s, vm,
                                RawXML("<value><struct><member><name>k</name><value><base64>/w==</base64></value>"
                                       "</member></struct></value>")))
        self.assertEqual(fail(r)[0], "INVALID_VALUE")
        self.assertEqual(ok(x.VM.get_xenstore_data(s, vm)), {})

    def test_no_partial_writes(self):
        x, s = self.x, self.s
        vm = create_vm(x, s, name_label="partial")
        ok(x.VM.set_tags(s, vm, ["keep"]))
        before = ok(x.VM.get_record(s, vm))
        self.assertEqual(fail(x.VM.set_tags(s, vm, ["ok", 5]))[0], "FIELD_TYPE_ERROR")
        self.assertEqual(fail(x.VM.set_xenstore_data(s, vm, {"a": "1", "b": 2}))[0], "FIELD_TYPE_ERROR")
        self.assertEqual(fail(x.VM.set_blocked_operations(s, vm, {"start": "", "bogus_op": ""}))[0], "INVALID_VALUE")
        n_vms, n_vdis = len(ok(x.VM.get_all(s))), len(ok(x.VDI.get_all(s)))
        self.assertEqual(fail(x.VM.create(s, vm_record(name_label="half", affinity="OpaqueRef:nope")))[0],
                         "HANDLE_INVALID")
        self.assertEqual(fail(x.VDI.create(s, {"name_label": "half", "SR": "OpaqueRef:NULL", "virtual_size": "x",
                                               "type": "user", "sharable": False, "read_only": False,
                                               "other_config": {}}))[0], "INVALID_VALUE")
        self.assertEqual(len(ok(x.VM.get_all(s))), n_vms)
        self.assertEqual(len(ok(x.VDI.get_all(s))), n_vdis)
        self.assertEqual(ok(x.VM.get_record(s, vm)), before)

    def test_multicall_with_bad_entries(self):
        r = self.x.system.multicall(["not a struct", {"methodName": 5}, {"params": []},
                                     {"methodName": "pool.get_all", "params": "not an array"},
                                     {"methodName": "pool.get_all", "params": [self.s]}])
        self.assertEqual(len(r), 5)
        for item in r[:4]:
            self.assertEqual(item[0]["Status"], "Failure")
        self.assertEqual(r[4][0]["Status"], "Success")


class Transport(Base):

    def test_broken_xml(self):
        s = self.s
        bodies = [
            "", " ", "<", "not xml at all", "<methodCall>", "<methodCall></methodCall>",
            "<methodCall><methodName></methodName></methodCall>",
            "<methodCall><params/></methodCall>",
            "<methodResponse><params/></methodResponse>",
            "<methodCall><methodName>a</methodName><methodName>b</methodName></methodCall>",
            "<methodCall><methodName>pool.get_all</methodName><params><value>%s</value></params></methodCall>" % s,
            "<methodCall><methodName>pool.get_all</methodName><params><param>%s</param></params></methodCall>" % s,
            "<methodCall><methodName>pool.get_all</methodName><params><param><value><foo>1</foo></value></param>"
            "</params></methodCall>",
            "<methodCall><methodName>pool.get_all</methodName><params><param><value><int>abc</int></value></param>"
            "</params></methodCall>",
            "<methodCall><methodName>pool.get_all</methodName><params><param><value><int>99999999999999999999</int>"
            "</value></param></params></methodCall>",
            "<methodCall><methodName>pool.get_all</methodName><params><param><value><double>x</double></value>"
            "</param></params></methodCall>",
            "<methodCall><methodName>pool.get_all</methodName><params><param><value><dateTime.iso8601>soon"
            "</dateTime.iso8601></value></param></params></methodCall>",
            "<methodCall><methodName>pool.get_all</methodName><params><param><value><base64>!!</base64></value>"
            "</param></params></methodCall>",
            "<methodCall><methodName>pool.get_all</methodName><params><param><value><string>a</string>"
            "<string>b</string></value></param></params></methodCall>",
            "<methodCall><methodName>pool.get_all</methodName><params><param><value>a<string>b</string></value>"
            "</param></params></methodCall>",
            "<methodCall><methodName>pool.get_all</methodName><params><param><value><struct><member>"
            "<value>1</value></member></struct></value></param></params></methodCall>",
            "<methodCall><methodName>pool.get_all</methodName><params><param><value><array><value>1</value>"
            "</array></value></param></params></methodCall>",
            "<methodCall><methodName>pool.get_all</methodName><params><param><value>%s</value></param></params>"
            "</methodCall><extra/>" % s,
            "<methodCall><methodName>pool.get_all</methodName><params><param><value>%s</value></param></params>"
            % s,  # truncated
            '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "x">]><methodCall><methodName>&a;</methodName>'
            '</methodCall>',
            '<?xml version="1.0"?><!DOCTYPE m SYSTEM "file:///etc/passwd"><methodCall><methodName>pool.get_all'
            '</methodName></methodCall>',
        ]
        for body in bodies:
            with self.subTest(body=body[:120]):
                self.post_expect_refusal(body)

    def test_broken_json(self):
        for body in (b"", b"{", b"[]", b"nonsense", b'{"method":"pool.get_all","params":[]}',
                     b'{"method":"pool.get_all","params":[],"id":1', b'{"method":"pool.get_all","params":[],"id":1}}',
                     b'{"jsonrpc":"3.0","method":"pool.get_all","params":[],"id":1}',
                     b'{"method":"pool.get_all","params":["\\x"],"id":1}', b"\xff\xfe{}",
                     b'{"method":"pool.get_all","params":[' + b"[" * 40 + b"]" * 40 + b'],"id":1}'):
            with self.subTest(body=body[:80]):
                self.post_expect_refusal(body, path="/jsonrpc")

    def test_billion_laughs(self):
        ents = "".join('<!ENTITY l%d "&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;">'
                       % ((i,) + (i - 1,) * 10) for i in range(1, 10))
        body = ('<?xml version="1.0"?><!DOCTYPE m [<!ENTITY l0 "lol">%s]><methodCall><methodName>&l9;'
                '</methodName></methodCall>' % ents)
        t0 = time.monotonic()
        self.post_expect_refusal(body)
        self.assertLess(time.monotonic() - t0, 2)

    def test_oversized_body(self):
        head = xml_call("VM.set_name_label", self.s, create_vm(self.x, self.s), "@@").encode()
        pad = MAX_BODY - (len(head) - 2)
        exact = head.replace(b"@@", b"a" * pad)
        self.assertEqual(len(exact), MAX_BODY)
        status, _, raw = self.d.post_xml(exact)
        self.assertEqual(status, 200)  # 300 KiB exactly is allowed
        self.assertIn(b"Success", raw)
        over = head.replace(b"@@", b"a" * (pad + 1))
        self.post_expect_refusal(over, statuses=(413,))
        self.post_expect_refusal(over, path="/jsonrpc", statuses=(413,))
        self.post_expect_refusal(b" " * (4 * MAX_BODY), statuses=(413,))

    def test_announced_oversized_body_is_refused_before_reading_it(self):
        t0 = time.monotonic()
        reply = self.send_raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                              b"Content-Length: 1000000000\r\n\r\n<methodCall>", limit=5)
        self.assertIsNotNone(reply)
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply[:100])
        self.assertLess(time.monotonic() - t0, 1.5)

    def test_chunked_oversized_body(self):
        chunk = b"a" * 0x10000
        body = b"".join(b"10000\r\n" + chunk + b"\r\n" for _ in range(6)) + b"0\r\n\r\n"
        reply = self.send_raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n" + body)
        self.assertIsNotNone(reply)
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply[:100])

    def test_chunked_small_body_works(self):
        body = xml_call("pool.get_all", self.s).encode()
        reply = self.send_raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nConnection: close\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply[:100])
        self.assertIn(b"Success", reply)

    def test_deep_nesting(self):
        def nested(n):
            return "<value><array><data>" * n + "</data></array></value>" * n

        for n in (33, 40, 300, 5000):
            with self.subTest(depth=n):
                self.post_expect_refusal("<methodCall><methodName>VM.set_tags</methodName><params><param>%s</param>"
                                         "</params></methodCall>" % nested(n))
        structs = '<value><struct><member><name>a</name>' * 100 + '<value/>' + '</member></struct></value>' * 100
        self.post_expect_refusal("<methodCall><methodName>x</methodName><params><param>%s</param></params>"
                                 "</methodCall>" % structs)
        # moderate nesting is fine: decoded, then refused by type
        r = self.d.xml(xml_call("VM.set_tags", self.s, create_vm(self.x, self.s), RawXML(nested(10))))
        self.assertEqual(fail(r)[0], "FIELD_TYPE_ERROR")

    def test_http_level_refusals(self):
        for req, statuses in ((b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", (405,)),
                              (b"GET /jsonrpc HTTP/1.1\r\nHost: x\r\n\r\n", (405,)),
                              (b"DELETE /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n", (405,)),
                              (b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", (400,))):
            with self.subTest(req=req):
                reply = self.send_raw(req)
                self.assertIsNotNone(reply)
                self.assertIn(int(reply.split(b" ", 2)[1]), statuses, reply[:100])
        # not HTTP at all: refused (an error or just closed), never kept open
        for junk in (b"GARBAGE\r\n\r\n", b"\x00\x01\x02\x03\r\n\r\n", b"POST / HTTP/9.9\r\n\r\n"):
            with self.subTest(junk=junk):
                reply = self.send_raw(junk, limit=TIMEOUT + 3)
                self.assertIsNotNone(reply)
                if reply:
                    self.assertRegex(reply, rb"^HTTP/1\.[01] [45][0-9][0-9] ")


class SlowClients(Base):

    def test_stalled_request_is_dropped_while_others_are_served(self):
        stalled = []
        for _ in range(20):
            sk = self.d.raw_socket()
            sk.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 500\r\n\r\n"
                       b"<methodCall><methodName>pool.get_all")
            stalled.append(sk)
        idle = self.d.raw_socket()  # connected, never sends anything
        half_headers = self.d.raw_socket()
        half_headers.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le")
        t0 = time.monotonic()
        # other clients are served meanwhile, promptly
        with self.d.proxy() as p:
            for _ in range(20):
                c0 = time.monotonic()
                ok(p.pool.get_all(self.s))
                self.assertLess(time.monotonic() - c0, 0.5)
        results = {}

        def wait(i, sk):
            results[i] = (read_all(sk, TIMEOUT + 5), time.monotonic() - t0)
            sk.close()

        threads = [threading.Thread(target=wait, args=(i, sk)) for i, sk in enumerate(stalled + [idle, half_headers])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, (reply, when) in results.items():
            with self.subTest(conn=i):
                self.assertIsNotNone(reply, "connection %d still open after %s s" % (i, TIMEOUT + 5))
                self.assertGreaterEqual(when, TIMEOUT - 0.5)
                self.assertLess(when, TIMEOUT + 4)
                if reply:
                    self.assertRegex(reply, rb"^HTTP/1\.[01] [45][0-9][0-9] ")

    def test_idle_keep_alive_connection_is_closed(self):
        with self.d.raw_socket() as sk:
            body = xml_call("pool.get_all", self.s).encode()
            sk.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            t0 = time.monotonic()
            reply = read_all(sk, TIMEOUT + 5)
            self.assertIsNotNone(reply)
            self.assertTrue(reply.startswith(b"HTTP/1.1 200"))
            self.assertGreaterEqual(time.monotonic() - t0, TIMEOUT - 0.5)

    def test_slow_but_steady_client_is_served(self):
        body = xml_call("pool.get_all", self.s).encode()
        req = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        with self.d.raw_socket() as sk:
            step = len(req) // 4 + 1
            for i in range(0, len(req), step):
                sk.sendall(req[i:i + step])
                time.sleep(TIMEOUT / 3)
            reply = read_all(sk, 5)
        self.assertTrue(reply and reply.startswith(b"HTTP/1.1 200"), reply)
        self.assertIn(b"Success", reply)


class ManyObjects(Base):

    def test_large_but_legal_requests(self):
        x, s = self.x, self.s
        vm = create_vm(x, s)
        tags = ["t%d" % i for i in range(5000)]
        ok(x.VM.set_tags(s, vm, tags))
        self.assertEqual(ok(x.VM.get_tags(s, vm)), tags)
        data = {"k%d" % i: "v" * 10 for i in range(3000)}
        ok(x.VM.set_xenstore_data(s, vm, data))
        self.assertEqual(ok(x.VM.get_xenstore_data(s, vm)), data)
        net = create_network(x, s)
        vdi = create_vdi(x, s)
        self.assertTrue(net and vdi)


if __name__ == "__main__":
    unittest.main()
