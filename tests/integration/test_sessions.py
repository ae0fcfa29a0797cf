"""Sessions and identity (wire.md §6): login, failed logins after the
configured delay, logout, get_this_host/get_this_user, the session count
limit, the UNIX socket that trusts local root; and the one-host pool whose
host record comes from the real machine."""

import json
import os
import socket
import threading
import time
import unittest
import xmlrpc.client

from harness import (CLASSES, NULL_REF, PASSWORD, REF_RE, SCHEMA, UUID_RE, Daemon, DaemonTest, check_record, fail,
                     ok, xml_call)

DELAY_MS = 1500  # wide enough that a loaded machine (load 17 once took 0.68 s for a good login) cannot cross it


class Login(DaemonTest):
    extra_config = "auth_fail_delay_ms = %d\n" % DELAY_MS

    def test_login_returns_a_session_ref(self):
        r = self.x.session.login_with_password("root", PASSWORD, "2.1", "nova")
        s = ok(r)
        self.assertRegex(s, REF_RE)
        self.assertNotEqual(s, self.s)
        rec = ok(self.x.session.get_record(s, s))
        check_record(self, "session", rec)
        self.assertEqual(rec["originator"], "nova")
        self.assertEqual(rec["auth_user_name"], "root")
        self.assertIs(rec["is_local_superuser"], True)
        self.assertEqual(rec["this_host"], ok(self.x.host.get_all(s))[0])
        self.assertEqual(ok(self.x.session.get_by_uuid(s, rec["uuid"])), s)

    def test_version_and_originator_are_optional(self):
        s = ok(self.x.session.login_with_password("root", PASSWORD))
        self.assertRegex(s, REF_RE)
        s = ok(self.x.session.login_with_password("root", PASSWORD, "1.1"))
        self.assertEqual(ok(self.x.session.get_originator(s, s)), "")
        self.assertEqual(fail(self.x.session.login_with_password("root"))[0], "MESSAGE_PARAMETER_COUNT_MISMATCH")
        self.assertEqual(fail(self.x.session.login_with_password("root", PASSWORD, "1", "o", "extra"))[0],
                         "MESSAGE_PARAMETER_COUNT_MISMATCH")

    def test_originator_header(self):
        status, _, raw = self.d.http("POST", "/", xml_call("session.login_with_password", "root", PASSWORD).encode(),
                                     {"Content-Type": "text/xml", "originator": "header-client"})
        s = ok(xmlrpc.client.loads(raw)[0][0])
        self.assertEqual(ok(self.x.session.get_originator(s, s)), "header-client")

    def test_wrong_password_fails_after_the_delay(self):
        t0 = time.monotonic()
        err = fail(self.x.session.login_with_password("root", "wrong", "1.0", "tests"))
        elapsed = time.monotonic() - t0
        self.assertEqual(err[0], "SESSION_AUTHENTICATION_FAILED")
        self.assertEqual(err[1], "root")
        self.assertTrue(all(isinstance(e, str) for e in err))
        self.assertGreaterEqual(elapsed, DELAY_MS / 1000 - 0.02)
        self.assertLess(elapsed, DELAY_MS / 1000 + 3)
        # a good login is not delayed
        t0 = time.monotonic()
        ok(self.x.session.login_with_password("root", PASSWORD, "1.0", "tests"))
        self.assertLess(time.monotonic() - t0, DELAY_MS / 1000)

    def test_unknown_user_and_empty_password(self):
        self.assertEqual(fail(self.x.session.login_with_password("nobody", PASSWORD))[:2],
                         ["SESSION_AUTHENTICATION_FAILED", "nobody"])
        self.assertEqual(fail(self.x.session.login_with_password("root", ""))[0], "SESSION_AUTHENTICATION_FAILED")
        self.assertEqual(fail(self.x.session.login_with_password("", ""))[0], "SESSION_AUTHENTICATION_FAILED")

    def test_failed_login_does_not_stall_other_clients(self):
        result = {}

        def bad_login():
            with self.d.proxy() as p:
                result["r"] = p.session.login_with_password("root", "wrong")

        t = threading.Thread(target=bad_login)
        t0 = time.monotonic()
        t.start()
        time.sleep(0.05)
        with self.d.proxy() as p:
            for _ in range(5):
                ok(p.pool.get_all(self.s))
        served = time.monotonic() - t0
        t.join()
        self.assertLess(served, DELAY_MS / 1000 - 0.05)
        self.assertEqual(fail(result["r"])[0], "SESSION_AUTHENTICATION_FAILED")

    def test_logout(self):
        s = ok(self.x.session.login_with_password("root", PASSWORD))
        self.assertIsInstance(ok(self.x.pool.get_all(s)), list)
        self.assertEqual(ok(self.x.session.logout(s)), "")
        self.assertEqual(fail(self.x.pool.get_all(s)), ["SESSION_INVALID", s])
        self.assertEqual(fail(self.x.VM.get_all_records(s)), ["SESSION_INVALID", s])
        self.assertEqual(fail(self.x.session.logout(s)), ["SESSION_INVALID", s])
        self.assertEqual(fail(self.x.session.get_record(self.s, s)), ["HANDLE_INVALID", "session", s])
        # other sessions are unaffected
        self.assertIsInstance(ok(self.x.pool.get_all(self.s)), list)

    def test_invalid_sessions(self):
        for bad in ("OpaqueRef:00000000-0000-0000-0000-000000000000", "", "garbage", NULL_REF):
            with self.subTest(session=bad):
                self.assertEqual(fail(self.x.VM.get_all(bad)), ["SESSION_INVALID", bad])
        # a non-string session
        self.assertEqual(fail(self.x.VM.get_all(5))[0], "SESSION_INVALID")
        # with the right arity, a bad session is reported before a bad argument
        self.assertEqual(fail(self.x.VM.get_record("OpaqueRef:bad", "OpaqueRef:nope")),
                         ["SESSION_INVALID", "OpaqueRef:bad"])
        # another object's ref is not a session
        host = ok(self.x.host.get_all(self.s))[0]
        self.assertEqual(fail(self.x.VM.get_all(host)), ["SESSION_INVALID", host])

    def test_get_this_host_and_user(self):
        host = ok(self.x.host.get_all(self.s))[0]
        self.assertEqual(ok(self.x.session.get_this_host(self.s, self.s)), host)
        self.assertEqual(ok(self.x.session.get_this_user(self.s, self.s)), NULL_REF)  # local superuser
        other = ok(self.x.session.login_with_password("root", PASSWORD))
        self.assertEqual(ok(self.x.session.get_this_host(self.s, other)), host)
        self.assertEqual(fail(self.x.session.get_this_host(self.s, "OpaqueRef:x")),
                         ["HANDLE_INVALID", "session", "OpaqueRef:x"])

    def test_change_password(self):
        s = ok(self.x.session.login_with_password("root", PASSWORD))
        self.assertEqual(fail(self.x.session.change_password(s, "not-the-old", "new-pw-1"))[0],
                         "SESSION_AUTHENTICATION_FAILED")
        ok(self.x.session.change_password(s, PASSWORD, "new-pw-1"))
        try:
            self.assertRegex(ok(self.x.session.login_with_password("root", "new-pw-1")), REF_RE)
            self.assertEqual(fail(self.x.session.login_with_password("root", PASSWORD))[0],
                             "SESSION_AUTHENTICATION_FAILED")
            with open(self.d.accounts) as f:
                text = f.read()
            self.assertNotIn("new-pw-1", text)  # stored hashed
            self.assertTrue(text.startswith("root:$"), text)
        finally:
            ok(self.x.session.change_password(s, "new-pw-1", PASSWORD))
        self.assertRegex(ok(self.x.session.login_with_password("root", PASSWORD)), REF_RE)


class SessionLimit(unittest.TestCase):
    """max_sessions: root's sessions without an originator; the least recently used one makes room
    (xapi: oldest by last_active). Other groups: test_limits.py."""

    def setUp(self):
        self.d = Daemon(extra_config="max_sessions = 3\n").start()

    def tearDown(self):
        self.d.cleanup()

    def valid(self, p, s):
        r = p.pool.get_all(s)
        return r["Status"] == "Success"

    def test_limit(self):
        with self.d.proxy() as p:
            sessions = []
            for i in range(3):
                sessions.append(ok(p.session.login_with_password("root", PASSWORD, "1.0", "")))
            self.assertTrue(all(self.valid(p, s) for s in sessions))
            for i in range(3):
                sessions.append(ok(p.session.login_with_password("root", PASSWORD, "1.0", "")))
                alive = [s for s in sessions if self.valid(p, s)]
                self.assertEqual(len(alive), 3)
                self.assertIn(sessions[-1], alive)  # the newest always survives
            self.assertEqual(alive, sessions[-3:])  # oldest first out
            self.assertEqual(fail(p.pool.get_all(sessions[0])), ["SESSION_INVALID", sessions[0]])


class UnixSocket(DaemonTest):
    """Calls over the local UNIX socket from root are pre-authenticated (SO_PEERCRED)."""

    def unix_call(self, method, *params):
        c = self.d.unix_connection()
        try:
            c.request("POST", "/", xml_call(method, *params).encode(), {"Content-Type": "text/xml"})
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            return xmlrpc.client.loads(r.read())[0][0]
        finally:
            c.close()

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_root_logs_in_with_any_password(self):
        self.assertTrue(os.path.exists(self.d.unix_socket))
        s = ok(self.unix_call("session.login_with_password", "root", "certainly-wrong", "1.0", "local"))
        self.assertRegex(s, REF_RE)
        # the session is an ordinary one: usable over TCP too
        self.assertIsInstance(ok(self.x.VM.get_all(s)), list)
        self.assertIs(ok(self.x.session.get_is_local_superuser(s, s)), True)
        self.assertEqual(ok(self.x.session.get_originator(s, s)), "local")
        # and over TCP the same password still fails
        self.assertEqual(fail(self.x.session.login_with_password("root", "certainly-wrong"))[0],
                         "SESSION_AUTHENTICATION_FAILED")

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_xmlrpc_client_over_unix_socket(self):
        with self.d.unix_proxy() as p:
            s = ok(p.session.login_with_password("root", ""))
            self.assertEqual(ok(p.pool.get_all(s)), ok(self.x.pool.get_all(self.s)))
            self.assertEqual(ok(p.session.logout(s)), "")

    @unittest.skipUnless(os.geteuid() == 0, "needs root to become another user")
    def test_non_root_peer_is_not_trusted(self):
        os.chmod(self.d.tmp, 0o755)  # let "nobody" reach the socket (it is mode 0666)
        body = xml_call("session.login_with_password", "root", "wrong").encode()
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: become nobody, then call over the socket
            status = b"?"
            try:
                os.close(rfd)
                os.setgid(65534)
                os.setuid(65534)
                sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sk.settimeout(10)
                sk.connect(self.d.unix_socket)
                sk.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nConnection: close\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body)
                reply = b""
                while True:
                    chunk = sk.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
                status = b"Failure" if b"SESSION_AUTHENTICATION_FAILED" in reply else b"Success" \
                    if b"<value>Success</value>" in reply else reply[:200]
            except BaseException as e:  # report, never return into the test runner
                status = repr(e).encode()
            finally:
                os.write(wfd, status)
                os._exit(0)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as f:
            out = f.read()
        os.waitpid(pid, 0)
        self.assertEqual(out, b"Failure")


class HostRecord(DaemonTest):
    """The one-host pool; the host record from the real machine."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.host = ok(cls.x.host.get_all(cls.s))[0]
        cls.rec = ok(cls.x.host.get_record(cls.s, cls.host))

    def test_one_host_pool(self):
        pools = ok(self.x.pool.get_all(self.s))
        self.assertEqual(len(pools), 1)
        self.assertEqual(ok(self.x.pool.get_master(self.s, pools[0])), self.host)
        self.assertEqual(len(ok(self.x.pool.get_all_records(self.s))), 1)
        self.assertEqual(ok(self.x.host.get_all(self.s)), [self.host])
        check_record(self, "pool", ok(self.x.pool.get_record(self.s, pools[0])))

    def test_identity(self):
        check_record(self, "host", self.rec)
        self.assertEqual(self.rec["hostname"], socket.gethostname())
        self.assertTrue(self.rec["name_label"])
        self.assertEqual(ok(self.x.host.get_by_name_label(self.s, self.rec["name_label"])), [self.host])
        self.assertRegex(self.rec["uuid"], UUID_RE)
        self.assertIs(self.rec["enabled"], True)

    def test_address_is_local(self):
        addr = self.rec["address"]
        self.assertTrue(addr)
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family) as sk:
            sk.bind((addr, 0))  # only succeeds for an address of this machine

    def test_api_version(self):
        self.assertEqual(self.rec["API_version_major"], "2")
        self.assertEqual(self.rec["API_version_minor"], str(SCHEMA["_meta"]["api_version_minor"]))
        self.assertTrue(self.rec["API_version_vendor"])

    def test_cpus(self):
        n = os.cpu_count()
        self.assertEqual(self.rec["cpu_info"]["cpu_count"], str(n))
        self.assertEqual(len(self.rec["host_CPUs"]), n)
        numbers = sorted(int(ok(self.x.host_cpu.get_number(self.s, c))) for c in self.rec["host_CPUs"])
        self.assertEqual(numbers, list(range(n)))
        for c in self.rec["host_CPUs"]:
            check_record(self, "host_cpu", ok(self.x.host_cpu.get_record(self.s, c)))
        with open("/proc/cpuinfo") as f:
            vendor = [l.split(":", 1)[1].strip() for l in f if l.startswith("vendor_id")]
        if vendor:
            self.assertEqual(self.rec["cpu_info"]["vendor"], vendor[0])

    def test_memory(self):
        with open("/proc/meminfo") as f:
            total = int(next(l for l in f if l.startswith("MemTotal:")).split()[1]) * 1024
        m = ok(self.x.host_metrics.get_record(self.s, self.rec["metrics"]))
        check_record(self, "host_metrics", m)
        self.assertEqual(int(m["memory_total"]), total)
        self.assertTrue(0 < int(m["memory_free"]) <= total)
        self.assertIs(m["live"], True)
        free = ok(self.x.host.compute_free_memory(self.s, self.host))
        self.assertIsInstance(free, str)
        self.assertTrue(0 < int(free) <= total)

    def test_software_version(self):
        sv = self.rec["software_version"]
        for key in ("product_version", "product_brand", "platform_version", "platform_name", "build_number",
                    "xapi", "hostname"):
            self.assertIn(key, sv)
        self.assertRegex(sv["product_version"], r"^[0-9]+(\.[0-9]+)+$")  # Nova splits it on '.'
        self.assertRegex(sv["platform_version"], r"^[0-9]+(\.[0-9]+)+$")
        self.assertEqual(ok(self.x.host.get_software_version(self.s, self.host)), sv)

    def test_license_params(self):
        lp = ok(self.x.host.get_license_params(self.s, self.host))
        self.assertIn("restrict_dmc", lp)
        self.assertIn(lp["restrict_dmc"], ("true", "false"))
        self.assertTrue(all(isinstance(v, str) for v in lp.values()))

    def test_control_domain(self):
        dom0 = self.rec["control_domain"]
        rec = ok(self.x.VM.get_record(self.s, dom0))
        check_record(self, "VM", rec)
        self.assertIs(rec["is_control_domain"], True)
        self.assertEqual(rec["domid"], "0")
        self.assertEqual(rec["power_state"], "Running")
        self.assertEqual(rec["resident_on"], self.host)
        self.assertIn(dom0, self.rec["resident_VMs"])
        self.assertEqual(rec["VCPUs_max"], str(os.cpu_count()))
        check_record(self, "VM_metrics", ok(self.x.VM_metrics.get_record(self.s, rec["metrics"])))

    def test_host_messages(self):
        t = ok(self.x.host.get_servertime(self.s, self.host))
        self.assertIsInstance(t, xmlrpc.client.DateTime)
        self.assertEqual(fail(self.x.host.get_servertime(self.s, "OpaqueRef:nohost")),
                         ["HANDLE_INVALID", "host", "OpaqueRef:nohost"])


if __name__ == "__main__":
    unittest.main()
