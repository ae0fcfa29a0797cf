"""The xe command (tools/xe.c) against a real daemon: output layout, --minimal, params=,
filters, map parameters, VM lifecycle, create commands, errors and exit codes, remote flags."""

import os
import socket
import ssl
import struct
import subprocess
import threading
import unittest

from harness import BUILD, PASSWORD, UUID_RE, Daemon
from test_https import tls_daemon

XE = os.path.join(BUILD, "xe")
MiB = 1 << 20


def ok(r):
    assert r["Status"] == "Success", r
    return r["Value"]


class XeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = tls_daemon().start()  # plain HTTP and HTTPS, as a XenServer host's 80 and 443
        cls.x, cls.s = cls.d.login()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def xe(self, *args, local=True, stdin=None):
        env = dict(os.environ)
        env.pop("XENAPID_LOCAL_SOCKET", None)
        env["XE_LOCAL_SOCKET"] = self.d.unix_socket if local else "/nonexistent/xapi"
        return subprocess.run([XE] + list(args), capture_output=True, text=True, env=env, input=stdin, timeout=60)

    def out(self, *args):
        r = self.xe(*args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def uuid(self, cls, ref):
        return ok(getattr(self.x, cls).get_uuid(self.s, ref))

    def dom0(self):
        for ref, rec in ok(self.x.VM.get_all_records(self.s)).items():
            if rec["is_control_domain"]:
                return ref, rec
        raise AssertionError("no dom0")

    def install(self, name):
        u, ref = self.install_with(name)
        self.assertRegex(u, UUID_RE)
        return u, ref

    # ---- layout ----
    def test_vm_list_layout_is_xes(self):
        _, dom0 = self.dom0()
        out = self.out("vm-list", "is-control-domain=true")
        self.assertEqual(out, "uuid ( RO)           : %s\n"
                              "     name-label ( RW): %s\n"
                              "    power-state ( RO): running\n\n\n" % (dom0["uuid"], dom0["name_label"]))

    def test_templates_are_not_in_vm_list(self):
        out = self.out("vm-list")
        self.assertNotIn("Generic Linux PV", out)
        self.assertIn("Generic Linux PV", self.out("template-list"))

    def test_minimal_and_params(self):
        u, _ = self.install("minimal-a")
        _, dom0 = self.dom0()
        got = self.out("vm-list", "--minimal").strip().split(",")
        self.assertIn(u, got)
        self.assertIn(dom0["uuid"], got)
        self.assertEqual(self.out("vm-list", "uuid=" + u, "params=name-label", "--minimal"), "minimal-a\n")
        self.assertEqual(self.out("vm-list", "name-label=nothing-has-this", "--minimal"), "\n")
        # params= prints in record order, not in the order asked
        self.assertEqual(self.out("vm-list", "uuid=" + u, "params=power-state,uuid"),
                         "uuid ( RO)           : %s\n    power-state ( RO): halted\n\n\n" % u)

    def test_minimal_escapes_commas(self):
        u, ref = self.install("a,b\\c")
        self.assertEqual(self.out("vm-list", "uuid=" + u, "params=name-label", "--minimal"), "a\\,b\\\\c\n")

    def test_markup_and_utf8_in_values(self):
        # the reply decoder (tools/xe_value.c) decodes entities and passes UTF-8 through
        name = "<web & \"db\" 'é' ☃>"
        u, ref = self.install(name)
        ok(self.x.VM.add_to_other_config(self.s, ref, "a&b", "x<y"))
        self.assertEqual(self.out("vm-param-get", "uuid=" + u, "param-name=name-label"), name + "\n")
        self.assertEqual(self.out("vm-param-get", "uuid=" + u, "param-name=other-config", "param-key=a&b"), "x<y\n")
        self.assertEqual(self.out("vm-list", "name-label=" + name, "--minimal"), u + "\n")

    def test_filters(self):
        u, ref = self.install("filter-me")
        ok(self.x.VM.add_to_other_config(self.s, ref, "team", "blue"))
        self.assertEqual(self.out("vm-list", "other-config:team=blue", "--minimal"), u + "\n")
        self.assertEqual(self.out("vm-list", "other-config-team=blue", "--minimal"), u + "\n")
        self.assertEqual(self.out("vm-list", "other-config:team=red", "--minimal"), "\n")
        halted = self.out("vm-list", "power-state=halted", "--minimal").strip().split(",")
        self.assertIn(u, halted)
        self.assertNotIn(self.dom0()[1]["uuid"], halted)

    # ---- params ----
    def test_param_set_get_and_maps(self):
        u, ref = self.install("param-vm")
        self.assertEqual(self.out("vm-param-set", "uuid=" + u, "name-description=hello", "other-config:k=v"), "")
        rec = ok(self.x.VM.get_record(self.s, ref))
        self.assertEqual(rec["name_description"], "hello")
        self.assertEqual(rec["other_config"]["k"], "v")
        self.out("vm-param-set", "uuid=" + u, "other-config:k=w")
        self.assertEqual(ok(self.x.VM.get_other_config(self.s, ref))["k"], "w")
        self.assertEqual(self.out("vm-param-get", "uuid=" + u, "param-name=other-config", "param-key=k"), "w\n")
        self.assertEqual(self.out("vm-param-get", "uuid=" + u, "param-name=name-description"), "hello\n")
        self.out("vm-param-set", "uuid=" + u, "VCPUs-at-startup=1", "HVM-shadow-multiplier=2.0")
        self.assertEqual(self.out("vm-param-get", "uuid=" + u, "param-name=HVM-shadow-multiplier"), "2.000\n")
        r = self.xe("vm-param-get", "uuid=" + u, "param-name=other-config", "param-key=absent")
        self.assertEqual((r.returncode, r.stderr), (1, "Error: Key absent not found in map\n"))
        r = self.xe("vm-param-set", "uuid=" + u, "power-state=running")
        self.assertEqual((r.returncode, r.stderr), (1, "Error: Field 'power-state' is read-only.\n"))
        r = self.xe("vm-param-set", "uuid=" + u, "other-config=x")
        self.assertEqual((r.returncode, r.stderr),
                         (1, "Error: Field 'other-config' is a map or set. use the 'name:key=value' syntax.\n"))

    def test_param_list_markers(self):
        u, _ = self.install("markers")
        out = self.out("vm-param-list", "uuid=" + u)
        lines = out.split("\n")
        self.assertTrue(lines[0].startswith("uuid ( RO)"))
        width = lines[0].index(":")
        for line in lines[1:]:
            if line:
                self.assertEqual(line.index(": ") if ": " in line else line.index(":"), width, line)
        self.assertRegex(out, r"\n +name-label \( RW\): markers\n")
        self.assertRegex(out, r"\n +other-config \(MRW\): ")
        self.assertRegex(out, r"\n +allowed-operations \(SRO\): ")
        self.assertRegex(out, r"\n +is-a-template \( RW\): false\n")
        self.assertTrue(out.endswith("\n\n\n"))

    # ---- lifecycle ----
    def test_vm_lifecycle(self):
        u, ref = self.install("life")
        self.assertFalse(ok(self.x.VM.get_is_a_template(self.s, ref)))
        self.assertEqual(self.out("vm-start", "uuid=" + u), "")
        self.assertEqual(ok(self.x.VM.get_power_state(self.s, ref)), "Running")
        self.assertEqual(self.out("vm-list", "power-state=running", "uuid=" + u, "--minimal"), u + "\n")
        r = self.xe("vm-start", "vm=life")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith("You attempted an operation on a VM that was not in an appropriate "
                                            "power state"), r.stderr)
        self.assertIn("\nvm: %s (life)\nexpected: halted\nactual: running\n" % u, r.stderr)
        self.out("vm-reboot", "vm=" + u, "--force")
        self.assertEqual(ok(self.x.VM.get_power_state(self.s, ref)), "Running")
        self.out("vm-shutdown", "uuid=" + u, "--force")
        self.assertEqual(ok(self.x.VM.get_power_state(self.s, ref)), "Halted")
        vbds = ok(self.x.VM.get_VBDs(self.s, ref))
        disks = [ok(self.x.VBD.get_VDI(self.s, b)) for b in vbds if ok(self.x.VBD.get_type(self.s, b)) == "Disk"]
        r = self.xe("vm-uninstall", "uuid=" + u, stdin="no\n")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(ok(self.x.VM.get_uuid(self.s, ref)), u)
        self.assertEqual(self.out("vm-uninstall", "uuid=" + u, "--force"), "All objects destroyed\n")
        self.assertEqual(self.x.VM.get_uuid(self.s, ref)["ErrorDescription"][0], "HANDLE_INVALID")
        for vdi in disks:
            self.assertEqual(self.x.VDI.get_uuid(self.s, vdi)["ErrorDescription"][0], "HANDLE_INVALID")

    def test_vm_install_puts_disks_on_the_sr_given(self):
        host = ok(self.x.host.get_all(self.s))[0]
        where = os.path.join(self.d.tmp, "sr2")
        os.makedirs(where)
        sr = ok(self.x.SR.create(self.s, host, {"location": where}, "0", "second", "", "file", "user", False, {}))
        sr_uuid = self.uuid("SR", sr)
        for args, want in ((["sr-uuid=" + sr_uuid], sr), ([], None)):
            u, ref = self.install_with("on-sr", *args)
            vdis = [ok(self.x.VBD.get_VDI(self.s, b)) for b in ok(self.x.VM.get_VBDs(self.s, ref))
                    if ok(self.x.VBD.get_type(self.s, b)) == "Disk"]
            self.assertTrue(vdis)
            for vdi in vdis:
                if want:
                    self.assertEqual(ok(self.x.VDI.get_SR(self.s, vdi)), want)
                else:
                    self.assertNotEqual(ok(self.x.VDI.get_SR(self.s, vdi)), sr)
            self.out("vm-uninstall", "uuid=" + u, "--force")

    def install_with(self, name, *args):
        r = self.xe("vm-install", "template=Generic Linux PV", "new-name-label=" + name, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        u = r.stdout.strip()
        return u, ok(self.x.VM.get_by_uuid(self.s, u))

    # ---- create commands and the other classes ----
    def test_vdi_vbd_vif(self):
        sr_uuid = self.out("sr-list", "type=ext", "name-label=Local storage", "--minimal").strip()
        self.assertRegex(sr_uuid, UUID_RE)
        vdi = self.out("vdi-create", "sr-uuid=" + sr_uuid, "name-label=disk1", "virtual-size=4MiB",
                       "other-config:purpose=test").strip()
        self.assertRegex(vdi, UUID_RE)
        vref = ok(self.x.VDI.get_by_uuid(self.s, vdi))
        rec = ok(self.x.VDI.get_record(self.s, vref))
        self.assertEqual((rec["virtual_size"], rec["type"], rec["other_config"]["purpose"]),
                         (str(4 * MiB), "user", "test"))
        out = self.out("vdi-list", "uuid=" + vdi)
        self.assertEqual(out, "uuid ( RO)                : %s\n"
                              "          name-label ( RW): disk1\n"
                              "    name-description ( RW): \n"
                              "             sr-uuid ( RO): %s\n"
                              "        virtual-size ( RO): %d\n"
                              "            sharable ( RO): false\n"
                              "           read-only ( RO): false\n\n\n" % (vdi, sr_uuid, 4 * MiB))
        vm, vmref = self.install("devices")
        vbd = self.out("vbd-create", "vm-uuid=" + vm, "vdi-uuid=" + vdi, "device=3").strip()
        bref = ok(self.x.VBD.get_by_uuid(self.s, vbd))
        brec = ok(self.x.VBD.get_record(self.s, bref))
        self.assertEqual((brec["VM"], brec["VDI"], brec["userdevice"], brec["mode"], brec["type"]),
                         (vmref, vref, "3", "RW", "Disk"))
        self.assertIn("vm-name-label ( RO): devices\n", self.out("vbd-list", "uuid=" + vbd))
        net = self.out("network-list", "bridge=xenbr0", "--minimal").strip()
        vif = self.out("vif-create", "vm-uuid=" + vm, "network-uuid=" + net, "device=0").strip()
        fref = ok(self.x.VIF.get_by_uuid(self.s, vif))
        self.assertEqual(ok(self.x.VIF.get_network(self.s, fref)), ok(self.x.network.get_by_uuid(self.s, net)))
        self.assertEqual(self.out("vif-list", "vm-uuid=" + vm, "--minimal"), vif + "\n")
        ok(self.x.VBD.destroy(self.s, bref))
        self.assertEqual(self.out("vdi-destroy", "uuid=" + vdi), "")
        self.assertEqual(self.out("vdi-list", "uuid=" + vdi, "--minimal"), "\n")
        r = self.xe("vdi-create", "sr-uuid=" + sr_uuid, "name-label=x")
        self.assertEqual((r.returncode, r.stderr),
                         (1, "Required parameter not found: virtual-size\nFor usage run: 'xe help'\n"))

    def test_host_sr_pbd_network_pif_task(self):
        host = ok(self.x.host.get_all(self.s))[0]
        hrec = ok(self.x.host.get_record(self.s, host))
        self.assertEqual(self.out("host-list"),
                         "uuid ( RO)                : %s\n"
                         "          name-label ( RW): %s\n"
                         "    name-description ( RW): %s\n\n\n"
                         % (hrec["uuid"], hrec["name_label"], hrec["name_description"]))
        self.assertEqual(self.out("host-param-get", "uuid=" + hrec["uuid"], "param-name=API-version-major"),
                         "%s\n" % hrec["API_version_major"])
        plist = self.out("host-param-list", "uuid=" + hrec["uuid"])
        self.assertRegex(plist, r"\n +cpu_info \(MRO\): ")
        self.assertRegex(plist, r"\n +enabled \( RO\): true\n")
        sr = self.out("sr-list", "type=ext")
        self.assertIn("               host ( RO): %s\n" % hrec["name_label"], sr)
        self.assertIn("       content-type ( RO): ", sr)
        pif = ok(self.x.PIF.get_all(self.s))[0]
        prec = ok(self.x.PIF.get_record(self.s, pif))
        out = self.out("pif-list", "uuid=" + prec["uuid"])
        labels = [line.split("(")[0].strip() for line in out.strip().split("\n")]
        self.assertEqual(labels, ["uuid", "device", "MAC", "currently-attached", "VLAN", "network-uuid", "host-uuid"])
        self.assertIn("host-uuid ( RO): %s\n" % hrec["uuid"], out)
        pbd = self.out("pbd-list", "host-uuid=" + hrec["uuid"])
        self.assertIn("device-config (MRO): path: ", pbd)
        self.assertIn("xenbr0", self.out("network-list", "params=bridge"))
        task = ok(self.x.task.create(self.s, "xe-task", "for xe"))
        tu = self.uuid("task", task)
        out = self.out("task-list", "uuid=" + tu)
        self.assertEqual(out, "uuid ( RO)                : %s\n"
                              "          name-label ( RO): xe-task\n"
                              "    name-description ( RO): for xe\n"
                              "              status ( RO): pending\n"
                              "            progress ( RO): 0.000\n\n\n" % tu)

    # ---- errors, exit codes, connection ----
    def test_errors_and_exit_codes(self):
        r = self.xe("vm-param-list", "uuid=nonexistent")
        self.assertEqual((r.returncode, r.stdout, r.stderr),
                         (1, "", "The uuid you supplied was invalid.\ntype: VM\nuuid: nonexistent\n"))
        r = self.xe("no-such-command")
        self.assertEqual((r.returncode, r.stderr), (1, "Unknown command: no-such-command\nFor usage run: 'xe help'\n"))
        r = self.xe("vm-param-get", "uuid=x")
        self.assertEqual((r.returncode, r.stderr),
                         (1, "Required parameter not found: param-name\nFor usage run: 'xe help'\n"))
        r = self.xe("vm-list", "stray")
        self.assertEqual((r.returncode, r.stderr), (1, "Syntax error: stray\nFor usage run: 'xe help'\n"))
        r = self.xe("vm-list", "-p", str(self.d.port), "-u", "root", "-pw", "wrong", "--nossl", local=False)
        self.assertEqual((r.returncode, r.stderr), (1, "Authentication failed\nFor usage run: 'xe help'\n"))

    def test_remote_flags(self):
        _, dom0 = self.dom0()
        args = ["-s", "127.0.0.1", "-p", str(self.d.port), "-u", "root", "-pw", PASSWORD, "--nossl"]
        r = self.xe("vm-list", "is-control-domain=true", "--minimal", *args, local=False)
        self.assertEqual((r.returncode, r.stdout), (0, dom0["uuid"] + "\n"), r.stderr)
        pwf = os.path.join(self.d.tmp, "pwfile")
        with open(pwf, "w") as f:
            f.write("root\n%s\n" % PASSWORD)
        r = self.xe("host-list", "--minimal", "-p", str(self.d.port), "-pwf", pwf, "--nossl", local=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        # XE_EXTRA_ARGS and ~/.xe, the command line first
        home = os.path.join(self.d.tmp, "home")
        os.makedirs(home, exist_ok=True)
        with open(os.path.join(home, ".xe"), "w") as f:
            f.write("# defaults\nport=%d\nnossl=true\nusername=root\n" % self.d.port)
        env = dict(os.environ, HOME=home, XE_LOCAL_SOCKET="/nonexistent/xapi",
                   XE_EXTRA_ARGS="password=%s,name-label=a\\,b" % PASSWORD)
        self.install("a,b")
        r = subprocess.run([XE, "vm-list", "--minimal", "params=name-label"], capture_output=True, text=True,
                           env=env, timeout=60)
        self.assertEqual((r.returncode, r.stdout), (0, "a\\,b\n"), r.stderr)
        r = subprocess.run([XE, "vm-list", "--minimal", "-pw", "wrong"], capture_output=True, text=True, env=env,
                           timeout=60)
        self.assertEqual((r.returncode, r.stderr), (1, "Authentication failed\nFor usage run: 'xe help'\n"))
        # no local socket and nothing on the port: xe's message
        r = self.xe("vm-list", "-s", "127.0.0.1", "-p", "1", "--nossl", local=False)
        self.assertEqual((r.returncode, r.stderr),
                         (1, "Unable to contact server. Please check server and port settings.\n"))
        # a remote host is HTTPS by default: the plain-HTTP test port does not answer TLS
        r = self.xe("vm-list", "-s", "localhost", "-p", str(self.d.port), "-pw", PASSWORD, local=False)
        self.assertEqual((r.returncode, r.stderr),
                         (1, "Unable to contact server. Please check server and port settings.\n"))

    def tls_proxy(self):
        """A TLS front for the daemon's plain port (as stunnel on a xapi host): (port, cert file)."""
        cert, key = os.path.join(self.d.tmp, "cert.pem"), os.path.join(self.d.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        lsock = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(lsock.close)

        def pipe(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()

        def serve():
            while True:
                try:
                    conn, _ = lsock.accept()
                    tls = ctx.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    if lsock.fileno() < 0:
                        return
                    continue
                up = socket.create_connection(("127.0.0.1", self.d.port))
                threading.Thread(target=pipe, args=(tls, up), daemon=True).start()
                threading.Thread(target=pipe, args=(up, tls), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return lsock.getsockname()[1], cert

    def test_https_to_a_remote_host(self):
        port, cert = self.tls_proxy()
        _, dom0 = self.dom0()
        args = ["-s", "localhost", "-p", str(port), "-pw", PASSWORD, "vm-list", "is-control-domain=true", "--minimal"]
        r = self.xe(*args, local=False)  # not verified by default, as xe's stunnel
        self.assertEqual((r.returncode, r.stdout), (0, dom0["uuid"] + "\n"), r.stderr)
        r = self.xe(*args, "cafile=" + cert, local=False)
        self.assertEqual((r.returncode, r.stdout), (0, dom0["uuid"] + "\n"), r.stderr)
        other = os.path.join(self.d.tmp, "other.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=other", "-keyout", other + ".key", "-out", other], check=True, capture_output=True)
        r = self.xe(*args, "cafile=" + other, local=False)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")

    def test_bad_replies_are_errors_not_crashes(self):
        """A server answering garbage: xe says so and exits 1, whatever the bytes."""
        import http.server

        ok_login = (b"<?xml version='1.0'?><methodResponse><params><param><value><struct><member><name>Status"
                    b"</name><value>Success</value></member><member><name>Value</name><value>OpaqueRef:x</value>"
                    b"</member></struct></value></param></params></methodResponse>")
        replies = [
            b"", b"<", b"not xml", b"<methodResponse>", b"<methodResponse><params><param><value>",
            b"<methodResponse><params><param>" + b"<value><array><data>" * 5000 + b"</methodResponse>",
            b"<methodResponse><params><param><value><struct><member><name>Status</name><value>&bogus;"
            b"</value></member></struct></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><struct><member><name>Status</name><value>&#0;</value>"
            b"</member></struct></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><struct></struct></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value>"
            b"</member><member><name>ErrorDescription</name><value><array><data/></array></value></member>"
            b"</struct></value></param></params></methodResponse>",
            b"<!DOCTYPE x [<!ENTITY a 'b'>]><methodResponse/>",
            b"<methodResponse><fault><value><struct><member><name>faultString</name><value>boom</value>"
            b"</member></struct></value></fault></methodResponse>",
            b"<methodResponse><params><param><value><int>1</int>\x00\xff</value></param></params></methodResponse>",
        ]
        state = {"reply": b""}

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                out = ok_login if b"login_with_password" in body else state["reply"]
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        for reply in replies:
            state["reply"] = reply
            r = self.xe("vm-list", "-p", str(srv.server_address[1]), "--nossl", local=False)
            self.assertEqual(r.returncode, 1, (reply[:80], r.stdout, r.stderr))
            self.assertEqual(r.stdout, "")
            self.assertNotEqual(r.stderr, "")

    # ---- the server side: xapi's thin CLI protocol on POST /cli, as a stock xe speaks it ----
    def thin_cli(self, *args, user="root", password=PASSWORD, hello=b"XenSource thin CLI protocol", tls=False):
        """A client of the protocol as xapi's xe (newcli.ml) speaks it: (exit code, stdout, stderr).
        tls: as a stock `xe -s HOST` does by default, over TLS to the HTTPS port (stunnel there)."""
        body = "\n".join(list(args) + ["username=" + user, "password=" + password]).encode()
        s = socket.create_connection(("127.0.0.1", self.d.tls_port if tls else self.d.port), timeout=60)
        if tls:
            s = ssl._create_unverified_context().wrap_socket(s, server_hostname="127.0.0.1")
        self.addCleanup(s.close)
        s.sendall(b"POST /cli HTTP/1.0\r\nUser-agent: xe-cli/Unix/0.2\r\noriginator: cli\r\n"
                  b"content-length: %d\r\n\r\n" % len(body) + body)

        def recvn(n):
            data = b""
            while len(data) < n:
                chunk = s.recv(n - len(data))
                if not chunk:
                    raise EOFError(data)
                data += chunk
            return data

        self.assertEqual(recvn(27), b"XenSource thin CLI protocol")
        self.assertEqual(struct.unpack("<ii", recvn(8)), (0, 2))
        s.sendall(hello + struct.pack("<ii", 0, 2))
        out, err = "", ""
        while True:
            (length,) = struct.unpack("<i", recvn(4))
            payload = recvn(length)
            msg, cmd = struct.unpack_from("<ii", payload)
            self.assertEqual(msg, 9)
            if cmd in (0, 16):
                (slen,) = struct.unpack_from("<i", payload, 8)
                self.assertEqual(len(payload), 12 + slen)
                text = payload[12:12 + slen].decode()
                if cmd == 0:
                    out += text + "\n"
                else:
                    err += text
            else:
                self.assertEqual(cmd, 4)
                return struct.unpack_from("<i", payload, 8)[0], out, err

    def test_thin_cli_protocol(self):
        u, _ = self.install("over-cli")
        for args in (["vm-list"], ["vm-list", "--minimal", "params=uuid"], ["vm-param-list", "uuid=" + u],
                     ["vm-param-get", "uuid=" + u, "param-name=name-label"], ["host-list"],
                     ["vm-param-list", "uuid=nonexistent"], ["no-such-command"]):
            r = self.xe(*args)
            self.assertEqual(self.thin_cli(*args), (r.returncode, r.stdout, r.stderr), args)
        code, out, err = self.thin_cli("vm-param-set", "uuid=" + u, "name-description=set over /cli")
        self.assertEqual((code, out, err), (0, "", ""))
        self.assertEqual(self.out("vm-param-get", "uuid=" + u, "param-name=name-description"), "set over /cli\n")
        self.assertEqual(self.thin_cli("vm-list", password="wrong"),
                         (1, "", "Authentication failed\nFor usage run: 'xe help'\n"))
        # a first line session_id= (xapi's member-to-master forwarding) stands for the password
        r = self.xe("vm-list", "--minimal")
        self.assertEqual(self.thin_cli("session_id=" + self.s, "vm-list", "--minimal", password=""),
                         (0, r.stdout, ""))
        self.assertEqual(self.thin_cli("session_id=OpaqueRef:nonsense", "vm-list", password="")[0], 1)
        # not a thin CLI client: the connection just closes, the daemon goes on
        with self.assertRaises(EOFError):
            self.thin_cli("vm-list", hello=b"GET / HTTP/1.0\r\n\r\n" + b" " * 16)
        self.assertEqual(self.out("vm-list", "uuid=" + u, "--minimal"), u + "\n")

    def test_thin_cli_protocol_over_tls(self):
        u, _ = self.install("over-cli-tls")
        for args in (["vm-list"], ["vm-param-list", "uuid=" + u], ["no-such-command"]):
            r = self.xe(*args)
            self.assertEqual(self.thin_cli(*args, tls=True), (r.returncode, r.stdout, r.stderr), args)
        self.assertEqual(self.thin_cli("vm-param-set", "uuid=" + u, "name-description=set over TLS", tls=True),
                         (0, "", ""))
        self.assertEqual(self.out("vm-param-get", "uuid=" + u, "param-name=name-description"), "set over TLS\n")
        self.assertEqual(self.thin_cli("vm-list", password="wrong", tls=True),
                         (1, "", "Authentication failed\nFor usage run: 'xe help'\n"))
        # an output larger than one TLS record (16 KiB) comes whole
        long_text = "".join("%05d " % i for i in range(5000))
        self.assertEqual(self.thin_cli("vm-param-set", "uuid=" + u, "name-description=" + long_text, tls=True),
                         (0, "", ""))
        self.assertEqual(self.thin_cli("vm-param-get", "uuid=" + u, "param-name=name-description", tls=True),
                         (0, long_text + "\n", ""))
        with self.assertRaises((EOFError, ssl.SSLError, ConnectionError)):
            self.thin_cli("vm-list", hello=b"GET / HTTP/1.0\r\n\r\n" + b" " * 16, tls=True)
        self.assertEqual(self.out("vm-list", "uuid=" + u, "--minimal"), u + "\n")

    def test_help_lists_commands_for_completion(self):
        cmds = self.out("help", "--minimal").strip().split(",")
        for c in ("vm-list", "vm-install", "vm-param-set", "vdi-create", "task-list", "pif-list"):
            self.assertIn(c, cmds)
        params = self.out("help", "vm-param-set")
        self.assertIn(" name-label,", params)
        self.assertIn(" other-config:,", params)
        self.assertNotIn(" power-state,", params)

    def complete(self, line):
        """COMPREPLY of tools/xe-completion.bash for the command line typed so far."""
        script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "tools", "xe-completion.bash")
        prog = ('source "$1"; COMP_LINE="$2"; COMP_POINT=${#2}; read -ra COMP_WORDS <<< "$2"; '
                '[[ $2 == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _xe; '
                'printf "%s\\n" "${COMPREPLY[@]}"')
        env = dict(os.environ, PATH=BUILD + ":" + os.environ["PATH"], XE_LOCAL_SOCKET=self.d.unix_socket)
        r = subprocess.run(["bash", "-c", prog, "bash", script, line], capture_output=True, text=True, env=env,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return sorted(w for w in r.stdout.split("\n") if w)

    def test_bash_completion(self):
        u, _ = self.install("complete-me")
        self.assertEqual(self.complete("xe vm-par"), ["vm-param-get", "vm-param-list", "vm-param-set"])
        self.assertIn("uuid=", self.complete("xe vm-start "))
        self.assertIn(u, self.complete("xe vm-start uuid="))
        self.assertEqual(self.complete("xe vm-param-get param-name=power"), ["power-state"])
        self.assertIn("other-config:", self.complete("xe vm-param-set other"))


if __name__ == "__main__":
    unittest.main()
