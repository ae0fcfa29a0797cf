/* Unit tests: the object store's write abort takes back every kind of change
 * (fields, created and destroyed objects, back-reference sets, list order),
 * consumes no generation, and leaves a store that writes and reloads right. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "xapi/store.h"

static const xapi_class *vm_cls = &xapi_classes[XAPI_C_VM];
static const xapi_class *vbd_cls = &xapi_classes[XAPI_C_VBD];

typedef struct fixture {
    char dir[64];
    xapi_store *st;
    char vm[XAPI_REF_LEN + 1], vbd1[XAPI_REF_LEN + 1], vbd2[XAPI_REF_LEN + 1];
} fixture;

/* The order of the class list, of the generation list and of VM.VBDs, as text. */
static void shape(xapi_store *st, const fixture *f, char *out, size_t len) {
    xapi_obj *vm = xapi_store_get_class(st, vm_cls, f->vm);
    size_t n = 0;

    n += (size_t)snprintf(out + n, len - n, "vbds:");
    for (xapi_obj *o = xapi_store_first(st, vbd_cls); o; o = xapi_store_next(o))
        n += (size_t)snprintf(out + n, len - n, "%s,", o->ref);
    n += (size_t)snprintf(out + n, len - n, " changed:");
    for (xapi_obj *o = xapi_store_changed_first(st); o; o = xapi_store_changed_next(o))
        n += (size_t)snprintf(out + n, len - n, "%s@%llu,", o->ref, (unsigned long long)o->gen);
    n += (size_t)snprintf(out + n, len - n, " VM.VBDs:");
    for (uint32_t i = 0; vm && i < vm->fields[XAPI_F_VM_VBDs].n; i++)
        n += (size_t)snprintf(out + n, len - n, "%s,", vm->fields[XAPI_F_VM_VBDs].items[i].s);
    snprintf(out + n, len - n, " name:%s", vm ? vm->fields[XAPI_F_VM_name_label].s : "-");
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    xapi_obj *vm, *b;

    snprintf(f->dir, sizeof f->dir, "/tmp/xenapid-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(xapi_store_open(f->dir, &f->st), 0);
    xapi_store_write_begin(f->st);
    vm = xapi_obj_create(f->st, vm_cls);
    xapi_obj_set_string(f->st, vm, XAPI_F_VM_name_label, "kept");
    snprintf(f->vm, sizeof f->vm, "%s", vm->ref);
    b = xapi_obj_create(f->st, vbd_cls);
    xapi_obj_set_string(f->st, b, XAPI_F_VBD_VM, vm->ref);
    snprintf(f->vbd1, sizeof f->vbd1, "%s", b->ref);
    b = xapi_obj_create(f->st, vbd_cls);
    xapi_obj_set_string(f->st, b, XAPI_F_VBD_VM, vm->ref);
    snprintf(f->vbd2, sizeof f->vbd2, "%s", b->ref);
    assert_int_equal(xapi_store_write_end_durable(f->st), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    char cmd[128];

    xapi_store_close(f->st);
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void test_abort_takes_everything_back(void **state) {
    fixture *f = *state;
    char before[4096], after[4096];
    uint64_t gen = xapi_store_durable_gen(f->st);
    xapi_obj *vm, *b;

    shape(f->st, f, before, sizeof before);
    xapi_store_write_begin(f->st);
    vm = xapi_store_get_class(f->st, vm_cls, f->vm);
    xapi_obj_set_string(f->st, vm, XAPI_F_VM_name_label, "changed");
    xapi_obj_set_string(f->st, vm, XAPI_F_VM_name_label, "changed again");
    xapi_obj_destroy(f->st, xapi_store_get_class(f->st, vbd_cls, f->vbd1)); /* out of VM.VBDs, at its head */
    b = xapi_obj_create(f->st, vbd_cls);
    xapi_obj_set_string(f->st, b, XAPI_F_VBD_VM, f->vm);
    xapi_obj_destroy(f->st, b); /* created and destroyed in one transaction */
    b = xapi_obj_create(f->st, vbd_cls);
    xapi_obj_set_string(f->st, b, XAPI_F_VBD_VM, f->vm);
    xapi_obj_set_string(f->st, xapi_store_get_class(f->st, vbd_cls, f->vbd2), XAPI_F_VBD_VM, XAPI_NULL_REF);
    xapi_store_write_abort(f->st);

    shape(f->st, f, after, sizeof after);
    assert_string_equal(after, before);
    assert_int_equal(xapi_store_count(f->st, vbd_cls), 2);
    assert_non_null(xapi_store_get_by_uuid(f->st, vbd_cls, xapi_store_get(f->st, f->vbd1)->uuid));
    assert_int_equal(xapi_store_durable_gen(f->st), gen);

    /* The next write gets the next generation, and the store reloads as memory was. */
    xapi_store_write_begin(f->st);
    xapi_obj_set_string(f->st, xapi_store_get_class(f->st, vm_cls, f->vm), XAPI_F_VM_name_label, "written");
    assert_int_equal(xapi_store_write_end_durable(f->st), 0);
    assert_int_equal(xapi_store_durable_gen(f->st), gen + 1);
    shape(f->st, f, before, sizeof before);
    xapi_store_close(f->st);
    assert_int_equal(xapi_store_open(f->dir, &f->st), 0);
    shape(f->st, f, after, sizeof after);
    assert_string_equal(strstr(after, " name:"), " name:written");
}

static void test_abort_with_nothing_changed(void **state) {
    fixture *f = *state;
    uint64_t gen = xapi_store_durable_gen(f->st);

    xapi_store_write_begin(f->st);
    xapi_store_write_abort(f->st);
    xapi_store_write_begin(f->st);
    assert_int_equal(xapi_store_write_end_durable(f->st), 0);
    assert_int_equal(xapi_store_durable_gen(f->st), gen);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_abort_takes_everything_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_with_nothing_changed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
