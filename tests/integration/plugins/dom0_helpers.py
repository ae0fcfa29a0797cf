"""Test helper in the manner of os-xenapi's dom0 plugin library (written for
these tests): functions registered by name, their positional and keyword
arguments pickled into args['params'], their return value pickled back.
Lives in the plugin directory beside the plugins, as os-xenapi's does."""

import json
import pickle

import XenAPIPlugin


class PluginError(Exception):
    pass


def _pickled(func):
    def call(session, args):
        params = pickle.loads(args["params"].encode("latin-1"))
        result = func(session, *params.get("args", ()), **params.get("kwargs", {}))
        return pickle.dumps(result, 0).decode("latin-1")
    return call


def register_plugin_calls(*funcs):
    """Dispatches to the functions by name, each wrapped for pickled calls."""
    XenAPIPlugin.dispatch({f.__name__: _pickled(f) for f in funcs})


def register_plain_calls(*funcs):
    """Dispatches to the functions by name: string args in, their result as is."""
    XenAPIPlugin.dispatch({f.__name__: f for f in funcs})


def vm_by_domid(session, dom_id):
    recs = session.xenapi.VM.get_all_records_where('field "domid"="%s"' % dom_id)
    if not recs:
        raise PluginError("no domain %s" % dom_id)
    return next(iter(recs.items()))


def as_json(value):
    return json.dumps(value)
