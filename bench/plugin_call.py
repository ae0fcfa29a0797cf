#!/usr/bin/env python3
"""host.call_plugin round trip of a trivial Python plugin, beside running the
same plugin directly (same interpreter, same argv[1], same environment) in the
same run: what xenapid adds to a plugin call (goal: under 2 ms, medians).

Usage: nice bench/plugin_call.py [CALLS]   (default 200 of each, interleaved)
Needs a built tree (XENAPID_BUILD_DIR or ./build)."""

import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import Daemon  # noqa: E402

HOST_PYTHON = os.path.join(ROOT, "host", "python")
PLUGIN = """#!/usr/bin/env python3
import XenAPIPlugin

def main(session, args):
    return "ok"

if __name__ == "__main__":
    XenAPIPlugin.dispatch({"main": main})
"""


# The same answer from /bin/sh: a plugin whose own start-up is small and steady,
# so what xenapid adds shows through the noise of Python's start-up.
SH_PLUGIN = """#!/bin/sh
printf '<?xml version="1.0"?><methodResponse><params><param><value><struct><member><name>Status</name><value><string>Success</string></value></member><member><name>Value</name><value><string>ok</string></value></member></struct></value></param></params></methodResponse>\\n'
"""


def method_call(session):
    """argv[1] exactly as xenapid writes it for fn main and no args."""
    return ("<methodCall><methodName>main</methodName><params><param><value>%s</value></param>"
            "<param><value><struct></struct></value></param></params></methodCall>" % session)


def compare(x, s, host, name, argv, env, calls):
    via_api, direct, plain = [], [], []
    for i in range(calls + 5):
        t = time.perf_counter()
        x.host.get_uuid(s, host)
        plain_ms = (time.perf_counter() - t) * 1000
        t0 = time.perf_counter()
        r = x.host.call_plugin(s, host, name, "main", {})
        t1 = time.perf_counter()
        p = subprocess.run(argv, env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, check=True)
        t2 = time.perf_counter()
        assert r == {"Status": "Success", "Value": "ok"}, r
        assert b"<string>ok</string>" in p.stdout, p.stdout
        if i >= 5:  # warm-up
            via_api.append((t1 - t0) * 1000)
            direct.append((t2 - t1) * 1000)
            plain.append(plain_ms)
    diffs = [a - b for a, b in zip(via_api, direct)]

    def line(label, v):
        q = statistics.quantiles(v, n=10)
        print("  %-34s median %7.2f ms (p10 %7.2f, p90 %7.2f)" % (label, statistics.median(v), q[0], q[8]))

    print("%s plugin:" % name)
    line("host.call_plugin round trip:", via_api)
    line("same plugin run directly:", direct)
    line("difference, pair by pair:", diffs)
    line("host.get_uuid round trip (HTTP):", plain)
    added = statistics.median(via_api) - statistics.median(direct)
    print("  xenapid adds %.2f ms (difference of the medians; goal < 2 ms): %s" %
          (added, "met" if added < 2 else "NOT met"))


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    plugin_dir = tempfile.mkdtemp(prefix="xenapid-bench-plugins-")
    for name, text in (("trivial", PLUGIN), ("trivial-sh", SH_PLUGIN)):
        with open(os.path.join(plugin_dir, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(plugin_dir, name), 0o755)
    d = Daemon(extra_config="plugin_dir = %s\nplugin_pythonpath = %s\nlog_level = notice\n"
               % (plugin_dir, HOST_PYTHON)).start()
    try:
        x, s = d.login()
        host = x.host.get_all(s)["Value"][0]
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "PYTHONPATH": HOST_PYTHON, "XENAPID_LOCAL_SOCKET": d.unix_socket}
        print("plugin_call: %d calls of each, interleaved (load average %.1f)" % (calls, os.getloadavg()[0]))
        for name in ("trivial", "trivial-sh"):
            compare(x, s, host, name, [os.path.join(plugin_dir, name), method_call(s)], env, calls)
    finally:
        x("close")()
        d.cleanup()
        for name in os.listdir(plugin_dir):
            os.unlink(os.path.join(plugin_dir, name))
        os.rmdir(plugin_dir)


if __name__ == "__main__":
    main()
