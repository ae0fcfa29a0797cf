/* Unit tests: lvm2 reports as recorded (tests/golden/lvm), SR.probe's XML
 * from them, and the command runner's limits (storage/lvm.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "storage/lvm.h"

static char *golden(const char *name) {
    const char *src = getenv("XENAPID_SOURCE_DIR");
    char *p = NULL, *data = NULL;
    size_t len = 0;
    FILE *f;

    if (src)
        assert_true(asprintf(&p, "%s/tests/golden/lvm/%s", src, name) > 0);
    else {
        /* tests/unit/<this file> -> tests/golden/lvm */
        char *file = strdup(__FILE__), *dir = strrchr(file, '/');
        if (dir)
            *dir = '\0';
        assert_true(asprintf(&p, "%s/../golden/lvm/%s", dir ? file : ".", name) > 0);
        free(file);
    }
    f = fopen(p, "r");
    assert_non_null(f);
    assert_int_equal(getdelim(&data, &len, '\0', f) > 0, 1);
    fclose(f);
    free(p);
    return data;
}

static const char *const vg_fields[] = {"vg_size", "vg_free"};
static const char *const lv_fields[] = {"lv_name", "lv_size"};
static const char *const pv_fields[] = {"pv_name", "vg_name", "vg_size"};

static void test_vgs(void **state) {
    char *json = golden("vgs.json");
    storage_lvm_row *rows = NULL;
    size_t n = 0;
    int64_t size;

    (void)state;
    assert_int_equal(storage_lvm_report_parse(json, "vg", vg_fields, 2, 4, &rows, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(storage_lvm_parse_bytes(rows[0].values[0], &size), 0);
    assert_int_equal(size, 92274688);
    storage_lvm_rows_free(rows, n, 2);
    free(json);
}

static void test_lvs(void **state) {
    char *json = golden("lvs_volumes.json"), *empty = golden("lvs_empty.json");
    storage_lvm_row *rows = NULL;
    size_t n = 0;
    int64_t size;

    (void)state;
    assert_int_equal(storage_lvm_report_parse(json, "lv", lv_fields, 2, 10, &rows, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(rows[3].values[0], "LV-2d7e4c50-ae3f-4041-9c9d-8e7f6a5b4c3d");
    assert_int_equal(storage_lvm_parse_bytes(rows[3].values[1], &size), 0);
    assert_int_equal(size, 1073741824);
    storage_lvm_rows_free(rows, n, 2);
    /* The bound holds: a VG with more volumes than asked for is refused, not read whole. */
    assert_int_equal(storage_lvm_report_parse(json, "lv", lv_fields, 2, 3, &rows, &n), -E2BIG);
    assert_int_equal(storage_lvm_report_parse(empty, "lv", lv_fields, 2, 10, &rows, &n), 0);
    assert_int_equal(n, 0);
    storage_lvm_rows_free(rows, n, 2);
    free(json);
    free(empty);
}

static void test_bad_reports(void **state) {
    static const char *const bad[] = {
        "", "not json", "{}", "{\"report\": {}}", "{\"report\": [{\"vg\": {}}]}",
        "{\"report\": [{\"vg\": [{\"vg_size\": \"1\"}]}]}",            /* a field missing */
        "{\"report\": [{\"vg\": [{\"vg_size\": 1, \"vg_free\": \"1\"}]}]}", /* not a string */
        "{\"report\": [{\"lv\": []}]}",                                /* another section */
    };
    storage_lvm_row *rows = NULL;
    size_t n = 0;
    int64_t v;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(storage_lvm_report_parse(bad[i], "vg", vg_fields, 2, 4, &rows, &n), -EBADMSG);
    assert_int_equal(storage_lvm_report_parse(NULL, "vg", vg_fields, 2, 4, &rows, &n), -EBADMSG);
    assert_int_equal(storage_lvm_parse_bytes("4194304B", &v), 0);
    assert_int_equal(v, 4194304);
    assert_int_equal(storage_lvm_parse_bytes("-1", &v), -EINVAL);
    assert_int_equal(storage_lvm_parse_bytes("12x", &v), -EINVAL);
    assert_int_equal(storage_lvm_parse_bytes("99999999999999999999999", &v), -EINVAL);
    assert_int_equal(storage_lvm_parse_bytes("", &v), -EINVAL);
}

static void test_probe_xml(void **state) {
    char *json = golden("pvs.json"), *xml = NULL;
    storage_lvm_row *rows = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(storage_lvm_report_parse(json, "pv", pv_fields, 3, 16, &rows, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(storage_lvm_probe_xml(rows, n, &xml), 0);
    assert_string_equal(xml, "<?xml version=\"1.0\" ?>\n<SRlist>\n\t<SR>\n"
                             "\t\t<UUID>3f1a2b4c-5d6e-4f70-8192-a3b4c5d6e7f8</UUID>\n"
                             "\t\t<Devlist>/dev/loop0,/dev/loop1</Devlist>\n"
                             "\t\t<size>92274688</size>\n\t</SR>\n</SRlist>\n");
    free(xml);
    /* A device in no VG, or in a VG that is not an SR's, lists nothing. */
    free(rows[0].values[1]);
    rows[0].values[1] = strdup("");
    free(rows[1].values[1]);
    rows[1].values[1] = strdup("vg0");
    assert_int_equal(storage_lvm_probe_xml(rows, n, &xml), 0);
    assert_string_equal(xml, "<?xml version=\"1.0\" ?>\n<SRlist/>\n");
    free(xml);
    storage_lvm_rows_free(rows, n, 3);
    free(json);
}

static void test_run(void **state) {
    const char *echo[] = {"echo", "hello", NULL};
    const char *fails[] = {"sh", "-c", "echo one >&2; echo last line >&2; exit 3", NULL};
    const char *slow[] = {"sleep", "10", NULL};
    const char *missing[] = {"/nonexistent/lvs", NULL};
    char *out = NULL, *err = NULL;

    (void)state;
    assert_int_equal(storage_run(echo, 5000, &out, &err), 0);
    assert_string_equal(out, "hello\n");
    free(out);
    free(err);
    assert_int_equal(storage_run(fails, 5000, &out, &err), -EIO);
    assert_string_equal(err, "last line");
    free(out);
    free(err);
    /* Killed at its limit, not waited for. */
    assert_int_equal(storage_run(slow, 200, &out, &err), -ETIME);
    assert_string_equal(err, "timed out");
    free(out);
    free(err);
    assert_int_equal(storage_run(missing, 5000, NULL, NULL), -ENOENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vgs),        cmocka_unit_test(test_lvs), cmocka_unit_test(test_bad_reports),
        cmocka_unit_test(test_probe_xml), cmocka_unit_test(test_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
