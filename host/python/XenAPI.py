"""XenAPI client for Python 3, as host plugins and scripts expect it on a
XenServer/XCP-ng host: ``XenAPI.Session(url)``, ``XenAPI.xapi_local()`` for
the host's local socket, ``session.xenapi.<class>.<message>(...)`` (and
``session.xenapi.Async.<class>.<message>``), ``XenAPI.Failure``.

Shipped with xenapid (written for it; same interface as xapi's module).

``xapi_local()`` connects to the UNIX socket named by $XENAPID_LOCAL_SOCKET
(xenapid sets it for the plugins it runs) or else xapi's /var/lib/xcp/xapi.
"""

import os
import socket
import http.client
import xmlrpc.client

API_VERSION_1_1 = "1.1"
API_VERSION_1_2 = "1.2"

LOCAL_SOCKET = "/var/lib/xcp/xapi"
LOCAL_SOCKET_ENV = "XENAPID_LOCAL_SOCKET"
# The URL xapi_local() uses: the transport reads the socket path from its host
# part ('_' for '/'), unless it was given the path itself.
LOCAL_URL = "http://_var_lib_xcp_xapi/"

_RETRIES = 3


class Failure(Exception):
    """A XenAPI error: details is the ErrorDescription, [CODE, param, ...]."""

    def __init__(self, details):
        Exception.__init__(self, details)
        self.details = details

    def __str__(self):
        try:
            return str(self.details)
        except Exception as exn:  # pragma: no cover - str() of a list of strings
            return "Xen-API failure: %s" % exn

    def _details_map(self):
        return {str(i): d for i, d in enumerate(self.details)}


class UDSHTTPConnection(http.client.HTTPConnection):
    """HTTP over a UNIX socket: the path given, or the host with '_' read as '/'."""

    def __init__(self, host, path=None, **kwargs):
        http.client.HTTPConnection.__init__(self, host, **kwargs)
        self.socket_path = path or host.replace("_", "/")

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except Exception:
            sock.close()
            raise
        self.sock = sock


class UDSTransport(xmlrpc.client.Transport):
    """An xmlrpc.client transport to a UNIX socket (keep-alive, as Transport)."""

    def __init__(self, path=None, use_datetime=False):
        xmlrpc.client.Transport.__init__(self, use_datetime=use_datetime)
        self.socket_path = path

    def add_extra_header(self, key, value):
        self._extra_headers.append((key, value))

    def make_connection(self, host):
        self._extra_headers = []
        originator = os.environ.get("ORIGINATOR")
        if originator:
            self.add_extra_header("originator", originator)
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        self._connection = host, UDSHTTPConnection(host, path=self.socket_path)
        return self._connection[1]


def _not_implemented(name):
    def refuse(*args, **kwargs):
        raise NotImplementedError("XML-RPC proxies do not support Python's special methods", name)
    return refuse


class _Dispatcher:
    """session.xenapi.VM.get_record(ref) -> send("VM.get_record", (ref,))."""

    def __init__(self, send, name):
        self.__send = send
        self.__name = name

    def __repr__(self):
        return "<XenAPI._Dispatcher for %s>" % self.__name if self.__name else "<XenAPI._Dispatcher>"

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _Dispatcher(self.__send, name if self.__name is None else "%s.%s" % (self.__name, name))

    def __call__(self, *args):
        return self.__send(self.__name, args)


_SESSION_INVALID = object()


def _parse_result(result):
    """The Value of a {Status, Value} answer; Failure for an error;
    _SESSION_INVALID when the session must be made again."""
    if not isinstance(result, dict) or "Status" not in result:
        raise xmlrpc.client.Fault(500, "Missing Status in response from server: %r" % (result,))
    if result["Status"] == "Success":
        if "Value" not in result:
            raise xmlrpc.client.Fault(500, "Missing Value in response from server")
        return result["Value"]
    details = result.get("ErrorDescription")
    if not details:
        raise xmlrpc.client.Fault(500, "Missing ErrorDescription in response from server")
    if details[0] == "SESSION_INVALID":
        return _SESSION_INVALID
    raise Failure(details)


class Session(xmlrpc.client.ServerProxy):
    """A XenAPI connection and its session.

        session = XenAPI.Session("https://host/")
        session.xenapi.login_with_password("root", password, "1.0", "my-script")
        vms = session.xenapi.VM.get_all()
        session.xenapi.session.logout()
    """

    def __init__(self, uri, transport=None, encoding=None, verbose=False, allow_none=True, ignore_ssl=False):
        kwargs = {}
        if ignore_ssl:
            import ssl
            kwargs["context"] = ssl._create_unverified_context()
        xmlrpc.client.ServerProxy.__init__(self, uri, transport, encoding, bool(verbose), bool(allow_none),
                                           **kwargs)
        self.transport = transport
        self._session = None
        self.last_login_method = None
        self.last_login_params = None
        self._API_version = API_VERSION_1_1

    # --- calls ---
    def xenapi_request(self, methodname, params):
        """Calls methodname with the session first; login*/logout are handled here."""
        if methodname.startswith("login") or methodname.startswith("slave_local"):
            self._login(methodname, params)
            return None
        if methodname in ("logout", "session.logout"):
            self._logout()
            return None
        for _ in range(_RETRIES):
            result = _parse_result(getattr(self, methodname)(self._session, *params))
            if result is not _SESSION_INVALID:
                return result
            if not self.last_login_method:
                raise xmlrpc.client.Fault(401, "You must log in")
            self._login(self.last_login_method, self.last_login_params)
        raise xmlrpc.client.Fault(500, "Tried %d times to get a valid session, but failed" % _RETRIES)

    def _login(self, method, params):
        try:
            result = _parse_result(getattr(self, "session.%s" % method)(*params))
        except socket.timeout:
            raise xmlrpc.client.Fault(504, "The connection timed out")
        if result is _SESSION_INVALID:
            raise xmlrpc.client.Fault(500, "Received SESSION_INVALID when logging in")
        self._session = result
        self.last_login_method = method
        self.last_login_params = params
        self._API_version = None

    def _logout(self):
        try:
            if self.last_login_method and self.last_login_method.startswith("slave_local"):
                return _parse_result(getattr(self, "session.local_logout")(self._session))
            return _parse_result(getattr(self, "session.logout")(self._session))
        finally:
            self._session = None
            self.last_login_method = None
            self.last_login_params = None
            self._API_version = API_VERSION_1_1

    def _get_api_version(self):
        pool = self.xenapi.pool.get_all()[0]
        master = self.xenapi.pool.get_master(pool)
        return "%s.%s" % (self.xenapi.host.get_API_version_major(master),
                          self.xenapi.host.get_API_version_minor(master))

    @property
    def API_version(self):
        if not self._API_version:
            self._API_version = self._get_api_version()
        return self._API_version

    def __getattr__(self, name):
        if name == "handle":
            return self._session
        if name == "xenapi":
            return _Dispatcher(self.xenapi_request, None)
        if name.startswith("login") or name.startswith("slave_local"):
            return lambda *params: self._login(name, params)
        if name == "logout":
            return _Dispatcher(self.xenapi_request, "logout")
        if name.startswith("__") and name.endswith("__"):
            return _not_implemented(name)
        return xmlrpc.client.ServerProxy.__getattr__(self, name)


def local_socket_path():
    return os.environ.get(LOCAL_SOCKET_ENV) or LOCAL_SOCKET


def xapi_local():
    """A Session over this host's local socket (no login needed as root:
    ``session.xenapi.login_with_password("root", "")``)."""
    return Session(LOCAL_URL, transport=UDSTransport(local_socket_path()))
