"""E2E steps for the iSCSI SRs on a real target and initiator (issue 11): tgt's
tgtd started in the lab's dom0 serves a LUN backed by a file on tmpfs (dom0's
root is this machine's, read-only), and open-iscsi's iscsid (its node database
on a tmpfs over /etc/iscsi) logs xenapid in to it through the kernel's
iscsi_tcp.

  iscsi-sr-volume  SR.probe (the target's IQNs through SR_BACKEND_FAILURE_96, then
                   its LUNs with SCSIid), SR.create type iscsi (a session, one VDI
                   for the LUN with sm_config LUNid/SCSIid), the VDI hot-plugged
                   into the running guest (blkback, phy), which reads the bytes
                   written into the LUN's backing file beforehand, unplugged;
                   PBD.unplug logs out, SR.forget
  lvmoiscsi-sr     SR.probe lvmoiscsi without SCSIid (107 with the LUNs), SR.create
                   lvmoiscsi on the LUN (VG_XenStorage-<uuid>), a VDI made there,
                   known bytes in and out over HTTP; PBD.unplug logs out,
                   SR.destroy (logs in again to remove the VG)
  iscsi-cleanup    stops tgtd and iscsid

Functions of the suite object (tests/e2e/suite.py's Suite), so that suite.py
only lists them.
"""

import os
import random
import subprocess
import time
import xml.dom.minidom

from steps_common import suite_module as _m

MiB = 1 << 20
IQN = "iqn.2026-12.org.xenapid.e2e:lun1"
LUN_SIZE = 16 * MiB
BACKING = "/run/e2e-iscsi-lun1.img"   # tmpfs
ISCSI_ETC = "/etc/iscsi"              # open-iscsi's node database lives here: a tmpfs over the read-only root
GUEST_DEV = ("5", "xvdf")             # userdevice, the guest's disk


def _mounted(path):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


def _alive(pid_file):
    try:
        with open(pid_file) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def _tail(path):
    try:
        with open(path) as f:
            return " | ".join(f.read().strip().splitlines()[-5:])
    except OSError:
        return "(no log)"


def _tgtadm(*args):
    return _m().run(["tgtadm", "--lld", "iscsi"] + list(args), timeout=60)


def _target(s):
    """tgtd and iscsid up once, the target with its LUN (the known pattern at its start)."""
    m = _m()
    if s.o.get("iscsi_target"):
        return
    for mod in ("iscsi_tcp", "sd_mod"):
        m.run(["modprobe", mod], timeout=60)
    if not _mounted(ISCSI_ETC):
        keep = {}
        for name in ("initiatorname.iscsi", "iscsid.conf"):
            with open(os.path.join(ISCSI_ETC, name)) as f:
                keep[name] = f.read()
        m.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=4m", "tmpfs", ISCSI_ETC], timeout=30)
        for name, text in keep.items():
            if name == "iscsid.conf":  # iscsid is started here, not by systemd's socket
                text = "\n".join(l for l in text.splitlines() if not l.startswith("iscsid.startup")) + "\n"
            with open(os.path.join(ISCSI_ETC, name), "w") as f:
                f.write(text)
    os.makedirs("/run/lock/iscsi", exist_ok=True)
    if not _alive("/run/iscsid.pid"):
        m.run(["iscsid"], timeout=60)
    s.o["iscsi_pattern"] = "XENAPID-E2E-ISCSI-%08x" % random.getrandbits(32)
    with open(BACKING, "wb") as f:
        f.truncate(LUN_SIZE)
        f.write((s.o["iscsi_pattern"] + "\n").encode().ljust(4096, b"\0"))
    log_path = os.path.join(m.WORK, "tgtd.log")
    if not s.o.get("tgtd"):
        s.o["tgtd"] = subprocess.Popen(["tgtd", "-f"], stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    # tgtd makes its socket before it serves it (under TCG its start takes a while): ask until it answers
    deadline = m.now() + 120
    while True:
        m.check(s.o["tgtd"].poll() is None, "tgtd exited (%s): %s" % (s.o["tgtd"].returncode, _tail(log_path)))
        try:
            if subprocess.run(["tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "sys"],
                              capture_output=True, timeout=30).returncode == 0:
                break
        except subprocess.TimeoutExpired:
            pass
        m.check(m.now() < deadline, "tgtd did not answer tgtadm within 120 s: %s" % _tail(log_path))
        time.sleep(0.5)
    _tgtadm("--op", "new", "--mode", "target", "--tid", "1", "-T", IQN)
    _tgtadm("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", BACKING)
    _tgtadm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
    s.o["iscsi_target"] = True


def _failure(s, method, *args, timeout=None):
    """method(session, *args)'s ErrorDescription (the step fails if it succeeds)."""
    m = _m()
    r = s.api.raw(method, s.api.session, *args, timeout=timeout or m.T_CALL)
    m.check(isinstance(r, dict) and r.get("Status") == "Failure", "%s succeeded: %r" % (method, r))
    return r["ErrorDescription"]


def _texts(xml_text, parent, name):
    doc = xml.dom.minidom.parseString(xml_text)
    return [e.firstChild.data if e.firstChild else "" for p in doc.getElementsByTagName(parent)
            for e in p.getElementsByTagName(name)]


def _sessions():
    base = "/sys/class/iscsi_session"
    return os.listdir(base) if os.path.isdir(base) else []


DC = {"target": "127.0.0.1", "port": "3260", "targetIQN": IQN}


def s_iscsi_sr_volume(s):
    m = _m()
    c = s.api.call
    host = s.o["host"]
    t0 = m.now()
    _target(s)
    t_target = m.now() - t0

    err = _failure(s, "SR.probe", host, {"target": "127.0.0.1"}, "iscsi", {}, timeout=m.T_PLUG)
    m.check(err[0] == "SR_BACKEND_FAILURE_96" and IQN in _texts(err[3], "TGT", "TargetIQN"),
            "SR.probe without targetIQN: %r" % (err,))
    t1 = m.now()
    luns = c("SR.probe", host, DC, "iscsi", {}, timeout=m.T_PLUG)
    t_probe = m.now() - t1
    ids = _texts(luns, "LUN", "SCSIid")
    m.check(len(ids) == 1 and _texts(luns, "LUN", "LUNid") == ["1"] and _texts(luns, "LUN", "size") == [str(LUN_SIZE)],
            "SR.probe's LUNs: %s" % luns)
    m.check(not _sessions(), "the probe left a session: %r" % _sessions())
    s.o["iscsi_scsi_id"] = ids[0]

    t1 = m.now()
    sr = c("SR.create", host, DC, "0", "e2e-iscsi", "", "iscsi", "user", True, {}, timeout=m.T_PLUG)
    t_create = m.now() - t1
    m.check(len(_sessions()) == 1, "no iSCSI session after SR.create")
    vdis = c("SR.get_VDIs", sr)
    m.check(len(vdis) == 1, "SR.scan found %d VDIs, not the one LUN" % len(vdis))
    rec = c("VDI.get_record", vdis[0])
    m.check(rec["sm_config"].get("LUNid") == "1" and rec["sm_config"].get("SCSIid") == ids[0]
            and rec["virtual_size"] == str(LUN_SIZE), "the LUN's VDI: %r" % rec)
    try:
        s.ensure_power("Running")
        vbd = s.new_vbd(vdis[0], GUEST_DEV[0], False)
        need = [s.m_disk(GUEST_DEV[1], s.o["iscsi_pattern"])]
        base = s.counts(need)
        t1 = m.now()
        c("VBD.plug", vbd, timeout=m.T_PLUG)
        s.wait_console(need, m.T_PLUG, "the iSCSI LUN's bytes in the guest (%s)" % GUEST_DEV[1], base)
        t_seen = m.now() - t1
        _, o = m.run(["xl", "block-list", str(s.domid())], timeout=30)
        c("VBD.unplug", vbd, timeout=m.T_PLUG)
        c("VBD.destroy", vbd)
    finally:
        pbd = c("SR.get_PBDs", sr)[0]
        c("PBD.unplug", pbd, timeout=m.T_PLUG)
        m.check(not _sessions(), "PBD.unplug left the session: %r" % _sessions())
        c("SR.forget", sr)
    m.out("      target up %.1fs; SR.probe (login, LUNs, logout) %.1fs; SR.create (login, scan) %.1fs; "
          "VBD.plug to the guest's bytes %.1fs" % (t_target, t_probe, t_create, t_seen))


def _transfer(s, method, vdi, body=None):
    return s.raw_vdi_transfer(method, vdi, body)[0]


def s_lvmoiscsi_sr(s):
    m = _m()
    c = s.api.call
    host = s.o["host"]
    _target(s)
    m.run(["modprobe", "dm-mod"], timeout=30)
    err = _failure(s, "SR.probe", host, DC, "lvmoiscsi", {}, timeout=m.T_PLUG)
    m.check(err[0] == "SR_BACKEND_FAILURE_107" and _texts(err[3], "LUN", "SCSIid"),
            "SR.probe lvmoiscsi without SCSIid: %r" % (err,))
    scsi_id = _texts(err[3], "LUN", "SCSIid")[0]
    dc = dict(DC, SCSIid=scsi_id)
    t0 = m.now()
    sr = c("SR.create", host, dc, "0", "e2e-lvmoiscsi", "", "lvmoiscsi", "user", True, {}, timeout=m.T_PLUG)
    t_create = m.now() - t0
    uuid = c("SR.get_uuid", sr)
    pbd = c("SR.get_PBDs", sr)[0]
    try:
        m.check(os.path.isdir("/dev/VG_XenStorage-%s" % uuid) or
                m.run(["vgs", "VG_XenStorage-%s" % uuid], timeout=30, check_rc=False)[0] == 0,
                "no volume group VG_XenStorage-%s on the LUN" % uuid)
        vdi = c("VDI.create", {"name_label": "e2e-lvmoiscsi", "name_description": "", "SR": sr,
                               "virtual_size": str(4 * MiB), "type": "user", "sharable": False,
                               "read_only": False, "other_config": {}})
        head = ("XENAPID-E2E-LVMOISCSI-%08x\n" % random.getrandbits(32)).encode().ljust(4096, b"\0")
        _transfer(s, "PUT", vdi, head)
        back = _transfer(s, "GET", vdi)
        m.check(back[:len(head)] == head and len(back) == 4 * MiB, "the LV's bytes did not come back")
        c("VDI.destroy", vdi)
    finally:
        c("PBD.unplug", pbd, timeout=m.T_PLUG)
    m.check(not _sessions(), "PBD.unplug left the session: %r" % _sessions())
    c("SR.destroy", sr, timeout=m.T_PLUG)
    m.check(not _sessions(), "SR.destroy left a session: %r" % _sessions())
    m.out("      SR.create lvmoiscsi (login, pvcreate, vgcreate, plug) %.1fs" % t_create)


def s_iscsi_cleanup(s):
    m = _m()
    p = s.o.pop("tgtd", None)
    if p:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    try:  # the iscsid this suite started (its pid file)
        with open("/run/iscsid.pid") as f:
            os.kill(int(f.read().strip()), 15)
    except (OSError, ValueError):
        pass
    s.o["iscsi_target"] = False
    if os.path.exists(BACKING):
        os.unlink(BACKING)
