"""OpenStack Nova's XenAPI driver (os-xenapi 0.3.4 session), replayed: the
calls it makes in its order, with its argument shapes, asserting what it
parses. Nova calls through xmlrpc.client with allow_none off, to a URL with
no path (so /RPC2), blocking calls only (no Async, no events); plugins get
'.py' appended and host_uuid added, serialized ones pickled params."""

import base64
import json
import os
import pickle
import shutil
import tempfile
import threading
import time
import unittest
import uuid
import xmlrpc.client
import zlib

import os
import sys

from compat import NULL_REF, PASSWORD, UUID_RE, CompatTest, XenAPIFailure, check_record, is_ref

MiB = 1 << 20
GiB = 1 << 30


class NovaSession:
    """os-xenapi's XenAPISession as Nova uses it: the calls below are what it sends."""

    PLUGIN_REQUIRED_VERSION = "2.1"

    def __init__(self, proxy, user="root", password=PASSWORD):
        self.proxy = proxy
        self.login = (user, password)
        self.calls = []
        self.handle = self._unwrap(proxy.session.login_with_password(user, password, self.PLUGIN_REQUIRED_VERSION,
                                                                     "nova"))
        # XenAPI.Session._get_api_version, on every login
        pool = self.call("pool.get_all")[0]
        master = self.call("pool.get_master", pool)
        self.api_version = "%s.%s" % (self.call("host.get_API_version_major", master),
                                      self.call("host.get_API_version_minor", master))
        self.host_ref = self.call("session.get_this_host", self.handle)
        self.host_uuid = self.call("host.get_uuid", self.host_ref)

    @staticmethod
    def _unwrap(r):
        if r.get("Status") == "Success":
            return r["Value"]
        raise XenAPIFailure(r["ErrorDescription"])

    def call(self, method, *args):
        self.calls.append(method)
        obj = self.proxy
        for part in method.split("."):
            obj = getattr(obj, part)
        return self._unwrap(obj(self.handle, *args))

    def call_plugin(self, plugin, fn, args):
        if not plugin.endswith(".py"):
            plugin += ".py"
        args = dict(args, host_uuid=self.host_uuid)
        return self.call("host.call_plugin", self.host_ref, plugin, fn, args)

    def call_plugin_serialized(self, plugin, fn, *args, **kwargs):
        params = {"params": pickle.dumps({"args": args, "kwargs": kwargs}, 0).decode("latin-1")}
        return pickle.loads(self.call_plugin(plugin, fn, params).encode("latin-1"))


class NovaTest(CompatTest):
    client_class = NovaSession

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nova = cls.client

    def default_sr(self):
        """safe_find_sr with the default sr_matching_filter default-sr:true."""
        pool = self.call("pool.get_all")[0]
        sr = self.call("pool.get_default_SR", pool)
        self.assertTrue(is_ref(sr), "pool.default_SR must be set: %r" % sr)
        return sr

    def sr_path(self, sr):
        """vm_utils.get_sr_path: the PBD's device_config path, else /var/run/sr-mount/<uuid> for ext/nfs."""
        pbds = self.call("PBD.get_all_records_where", 'field "host"="%s" and field "SR"="%s"'
                         % (self.nova.host_ref, sr))
        self.assertEqual(len(pbds), 1, pbds)
        dc = list(pbds.values())[0]["device_config"]
        if "path" in dc:
            return dc["path"]
        rec = self.call("SR.get_record", sr)
        self.assertIn(rec["type"], ("ext", "nfs"),
                      "Nova: only file-based SRs (ext/NFS) are supported; no device_config path either")
        return "/var/run/sr-mount/%s" % rec["uuid"]

    def lookup(self, name):
        """vm_utils.lookup: none is not found, more than one is InstanceExists."""
        refs = self.call("VM.get_by_name_label", name)
        self.assertLessEqual(len(refs), 1, refs)
        return refs[0] if refs else None

    def import_disk(self, sr, name, size=8 * MiB, other_config=None):
        """A VDI holding data, made as Nova makes its config drive (VDI.create, a task, PUT
        /import_raw_vdi; Nova sends format=vhd, raw here): the stand-in for the Glance download."""
        vdi = self.call("VDI.create", {
            "name_label": name, "name_description": "root", "SR": sr, "virtual_size": str(size), "type": "User",
            "sharable": False, "read_only": False, "xenstore_data": {}, "other_config": other_config or {},
            "sm_config": {}, "tags": []})
        task = self.call("task.create", "nova-VDI_IMPORT_for_" + name, "")
        status, _, body = self.http("PUT", "/import_raw_vdi?session_id=%s&task_id=%s&vdi=%s" % (
            self.nova.handle, task, vdi), b"\xeb\x63" + b"\0" * (MiB - 2),
            {"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.call("task.get_status", task), "success")
        self.call("task.destroy", task)
        return vdi

    @staticmethod
    def vm_record(name, instance_uuid, mem=256 * MiB, vcpus=1, hvm=False):
        """vm_utils.create_vm for a PV guest booted by pygrub (or an HVM one), exactly as Nova fills it."""
        m = str(mem)
        rec = {
            "actions_after_crash": "destroy", "actions_after_reboot": "restart", "actions_after_shutdown": "destroy",
            "affinity": "", "blocked_operations": {}, "ha_always_run": False, "ha_restart_priority": "",
            "HVM_boot_params": {}, "HVM_boot_policy": "", "is_a_template": False,
            "memory_dynamic_min": m, "memory_dynamic_max": m, "memory_static_min": "0", "memory_static_max": m,
            "memory_target": m, "name_description": "", "name_label": name,
            "other_config": {"nova_uuid": instance_uuid}, "PCI_bus": "",
            "platform": {"acpi": "true", "apic": "true", "pae": "true", "viridian": "false", "timeoffset": "0",
                         "nx": "false"},
            "PV_args": "", "PV_bootloader": "pygrub", "PV_bootloader_args": "", "PV_kernel": "",
            "PV_legacy_args": "", "PV_ramdisk": "", "recommendations": "", "tags": [], "user_version": "0",
            "VCPUs_at_startup": str(vcpus), "VCPUs_max": str(vcpus), "VCPUs_params": {},
            "xenstore_data": {"vm-data/allowvssprovider": "false"},
        }
        if hvm:
            rec["platform"]["nx"] = "true"
            rec.update(HVM_boot_params={"order": "dc"}, HVM_boot_policy="BIOS order", PV_bootloader="")
        return rec

    def vbd_record(self, vm, vdi, userdevice, bootable=False, mode="RW", type="disk", empty=False):
        """vm_utils.create_vbd: Nova writes the enum in lower case."""
        return {"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": bootable, "mode": mode, "type": type,
                "unpluggable": type != "cd", "empty": empty, "other_config": {}, "qos_algorithm_type": "",
                "qos_algorithm_params": {}, "qos_supported_algorithms": []}

    def spawn(self, name, hvm=False):
        """vmops._spawn's calls from create_vm_record to boot_and_configure (the disks from import_disk)."""
        instance_uuid = str(uuid.uuid4())
        self.assertIsNone(self.lookup(name))
        free = self.call("host.compute_free_memory", self.nova.host_ref)
        self.assertIntString(free, "host.compute_free_memory")
        self.assertGreaterEqual(int(free), 256 * MiB)
        sr = self.default_sr()
        self.assertIsInstance(self.call("SR.get_type", sr), str)
        image = self.import_disk(sr, "image-" + name)
        # _create_cached_image: name the cache VDI, then clone it for the instance
        self.call("VDI.set_name_label", image, "Glance Image img-" + name)
        self.call("VDI.set_name_description", image, "root")
        self.call("VDI.add_to_other_config", image, "image-id", "img-" + name)
        self.call("VDI.add_to_other_config", image, "cached-time", "1700000000")
        cached = self.call("VDI.get_all_records_where",
                           'field "name__label"="Glance Image img-%s" and field "SR" = "%s"' % (name, sr))
        self.assertEqual(list(cached), [image])
        root = self.call("VDI.clone", image)
        self.call("VDI.set_name_label", root, "")
        self.call("VDI.set_name_description", root, "")
        self.call("VDI.remove_from_other_config", root, "image-id")
        root_uuid = self.call("VDI.get_uuid", root)
        root = self.call("VDI.get_by_uuid", root_uuid)
        self.assertNotIn("image-id", self.call("VDI.get_other_config", root))
        self.call("VDI.set_name_label", root, name)
        self.call("VDI.add_to_other_config", root, "nova_disk_type", "root")
        self.call("VDI.add_to_other_config", root, "nova_instance_uuid", instance_uuid)
        # flavor root_gb: grow the disk
        self.assertIntString(self.call("VDI.get_virtual_size", root), "VDI.virtual_size")
        self.call("VDI.resize", root, str(16 * MiB))
        self.assertEqual(self.call("VDI.get_virtual_size", root), str(16 * MiB))

        vm = self.call("VM.create", self.vm_record(name, instance_uuid, hvm=hvm))
        self.assertTrue(is_ref(vm))
        vbd = self.call("VBD.create", self.vbd_record(vm, root, "0", bootable=True))
        self.assertEqual(self.call("VBD.get_record", vbd)["type"], "Disk")
        # inject_instance_data: remove then add, JSON values; the VM is halted so no live write
        mac = "fa:16:3e:%02x:%02x:%02x" % tuple(uuid.uuid4().bytes[:3])
        net_info = json.dumps({"label": "private", "mac": mac, "ips": [{"ip": "10.0.0.5", "enabled": "1",
                                                                     "netmask": "255.255.255.0"}]})
        for key, value in (("vm-data/user-metadata/role", '"web"'), ("vm-data/auto-disk-config", '"False"'),
                           ("vm-data/hostname", '"%s"' % name),
                           ("vm-data/networking/" + mac.replace(":", ""), net_info)):
            self.call("VM.remove_from_xenstore_data", vm, key)
            self.call("VM.add_to_xenstore_data", vm, key, value)
        self.assertEqual(self.call("VM.get_domid", vm), "-1")
        # _create_vifs: an interim network named after the port, then the VIF
        port = str(uuid.uuid4())
        label = ("net-" + port)[:14]
        self.assertEqual(self.call("network.get_by_name_label", label), [])
        net = self.call("network.create", {"name_label": label, "name_description": "interim network for vif[%s]"
                                           % port, "other_config": {"assume_network_is_shared": "true"}})
        self.assertEqual(self.call("VM.get_VIFs", vm), [])
        vif = self.call("VIF.create", {"device": "0", "network": net, "VM": vm, "MAC": mac, "MTU": "1500",
                                       "qos_algorithm_type": "", "qos_algorithm_params": {},
                                       "other_config": {"neutron-port-id": port}})
        self.assertEqual(self.call("VM.get_power_state", vm), "Halted")
        # start paused, then the post-start lookups, then unpause
        self.call("VM.start_on", vm, self.nova.host_ref, True, False)
        self.assertEqual(self.call("VM.get_power_state", vm), "Paused")
        self.assertEqual(self.lookup(name), vm)
        rec = self.call("VIF.get_record", vif)
        self.assertEqual((rec["MAC"], rec["device"], rec["network"]), (mac, "0", net))
        self.assertEqual(rec["other_config"]["neutron-port-id"], port)
        bridge = self.call("network.get_bridge", net)
        self.assertTrue(bridge and isinstance(bridge, str), "Nova wires OVS to the bridge name: %r" % bridge)
        self.assertRegex(self.call("network.get_uuid", net), UUID_RE)
        self.call("VM.unpause", vm)
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")
        other = self.call("VM.get_other_config", vm)
        domid = self.call("VM.get_domid", vm)
        self.assertIntString(domid, "VM.domid")
        self.assertNotEqual(domid, "-1")
        other["last_dom_id"] = domid
        self.call("VM.set_other_config", vm, other)
        self.call("VM.remove_from_xenstore_data", vm, "vm-data/hostname")
        xs = self.call("VM.get_record", vm)["xenstore_data"]
        self.assertNotIn("vm-data/hostname", xs)
        self.assertEqual(json.loads(xs["vm-data/networking/" + mac.replace(":", "")])["mac"], mac)
        self.assertEqual(xs["vm-data/allowvssprovider"], "false")
        return vm, {"root": root, "vbd": vbd, "vif": vif, "net": net, "image": image, "uuid": instance_uuid}


class StartUp(NovaTest):
    """XenAPISession.__init__ and XenAPIDriver.__init__/init_host."""

    def test_login_over_rpc2_with_originator(self):
        self.assertTrue(is_ref(self.nova.handle))
        self.assertRegex(self.nova.api_version, r"^[0-9]+\.[0-9]+$")
        self.assertEqual(self.nova.calls[:4], ["pool.get_all", "pool.get_master", "host.get_API_version_major",
                                               "host.get_API_version_minor"])
        self.assertRegex(self.nova.host_uuid, UUID_RE)
        # the login went to /RPC2 (xmlrpc.client's path for a URL without one): it answers as / does
        with self.server_proxy() as rpc2, self.server_proxy("/") as root:
            self.assertEqual(rpc2.pool.get_all(self.nova.handle), root.pool.get_all(self.nova.handle))

    def test_five_pooled_sessions_work_in_parallel(self):
        sessions = [NovaSession(self.server_proxy()) for _ in range(5)]
        self.assertEqual(len({s.handle for s in sessions}), 5)
        results = []

        def work(s):
            results.append(s.call_plugin_serialized("dom0_plugin_version", "get_version"))

        threads = [threading.Thread(target=work, args=(s,)) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, ["2.1"] * 5)
        for s in sessions:
            s.proxy("close")()

    def test_task_created_parses(self):
        """_cancel_stale_tasks: task.get_by_name_label, then created.value parsed as %Y%m%dT%H:%M:%SZ."""
        task = self.call("task.create", "nova-VDI_IMPORT_for_x", "")
        for ref in self.call("task.get_by_name_label", "VM.clean_reboot") + [task]:
            created = self.call("task.get_record", ref)["created"]
            self.assertIsInstance(created, xmlrpc.client.DateTime)
            time.strptime(created.value, "%Y%m%dT%H:%M:%SZ")
        self.assertEqual(self.call("task.get_by_name_label", "nova-VDI_IMPORT_for_x"), [task])
        self.call("task.destroy", task)

    def test_software_version(self):
        sv = self.call("host.get_software_version", self.nova.host_ref)
        version = sv.get("product_version") or sv["platform_version"]
        self.assertTrue(all(p.isdigit() for p in version.split(".")), version)
        self.assertGreaterEqual(tuple(map(int, version.split("."))), (6, 1))
        self.assertIn(sv["product_brand"], ("XenServer", "XCP", "XCP-ng", "Citrix Hypervisor"))
        self.assertTrue(all(p.isdigit() for p in sv["platform_version"].split(".")))
        self.assertIsInstance(sv["platform_name"], str)

    def test_plugin_version_is_compatible(self):
        version = self.nova.call_plugin_serialized("dom0_plugin_version", "get_version")
        self.assertIsInstance(version, str)
        have, need = version.split("."), self.nova.PLUGIN_REQUIRED_VERSION.split(".")
        self.assertEqual(have[0], need[0])
        self.assertGreaterEqual(int(have[1]), int(need[1]))

    def test_resource_pool_reads_the_host_record(self):
        rec = self.call("host.get_record", self.nova.host_ref)
        for field in ("hostname", "address", "uuid"):
            self.assertIsInstance(rec[field], str, field)
            self.assertTrue(rec[field], field)
        self.assertEqual(rec["uuid"], self.nova.host_uuid)

    def test_session_invalid_is_what_makes_nova_log_in_again(self):
        with self.server_proxy() as p:
            r = p.pool.get_all("OpaqueRef:" + str(uuid.uuid4()))
        self.assertEqual(r["Status"], "Failure")
        self.assertEqual(r["ErrorDescription"][0], "SESSION_INVALID")
        self.assertTrue(all(isinstance(e, str) for e in r["ErrorDescription"]))

    def test_dom0_lookups(self):
        dom0 = self.call("VM.get_all_records_where", 'field "domid"="0"')
        self.assertEqual(len(dom0), 1)
        both = self.call("VM.get_all_records_where", 'field "domid"="0" and field "resident_on"="%s"'
                         % self.nova.host_ref)
        self.assertEqual(list(both), list(dom0))
        rec = list(dom0.values())[0]
        self.assertTrue(rec["is_control_domain"])
        self.assertEqual(rec["resident_on"], self.nova.host_ref)

    def test_default_sr_is_one_nova_accepts(self):
        """get_sr_path refuses an SR without a device_config path that is not ext or nfs."""
        self.assertTrue(self.sr_path(self.default_sr()))


class HostStats(NovaTest):
    """HostState.update_status, every refresh."""

    def test_host_data(self):
        """os-xenapi's xenhost.host_data runs `xe host-param-list` (the plugin's PATH has xenapid's xe) and
        parses memory-total/-free/-free-computed, cpu_info...; get_pci_device_details runs lspci."""
        data = json.loads(self.nova.call_plugin("xenhost", "host_data", {}))
        rec = self.call("host.get_record", self.nova.host_ref)
        self.assertEqual(data["host_uuid"], self.nova.host_uuid)
        self.assertEqual(data["host_hostname"], rec["hostname"])
        self.assertEqual(data["host_ip_address"], rec["address"])
        for k in ("total", "overhead", "free", "free-computed"):
            self.assertIsInstance(data["host_memory"][k], int, k)
        self.assertIn("xen-3.0-x86_64", data["host_capabilities"])
        for k in ("cpu_count", "family", "model", "stepping", "socket_count"):
            self.assertIsInstance(data["host_cpu_info"][k], int, k)
        self.assertIsInstance(self.nova.call_plugin_serialized("xenhost", "get_pci_device_details"), str)

    def test_storage_and_vms(self):
        sr = self.default_sr()
        self.call("SR.scan", sr)
        rec = self.call("SR.get_record", sr)
        for k in ("physical_size", "physical_utilisation", "virtual_allocation"):
            self.assertIntString(rec[k], "SR." + k)
        self.assertGreater(int(rec["physical_size"]), 0)
        self.assertIsInstance(rec["shared"], bool)
        for vdi in self.call("SR.get_VDIs", sr):
            self.assertIntString(self.call("VDI.get_virtual_size", vdi), "VDI.virtual_size")
            self.assertIntString(self.call("VDI.get_physical_utilisation", vdi), "VDI.physical_utilisation")
            for vbd in self.call("VDI.get_VBDs", vdi):
                self.assertIsInstance(self.call("VBD.get_currently_attached", vbd), bool)
        vms = self.call("VM.get_all_records_where", 'field "is_control_domain"="false" and field "is_a_template"='
                        '"false" and field "resident_on"="%s"' % self.nova.host_ref)
        for rec in vms.values():
            self.assertIntString(rec["VCPUs_max"], "VM.VCPUs_max")
            self.assertIntString(rec["memory_static_max"], "VM.memory_static_max")

    def test_diagnostics_data_sources(self):
        dom0 = list(self.call("VM.get_all_records_where", 'field "domid"="0"'))[0]
        self.assertIsInstance(self.call("VM.query_data_source", dom0, "memory"), float)
        uuid_ = self.call("VM.get_uuid", dom0)
        status, _, body = self.http("GET", "/vm_rrd?uuid=%s&session_id=%s" % (uuid_, self.nova.handle))
        self.assertEqual(status, 200)
        self.assertIn(b"<lastupdate>", body)
        self.assertIn(b"<rra>", body)


class Lifecycle(NovaTest):
    extra_config = "sim_guest_delay_ms = 30\n"

    @classmethod
    def setUpClass(cls):
        # the daemon's console.<domid> links go to a folder of this test's (sim's domids are its
        # own), which the console plugin is told of by a file beside it (else Nova's path)
        cls.guest_console_dir = tempfile.mkdtemp(prefix="xenapid-compat-guest-console-")
        cls.extra_config = Lifecycle.extra_config + "guest_console_dir = %s\n" % cls.guest_console_dir
        super().setUpClass()
        with open(os.path.join(cls.plugin_dir, "guest-console-dir"), "w") as f:
            f.write(cls.guest_console_dir)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.guest_console_dir, ignore_errors=True)

    def test_spawn(self):
        vm, parts = self.spawn("instance-00000001")
        rec = self.call("VM.get_record", vm)
        for cls, ref in (("VBD", parts["vbd"]), ("VDI", parts["root"]), ("VIF", parts["vif"]),
                         ("network", parts["net"])):
            check_record(self, cls, self.call(cls + ".get_record", ref))
        # Nova sends affinity "" and, as with xapi (a ref is the string it was given), it reads back
        # as "", not a ref; Nova never reads it, so only the other fields are held to their types.
        check_record(self, "VM", dict(rec, affinity=NULL_REF))
        self.assertEqual(rec["other_config"]["nova_uuid"], parts["uuid"])
        self.assertEqual(rec["other_config"]["last_dom_id"], rec["domid"])
        vbd = self.call("VBD.get_record", parts["vbd"])
        self.assertEqual((vbd["userdevice"], vbd["VDI"], vbd["mode"]), ("0", parts["root"], "RW"))
        self.assertTrue(vbd["currently_attached"])
        vdi = self.call("VDI.get_record", parts["root"])
        self.assertEqual(vdi["other_config"]["nova_instance_uuid"], parts["uuid"])
        self.assertEqual(vdi["type"], "user")
        # a clone on the ext SR is a VHD leaf over a hidden base copy (vm_utils._get_vhd_parent_uuid reads it)
        parent = self.call("VDI.get_by_uuid", vdi["sm_config"]["vhd-parent"])
        self.assertEqual(self.call("VDI.get_SR", parent), vdi["SR"])
        self.assertIs(self.call("VDI.get_managed", parent), False)
        # list_instances
        listed = self.call("VM.get_all_records_where", 'field "is_control_domain"="false" and field "is_a_template"='
                           '"false" and field "resident_on"="%s"' % self.nova.host_ref)
        self.assertIn("instance-00000001", [r["name_label"] for r in listed.values()])
        self.assertIn(self.call("VM.get_power_state", vm), ("Halted", "Running", "Paused", "Suspended", "Crashed"))

    def test_spawn_hvm(self):
        vm, _ = self.spawn("instance-00000008", hvm=True)
        rec = self.call("VM.get_record", vm)
        self.assertEqual((rec["HVM_boot_policy"], rec["HVM_boot_params"]), ("BIOS order", {"order": "dc"}))
        self.assertEqual(rec["platform"]["nx"], "true")

    def test_console_output(self):
        """get_console_output: lookup, other_config last_dom_id, console.get_console_log."""
        vm, _ = self.spawn("instance-00000009")
        dom_id = self.call("VM.get_other_config", vm)["last_dom_id"]
        log = zlib.decompress(base64.b64decode(self.nova.call_plugin("console", "get_console_log",
                                                                     {"dom_id": dom_id})))
        # what the (simulated) guest printed on its console as it booted
        self.assertIn(b"SIM-GUEST-UP domain %s " % dom_id.encode(), log)

    def test_reboot_power_off_on(self):
        vm, _ = self.spawn("instance-00000002")
        self.assertIsNone(self.lookup("instance-00000002-rescue"))
        self.call("VM.clean_reboot", vm)
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")
        self.call("VM.hard_reboot", vm)
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")
        # power_off
        self.call("VM.hard_shutdown", vm)
        self.assertEqual(self.call("VM.get_power_state", vm), "Halted")
        self.assertEqual(self.call("VM.get_domid", vm), "-1")
        # reboot of a halted VM: Nova starts it when details[-1] is 'halted'
        with self.assertRaises(XenAPIFailure) as cm:
            self.call("VM.clean_reboot", vm)
        self.assertEqual(cm.exception.details[0], "VM_BAD_POWER_STATE")
        self.assertEqual(cm.exception.details[-1], "halted")
        # power_on
        self.call("VM.start_on", vm, self.nova.host_ref, False, False)
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")

    def test_suspend_resume_pause(self):
        vm, _ = self.spawn("instance-00000003")
        self.call("VM.pause", vm)
        self.assertEqual(self.call("VM.get_power_state", vm), "Paused")
        self.call("VM.unpause", vm)
        self.call("VM.set_blocked_operations", vm, {"start": ""})
        self.call("VM.suspend", vm)
        self.assertEqual(self.call("VM.get_power_state", vm), "Suspended")
        with self.assertRaises(XenAPIFailure):
            self.call("VM.start_on", vm, self.nova.host_ref, False, False)
        self.call("VM.remove_from_blocked_operations", vm, "start")
        self.call("VM.resume", vm, False, True)
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")

    def test_soft_delete_blocks_start(self):
        vm, _ = self.spawn("instance-00000007")
        self.call("VM.hard_shutdown", vm)
        self.call("VM.set_blocked_operations", vm, {"start": ""})
        with self.assertRaises(XenAPIFailure) as cm:
            self.call("VM.start_on", vm, self.nova.host_ref, False, False)
        self.assertEqual(cm.exception.details, ["OPERATION_BLOCKED", vm, ""])
        self.call("VM.remove_from_blocked_operations", vm, "start")
        self.call("VM.start_on", vm, self.nova.host_ref, False, False)
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")

    def test_snapshot(self):
        vm, parts = self.spawn("instance-00000004")
        vbds = [self.call("VBD.get_record", v) for v in self.call("VM.get_VBDs", vm)]
        root = [v for v in vbds if v["userdevice"] == "0"][0]["VDI"]
        rec = self.call("VDI.get_record", root)
        sr = rec["SR"]
        snap = self.call("VDI.snapshot", root, {})
        srec = self.call("VDI.get_record", snap)
        self.assertTrue(srec["is_a_snapshot"])
        self.assertEqual(srec["snapshot_of"], root)
        self.assertIn(snap, self.call("SR.get_VDIs", sr))
        self.call("SR.scan", sr)
        self.assertRegex(self.call("VDI.get_uuid", snap), UUID_RE)
        self.call("VDI.destroy", snap)
        self.assertNotIn(snap, self.call("SR.get_VDIs", sr))

    def test_image_download_into_the_sr(self):
        """_fetch_vhd_image: glance.download_vhd2 leaves <uuid>.vhd in sr_path; SR.scan makes it a VDI."""
        sr = self.default_sr()
        path = self.sr_path(sr)
        stack = [str(uuid.uuid4()) for _ in range(16)]
        result = self.nova.call_plugin_serialized("glance.py", "download_vhd2", image_id="img", sr_path=path,
                                                  extra_headers={}, uuid_stack=stack, endpoint="http://glance",
                                                  api_version=2)
        self.assertEqual(result, {"root": {"uuid": stack[0]}})
        self.call("SR.scan", sr)
        vdi = self.call("VDI.get_by_uuid", stack[0])
        rec = self.call("VDI.get_record", vdi)
        self.assertEqual(rec["virtual_size"], str(2 << 20))
        self.assertNotIn("vhd-parent", rec["sm_config"])

    def test_volume_on_an_existing_sr(self):
        """attach_volume when SR.get_by_uuid finds the SR, then detach_volume (SR left alone)."""
        vm, _ = self.spawn("instance-00000005")
        sr = self.default_sr()
        vol = self.call("VDI.create", {"name_label": "volume", "name_description": "", "SR": sr,
                                       "virtual_size": str(4 * MiB), "type": "User", "sharable": False,
                                       "read_only": False, "xenstore_data": {}, "other_config": {},
                                       "sm_config": {}, "tags": []})
        sr_uuid = self.call("SR.get_uuid", sr)
        self.assertEqual(self.call("SR.get_by_uuid", sr_uuid), sr)
        vdi = self.call("VDI.get_by_uuid", self.call("VDI.get_uuid", vol))
        self.call("VDI.get_record", vdi)
        vbd = self.call("VBD.create", self.vbd_record(vm, vdi, "1"))
        self.call("VBD.add_to_other_config", vbd, "osvol", "True")
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")
        self.call("VBD.plug", vbd)
        self.assertTrue(self.call("VBD.get_currently_attached", vbd))
        # detach_volume: find_vbd_by_number
        found = [v for v in self.call("VM.get_VBDs", vm) if self.call("VBD.get_userdevice", v) == "1"]
        self.assertEqual(found, [vbd])
        self.assertEqual(self.call("VBD.get_other_config", vbd)["osvol"], "True")
        self.assertEqual(self.call("VDI.get_SR", self.call("VBD.get_VDI", vbd)), sr)
        self.call("VBD.unplug", vbd)
        with self.assertRaises(XenAPIFailure) as cm:
            self.call("VBD.unplug", vbd)
        self.assertEqual(cm.exception.details[0], "DEVICE_ALREADY_DETACHED")  # Nova takes it as success
        self.call("VBD.destroy", vbd)
        self.assertNotIn(vbd, self.call("VM.get_VBDs", vm))

    def test_sr_lookup_by_unknown_uuid(self):
        """find_sr_by_uuid: UUID_INVALID means 'not found, introduce it'."""
        with self.assertRaises(XenAPIFailure) as cm:
            self.call("SR.get_by_uuid", str(uuid.uuid4()))
        self.assertEqual(cm.exception.details[0], "UUID_INVALID")

    def test_destroy(self):
        name = "instance-00000006"
        vm, parts = self.spawn(name)
        self.assertEqual(self.lookup(name), vm)
        self.assertIsNone(self.lookup(name + "-rescue"))
        self.assertEqual(self.call("VM.get_power_state", vm), "Running")
        self.call("VM.hard_shutdown", vm)
        for vbd in self.call("VM.get_VBDs", vm):
            self.assertNotIn("osvol", self.call("VBD.get_other_config", vbd))
            vdi = self.call("VBD.get_VDI", vbd)
            self.assertRegex(self.call("VDI.get_uuid", vdi), UUID_RE)
            self.call("VDI.destroy", vdi)
        for vif in self.call("VM.get_VIFs", vm):
            self.call("VIF.get_record", vif)
            self.call("VIF.destroy", vif)
        label = self.call("network.get_name_label", parts["net"])
        nets = self.call("network.get_by_name_label", label)
        self.assertEqual(nets, [parts["net"]])
        self.assertEqual(self.call("network.get_VIFs", parts["net"]), [])
        self.call("network.destroy", parts["net"])
        self.call("VM.destroy", vm)
        self.assertIsNone(self.lookup(name))
        with self.assertRaises(XenAPIFailure) as cm:
            self.call("VDI.get_record", parts["root"])
        self.assertEqual(cm.exception.details[:2], ["HANDLE_INVALID", "VDI"])
        self.assertEqual(self.call("network.get_by_name_label", label), [])


if __name__ == "__main__":
    unittest.main()


sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from fake_iscsi import FakeTarget, can_loop  # noqa: E402

VOLUME_IQN = "iqn.2010-10.org.openstack:volume-1"
VOLUME_DATA = b"cinder volume-1\n" * 4


@unittest.skipUnless(can_loop(), "needs root and loop devices (the made-up target's LUNs)")
class VolumeAttach(NovaTest):
    """volumeops.attach_volume / detach_volume with an iSCSI volume, against a
    made-up target (tests/integration/fake_iscsi.py): volume_utils.introduce_sr
    (SR.introduce, PBD.create with target/port/targetIQN, PBD.plug, SR.scan),
    introduce_vdi (the VDI whose sm_config LUNid is the target's LUN), VBD
    hot-plug; then the detach and purge (VBD.unplug/destroy, PBD.unplug, SR.forget)."""

    @classmethod
    def setUpClass(cls):
        cls.target = FakeTarget({VOLUME_IQN: [{"lun": 1, "size": 8 << 20, "data": VOLUME_DATA}]})
        cls.extra_config = "sim_guest_delay_ms = 30\n" + cls.target.config()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.target.close()

    def test_iscsi_volume_introduce(self):
        vm, _ = self.spawn("instance-0000000a")
        sr_uuid = str(uuid.uuid4())
        with self.assertRaises(XenAPIFailure) as cm:
            self.call("SR.get_by_uuid", sr_uuid)
        self.assertEqual(cm.exception.details[0], "UUID_INVALID")
        sr = self.call("SR.introduce", sr_uuid, "tempSR-vol", "", "iscsi", "", False, {})
        pbd = self.call("PBD.create", {"host": self.nova.host_ref, "SR": sr, "device_config": {
            "target": "127.0.0.1", "port": str(self.target.port), "targetIQN": VOLUME_IQN}})
        self.call("PBD.plug", pbd)
        self.call("SR.scan", sr)
        vdis = [v for v in self.call("SR.get_VDIs", sr)
                if self.call("VDI.get_record", v)["sm_config"].get("LUNid") == "1"]
        self.assertEqual(len(vdis), 1)
        rec = self.call("VDI.get_record", vdis[0])
        self.assertTrue(rec["managed"])  # no VDI.introduce needed
        self.assertEqual(rec["virtual_size"], str(8 << 20))
        vbd = self.call("VBD.create", self.vbd_record(vm, vdis[0], "1"))
        self.call("VBD.add_to_other_config", vbd, "osvol", "True")
        self.call("VBD.plug", vbd)
        self.assertTrue(self.call("VBD.get_currently_attached", vbd))
        # detach_volume and purge_sr
        self.call("VBD.unplug", vbd)
        self.call("VBD.destroy", vbd)
        self.call("PBD.unplug", pbd)
        self.assertEqual(self.target.sessions(), [])
        self.call("SR.forget", sr)
        with self.assertRaises(XenAPIFailure):
            self.call("SR.get_by_uuid", sr_uuid)
