/* Request decoders for XML-RPC (libxml2) and JSON-RPC (json-c).
 *
 * Both produce the same thing: a method name and an ARRAY of generic params.
 * They enforce the transport-level limits themselves (size is checked by the
 * HTTP layer before decoding; nesting depth and member counts here) so a
 * hostile body costs bounded time and memory. Decoding never interprets
 * types beyond the wire syntax: typing against the schema happens later. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "value.h"

#define XAPI_RPC_MAX_BODY (300 * 1024) /* xapi's http_limit_max_rpc_size */
#define XAPI_RPC_MAX_DEPTH 32           /* nested arrays/structs in one request */
#define XAPI_RPC_MAX_METHOD 256         /* method name length */

typedef struct xapi_request {
    char *method;      /* wire name, e.g. "VM.get_record" */
    xapi_value params; /* ARRAY */
    /* JSON-RPC only */
    int json_version;  /* 1 or 2; 0 for XML-RPC */
    char *json_id;     /* the id as raw JSON text ("3", "\"abc\""), to echo */
} xapi_request;

void xapi_request_free(xapi_request *r);

/* XML-RPC <methodCall>. Untyped <value>x</value> and <string> give STRING;
 * <i4>/<int>/<i8> give INT; <boolean> gives BOOL ("1" true, else false);
 * <double> FLOAT; <dateTime.iso8601> DATETIME (or STRING if unparseable
 * by xapi_datetime_parse? no: -EINVAL); <base64> STRING (decoded);
 * <nil/> NIL; <array>, <struct> recursively. Duplicate struct members: last wins.
 * Returns 0, or -EINVAL (malformed, wrong shape, invalid number), -E2BIG (too
 * deep / too many elements). Text is taken as UTF-8 bytes; invalid UTF-8 is
 * not an error here (the dispatcher answers INVALID_VALUE). */
int xapi_xmlrpc_decode(const char *body, size_t len, xapi_request *ret);

/* XML-RPC <methodResponse>, as host plugins print them: *ret is the ARRAY of
 * <params> (*ret_fault false) or the <fault>'s value (*ret_fault true).
 * Returns 0; -EINVAL when the text is not well-formed XML (or not UTF-8, or
 * has a DTD), with the parser's reason in errbuf; -EBADMSG when it is XML but
 * not a methodResponse; -E2BIG (too deep / too many elements). */
int xapi_xmlrpc_decode_response(const char *body, size_t len, xapi_value *ret, bool *ret_fault, char *errbuf,
                                size_t errlen);

/* JSON-RPC 1.0/2.0: {"method", "params", "id"[, "jsonrpc":"2.0"]}.
 * id mandatory (string or integer, not null); params an array (v2: also an
 * object, given as one STRUCT param, or absent = no params). JSON numbers that
 * are integers give INT, others FLOAT; strings STRING; true/false BOOL; null
 * NIL. Returns 0, -EINVAL (malformed), -E2BIG (too deep). */
int xapi_jsonrpc_decode(const char *body, size_t len, xapi_request *ret);
