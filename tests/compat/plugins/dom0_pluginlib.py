"""Test helper in the manner of os-xenapi's dom0 plugin library (written for
these tests, not taken from os-xenapi): a plugin registers its functions;
those it registers as serialized get their positional and keyword arguments
pickled in args['params'] and return a pickled value, the others get the
string map and return a string. Lives beside the plugins, as os-xenapi's does."""

import json
import pickle
import subprocess

import XenAPIPlugin


class PluginError(Exception):
    """A failure the plugin reports: Nova reads its class name and message."""


def _serialized(func):
    def call(session, args):
        params = pickle.loads(args["params"].encode("latin-1"))
        result = func(session, *params.get("args", ()), **params.get("kwargs", {}))
        return pickle.dumps(result, 0).decode("latin-1")
    return call


def register_plugin_calls(serialized=(), plain=()):
    table = {f.__name__: _serialized(f) for f in serialized}
    table.update({f.__name__: f for f in plain})
    XenAPIPlugin.dispatch(table)


def run_command(cmd):
    """stdout of cmd; a PluginError naming it if it cannot run or fails."""
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    except OSError as e:
        raise PluginError("%s: %s" % (cmd[0], e.strerror))
    if proc.returncode != 0:
        raise PluginError("%s exited with %d: %s" % (" ".join(cmd), proc.returncode, proc.stderr.strip()))
    return proc.stdout


def as_json(value):
    return json.dumps(value)
