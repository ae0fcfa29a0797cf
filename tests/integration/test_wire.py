"""XML-RPC wire format as xapi speaks it (wire.md §1-3, §7): the
Status/Value/ErrorDescription envelope, untyped ints and strings, <boolean>,
dateTime.iso8601, OpaqueRef:NULL, strings with or without <string>, enums
case-insensitive in and canonical out, the Class_message alias,
system.listMethods, system.multicall, CORS, endpoints, and Async tasks whose
result is an XML-RPC <value> fragment. Raw bodies are checked byte for byte
where clients depend on the exact shape."""

import datetime
import http.client
import re
import time
import unittest
import xmlrpc.client

from harness import (NULL_REF, REF_RE, DaemonTest, RawXML, create_vm, fail, ok, vm_record, xml_call)


def value_of(raw):
    """The raw XML of the Value member of a Success envelope."""
    m = re.search(rb"<member><name>Value</name>(.*)</member></struct></value></param></params></methodResponse>$",
                  raw, re.S)
    assert m, raw
    return m.group(1)


class Envelope(DaemonTest):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.host = ok(cls.x.host.get_all(cls.s))[0]

    def test_success_envelope_bytes(self):
        status, headers, raw = self.d.post_xml(xml_call("host.get_name_label", self.s, self.host))
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/xml"))
        self.assertRegex(raw, rb'^<\?xml version="1.0"\?>\s*<methodResponse><params><param><value><struct>'
                              rb'<member><name>Status</name><value>Success</value></member>'
                              rb'<member><name>Value</name><value>[^<]*</value></member>'
                              rb'</struct></value></param></params></methodResponse>\s*$')

    def test_failure_envelope_bytes(self):
        status, headers, raw = self.d.post_xml(xml_call("VM.get_record", self.s, "OpaqueRef:nope"))
        self.assertEqual(status, 200)  # API failures are HTTP 200
        self.assertNotIn(b"<fault>", raw)
        self.assertIn(b"<member><name>Status</name><value>Failure</value></member>"
                      b"<member><name>ErrorDescription</name><value><array><data>"
                      b"<value>HANDLE_INVALID</value><value>VM</value><value>OpaqueRef:nope</value>"
                      b"</data></array></value></member>", raw)

    def test_ints_are_untyped_strings(self):
        raw = self.d.post_xml(xml_call("host.get_API_version_major", self.s, self.host))[2]
        self.assertEqual(value_of(raw), b"<value>2</value>")
        self.assertEqual(ok(self.x.host.get_API_version_major(self.s, self.host)), "2")
        minor = ok(self.x.host.get_API_version_minor(self.s, self.host))
        self.assertIsInstance(minor, str)
        self.assertRegex(minor, r"^[0-9]+$")
        vm = create_vm(self.x, self.s, VCPUs_max="4", VCPUs_at_startup="2", memory_static_max=str(8 << 30))
        self.assertEqual(ok(self.x.VM.get_VCPUs_max(self.s, vm)), "4")
        self.assertEqual(value_of(self.d.post_xml(xml_call("VM.get_VCPUs_max", self.s, vm))[2]), b"<value>4</value>")
        # Nova compares VM.get_domid with the string "-1"
        self.assertEqual(ok(self.x.VM.get_domid(self.s, vm)), "-1")
        self.assertEqual(value_of(self.d.post_xml(xml_call("VM.get_domid", self.s, vm))[2]), b"<value>-1</value>")
        # 64-bit values survive
        self.assertEqual(ok(self.x.VM.get_memory_static_max(self.s, vm)), str(8 << 30))
        ok(self.x.VM.set_user_version(self.s, vm, str(2 ** 62)))
        self.assertEqual(ok(self.x.VM.get_user_version(self.s, vm)), str(2 ** 62))
        ok(self.x.VM.set_user_version(self.s, vm, "-5"))
        self.assertEqual(ok(self.x.VM.get_user_version(self.s, vm)), "-5")

    def test_ints_accepted_in_every_form(self):
        vm = create_vm(self.x, self.s)
        for form, want in (("<value>11</value>", "11"), ("<value><string>12</string></value>", "12"),
                           ("<value><int>13</int></value>", "13"), ("<value><i4>14</i4></value>", "14"),
                           ("<value><i8>9007199254740993</i8></value>", "9007199254740993")):
            with self.subTest(form=form):
                ok(self.d.xml(xml_call("VM.set_user_version", self.s, vm, RawXML(form))))
                self.assertEqual(ok(self.x.VM.get_user_version(self.s, vm)), want)

    def test_booleans(self):
        raw = self.d.post_xml(xml_call("host.get_enabled", self.s, self.host))[2]
        self.assertEqual(value_of(raw), b"<value><boolean>1</boolean></value>")
        self.assertIs(ok(self.x.host.get_enabled(self.s, self.host)), True)
        vm = create_vm(self.x, self.s)
        raw = self.d.post_xml(xml_call("VM.get_is_a_template", self.s, vm))[2]
        self.assertEqual(value_of(raw), b"<value><boolean>0</boolean></value>")
        ok(self.d.xml(xml_call("VM.set_is_a_template", self.s, vm, RawXML("<value><boolean>1</boolean></value>"))))
        self.assertIs(ok(self.x.VM.get_is_a_template(self.s, vm)), True)
        # a string is not a boolean
        r = self.d.xml(xml_call("VM.set_is_a_template", self.s, vm, RawXML("<value>yes</value>")))
        self.assertEqual(fail(r)[0], "FIELD_TYPE_ERROR")

    def test_datetime(self):
        raw = self.d.post_xml(xml_call("host.get_servertime", self.s, self.host))[2]
        m = re.fullmatch(rb"<value><dateTime.iso8601>([0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)</dateTime.iso8601>"
                         rb"</value>", value_of(raw))
        self.assertTrue(m, raw)
        t = datetime.datetime.strptime(m.group(1).decode(), "%Y%m%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        self.assertLess(abs((t - datetime.datetime.now(datetime.timezone.utc)).total_seconds()), 5)
        # Nova parses task_rec['created'].value with this exact format
        task = ok(self.x.task.create(self.s, "t", ""))
        created = ok(self.x.task.get_record(self.s, task))["created"]
        self.assertIsInstance(created, xmlrpc.client.DateTime)
        datetime.datetime.strptime(created.value, "%Y%m%dT%H:%M:%SZ")
        ok(self.x.task.destroy(self.s, task))

    def test_doubles(self):
        vm = create_vm(self.x, self.s)
        ok(self.d.xml(xml_call("VM.set_HVM_shadow_multiplier", self.s, vm, 2.5)))
        raw = self.d.post_xml(xml_call("VM.get_HVM_shadow_multiplier", self.s, vm))[2]
        self.assertEqual(value_of(raw), b"<value><double>2.5</double></value>")
        self.assertEqual(ok(self.x.VM.get_HVM_shadow_multiplier(self.s, vm)), 2.5)
        # ints and numeric strings are accepted for a float
        ok(self.d.xml(xml_call("VM.set_HVM_shadow_multiplier", self.s, vm, RawXML("<value><int>3</int></value>"))))
        self.assertEqual(ok(self.x.VM.get_HVM_shadow_multiplier(self.s, vm)), 3.0)
        ok(self.d.xml(xml_call("VM.set_HVM_shadow_multiplier", self.s, vm, "1.25")))
        self.assertEqual(ok(self.x.VM.get_HVM_shadow_multiplier(self.s, vm)), 1.25)

    def test_null_ref(self):
        vm = create_vm(self.x, self.s)
        raw = self.d.post_xml(xml_call("VM.get_affinity", self.s, vm))[2]
        self.assertEqual(value_of(raw), b"<value>OpaqueRef:NULL</value>")
        self.assertEqual(ok(self.x.VM.get_suspend_VDI(self.s, vm)), NULL_REF)

    def test_refs_and_uuids_shape(self):
        self.assertRegex(self.host, REF_RE)
        self.assertRegex(self.s, REF_RE)
        self.assertNotEqual(self.s, self.host)

    def test_strings_with_and_without_string_tag(self):
        vm = create_vm(self.x, self.s)
        # the whole call with <string> everywhere (Python's default) and untyped (xapi's own)
        body = ('<?xml version="1.0"?><methodCall><methodName>VM.set_name_label</methodName><params>'
                '<param><value><string>%s</string></value></param><param><value><string>%s</string></value></param>'
                '<param><value><string>tagged</string></value></param></params></methodCall>' % (self.s, vm))
        ok(self.d.xml(body))
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), "tagged")
        body = ('<methodCall><methodName>VM.set_name_label</methodName><params><param><value>%s</value></param>'
                '<param><value>%s</value></param><param><value>untagged</value></param></params></methodCall>'
                % (self.s, vm))
        ok(self.d.xml(body))
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), "untagged")
        # replies carry strings untyped
        raw = self.d.post_xml(xml_call("VM.get_name_label", self.s, vm))[2]
        self.assertEqual(value_of(raw), b"<value>untagged</value>")

    def test_empty_and_whitespace_strings(self):
        vm = create_vm(self.x, self.s, name_label="x")
        for form in ("<value/>", "<value></value>", "<value><string/></value>", "<value><string></string></value>"):
            ok(self.x.VM.set_name_label(self.s, vm, "not empty"))
            with self.subTest(form=form):
                ok(self.d.xml(xml_call("VM.set_name_label", self.s, vm, RawXML(form))))
                self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), "")
        ok(self.d.xml(xml_call("VM.set_name_label", self.s, vm, RawXML("<value>  two  words \n</value>"))))
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), "  two  words \n")
        # "void" results are an empty value
        raw = self.d.post_xml(xml_call("VM.set_name_label", self.s, vm, "z"))[2]
        self.assertEqual(value_of(raw), b"<value></value>")

    def test_xml_syntax_in_values(self):
        vm = create_vm(self.x, self.s)
        for frag, want in (("<value><![CDATA[a<b>&c]]></value>", "a<b>&c"),
                           ("<value>x&amp;y&#x41;&#66;&lt;&gt;&quot;&apos;</value>", "x&yAB<>\"'"),
                           ("<value>a<!-- comment -->b</value>", "ab"),
                           ("<value>\n  <string> sp </string>\n</value>", " sp "),
                           ("<value><string>a<![CDATA[]]>b</string></value>", "ab")):
            with self.subTest(frag=frag):
                ok(self.d.xml(xml_call("VM.set_name_label", self.s, vm, RawXML(frag))))
                self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), want)
        ok(self.d.xml(xml_call("VM.set_user_version", self.s, vm, RawXML("<value>\n <int> 5 </int>\n</value>"))))
        self.assertEqual(ok(self.x.VM.get_user_version(self.s, vm)), "5")
        # pretty-printed request
        body = xml_call("VM.get_name_label", self.s, vm).replace("<param>", "\n  <param>\n    ").replace(
            "</params>", "\n</params>\n")
        self.assertEqual(ok(self.d.xml(body)), "ab")

    def test_string_escaping_and_unicode(self):
        vm = create_vm(self.x, self.s)
        text = 'a<b>&c"d\'e \u00e9\u20ac\U0001F600'
        ok(self.x.VM.set_name_label(self.s, vm, text))
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), text)
        raw = value_of(self.d.post_xml(xml_call("VM.get_name_label", self.s, vm))[2])
        self.assertIn(b"a&lt;b&gt;&amp;c", raw)
        self.assertEqual(ok(self.x.VM.get_by_name_label(self.s, text)), [vm])

    def test_control_characters_are_refused(self):
        # as by xapi's database: XML cannot carry them, so no client may store them (test_string_chars.py)
        vm = create_vm(self.x, self.s, name_label="before")
        r = self.d.jsonrpc("VM.set_name_label", [self.s, vm, "a\x01b\tc\x1fd"])
        self.assertEqual(r["error"]["message"], "INVALID_VALUE")
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), "before")
        # TAB is kept
        self.assertEqual(self.d.jsonrpc("VM.set_name_label", [self.s, vm, "a\tb"])["result"], "")
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), "a\tb")

    def test_enums_case_insensitive_in_canonical_out(self):
        vm = create_vm(self.x, self.s)
        ok(self.x.VM.set_actions_after_crash(self.s, vm, "RESTART"))
        self.assertEqual(ok(self.x.VM.get_actions_after_crash(self.s, vm)), "restart")
        raw = self.d.post_xml(xml_call("VM.get_actions_after_crash", self.s, vm))[2]
        self.assertEqual(value_of(raw), b"<value>restart</value>")
        self.assertEqual(ok(self.x.VM.get_power_state(self.s, vm)), "Halted")
        vm2 = ok(self.x.VM.create(self.s, vm_record(actions_after_shutdown="DESTROY", actions_after_reboot="Restart",
                                                     actions_after_crash="Preserve")))
        rec = ok(self.x.VM.get_record(self.s, vm2))
        self.assertEqual((rec["actions_after_shutdown"], rec["actions_after_reboot"], rec["actions_after_crash"]),
                         ("destroy", "restart", "preserve"))
        # the Java SDK spells '_' as '-'
        ok(self.x.VM.set_actions_after_crash(self.s, vm, "coredump-and-restart"))
        self.assertEqual(ok(self.x.VM.get_actions_after_crash(self.s, vm)), "coredump_and_restart")

    def test_class_message_alias(self):
        self.assertEqual(sorted(ok(self.x.VM_get_all(self.s))), sorted(ok(self.x.VM.get_all(self.s))))
        self.assertEqual(ok(self.x.host_get_name_label(self.s, self.host)),
                         ok(self.x.host.get_name_label(self.s, self.host)))
        # class names with underscores
        self.assertEqual(sorted(ok(self.x.VM_metrics_get_all(self.s))), sorted(ok(self.x.VM_metrics.get_all(self.s))))
        self.assertEqual(ok(self.x.host_metrics_get_all(self.s)), ok(self.x.host_metrics.get_all(self.s)))
        self.assertEqual(ok(self.x.session_get_this_host(self.s, self.s)), self.host)
        # errors name the canonical method
        self.assertEqual(fail(self.x.VM_get_all(self.s, "extra")),
                         ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_all", "0", "1"])
        self.assertEqual(fail(self.x.VM_get_nothing(self.s))[0], "MESSAGE_METHOD_UNKNOWN")
        # synchronous only
        self.assertEqual(fail(self.x.Async.VM_create(self.s, vm_record()))[0], "MESSAGE_METHOD_UNKNOWN")

    def test_endpoints(self):
        body = xml_call("host.get_name_label", self.s, self.host)
        want = ok(self.x.host.get_name_label(self.s, self.host))
        # as xapi: XML-RPC on every POST path but /jsonrpc (Xen Orchestra uses /xmlrpc)
        for path in ("/", "/RPC2", "/json", "/xmlrpc", "/anything"):
            with self.subTest(path=path):
                self.assertEqual(ok(self.d.xml(body, path)), want)
        with self.d.proxy("/RPC2") as p:
            self.assertEqual(ok(p.host.get_name_label(self.s, self.host)), want)
        status, _, _ = self.d.http("GET", "/nothing-here")
        self.assertEqual(status, 404)

    def raw_exchange(self, *parts):
        with self.d.raw_socket() as sk:
            for i, part in enumerate(parts):
                if i:
                    time.sleep(0.1)
                sk.sendall(part)
            out = b""
            while True:
                chunk = sk.recv(65536)
                if not chunk:
                    return out
                out += chunk

    def test_http_1_0_and_expect_continue(self):
        body = xml_call("pool.get_all", self.s).encode()
        reply = self.raw_exchange(b"POST / HTTP/1.0\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n"
                                  % len(body) + body)
        self.assertRegex(reply, rb"^HTTP/1\.[01] 200 ")
        self.assertIn(b"<value>Success</value>", reply)
        # curl and others send large bodies after "Expect: 100-continue"
        reply = self.raw_exchange(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
                                  b"Content-Length: %d\r\n\r\n" % len(body), body)
        self.assertTrue(reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "), reply[:80])
        self.assertIn(b"<value>Success</value>", reply)

    def test_keep_alive(self):
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        try:
            for i in range(20):
                c.request("POST", "/", xml_call("host.get_name_label", self.s, self.host).encode(),
                          {"Content-Type": "text/xml"})
                r = c.getresponse()
                self.assertEqual(r.status, 200)
                self.assertIn(b"Success", r.read())
                self.assertNotEqual((r.getheader("Connection") or "").lower(), "close")
        finally:
            c.close()


class Introspection(DaemonTest):

    def test_list_methods_bare_array(self):
        status, _, raw = self.d.post_xml('<?xml version="1.0"?><methodCall><methodName>system.listMethods'
                                         '</methodName><params/></methodCall>')
        self.assertEqual(status, 200)
        self.assertNotIn(b"Status", raw)
        self.assertRegex(raw, rb"^<\?xml[^>]*>\s*<methodResponse><params><param><value><array><data>")
        names = self.x.system.listMethods()
        self.assertIsInstance(names, list)
        self.assertEqual(len(names), len(set(names)))
        for n in ("session.login_with_password", "session.logout", "VM.get_all", "VM.get_record", "VM.create",
                  "VM.destroy", "VM.set_name_label", "VM.add_to_xenstore_data", "VM.add_tags", "VM.get_all_records_where",
                  "host.get_record", "pool.get_all", "task.get_status", "VBD.create", "network.get_VIFs"):
            self.assertIn(n, names)
        self.assertFalse([n for n in names if n.startswith("Async.")])
        self.assertFalse([n for n in names if "." not in n])

    def test_list_methods_over_jsonrpc(self):
        r = self.d.jsonrpc("system.listMethods", [])
        self.assertIn("VM.get_all", r["result"])
        self.assertEqual(sorted(r["result"]), sorted(self.x.system.listMethods()))

    def test_listed_methods_exist(self):
        # every listed method dispatches (no MESSAGE_METHOD_UNKNOWN), sampled across the list
        names = self.x.system.listMethods()
        for n in names[::37]:
            with self.subTest(method=n):
                r = self.d.jsonrpc(n, [])
                if "error" in r:
                    self.assertNotEqual(r["error"]["message"], "MESSAGE_METHOD_UNKNOWN", n)

    def test_multicall(self):
        host = ok(self.x.host.get_all(self.s))[0]
        calls = [
            {"methodName": "host.get_name_label", "params": [self.s, host]},
            {"methodName": "VM.get_record", "params": [self.s, "OpaqueRef:missing"]},
            {"methodName": "no.such_method", "params": []},
            {"methodName": "host.get_API_version_major", "params": [self.s, host]},
            {"methodName": "system.multicall", "params": [[]]},
        ]
        r = self.x.system.multicall(calls)
        self.assertEqual(len(r), 5)
        for item in r:
            self.assertIsInstance(item, list)
            self.assertEqual(len(item), 1)
        self.assertEqual(r[0][0], {"Status": "Success", "Value": ok(self.x.host.get_name_label(self.s, host))})
        self.assertEqual(r[1][0], {"Status": "Failure",
                                   "ErrorDescription": ["HANDLE_INVALID", "VM", "OpaqueRef:missing"]})
        self.assertEqual(r[2][0]["ErrorDescription"][0], "MESSAGE_METHOD_UNKNOWN")
        self.assertEqual(r[3][0], {"Status": "Success", "Value": "2"})
        self.assertEqual(r[4][0]["Status"], "Failure")  # no recursion

    def test_multicall_writes_and_login(self):
        x = self.x
        vm = create_vm(x, self.s)
        r = x.system.multicall([
            {"methodName": "session.login_with_password", "params": ["root", "test-password-0", "1.0", "mc"]},
            {"methodName": "VM.set_name_label", "params": [self.s, vm, "via-multicall"]},
        ])
        self.assertEqual(r[0][0]["Status"], "Success")
        self.assertRegex(r[0][0]["Value"], REF_RE)
        self.assertEqual(r[1][0], {"Status": "Success", "Value": ""})
        self.assertEqual(ok(x.VM.get_name_label(r[0][0]["Value"], vm)), "via-multicall")
        self.assertEqual(x.system.multicall([]), [])


class Cors(DaemonTest):

    def test_preflight(self):
        for path in ("/", "/json", "/jsonrpc"):
            with self.subTest(path=path):
                status, headers, body = self.d.http("OPTIONS", path, headers={
                    "Origin": "https://xo.example", "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "X-Requested-With"})
                self.assertEqual(status, 200)
                self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")
                self.assertIn("x-requested-with", headers.get("Access-Control-Allow-Headers", "").lower())
                self.assertEqual(body, b"")

    def test_headers_on_replies(self):
        for path, body, ctype in (("/", xml_call("pool.get_all", self.s).encode(), "text/xml"),
                                  ("/jsonrpc", b'{"jsonrpc":"2.0","method":"pool.get_all","params":["%s"],"id":1}'
                                   % self.s.encode(), "application/json")):
            with self.subTest(path=path):
                status, headers, _ = self.d.http("POST", path, body, {"Content-Type": ctype,
                                                                      "Origin": "https://xo.example"})
                self.assertEqual(status, 200)
                self.assertEqual(headers.get("Access-Control-Allow-Origin"), "*")
                self.assertIn("X-Requested-With", headers.get("Access-Control-Allow-Headers", ""))
                self.assertTrue(headers["Content-Type"].startswith(ctype))


class Async(DaemonTest):

    def wait_task(self, task, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = ok(self.x.task.get_status(self.s, task))
            if status != "pending":
                return ok(self.x.task.get_record(self.s, task))
            time.sleep(0.01)
        self.fail("task %s still pending" % task)

    def test_async_create_result_is_xml_fragment(self):
        task = ok(self.x.Async.VM.create(self.s, vm_record(name_label="async-vm")))
        self.assertRegex(task, REF_RE)
        rec = self.wait_task(task)
        self.assertEqual(rec["status"], "success")
        self.assertEqual(rec["name_label"], "Async.VM.create")
        self.assertEqual(rec["progress"], 1.0)
        self.assertEqual(rec["error_info"], [])
        m = re.fullmatch(r"<value>(.*)</value>", rec["result"])
        self.assertTrue(m, rec["result"])  # CloudStack's Types.toVDI regex / 7+8 character strip
        vm = m.group(1)
        self.assertRegex(vm, REF_RE)
        self.assertEqual(ok(self.x.VM.get_name_label(self.s, vm)), "async-vm")
        self.assertEqual(ok(self.x.task.get_result(self.s, task)), rec["result"])
        self.assertIsInstance(rec["created"], xmlrpc.client.DateTime)
        self.assertIsInstance(rec["finished"], xmlrpc.client.DateTime)
        self.assertGreaterEqual(rec["finished"].value, rec["created"].value)
        self.assertEqual(rec["resident_on"], ok(self.x.host.get_all(self.s))[0])
        self.assertEqual(ok(self.x.task.destroy(self.s, task)), "")
        self.assertEqual(fail(self.x.task.get_status(self.s, task)), ["HANDLE_INVALID", "task", task])

    def test_async_void_result(self):
        vm = create_vm(self.x, self.s)
        task = ok(self.x.Async.VM.destroy(self.s, vm))
        rec = self.wait_task(task)
        self.assertEqual(rec["status"], "success")
        self.assertEqual(rec["result"], "<value></value>")
        self.assertEqual(fail(self.x.VM.get_record(self.s, vm))[0], "HANDLE_INVALID")

    def test_async_failure(self):
        task = ok(self.x.Async.VM.destroy(self.s, "OpaqueRef:gone"))
        rec = self.wait_task(task)
        self.assertEqual(rec["status"], "failure")
        self.assertEqual(rec["error_info"], ["HANDLE_INVALID", "VM", "OpaqueRef:gone"])
        self.assertEqual(rec["result"], "")

    def test_async_over_jsonrpc_keeps_xml_result(self):
        r = self.d.jsonrpc("Async.VM.create", [self.s, vm_record(name_label="json-async")])
        task = r["result"]
        rec = self.wait_task(task)
        self.assertRegex(rec["result"], r"^<value>OpaqueRef:[0-9a-f-]{36}</value>$")
        r = self.d.jsonrpc("task.get_result", [self.s, task])
        self.assertEqual(r["result"], rec["result"])

    def test_async_errors_before_the_task(self):
        # no async form for getters: xapi's "Fault" failure
        host = ok(self.x.host.get_all(self.s))[0]
        err = fail(self.x.Async.host.get_name_label(self.s, host))
        self.assertEqual(err[0], "Fault")
        self.assertIn("No async mode", err[1])
        self.assertEqual(fail(self.x.Async.VM.create("OpaqueRef:badsession", vm_record())),
                         ["SESSION_INVALID", "OpaqueRef:badsession"])
        self.assertEqual(fail(self.x.Async.VM.create(self.s))[0], "MESSAGE_PARAMETER_COUNT_MISMATCH")
        self.assertEqual(fail(self.x.Async.VM.nonsense(self.s))[0], "MESSAGE_METHOD_UNKNOWN")

    def test_task_list(self):
        task = ok(self.x.Async.VM.create(self.s, vm_record()))
        self.wait_task(task)
        self.assertIn(task, ok(self.x.task.get_all(self.s)))
        self.assertIn(task, ok(self.x.task.get_by_name_label(self.s, "Async.VM.create")))
        self.assertIn(task, ok(self.x.task.get_all_records_where(self.s, 'field "status"="success"')))


if __name__ == "__main__":
    unittest.main()
