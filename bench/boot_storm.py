#!/usr/bin/env python3
"""Issue 12, benchmark 2 natively (sim backend): xenapid's own time per VM.start in a boot storm.

N halted PV VMs with one VIF each (on a network) are started paused by C concurrent API clients,
once with 1 client and once with C. Per start the daemon logs its own time: wall and thread CPU
from taking the VM's lock to the durable record, less the backend's create and unpause, and, of
that wall time, the record (`VM ... started as domain N; own time ...`): its VIFs' plumbing, the
wait for the store's write lock, the work under it and the wait for the commit.
Printed: medians and maxima of those, beside the baseline in the same run: the sim backend's own
create time per start and the client's whole call. Goal: xenapid's own time under 5 ms per start.
With --host-networking the daemon makes the network's bridge over rtnetlink, as on a real host,
which needs a network namespace of its own: as root, unshare -n sh -c "ip link set lo up; bench/boot_storm.py --host-networking".
With --vif-devices (root; it enters a network namespace of its own) the VIFs' backend devices exist
as libxl's netback would make them (veths named vif<domid>.0), so each start does its VIF's real
plumbing (MTU, rate limit, rules) over netlink; --netlink-delay-ms N adds N ms to the device look-up
each plumbing starts with (tests/integration/shim/netlink_gate.c preloaded: a slow dom0, as in the Xen
lab, where that plumbing took seconds), and the record's parts are printed: the plumbing, the wait for the
store's write lock (other starts' records), the durable wait. --binary runs another build's daemon
(an older commit's, for a before/after in the same run).

Usage: bench/boot_storm.py [--vms N] [--clients C] [--host-networking] [--vif-devices] [--netlink-delay-ms N]
                           [--binary PATH]"""

import argparse
import os
import re
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from harness import Daemon, ok  # noqa: E402

OWN = re.compile(r"VM (\S+) started as domain \d+; own time (\d+) us wall, (\d+) us CPU; backend (\d+) us wall, "
                 r"(\d+) us CPU; record (\d+) us wall")
# the record's parts (newer daemons): plumbing, lock wait, durable wait
PARTS = re.compile(r"VM (\S+) started as domain \d+; .* \(plumbing (\d+) us for \d+ VIFs, lock wait (\d+) us, "
                   r"locked \d+ us, durable wait (\d+) us(?:, then \d+ us)?\)")


def make_vms(d, x, s, n, tag):
    tpl = ok(x.VM.get_by_name_label(s, "Generic Linux PV"))[0]
    net = ok(x.network.create(s, {"name_label": "storm-" + tag, "name_description": "", "MTU": "1500",
                                  "other_config": {}}))
    vms = []
    for i in range(n):
        vm = ok(x.VM.clone(s, tpl, "storm-%s-%02d" % (tag, i)))
        ok(x.VM.set_is_a_template(s, vm, False))
        ok(x.VM.set_PV_kernel(s, vm, "/boot/vmlinuz"))
        ok(x.VIF.create(s, {"device": "0", "network": net, "VM": vm, "MAC": "", "MTU": "1500", "other_config": {},
                            "qos_algorithm_type": "", "qos_algorithm_params": {}}))
        vms.append(vm)
    return vms


def storm(d, vms, clients):
    todo, lock, calls, errors = list(vms), threading.Lock(), [], []

    def client():
        x, s = d.login()
        while True:
            with lock:
                if not todo:
                    return
                vm = todo.pop(0)
            t = time.perf_counter()
            r = x.VM.start(s, vm, True, False)
            dt = time.perf_counter() - t
            with lock:
                (calls.append(dt) if r["Status"] == "Success" else errors.append(r))
    t0 = time.perf_counter()
    ths = [threading.Thread(target=client) for _ in range(clients)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return time.perf_counter() - t0, calls, errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--host-networking", action="store_true")
    ap.add_argument("--vif-devices", action="store_true")
    ap.add_argument("--netlink-delay-ms", type=int, default=0)
    ap.add_argument("--binary")
    a = ap.parse_args()
    env = {}
    if a.vif_devices:
        from test_network_host import enter_fresh_netns, ip
        enter_fresh_netns()
        a.host_networking = True
        # the sim's domids count up from 1 in a fresh daemon: both phases' devices
        for domid in range(1, 2 * a.vms + 1):
            ip("link", "add", "vif%d.0" % domid, "type", "veth", "peer", "name", "pvif%d.0" % domid)
    if a.netlink_delay_ms:
        from harness import BUILD
        env = {"LD_PRELOAD": os.path.join(BUILD, "netlink-gate.so"),
               "XENAPID_TEST_NETLINK_DELAY_MS": str(a.netlink_delay_ms)}
    d = Daemon(extra_config="sim_guest_delay_ms = 0\nhost_networking = %s\n" % ("on" if a.host_networking else "off"),
               env=env)
    if a.binary:
        d.command = lambda: [a.binary] + Daemon.command(d)[1:]
    d.start()
    try:
        x, s = d.login()
        print("boot storm, sim backend: %d VMs (1 VIF each, host networking %s%s%s), started paused%s"
              % (a.vms, "on" if a.host_networking else "off", ", their devices made" if a.vif_devices else "",
                 ", netlink +%d ms" % a.netlink_delay_ms if a.netlink_delay_ms else "",
                 "; " + a.binary if a.binary else ""))
        print("  %-9s %9s %12s %12s %12s %12s %12s %12s" % ("clients", "total s", "own wall ms", "own max ms",
                                                             "record ms", "own CPU ms", "backend ms", "call ms"))
        for clients in (1, a.clients):
            vms = make_vms(d, x, s, a.vms, "c%d" % clients)
            uuids = {ok(x.VM.get_uuid(s, vm)) for vm in vms}
            total, calls, errors = storm(d, vms, clients)
            if errors:
                print("  %d starts failed, first: %r" % (len(errors), errors[0]))
                return 1
            with open(d.log_path, errors="replace") as f:
                log = f.read()
            own = [tuple(int(v) for v in m.groups()[1:]) for m in OWN.finditer(log) if m.group(1) in uuids]
            parts = [tuple(int(v) for v in m.groups()[1:]) for m in PARTS.finditer(log) if m.group(1) in uuids]
            med = lambda i: statistics.median(o[i] for o in own) / 1000  # noqa: E731
            print("  %-9d %9.2f %12.2f %12.2f %12.2f %12.3f %12.2f %12.2f"
                  % (clients, total, med(0), max(o[0] for o in own) / 1000, med(4), med(1), med(2),
                     1000 * statistics.median(calls)))
            if parts:
                pm = lambda i: statistics.median(p[i] for p in parts) / 1000  # noqa: E731
                print("  %-9s record's parts, medians: plumbing %.2f ms, store lock wait %.2f ms (max %.2f), "
                      "durable wait %.2f ms" % ("", pm(0), pm(1), max(p[1] for p in parts) / 1000, pm(2)))
            print("  goal: own time under 5 ms per start (%d clients): wall %s, CPU %s"
                  % (clients, "met" if med(0) < 5 else "NOT met", "met" if med(1) < 5 else "NOT met"))
        print("  (medians over the starts; own = VM lock taken to durable record, less the backend's create and "
              "unpause; record = the VIFs' plumbing, the store's lock and the durable commit, part of own wall; "
              "backend = the sim's create; "
              "call = the client's whole VM.start)")
        print("  load average: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    finally:
        d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
