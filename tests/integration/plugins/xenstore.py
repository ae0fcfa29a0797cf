#!/usr/bin/env python3
"""os-xenapi style xenstore records (plain calls, JSON values). A domain's
xenstore is emulated by its VM's xenstore_data, through the API."""

import json

import XenAPIPlugin
import dom0_helpers


def _path(args):
    return args["path"].lstrip("/")


def read_record(session, args):
    _, vm = dom0_helpers.vm_by_domid(session, args["dom_id"])
    data = vm["xenstore_data"]
    if _path(args) not in data:
        if args.get("ignore_missing_path", "False") == "True":
            return '"None"'
        raise XenAPIPlugin.Failure("XENSTORE_PATH_MISSING", [args["dom_id"], args["path"]])
    return data[_path(args)]


def write_record(session, args):
    ref, vm = dom0_helpers.vm_by_domid(session, args["dom_id"])
    value = json.dumps(json.loads(args["value"]))
    if _path(args) in vm["xenstore_data"]:
        session.xenapi.VM.remove_from_xenstore_data(ref, _path(args))
    session.xenapi.VM.add_to_xenstore_data(ref, _path(args), value)
    return value


def delete_record(session, args):
    ref, _ = dom0_helpers.vm_by_domid(session, args["dom_id"])
    session.xenapi.VM.remove_from_xenstore_data(ref, _path(args))
    return ""


if __name__ == "__main__":
    dom0_helpers.register_plain_calls(read_record, write_record, delete_record)
