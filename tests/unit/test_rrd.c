/* Unit tests: the RRD consolidation arithmetic (xapi/rrd.c), its renderings
 * (rrd_render.c: against the /rrd_updates sample of xapi's documentation
 * kept in tests/golden) and its file format (rrd_file.c). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "xapi/rrd.h"

#define T0 1717999200.0 /* a whole hour */

static const xapi_rrd_rra *rra_of(const xapi_rrd *r, xapi_rrd_cf cf, unsigned pdp) {
    for (size_t i = 0; i < r->nrra; i++)
        if (r->rra[i].cf == cf && r->rra[i].pdp_cnt == pdp)
            return &r->rra[i];
    return NULL;
}

static double at(const xapi_rrd *r, xapi_rrd_cf cf, unsigned pdp, int ds, double t) {
    const xapi_rrd_rra *a = rra_of(r, cf, pdp);
    assert_non_null(a);
    return xapi_rrd_rra_value_at(r, a, ds, (int64_t)t);
}

static void test_layout_as_xapi(void **state) {
    xapi_rrd *host = xapi_rrd_new(5, T0, true), *vm = xapi_rrd_new(5, T0, false);
    static const unsigned pdp[] = {1, 12, 720, 17280}, rows[] = {120, 120, 168, 366};

    assert_int_equal(host->nrra, 10);
    assert_int_equal(vm->nrra, 4);
    for (int i = 0; i < 4; i++) {
        const xapi_rrd_rra *a = rra_of(vm, XAPI_RRD_AVERAGE, pdp[i]);
        assert_non_null(a);
        assert_int_equal(a->rows, rows[i]);
        assert_true(a->xff == 0.5);
        if (i > 0) {
            assert_non_null(rra_of(host, XAPI_RRD_MIN, pdp[i]));
            assert_non_null(rra_of(host, XAPI_RRD_MAX, pdp[i]));
            assert_true(rra_of(host, XAPI_RRD_MAX, pdp[i])->xff == 1.0);
        }
    }
    assert_null(rra_of(host, XAPI_RRD_MIN, 1));
    xapi_rrd_free(host);
    xapi_rrd_free(vm);
}

static void test_gauge_average_min_max(void **state) {
    xapi_rrd *r = xapi_rrd_new(5, T0, true);
    int g = xapi_rrd_add_ds(r, "loadavg", XAPI_RRD_GAUGE, -INFINITY, INFINITY, false);

    assert_int_equal(g, 0);
    /* 12 samples of one minute: 1..12 */
    for (int i = 1; i <= 12; i++) {
        double v = i;
        xapi_rrd_update(r, T0 + 5 * i, &v);
        assert_true(at(r, XAPI_RRD_AVERAGE, 1, g, T0 + 5 * i) == v);
    }
    assert_true(at(r, XAPI_RRD_AVERAGE, 12, g, T0 + 60) == 6.5);
    assert_true(at(r, XAPI_RRD_MIN, 12, g, T0 + 60) == 1);
    assert_true(at(r, XAPI_RRD_MAX, 12, g, T0 + 60) == 12);
    assert_true(isnan(at(r, XAPI_RRD_AVERAGE, 12, g, T0)));
    assert_true(xapi_rrd_latest(r, g) == 12);
    xapi_rrd_free(r);
}

static void test_derive_absolute_and_first_sample(void **state) {
    xapi_rrd *r = xapi_rrd_new(5, T0, false);
    double v[2];

    xapi_rrd_add_ds(r, "vif_0_rx", XAPI_RRD_DERIVE, 0, INFINITY, false);
    xapi_rrd_add_ds(r, "iops", XAPI_RRD_ABSOLUTE, 0, INFINITY, false);
    v[0] = 1000, v[1] = 50;
    xapi_rrd_update(r, T0 + 5, v);
    assert_true(isnan(at(r, XAPI_RRD_AVERAGE, 1, 0, T0 + 5))); /* no previous counter: unknown */
    assert_true(at(r, XAPI_RRD_AVERAGE, 1, 1, T0 + 5) == 10);
    v[0] = 6000, v[1] = 25;
    xapi_rrd_update(r, T0 + 10, v);
    assert_true(at(r, XAPI_RRD_AVERAGE, 1, 0, T0 + 10) == 1000); /* 5000 B in 5 s */
    assert_true(at(r, XAPI_RRD_AVERAGE, 1, 1, T0 + 10) == 5);
    v[0] = 10, v[1] = 0; /* the counter went back (the domain restarted) */
    xapi_rrd_update(r, T0 + 15, v);
    assert_true(isnan(at(r, XAPI_RRD_AVERAGE, 1, 0, T0 + 15)));
    v[0] = 20;
    xapi_rrd_update(r, T0 + 20, v);
    assert_true(at(r, XAPI_RRD_AVERAGE, 1, 0, T0 + 20) == 2);
    xapi_rrd_free(r);
}

static void test_inverse_and_bounds(void **state) {
    xapi_rrd *r = xapi_rrd_new(5, T0, true);
    double v = 0;

    xapi_rrd_add_ds(r, "cpu0", XAPI_RRD_DERIVE, 0, 1, true);
    xapi_rrd_update(r, T0 + 5, &v);
    v = 3.75; /* idle 0.75 of the time: 25 % busy */
    xapi_rrd_update(r, T0 + 10, &v);
    assert_true(fabs(at(r, XAPI_RRD_AVERAGE, 1, 0, T0 + 10) - 0.25) < 1e-12);
    v += 5.1; /* idle 1.02 s per second: clock granularity, clamped to 1 -> 0 busy */
    xapi_rrd_update(r, T0 + 15, &v);
    assert_true(at(r, XAPI_RRD_AVERAGE, 1, 0, T0 + 15) == 0.0);
    v += 10; /* 2 s per second: impossible, unknown */
    xapi_rrd_update(r, T0 + 20, &v);
    assert_true(isnan(at(r, XAPI_RRD_AVERAGE, 1, 0, T0 + 20)));
    xapi_rrd_free(r);
}

static void test_xff_and_heartbeat(void **state) {
    xapi_rrd *r = xapi_rrd_new(5, T0, false);
    double v;

    xapi_rrd_add_ds(r, "memory", XAPI_RRD_GAUGE, -INFINITY, INFINITY, false);
    /* first minute: 6 known points of 12 (not more than half unknown): the mean of the known */
    for (int i = 1; i <= 12; i++) {
        v = i <= 6 ? 10.0 : NAN;
        xapi_rrd_update(r, T0 + 5 * i, &v);
    }
    assert_true(at(r, XAPI_RRD_AVERAGE, 12, 0, T0 + 60) == 10.0);
    /* second minute: 5 known of 12: unknown */
    for (int i = 13; i <= 24; i++) {
        v = i <= 17 ? 10.0 : NAN;
        xapi_rrd_update(r, T0 + 5 * i, &v);
    }
    assert_true(isnan(at(r, XAPI_RRD_AVERAGE, 12, 0, T0 + 120)));
    /* a gap longer than the heartbeat: unknown, whatever the value */
    v = 7;
    xapi_rrd_update(r, T0 + 120 + 400, &v);
    assert_true(isnan(at(r, XAPI_RRD_AVERAGE, 1, 0, T0 + 520)));
    xapi_rrd_update(r, T0 + 525, &v);
    assert_true(at(r, XAPI_RRD_AVERAGE, 1, 0, T0 + 525) == 7);
    /* the clock going back counts as one step */
    xapi_rrd_update(r, T0 + 100, &v);
    assert_true(r->last_updated == T0 + 530);
    xapi_rrd_free(r);
}

static void test_add_remove_ds(void **state) {
    xapi_rrd *r = xapi_rrd_new(5, T0, false);
    double v[2] = {1, 2};
    char name[XAPI_RRD_NAME_MAX + 8];

    xapi_rrd_add_ds(r, "a", XAPI_RRD_GAUGE, -INFINITY, INFINITY, false);
    xapi_rrd_update(r, T0 + 5, v);
    assert_int_equal(xapi_rrd_add_ds(r, "b", XAPI_RRD_GAUGE, -INFINITY, INFINITY, false), 1);
    assert_int_equal(xapi_rrd_add_ds(r, "a", XAPI_RRD_GAUGE, -INFINITY, INFINITY, false), 0);
    assert_true(isnan(at(r, XAPI_RRD_AVERAGE, 1, 1, T0 + 5))); /* a new DS: history unknown */
    xapi_rrd_update(r, T0 + 10, v);
    assert_true(at(r, XAPI_RRD_AVERAGE, 1, 1, T0 + 10) == 2);
    xapi_rrd_remove_ds(r, 0);
    assert_int_equal(r->nds, 1);
    assert_int_equal(xapi_rrd_find_ds(r, "b"), 0);
    assert_true(at(r, XAPI_RRD_AVERAGE, 1, 0, T0 + 10) == 2);
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = 0;
    assert_int_equal(xapi_rrd_add_ds(r, name, XAPI_RRD_GAUGE, 0, 1, false), -EINVAL);
    assert_int_equal(xapi_rrd_add_ds(r, "", XAPI_RRD_GAUGE, 0, 1, false), -EINVAL);
    xapi_rrd_free(r);
}

static void test_numbers(void **state) {
    xapi_buf b = XAPI_BUF_INIT;

    xapi_rrd_fmt_double(&b, 0);
    xapi_buf_putc(&b, ' ');
    xapi_rrd_fmt_double(&b, NAN);
    xapi_buf_putc(&b, ' ');
    xapi_rrd_fmt_double(&b, INFINITY);
    xapi_buf_putc(&b, ' ');
    xapi_rrd_fmt_double(&b, -INFINITY);
    xapi_buf_putc(&b, ' ');
    xapi_rrd_fmt_double(&b, 6291456);
    xapi_buf_putc(&b, ' ');
    xapi_rrd_fmt_double(&b, 1.0 / 3);
    assert_string_equal(b.data, "0.0 NaN Infinity -Infinity 6291456 0.333333333333333");
    xapi_buf_free(&b);
}

static char *read_golden(const char *name) {
    const char *src = getenv("XENAPID_SOURCE_DIR");
    char path[PATH_MAX];
    static char buf[8192];
    size_t n;
    FILE *f;

    snprintf(path, sizeof path, "%s/tests/golden/%s", src ? src : "..", name);
    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* The sample of xapi's /rrd_updates body, byte for byte: a host's cpu0 and
 * memory_free_kib, asked from start=1718000001. cpu0 is fed as the idle
 * fraction, stored inverted, unknown at the first sample (as a DERIVE's first
 * sample is); as a gauge, because no idle counter over 5 s divides to exactly
 * the 0.9588 the sample shows (the DERIVE arithmetic is tested above). */
static void test_xport_matches_xapi_sample(void **state) {
    xapi_rrd *r = xapi_rrd_new(5, 1718000000, true);
    xapi_rrd_source src = {"host", "e3c0f6a2-7b51-4d8e-9c2a-51f0b8d6a7e4", r};
    xapi_rrd_xport_query q = {.start = 1718000001, .interval = 0, .all_cfs = false, .cf = XAPI_RRD_AVERAGE};
    xapi_buf out = XAPI_BUF_INIT;
    double v[2];

    xapi_rrd_add_ds(r, "cpu0", XAPI_RRD_GAUGE, 0, 1, true);
    xapi_rrd_add_ds(r, "memory_free_kib", XAPI_RRD_GAUGE, -INFINITY, INFINITY, false);
    v[0] = NAN, v[1] = 6291460;
    xapi_rrd_update(r, 1718000005, v);
    v[0] = 0.9588, v[1] = 6291456;
    xapi_rrd_update(r, 1718000010, v);
    xapi_rrd_xport(&src, 1, &q, &out);
    assert_string_equal(out.data, read_golden("rrd_updates_sample.xml"));
    xapi_buf_free(&out);

    /* JSON: the same, every number a string */
    q.json = true;
    xapi_rrd_xport(&src, 1, &q, &out);
    assert_string_equal(out.data,
                        "{\"meta\":{\"start\":\"1718000005\",\"step\":\"5\",\"end\":\"1718000010\",\"rows\":\"2\","
                        "\"columns\":\"2\",\"legend\":[\"AVERAGE:host:e3c0f6a2-7b51-4d8e-9c2a-51f0b8d6a7e4:cpu0\","
                        "\"AVERAGE:host:e3c0f6a2-7b51-4d8e-9c2a-51f0b8d6a7e4:memory_free_kib\"]},\"data\":["
                        "{\"t\":\"1718000010\",\"values\":[\"0.0412\",\"6291456\"]},"
                        "{\"t\":\"1718000005\",\"values\":[\"NaN\",\"6291460\"]}]}");
    xapi_buf_free(&out);
    xapi_rrd_free(r);
}

/* Archive choice: an interval of 60 s takes the 1-minute archives; every CF
 * when none is named (host: AVERAGE, MIN, MAX columns, grouped by archive). */
static void test_xport_archive_choice(void **state) {
    xapi_rrd *r = xapi_rrd_new(5, T0, true);
    xapi_rrd_source src = {"host", "e3c0f6a2-7b51-4d8e-9c2a-51f0b8d6a7e4", r};
    xapi_rrd_xport_query q = {.start = -600, .interval = 60, .all_cfs = true};
    xapi_buf out = XAPI_BUF_INIT;
    double v = 1;

    xapi_rrd_add_ds(r, "loadavg", XAPI_RRD_GAUGE, -INFINITY, INFINITY, false);
    for (int i = 1; i <= 240; i++, v++)
        xapi_rrd_update(r, T0 + 5 * i, &v);
    xapi_rrd_xport(&src, 1, &q, &out);
    assert_non_null(strstr(out.data, "<step>60</step><end>1718000400</end><rows>10</rows><columns>3</columns>"));
    assert_non_null(strstr(out.data, "<entry>AVERAGE:host:e3c0f6a2-7b51-4d8e-9c2a-51f0b8d6a7e4:loadavg</entry>"
                                     "<entry>MIN:host:e3c0f6a2-7b51-4d8e-9c2a-51f0b8d6a7e4:loadavg</entry>"
                                     "<entry>MAX:host:e3c0f6a2-7b51-4d8e-9c2a-51f0b8d6a7e4:loadavg</entry>"));
    /* the newest minute: samples 229..240 */
    assert_non_null(strstr(out.data, "<row><t>1718000400</t><v>234.5</v><v>229</v><v>240</v></row>"));
    xapi_buf_free(&out);
    /* a start older than the 1-minute archives reach: the hourly ones */
    q.start = -3 * 3600;
    xapi_rrd_xport(&src, 1, &q, &out);
    assert_non_null(strstr(out.data, "<step>3600</step>"));
    xapi_buf_free(&out);
    xapi_rrd_free(r);
}

static void test_dump_shape(void **state) {
    xapi_rrd *r = xapi_rrd_new(5, T0, false);
    xapi_buf out = XAPI_BUF_INIT;
    double v = 42;

    xapi_rrd_add_ds(r, "memory", XAPI_RRD_GAUGE, -INFINITY, INFINITY, false);
    xapi_rrd_update(r, T0 + 5, &v);
    xapi_rrd_dump(r, false, &out);
    assert_non_null(strstr(out.data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><rrd><version>0003</version><step>5"
                                     "</step><lastupdate>1717999205</lastupdate><ds><name>memory</name><type>GAUGE"
                                     "</type><minimal_heartbeat>300</minimal_heartbeat><min>-Infinity</min>"));
    assert_non_null(strstr(out.data, "<rra><cf>AVERAGE</cf><pdp_per_row>1</pdp_per_row><params><xff>0.5</xff>"
                                     "</params><cdp_prep><ds><primary_value>0.0</primary_value>"));
    /* oldest row first: the newest, 42, closes the first archive's database */
    assert_non_null(strstr(out.data, "<row><v>NaN</v></row><row><v>42</v></row></database></rra><rra>"));
    xapi_buf_free(&out);
    xapi_rrd_dump(r, true, &out);
    assert_non_null(strstr(out.data, "{\"version\":\"0003\",\"step\":\"5\",\"lastupdate\":\"1717999205\",\"ds\":[{"));
    assert_non_null(strstr(out.data, "[\"NaN\"],[\"42\"]]}"));
    xapi_buf_free(&out);
    xapi_rrd_free(r);
}

static void test_file_round_trip_and_damage(void **state) {
    char dir[] = "/tmp/test_rrd.XXXXXX", path[64];
    xapi_rrd *r = xapi_rrd_new(5, T0, true), *back = NULL;
    xapi_buf a = XAPI_BUF_INIT, b = XAPI_BUF_INIT;
    double v[2] = {1, 2};
    FILE *f;
    long size;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.rrd", dir);
    xapi_rrd_add_ds(r, "cpu0", XAPI_RRD_DERIVE, 0, 1, true);
    xapi_rrd_add_ds(r, "memory", XAPI_RRD_GAUGE, -INFINITY, INFINITY, false);
    for (int i = 1; i < 30; i++, v[0] += 2.5, v[1]++)
        xapi_rrd_update(r, T0 + 5 * i, v);
    assert_int_equal(xapi_rrd_save(r, path), 0);
    assert_int_equal(xapi_rrd_load(path, &back), 0);
    xapi_rrd_dump(r, false, &a);
    xapi_rrd_dump(back, false, &b);
    assert_string_equal(a.data, b.data);
    /* it goes on where it stopped */
    xapi_rrd_update(back, T0 + 150, v);
    assert_true(fabs(at(back, XAPI_RRD_AVERAGE, 1, 0, T0 + 150) - 0.5) < 1e-12);
    xapi_rrd_free(back);

    /* truncated, then one byte of a count damaged: refused */
    f = fopen(path, "r+");
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    assert_int_equal(ftruncate(fileno(f), size - 1), 0);
    fclose(f);
    assert_int_equal(xapi_rrd_load(path, &back), -EBADMSG);
    assert_int_equal(xapi_rrd_save(r, path), 0);
    f = fopen(path, "r+");
    fseek(f, 4 + 4 + 4 + 8, SEEK_SET); /* nds */
    fputc(0x7f, f);
    fclose(f);
    assert_int_equal(xapi_rrd_load(path, &back), -EBADMSG);
    assert_int_equal(xapi_rrd_load("/nonexistent/x.rrd", &back), -ENOENT);
    unlink(path);
    rmdir(dir);
    xapi_buf_free(&a);
    xapi_buf_free(&b);
    xapi_rrd_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_as_xapi),
        cmocka_unit_test(test_gauge_average_min_max),
        cmocka_unit_test(test_derive_absolute_and_first_sample),
        cmocka_unit_test(test_inverse_and_bounds),
        cmocka_unit_test(test_xff_and_heartbeat),
        cmocka_unit_test(test_add_remove_ds),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_xport_matches_xapi_sample),
        cmocka_unit_test(test_xport_archive_choice),
        cmocka_unit_test(test_dump_shape),
        cmocka_unit_test(test_file_round_trip_and_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
