"""The datamodel served from classes.json: complete records, the generic
messages (get_record, get_by_uuid, get_by_name_label, get_all*, the filter
language Nova uses, setters, map and set accessors, tags), create/destroy and
the cross-references between objects."""

import unittest

from harness import (CLASSES, NULL_REF, REF_RE, DaemonTest, any_sr, check_record, create_network, create_pbd,
                     create_vbd, create_vdi, create_vif, create_vm, fail, new_sr, ok, vm_record)


class Records(DaemonTest):
    """get_record / get_all_records are complete and typed per classes.json."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        x, s = cls.x, cls.s
        cls.host = ok(x.host.get_all(s))[0]
        cls.vm = create_vm(x, s, name_label="records-vm")
        cls.vdi = create_vdi(x, s, name_label="records-vdi")
        cls.vbd = create_vbd(x, s, cls.vm, cls.vdi)
        cls.net = create_network(x, s, name_label="records-net")
        cls.vif = create_vif(x, s, cls.vm, cls.net)
        cls.console = ok(x.console.create(s, {"other_config": {"k": "v"}}))
        cls.secret = ok(x.secret.create(s, {"value": "hunter2"}))
        cls.pbd = create_pbd(x, s, cls.host, device_config={"path": "/x"})

    def objects(self):
        x, s = self.x, self.s
        host_rec = ok(x.host.get_record(s, self.host))
        vm_rec = ok(x.VM.get_record(s, self.vm))
        return [
            ("session", self.s), ("host", self.host), ("pool", ok(x.pool.get_all(s))[0]),
            ("host_metrics", host_rec["metrics"]), ("host_cpu", host_rec["host_CPUs"][0]),
            ("VM", self.vm), ("VM_metrics", vm_rec["metrics"]) if vm_rec["metrics"] != NULL_REF else None,
            ("VM", host_rec["control_domain"]),
            ("VDI", self.vdi), ("VBD", self.vbd), ("network", self.net), ("VIF", self.vif),
            ("console", self.console), ("secret", self.secret), ("PBD", self.pbd),
        ]

    def test_get_record_is_complete_for_every_class(self):
        seen = set()
        for item in self.objects():
            if item is None:
                continue
            cls, ref = item
            with self.subTest(cls=cls):
                rec = ok(getattr(self.x, cls).get_record(self.s, ref))
                check_record(self, cls, rec)
                seen.add(cls)
        self.assertGreaterEqual(len(seen), 13)

    def test_get_all_records_is_complete_and_keyed_by_ref(self):
        for cls in ("host", "pool", "VM", "VDI", "VBD", "VIF", "network", "console", "secret", "PBD", "host_cpu",
                    "host_metrics", "task", "SR", "PIF", "VLAN", "VM_metrics", "VM_guest_metrics"):
            with self.subTest(cls=cls):
                recs = ok(getattr(self.x, cls).get_all_records(self.s))
                self.assertIsInstance(recs, dict)
                self.assertEqual(sorted(recs), sorted(ok(getattr(self.x, cls).get_all(self.s))))
                for ref, rec in recs.items():
                    self.assertRegex(ref, REF_RE)
                    check_record(self, cls, rec)

    def test_record_matches_field_getters(self):
        rec = ok(self.x.VM.get_record(self.s, self.vm))
        for f in CLASSES["VM"]["fields"]:
            with self.subTest(field=f["name"]):
                self.assertEqual(ok(getattr(self.x.VM, "get_" + f["name"])(self.s, self.vm)), rec[f["name"]])

    def test_created_vm_fields(self):
        rec = ok(self.x.VM.get_record(self.s, self.vm))
        self.assertEqual(rec["name_label"], "records-vm")
        self.assertEqual(rec["VCPUs_max"], "1")
        self.assertEqual(rec["memory_static_max"], str(256 << 20))
        self.assertEqual(rec["power_state"], "Halted")
        self.assertEqual(rec["domid"], "-1")
        self.assertIs(rec["is_a_template"], False)
        self.assertEqual(rec["HVM_boot_params"], {"order": "cd"})
        self.assertEqual(rec["tags"], [])  # default
        self.assertEqual(rec["suspend_VDI"], NULL_REF)

    def test_every_class_of_the_issue_is_served(self):
        names = set(self.x.system.listMethods())
        for cls in ("session", "task", "pool", "host", "host_metrics", "host_cpu", "VM", "VM_metrics",
                    "VM_guest_metrics", "VBD", "VDI", "SR", "PBD", "VIF", "network", "PIF", "VLAN", "console",
                    "secret"):
            with self.subTest(cls=cls):
                self.assertIn(cls + ".get_record", names)
                self.assertIn(cls + ".get_by_uuid", names)
                for f in CLASSES[cls]["fields"]:
                    if f["type"] != "<class> record":
                        self.assertIn("%s.get_%s" % (cls, f["name"]), names)
        # message is not in the database: no generic accessors
        self.assertNotIn("message.get_record", names)


class Lookups(DaemonTest):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a = create_vm(cls.x, cls.s, name_label="lookup-a")
        cls.b1 = create_vm(cls.x, cls.s, name_label="lookup-b")
        cls.b2 = create_vm(cls.x, cls.s, name_label="lookup-b")

    def test_get_by_uuid(self):
        uuid = ok(self.x.VM.get_uuid(self.s, self.a))
        self.assertEqual(ok(self.x.VM.get_by_uuid(self.s, uuid)), self.a)
        host = ok(self.x.host.get_all(self.s))[0]
        self.assertEqual(ok(self.x.host.get_by_uuid(self.s, ok(self.x.host.get_uuid(self.s, host)))), host)

    def test_get_by_uuid_wrong_class_or_unknown(self):
        uuid = ok(self.x.VM.get_uuid(self.s, self.a))
        self.assertEqual(fail(self.x.VDI.get_by_uuid(self.s, uuid)), ["UUID_INVALID", "VDI", uuid])
        bogus = "00000000-0000-0000-0000-000000000000"
        self.assertEqual(fail(self.x.VM.get_by_uuid(self.s, bogus)), ["UUID_INVALID", "VM", bogus])

    def test_get_by_name_label(self):
        self.assertEqual(ok(self.x.VM.get_by_name_label(self.s, "lookup-a")), [self.a])
        self.assertEqual(sorted(ok(self.x.VM.get_by_name_label(self.s, "lookup-b"))), sorted([self.b1, self.b2]))
        self.assertEqual(ok(self.x.VM.get_by_name_label(self.s, "no-such-vm")), [])
        self.assertEqual(ok(self.x.VM.get_by_name_label(self.s, "lookup-")), [])  # exact match only

    def test_get_all(self):
        refs = ok(self.x.VM.get_all(self.s))
        for r in (self.a, self.b1, self.b2):
            self.assertIn(r, refs)
        self.assertEqual(len(refs), len(set(refs)))
        self.assertEqual(len(ok(self.x.pool.get_all(self.s))), 1)
        self.assertEqual(len(ok(self.x.host.get_all(self.s))), 1)

    def test_get_by_name_label_absent_where_the_datamodel_has_none(self):
        self.assertEqual(fail(self.x.VBD.get_by_name_label(self.s, "x"))[0], "MESSAGE_METHOD_UNKNOWN")
        self.assertEqual(fail(self.x.pool.get_by_name_label(self.s, "x"))[0], "MESSAGE_METHOD_UNKNOWN")


class Filters(DaemonTest):
    """get_all_where / get_all_records_where with every expression form Nova sends (nova.md §0)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        x, s = cls.x, cls.s
        cls.host = ok(x.host.get_all(s))[0]
        cls.dom0 = ok(x.host.get_control_domain(s, cls.host))
        cls.vm = create_vm(x, s, name_label="filter-vm")
        cls.tmpl = create_vm(x, s, name_label="filter-template", is_a_template=True)
        cls.sr = any_sr(x, s)
        cls.vdi = create_vdi(x, s, name_label="Glance Image 1234", SR=cls.sr)
        cls.vdi2 = create_vdi(x, s, name_label="Glance Image 5678", SR=cls.sr)
        cls.net = create_network(x, s, name_label="net-filter")
        cls.net2 = create_network(x, s, name_label="net-other")
        cls.vif = create_vif(x, s, cls.vm, cls.net)
        cls.vif2 = create_vif(x, s, cls.tmpl, cls.net2)
        cls.pbd_sr = new_sr(x, s)
        cls.pbd = create_pbd(x, s, cls.host, cls.pbd_sr, {"path": "/srv"})

    def where(self, cls, expr):
        refs = ok(getattr(self.x, cls).get_all_where(self.s, expr))
        recs = ok(getattr(self.x, cls).get_all_records_where(self.s, expr))
        self.assertEqual(sorted(refs), sorted(recs), "get_all_where and get_all_records_where agree")
        for r in recs.values():
            check_record(self, cls, r)
        return sorted(refs)

    def test_nova_list_vms(self):
        expr = ('field "is_control_domain"="false" and field "is_a_template"="false" and '
                'field "resident_on"="%s"' % self.host)
        # no VM runs here yet: none qualifies; without resident_on the halted VM does
        self.assertEqual(self.where("VM", expr), [])
        refs = self.where("VM", 'field "is_control_domain"="false" and field "is_a_template"="false"')
        self.assertIn(self.vm, refs)
        self.assertNotIn(self.tmpl, refs)
        self.assertNotIn(self.dom0, refs)

    def test_nova_dom0_lookup(self):
        self.assertEqual(self.where("VM", 'field "domid"="0" and field "resident_on"="%s"' % self.host), [self.dom0])
        self.assertEqual(self.where("VM", 'field "domid"="0"'), [self.dom0])
        halted = self.where("VM", 'field "domid"="-1"')
        self.assertIn(self.vm, halted)
        self.assertNotIn(self.dom0, halted)

    def test_name__label_and_ref_comparison(self):
        expr = 'field "name__label"="Glance Image 1234" and field "SR" = "%s"' % self.sr
        self.assertEqual(self.where("VDI", expr), [self.vdi])
        self.assertEqual(self.where("VDI", 'field "name__label"="Glance Image 1234" and field "SR" = "OpaqueRef:x"'), [])

    def test_pbd_and_vif_forms(self):
        self.assertEqual(self.where("PBD", 'field "host"="%s" and field "SR"="%s"' % (self.host, self.pbd_sr)),
                         [self.pbd])
        self.assertEqual(self.where("VIF", 'field "network" = "%s"' % self.net), [self.vif])

    def test_pif_forms_parse(self):
        host = self.host
        self.assertIsInstance(self.where("PIF", 'field "management" = "true" and field "host" = "%s"' % host), list)
        self.assertIsInstance(self.where("PIF", 'field "IP"="192.0.2.1"'), list)

    def test_or_and_spacing(self):
        expr = 'field "name_label"="Glance Image 1234" or field "name_label" = "Glance Image 5678"'
        self.assertEqual(self.where("VDI", expr), sorted([self.vdi, self.vdi2]))
        expr = 'field "name_label"  =  "filter-vm"   or   field "name_label"="filter-template"'
        self.assertEqual(self.where("VM", expr), sorted([self.vm, self.tmpl]))

    def test_booleans_compare_as_strings(self):
        self.assertEqual(self.where("VM", 'field "is_a_template"="true" and field "name_label"="filter-template"'),
                         [self.tmpl])
        self.assertEqual(self.where("VM", 'field "is_a_template"="True" and field "name_label"="filter-template"'),
                         [])

    def test_true_false_not(self):
        self.assertEqual(self.where("network", "true"), sorted(ok(self.x.network.get_all(self.s))))
        self.assertEqual(self.where("network", "false"), [])
        self.assertNotIn(self.net, self.where("network", 'not (field "name_label"="net-filter")'))

    def test_bad_expressions(self):
        for expr in ('field "no_such_field"="1"', 'field "name_label"=', 'field name_label="x"', '"a"="b" and',
                     '(field "name_label"="x"', 'field "name_label"="unterminated'):
            with self.subTest(expr=expr):
                self.assertEqual(fail(self.x.VM.get_all_where(self.s, expr))[0], "INVALID_VALUE")
                self.assertEqual(fail(self.x.VM.get_all_records_where(self.s, expr))[0], "INVALID_VALUE")


class Setters(DaemonTest):

    def setUp(self):
        self.vm = create_vm(self.x, self.s, name_label="setter-vm")

    def get(self, field):
        return ok(getattr(self.x.VM, "get_" + field)(self.s, self.vm))

    def test_set_string_and_int_and_bool(self):
        ok(self.x.VM.set_name_label(self.s, self.vm, "renamed"))
        self.assertEqual(self.get("name_label"), "renamed")
        ok(self.x.VM.set_user_version(self.s, self.vm, "42"))
        self.assertEqual(self.get("user_version"), "42")
        ok(self.x.VM.set_user_version(self.s, self.vm, 7))  # <int> accepted too
        self.assertEqual(self.get("user_version"), "7")
        ok(self.x.VM.set_is_a_template(self.s, self.vm, True))
        self.assertIs(self.get("is_a_template"), True)
        ok(self.x.VM.set_is_a_template(self.s, self.vm, False))
        self.assertIs(self.get("is_a_template"), False)

    def test_set_map(self):
        ok(self.x.VM.set_xenstore_data(self.s, self.vm, {"vm-data/a": "1", "vm-data/b": "2"}))
        self.assertEqual(self.get("xenstore_data"), {"vm-data/a": "1", "vm-data/b": "2"})
        ok(self.x.VM.set_xenstore_data(self.s, self.vm, {}))
        self.assertEqual(self.get("xenstore_data"), {})

    def test_map_add_to_and_remove_from(self):
        ok(self.x.VM.add_to_xenstore_data(self.s, self.vm, "k", "v"))
        ok(self.x.VM.add_to_xenstore_data(self.s, self.vm, "k2", "v2"))
        self.assertEqual(self.get("xenstore_data"), {"k": "v", "k2": "v2"})
        ok(self.x.VM.remove_from_xenstore_data(self.s, self.vm, "k"))
        self.assertEqual(self.get("xenstore_data"), {"k2": "v2"})
        ok(self.x.VM.remove_from_xenstore_data(self.s, self.vm, "absent"))  # no error, as xapi
        self.assertEqual(self.get("xenstore_data"), {"k2": "v2"})

    def test_map_duplicate_key(self):
        ok(self.x.VM.add_to_xenstore_data(self.s, self.vm, "dup", "1"))
        uuid = self.get("uuid")
        self.assertEqual(fail(self.x.VM.add_to_xenstore_data(self.s, self.vm, "dup", "2")),
                         ["MAP_DUPLICATE_KEY", "VM", "xenstore_data", uuid, "dup"])
        self.assertEqual(self.get("xenstore_data"), {"dup": "1"})  # unchanged

    def test_explicit_map_accessors(self):
        # VM.other_config and VM.blocked_operations are set through explicit messages (nova, cloudstack)
        ok(self.x.VM.set_other_config(self.s, self.vm, {"a": "1"}))
        ok(self.x.VM.add_to_other_config(self.s, self.vm, "last_dom_id", "5"))
        self.assertEqual(self.get("other_config"), {"a": "1", "last_dom_id": "5"})
        ok(self.x.VM.remove_from_other_config(self.s, self.vm, "a"))
        self.assertEqual(self.get("other_config"), {"last_dom_id": "5"})
        ok(self.x.VM.set_blocked_operations(self.s, self.vm, {"start": ""}))
        self.assertEqual(self.get("blocked_operations"), {"start": ""})
        ok(self.x.VM.remove_from_blocked_operations(self.s, self.vm, "start"))
        self.assertEqual(self.get("blocked_operations"), {})

    def test_enum_keyed_map_is_checked(self):
        # blocked_operations is (enum vm_operations -> string) map: keys are enum values
        ok(self.x.VM.add_to_blocked_operations(self.s, self.vm, "CLEAN_SHUTDOWN", "because"))
        self.assertEqual(self.get("blocked_operations"), {"clean_shutdown": "because"})
        self.assertEqual(fail(self.x.VM.add_to_blocked_operations(self.s, self.vm, "fly", "x"))[0], "INVALID_VALUE")

    def test_set_add_and_remove(self):
        net = create_network(self.x, self.s)
        ok(self.x.network.add_tags(self.s, net, "a"))
        ok(self.x.network.add_tags(self.s, net, "b"))
        ok(self.x.network.add_tags(self.s, net, "a"))  # a set: no duplicate
        self.assertEqual(ok(self.x.network.get_tags(self.s, net)), ["a", "b"])
        ok(self.x.network.remove_tags(self.s, net, "a"))
        ok(self.x.network.remove_tags(self.s, net, "zzz"))  # absent: no error
        self.assertEqual(ok(self.x.network.get_tags(self.s, net)), ["b"])

    def test_tags(self):
        ok(self.x.VM.add_tags(self.s, self.vm, "web"))
        ok(self.x.VM.add_tags(self.s, self.vm, "prod"))
        self.assertEqual(sorted(self.get("tags")), ["prod", "web"])
        ok(self.x.VM.remove_tags(self.s, self.vm, "web"))
        self.assertEqual(self.get("tags"), ["prod"])
        ok(self.x.VM.set_tags(self.s, self.vm, ["x", "y", "x"]))
        self.assertEqual(self.get("tags"), ["x", "y"])

    def test_enum_set_canonical(self):
        ok(self.x.VM.set_actions_after_crash(self.s, self.vm, "RESTART"))
        self.assertEqual(self.get("actions_after_crash"), "restart")
        ok(self.x.VM.set_actions_after_crash(self.s, self.vm, "Coredump_And_Destroy"))
        self.assertEqual(self.get("actions_after_crash"), "coredump_and_destroy")
        self.assertEqual(fail(self.x.VM.set_actions_after_crash(self.s, self.vm, "explode"))[0], "INVALID_VALUE")
        self.assertEqual(self.get("actions_after_crash"), "coredump_and_destroy")

    def test_ref_setter_checks_target(self):
        host = ok(self.x.host.get_all(self.s))[0]
        ok(self.x.VM.set_affinity(self.s, self.vm, host))
        self.assertEqual(self.get("affinity"), host)
        ok(self.x.VM.set_affinity(self.s, self.vm, NULL_REF))
        self.assertEqual(self.get("affinity"), NULL_REF)
        bogus = "OpaqueRef:00000000-0000-0000-0000-000000000001"
        self.assertEqual(fail(self.x.VM.set_affinity(self.s, self.vm, bogus)), ["HANDLE_INVALID", "host", bogus])
        self.assertEqual(fail(self.x.VM.set_affinity(self.s, self.vm, self.vm)), ["HANDLE_INVALID", "host", self.vm])

    def test_no_setters_for_read_only_fields(self):
        for name in ("set_uuid", "set_power_state", "set_domid", "set_VBDs", "set_resident_on", "add_VBDs",
                     "add_to_allowed_operations"):
            with self.subTest(name=name):
                r = getattr(self.x.VM, name)(self.s, self.vm, "x")
                self.assertEqual(fail(r)[0], "MESSAGE_METHOD_UNKNOWN")
        self.assertEqual(self.get("power_state"), "Halted")

    def test_set_on_other_classes(self):
        net = create_network(self.x, self.s, name_label="n1")
        ok(self.x.network.set_name_label(self.s, net, "n2"))
        ok(self.x.network.set_MTU(self.s, net, "9000"))
        self.assertEqual(ok(self.x.network.get_name_label(self.s, net)), "n2")
        self.assertEqual(ok(self.x.network.get_MTU(self.s, net)), "9000")
        pool = ok(self.x.pool.get_all(self.s))[0]
        ok(self.x.pool.set_name_label(self.s, pool, "my pool"))
        self.assertEqual(ok(self.x.pool.get_name_label(self.s, pool)), "my pool")


class CreateDestroy(DaemonTest):

    def test_vm_create_minimal_record_with_defaults(self):
        vm = create_vm(self.x, self.s)
        rec = ok(self.x.VM.get_record(self.s, vm))
        check_record(self, "VM", rec)
        self.assertEqual(rec["name_description"], "")
        self.assertEqual(rec["blocked_operations"], {})
        self.assertEqual(rec["ha_restart_priority"], "")
        self.assertEqual(rec["VBDs"], [])
        ok(self.x.VM.destroy(self.s, vm))

    def test_missing_required_field_fails_and_creates_nothing(self):
        before = ok(self.x.VM.get_all(self.s))
        rec = vm_record(name_label="incomplete")
        del rec["memory_static_max"]
        err = fail(self.x.VM.create(self.s, rec))
        self.assertIn("memory_static_max", err)
        self.assertEqual(ok(self.x.VM.get_all(self.s)), before)
        self.assertEqual(ok(self.x.VM.get_by_name_label(self.s, "incomplete")), [])

    def test_bad_field_fails_and_creates_nothing(self):
        before = ok(self.x.VM.get_all(self.s))
        self.assertEqual(fail(self.x.VM.create(self.s, vm_record(name_label="bad-enum", actions_after_crash="boom")))[0],
                         "INVALID_VALUE")
        self.assertEqual(fail(self.x.VM.create(self.s, vm_record(name_label="bad-int", VCPUs_max="many")))[0],
                         "INVALID_VALUE")
        self.assertEqual(fail(self.x.VM.create(self.s, vm_record(name_label="bad-type", platform=["x"])))[0],
                         "FIELD_TYPE_ERROR")
        bogus = "OpaqueRef:00000000-0000-0000-0000-000000000009"
        self.assertEqual(fail(self.x.VM.create(self.s, vm_record(name_label="bad-ref", affinity=bogus))),
                         ["HANDLE_INVALID", "host", bogus])
        self.assertEqual(ok(self.x.VM.get_all(self.s)), before)

    def test_create_and_destroy_each_class(self):
        x, s = self.x, self.s
        host = ok(x.host.get_all(s))[0]
        vm = create_vm(x, s)
        vdi = create_vdi(x, s)
        net = create_network(x, s)
        made = [
            ("VM", vm), ("VDI", vdi), ("network", net),
            ("VBD", create_vbd(x, s, vm, vdi)),
            ("VIF", create_vif(x, s, vm, net)),
            ("PBD", create_pbd(x, s, host)),
            ("console", ok(x.console.create(s, {"other_config": {}}))),
            ("secret", ok(x.secret.create(s, {"value": "s3cret", "other_config": {"a": "b"}}))),
        ]
        for cls, ref in made:
            with self.subTest(cls=cls):
                self.assertRegex(ref, REF_RE)
                self.assertIn(ref, ok(getattr(x, cls).get_all(s)))
                check_record(self, cls, ok(getattr(x, cls).get_record(s, ref)))
        self.assertEqual(ok(x.secret.get_value(s, made[-1][1])), "s3cret")
        # dependents first
        for cls, ref in reversed(made):
            with self.subTest(destroy=cls):
                self.assertEqual(ok(getattr(x, cls).destroy(s, ref)), "")
                self.assertNotIn(ref, ok(getattr(x, cls).get_all(s)))
                self.assertEqual(fail(getattr(x, cls).get_record(s, ref)), ["HANDLE_INVALID", cls, ref])
                self.assertEqual(fail(getattr(x, cls).destroy(s, ref)), ["HANDLE_INVALID", cls, ref])

    def test_no_create_where_the_datamodel_has_none(self):
        self.assertEqual(fail(self.x.host_metrics.create(self.s, {}))[0], "MESSAGE_METHOD_UNKNOWN")
        self.assertEqual(fail(self.x.pool.destroy(self.s, ok(self.x.pool.get_all(self.s))[0]))[0],
                         "MESSAGE_METHOD_UNKNOWN")

    def test_cloudstack_style_full_record(self):
        """CloudStack sends Record.toMap() of a template: every field, read-only ones, unknown ones and the
        enum placeholder "UNRECOGNIZED" (cloudstack.md §1)."""
        x, s = self.x, self.s
        template = create_vm(x, s, name_label="cs-template", is_a_template=True,
                             other_config={"install-methods": "cdrom"})
        rec = ok(x.VM.get_record(s, template))
        rec.update({
            "name_label": "i-2-17-VM", "is_a_template": False, "VCPUs_max": "2", "VCPUs_at_startup": "2",
            "uuid": "11111111-2222-3333-4444-555555555555",  # DynamicRO: ignored
            "domid": "77", "power_state": "Halted", "VBDs": [], "allowed_operations": ["start"],
            "on_boot": "UNRECOGNIZED", "actions_after_softreboot": "UNRECOGNIZED", "domain_type": "UNRECOGNIZED",
            "some_future_field": "whatever", "another_unknown": {"x": "y"},
        })
        vm = ok(x.VM.create(s, rec))
        got = ok(x.VM.get_record(s, vm))
        check_record(self, "VM", got)
        self.assertEqual(got["name_label"], "i-2-17-VM")
        self.assertEqual(got["VCPUs_max"], "2")
        self.assertIs(got["is_a_template"], False)
        self.assertEqual(got["other_config"], {"install-methods": "cdrom"})
        self.assertNotEqual(got["uuid"], "11111111-2222-3333-4444-555555555555")
        self.assertEqual(got["domid"], "-1")  # DynamicRO: not taken from the record
        self.assertEqual(got["VBDs"], [])
        self.assertNotEqual(vm, template)
        self.assertEqual(ok(x.VM.get_is_a_template(s, template)), True)


class CrossReferences(DaemonTest):

    def test_vbd_in_vm_and_vdi(self):
        x, s = self.x, self.s
        vm, vdi = create_vm(x, s), create_vdi(x, s)
        vbd = create_vbd(x, s, vm, vdi)
        self.assertEqual(ok(x.VM.get_VBDs(s, vm)), [vbd])
        self.assertEqual(ok(x.VDI.get_VBDs(s, vdi)), [vbd])
        self.assertEqual(ok(x.VM.get_record(s, vm))["VBDs"], [vbd])
        vbd2 = create_vbd(x, s, vm, vdi, userdevice="1")
        self.assertEqual(sorted(ok(x.VM.get_VBDs(s, vm))), sorted([vbd, vbd2]))
        ok(x.VBD.destroy(s, vbd))
        self.assertEqual(ok(x.VM.get_VBDs(s, vm)), [vbd2])
        self.assertEqual(ok(x.VDI.get_VBDs(s, vdi)), [vbd2])
        ok(x.VBD.destroy(s, vbd2))
        self.assertEqual(ok(x.VM.get_VBDs(s, vm)), [])
        self.assertEqual(ok(x.VDI.get_VBDs(s, vdi)), [])

    def test_empty_cd_vbd_has_no_vdi(self):
        x, s = self.x, self.s
        vm = create_vm(x, s)
        vbd = create_vbd(x, s, vm, NULL_REF, type="CD", mode="RO", empty=True, userdevice="3")
        self.assertEqual(ok(x.VM.get_VBDs(s, vm)), [vbd])
        self.assertEqual(ok(x.VBD.get_VDI(s, vbd)), NULL_REF)

    def test_vif_in_vm_and_network(self):
        x, s = self.x, self.s
        vm, net = create_vm(x, s), create_network(x, s)
        vif = create_vif(x, s, vm, net)
        self.assertEqual(ok(x.VM.get_VIFs(s, vm)), [vif])
        self.assertEqual(ok(x.network.get_VIFs(s, net)), [vif])
        self.assertEqual(ok(x.network.get_record(s, net))["VIFs"], [vif])
        ok(x.VIF.destroy(s, vif))
        self.assertEqual(ok(x.VM.get_VIFs(s, vm)), [])
        self.assertEqual(ok(x.network.get_VIFs(s, net)), [])

    def test_pbd_in_host(self):
        x, s = self.x, self.s
        host = ok(x.host.get_all(s))[0]
        sr = new_sr(x, s)
        pbd = create_pbd(x, s, host, sr)
        self.assertIn(pbd, ok(x.host.get_PBDs(s, host)))
        if sr != NULL_REF:
            self.assertEqual(ok(x.SR.get_PBDs(s, sr)), [pbd])
        ok(x.PBD.destroy(s, pbd))
        self.assertNotIn(pbd, ok(x.host.get_PBDs(s, host)))
        if sr != NULL_REF:
            self.assertEqual(ok(x.SR.get_PBDs(s, sr)), [])

    def test_host_cpus_and_resident_vms(self):
        x, s = self.x, self.s
        host = ok(x.host.get_all(s))[0]
        rec = ok(x.host.get_record(s, host))
        cpus = ok(x.host_cpu.get_all(s))
        self.assertEqual(sorted(rec["host_CPUs"]), sorted(cpus))
        for c in cpus:
            self.assertEqual(ok(x.host_cpu.get_host(s, c)), host)
        self.assertIn(rec["control_domain"], rec["resident_VMs"])
        self.assertEqual(ok(x.VM.get_resident_on(s, rec["control_domain"])), host)

    def test_back_references_follow_ref_changes(self):
        x, s = self.x, self.s
        host = ok(x.host.get_all(s))[0]
        vm = create_vm(x, s)
        ok(x.VM.set_affinity(s, vm, host))  # affinity has no back-reference; resident_on is read-only
        vm2, net = create_vm(x, s), create_network(x, s)
        vif = create_vif(x, s, vm, net)
        ok(x.VM.destroy(s, vm2))
        self.assertEqual(ok(x.network.get_VIFs(s, net)), [vif])
        ok(x.VIF.destroy(s, vif))
        ok(x.network.destroy(s, net))
        self.assertEqual(fail(x.network.get_VIFs(s, net)), ["HANDLE_INVALID", "network", net])


if __name__ == "__main__":
    unittest.main()
