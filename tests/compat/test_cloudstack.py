"""Apache CloudStack's XenServer resource (XenServer650Resource, the Java
SDK com.xensource.xenapi), replayed: its call sequences for host connect,
Setup, Ready, ping, local storage, template copy, VM start/stop/reboot and
volume attach, asserting what the SDK and CloudStack parse. The SDK sends
every record field (Record.toMap, unset ones as defaults and the enum
placeholder UNRECOGNIZED), ints as strings, nulls as "", and polls Async
tasks with task.get_status; results of Async calls are parsed out of
task.result's `<value>...</value>`.

CloudStack connects over HTTPS only, so these tests do (XENAPID_COMPAT_SCHEME
overrides it)."""

import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import time
import unittest
import urllib.parse
import uuid
import xmlrpc.client

from compat import (COMPAT_PLUGINS, NULL_REF, PASSWORD, UUID_RE, CompatTest, XenAPIFailure, check_record,
                    is_ref, wait_for)
from fake_nfs import FakeNFS, can_bind_mount
from harness import CLASSES

sys.path.insert(0, COMPAT_PLUGINS)
import vhdfile  # noqa: E402

MiB = 1 << 20
CAN_BIND_MOUNT = can_bind_mount()
RESOURCE = "com.cloud.hypervisor.xenserver.resource.XenServer650Resource"
LINK_LOCAL = "cloud_link_local_network"
HOTFIX_UUID = "0850b186-4d47-11e3-a720-001b2151a503"  # the XS 6.2 SP1 hot-fix CloudStack probes for


def sdk_default(type_text):
    """What the Java SDK's Record.toMap sends for a field CloudStack left unset."""
    t = type_text.strip()
    if t.endswith(" map"):
        return {}
    if t.endswith(" set"):
        return []
    if t.endswith(" ref"):
        return NULL_REF
    if t.startswith("enum "):
        return "UNRECOGNIZED"
    return {"int": "0", "float": 0.0, "bool": False, "string": "",
            "datetime": xmlrpc.client.DateTime("19700101T00:00:00Z")}.get(t, "")


def sdk_record(cls, **fields):
    """Record.toMap of a record CloudStack filled with fields. CloudStack builds against the 6.2 SDK,
    whose records lack the fields added since (network.managed among them: then xapi's default, true)."""
    rec = {f["name"]: sdk_default(f["type"]) for f in CLASSES[cls]["fields"] if f["type"] != "<class> record"}
    if cls == "network":
        rec["managed"] = True
    rec.update(fields)
    return rec


class Connection:
    """com.xensource.xenapi.Connection (ConnectionNew): login, then get_this_host and the API version."""

    def __init__(self, proxy, user="root", password=PASSWORD):
        self.proxy = proxy
        self.session = self._unwrap(proxy.session.login_with_password(user, password, "2.21"))
        self.this_host = self.call("session.get_this_host", self.session)
        self.api = (self.call("host.get_API_version_major", self.this_host),
                    self.call("host.get_API_version_minor", self.this_host))

    @staticmethod
    def _unwrap(r):
        if not isinstance(r, dict) or r.get("Status") not in ("Success", "Failure"):
            raise AssertionError("BadServerResponse: %r" % (r,))
        if r["Status"] == "Success":
            return r["Value"]
        details = r["ErrorDescription"]
        assert all(isinstance(d, str) for d in details), "the SDK casts every part to String: %r" % details
        raise XenAPIFailure(details)

    def call(self, method, *args):
        obj = self.proxy
        for part in method.split("."):
            obj = getattr(obj, part)
        return self._unwrap(obj(self.session, *args))

    def wait_task(self, task, timeout=60):
        """waitForTask: task.get_status once a second (faster here) until not pending."""
        def finished():
            status = self.call("task.get_status", task)
            return status if status != "pending" else None

        status = wait_for(finished, timeout, "task " + task)
        if status != "success":
            rec = self.call("task.get_record", task)
            self.call("task.destroy", task)
            raise XenAPIFailure(["BadAsyncResult", status] + rec["error_info"])
        return self.call("task.get_result", task)

    def async_call(self, method, *args):
        task = self.call("Async." + method, *args)
        assert is_ref(task), task
        try:
            return self.wait_task(task)
        finally:
            try:
                self.call("task.destroy", task)
            except XenAPIFailure:
                pass

    def call_plugin(self, host, plugin, fn, args):
        """callHostPlugin: every newline of the result is removed."""
        return self.call("host.call_plugin", host, plugin, fn, args).replace("\n", "")

    def logout(self):
        self.call("session.logout")


def value_of(result):
    """Types.toVDI & co: the regex <value>(.*)</value> over task.result."""
    m = re.search(r"<value>(.*)</value>", result, re.S)
    assert m, "task.result is not <value>...</value>: %r" % result
    return m.group(1)


class CloudStackTest(CompatTest):
    client_class = Connection
    scheme = "https"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.c = cls.client
        cls.host_uuid = cls.c.call("host.get_uuid", cls.c.this_host)

    def host(self):
        """Each host's calls start with host.get_by_uuid of its guid."""
        return self.call("host.get_by_uuid", self.host_uuid)

    def dom0(self):
        vms = [vm for vm in self.call("host.get_resident_VMs", self.host())
               if self.call("VM.get_is_control_domain", vm)]
        self.assertEqual(len(vms), 1)
        return vms[0]

    def management_pif(self):
        pifs = [self.call("PIF.get_record", p) for p in self.call("host.get_PIFs", self.host())]
        mgmt = [p for p in pifs if p["management"]]
        self.assertEqual(len(mgmt), 1, pifs)
        return mgmt[0]

    def create_vm_from_template(self, name, template="Other install media", mem=256 * MiB):
        """createVmFromTemplate: the template's whole record back to VM.create, a few fields changed."""
        templates = self.call("VM.get_by_name_label", template)
        self.assertEqual(len(templates), 1, template)
        rec = self.call("VM.get_record", templates[0])
        self.assertTrue(rec["is_a_template"])
        self.assertIn("restrict_dmc", self.call("host.get_license_params", self.host()))
        rec.update(affinity=self.host(), is_a_template=False, name_label=name, actions_after_crash="destroy",
                   actions_after_shutdown="destroy", VCPUs_max="1", VCPUs_at_startup="1",
                   memory_static_min=str(mem), memory_static_max=str(mem), memory_dynamic_min=str(mem),
                   memory_dynamic_max=str(mem), consoles=[], xenstore_data={})
        oc = dict(rec["other_config"])
        for k in ("disks", "default_template", "mac_seed"):
            oc.pop(k, None)
        oc["vm_uuid"] = str(uuid.uuid4())
        rec["other_config"] = oc
        vm = self.call("VM.create", rec)
        self.assertRegex(self.call("VM.get_uuid", vm), UUID_RE)
        speed = self.assertIntString(self.call("host_cpu.get_speed",
                                               self.call("host.get_host_CPUs", self.host())[0]), "host_cpu.speed")
        self.call("VM.set_VCPUs_params", vm, {"weight": str(int(500 * 0.99 / speed * 256)), "cap": "0"})
        platform = self.call("VM.get_platform", vm)
        platform.update({"timeoffset": "0", "cores-per-socket": "1"})
        platform.pop("device_id", None)
        self.call("VM.set_platform", vm, platform)
        return vm

    def root_disk(self, vm, name):
        sr = self.call("pool.get_default_SR", self.call("pool.get_all")[0])
        vdi = self.call("VDI.create", sdk_record("VDI", name_label=name + "-ROOT", SR=sr, type="user",
                                                 virtual_size=str(8 * MiB)))
        vdi = self.call("VDI.get_by_uuid", self.call("VDI.get_uuid", vdi))
        self.call("VDI.get_name_label", vdi)
        self.assertIsInstance(self.call("VDI.get_sm_config", vdi), dict)
        devices = self.call("VM.get_allowed_VBD_devices", vm)
        self.assertTrue(all(isinstance(d, str) and d.isdigit() for d in devices), devices)
        self.assertIn("0", devices)
        vbd = self.call("VBD.create", sdk_record("VBD", VM=vm, VDI=vdi, userdevice="0", mode="RW", type="Disk",
                                                 bootable=True, unpluggable=False, empty=False))
        self.assertRegex(self.call("VBD.get_uuid", vbd), UUID_RE)
        return vdi, vbd

    def start_vm(self, name):
        """StartCommand on a fresh VM: create, disks (ROOT, empty CD on "3"), one NIC, Async.VM.start_on."""
        self.assertEqual(self.call("VM.get_by_name_label", name), [])
        vm = self.create_vm_from_template(name)
        vdi, vbd = self.root_disk(vm, name)
        cd = self.call("VBD.create", sdk_record("VBD", VM=vm, VDI=NULL_REF, userdevice="3", mode="RO", type="CD",
                                                bootable=False, empty=True))
        net = self.call("network.get_by_uuid", self.call("network.get_uuid", self.management_pif()["network"]))
        vif = self.call("VIF.create", sdk_record(
            "VIF", VM=vm, device="0", MAC="02:00:4c:5a:00:01", network=net, locking_mode="network_default",
            qos_algorithm_type="ratelimit", qos_algorithm_params={"kbps": str(200 * 128)},
            other_config={"cloudstack-nic-id": "1", "cloudstack-vm-id": "10", "cloudstack-network-id": "204"}))
        vrec = self.call("VIF.get_record", vif)
        self.assertEqual((vrec["device"], vrec["MAC"], vrec["network"]), ("0", "02:00:4c:5a:00:01", net))
        self.assertIsInstance(vrec["currently_attached"], bool)
        self.c.async_call("VM.start_on", vm, self.host(), False, True)
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")
        return vm, {"vdi": vdi, "vbd": vbd, "cd": cd, "vif": vif}

    def state_report(self):
        """getHostVmStateReport: name_label -> PowerOn/PowerOff for this host's VMs."""
        report = {}
        for rec in self.call("VM.get_all_records").values():
            if rec["is_control_domain"] or rec["is_a_template"] or rec["is_a_snapshot"]:
                continue
            if rec["resident_on"] == NULL_REF or not is_ref(rec["resident_on"]):
                continue
            if self.call("host.get_uuid", rec["resident_on"]) != self.host_uuid:
                continue
            report[rec["name_label"]] = {"Running": "PowerOn", "Halted": "PowerOff", "Paused": "PowerOff",
                                         "Suspended": "PowerOff"}[rec["power_state"]]
        return report


class Connect(CloudStackTest):
    """XcpServerDiscoverer.find, CheckXenHostInfo and initialize()."""

    def test_discovery(self):
        c = Connection(self.server_proxy())
        self.assertTrue(all(re.match(r"^[0-9]+$", v) for v in c.api), c.api)
        pools = c.call("pool.get_all")
        self.assertEqual(len(pools), 1)
        self.assertRegex(c.call("pool.get_record", pools[0])["uuid"], UUID_RE)
        hosts = c.call("host.get_all_records")
        self.assertEqual(list(hosts), [c.this_host])
        sv = hosts[c.this_host]["software_version"]
        brand = sv.get("product_brand") or sv["platform_name"]
        version = sv.get("product_version") or sv["platform_version"]
        self.assertIn(brand, ("XenServer", "XCP-ng", "Citrix Hypervisor"))
        self.assertGreater(tuple(map(int, version.split("."))), (6, 4))  # XenServer650Resource
        c.logout()
        with self.assertRaises(XenAPIFailure) as cm:
            c.call("pool.get_all")
        self.assertEqual(cm.exception.details[0], "SESSION_INVALID")
        c.proxy("close")()

    def test_check_host_info(self):
        c = Connection(self.server_proxy())
        host = c.call("host.get_by_uuid", self.host_uuid)
        rec = c.call("host.get_record", host)
        self.assertEqual(rec["address"], self.management_pif()["IP"])  # CloudStack compares it to the IP it uses
        pools = c.call("pool.get_all_records")
        self.assertEqual(len(pools), 1)
        self.assertEqual(list(pools.values())[0]["master"], host)
        c.logout()
        c.proxy("close")()

    def test_ping_xapi(self):
        host = self.host()
        self.assertIs(self.call("host.get_enabled", host), True)
        self.assertIsInstance(self.c.call_plugin(host, "echo", "main", {}), str)

    def test_host_info(self):
        host = self.host()
        cpus = self.call("host.get_host_CPUs", host)
        self.assertGreater(len(cpus), 0)
        self.assertGreater(self.assertIntString(self.call("host.get_cpu_info", host)["socket_count"], "socket_count"),
                           0)
        self.assertGreater(self.assertIntString(self.call("host_cpu.get_speed", cpus[0]), "host_cpu.speed"), 0)
        rec = self.call("host.get_record", host)
        for k in ("product_version_text_short", "xen", "linux"):
            self.assertIsInstance(rec["software_version"][k], str, k)
        self.assertTrue(any("hvm" in c for c in rec["capabilities"]))
        mgmt = self.management_pif()
        self.assertEqual(mgmt["bond_slave_of"], NULL_REF)
        self.assertEqual(mgmt["VLAN"], "-1")
        self.assertEqual(mgmt["host"], host)
        net = self.call("network.get_record", mgmt["network"])
        self.assertTrue(net["bridge"])
        # a traffic label resolves to a network that must have a PIF on this host
        nets = self.call("network.get_by_name_label", net["name_label"])
        self.assertEqual(nets, [mgmt["network"]])
        pifs = [self.call("PIF.get_record", p) for p in self.call("network.get_record", nets[0])["PIFs"]]
        self.assertIn(host, [p["host"] for p in pifs])
        self.assertEqual(self.call("host.get_uuid", pifs[0]["host"]), self.host_uuid)

    def test_fill_host_info(self):
        host = self.host()
        metrics = self.call("host.get_metrics", host)
        self.assertGreater(self.assertIntString(self.call("host_metrics.get_memory_total", metrics), "memory_total"), 0)
        self.assertGreater(self.assertIntString(self.call("VM.get_memory_static_max", self.dom0()), "dom0 RAM"), 0)
        mgmt = self.management_pif()
        self.assertEqual(self.call("PIF.get_record", self.call("PIF.get_by_uuid", mgmt["uuid"]))["uuid"],
                         mgmt["uuid"])
        self.assertEqual(self.call("host.get_record", host)["patches"], [])  # no host_patch calls then
        self.assertEqual(self.call("host.get_PGPUs", host), [])
        self.assertIn(self.call("host.get_license_params", host)["restrict_dmc"], ("true", "false"))
        pool = self.call("pool.get_by_uuid", self.call("pool.get_uuid", self.call("pool.get_all")[0]))
        master = self.call("pool.get_record", pool)["master"]
        self.assertEqual(self.call("host.get_record", master)["uuid"], self.host_uuid)

    def test_records_are_complete(self):
        """A missing set or map field is a NullPointerException in CloudStack: every field, typed."""
        for cls in ("host", "pool", "VM", "SR", "PBD", "PIF", "network", "host_cpu", "host_metrics", "VDI",
                    "VBD", "VIF"):
            for ref, rec in self.call(cls + ".get_all_records").items():
                self.assertTrue(is_ref(ref))
                check_record(self, cls, rec)

    def test_hotfix_probe(self):
        with self.assertRaises(XenAPIFailure) as cm:
            self.call("pool_patch.get_by_uuid", HOTFIX_UUID)
        self.assertEqual(cm.exception.details[0], "UUID_INVALID")  # the expected "not installed"

    def test_pool_update_class(self):
        self.assertIsInstance(self.call("pool_update.get_all"), list)
        with self.assertRaises(XenAPIFailure) as cm:
            self.call("pool_update.get_by_uuid", HOTFIX_UUID)
        self.assertEqual(cm.exception.details[0], "UUID_INVALID")

    def test_gpu_classes(self):
        self.assertEqual(self.call("PGPU.get_all"), [])
        self.assertEqual(self.call("GPU_group.get_by_name_label", "Group of NVIDIA GRID K1"), [])
        self.assertIsInstance(self.call("VGPU_type.get_all"), list)
        self.assertEqual(self.call("VM.get_VGPUs", self.dom0()), [])

    def test_bond_class(self):
        self.assertEqual(self.call("Bond.get_all"), [])
        self.assertEqual(self.management_pif()["bond_master_of"], [])

    def test_local_storage_report(self):
        local = [(ref, rec) for ref, rec in self.call("SR.get_all_records").items()
                 if rec["type"] in ("lvm", "ext") and not rec["shared"]]
        self.assertTrue(local, "no local lvm/ext SR")
        for sr, rec in local:
            for pbd in rec["PBDs"]:
                if self.call("host.get_uuid", self.call("PBD.get_host", pbd)) != self.host_uuid:
                    continue
                self.assertIs(self.call("PBD.get_currently_attached", pbd), True)
                self.call("SR.scan", sr)
                self.assertIntString(self.call("SR.get_physical_size", sr), "SR.physical_size")
                sr_uuid = self.call("SR.get_uuid", sr)
                self.call("SR.set_name_label", sr, sr_uuid)
                self.assertEqual(self.call("SR.get_type", sr).upper(), rec["type"].upper())
                self.call("SR.set_name_description", sr, "Cloud Stack Local %s Storage Pool" % rec["type"].upper())
                self.assertTrue(self.call("host.get_address", self.host()))
                self.assertIntString(self.call("SR.get_physical_utilisation", sr), "SR.physical_utilisation")


class SetupReady(CloudStackTest):
    def test_setup_command(self):
        self.assertEqual(len(self.call("pool.get_all_records")), 1)
        host = self.host()
        tags = self.call("host.get_record", host)["tags"]
        self.assertIsInstance(tags, list)
        tag = "vmops-version-%s-4.20.0" % RESOURCE
        if tag not in tags:
            self.call("host.set_tags", host, tags + [tag])
        self.assertIn(tag, self.call("host.get_tags", host))
        self.assertTrue(self.c.call_plugin(host, "vmops", "setIptables", {}))
        self.assertIn(self.c.call_plugin(host, "vmops", "can_bridge_firewall",
                                         {"host_uuid": self.host_uuid, "instance": "VM"}), ("true", "false"))
        self.assertIn("> DONE <", self.c.call_plugin(host, "vmopspremium", "heartbeat",
                                                     {"host": self.host_uuid, "timeout": "180", "interval": "60"}))
        for pbd in self.call("host.get_PBDs", host):
            rec = self.call("SR.get_record", self.call("PBD.get_SR", pbd))
            self.assertIsInstance(rec["shared"], bool)
            self.assertIsInstance(rec["type"], str)
            self.assertIsInstance(rec["content_type"], str)
        self.assertIn("> DONE <", self.c.call_plugin(host, "vmops", "setup_iscsi", {"uuid": self.host_uuid}))
        for pif in self.call("host.get_PIFs", host):
            self.call("PIF.get_record", pif)
        self.assertTrue(self.call("network.get_all_records"))

    def test_ready_command(self):
        host = self.host()
        self.assertEqual(self.c.call_plugin(host, "vmopsSnapshot", "unmountSnapshotsDir", {"dcId": "1"}), "1")
        # setupLinkLocalNetwork
        self.assertEqual(self.call("network.get_by_name_label", LINK_LOCAL), [])
        net = self.call("network.create", sdk_record("network", name_label=LINK_LOCAL, name_description="link local",
                                                     other_config={"ip_begin": "169.254.0.1",
                                                                   "ip_end": "169.254.255.254",
                                                                   "netmask": "255.255.0.0",
                                                                   "vswitch-disable-in-band": "true"}))
        self.assertEqual(self.call("network.get_by_name_label", LINK_LOCAL), [net])
        self.assertEqual(self.call("network.get_other_config", net)["ip_begin"], "169.254.0.1")
        dom0 = self.dom0()
        for vif in self.call("VM.get_VIFs", dom0):
            self.assertNotEqual(self.call("VIF.get_other_config", vif).get("nameLabel"), "link_local_network_vif")
        vif = self.call("VIF.create", sdk_record("VIF", VM=dom0, device="0", MAC="FE:FF:FF:FF:FF:FF", network=net,
                                                 other_config={"nameLabel": "link_local_network_vif"},
                                                 locking_mode="network_default"))
        self.assertEqual(self.call("VIF.get_other_config", vif)["nameLabel"], "link_local_network_vif")
        bridge = self.call("network.get_bridge", net)
        self.assertTrue(bridge)
        self.assertEqual(self.c.call_plugin(host, "vmops", "setLinkLocalIP", {"brName": bridge}), "success")
        self.assertRegex(self.call("network.get_uuid", net), UUID_RE)
        # removal of halted CloudStack VMs left with affinity to this host
        stale = self.create_vm_from_template("i-2-99-VM")
        self.assertIsInstance(self.call("host.get_record", host)["software_version"]["product_version"], str)  # UEFI
        for ref, rec in self.call("VM.get_all_records").items():
            if rec["power_state"] == "Halted" and rec["affinity"] == host and re.match(r"^[ivs]-\d+-.+",
                                                                                       rec["name_label"]):
                self.call("VM.destroy", ref)
        self.assertEqual(self.call("VM.get_by_name_label", "i-2-99-VM"), [])
        with self.assertRaises(XenAPIFailure) as cm:
            self.call("VM.get_record", stale)
        self.assertEqual(cm.exception.details, ["HANDLE_INVALID", "VM", stale])

    def test_ping_state_report(self):
        self.assertIsInstance(self.state_report(), dict)
        for name in self.state_report():
            self.assertFalse(name.startswith("Control domain"))


class Storage(CloudStackTest):
    """Primary storage on a made-up NFS server (tests/integration/fake_nfs.py: the daemon's mount runs a
    program that bind-mounts the export's local directory) exporting /export/primary and /export/pool2."""

    @classmethod
    def setUpClass(cls):
        cls.nfs = FakeNFS(["/export/primary", "/export/pool2"])
        cls.mount_root = tempfile.mkdtemp(prefix="xenapid-compat-sr-mount-")
        cls.extra_config = cls.nfs.config() + "sr_mount_root = %s\n" % cls.mount_root
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.nfs.close()
        shutil.rmtree(cls.mount_root, True)

    def setUp(self):
        if self._testMethodName.startswith("test_nfs_") and not CAN_BIND_MOUNT:
            self.skipTest("needs root and bind mounts (the made-up NFS server's exports)")

    def secondary_dir(self, with_vhd=True):
        remote = os.path.join(self.d.tmp, "secondary-%s" % uuid.uuid4().hex[:8])
        os.mkdir(remote)
        if with_vhd:
            vhdfile.write_fixed(os.path.join(remote, "%s.vhd" % uuid.uuid4()), 2 * MiB, str(uuid.uuid4()))
        return remote

    def file_sr(self, path):
        """createFileSR: SR.introduce of a "file" SR named by its path, a PBD on location, plug, scan."""
        self.assertEqual(self.call("SR.get_by_name_label", path), [])
        host = self.host()
        sr = self.call("SR.introduce", str(uuid.uuid3(uuid.NAMESPACE_URL, path)), path, path, "file", "file", False,
                       {})
        pbd = self.call("PBD.create", sdk_record("PBD", host=host, SR=sr, device_config={"location": path}))
        self.call("PBD.plug", pbd)
        self.call("SR.scan", sr)
        return sr

    def remove_sr(self, sr):
        for vdi in self.call("SR.get_VDIs", sr):
            self.call("VDI.forget", vdi)
        for pbd in self.call("SR.get_PBDs", sr):
            self.call("PBD.unplug", pbd)
            self.call("PBD.destroy", pbd)
        self.call("SR.forget", sr)

    def primary_sr(self):
        """Primary SRs are looked up by name_label; local ones are renamed to their uuid at start-up."""
        sr = self.call("pool.get_default_SR", self.call("pool.get_all")[0])
        sr_uuid = self.call("SR.get_uuid", sr)
        self.call("SR.set_name_label", sr, sr_uuid)
        self.assertEqual(self.call("SR.get_by_name_label", sr_uuid), [sr])
        return sr

    def copy_to_primary(self, src_vdi, name):
        """copyTemplateToPrimaryStorage from SR.get_by_name_label(primary) on: the snapshot's uuid is the path."""
        dest = self.primary_sr()
        copied = value_of(self.c.async_call("VDI.copy", src_vdi, dest, "", ""))
        self.assertTrue(is_ref(copied), copied)
        self.assertIntString(self.call("VDI.get_physical_utilisation", copied), "VDI.physical_utilisation")
        snap = self.call("VDI.snapshot", copied, {})
        snap_uuid = self.call("VDI.get_uuid", snap)
        self.call("VDI.set_name_label", snap, "Template " + name)
        self.call("VDI.destroy", copied)
        self.call("SR.scan", dest)
        return snap_uuid

    def test_template_copy_from_secondary(self):
        host = self.host()
        remote = self.secondary_dir()
        local = os.path.join(self.d.tmp, "cloud_mount", str(uuid.uuid4()))  # /var/cloud_mount/<uuid> on a host
        result = self.c.async_call("host.call_plugin", host, "cloud-plugin-storage", "mountNfsSecondaryStorage",
                                   {"localDir": local, "remoteDir": "127.0.0.1:" + remote})
        self.assertEqual(result.replace("<value>", "").replace("</value>", "").replace("\n", ""), "true")
        sr = self.file_sr(local)
        vdis = self.call("SR.get_VDIs", sr)
        self.assertEqual(len(vdis), 1, "exactly one VHD in the template directory")
        snap_uuid = self.copy_to_primary(vdis[0], "tmpl-1")
        self.remove_sr(sr)
        self.assertRegex(snap_uuid, UUID_RE)

    def test_template_copy_and_root_volume(self):
        """The same sequence from a raw VDI made in the file SR, then cloneVolumeFromBaseTemplate."""
        sr = self.file_sr(self.secondary_dir(with_vhd=False))
        src = self.call("VDI.create", sdk_record("VDI", name_label="template", SR=sr, type="user",
                                                 virtual_size=str(4 * MiB)))
        self.assertEqual(len(self.call("SR.get_VDIs", sr)), 1)
        snap_uuid = self.copy_to_primary(src, "tmpl-2")
        self.remove_sr(sr)
        self.assertEqual(self.call("SR.get_by_name_label", sr), [])
        with self.assertRaises(XenAPIFailure) as cm:
            self.call("SR.get_record", sr)
        self.assertEqual(cm.exception.details[:2], ["HANDLE_INVALID", "SR"])
        # ROOT volume from the template
        tmpl = self.call("VDI.get_by_uuid", snap_uuid)
        root = self.call("VDI.clone", tmpl, {})
        size = self.assertIntString(self.call("VDI.get_virtual_size", root), "VDI.virtual_size")
        self.call("VDI.resize", root, str(size + 4 * MiB))
        self.call("VDI.set_name_label", root, "ROOT-10")
        rec = self.call("VDI.get_record", root)
        self.assertEqual(rec["virtual_size"], str(size + 4 * MiB))
        self.assertIs(rec["is_a_snapshot"], False)
        # on the local ext SR the clone is a VHD leaf over the template's hidden base copy
        parent = self.call("VDI.get_by_uuid", rec["sm_config"]["vhd-parent"])
        self.assertIs(self.call("VDI.get_managed", parent), False)

    def test_snapshot_full_backup_to_secondary(self):
        """Xenserver625StorageProcessor.backupSnapshot with fullSnapshot: the volume's snapshot on primary
        storage copied into a file SR over a folder of secondary storage; the backup is <uuid>.vhd there."""
        vol = self.call("VDI.create", sdk_record("VDI", name_label="ROOT-20", SR=self.primary_sr(), type="user",
                                                 virtual_size=str(4 * MiB)))
        snap = self.call("VDI.snapshot", vol, {})
        self.call("VDI.set_name_label", snap, "ROOT-20_snapshot")
        snap_uuid = self.call("VDI.get_uuid", snap)
        remote, folder = self.secondary_dir(with_vhd=False), "snapshots/2/20"
        host = self.host()
        local = os.path.join(self.d.tmp, "cloud_mount", str(uuid.uuid3(uuid.NAMESPACE_URL, remote)))

        def mount():
            result = self.c.async_call("host.call_plugin", host, "cloud-plugin-storage", "mountNfsSecondaryStorage",
                                       {"localDir": local, "remoteDir": "127.0.0.1:" + remote})
            self.assertEqual(value_of(result), "true")

        mount()
        self.assertTrue(self.c.call_plugin(host, "cloud-plugin-storage", "makeDirectory",
                                           {"path": local + "/" + folder}))
        mount()  # createFileSr mounts again
        sr = self.file_sr(local + "/" + folder)
        backup = value_of(self.c.async_call("VDI.copy", self.call("VDI.get_by_uuid", snap_uuid), sr, "", ""))
        self.assertTrue(is_ref(backup), backup)
        backup_uuid = self.call("VDI.get_uuid", backup)
        self.call("SR.scan", sr)
        physical = self.assertIntString(self.call("VDI.get_physical_utilisation", backup), "physical_utilisation")
        self.assertGreater(physical, 0)
        self.remove_sr(sr)
        # finalPath = folder/<backup uuid>.vhd, which CloudStack later copies back from
        self.assertEqual(os.listdir(os.path.join(remote, folder)), [backup_uuid + ".vhd"])
        with open(os.path.join(remote, folder, backup_uuid + ".vhd"), "rb") as f:
            f.seek(-512, os.SEEK_END)
            self.assertEqual(f.read(8), b"conectix")

    def test_nfs_primary_pool(self):
        """CreateStoragePool: SR.create of an nfs SR named by the pool's uuid, content user, shared."""
        pool_uuid = str(uuid.uuid4())
        for sr in self.call("SR.get_all"):
            if self.call("SR.get_type", sr) == "nfs":
                for pbd in self.call("SR.get_PBDs", sr):
                    self.assertNotEqual(self.call("PBD.get_device_config", pbd).get("serverpath"), "/export/primary")
        sr = self.call("SR.create", self.host(), {"server": "127.0.0.1", "serverpath": "/export/primary"}, "0",
                       pool_uuid, "1", "nfs", "user", True, {"nosubdir": "true"})
        self.call("SR.scan", sr)
        self.assertEqual(self.call("SR.get_by_name_label", pool_uuid), [sr])
        self.assertIs(self.call("SR.get_record", sr)["shared"], True)

    def test_nfs_pool_modify_and_sizes(self):
        """ModifyStoragePool of an NFS pool: SR.get_by_name_label(pool uuid), checkSR (the record, its PBDs,
        plugged again if not attached), SR.set_sm_config; then the pool's sizes, true to the export."""
        pool_uuid = str(uuid.uuid4())
        sr = self.call("SR.create", self.host(), {"server": "127.0.0.1", "serverpath": "/export/pool2"}, "0",
                       pool_uuid, "2", "nfs", "user", True, {"nosubdir": "true"})
        self.call("SR.scan", sr)
        # the export itself is the SR (nosubdir): a volume made there is a file of the export
        vol = self.call("VDI.create", sdk_record("VDI", name_label="DATA-21", SR=sr, type="user",
                                                 virtual_size=str(4 * MiB)))
        self.assertIn(self.call("VDI.get_uuid", vol) + ".vhd", os.listdir(self.nfs.path("/export/pool2")))
        self.assertEqual(self.call("SR.get_by_name_label", pool_uuid), [sr])
        rec = self.call("SR.get_record", sr)
        self.assertEqual((rec["type"], rec["shared"], rec["name_label"]), ("nfs", True, pool_uuid))
        pbds = self.call("SR.get_PBDs", sr)
        self.assertEqual(len(pbds), 1)
        prec = self.call("PBD.get_record", pbds[0])
        self.assertEqual(prec["host"], self.host())
        self.assertEqual(prec["device_config"], {"server": "127.0.0.1", "serverpath": "/export/pool2"})
        self.assertIs(prec["currently_attached"], True)
        self.call("PBD.unplug", pbds[0])
        self.call("PBD.plug", pbds[0])
        self.call("SR.set_sm_config", sr, rec["sm_config"])
        self.assertEqual(self.call("SR.get_sm_config", sr).get("nosubdir"), "true")
        size = self.assertIntString(self.call("SR.get_physical_size", sr), "SR.physical_size")
        used = self.assertIntString(self.call("SR.get_physical_utilisation", sr), "SR.physical_utilisation")
        fs = os.statvfs(self.nfs.path("/export/pool2"))
        self.assertEqual(size, fs.f_blocks * fs.f_frsize)
        self.assertTrue(0 < used <= size, (used, size))
        self.call("VDI.destroy", vol)

    def test_async_failure_is_a_bad_async_result(self):
        with self.assertRaises(XenAPIFailure) as cm:
            self.c.async_call("VDI.copy", "OpaqueRef:" + str(uuid.uuid4()), self.primary_sr(), "", "")
        self.assertEqual(cm.exception.details[:3], ["BadAsyncResult", "failure", "HANDLE_INVALID"])


class VMs(CloudStackTest):
    extra_config = "sim_guest_delay_ms = 30\n"

    def test_start_stop(self):
        name = "i-2-10-VM"
        vm, parts = self.start_vm(name)
        self.assertEqual(self.state_report().get(name), "PowerOn")
        # an already-running VM is answered from get_record
        rec = self.call("VM.get_record", self.call("VM.get_by_name_label", name)[0])
        self.assertEqual(self.call("host.get_uuid", rec["resident_on"]), self.host_uuid)
        # StopCommand
        self.assertEqual(self.call("VM.get_resident_on", vm), self.host())
        self.call("VM.set_affinity", vm, self.host())
        self.c.async_call("VM.clean_shutdown", vm)
        self.assertEqual(self.call("VM.get_power_state", vm), "Halted")  # kept despite actions_after_shutdown
        self.assertEqual(self.state_report().get(name), None)
        try:
            self.call("VM.get_VGPUs", vm)
        except XenAPIFailure:
            pass  # tolerated
        for vif in self.call("VM.get_VIFs", vm):
            self.assertTrue(is_ref(self.call("VIF.get_network", vif)))
        self.call("VM.destroy", vm)
        self.assertEqual(self.call("VM.get_by_name_label", name), [])

    def test_reboot(self):
        vm, _ = self.start_vm("i-2-11-VM")
        self.assertEqual(self.call("VM.get_name_label", vm), "i-2-11-VM")
        self.c.async_call("VM.clean_reboot", vm)
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")
        self.call("VM.hard_reboot", vm)
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")
        self.call("VM.hard_shutdown", vm)
        self.assertEqual(self.call("VM.get_power_state", vm), "Halted")

    def test_start_of_a_running_vm_fails_in_the_task(self):
        vm, _ = self.start_vm("i-2-12-VM")
        with self.assertRaises(XenAPIFailure) as cm:
            self.c.async_call("VM.start_on", vm, self.host(), False, True)
        self.assertEqual(cm.exception.details[:3], ["BadAsyncResult", "failure", "VM_BAD_POWER_STATE"])
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")

    def test_volume_attach_detach(self):
        name = "i-2-13-VM"
        vm, _ = self.start_vm(name)
        sr = self.call("pool.get_default_SR", self.call("pool.get_all")[0])
        vol = self.call("VDI.create", sdk_record("VDI", name_label="detached", SR=sr, type="user",
                                                 virtual_size=str(4 * MiB)))
        vdi = self.call("VDI.get_by_uuid", self.call("VDI.get_uuid", vol))
        for vbd in self.call("VM.get_VBDs", vm):
            self.assertIn(self.call("VBD.get_type", vbd), ("Disk", "CD"))
            self.assertIsInstance(self.call("VBD.get_currently_attached", vbd), bool)
        devices = self.call("VM.get_allowed_VBD_devices", vm)
        self.assertNotIn("0", devices)
        self.assertNotIn("3", devices)
        vbd = self.call("VBD.create", sdk_record("VBD", VM=vm, VDI=vdi, userdevice=devices[0], mode="RW", type="Disk",
                                                 bootable=False, unpluggable=True, empty=False))
        self.call("VBD.plug", vbd)
        self.call("VDI.set_name_label", vdi, name + "-DATA")
        self.assertEqual(self.call("VBD.get_userdevice", vbd), devices[0])
        self.assertRegex(self.call("VDI.get_uuid", vdi), UUID_RE)
        # DettachVolume
        for v in self.call("VDI.get_VBDs", vdi):
            rec = self.call("VBD.get_record", v)
            self.assertEqual(rec["VM"], vm)
            if rec["currently_attached"]:
                self.call("VBD.unplug", v)
            self.call("VBD.destroy", v)
        self.assertEqual(self.call("VDI.get_VBDs", vdi), [])

    def test_vlan_nic(self):
        """A vlan://N NIC: the VLAN-<parent uuid>-N network, and a VLAN on the parent's PIF."""
        mgmt = self.management_pif()
        parent = self.call("network.get_record", mgmt["network"])
        label = "VLAN-%s-%d" % (parent["uuid"], 42)
        self.assertEqual(self.call("network.get_by_name_label", label), [])
        net = self.call("network.create", sdk_record("network", name_label=label, name_description="VLAN 42",
                                                     tags=["CsCreateTime-1700000000000-1"]))
        self.assertEqual(self.call("network.get_by_name_label", label), [net])
        vlan = self.call("VLAN.create", self.call("PIF.get_by_uuid", mgmt["uuid"]), "42", net)
        rec = self.call("VLAN.get_record", vlan)
        self.assertEqual(rec["tag"], "42")
        pifs = [self.call("PIF.get_record", p) for p in self.call("network.get_record", net)["PIFs"]]
        self.assertEqual([(p["host"], p["VLAN"]) for p in pifs], [(self.host(), "42")])
        self.call("VLAN.destroy", vlan)

    def test_vnc_console(self):
        """GetVncPort's location, then the console proxy's RawHTTP: TLS to the location's host
        (443 unless a port is given), CONNECT with the session as a cookie, "HTTP/1.x 200",
        headers, a blank line, then RFB."""
        vm, _ = self.start_vm("i-2-14-VM")
        consoles = self.call("VM.get_record", vm)["consoles"]
        rfb = [c for c in consoles if self.call("console.get_protocol", c) == "rfb"]
        self.assertEqual(len(rfb), 1)
        location = self.call("console.get_location", rfb[0])
        self.assertTrue(location.startswith("https://"), location)
        self.assertNotIn("&", location)
        url = urllib.parse.urlsplit(location)
        raw = socket.create_connection((url.hostname, url.port or 443), timeout=10)
        with ssl._create_unverified_context().wrap_socket(raw, server_hostname=url.hostname) as s:
            s.sendall(b"CONNECT %s?%s HTTP/1.0\r\nHost: %s\r\nCookie: session_id=%s\r\n\r\n"
                      % (url.path.encode(), url.query.encode(), url.hostname.encode(), self.c.session.encode()))
            data = b""
            while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 16:
                chunk = s.recv(4096)
                self.assertTrue(chunk, data)
                data += chunk
            self.assertRegex(data, rb"^HTTP/1\.[01] 200 ")
            self.assertTrue(data.split(b"\r\n\r\n", 1)[1].startswith(b"RFB 003.008\n"), data)

    def test_host_stats(self):
        # CloudStack fetches statistics over plain HTTP (port 80), whatever its XML-RPC scheme
        status, _, body = self.d.http("GET", "/rrd_updates?session_id=%s&host=true&cf=AVERAGE&interval=60&start=%d"
                                      % (self.c.session, int(time.time()) - 1100))
        self.assertEqual(status, 200)
        # xapi's body: an XML declaration, then the xport (CloudStack's DOM parser takes either)
        self.assertRegex(body, rb"^(<\?xml [^>]*\?>)?<xport><meta>")
        self.assertIn(b"AVERAGE:host:%s:memory_total_kib" % self.host_uuid.encode(), body)


if __name__ == "__main__":
    unittest.main()
