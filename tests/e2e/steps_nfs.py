"""E2E steps for the NFS SR on real storage (issue 11): a kernel NFS server
started in the lab's dom0 (nfsd, rpc.mountd, rpcbind; its state and the
export on tmpfs, since dom0's root is this machine's, read-only) exports a
directory that xenapid mounts as an `nfs` SR.

  nfs-sr             SR.probe (the server's exports; the SRs of an export),
                     SR.create type nfs (server, serverpath, nfsversion): the
                     mount at /var/run/sr-mount/<uuid>, physical_size; VDI.create,
                     known bytes in over HTTP (/import_raw_vdi) and out again
                     (/export_raw_vdi)
  nfs-hung-server    the server stops answering (nftables drops its port, else
                     its threads are stopped) during an SR.scan: other calls,
                     event.from and the local SR are served meanwhile; the scan
                     ends with SR_BACKEND_FAILURE_47 after storage_io_timeout,
                     and the SR refuses more I/O at once while the first is stuck;
                     the server comes back, the SR is unplugged cleanly
  nfs-sr-guest-read  the running guest reads known bytes from a VDI on the NFS
                     SR (VBD.plug): needs the VHD datapath of helper branch
                     h12-chain (nbdkit), opt-in until it is merged

Functions of the suite object (tests/e2e/suite.py's Suite), so that suite.py
only lists them.
"""

import ctypes
import os
import random
import threading

from steps_common import suite_module as _m

MiB = 1 << 20
SERVER = "127.0.0.1"
EXPORT = "/run/e2e-nfs-export"   # tmpfs: knfsd cannot export dom0's 9p root
STATE = "/var/lib/nfs"            # nfs-utils' state (etab, rmtab, sm): tmpfs over the read-only root
NFSD_THREADS = "4"
IO_TIMEOUT = 60                   # storage_io_timeout of the daemon (tests/e2e/dom0-suite.sh's config)


def _mounted(path):
    with open("/proc/mounts") as f:
        return [l.split() for l in f if l.split()[1] == path]


def _sr_mount(uuid):
    """Where the SR is mounted as /proc/mounts names it (/var/run is a link to /run; the mount point
    itself is not resolved: on a server that does not answer, that would hang)."""
    return os.path.join(os.path.realpath("/var/run"), "sr-mount", uuid)


def _nfs_server(s):
    """Starts the NFS server once (modules, nfsd fs, tmpfs state, rpcbind, mountd, nfsd, export)."""
    m = _m()
    if s.o.get("nfs_server"):
        return
    for mod in ("nfsd", "nfs", "nfsv3"):
        m.run(["modprobe", mod], timeout=60)
    if not _mounted("/proc/fs/nfsd"):
        m.run(["mount", "-t", "nfsd", "nfsd", "/proc/fs/nfsd"], timeout=30)
    for d in (STATE, EXPORT):
        os.makedirs(d, exist_ok=True)
        if not _mounted(d):
            m.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=256m", "tmpfs", d], timeout=30)
    for d in ("sm", "sm.bak", "v4recovery", "rpc_pipefs"):
        os.makedirs(os.path.join(STATE, d), exist_ok=True)
    for f in ("etab", "rmtab", "state"):
        open(os.path.join(STATE, f), "a").close()
    os.makedirs("/run/rpcbind", exist_ok=True)
    m.run(["rpcbind", "-w"], timeout=30, check_rc=False)
    m.run(["rpc.statd", "--no-notify"], timeout=30, check_rc=False)
    m.run(["rpc.mountd"], timeout=30)
    m.run(["rpc.nfsd", NFSD_THREADS], timeout=60)
    m.run(["exportfs", "-i", "-o", "rw,sync,no_root_squash,no_subtree_check,insecure,fsid=4711",
           "%s:%s" % (SERVER, EXPORT)], timeout=30)
    s.o["nfs_server"] = True


def _transfer(s, method, vdi, body=None, timeout=None):
    """PUT /import_raw_vdi of body, or GET /export_raw_vdi: the bytes answered."""
    return s.raw_vdi_transfer(method, vdi, body, timeout)[0]


def _new_vdi(s, sr, name, size):
    return s.api.call("VDI.create", {"name_label": name, "name_description": "", "SR": sr,
                                     "virtual_size": str(size), "type": "user", "sharable": False,
                                     "read_only": False, "other_config": {}})


def _failure(s, method, *args, timeout=None):
    """method(session, *args)'s ErrorDescription (the step fails if it succeeds)."""
    m = _m()
    r = s.api.raw(method, s.api.session, *args, timeout=timeout or m.T_CALL)
    m.check(isinstance(r, dict) and r.get("Status") == "Failure", "%s succeeded: %r" % (method, r))
    return r["ErrorDescription"]


def s_nfs_sr(s):
    m = _m()
    c = s.api.call
    t0 = m.now()
    _nfs_server(s)
    host = s.o["host"]
    times = [("NFS server started", m.now() - t0)]

    # Without serverpath, sm answers ConfigServerPathMissing with the server's exports as XML.
    t0 = m.now()
    err = _failure(s, "SR.probe", host, {"server": SERVER}, "nfs", {}, timeout=m.T_PLUG)
    times.append(("SR.probe (showmount)", m.now() - t0))
    m.check(err[0] == "SR_BACKEND_FAILURE_101" and "<Path>%s</Path>" % EXPORT in err[3],
            "SR.probe without serverpath: %r" % (err,))
    t0 = m.now()
    xml = c("SR.probe", host, {"server": SERVER, "serverpath": EXPORT, "nfsversion": "3"}, "nfs", {},
            timeout=m.T_PLUG)
    m.check("<SRlist" in xml, "SR.probe of the export: %r" % xml)
    times.append(("SR.probe (mount)", m.now() - t0))

    t0 = m.now()
    sr = c("SR.create", host, {"server": SERVER, "serverpath": EXPORT, "nfsversion": "3"}, "0", "e2e-nfs", "",
           "nfs", "user", True, {}, timeout=m.T_PLUG)
    s.o["nfs_sr"] = sr
    times.append(("SR.create (mounts)", m.now() - t0))
    rec = c("SR.get_record", sr)
    at = _sr_mount(rec["uuid"])
    mnt = _mounted(at)
    m.check(mnt and mnt[0][2].startswith("nfs") and mnt[0][0] == "%s:%s/%s" % (SERVER, EXPORT, rec["uuid"]),
            "no NFS mount of the SR at %s: %r" % (at, mnt))
    m.check(rec["shared"] is True and rec["type"] == "nfs", "SR record: type %r shared %r" % (rec["type"], rec["shared"]))
    st = os.statvfs(EXPORT)
    fs = st.f_blocks * st.f_frsize
    m.check(abs(int(rec["physical_size"]) - fs) <= fs // 100,
            "physical_size %s, the export's filesystem has %d bytes" % (rec["physical_size"], fs))
    xml = c("SR.probe", host, {"server": SERVER, "serverpath": EXPORT}, "nfs", {}, timeout=m.T_PLUG)
    m.check(rec["uuid"] in xml, "SR.probe does not list the new SR: %r" % xml)

    m.out("      " + "; ".join("%s %.1fs" % t for t in times))
    vdi = _new_vdi(s, sr, "e2e-nfs", 8 * MiB)
    s.o["nfs_vdi"] = vdi
    uuid = c("VDI.get_uuid", vdi)
    m.check(os.path.isfile(os.path.join(EXPORT, rec["uuid"], uuid + ".vhd")),
            "no %s.vhd in the export's SR directory" % uuid)
    data = os.urandom(MiB)
    t0 = m.now()
    _transfer(s, "PUT", vdi, data)
    back = _transfer(s, "GET", vdi)
    times.append(("1 MiB in, 8 MiB out over HTTP", m.now() - t0))
    m.check(len(back) == 8 * MiB and back[:MiB] == data and back[MiB:].count(0) == 7 * MiB,
            "exported bytes differ from those imported (%d bytes back)" % len(back))
    m.out("      " + "; ".join("%s %.1fs" % t for t in times))


class _Freeze:
    """The NFS server stops answering: nftables drops what reaches its port (libnftables through
    ctypes: dom0 has the library, not the nft command), or else its threads are stopped."""

    TABLE = "e2e_nfs_freeze"

    def __init__(self):
        self.how = None
        try:
            lib = ctypes.CDLL("libnftables.so.1")
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            self.lib = lib
        except OSError:
            self.lib = None

    def nft(self, cmd):
        ctx = self.lib.nft_ctx_new(0)
        try:
            return self.lib.nft_run_cmd_from_buffer(ctx, cmd.encode()) == 0
        finally:
            self.lib.nft_ctx_free(ctx)

    def start(self):
        m = _m()
        m.run(["modprobe", "nf_tables"], timeout=30, check_rc=False)
        if self.lib and self.nft("add table inet %s\nadd chain inet %s input { type filter hook input priority -300; }\n"
                                 "add rule inet %s input tcp dport 2049 drop\n" % ((self.TABLE,) * 3)):
            self.how = "nftables drops tcp port 2049"
        else:
            m.run(["rpc.nfsd", "0"], timeout=30)
            self.how = "nfsd threads stopped"
        return self.how

    def stop(self):
        m = _m()
        if self.how and self.how.startswith("nftables"):
            self.nft("delete table inet %s\n" % self.TABLE)
        elif self.how:
            m.run(["rpc.nfsd", NFSD_THREADS], timeout=60)
        self.how = None


def s_nfs_hung_server(s):
    m = _m()
    c = s.api.call
    sr, local = s.o["nfs_sr"], s.o.get("sr")
    freeze = _Freeze()
    limit = IO_TIMEOUT
    out = {}

    def scan():
        t0 = m.now()
        try:
            out["r"] = s.api.raw("SR.scan", s.api.session, sr, timeout=limit * 4)
        except Exception as e:  # noqa: BLE001 - judged below
            out["r"] = e
        out["secs"] = m.now() - t0

    how = freeze.start()
    try:
        t = threading.Thread(target=scan, daemon=True)
        t0 = m.now()
        t.start()
        m.wait_until("SR.scan of the NFS SR in its current_operations", 10,
                     lambda: "scan" in c("SR.get_current_operations", sr, timeout=5).values())
        err = _failure(s, "SR.scan", sr, timeout=5)
        m.check(err[0] == "OTHER_OPERATION_IN_PROGRESS", "a second SR.scan: %r" % (err,))
        # Served meanwhile, each within a few seconds: reads, event.from, the local SR's VDIs.
        served = []
        while t.is_alive() and m.now() - t0 < limit - 1:
            t1 = m.now()
            c("SR.get_all_records", timeout=5)
            s.api.call("event.from", ["SR", "VDI"], "", 0.0, timeout=5)
            if local:
                v = _new_vdi(s, local, "e2e-nfs-meanwhile", MiB)
                c("VDI.destroy", v, timeout=5)
                c("SR.scan", local, timeout=10)
            served.append(m.now() - t1)
        t.join(m.capped(limit * 4))
        m.check(not t.is_alive(), "SR.scan of the hung NFS SR did not end within %ds" % (limit * 4))
        r = out["r"]
        m.check(isinstance(r, dict) and r.get("Status") == "Failure" and
                r["ErrorDescription"][0] == "SR_BACKEND_FAILURE_47" and "SR.scan" in r["ErrorDescription"][2],
                "SR.scan of the hung SR: %r" % (r,))
        m.check(served, "no other call was made while the scan was stuck")
        # The first I/O is still stuck in the kernel: the SR fails at once instead of stacking threads.
        t1 = m.now()
        err = _failure(s, "SR.update", sr, timeout=10)
        m.check(err[0] == "SR_BACKEND_FAILURE_47" and "still waiting" in err[2], "SR.update while stuck: %r" % (err,))
        refused_s = m.now() - t1
    finally:
        freeze.stop()
    def usable():
        try:
            return s.api.raw("SR.update", s.api.session, sr, timeout=limit + 5).get("Status") == "Success"
        except OSError:  # a client-side timeout (socket.timeout is one) while the mount recovers
            return False

    t1 = m.now()
    m.wait_until("the NFS SR usable again once the server answers", 120, usable, step=1)
    back_s = m.now() - t1
    pbd = c("SR.get_PBDs", sr)[0]
    c("PBD.unplug", pbd, timeout=m.T_PLUG)
    uuid = c("SR.get_uuid", sr)
    m.check(not _mounted(_sr_mount(uuid)), "the SR is still mounted after PBD.unplug")
    c("PBD.plug", pbd, timeout=m.T_PLUG)
    m.out("      %s; SR.scan failed after %.1fs (limit %ds); %d rounds of other calls meanwhile, slowest %.2fs; "
          "SR.update refused in %.2fs; usable again %.1fs after the server came back"
          % (how, out["secs"], limit, len(served), max(served), refused_s, back_s))


def s_nfs_sr_guest_read(s):
    m = _m()
    c = s.api.call
    s.ensure_power("Running")
    vdi = s.o["nfs_vdi"]
    pattern = "XENAPID-E2E-NFS-%08x" % random.getrandbits(32)
    _transfer(s, "PUT", vdi, (pattern + "\n").encode().ljust(4096, b"\0"))
    vbd = s.new_vbd(vdi, "4", False)
    need = [s.m_disk("xvde", pattern)]
    base = s.counts(need)
    c("VBD.plug", vbd, timeout=m.T_PLUG)
    s.wait_console(need, m.T_PLUG, "the NFS SR disk's bytes in the guest (xvde)", base)
    c("VBD.unplug", vbd, timeout=m.T_PLUG)
    c("VBD.destroy", vbd)


def s_nfs_cleanup(s):
    """The NFS SR goes (VDIs, unplug, destroy), the export stays for nothing else."""
    c = s.api.call
    sr = s.o.get("nfs_sr")
    if not sr:
        return
    for v in c("SR.get_VDIs", sr):
        c("VDI.destroy", v)
    for p in c("SR.get_PBDs", sr):
        c("PBD.unplug", p, timeout=_m().T_PLUG)
    c("SR.destroy", sr, timeout=_m().T_PLUG)
    s.o.pop("nfs_sr", None)
