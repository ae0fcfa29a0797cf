"""Runs a real xenapid for the integration tests and talks to it the way
clients do: Python's xmlrpc.client for XML-RPC, plain HTTP for JSON-RPC."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import xmlrpc.client

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("XENAPID_BUILD_DIR", os.path.join(ROOT, "build"))
BINARY = os.path.join(BUILD, "xenapid")
PASSWORD = "test-password-0"
START_TIMEOUT = 20.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One xenapid process on its own state dir, port and UNIX socket."""

    def __init__(self, state_dir=None, extra_config="", env=None, backend="sim"):
        self.tmp = tempfile.mkdtemp(prefix="xenapid-test-")
        self.state_dir = state_dir or os.path.join(self.tmp, "var")
        self.port = free_port()
        self.unix_socket = os.path.join(self.tmp, "xapi.sock")
        self.config = os.path.join(self.tmp, "xenapid.conf")
        self.accounts = os.path.join(self.tmp, "accounts")
        self.log_path = os.path.join(self.tmp, "xenapid.log")
        with open(self.config, "w") as f:
            f.write("listen = 127.0.0.1:%d\n" % self.port)
            f.write("state_dir = %s\n" % self.state_dir)
            f.write("unix_socket = %s\n" % self.unix_socket)
            f.write("accounts_file = %s\n" % self.accounts)
            f.write("backend = %s\n" % backend)
            f.write("auth_fail_delay_ms = 300\n")
            f.write("log_level = debug\n")
            f.write(extra_config)
        self.env = dict(os.environ)
        self.env["XENAPID_ROOT_PASSWORD"] = PASSWORD
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("JOURNAL_STREAM", None)
        if env:
            self.env.update(env)
        self.proc = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.port

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BINARY, "--config", self.config, "--foreground"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("xenapid exited with %s:\n%s" % (self.proc.returncode, self.read_log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("xenapid did not start listening:\n" + self.read_log())

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- clients ----
    def proxy(self, path="/"):
        return xmlrpc.client.ServerProxy("http://127.0.0.1:%d%s" % (self.port, path), allow_none=True)

    def login(self, proxy=None, user="root", password=PASSWORD):
        p = proxy or self.proxy()
        r = p.session.login_with_password(user, password, "1.0", "tests")
        assert r["Status"] == "Success", r
        return p, r["Value"]

    def http(self, method, path, body=b"", headers=None, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def jsonrpc(self, method, params, version=2, id=1):
        req = {"method": method, "params": params, "id": id}
        if version == 2:
            req["jsonrpc"] = "2.0"
        status, headers, body = self.http("POST", "/jsonrpc", json.dumps(req).encode(),
                                          {"Content-Type": "application/json"})
        assert status == 200, (status, body)
        return json.loads(body)


def ok(r):
    """The Value of a Success reply, or an assertion naming the failure."""
    assert isinstance(r, dict) and r.get("Status") == "Success", r
    return r["Value"]


def fail(r):
    """The ErrorDescription of a Failure reply."""
    assert isinstance(r, dict) and r.get("Status") == "Failure", r
    return r["ErrorDescription"]


class DaemonTest(unittest.TestCase):
    """A test class sharing one daemon and one logged-in session."""

    extra_config = ""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(extra_config=cls.extra_config).start()
        cls.x, cls.s = cls.d.login()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
