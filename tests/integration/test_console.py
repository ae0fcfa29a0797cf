"""CONNECT /console: a running guest's live console over the client's own
connection, as xapi's connect_console (Nova's VNC proxy, CloudStack, xe
console): "200 OK", then raw bytes both ways. The simulator's console greets
with a marker line (vt100) or the RFB version line (rfb) and echoes what is
typed. Sessions by query, cookie or basic auth; errors as the other HTTP
handlers give them; the stream ends when the guest stops; the same over HTTPS."""

import base64
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import BUILD, PASSWORD, Daemon, new_pv_vm, ok
from test_https import tls_daemon

ACCOUNT_TOOL = os.path.join(BUILD, "xenapid-account")


def read_until(sk, token, timeout=10, data=b""):
    """Reads until token has come (the bytes so far, after data: what came already), or fails on EOF or
    timeout."""
    deadline = time.monotonic() + timeout
    while token not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no %r within %ss, got %r" % (token, timeout, data))
        sk.settimeout(left)
        chunk = sk.recv(4096)
        if not chunk:
            raise AssertionError("EOF before %r, got %r" % (token, data))
        data += chunk
    return data


def read_to_eof(sk, timeout=10):
    """Everything until the server closes (fails if it does not within timeout)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the stream did not end within %ss, got %r" % (timeout, data))
        sk.settimeout(left)
        try:
            chunk = sk.recv(4096)
        except (ConnectionResetError, ssl.SSLEOFError):
            return data
        if not chunk:
            return data
        data += chunk


LIMITS = "max_connections_per_peer = 6\n"


def connect_request(path, headers=()):
    return ("CONNECT %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, "".join("%s: %s\r\n" % h for h in headers))).encode()


class ConsoleTest(unittest.TestCase):
    d = None

    @classmethod
    def make_daemon(cls):
        return Daemon(extra_config=LIMITS)

    @classmethod
    def setUpClass(cls):
        cls.d = cls.make_daemon().start()
        cls.x, cls.s = cls.d.login()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def open_socket(self):
        return self.d.raw_socket()

    def new_vm(self, name, hvm=False):
        vm = new_pv_vm(self.x, self.s, name)
        if hvm:
            ok(self.x.VM.set_PV_kernel(self.s, vm, ""))
            ok(self.x.VM.set_HVM_boot_policy(self.s, vm, "BIOS order"))
        return vm

    def running_vm(self, name, hvm=False):
        vm = self.new_vm(name, hvm)
        ok(self.x.VM.start(self.s, vm, False, False))
        self.addCleanup(lambda: self.x.VM.hard_shutdown(self.s, vm))
        consoles = ok(self.x.VM.get_consoles(self.s, vm))
        # as xapi: an HVM guest's graphical console first, then its text one
        protocols = [ok(self.x.console.get_protocol(self.s, c)) for c in consoles]
        self.assertEqual(protocols, ["rfb", "vt100"] if hvm else ["vt100"])
        return vm, consoles[0]

    def connect(self, path, headers=()):
        """Sends CONNECT: (socket, the reply's head, the bytes that came after it)."""
        sk = self.open_socket()
        self.addCleanup(sk.close)
        sk.sendall(connect_request(path, headers))
        data = read_until(sk, b"\r\n\r\n")
        head, _, rest = data.partition(b"\r\n\r\n")
        return sk, head, rest

    def assert_refused(self, path, status, body_start, headers=()):
        sk, head, rest = self.connect(path, headers)
        self.assertTrue(head.startswith(b"HTTP/1.1 %d " % status), head)
        body = rest + read_to_eof(sk)
        self.assertTrue(body.startswith(body_start), body)

    def test_vt100_marker_and_echo(self):
        vm, con = self.running_vm("echo")
        self.assertEqual(ok(self.x.console.get_protocol(self.s, con)), "vt100")
        domid = ok(self.x.VM.get_domid(self.s, vm))
        uuid = ok(self.x.VM.get_uuid(self.s, vm))
        sk, head, rest = self.connect("/console?ref=%s&session_id=%s" % (con, self.s))
        self.assertEqual(head, b"HTTP/1.1 200 OK")
        marker = b"SIM-CONSOLE domain %s uuid %s\r\n" % (domid.encode(), uuid.encode())
        self.assertIn(marker, read_until(sk, marker, data=rest))
        sk.sendall(b"hello console\n")
        self.assertIn(b"hello console\n", read_until(sk, b"hello console\n"))
        # A second line, bigger than one read: everything comes back, in order.
        line = b"x" * 100000 + b"\n"
        sk.sendall(line)
        self.assertEqual(read_until(sk, b"\n", timeout=20), line)

    def test_session_by_cookie_and_basic_auth(self):
        vm, con = self.running_vm("auth")
        _, head, _ = self.connect("/console?ref=" + con, [("Cookie", "session_id=" + self.s)])
        self.assertEqual(head, b"HTTP/1.1 200 OK")
        cred = base64.b64encode(("root:" + PASSWORD).encode()).decode()
        sk, head, rest = self.connect("/console?uuid=" + ok(self.x.console.get_uuid(self.s, con)),
                                      [("Authorization", "Basic " + cred)])
        self.assertEqual(head, b"HTTP/1.1 200 OK")
        read_until(sk, b"SIM-CONSOLE", data=rest)

    def test_vm_ref_gets_its_console_and_hvm_is_rfb(self):
        """Nova sends the VM's ref; an HVM guest's console is its VNC server."""
        vm, con = self.running_vm("hvm", hvm=True)
        self.assertEqual(ok(self.x.console.get_protocol(self.s, con)), "rfb")
        for ref in (vm, con):
            sk, head, rest = self.connect("/console?ref=%s&session_id=%s" % (ref, self.s))
            self.assertEqual(head, b"HTTP/1.1 200 OK")
            self.assertEqual(read_until(sk, b"\n", data=rest), b"RFB 003.008\n")
            sk.sendall(b"RFB 003.008\n")
            self.assertEqual(read_until(sk, b"\n"), b"RFB 003.008\n")

    def test_errors(self):
        vm, con = self.running_vm("errors")
        bad = "OpaqueRef:00000000-0000-0000-0000-000000000000"
        self.assert_refused("/console?ref=%s&session_id=%s" % (bad, self.s), 404, b"HANDLE_INVALID console " +
                            bad.encode())
        self.assert_refused("/console?ref=" + con, 401, b"")
        self.assert_refused("/console?ref=%s&session_id=OpaqueRef:nonsense" % con, 401, b"")
        halted = self.new_vm("halted")
        self.assert_refused("/console?ref=%s&session_id=%s" % (halted, self.s), 409,
                            b"VM_BAD_POWER_STATE %s running halted" % halted.encode())

    def test_read_only_is_refused(self):
        vm, con = self.running_vm("rbac")
        if self.d.config is None:
            self.skipTest("no accounts file")
        r = subprocess.run([ACCOUNT_TOOL, "--config", self.d.config, "add", "watcher", "read-only"],
                           input="watcher-pw\n", capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        s = ok(self.x.session.login_with_password("watcher", "watcher-pw", "1.0", "tests"))
        self.assert_refused("/console?ref=%s&session_id=%s" % (con, s), 403,
                            b"RBAC_PERMISSION_DENIED http/connect_console")

    def test_stopping_the_guest_ends_the_stream(self):
        vm, con = self.running_vm("stops")
        sk, head, rest = self.connect("/console?ref=%s&session_id=%s" % (con, self.s))
        self.assertEqual(head, b"HTTP/1.1 200 OK")
        read_until(sk, b"SIM-CONSOLE", data=rest)
        ok(self.x.VM.hard_shutdown(self.s, vm))
        read_to_eof(sk)
        # The daemon goes on serving, consoles included.
        vm2, con2 = self.running_vm("after")
        sk2, head, rest = self.connect("/console?ref=%s&session_id=%s" % (con2, self.s))
        self.assertEqual(head, b"HTTP/1.1 200 OK")
        read_until(sk2, b"SIM-CONSOLE", data=rest)

    def test_client_closing_frees_its_connection(self):
        """A proxied console is one of the connections max_connections_per_peer counts; closing it gives
        the slot back (6 per peer here: 4 at a time, three times over, fit only if they do)."""
        vm, con = self.running_vm("slots")
        path = "/console?ref=%s&session_id=%s" % (con, self.s)
        for _ in range(3):
            socks = []
            for _ in range(4):
                sk, head, _ = self.connect(path)
                self.assertEqual(head, b"HTTP/1.1 200 OK")
                socks.append(sk)
            for sk in socks:
                sk.close()
            time.sleep(1)  # the relays see the close within one check
        self.assertEqual(ok(self.x.VM.get_power_state(self.s, vm)), "Running")


class ConsoleLifetime(unittest.TestCase):
    def open_console(self, extra=""):
        """A daemon of its own, a running VM and its console connected: (daemon, socket past the marker)."""
        d = Daemon(extra_config=extra).start()
        self.addCleanup(d.cleanup)
        x, s = d.login()
        vm = new_pv_vm(x, s, "lifetime")
        ok(x.VM.start(s, vm, False, False))
        con = ok(x.VM.get_consoles(s, vm))[0]
        sk = d.raw_socket()
        self.addCleanup(sk.close)
        sk.sendall(connect_request("/console?ref=%s&session_id=%s" % (con, s)))
        read_until(sk, b"SIM-CONSOLE")
        return d, sk

    def test_an_idle_console_outlives_the_idle_timeouts(self):
        """A console left idle (a VNC viewer nobody looks at) is not cut by connection_timeout or
        request_timeout, which are for HTTP requests."""
        d, sk = self.open_console("connection_timeout = 1\nrequest_timeout = 1\n")
        time.sleep(2.5)  # past both timeouts and a reaper round
        sk.sendall(b"still here\n")
        self.assertIn(b"still here\n", read_until(sk, b"still here\n"))

    def test_daemon_stops_with_a_console_open(self):
        """Stopping the daemon ends the proxied consoles (their connections are shut down) and exits 0."""
        d, sk = self.open_console()
        d.stop()  # fails the test if the daemon hangs or exits non-zero
        read_to_eof(sk)


class GuestConsoleLinks(unittest.TestCase):
    """guest_console_dir: each running domain's console log is also console.<domid> there, as on
    xapi's hosts (Nova's console plugin reads /var/log/xen/guest/console.<N>, N the
    other_config:last_dom_id Nova sets after VM.start); the link stays after the domain is gone,
    as the log does. "auto" on sim makes none (its domids are its own, and many sims run at once)."""

    def test_console_domid_links(self):
        tmp = tempfile.mkdtemp(prefix="xenapid-guest-console-")
        self.addCleanup(shutil.rmtree, tmp, True)
        links = os.path.join(tmp, "guest")  # made by the daemon
        d = Daemon(extra_config="guest_console_dir = %s\n" % links).start()
        self.addCleanup(d.cleanup)
        x, s = d.login()
        vm = new_pv_vm(x, s, "linked")
        ok(x.VM.start(s, vm, False, False))
        domid = ok(x.VM.get_domid(s, vm))
        link = os.path.join(links, "console.%s" % domid)
        self.assertTrue(os.path.islink(link), os.listdir(links) if os.path.isdir(links) else links)
        with open(link, "rb") as f:
            self.assertIn(b"SIM-GUEST-UP domain %s " % domid.encode(), f.read())
        ok(x.VM.hard_shutdown(s, vm))
        self.assertTrue(os.path.islink(link), "the link went with the domain")
        ok(x.VM.start(s, vm, False, False))
        domid2 = ok(x.VM.get_domid(s, vm))
        self.assertNotEqual(domid2, domid)
        self.assertTrue(os.path.islink(os.path.join(links, "console.%s" % domid2)))
        self.assertEqual(sorted(os.listdir(links)), sorted(["console.%s" % domid, "console.%s" % domid2]))
        ok(x.VM.hard_shutdown(s, vm))

    def test_auto_on_sim_makes_none(self):
        d = Daemon().start()
        self.addCleanup(d.cleanup)
        x, s = d.login()
        vm = new_pv_vm(x, s, "unlinked")
        ok(x.VM.start(s, vm, False, False))
        domid = ok(x.VM.get_domid(s, vm))
        p = "/var/log/xen/guest/console.%s" % domid
        self.assertFalse(os.path.islink(p) and os.readlink(p).startswith(d.tmp), "%s -> %s" % (p, d.tmp))
        ok(x.VM.hard_shutdown(s, vm))


class ConsoleOverHTTPS(ConsoleTest):
    """The same over TLS: the tunnel carries the console inside the TLS session."""

    @classmethod
    def make_daemon(cls):
        return tls_daemon(LIMITS)

    def open_socket(self):
        ctx = ssl.create_default_context(cafile=self.d.cert)
        raw = socket.create_connection(("127.0.0.1", self.d.tls_port), timeout=10)
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


if __name__ == "__main__":
    unittest.main()
