/* JSON-RPC 1.0 / 2.0 request decoder (json-c). See rpc.h and wire.md §4. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "buf.h"
#include "rpc.h"

#define JSONRPC_MAX_ELEMENTS 100000

/* json-c refuses nesting of max_depth - 1 containers and more; the request
 * object and the params array come on top of the params' own nesting, which
 * is checked exactly while converting. */
#define JSONRPC_TOKENER_DEPTH (XAPI_RPC_MAX_DEPTH + 3)

typedef struct decoder {
    const char *body;
    size_t len;
    unsigned elements;
    int overflow; /* -1 unknown, else whether the body has an out-of-range integer */
} decoder;

static inline bool is_json_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool int_literal_overflows(const char *s, size_t n) {
    bool neg = false;
    uint64_t v = 0, limit;

    if (n && *s == '-') {
        neg = true;
        s++;
        n--;
    }
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; n; s++, n--) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (limit - d) / 10)
            return true;
        v = v * 10 + d;
    }
    return false;
}

/* json-c saturates integers that do not fit 64 bits without saying so. When a
 * saturated-looking value shows up, the body's integer literals (outside
 * strings) are checked against the int64 range. */
static bool body_has_int_overflow(decoder *d) {
    const char *p = d->body, *end = d->body + d->len;

    if (d->overflow >= 0)
        return d->overflow;
    d->overflow = 0;
    while (p < end) {
        if (*p == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\' && end - p > 1)
                    p++;
            if (p < end)
                p++;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            const char *start = p;
            bool integer = true;

            for (p++; p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' ||
                                  *p == '+' || *p == '-');
                 p++)
                if (*p < '0' || *p > '9')
                    integer = false;
            if (integer && int_literal_overflows(start, (size_t)(p - start))) {
                d->overflow = 1;
                break;
            }
        } else
            p++;
    }
    return d->overflow;
}

static int get_int(decoder *d, struct json_object *o, int64_t *ret) {
    int64_t i = json_object_get_int64(o);

    /* Above INT64_MAX json-c keeps a uint64; beyond either end it saturates. */
    if (i == INT64_MAX && json_object_get_uint64(o) != (uint64_t)INT64_MAX)
        return -EINVAL;
    if ((i == INT64_MAX || i == INT64_MIN) && body_has_int_overflow(d))
        return -EINVAL;
    *ret = i;
    return 0;
}

static int convert(decoder *d, struct json_object *o, unsigned depth, xapi_value *ret);

/* Appends the elements of the JSON array a, converted, to list. */
static int append_items(decoder *d, struct json_object *a, unsigned depth, xapi_value *list) {
    size_t n = json_object_array_length(a);

    for (size_t k = 0; k < n; k++) {
        xapi_value item;
        int rc = convert(d, json_object_array_get_idx(a, k), depth, &item);

        if (rc < 0)
            return rc;
        xapi_array_append(list, item);
    }
    return 0;
}

static int convert(decoder *d, struct json_object *o, unsigned depth, xapi_value *ret) {
    xapi_value v = xapi_value_nil();
    int64_t i;
    int rc;

    if (++d->elements > JSONRPC_MAX_ELEMENTS)
        return -E2BIG;
    switch (json_object_get_type(o)) {
    case json_type_null:
        break;
    case json_type_boolean:
        v = xapi_value_bool(json_object_get_boolean(o));
        break;
    case json_type_double:
        v = xapi_value_float(json_object_get_double(o));
        break;
    case json_type_int:
        rc = get_int(d, o, &i);
        if (rc < 0)
            goto out;
        v = xapi_value_int(i);
        break;
    case json_type_string:
        v = xapi_value_stringn(json_object_get_string(o), (size_t)json_object_get_string_len(o));
        break;
    case json_type_array:
        if (depth + 1 > XAPI_RPC_MAX_DEPTH) {
            rc = -E2BIG;
            goto out;
        }
        v = xapi_value_array();
        rc = append_items(d, o, depth + 1, &v);
        if (rc < 0)
            goto out;
        break;
    case json_type_object: {
        if (depth + 1 > XAPI_RPC_MAX_DEPTH) {
            rc = -E2BIG;
            goto out;
        }
        v = xapi_value_struct();
        /* json-c has already merged duplicate keys: last value, first place. */
        json_object_object_foreach(o, key, val) {
            xapi_value member;

            rc = convert(d, val, depth + 1, &member);
            if (rc < 0)
                goto out;
            xapi_struct_append(&v, key, member);
        }
        break;
    }
    default:
        rc = -EINVAL;
        goto out;
    }
    *ret = v;
    v = xapi_value_nil();
    rc = 0;
out:
    xapi_value_free(&v);
    return rc;
}

static int decode_object(decoder *d, struct json_object *root, xapi_request *ret) {
    struct json_object *jv = NULL, *jid = NULL, *jmethod = NULL, *jparams = NULL;
    xapi_value params = xapi_value_array();
    char *method = NULL, *id = NULL;
    const char *s;
    int version = 1, rc;
    int64_t i;
    size_t n;

    if (!json_object_is_type(root, json_type_object)) {
        rc = -EINVAL;
        goto out;
    }

    /* "jsonrpc": absent = v1, "2.0" = v2, anything else is malformed. */
    if (json_object_object_get_ex(root, "jsonrpc", &jv)) {
        if (!json_object_is_type(jv, json_type_string) || json_object_get_string_len(jv) != 3 ||
            strcmp(json_object_get_string(jv), "2.0") != 0) {
            rc = -EINVAL;
            goto out;
        }
        version = 2;
    }

    /* id: mandatory, a string or an integer; echoed as raw JSON text. */
    if (!json_object_object_get_ex(root, "id", &jid)) {
        rc = -EINVAL;
        goto out;
    }
    if (json_object_is_type(jid, json_type_int)) {
        rc = get_int(d, jid, &i);
        if (rc < 0)
            goto out;
    } else if (!json_object_is_type(jid, json_type_string)) {
        rc = -EINVAL; /* null (a notification), float, bool, array, object */
        goto out;
    } else if (!xapi_utf8_valid(json_object_get_string(jid), (size_t)json_object_get_string_len(jid))) {
        rc = -EINVAL; /* echoed in the reply, which must stay valid JSON text */
        goto out;
    }

    if (!json_object_object_get_ex(root, "method", &jmethod) || !json_object_is_type(jmethod, json_type_string)) {
        rc = -EINVAL;
        goto out;
    }
    s = json_object_get_string(jmethod);
    n = (size_t)json_object_get_string_len(jmethod);
    if (n == 0 || n > XAPI_RPC_MAX_METHOD || strlen(s) != n) { /* no embedded NUL */
        rc = -EINVAL;
        goto out;
    }

    /* params: an array; v2 also an object (one struct param) or absent/null. */
    if (!json_object_object_get_ex(root, "params", &jparams) || !jparams) {
        if (version == 1) {
            rc = -EINVAL;
            goto out;
        }
    } else if (json_object_is_type(jparams, json_type_array)) {
        rc = append_items(d, jparams, 0, &params);
        if (rc < 0)
            goto out;
    } else if (version == 2 && json_object_is_type(jparams, json_type_object)) {
        xapi_value item;

        rc = convert(d, jparams, 0, &item);
        if (rc < 0)
            goto out;
        xapi_array_append(&params, item);
    } else {
        rc = -EINVAL;
        goto out;
    }

    method = xapi_strndup(s, n);
    id = xapi_strdup(json_object_to_json_string_ext(jid, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));

    *ret = (xapi_request){.method = method, .params = params, .json_version = version, .json_id = id};
    method = id = NULL;
    params = xapi_value_nil();
    rc = 0;
out:
    free(method);
    free(id);
    xapi_value_free(&params);
    return rc;
}

static int hex4(const char *p, const char *end) {
    int v = 0;

    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* json-c silently turns an unpaired UTF-16 surrogate escape ("\ud800") into
 * U+FFFD, which would store a character the client never sent. Such a string
 * is not Unicode: the escape is rewritten as the three bytes a UTF-8 encoder
 * would produce for the surrogate, which no valid UTF-8 string contains, so the
 * string is refused like any other invalid UTF-8 (INVALID_VALUE when used as
 * a parameter, as xapi). Returns a rewritten copy, or NULL when there is no
 * lone surrogate (the common case, one pass and no copy). */
static char *rewrite_lone_surrogates(const char *body, size_t len, size_t *ret_len) {
    const char *p = body, *end = body + len, *copied = body;
    xapi_buf out = XAPI_BUF_INIT;
    bool in_string = false, found = false;

    while (p < end) {
        int cu, lo;

        if (!in_string) {
            in_string = *p++ == '"';
            continue;
        }
        if (*p == '"') {
            in_string = false;
            p++;
            continue;
        }
        if (*p != '\\' || end - p < 2) {
            p++;
            continue;
        }
        if (p[1] != 'u' || (cu = hex4(p + 2, end)) < 0) {
            p += 2;
            continue;
        }
        if (cu >= 0xD800 && cu <= 0xDBFF && end - p >= 12 && p[6] == '\\' && p[7] == 'u' &&
            (lo = hex4(p + 8, end)) >= 0xDC00 && lo <= 0xDFFF) {
            p += 12; /* a proper pair */
            continue;
        }
        if (cu < 0xD800 || cu > 0xDFFF) {
            p += 6;
            continue;
        }
        found = true;
        xapi_buf_append(&out, copied, (size_t)(p - copied));
        xapi_buf_putc(&out, (char)(0xE0 | (cu >> 12)));
        xapi_buf_putc(&out, (char)(0x80 | ((cu >> 6) & 0x3F)));
        xapi_buf_putc(&out, (char)(0x80 | (cu & 0x3F)));
        p += 6;
        copied = p;
    }
    if (!found)
        return NULL;
    xapi_buf_append(&out, copied, (size_t)(end - copied));
    return xapi_buf_steal(&out, ret_len);
}

int xapi_jsonrpc_decode(const char *body, size_t len, xapi_request *ret) {
    struct json_tokener *tok = NULL;
    struct json_object *root = NULL;
    char *rewritten = NULL;
    decoder d;
    size_t end;
    int rc;

    if (!body || len == 0)
        return -EINVAL;
    if (len > INT32_MAX)
        return -E2BIG;
    rewritten = rewrite_lone_surrogates(body, len, &len);
    if (rewritten)
        body = rewritten;
    d = (decoder){.body = body, .len = len, .overflow = -1};

    tok = json_tokener_new_ex(JSONRPC_TOKENER_DEPTH);
    if (!tok)
        xapi_oom();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    root = json_tokener_parse_ex(tok, body, (int)len);
    if (!root) {
        /* Also json_tokener_continue: a truncated body. */
        rc = json_tokener_get_error(tok) == json_tokener_error_depth ? -E2BIG : -EINVAL;
        goto out;
    }
    /* The whole body: only whitespace may follow the request object. */
    for (end = json_tokener_get_parse_end(tok); end < len; end++)
        if (!is_json_space(body[end])) {
            rc = -EINVAL;
            goto out;
        }

    rc = decode_object(&d, root, ret);
out:
    json_object_put(root);
    json_tokener_free(tok);
    free(rewritten);
    return rc;
}
