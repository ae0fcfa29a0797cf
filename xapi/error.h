/* XenAPI failures: an ARRAY of STRINGs [CODE, param...], as on the wire.
 * Functions that can fail with an API error set *err and return -XAPI_EFAIL;
 * any other negative errno becomes INTERNAL_ERROR at the dispatcher. */
#pragma once

#include "xapi/value.h"

#define XAPI_EFAIL 10000

/* Sets *err (freeing what it held) to [code, params...]; the list ends with NULL.
 * Returns -XAPI_EFAIL. */
int xapi_fail(xapi_value *err, const char *code, ...) __attribute__((sentinel));
int xapi_failv(xapi_value *err, const char *code, const char *const *params, unsigned n);
