#!/usr/bin/env python3
"""Issue 3 benchmarks on the sim backend.

1. Lifecycle storm: N VMs created, started, cleanly shut down and destroyed
   through the API with 1 and 16 clients: total time, per-operation latency
   (p50/p99, wall time seen by the client) and the daemon's own CPU time per
   operation (from /proc: what the agent spends, apart from the client and the
   disk flushes it waits for).
2. event.from delivery: S subscribers blocked in event.from, one change, over
   R rounds; the time until each has its answer (p50/p99), from the change's
   request and from its answer (the durable commit no event may precede),
   with the batching delay at 0 and at its default (50 ms). Baseline in the
   same run: a read-only call after the same pause, i.e. what waking this
   idle machine costs before the agent does anything.

Usage: bench/lifecycle.py [--vms N] [--subscribers S] [--rounds R] [--skip-storm]"""

import argparse
import os
import subprocess
import sys
import threading
import time
import xmlrpc.client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from harness import Daemon, ok  # noqa: E402

MiB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")


def vm_record(name):
    return {"name_label": name, "name_description": "", "user_version": "1", "is_a_template": False,
            "affinity": "OpaqueRef:NULL", "memory_static_max": str(64 * MiB), "memory_dynamic_max": str(64 * MiB),
            "memory_dynamic_min": str(64 * MiB), "memory_static_min": str(32 * MiB), "VCPUs_params": {},
            "VCPUs_max": "1", "VCPUs_at_startup": "1", "actions_after_shutdown": "destroy",
            "actions_after_reboot": "restart", "actions_after_crash": "restart", "PV_bootloader": "",
            "PV_kernel": "/boot/vmlinuz", "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "",
            "PV_legacy_args": "", "HVM_boot_policy": "", "HVM_boot_params": {}, "platform": {}, "PCI_bus": "",
            "other_config": {}, "recommendations": ""}


def storm(d, session, nvms, clients):
    lat = {"create": [], "start": [], "clean_shutdown": [], "destroy": []}
    lock = threading.Lock()
    errors = []

    def worker(k):
        p = d.proxy()
        for i in range(k, nvms, clients):
            for op in ("create", "start", "clean_shutdown", "destroy"):
                t0 = time.perf_counter()
                if op == "create":
                    r = p.VM.create(session, vm_record("storm-%d" % i))
                    vm = r.get("Value")
                elif op == "start":
                    r = p.VM.start(session, vm, False, False)
                else:
                    r = getattr(p.VM, op)(session, vm)
                dt = time.perf_counter() - t0
                if r["Status"] != "Success":
                    errors.append((op, r))
                    return
                with lock:
                    lat[op].append(dt)

    cpu0 = cpu_seconds(d.proc.pid)
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    total = time.perf_counter() - t0
    cpu = cpu_seconds(d.proc.pid) - cpu0
    nops = sum(len(v) for v in lat.values())
    return total, cpu, nops, lat, errors


def event_delivery(d, session, subscribers, delay_label, rounds=20):
    """Runs bench/event_wait (C, so the client adds no noise); returns (p99 from the request, p99 from the commit)."""
    pool = ok(d.proxy().pool.get_all(session))[0]
    token = ok(getattr(d.proxy().event, "from")(session, ["pool"], "", 0.0))["token"]
    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "event_wait")
    out = subprocess.run([tool, str(d.port), session, token, pool, str(subscribers), str(rounds)], capture_output=True,
                         text=True, timeout=300).stdout.strip()
    print("  %3d subscribers, %d rounds, batching delay %s:" % (subscribers, rounds, delay_label))
    for line in out.splitlines():
        print("    " + line)
    try:
        answer = out.split("answer: ")[1].split(" ")[0]
        floor = subprocess.run([os.path.join(os.path.dirname(tool), "fanout_floor"), str(subscribers), answer, str(rounds)],
                               capture_output=True, text=True, timeout=300).stdout.strip()
        print("    " + floor)
        from_request = float(out.split("from the change's request")[1].split("p99 ")[1].split(" ")[0])
        from_commit = float(out.split("from the commit")[1].split("p99 ")[1].split(" ")[0])
        per_change = float(out.split("median change ")[1].split(" ")[0])
        return from_request, from_commit, per_change
    except (IndexError, ValueError):
        return float("nan"), float("nan"), float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--skip-storm", action="store_true")
    a = ap.parse_args()

    print("Lifecycle storm (sim backend, %d VMs: create, start, clean_shutdown, destroy)" % a.vms)
    for clients in (() if a.skip_storm else (1, 16)):
        d = Daemon(extra_config="sim_guest_delay_ms = 0\nlog_level = notice\nmax_connections = 2048\n").start()
        try:
            _, s = d.login()
            total, cpu, nops, lat, errors = storm(d, s, a.vms, clients)
            if errors:
                print("  errors:", errors[:3])
            print("  %2d client(s): %6.2f s total, %7.0f ops/s, daemon CPU %.3f ms/op %s"
                  % (clients, total, nops / total, cpu * 1000 / max(nops, 1),
                     "(goal <= 1 ms: met)" if cpu * 1000 / max(nops, 1) <= 1.0 else "(goal <= 1 ms: MISSED)"))
            for op, v in lat.items():
                ms = [x * 1000 for x in v]
                print("      %-15s p50 %6.2f ms  p99 %6.2f ms" % (op, pct(ms, 50), pct(ms, 99)))
        finally:
            d.cleanup()

    print("event.from delivery: one change, every subscriber waiting")
    for delay in (0, 50):
        d = Daemon(extra_config="event_batch_delay_ms = %d\nlog_level = notice\n" % delay).start()
        try:
            _, s = d.login()
            from_request, from_commit, per_change = event_delivery(d, s, a.subscribers, "%d ms" % delay, a.rounds)
            if delay == 0:
                verdict = lambda v: "met" if v <= 5 else "MISSED"  # noqa: E731
                print("  goal p99 <= 5 ms with no batching delay: per change (median) %s; all rounds pooled: "
                      "from the commit %s, from the request %s"
                      % (verdict(per_change), verdict(from_commit), verdict(from_request)))
        finally:
            d.cleanup()


if __name__ == "__main__":
    main()
