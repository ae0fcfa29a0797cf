#!/usr/bin/env python3
"""Developer check of the libxl backend, run in the lab's dom0 by libxl_smoke.sh.

Drives a real xenapid (backend libxl) over XML-RPC through a PV guest's life
and checks each step on the guest's console (the lab's guest initramfs prints
XENLAB-* lines) and with xl. Every wait is bounded. Prints one line per step
("ok"/"FAIL" and seconds) and a summary; exits 1 on the first failure, after
printing the tails of xenapid's log and of the guest console.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import xmlrpc.client

BIN = os.environ["SMOKE_BIN"]
CONF = os.environ["SMOKE_CONF"]
LOG = os.environ["SMOKE_LOG"]
PORT = int(os.environ["SMOKE_PORT"])
SR_DIR = os.environ["SMOKE_SR"]
CONSOLE_DIR = os.environ["XENLAB_CONSOLE_DIR"]
KERNEL = os.environ["XENLAB_GUEST_KERNEL"]
INITRD = os.environ["XENLAB_GUEST_INITRD"]
PASSWORD = os.environ["XENAPID_ROOT_PASSWORD"]
URL = "http://127.0.0.1:%d/" % PORT
NULL = "OpaqueRef:NULL"
VM_NAME = "smoke-vm"
MAC1, MAC2 = "00:16:3e:5e:1f:11", "00:16:3e:5e:1f:12"
PATTERN = "XENAPID-SMOKE-%d" % int(time.time())

steps = sys.argv[1:] or ["all"]


class Failed(Exception):
    pass


class TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout):
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


def ok(r):
    if not isinstance(r, dict) or r.get("Status") != "Success":
        raise Failed("API failure: %r" % (r.get("ErrorDescription") if isinstance(r, dict) else r))
    return r.get("Value")


def sh(*cmd, timeout=60):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(%s)\n" % e


# ---- the daemon ------------------------------------------------------------------------

class Daemon:
    def __init__(self):
        self.proc = None

    def start(self, wait=60):
        log = open(LOG, "ab")
        self.proc = subprocess.Popen([BIN, "--config", CONF], stdout=log, stderr=subprocess.STDOUT)
        end = time.time() + wait
        while time.time() < end:
            if self.proc.poll() is not None:
                raise Failed("xenapid exited with %s" % self.proc.returncode)
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise Failed("xenapid did not listen within %d s" % wait)

    def stop(self, wait=60):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise Failed("xenapid did not stop within %d s of SIGTERM" % wait)
        if self.proc.returncode != 0:
            raise Failed("xenapid stopped with status %s" % self.proc.returncode)


daemon = Daemon()
x = None
s = None


def connect():
    global x, s
    x = xmlrpc.client.ServerProxy(URL, transport=TimeoutTransport(400), allow_none=True)
    s = ok(x.session.login_with_password("root", PASSWORD, "1.0", "libxl-smoke"))


# ---- checks ------------------------------------------------------------------------------

def console_path(name=VM_NAME):
    return os.path.join(CONSOLE_DIR, "guest-%s.log" % name)


def console_count(text, name=VM_NAME):
    try:
        with open(console_path(name), errors="replace") as f:
            return sum(1 for line in f if text in line)
    except OSError:
        return 0


def wait_console(text, count=1, timeout=180, name=VM_NAME):
    end = time.time() + timeout
    while time.time() < end:
        if console_count(text, name) >= count:
            return
        time.sleep(0.5)
    raise Failed("after %d s the console of %s lacks %r (x%d)" % (timeout, name, text, count))


def wait_state(vm, want, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        ps = ok(x.VM.get_power_state(s, vm))
        if ps == want:
            return
        time.sleep(0.5)
    raise Failed("VM is %s, not %s, after %d s" % (ps, want, timeout))


def domid_of(vm):
    return int(ok(x.VM.get_domid(s, vm)))


def xl_has(domid):
    rc, out = sh("xl", "list", str(domid))
    return rc == 0


def heartbeats():
    return console_count("XENLAB-HEARTBEAT")


def wait_heartbeat_after(n, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if heartbeats() > n:
            return
        time.sleep(0.5)
    raise Failed("no new heartbeat from the guest within %d s (still %d)" % (timeout, n))


results = []


def step(name, fn):
    t = time.time()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report whatever broke
        dt = time.time() - t
        print("FAIL %-28s %6.1fs  %s" % (name, dt, e), flush=True)
        results.append((name, False, dt))
        raise
    dt = time.time() - t
    print("ok   %-28s %6.1fs" % (name, dt), flush=True)
    results.append((name, True, dt))


# ---- the story ---------------------------------------------------------------------------

state = {}


def setup():
    daemon.start()
    connect()
    host = ok(x.host.get_all(s))[0]
    state["host"] = host
    sr = ok(x.SR.create(s, host, {"location": SR_DIR}, "0", "smoke-sr", "", "file", "user", False, {}))
    state["sr"] = sr

    def vdi(name, pattern):
        v = ok(x.VDI.create(s, {"name_label": name, "name_description": "", "SR": sr,
                                "virtual_size": str(64 << 20), "type": "user", "sharable": False,
                                "read_only": False, "other_config": {}}))
        loc = ok(x.VDI.get_location(s, v))
        path = os.path.join(SR_DIR, loc + ".raw")
        if not os.path.exists(path):
            raise Failed("VDI file %s not found (location %s)" % (path, loc))
        with open(path, "r+b") as f:
            f.write((pattern + "\n").encode())
        return v

    state["vdi1"] = vdi("smoke-disk-1", PATTERN)
    state["vdi2"] = vdi("smoke-disk-2", PATTERN + "-SECOND")
    net = ok(x.network.create(s, {"name_label": "smoke-net", "name_description": "", "other_config": {}}))
    state["net"] = net
    state["bridge"] = ok(x.network.get_bridge(s, net))
    vm = ok(x.VM.create(s, {
        "name_label": VM_NAME, "name_description": "", "user_version": "1", "is_a_template": False,
        "affinity": NULL, "memory_static_max": str(128 << 20), "memory_dynamic_max": str(128 << 20),
        "memory_dynamic_min": str(128 << 20), "memory_static_min": str(64 << 20), "VCPUs_params": {},
        "VCPUs_max": "1", "VCPUs_at_startup": "1", "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart", "actions_after_crash": "destroy", "PV_bootloader": "",
        "PV_kernel": KERNEL, "PV_ramdisk": INITRD, "PV_args": "console=hvc0 xenlab.heartbeat=2",
        "PV_bootloader_args": "", "PV_legacy_args": "", "HVM_boot_policy": "", "HVM_boot_params": {},
        "platform": {}, "PCI_bus": "", "other_config": {}, "recommendations": "", "domain_type": "pv"}))
    state["vm"] = vm
    ok(x.VBD.create(s, {"VM": vm, "VDI": state["vdi1"], "userdevice": "0", "bootable": True, "mode": "RW",
                        "type": "Disk", "empty": False, "unpluggable": True, "other_config": {},
                        "qos_algorithm_type": "", "qos_algorithm_params": {}}))
    ok(x.VIF.create(s, {"device": "0", "network": net, "VM": vm, "MAC": MAC1, "MTU": "1500",
                        "other_config": {}, "qos_algorithm_type": "ratelimit",
                        "qos_algorithm_params": {"kbps": "10240"}}))


def start():
    vm = state["vm"]
    wants = ("XENLAB-GUEST-UP", "XENLAB-DISK xvda: " + PATTERN, "XENLAB-MAC eth0: " + MAC1, "XENLAB-GUEST-READY")
    seen = {w: console_count(w) for w in wants}  # the log carries every earlier boot too
    t = time.time()
    ok(x.VM.start(s, vm, False, False))
    print("     VM.start returned after %.1f s" % (time.time() - t), flush=True)
    if ok(x.VM.get_power_state(s, vm)) != "Running":
        raise Failed("not Running after VM.start")
    domid = domid_of(vm)
    if not xl_has(domid):
        raise Failed("xl list does not show domain %d" % domid)
    state["domid"] = domid
    for want in wants:
        wait_console(want, seen[want] + 1)
    print("     guest ready %.1f s after VM.start" % (time.time() - t), flush=True)
    br = state["bridge"]
    if not os.path.exists("/sys/class/net/%s/brif/vif%d.0" % (br, domid)):
        raise Failed("vif%d.0 is not on bridge %s" % (domid, br))
    rc, out = sh("xenstore-read", "/local/domain/0/backend/vif/%d/0/rate" % domid)
    print("     vif rate in xenstore: %s" % out.strip(), flush=True)


def api_console():
    cons = ok(x.VM.get_consoles(s, state["vm"]))
    if not cons:
        raise Failed("the running VM has no console record")
    url = URL + "console?ref=%s&session_id=%s" % (cons[0], s)
    body = urllib.request.urlopen(url, timeout=30).read().decode(errors="replace")
    if "XENLAB-GUEST-UP" not in body:
        raise Failed("GET /console lacks the guest's marker (%d bytes)" % len(body))


def pause_unpause():
    vm = state["vm"]
    ok(x.VM.pause(s, vm))
    if ok(x.VM.get_power_state(s, vm)) != "Paused":
        raise Failed("not Paused")
    rc, out = sh("xl", "list", str(state["domid"]))
    if " p" not in out.splitlines()[-1] and "p-" not in out:
        raise Failed("xl does not show the domain paused: %s" % out)
    n = heartbeats()
    time.sleep(3)
    if heartbeats() > n + 1:
        raise Failed("the paused guest kept printing")
    ok(x.VM.unpause(s, vm))
    if ok(x.VM.get_power_state(s, vm)) != "Running":
        raise Failed("not Running")
    wait_heartbeat_after(heartbeats())


def hotplug():
    vm = state["vm"]
    vbd = ok(x.VBD.create(s, {"VM": vm, "VDI": state["vdi2"], "userdevice": "1", "bootable": False,
                              "mode": "RO", "type": "Disk", "empty": False, "unpluggable": True,
                              "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}))
    t = time.time()
    ok(x.VBD.plug(s, vbd))
    wait_console("XENLAB-DISK xvdb: " + PATTERN + "-SECOND", timeout=90)
    print("     disk hot-plug %.1f s" % (time.time() - t), flush=True)
    vif = ok(x.VIF.create(s, {"device": "1", "network": state["net"], "VM": vm, "MAC": MAC2, "MTU": "1500",
                              "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}))
    t = time.time()
    ok(x.VIF.plug(s, vif))
    wait_console("XENLAB-MAC eth1: " + MAC2, timeout=90)
    print("     NIC hot-plug %.1f s" % (time.time() - t), flush=True)
    t = time.time()
    ok(x.VBD.unplug(s, vbd))
    wait_console("XENLAB-GONE xvdb", timeout=90)
    ok(x.VIF.unplug(s, vif))
    wait_console("XENLAB-GONE eth1", timeout=90)
    print("     unplug both %.1f s" % (time.time() - t), flush=True)
    ok(x.VBD.destroy(s, vbd))
    ok(x.VIF.destroy(s, vif))


def clean_reboot():
    vm = state["vm"]
    old = domid_of(vm)
    ready = console_count("XENLAB-GUEST-READY")
    ok(x.VM.clean_reboot(s, vm))
    wait_console("XENLAB-GUEST-SHUTDOWN reboot", timeout=30)
    new = domid_of(vm)
    if new == old or ok(x.VM.get_power_state(s, vm)) != "Running":
        raise Failed("after clean_reboot: domid %d -> %d" % (old, new))
    if xl_has(old):
        raise Failed("the old domain %d still exists" % old)
    wait_console("XENLAB-GUEST-READY", ready + 1)
    state["domid"] = new


def suspend_resume():
    vm = state["vm"]
    old = domid_of(vm)
    t = time.time()
    ok(x.VM.suspend(s, vm))
    print("     suspend %.1f s" % (time.time() - t), flush=True)
    if ok(x.VM.get_power_state(s, vm)) != "Suspended" or xl_has(old):
        raise Failed("not suspended")
    n = heartbeats()
    t = time.time()
    ok(x.VM.resume(s, vm, False, False))
    print("     resume %.1f s" % (time.time() - t), flush=True)
    if ok(x.VM.get_power_state(s, vm)) != "Running":
        raise Failed("not Running after resume")
    wait_heartbeat_after(n)
    state["domid"] = domid_of(vm)


def daemon_restart():
    vm = state["vm"]
    domid = domid_of(vm)
    daemon.stop()
    if not xl_has(domid):
        raise Failed("stopping xenapid took domain %d with it" % domid)
    n = heartbeats()
    daemon.start()
    connect()
    if ok(x.VM.get_power_state(s, vm)) != "Running" or domid_of(vm) != domid:
        raise Failed("after the restart: %s, domid %d (was %d)" %
                     (ok(x.VM.get_power_state(s, vm)), domid_of(vm), domid))
    wait_heartbeat_after(n)


def outside_shutdown():
    """xl asks the guest to power off: the death watch reports it, the VM layer halts the VM."""
    vm = state["vm"]
    domid = domid_of(vm)
    n = console_count("XENLAB-GUEST-SHUTDOWN poweroff")
    rc, out = sh("xl", "shutdown", str(domid))
    if rc:
        raise Failed("xl shutdown: %s" % out)
    wait_console("XENLAB-GUEST-SHUTDOWN poweroff", n + 1, timeout=60)
    wait_state(vm, "Halted", 60)
    if xl_has(domid):
        raise Failed("domain %d still exists after the VM halted" % domid)


def outside_reboot():
    """xl asks the guest to reboot: actions_after_reboot=restart, a new domain."""
    vm = state["vm"]
    start()
    domid = domid_of(vm)
    ready = console_count("XENLAB-GUEST-READY")
    rc, out = sh("xl", "reboot", str(domid))
    if rc:
        raise Failed("xl reboot: %s" % out)
    end = time.time() + 180
    while time.time() < end and (domid_of(vm) in (domid, -1) or ok(x.VM.get_power_state(s, vm)) != "Running"):
        time.sleep(0.5)
    if domid_of(vm) in (domid, -1):
        raise Failed("the VM was not restarted in a new domain")
    wait_console("XENLAB-GUEST-READY", ready + 1)


def offline_shutdown():
    """The guest powers off while xenapid is down: found shut down at the restart, then halted."""
    vm = state["vm"]
    domid = domid_of(vm)
    daemon.stop()
    rc, out = sh("xl", "shutdown", str(domid))
    if rc:
        raise Failed("xl shutdown: %s" % out)
    end = time.time() + 60
    while time.time() < end:
        rc, out = sh("xl", "list", str(domid))
        if rc == 0 and "s" in out.splitlines()[-1].split()[4]:
            break
        time.sleep(0.5)
    else:
        raise Failed("domain %d did not shut down: %s" % (domid, out))
    daemon.start()
    connect()
    wait_state(vm, "Halted", 60)
    if xl_has(domid):
        raise Failed("domain %d still exists after the VM halted" % domid)


def outside_destroy():
    """xl destroy behind xenapid's back: the VM ends Halted."""
    vm = state["vm"]
    start()
    domid = domid_of(vm)
    rc, out = sh("xl", "destroy", str(domid))
    if rc:
        raise Failed("xl destroy: %s" % out)
    wait_state(vm, "Halted", 60)


def clean_shutdown():
    vm = state["vm"]
    start()
    domid = domid_of(vm)
    n = console_count("XENLAB-GUEST-SHUTDOWN poweroff")
    ok(x.VM.clean_shutdown(s, vm))
    if ok(x.VM.get_power_state(s, vm)) != "Halted" or xl_has(domid):
        raise Failed("not halted")
    wait_console("XENLAB-GUEST-SHUTDOWN poweroff", n + 1, timeout=10)


def hard_shutdown():
    vm = state["vm"]
    ok(x.VM.start(s, vm, True, False))
    if ok(x.VM.get_power_state(s, vm)) != "Paused":
        raise Failed("VM.start paused=true: not Paused")
    domid = domid_of(vm)
    ok(x.VM.hard_shutdown(s, vm))
    if ok(x.VM.get_power_state(s, vm)) != "Halted" or xl_has(domid):
        raise Failed("not halted")
    free = ok(x.host_metrics.get_memory_free(s, ok(x.host.get_metrics(s, state["host"]))))
    print("     host memory_free %d MiB" % (int(free) >> 20), flush=True)


def pvh():
    vm = ok(x.VM.create(s, {
        "name_label": "smoke-pvh", "name_description": "", "user_version": "1", "is_a_template": False,
        "affinity": NULL, "memory_static_max": str(128 << 20), "memory_dynamic_max": str(128 << 20),
        "memory_dynamic_min": str(128 << 20), "memory_static_min": str(64 << 20), "VCPUs_params": {},
        "VCPUs_max": "2", "VCPUs_at_startup": "1", "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart", "actions_after_crash": "destroy", "PV_bootloader": "",
        "PV_kernel": KERNEL, "PV_ramdisk": INITRD, "PV_args": "console=hvc0",
        "PV_bootloader_args": "", "PV_legacy_args": "", "HVM_boot_policy": "", "HVM_boot_params": {},
        "platform": {"acpi": "1"}, "PCI_bus": "", "other_config": {}, "recommendations": "",
        "domain_type": "pvh"}))
    ok(x.VM.start(s, vm, False, False))
    wait_console("XENLAB-GUEST-READY", name="smoke-pvh", timeout=180)
    ok(x.VM.hard_shutdown(s, vm))


STORY = [
    ("setup", setup),
    ("start", start),
    ("api console", api_console),
    ("pause/unpause", pause_unpause),
    ("hot-plug disk+nic", hotplug),
    ("clean_reboot", clean_reboot),
    ("suspend/resume", suspend_resume),
    ("xenapid restart", daemon_restart),
    ("guest shutdown via xl", outside_shutdown),
    ("guest reboot via xl", outside_reboot),
    ("shutdown while xenapid down", offline_shutdown),
    ("xl destroy behind our back", outside_destroy),
    ("clean_shutdown", clean_shutdown),
    ("start paused+hard_shutdown", hard_shutdown),
    ("pvh guest", pvh),
]


def main():
    failed = False
    try:
        for name, fn in STORY:
            if "all" in steps or name in steps or name == "setup":
                step(name, fn)
    except Exception:  # noqa: BLE001
        failed = True
        print("---- xenapid log (tail) ----\n" + tail(LOG, 60))
        print("---- guest console (tail) ----\n" + tail(console_path(), 30))
        print("---- xl list ----\n" + sh("xl", "list")[1])
    finally:
        try:
            daemon.stop()
        except Exception as e:  # noqa: BLE001
            print("stopping xenapid: %s" % e)
            failed = True
    passed = sum(1 for r in results if r[1])
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
