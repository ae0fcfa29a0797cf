"""The e2e suite's libvirt step: libvirt's Xen driver (libvirtd's libxl driver, Debian's
libvirt-daemon-driver-xen, driven by `virsh -c xen:///system create`) starting the same PV guest
as xenapid's VM.start and the xl benchmark's `xl create` (kernel, initrd, raw file disk on blkback,
one NIC on the network's bridge), timed the same way: from the call to the guest's marker on its
console (xenconsoled's log), medians of three, in the same lab run.

libvirtd runs in dom0 with only its libxl driver (LIBVIRT_DRIVER_DIR names a folder holding just
that module), logging to the run's work folder. Its libxl driver refuses to load when it cannot
turn the CPU features Xen reports into one of its CPU models ("Cannot find suitable CPU model for
given data"), which is what QEMU's emulated CPU gives: libvirtd is then started again with
libvirt-physinfo.so (tests/e2e/shim/) preloaded, which hides those features from libvirt (as on
ARM, where Xen reports none); a PV guest's build does not use them. The printout says which way
libvirtd came up. Like xl in its baseline, libvirtd runs with libxl-slowclock.so (tests/e2e/shim/)
preloaded, which makes libxl's limits (its compiled-in 40 s for a hotplug script) XL_SLOWCLOCK times
longer in real time, in libxl's own poll loop and in the timeouts it hands to libvirt's event loop.

Used by suite.py: s_libvirt_bench(suite) is the step, print_libvirt(suite) adds its lines to the
benchmark table; s_libvirt_slow_hotplug(suite), opt-in, shows that libvirtd's libxl waits past its
40 s. The helpers (run, check, out, ...) are suite.py's own, taken from the module the suite object
comes from.
"""

import os
import re
import statistics
import subprocess
import sys
import time

VIRSH_NAME = "e2e-virsh"
VIRSH_MAC = "00:16:3e:e2:e0:20"
URI = "xen:///system"
T_LIBVIRTD = 180      # libvirtd up with its libxl driver (under TCG, on a loaded host: up to minutes)
CPU_MODEL_ERROR = "Cannot find suitable CPU model"
LIBXL_LOG_DIR = "/var/log/libvirt/libxl"   # libvirt's libxl driver: libxl-driver.log, NAME.log

DISK_XML = """    <disk type='file' device='disk'>
      <driver name='phy' type='raw'/>
      <source file='%(disk)s'/>
      <target dev='xvda' bus='xen'/>
    </disk>
"""
NIC_XML = """    <interface type='bridge'>
      <mac address='%(mac)s'/>
      <source bridge='%(bridge)s'/>
    </interface>
"""
DOMAIN_XML = """<domain type='xen'>
  <name>%(name)s</name>
  <memory unit='MiB'>256</memory>
  <currentMemory unit='MiB'>128</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='xenpv'>linux</type>
    <kernel>%(kernel)s</kernel>
    <initrd>%(initrd)s</initrd>
    <cmdline>%(args)s</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>restart</on_crash>
  <devices>
%(devices)s    <console type='pty'>
      <target type='xen' port='0'/>
    </console>
  </devices>
</domain>
"""
# When the first create fails: the same domain without its NIC, without its disk, and without
# both, so that one lab run says which device libxl's create fails on (libvirt says only
# "libxenlight failed to create new domain").
VARIANTS = (("without the NIC", True, False), ("without the disk", False, True), ("without disk and NIC", False, False))


def domain_xml(v, disk=True, nic=True):
    return DOMAIN_XML % dict(v, devices=(DISK_XML % v if disk else "") + (NIC_XML % v if nic else ""))


def _h(suite):
    """suite.py's module (its helpers and constants), however it was loaded (as __main__ or not)."""
    return sys.modules[type(suite).__module__]


class Libvirtd:
    """libvirtd in dom0, started by the step and stopped by it."""

    def __init__(self, h, work):
        self.h = h
        self.work = work
        self.proc = None
        self.log = os.path.join(work, "libvirtd.log")
        self.mode = None

    def start(self, preload):
        """libvirtd up with preload (shims, a list) in LD_PRELOAD; None, or why not."""
        h = self.h
        drivers = os.path.join(self.work, "libvirt-drivers")
        os.makedirs(drivers, exist_ok=True)
        link = os.path.join(drivers, "libvirt_driver_libxl.so")
        if not os.path.lexists(link):
            os.symlink("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_libxl.so", link)
        env = dict(os.environ, LIBVIRT_DRIVER_DIR=drivers,
                   LIBVIRT_LOG_OUTPUTS="1:file:%s" % self.log,
                   LIBVIRT_LOG_FILTERS="1:libxl 3:*")
        physinfo = any(p.endswith("libvirt-physinfo.so") for p in preload)
        slowclock = h.XL_SHIM in preload
        if preload:
            env["LD_PRELOAD"] = ":".join(preload)
        if slowclock:
            env["XENLAB_SLOWCLOCK"] = str(h.XL_SLOWCLOCK)
        with open(self.log, "a") as f:
            f.write("---- e2e: starting libvirtd%s\n" % (" with LD_PRELOAD=" + env["LD_PRELOAD"] if preload else ""))
        for d in ("/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt"):
            os.makedirs(d, exist_ok=True)
        log_off = os.path.getsize(self.log)
        out = open(os.path.join(self.work, "libvirtd.out"), "a")
        self.proc = subprocess.Popen(["libvirtd", "--pid-file", os.path.join(self.work, "libvirtd.pid")],
                                     stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        out.close()
        t0 = h.now()
        while h.now() - t0 < h.capped(T_LIBVIRTD):
            if self.proc.poll() is not None:
                return "libvirtd exited with %d after %.1f s" % (self.proc.returncode, h.now() - t0)
            # the driver's refusal is final: no need to wait T_LIBVIRTD for it
            if not physinfo and self.log_lines(CPU_MODEL_ERROR, 1, since=log_off):
                return "its libxl driver did not load after %.1f s" % (h.now() - t0)
            rc, o = h.run(["virsh", "-c", URI, "version"], timeout=30, check_rc=False)
            if rc == 0 and "Running hypervisor" in o:     # e.g. "Running hypervisor: Xen 4.17.0"
                self.mode = ("physinfo shim" if physinfo else "plain") + (
                    ", libxl's limits x%d" % h.XL_SLOWCLOCK if slowclock else "")
                h.out("      libvirtd (%s) answered on %s after %.1f s" % (self.mode, URI, h.now() - t0))
                return None
            time.sleep(1)
        return "libvirtd did not answer on %s within %d s" % (URI, T_LIBVIRTD)

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_marks(self):
        """Where libvirt's libxl driver logs end now: libxl_errors(marks) reads only what follows."""
        marks = {}
        for name in ("libxl-driver.log", VIRSH_NAME + ".log"):
            try:
                marks[name] = os.path.getsize(os.path.join(LIBXL_LOG_DIR, name))
            except OSError:
                marks[name] = 0
        return marks

    def libxl_errors(self, marks=None, n=8):
        """The last lines of libvirt's libxl driver logs (libxl's own messages: the domain's log and
        the driver's) since marks, copied whole into the work folder, which the lab keeps (dom0's
        /var/log is not)."""
        lines = []
        for name in ("libxl-driver.log", VIRSH_NAME + ".log"):
            src = os.path.join(LIBXL_LOG_DIR, name)
            try:
                with open(src, errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            with open(os.path.join(self.work, "libvirt-libxl-" + name), "w") as f:
                f.write(text)
            # libvirt's logger writes libxl's messages without their level: all of this attempt's lines
            lines += text[(marks or {}).get(name, 0):].splitlines()
        return lines[-n:] or ["(nothing new in %s)" % LIBXL_LOG_DIR]

    def log_lines(self, pattern, n=6, since=0):
        try:
            with open(self.log, errors="replace") as f:
                f.seek(since)
                return [l.rstrip() for l in f if re.search(pattern, l)][-n:]
        except OSError:
            return []


def _virsh_create_once(suite, h, xml, pattern, n, libvirtd):
    get = lambda: suite.console_text_file(VIRSH_NAME)  # noqa: E731
    need = ["XENLAB-GUEST-READY", "XENLAB-DISK xvda: " + pattern, "XENLAB-MAC eth0: " + VIRSH_MAC]
    base = suite.counts(need + ["XENLAB-GUEST-UP"], get())
    marks = libvirtd.log_marks()
    cpu0 = h.proc_cpu(libvirtd.proc.pid)
    t0 = h.now()
    rc, o = h.run(["virsh", "-c", URI, "create", xml], timeout=h.capped(h.T_START), check_rc=False)
    t1 = h.now()
    cpu1 = h.proc_cpu(libvirtd.proc.pid)
    if rc != 0:
        raise h.StepFailed("virsh create #%s exited with %d: %s\n      libxl's errors (libvirt's libxl driver logs, "
                           "kept in %s): %s" % (n, rc, o.strip()[-400:], libvirtd.work,
                                                "\n        ".join(libvirtd.libxl_errors(marks))))
    suite.wait_console(["XENLAB-GUEST-UP"], h.T_BOOT, "the libvirt guest's marker", base, get=get)
    t2 = h.now()
    suite.wait_console(need, h.T_BOOT, "the libvirt guest's disk, MAC and READY", base, get=get)
    t3 = h.now()
    d = h.xl_domain(VIRSH_NAME)
    h.check(d, "xl list lacks %s" % VIRSH_NAME)
    hp = [x for x in suite.hotplug_trace() if x[2] == d["domid"] and t0 <= x[0] <= t1]
    smp = {"label": "virsh create #%s" % n, "call_s": t1 - t0, "marker_s": t2 - t0, "ready_s": t3 - t0,
           "domid": d["domid"], "hotplug_s": suite.union(hp) if hp else None,
           "libvirtd_cpu_s": (cpu1[0] - cpu0[0]) if cpu0 and cpu1 else None}
    h.out("      virsh create #%s returned after %.1fs; XENLAB-GUEST-UP after %.1fs; READY after %.1fs (domid %d)"
          % (n, t1 - t0, t2 - t0, t3 - t0, d["domid"]))
    return smp


def _destroy(h):
    """The libvirt guest gone, if it is there. A destroy that hangs (libvirtd still busy with a
    failed create's clean-up) is printed, not raised: it must not hide why the step failed."""
    try:
        if h.xl_domain(VIRSH_NAME):
            h.run(["virsh", "-c", URI, "destroy", VIRSH_NAME], timeout=60, check_rc=False)
    except h.StepFailed as e:
        h.out("      (%s)" % e)


def _virsh_variants(suite, h, v, libvirtd):
    """After a failed create: which device libxl fails on (VARIANTS). One line per variant."""
    lines = []
    for label, disk, nic in VARIANTS:
        xml = os.path.join(h.WORK, "%s-%s.xml" % (VIRSH_NAME, label.replace(" ", "-")))
        with open(xml, "w") as f:
            f.write(domain_xml(v, disk, nic))
        marks = libvirtd.log_marks()
        t0 = h.now()
        try:    # half a start's limit: these only say which device fails, the step has failed already
            rc, o = h.run(["virsh", "-c", URI, "create", xml], timeout=h.capped(h.T_START // 2), check_rc=False)
        except h.StepFailed as e:
            rc, o = -1, str(e)
        took = h.now() - t0
        if rc == 0:
            lines.append("%s: created in %.1f s" % (label, took))
        else:
            lines.append("%s: failed after %.1f s (%s); libxl: %s" % (label, took, o.strip()[-200:],
                                                                     " | ".join(libvirtd.libxl_errors(marks, 4))))
        h.out("      variant " + lines[-1])
        _destroy(h)
    return lines


def _guest(suite, h):
    """The libvirt guest's files (its disk, the pattern first, and its domain XML): (pattern, xml, v)."""
    h.check(h.GUEST_KERNEL and h.GUEST_INITRD, "no guest kernel/initrd (XENLAB_GUEST_KERNEL, XENLAB_GUEST_INITRD)")
    for tool in ("libvirtd", "virsh"):
        rc, _ = h.run(["sh", "-c", "command -v " + tool], timeout=10, check_rc=False)
        h.check(rc == 0, "%s is not installed (libvirt-daemon-driver-xen, libvirt-clients: tests/e2e/lab/setup.sh)"
                % tool)
    pattern = suite.o["pattern0"]
    disk = os.path.join(h.WORK, "virsh-disk.raw")   # its own file: blkback will not share the xl guest's
    with open(disk, "wb") as f:
        f.truncate(16 * h.MiB)
        f.write((pattern + "\n").encode())
    xml = os.path.join(h.WORK, VIRSH_NAME + ".xml")
    v = {"name": VIRSH_NAME, "kernel": h.GUEST_KERNEL, "initrd": h.GUEST_INITRD, "args": h.PV_ARGS, "disk": disk,
         "mac": VIRSH_MAC, "bridge": suite.o["bridge"]}
    with open(xml, "w") as f:
        f.write(domain_xml(v))
    return pattern, xml, v


def _libvirtd_up(h, lv, res):
    """lv started plainly, else with the physinfo shim; always with the slow-clock shim, for the same
    limits as xl's baseline (suite.xl_env; without it, plain libxl's 40 s). Raises StepFailed."""
    slow = [h.XL_SHIM] if h.xl_env() else []
    why = lv.start(slow)
    if why:
        err = lv.log_lines(CPU_MODEL_ERROR, 1) or lv.log_lines(r"error", 1)
        res["attempts"].append("plain libvirtd: %s%s" % (why, ("; its log: " + err[-1][-300:]) if err else ""))
        h.out("      " + res["attempts"][-1])
        lv.stop()
        _, info = h.run(["xl", "info"], timeout=30, check_rc=False)
        caps = re.search(r"hw_caps\s*:\s*(\S+)", info)
        res["hw_caps"] = caps.group(1) if caps else None
        h.out("      Xen's hw_caps (what libvirt decodes): %s" % res["hw_caps"])
        shim = os.path.join(os.path.dirname(os.environ.get("E2E_BIN", "")), "libvirt-physinfo.so")
        h.check(os.path.exists(shim), "no %s (scripts/build.sh -DXENAPID_LIBXL=ON builds it)" % shim)
        why = lv.start([shim] + slow)
        if why:
            res["attempts"].append("libvirtd with the physinfo shim: " + why)
            raise h.StepFailed("; ".join(res["attempts"]) + "\n      libvirtd's log: "
                               + "\n        ".join(lv.log_lines(r"error")))
    res["mode"] = lv.mode


def s_libvirt_bench(suite):
    h = _h(suite)
    pattern, xml, v = _guest(suite, h)
    lv = Libvirtd(h, h.WORK)
    res = suite.o.setdefault("libvirt", {"samples": [], "attempts": [], "failed": []})
    try:
        _libvirtd_up(h, lv, res)
        # up to three tries per sample, as the xl benchmark's: under load Xen's block script can run
        # past libxl's hotplug limit (40 s compiled in, XL_SLOWCLOCK times that with the shim) in
        # libvirtd as in xl, and fail the create
        for n in (1, 2, 3):
            for attempt in (1, 2, 3):
                _destroy(h)
                try:
                    res["samples"].append(_virsh_create_once(suite, h, xml, pattern, n, lv))
                    break
                except h.StepFailed as e:
                    lines = str(e).splitlines()
                    res["failed"].append("virsh create #%d try %d: %s" % (n, attempt, " | ".join(
                        l.strip() for l in lines[:1] + [l for l in lines[1:] if "error" in l.lower()][:3])))
                    h.out("      " + "\n      ".join(lines))
                    if attempt < 3:
                        continue
                    if res["samples"]:
                        raise
                    _destroy(h)
                    # it never worked: which device it fails on
                    res["variants"] = _virsh_variants(suite, h, v, lv)
                    raise h.StepFailed("%s\n      the same domain %s"
                                       % (e, "\n      the same domain ".join(res["variants"])))
    finally:
        _destroy(h)
        lv.stop()


SLOW_SCRIPT_S = 60    # past libxl's 40 s, well inside the shim's 160 s


def s_libvirt_slow_hotplug(suite):
    """The slow-clock shim in libvirtd: one create whose block script is held SLOW_SCRIPT_S seconds
    (dom0-suite.sh's wrapper, hotplug-delay-block) still succeeds, i.e. libxl inside libvirtd (its own
    poll loop and libvirt's event loop alike) waits past its compiled-in 40 s, as xl's baseline does."""
    h = _h(suite)
    fail_dir = os.environ.get("E2E_HOTPLUG_FAIL_DIR", "")
    h.check(fail_dir, "not run: the hotplug scripts are not wrapped (E2E_TRACE_HOTPLUG=0)")
    h.check(h.xl_env(), "no %s: libxl's limits would be its own 40 s" % h.XL_SHIM)
    pattern, xml, _ = _guest(suite, h)
    lv = Libvirtd(h, h.WORK)
    res = {"samples": [], "attempts": [], "failed": []}
    flag = os.path.join(fail_dir, "hotplug-delay-block")
    try:
        _libvirtd_up(h, lv, res)
        _destroy(h)
        with open(flag, "w") as f:
            f.write("%d\n" % SLOW_SCRIPT_S)
        smp = _virsh_create_once(suite, h, xml, pattern, "4 (block script %d s slower)" % SLOW_SCRIPT_S, lv)
        h.check(not os.path.exists(flag), "the block script's delay was not used")
        h.check(smp["call_s"] > SLOW_SCRIPT_S, "virsh create returned after %.1f s, before the delayed script"
                % smp["call_s"])
        suite.o["libvirt_slow_hotplug"] = smp
    finally:
        if os.path.exists(flag):
            os.unlink(flag)
        _destroy(h)
        lv.stop()


def print_libvirt(suite):
    """The libvirt lines of the benchmark table: its samples beside the medians of xenapid's warm
    VM.start and of xl create from the same run. Returns the figures for benchmark.json."""
    h = _h(suite)
    res = suite.o.get("libvirt")
    if not res:
        return None
    smp = res["samples"]
    if not smp:
        h.out("  libvirt (virsh create): no sample; tried: %s" % "; ".join(res["attempts"] + res["failed"]))
        for line in res.get("variants", []):
            h.out("    the same domain " + line)
        return res
    f = lambda v: ("%.1f" % v) if v is not None else "-"  # noqa: E731
    h.out("  libvirt's libxl driver (virsh -c %s create, libvirtd %s), per sample:" % (URI, res["mode"]))
    for s in smp:
        h.out("    %-18s call returned %5s s, hotplug scripts %5s s, marker %5s s, libvirtd CPU %5s s"
              % (s["label"], f(s["call_s"]), f(s["hotplug_s"]), f(s["marker_s"]), f(s["libvirtd_cpu_s"])))
    if res["failed"]:
        h.out("    virsh create failed %d time(s) and was tried again (not in its samples):" % len(res["failed"]))
        for line in res["failed"]:
            h.out("      " + line[:300])
    lm = statistics.median(s["marker_s"] for s in smp)
    lc = statistics.median(s["call_s"] for s in smp)
    res["median_marker_s"], res["median_call_s"] = lm, lc
    warm = [s for s in suite.bench_starts if "cold" not in s["label"]] or suite.bench_starts
    line = "  MEDIANS start -> marker: libvirt %.1f s (call %.1f s)" % (lm, lc)
    if warm:
        xm = statistics.median(s["marker_s"] for s in warm)
        res["ratio_xenapid_libvirt_marker"] = xm / lm
        line += "; xenapid %.1f s (%d warm VM.start) = %.2f of libvirt's" % (xm, len(warm), xm / lm)
    if suite.bench_xl:
        xl = statistics.median(x["marker_s"] for x in suite.bench_xl)
        res["ratio_libvirt_xl_marker"] = lm / xl
        line += "; xl create %.1f s (libvirt/xl %.2f)" % (xl, lm / xl)
    h.out(line)
    if warm:
        h.out("  GOAL xenapid ahead of libvirt (start -> marker): %s"
              % ("met" if res["ratio_xenapid_libvirt_marker"] < 1.0 else "NOT met"))
    return res
