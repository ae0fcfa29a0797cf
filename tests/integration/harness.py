"""Runs a real xenapid for the integration tests and talks to it the way
clients do: Python's xmlrpc.client for XML-RPC, plain HTTP for JSON-RPC."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import xmlrpc.client
from xml.sax.saxutils import escape as xml_escape

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("XENAPID_BUILD_DIR", os.path.join(ROOT, "build"))
BINARY = os.path.join(BUILD, "xenapid")
PASSWORD = "test-password-0"
START_TIMEOUT = float(os.environ.get("XENAPID_START_TIMEOUT", "20"))
NULL_REF = "OpaqueRef:NULL"
REF_RE = re.compile(r"^OpaqueRef:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

with open(os.path.join(ROOT, "xapi", "schema", "classes.json")) as _f:
    SCHEMA = json.load(_f)
CLASSES = SCHEMA["classes"]
ENUMS = SCHEMA["enums"]


# What AddressSanitizer, LeakSanitizer and UBSan write when they find something
# (a daemon built with -DXENAPID_SANITIZE=ON): any of these in a daemon's log
# fails the test that ran it.
SANITIZER_REPORTS = re.compile(r"runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                               r"WARNING: AddressSanitizer|SUMMARY: UndefinedBehaviorSanitizer")
SANITIZER_OPTIONS = {
    # halt_on_error is not set: the report goes to the log and the test fails on it, while the
    # daemon keeps answering (the failure points at the first report, not at a timeout).
    "UBSAN_OPTIONS": "print_stacktrace=1:suppressions=%s" % os.path.join(ROOT, "tests", "ubsan.supp"),
    "ASAN_OPTIONS": "detect_leaks=1",
    "LSAN_OPTIONS": "suppressions=%s:print_suppressions=0" % os.path.join(ROOT, "tests", "lsan.supp"),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One xenapid process on its own state dir, port and UNIX socket.

    With config=False no config file is written: the daemon gets --listen and
    --state-dir (and args) on its command line and runs in cwd, as a user
    starting it by hand would. Every stop checks the daemon's log for
    sanitizer reports and, unless it was killed, its exit status."""

    def __init__(self, state_dir=None, extra_config="", env=None, backend="sim", config=True, args=(), cwd=None):
        self.tmp = tempfile.mkdtemp(prefix="xenapid-test-")
        self.state_dir = state_dir or os.path.join(self.tmp, "var")
        self.port = free_port()
        self.log_path = os.path.join(self.tmp, "xenapid.log")
        self.log_checked = 0  # how much of the log has been checked for sanitizer reports
        self.cwd = cwd
        self.args = list(args)
        if not config:
            self.config = None
            self.unix_socket = os.path.join(self.state_dir, "xapi.sock")
            self.accounts = os.path.join(self.state_dir, "accounts")
        else:
            self.unix_socket = os.path.join(self.tmp, "xapi.sock")
            self.config = os.path.join(self.tmp, "xenapid.conf")
            self.accounts = os.path.join(self.tmp, "accounts")
            self.write_config(backend, extra_config)
        self.env = dict(os.environ)
        for k, v in SANITIZER_OPTIONS.items():
            self.env.setdefault(k, v)
        self.env["XENAPID_ROOT_PASSWORD"] = PASSWORD
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("JOURNAL_STREAM", None)
        if env:
            self.env.update(env)
        self.proc = None

    def write_config(self, backend, extra_config):
        with open(self.config, "w") as f:
            f.write("listen = 127.0.0.1:%d\n" % self.port)
            f.write("state_dir = %s\n" % self.state_dir)
            f.write("unix_socket = %s\n" % self.unix_socket)
            f.write("accounts_file = %s\n" % self.accounts)
            f.write("backend = %s\n" % backend)
            f.write("auth_fail_delay_ms = 300\n")
            f.write("log_level = debug\n")
            f.write(extra_config)

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.port

    def command(self):
        if self.config:
            return [BINARY, "--config", self.config, "--foreground"] + self.args
        return [BINARY, "--listen", "127.0.0.1:%d" % self.port, "--state-dir", self.state_dir,
                "--foreground"] + self.args

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd)
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

    def check_log(self):
        """Fails on a sanitizer report in the log written since the last check."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_checked)
                data = f.read()
        except OSError:
            return
        self.log_checked += len(data)
        text = data.decode(errors="replace")
        m = SANITIZER_REPORTS.search(text)
        if m:
            start = text.rfind("\n", 0, max(0, m.start() - 2000)) + 1
            raise AssertionError("sanitizer report in the log of xenapid (%s):\n%s" %
                                 (self.log_path, text[start:m.start() + 6000]))

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stops the daemon; with SIGTERM (or SIGINT) it must exit with status 0 and
        its log must hold no sanitizer report, else the test fails."""
        if not self.proc:
            return None
        exited_before = self.proc.poll() is not None
        hung = False
        if not exited_before:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                hung = True
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        rc = self.proc.returncode
        self.proc = None
        self.check_log()
        if sig in (signal.SIGTERM, signal.SIGINT) and (rc != 0 or hung):
            raise AssertionError("xenapid %s with status %s:\n%s" % (
                "did not stop within %ss" % timeout if hung else "had exited" if exited_before else "stopped",
                rc, self.read_log()))
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def wait_exit(self, timeout=10):
        """For a daemon expected to refuse to start: its exit code."""
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            self.proc = None
        self.check_log()
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        """Stops the daemon and removes its files; they stay for a look if the stop failed the test."""
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

    def post_json(self, body):
        """POSTs raw bytes to /jsonrpc: (status, headers, parsed JSON or raw body)."""
        status, headers, data = self.http("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
        try:
            return status, headers, json.loads(data)
        except ValueError:
            return status, headers, data

    def post_xml(self, body, path="/"):
        """POSTs a raw XML-RPC body: (status, headers, raw reply bytes)."""
        if isinstance(body, str):
            body = body.encode()
        return self.http("POST", path, body, {"Content-Type": "text/xml"})

    def xml(self, body, path="/"):
        """POSTs a raw XML-RPC body and decodes the reply with xmlrpc.client: the result struct."""
        status, headers, data = self.post_xml(body, path)
        assert status == 200, (status, data)
        return xmlrpc.client.loads(data)[0][0]

    def unix_connection(self, timeout=10):
        return UnixHTTPConnection(self.unix_socket, timeout=timeout)

    def unix_proxy(self):
        """An xmlrpc.client proxy over the local UNIX socket."""
        path = self.unix_socket

        class Transport(xmlrpc.client.Transport):
            def make_connection(self, host):
                if not self._connection[1]:
                    self._connection = host, UnixHTTPConnection(path)
                return self._connection[1]

        return xmlrpc.client.ServerProxy("http://_var_lib_xcp_xapi/", transport=Transport(), allow_none=True)

    def raw_socket(self, timeout=10):
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over AF_UNIX (like XenAPI.xapi_local())."""

    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class BoundTransport(xmlrpc.client.Transport):
    """xmlrpc.client over connections from a given local address (e.g. 127.0.0.2: all of 127/8 is
    loopback on Linux), to be another client than 127.0.0.1 in the daemon's eyes."""

    def __init__(self, source, timeout=10):
        super().__init__()
        self.source = source
        self.timeout = timeout

    def make_connection(self, host):
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        chost, self._extra_headers, _ = self.get_host_info(host)
        self._connection = host, http.client.HTTPConnection(chost, timeout=self.timeout,
                                                            source_address=(self.source, 0))
        return self._connection[1]


def proxy_from(d, source, timeout=10):
    """An xmlrpc.client proxy to daemon d (or a base URL) from local address source."""
    url = d if isinstance(d, str) else d.url
    return xmlrpc.client.ServerProxy(url, transport=BoundTransport(source, timeout), allow_none=True)


def xml_value(v):
    """A Python value as an XML-RPC <value> the way xapi writes it: strings
    untyped. RawXML passes a fragment through."""
    if isinstance(v, RawXML):
        return v.xml
    if isinstance(v, bool):
        return "<value><boolean>%d</boolean></value>" % v
    if isinstance(v, int):
        return "<value><int>%d</int></value>" % v
    if isinstance(v, float):
        return "<value><double>%r</double></value>" % v
    if isinstance(v, str):
        return "<value>%s</value>" % xml_escape(v)
    if isinstance(v, (list, tuple)):
        return "<value><array><data>%s</data></array></value>" % "".join(xml_value(i) for i in v)
    if isinstance(v, dict):
        return "<value><struct>%s</struct></value>" % "".join(
            "<member><name>%s</name>%s</member>" % (xml_escape(k), xml_value(i)) for k, i in v.items())
    raise TypeError(v)


class RawXML:
    def __init__(self, xml):
        self.xml = xml


def xml_call(method, *params):
    """A methodCall body (str) with untyped strings (see xml_value)."""
    return '<?xml version="1.0"?><methodCall><methodName>%s</methodName><params>%s</params></methodCall>' % (
        xml_escape(method), "".join("<param>%s</param>" % xml_value(p) for p in params))


def ok(r):
    """The Value of a Success reply, or an assertion naming the failure."""
    assert isinstance(r, dict) and r.get("Status") == "Success", r
    return r["Value"]


def fail(r):
    """The ErrorDescription of a Failure reply."""
    assert isinstance(r, dict) and r.get("Status") == "Failure", r
    return r["ErrorDescription"]


def wait_task(x, s, task, timeout=10.0):
    """The record of an Async call's task once it is no longer pending."""
    deadline = time.monotonic() + timeout
    while ok(x.task.get_status(s, task)) == "pending":
        assert time.monotonic() < deadline, "task %s still pending" % task
        time.sleep(0.01)
    return ok(x.task.get_record(s, task))


# ---- object builders: complete constructor records ------------------------------

def vm_record(**over):
    """Every field VM.create requires, with plausible values."""
    rec = {
        "name_label": "test-vm", "name_description": "", "user_version": "1", "is_a_template": False,
        "affinity": NULL_REF, "memory_static_max": str(256 << 20), "memory_dynamic_max": str(256 << 20),
        "memory_dynamic_min": str(256 << 20), "memory_static_min": str(128 << 20), "VCPUs_params": {},
        "VCPUs_max": "1", "VCPUs_at_startup": "1", "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart", "actions_after_crash": "restart", "PV_bootloader": "",
        "PV_kernel": "", "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
        "HVM_boot_policy": "BIOS order", "HVM_boot_params": {"order": "cd"}, "platform": {}, "PCI_bus": "",
        "other_config": {}, "recommendations": "",
    }
    rec.update(over)
    return rec


def any_sr(x, s):
    """An SR to put test VDIs in: the first one, or the null ref while storage has none."""
    srs = ok(x.SR.get_all(s))
    return srs[0] if srs else NULL_REF


def new_sr(x, s, name="test-sr"):
    """A fresh SR without PBDs (SR.introduce), to attach test PBDs to; the null ref while the
    daemon has no SR.introduce."""
    import uuid
    r = x.SR.introduce(s, str(uuid.uuid4()), name, "", "file", "user", False, {})
    if r["Status"] == "Failure" and r["ErrorDescription"][0] == "MESSAGE_METHOD_UNKNOWN":
        return NULL_REF
    return ok(r)


def create_pbd(x, s, host, sr=None, device_config=None):
    rec = {"host": host, "SR": sr or new_sr(x, s), "device_config": device_config or {}}
    return ok(x.PBD.create(s, rec))


def new_pv_vm(x, s, name, memory=128 << 20):
    """A halted PV VM from the "Generic Linux PV" template, ready to start on the simulator."""
    tpl = ok(x.VM.get_by_name_label(s, "Generic Linux PV"))[0]
    vm = ok(x.VM.clone(s, tpl, name))
    ok(x.VM.set_is_a_template(s, vm, False))
    ok(x.VM.set_memory_limits(s, vm, str(memory), str(memory), str(memory), str(memory)))
    ok(x.VM.set_PV_kernel(s, vm, "/boot/vmlinuz"))
    return vm


def wait_for(pred, timeout=15.0, what="condition"):
    """pred()'s first true value, polled; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def create_vm(x, s, **over):
    return ok(x.VM.create(s, vm_record(**over)))


def create_vdi(x, s, **over):
    rec = {"name_label": "test-vdi", "name_description": "", "SR": any_sr(x, s), "virtual_size": str(1 << 30),
           "type": "user", "sharable": False, "read_only": False, "other_config": {}}
    rec.update(over)
    return ok(x.VDI.create(s, rec))


def create_vbd(x, s, vm, vdi, **over):
    rec = {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW", "type": "Disk",
           "empty": False, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
    rec.update(over)
    return ok(x.VBD.create(s, rec))


def create_network(x, s, **over):
    rec = {"name_label": "test-net", "name_description": "", "other_config": {}}
    rec.update(over)
    return ok(x.network.create(s, rec))


def create_vif(x, s, vm, net, **over):
    rec = {"device": "0", "network": net, "VM": vm, "MAC": "00:16:3e:00:00:01", "MTU": "1500",
           "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
    rec.update(over)
    return ok(x.VIF.create(s, rec))


def check_value(tc, type_text, v, where, fmt="xml"):
    """Asserts that a value read back has the wire shape of its datamodel type:
    fmt "xml" as decoded by xmlrpc.client, "json" as decoded by json.loads."""
    t = type_text.strip()
    if t.endswith(" map"):
        tc.assertIsInstance(v, dict, where)
        inner = t[1:-len(") map")]
        depth = 0
        for i, c in enumerate(inner):
            depth += c == "("
            depth -= c == ")"
            if depth == 0 and inner.startswith(" -> ", i):
                vt = inner[i + 4:]
                break
        for k, item in v.items():
            tc.assertIsInstance(k, str, where)
            check_value(tc, vt, item, "%s[%s]" % (where, k), fmt)
    elif t.endswith(" set"):
        tc.assertIsInstance(v, list, where)
        for i, item in enumerate(v):
            check_value(tc, t[:-len(" set")], item, "%s[%d]" % (where, i), fmt)
    elif t.endswith(" option"):
        check_value(tc, t[:-len(" option")], v, where, fmt)
    elif t == "int":
        if fmt == "xml":
            tc.assertIsInstance(v, str, where + ": ints are untyped strings")
            tc.assertRegex(v, r"^-?[0-9]+$", where)
        else:
            tc.assertTrue(isinstance(v, int) and not isinstance(v, bool), "%s: %r is not a JSON integer" % (where, v))
    elif t == "float":
        tc.assertIsInstance(v, float if fmt == "xml" else (int, float), where)
    elif t == "bool":
        tc.assertIsInstance(v, bool, where)
    elif t == "datetime":
        if fmt == "xml":
            tc.assertIsInstance(v, xmlrpc.client.DateTime, where)
            tc.assertRegex(v.value, r"^[0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$", where)
        else:
            tc.assertRegex(v, r"^[0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$", where)
    elif t.startswith("enum "):
        tc.assertIn(v, ENUMS[t[5:]], where + ": not a canonical enum value")
    elif t.endswith(" ref"):
        tc.assertIsInstance(v, str, where)
        tc.assertTrue(v == NULL_REF or REF_RE.match(v), "%s: %r is not a ref" % (where, v))
    elif t == "string":
        tc.assertIsInstance(v, str, where)
    elif t.endswith(" record"):
        tc.assertIsInstance(v, dict, where)
    else:
        raise AssertionError("unknown type %s" % t)


def check_record(tc, cls, rec, fmt="xml"):
    """Asserts that rec has every field of classes.json for cls, each with the right wire type."""
    fields = CLASSES[cls]["fields"]
    names = [f["name"] for f in fields if f["type"] != "<class> record"]
    tc.assertEqual(sorted(rec.keys()), sorted(names), "%s record fields" % cls)
    for f in fields:
        if f["name"] in rec:
            check_value(tc, f["type"], rec[f["name"]], "%s.%s" % (cls, f["name"]), fmt)
    if "uuid" in rec:
        tc.assertRegex(rec["uuid"], UUID_RE)


class DaemonTest(unittest.TestCase):
    """A test class sharing one daemon and one logged-in session."""

    extra_config = ""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(extra_config=cls.extra_config).start()
        cls.x, cls.s = cls.d.login()

    @classmethod
    def tearDownClass(cls):
        cls.x("close")()
        cls.d.cleanup()
