"""The classes Nova and CloudStack probe although this host has none of their
objects: pool_patch, host_patch, pool_update, GPU_group, PGPU, VGPU_type,
VGPU and Bond answer with empty sets and xapi's errors, the fields of host,
VM and PIF that point at them are there, and what would make one answers a
clear XenAPI error (NOT_IMPLEMENTED after the arguments are checked)."""

import unittest
import uuid

from harness import CLASSES, NULL_REF, DaemonTest, fail, ok

PROBED = ["pool_patch", "host_patch", "pool_update", "GPU_group", "PGPU", "VGPU_type", "VGPU", "Bond"]
NO_SUCH_REF = "OpaqueRef:00000000-0000-4000-8000-000000000000"


class TestProbedClasses(DaemonTest):
    def api(self, cls):
        return getattr(self.x, cls)

    def test_in_the_schema(self):
        for cls in PROBED:
            self.assertIn(cls, CLASSES)
            fields = {f["name"] for f in CLASSES[cls]["fields"]}
            self.assertIn("uuid", fields)
        # what the clients read (cloudstack.md, nova.md)
        self.assertLessEqual({"applied", "pool_patch", "host"}, {f["name"] for f in CLASSES["host_patch"]["fields"]})
        self.assertLessEqual({"enabled_VGPU_types", "supported_VGPU_max_capacities", "GPU_group"},
                             {f["name"] for f in CLASSES["PGPU"]["fields"]})
        self.assertLessEqual({"model_name", "max_heads"}, {f["name"] for f in CLASSES["VGPU_type"]["fields"]})
        self.assertLessEqual({"slaves", "master"}, {f["name"] for f in CLASSES["Bond"]["fields"]})

    def test_empty_sets_and_lookups(self):
        for cls in PROBED:
            a = self.api(cls)
            self.assertEqual(ok(a.get_all(self.s)), [], cls)
            self.assertEqual(ok(a.get_all_records(self.s)), {}, cls)
            self.assertEqual(ok(a.get_all_records_where(self.s, 'field "uuid"="x"')), {}, cls)
            u = str(uuid.uuid4())
            self.assertEqual(fail(a.get_by_uuid(self.s, u)), ["UUID_INVALID", cls, u], cls)
            self.assertEqual(fail(a.get_record(self.s, NO_SUCH_REF)), ["HANDLE_INVALID", cls, NO_SUCH_REF], cls)
            self.assertEqual(fail(a.get_uuid(self.s, NO_SUCH_REF))[0], "HANDLE_INVALID", cls)
            if any(f["name"] == "other_config" for f in CLASSES[cls]["fields"]):  # VGPU_type has none
                self.assertEqual(fail(a.get_other_config(self.s, NO_SUCH_REF))[0], "HANDLE_INVALID", cls)

    def test_what_the_clients_call(self):
        s = self.s
        # CloudStack's hot-fix probe: "UUID_INVALID means no"
        hotfix = "8f5bd8f9-8c1e-4d34-a2e0-aaf5d2a3c6b4"
        self.assertEqual(fail(self.x.pool_patch.get_by_uuid(s, hotfix)), ["UUID_INVALID", "pool_patch", hotfix])
        self.assertEqual(fail(self.x.host_patch.get_applied(s, NO_SUCH_REF))[0], "HANDLE_INVALID")
        self.assertEqual(fail(self.x.host_patch.get_pool_patch(s, NO_SUCH_REF))[0], "HANDLE_INVALID")
        self.assertEqual(ok(self.x.pool_patch.get_by_name_label(s, "XS62E004")), [])
        # Nova's and CloudStack's vGPU path
        self.assertEqual(ok(self.x.GPU_group.get_by_name_label(s, "Group of NVIDIA GRID K1")), [])
        self.assertEqual(ok(self.x.PGPU.get_all_records_where(s, 'field "GPU_group" = "%s"' % NO_SUCH_REF)), {})
        self.assertEqual(fail(self.x.GPU_group.get_remaining_capacity(s, NO_SUCH_REF, NO_SUCH_REF))[:2],
                         ["HANDLE_INVALID", "GPU_group"])
        self.assertEqual(fail(self.x.PGPU.get_remaining_capacity(s, NO_SUCH_REF, NO_SUCH_REF))[:2],
                         ["HANDLE_INVALID", "PGPU"])
        self.assertEqual(fail(self.x.VGPU_type.get_model_name(s, NO_SUCH_REF))[:2], ["HANDLE_INVALID", "VGPU_type"])
        self.assertEqual(fail(self.x.Bond.get_slaves(s, NO_SUCH_REF))[:2], ["HANDLE_INVALID", "Bond"])

    def test_fields_pointing_at_them(self):
        s = self.s
        host = ok(self.x.host.get_all(s))[0]
        rec = ok(self.x.host.get_record(s, host))
        self.assertEqual((rec["PGPUs"], rec["patches"], rec["updates"]), ([], [], []))
        self.assertEqual(ok(self.x.host.get_PGPUs(s, host)), [])
        vm = ok(self.x.VM.get_all(s))[0]
        self.assertEqual(ok(self.x.VM.get_VGPUs(s, vm)), [])
        for pif in ok(self.x.PIF.get_all(s)):
            prec = ok(self.x.PIF.get_record(s, pif))
            self.assertEqual((prec["bond_master_of"], prec["bond_slave_of"]), ([], NULL_REF))

    def test_making_one_is_refused_clearly(self):
        s = self.s
        net = ok(self.x.network.get_all(s))[0]
        pif = ok(self.x.PIF.get_all(s))[0]
        vm = ok(self.x.VM.get_all(s))[0]
        # Bond.create is network/'s (test_network_host.py): the arguments are checked as xapi does
        self.assertEqual(fail(self.x.Bond.create(s, net, [pif], "", "balance-slb", {})),
                         ["PIF_BOND_NEEDS_MORE_MEMBERS"])
        self.assertEqual(fail(self.x.Bond.create(s, NO_SUCH_REF, [pif], "", "balance-slb", {})),
                         ["HANDLE_INVALID", "network", NO_SUCH_REF])
        self.assertEqual(fail(self.x.Bond.create(s, net, [pif, NO_SUCH_REF], "", "lacp", {})),
                         ["HANDLE_INVALID", "PIF", NO_SUCH_REF])
        self.assertEqual(fail(self.x.Bond.create(s, net, [pif], "", "bogus", {}))[0], "INVALID_VALUE")
        self.assertEqual(fail(self.x.Bond.destroy(s, NO_SUCH_REF))[:2], ["HANDLE_INVALID", "Bond"])
        # VGPU.create (vm, group, device, other_config[, type])
        self.assertEqual(fail(self.x.VGPU.create(s, vm, NO_SUCH_REF, "0", {}))[:2], ["HANDLE_INVALID", "GPU_group"])
        self.assertEqual(fail(self.x.VGPU.create(s, NO_SUCH_REF, NO_SUCH_REF, "0", {}, NULL_REF))[:2],
                         ["HANDLE_INVALID", "VM"])
        self.assertEqual(fail(self.x.GPU_group.create(s, "g", "", {})), ["NOT_IMPLEMENTED", "GPU_group.create"])
        self.assertEqual(ok(self.x.GPU_group.get_all(s)), [])
        vdi_missing = fail(self.x.pool_update.introduce(s, NO_SUCH_REF))
        self.assertEqual(vdi_missing[:2], ["HANDLE_INVALID", "VDI"])
        self.assertEqual(fail(self.x.pool_patch.apply(s, NO_SUCH_REF, ok(self.x.host.get_all(s))[0]))[:2],
                         ["HANDLE_INVALID", "pool_patch"])
        # Async forms exist too, and fail in their task the same way
        task = ok(self.x.Async.Bond.create(s, net, [pif], "", "balance-slb", {}))
        self.assertTrue(task.startswith("OpaqueRef:"))

    def test_pool_operations_of_a_single_host(self):
        s = self.s
        host = ok(self.x.host.get_all(s))[0]
        vm = ok(self.x.VM.get_all(s))[0]
        self.assertEqual(fail(self.x.VM.pool_migrate(s, vm, host, {"live": "true"})),
                         ["NOT_IMPLEMENTED", "VM.pool_migrate"])
        self.assertEqual(fail(self.x.VM.pool_migrate(s, NO_SUCH_REF, host, {}))[:2], ["HANDLE_INVALID", "VM"])
        self.assertEqual(fail(self.x.pool.join(s, "10.0.0.1", "root", "pw")), ["NOT_IMPLEMENTED", "pool.join"])
        self.assertEqual(fail(self.x.host.migrate_receive(s, NO_SUCH_REF, NO_SUCH_REF, {}))[:2],
                         ["HANDLE_INVALID", "host"])


if __name__ == "__main__":
    unittest.main()
