/* Unit tests: generic values, datetimes, UTF-8 validation, byte buffers. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "xapi/buf.h"
#include "xapi/value.h"

/* --- Values ----------------------------------------------------------------- */

static void test_string_constructors(void **state) {
    xapi_value v = xapi_value_string("hello");
    xapi_value e = xapi_value_string("");
    xapi_value n = xapi_value_stringn("a\0b", 3);
    xapi_value t = xapi_value_string_take(strdup("taken"));
    xapi_value te = xapi_value_string_take(strdup(""));

    assert_int_equal(v.kind, XAPI_V_STRING);
    assert_int_equal(v.n, 5);
    assert_string_equal(v.s, "hello");
    assert_ptr_equal(e.s, xapi_empty_string);
    assert_int_equal(e.n, 0);
    assert_int_equal(n.n, 3);
    assert_memory_equal(n.s, "a\0b", 4);
    assert_string_equal(t.s, "taken");
    assert_int_equal(t.n, 5);
    assert_ptr_equal(te.s, xapi_empty_string);
    assert_string_equal(xapi_value_str(&v), "hello");
    assert_string_equal(xapi_value_str(NULL), "");

    xapi_value_free(&v);
    xapi_value_free(&e);
    xapi_value_free(&n);
    xapi_value_free(&t);
    xapi_value_free(&te);
    assert_int_equal(v.kind, XAPI_V_NIL);
    assert_int_equal(xapi_empty_string[0], 0);
}

static void test_scalars(void **state) {
    xapi_value i = xapi_value_int(INT64_MIN);
    xapi_value f = xapi_value_float(1.5);
    xapi_value b = xapi_value_bool(true);
    xapi_value d = xapi_value_datetime(1700000000);
    xapi_value nil = xapi_value_nil();

    assert_int_equal(sizeof(xapi_value), 16);
    assert_int_equal(i.kind, XAPI_V_INT);
    assert_true(i.i == INT64_MIN);
    assert_int_equal(f.kind, XAPI_V_FLOAT);
    assert_true(f.f == 1.5);
    assert_int_equal(b.kind, XAPI_V_BOOL);
    assert_true(b.b);
    assert_int_equal(d.kind, XAPI_V_DATETIME);
    assert_int_equal(d.i, 1700000000);
    assert_int_equal(nil.kind, XAPI_V_NIL);
    assert_string_equal(xapi_value_str(&i), "");
}

static void test_array_growth(void **state) {
    xapi_value a = xapi_value_array();

    for (int k = 0; k < 1000; k++)
        xapi_array_append(&a, xapi_value_int(k));
    assert_int_equal(a.n, 1000);
    for (int k = 0; k < 1000; k++)
        assert_int_equal(a.items[k].i, k);
    xapi_value_free(&a);
    assert_int_equal(a.kind, XAPI_V_NIL);
}

static void test_struct_ops(void **state) {
    xapi_value st = xapi_value_struct();
    xapi_value *v;

    xapi_struct_append(&st, "a", xapi_value_int(1));
    xapi_struct_append(&st, "b", xapi_value_string("two"));
    xapi_struct_append(&st, "", xapi_value_bool(false));
    assert_int_equal(st.n, 3);
    assert_string_equal(st.members[0].name, "a");
    assert_string_equal(st.members[2].name, "");

    v = xapi_struct_get(&st, "b");
    assert_non_null(v);
    assert_string_equal(v->s, "two");
    assert_null(xapi_struct_get(&st, "zz"));
    assert_null(xapi_struct_get(NULL, "a"));

    /* set replaces in place, or appends */
    xapi_struct_set(&st, "b", xapi_value_int(2));
    assert_int_equal(st.n, 3);
    assert_string_equal(st.members[1].name, "b");
    assert_int_equal(st.members[1].value.kind, XAPI_V_INT);
    xapi_struct_set(&st, "c", xapi_value_int(3));
    assert_int_equal(st.n, 4);
    assert_string_equal(st.members[3].name, "c");

    assert_true(xapi_struct_remove(&st, "a"));
    assert_false(xapi_struct_remove(&st, "a"));
    assert_int_equal(st.n, 3);
    assert_string_equal(st.members[0].name, "b");
    assert_true(xapi_struct_remove(&st, ""));
    assert_true(xapi_struct_remove(&st, "b"));
    assert_true(xapi_struct_remove(&st, "c"));
    assert_int_equal(st.n, 0);
    /* storage is reused correctly after removals */
    for (int k = 0; k < 100; k++) {
        char name[16];
        snprintf(name, sizeof(name), "k%d", k);
        xapi_struct_append(&st, name, xapi_value_int(k));
        if (k % 3 == 0)
            assert_true(xapi_struct_remove(&st, name));
    }
    assert_int_equal(st.n, 66);
    assert_int_equal(xapi_struct_get(&st, "k98")->i, 98);
    assert_null(xapi_struct_get(&st, "k99"));
    xapi_value_free(&st);
}

static xapi_value sample(void) {
    xapi_value root = xapi_value_struct(), arr = xapi_value_array(), inner = xapi_value_struct();

    xapi_array_append(&arr, xapi_value_string("x"));
    xapi_array_append(&arr, xapi_value_int(-5));
    xapi_array_append(&arr, xapi_value_float(NAN));
    xapi_struct_append(&inner, "k", xapi_value_string("v"));
    xapi_struct_append(&root, "arr", arr);
    xapi_struct_append(&root, "map", inner);
    xapi_struct_append(&root, "when", xapi_value_datetime(0));
    xapi_struct_append(&root, "flag", xapi_value_bool(true));
    xapi_struct_append(&root, "empty", xapi_value_string(""));
    xapi_struct_append(&root, "nil", xapi_value_nil());
    return root;
}

static void test_copy_equal(void **state) {
    xapi_value a = sample(), b = xapi_value_copy(&a), c;

    assert_true(xapi_value_equal(&a, &b));
    assert_ptr_not_equal(a.members[0].value.items, b.members[0].value.items);
    /* the copy is independent and still growable */
    xapi_array_append(&b.members[0].value, xapi_value_int(1));
    assert_false(xapi_value_equal(&a, &b));
    xapi_value_free(&b);

    /* maps compare regardless of member order */
    b = xapi_value_struct();
    for (int k = (int)a.n - 1; k >= 0; k--)
        xapi_struct_append(&b, a.members[k].name, xapi_value_copy(&a.members[k].value));
    assert_true(xapi_value_equal(&a, &b));
    xapi_struct_set(&b, "flag", xapi_value_bool(false));
    assert_false(xapi_value_equal(&a, &b));

    c = xapi_value_int(1);
    assert_false(xapi_value_equal(&a, &c));
    xapi_value d = xapi_value_datetime(1);
    assert_false(xapi_value_equal(&c, &d));
    xapi_value s1 = xapi_value_stringn("a\0b", 3), s2 = xapi_value_stringn("a\0c", 3);
    assert_false(xapi_value_equal(&s1, &s2));
    xapi_value_free(&s1);
    xapi_value_free(&s2);
    xapi_value_free(&a);
    xapi_value_free(&b);
}

/* --- Datetimes ------------------------------------------------------------ */

static void test_datetime_format(void **state) {
    char buf[XAPI_DATETIME_LEN + 1];

    xapi_datetime_format(0, buf);
    assert_string_equal(buf, "19700101T00:00:00Z");
    xapi_datetime_format(1704067200, buf);
    assert_string_equal(buf, "20240101T00:00:00Z");
    xapi_datetime_format(951782400, buf); /* leap day 2000 */
    assert_string_equal(buf, "20000229T00:00:00Z");
    xapi_datetime_format(1709251199, buf);
    assert_string_equal(buf, "20240229T23:59:59Z");
    xapi_datetime_format(-1, buf);
    assert_string_equal(buf, "19691231T23:59:59Z");
    xapi_datetime_format(-86400 * 365, buf);
    assert_string_equal(buf, "19690101T00:00:00Z");
    xapi_datetime_format(253402300799, buf);
    assert_string_equal(buf, "99991231T23:59:59Z");
    xapi_datetime_format(INT64_MAX, buf); /* clamped */
    assert_string_equal(buf, "99991231T23:59:59Z");
    xapi_datetime_format(INT64_MIN, buf);
    assert_string_equal(buf, "00000101T00:00:00Z");
    assert_int_equal(strlen(buf), XAPI_DATETIME_LEN);

    /* agrees with gmtime over a range of instants */
    for (int64_t t = -5000000000; t < 5000000000; t += 7777777) {
        struct tm tm;
        time_t tt = (time_t)t;
        char ref[64];
        gmtime_r(&tt, &tm);
        strftime(ref, sizeof(ref), "%Y%m%dT%H:%M:%SZ", &tm);
        xapi_datetime_format(t, buf);
        assert_string_equal(buf, ref);
    }
}

static void test_datetime_parse(void **state) {
    int64_t t = 42;

    assert_int_equal(xapi_datetime_parse("20240101T00:00:00Z", &t), 0);
    assert_int_equal(t, 1704067200);
    assert_int_equal(xapi_datetime_parse("2024-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 1704067200);
    assert_int_equal(xapi_datetime_parse("20240101T000000Z", &t), 0);
    assert_int_equal(t, 1704067200);
    assert_int_equal(xapi_datetime_parse("20240101T00:00:00", &t), 0); /* no zone: UTC */
    assert_int_equal(t, 1704067200);
    assert_int_equal(xapi_datetime_parse("2024-01-01T00:00:00.123456Z", &t), 0);
    assert_int_equal(t, 1704067200);
    assert_int_equal(xapi_datetime_parse("2024-01-01 00:00:00,5", &t), 0);
    assert_int_equal(t, 1704067200);
    assert_int_equal(xapi_datetime_parse("2024-01-01T02:00:00+02:00", &t), 0);
    assert_int_equal(t, 1704067200);
    assert_int_equal(xapi_datetime_parse("20231231T19:30:00-0430", &t), 0);
    assert_int_equal(t, 1704067200);
    assert_int_equal(xapi_datetime_parse("2024-01-01T05:00:00+05", &t), 0);
    assert_int_equal(t, 1704067200);
    assert_int_equal(xapi_datetime_parse("2024-01-01t00:00:00z", &t), 0);
    assert_int_equal(t, 1704067200);
    assert_int_equal(xapi_datetime_parse("19691231T23:59:59Z", &t), 0);
    assert_int_equal(t, -1);
    assert_int_equal(xapi_datetime_parse("20000229T12:00:00Z", &t), 0);
    assert_int_equal(t, 951825600);

    t = 42;
    const char *bad[] = {"",
                         "2024",
                         "20240101",
                         "2024010T00:00:00Z",
                         "20240101X00:00:00Z",
                         "20241301T00:00:00Z",
                         "20240001T00:00:00Z",
                         "20230229T00:00:00Z",
                         "20240431T00:00:00Z",
                         "20240101T24:00:00Z",
                         "20240101T00:60:00Z",
                         "20240101T00:00:61Z",
                         "20240101T00:00:00ZZ",
                         "20240101T00:00:00+",
                         "20240101T00:00:00+1",
                         "20240101T00:00:00+24:00",
                         "20240101T00:00:00+01:60",
                         "20240101T00:00:00.Z",
                         " 20240101T00:00:00Z",
                         "20240101T00:00:00Z ",
                         "2024-01-01T00:00:00:00Z",
                         "abcdefghTij:kl:mnZ",
                         NULL};
    for (int k = 0; bad[k]; k++) {
        assert_int_equal(xapi_datetime_parse(bad[k], &t), -EINVAL);
        assert_int_equal(t, 42); /* untouched on failure */
    }
    assert_int_equal(xapi_datetime_parse(NULL, &t), -EINVAL);

    /* round trip */
    for (int64_t x = -3000000000; x < 4000000000; x += 123456789) {
        char buf[XAPI_DATETIME_LEN + 1];
        xapi_datetime_format(x, buf);
        assert_int_equal(xapi_datetime_parse(buf, &t), 0);
        assert_int_equal(t, x);
    }
}

/* --- UTF-8 ------------------------------------------------------------------ */

#define U8(s) xapi_utf8_valid((s), sizeof(s) - 1)

static void test_utf8(void **state) {
    assert_true(U8(""));
    assert_true(U8("plain ascii, long enough to use the 8-byte path"));
    assert_true(U8("\x00"));
    assert_true(U8("caf\xc3\xa9"));
    assert_true(U8("\xc2\x80"));             /* U+0080 */
    assert_true(U8("\xdf\xbf"));             /* U+07FF */
    assert_true(U8("\xe0\xa0\x80"));         /* U+0800 */
    assert_true(U8("\xed\x9f\xbf"));         /* U+D7FF */
    assert_true(U8("\xee\x80\x80"));         /* U+E000 */
    assert_true(U8("\xef\xbf\xbf"));         /* U+FFFF */
    assert_true(U8("\xf0\x90\x80\x80"));     /* U+10000 */
    assert_true(U8("\xf4\x8f\xbf\xbf"));     /* U+10FFFF */
    assert_true(U8("\xe2\x82\xac and \xf0\x9f\x98\x80 in the middle of ascii text"));

    assert_false(U8("\x80"));                /* lone continuation */
    assert_false(U8("\xbf"));
    assert_false(U8("\xc0\x80"));            /* overlong NUL */
    assert_false(U8("\xc1\xbf"));            /* overlong */
    assert_false(U8("\xe0\x80\x80"));        /* overlong 3-byte */
    assert_false(U8("\xe0\x9f\xbf"));
    assert_false(U8("\xf0\x80\x80\x80"));    /* overlong 4-byte */
    assert_false(U8("\xf0\x8f\xbf\xbf"));
    assert_false(U8("\xed\xa0\x80"));        /* U+D800 surrogate */
    assert_false(U8("\xed\xbf\xbf"));        /* U+DFFF surrogate */
    assert_false(U8("\xf4\x90\x80\x80"));    /* U+110000 */
    assert_false(U8("\xf5\x80\x80\x80"));
    assert_false(U8("\xf8\x88\x80\x80\x80")); /* 5-byte form */
    assert_false(U8("\xfe"));
    assert_false(U8("\xff"));
    assert_false(U8("\xc3"));                /* truncated */
    assert_false(U8("\xe2\x82"));
    assert_false(U8("\xf0\x9f\x98"));
    assert_false(U8("abc\xc3"));
    assert_false(U8("\xc3\x28"));            /* bad continuation */
    assert_false(U8("\xe2\x28\xa1"));
    assert_false(U8("\xf0\x9f\x28\x80"));
    assert_false(U8("0123456789abcdef\xc3"));
    /* the length bounds the check, not NUL */
    assert_true(xapi_utf8_valid("ab\xc3\xa9", 2));
    assert_false(xapi_utf8_valid("\xc3\xa9", 1));
}

#define STR_OK(s) xapi_string_valid((s), sizeof(s) - 1)

/* What a client may store: xapi's UTF8_XML rule. */
static void test_string_valid(void **state) {
    assert_true(STR_OK(""));
    assert_true(STR_OK("plain ascii, long enough to use the 8-byte path ~\x7f"));
    assert_true(STR_OK("tab\tlf\ncr\r in text"));
    assert_true(STR_OK("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    assert_true(STR_OK("\xef\xbf\xbd"));     /* U+FFFD */
    assert_true(STR_OK("\xef\xb7\x8f"));     /* U+FDCF */
    assert_true(STR_OK("\xef\xb7\xb0"));     /* U+FDF0 */
    assert_true(STR_OK("\xf0\x9f\xbf\xbd")); /* U+1FFFD */
    assert_true(STR_OK("\xf4\x8f\xbf\xbd")); /* U+10FFFD */

    assert_false(STR_OK("\x00"));
    assert_false(STR_OK("a\x01"));
    assert_false(STR_OK("0123456789abcdef\x1b[0m")); /* after a clean word */
    assert_false(STR_OK("\x08"));
    assert_false(STR_OK("\x0b"));
    assert_false(STR_OK("\x1f"));
    assert_false(STR_OK("abc\xef\xbf\xbe"));     /* U+FFFE */
    assert_false(STR_OK("\xef\xbf\xbf"));        /* U+FFFF */
    assert_false(STR_OK("\xef\xb7\x90"));        /* U+FDD0 */
    assert_false(STR_OK("\xef\xb7\xaf"));        /* U+FDEF */
    assert_false(STR_OK("\xf0\x9f\xbf\xbe"));    /* U+1FFFE */
    assert_false(STR_OK("\xf4\x8f\xbf\xbf"));    /* U+10FFFF */
    assert_false(STR_OK("\xed\xa0\x80"));        /* a surrogate */
    assert_false(STR_OK("\xc3"));                /* invalid UTF-8 */
    assert_false(STR_OK("\xc0\x80"));
}

static void test_utf8_decode(void **state) {
    uint32_t cp = 0;

    assert_int_equal(xapi_utf8_decode("A", 1, &cp), 1);
    assert_int_equal(cp, 'A');
    assert_int_equal(xapi_utf8_decode("\xc3\xa9z", 3, &cp), 2);
    assert_int_equal(cp, 0xe9);
    assert_int_equal(xapi_utf8_decode("\xef\xbf\xbe", 3, &cp), 3);
    assert_int_equal(cp, 0xfffe);
    assert_int_equal(xapi_utf8_decode("\xf4\x8f\xbf\xbf", 4, &cp), 4);
    assert_int_equal(cp, 0x10ffff);
    assert_int_equal(xapi_utf8_decode("\xef\xbf\xbe", 2, &cp), 0); /* cut by n */
    assert_int_equal(xapi_utf8_decode("\xed\xa0\x80", 3, &cp), 0);
    assert_int_equal(xapi_utf8_decode("\x80", 1, &cp), 0);
    assert_int_equal(xapi_utf8_decode("", 0, &cp), 0);
}

/* --- Buffers ---------------------------------------------------------------- */

static void test_buf(void **state) {
    xapi_buf b = XAPI_BUF_INIT;
    char *s;
    size_t len = 99;

    xapi_buf_puts(&b, "abc");
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    xapi_buf_putc(&b, 'd');
    XAPI_BUF_LIT(&b, "ef");
    assert_string_equal(b.data, "abcdef");
    xapi_buf_printf(&b, "-%d-%s", 42, "x");
    assert_string_equal(b.data, "abcdef-42-x");
    xapi_buf_truncate(&b, 3);
    assert_string_equal(b.data, "abc");
    assert_int_equal(b.len, 3);
    xapi_buf_truncate(&b, 10); /* longer: no-op */
    assert_int_equal(b.len, 3);

    /* growth over many doublings keeps content and termination */
    for (int k = 0; k < 10000; k++)
        xapi_buf_append(&b, "0123456789", 10);
    assert_int_equal(b.len, 3 + 100000);
    assert_int_equal(b.data[b.len], 0);
    assert_true(b.cap > b.len);
    assert_int_equal(b.cap & (b.cap - 1), 0); /* a power of two */
    assert_memory_equal(b.data + 3 + 99990, "0123456789", 10);

    /* a long printf takes the second pass */
    xapi_buf_truncate(&b, 0);
    char big[5000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    xapi_buf_printf(&b, "<%s>", big);
    assert_int_equal(b.len, sizeof(big) + 1);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[b.len - 1], '>');

    s = xapi_buf_steal(&b, &len);
    assert_int_equal(len, sizeof(big) + 1);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(s);

    /* an empty buffer still yields a string */
    s = xapi_buf_steal(&b, &len);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);

    xapi_buf_reserve(&b, 100);
    assert_true(b.cap >= 101);
    assert_string_equal(b.data, "");
    xapi_buf_append(&b, NULL, 0);
    assert_int_equal(b.len, 0);
    xapi_buf_free(&b);
    assert_null(b.data);
    xapi_buf_free(&b); /* twice is harmless */
}

static void test_alloc_helpers(void **state) {
    char *p = xapi_strndup("abcdef", 3);
    assert_string_equal(p, "abc");
    free(p);
    p = xapi_strdup("");
    assert_string_equal(p, "");
    free(p);
    int *z = xapi_calloc(10, sizeof(int));
    for (int k = 0; k < 10; k++)
        assert_int_equal(z[k], 0);
    z = xapi_realloc(z, 100 * sizeof(int));
    free(z);
    free(xapi_malloc(0));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_constructors),
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_array_growth),
        cmocka_unit_test(test_struct_ops),
        cmocka_unit_test(test_copy_equal),
        cmocka_unit_test(test_datetime_format),
        cmocka_unit_test(test_datetime_parse),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_string_valid),
        cmocka_unit_test(test_utf8_decode),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_alloc_helpers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
