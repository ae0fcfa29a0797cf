/* Unit tests: role names and lists, and the roles gen_schema.py puts in the
 * tables (messages, implicit writers, protected map keys) from classes.json
 * and roles.json. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "xapi/rbac.h"
#include "xapi/schema.h"

static void test_role_names(void **state) {
    (void)state;
    assert_int_equal(xapi_role_parse("pool-admin"), XAPI_ROLE_POOL_ADMIN);
    assert_int_equal(xapi_role_parse("VM-Operator"), XAPI_ROLE_VM_OPERATOR);
    assert_int_equal(xapi_role_parse("read-only"), XAPI_ROLE_READ_ONLY);
    assert_int_equal(xapi_role_parse("root"), -1);
    assert_int_equal(xapi_role_parse(""), -1);
    assert_string_equal(xapi_role_name(XAPI_ROLE_VM_POWER_ADMIN), "vm-power-admin");
    assert_null(xapi_role_name(XAPI_ROLE_LOCAL_ROOT));
    /* xapi's order: pool-admin > pool-operator > vm-power-admin > vm-admin > vm-operator > read-only */
    assert_true(XAPI_ROLE_POOL_ADMIN > XAPI_ROLE_POOL_OPERATOR && XAPI_ROLE_POOL_OPERATOR > XAPI_ROLE_VM_POWER_ADMIN &&
                XAPI_ROLE_VM_POWER_ADMIN > XAPI_ROLE_VM_ADMIN && XAPI_ROLE_VM_ADMIN > XAPI_ROLE_VM_OPERATOR &&
                XAPI_ROLE_VM_OPERATOR > XAPI_ROLE_READ_ONLY);
}

static void test_role_lists(void **state) {
    unsigned mask = 99;

    (void)state;
    assert_int_equal(xapi_roles_parse("", &mask), 0);
    assert_int_equal(mask, 0);
    assert_int_equal(xapi_roles_highest(mask), -1);
    assert_int_equal(xapi_roles_parse("vm-admin,read-only", &mask), 0);
    assert_int_equal(mask, (1u << XAPI_ROLE_VM_ADMIN) | (1u << XAPI_ROLE_READ_ONLY));
    assert_int_equal(xapi_roles_highest(mask), XAPI_ROLE_VM_ADMIN);
    assert_int_equal(xapi_roles_parse(" pool-operator , vm-operator,,", &mask), 0);
    assert_int_equal(mask, (1u << XAPI_ROLE_POOL_OPERATOR) | (1u << XAPI_ROLE_VM_OPERATOR));
    mask = 7;
    assert_int_equal(xapi_roles_parse("vm-admin,superuser", &mask), -EINVAL);
    assert_int_equal(mask, 7);
    assert_int_equal(xapi_roles_parse("a-role-name-longer-than-any-real-one-by-far", &mask), -EINVAL);
}

static const xapi_message *message(const char *cls, const char *name) {
    const xapi_class *c = xapi_class_by_name(cls);

    assert_non_null(c);
    return xapi_message_find(c, name);
}

static void test_message_roles(void **state) {
    (void)state;
    assert_int_equal(message("VM", "start")->role, XAPI_ROLE_VM_OPERATOR);
    assert_int_equal(message("VM", "set_memory")->role, XAPI_ROLE_VM_POWER_ADMIN);
    assert_int_equal(message("SR", "create")->role, XAPI_ROLE_POOL_OPERATOR);
    assert_int_equal(message("subject", "add_to_roles")->role, XAPI_ROLE_POOL_ADMIN);
    assert_int_equal(message("role", "get_permissions")->role, XAPI_ROLE_READ_ONLY);
    /* No role in xapi (_R_LOCAL_ROOT_ONLY): the local superuser's. */
    assert_int_equal(message("session", "change_password")->role, XAPI_ROLE_LOCAL_ROOT);
    assert_string_equal(message("session", "change_password")->min_role, "");
}

static void test_implicit_roles(void **state) {
    const xapi_class *vm = xapi_class_by_name("VM"), *sr = xapi_class_by_name("SR");
    const xapi_class *session = xapi_class_by_name("session");

    (void)state;
    assert_int_equal(xapi_implicit_role(vm, "get_name_label", false), XAPI_ROLE_READ_ONLY);
    assert_int_equal(xapi_implicit_role(vm, "set_name_label", true), XAPI_ROLE_VM_ADMIN);
    assert_int_equal(xapi_implicit_role(vm, "create", true), XAPI_ROLE_VM_ADMIN);
    assert_int_equal(xapi_implicit_role(vm, "set_tags", true), XAPI_ROLE_VM_OPERATOR);
    assert_int_equal(xapi_implicit_role(vm, "set_affinity", true), XAPI_ROLE_VM_POWER_ADMIN);
    assert_int_equal(xapi_implicit_role(sr, "set_name_label", true), XAPI_ROLE_POOL_OPERATOR);
    assert_int_equal(xapi_implicit_role(session, "set_other_config", true), XAPI_ROLE_POOL_ADMIN);
}

static void test_protected_keys(void **state) {
    const xapi_class *vm = xapi_class_by_name("VM"), *task = xapi_class_by_name("task");
    const xapi_field *oc = &vm->fields[XAPI_F_VM_other_config], *platform = &vm->fields[XAPI_F_VM_platform];
    const xapi_key_role *k;

    (void)state;
    k = xapi_field_key_role(oc, "folder");
    assert_non_null(k);
    assert_int_equal(k->role, XAPI_ROLE_VM_OPERATOR);
    k = xapi_field_key_role(oc, "XenCenter.CustomFields.owner");
    assert_non_null(k);
    assert_string_equal(k->key, "XenCenter.CustomFields.*");
    assert_int_equal(k->role, XAPI_ROLE_VM_OPERATOR);
    assert_int_equal(xapi_field_key_role(oc, "pci")->role, XAPI_ROLE_POOL_ADMIN);
    assert_null(xapi_field_key_role(oc, "folderX"));
    assert_null(xapi_field_key_role(oc, "XenCenter.CustomField"));
    assert_int_equal(xapi_field_key_role(platform, "hvm_serial")->role, XAPI_ROLE_POOL_ADMIN);
    assert_null(xapi_field_key_role(&vm->fields[XAPI_F_VM_name_label], "folder"));
    assert_int_equal(xapi_field_key_role(&task->fields[XAPI_F_task_other_config], "applies_to")->role,
                     XAPI_ROLE_VM_OPERATOR);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_role_names),
        cmocka_unit_test(test_role_lists),
        cmocka_unit_test(test_message_roles),
        cmocka_unit_test(test_implicit_roles),
        cmocka_unit_test(test_protected_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
