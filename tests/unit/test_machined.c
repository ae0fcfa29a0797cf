/* Unit tests: systemd-machined machine names made from VM name labels
 * (vmops/machined.c): what machined accepts as a machine name (a host
 * name: letters, digits, '-', single dots between labels, 64 characters). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmops/machined.h"

#define UUID "6f1b1e2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b"

static void check(const char *label, const char *want) {
    char buf[65];

    assert_int_equal(vmops_machined_name(label, UUID, buf, sizeof buf), 0);
    assert_string_equal(buf, want);
}

static void test_plain_names_kept(void **state) {
    (void)state;
    check("web01", "xenapid-web01");
    check("Web-01.example.org", "xenapid-Web-01.example.org");
}

static void test_invalid_characters_replaced(void **state) {
    (void)state;
    check("my vm", "xenapid-my-vm");
    check("a_b", "xenapid-a-b");
    check("caf\xc3\xa9 bar", "xenapid-caf-bar");        /* each non-ASCII byte, one '-' for the run */
    check("a  //  b", "xenapid-a-b");                     /* runs collapse */
    check("a..b...c", "xenapid-a.b.c");                  /* no empty labels */
    check(".lead", "xenapid-lead");                       /* nothing empty after the prefix */
    check("trail.", "xenapid-trail");
    check("trail-", "xenapid-trail");
}

static void test_nothing_left_is_the_uuid(void **state) {
    (void)state;
    check("", "xenapid-" UUID);
    check(NULL, "xenapid-" UUID);
    check("   ", "xenapid-" UUID);
    check("\xe4\xb8\xad\xe6\x96\x87", "xenapid-" UUID);
}

static void test_at_most_64(void **state) {
    char label[200], buf[65];

    (void)state;
    memset(label, 'x', sizeof label - 1);
    label[sizeof label - 1] = 0;
    assert_int_equal(vmops_machined_name(label, UUID, buf, sizeof buf), 0);
    assert_int_equal(strlen(buf), 64);
    assert_memory_equal(buf, "xenapid-xxx", 11);
    /* The cut keeps what fits, and drops a separator it ends on. */
    memset(label, 'y', 54);
    strcpy(label + 54, ".z");
    assert_int_equal(vmops_machined_name(label, UUID, buf, sizeof buf), 0);
    assert_int_equal(strlen(buf), 64);
    assert_string_equal(buf + 62, ".z");
    memset(label, 'y', 55);
    strcpy(label + 55, ".z");
    assert_int_equal(vmops_machined_name(label, UUID, buf, sizeof buf), 0);
    assert_int_equal(strlen(buf), 63);
    assert_int_equal(buf[62], 'y');
    assert_int_equal(vmops_machined_name("web01", UUID, buf, 10), -ENOBUFS);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_names_kept),
        cmocka_unit_test(test_invalid_characters_replaced),
        cmocka_unit_test(test_nothing_left_is_the_uuid),
        cmocka_unit_test(test_at_most_64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
