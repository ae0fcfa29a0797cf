"""The e2e suite's HVM steps (a mixin of suite.Suite): HVM guests under the lab's Xen with
qemu-xen as their device model:

  hvm-disk-boot        from a disk (a VDI holding hvm-boot.img, whose MBR is the one-sector guest
                       of tests/e2e/lab/hvm-boot.S), boot order "c"; the VM's VNC console (rfb)
                       and xapi's platform keys are checked here too
  hvm-hard-reboot      VM.hard_reboot of that guest: a new domain, a new QEMU, its marker again
  hvm-cd-boot          xapi's "Other install media" flow: VM.provision makes the empty system disk
                       (other_config:disks), a CD VBD holds an ISO SR's image (the same guest as
                       a no-emulation El Torito image), boot order "dc"
  hvm-disk-boot-linux, hvm-cd-boot-linux   the same with the lab's Linux kernel and initramfs
                       behind syslinux/isolinux (opt-in: see below)
  hvm-kernel-boot-vnc  from a given kernel (QEMU's -kernel, loaded through fw_cfg: slow under TCG)

Every guest's marker comes out of its serial port through CONNECT /console (the vt100 console)
and a line typed there is echoed. The suite module's helpers come in as self.lib (the suite
runs as __main__, so this file does not import it). Each step prints its boot phases from
VM.start (hvm_phase_note: hvmloader, its PCI scan, SeaBIOS, the hand-over, the loader, the bytes
QEMU read for it, the marker; the guest's CPU seconds at each) and leaves the guest's xl dmesg
lines, a trace of QEMU's read bytes and the guest's CPU time, and its serial output in WORK.

Why the default steps boot a one-sector guest: under nested TCG every access of the guest's
firmware and loader to an emulated device is a round trip guest -> Xen -> QEMU in dom0. With
Linux behind isolinux (hvm-cd-boot-linux, lab run at load 9, another lab beside), the firmware
took 66 s from VM.start to "Booting from DVD/CD", then isolinux's reads of the kernel and
initramfs (9.3 MB) came through QEMU at 6 KB/s: 1.8 MB in 300 s, the guest's vCPU busy (71 s of
CPU) in SeaBIOS's ATAPI programmed I/O. The same lab run's one-sector guests reached their
marker 56 s (disk, AHCI, pinned) and 68 s (CD) after VM.start: the firmware is all of it
(hvmloader's PCI scan ~16 s, SeaBIOS 9-14 s, VM.start itself 21-25 s). Over three lab runs (load
9-18, other labs beside) the steps took 52-106 s (hvm-disk-boot), 75-111 s (hvm-hard-reboot) and
54-171 s (hvm-cd-boot; 54 s once pinned), markers 27-68 s after VM.start, hvmloader's PCI scan
5-49 s by Xen's clock. hvm-disk-boot-linux passed once: 225.5 s, marker 180 s after VM.start
(syslinux's reads over AHCI ~35 s, the kernel ~50 s after them). Earlier figures: with two
labs on the 2 cores (load 17-25) hvmloader's PCI scan alone took 89 s; with the template's VGA,
SeaBIOS had not got past "Turning on vga text mode console" 8 minutes after VM.start; the
Linux kernel's own PCI scan was ~17,000 config-space accesses (329 with pci=off, which the Linux
images' command line has, with acpi=off nopv: lab/setup.sh says why). At load 3.9 the Linux CD
guest reached /init ~150 s after VM.start.
"""

import json
import os
import random
import re
import socket
import threading
import time

MiB = 1 << 20
HVM_MEM = 192 * MiB
ISO_SR_NAME = "e2e-iso-sr"
# No emulated graphics card for the disk and CD guests: under the lab's nested TCG each write the
# VGA BIOS and SeaBIOS make to the text screen is a round trip to qemu in dom0, and SeaBIOS had not
# got past "Turning on vga text mode console" 5 minutes after VM.start (a loaded host). QEMU's VNC
# server is there all the same (the rfb console); the kernel step keeps the template's VGA.
FAST_FIRMWARE = {"vga": "none"}
# The disk guest's disk on AHCI (platform:hdtype, xl's key): SeaBIOS reads it by DMA, where IDE's
# programmed I/O costs a round trip to qemu per sector (syslinux's banner came 2 min after
# SeaBIOS handed over to the disk, and the kernel had not loaded 5 min after VM.start).

# No ACPI tables for the disk guest (xapi's platform:acpi=0): Linux then takes the MP tables and
# does not run the AML of Xen's DSDT, whose processor and PCI slot objects (a hundred and more) read
# QEMU's hotplug registers, each read a round trip to the device model.
NO_ACPI = {"acpi": "0"}

# Where an HVM boot is, from Xen's log of the guest (xl dmesg: hvmloader's and SeaBIOS's lines,
# guest_loglvl=all) and its serial port (the loader, /init): (phase, source, pattern), in boot order.
HVM_PHASES = (
    ("hvmloader", "xen", "HVM Loader"),
    ("pci-done", "xen", "Multiprocessor initialisation"),
    ("seabios", "xen", "Invoking SeaBIOS"),
    ("booting", "xen", "Booting from"),
    ("loader", "serial", "LINUX "),
    # QEMU has read as many bytes as the loader's files hold (the kernel and initramfs)
    ("loaded", "io", None),
    ("guest-up", "serial", "XENLAB-GUEST-UP"),
)
# Which steps put the guest's vCPU and QEMU on one CPU (hvm_pin). In two lab runs (load 9 and 19,
# other labs beside) the pinned disk guest's firmware was done sooner than the CD guest's, which
# was not pinned: marker 56 s vs 68 s, then 27 s vs 124 s after VM.start. All pinned now.
PIN_DISK, PIN_CD, PIN_KERNEL = True, True, True
# How often the phase watcher polls (xl dmesg, xl list, QEMU's /proc/PID/io): each poll is dom0
# CPU under TCG, which the guest's QEMU in dom0 waits for. Xen's own time on its lines
# (console_timestamps=boot) gives the firmware's phases to the ms however coarse this is.
POLL_S = 4
# Xen's time on its log lines (console_timestamps=boot in XENLAB_XEN_ARGS): "[   12.345678]"
XEN_STAMP = re.compile(r"\[\s*(\d+\.\d+)\]")


def mem_available():
    """dom0's MemAvailable (its /run and root overlay are tmpfs: what the suite leaves there stays in RAM)."""
    try:
        with open("/proc/meminfo") as f:
            return next((l.split(":")[1].strip() for l in f if l.startswith("MemAvailable:")), "?")
    except OSError as e:
        return str(e)


class GuestShutDown(Exception):
    """hvm_attach: the new domain's guest shut down (reboot, crash, poweroff) before QEMU was seen;
    tap is the console hvm_attach opened to it."""

    def __init__(self, msg, tap):
        super().__init__(msg)
        self.tap = tap


def last_pid():
    """dom0's last pid and its pid_max: libxl's destroy signals the device model pid its xenstore
    holds, which after a wrap could name another process (a whole local suite used ~6,700 of
    32,768: no wrap)."""
    try:
        with open("/proc/loadavg") as f, open("/proc/sys/kernel/pid_max") as g:
            return "%s of %s" % (f.read().split()[-1], g.read().strip())
    except (OSError, IndexError) as e:
        return str(e)


class HvmSteps:
    lib = None  # the suite module (its check, run, wait_until, constants...)

    # ---- shared by the three steps ----
    def hvm_new_vm(self, name, order, provision_sr=None, platform=None):
        """A VM from the "Other install media" template (domain_type hvm, xapi's platform keys),
        with its own boot order, the memory a small guest needs and platform keys added. With
        provision_sr, as xapi's clients install from media: VM.provision of the clone (still a
        template) makes the system disk its other_config:disks names, here 16 MiB there."""
        c, L = self.api.call, self.lib
        tpl = c("VM.get_by_name_label", "Other install media")
        L.check(len(tpl) == 1, "template 'Other install media': %r" % (tpl,))
        vm = c("VM.clone", tpl[0], name)
        self.o.setdefault("hvm_vms", []).append(vm)
        if provision_sr:
            c("VM.remove_from_other_config", vm, "disks")
            c("VM.add_to_other_config", vm, "disks", '<provision><disk device="0" size="%d" sr="%s" '
              'bootable="true" type="system"/></provision>' % (16 * MiB, c("SR.get_uuid", provision_sr)))
            c("VM.provision", vm)
        c("VM.set_is_a_template", vm, False)
        c("VM.set_memory_limits", vm, str(HVM_MEM), str(HVM_MEM), str(HVM_MEM), str(HVM_MEM))
        c("VM.set_HVM_boot_params", vm, {"order": order})
        for k, v in (platform or {}).items():
            c("VM.remove_from_platform", vm, k)
            c("VM.add_to_platform", vm, k, v)
        rec = c("VM.get_record", vm)
        L.check(rec["domain_type"] == "hvm" and rec["HVM_boot_policy"] == "BIOS order",
                "template gave domain_type %r, HVM_boot_policy %r" % (rec["domain_type"], rec["HVM_boot_policy"]))
        return vm, rec

    def hvm_vbd(self, vm, vdi, userdevice, kind, bootable):
        return self.api.call("VBD.create", {
            "VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": bootable,
            "mode": "RO" if kind == "CD" else "RW", "type": kind, "empty": False, "other_config": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {}})

    def hvm_start(self, vm, name, label, pin=False, load_bytes=0):
        """VM.start, then hvm_attach. Returns (tap, domid, t0)."""
        c, L = self.api.call, self.lib
        self.hvm_prewarm()
        t0 = L.now()
        self.o["hvm_log_mark"] = self.daemon_log_size()
        try:
            c("VM.start", vm, False, False, timeout=L.T_START)
        except L.StepFailed as e:
            # libxl gives QEMU fixed limits (60 s to say "running", then 10 s for its QMP
            # answers), which a loaded lab can miss: xenapid's FAILED_TO_START_EMULATOR,
            # retried once (and said so)
            if "FAILED_TO_START_EMULATOR" not in str(e):
                raise
            L.out("      VM.start failed after %.1fs: %s; once more" % (L.now() - t0, str(e)[:400]))
            t0 = L.now()
            c("VM.start", vm, False, False, timeout=L.T_START)
        try:
            return self.hvm_attach(vm, name, label, t0, "VM.start", pin, load_bytes, guest_shutdown_is_news=True)
        except GuestShutDown as e:
            # CI twice lost a new guest's QEMU 2 s after VM.start to libxl's destroy from the daemon
            # (QEMU's log: SIGHUP from xenapid). A guest that shuts down by itself looks just like
            # that: forced with xen-hvmcrash (a triple fault, which Xen makes a reboot), xenapid
            # restarts the VM as actions_after_* say and its first domain's QEMU goes. A firmware's
            # triple fault under the lab's nested TCG is the lab's: said with the evidence, the VM
            # halted and started once more. Any other loss of QEMU fails the step.
            L.out("      the guest shut down by itself %.1fs after VM.start and xenapid acted on it; once more:\n"
                  "      %s" % (L.now() - t0, e))
            self.hvm_forget_attach(name, e.tap)
            try:
                c("VM.hard_shutdown", vm, timeout=L.T_SHUTDOWN)
            except L.StepFailed as e2:
                if "VM_BAD_POWER_STATE" not in str(e2):  # (halted already: actions_after_* destroy)
                    raise
            self.o["hvm_log_mark"] = self.daemon_log_size()
            t0 = L.now()
            c("VM.start", vm, False, False, timeout=L.T_START)
            return self.hvm_attach(vm, name, label, t0, "VM.start", pin, load_bytes)

    def hvm_forget_attach(self, name, tap):
        """Undoes hvm_attach of a domain that is gone: its phase watcher, console and pinning."""
        stop, _ = self.o.get("hvm_watch", {}).pop(name, (None, None))
        if stop:
            stop.set()
        tap.close()
        self.o["hvm_taps"].remove(tap)
        self.hvm_unpin()

    def hvm_attach(self, vm, name, label, t0, how, pin=False, load_bytes=0, guest_shutdown_is_news=False):
        """After VM.start or a reboot: the vt100 console opened at once (QEMU drops what the serial
        port sends while nobody holds its pty open, and the copy in WORK shows how far a slow boot
        got), the phase watcher, qemu-xen running with the VM's VNC socket. Returns (tap, domid, t0)."""
        c, L = self.api.call, self.lib
        t1 = L.now()
        L.check(c("VM.get_power_state", vm) == "Running", "HVM VM not Running after %s" % how)
        tap = self.open_console(vm, "vt100", copy_to=os.path.join(L.WORK, "%s-serial.log" % label))
        self.o.setdefault("hvm_taps", []).append(tap)
        domid = int(c("VM.get_domid", vm))
        L.out("      HVM %s returned after %.1fs (domid %d; dom0 MemAvailable %s, last pid %s)"
              % (how, t1 - t0, domid, mem_available(), last_pid()))
        stop = threading.Event()
        self.o.setdefault("hvm_watch", {})[name] = (stop, self.hvm_phase_watch(domid, tap, t0, stop, load_bytes))
        if pin:
            self.hvm_pin(domid)
        L.check(c("VM_metrics.get_current_domain_type", c("VM.get_metrics", vm)) == "hvm", "current_domain_type")
        uuid = c("VM.get_uuid", vm)
        vnc = "unix:/run/xen/vnc-%s" % uuid
        _, ps = L.run(["ps", "-eo", "args"], timeout=30)
        procs = ps.splitlines()
        qemu = [l for l in procs if "qemu-system-i386" in l and "-xen-domid %d " % domid in l + " "]
        if not qemu and guest_shutdown_is_news:
            shut = re.search(r"libxl backend: domain %d \(\S+\) shut down, reason (\w+)" % domid,
                             self.daemon_log(self.o.get("hvm_log_mark", 0)))
            if shut:
                raise GuestShutDown("domain %d, reason %s; %s" % (domid, shut.group(1),
                                                                   self.hvm_why_no_qemu(vm, name, domid, tap)), tap)
        L.check(qemu, "no qemu-system-i386 -xen-domid %d in dom0's processes:\n      %s\n      dom0's processes "
                "(the last, and QEMU, xl and hotplug scripts):\n%s"
                % (domid, self.hvm_why_no_qemu(vm, name, domid, tap), L.tail("\n".join(
                    l for i, l in enumerate(procs) if i >= len(procs) - 4
                    or re.search(r"qemu|hotplug|/etc/xen/scripts|\bxl\b", l)), 12)))
        L.check("-vnc " + vnc in qemu[0], "qemu's command line lacks -vnc %s: %s" % (vnc, qemu[0][:400]))
        with open(os.path.join(L.WORK, "%s-qemu-cmdline.txt" % label), "w") as f:
            f.write(qemu[0] + "\n")
        return tap, domid, t0

    def hvm_why_no_qemu(self, vm, name, domid, tap):
        """What became of a guest whose QEMU is gone right after its start (CI twice, 2 s after
        VM.start, the run's logs out of reach; QEMU's log said SIGHUP from the daemon, i.e. libxl's
        destroy of the domain). Most telling first, as CI keeps only the head of a long report:
        the daemon's own lines since VM.start (a guest reboot or crash it acted on, a destroy),
        Xen's lines on the domain (a triple fault), QEMU's log, the VM's power state, how far the
        guest got, dom0's kernel lines on kills and faults, then libxl's debug lines."""
        c, L = self.api.call, self.lib
        why = []
        log = self.daemon_log(self.o.get("hvm_log_mark", 0)).splitlines()
        why.append("xenapid since VM.start (info and above):\n%s" % L.tail(
            "\n".join(l[:300] for l in log if " debug: " not in l), 12))
        try:
            _, o = L.run(["xl", "dmesg"], timeout=30, check_rc=False)
            mine = re.compile(r"\bd%d(v\d+)?\b|domain %d\b" % (domid, domid))
            why.append("Xen on domain %d:\n%s" % (domid, L.tail("\n".join(
                l for l in o.splitlines() if mine.search(l) and not l.startswith("(d%d)" % domid)
                and " save: " not in l), 6)))
        except (OSError, L.StepFailed) as e:
            why.append("xl dmesg: %s" % e)
        try:
            with open("/var/log/xen/qemu-dm-%s.log" % name, errors="replace") as f:
                why.append("qemu-dm-%s.log:\n%s" % (name, L.tail(f.read(), 6)))
        except OSError as e:
            why.append("QEMU's log: %s" % e)
        try:
            why.append("power state %s, domid %s" % (c("VM.get_power_state", vm), c("VM.get_domid", vm)))
        except L.StepFailed as e:
            why.append("VM: %s" % str(e)[:200])
        why.append(self.hvm_how_far(name, domid, tap))
        try:
            # dom0's kernel: the OOM killer (dom0 has 1 GiB; its /run and root overlay are tmpfs) or a crash
            _, o = L.run(["dmesg"], timeout=30, check_rc=False)
            why.append("dom0 MemAvailable %s; its kernel log on kills and faults:\n%s" % (mem_available(), L.tail("\n".join(
                l for l in o.splitlines() if re.search(r"oom|out of memory|killed process|segfault|qemu-system|trap", l,
                                                        re.I)), 6)))
        except OSError as e:
            why.append("dmesg: %s" % e)
        words = ("domain %d" % domid, "domid %d" % domid, "spawn", "device model", "qemu", "child", "kill")
        why.append("libxl since VM.start on the domain and its children:\n%s" % L.tail("\n".join(
            l[:300] for l in log if " debug: " in l and any(w in l.lower() for w in words)), 15))
        return "\n      ".join(why)

    def hvm_prewarm(self):
        """Once: QEMU's binary, its libraries and the firmware read through, so that the first HVM
        guest's device model does not load them over the lab's 9p share inside libxl's fixed 60 s
        for QEMU to come up (LIBXL_DEVICE_MODEL_START_TIMEOUT: no setting changes it)."""
        L = self.lib
        if self.o.get("hvm_prewarmed"):
            return
        self.o["hvm_prewarmed"] = True
        qemu = next((p for p in ("/usr/libexec/xen-qemu-system-i386", "/usr/lib/xen/bin/qemu-system-i386")
                     if os.path.exists(p)), None)
        if not qemu:
            return
        t0, n = L.now(), 0
        _, o = L.run(["ldd", qemu], timeout=60, check_rc=False)
        files = [qemu] + [w for w in o.split() if w.startswith("/")]
        files += [os.path.join(d, f) for d in ("/usr/lib/xen-4.17/boot", "/usr/share/seabios") if os.path.isdir(d)
                  for f in os.listdir(d)]
        for path in files:
            try:
                with open(path, "rb") as f:
                    while True:
                        b = f.read(1 << 20)
                        if not b:
                            break
                        n += len(b)
            except OSError:
                pass
        L.out("      read QEMU, its %d libraries and the firmware (%d MiB) in %.1fs before the first HVM start"
              % (len(files) - 1, n >> 20, L.now() - t0))

    def hvm_pin(self, domid):
        """The guest's vCPU and its device model on the same CPU of the lab (Xen's pCPU 0, dom0's
        vCPU 0 alone there with QEMU on it; dom0's other vCPUs on the other pCPUs). Each access of
        the firmware to an emulated device is a round trip guest -> Xen -> QEMU -> guest; on two
        pCPUs each leg wakes the other CPU, i.e. another host thread of the lab's QEMU, which a
        loaded host schedules late. On one pCPU the round trip stays on one host thread."""
        L = self.lib
        _, info = L.run(["xl", "info"], timeout=30)
        ncpu = int(next((l.split(":")[1] for l in info.splitlines() if l.startswith("nr_cpus")), "1"))
        if ncpu < 2:
            L.out("      (one CPU in the lab: nothing to pin)")
            return
        _, pid = L.run(["xenstore-read", "/local/domain/%d/image/device-model-pid" % domid], timeout=30)
        self.o["hvm_pinned"] = True
        L.run(["xl", "vcpu-pin", "Domain-0", "all", "1" if ncpu == 2 else "1-%d" % (ncpu - 1)], timeout=30)
        L.run(["xl", "vcpu-pin", "Domain-0", "0", "0"], timeout=30)
        L.run(["xl", "vcpu-pin", str(domid), "all", "0"], timeout=30)
        L.run(["taskset", "-a", "-p", "1", pid.strip()], timeout=30)
        L.out("      pinned: domain %d's vCPU and dom0's vCPU 0 on pCPU 0, QEMU (pid %s) on dom0's CPU 0"
              % (domid, pid.strip()))

    def hvm_unpin(self):
        if self.o.pop("hvm_pinned", None):
            self.lib.run(["xl", "vcpu-pin", "Domain-0", "all", "all"], timeout=30, check_rc=False)

    def hvm_how_far(self, name, domid, tap):
        """What a slow guest got through: its CPU time, hvmloader's lines (Xen's guest_loglvl=all,
        which tests/e2e/run.sh sets), its serial port (SeaBIOS, the loader, the kernel)."""
        L = self.lib
        d = {"serial": tap.text().splitlines()[-6:]}
        try:
            _, o = L.run(["xl", "list", name], timeout=30, check_rc=False)
            f = o.splitlines()[-1].split()
            d["cpu_s"] = f[5] if len(f) >= 6 else "?"
            _, o = L.run(["xl", "dmesg"], timeout=30, check_rc=False)
            d["hvmloader"] = [l for l in o.splitlines() if "(d%d)" % domid in l][-4:]
        except (OSError, L.StepFailed, IndexError) as e:
            d["error"] = str(e)
        return "domain CPU time %s s; xl dmesg: %s; serial: %s%s" % (
            d.get("cpu_s"), d.get("hvmloader"), d["serial"], " (%s)" % d["error"] if "error" in d else "")

    def hvm_phase_watch(self, domid, tap, t0, stop, load_bytes=0):
        """When each of HVM_PHASES was first seen (polled every POLL_S, in seconds from VM.start) and,
        for Xen's lines, Xen's own time on them when it prints one: a boot's time split into
        hvmloader's (its PCI scan), SeaBIOS's, the loader's and the kernel's. Returns the dict
        {phase: {"t": s, "xen": s or None}} a thread fills in until stop is set; the guest's
        lines of xl dmesg go to WORK at the end."""
        L, seen, lines, trace = self.lib, {}, {}, []
        dm = {}

        def sample():
            """(bytes QEMU has read since VM.start, the guest's CPU seconds): the loader's reads
            of its files from the disk or CD come through QEMU's read() calls (rchar)."""
            if "pid" not in dm:
                rc, pid = L.run(["xenstore-read", "/local/domain/%d/image/device-model-pid" % domid], timeout=30,
                                check_rc=False)
                if rc == 0 and pid.strip().isdigit():
                    dm["pid"] = int(pid)
            rchar = None
            try:
                with open("/proc/%d/io" % dm["pid"]) as f:
                    rchar = int(next(l for l in f if l.startswith("rchar:")).split()[1])
                dm.setdefault("rchar0", rchar)
            except (KeyError, OSError, StopIteration, ValueError):
                pass
            cpu = None
            rc, o = L.run(["xl", "list", str(domid)], timeout=30, check_rc=False)
            f = o.splitlines()[-1].split() if rc == 0 and o.strip() else []
            if len(f) >= 6:
                try:
                    cpu = float(f[-1])
                except ValueError:
                    pass
            return (rchar - dm["rchar0"] if rchar is not None else None), cpu

        def poll():
            while not stop.wait(POLL_S):
                try:
                    io, cpu = sample()
                    _, o = L.run(["xl", "dmesg"], timeout=30, check_rc=False)
                except (OSError, L.StepFailed):
                    io, cpu, o = None, None, ""
                # (kept as they come: Xen's console ring drops its oldest lines)
                mine = [l for l in o.splitlines() if "(d%d)" % domid in l]
                lines.update(dict.fromkeys(mine))
                text, t = tap.text(), L.now() - t0
                trace.append((round(t, 1), io, cpu))
                for name, src, pat in HVM_PHASES:
                    if name in seen:
                        continue
                    if src == "io":
                        hit = load_bytes and io is not None and io >= load_bytes
                    else:
                        hit = next((l for l in mine if pat in l), None) if src == "xen" else (
                            pat if pat in text else None)
                    if hit:
                        m = XEN_STAMP.search(hit) if src == "xen" else None
                        seen[name] = {"t": round(t, 1), "xen": float(m.group(1)) if m else None, "cpu": cpu}
            with open(os.path.join(L.WORK, "hvm-d%d-xl-dmesg.txt" % domid), "w") as f:
                f.write("\n".join(lines) + "\n")
            # (s from VM.start, bytes QEMU read, the guest's CPU s) every poll
            with open(os.path.join(L.WORK, "hvm-d%d-trace.json" % domid), "w") as f:
                json.dump(trace, f)
        th = threading.Thread(target=poll, daemon=True)
        th.start()
        seen["_thread"] = th
        return seen

    @staticmethod
    def hvm_phase_note(ph):
        """"hvmloader 4s, pci-done 40s, ..." (seconds from VM.start, within a poll), and the phases'
        lengths by Xen's clock where it stamped them."""
        got = [(n, ph[n]) for n, _, _ in HVM_PHASES if n in ph]
        if not got:
            return "no boot phase seen (xl dmesg, serial)"
        note = ", ".join("%s %.0fs%s" % (n, v["t"], " (cpu %.1fs)" % v["cpu"] if v.get("cpu") is not None else "")
                         for n, v in got)
        xen = [(n, v["xen"]) for n, v in got if v["xen"] is not None]
        if len(xen) > 1:
            note += " (by Xen's clock: %s)" % ", ".join(
                "%s->%s %.1fs" % (a[0], b[0], b[1] - a[1]) for a, b in zip(xen, xen[1:]))
        return note

    def hvm_wait_guest(self, vm, name, domid, tap, t0, boot_via, timeout):
        """The guest's marker and command line through the proxy, then a typed line's echo.
        Returns the seconds from VM.start to the marker."""
        L = self.lib
        stop, ph = self.o["hvm_watch"].pop(name)
        try:
            tap.wait("XENLAB-GUEST-UP", timeout, "the HVM guest's marker through CONNECT /console (vt100)")
            t_up = L.now()
            tap.wait("XENLAB-CMDLINE:", 30, "the HVM guest's command line through CONNECT /console")
            # the whole line: the serial port's bytes come in pieces (run 2's CD guest had
            # come as far as "... quiet loglevel" when the check read it)
            L.wait_until("the end of the HVM guest's command line", 30,
                         lambda: "\n" in tap.text().split("XENLAB-CMDLINE:", 1)[1] or None, step=0.2)
            text = tap.text()
        except L.StepFailed as e:
            stop.set()
            ph.pop("_thread").join(35)
            raise L.StepFailed("%s; phases: %s; %s" % (e, self.hvm_phase_note(ph), self.hvm_how_far(name, domid, tap)))
        stop.set()
        ph.pop("_thread").join(35)
        self.o.setdefault("hvm_phases", {})[name] = ph
        cmdline = text.split("XENLAB-CMDLINE:", 1)[1].splitlines()[0].strip()
        if boot_via:
            L.check("xenlab.boot=%s" % boot_via in cmdline.split(), "the guest did not boot from its %s: its command "
                    "line is %r" % (boot_via, cmdline))
        # the serial log shows the loader's banner (SYSLINUX/ISOLINUX) and SeaBIOS's line for the device
        loader = [l.strip() for l in tap.text().splitlines() if "LINUX " in l and "Copyright" in l]
        L.out("      HVM guest %s: XENLAB-GUEST-UP after %.1fs from VM.start (through the proxy); loader %s; "
              "cmdline %r" % (name, t_up - t0, loader[:1] or "none", cmdline))
        L.out("      boot phases (s from VM.start): %s" % self.hvm_phase_note(ph))
        with open(os.path.join(L.WORK, "hvm-phases.json"), "w") as f:
            json.dump(self.o["hvm_phases"], f, indent=1)
        word = "e2e-hvm-echo-%08x" % random.getrandbits(32)
        since = tap.mark()
        tap.send((word + "\n").encode())
        tap.wait("XENLAB-ECHO " + word, 60, "the HVM guest's echo of a line typed through CONNECT /console", since)
        L.out("      the HVM guest echoed %s (typed through the proxy)" % word)
        L.check(self.api.call("VM.get_power_state", vm) == "Running", "the HVM VM is not Running after its boot")
        self.xl_check_running_name(name, domid, "the HVM guest")
        self.o.setdefault("hvm_boot_s", {})[name] = t_up - t0
        return t_up - t0

    def hvm_dm_left(self, domid, t0, wait=30):
        """The device model of a destroyed domain: "" once no qemu-xen for it runs (waited for up to
        wait s), else what it is doing (libxl's destroy sends it SIGHUP and does not wait; its
        signal masks in /proc/PID/status show a SIGHUP pending and blocked)."""
        L = self.lib

        def left():
            pids = []
            for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        args = f.read().split(b"\0")
                except OSError:
                    continue
                if b"-xen-domid" in args and args[args.index(b"-xen-domid") + 1:][:1] == [str(domid).encode()]:
                    pids.append(pid)
            return pids
        end = L.now() + wait
        while left() and L.now() < end:
            time.sleep(1)
        pids = left()
        if not pids:
            return ""
        info = []
        for pid in pids:
            d = {}
            for k in ("status", "wchan", "stack"):
                try:
                    with open("/proc/%s/%s" % (pid, k)) as f:
                        d[k] = f.read()
                except OSError as e:
                    d[k] = str(e)
            st = [l for l in d["status"].splitlines() if l.startswith(("State:", "SigPnd:", "ShdPnd:", "SigBlk:"))]
            info.append("pid %s %s wchan %s stack %r" % (pid, " ".join(st), d["wchan"], d["stack"][-300:]))
        return "domain %d's QEMU still running %.0fs after it was destroyed: %s" % (domid, L.now() - t0, "; ".join(info))

    def hvm_stop(self, vm, tap, destroy_vdis):
        """VM.hard_shutdown (the proxy ends the console), then the VM, its VBDs and the VDIs given."""
        c, L = self.api.call, self.lib
        self.hvm_unpin()
        domid = int(c("VM.get_domid", vm))
        t0 = L.now()
        c("VM.hard_shutdown", vm, timeout=L.T_SHUTDOWN)
        L.wait_until("the vt100 console's end after VM.hard_shutdown", 30, lambda: tap.closed, step=0.5)
        tap.close()
        self.o["hvm_taps"].remove(tap)
        L.check(c("VM.get_power_state", vm) == "Halted", "HVM VM not Halted after VM.hard_shutdown")
        L.check(not c("VM.get_consoles", vm), "a halted HVM VM still has consoles")
        for vbd in c("VM.get_VBDs", vm):
            c("VBD.destroy", vbd)
        c("VM.destroy", vm)
        self.o["hvm_vms"].remove(vm)
        for vdi in destroy_vdis:
            c("VDI.destroy", vdi)
        # (libxl's destroy sends QEMU SIGHUP; QEMU forked with it blocked never went: vmops_libxl_fork)
        left = self.hvm_dm_left(domid, t0)
        L.check(not left, left)

    def hvm_check_platform(self, domid, platform):
        """xapi's platform keys reached libxl: the domain's stored config (libxl-json)."""
        L = self.lib
        cfg = None
        for f in os.listdir("/var/lib/xen"):
            if f.startswith("userdata-d.%d." % domid) and f.endswith("libxl-json"):
                with open(os.path.join("/var/lib/xen", f)) as fh:
                    # (libxl stores the JSON text with its terminating NUL)
                    cfg, _ = json.JSONDecoder().raw_decode(fh.read().strip("\0 \n"))
        L.check(cfg, "no libxl-json of domain %d in /var/lib/xen" % domid)
        with open(os.path.join(L.WORK, "hvm-domain-%d.json" % domid), "w") as f:
            json.dump(cfg, f, indent=1)
        bi, hv = cfg["b_info"], cfg["b_info"]["type.hvm"]
        want = {"acpi": bi.get("acpi"), "apic": bi.get("apic"), "pae": hv.get("pae"), "nx": hv.get("nx"),
                "viridian": hv.get("viridian")}
        for k, v in want.items():
            if k in platform:
                on = platform[k].lower() in ("1", "true")
                L.check(v == ("True" if on else "False"), "platform:%s=%s, libxl's %s is %r" % (k, platform[k], k, v))
        if "vga" in platform:
            L.check(hv.get("vga", {}).get("kind") == platform["vga"], "platform:vga=%s, libxl's vga %r"
                    % (platform["vga"], hv.get("vga")))
        if "hdtype" in platform:
            L.check(hv.get("hdtype", "ide") == platform["hdtype"], "platform:hdtype=%s, libxl's hdtype %r"
                    % (platform["hdtype"], hv.get("hdtype")))
        if "device_id" in platform:
            L.check(hv.get("xen_platform_pci") == "True", "platform:device_id=%s, libxl's xen_platform_pci is %r"
                    % (platform["device_id"], hv.get("xen_platform_pci")))
        return cfg

    def hvm_check_rfb(self, vm, t0):
        """The rfb console: QEMU's VNC server answers RFB on its socket and through CONNECT /console
        (version, then the security types, as a VNC client reads them)."""
        c, L = self.api.call, self.lib
        uuid = c("VM.get_uuid", vm)
        vnc = "unix:/run/xen/vnc-%s" % uuid
        recs = [c("console.get_record", x) for x in c("VM.get_consoles", vm)]
        L.check([r["protocol"] for r in recs] == ["rfb", "vt100"], "HVM consoles: %r" % [r["protocol"] for r in recs])
        L.check(recs[0]["other_config"].get("vnc") == vnc, "rfb console other_config %r" % recs[0]["other_config"])
        L.check("/console" in recs[0]["location"], "rfb console location %r" % recs[0]["location"])

        def rfb():
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sk:
                    sk.settimeout(10)
                    sk.connect(vnc[5:])
                    return sk.recv(12)
            except OSError:
                return None
        banner = L.wait_until("an RFB banner on %s" % vnc, 60, rfb, step=0.5)
        L.check(banner.startswith(b"RFB 003."), "VNC socket %s said %r" % (vnc, banner))
        L.out("      qemu-xen up, VNC %s answers %r after %.1fs" % (vnc, banner.strip().decode(errors="replace"),
                                                                  L.now() - t0))
        rfbtap = self.open_console(vm, "rfb")
        try:
            ver = rfbtap.recv_exact(12, 30)
            L.check(ver.startswith(b"RFB 003."), "RFB through CONNECT /console said %r" % ver)
            rfbtap.send(b"RFB 003.008\n")
            n = rfbtap.recv_exact(1, 30)[0]
            L.check(n > 0, "the VNC server offered no security type through the proxy (reason follows: %r)"
                    % rfbtap.text()[:200])
            types = list(rfbtap.recv_exact(n, 30))
        finally:
            rfbtap.close()
        L.out("      RFB through CONNECT /console: %r, security types %s"
              % (ver.strip().decode(errors="replace"), types))

    def hvm_isolated(self, step):
        """step, whose failure is cleaned up at once (hvm_cleanup): a guest a failed step left
        running (once a triple fault's restart, the domain still named like the next step's
        guest) would otherwise fail the next HVM step too."""
        def run():
            try:
                step()
            except Exception:
                self.hvm_cleanup()
                raise
        return run

    def hvm_cleanup(self):
        """What a failed HVM step left: its watchers, pinning, consoles and VMs (the domains go
        with the lab)."""
        self.o.pop("hvm_disk_running", None)
        for stop, _ in self.o.pop("hvm_watch", {}).values():
            stop.set()
        try:
            self.hvm_unpin()
        except (self.lib.StepFailed, self.lib.TimeUp):
            pass
        for tap in self.o.pop("hvm_taps", []):
            tap.close()
        for vm in self.o.pop("hvm_vms", []):
            try:
                if self.api.call("VM.get_power_state", vm) != "Halted":
                    self.api.call("VM.hard_shutdown", vm, timeout=self.lib.T_SHUTDOWN)
            except (self.lib.StepFailed, self.lib.TimeUp):
                pass

    # ---- the steps ----
    def s_hvm_disk(self, linux=False):
        """An HVM guest booted by SeaBIOS from its disk: a VDI holding the lab's image imported
        through PUT /import_raw_vdi, boot order "c" (hvm-boot.img, the one-sector guest of
        lab/hvm-boot.S; with linux, hvm-disk.img: MBR, syslinux, kernel, initramfs). Also:
        qemu-xen's VNC server through the rfb console, and xapi's platform keys in libxl's domain
        config. Left running for hvm-hard-reboot when that step runs next."""
        c, L = self.api.call, self.lib
        name, image = L.HVM_DISK_NAME, L.GUEST_DISK if linux else L.HVM_BOOT_DISK
        L.check(os.path.isfile(image), "no HVM boot disk image %r (tests/e2e/lab/setup.sh builds it)" % image)
        size = -(-os.path.getsize(image) // MiB) * MiB
        vdi = c("VDI.create", {"name_label": "e2e-hvm-boot-disk", "name_description": "", "SR": self.o["sr"],
                               "virtual_size": str(size), "type": "system", "sharable": False, "read_only": False,
                               "other_config": {}})
        with open(image, "rb") as f:
            self.import_raw(vdi, f.read(), " of %s" % image)
        vm, rec = self.hvm_new_vm(name, "c", platform=dict(FAST_FIRMWARE, device_id="0001", hdtype="ahci",
                                                           **NO_ACPI))
        self.hvm_vbd(vm, vdi, "0", "Disk", True)
        load = os.path.getsize(L.GUEST_BZIMAGE) + os.path.getsize(L.GUEST_INITRD) if linux else 0
        tap, domid, t0 = self.hvm_start(vm, name, "hvm-disk-linux" if linux else "hvm-disk", pin=PIN_DISK,
                                        load_bytes=load)
        self.hvm_check_platform(domid, rec["platform"])
        self.hvm_check_rfb(vm, t0)
        self.hvm_wait_guest(vm, name, domid, tap, t0, "disk", L.T_HVM_BOOT)
        if not linux and self.will_run("hvm-hard-reboot"):
            self.o["hvm_disk_running"] = (vm, tap, vdi, domid)
            return
        self.hvm_stop(vm, tap, [vdi])

    def s_hvm_hard_reboot(self):
        """VM.hard_reboot of hvm-disk-boot's guest: a new domain (VM.start goes on beside the old
        one while Xen still releases it, once the memory is there: vmops/libxl_backend.c), a new
        QEMU, the guest's marker and echo again through a new console, and the old domain's QEMU
        gone (it was not: forked by libxl with the daemon's SIGHUP blocked, it never took the
        SIGHUP of libxl's destroy and kept the old domain dying; vmops_libxl_fork)."""
        c, L = self.api.call, self.lib
        name = L.HVM_DISK_NAME
        L.check("hvm_disk_running" in self.o, "hvm-disk-boot left no running guest")
        vm, tap, vdi, old = self.o.pop("hvm_disk_running")
        self.hvm_unpin()
        t0 = L.now()
        self.o["hvm_log_mark"] = self.daemon_log_size()
        c("VM.hard_reboot", vm, timeout=L.T_SHUTDOWN + L.T_START)
        # the old domain's console ends with its QEMU
        L.wait_until("the old vt100 console's end after VM.hard_reboot", 30, lambda: tap.closed, step=0.5)
        tap.close()
        self.o["hvm_taps"].remove(tap)
        tap, domid, t0 = self.hvm_attach(vm, name, "hvm-reboot", t0, "VM.hard_reboot", pin=PIN_DISK)
        L.check(domid > 0 and domid != old, "after VM.hard_reboot domid %d (was %d): expected a new domain"
                % (domid, old))
        self.hvm_wait_guest(vm, name, domid, tap, t0, "disk", L.T_HVM_BOOT)
        L.out("      VM.hard_reboot: domid %d -> %d; %s" % (old, domid, self.hvm_old_domain(old, t0)))
        left = self.hvm_dm_left(old, t0)
        L.check(not left, left)
        self.hvm_stop(vm, tap, [vdi])

    def hvm_old_domain(self, old, t0):
        """The rebooted VM's old domain: gone, or still dying in Xen (libxl destroyed it, something
        in dom0 still holds its pages: the processes mapping foreign pages are named). A domain
        that is not dying fails the step."""
        L = self.lib
        row = [(n, d) for n, d in L.xl_list().items() if d["domid"] == old]
        if not row:
            return "domain %d gone (seen %.0fs after VM.hard_reboot)" % (old, L.now() - t0)
        L.check("d" in row[0][1]["state"], "domain %d (%s) still there and not dying after VM.hard_reboot: %r"
                % (old, row[0][0], row[0][1]))
        holders = []
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                with open("/proc/%s/maps" % pid) as f:
                    n = sum(1 for l in f if "privcmd" in l or "gntdev" in l)
                with open("/proc/%s/comm" % pid) as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if n:
                holders.append("%s[%s] %d" % (comm, pid, n))
        return ("domain %d still dying %.0fs after VM.hard_reboot (xl list state %s); dom0 processes with "
                "foreign mappings: %s" % (old, L.now() - t0, row[0][1]["state"], ", ".join(holders) or "none"))

    def s_hvm_cd(self, linux=False):
        """xapi's "Other install media" flow: an ISO SR over the lab's folder of install media,
        VM.provision making the template's system disk (empty), a CD VBD with the ISO, boot order
        "dc": SeaBIOS boots the CD (xenlab-hvm-boot.iso, the one-sector guest; with linux,
        xenlab-guest.iso: isolinux, kernel, initramfs)."""
        c, L = self.api.call, self.lib
        name, iso = L.HVM_CD_NAME, L.GUEST_ISO if linux else L.HVM_BOOT_ISO
        L.check(os.path.isfile(iso), "no HVM boot ISO %r (tests/e2e/lab/setup.sh builds it)" % iso)
        sr = c("SR.create", self.o["host"], {"location": os.path.dirname(iso)}, "0", ISO_SR_NAME, "",
               "iso", "iso", False, {})
        self.o["iso_sr"] = sr
        c("SR.scan", sr)
        base = os.path.basename(iso)
        isos = [v for v in c("SR.get_VDIs", sr) if c("VDI.get_location", v) == base]
        L.check(len(isos) == 1, "the ISO SR has no VDI at location %s: %r" % (base, [c("VDI.get_location", v)
                                                                                  for v in c("SR.get_VDIs", sr)]))
        vm, _ = self.hvm_new_vm(name, "dc", provision_sr=self.o["sr"], platform=FAST_FIRMWARE)
        disks = [c("VBD.get_VDI", b) for b in c("VM.get_VBDs", vm)]
        L.check(len(disks) == 1 and int(c("VDI.get_virtual_size", disks[0])) == 16 * MiB,
                "VM.provision made VDIs %r" % disks)
        self.hvm_vbd(vm, isos[0], "3", "CD", False)
        load = os.path.getsize(L.GUEST_BZIMAGE) + os.path.getsize(L.GUEST_INITRD) if linux else 0
        tap, domid, t0 = self.hvm_start(vm, name, "hvm-cd-linux" if linux else "hvm-cd", pin=PIN_CD,
                                        load_bytes=load)
        self.hvm_wait_guest(vm, name, domid, tap, t0, "cd", L.T_HVM_BOOT)
        self.hvm_stop(vm, tap, disks)
        pbds = c("SR.get_PBDs", sr)
        for pbd in pbds:
            c("PBD.unplug", pbd)
        c("SR.forget", sr)
        self.o.pop("iso_sr")

    def s_hvm_kernel(self):
        """An HVM guest booted from the lab's kernel (QEMU's -kernel: SeaBIOS loads it through
        fw_cfg), with no disk: the step that is slow under TCG."""
        c, L = self.api.call, self.lib
        name = L.HVM_NAME
        L.check(L.GUEST_BZIMAGE, "no bzImage kernel for the HVM guest (XENLAB_KERNEL)")
        vm, rec = self.hvm_new_vm(name, "cd")
        c("VM.set_PV_kernel", vm, L.GUEST_BZIMAGE)
        c("VM.set_PV_ramdisk", vm, L.GUEST_INITRD)
        c("VM.set_PV_args", vm, L.HVM_ARGS)
        tap, domid, t0 = self.hvm_start(vm, name, "hvm-kernel", pin=PIN_KERNEL)
        cfg = self.hvm_check_platform(domid, rec["platform"])
        L.check(cfg["b_info"].get("kernel") == L.GUEST_BZIMAGE, "libxl's kernel %r" % cfg["b_info"].get("kernel"))
        self.hvm_check_rfb(vm, t0)
        self.hvm_wait_guest(vm, name, domid, tap, t0, None, L.T_HVM_BOOT)
        self.hvm_stop(vm, tap, [])
