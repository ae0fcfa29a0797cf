#!/usr/bin/env python3
"""os-xenapi style host facts (plain call, JSON reply), read through the API
(xapi_local) instead of `xe host-param-list`."""

import dom0_helpers


def host_data(session, args):
    host = session.xenapi.host.get_by_uuid(args["host_uuid"])
    rec = session.xenapi.host.get_record(host)
    metrics = session.xenapi.host_metrics.get_record(rec["metrics"])
    total = int(metrics["memory_total"])
    free = int(session.xenapi.host.compute_free_memory(host))
    return dom0_helpers.as_json({
        "enabled": str(rec["enabled"]).lower(),
        "host_uuid": rec["uuid"],
        "host_name-label": rec["name_label"],
        "host_name-description": rec["name_description"],
        "host_hostname": rec["hostname"],
        "host_ip_address": rec["address"],
        "host_memory": {"total": total, "overhead": 0, "free": free, "free-computed": free},
        "host_capabilities": rec["capabilities"],
        "host_cpu_info": {"cpu_count": int(rec["cpu_info"].get("cpu_count", "0"))},
        "host_other-config": rec["other_config"],
    })


if __name__ == "__main__":
    dom0_helpers.register_plain_calls(host_data)
