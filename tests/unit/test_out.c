/* Unit tests: streaming XML-RPC / JSON encoders and reply envelopes. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "xapi/out.h"
#include "xapi/rpc.h"

typedef struct fixture {
    xapi_buf buf;
    xapi_out xml, json;
    xapi_buf jbuf;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    xapi_out_init(&f->xml, XAPI_FMT_XML, &f->buf);
    xapi_out_init(&f->json, XAPI_FMT_JSON, &f->jbuf);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    xapi_buf_free(&f->buf);
    xapi_buf_free(&f->jbuf);
    free(f);
    return 0;
}

static void reset(fixture *f) {
    xapi_buf_truncate(&f->buf, 0);
    xapi_buf_truncate(&f->jbuf, 0);
    xapi_out_init(&f->xml, XAPI_FMT_XML, &f->buf);
    xapi_out_init(&f->json, XAPI_FMT_JSON, &f->jbuf);
}

/* Both buffers must be NUL-terminated and equal to the expectations. */
static void expect(fixture *f, const char *xml, const char *json) {
    assert_string_equal(f->buf.data, xml);
    assert_int_equal(f->buf.len, strlen(xml));
    assert_string_equal(f->jbuf.data, json);
    assert_int_equal(f->jbuf.len, strlen(json));
    reset(f);
}

static void test_scalars(void **state) {
    fixture *f = *state;

    xapi_out_cstring(&f->xml, "hello");
    xapi_out_cstring(&f->json, "hello");
    expect(f, "<value>hello</value>", "\"hello\"");

    xapi_out_string(&f->xml, "", 0);
    xapi_out_string(&f->json, "", 0);
    expect(f, "<value></value>", "\"\"");

    xapi_out_void(&f->xml);
    xapi_out_void(&f->json);
    expect(f, "<value></value>", "\"\"");

    xapi_out_int(&f->xml, 123);
    xapi_out_int(&f->json, 123);
    expect(f, "<value>123</value>", "123");

    xapi_out_int(&f->xml, 0);
    xapi_out_int(&f->json, -7);
    expect(f, "<value>0</value>", "-7");

    xapi_out_int(&f->xml, INT64_MAX);
    xapi_out_int(&f->json, INT64_MIN);
    expect(f, "<value>9223372036854775807</value>", "-9223372036854775808");

    xapi_out_int32(&f->xml, 5);
    xapi_out_int32(&f->json, 5);
    expect(f, "<value><i4>5</i4></value>", "5");

    xapi_out_int32(&f->xml, INT32_MIN);
    xapi_out_int32(&f->json, INT32_MIN);
    expect(f, "<value><i4>-2147483648</i4></value>", "-2147483648");

    xapi_out_float(&f->xml, 1.5);
    xapi_out_float(&f->json, 1.5);
    expect(f, "<value><double>1.5</double></value>", "1.5");

    xapi_out_float(&f->xml, 0.1);
    xapi_out_float(&f->json, 0.1);
    expect(f, "<value><double>0.1</double></value>", "0.10000000000000001");

    xapi_out_float(&f->xml, 1325376000.5);
    xapi_out_float(&f->json, NAN);
    expect(f, "<value><double>1325376000.5</double></value>", "null");

    xapi_out_float(&f->xml, INFINITY);
    xapi_out_float(&f->json, -INFINITY);
    expect(f, "<value><double>inf</double></value>", "null");

    xapi_out_bool(&f->xml, true);
    xapi_out_bool(&f->json, true);
    expect(f, "<value><boolean>1</boolean></value>", "true");

    xapi_out_bool(&f->xml, false);
    xapi_out_bool(&f->json, false);
    expect(f, "<value><boolean>0</boolean></value>", "false");

    xapi_out_datetime(&f->xml, 1704067200);
    xapi_out_datetime(&f->json, 1704067200);
    expect(f, "<value><dateTime.iso8601>20240101T00:00:00Z</dateTime.iso8601></value>",
           "\"20240101T00:00:00Z\"");
}

static void test_integers_exhaustive(void **state) {
    fixture *f = *state;
    int64_t vals[] = {1, 9, 10, 99, 100, 101, 999, 1000, 12345, -1, -10, -99, -100, INT64_MAX - 1, INT64_MIN + 1};

    for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++) {
        char ref[64];
        xapi_out_int(&f->json, vals[k]);
        snprintf(ref, sizeof(ref), "%lld", (long long)vals[k]);
        assert_string_equal(f->jbuf.data, ref);
        reset(f);
    }
    for (int64_t v = -100000; v < 100000; v += 7) {
        char ref[64];
        xapi_out_int(&f->json, v);
        snprintf(ref, sizeof(ref), "%lld", (long long)v);
        assert_string_equal(f->jbuf.data, ref);
        reset(f);
    }
}

static void test_xml_escaping(void **state) {
    fixture *f = *state;

    xapi_out_cstring(&f->xml, "a&b<c>d\"e'f");
    assert_string_equal(f->buf.data, "<value>a&amp;b&lt;c&gt;d&quot;e'f</value>");
    reset(f);

    /* control characters are dropped, except TAB, LF and CR */
    xapi_out_string(&f->xml, "x\x01y\x1f\tz\n\r\x0b\x0c\x7f\x00w", 13);
    assert_int_equal(f->buf.len, strlen("<value>xy\tz\n\r\x7fw</value>"));
    assert_memory_equal(f->buf.data, "<value>xy\tz\n\r\x7fw</value>", f->buf.len + 1);
    reset(f);

    /* only escapes, only dropped chars, and escapes at the ends */
    xapi_out_cstring(&f->xml, "&&&");
    assert_string_equal(f->buf.data, "<value>&amp;&amp;&amp;</value>");
    reset(f);
    xapi_out_string(&f->xml, "\x01\x02", 2);
    assert_string_equal(f->buf.data, "<value></value>");
    reset(f);

    /* UTF-8 passes through */
    xapi_out_cstring(&f->xml, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    assert_string_equal(f->buf.data, "<value>caf\xc3\xa9 \xf0\x9f\x98\x80</value>");
    reset(f);

    /* what XML cannot carry becomes U+FFFD: U+FFFE and U+FFFF, and each byte
     * that starts no character (not UTF-8, the three of a surrogate) */
    xapi_out_cstring(&f->xml, "a\xef\xbf\xbe b\xef\xbf\xbf c\xff d\xc3 e\xed\xa0\x80");
    assert_string_equal(f->buf.data, "<value>a\xef\xbf\xbd b\xef\xbf\xbd c\xef\xbf\xbd d\xef\xbf\xbd "
                                     "e\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd</value>");
    reset(f);
    xapi_out_cstring(&f->json, "a\xef\xbf\xbe b\xff c\xed\xa0\x80");
    assert_string_equal(f->jbuf.data, "\"a\xef\xbf\xbe b\\ufffd c\\ufffd\\ufffd\\ufffd\"");
    reset(f);

    /* the public helper */
    xapi_xml_escape(&f->buf, "<>", 2);
    assert_string_equal(f->buf.data, "&lt;&gt;");
    xapi_xml_escape(&f->buf, "", 0);
    assert_string_equal(f->buf.data, "&lt;&gt;");
    reset(f);

    /* a long string with sparse escapes, crossing buffer growth */
    xapi_buf src = XAPI_BUF_INIT, ref = XAPI_BUF_INIT;
    for (int k = 0; k < 5000; k++) {
        xapi_buf_printf(&src, "segment %d & more <text>\x01", k);
        xapi_buf_printf(&ref, "segment %d &amp; more &lt;text&gt;", k);
    }
    xapi_xml_escape(&f->buf, src.data, src.len);
    assert_int_equal(f->buf.len, ref.len);
    assert_string_equal(f->buf.data, ref.data);
    xapi_buf_free(&src);
    xapi_buf_free(&ref);
    reset(f);
}

static void test_json_escaping(void **state) {
    fixture *f = *state;

    xapi_out_cstring(&f->json, "q\"b\\s/");
    assert_string_equal(f->jbuf.data, "\"q\\\"b\\\\s/\"");
    reset(f);

    xapi_out_string(&f->json, "\x00\x01\b\f\n\r\t\x1f\x7f", 9);
    assert_string_equal(f->jbuf.data, "\"\\u0000\\u0001\\b\\f\\n\\r\\t\\u001f\\u007f\"");
    reset(f);

    xapi_out_cstring(&f->json, "caf\xc3\xa9 \xe2\x82\xac <&>");
    assert_string_equal(f->jbuf.data, "\"caf\xc3\xa9 \xe2\x82\xac <&>\"");
    reset(f);

    xapi_json_escape(&f->jbuf, "a\"", 2);
    assert_string_equal(f->jbuf.data, "a\\\"");
    reset(f);

    /* every byte value, checked by json-c */
    char all[255];
    for (int k = 1; k < 256; k++)
        all[k - 1] = (char)k;
    xapi_out_string(&f->json, all, 127); /* the ASCII part, 0x01..0x7f */
    json_object *o = json_tokener_parse(f->jbuf.data);
    assert_non_null(o);
    assert_int_equal(json_object_get_string_len(o), 127);
    assert_memory_equal(json_object_get_string(o), all, 127);
    json_object_put(o);
    reset(f);
}

/* A plain UTF-8 decoder for the references: the length of the valid character
 * at s[0..n) and its code point, 0 for a byte that starts none. */
static size_t ref_utf8(const unsigned char *s, size_t n, uint32_t *cp) {
    size_t len = s[0] < 0x80 ? 1 : s[0] >= 0xc0 && s[0] < 0xe0 ? 2 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
               : s[0] >= 0xf0 && s[0] < 0xf8 ? 4 : 0;
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};

    if (len == 0 || len > n)
        return 0;
    *cp = len == 1 ? s[0] : s[0] & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        *cp = *cp << 6 | (s[k] & 0x3f);
    }
    if (*cp < min[len] || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
        return 0;
    return len;
}

/* Byte-at-a-time references for the word-at-a-time escapers: a character
 * the format cannot carry, or a byte that starts no character, becomes U+FFFD. */
static void ref_xml(xapi_buf *b, const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        uint32_t cp = 0;
        size_t len;

        if (c == '&')
            xapi_buf_puts(b, "&amp;");
        else if (c == '<')
            xapi_buf_puts(b, "&lt;");
        else if (c == '>')
            xapi_buf_puts(b, "&gt;");
        else if (c == '"')
            xapi_buf_puts(b, "&quot;");
        else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            continue;
        else if (c < 0x80)
            xapi_buf_putc(b, (char)c);
        else if ((len = ref_utf8(s + i, n - i, &cp)) > 0) {
            if (cp == 0xfffe || cp == 0xffff)
                xapi_buf_puts(b, "\xef\xbf\xbd");
            else
                xapi_buf_append(b, (const char *)s + i, len);
            i += len - 1;
        } else
            xapi_buf_puts(b, "\xef\xbf\xbd");
    }
}

static void ref_json(xapi_buf *b, const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        uint32_t cp = 0;
        size_t len;

        if (c == '"' || c == '\\')
            xapi_buf_printf(b, "\\%c", c);
        else if (c == '\b')
            xapi_buf_puts(b, "\\b");
        else if (c == '\f')
            xapi_buf_puts(b, "\\f");
        else if (c == '\n')
            xapi_buf_puts(b, "\\n");
        else if (c == '\r')
            xapi_buf_puts(b, "\\r");
        else if (c == '\t')
            xapi_buf_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7f)
            xapi_buf_printf(b, "\\u%04x", c);
        else if (c < 0x80)
            xapi_buf_putc(b, (char)c);
        else if ((len = ref_utf8(s + i, n - i, &cp)) > 0) {
            xapi_buf_append(b, (const char *)s + i, len);
            i += len - 1;
        } else
            xapi_buf_puts(b, "\\ufffd");
    }
}

static void test_escape_random(void **state) {
    /* Bytes biased towards the interesting ones, at every length and
     * alignment the word loop can see. */
    static const unsigned char pool[] = {'a', 'b', 'z', ' ', '&', '<', '>', '"', '\\', '\'', 0x00, 0x01, 0x08, 0x09,
                                         0x0a, 0x0c, 0x0d, 0x1f, 0x20, 0x21, 0x22, 0x26, 0x3c, 0x3d, 0x3e, 0x3f,
                                         0x5c, 0x7e, 0x7f, 0x80, 0xc3, 0xa9, 0xfe, 0xff,
                                         /* pieces of U+FFFE, U+FFFF, surrogates, 4-byte and overlong forms */
                                         0xef, 0xbf, 0xbe, 0xbd, 0xed, 0xa0, 0xf0, 0x90, 0xf4, 0x8f, 0xc0, 0xe0};
    unsigned char src[200];
    unsigned seed = 12345;

    for (int iter = 0; iter < 20000; iter++) {
        size_t n = (size_t)(iter % 97), off = (size_t)(iter % 8);
        xapi_buf got = XAPI_BUF_INIT, want = XAPI_BUF_INIT;
        bool sparse = iter % 3 == 0;

        for (size_t k = 0; k < n; k++) {
            seed = seed * 1103515245 + 12345;
            unsigned r = seed >> 16;
            src[off + k] = sparse && r % 16 ? (unsigned char)('a' + r % 26) : pool[r % sizeof(pool)];
        }
        xapi_xml_escape(&got, (const char *)src + off, n);
        ref_xml(&want, src + off, n);
        xapi_buf_putc(&want, 0);
        want.len--;
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.data, want.data, want.len + 1);

        xapi_buf_truncate(&got, 0);
        xapi_buf_truncate(&want, 0);
        xapi_json_escape(&got, (const char *)src + off, n);
        ref_json(&want, src + off, n);
        xapi_buf_putc(&want, 0);
        want.len--;
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.data, want.data, want.len + 1);
        xapi_buf_free(&got);
        xapi_buf_free(&want);
    }
}

static void test_containers(void **state) {
    fixture *f = *state;
    xapi_out *o[2] = {&f->xml, &f->json};

    for (int k = 0; k < 2; k++) {
        xapi_out_struct_begin(o[k]);
        xapi_out_cmember(o[k], "uuid");
        xapi_out_cstring(o[k], "u1");
        xapi_out_cmember(o[k], "tags");
        xapi_out_array_begin(o[k]);
        xapi_out_array_end(o[k]);
        xapi_out_cmember(o[k], "other_config");
        xapi_out_struct_begin(o[k]);
        xapi_out_struct_end(o[k]);
        xapi_out_member(o[k], "list", 4);
        xapi_out_array_begin(o[k]);
        xapi_out_int(o[k], 1);
        xapi_out_cstring(o[k], "two");
        xapi_out_array_begin(o[k]);
        xapi_out_bool(o[k], false);
        xapi_out_array_end(o[k]);
        xapi_out_struct_begin(o[k]);
        xapi_out_cmember(o[k], "a&\"");
        xapi_out_int32(o[k], 3);
        xapi_out_cmember(o[k], "b");
        xapi_out_void(o[k]);
        xapi_out_struct_end(o[k]);
        xapi_out_array_end(o[k]);
        xapi_out_struct_end(o[k]);
    }
    expect(f,
           "<value><struct>"
           "<member><name>uuid</name><value>u1</value></member>"
           "<member><name>tags</name><value><array><data></data></array></value></member>"
           "<member><name>other_config</name><value><struct></struct></value></member>"
           "<member><name>list</name><value><array><data>"
           "<value>1</value><value>two</value>"
           "<value><array><data><value><boolean>0</boolean></value></data></array></value>"
           "<value><struct><member><name>a&amp;&quot;</name><value><i4>3</i4></value></member>"
           "<member><name>b</name><value></value></member></struct></value>"
           "</data></array></value></member>"
           "</struct></value>",
           "{\"uuid\":\"u1\",\"tags\":[],\"other_config\":{},\"list\":[1,\"two\",[false],"
           "{\"a&\\\"\":3,\"b\":\"\"}]}");

    /* arrays of arrays and of structs need commas at each level */
    xapi_out_array_begin(&f->json);
    for (int k = 0; k < 3; k++) {
        xapi_out_array_begin(&f->json);
        xapi_out_array_end(&f->json);
        xapi_out_struct_begin(&f->json);
        xapi_out_cmember(&f->json, "x");
        xapi_out_array_begin(&f->json);
        xapi_out_int(&f->json, k);
        xapi_out_int(&f->json, k);
        xapi_out_array_end(&f->json);
        xapi_out_cmember(&f->json, "y");
        xapi_out_struct_begin(&f->json);
        xapi_out_struct_end(&f->json);
        xapi_out_struct_end(&f->json);
    }
    xapi_out_array_end(&f->json);
    assert_string_equal(f->jbuf.data, "[[],{\"x\":[0,0],\"y\":{}},[],{\"x\":[1,1],\"y\":{}},[],{\"x\":[2,2],\"y\":{}}]");
    reset(f);
}

static xapi_value sample(void) {
    xapi_value root = xapi_value_struct(), arr = xapi_value_array(), inner = xapi_value_struct();

    xapi_array_append(&arr, xapi_value_string("x<y"));
    xapi_array_append(&arr, xapi_value_int(-5));
    xapi_array_append(&arr, xapi_value_float(2.25));
    xapi_array_append(&arr, xapi_value_nil());
    xapi_struct_append(&inner, "k\"", xapi_value_string("v\n"));
    xapi_struct_append(&root, "arr", arr);
    xapi_struct_append(&root, "map", inner);
    xapi_struct_append(&root, "when", xapi_value_datetime(86400));
    xapi_struct_append(&root, "flag", xapi_value_bool(true));
    xapi_struct_append(&root, "empty", xapi_value_string(""));
    xapi_struct_append(&root, "e_arr", xapi_value_array());
    xapi_struct_append(&root, "e_map", xapi_value_struct());
    return root;
}

static void test_out_value(void **state) {
    fixture *f = *state;
    xapi_value v = sample();

    xapi_out_value(&f->xml, &v);
    xapi_out_value(&f->json, &v);
    expect(f,
           "<value><struct>"
           "<member><name>arr</name><value><array><data><value>x&lt;y</value><value>-5</value>"
           "<value><double>2.25</double></value><value><nil/></value></data></array></value></member>"
           "<member><name>map</name><value><struct><member><name>k&quot;</name><value>v\n</value></member>"
           "</struct></value></member>"
           "<member><name>when</name><value><dateTime.iso8601>19700102T00:00:00Z</dateTime.iso8601></value>"
           "</member>"
           "<member><name>flag</name><value><boolean>1</boolean></value></member>"
           "<member><name>empty</name><value></value></member>"
           "<member><name>e_arr</name><value><array><data></data></array></value></member>"
           "<member><name>e_map</name><value><struct></struct></value></member>"
           "</struct></value>",
           "{\"arr\":[\"x<y\",-5,2.25,null],\"map\":{\"k\\\"\":\"v\\n\"},\"when\":\"19700102T00:00:00Z\","
           "\"flag\":true,\"empty\":\"\",\"e_arr\":[],\"e_map\":{}}");
    xapi_out_value(&f->json, NULL);
    assert_string_equal(f->jbuf.data, "null");
    reset(f);
    xapi_value_free(&v);
}

/* Encoding then decoding through the request decoders gives the value back. */
static void test_round_trip(void **state) {
    fixture *f = *state;
    xapi_value v = sample();
    xapi_request req;

    XAPI_BUF_LIT(&f->buf, "<?xml version=\"1.0\"?><methodCall><methodName>m</methodName><params><param>");
    xapi_out_value(&f->xml, &v);
    XAPI_BUF_LIT(&f->buf, "</param></params></methodCall>");
    assert_int_equal(xapi_xmlrpc_decode(f->buf.data, f->buf.len, &req), 0);
    assert_int_equal(req.params.n, 1);
    /* xapi's XML ints are untyped: they come back as strings */
    xapi_value expected = xapi_value_copy(&v);
    xapi_value *arr = xapi_struct_get(&expected, "arr");
    xapi_value_free(&arr->items[1]);
    arr->items[1] = xapi_value_string("-5");
    assert_true(xapi_value_equal(&req.params.items[0], &expected));
    assert_false(xapi_value_equal(&req.params.items[0], &v));
    xapi_value_free(&expected);
    xapi_request_free(&req);

    XAPI_BUF_LIT(&f->jbuf, "{\"method\":\"m\",\"id\":1,\"params\":[");
    f->json.nonempty[0] = false;
    xapi_out_value(&f->json, &v);
    XAPI_BUF_LIT(&f->jbuf, "]}");
    assert_int_equal(xapi_jsonrpc_decode(f->jbuf.data, f->jbuf.len, &req), 0);
    assert_int_equal(req.params.n, 1);
    /* JSON has no datetime: it comes back as its string */
    xapi_value *when = xapi_struct_get(&req.params.items[0], "when");
    assert_non_null(when);
    assert_int_equal(when->kind, XAPI_V_STRING);
    assert_string_equal(when->s, "19700102T00:00:00Z");
    xapi_struct_set(&v, "when", xapi_value_string("19700102T00:00:00Z"));
    assert_true(xapi_value_equal(&req.params.items[0], &v));
    xapi_request_free(&req);
    reset(f);
    xapi_value_free(&v);
}

static xapi_value error_value(void) {
    xapi_value e = xapi_value_array();
    xapi_array_append(&e, xapi_value_string("SESSION_INVALID"));
    xapi_array_append(&e, xapi_value_string("OpaqueRef:x&y"));
    return e;
}

static void test_envelope_xml(void **state) {
    fixture *f = *state;
    xapi_rpc_reply r = {.fmt = XAPI_FMT_XML};
    xapi_value err = error_value();
    size_t mark;

    XAPI_BUF_LIT(&f->buf, "PREFIX");
    mark = xapi_reply_begin(&r, &f->xml);
    assert_int_equal(mark, 6);
    xapi_out_array_begin(&f->xml);
    xapi_out_cstring(&f->xml, "OpaqueRef:1");
    xapi_out_array_end(&f->xml);
    xapi_reply_end_success(&r, &f->xml);
    assert_string_equal(f->buf.data,
                        "PREFIX<?xml version=\"1.0\"?><methodResponse><params><param><value><struct>"
                        "<member><name>Status</name><value>Success</value></member>"
                        "<member><name>Value</name><value><array><data><value>OpaqueRef:1</value></data>"
                        "</array></value></member></struct></value></param></params></methodResponse>");

    /* failure halfway through a value: reset to the mark */
    xapi_buf_truncate(&f->buf, 0);
    mark = xapi_reply_begin(&r, &f->xml);
    xapi_out_struct_begin(&f->xml);
    xapi_out_cmember(&f->xml, "half");
    xapi_reply_failure(&r, &f->xml, mark, &err);
    assert_string_equal(f->buf.data,
                        "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct>"
                        "<member><name>Status</name><value>Failure</value></member>"
                        "<member><name>ErrorDescription</name><value><array><data>"
                        "<value>SESSION_INVALID</value><value>OpaqueRef:x&amp;y</value>"
                        "</data></array></value></member></struct></value></param></params></methodResponse>");
    assert_int_equal(f->xml.depth, 0);

    /* void success */
    xapi_buf_truncate(&f->buf, 0);
    xapi_reply_begin(&r, &f->xml);
    xapi_out_void(&f->xml);
    xapi_reply_end_success(&r, &f->xml);
    assert_non_null(strstr(f->buf.data, "<name>Value</name><value></value></member>"));
    reset(f);
    xapi_value_free(&err);
}

static void test_envelope_json(void **state) {
    fixture *f = *state;
    xapi_rpc_reply v1 = {.fmt = XAPI_FMT_JSON, .json_version = 1, .json_id = "\"xyz\""};
    xapi_rpc_reply v2 = {.fmt = XAPI_FMT_JSON, .json_version = 2, .json_id = "3"};
    xapi_value err = error_value(), one = xapi_value_array();
    size_t mark;

    xapi_reply_begin(&v1, &f->json);
    xapi_out_array_begin(&f->json);
    xapi_out_cstring(&f->json, "a");
    xapi_out_cstring(&f->json, "b");
    xapi_out_array_end(&f->json);
    xapi_reply_end_success(&v1, &f->json);
    assert_string_equal(f->jbuf.data, "{\"result\":[\"a\",\"b\"],\"error\":null,\"id\":\"xyz\"}");
    xapi_buf_truncate(&f->jbuf, 0);

    mark = xapi_reply_begin(&v1, &f->json);
    xapi_out_array_begin(&f->json);
    xapi_out_cstring(&f->json, "partial");
    xapi_reply_failure(&v1, &f->json, mark, &err);
    assert_string_equal(f->jbuf.data,
                        "{\"result\":null,\"error\":[\"SESSION_INVALID\",\"OpaqueRef:x&y\"],\"id\":\"xyz\"}");
    xapi_buf_truncate(&f->jbuf, 0);

    xapi_reply_begin(&v2, &f->json);
    xapi_out_void(&f->json);
    xapi_reply_end_success(&v2, &f->json);
    assert_string_equal(f->jbuf.data, "{\"jsonrpc\":\"2.0\",\"result\":\"\",\"id\":3}");
    xapi_buf_truncate(&f->jbuf, 0);

    mark = xapi_reply_begin(&v2, &f->json);
    xapi_out_int(&f->json, 5);
    xapi_reply_failure(&v2, &f->json, mark, &err);
    assert_string_equal(f->jbuf.data, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":1,\"message\":\"SESSION_INVALID\","
                                      "\"data\":[\"OpaqueRef:x&y\"]},\"id\":3}");
    xapi_buf_truncate(&f->jbuf, 0);

    /* a code without parameters */
    xapi_array_append(&one, xapi_value_string("HOST_IS_SLAVE"));
    mark = xapi_reply_begin(&v2, &f->json);
    xapi_reply_failure(&v2, &f->json, mark, &one);
    assert_string_equal(f->jbuf.data,
                        "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":1,\"message\":\"HOST_IS_SLAVE\",\"data\":[]},\"id\":3}");
    xapi_buf_truncate(&f->jbuf, 0);

    /* no id: null */
    v1.json_id = NULL;
    xapi_reply_begin(&v1, &f->json);
    xapi_out_bool(&f->json, true);
    xapi_reply_end_success(&v1, &f->json);
    assert_string_equal(f->jbuf.data, "{\"result\":true,\"error\":null,\"id\":null}");

    /* every envelope is valid JSON */
    json_object *o = json_tokener_parse(f->jbuf.data);
    assert_non_null(o);
    json_object_put(o);
    reset(f);
    xapi_value_free(&err);
    xapi_value_free(&one);
}

static void test_nul_terminated_always(void **state) {
    fixture *f = *state;

    /* buffer state after each call: data[len] == 0 (a dirty buffer proves it) */
    xapi_buf_reserve(&f->jbuf, 256);
    memset(f->jbuf.data, 'X', f->jbuf.cap);
    xapi_out_array_begin(&f->json);
    assert_int_equal(f->jbuf.data[f->jbuf.len], 0);
    memset(f->jbuf.data + f->jbuf.len, 'X', f->jbuf.cap - f->jbuf.len);
    xapi_out_int(&f->json, 7);
    assert_int_equal(f->jbuf.data[f->jbuf.len], 0);
    memset(f->jbuf.data + f->jbuf.len, 'X', f->jbuf.cap - f->jbuf.len);
    xapi_out_datetime(&f->json, 0);
    assert_int_equal(f->jbuf.data[f->jbuf.len], 0);
    memset(f->jbuf.data + f->jbuf.len, 'X', f->jbuf.cap - f->jbuf.len);
    xapi_out_array_end(&f->json);
    assert_string_equal(f->jbuf.data, "[7,\"19700101T00:00:00Z\"]");
    reset(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scalars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integers_exhaustive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xml_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escape_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_containers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_envelope_xml, setup, teardown),
        cmocka_unit_test_setup_teardown(test_envelope_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_terminated_always, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
