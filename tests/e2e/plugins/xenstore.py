#!/usr/bin/env python3
"""A host plugin for the e2e suite, in the way of os-xenapi's xenstore plugin:
reads and writes a running guest's keys under /local/domain/<domid>/ with
Xen's own xenstore-read / xenstore-write in dom0. The guest is named by
"vm_uuid" (its domid found through the API: XenAPI.xapi_local(), the
caller's session, VM.get_domid) or directly by "dom_id"; "path" is relative
to the domain's folder.

  host.call_plugin(host, "xenstore.py", "write_record", {"vm_uuid": U, "path": "data/k", "value": "v"})
  host.call_plugin(host, "xenstore.py", "read_record", {"vm_uuid": U, "path": "name"})
  host.call_plugin(host, "xenstore.py", "get_domid", {"vm_uuid": U})

Errors: XENSTORE_PATH_MISSING [domid, path], VM_NOT_RUNNING [vm_uuid],
XENSTORE_COMMAND_FAILED [command, output].
"""

import subprocess

import XenAPIPlugin

TIMEOUT_S = 30


def _domid(session, args):
    if "dom_id" in args:
        return int(args["dom_id"])
    x = session.xenapi
    domid = int(x.VM.get_domid(x.VM.get_by_uuid(args["vm_uuid"])))
    if domid < 1:
        raise XenAPIPlugin.Failure("VM_NOT_RUNNING", [args["vm_uuid"]])
    return domid


def _path(domid, args):
    rel = args["path"].strip("/")
    if not rel or ".." in rel.split("/"):
        raise XenAPIPlugin.Failure("XENSTORE_BAD_PATH", [args["path"]])
    return "/local/domain/%d/%s" % (domid, rel)


def _run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S)
    return p.returncode, p.stdout


def read_record(session, args):
    domid = _domid(session, args)
    path = _path(domid, args)
    rc, out = _run(["xenstore-read", path])
    if rc != 0:
        if args.get("ignore_missing_path", "False") == "True":
            return "None"
        raise XenAPIPlugin.Failure("XENSTORE_PATH_MISSING", [str(domid), args["path"]])
    return out.rstrip("\n")


def write_record(session, args):
    domid = _domid(session, args)
    path = _path(domid, args)
    rc, out = _run(["xenstore-write", path, args["value"]])
    if rc != 0:
        raise XenAPIPlugin.Failure("XENSTORE_COMMAND_FAILED", ["xenstore-write " + path, out.strip()])
    return args["value"]


def get_domid(session, args):
    return str(_domid(session, args))


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"read_record": read_record, "write_record": write_record, "get_domid": get_domid})
