/* libFuzzer target: JSON-RPC request decoding, then re-encoding the params in
 * both formats inside reply envelopes (echoing the id). The JSON produced
 * must parse, and the XML must decode again. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "xapi/out.h"
#include "xapi/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void encode(const xapi_request *req, xapi_format fmt) {
    xapi_rpc_reply r = {.fmt = fmt, .json_version = req->json_version, .json_id = req->json_id};
    xapi_buf b = XAPI_BUF_INIT;
    xapi_value err = xapi_value_array();
    xapi_out o;
    size_t mark;

    xapi_out_init(&o, fmt, &b);
    mark = xapi_reply_begin(&r, &o);
    xapi_out_value(&o, &req->params);
    xapi_reply_end_success(&r, &o);
    if (fmt == XAPI_FMT_JSON) {
        json_object *j = json_tokener_parse(b.data);
        if (!j)
            abort(); /* the encoder wrote invalid JSON */
        json_object_put(j);
    }
    /* the same value as a failure's parameters */
    xapi_array_append(&err, xapi_value_string("CODE"));
    for (uint32_t i = 0; i < req->params.n && i < 4; i++)
        xapi_array_append(&err, xapi_value_copy(&req->params.items[i]));
    xapi_reply_failure(&r, &o, mark, &err);
    if (fmt == XAPI_FMT_JSON) {
        json_object *j = json_tokener_parse(b.data);
        if (!j)
            abort();
        json_object_put(j);
    }
    xapi_value_free(&err);
    xapi_buf_free(&b);
}

/* Params re-encoded as an XML-RPC call decode again, whatever they hold: the
 * XML encoder drops or replaces what XML 1.0 cannot carry (control
 * characters, U+FFFE, U+FFFF, bytes that are not UTF-8). */
static void xml_round_trip(const xapi_request *req) {
    xapi_buf b = XAPI_BUF_INIT;
    xapi_request again;
    xapi_out o;
    int rc;

    xapi_out_init(&o, XAPI_FMT_XML, &b);
    XAPI_BUF_LIT(&b, "<methodCall><methodName>m</methodName><params>");
    for (uint32_t i = 0; i < req->params.n; i++) {
        XAPI_BUF_LIT(&b, "<param>");
        xapi_out_value(&o, &req->params.items[i]);
        XAPI_BUF_LIT(&b, "</param>");
    }
    XAPI_BUF_LIT(&b, "</params></methodCall>");
    rc = xapi_xmlrpc_decode(b.data, b.len, &again);
    if (rc == 0) {
        if (again.params.n != req->params.n)
            abort();
        xapi_request_free(&again);
    } else if (rc != -E2BIG)
        abort();
    xapi_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    xapi_request req;

    if (xapi_jsonrpc_decode((const char *)data, size, &req) < 0)
        return 0;
    if (req.params.kind != XAPI_V_ARRAY || !req.method || !req.json_id ||
        (req.json_version != 1 && req.json_version != 2))
        abort();
    encode(&req, XAPI_FMT_XML);
    encode(&req, XAPI_FMT_JSON);
    xml_round_trip(&req);
    xapi_request_free(&req);
    return 0;
}
