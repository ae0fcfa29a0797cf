/* Unit tests: JSON-RPC 1.0 / 2.0 request decoding. */
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

#include "xapi/buf.h"
#include "xapi/rpc.h"

static int decode(const char *body, xapi_request *req) {
    return xapi_jsonrpc_decode(body, strlen(body), req);
}

/* Decodes a v1 call whose params are [json]; returns the value. */
static int decode_one(const char *json, xapi_value *ret) {
    xapi_buf b = XAPI_BUF_INIT;
    xapi_request req;
    int rc;

    xapi_buf_printf(&b, "{\"method\":\"m\",\"params\":[%s],\"id\":1}", json);
    rc = xapi_jsonrpc_decode(b.data, b.len, &req);
    xapi_buf_free(&b);
    if (rc < 0)
        return rc;
    assert_int_equal(req.params.n, 1);
    *ret = req.params.items[0];
    req.params.n = 0;
    xapi_request_free(&req);
    return 0;
}

static void test_v1(void **state) {
    xapi_request req;

    assert_int_equal(decode("{\"method\":\"VM.get_all\",\"params\":[\"OpaqueRef:s\"],\"id\":\"xyz\"}", &req), 0);
    assert_string_equal(req.method, "VM.get_all");
    assert_int_equal(req.json_version, 1);
    assert_string_equal(req.json_id, "\"xyz\"");
    assert_int_equal(req.params.kind, XAPI_V_ARRAY);
    assert_int_equal(req.params.n, 1);
    assert_string_equal(req.params.items[0].s, "OpaqueRef:s");
    xapi_request_free(&req);

    /* member order does not matter; whitespace around is fine */
    assert_int_equal(decode(" \n{ \"id\" : 7 , \"params\" : [ ] , \"method\" : \"a\" }\r\n\t ", &req), 0);
    assert_int_equal(req.json_version, 1);
    assert_string_equal(req.json_id, "7");
    assert_int_equal(req.params.n, 0);
    xapi_request_free(&req);

    /* unknown members are ignored */
    assert_int_equal(decode("{\"method\":\"a\",\"params\":[],\"id\":1,\"extra\":{\"x\":[1,2]}}", &req), 0);
    xapi_request_free(&req);
}

static void test_v2(void **state) {
    xapi_request req;

    assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"method\":\"VM.get_all\",\"params\":[\"s\"],\"id\":3}", &req), 0);
    assert_int_equal(req.json_version, 2);
    assert_string_equal(req.json_id, "3");
    assert_int_equal(req.params.n, 1);
    xapi_request_free(&req);

    /* params absent or null: none */
    assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"method\":\"system.listMethods\",\"id\":\"a\"}", &req), 0);
    assert_int_equal(req.params.kind, XAPI_V_ARRAY);
    assert_int_equal(req.params.n, 0);
    xapi_request_free(&req);
    assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":null,\"id\":1}", &req), 0);
    assert_int_equal(req.params.n, 0);
    xapi_request_free(&req);

    /* params object: one struct param */
    assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":{\"a\":1,\"b\":\"x\"},\"id\":1}", &req), 0);
    assert_int_equal(req.params.n, 1);
    assert_int_equal(req.params.items[0].kind, XAPI_V_STRUCT);
    assert_int_equal(req.params.items[0].n, 2);
    assert_int_equal(xapi_struct_get(&req.params.items[0], "a")->i, 1);
    xapi_request_free(&req);
}

static void test_versions_and_shapes(void **state) {
    xapi_request req = {.method = (char *)"sentinel"};
    const char *bad[] = {
        /* jsonrpc other than "2.0" */
        "{\"jsonrpc\":\"1.0\",\"method\":\"m\",\"params\":[],\"id\":1}",
        "{\"jsonrpc\":2.0,\"method\":\"m\",\"params\":[],\"id\":1}",
        "{\"jsonrpc\":\"2.0 \",\"method\":\"m\",\"params\":[],\"id\":1}",
        "{\"jsonrpc\":null,\"method\":\"m\",\"params\":[],\"id\":1}",
        /* v1: params mandatory array */
        "{\"method\":\"m\",\"id\":1}",
        "{\"method\":\"m\",\"params\":null,\"id\":1}",
        "{\"method\":\"m\",\"params\":{\"a\":1},\"id\":1}",
        "{\"method\":\"m\",\"params\":\"x\",\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":5,\"id\":1}",
        /* method */
        "{\"params\":[],\"id\":1}",
        "{\"method\":5,\"params\":[],\"id\":1}",
        "{\"method\":\"\",\"params\":[],\"id\":1}",
        "{\"method\":null,\"params\":[],\"id\":1}",
        "{\"method\":\"a\\u0000b\",\"params\":[],\"id\":1}",
        /* id kinds */
        "{\"method\":\"m\",\"params\":[]}",
        "{\"method\":\"m\",\"params\":[],\"id\":null}",
        "{\"method\":\"m\",\"params\":[],\"id\":1.5}",
        "{\"method\":\"m\",\"params\":[],\"id\":true}",
        "{\"method\":\"m\",\"params\":[],\"id\":[1]}",
        "{\"method\":\"m\",\"params\":[],\"id\":{}}",
        "{\"method\":\"m\",\"params\":[],\"id\":99999999999999999999}",
        /* not an object */
        "[]",
        "\"x\"",
        "null",
        NULL,
    };

    for (int k = 0; bad[k]; k++) {
        assert_int_equal(decode(bad[k], &req), -EINVAL);
        assert_string_equal(req.method, "sentinel"); /* untouched */
    }
}

static void test_ids(void **state) {
    xapi_request req;

    assert_int_equal(decode("{\"method\":\"m\",\"params\":[],\"id\":-42}", &req), 0);
    assert_string_equal(req.json_id, "-42");
    xapi_request_free(&req);
    assert_int_equal(decode("{\"method\":\"m\",\"params\":[],\"id\":9223372036854775807}", &req), 0);
    assert_string_equal(req.json_id, "9223372036854775807");
    xapi_request_free(&req);
    assert_int_equal(decode("{\"method\":\"m\",\"params\":[],\"id\":\"\"}", &req), 0);
    assert_string_equal(req.json_id, "\"\"");
    xapi_request_free(&req);
    assert_int_equal(decode("{\"method\":\"m\",\"params\":[],\"id\":\"a/b\\\"c\\u00e9\"}", &req), 0);
    assert_string_equal(req.json_id, "\"a/b\\\"c\xc3\xa9\"");
    xapi_request_free(&req);
}

static void test_types(void **state) {
    xapi_value v;

    assert_int_equal(decode_one("\"str\"", &v), 0);
    assert_int_equal(v.kind, XAPI_V_STRING);
    assert_string_equal(v.s, "str");
    xapi_value_free(&v);

    assert_int_equal(decode_one("\"\"", &v), 0);
    assert_int_equal(v.kind, XAPI_V_STRING);
    assert_ptr_equal(v.s, xapi_empty_string);

    assert_int_equal(decode_one("\"a\\u0000b\\n\\u00e9\\ud83d\\ude00\"", &v), 0);
    assert_int_equal(v.n, 10);
    assert_memory_equal(v.s, "a\0b\n\xc3\xa9\xf0\x9f\x98\x80", 11);
    xapi_value_free(&v);

    assert_int_equal(decode_one("12345", &v), 0);
    assert_int_equal(v.kind, XAPI_V_INT);
    assert_int_equal(v.i, 12345);
    assert_int_equal(decode_one("-0", &v), 0);
    assert_int_equal(v.kind, XAPI_V_INT);
    assert_int_equal(v.i, 0);

    assert_int_equal(decode_one("1.5", &v), 0);
    assert_int_equal(v.kind, XAPI_V_FLOAT);
    assert_true(v.f == 1.5);
    assert_int_equal(decode_one("1e3", &v), 0);
    assert_int_equal(v.kind, XAPI_V_FLOAT);
    assert_true(v.f == 1000.0);
    assert_int_equal(decode_one("2.0", &v), 0);
    assert_int_equal(v.kind, XAPI_V_FLOAT);

    assert_int_equal(decode_one("true", &v), 0);
    assert_int_equal(v.kind, XAPI_V_BOOL);
    assert_true(v.b);
    assert_int_equal(decode_one("false", &v), 0);
    assert_false(v.b);
    assert_int_equal(decode_one("null", &v), 0);
    assert_int_equal(v.kind, XAPI_V_NIL);

    assert_int_equal(decode_one("[1,\"a\",[],{}]", &v), 0);
    assert_int_equal(v.kind, XAPI_V_ARRAY);
    assert_int_equal(v.n, 4);
    assert_int_equal(v.items[2].kind, XAPI_V_ARRAY);
    assert_int_equal(v.items[3].kind, XAPI_V_STRUCT);
    xapi_value_free(&v);

    assert_int_equal(decode_one("{\"b\":1,\"a\":{\"x\":null},\"\":\"e\"}", &v), 0);
    assert_int_equal(v.kind, XAPI_V_STRUCT);
    assert_int_equal(v.n, 3);
    assert_string_equal(v.members[0].name, "b");
    assert_string_equal(v.members[1].name, "a");
    assert_string_equal(v.members[2].name, "");
    xapi_value_free(&v);

    /* duplicate keys: last value wins, at the first place */
    assert_int_equal(decode_one("{\"a\":1,\"b\":2,\"a\":3}", &v), 0);
    assert_int_equal(v.n, 2);
    assert_string_equal(v.members[0].name, "a");
    assert_int_equal(v.members[0].value.i, 3);
    xapi_value_free(&v);
}

static void test_huge_ints(void **state) {
    xapi_value v = xapi_value_int(42);

    assert_int_equal(decode_one("9223372036854775807", &v), 0);
    assert_true(v.i == INT64_MAX);
    assert_int_equal(decode_one("-9223372036854775808", &v), 0);
    assert_true(v.i == INT64_MIN);
    assert_int_equal(decode_one("[9223372036854775807, -9223372036854775808, \"-99999999999999999999\"]", &v), 0);
    xapi_value_free(&v);

    v = xapi_value_int(42);
    assert_int_equal(decode_one("9223372036854775808", &v), -EINVAL);
    assert_int_equal(decode_one("18446744073709551615", &v), -EINVAL);
    assert_int_equal(decode_one("18446744073709551616", &v), -EINVAL);
    assert_int_equal(decode_one("99999999999999999999999999", &v), -EINVAL);
    assert_int_equal(decode_one("-9223372036854775809", &v), -EINVAL);
    assert_int_equal(decode_one("-99999999999999999999999999", &v), -EINVAL);
    assert_int_equal(decode_one("{\"a\":[-9223372036854775809]}", &v), -EINVAL);
    assert_int_equal(v.i, 42);

    /* big numbers with a fraction or exponent are floats */
    assert_int_equal(decode_one("99999999999999999999.0", &v), 0);
    assert_int_equal(v.kind, XAPI_V_FLOAT);
    assert_int_equal(decode_one("-1e30", &v), 0);
    assert_int_equal(v.kind, XAPI_V_FLOAT);
}

static void test_malformed(void **state) {
    xapi_request req = {.method = (char *)"sentinel"};
    const char *bad[] = {
        "",
        "   ",
        "{",
        "{\"method\":\"m\",\"params\":[],\"id\":1",
        "{\"method\":\"m\",\"params\":[],\"id\":1}}",
        "{\"method\":\"m\",\"params\":[],\"id\":1} x",
        "{\"method\":\"m\",\"params\":[],\"id\":1}{}",
        "{\"method\":\"m\",\"params\":[1,],\"id\":1}",
        "{'method':'m','params':[],'id':1}",
        "{\"method\":\"m\",\"params\":[01],\"id\":1}",
        "{\"method\":\"m\",\"params\":[tru],\"id\":1}",
        "{\"method\":\"m\",\"params\":[\"unterminated],\"id\":1}",
        "{method:\"m\",\"params\":[],\"id\":1}",
        "<methodCall/>",
        NULL,
    };

    for (int k = 0; bad[k]; k++) {
        assert_int_equal(decode(bad[k], &req), -EINVAL);
        assert_string_equal(req.method, "sentinel");
    }
    assert_int_equal(xapi_jsonrpc_decode(NULL, 0, &req), -EINVAL);

    /* the length bounds the body: a valid prefix then a NUL is not enough */
    static const char nul[] = "{\"method\":\"m\",\"params\":[],\"id\":1}\0garbage";
    assert_int_equal(xapi_jsonrpc_decode(nul, sizeof(nul) - 1, &req), -EINVAL);
    /* and a body may be decoded from a non-terminated buffer */
    static const char part[] = "{\"method\":\"m\",\"params\":[],\"id\":1}XYZ";
    assert_int_equal(xapi_jsonrpc_decode(part, sizeof(part) - 4, &req), 0);
    xapi_request_free(&req);

    /* method name cap */
    xapi_buf b = XAPI_BUF_INIT;
    xapi_buf_puts(&b, "{\"method\":\"");
    for (int k = 0; k < XAPI_RPC_MAX_METHOD; k++)
        xapi_buf_putc(&b, 'm');
    xapi_buf_puts(&b, "\",\"params\":[],\"id\":1}");
    assert_int_equal(xapi_jsonrpc_decode(b.data, b.len, &req), 0);
    xapi_request_free(&req);
    xapi_buf_truncate(&b, 0);
    xapi_buf_puts(&b, "{\"method\":\"");
    for (int k = 0; k < XAPI_RPC_MAX_METHOD + 1; k++)
        xapi_buf_putc(&b, 'm');
    xapi_buf_puts(&b, "\",\"params\":[],\"id\":1}");
    assert_int_equal(xapi_jsonrpc_decode(b.data, b.len, &req), -EINVAL);
    xapi_buf_free(&b);
}

static void nest(xapi_buf *b, int depth, const char *open, const char *close) {
    xapi_buf_puts(b, "{\"method\":\"m\",\"id\":1,\"params\":[");
    for (int k = 0; k < depth; k++)
        xapi_buf_puts(b, open);
    xapi_buf_puts(b, "1");
    for (int k = 0; k < depth; k++)
        xapi_buf_puts(b, close);
    xapi_buf_puts(b, "]}");
}

static void test_depth(void **state) {
    xapi_buf b = XAPI_BUF_INIT;
    xapi_request req;

    nest(&b, XAPI_RPC_MAX_DEPTH, "[", "]");
    assert_int_equal(xapi_jsonrpc_decode(b.data, b.len, &req), 0);
    xapi_request_free(&req);
    xapi_buf_truncate(&b, 0);

    nest(&b, XAPI_RPC_MAX_DEPTH + 1, "[", "]");
    assert_int_equal(xapi_jsonrpc_decode(b.data, b.len, &req), -E2BIG);
    xapi_buf_truncate(&b, 0);

    nest(&b, XAPI_RPC_MAX_DEPTH, "{\"k\":", "}");
    assert_int_equal(xapi_jsonrpc_decode(b.data, b.len, &req), 0);
    xapi_request_free(&req);
    xapi_buf_truncate(&b, 0);

    nest(&b, XAPI_RPC_MAX_DEPTH + 1, "{\"k\":", "}");
    assert_int_equal(xapi_jsonrpc_decode(b.data, b.len, &req), -E2BIG);
    xapi_buf_truncate(&b, 0);

    /* a bomb: stopped by the tokener */
    nest(&b, 100000, "[", "]");
    assert_int_equal(xapi_jsonrpc_decode(b.data, b.len, &req), -E2BIG);
    xapi_buf_truncate(&b, 0);

    /* v2 object params count as one level */
    xapi_buf_puts(&b, "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1,\"params\":");
    for (int k = 0; k < XAPI_RPC_MAX_DEPTH; k++)
        xapi_buf_puts(&b, "{\"k\":");
    xapi_buf_puts(&b, "1");
    for (int k = 0; k < XAPI_RPC_MAX_DEPTH; k++)
        xapi_buf_puts(&b, "}");
    xapi_buf_puts(&b, "}");
    assert_int_equal(xapi_jsonrpc_decode(b.data, b.len, &req), 0);
    xapi_request_free(&req);
    xapi_buf_free(&b);
}

static void test_element_cap(void **state) {
    xapi_buf b = XAPI_BUF_INIT;
    xapi_request req;

    xapi_buf_puts(&b, "{\"method\":\"m\",\"id\":1,\"params\":[[0");
    for (int k = 1; k < 100001; k++)
        xapi_buf_puts(&b, ",0");
    xapi_buf_puts(&b, "]]}");
    assert_int_equal(xapi_jsonrpc_decode(b.data, b.len, &req), -E2BIG);
    xapi_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1),
        cmocka_unit_test(test_v2),
        cmocka_unit_test(test_versions_and_shapes),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_huge_ints),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_element_cap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
