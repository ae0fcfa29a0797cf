#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xapi/buf.h"
#include "xapi/error.h"
#include "xapi/types.h"

static int parse_int64(const char *s, int64_t *ret) {
    char *end = NULL;
    long long v;

    if (!*s || isspace((unsigned char)*s)) /* strtoll would skip leading blanks */
        return -EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || end == s)
        return -EINVAL;
    *ret = v;
    return 0;
}

static int parse_double(const char *s, double *ret) {
    char *end = NULL;
    double v;

    if (!*s || isspace((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || end == s)
        return -EINVAL;
    *ret = v;
    return 0;
}

/* A string xapi's database would refuse: invalid UTF-8, or a character XML cannot carry (stored, it would
 * make every XML-RPC reply holding it malformed) or a non-character. */
static int fail_string(const char *s, size_t n, const char *what, xapi_value *err) {
    if (!xapi_utf8_valid(s, n))
        return xapi_fail(err, "INVALID_VALUE", "Invalid UTF-8 string in parameter", what, NULL);
    return xapi_fail(err, "INVALID_VALUE", "String in parameter holds a character XML cannot carry", what, NULL);
}

static int coerce_string(const xapi_value *in, const char *what, xapi_value *ret, xapi_value *err) {
    if (in->kind != XAPI_V_STRING)
        return xapi_fail(err, "FIELD_TYPE_ERROR", what, NULL);
    if (!xapi_string_valid(in->s, in->n))
        return fail_string(in->s, in->n, what, err);
    *ret = xapi_value_stringn(in->s, in->n);
    return 0;
}

/* Map keys are always strings; typed keys are checked and canonicalised. */
static int coerce_key(const xapi_type *t, const char *key, const char *what, char **ret, xapi_value *err) {
    xapi_value in = {.kind = XAPI_V_STRING, .n = (uint32_t)strlen(key), .s = (char *)key};
    xapi_value v = {0};
    xapi_buf b = XAPI_BUF_INIT;
    int rc;

    rc = xapi_coerce(t, &in, what, &v, err);
    if (rc < 0)
        return rc;
    xapi_value_to_text(&v, &b);
    xapi_value_free(&v);
    *ret = b.data ? xapi_buf_steal(&b, NULL) : xapi_strdup("");
    return 0;
}

int xapi_coerce(const xapi_type *t, const xapi_value *in, const char *what, xapi_value *ret, xapi_value *err) {
    xapi_value out = {0};
    int64_t i;
    double f;
    int rc;

    switch ((xapi_tkind)t->kind) {
    case XAPI_T_STRING:
    case XAPI_T_REF:
        return coerce_string(in, what, ret, err);

    case XAPI_T_INT:
        if (in->kind == XAPI_V_INT) {
            *ret = xapi_value_int(in->i);
            return 0;
        }
        if (in->kind != XAPI_V_STRING)
            return xapi_fail(err, "FIELD_TYPE_ERROR", what, NULL);
        if (parse_int64(in->s, &i) < 0)
            return xapi_fail(err, "INVALID_VALUE", what, in->s, NULL);
        *ret = xapi_value_int(i);
        return 0;

    case XAPI_T_FLOAT:
        if (in->kind == XAPI_V_FLOAT)
            f = in->f;
        else if (in->kind == XAPI_V_INT)
            f = (double)in->i;
        else if (in->kind == XAPI_V_STRING) {
            if (parse_double(in->s, &f) < 0)
                return xapi_fail(err, "INVALID_VALUE", what, in->s, NULL);
        } else
            return xapi_fail(err, "FIELD_TYPE_ERROR", what, NULL);
        *ret = xapi_value_float(f);
        return 0;

    case XAPI_T_BOOL:
        if (in->kind == XAPI_V_BOOL) {
            *ret = xapi_value_bool(in->b);
            return 0;
        }
        /* The DB's own text form, used by xe-style clients and filters. */
        if (in->kind == XAPI_V_STRING && (strcasecmp(in->s, "true") == 0 || strcasecmp(in->s, "false") == 0)) {
            *ret = xapi_value_bool(strcasecmp(in->s, "true") == 0);
            return 0;
        }
        return xapi_fail(err, "FIELD_TYPE_ERROR", what, NULL);

    case XAPI_T_DATETIME:
        if (in->kind == XAPI_V_DATETIME) {
            *ret = xapi_value_datetime(in->i);
            return 0;
        }
        if (in->kind == XAPI_V_STRING) {
            if (xapi_datetime_parse(in->s, &i) == 0) {
                *ret = xapi_value_datetime(i);
                return 0;
            }
            /* Java SDK clients may send a float epoch as a string. */
            if (parse_double(in->s, &f) == 0 && isfinite(f)) {
                *ret = xapi_value_datetime((int64_t)f);
                return 0;
            }
            return xapi_fail(err, "INVALID_VALUE", what, in->s, NULL);
        }
        return xapi_fail(err, "FIELD_TYPE_ERROR", what, NULL);

    case XAPI_T_ENUM: {
        const char *canon;

        if (in->kind != XAPI_V_STRING)
            return xapi_fail(err, "FIELD_TYPE_ERROR", what, NULL);
        canon = xapi_enum_canonical(t->enumv, in->s);
        if (!canon && strchr(in->s, '-')) {
            /* The Java SDK spells enum values with '-' where the datamodel has '_'. */
            char *alt = xapi_strdup(in->s);
            for (char *p = alt; *p; p++)
                if (*p == '-')
                    *p = '_';
            canon = xapi_enum_canonical(t->enumv, alt);
            free(alt);
        }
        if (!canon)
            return xapi_fail(err, "INVALID_VALUE", what, xapi_utf8_valid(in->s, in->n) ? in->s : "", NULL);
        *ret = xapi_value_string(canon);
        return 0;
    }

    case XAPI_T_SET:
        if (in->kind != XAPI_V_ARRAY)
            return xapi_fail(err, "FIELD_TYPE_ERROR", what, NULL);
        out = xapi_value_array();
        for (uint32_t k = 0; k < in->n; k++) {
            xapi_value item = {0};
            bool dup = false;

            rc = xapi_coerce(t->elem, &in->items[k], what, &item, err);
            if (rc < 0)
                goto fail;
            /* A set holds each element once. */
            for (uint32_t j = 0; j < out.n && !dup; j++)
                dup = xapi_value_equal(&out.items[j], &item);
            if (dup)
                xapi_value_free(&item);
            else
                xapi_array_append(&out, item);
        }
        *ret = out;
        return 0;

    case XAPI_T_MAP:
        if (in->kind != XAPI_V_STRUCT)
            return xapi_fail(err, "FIELD_TYPE_ERROR", what, NULL);
        out = xapi_value_struct();
        for (uint32_t k = 0; k < in->n; k++) {
            xapi_value item = {0};
            char *key = NULL;

            if (!xapi_string_valid(in->members[k].name, strlen(in->members[k].name))) {
                rc = fail_string(in->members[k].name, strlen(in->members[k].name), what, err);
                goto fail;
            }
            rc = coerce_key(t->key, in->members[k].name, what, &key, err);
            if (rc < 0)
                goto fail;
            rc = xapi_coerce(t->elem, &in->members[k].value, what, &item, err);
            if (rc < 0) {
                free(key);
                goto fail;
            }
            xapi_struct_set(&out, key, item);
            free(key);
        }
        *ret = out;
        return 0;

    case XAPI_T_OPTION:
        return xapi_coerce(t->elem, in, what, ret, err);

    case XAPI_T_RECORD:
    case XAPI_T_ANY_RECORD:
        if (in->kind != XAPI_V_STRUCT)
            return xapi_fail(err, "FIELD_TYPE_ERROR", what, NULL);
        *ret = xapi_value_copy(in);
        return 0;

    case XAPI_T_VOID:
    case XAPI_T_EVENT_BATCH:
        break;
    }
    return xapi_fail(err, "FIELD_TYPE_ERROR", what, NULL);

fail:
    xapi_value_free(&out);
    return rc;
}

void xapi_value_to_text(const xapi_value *v, xapi_buf *b) {
    char tmp[64];

    switch ((xapi_vkind)v->kind) {
    case XAPI_V_STRING:
        xapi_buf_append(b, v->s, v->n);
        break;
    case XAPI_V_INT:
        xapi_buf_printf(b, "%" PRId64, v->i);
        break;
    case XAPI_V_FLOAT:
        xapi_buf_printf(b, "%.16g", v->f);
        break;
    case XAPI_V_BOOL:
        xapi_buf_puts(b, v->b ? "true" : "false");
        break;
    case XAPI_V_DATETIME:
        xapi_datetime_format(v->i, tmp);
        xapi_buf_puts(b, tmp);
        break;
    case XAPI_V_NIL:
    case XAPI_V_ARRAY:
    case XAPI_V_STRUCT:
        if (!b->data)
            xapi_buf_reserve(b, 1);
        break;
    }
}
