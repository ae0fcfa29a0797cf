"""The API over HTTPS (listen_tls): the certificate generated at the first
start, or the one configured; XML-RPC with verification (trusting that
certificate) and without (as CloudStack does), curl with --cacert and -k;
plain HTTP beside it or switched off; console locations in the client's
scheme; stalled handshakes dropped by the same limits as any connection."""

import json
import http.client
import os
import socket
import ssl
import stat
import subprocess
import tempfile
import time
import unittest
import xmlrpc.client

from harness import PASSWORD, ROOT, Daemon, fail, free_port, ok, wait_task

MiB = 1 << 20


class TLSDaemon(Daemon):
    def wait_ready(self):
        super().wait_ready()  # the plain port (if any) opens before the certificate is made
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("xenapid exited:\n" + self.read_log())
            try:
                with socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("xenapid did not listen on its TLS port:\n" + self.read_log())


def tls_daemon(extra="", **kw):
    tls_port = free_port()
    d = TLSDaemon(extra_config="listen_tls = 127.0.0.1:%d\nconnection_timeout = 3\n" % tls_port + extra, **kw)
    d.tls_port = tls_port
    d.cert = os.path.join(d.state_dir, "xenapid-cert.pem")
    d.key = os.path.join(d.state_dir, "xenapid-key.pem")
    return d


def https_proxy(d, context):
    return xmlrpc.client.ServerProxy("https://127.0.0.1:%d/" % d.tls_port, context=context, allow_none=True)


def trusting(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    return ctx


def served_certificate(port):
    """The DER certificate the server presents, unverified."""
    ctx = ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert(binary_form=True)


def file_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "20"] + list(args), capture_output=True, text=True)


def read_to_end(sk):
    """What the peer sends until it closes (or resets) the connection."""
    data = b""
    try:
        while True:
            chunk = sk.recv(4096)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


LOGIN = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "session.login_with_password",
                    "params": ["root", PASSWORD, "1.0", "curl"]})


class WithTLSDaemon(unittest.TestCase):
    """A daemon with the default TLS set-up for the class's tests."""

    @classmethod
    def setUpClass(cls):
        cls.d = tls_daemon().start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()


class TestHTTPS(WithTLSDaemon):

    def test_generated_certificate(self):
        d = self.d
        self.assertEqual(stat.S_IMODE(os.stat(d.key).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(d.cert).st_mode), 0o644)
        info = ssl._ssl._test_decode_cert(d.cert)
        host = socket.gethostname()
        self.assertIn((("commonName", host),), info["subject"])
        self.assertEqual(info["subject"], info["issuer"])  # self-signed
        self.assertIn(("DNS", host), info["subjectAltName"])
        self.assertIn(("IP Address", "127.0.0.1"), info["subjectAltName"])
        not_after = ssl.cert_time_to_seconds(info["notAfter"])
        self.assertGreater(not_after - time.time(), 9 * 365 * 86400)
        self.assertLess(ssl.cert_time_to_seconds(info["notBefore"]), time.time())
        self.assertEqual(served_certificate(d.tls_port), file_der(d.cert))

    def test_xmlrpc_verified_with_the_certificate(self):
        x = https_proxy(self.d, trusting(self.d.cert))
        s = ok(x.session.login_with_password("root", PASSWORD, "1.0", "tls"))
        self.assertEqual(len(ok(x.host.get_all(s))), 1)
        self.assertIn("OpaqueRef:", ok(x.session.get_this_host(s, s)))

    def test_verification_fails_without_trusting_it(self):
        x = https_proxy(self.d, ssl.create_default_context())
        with self.assertRaises(ssl.SSLCertVerificationError):
            x.session.login_with_password("root", PASSWORD, "1.0", "tls")

    def test_xmlrpc_without_verification_as_cloudstack(self):
        x = https_proxy(self.d, ssl._create_unverified_context())
        s = ok(x.session.login_with_password("root", PASSWORD, "1.0", "cloudstack"))
        pool = ok(x.pool.get_all(s))[0]
        self.assertIn("uuid", ok(x.pool.get_record(s, pool)))
        # many calls on the one keep-alive connection, then the plain listener still answers
        for _ in range(20):
            ok(x.VM.get_all(s))
        p, s2 = self.d.login()
        ok(p.VM.get_all(s2))

    def test_curl_cacert_and_insecure(self):
        url = "https://127.0.0.1:%d/jsonrpc" % self.d.tls_port
        r = curl("--cacert", self.d.cert, url, "-H", "Content-Type: application/json", "-d", LOGIN)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(json.loads(r.stdout)["result"].startswith("OpaqueRef:"))
        r = curl("-k", url, "-d", LOGIN)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(json.loads(r.stdout)["result"].startswith("OpaqueRef:"))
        r = curl(url, "-d", LOGIN)  # the system's CAs do not know it
        self.assertEqual(r.returncode, 60, (r.stdout, r.stderr))

    def test_plain_http_on_the_tls_port_is_refused(self):
        with socket.create_connection(("127.0.0.1", self.d.tls_port), timeout=10) as sk:
            sk.sendall(b"POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" %
                       (len(LOGIN), LOGIN.encode()))
            data = read_to_end(sk)
        self.assertNotIn(b"OpaqueRef:", data)

    def test_console_location_follows_the_scheme(self):
        d = self.d
        xs = https_proxy(d, trusting(d.cert))
        s = ok(xs.session.login_with_password("root", PASSWORD, "1.0", "tls"))
        xp, sp = d.login()

        def new_vm(x, name):
            tpl = ok(x.VM.get_by_name_label(s, "Generic Linux PV"))[0]
            vm = ok(x.VM.clone(s, tpl, name))
            ok(x.VM.set_is_a_template(s, vm, False))
            ok(x.VM.set_memory_limits(s, vm, str(128 * MiB), str(256 * MiB), str(256 * MiB), str(256 * MiB)))
            ok(x.VM.set_PV_kernel(s, vm, "/boot/vmlinuz"))
            return vm

        def location(vm):
            consoles = ok(xp.VM.get_consoles(sp, vm))
            self.assertEqual(len(consoles), 1)
            return consoles[0], ok(xp.console.get_location(sp, consoles[0]))

        vm = new_vm(xs, "over-https")
        ok(xs.VM.start(s, vm, False, False))
        con, loc = location(vm)
        self.assertEqual(loc, "https://127.0.0.1:%d/console?ref=%s" % (d.tls_port, con))
        r = curl("--cacert", d.cert, "-b", "session_id=" + s, loc)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("SIM-GUEST-UP", r.stdout)

        vm = new_vm(xp, "over-http")
        ok(xp.VM.start(sp, vm, False, False))
        con, loc = location(vm)
        self.assertEqual(loc, "http://127.0.0.1:%d/console?ref=%s" % (d.port, con))

        # An Async call runs on a worker: HTTPS, the scheme a XenServer hands out.
        vm = new_vm(xp, "async")
        task = ok(xp.Async.VM.start(sp, vm, False, False))
        for _ in range(500):
            if ok(xp.task.get_status(sp, task)) != "pending":
                break
            time.sleep(0.02)
        self.assertEqual(ok(xp.task.get_status(sp, task)), "success")
        con, loc = location(vm)
        self.assertEqual(loc, "https://127.0.0.1:%d/console?ref=%s" % (d.tls_port, con))


def jsonrpc_request(method, params, id=1):
    body = json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).encode()
    return b"POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body), body)


def read_responses(sk, n):
    """n HTTP responses (status, headers, body) read off a keep-alive connection."""
    data, out = b"", []
    while len(out) < n:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = data[:head_end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
            end = head_end + 4 + int(headers["content-length"])
            if len(data) >= end:
                out.append((int(lines[0].split()[1]), headers, data[head_end + 4:end]))
                data = data[end:]
                continue
        chunk = sk.recv(65536)
        if not chunk:
            raise AssertionError("connection closed after %d of %d responses" % (len(out), n))
        data += chunk
    assert data == b"", data
    return out


class TestHTTPSKeepAlive(WithTLSDaemon):
    """One TLS connection carrying many requests: small and big RPC replies in a row (small
    ones go out as one corked record, big ones as MHD sends them), requests pipelined into one
    TLS record, and a request cut into one record per byte."""

    def connect(self):
        ctx = ssl._create_unverified_context()
        return ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.d.tls_port), timeout=20))

    def login(self, sk, id=1):
        sk.sendall(jsonrpc_request("session.login_with_password", ["root", PASSWORD, "1.0", "keepalive"], id))
        (status, _, body), = read_responses(sk, 1)
        self.assertEqual(status, 200)
        return json.loads(body)["result"]

    def test_replies_of_every_kind_in_a_row(self):
        c = http.client.HTTPSConnection("127.0.0.1", self.d.tls_port, timeout=20,
                                        context=ssl._create_unverified_context())

        def call(method, path, body=None, headers=None, last=False):
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            self.assertEqual(r.will_close, last, (method, path))
            return r.status, data

        def rpc(method, *params):
            status, data = call("POST", "/jsonrpc", json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                                                "params": list(params)}),
                                {"Content-Type": "application/json"})
            self.assertEqual(status, 200)
            return json.loads(data)["result"]

        s = rpc("session.login_with_password", "root", PASSWORD, "1.0", "keepalive")
        host = rpc("host.get_all", s)[0]
        for i in range(3):
            names = [rpc("VM.get_name_label", s, vm) for vm in rpc("VM.get_all", s)[:5]]
            self.assertTrue(all(isinstance(n, str) for n in names))
            # a reply too big to cork, then small ones again
            status, data = call("POST", "/", xmlrpc.client.dumps((s,), "VM.get_all_records"),
                                {"Content-Type": "text/xml"})
            self.assertEqual(status, 200)
            self.assertGreater(len(data), 12 * 1024)
            self.assertEqual(len(xmlrpc.client.loads(data)[0][0]["Value"]), len(rpc("VM.get_all", s)))
            self.assertEqual(rpc("host.get_name_label", s, host), rpc("host.get_record", s, host)["name_label"])
            status, data = call("POST", "/", xmlrpc.client.dumps((s, host), "host.get_name_label"),
                                {"Content-Type": "text/xml"})
            self.assertEqual(xmlrpc.client.loads(data)[0][0]["Value"], rpc("host.get_name_label", s, host))
        # a small fixed reply (MHD corks the socket for it), which ends the connection
        self.assertEqual(call("OPTIONS", "/", last=True)[0], 200)
        c.close()

    def test_pipelined_requests_in_one_record(self):
        with self.connect() as sk:
            s = self.login(sk)
            reqs = [jsonrpc_request("host.get_all", [s], 10 + i) for i in range(3)]
            reqs.append(jsonrpc_request("session.get_this_host", [s, s], 13))
            sk.sendall(b"".join(reqs))  # one write: one TLS record
            replies = read_responses(sk, 4)
            host = json.loads(replies[3][2])["result"]
            for i, (status, _, body) in enumerate(replies[:3]):
                self.assertEqual(status, 200)
                self.assertEqual(json.loads(body), {"jsonrpc": "2.0", "id": 10 + i, "result": [host]})
            self.assertEqual(json.loads(replies[3][2])["id"], 13)

    def test_request_cut_into_a_record_per_byte(self):
        with self.connect() as sk:
            s = self.login(sk)
            for id in (20, 21):
                for b in jsonrpc_request("session.get_this_host", [s, s], id):
                    sk.sendall(bytes([b]))  # every write of an SSL socket is a record of its own
                (status, _, body), = read_responses(sk, 1)
                self.assertEqual(status, 200)
                self.assertTrue(json.loads(body)["result"].startswith("OpaqueRef:"))
                self.assertEqual(json.loads(body)["id"], id)


class RecordClient:
    """A TLS client over a plain socket through ssl.MemoryBIO: every write() is a TLS record of
    its own, and flush() sends all the records written since in one send(), so that they reach
    the server together and it reads them with one recv(). recv() reads like a socket's."""

    def __init__(self, port):
        self.sk = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ssl._create_unverified_context().wrap_bio(self.incoming, self.outgoing)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.fill()
        self.flush()

    def flush(self):
        data = self.outgoing.read()
        if data:
            self.sk.sendall(data)

    def fill(self):
        chunk = self.sk.recv(65536)
        if chunk:
            self.incoming.write(chunk)
        else:
            self.incoming.write_eof()

    def write(self, data):
        for i in range(0, len(data), 16384):  # a record holds at most 16 KiB
            self.tls.write(data[i:i + 16384])

    def recv(self, n):
        while True:
            try:
                return self.tls.read(n)
            except ssl.SSLWantReadError:
                self.flush()
                self.fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def close(self):
        self.sk.close()


class TestHTTPSRecordsTogether(WithTLSDaemon):
    """Several TLS records in one recv() of the server (it reads ahead of GnuTLS's record
    header): every one is answered, none waits behind a poll() of an empty socket."""

    def call(self, c, method, params, id):
        c.write(jsonrpc_request(method, params, id))
        c.flush()
        (status, _, body), = read_responses(c, 1)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["id"], id)
        return json.loads(body)["result"]

    def setUp(self):
        self.c = RecordClient(self.d.tls_port)
        self.addCleanup(self.c.close)
        self.s = self.call(self.c, "session.login_with_password", ["root", PASSWORD, "1.0", "records"], 1)

    def test_pipelined_requests_in_records_of_their_own(self):
        for i in range(4):
            self.c.write(jsonrpc_request("session.get_this_host", [self.s, self.s], 10 + i))
        self.c.flush()
        replies = read_responses(self.c, 4)
        self.assertEqual([json.loads(b)["id"] for _, _, b in replies], [10, 11, 12, 13])
        self.assertEqual(len({json.loads(b)["result"] for _, _, b in replies}), 1)

    def test_headers_and_body_in_two_records(self):
        req = jsonrpc_request("session.get_this_host", [self.s, self.s], 20)
        head_end = req.index(b"\r\n\r\n") + 4
        self.c.write(req[:head_end])  # as clients that write the headers and the body apart
        self.c.write(req[head_end:])
        self.c.flush()
        (status, _, body), = read_responses(self.c, 1)
        self.assertTrue(json.loads(body)["result"].startswith("OpaqueRef:"))
        self.assertEqual(self.call(self.c, "session.get_this_host", [self.s, self.s], 21), json.loads(body)["result"])

    def test_big_request_in_full_records_then_small_ones(self):
        name = "n" * (100 * 1024)  # seven records, more than one read of the server
        self.c.write(jsonrpc_request("VM.get_by_name_label", [self.s, name], 30))
        self.c.write(jsonrpc_request("session.get_this_host", [self.s, self.s], 31))
        self.c.flush()
        replies = read_responses(self.c, 2)
        self.assertEqual(json.loads(replies[0][2]), {"jsonrpc": "2.0", "id": 30, "result": []})
        self.assertEqual(json.loads(replies[1][2])["id"], 31)


class TestHTTPSCloseNotifyWithTheRequest(unittest.TestCase):
    """A client that sends its last request and its close_notify together: it gets the reply,
    and the connection ends then, not at the idle timeout (set far beyond the client's socket
    timeout here, so that a connection left waiting shows as that timeout)."""

    @classmethod
    def setUpClass(cls):
        cls.d = tls_daemon("connection_timeout = 600\n").start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_reply_then_the_end(self):
        c = RecordClient(self.d.tls_port)
        self.addCleanup(c.close)
        c.write(jsonrpc_request("session.login_with_password", ["root", PASSWORD, "1.0", "bye"], 1))
        c.flush()
        s = json.loads(read_responses(c, 1)[0][2])["result"]
        c.write(jsonrpc_request("session.get_this_host", [s, s], 2))
        with self.assertRaises(ssl.SSLWantReadError):
            c.tls.unwrap()  # our close_notify, into the same send as the request
        c.flush()
        data = read_to_end(c.sk)  # the server's records, up to its end of the connection
        c.incoming.write(data)
        reply = b""
        with self.assertRaises((ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError)):
            while True:
                reply += c.tls.read(65536)
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply[:80])
        self.assertTrue(reply.endswith(b'"id":2}'), reply[-80:])


class TestCloudStackConnectOverHTTPS(unittest.TestCase):
    """CloudStack's XenServer resource end to end over HTTPS, verification off
    (cloudstack.md: discovery, CheckXenHostInfo, then pingXAPI with the
    shipped echo plugin, sync and Async)."""

    @classmethod
    def setUpClass(cls):
        plugins = os.path.join(ROOT, "host", "plugins")
        cls.d = tls_daemon("plugin_dir = %s\nplugin_pythonpath = %s\n" % (plugins, os.path.join(ROOT, "host", "python")))
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_connect_sequence(self):
        x = https_proxy(self.d, ssl._create_unverified_context())
        # discovery
        s = ok(x.session.login_with_password("root", PASSWORD, "1.0", "cloudstack"))
        host = ok(x.session.get_this_host(s, s))
        self.assertGreaterEqual(int(ok(x.host.get_API_version_major(s, host))), 2)
        ok(x.host.get_API_version_minor(s, host))
        pool = ok(x.pool.get_all(s))[0]
        pool_uuid = ok(x.pool.get_record(s, pool))["uuid"]
        hosts = ok(x.host.get_all_records(s))
        self.assertEqual(list(hosts), [host])
        self.assertEqual(fail(x.pool_patch.get_by_uuid(s, "95ac709c-e408-423f-8d22-84b8134a149e"))[0], "UUID_INVALID")
        ok(x.session.logout(s))
        # CheckXenHostInfo, then the long-lived session
        s = ok(x.session.login_with_password("root", PASSWORD, "1.0", "cloudstack"))
        h = ok(x.host.get_by_uuid(s, hosts[host]["uuid"]))
        self.assertEqual(ok(x.host.get_record(s, h))["address"], hosts[host]["address"])
        self.assertEqual(ok(x.pool.get_all_records(s))[pool]["uuid"], pool_uuid)
        # pingXAPI
        self.assertTrue(ok(x.host.get_enabled(s, h)))
        self.assertEqual(ok(x.host.call_plugin(s, h, "echo", "main", {})), "args were: {}")
        task = ok(x.Async.host.call_plugin(s, h, "echo", "main", {"a": "1"}))
        rec = wait_task(x, s, task)
        self.assertEqual(rec["status"], "success", rec)
        self.assertEqual(rec["result"], "<value>args were: {'a': '1'}</value>")
        ok(x.task.destroy(s, task))
        ok(x.session.logout(s))


class TestHTTPSLimits(unittest.TestCase):
    """A stalled TLS handshake costs a connection slot of the TLS listener
    until connection_timeout, like any idle connection; others are served."""

    def setUp(self):
        self.d = tls_daemon("max_connections = 4\nconnection_timeout = 5\n").start()
        self.addCleanup(self.d.cleanup)

    def test_stalled_handshakes(self):
        d = self.d
        time.sleep(0.5)  # the start-up probe's connection is gone
        stalled = [socket.create_connection(("127.0.0.1", d.tls_port), timeout=30) for _ in range(3)]
        self.addCleanup(lambda: [sk.close() for sk in stalled])
        # below the limit, stalled handshakes cost others nothing: each has its own thread
        x = https_proxy(d, ssl._create_unverified_context())
        ok(x.session.login_with_password("root", PASSWORD, "1.0", "beside"))
        x("close")()
        time.sleep(0.3)
        stalled.append(socket.create_connection(("127.0.0.1", d.tls_port), timeout=30))
        for sk in stalled:  # each one holds a slot: accepted, and not closed
            sk.settimeout(0.3)
            with self.assertRaises(TimeoutError):
                sk.recv(100)
        # The TLS listener is full: a fifth client is closed before any handshake.
        with socket.create_connection(("127.0.0.1", d.tls_port), timeout=10) as raw:
            ctx = ssl._create_unverified_context()
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        # plain HTTP has its own slots
        p, s = d.login()
        ok(p.VM.get_all(s))
        # the stalled ones are dropped after connection_timeout (5 s), not kept forever
        for sk in stalled:
            sk.settimeout(30)
            self.assertLessEqual(len(read_to_end(sk)), 7)  # at most a TLS alert, then the end
        x = https_proxy(d, ssl._create_unverified_context())
        ok(x.session.login_with_password("root", PASSWORD, "1.0", "after"))


class TestCertificateFiles(unittest.TestCase):
    def test_same_certificate_after_restart(self):
        d = tls_daemon().start()
        self.addCleanup(d.cleanup)
        first = file_der(d.cert)
        d.restart()
        self.assertEqual(file_der(d.cert), first)
        self.assertEqual(served_certificate(d.tls_port), first)

    def test_configured_certificate_is_served(self):
        tmp = tempfile.mkdtemp(prefix="xenapid-cert-")
        cert, key = os.path.join(tmp, "my.crt"), os.path.join(tmp, "my.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=xenapid-test", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        d = tls_daemon("tls_certificate = %s\ntls_key = %s\n" % (cert, key)).start()
        self.addCleanup(d.cleanup)
        self.assertEqual(served_certificate(d.tls_port), file_der(cert))
        self.assertFalse(os.path.exists(d.cert))
        x = https_proxy(d, trusting(cert))
        ok(x.session.login_with_password("root", PASSWORD, "1.0", "mine"))

    def test_refuses_half_a_pair_or_a_bad_file(self):
        for name, content in (("key only", None), ("garbage", "not a certificate\n")):
            d = tls_daemon()
            self.addCleanup(d.cleanup)
            os.makedirs(d.state_dir, exist_ok=True)
            with open(d.key, "w") as f:
                f.write("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            if content is not None:
                with open(d.cert, "w") as f:
                    f.write(content)
            d.start(wait=False)
            self.assertNotEqual(d.wait_exit(timeout=15), 0, name)
            log = d.read_log()
            self.assertIn(d.cert if content is not None else d.key, log, name)

    def test_wildcard_address_certificate_names_every_address(self):
        d = tls_daemon()
        with open(d.config, "a") as f:
            f.write("listen_tls = 0.0.0.0:%d\n" % d.tls_port)
        d.start()
        self.addCleanup(d.cleanup)
        sans = ssl._ssl._test_decode_cert(d.cert)["subjectAltName"]
        self.assertIn(("DNS", socket.gethostname()), sans)
        self.assertIn(("IP Address", "127.0.0.1"), sans)  # lo is one of this host's addresses

    def test_bad_priorities_refuse_to_start(self):
        d = tls_daemon("tls_priorities = NO-SUCH-PRIORITY\n")
        self.addCleanup(d.cleanup)
        d.start(wait=False)
        self.assertNotEqual(d.wait_exit(timeout=15), 0)
        self.assertIn("cannot start the HTTPS server", d.read_log())

    def test_tls_only(self):
        d = tls_daemon('listen = ""\n')
        self.addCleanup(d.cleanup)
        plain = d.port
        d.port = d.tls_port  # what wait_ready polls
        d.start()
        x = https_proxy(d, trusting(d.cert))
        s = ok(x.session.login_with_password("root", PASSWORD, "1.0", "tls-only"))
        ok(x.VM.get_all(s))
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", plain), timeout=5).close()
        # a wrong password over TLS is the same XenAPI error
        self.assertEqual(fail(x.session.login_with_password("root", "wrong", "1.0", "t"))[0],
                         "SESSION_AUTHENTICATION_FAILED")


if __name__ == "__main__":
    unittest.main()
