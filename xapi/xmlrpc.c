/* XML-RPC <methodCall> decoder (libxml2). See rpc.h.
 *
 * The body is parsed into a DOM with network access, DTDs and entity
 * substitution all off, and any document with a DTD construct is refused
 * before libxml2 sees it. The tree is then walked by direct node access,
 * following rpclib's reading of <value>: an element child is the type,
 * otherwise the text is a string (whitespace included). */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/encoding.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlversion.h>
#include <libxml/xmlerror.h>

#include "rpc.h"

#define XMLRPC_MAX_ELEMENTS 100000 /* values + members in one request */

typedef struct decoder {
    unsigned elements;
} decoder;

void xapi_request_free(xapi_request *r) {
    if (!r)
        return;
    free(r->method);
    xapi_value_free(&r->params);
    free(r->json_id);
    *r = (xapi_request){0};
}

/* --- libxml2 setup ---------------------------------------------------------- */

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

#if LIBXML_VERSION >= 21200
static void xml_silent(void *ctx, const xmlError *err) {
}
#else
static void xml_silent(void *ctx, xmlErrorPtr err) {
}
#endif

/* Each connection thread keeps its parser context from one request to the
 * next: creating one (its dictionary, its stacks) costs as much as parsing a
 * small call. The dictionary keeps every element name it has seen, so a
 * context that has learnt too many (a client sending made-up names) is
 * dropped rather than kept growing. */
#define PARSER_DICT_MAX 256

static pthread_key_t parser_key;

static void parser_free(void *p) {
    xmlFreeParserCtxt(p);
}

static void xml_init(void) {
    xmlInitParser();
    if (pthread_key_create(&parser_key, parser_free) != 0)
        abort();
}

static xmlParserCtxtPtr parser_get(void) {
    xmlParserCtxtPtr ctxt = pthread_getspecific(parser_key);

    if (!ctxt) {
        ctxt = xmlCreatePushParserCtxt(NULL, NULL, NULL, 0, NULL);
        if (!ctxt || pthread_setspecific(parser_key, ctxt) != 0)
            xapi_oom();
        /* Quiet: errors go to this no-op instead of libxml2's stderr default. */
        ctxt->sax->serror = xml_silent;
    }
    return ctxt;
}

static void parser_put(xmlParserCtxtPtr ctxt) {
    if (xmlDictSize(ctxt->dict) > PARSER_DICT_MAX) {
        xmlFreeParserCtxt(ctxt);
        pthread_setspecific(parser_key, NULL);
    }
}

/* Only UTF-8 (or ASCII) bodies: libxml2 would take a UTF-16, UCS-4 or EBCDIC
 * start (BOM or "<?xml" so encoded) as its encoding, and the byte scans here
 * must see what it parses. The encoding a declaration names is ignored
 * (XML_PARSE_IGNORE_ENC), and no converter runs: the bytes are read as they are. */
static bool utf8_bytes(const char *body, size_t len) {
    xmlCharEncoding enc;

    if (len < 4)
        return true;
    enc = xmlDetectCharEncoding((const unsigned char *)body, 4);
    return enc == XML_CHAR_ENCODING_NONE || enc == XML_CHAR_ENCODING_UTF8;
}

/* Anything DTD-like ("<!DOCTYPE", "<!ENTITY", ...) is refused outright, so no
 * entity can ever be declared, let alone expanded. Only comments and CDATA
 * sections may start with "<!". The body is UTF-8 (utf8_bytes), so the byte
 * scan sees what libxml2 parses. */
static bool has_dtd(const char *body, size_t len) {
    const char *p = body, *end = body + len;

    while ((p = memchr(p, '<', (size_t)(end - p)))) {
        size_t left = (size_t)(end - p);

        if (left >= 2 && p[1] == '!' && !(left >= 4 && memcmp(p, "<!--", 4) == 0) &&
            !(left >= 9 && memcmp(p, "<![CDATA[", 9) == 0))
            return true;
        p++;
    }
    return false;
}

/* --- Tree helpers ----------------------------------------------------------- */

static inline bool is_xml_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool all_space(const xmlChar *s) {
    for (; *s; s++)
        if (!is_xml_space((char)*s))
            return false;
    return true;
}

static inline bool name_is(const xmlNode *n, const char *name) {
    return strcmp((const char *)n->name, name) == 0;
}

static inline bool is_ignorable(const xmlNode *n) {
    return n->type == XML_COMMENT_NODE || n->type == XML_PI_NODE;
}

static inline bool is_text(const xmlNode *n) {
    return n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE;
}

/* The next element among the siblings starting at *cur (advanced past it),
 * NULL at the end. Text between elements must be whitespace. */
static int next_element(xmlNode **cur, xmlNode **ret) {
    xmlNode *n;

    for (n = *cur; n; n = n->next) {
        if (n->type == XML_ELEMENT_NODE) {
            *cur = n->next;
            *ret = n;
            return 0;
        }
        if (is_ignorable(n))
            continue;
        if (is_text(n) && all_space(n->content))
            continue;
        return -EINVAL;
    }
    *cur = NULL;
    *ret = NULL;
    return 0;
}

/* The next element, which must be called name; NULL at the end. */
static int next_named(xmlNode **cur, const char *name, xmlNode **ret) {
    xmlNode *el;
    int r;

    r = next_element(cur, &el);
    if (r < 0)
        return r;
    if (el && !name_is(el, name))
        return -EINVAL;
    *ret = el;
    return 0;
}

/* The element child of node, NULL if there is none (whitespace around it
 * allowed); -EINVAL when there is more than one. */
static int optional_element(xmlNode *node, xmlNode **ret) {
    xmlNode *cur = node->children, *el, *extra;
    int r;

    r = next_element(&cur, &el);
    if (r < 0)
        return r;
    r = next_element(&cur, &extra);
    if (r < 0)
        return r;
    if (extra)
        return -EINVAL;
    *ret = el;
    return 0;
}

/* The only element child of node; -EINVAL when there is none or more than one. */
static int only_element(xmlNode *node, xmlNode **ret) {
    xmlNode *el;
    int r;

    r = optional_element(node, &el);
    if (r < 0)
        return r;
    if (!el)
        return -EINVAL;
    *ret = el;
    return 0;
}

/* The children of node are <a> and <b>, in either order, each at most once
 * (NULL when absent). */
static int pick_children(xmlNode *node, const char *a, xmlNode **ret_a, const char *b, xmlNode **ret_b) {
    xmlNode *cur = node->children, *el, *found_a = NULL, *found_b = NULL;
    int r;

    for (;;) {
        r = next_element(&cur, &el);
        if (r < 0)
            return r;
        if (!el)
            break;
        if (name_is(el, a) && !found_a)
            found_a = el;
        else if (name_is(el, b) && !found_b)
            found_b = el;
        else
            return -EINVAL;
    }
    *ret_a = found_a;
    *ret_b = found_b;
    return 0;
}

/* The text content of an element that holds only text (comments aside).
 * Points into the tree when there is a single text node; otherwise the pieces
 * are joined in *ret_owned (to free). */
typedef struct text {
    const char *s;
    size_t n;
    char *owned;
} text;

static int get_text(const xmlNode *node, text *ret) {
    const xmlNode *c, *first = NULL;
    size_t total = 0, count = 0;
    char *p;

    for (c = node->children; c; c = c->next) {
        if (is_text(c)) {
            if (!first)
                first = c;
            total += strlen((const char *)c->content);
            count++;
        } else if (!is_ignorable(c))
            return -EINVAL;
    }
    if (count == 0) {
        *ret = (text){"", 0, NULL};
        return 0;
    }
    if (count == 1) {
        *ret = (text){(const char *)first->content, total, NULL};
        return 0;
    }
    p = xapi_malloc(total + 1);
    *ret = (text){p, total, p};
    for (c = first; c; c = c->next) {
        if (is_text(c)) {
            size_t l = strlen((const char *)c->content);
            memcpy(p, c->content, l);
            p += l;
        }
    }
    *p = 0;
    return 0;
}

static void trim(text *t) {
    while (t->n && is_xml_space(t->s[0])) {
        t->s++;
        t->n--;
    }
    while (t->n && is_xml_space(t->s[t->n - 1]))
        t->n--;
}

/* --- Scalars -------------------------------------------------------------- */

static int parse_int(const char *s, size_t n, int64_t *ret) {
    const char *end = s + n;
    bool neg = false;
    uint64_t v = 0, limit;

    if (s < end && (*s == '+' || *s == '-')) {
        neg = *s == '-';
        s++;
    }
    if (s == end)
        return -EINVAL;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; s < end; s++) {
        unsigned d;

        if (*s < '0' || *s > '9')
            return -EINVAL;
        d = (unsigned)(*s - '0');
        if (v > (limit - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *ret = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static int parse_double(const char *s, size_t n, double *ret) {
    char *copy = NULL, *end;
    double f;
    int rc;

    if (n == 0)
        return -EINVAL;
    copy = xapi_strndup(s, n);
    f = strtod(copy, &end);
    if (end != copy + n) {
        rc = -EINVAL;
        goto out;
    }
    *ret = f;
    rc = 0;
out:
    free(copy);
    return rc;
}

static int parse_datetime(const char *s, size_t n, int64_t *ret) {
    char *copy = xapi_strndup(s, n);
    int rc = xapi_datetime_parse(copy, ret);

    free(copy);
    return rc;
}

static int base64_digit(unsigned char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard alphabet; whitespace anywhere is skipped, padding is optional. */
static int base64_decode(const char *s, size_t n, xapi_value *ret) {
    char *out = NULL;
    size_t len = 0, i;
    uint32_t acc = 0;
    unsigned bits = 0, pad = 0;
    int rc;

    out = xapi_malloc(n / 4 * 3 + 3 + 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int d;

        if (is_xml_space((char)c))
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        d = base64_digit(c);
        if (d < 0 || pad) { /* data after padding */
            rc = -EINVAL;
            goto out;
        }
        acc = (acc << 6) | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[len++] = (char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* 6 leftover bits (one lone digit in a quantum) cannot encode a byte. */
    if (bits >= 6 || pad > 2) {
        rc = -EINVAL;
        goto out;
    }
    out[len] = 0;
    if (len == 0)
        *ret = xapi_value_stringn("", 0);
    else {
        /* Binary data may hold NULs: the length is the real one. */
        *ret = (xapi_value){.kind = XAPI_V_STRING, .n = (uint32_t)len, .s = out};
        out = NULL;
    }
    rc = 0;
out:
    free(out);
    return rc;
}

/* --- Values ------------------------------------------------------------------ */

static int decode_value(decoder *d, xmlNode *value, unsigned depth, xapi_value *ret);

static int count_element(decoder *d) {
    if (++d->elements > XMLRPC_MAX_ELEMENTS)
        return -E2BIG;
    return 0;
}

static int decode_array(decoder *d, xmlNode *array, unsigned depth, xapi_value *ret) {
    xapi_value arr = xapi_value_array();
    xmlNode *cur, *data, *v;
    int rc;

    rc = optional_element(array, &data);
    if (rc < 0)
        goto out;
    if (data) { /* <array/> without <data> is taken as empty */
        if (!name_is(data, "data")) {
            rc = -EINVAL;
            goto out;
        }
        cur = data->children;
        while ((rc = next_named(&cur, "value", &v)) == 0 && v) {
            xapi_value item;

            rc = decode_value(d, v, depth, &item);
            if (rc < 0)
                goto out;
            xapi_array_append(&arr, item);
        }
        if (rc < 0)
            goto out;
    }
    *ret = arr;
    arr = xapi_value_nil();
    rc = 0;
out:
    xapi_value_free(&arr);
    return rc;
}

static int cmp_member_index(const void *a, const void *b, void *userdata) {
    const xapi_member *m = userdata;
    uint32_t ia = *(const uint32_t *)a, ib = *(const uint32_t *)b;
    int c = strcmp(m[ia].name, m[ib].name);

    if (c)
        return c;
    return ia < ib ? -1 : ia > ib;
}

/* Duplicate member names: the last value wins, at the first one's place
 * (what xapi_struct_set would give). Small structs by a quadratic scan,
 * large ones by sorting, so a hostile body cannot make this quadratic. */
static void dedupe_members(xapi_value *st) {
    xapi_member *m = st->members;
    uint32_t n = st->n, i, j, kept;
    bool *drop = NULL, any = false;
    uint32_t *idx = NULL;

    if (n < 2)
        return;
    drop = xapi_calloc(n, sizeof(bool));
    if (n <= 16) {
        for (i = 1; i < n; i++)
            for (j = 0; j < i; j++)
                if (!drop[j] && strcmp(m[i].name, m[j].name) == 0) {
                    xapi_value t = m[j].value;
                    m[j].value = m[i].value;
                    m[i].value = t;
                    drop[i] = any = true;
                    break;
                }
    } else {
        idx = xapi_malloc(n * sizeof(uint32_t));
        for (i = 0; i < n; i++)
            idx[i] = i;
        qsort_r(idx, n, sizeof(uint32_t), cmp_member_index, m);
        for (i = 0; i < n; i = j) {
            for (j = i + 1; j < n && strcmp(m[idx[i]].name, m[idx[j]].name) == 0; j++)
                drop[idx[j]] = any = true;
            if (j - i > 1) {
                xapi_value t = m[idx[i]].value;
                m[idx[i]].value = m[idx[j - 1]].value;
                m[idx[j - 1]].value = t;
            }
        }
    }
    if (any) {
        for (i = 0, kept = 0; i < n; i++) {
            if (drop[i]) {
                if (m[i].name != xapi_empty_string)
                    free(m[i].name);
                xapi_value_free(&m[i].value);
            } else
                m[kept++] = m[i];
        }
        st->n = kept;
    }
    free(idx);
    free(drop);
}

static int decode_member(decoder *d, xmlNode *member, unsigned depth, xapi_value *st) {
    xmlNode *name, *value;
    xapi_value v = xapi_value_nil();
    text t = {0};
    int rc;

    rc = count_element(d);
    if (rc < 0)
        goto out;
    rc = pick_children(member, "name", &name, "value", &value);
    if (rc < 0)
        goto out;
    if (!name || !value) {
        rc = -EINVAL;
        goto out;
    }
    rc = get_text(name, &t);
    if (rc < 0)
        goto out;
    rc = decode_value(d, value, depth, &v);
    if (rc < 0)
        goto out;
    xapi_struct_append(st, t.s, v); /* t.s is NUL-terminated (not trimmed) */
    v = xapi_value_nil();
    rc = 0;
out:
    free(t.owned);
    xapi_value_free(&v);
    return rc;
}

static int decode_struct(decoder *d, xmlNode *node, unsigned depth, xapi_value *ret) {
    xapi_value st = xapi_value_struct();
    xmlNode *cur = node->children, *m;
    int rc;

    while ((rc = next_named(&cur, "member", &m)) == 0 && m) {
        rc = decode_member(d, m, depth, &st);
        if (rc < 0)
            goto out;
    }
    if (rc < 0)
        goto out;
    dedupe_members(&st);
    *ret = st;
    st = xapi_value_nil();
    rc = 0;
out:
    xapi_value_free(&st);
    return rc;
}

static int decode_scalar(xmlNode *type, xapi_value *ret) {
    const char *name = (const char *)type->name;
    text t = {0};
    int64_t i;
    double f;
    int rc;

    rc = get_text(type, &t);
    if (rc < 0)
        goto out;
    if (strcmp(name, "string") == 0) {
        *ret = xapi_value_stringn(t.s, t.n);
        goto out;
    }
    if (strcmp(name, "base64") == 0) {
        rc = base64_decode(t.s, t.n, ret);
        goto out;
    }
    trim(&t);
    if (strcmp(name, "int") == 0 || strcmp(name, "i4") == 0 || strcmp(name, "i8") == 0) {
        rc = parse_int(t.s, t.n, &i);
        if (rc < 0)
            goto out;
        *ret = xapi_value_int(i);
    } else if (strcmp(name, "boolean") == 0)
        *ret = xapi_value_bool(t.n == 1 && t.s[0] == '1');
    else if (strcmp(name, "double") == 0) {
        rc = parse_double(t.s, t.n, &f);
        if (rc < 0)
            goto out;
        *ret = xapi_value_float(f);
    } else if (strcmp(name, "dateTime.iso8601") == 0) {
        rc = parse_datetime(t.s, t.n, &i);
        if (rc < 0)
            goto out;
        *ret = xapi_value_datetime(i);
    } else if (strcmp(name, "nil") == 0) {
        if (t.n) {
            rc = -EINVAL;
            goto out;
        }
        *ret = xapi_value_nil();
    } else
        rc = -EINVAL;
out:
    free(t.owned);
    return rc;
}

static int decode_value(decoder *d, xmlNode *value, unsigned depth, xapi_value *ret) {
    xmlNode *c, *type = NULL;
    text t = {0};
    int rc;

    rc = count_element(d);
    if (rc < 0)
        goto out;
    for (c = value->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE) {
            type = c;
            break;
        }
    if (!type) {
        /* Untyped: the text, whitespace and all, is a string. */
        rc = get_text(value, &t);
        if (rc < 0)
            goto out;
        *ret = xapi_value_stringn(t.s, t.n);
        goto out;
    }
    /* Typed: one element, and only whitespace around it. */
    rc = only_element(value, &type);
    if (rc < 0)
        goto out;
    if (name_is(type, "array") || name_is(type, "struct")) {
        if (depth + 1 > XAPI_RPC_MAX_DEPTH) {
            rc = -E2BIG;
            goto out;
        }
        if (name_is(type, "array"))
            rc = decode_array(d, type, depth + 1, ret);
        else
            rc = decode_struct(d, type, depth + 1, ret);
    } else
        rc = decode_scalar(type, ret);
out:
    free(t.owned);
    return rc;
}

/* --- The call --------------------------------------------------------------- */

static int decode_params(decoder *d, xmlNode *params, xapi_value *list) {
    xmlNode *cur = params->children, *param, *value;
    xapi_value v;
    int rc;

    for (;;) {
        rc = next_named(&cur, "param", &param);
        if (rc < 0)
            return rc;
        if (!param)
            return 0;
        rc = only_element(param, &value);
        if (rc < 0)
            return rc;
        if (!name_is(value, "value"))
            return -EINVAL;
        rc = decode_value(d, value, 0, &v);
        if (rc < 0)
            return rc;
        xapi_array_append(list, v);
    }
}

static int decode_call(xmlNode *root, xapi_request *ret) {
    decoder d = {0};
    xapi_value params = xapi_value_array();
    xmlNode *name, *plist;
    text t = {0};
    char *method = NULL;
    int rc;

    if (!root || !name_is(root, "methodCall")) {
        rc = -EINVAL;
        goto out;
    }
    rc = pick_children(root, "methodName", &name, "params", &plist);
    if (rc < 0)
        goto out;
    if (!name) {
        rc = -EINVAL;
        goto out;
    }
    rc = get_text(name, &t);
    if (rc < 0)
        goto out;
    trim(&t);
    if (t.n == 0 || t.n > XAPI_RPC_MAX_METHOD) {
        rc = -EINVAL;
        goto out;
    }
    if (plist) {
        rc = decode_params(&d, plist, &params);
        if (rc < 0)
            goto out;
    }
    method = xapi_strndup(t.s, t.n);

    *ret = (xapi_request){.method = method, .params = params};
    method = NULL;
    params = xapi_value_nil();
    rc = 0;
out:
    free(t.owned);
    free(method);
    xapi_value_free(&params);
    return rc;
}

/* The body is pushed whole into a push parser: libxml2 2.9 reading from
 * memory instead keeps "growing" its input through a no-op reader every few
 * hundred bytes, which costs more than the parse of a small call. */
static xmlDocPtr parse_pushed(xmlParserCtxtPtr ctxt, const char *body, int len) {
    xmlDocPtr doc;

    if (len >= 3 && memcmp(body, "\xef\xbb\xbf", 3) == 0) { /* a UTF-8 BOM: the push parser would take it as text */
        body += 3;
        len -= 3;
    }
    if (xmlCtxtResetPush(ctxt, NULL, 0, NULL, NULL) != 0)
        return NULL;
    xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA |
                                XML_PARSE_IGNORE_ENC | XML_PARSE_COMPACT);
    xmlParseChunk(ctxt, body, len, 1);
    doc = ctxt->myDoc;
    ctxt->myDoc = NULL;
    return doc;
}

/* Parses a whole body into a tree (*ret_doc, to free), or -EINVAL (not
 * well-formed, not UTF-8, a DTD: the reason in errbuf when given) or -E2BIG. */
static int parse_body(const char *body, size_t len, xmlDocPtr *ret_doc, char *errbuf, size_t errlen) {
    xmlParserCtxtPtr ctxt = NULL;
    xmlDocPtr doc = NULL;
    int rc;

    if (errbuf && errlen)
        *errbuf = '\0';
    if (!body || len == 0) {
        if (errbuf)
            snprintf(errbuf, errlen, "empty document");
        return -EINVAL;
    }
    if (len > INT_MAX)
        return -E2BIG;
    if (!utf8_bytes(body, len) || has_dtd(body, len)) {
        if (errbuf)
            snprintf(errbuf, errlen, "not UTF-8, or a DTD");
        return -EINVAL;
    }

    pthread_once(&xml_once, xml_init);
    ctxt = parser_get();
    doc = parse_pushed(ctxt, body, (int)len);
    if (!doc || !ctxt->wellFormed) {
        const xmlError *e = &ctxt->lastError;

        /* libxml2's own nesting limit (256 elements) also means "too deep". */
        if (e->code == XML_ERR_INTERNAL_ERROR && e->message && strstr(e->message, "depth"))
            rc = -E2BIG;
        else
            rc = -EINVAL;
        if (errbuf) {
            size_t n;
            snprintf(errbuf, errlen, "line %d: %s", e->line, e->message ? e->message : "not well-formed");
            n = strlen(errbuf);
            while (n > 0 && errbuf[n - 1] == '\n')
                errbuf[--n] = '\0';
        }
        goto out;
    }
    if (doc->intSubset || doc->extSubset) { /* cannot happen after has_dtd */
        rc = -EINVAL;
        goto out;
    }
    *ret_doc = doc;
    doc = NULL;
    rc = 0;
out:
    if (doc)
        xmlFreeDoc(doc);
    parser_put(ctxt);
    return rc;
}

int xapi_xmlrpc_decode(const char *body, size_t len, xapi_request *ret) {
    xmlDocPtr doc = NULL;
    int rc;

    rc = parse_body(body, len, &doc, NULL, 0);
    if (rc < 0)
        return rc;
    rc = decode_call(xmlDocGetRootElement(doc), ret);
    xmlFreeDoc(doc);
    return rc;
}

/* <methodResponse> holds <params> (zero or more <param>) or one <fault><value>. */
static int decode_response(xmlNode *root, xapi_value *ret, bool *ret_fault) {
    decoder d = {0};
    xapi_value v = xapi_value_array();
    xmlNode *params, *fault, *value;
    int rc;

    if (!root || !name_is(root, "methodResponse"))
        return -EBADMSG;
    rc = pick_children(root, "params", &params, "fault", &fault);
    if (rc < 0 || (!params) == (!fault))
        return -EBADMSG;
    if (params)
        rc = decode_params(&d, params, &v);
    else {
        xapi_value_free(&v);
        rc = only_element(fault, &value);
        if (rc == 0 && !name_is(value, "value"))
            rc = -EINVAL;
        if (rc == 0)
            rc = decode_value(&d, value, 0, &v);
    }
    if (rc < 0) {
        xapi_value_free(&v);
        return rc == -E2BIG ? rc : -EBADMSG;
    }
    *ret = v;
    *ret_fault = fault != NULL;
    return 0;
}

int xapi_xmlrpc_decode_response(const char *body, size_t len, xapi_value *ret, bool *ret_fault, char *errbuf,
                                size_t errlen) {
    xmlDocPtr doc = NULL;
    int rc;

    rc = parse_body(body, len, &doc, errbuf, errlen);
    if (rc < 0)
        return rc;
    rc = decode_response(xmlDocGetRootElement(doc), ret, ret_fault);
    xmlFreeDoc(doc);
    return rc;
}
