/* Unit tests: XML-RPC <methodCall> decoding. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "xapi/buf.h"
#include "xapi/rpc.h"

#define CALL_HEAD "<?xml version=\"1.0\"?><methodCall><methodName>VM.get_record</methodName><params>"
#define CALL_TAIL "</params></methodCall>"

static int decode(const char *body, xapi_request *req) {
    return xapi_xmlrpc_decode(body, strlen(body), req);
}

/* Decodes a call with one <param> holding value_xml; returns its value. */
static int decode_one(const char *value_xml, xapi_value *ret) {
    xapi_buf b = XAPI_BUF_INIT;
    xapi_request req;
    int rc;

    xapi_buf_printf(&b, CALL_HEAD "<param>%s</param>" CALL_TAIL, value_xml);
    rc = xapi_xmlrpc_decode(b.data, b.len, &req);
    xapi_buf_free(&b);
    if (rc < 0)
        return rc;
    assert_int_equal(req.params.kind, XAPI_V_ARRAY);
    assert_int_equal(req.params.n, 1);
    *ret = req.params.items[0];
    req.params.n = 0;
    xapi_request_free(&req);
    return 0;
}

static void want_string(const char *value_xml, const char *s, size_t n) {
    xapi_value v;

    assert_int_equal(decode_one(value_xml, &v), 0);
    assert_int_equal(v.kind, XAPI_V_STRING);
    assert_int_equal(v.n, n);
    assert_memory_equal(v.s, s, n);
    assert_int_equal(v.s[n], 0);
    xapi_value_free(&v);
}

static void want_int(const char *value_xml, int64_t i) {
    xapi_value v;

    assert_int_equal(decode_one(value_xml, &v), 0);
    assert_int_equal(v.kind, XAPI_V_INT);
    assert_true(v.i == i);
}

static void want_error(const char *value_xml, int err) {
    xapi_value v = xapi_value_int(42);

    assert_int_equal(decode_one(value_xml, &v), err);
    assert_int_equal(v.kind, XAPI_V_INT); /* untouched */
    assert_int_equal(v.i, 42);
}

static void test_call_basic(void **state) {
    xapi_request req;
    const char *body = "<?xml version=\"1.0\"?>\n<methodCall>\n  <methodName> VM.get_all </methodName>\n"
                       "  <params>\n    <param><value>OpaqueRef:abc</value></param>\n"
                       "    <param>\n <value><string>x</string></value>\n </param>\n  </params>\n</methodCall>\n";

    assert_int_equal(decode(body, &req), 0);
    assert_string_equal(req.method, "VM.get_all");
    assert_int_equal(req.json_version, 0);
    assert_null(req.json_id);
    assert_int_equal(req.params.kind, XAPI_V_ARRAY);
    assert_int_equal(req.params.n, 2);
    assert_string_equal(req.params.items[0].s, "OpaqueRef:abc");
    assert_string_equal(req.params.items[1].s, "x");
    xapi_request_free(&req);
    assert_null(req.method);
    xapi_request_free(&req); /* twice is harmless */
    xapi_request_free(NULL);
}

static void test_missing_params(void **state) {
    xapi_request req;

    assert_int_equal(decode("<methodCall><methodName>system.listMethods</methodName></methodCall>", &req), 0);
    assert_string_equal(req.method, "system.listMethods");
    assert_int_equal(req.params.kind, XAPI_V_ARRAY);
    assert_int_equal(req.params.n, 0);
    xapi_request_free(&req);

    assert_int_equal(decode("<methodCall><methodName>a</methodName><params/></methodCall>", &req), 0);
    assert_int_equal(req.params.n, 0);
    xapi_request_free(&req);

    assert_int_equal(decode("<methodCall><methodName>a</methodName><params>  </params></methodCall>", &req), 0);
    assert_int_equal(req.params.n, 0);
    xapi_request_free(&req);
}

static void test_strings(void **state) {
    want_string("<value>abc</value>", "abc", 3);
    want_string("<value><string>abc</string></value>", "abc", 3);
    want_string("<value></value>", "", 0);
    want_string("<value/>", "", 0);
    want_string("<value><string/></value>", "", 0);
    want_string("<value><string></string></value>", "", 0);
    /* whitespace survives, untyped or in <string> */
    want_string("<value> </value>", " ", 1);
    want_string("<value>\n\t x \n</value>", "\n\t x \n", 6);
    want_string("<value><string>  </string></value>", "  ", 2);
    want_string("<value> <string>s</string> </value>", "s", 1);
    /* entities, character references, CDATA, comments */
    want_string("<value>a&amp;b&lt;c&gt;&quot;&apos;</value>", "a&b<c>\"'", 8);
    want_string("<value>&#65;&#x42;&#233;</value>", "AB\xc3\xa9", 4);
    want_string("<value>a&#13;b</value>", "a\rb", 3);
    want_string("<value><![CDATA[<not a tag>]]></value>", "<not a tag>", 11);
    want_string("<value>ab<!-- comment -->cd</value>", "abcd", 4);
    want_string("<value><string>x<!-- c -->y</string></value>", "xy", 2);
    want_string("<value>caf\xc3\xa9</value>", "caf\xc3\xa9", 5);
    /* numbers in untyped values stay strings: typing is the schema's job */
    want_string("<value>123</value>", "123", 3);
}

static void test_ints(void **state) {
    want_int("<value><int>5</int></value>", 5);
    want_int("<value><i4>-17</i4></value>", -17);
    want_int("<value><i8>9223372036854775807</i8></value>", INT64_MAX);
    want_int("<value><i8>-9223372036854775808</i8></value>", INT64_MIN);
    want_int("<value><int> 42 </int></value>", 42);
    want_int("<value><int>+7</int></value>", 7);
    want_int("<value><int>0007</int></value>", 7);
    want_int("<value>\n  <i4>1</i4>\n</value>", 1);

    want_error("<value><i8>9223372036854775808</i8></value>", -EINVAL);
    want_error("<value><i8>-9223372036854775809</i8></value>", -EINVAL);
    want_error("<value><i8>99999999999999999999999</i8></value>", -EINVAL);
    want_error("<value><int>abc</int></value>", -EINVAL);
    want_error("<value><int></int></value>", -EINVAL);
    want_error("<value><int/></value>", -EINVAL);
    want_error("<value><int>-</int></value>", -EINVAL);
    want_error("<value><int>1.5</int></value>", -EINVAL);
    want_error("<value><int>1 2</int></value>", -EINVAL);
    want_error("<value><int>0x10</int></value>", -EINVAL);
    want_error("<value><int><i4>1</i4></int></value>", -EINVAL);
}

static void test_bool_double_nil(void **state) {
    xapi_value v;
    struct {
        const char *xml;
        bool b;
    } bools[] = {
        {"<value><boolean>1</boolean></value>", true},   {"<value><boolean> 1\n</boolean></value>", true},
        {"<value><boolean>0</boolean></value>", false},  {"<value><boolean>true</boolean></value>", false},
        {"<value><boolean></boolean></value>", false},   {"<value><boolean>11</boolean></value>", false},
    };

    for (size_t k = 0; k < sizeof(bools) / sizeof(bools[0]); k++) {
        assert_int_equal(decode_one(bools[k].xml, &v), 0);
        assert_int_equal(v.kind, XAPI_V_BOOL);
        assert_int_equal(v.b, bools[k].b);
    }

    assert_int_equal(decode_one("<value><double>1.5</double></value>", &v), 0);
    assert_int_equal(v.kind, XAPI_V_FLOAT);
    assert_true(v.f == 1.5);
    assert_int_equal(decode_one("<value><double> -2e3 </double></value>", &v), 0);
    assert_true(v.f == -2000.0);
    assert_int_equal(decode_one("<value><double>7</double></value>", &v), 0);
    assert_true(v.f == 7.0);
    want_error("<value><double>abc</double></value>", -EINVAL);
    want_error("<value><double></double></value>", -EINVAL);
    want_error("<value><double>1.5x</double></value>", -EINVAL);

    assert_int_equal(decode_one("<value><nil/></value>", &v), 0);
    assert_int_equal(v.kind, XAPI_V_NIL);
    assert_int_equal(decode_one("<value> <nil></nil> </value>", &v), 0);
    assert_int_equal(v.kind, XAPI_V_NIL);
    want_error("<value><nil>x</nil></value>", -EINVAL);
}

static void test_datetimes(void **state) {
    const char *ok[] = {
        "<value><dateTime.iso8601>20240101T00:00:00Z</dateTime.iso8601></value>",
        "<value><dateTime.iso8601>20240101T00:00:00</dateTime.iso8601></value>",
        "<value><dateTime.iso8601> 2024-01-01T00:00:00Z </dateTime.iso8601></value>",
        "<value><dateTime.iso8601>2024-01-01T01:00:00.250+01:00</dateTime.iso8601></value>",
        "<value><dateTime.iso8601>20231231T23:00:00-0100</dateTime.iso8601></value>",
        NULL,
    };
    xapi_value v;

    for (int k = 0; ok[k]; k++) {
        assert_int_equal(decode_one(ok[k], &v), 0);
        assert_int_equal(v.kind, XAPI_V_DATETIME);
        assert_int_equal(v.i, 1704067200);
    }
    want_error("<value><dateTime.iso8601>yesterday</dateTime.iso8601></value>", -EINVAL);
    want_error("<value><dateTime.iso8601></dateTime.iso8601></value>", -EINVAL);
    want_error("<value><dateTime.iso8601>20241301T00:00:00Z</dateTime.iso8601></value>", -EINVAL);
}

static void test_base64(void **state) {
    want_string("<value><base64>aGVsbG8=</base64></value>", "hello", 5);
    want_string("<value><base64>aGVsbG8</base64></value>", "hello", 5);
    want_string("<value><base64>aGVs\n bG8h</base64></value>", "hello!", 6);
    want_string("<value><base64>AGEA</base64></value>", "\0a\0", 3); /* NULs kept, length exact */
    want_string("<value><base64>AA==</base64></value>", "\0", 1);
    want_string("<value><base64></base64></value>", "", 0);
    want_string("<value><base64>+/+/</base64></value>", "\xfb\xff\xbf", 3);
    want_error("<value><base64>a*b=</base64></value>", -EINVAL);
    want_error("<value><base64>aGVsbG8=x</base64></value>", -EINVAL);
    want_error("<value><base64>a</base64></value>", -EINVAL);
    want_error("<value><base64>aGVsb===</base64></value>", -EINVAL);
}

static void test_arrays_structs(void **state) {
    xapi_value v, *m;

    assert_int_equal(decode_one("<value><array><data><value>a</value><value><i4>1</i4></value>"
                                "<value><array><data/></array></value></data></array></value>",
                                &v),
                     0);
    assert_int_equal(v.kind, XAPI_V_ARRAY);
    assert_int_equal(v.n, 3);
    assert_string_equal(v.items[0].s, "a");
    assert_int_equal(v.items[1].i, 1);
    assert_int_equal(v.items[2].kind, XAPI_V_ARRAY);
    assert_int_equal(v.items[2].n, 0);
    xapi_value_free(&v);

    assert_int_equal(decode_one("<value><array/></value>", &v), 0);
    assert_int_equal(v.kind, XAPI_V_ARRAY);
    assert_int_equal(v.n, 0);
    assert_int_equal(decode_one("<value>\n<array>\n<data>\n</data>\n</array>\n</value>", &v), 0);
    assert_int_equal(v.n, 0);

    assert_int_equal(decode_one("<value><struct>\n<member><name>name_label</name><value>vm1</value></member>\n"
                                "<member><value><boolean>1</boolean></value><name>flag</name></member>"
                                "<member><name></name><value/></member>"
                                "<member><name> sp ace </name><value><struct/></value></member>"
                                "</struct></value>",
                                &v),
                     0);
    assert_int_equal(v.kind, XAPI_V_STRUCT);
    assert_int_equal(v.n, 4);
    assert_string_equal(xapi_struct_get(&v, "name_label")->s, "vm1");
    assert_true(xapi_struct_get(&v, "flag")->b);
    assert_non_null(xapi_struct_get(&v, ""));
    m = xapi_struct_get(&v, " sp ace ");
    assert_non_null(m);
    assert_int_equal(m->kind, XAPI_V_STRUCT);
    xapi_value_free(&v);

    want_error("<value><array><value>a</value></array></value>", -EINVAL);
    want_error("<value><array><data/><data/></array></value>", -EINVAL);
    want_error("<value><array><data>text<value>a</value></data></array></value>", -EINVAL);
    want_error("<value><array><data><string>a</string></data></array></value>", -EINVAL);
    want_error("<value><struct><member><name>a</name></member></struct></value>", -EINVAL);
    want_error("<value><struct><member><value>a</value></member></struct></value>", -EINVAL);
    want_error("<value><struct><member><name>a</name><value>1</value><value>2</value></member></struct></value>",
                 -EINVAL);
    want_error("<value><struct><member><name>a<b/></name><value>1</value></member></struct></value>", -EINVAL);
    want_error("<value><struct><value>1</value></struct></value>", -EINVAL);
}

static void test_duplicate_members(void **state) {
    xapi_buf b = XAPI_BUF_INIT;
    xapi_value v;

    assert_int_equal(decode_one("<value><struct><member><name>a</name><value>1</value></member>"
                                "<member><name>b</name><value>2</value></member>"
                                "<member><name>a</name><value>3</value></member>"
                                "<member><name>a</name><value>4</value></member></struct></value>",
                                &v),
                     0);
    assert_int_equal(v.n, 2);
    assert_string_equal(v.members[0].name, "a");
    assert_string_equal(v.members[0].value.s, "4");
    assert_string_equal(v.members[1].name, "b");
    xapi_value_free(&v);

    /* the large-struct path (sorting) agrees */
    xapi_buf_puts(&b, "<value><struct>");
    for (int k = 0; k < 100; k++)
        xapi_buf_printf(&b, "<member><name>k%d</name><value>%d</value></member>", k % 40, k);
    xapi_buf_puts(&b, "</struct></value>");
    assert_int_equal(decode_one(b.data, &v), 0);
    assert_int_equal(v.n, 40);
    for (int k = 0; k < 40; k++) {
        char name[16], val[16];
        snprintf(name, sizeof(name), "k%d", k);
        snprintf(val, sizeof(val), "%d", k < 20 ? k + 80 : k + 40);
        assert_string_equal(v.members[k].name, name);
        assert_string_equal(v.members[k].value.s, val);
    }
    xapi_value_free(&v);
    xapi_buf_free(&b);
}

static void test_typed_value_shapes(void **state) {
    /* text around a type element: not allowed unless whitespace */
    want_error("<value>x<int>1</int></value>", -EINVAL);
    want_error("<value><int>1</int>x</value>", -EINVAL);
    want_error("<value><int>1</int><int>2</int></value>", -EINVAL);
    want_error("<value><foo>1</foo></value>", -EINVAL);
    want_error("<value><value>1</value></value>", -EINVAL);
    want_error("<value><string><b>x</b></string></value>", -EINVAL);
}

static void test_malformed(void **state) {
    xapi_request req = {.method = (char *)"sentinel"};
    const char *bad[] = {
        "",
        "not xml at all",
        "<methodCall>",
        "<methodCall><methodName>a</methodName>",
        "<methodCall><methodName>a</methodName><params><param><value>x</value></param></params>",
        "<methodCall><methodName>a</methodName></methodCall><extra/>",
        "<methodResponse><params/></methodResponse>",
        "<methodCall><params/></methodCall>",
        "<methodCall><methodName></methodName></methodCall>",
        "<methodCall><methodName>  </methodName></methodCall>",
        "<methodCall><methodName>a</methodName><methodName>b</methodName></methodCall>",
        "<methodCall><methodName>a</methodName><params/><params/></methodCall>",
        "<methodCall><methodName>a</methodName><other/></methodCall>",
        "<methodCall>text<methodName>a</methodName></methodCall>",
        "<methodCall><methodName>a<b/></methodName></methodCall>",
        "<methodCall><methodName>a</methodName><params><value>x</value></params></methodCall>",
        "<methodCall><methodName>a</methodName><params><param></param></params></methodCall>",
        "<methodCall><methodName>a</methodName><params><param><value>1</value><value>2</value></param></params>"
        "</methodCall>",
        "<methodCall><methodName>a</methodName><params><param><string>1</string></param></params></methodCall>",
        "<methodCall><methodName>a</methodName><params><param><value>&undefined;</value></param></params>"
        "</methodCall>",
        "<methodCall><methodName>a</methodName><params><param><value>caf\xe9</value></param></params>"
        "</methodCall>", /* not UTF-8: libxml2 refuses it */
        "<methodCall><methodName>a</methodName><params><param><value>x</valu></param></params></methodCall>",
        NULL,
    };

    for (int k = 0; bad[k]; k++) {
        assert_int_equal(decode(bad[k], &req), -EINVAL);
        assert_string_equal(req.method, "sentinel"); /* untouched */
    }
    assert_int_equal(xapi_xmlrpc_decode(NULL, 0, &req), -EINVAL);

    /* the method name cap */
    char name[XAPI_RPC_MAX_METHOD + 2];
    xapi_buf b = XAPI_BUF_INIT;
    memset(name, 'm', sizeof(name));
    name[XAPI_RPC_MAX_METHOD] = 0;
    xapi_buf_printf(&b, "<methodCall><methodName>%s</methodName></methodCall>", name);
    assert_int_equal(decode(b.data, &req), 0);
    assert_int_equal(strlen(req.method), XAPI_RPC_MAX_METHOD);
    xapi_request_free(&req);
    name[XAPI_RPC_MAX_METHOD] = 'm';
    name[XAPI_RPC_MAX_METHOD + 1] = 0;
    xapi_buf_truncate(&b, 0);
    xapi_buf_printf(&b, "<methodCall><methodName>%s</methodName></methodCall>", name);
    assert_int_equal(decode(b.data, &req), -EINVAL);
    xapi_buf_free(&b);

    /* a NUL byte in the body */
    static const char nul[] = "<methodCall><methodName>a\0b</methodName></methodCall>";
    req.method = (char *)"sentinel";
    assert_int_equal(xapi_xmlrpc_decode(nul, sizeof(nul) - 1, &req), -EINVAL);
}

static void test_doctype_rejected(void **state) {
    xapi_request req;
    const char *bad[] = {
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]>"
        "<methodCall><methodName>&lol2;</methodName></methodCall>",
        "<!DOCTYPE methodCall SYSTEM \"http://example.com/x.dtd\"><methodCall><methodName>a</methodName>"
        "</methodCall>",
        "<!DOCTYPE methodCall [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><methodCall><methodName>&xxe;"
        "</methodName></methodCall>",
        "<!doctype methodCall><methodCall><methodName>a</methodName></methodCall>",
        "<methodCall><methodName>a</methodName><!ENTITY x \"y\"></methodCall>",
        NULL,
    };

    for (int k = 0; bad[k]; k++)
        assert_int_equal(decode(bad[k], &req), -EINVAL);

    /* a declared encoding cannot smuggle a DOCTYPE past the byte scan */
    static const char utf16[] = "<\0?\0x\0m\0l\0 \0v\0e\0r\0s\0i\0o\0n\0=\0\"\0001\0.\0000\0\"\0 \0"
                                "e\0n\0c\0o\0d\0i\0n\0g\0=\0\"\0U\0T\0F\0-\0001\0006\0\"\0?\0>\0"
                                "<\0!\0D\0O\0C\0T\0Y\0P\0E\0 \0m\0>\0<\0m\0/\0>\0";
    assert_int_equal(xapi_xmlrpc_decode(utf16, sizeof(utf16) - 1, &req), -EINVAL);
    static const char bom16[] = "\xff\xfe<\0m\0e\0t\0h\0o\0d\0C\0a\0l\0l\0/\0>\0";
    assert_int_equal(xapi_xmlrpc_decode(bom16, sizeof(bom16) - 1, &req), -EINVAL);
    /* nor any body that is not UTF-8: a well-formed UTF-16 call is refused too */
    static const char call16[] = "<\0m\0e\0t\0h\0o\0d\0C\0a\0l\0l\0>\0<\0m\0e\0t\0h\0o\0d\0N\0a\0m\0e\0>\0"
                                 "a\0<\0/\0m\0e\0t\0h\0o\0d\0N\0a\0m\0e\0>\0<\0/\0m\0e\0t\0h\0o\0d\0C\0a\0l\0l\0>\0";
    assert_int_equal(xapi_xmlrpc_decode(call16, sizeof(call16) - 1, &req), -EINVAL);
    /* bytes that are not UTF-8 are malformed, wherever they are */
    assert_int_equal(decode(CALL_HEAD "<param><value>ab\xff" "cd</value></param>" CALL_TAIL, &req), -EINVAL);
    assert_int_equal(decode(CALL_HEAD "<param><value>\xc3(</value></param>" CALL_TAIL, &req), -EINVAL);
    assert_int_equal(decode("<methodCall><methodName>a\xed\xa0\x80</methodName></methodCall>", &req), -EINVAL);
    /* a UTF-8 BOM is fine */
    assert_int_equal(decode("\xef\xbb\xbf<methodCall><methodName>a</methodName></methodCall>", &req), 0);
    xapi_request_free(&req);

    /* the declared encoding is ignored: bytes are UTF-8 */
    assert_int_equal(decode("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><methodCall><methodName>a"
                            "</methodName><params><param><value>caf\xc3\xa9</value></param></params></methodCall>",
                            &req),
                     0);
    assert_string_equal(req.params.items[0].s, "caf\xc3\xa9");
    xapi_request_free(&req);

    /* comments and CDATA starting with "<!" are fine */
    assert_int_equal(decode("<!-- hi --><methodCall><!-- x --><methodName>a</methodName></methodCall>", &req), 0);
    xapi_request_free(&req);
}

static void nest(xapi_buf *b, int depth, const char *open, const char *close, const char *leaf) {
    xapi_buf_puts(b, CALL_HEAD "<param>");
    for (int k = 0; k < depth; k++)
        xapi_buf_puts(b, open);
    xapi_buf_puts(b, leaf);
    for (int k = 0; k < depth; k++)
        xapi_buf_puts(b, close);
    xapi_buf_puts(b, "</param>" CALL_TAIL);
}

static void test_depth(void **state) {
    xapi_buf b = XAPI_BUF_INIT;
    xapi_request req;
    const char *ao = "<value><array><data>", *ac = "</data></array></value>";
    const char *so = "<value><struct><member><name>n</name>", *sc = "</member></struct></value>";

    nest(&b, XAPI_RPC_MAX_DEPTH, ao, ac, "<value>leaf</value>");
    assert_int_equal(xapi_xmlrpc_decode(b.data, b.len, &req), 0);
    xapi_request_free(&req);
    xapi_buf_truncate(&b, 0);

    nest(&b, XAPI_RPC_MAX_DEPTH + 1, ao, ac, "<value>leaf</value>");
    assert_int_equal(xapi_xmlrpc_decode(b.data, b.len, &req), -E2BIG);
    xapi_buf_truncate(&b, 0);

    nest(&b, XAPI_RPC_MAX_DEPTH, so, sc, "<value>leaf</value>");
    assert_int_equal(xapi_xmlrpc_decode(b.data, b.len, &req), 0);
    xapi_request_free(&req);
    xapi_buf_truncate(&b, 0);

    nest(&b, XAPI_RPC_MAX_DEPTH + 1, so, sc, "<value>leaf</value>");
    assert_int_equal(xapi_xmlrpc_decode(b.data, b.len, &req), -E2BIG);
    xapi_buf_truncate(&b, 0);

    /* far past libxml2's own element depth limit */
    nest(&b, 5000, ao, ac, "<value/>");
    assert_int_equal(xapi_xmlrpc_decode(b.data, b.len, &req), -E2BIG);
    xapi_buf_free(&b);
}

static void test_element_cap(void **state) {
    xapi_buf b = XAPI_BUF_INIT;
    xapi_request req;

    xapi_buf_puts(&b, CALL_HEAD "<param><value><array><data>");
    for (int k = 0; k < 99000; k++)
        xapi_buf_puts(&b, "<value/>");
    xapi_buf_puts(&b, "</data></array></value></param>" CALL_TAIL);
    assert_int_equal(xapi_xmlrpc_decode(b.data, b.len, &req), 0);
    assert_int_equal(req.params.items[0].n, 99000);
    xapi_request_free(&req);
    xapi_buf_truncate(&b, 0);

    xapi_buf_puts(&b, CALL_HEAD "<param><value><array><data>");
    for (int k = 0; k < 100001; k++)
        xapi_buf_puts(&b, "<value/>");
    xapi_buf_puts(&b, "</data></array></value></param>" CALL_TAIL);
    assert_int_equal(xapi_xmlrpc_decode(b.data, b.len, &req), -E2BIG);
    xapi_buf_free(&b);
}

static void test_quiet(void **state) {
    char path[] = "/tmp/test_xmlrpc_stderr_XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    xapi_request req;
    off_t size;

    assert_true(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    assert_int_equal(decode("<methodCall><methodName>a</methodName", &req), -EINVAL);
    assert_int_equal(decode("<methodCall><methodName>&nope;</methodName></methodCall>", &req), -EINVAL);
    assert_int_equal(decode("<a><b></a>", &req), -EINVAL);
    assert_int_equal(decode("<?xml version=\"1.0\" encoding=\"bogus\"?><a/>", &req), -EINVAL);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    size = lseek(fd, 0, SEEK_END);
    close(fd);
    unlink(path);
    assert_int_equal(size, 0);
}

/* The parser context a thread reuses carries nothing from one request to the
 * next: not an error, not an encoding, and not an ever-growing dictionary. */
static void test_parser_reuse(void **state) {
    const char *good = CALL_HEAD "<param><value>ok</value></param>" CALL_TAIL;
    xapi_request req;

    for (int round = 0; round < 3; round++) {
        assert_int_equal(decode("<methodCall><methodName>a</methodName", &req), -EINVAL);
        assert_int_equal(decode("<?xml version=\"1.0\" encoding=\"bogus\"?><a/>", &req), -EINVAL);
        assert_int_equal(decode(good, &req), 0);
        assert_string_equal(req.method, "VM.get_record");
        assert_string_equal(req.params.items[0].s, "ok");
        xapi_request_free(&req);
    }
    /* Thousands of made-up element names: refused, and the next call still decodes. */
    for (int i = 0; i < 2000; i++) {
        char body[128];
        snprintf(body, sizeof body, "<methodCall><made-up-%d/></methodCall>", i);
        assert_int_equal(decode(body, &req), -EINVAL);
    }
    assert_int_equal(decode(good, &req), 0);
    assert_string_equal(req.params.items[0].s, "ok");
    xapi_request_free(&req);
}

/* --- <methodResponse>, as host plugins print them ---------------------------- */

static int decode_response(const char *body, xapi_value *ret, bool *fault, char *why, size_t whylen) {
    return xapi_xmlrpc_decode_response(body, strlen(body), ret, fault, why, whylen);
}

static void test_response(void **state) {
    xapi_value v = {0};
    bool fault = true;
    char why[128];

    /* What Python's xmlrpc.client.dumps(..., methodresponse=True) prints. */
    assert_int_equal(decode_response("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><struct>\n"
                                     "<member>\n<name>Status</name>\n<value><string>Success</string></value>\n"
                                     "</member>\n</struct></value>\n</param>\n</params>\n</methodResponse>\n",
                                     &v, &fault, why, sizeof why),
                     0);
    assert_false(fault);
    assert_int_equal(v.kind, XAPI_V_ARRAY);
    assert_int_equal(v.n, 1);
    assert_string_equal(xapi_struct_get(&v.items[0], "Status")->s, "Success");
    xapi_value_free(&v);

    assert_int_equal(decode_response("<methodResponse><params></params></methodResponse>", &v, &fault, why,
                                     sizeof why),
                     0);
    assert_int_equal(v.n, 0);
    xapi_value_free(&v);

    assert_int_equal(decode_response("<methodResponse><fault><value><struct><member><name>faultCode</name>"
                                     "<value><int>42</int></value></member><member><name>faultString</name>"
                                     "<value>broken</value></member></struct></value></fault></methodResponse>",
                                     &v, &fault, why, sizeof why),
                     0);
    assert_true(fault);
    assert_int_equal(xapi_struct_get(&v, "faultCode")->i, 42);
    assert_string_equal(xapi_struct_get(&v, "faultString")->s, "broken");
    xapi_value_free(&v);
}

static void test_response_errors(void **state) {
    static const char *const not_responses[] = {
        "<methodCall><methodName>x</methodName></methodCall>",
        "<methodResponse></methodResponse>",
        "<methodResponse><params/><fault><value>x</value></fault></methodResponse>",
        "<methodResponse><fault></fault></methodResponse>",
        "<methodResponse><params><param><nope/></param></params></methodResponse>",
    };
    xapi_value v = {0};
    bool fault;
    char why[128];

    for (size_t i = 0; i < sizeof not_responses / sizeof not_responses[0]; i++)
        assert_int_equal(decode_response(not_responses[i], &v, &fault, why, sizeof why), -EBADMSG);
    /* Not XML: -EINVAL with the parser's reason. */
    assert_int_equal(decode_response("this is not XML\n", &v, &fault, why, sizeof why), -EINVAL);
    assert_true(strlen(why) > 0);
    assert_int_equal(xapi_xmlrpc_decode_response("", 0, &v, &fault, why, sizeof why), -EINVAL);
    assert_string_equal(why, "empty document");
    assert_int_equal(decode_response("<!DOCTYPE x><methodResponse/>", &v, &fault, why, sizeof why), -EINVAL);
    assert_int_equal(decode_response("<methodResponse><params><param><value>caf\xe9</value></param></params>"
                                     "</methodResponse>",
                                     &v, &fault, why, sizeof why),
                     -EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_basic),
        cmocka_unit_test(test_missing_params),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_ints),
        cmocka_unit_test(test_bool_double_nil),
        cmocka_unit_test(test_datetimes),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_arrays_structs),
        cmocka_unit_test(test_duplicate_members),
        cmocka_unit_test(test_typed_value_shapes),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_doctype_rejected),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_element_cap),
        cmocka_unit_test(test_quiet),
        cmocka_unit_test(test_parser_reuse),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_response_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
