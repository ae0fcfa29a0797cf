/* xapi's DB filter expressions, as taken by get_all_where and
 * get_all_records_where:  field "power_state"="Running" and not (field "x"="y" or true)
 * Field values compare as their text form; "name__label" names name_label. */
#pragma once

#include <stdbool.h>

#include "xapi/schema.h"
#include "xapi/store.h"

typedef struct xapi_filter xapi_filter;

/* 0 or -EINVAL (syntax error, or a field the class does not have). */
int xapi_filter_parse(const xapi_class *cls, const char *expr, xapi_filter **ret);
bool xapi_filter_match(const xapi_filter *f, const xapi_obj *o);
void xapi_filter_free(xapi_filter *f);
