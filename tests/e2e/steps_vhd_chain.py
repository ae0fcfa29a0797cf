"""E2E steps for VHD disks on real Xen (issue 11): an `ext` SR's VHD files and
snapshot/clone chains reach guests through xenapid-hotplug's datapath (nbdkit
with xenapid's plugin, the kernel's NBD client, blkback as phy).

  vhd-sr-import        an ext SR in dom0; a VDI with known bytes at 0 and at 1 MiB
                       (PUT /import_raw_vdi); VDI.snapshot and VDI.clone of it
  vhd-clone-write      a guest boots from the clone's chain and writes new bytes at
                       its start (guest-init's xenlab.poke); shut down
  vhd-chain-reads      a second guest boots from the clone's chain: the new bytes at
                       0, the parent's at 1 MiB; the original VDI (a leaf over the same
                       parent) still reads the old ones; the snapshot, hot-plugged
                       read-only (VBD.plug), reads the old ones too and is unplugged;
  vhd-restart-sweep    xenapid restarts under that guest: its nbdkit servers live on, a
                       leftover of a domain that died meanwhile is swept; after the guest
                       stops no nbdkit, NBD record or socket is left
  vhd-chain-read-bench benchmark 3: the guest reads 256 MiB sequentially from a raw
                       file VDI and from a VHD chain of depth 3 (opt-in: lab time)

Functions of the suite object (tests/e2e/suite.py's Suite), so that suite.py
only lists them.
"""

import http.client
import json
import os
import random
import re
import subprocess
import time
import urllib.parse

from steps_common import suite_module as _m

MiB = 1 << 20
PEEK = MiB          # the second known offset: inside the VHD's first 2 MiB block, another sector
BENCH_MIB = 256


def _nbd_dir():
    """<state_dir>/nbd of the daemon (its config file, E2E_CONFIG, names state_dir)."""
    state = os.path.join(_m().WORK, "state")
    try:
        with open(os.environ.get("E2E_CONFIG", ""), encoding="utf-8") as f:
            for line in f:
                k, _, v = line.partition("=")
                if k.strip() == "state_dir" and v.strip():
                    state = v.strip()
    except OSError:
        pass
    return os.path.join(state, "nbd")


def _nbdkits(needle):
    """pids of nbdkit processes whose command line contains needle."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "nbdkit" in cmd.split(" ")[0] and needle in cmd:
            pids.append(int(p))
    return pids


def _import(s, vdi, chunks, length, timeout=None):
    """PUT /import_raw_vdi of the bytes chunks yields (length in all) into vdi."""
    m = _m()
    u = urllib.parse.urlsplit(m.URL)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=m.capped(timeout or m.T_CALL))
    try:
        conn.request("PUT", "/import_raw_vdi?session_id=%s&vdi=%s&format=raw"
                     % (urllib.parse.quote(s.api.session), urllib.parse.quote(vdi)), chunks,
                     {"Content-Type": "application/octet-stream", "Content-Length": str(length)})
        r = conn.getresponse()
        body = r.read()
    except (OSError, http.client.HTTPException) as e:
        raise m.StepFailed("PUT /import_raw_vdi: %s" % e)
    finally:
        conn.close()
    m.check(r.status == 200, "PUT /import_raw_vdi: HTTP %d %s" % (r.status, body[:200]))


def _sector(text):
    return (text + "\n").encode().ljust(4096, b"\0")


def _new_sr(s, name, typ, dc):
    m = _m()
    sr = s.api.call("SR.create", s.o["host"], dc, "0", name, "", typ, "user", False, {}, timeout=m.T_PLUG)
    m.check(s.api.call("SR.get_type", sr) == typ, "SR %s is not of type %s" % (name, typ))
    return sr


def _new_vdi(s, sr, name, size):
    return s.api.call("VDI.create", {"name_label": name, "name_description": "", "SR": sr,
                                     "virtual_size": str(size), "type": "user", "sharable": False,
                                     "read_only": False, "other_config": {}})


def _new_vm(s, name, args):
    m = _m()
    c = s.api.call
    tpl = c("VM.get_by_name_label", "Generic Linux PV")
    m.check(len(tpl) == 1, "template 'Generic Linux PV': %r" % (tpl,))
    vm = c("VM.clone", tpl[0], name)
    c("VM.set_is_a_template", vm, False)
    c("VM.set_PV_bootloader", vm, "")
    c("VM.set_PV_kernel", vm, m.GUEST_KERNEL or "/boot/vmlinuz-e2e")
    c("VM.set_PV_ramdisk", vm, m.GUEST_INITRD or "/boot/initrd-e2e")
    c("VM.set_PV_args", vm, "console=hvc0 " + args)
    c("VM.set_memory_limits", vm, str(128 * MiB), str(128 * MiB), str(128 * MiB), str(128 * MiB))
    c("VM.set_VCPUs_max", vm, "1")
    c("VM.set_VCPUs_at_startup", vm, "1")
    s.o.setdefault("vhd_vms", []).append(vm)
    return vm


def _vbd(s, vm, vdi, dev, mode="RW"):
    return s.api.call("VBD.create", {"VM": vm, "VDI": vdi, "userdevice": dev, "bootable": dev == "0",
                                     "mode": mode, "type": "Disk", "empty": False, "other_config": {},
                                     "qos_algorithm_type": "", "qos_algorithm_params": {}})


def _console(s, name):
    return s.console_text_file(name)


def _boot(s, vm, name, need, timeout=None):
    """VM.start, then each line of need on the guest's console (new ones only)."""
    m = _m()
    get = lambda: _console(s, name)  # noqa: E731
    base = s.counts(need, get())
    t0 = time.time()
    s.api.call("VM.start", vm, False, False, timeout=m.T_START)
    # (T_BOOT doubled: these guests boot while the lab's CPUs are shared with other labs)
    s.wait_console(need, timeout or 2 * m.T_BOOT, "%s's lines on its console" % name, base, get=get)
    return time.time() - t0


def _stop(s, vm):
    m = _m()
    if s.api.call("VM.get_power_state", vm) != "Halted":
        s.api.call("VM.hard_shutdown", vm, timeout=m.T_SHUTDOWN)


def _left():
    """nbdkit processes of xenapid's VHD disks, and the files of their records and sockets."""
    d = _nbd_dir()
    return _nbdkits(d), (sorted(os.listdir(d)) if os.path.isdir(d) else [])


def _check_nothing_left(s, what):
    m = _m()
    m.wait_until("%s: no nbdkit, NBD record or socket left in %s" % (what, _nbd_dir()), 30,
                 lambda: _left() == ([], []), step=0.5, detail=lambda: "left: %r" % (_left(),))


def _tmpfs_dir(name):
    """A folder on dom0's tmpfs (/run): E2E_WORK is the host's share (9p), where VHD files cannot be made."""
    d = os.path.join("/run", "xenapid-e2e-" + name)
    os.makedirs(d, exist_ok=True)
    return d


def s_vhd_sr_import(s):
    m = _m()
    d = _tmpfs_dir("vhd-sr")
    sr = _new_sr(s, "e2e-vhd", "ext", {"path": d})
    s.o["vhd_sr"], s.o["vhd_dir"] = sr, d
    p0 = "XENAPID-VHD-BASE0-%08x" % random.getrandbits(32)
    p1 = "XENAPID-VHD-BASE1M-%08x" % random.getrandbits(32)
    s.o["vhd_p0"], s.o["vhd_p1"] = p0, p1
    vdi = _new_vdi(s, sr, "e2e-vhd-orig", 16 * MiB)
    body = _sector(p0) + b"\0" * (PEEK - 4096) + _sector(p1)
    _import(s, vdi, body, len(body))
    uuid = s.api.call("VDI.get_uuid", vdi)
    m.check(os.path.isfile(os.path.join(d, uuid + ".vhd")), "no %s.vhd in the ext SR's directory %s" % (uuid, d))
    snap = s.api.call("VDI.snapshot", vdi, {})
    clone = s.api.call("VDI.clone", vdi, {})
    for v, what in ((snap, "snapshot"), (clone, "clone")):
        sm = s.api.call("VDI.get_sm_config", v)
        m.check(sm.get("vhd-parent"), "the %s has no sm_config vhd-parent: %r" % (what, sm))
    s.o["vhd_orig"], s.o["vhd_snap"], s.o["vhd_clone"] = vdi, snap, clone
    m.out("      ext SR %s: VDI %s, snapshot and clone over parent %s"
          % (s.api.call("SR.get_uuid", sr), uuid, s.api.call("VDI.get_sm_config", clone)["vhd-parent"]))


def s_vhd_clone_write(s):
    m = _m()
    p2 = "XENAPID-VHD-CLONE-%08x" % random.getrandbits(32)
    s.o["vhd_p2"] = p2
    vm = _new_vm(s, "e2e-vhd-w", "xenlab.poke=xvda:0:%s" % p2)
    _vbd(s, vm, s.o["vhd_clone"], "0")
    secs = _boot(s, vm, "e2e-vhd-w", ["XENLAB-POKED xvda 0", "XENLAB-DISK xvda: " + p2])
    m.check(_nbdkits(_nbd_dir()), "no nbdkit serves the clone's chain while the guest runs")
    m.out("      the guest booted from the clone's chain and wrote %s at 0 (%.1f s)" % (p2, secs))
    _stop(s, vm)
    _check_nothing_left(s, "after the writer's hard shutdown")


def s_vhd_chain_reads(s):
    m = _m()
    p0, p1, p2 = s.o["vhd_p0"], s.o["vhd_p1"], s.o["vhd_p2"]
    vm = _new_vm(s, "e2e-vhd-r", "xenlab.peek=%d" % PEEK)
    _vbd(s, vm, s.o["vhd_clone"], "0")
    _vbd(s, vm, s.o["vhd_orig"], "2")
    need = ["XENLAB-DISK xvda: " + p2, "XENLAB-DISK-AT xvda %d: %s" % (PEEK, p1),
            "XENLAB-DISK xvdc: " + p0, "XENLAB-DISK-AT xvdc %d: %s" % (PEEK, p1)]
    secs = _boot(s, vm, "e2e-vhd-r", need)
    m.out("      clone: its leaf's bytes at 0, its parent's at 1 MiB; the original: the parent's (%.1f s)" % secs)
    # the snapshot, hot-plugged read-only into the running guest, and unplugged
    get = lambda: _console(s, "e2e-vhd-r")  # noqa: E731
    vbd = _vbd(s, vm, s.o["vhd_snap"], "1", mode="RO")
    need = ["XENLAB-DISK xvdb: " + p0, "XENLAB-DISK-AT xvdb %d: %s" % (PEEK, p1)]
    base = s.counts(need, get())
    before = set(_nbdkits(_nbd_dir()))
    s.api.call("VBD.plug", vbd, timeout=m.T_PLUG)
    s.wait_console(need, m.T_PLUG, "the hot-plugged snapshot's bytes (xvdb)", base, get=get)
    new = set(_nbdkits(_nbd_dir())) - before
    m.check(len(new) == 1, "VBD.plug of the snapshot: new nbdkit processes %s" % sorted(new))
    with open("/proc/%d/cmdline" % new.pop(), "rb") as f:
        cmd = f.read().split(b"\0")
    m.check(b"readonly=true" in cmd, "the read-only VBD's nbdkit is not read-only: %r" % cmd)
    base = s.counts(["XENLAB-GONE xvdb"], get())
    s.api.call("VBD.unplug", vbd, timeout=m.T_PLUG)
    s.wait_console(["XENLAB-GONE xvdb"], m.T_PLUG, "the unplugged snapshot gone from the guest", base, get=get)
    m.wait_until("the snapshot's nbdkit ended by VBD.unplug", 30, lambda: set(_nbdkits(_nbd_dir())) == before,
                 step=0.5)
    s.api.call("VBD.destroy", vbd)
    # a VDI in use keeps its chain: no coalesce while the guest runs
    m.check(s.api.call("VDI.get_sm_config", s.o["vhd_clone"]).get("vhd-parent"), "the clone lost its parent")
    s.o["vhd_reader"] = vm


def s_vhd_restart_sweep(s):
    """xenapid restarts under a guest using VHD disks: their nbdkit servers live on (the guest's
    disks with them), and what a domain that died meanwhile left (a record and nbdkit for a backend
    that is gone, planted here) is ended by the start-up sweep. Then the guest stops: nothing left."""
    m = _m()
    vm = s.o["vhd_reader"]
    d = _nbd_dir()
    mine = set(_nbdkits(d))
    m.check(len(mine) == 2, "the reader's two VHD disks: nbdkit pids %s" % sorted(mine))
    key = os.path.join(d, "vbd-4000-51712")
    # as xenapid-hotplug leaves it: nbdkit daemonized in a session of its own, its record "<nbd> <pgid>"
    p = subprocess.Popen(["nbdkit", "--unix", key + ".sock", "--pidfile", key + ".pid", "memory", "1M"],
                         start_new_session=True, stdin=subprocess.DEVNULL)
    m.check(p.wait(30) == 0, "nbdkit (the planted leftover) did not start")
    with open(key + ".nbd", "w") as f:
        f.write("-1 %d\n" % p.pid)
    m.wait_until("the planted nbdkit's pidfile", 10, lambda: os.path.exists(key + ".pid"), step=0.2)
    planted = set(_nbdkits(d)) - mine
    m.check(len(planted) == 1, "the planted nbdkit: %s" % sorted(planted))
    s.stop_daemon()
    s.start_daemon()
    m.check(set(_nbdkits(d)) == mine, "after the restart: nbdkit pids %s, before %s (planted %s)"
            % (sorted(_nbdkits(d)), sorted(mine), sorted(planted)))
    left = [f for f in os.listdir(d) if f.startswith("vbd-4000-")]
    m.check(not left, "the sweep left %s" % left)
    m.check(s.api.call("VM.get_power_state", vm) == "Running", "the reader is not Running after the restart")
    m.out("      the restart kept the guest's 2 nbdkit servers; the sweep ended the planted one")
    _stop(s, vm)
    _check_nothing_left(s, "after the reader's hard shutdown")


def _chunks(total, seed):
    blk = bytes((seed + i) & 0xff or 1 for i in range(MiB))
    for _ in range(total // MiB):
        yield blk


def _block_dev(prefix, link, where):
    """The dom0 block device (sysfs name) prefix* whose sysfs file link names something under where."""
    for dev in sorted(os.listdir("/sys/block")):
        if not dev.startswith(prefix):
            continue
        try:
            with open(os.path.join("/sys/block", dev, link)) as f:
                if f.read().strip().startswith(where):
                    return dev
        except OSError:
            pass
    return None


def _dev_stat(dev):
    """(reads completed, sectors read, max_sectors_kb) of a dom0 block device; zeros if unknown."""
    try:
        with open("/sys/block/%s/stat" % dev) as f:
            st = f.read().split()
        with open("/sys/block/%s/queue/max_sectors_kb" % dev) as f:
            kb = int(f.read())
        return int(st[0]), int(st[2]), kb
    except (OSError, ValueError, IndexError):
        return 0, 0, 0


def _io_line(dev, before, after):
    n, sec = after[0] - before[0], after[1] - before[1]
    return "%s: %d read requests of %.0f KiB on average (max_sectors_kb %d)" % (
        dev, n, sec / 2.0 / n if n else 0, after[2])


def _bench_read(s, vdi, name, dev_of, again=None):
    """Seconds the guest took to read BENCH_MIB MiB of vdi (its xvda), and what dom0's block
    device under it saw. again(dev): a change in dom0 before a second read, typed on the console
    (its seconds too, else None)."""
    m = _m()
    vm = _new_vm(s, name, "xenlab.ddread=%d" % BENCH_MIB)
    _vbd(s, vm, vdi, "0")
    second = None
    try:
        _boot(s, vm, name, ["XENLAB-DISK xvda"], timeout=600)
        dev = dev_of()
        before = _dev_stat(dev) if dev else (0, 0, 0)
        s.wait_console(["XENLAB-DDREAD xvda %d" % BENCH_MIB], 600, "%s's read" % name, 0,
                       get=lambda: _console(s, name))
        got = re.findall(r"XENLAB-DDREAD xvda %d ([0-9.]+)" % BENCH_MIB, _console(s, name))
        m.check(got and float(got[-1]) > 0, "no read time from %s" % name)
        if dev:
            m.out("      %s (%s s)" % (_io_line(dev, before, _dev_stat(dev)), got[-1]))
        if again and dev:
            what = again(dev)
            tap = s.open_console(vm, "vt100")
            try:
                before = _dev_stat(dev)
                since = tap.mark()
                tap.send(b"ddread xvda %d\n" % BENCH_MIB)
                tap.wait("XENLAB-DDREAD xvda %d " % BENCH_MIB, 600, "%s's second read" % name, since)
                time.sleep(1)  # the rest of the line
                with tap.lock:
                    said = tap.data[since:].decode(errors="replace")
                t = re.findall(r"XENLAB-DDREAD xvda %d ([0-9.]+)" % BENCH_MIB, said)
                second = float(t[-1]) if t else None
            finally:
                tap.close()
            m.out("      again with %s: %s s; %s" % (what, second, _io_line(dev, before, _dev_stat(dev))))
        return float(got[-1]), second
    finally:
        _stop(s, vm)


def _depth(s, vdi):
    """Images in vdi's chain, through the VDI records' sm_config vhd-parent (base copies are VDIs too)."""
    depth, parent = 1, s.api.call("VDI.get_sm_config", vdi).get("vhd-parent")
    while parent and depth < 10:
        depth += 1
        parent = s.api.call("VDI.get_sm_config", s.api.call("VDI.get_by_uuid", parent)).get("vhd-parent")
    return depth


def s_vhd_chain_read_bench(s):
    """Benchmark 3: the guest's sequential read of BENCH_MIB MiB (O_DIRECT, 1 MiB requests) from a raw
    file VDI (blkback over a loop device) and from a VHD chain of depth 3 (nbdkit + NBD + blkback).
    One disk at a time, each in a new guest: both images live in dom0's RAM (tmpfs), 1 GiB in all."""
    m = _m()
    size = BENCH_MIB * MiB
    raw_dir = _tmpfs_dir("bench-raw")
    raw_sr = _new_sr(s, "e2e-bench-raw", "file", {"location": raw_dir})
    raw = _new_vdi(s, raw_sr, "e2e-bench-raw", size)
    t0 = time.time()
    _import(s, raw, _chunks(size, 1), size, timeout=300)
    t_raw_import = time.time() - t0
    r, _ = _bench_read(s, raw, "e2e-bench-raw", lambda: _block_dev("loop", "loop/backing_file", raw_dir))
    s.api.call("VDI.destroy", raw)
    vhd = _new_vdi(s, s.o["vhd_sr"], "e2e-bench-vhd", size)
    t0 = time.time()
    _import(s, vhd, _chunks(size, 2), size, timeout=300)
    t_vhd_import = time.time() - t0
    # depth 3: two snapshots, each after new bytes in the leaf (a snapshot of an empty leaf adds no level)
    for i in range(2):
        s.api.call("VDI.snapshot", vhd, {})
        _import(s, vhd, _sector("XENAPID-VHD-LEVEL-%d" % i), 4096)
    depth = _depth(s, vhd)
    m.check(depth == 3, "the benchmark's chain has depth %d, not 3" % depth)
    # the second read with the NBD driver's own request limit (128 KiB), as before xenapid raised it
    def nbd_default(dev):
        with open("/sys/block/%s/queue/max_sectors_kb" % dev, "w") as f:
            f.write("128\n")
        return "max_sectors_kb 128"
    v, v128 = _bench_read(s, vhd, "e2e-bench-vhd", lambda: _block_dev("nbd", "backend", _nbd_dir()), nbd_default)
    res = {"mib": BENCH_MIB, "raw_s": r, "vhd_chain3_s": v, "raw_mib_s": BENCH_MIB / r,
           "vhd_chain3_mib_s": BENCH_MIB / v, "ratio_vhd_over_raw_time": v / r,
           "import_raw_s": t_raw_import, "import_vhd_s": t_vhd_import, "vhd_chain3_max_sectors_128_s": v128}
    m.out("  BENCH3 guest sequential read of %d MiB (O_DIRECT, 1 MiB): raw file VDI %.2f s (%.1f MiB/s), "
          "VHD chain depth 3 %.2f s (%.1f MiB/s); time ratio VHD/raw %.2f"
          % (BENCH_MIB, r, BENCH_MIB / r, v, BENCH_MIB / v, v / r))
    if v128:
        m.out("  BENCH3 the same chain read with the NBD driver's 128 KiB request limit: %.2f s (%.1f MiB/s)"
              % (v128, BENCH_MIB / v128))
    m.out("  BENCH3 (imports of %d MiB through PUT /import_raw_vdi: raw %.1f s, VHD %.1f s)"
          % (BENCH_MIB, t_raw_import, t_vhd_import))
    with open(os.path.join(m.WORK, "benchmark-vhd.json"), "w") as f:
        json.dump(res, f, indent=1)
