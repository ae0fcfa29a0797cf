"""The boilerplate of a host plugin, as on a XenServer/XCP-ng host:

    import XenAPIPlugin

    def main(session, args):
        return "hello " + args.get("name", "")

    if __name__ == "__main__":
        XenAPIPlugin.dispatch({"main": main})

xenapid (like xapi) runs a plugin with one argument, an XML-RPC methodCall
(the function, the caller's session ref, a struct of strings), and reads one
methodResponse from its stdout. Shipped with xenapid (written for it; same
interface as xapi's module).
"""

import sys
import xmlrpc.client

import XenAPI


class Failure(Exception):
    """Raised by a plugin function: the call fails with [code] + params."""

    def __init__(self, code, params):
        Exception.__init__(self)
        self.params = [code] + list(params)

    def __str__(self):
        return str(self.params)


def _response(struct):
    return xmlrpc.client.dumps((struct,), methodresponse=True, allow_none=True)


def success_message(result):
    return _response({"Status": "Success", "Value": result})


def failure_message(description):
    return _response({"Status": "Failure", "ErrorDescription": description})


def dispatch(fn_table):
    """Runs fn_table[function](session, args) and prints its answer. Errors are
    answers too (the exit status stays 0): Failure as its [code] + params,
    any other exception as XENAPI_PLUGIN_FAILURE [function, class, message],
    an unknown function as UNKNOWN_XENAPI_PLUGIN_FUNCTION [function]."""
    if len(sys.argv) != 2:
        raise Exception("Incorrect number of commandline arguments")
    params, methodname = xmlrpc.client.loads(sys.argv[1])
    session_id, args = params[0], params[1]
    if methodname not in fn_table:
        print(failure_message(["UNKNOWN_XENAPI_PLUGIN_FUNCTION", methodname]))
        return
    session = XenAPI.xapi_local()
    session._session = session_id  # the caller's session: no login
    try:
        message = success_message(fn_table[methodname](session, args))
    except Failure as e:
        message = failure_message(e.params)
    except Exception as e:
        message = failure_message(["XENAPI_PLUGIN_FAILURE", methodname, e.__class__.__name__, str(e)])
    print(message)
