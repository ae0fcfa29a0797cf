#!/usr/bin/env python3
"""os-xenapi style host facts. host_data parses `xe host-param-list` as
os-xenapi's does, so it needs xe on the plugin's PATH (xenapid's own, tools/xe.c)."""

import re

import dom0_pluginlib

# `xe host-param-list` lines: "   name ( RO)    : value" (maps "k: v; k2: v2", sets "a; b").
PARAM_LINE = re.compile(r"^\s*([^(]+?)\s*\(\s*(RO|RW|MRO|MRW|SRO|SRW)\s*\)\s*:\s?(.*)$")


def _parse_param_list(text):
    out = {}
    for line in text.splitlines():
        m = PARAM_LINE.match(line)
        if not m:
            continue
        name, kind, value = m.groups()
        if kind.startswith("M"):
            out[name] = dict(kv.split(": ", 1) for kv in value.split("; ") if ": " in kv)
        elif kind.startswith("S"):
            out[name] = [v for v in value.split("; ") if v]
        else:
            out[name] = value
    return out


def host_data(session, args):
    params = _parse_param_list(dom0_pluginlib.run_command(
        ["xe", "host-param-list", "uuid=%s" % args["host_uuid"]]))
    total = int(params["memory-total"])
    free = int(params["memory-free"])
    cpu_info = params.get("cpu_info", {})
    for k in ("cpu_count", "family", "model", "stepping", "socket_count"):
        if k in cpu_info:
            cpu_info[k] = int(cpu_info[k])
    return dom0_pluginlib.as_json({
        "enabled": params["enabled"],
        "host_uuid": params["uuid"],
        "host_name-label": params["name-label"],
        "host_name-description": params["name-description"],
        "host_hostname": params["hostname"],
        "host_ip_address": params["address"],
        "host_memory": {"total": total, "overhead": int(params.get("memory-overhead", "0")),
                        "free": free, "free-computed": int(params.get("memory-free-computed", free))},
        "host_capabilities": params["capabilities"],
        "host_cpu_info": cpu_info,
        "host_other-config": params["other-config"],
    })


def host_uptime(session, args):
    return dom0_pluginlib.as_json({"uptime": dom0_pluginlib.run_command(["uptime"]).strip()})


def get_pci_device_details(session):
    """`lspci -vmmnk`: records separated by blank lines (Nova keeps those with Driver pciback)."""
    return dom0_pluginlib.run_command(["lspci", "-vmmnk"])


def network_config(session, args):
    """Only the read-only probe Nova starts its wiring with: a failure means no such device."""
    if args.get("cmd") != "ip_link_get_dev":
        raise dom0_pluginlib.PluginError("not in the test plugin: %s" % args.get("cmd"))
    return dom0_pluginlib.run_command(["ip", "link", "show", args["args"]["device_name"]])


if __name__ == "__main__":
    dom0_pluginlib.register_plugin_calls(serialized=[get_pci_device_details, network_config],
                                         plain=[host_data, host_uptime])
