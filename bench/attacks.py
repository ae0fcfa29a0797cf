#!/usr/bin/env python3
"""Issue 8 benchmark: one client's attack against everybody else's latency.

A normal client (its own address, 127.0.0.2, and its own originator) calls
VM.get_record in a loop, first on an idle daemon, then under each attack
from 127.0.0.1, each in its own process so that the attacker does not share
the measuring client's interpreter:

1. session flood: one client logging in as fast as it can with one originator;
2. 1,100 connections from one address dripping a byte every 2 s (reconnecting
   when the daemon closes them);
3. 128 parallel wrong logins;
4. a busy VM: 200 queued Async.VM.clean_shutdown on a sim guest that ignores
   shutdown requests (the sim control socket's "ignore-requests").

For each: the normal client's median and p99 beside the idle figures measured
just before; goal: p99 at most 2 times the idle p99. Default configuration
(auth_fail_delay_ms 3000, the default limits), sim backend, loopback only,
every loop bounded.

Usage: bench/attacks.py [--seconds S] [--calls N]"""

import argparse
import http.client
import multiprocessing
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, HERE)
from harness import PASSWORD, Daemon, ok, proxy_from  # noqa: E402
from lifecycle import pct, vm_record  # noqa: E402

NORMAL, ATTACKER = "127.0.0.2", "127.0.0.1"
BUSY = "Too many login attempts in progress"


def proxy(url, source, timeout=60):
    return proxy_from(url, source, timeout)


def measure(url, session, vm, seconds, calls):
    """The normal client's VM.get_record latencies (s): `calls` calls, or `seconds`, whichever ends first."""
    p = proxy(url, NORMAL)
    lat, errors, end = [], 0, time.monotonic() + seconds
    while len(lat) < calls and time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            r = p.VM.get_record(session, vm)
            good = r["Status"] == "Success"
        except (OSError, http.client.HTTPException):
            good = False
        dt = time.perf_counter() - t0
        if good:
            lat.append(dt)
        else:
            errors += 1
    p("close")()
    return lat, errors


# ---- the attackers (each runs in its own process until `until`, a time.time()) ----------------------

def session_flood(url, until, out):
    p, n = proxy(url, ATTACKER), 0
    while time.time() < until:
        try:
            ok(p.session.login_with_password("root", PASSWORD, "1.0", "leaky"))
            n += 1
        except (OSError, http.client.HTTPException, AssertionError):
            p = proxy(url, ATTACKER)
            time.sleep(0.1)
    out.put("%d logins" % n)


def dripping_connections(url, until, out, count=1100, every=2.0):
    host, port = url.split("//")[1].rstrip("/").split(":")
    socks, reconnects, held_max = [None] * count, 0, 0

    def connect():
        s = socket.socket()
        s.setblocking(False)
        s.bind((ATTACKER, 0))
        s.connect_ex((host, int(port)))
        return [s, False]  # socket, request line sent

    for i in range(count):
        socks[i] = connect()
    while time.time() < until:
        t0 = time.time()
        alive = 0
        for i, (s, started) in enumerate(socks):
            try:
                s.send(b"X" if started else b"POST / HTTP/1.1\r\nHost: x\r\nX-Drip: ")
                socks[i][1] = True
                try:
                    if s.recv(1) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                alive += 1
            except BlockingIOError:
                alive += 1  # still connecting
            except OSError:
                s.close()
                socks[i] = connect()
                reconnects += 1
        held_max = max(held_max, alive)
        time.sleep(max(0.0, min(every - (time.time() - t0), until - time.time())))
    for s, _ in socks:
        s.close()
    out.put("%d connections dripping, %d reconnects after the daemon closed one" % (count, reconnects))


def wrong_logins(url, until, out, threads=128):
    counts = {"checked": 0, "unchecked": 0, "errors": 0}
    lock = threading.Lock()

    def guesser():
        p = proxy(url, ATTACKER)
        while time.time() < until:
            try:
                r = p.session.login_with_password("root", "guess", "1.0", "guesser")
                kind = "unchecked" if BUSY in str(r.get("ErrorDescription")) else "checked"
            except (OSError, http.client.HTTPException):
                kind = "errors"  # over the address's connection limit: the daemon closed it
                p = proxy(url, ATTACKER)
                time.sleep(0.1)
            with lock:
                counts[kind] += 1

    ts = [threading.Thread(target=guesser) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put("%d guesses checked, %d answered unchecked, %d transport errors (%d threads)" %
            (counts["checked"], counts["unchecked"], counts["errors"], threads))


def busy_vm(url, until, out, session, vm, calls=200):
    p, tasks = proxy(url, ATTACKER), 0
    for _ in range(calls):
        if p.Async.VM.clean_shutdown(session, vm)["Status"] == "Success":
            tasks += 1
    pending = sum(1 for t in ok(p.task.get_all(session))
                  if ok(p.task.get_status(session, t)) == "pending")
    out.put("%d Async.VM.clean_shutdown queued, %d tasks pending after queueing" % (tasks, pending))
    while time.time() < until:
        time.sleep(0.1)


def sim_control(d, line):
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.path.join(d.state_dir, "sim-control.sock"))
    s.sendall(line.encode() + b"\n")
    reply = s.recv(256).decode()
    s.close()
    return reply


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each measurement")
    ap.add_argument("--calls", type=int, default=2000, help="at most this many calls per measurement")
    args = ap.parse_args()

    d = Daemon(extra_config="log_level = info\nauth_fail_delay_ms = 3000\n").start()
    try:
        x, s = d.login()
        probe = ok(x.VM.create(s, vm_record("probe")))
        busy = ok(x.VM.create(s, vm_record("busy")))
        ok(x.VM.start(s, busy, False, False))
        print(sim_control(d, "ignore-requests " + ok(x.VM.get_uuid(s, busy))).strip(), "(busy VM ignores shutdown)")
        normal = ok(proxy(d.url, NORMAL).session.login_with_password("root", PASSWORD, "1.0", "normal"))
        attacks = [
            ("session flood (one originator)", session_flood, ()),
            ("1,100 dripping connections from one address", dripping_connections, ()),
            ("128 parallel wrong logins", wrong_logins, ()),
            ("busy VM: 200 queued Async.VM.clean_shutdown", busy_vm, (s, busy)),
        ]
        rows = []
        ctx = multiprocessing.get_context("fork")
        measure(d.url, normal, probe, 1.0, 200)  # warm-up
        for name, fn, extra in attacks:
            idle, _ = measure(d.url, normal, probe, args.seconds, args.calls)
            out = ctx.Queue()
            until = time.time() + 2.0 + args.seconds + 1.0
            proc = ctx.Process(target=fn, args=(d.url, until, out) + extra)
            proc.start()
            time.sleep(2.0)  # the attack is in full swing
            lat, errors = measure(d.url, normal, probe, args.seconds, args.calls)
            proc.join(timeout=args.seconds + 60)
            if proc.is_alive():
                proc.kill()
            note = out.get() if not out.empty() else "attacker reported nothing"
            still = x.session.get_uuid(s, s)["Status"] == "Success"
            rows.append((name, idle, lat, errors, note, still))
            print("%-46s done: %s" % (name, note), flush=True)
        print()
        print("%-46s %12s %12s %12s %12s %7s  %s" % ("attack", "idle p50 ms", "idle p99 ms", "attack p50", "attack p99",
                                                     "errors", "verdict (p99 <= 2x idle)"))
        for name, idle, lat, errors, note, still in rows:
            i50, i99 = pct(idle, 50) * 1e3, pct(idle, 99) * 1e3
            a50, a99 = pct(lat, 50) * 1e3, pct(lat, 99) * 1e3
            met = bool(lat) and errors == 0 and a99 <= 2 * i99 and still
            print("%-46s %12.2f %12.2f %12.2f %12.2f %7d  %s%s" % (name, i50, i99, a50, a99, errors,
                                                                  "met" if met else "NOT met",
                                                                  "" if still else " (admin session lost)"))
        print("(normal client: %s, VM.get_record, up to %d calls or %.0f s each; calls made under attack: %s)" %
              (NORMAL, args.calls, args.seconds, ", ".join(str(len(r[2])) for r in rows)))
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()
