/* Typing decoded wire values against the schema: what clients send is
 * checked and converted to the canonical stored form (ints from decimal
 * strings, enums to their canonical spelling, map keys stringified...). */
#pragma once

#include "xapi/schema.h"
#include "xapi/value.h"

/* Converts in to type t. `what` names the field or parameter for errors:
 * FIELD_TYPE_ERROR [what] for a wrong shape, INVALID_VALUE [what, value] for a
 * bad enum or number, INVALID_VALUE ["Invalid UTF-8 string in parameter", s]
 * for bad UTF-8. Returns 0 (and *ret) or -XAPI_EFAIL (and *err). */
int xapi_coerce(const xapi_type *t, const xapi_value *in, const char *what, xapi_value *ret, xapi_value *err);

/* The value as text, the way the DB filter language and map keys see it:
 * ints in decimal, bools "true"/"false", datetimes in xapi format, strings as is.
 * Sets and maps give "". Appends to b. */
struct xapi_buf;
void xapi_value_to_text(const xapi_value *v, struct xapi_buf *b);
