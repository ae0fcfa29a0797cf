/* libFuzzer target: XML-RPC request decoding, then re-encoding the params in
 * both formats inside reply envelopes. The JSON produced must parse. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <json-c/json.h>

#include "xapi/out.h"
#include "xapi/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void encode(const xapi_request *req, xapi_format fmt, int version) {
    xapi_rpc_reply r = {.fmt = fmt, .json_version = version, .json_id = req->json_id ? req->json_id : "0"};
    xapi_buf b = XAPI_BUF_INIT;
    xapi_out o;

    xapi_out_init(&o, fmt, &b);
    xapi_reply_begin(&r, &o);
    xapi_out_value(&o, &req->params);
    xapi_reply_end_success(&r, &o);
    if (fmt == XAPI_FMT_JSON) {
        json_object *j = json_tokener_parse(b.data);
        if (!j)
            abort(); /* the encoder wrote invalid JSON */
        json_object_put(j);
    }
    xapi_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    xapi_request req;

    if (xapi_xmlrpc_decode((const char *)data, size, &req) < 0)
        return 0;
    if (req.params.kind != XAPI_V_ARRAY || !req.method || !req.method[0])
        abort();
    encode(&req, XAPI_FMT_XML, 0);
    encode(&req, XAPI_FMT_JSON, 1);
    encode(&req, XAPI_FMT_JSON, 2);
    xapi_request_free(&req);
    return 0;
}
