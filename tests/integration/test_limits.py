"""Limits that isolate clients (issue 8), driven the way they were found:
a flood of logins from one originator or one user name, floods of idle and
byte-dripping connections from one address, parallel password guessing. Each
time another client, from another address (127.0.0.2: the whole of 127/8 is
loopback on Linux) or with another originator, must keep working."""

import base64
import http.client
import resource
import select
import socket
import threading
import time
import unittest
import urllib.parse

from harness import PASSWORD, Daemon, fail, ok, proxy_from

OTHER = "127.0.0.2"  # the well-behaved client's address
BUSY = "Too many login attempts in progress"


def add_user(d, name):
    """An account `name` with the same password as root (the hash line copied)."""
    with open(d.accounts) as f:
        root = [line for line in f if line.startswith("root:")][0]
    with open(d.accounts, "a") as f:
        f.write(name + root[len("root"):])


def valid(p, s):
    return p.pool.get_all(s)["Status"] == "Success"


def connect_from(d, source, timeout=5):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", d.port))
    return s


def closed_by_server(s, wait):
    """Whether the server ends the connection within wait seconds."""
    r, _, _ = select.select([s], [], [], wait)
    if not r:
        return False
    try:
        return s.recv(1) == b""
    except OSError:
        return True


def count_closed(socks, wait):
    """How many of socks the server ends within wait seconds."""
    closed, deadline = set(), time.monotonic() + wait
    while len(closed) < len(socks) and time.monotonic() < deadline:
        r, _, _ = select.select([s for s in socks if s not in closed], [], [], max(0, deadline - time.monotonic()))
        for s in r:
            try:
                if s.recv(1) == b"":
                    closed.add(s)
            except OSError:
                closed.add(s)
    return len(closed)


# ---- sessions --------------------------------------------------------------------------------------

class SessionGroups(unittest.TestCase):
    """As xapi's session GC: root without originator, root per originator, other users per user
    name, each group its own limit; a flood in one group evicts only that group's sessions."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(extra_config="max_sessions = 4\nmax_sessions_per_originator = 6\n"
                                    "max_sessions_per_user = 5\n").start()
        add_user(cls.d, "alice")

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def setUp(self):
        self.p = self.d.proxy()

    def tearDown(self):
        self.p("close")()

    def login(self, user, originator):
        return ok(self.p.session.login_with_password(user, PASSWORD, "1.0", originator))

    def test_originator_flood_leaves_other_sessions(self):
        admin = self.login("root", "")
        xo = self.login("root", "xo")
        flood = [self.login("root", "leaky") for _ in range(20)]
        self.assertTrue(valid(self.p, admin), "the admin's session was evicted by another originator's flood")
        self.assertTrue(valid(self.p, xo))
        self.assertEqual([valid(self.p, s) for s in flood], [False] * 14 + [True] * 6)  # its own oldest went
        self.assertEqual(fail(self.p.pool.get_all(flood[0])), ["SESSION_INVALID", flood[0]])

    def test_user_flood_leaves_admin(self):
        admin = self.login("root", "")
        nova = self.login("root", "nova")
        # a user name is one group whatever the originator (xapi: per non-root user name)
        flood = [self.login("alice", "" if i % 2 else "alice-%d" % i) for i in range(15)]
        self.assertTrue(valid(self.p, admin), "the admin's session was evicted by a user's flood")
        self.assertTrue(valid(self.p, nova))
        self.assertEqual([valid(self.p, s) for s in flood], [False] * 10 + [True] * 5)

    def test_anonymous_flood_evicts_only_anonymous(self):
        xo = self.login("root", "xo-anon")
        alice = self.login("alice", "")
        anon = [self.login("root", "") for _ in range(10)]
        self.assertTrue(valid(self.p, xo))
        self.assertTrue(valid(self.p, alice))
        self.assertEqual([valid(self.p, s) for s in anon], [False] * 6 + [True] * 4)


class SessionTotal(unittest.TestCase):
    """max_sessions_total: the last resort takes from the biggest group, never from a small one."""

    def setUp(self):
        self.d = Daemon(extra_config="max_sessions_total = 30\n").start()

    def tearDown(self):
        self.d.cleanup()

    def test_many_originators(self):
        with self.d.proxy() as p:
            def login(originator):
                return ok(p.session.login_with_password("root", PASSWORD, "1.0", originator))
            admin = login("")
            big = [login("big") for _ in range(15)]
            singles = [login("single-%d" % i) for i in range(20)]  # 36 logins in all
            self.assertTrue(valid(p, admin))
            self.assertTrue(all(valid(p, s) for s in singles))
            self.assertEqual([valid(p, s) for s in big], [False] * 6 + [True] * 9)


# ---- connections -----------------------------------------------------------------------------------

class ConnectionsPerAddress(unittest.TestCase):
    PER_PEER = 8

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(extra_config="max_connections_per_peer = %d\n" % cls.PER_PEER).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_one_address_cannot_lock_out_another(self):
        time.sleep(0.5)  # the harness's readiness probe from 127.0.0.1 is gone
        held = [connect_from(self.d, "127.0.0.1") for _ in range(30)]
        try:
            # the address's extra connections are closed at once...
            self.assertEqual(count_closed(held, 1.5), 30 - self.PER_PEER)
            # ...while another address is served
            with proxy_from(self.d, OTHER) as p:
                self.assertTrue(valid(p, ok(p.session.login_with_password("root", PASSWORD, "1.0", "other"))))
        finally:
            for s in held:
                s.close()
        # and the first address gets its connections back once it closes its own
        deadline = time.monotonic() + 5
        while True:
            try:
                with proxy_from(self.d, "127.0.0.1") as p:
                    self.assertTrue(valid(p, ok(p.session.login_with_password("root", PASSWORD))))
                break
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def test_unix_socket_per_uid(self):
        time.sleep(0.5)
        held = [self.d.unix_connection() for _ in range(self.PER_PEER + 4)]
        try:
            for c in held:
                c.connect()
            self.assertEqual(count_closed([c.sock for c in held], 1.5), 4)
            # the TCP side does not care
            with self.d.proxy() as p:
                self.assertTrue(valid(p, ok(p.session.login_with_password("root", PASSWORD))))
        finally:
            for c in held:
                c.close()


class DefaultConfigFlood(unittest.TestCase):
    """The default configuration against a real flood from one address (1,100 idle connections: more
    than max_connections): another address is still served."""

    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4096:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
        self.d = Daemon().start()

    def tearDown(self):
        self.d.cleanup()

    def test_flood_of_idle_connections(self):
        held = []
        try:
            for _ in range(1100):
                s = socket.socket()
                s.settimeout(0.5)
                s.bind(("127.0.0.1", 0))
                held.append(s)
                try:
                    s.connect(("127.0.0.1", self.d.port))
                except OSError:
                    pass  # the listen queue is full for a moment: a real flood does not care
            time.sleep(0.5)
            with proxy_from(self.d, OTHER, timeout=5) as p:
                self.assertTrue(valid(p, ok(p.session.login_with_password("root", PASSWORD, "1.0", "other"))))
        finally:
            for s in held:
                s.close()


class RequestDeadline(unittest.TestCase):
    """request_timeout bounds the time to deliver a request, however it is dripped; the call itself and
    a streamed upload that keeps a sane rate are not cut."""

    TIMEOUT = 2

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(extra_config="request_timeout = %d\nupload_min_rate_kib = 16\n" % cls.TIMEOUT).start()
        cls.x, cls.s = cls.d.login()

    @classmethod
    def tearDownClass(cls):
        cls.x("close")()
        cls.d.cleanup()

    def drip(self, head, piece=b"a", every=0.3, limit=10):
        """Sends head, then piece every `every` s: seconds until the server closes (None: never)."""
        s = socket.create_connection(("127.0.0.1", self.d.port))
        try:
            t0 = time.monotonic()
            s.sendall(head)
            while time.monotonic() - t0 < limit:
                if closed_by_server(s, every):
                    return time.monotonic() - t0
                try:
                    s.sendall(piece)
                except OSError:
                    return time.monotonic() - t0
            return None
        finally:
            s.close()

    def assert_cut_at_deadline(self, elapsed):
        self.assertIsNotNone(elapsed, "a dripping connection outlived the request deadline")
        self.assertGreater(elapsed, self.TIMEOUT * 0.5)  # not before
        self.assertLess(elapsed, self.TIMEOUT + 4)

    def test_dripping_headers(self):
        self.assert_cut_at_deadline(self.drip(b"POST / HTTP/1.1\r\nHost: x\r\nX-Drip: "))

    def test_dripping_rpc_body(self):
        self.assert_cut_at_deadline(self.drip(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                                              b"Content-Length: 100000\r\n\r\n<"))

    def vdi(self):
        sr = ok(self.x.pool.get_default_SR(self.s, ok(self.x.pool.get_all(self.s))[0]))
        rec = {"SR": sr, "virtual_size": str(16 << 20), "type": "user", "sharable": False, "read_only": False,
               "other_config": {}, "name_label": "deadline"}
        return ok(self.x.VDI.create(self.s, rec))

    def put_head(self, length):
        q = urllib.parse.urlencode({"session_id": self.s, "vdi": self.vdi()})
        return (b"PUT /import_raw_vdi?%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (q.encode(), length))

    def test_dripping_upload(self):
        self.assert_cut_at_deadline(self.drip(self.put_head(1 << 20), b"\1"))

    def test_steady_upload_outlives_the_deadline(self):
        piece, n, every = b"\1" * (64 << 10), 16, 0.25  # 256 KiB/s for 4 s: twice the deadline
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as s:
            s.sendall(self.put_head(len(piece) * n))
            for _ in range(n):
                s.sendall(piece)
                time.sleep(every)
            reply = s.recv(4096)
        self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply[:200])

    def test_slow_call_is_not_cut(self):
        token = ok(self.x.event_from(self.s, ["pool"], "", 0.1))["token"]
        t0 = time.monotonic()
        r = ok(self.x.event_from(self.s, ["pool"], token, float(self.TIMEOUT + 1.5)))
        self.assertGreater(time.monotonic() - t0, self.TIMEOUT)
        self.assertEqual(r["events"], [])

    def test_idle_keep_alive_then_request(self):
        # a kept-alive connection that waits, then sends a request at once, is served
        with self.d.proxy() as p:
            self.assertTrue(valid(p, self.s))
            time.sleep(self.TIMEOUT * 0.6)
            self.assertTrue(valid(p, self.s))


# ---- password guessing -----------------------------------------------------------------------------

class AuthGate(unittest.TestCase):
    """One failed check at a time per address and two per user name, no queue: what is refused and what
    still gets through, for session logins and HTTP basic auth alike."""

    DELAY = 2.0  # long enough for the checks made while a failure holds its place

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(extra_config="auth_fail_delay_ms = %d\nauth_parallel_per_peer = 1\n"
                                    "auth_parallel_per_user = 2\nauth_queue = 0\n" % (cls.DELAY * 1000)).start()
        add_user(cls.d, "alice")

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def failures_logged(self):
        with open(self.d.log_path, "rb") as f:
            return f.read().count(b"auth: authentication failed for user")

    class Background(threading.Thread):
        """fn() in a thread, once its wrong password has been checked (it is in its failure delay, which
        keeps its place in the gate); join() gives its result."""

        def __init__(self, test, fn):
            super().__init__()
            self.fn, self.result = fn, None
            before = test.failures_logged()
            self.start()
            deadline = time.monotonic() + 10
            while test.failures_logged() == before and time.monotonic() < deadline:
                time.sleep(0.01)

        def run(self):
            self.result = self.fn()

        def join(self):
            super().join()
            return self.result

    def wrong_login(self, source, user="root"):
        def run():
            with proxy_from(self.d, source) as p:
                return fail(p.session.login_with_password(user, "wrong", "1.0", "guess"))
        return self.Background(self, run)

    def login(self, source, user="root"):
        with proxy_from(self.d, source) as p:
            return p.session.login_with_password(user, PASSWORD, "1.0", "tests")

    def test_login_while_the_same_address_fails(self):
        t = self.wrong_login("127.0.0.1")
        refused = fail(self.login("127.0.0.1"))  # the right password, but not even checked
        self.assertEqual(refused[:2], ["SESSION_AUTHENTICATION_FAILED", "root"])
        self.assertIn(BUSY, refused[2])
        ok(self.login(OTHER))  # another address: checked, and in at once
        self.assertEqual(t.join(), ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"])
        ok(self.login("127.0.0.1"))  # the address's failure is over

    def test_login_while_the_same_user_fails(self):
        threads = [self.wrong_login("127.0.0.3", "alice"), self.wrong_login("127.0.0.4", "alice")]
        self.assertIn(BUSY, fail(self.login(OTHER, "alice"))[2])
        ok(self.login(OTHER, "root"))  # another user from the same address
        for t in threads:
            self.assertEqual(t.join(), ["SESSION_AUTHENTICATION_FAILED", "alice", "Authentication failure"])
        ok(self.login(OTHER, "alice"))

    def basic_auth_get(self, source, password):
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10, source_address=(source, 0))
        try:
            cred = base64.b64encode(b"root:" + password.encode()).decode()
            c.request("GET", "/console?ref=OpaqueRef:NULL", headers={"Authorization": "Basic " + cred})
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()

    def test_basic_auth(self):
        t = self.Background(self, lambda: self.basic_auth_get("127.0.0.1", "wrong"))
        self.assertEqual(self.basic_auth_get("127.0.0.1", PASSWORD), 401)  # not checked
        self.assertNotEqual(self.basic_auth_get(OTHER, PASSWORD), 401)  # checked: in (then no such console)
        self.assertEqual(t.join(), 401)
        self.assertNotEqual(self.basic_auth_get("127.0.0.1", PASSWORD), 401)


class PasswordGuessingFlood(unittest.TestCase):
    """128 parallel wrong logins from one address with the default gate: the address gets at most
    auth_parallel_per_peer checks per delay, and a normal client from another address is served."""

    DELAY = 0.5
    SECONDS = 3.0
    GUESSERS = 128

    def setUp(self):
        self.d = Daemon(extra_config="auth_fail_delay_ms = %d\n" % (self.DELAY * 1000)).start()

    def tearDown(self):
        self.d.cleanup()

    def test_parallel_wrong_logins(self):
        counts = {"checked": 0, "busy": 0, "other": 0}
        lock = threading.Lock()
        stop = time.monotonic() + self.SECONDS

        def guesser():
            with proxy_from(self.d, "127.0.0.1", timeout=30) as p:
                while time.monotonic() < stop:
                    try:
                        err = fail(p.session.login_with_password("root", "guess", "1.0", "guesser"))
                    except (OSError, http.client.HTTPException):
                        continue
                    kind = ("checked" if err[2] == "Authentication failure" else
                            "busy" if BUSY in err[2] else "other")
                    with lock:
                        counts[kind] += 1

        normal = proxy_from(self.d, OTHER)
        s = ok(normal.session.login_with_password("root", PASSWORD, "1.0", "normal"))
        threads = [threading.Thread(target=guesser) for _ in range(self.GUESSERS)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        # the normal client: its calls and a fresh login go through during the attack
        for _ in range(20):
            self.assertTrue(valid(normal, s))
        ok(normal.session.login_with_password("root", PASSWORD, "1.0", "normal"))
        normal("close")()
        for t in threads:
            t.join()
        # auth_parallel_per_peer (4) checks per delay, and slack of 4 delays: the batch in flight at the
        # start and at the end, and scheduling jitter (a CI run counted 33 against a slack of 2 delays).
        # Without the limit the 128 guessers make about 700 checks in that time.
        limit = 4 * (self.SECONDS / self.DELAY + 4)
        self.assertEqual(counts["other"], 0, counts)
        self.assertLessEqual(counts["checked"], limit, counts)
        self.assertGreater(counts["busy"], 0, counts)


if __name__ == "__main__":
    unittest.main()
