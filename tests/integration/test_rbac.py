"""Roles (RBAC), as xapi's: every message and field write is checked against
the schema's role before it runs, over XML-RPC, JSON-RPC, Async and
system.multicall; the static role objects with xapi's identities; accounts
with roles (made with xenapid-account), their subjects and session fields."""

import hashlib
import os
import subprocess
import time
import unittest
import xmlrpc.client

from harness import BUILD, NULL_REF, PASSWORD, REF_RE, DaemonTest, check_record, create_vm, fail, ok

ROLES = ["pool-admin", "pool-operator", "vm-power-admin", "vm-admin", "vm-operator", "read-only"]
POOL_ADMIN_REF = "OpaqueRef:0165f154-ba3e-034e-6b27-5d271af109ba"
ACCOUNT_TOOL = os.path.join(BUILD, "xenapid-account")


def hash_uuid(s):
    h = hashlib.md5(s.encode()).hexdigest()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def denied_message(need):
    allowed = ROLES[:ROLES.index(need) + 1] if need else []
    return "No permission in user session. (Roles with this permission: %s)" % ", ".join(allowed)


class Rbac(DaemonTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for user, roles in [("reader", "read-only"), ("operator", "vm-operator"), ("admin", "pool-admin"),
                            ("vmadmin", "vm-admin"), ("nobody", ""), ("legacy", "read-only")]:
            cls.account("add", user, roles, password=user + "-pw")
        # An account from before roles existed: no third field.
        with open(cls.d.accounts) as f:
            text = f.read()
        with open(cls.d.accounts, "w") as f:
            f.write("".join(l.rsplit(":", 1)[0] + "\n" if l.startswith("legacy:") else l + "\n"
                            for l in text.splitlines()))
        cls.users = {}
        for user in ["reader", "operator", "admin", "vmadmin"]:
            cls.users[user] = ok(cls.x.session.login_with_password(user, user + "-pw", "1.0", "tests"))
        cls.vm = create_vm(cls.x, cls.s)

    @classmethod
    def account(cls, *args, password=None, check=True):
        r = subprocess.run([ACCOUNT_TOOL, "--config", cls.d.config] + list(args), capture_output=True, text=True,
                           input=(password + "\n") if password else "")
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def assert_denied(self, r, permission, need):
        self.assertEqual(fail(r), ["RBAC_PERMISSION_DENIED", permission, denied_message(need)])

    # ---- reads and writes by role -------------------------------------------------

    def test_read_only_reads(self):
        s = self.users["reader"]
        self.assertIn(self.vm, ok(self.x.VM.get_all(s)))
        ok(self.x.VM.get_record(s, self.vm))
        ok(self.x.VM.get_name_label(s, self.vm))
        ok(self.x.host.get_all_records(s))
        ok(self.x.SR.get_all(s))

    def test_read_only_cannot_write(self):
        s = self.users["reader"]
        self.assert_denied(self.x.VM.start(s, self.vm, False, False), "vm.start", "vm-operator")
        self.assert_denied(self.x.VM.set_name_label(s, self.vm, "x"), "vm.set_name_label", "vm-admin")
        self.assert_denied(self.x.VM.create(s, {"name_label": "x"}), "vm.create", "vm-admin")
        self.assert_denied(self.x.VM.destroy(s, self.vm), "vm.destroy", "vm-admin")
        self.assertEqual(ok(self.x.VM.get_power_state(self.s, self.vm)), "Halted")
        self.assertNotEqual(ok(self.x.VM.get_name_label(self.s, self.vm)), "x")

    def test_class_alias_is_checked_too(self):
        self.assert_denied(self.x.VM_start(self.users["reader"], self.vm, False, False), "vm.start", "vm-operator")

    def test_vm_operator_starts_and_stops_but_cannot_create_srs(self):
        s = self.users["operator"]
        vm = create_vm(self.x, self.s, name_label="op-vm")
        ok(self.x.VM.start(s, vm, False, False))
        self.assertEqual(ok(self.x.VM.get_power_state(s, vm)), "Running")
        ok(self.x.VM.hard_shutdown(s, vm))
        self.assertEqual(ok(self.x.VM.get_power_state(s, vm)), "Halted")
        host = ok(self.x.host.get_all(s))[0]
        self.assert_denied(self.x.SR.create(s, host, {"path": "/tmp/nope"}, "0", "sr", "", "file", "user", False, {}),
                           "sr.create", "pool-operator")
        self.assert_denied(self.x.VM.create(s, {"name_label": "x"}), "vm.create", "vm-admin")
        self.assert_denied(self.x.VM.set_memory(s, vm, "268435456"), "vm.set_memory", "vm-power-admin")

    def test_pool_admin_can_do_everything_a_role_can(self):
        s = self.users["admin"]
        vm = create_vm(self.x, s, name_label="admin-vm")
        ok(self.x.VM.set_name_label(s, vm, "renamed"))
        ok(self.x.VM.start(s, vm, False, False))
        ok(self.x.VM.hard_shutdown(s, vm))
        ok(self.x.VM.destroy(s, vm))

    def test_arguments_are_checked_before_roles(self):
        r = self.x.VM.start(self.users["reader"], self.vm)
        self.assertEqual(fail(r)[0], "MESSAGE_PARAMETER_COUNT_MISMATCH")

    def test_protected_map_key(self):
        # VM.add_to_other_config needs vm-admin, but its "folder" key is the vm-operator's (xapi's map_keys_roles).
        s = self.users["operator"]
        self.assert_denied(self.x.VM.add_to_other_config(s, self.vm, "mine", "1"), "vm.add_to_other_config",
                           "vm-admin")
        ok(self.x.VM.add_to_other_config(s, self.vm, "folder", "/a"))
        ok(self.x.VM.remove_from_other_config(s, self.vm, "folder"))
        ok(self.x.VM.add_to_other_config(s, self.vm, "XenCenter.CustomFields.color", "red"))
        self.assert_denied(self.x.VM.add_to_other_config(self.users["vmadmin"], self.vm, "pci", "0/0000:00:01.0"),
                           "vm.add_to_other_config/key:pci", "pool-admin")

    def test_local_root_only_messages(self):
        # session.change_password has no role in xapi: only the local superuser may call it.
        self.assert_denied(self.x.session.change_password(self.users["admin"], "admin-pw", "new-pw"),
                           "session.change_password", None)

    # ---- Async, multicall, JSON-RPC -------------------------------------------------

    def test_async_is_checked_at_submission(self):
        before = len(ok(self.x.task.get_all(self.s)))
        self.assert_denied(self.x.Async.VM.start(self.users["reader"], self.vm, False, False), "vm.start",
                           "vm-operator")
        self.assertEqual(len(ok(self.x.task.get_all(self.s))), before, "no task was created")
        task = ok(self.x.Async.VM.provision(self.users["vmadmin"], self.vm))
        self.assertRegex(task, REF_RE)

    def test_multicall(self):
        m = xmlrpc.client.MultiCall(self.x)
        m.VM.get_name_label(self.users["reader"], self.vm)
        m.VM.set_name_label(self.users["reader"], self.vm, "x")
        got = list(m())
        ok(got[0])
        self.assert_denied(got[1], "vm.set_name_label", "vm-admin")

    def test_jsonrpc(self):
        r = self.d.jsonrpc("VM.start", [self.users["reader"], self.vm, False, False])
        self.assertEqual(r["error"], {"code": 1, "message": "RBAC_PERMISSION_DENIED",
                                      "data": ["vm.start", denied_message("vm-operator")]})
        r = self.d.jsonrpc("VM.start", [self.users["reader"], self.vm, False, False], version=1)
        self.assertEqual(r["error"], ["RBAC_PERMISSION_DENIED", "vm.start", denied_message("vm-operator")])
        self.assertEqual(self.d.jsonrpc("VM.get_power_state", [self.users["reader"], self.vm])["result"], "Halted")
        r = self.d.jsonrpc("Async.VM.start", [self.users["reader"], self.vm, False, False])
        self.assertEqual(r["error"]["data"], ["vm.start", denied_message("vm-operator")])

    # ---- HTTP handlers (xapi's http/<action> permissions) ------------------------------

    def test_http_handlers_check_roles(self):
        import base64
        from harness import create_vdi
        vdi = create_vdi(self.x, self.s, virtual_size=str(2 << 20))  # a whole VHD block on the local ext SR
        data = b"\x01" * (2 << 20)

        def basic(user):
            return {"Authorization": "Basic " + base64.b64encode(("%s:%s-pw" % (user, user)).encode()).decode()}

        status, _, body = self.d.http("PUT", "/import_raw_vdi?vdi=" + vdi, data, basic("reader"))
        self.assertEqual(status, 403)
        self.assertIn(b"RBAC_PERMISSION_DENIED http/put_import_raw_vdi", body)
        status, _, _ = self.d.http("GET", "/export_raw_vdi?vdi=%s&session_id=%s" % (vdi, self.users["operator"]))
        self.assertEqual(status, 403)
        self.assertEqual(self.d.http("PUT", "/import_raw_vdi?vdi=" + vdi, data, basic("vmadmin"))[0], 200)
        status, _, body = self.d.http("GET", "/export_raw_vdi?vdi=%s&session_id=%s" % (vdi, self.users["vmadmin"]))
        self.assertEqual((status, body), (200, data))
        # The console is the vm-operator's.
        path = "/console?ref=OpaqueRef:00000000-0000-0000-0000-000000000000&session_id="
        self.assertEqual(self.d.http("GET", path + self.users["reader"])[0], 403)
        self.assertNotIn(self.d.http("GET", path + self.users["operator"])[0], (401, 403))

    # ---- the role class -------------------------------------------------------------

    def test_roles_exist_with_xapis_identities(self):
        s = self.users["reader"]
        refs = ok(self.x.role.get_all(s))
        for name in ROLES:
            got = ok(self.x.role.get_by_name_label(s, name))
            self.assertEqual(len(got), 1, name)
            uuid = "0165f154-ba3e-034e-6b27-5d271af109ba" if name == "pool-admin" else hash_uuid(name)
            self.assertEqual(got[0], "OpaqueRef:" + uuid)
            self.assertIn(got[0], refs)
            rec = ok(self.x.role.get_record(s, got[0]))
            check_record(self, "role", rec)
            self.assertEqual(rec["name_label"], name)
            self.assertEqual(rec["uuid"], uuid)
            self.assertIs(rec["is_internal"], False)
            self.assertEqual(ok(self.x.role.get_by_uuid(s, uuid)), got[0])
        self.assertEqual(ok(self.x.role.get_by_name_label(s, "pool-admin")), [POOL_ADMIN_REF])
        self.assertEqual(ok(self.x.role.get_by_name_label(s, "no-such-role")), [])

    def test_permissions(self):
        s = self.users["reader"]
        start = ok(self.x.role.get_by_name_label(s, "vm.start"))
        self.assertEqual(start, ["OpaqueRef:" + hash_uuid("VM.start")])
        rec = ok(self.x.role.get_record(s, start[0]))
        self.assertEqual((rec["subroles"], rec["is_internal"]), ([], True))
        holders = ok(self.x.role.get_by_permission(s, start[0]))
        names = [ok(self.x.role.get_name_label(s, r)) for r in holders]
        self.assertEqual(names, ROLES[:5])
        self.assertEqual(ok(self.x.role.get_by_permission_name_label(s, "sr.create")),
                         [ok(self.x.role.get_by_name_label(s, r))[0] for r in ROLES[:2]])
        op = ok(self.x.role.get_by_name_label(s, "vm-operator"))[0]
        labels = ok(self.x.role.get_permissions_name_label(s, op))
        self.assertIn("vm.start", labels)
        self.assertIn("vm.get_record", labels)
        self.assertIn("vm.add_to_other_config/key:folder", labels)
        self.assertNotIn("vm.create", labels)
        self.assertNotIn("sr.create", labels)
        self.assertIn(start[0], ok(self.x.role.get_permissions(s, op)))
        self.assertEqual(ok(self.x.role.get_permissions(s, start[0])), start)
        only_roles = ok(self.x.role.get_all_where(s, "subroles<>[]"))
        self.assertEqual(sorted(only_roles), sorted(ok(self.x.role.get_by_name_label(s, r))[0] for r in ROLES))
        self.assertEqual(fail(self.x.role.get_record(s, NULL_REF))[0], "HANDLE_INVALID")

    # ---- sessions and subjects --------------------------------------------------------

    def test_session_carries_subject_and_permissions(self):
        s = self.users["operator"]
        rec = ok(self.x.session.get_record(s, s))
        self.assertIs(rec["is_local_superuser"], False)
        self.assertEqual(rec["auth_user_sid"], "local:operator")
        self.assertEqual(ok(self.x.session.get_auth_user_sid(s, s)), "local:operator")
        perms = ok(self.x.session.get_rbac_permissions(s, s))
        self.assertIn("vm-operator", perms)
        self.assertIn("vm.start", perms)
        self.assertNotIn("vm.create", perms)
        subject = ok(self.x.session.get_subject(s, s))
        srec = ok(self.x.subject.get_record(s, subject))
        check_record(self, "subject", srec)
        self.assertEqual(srec["subject_identifier"], "local:operator")
        self.assertEqual(srec["roles"], [ok(self.x.role.get_by_name_label(s, "vm-operator"))[0]])
        self.assertIn("vm.start", ok(self.x.subject.get_permissions_name_label(s, subject)))
        root = ok(self.x.session.get_record(self.s, self.s))
        self.assertIs(root["is_local_superuser"], True)
        self.assertEqual((root["subject"], root["rbac_permissions"]), (NULL_REF, []))
        self.assertIn("local:operator", ok(self.x.session.get_all_subject_identifiers(self.s)))

    def test_account_without_roles_cannot_log_in(self):
        r = self.x.session.login_with_password("nobody", "nobody-pw", "1.0", "tests")
        self.assertEqual(fail(r), ["RBAC_PERMISSION_DENIED", "nobody",
                                   "Subject nobody (identifier local:nobody) has no roles in this pool"])

    def test_legacy_account_keeps_pool_admin(self):
        with open(self.d.accounts) as f:
            line = [l for l in f.read().splitlines() if l.startswith("legacy:")]
        self.assertEqual(line[0].count(":"), 1, "the legacy line has no roles field")
        s = ok(self.x.session.login_with_password("legacy", "legacy-pw"))
        self.assertIs(ok(self.x.session.get_is_local_superuser(s, s)), False)
        vm = create_vm(self.x, s, name_label="legacy-vm")
        ok(self.x.VM.destroy(s, vm))

    def test_role_change_in_the_file_applies_at_next_login(self):
        self.account("add", "changer", "read-only", password="changer-pw")
        s = ok(self.x.session.login_with_password("changer", "changer-pw"))
        self.assert_denied(self.x.VM.start(s, self.vm, False, False), "vm.start", "vm-operator")
        self.account("roles", "changer", "vm-admin, read-only")
        s = ok(self.x.session.login_with_password("changer", "changer-pw"))
        ok(self.x.VM.set_name_label(s, self.vm, "by-changer"))
        with open(self.d.accounts) as f:
            self.assertIn(":vm-admin, read-only", f.read())

    def role_ref(self, name):
        return ok(self.x.role.get_by_name_label(self.s, name))[0]

    def login_subject(self, user, roles):
        self.account("add", user, roles, password=user + "-pw")
        s = ok(self.x.session.login_with_password(user, user + "-pw"))
        return s, ok(self.x.session.get_subject(s, s))

    def test_subject_add_and_remove_roles(self):
        s, subject = self.login_subject("promoted", "read-only")
        self.assert_denied(self.x.subject.add_to_roles(s, subject, self.role_ref("pool-admin")),
                           "subject.add_to_roles", "pool-admin")
        ok(self.x.subject.add_to_roles(self.s, subject, self.role_ref("vm-operator")))
        self.assertEqual(fail(self.x.subject.add_to_roles(self.s, subject, self.role_ref("vm-operator"))),
                         ["ROLE_ALREADY_EXISTS"])
        self.assertEqual(fail(self.x.subject.add_to_roles(self.s, subject, NULL_REF)), ["ROLE_NOT_FOUND"])
        self.assertEqual(sorted(ok(self.x.subject.get_roles(self.s, subject))),
                         sorted([self.role_ref("read-only"), self.role_ref("vm-operator")]))
        # The session's rights follow its subject at once; the file keeps them for the next login.
        ok(self.x.VM.start(s, self.vm, True, False))
        ok(self.x.VM.hard_shutdown(s, self.vm))
        with open(self.d.accounts) as f:
            self.assertIn(":vm-operator,read-only", [l[l.rindex(":"):] for l in f.read().splitlines()
                                                     if l.startswith("promoted:")][0])
        ok(self.x.subject.remove_from_roles(self.s, subject, self.role_ref("vm-operator")))
        self.assertEqual(fail(self.x.subject.remove_from_roles(self.s, subject, self.role_ref("vm-operator"))),
                         ["ROLE_NOT_FOUND"])
        self.assert_denied(self.x.VM.start(s, self.vm, True, False), "vm.start", "vm-operator")
        s2 = ok(self.x.session.login_with_password("promoted", "promoted-pw"))
        self.assertEqual(ok(self.x.session.get_subject(s2, s2)), subject, "one subject per account")

    def test_logout_subject_identifier(self):
        s, subject = self.login_subject("leaver", "vm-operator")
        s2 = ok(self.x.session.login_with_password("leaver", "leaver-pw"))
        self.assert_denied(self.x.session.logout_subject_identifier(s, "local:leaver"),
                           "session.logout_subject_identifier", "pool-operator")
        ok(self.x.session.logout_subject_identifier(self.s, "local:leaver"))
        for x in (s, s2):
            self.assertEqual(fail(self.x.VM.get_all(x))[0], "SESSION_INVALID")
        ok(self.x.VM.get_all(self.s))
        self.assertNotIn("local:leaver", ok(self.x.session.get_all_subject_identifiers(self.s)))

    def test_subject_destroy_ends_its_sessions(self):
        s, subject = self.login_subject("removed", "read-only")
        ok(self.x.subject.destroy(self.s, subject))
        self.assertEqual(fail(self.x.VM.get_all(s))[0], "SESSION_INVALID")
        created = ok(self.x.subject.create(self.s, {"subject_identifier": "pam:someone", "other_config": {}}))
        self.assertEqual(ok(self.x.subject.get_roles(self.s, created)), [POOL_ADMIN_REF], "xapi's default role")
        self.assertEqual(fail(self.x.subject.create(self.s, {"subject_identifier": "pam:someone"})),
                         ["SUBJECT_ALREADY_EXISTS"])
        ok(self.x.subject.destroy(self.s, created))

    def test_account_tool_changes_passwords(self):
        self.account("add", "pwuser", "read-only", password="first-pw")
        self.account("passwd", "pwuser", password="second-pw")
        self.assertEqual(fail(self.x.session.login_with_password("pwuser", "first-pw"))[0],
                         "SESSION_AUTHENTICATION_FAILED")
        s = ok(self.x.session.login_with_password("pwuser", "second-pw"))
        self.assertIn("read-only", ok(self.x.session.get_rbac_permissions(s, s)), "the roles stay")

    def test_account_tool_rejects_bad_input(self):
        self.assertNotEqual(self.account("add", "x", "superuser", password="pw", check=False).returncode, 0)
        self.assertNotEqual(self.account("roles", "no-such-user", "read-only", check=False).returncode, 0)
        self.assertNotEqual(self.account("add", "x", "read-only", check=False).returncode, 0, "no password")


class AccountSubjects(unittest.TestCase):
    """Every account of the file has its subject from the start; one removed from the file loses it."""

    def test_subjects_follow_the_file_at_start(self):
        from harness import Daemon
        d = Daemon().start()
        self.addCleanup(d.cleanup)
        tool = [ACCOUNT_TOOL, "--config", d.config]
        subprocess.run(tool + ["add", "early", "vm-operator"], input="early-pw\n", text=True, check=True)
        subprocess.run(tool + ["add", "gone", "read-only"], input="gone-pw\n", text=True, check=True)
        d.restart()
        x, s = d.login()
        self.addCleanup(x("close"))
        by_sid = {r["subject_identifier"]: (ref, r) for ref, r in ok(x.subject.get_all_records(s)).items()}
        self.assertEqual(sorted(by_sid), ["local:early", "local:gone"], "no subject for root")
        op = ok(x.role.get_by_name_label(s, "vm-operator"))
        self.assertEqual(by_sid["local:early"][1]["roles"], op)
        self.assertEqual(by_sid["local:early"][1]["other_config"]["subject-name"], "early")
        gone = ok(x.session.login_with_password("gone", "gone-pw"))
        with open(d.accounts) as f:
            lines = [l for l in f if not l.startswith("gone:")]
        with open(d.accounts, "w") as f:
            f.writelines(lines)
        d.restart()
        x, s = d.login()
        self.addCleanup(x("close"))
        sids = [r["subject_identifier"] for r in ok(x.subject.get_all_records(s)).values()]
        self.assertEqual(sids, ["local:early"])
        self.assertEqual(fail(x.VM.get_all(gone))[0], "SESSION_INVALID", "its sessions went with it")


PAM_DIR = "/etc/pam.d"


def pam_service(name, module):
    """A PAM service file whose auth and account stacks are one module (pam_permit, pam_deny)."""
    path = os.path.join(PAM_DIR, name)
    with open(path, "w") as f:
        f.write("auth required %s.so\naccount required %s.so\n" % (module, module))
    return path


@unittest.skipUnless(os.access(PAM_DIR, os.W_OK), "needs to write a service file in /etc/pam.d")
class Pam(unittest.TestCase):
    """Host users through PAM (pam_service), with service files the test writes: pam_permit
    says yes to any password, pam_deny no."""

    def start(self, module, extra=""):
        from harness import Daemon
        name = "xenapid-test-%d-%s" % (os.getpid(), module)
        self.addCleanup(os.unlink, pam_service(name, module))
        d = Daemon(extra_config="pam_service = %s\n%s" % (name, extra)).start()
        self.addCleanup(d.cleanup)
        x = d.proxy()
        self.addCleanup(x("close"))
        return d, x

    def test_permitted_host_user_gets_the_default_role(self):
        d, x = self.start("pam_permit")
        s = ok(x.session.login_with_password("hostuser", "any", "1.0", "t"))
        self.assertEqual(ok(x.session.get_auth_user_sid(s, s)), "pam:hostuser")
        self.assertIn("read-only", ok(x.session.get_rbac_permissions(s, s)))
        self.assertEqual(fail(x.VM.create(s, {}))[:2], ["RBAC_PERMISSION_DENIED", "vm.create"])
        # The accounts file still comes first: root's password is checked there, not by PAM.
        self.assertEqual(fail(x.session.login_with_password("root", "wrong"))[0], "SESSION_AUTHENTICATION_FAILED")
        ok(x.session.login_with_password("root", PASSWORD))

    def test_host_user_subject_keeps_its_roles(self):
        d, x = self.start("pam_permit")
        _, root = d.login(x)
        s = ok(x.session.login_with_password("hostuser", "any"))
        subject = ok(x.session.get_subject(s, s))
        vm_admin = ok(x.role.get_by_name_label(root, "vm-admin"))[0]
        ok(x.subject.add_to_roles(root, subject, vm_admin))
        s = ok(x.session.login_with_password("hostuser", "any"))
        self.assertEqual(ok(x.session.get_subject(s, s)), subject)
        self.assertIn("vm-admin", ok(x.session.get_rbac_permissions(s, s)))
        ok(x.VM.destroy(s, create_vm(x, s)))

    def test_default_role_is_configurable(self):
        d, x = self.start("pam_permit", "pam_default_role = vm-admin\n")
        s = ok(x.session.login_with_password("hostuser", "any"))
        vm = create_vm(x, s)
        ok(x.VM.destroy(s, vm))

    def test_denied_host_user(self):
        d, x = self.start("pam_deny")
        self.assertEqual(fail(x.session.login_with_password("hostuser", "any"))[0], "SESSION_AUTHENTICATION_FAILED")

    def test_off_by_default(self):
        from harness import Daemon
        d = Daemon().start()
        self.addCleanup(d.cleanup)
        x = d.proxy()
        self.addCleanup(x("close"))
        self.assertEqual(fail(x.session.login_with_password("hostuser", "any"))[0], "SESSION_AUTHENTICATION_FAILED")


if __name__ == "__main__":
    unittest.main()
