/* XML-RPC reply decoder for xe (see xe_value.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tools/xe_value.h"

#define XV_MAX_DEPTH 64
#define ARENA_CHUNK (1u << 20)

typedef struct chunk {
    struct chunk *next;
    size_t used, size;
    char data[];
} chunk;

struct xv_doc {
    chunk *chunks;
    char *buf; /* the reply: strings point into it */
};

static void *arena_alloc(xv_doc *d, size_t n) {
    chunk *c = d->chunks;

    n = (n + 7) & ~(size_t)7;
    if (!c || c->used + n > c->size) {
        size_t size = n > ARENA_CHUNK ? n : ARENA_CHUNK;

        c = malloc(sizeof *c + size);
        if (!c)
            abort();
        c->next = d->chunks;
        c->used = 0;
        c->size = size;
        d->chunks = c;
    }
    c->used += n;
    return c->data + c->used - n;
}

typedef struct parser {
    xv_doc *doc;
    char *p, *end;
    int depth;
    const char *why;
} parser;

static bool fail(parser *p, const char *why) {
    if (!p->why)
        p->why = why;
    return false;
}

static void skip_ws(parser *p) {
    while (p->p < p->end && (*p->p == ' ' || *p->p == '\t' || *p->p == '\r' || *p->p == '\n'))
        p->p++;
}

static bool skip_past(parser *p, const char *s) {
    char *at = memmem(p->p, (size_t)(p->end - p->p), s, strlen(s));

    if (!at)
        return fail(p, "unterminated markup");
    p->p = at + strlen(s);
    return true;
}

typedef struct tag {
    const char *name;
    bool closing, empty;
} tag;

/* Reads one tag (after blanks, declarations and comments); its name is NUL-terminated in place. */
static bool read_tag(parser *p, tag *t) {
    char *name;

    for (;;) {
        skip_ws(p);
        if (p->p >= p->end || *p->p != '<')
            return fail(p, "markup expected");
        if (p->end - p->p >= 2 && p->p[1] == '?') {
            if (!skip_past(p, "?>"))
                return false;
        } else if (p->end - p->p >= 4 && memcmp(p->p, "<!--", 4) == 0) {
            if (!skip_past(p, "-->"))
                return false;
        } else if (p->end - p->p >= 2 && p->p[1] == '!') {
            return fail(p, "DTDs and CDATA are not XML-RPC");
        } else {
            break;
        }
    }
    p->p++;
    t->closing = p->p < p->end && *p->p == '/';
    if (t->closing)
        p->p++;
    name = p->p;
    while (p->p < p->end && *p->p != '>' && *p->p != '/' && *p->p != ' ' && *p->p != '\t' && *p->p != '\r' &&
           *p->p != '\n')
        p->p++;
    if (p->p >= p->end || p->p == name)
        return fail(p, "bad tag");
    t->name = name;
    t->empty = false;
    while (p->p < p->end && *p->p != '>') { /* attributes (none in XML-RPC) are skipped */
        if (*p->p == '"' || *p->p == '\'') {
            char *q = memchr(p->p + 1, *p->p, (size_t)(p->end - p->p - 1));

            if (!q)
                return fail(p, "unterminated attribute");
            p->p = q;
        } else if (*p->p == '/') {
            t->empty = true;
        }
        *p->p++ = 0; /* the first one ends the name */
    }
    if (p->p >= p->end)
        return fail(p, "unterminated tag");
    *p->p++ = 0;
    return true;
}

static bool expect(parser *p, const char *name, bool closing) {
    tag t;

    if (!read_tag(p, &t))
        return false;
    if (strcmp(t.name, name) != 0 || t.closing != closing || t.empty)
        return fail(p, "unexpected element");
    return true;
}

static char *put_utf8(char *w, unsigned long cp) {
    if (cp < 0x80) {
        *w++ = (char)cp;
    } else if (cp < 0x800) {
        *w++ = (char)(0xc0 | cp >> 6);
        *w++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xe0 | cp >> 12);
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *w++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *w++ = (char)(0xf0 | cp >> 18);
        *w++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *w++ = (char)(0x80 | (cp & 0x3f));
    }
    return w;
}

/* Text up to the next '<', entities decoded in place (the result is never longer). *ret_nul is
 * where its terminator goes, written by the caller once the following tag is read: it may be
 * that tag's '<'. */
static bool read_text(parser *p, char **ret, char **ret_nul) {
    static const struct {
        const char *name;
        char c;
    } ents[] = {{"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    char *lt = memchr(p->p, '<', (size_t)(p->end - p->p)), *r, *w;

    if (!lt)
        return fail(p, "unterminated text");
    for (r = w = p->p; r < lt;) {
        char *semi;
        size_t n, i;

        if (*r != '&') {
            *w++ = *r++;
            continue;
        }
        semi = memchr(r, ';', (size_t)(lt - r));
        if (!semi)
            return fail(p, "bad entity");
        n = (size_t)(semi - r - 1);
        for (i = 0; i < sizeof ents / sizeof ents[0]; i++)
            if (strlen(ents[i].name) == n && memcmp(r + 1, ents[i].name, n) == 0)
                break;
        if (i < sizeof ents / sizeof ents[0]) {
            *w++ = ents[i].c;
        } else if (n >= 2 && r[1] == '#') {
            char *e;
            unsigned long cp = r[2] == 'x' ? strtoul(r + 3, &e, 16) : strtoul(r + 2, &e, 10);

            if (e != semi || cp == 0 || cp > 0x10ffff || n > 8)
                return fail(p, "bad character reference");
            w = put_utf8(w, cp); /* at most 4 bytes for at least 4 read ("&#N;") */
        } else {
            return fail(p, "unknown entity");
        }
        r = semi + 1;
    }
    *ret = p->p;
    *ret_nul = w;
    p->p = lt;
    return true;
}

static const struct {
    const char *name;
    xv_kind kind;
} scalars[] = {
    {"string", XV_STRING}, {"base64", XV_STRING}, {"i4", XV_INT}, {"int", XV_INT}, {"i8", XV_INT},
    {"boolean", XV_BOOL}, {"double", XV_DOUBLE}, {"dateTime.iso8601", XV_DATETIME}, {"nil", XV_NIL},
    {"ex:nil", XV_NIL},
};

static xv *new_value(parser *p) {
    xv *v = arena_alloc(p->doc, sizeof *v);

    memset(v, 0, sizeof *v);
    v->s = "";
    return v;
}

static void append(xv *parent, xv *v) {
    if (parent->last)
        parent->last->next = v;
    else
        parent->first = v;
    parent->last = v;
    parent->n++;
}

static bool parse_value(parser *p, xv *v);

/* After <struct>: members up to </struct>. */
static bool parse_struct(parser *p, xv *v) {
    tag t;

    for (;;) {
        char *key, *nul;
        xv *m;

        if (!read_tag(p, &t))
            return false;
        if (t.closing && strcmp(t.name, "struct") == 0)
            return true;
        if (t.closing || t.empty || strcmp(t.name, "member") != 0 || !expect(p, "name", false))
            return fail(p, "a struct holds members");
        if (!read_text(p, &key, &nul) || !expect(p, "name", true))
            return false;
        *nul = 0;
        m = new_value(p);
        m->key = key;
        append(v, m);
        if (!read_tag(p, &t))
            return false;
        if (strcmp(t.name, "value") != 0 || t.closing)
            return fail(p, "a member holds a value");
        if (!t.empty && !parse_value(p, m))
            return false;
        if (!expect(p, "member", true))
            return false;
    }
}

/* After <array>: <data> values </data> </array>. */
static bool parse_array(parser *p, xv *v) {
    tag t;

    if (!read_tag(p, &t) || strcmp(t.name, "data") != 0 || t.closing)
        return fail(p, "an array holds data");
    if (!t.empty)
        for (;;) {
            xv *e;

            if (!read_tag(p, &t))
                return false;
            if (t.closing && strcmp(t.name, "data") == 0)
                break;
            if (t.closing || strcmp(t.name, "value") != 0)
                return fail(p, "array data holds values");
            e = new_value(p);
            append(v, e);
            if (!t.empty && !parse_value(p, e))
                return false;
        }
    return expect(p, "array", true);
}

/* After <value>: its content and </value>. */
static bool parse_value(parser *p, xv *v) {
    char *text, *nul;
    tag t;
    bool ok = true;

    if (++p->depth > XV_MAX_DEPTH)
        return fail(p, "values nested too deep");
    if (!read_text(p, &text, &nul) || !read_tag(p, &t))
        return false;
    if (t.closing && strcmp(t.name, "value") == 0) { /* a bare <value>text</value> is a string */
        *nul = 0;
        v->s = text;
        p->depth--;
        return true;
    }
    if (t.closing)
        return fail(p, "unexpected end tag");
    if (strcmp(t.name, "struct") == 0) {
        v->kind = XV_STRUCT;
        ok = t.empty || parse_struct(p, v);
    } else if (strcmp(t.name, "array") == 0) {
        v->kind = XV_ARRAY;
        ok = !t.empty && parse_array(p, v);
    } else {
        const char *name = t.name;
        size_t i;

        for (i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
            if (strcmp(scalars[i].name, name) == 0)
                break;
        if (i == sizeof scalars / sizeof scalars[0])
            return fail(p, "unknown value type");
        v->kind = scalars[i].kind;
        if (!t.empty) {
            ok = read_text(p, &text, &nul) && expect(p, name, true);
            if (ok) {
                *nul = 0;
                v->s = text;
            }
        }
    }
    p->depth--;
    return ok && expect(p, "value", true);
}

int xv_parse(char *xml, size_t len, xv_doc **ret_doc, const xv **ret_value, bool *ret_fault,
             const char **ret_why) {
    parser p = {.p = xml, .end = xml + len};
    xv *root;
    tag t;
    bool fault;

    p.doc = calloc(1, sizeof *p.doc);
    if (!p.doc)
        abort();
    p.doc->buf = xml;
    root = new_value(&p);
    if (!expect(&p, "methodResponse", false) || !read_tag(&p, &t))
        goto bad;
    fault = strcmp(t.name, "fault") == 0 && !t.closing;
    if (fault) {
        if (!expect(&p, "value", false) || !parse_value(&p, root) || !expect(&p, "fault", true))
            goto bad;
    } else if (strcmp(t.name, "params") != 0 || t.closing || !expect(&p, "param", false) ||
               !expect(&p, "value", false) || !parse_value(&p, root) || !expect(&p, "param", true) ||
               !expect(&p, "params", true)) {
        fail(&p, "a methodResponse holds params or a fault");
        goto bad;
    }
    if (!expect(&p, "methodResponse", true))
        goto bad;
    *ret_doc = p.doc;
    *ret_value = root;
    *ret_fault = fault;
    return 0;
bad:
    *ret_why = p.why ? p.why : "the reply is not XML-RPC";
    xv_doc_free(p.doc);
    return -EBADMSG;
}

void xv_doc_free(xv_doc *d) {
    if (!d)
        return;
    for (chunk *c = d->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(d->buf);
    free(d);
}

const xv *xv_member(const xv *s, const char *name) {
    if (!s || s->kind != XV_STRUCT)
        return NULL;
    for (const xv *m = s->first; m; m = m->next)
        if (strcmp(m->key, name) == 0)
            return m;
    return NULL;
}

const char *xv_str(const xv *v) {
    return v && v->kind != XV_ARRAY && v->kind != XV_STRUCT ? v->s : "";
}
