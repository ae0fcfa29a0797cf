#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xapi/buf.h"
#include "xapi/filter.h"
#include "xapi/types.h"

#define FILTER_MAX_DEPTH 32

typedef enum { N_TRUE, N_FALSE, N_NOT, N_AND, N_OR, N_EQ, N_NEQ } node_kind;

/* An operand is a field (index >= 0) or a literal. */
typedef struct operand {
    int field;
    char *literal;
} operand;

struct xapi_filter {
    node_kind kind;
    struct xapi_filter *a, *b;
    operand l, r;
};

typedef struct parser {
    const xapi_class *cls;
    const char *p;
    int depth;
} parser;

static void skip_ws(parser *ps) {
    while (isspace((unsigned char)*ps->p))
        ps->p++;
}

static bool keyword(parser *ps, const char *kw) {
    size_t n = strlen(kw);

    skip_ws(ps);
    if (strncmp(ps->p, kw, n) != 0 || isalnum((unsigned char)ps->p[n]) || ps->p[n] == '_')
        return false;
    ps->p += n;
    return true;
}

static int quoted(parser *ps, char **ret) {
    xapi_buf b = XAPI_BUF_INIT;

    skip_ws(ps);
    if (*ps->p != '"')
        return -EINVAL;
    ps->p++;
    xapi_buf_reserve(&b, 16);
    while (*ps->p && *ps->p != '"') {
        if (*ps->p == '\\' && ps->p[1])
            ps->p++;
        xapi_buf_putc(&b, *ps->p++);
    }
    if (*ps->p != '"') {
        xapi_buf_free(&b);
        return -EINVAL;
    }
    ps->p++;
    *ret = xapi_buf_steal(&b, NULL);
    return 0;
}

static int parse_operand(parser *ps, operand *ret) {
    char *s = NULL;
    int rc;

    if (keyword(ps, "field")) {
        rc = quoted(ps, &s);
        if (rc < 0)
            return rc;
        /* The DB spells namespaces with a double underscore. */
        for (char *q; (q = strstr(s, "__"));)
            memmove(q, q + 1, strlen(q + 1) + 1);
        ret->field = xapi_field_index(ps->cls, s);
        free(s);
        return ret->field < 0 ? -EINVAL : 0;
    }
    rc = quoted(ps, &s);
    if (rc < 0)
        return rc;
    ret->field = -1;
    ret->literal = s;
    return 0;
}

static int parse_or(parser *ps, xapi_filter **ret);

static int parse_primary(parser *ps, xapi_filter **ret) {
    xapi_filter *f = NULL;
    int rc;

    if (++ps->depth > FILTER_MAX_DEPTH)
        return -EINVAL;
    skip_ws(ps);
    f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    f->l.field = f->r.field = -1;
    if (*ps->p == '(') {
        ps->p++;
        free(f);
        f = NULL;
        rc = parse_or(ps, &f);
        if (rc < 0)
            goto fail;
        skip_ws(ps);
        if (*ps->p != ')') {
            rc = -EINVAL;
            goto fail;
        }
        ps->p++;
    } else if (keyword(ps, "not")) {
        f->kind = N_NOT;
        rc = parse_primary(ps, &f->a);
        if (rc < 0)
            goto fail;
    } else if (keyword(ps, "true")) {
        f->kind = N_TRUE;
    } else if (keyword(ps, "false")) {
        f->kind = N_FALSE;
    } else {
        rc = parse_operand(ps, &f->l);
        if (rc < 0)
            goto fail;
        skip_ws(ps);
        if (*ps->p == '=') {
            f->kind = N_EQ;
            ps->p++;
        } else if (ps->p[0] == '<' && ps->p[1] == '>') {
            f->kind = N_NEQ;
            ps->p += 2;
        } else {
            rc = -EINVAL;
            goto fail;
        }
        rc = parse_operand(ps, &f->r);
        if (rc < 0)
            goto fail;
    }
    ps->depth--;
    *ret = f;
    return 0;
fail:
    xapi_filter_free(f);
    return rc;
}

static int parse_binary(parser *ps, xapi_filter **ret, const char *kw, node_kind kind,
                        int (*sub)(parser *, xapi_filter **)) {
    xapi_filter *left = NULL;
    int rc = sub(ps, &left);

    if (rc < 0)
        return rc;
    while (keyword(ps, kw)) {
        xapi_filter *n = calloc(1, sizeof *n);
        if (!n) {
            xapi_filter_free(left);
            return -ENOMEM;
        }
        n->kind = kind;
        n->l.field = n->r.field = -1;
        n->a = left;
        left = n;
        rc = sub(ps, &n->b);
        if (rc < 0) {
            xapi_filter_free(left);
            return rc;
        }
    }
    *ret = left;
    return 0;
}

static int parse_and(parser *ps, xapi_filter **ret) {
    return parse_binary(ps, ret, "and", N_AND, parse_primary);
}

static int parse_or(parser *ps, xapi_filter **ret) {
    return parse_binary(ps, ret, "or", N_OR, parse_and);
}

int xapi_filter_parse(const xapi_class *cls, const char *expr, xapi_filter **ret) {
    parser ps = {cls, expr, 0};
    xapi_filter *f = NULL;
    int rc;

    rc = parse_or(&ps, &f);
    if (rc < 0)
        return rc;
    skip_ws(&ps);
    if (*ps.p) {
        xapi_filter_free(f);
        return -EINVAL;
    }
    *ret = f;
    return 0;
}

static const char *operand_text(const operand *op, const xapi_obj *o, xapi_buf *tmp) {
    if (op->field < 0)
        return op->literal;
    xapi_buf_truncate(tmp, 0);
    xapi_value_to_text(&o->fields[op->field], tmp);
    return tmp->data ? tmp->data : "";
}

bool xapi_filter_match(const xapi_filter *f, const xapi_obj *o) {
    xapi_buf t1 = XAPI_BUF_INIT, t2 = XAPI_BUF_INIT;
    bool r = false;

    switch (f->kind) {
    case N_TRUE:
        return true;
    case N_FALSE:
        return false;
    case N_NOT:
        return !xapi_filter_match(f->a, o);
    case N_AND:
        return xapi_filter_match(f->a, o) && xapi_filter_match(f->b, o);
    case N_OR:
        return xapi_filter_match(f->a, o) || xapi_filter_match(f->b, o);
    case N_EQ:
    case N_NEQ:
        r = strcmp(operand_text(&f->l, o, &t1), operand_text(&f->r, o, &t2)) == 0;
        xapi_buf_free(&t1);
        xapi_buf_free(&t2);
        return f->kind == N_EQ ? r : !r;
    }
    return false;
}

void xapi_filter_free(xapi_filter *f) {
    if (!f)
        return;
    xapi_filter_free(f->a);
    xapi_filter_free(f->b);
    free(f->l.literal);
    free(f->r.literal);
    free(f);
}
