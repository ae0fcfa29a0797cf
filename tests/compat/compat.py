"""Shared pieces of the conformance tests: a daemon with the compat plugins
(tests/compat/plugins) and the shipped ones (host/plugins), and the clients'
own views of the wire. The daemon itself comes from tests/integration/harness.py.

The tests replay what the orchestrators do, in their order, and assert what
they parse: see /work/shared/clients/nova.md and cloudstack.md (their facts
are summarised in each test's docstring, so the tests stand without them).

Steps that wait for another open issue are marked unittest.expectedFailure
with the issue named beside them; they flip to unexpected successes (which
fail the run) when that work lands, so the mark must then be removed."""

import os
import shutil
import ssl
import sys
import tempfile
import unittest
import urllib.error
import urllib.request
import xmlrpc.client

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

from test_plugins import wait_for  # noqa: E402
from harness import NULL_REF, PASSWORD, REF_RE, ROOT, UUID_RE, check_record  # noqa: E402
from harness import free_port  # noqa: E402
from test_https import TLSDaemon  # noqa: E402

COMPAT_PLUGINS = os.path.join(HERE, "plugins")
SHIPPED_PLUGINS = os.path.join(ROOT, "host", "plugins")
HOST_PYTHON = os.path.join(ROOT, "host", "python")

# Each client's scheme is its class's (CloudStack speaks HTTPS only, Nova's
# connection_url is usually http://); XENAPID_COMPAT_SCHEME=http|https runs
# them all in one. Over HTTPS the daemon also listens on plain HTTP (as a
# XenServer host does on 80 and 443: CloudStack fetches statistics there).
SCHEME = os.environ.get("XENAPID_COMPAT_SCHEME")

__all__ = ["NULL_REF", "PASSWORD", "REF_RE", "UUID_RE", "check_record", "CompatTest", "XenAPIFailure", "is_ref",
           "wait_for"]


class XenAPIFailure(Exception):
    """A Failure reply as the clients' SDKs raise it: details = ErrorDescription."""

    def __init__(self, details):
        super().__init__(details)
        self.details = details


def is_ref(v):
    return isinstance(v, str) and bool(REF_RE.match(v))


def make_plugin_dir():
    """plugin_dir: symlinks to the compat and shipped plugins (xapi follows symlinks)."""
    d = tempfile.mkdtemp(prefix="xenapid-compat-plugins-")
    for src in (SHIPPED_PLUGINS, COMPAT_PLUGINS):
        for name in os.listdir(src):
            if not name.startswith("__"):
                os.symlink(os.path.join(src, name), os.path.join(d, name))
    return d


class CompatTest(unittest.TestCase):
    """One daemon per test class, with the compat plugins installed, and one
    logged-in client (client_class(proxy)) whose call() the tests use."""

    extra_config = ""
    scheme = "http"
    client_class = None

    @classmethod
    def setUpClass(cls):
        cls.scheme = SCHEME or cls.scheme
        cls.plugin_dir = make_plugin_dir()
        tls_port = free_port()
        cls.d = TLSDaemon(extra_config="plugin_dir = %s\nplugin_pythonpath = %s\nlisten_tls = 127.0.0.1:%d\n%s" % (
            cls.plugin_dir, HOST_PYTHON, tls_port, cls.extra_config))
        cls.d.tls_port = tls_port
        cls.d.start()
        cls.client = cls.client_class(cls.server_proxy())

    @classmethod
    def tearDownClass(cls):
        cls.client.proxy("close")()
        cls.d.cleanup()
        shutil.rmtree(cls.plugin_dir, ignore_errors=True)

    def call(self, method, *args):
        return self.client.call(method, *args)

    def assertIntString(self, v, what):
        """XenAPI int64 on the wire: an untyped string (Nova passes it to int(), the Java SDK to
        Long.valueOf((String) o), where an <int> fails the cast)."""
        self.assertIsInstance(v, str, what)
        self.assertRegex(v, r"^-?[0-9]+$", what)
        return int(v)

    @classmethod
    def url(cls, path=""):
        """The daemon's URL in this class's scheme; path "" is a URL with no path
        (xmlrpc.client then posts to /RPC2, as Nova's session does)."""
        return "%s://127.0.0.1:%d%s" % (cls.scheme, cls.d.tls_port if cls.scheme == "https" else cls.d.port, path)

    @classmethod
    def http(cls, method, path, body=b"", headers=None, timeout=10):
        """(status, headers, body) of one request in this class's scheme."""
        if cls.scheme != "https":
            return cls.d.http(method, path, body, headers, timeout)
        req = urllib.request.Request(cls.url(path), data=body or None, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=ssl._create_unverified_context()) as r:
                return r.status, dict(r.getheaders()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    @classmethod
    def server_proxy(cls, path="", allow_none=False):
        kw = {}
        if cls.scheme == "https":
            # Both clients trust any certificate and skip the host name check.
            kw["context"] = ssl._create_unverified_context()
        return xmlrpc.client.ServerProxy(cls.url(path), allow_none=allow_none, **kw)
