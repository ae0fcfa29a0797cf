#include <stdarg.h>

#include "xapi/error.h"

int xapi_failv(xapi_value *err, const char *code, const char *const *params, unsigned n) {
    xapi_value_free(err);
    *err = xapi_value_array();
    xapi_array_append(err, xapi_value_string(code));
    for (unsigned i = 0; i < n; i++)
        xapi_array_append(err, xapi_value_string(params[i] ? params[i] : ""));
    return -XAPI_EFAIL;
}

int xapi_fail(xapi_value *err, const char *code, ...) {
    va_list ap;
    const char *p;

    xapi_value_free(err);
    *err = xapi_value_array();
    xapi_array_append(err, xapi_value_string(code));
    va_start(ap, code);
    while ((p = va_arg(ap, const char *)))
        xapi_array_append(err, xapi_value_string(p));
    va_end(ap);
    return -XAPI_EFAIL;
}
