"""host.call_plugin and Async.host.call_plugin: xapi's host plugins, run from
plugin_dir with host/python's XenAPI and XenAPIPlugin modules (PYTHONPATH
from plugin_pythonpath, as the tests do not install them), calling back into
the daemon through the local socket it names in XENAPID_LOCAL_SOCKET.

The plugins are the tests' own (tests/integration/plugins), written the way
os-xenapi's (pickled calls, JSON replies) and CloudStack's (XenAPIPlugin.dispatch,
string maps in, strings out) are, plus the shipped host/plugins/echo."""

import ast
import contextlib
import json
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
import unittest
import xmlrpc.client

from harness import Daemon, ROOT, ok, fail, wait_for

TEST_PLUGINS = os.path.join(ROOT, "tests", "integration", "plugins")
SHIPPED_PLUGINS = os.path.join(ROOT, "host", "plugins")
HOST_PYTHON = os.path.join(ROOT, "host", "python")


def make_plugin_dir():
    """A plugin directory of symlinks to the test and shipped plugins (xapi
    follows symlinks), and entries that are not plugins."""
    d = tempfile.mkdtemp(prefix="xenapid-plugins-")
    for src in (SHIPPED_PLUGINS, TEST_PLUGINS):
        for name in os.listdir(src):
            if not name.startswith("__"):
                os.symlink(os.path.join(src, name), os.path.join(d, name))
    with open(os.path.join(d, "not-executable"), "w") as f:
        f.write("#!/bin/sh\necho hi\n")
    os.chmod(os.path.join(d, "not-executable"), 0o644)
    shutil.copy(os.path.join(TEST_PLUGINS, "shell-answer"), os.path.join(d, ".hidden"))
    os.mkdir(os.path.join(d, "a-directory"))
    with open(os.path.join(d, "bad-interpreter"), "w") as f:
        f.write("#!/nonexistent/python3\n")
    os.chmod(os.path.join(d, "bad-interpreter"), 0o755)
    os.symlink("/nonexistent/plugin", os.path.join(d, "dangling"))
    return d


def plugin_config(plugin_dir, extra=""):
    return "plugin_dir = %s\nplugin_pythonpath = %s\n%s" % (plugin_dir, HOST_PYTHON, extra)


def gone(pid):
    """The process no longer runs (reaped, or a zombie waiting for its reaper)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def read_pids(path):
    with open(path) as f:
        return [int(p) for p in f.read().split()]


def wait_task(x, s, task, timeout=20.0):
    def done():
        rec = ok(x.task.get_record(s, task))
        return rec if rec["status"] not in ("pending", "cancelling") else None
    return wait_for(done, timeout, "task " + task)


def start_sleeper(x, s, host, pidfile):
    """An Async testplug.sleep (60 s) once it runs: (task, [its pid, its child's pid])."""
    task = ok(x.Async.host.call_plugin(s, host, "testplug", "sleep", {"pidfile": pidfile, "seconds": "60"}))
    wait_for(lambda: os.path.exists(pidfile), 15, "the plugin to start")
    return task, read_pids(pidfile)


class PluginTest(unittest.TestCase):
    extra_config = ""

    @classmethod
    def setUpClass(cls):
        cls.plugin_dir = make_plugin_dir()
        cls.d = Daemon(extra_config=plugin_config(cls.plugin_dir, cls.extra_config)).start()
        cls.x, cls.s = cls.d.login()
        cls.host = ok(cls.x.host.get_all(cls.s))[0]
        cls.host_uuid = ok(cls.x.host.get_uuid(cls.s, cls.host))
        cls.tmp = tempfile.mkdtemp(prefix="xenapid-plugin-test-")

    @classmethod
    def tearDownClass(cls):
        cls.x("close")()
        cls.d.cleanup()
        shutil.rmtree(cls.plugin_dir, ignore_errors=True)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def call(self, plugin, fn, args=None):
        return self.x.host.call_plugin(self.s, self.host, plugin, fn, args or {})

    def failure(self, plugin, fn, args=None):
        return fail(self.call(plugin, fn, args))

    def pidfile(self, name):
        return os.path.join(self.tmp, name)

    @contextlib.contextmanager
    def slot_held(self):
        """A plugin of this session running (holding a slot) until the block ends."""
        task, _ = start_sleeper(self.x, self.s, self.host, self.pidfile("holder.pids"))
        try:
            yield
        finally:
            ok(self.x.task.cancel(self.s, task))
            wait_task(self.x, self.s, task)


class ClientPlugins(PluginTest):
    """Plugins in the clients' styles, calling back into the API."""

    def test_echo_as_cloudstack_pings(self):
        self.assertEqual(ok(self.call("echo", "main")), "args were: {}")

    def test_echo_returns_the_arguments_exactly(self):
        args = {"k": "<&>\"'", "empty": "", "uni": "\u00e9\u2713", "spaces": "  a b  ", "nl": "x\ny"}
        value = ok(self.call("echo", "main", args))
        self.assertTrue(value.startswith("args were: "), value)
        self.assertEqual(ast.literal_eval(value[len("args were: "):]), args)

    def test_nova_plugin_version_pickled(self):
        """os-xenapi's call_plugin_serialized: pickled args in, a pickled value out."""
        params = pickle.dumps({"args": (), "kwargs": {}}, 0).decode("latin-1")
        value = ok(self.call("dom0_plugin_version.py", "get_version",
                             {"params": params, "host_uuid": self.host_uuid}))
        self.assertEqual(pickle.loads(value.encode("latin-1")), "2.1")

    def test_xenhost_host_data_reads_the_api(self):
        data = json.loads(ok(self.call("xenhost.py", "host_data", {"host_uuid": self.host_uuid})))
        rec = ok(self.x.host.get_record(self.s, self.host))
        metrics = ok(self.x.host_metrics.get_record(self.s, rec["metrics"]))
        self.assertEqual(data["host_uuid"], self.host_uuid)
        self.assertEqual(data["host_name-label"], rec["name_label"])
        self.assertEqual(data["host_hostname"], rec["hostname"])
        self.assertEqual(data["host_memory"]["total"], int(metrics["memory_total"]))
        self.assertEqual(data["host_capabilities"], rec["capabilities"])

    def test_xenstore_write_read_delete_through_the_api(self):
        dom0 = ok(self.x.VM.get_all_records_where(self.s, 'field "domid"="0"'))
        self.assertEqual(len(dom0), 1)
        vm = list(dom0)[0]
        path = "vm-data/networking/0016" + str(os.getpid())
        value = json.dumps({"label": "public", "ips": [{"ip": "10.0.0.2"}]})
        self.assertEqual(json.loads(ok(self.call("xenstore.py", "write_record",
                                                  {"dom_id": "0", "path": path, "value": value}))),
                         json.loads(value))
        self.assertEqual(json.loads(ok(self.x.VM.get_xenstore_data(self.s, vm))[path]), json.loads(value))
        self.assertEqual(json.loads(ok(self.call("xenstore.py", "read_record",
                                                  {"dom_id": "0", "path": path, "ignore_missing_path": "False"}))),
                         json.loads(value))
        self.assertEqual(ok(self.call("xenstore.py", "delete_record", {"dom_id": "0", "path": path})), "")
        self.assertNotIn(path, ok(self.x.VM.get_xenstore_data(self.s, vm)))
        self.assertEqual(ok(self.call("xenstore.py", "read_record",
                                      {"dom_id": "0", "path": path, "ignore_missing_path": "True"})), '"None"')
        self.assertEqual(self.failure("xenstore.py", "read_record",
                                      {"dom_id": "0", "path": path, "ignore_missing_path": "False"}),
                         ["XENSTORE_PATH_MISSING", "0", path])

    def test_cloudstack_vmops_done(self):
        self.assertEqual(ok(self.call("vmops", "setup_iscsi", {"uuid": self.host_uuid})), "> DONE <")
        self.assertEqual(ok(self.call("vmops", "pingtest", {})), "success")

    def test_cloudstack_vmops_reads_resident_vms(self):
        resident = ok(self.x.host.get_resident_VMs(self.s, self.host))
        names = sorted(ok(self.x.VM.get_name_label(self.s, vm)) for vm in resident)
        self.assertTrue(names)
        self.assertEqual(ok(self.call("vmops", "resident_vms", {"host_uuid": self.host_uuid})), ";".join(names))

    def test_cloudstack_async_call_plugin(self):
        """callHostPluginAsync: the task's result is the string as an XML-RPC value fragment."""
        task = ok(self.x.Async.host.call_plugin(self.s, self.host, "vmops", "setup_iscsi", {"uuid": self.host_uuid}))
        rec = wait_task(self.x, self.s, task)
        self.assertEqual(rec["status"], "success", rec)
        self.assertEqual(rec["result"].replace("<value>", "").replace("</value>", ""), "&gt; DONE &lt;")
        self.assertEqual(xmlrpc.client.loads("<params><param>%s</param></params>" % rec["result"])[0][0],
                         "> DONE <")

    def test_plugin_calls_a_plugin(self):
        self.assertEqual(ok(self.call("vmops", "relay", {"host_uuid": self.host_uuid})),
                         "args were: {'via': 'relay'}")

    def test_shell_plugin(self):
        self.assertEqual(ok(self.call("shell-answer", "anything")), "from sh")

    def test_unknown_function_and_plugin_errors_are_passed_on(self):
        self.assertEqual(self.failure("echo", "nope"), ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", "nope"])
        self.assertEqual(self.failure("testplug", "raises"), ["XENAPI_PLUGIN_FAILURE", "raises", "ValueError", "no good"])
        self.assertEqual(self.failure("testplug", "fails"), ["CUSTOM_ERROR", "a", "b"])

    def test_bad_host(self):
        r = self.x.host.call_plugin(self.s, "OpaqueRef:00000000-0000-0000-0000-000000000000", "echo", "main", {})
        self.assertEqual(fail(r)[0], "HANDLE_INVALID")

    def test_jsonrpc(self):
        r = self.d.jsonrpc("host.call_plugin", [self.s, self.host, "echo", "main", {"a": "1"}])
        self.assertEqual(r["result"], "args were: {'a': '1'}")


class Failures(PluginTest):
    def test_missing_and_escaping_names(self):
        for name in ("missing", "a/b", "../plugins/echo", "/bin/sh", ".hidden", "..", ".", "", "a-directory",
                     "dangling", "echo/", "x" * 300):
            self.assertEqual(self.failure(name, "main"), ["XENAPI_MISSING_PLUGIN", name], name)

    def test_not_executable(self):
        err = self.failure("not-executable", "main")
        self.assertEqual(err[:3], ["XENAPI_PLUGIN_FAILURE", "not executable", ""])
        self.assertIn("not-executable", err[3])

    def test_interpreter_missing(self):
        err = self.failure("bad-interpreter", "main")
        self.assertEqual(err[:3], ["XENAPI_PLUGIN_FAILURE", "cannot run", ""])

    def test_arguments_too_long_for_exec(self):
        """argv[1] over Linux's 128 KiB per argument (xapi's limit too): a clear failure."""
        err = self.failure("echo", "main", {"big": "x" * 200000})
        self.assertEqual(err[:3], ["XENAPI_PLUGIN_FAILURE", "cannot run", ""])
        self.assertIn("Argument list too long", err[3])

    def test_non_zero_exit(self):
        self.assertEqual(self.failure("testplug", "exit"),
                         ["XENAPI_PLUGIN_FAILURE", "non-zero exit", "partial", "bad things\n"])

    def test_signal(self):
        self.assertEqual(self.failure("testplug", "signal"),
                         ["XENAPI_PLUGIN_FAILURE", "signal: SIGTERM", "", "about to die\n"])

    def test_garbage(self):
        err = self.failure("testplug", "garbage")
        self.assertEqual(err[:3], ["XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", "this is not XML\n"])
        self.assertEqual(len(err), 4)
        self.assertTrue(err[3])

    def test_output_not_utf8(self):
        """Bytes that are not UTF-8 reach the client as '?', in a reply it can read."""
        err = self.failure("testplug", "bad_utf8")
        self.assertEqual(err[:3], ["XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", "caf? ?\n"])
        r = self.d.jsonrpc("host.call_plugin", [self.s, self.host, "testplug", "bad_utf8", {}])
        self.assertEqual(r["error"]["data"][:2], ["failed to parse plugin output", "caf? ?\n"])

    def test_name_with_a_nul(self):
        """Not cut short to "echo" and run: a NUL is refused with the other characters XML cannot carry."""
        r = self.d.jsonrpc("host.call_plugin", [self.s, self.host, "echo\u0000x", "main", {}])
        self.assertEqual(r["error"]["message"], "INVALID_VALUE")

    def test_no_output(self):
        err = self.failure("testplug", "silent")
        self.assertEqual(err[:3], ["XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", ""])

    def test_wrong_shape(self):
        err = self.failure("testplug", "wrong_shape")
        self.assertEqual(err[:2], ["XENAPI_PLUGIN_FAILURE", "unexpected XMLRPC result"])
        self.assertIn("just a string", err[2])

    def test_fault(self):
        self.assertEqual(self.failure("testplug", "fault"), ["XENAPI_PLUGIN_FAILURE", "fault", "42", "broken"])

    def test_clean_environment(self):
        """Only PATH, LANG, PYTHONPATH and the socket; stdin /dev/null; none of the
        daemon's descriptors; its own process group; signals as a fresh process's."""
        probe = json.loads(ok(self.call("testplug", "probe")))
        self.assertEqual(sorted(probe["env"]), ["LANG", "PATH", "PYTHONPATH", "XENAPID_LOCAL_SOCKET"])
        self.assertEqual(probe["env"]["PYTHONPATH"], HOST_PYTHON)
        self.assertEqual(probe["env"]["XENAPID_LOCAL_SOCKET"], self.d.unix_socket)
        self.assertEqual(probe["fds"]["0"], "/dev/null")
        self.assertTrue(probe["fds"]["1"].startswith("pipe:"), probe["fds"])
        self.assertTrue(probe["fds"]["2"].startswith("pipe:"), probe["fds"])
        self.assertEqual({fd: link for fd, link in probe["fds"].items() if fd not in ("0", "1", "2") and link}, {})
        self.assertEqual(probe["pgid"], probe["pid"])
        self.assertEqual(probe["cwd"], "/")
        self.assertEqual(probe["sigmask"], [])
        # Python ignores SIGPIPE itself: a shell tells what the plugin was started with
        # (but for glibc's internal signals 32 and 33, which its posix_spawn leaves ignored).
        self.assertEqual(int(ok(self.call("shell-answer", "sigign")), 16) & ~(3 << 31), 0)

    def test_stderr_goes_to_the_log(self):
        marker = "stderr-marker-%d" % os.getpid()
        self.assertEqual(ok(self.call("testplug", "stderr", {"text": marker})), "ok")
        wait_for(lambda: marker in self.d.read_log(), 5, "the log line")
        self.assertIn("plugin testplug stderr: stderr: " + marker, self.d.read_log())

    def test_async_cancel_kills_the_process_group(self):
        task, pids = start_sleeper(self.x, self.s, self.host, self.pidfile("cancel.pids"))
        self.assertIn("cancel", ok(self.x.task.get_allowed_operations(self.s, task)))
        self.assertFalse(any(gone(p) for p in pids))
        ok(self.x.task.cancel(self.s, task))
        rec = wait_task(self.x, self.s, task)
        self.assertEqual(rec["status"], "cancelled")
        self.assertEqual(rec["error_info"], ["TASK_CANCELLED", task])
        wait_for(lambda: all(gone(p) for p in pids), 5, "the plugin and its child to be gone")

    def test_answer_when_the_plugin_ends_though_its_child_keeps_stdout(self):
        """The call ends with the plugin, not when every holder of its stdout has gone."""
        pid = int(ok(self.call("testplug", "background")))
        try:
            self.assertFalse(gone(pid))
        finally:
            os.kill(pid, 9)

    def test_answer_though_a_child_it_left_writes_without_end(self):
        pid = int(ok(self.call("testplug", "spam_stderr")))
        os.kill(pid, 9)

    def test_async_failure(self):
        task = ok(self.x.Async.host.call_plugin(self.s, self.host, "nope", "main", {}))
        rec = wait_task(self.x, self.s, task)
        self.assertEqual(rec["status"], "failure")
        self.assertEqual(rec["error_info"], ["XENAPI_MISSING_PLUGIN", "nope"])


class Limits(PluginTest):
    extra_config = "plugin_timeout = 6\nplugin_max_output = 65536\n"

    def test_time_limit_kills_the_process_group(self):
        pidfile = self.pidfile("timeout.pids")
        err = self.failure("testplug", "sleep", {"pidfile": pidfile, "seconds": "60"})
        self.assertEqual(err[:2], ["XENAPI_PLUGIN_FAILURE", "timeout"])
        wait_for(lambda: all(gone(p) for p in read_pids(pidfile)), 5, "the plugin and its child to be gone")

    def test_output_limit(self):
        err = self.failure("testplug", "flood")
        self.assertEqual(err[:2], ["XENAPI_PLUGIN_FAILURE", "output too large"])
        self.assertEqual(err[2], "x" * 4096)

    def test_within_limits(self):
        self.assertEqual(ok(self.call("echo", "main", {"sleep": "0"})), "args were: {'sleep': '0'}")


class RunningCap(PluginTest):
    extra_config = "plugin_max_running = 1\nplugin_queue_timeout = 10\n"

    def test_calls_beyond_the_cap_wait_their_turn(self):
        marker = self.pidfile("exclusive")
        results = []

        def run():
            x = self.d.proxy()
            results.append(ok(x.host.call_plugin(self.s, self.host, "testplug", "exclusive",
                                                 {"marker": marker, "seconds": "0.2"})))

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, ["ok", "ok", "ok"])

    def test_call_fails_when_no_slot_frees_in_time(self):
        with self.slot_held():
            err = self.failure("echo", "main")
            self.assertEqual(err[:3], ["XENAPI_PLUGIN_FAILURE", "too many plugins running", ""])
            self.assertIn("plugin_max_running", err[3])
        self.assertEqual(ok(self.call("echo", "main")), "args were: {}")


class FairShare(PluginTest):
    extra_config = "plugin_max_running = 2\nplugin_queue_timeout = 1\n"

    def test_one_session_holds_at_most_half_the_slots(self):
        with self.slot_held():
            err = self.failure("echo", "main")  # the same session: its half is taken
            self.assertEqual(err[:3], ["XENAPI_PLUGIN_FAILURE", "too many plugins running", ""])
            x2, s2 = self.d.login()  # another client still gets the other slot
            self.assertEqual(ok(x2.host.call_plugin(s2, self.host, "echo", "main", {})), "args were: {}")
            x2("close")()
        self.assertEqual(ok(self.call("echo", "main")), "args were: {}")


class Shutdown(unittest.TestCase):
    def test_stopping_the_daemon_kills_running_plugins(self):
        plugin_dir = make_plugin_dir()
        tmp = tempfile.mkdtemp(prefix="xenapid-plugin-test-")
        d = Daemon(extra_config=plugin_config(plugin_dir)).start()
        try:
            x, s = d.login()
            host = ok(x.host.get_all(s))[0]
            _, pids = start_sleeper(x, s, host, os.path.join(tmp, "pids"))
            x("close")()
            self.assertEqual(d.stop(), 0)
            wait_for(lambda: all(gone(p) for p in pids), 5, "the plugin and its child to be gone")
        finally:
            d.cleanup()
            shutil.rmtree(plugin_dir, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)


class XenAPIModule(unittest.TestCase):
    """host/python/XenAPI.py used directly, as scripts on a host do."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, HOST_PYTHON)
        import XenAPI
        cls.XenAPI = XenAPI
        cls.plugin_dir = make_plugin_dir()
        cls.d = Daemon(extra_config=plugin_config(cls.plugin_dir)).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.plugin_dir, ignore_errors=True)
        sys.path.remove(HOST_PYTHON)

    def test_session_over_tcp(self):
        from harness import PASSWORD
        s = self.XenAPI.Session(self.d.url)
        s.xenapi.login_with_password("root", PASSWORD, "1.0", "test")
        self.assertTrue(s.handle.startswith("OpaqueRef:"))
        hosts = s.xenapi.host.get_all()
        self.assertEqual(len(hosts), 1)
        with self.assertRaises(self.XenAPI.Failure) as cm:
            s.xenapi.VM.get_record("OpaqueRef:00000000-0000-0000-0000-000000000000")
        self.assertEqual(cm.exception.details[0], "HANDLE_INVALID")
        task = s.xenapi.Async.host.call_plugin(hosts[0], "echo", "main", {})
        self.assertTrue(task.startswith("OpaqueRef:"))
        old = s.handle
        s.xenapi.session.logout()
        self.assertIsNone(s.handle)
        x = self.d.proxy()
        self.assertEqual(fail(x.session.get_uuid(old, old))[0], "SESSION_INVALID")

    def test_xapi_local_follows_the_environment(self):
        os.environ["XENAPID_LOCAL_SOCKET"] = self.d.unix_socket
        try:
            s = self.XenAPI.xapi_local()
            s.login_with_password("root", "", "1.0", "test")  # root on the local socket: no password
            self.assertEqual(len(s.xenapi.pool.get_all()), 1)
            self.assertTrue(s.API_version)
            s.logout()
            s.xenapi.slave_local_login_with_password("root", "")
            self.assertEqual(s.last_login_method, "slave_local_login_with_password")
            self.assertEqual(len(s.xenapi.host.get_all()), 1)
            s.xenapi.session.logout()  # through session.local_logout
            self.assertIsNone(s.handle)
        finally:
            del os.environ["XENAPID_LOCAL_SOCKET"]

    def test_xapi_local_default_socket(self):
        self.assertEqual(self.XenAPI.local_socket_path(), "/var/lib/xcp/xapi")


if __name__ == "__main__":
    unittest.main()
