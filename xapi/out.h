/* Streaming encoders for results: the same calls produce xapi's XML-RPC value
 * syntax or JSON. Handlers write their result straight into the response
 * buffer, so large replies (get_all_records of thousands of VMs) are produced
 * in one pass with no intermediate tree.
 *
 * XML follows xapi's non-strict printer: strings as untyped <value>text</value>,
 * ints as untyped decimal, <boolean>, <double>, <dateTime.iso8601>. JSON: ints
 * as integer literals, datetimes as "YYYYMMDDTHH:MM:SSZ" strings. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "value.h"

typedef enum xapi_format {
    XAPI_FMT_XML = 0,
    XAPI_FMT_JSON,
} xapi_format;

#define XAPI_OUT_MAX_DEPTH 64

typedef struct xapi_out {
    xapi_format fmt;
    xapi_buf *buf;
    /* JSON only: whether the container at each depth already has an element. */
    unsigned depth;
    bool nonempty[XAPI_OUT_MAX_DEPTH];
} xapi_out;

void xapi_out_init(xapi_out *o, xapi_format fmt, xapi_buf *buf);

void xapi_out_string(xapi_out *o, const char *s, size_t n);
void xapi_out_cstring(xapi_out *o, const char *s);
void xapi_out_int(xapi_out *o, int64_t i);
/* An int the way xapi's event.from sends valid_ref_counts: <i4> in XML. */
void xapi_out_int32(xapi_out *o, int32_t i);
void xapi_out_float(xapi_out *o, double f);
void xapi_out_bool(xapi_out *o, bool b);
void xapi_out_datetime(xapi_out *o, int64_t epoch_seconds);
void xapi_out_void(xapi_out *o); /* xapi's void: an empty string */

void xapi_out_array_begin(xapi_out *o);
void xapi_out_array_end(xapi_out *o);
void xapi_out_struct_begin(xapi_out *o);
/* Starts a member; the next value written is its value. */
void xapi_out_member(xapi_out *o, const char *name, size_t n);
void xapi_out_cmember(xapi_out *o, const char *name);
void xapi_out_struct_end(xapi_out *o);

/* Any generic value, by its kind. */
void xapi_out_value(xapi_out *o, const xapi_value *v);

/* A record: a struct of the class's fields (all but event snapshots), values
 * in schema order, member names prepared once per class. */
struct xapi_class;
void xapi_out_record(xapi_out *o, const struct xapi_class *cls, const xapi_value *fields);

/* Escaping helpers, exposed for precomputed fragments and tests. */
void xapi_xml_escape(xapi_buf *b, const char *s, size_t n);
void xapi_json_escape(xapi_buf *b, const char *s, size_t n);

/* Whole responses.
 * The success envelope is written in two halves around the handler's value so
 * that the value is encoded in place; on failure the buffer is reset to `mark`
 * and the failure envelope is written instead. */
typedef struct xapi_rpc_reply {
    xapi_format fmt;
    int json_version;   /* 1 or 2 for JSON-RPC */
    const char *json_id; /* raw JSON text of the request id, echoed verbatim */
} xapi_rpc_reply;

/* Writes the envelope head; returns the mark to reset to on failure. */
size_t xapi_reply_begin(const xapi_rpc_reply *r, xapi_out *o);
void xapi_reply_end_success(const xapi_rpc_reply *r, xapi_out *o);
/* Resets the buffer to mark and writes a failure; err is an ARRAY of STRINGs [CODE, p1...]. */
void xapi_reply_failure(const xapi_rpc_reply *r, xapi_out *o, size_t mark, const xapi_value *err);
