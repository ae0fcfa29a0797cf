#!/usr/bin/env python3
"""os-xenapi style console log: the tail of xenconsoled's guest log, zlib-compressed and base64-encoded."""

import base64
import os
import sys
import zlib

import dom0_pluginlib

MAX_CONSOLE_BYTES = 102400
# Nova's path; a test daemon's own folder when a file beside the plugin names one
CONSOLE_DIR = "/var/log/xen/guest"
OVERRIDE = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "guest-console-dir")


def get_console_log(session, args):
    base = CONSOLE_DIR
    if os.path.isfile(OVERRIDE):
        with open(OVERRIDE) as f:
            base = f.read().strip()
    path = "%s/console.%d" % (base, int(args["dom_id"]))
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - MAX_CONSOLE_BYTES))
            data = f.read()
    except OSError as e:
        raise dom0_pluginlib.PluginError("%s: %s" % (path, e.strerror))
    return base64.b64encode(zlib.compress(data)).decode()


if __name__ == "__main__":
    dom0_pluginlib.register_plugin_calls(plain=[get_console_log])
