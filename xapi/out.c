/* Streaming XML-RPC / JSON encoders and reply envelopes. See out.h.
 *
 * This is the hot path of large replies (get_all_records of thousands of VMs
 * is tens of MB), so: space is reserved ahead and written through a raw
 * pointer, literals are memcpy'd with constant sizes, strings are scanned
 * and copied eight bytes at a time (bytes go one by one only in a word that
 * holds a character to escape), and integers are formatted by hand. Every
 * public call leaves the buffer NUL-terminated, as buf.h promises; the
 * reservation always keeps one spare byte for that. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "out.h"
#include "schema.h"

/* --- Raw buffer access ---------------------------------------------------- */

/* Returns a pointer to at least n writable bytes plus one for the NUL. */
static inline char *room(xapi_buf *b, size_t n) {
    if (__builtin_expect(b->cap - b->len <= n, 0))
        xapi_buf_reserve(b, n);
    return b->data + b->len;
}

static inline void put(xapi_buf *b, const void *s, size_t n) {
    char *p = room(b, n);
    memcpy(p, s, n);
    b->len += n;
}

#define PUT_LIT(b, lit) put((b), (lit), sizeof(lit) - 1)

/* Appends a literal to a pointer that has room, advancing it. */
#define EMIT_LIT(p, lit)                     \
    do {                                     \
        memcpy((p), (lit), sizeof(lit) - 1); \
        (p) += sizeof(lit) - 1;              \
    } while (0)

static inline void terminate(xapi_buf *b) {
    b->data[b->len] = 0;
}

/* --- Numbers ---------------------------------------------------------------- */

static const char digit_pairs[201] = "00010203040506070809"
                                     "10111213141516171819"
                                     "20212223242526272829"
                                     "30313233343536373839"
                                     "40414243444546474849"
                                     "50515253545556575859"
                                     "60616263646566676869"
                                     "70717273747576777879"
                                     "80818283848586878889"
                                     "90919293949596979899";

#define INT_MAX_CHARS 20 /* "-9223372036854775808" */

/* Writes the decimal form of i at p; returns its length. */
static inline size_t fmt_int(char *p, int64_t i) {
    char tmp[INT_MAX_CHARS];
    char *e = tmp + sizeof(tmp), *q = e;
    uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    size_t n;

    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        *--q = digit_pairs[d + 1];
        *--q = digit_pairs[d];
    }
    if (u >= 10) {
        unsigned d = (unsigned)u * 2;
        *--q = digit_pairs[d + 1];
        *--q = digit_pairs[d];
    } else
        *--q = (char)('0' + u);
    if (i < 0)
        *--q = '-';
    n = (size_t)(e - q);
    memcpy(p, q, n);
    return n;
}

/* --- Escaping ------------------------------------------------------------- */

/* XML: 0 = copy, 1 = drop (control characters but TAB, LF, CR, as rpclib),
 * XC_UTF8 = the start of a multi-byte character (or a stray byte), 3.. = entity. */
enum { XC_COPY = 0, XC_DROP, XC_UTF8, XC_AMP, XC_LT, XC_GT, XC_QUOT };

static const unsigned char xml_class[256] = {
    [0x00 ... 0x08] = XC_DROP,
    [0x0b ... 0x0c] = XC_DROP, /* TAB, LF and CR are kept */
    [0x0e ... 0x1f] = XC_DROP,
    ['&'] = XC_AMP,
    ['<'] = XC_LT,
    ['>'] = XC_GT,
    ['"'] = XC_QUOT,
    [0x80 ... 0xff] = XC_UTF8,
};

/* U+FFFD: what an encoder writes for bytes that are not a character its format can carry. */
#define REPLACEMENT_CHAR "\xef\xbf\xbd"

/* Word-at-a-time tests (exact as to whether any byte matches, which is all
 * that is used: the bytes of a flagged word go through the tables). */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t has_zero(uint64_t x) {
    return (x - ONES) & ~x & HIGHS;
}

static inline uint64_t has_less(uint64_t x, unsigned char n) { /* n <= 128 */
    return (x - ONES * n) & ~x & HIGHS;
}

static inline uint64_t has_byte(uint64_t x, unsigned char c) {
    return has_zero(x ^ (ONES * c));
}

/* Any of & < > " , a control character or a byte of a multi-byte character
 * (checked, so that no stored string makes the document malformed). x | 2 is
 * 0x3e for '<' and '>'; x | 4 is 0x26 for '"' and '&'. */
static inline bool xml_word_dirty(uint64_t x) {
    return ((x & HIGHS) | has_less(x, 0x20) | has_byte(x | ONES * 2, 0x3e) | has_byte(x | ONES * 4, 0x26)) != 0;
}

/* Any of " \ DEL, a control character or a byte of a multi-byte character. */
static inline bool json_word_dirty(uint64_t x) {
    return ((x & HIGHS) | has_less(x, 0x20) | has_byte(x, '"') | has_byte(x, '\\') | has_byte(x, 0x7f)) != 0;
}

/* Copies s[*i..n) to p a word at a time up to the first word `dirty` flags
 * (or the last partial word); returns p advanced. Inlined so that `dirty` is a
 * direct, inlined call in each escaper. */
static inline __attribute__((always_inline)) char *copy_clean_words(char *p, const unsigned char *s, size_t n,
                                                                    size_t *i, bool (*dirty)(uint64_t)) {
    while (n - *i >= 8) {
        uint64_t x;
        memcpy(&x, s + *i, 8);
        if (dirty(x))
            break;
        memcpy(p, &x, 8);
        p += 8;
        *i += 8;
    }
    return p;
}

/* The escaped form of s, appended without terminating. Clean words are
 * copied as they are scanned; a word with a candidate goes character by
 * character. A byte that does not start a character XML can carry (invalid
 * UTF-8 from outside, U+FFFE/U+FFFF from a store of an older version) is
 * written as U+FFFD: the document stays well-formed for every client. */
static void xml_escape_raw(xapi_buf *b, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    char *p;

    if (n == 0)
        return;
    p = room(b, n); /* one byte out per byte in, until an entity */
    while (i < n) {
        size_t lim;

        p = copy_clean_words(p, s, n, &i, xml_word_dirty);
        lim = n - i < 8 ? n : i + 8;
        while (i < lim) {
            unsigned char cls = xml_class[s[i]];
            size_t len = 1; /* bytes in for what is written */

            if (!cls) {
                *p++ = (char)s[i++];
                continue;
            }
            if (cls == XC_DROP) {
                i++;
                continue;
            }
            if (cls == XC_UTF8) {
                uint32_t cp;
                size_t clen = xapi_utf8_decode(str + i, n - i, &cp);

                if (clen && xapi_xml_char(cp)) {
                    memcpy(p, s + i, clen); /* a multi-byte character may end past lim: fine */
                    p += clen;
                    i += clen;
                    continue;
                }
                if (clen) /* U+FFFE or U+FFFF: one U+FFFD for the character */
                    len = clen;
            }
            /* Room for the entity and, as before, a byte per byte left. */
            b->len = (size_t)(p - b->data);
            p = room(b, 6 + (n - i));
            switch (cls) {
            case XC_UTF8:
                EMIT_LIT(p, REPLACEMENT_CHAR);
                break;
            case XC_AMP:
                EMIT_LIT(p, "&amp;");
                break;
            case XC_LT:
                EMIT_LIT(p, "&lt;");
                break;
            case XC_GT:
                EMIT_LIT(p, "&gt;");
                break;
            default: /* XC_QUOT */
                EMIT_LIT(p, "&quot;");
                break;
            }
            i += len;
        }
    }
    b->len = (size_t)(p - b->data);
}

void xapi_xml_escape(xapi_buf *b, const char *s, size_t n) {
    room(b, 0);
    xml_escape_raw(b, s, n);
    terminate(b);
}

/* JSON: 0 = copy, 1 = \u00XX, 2 = the start of a multi-byte character (or a
 * stray byte), else the character after the backslash. */
static const unsigned char json_class[256] = {
    [0x00 ... 0x07] = 1, ['\b'] = 'b', ['\t'] = 't',  ['\n'] = 'n', [0x0b] = 1,
    ['\f'] = 'f',        ['\r'] = 'r', [0x0e ... 0x1f] = 1, ['"'] = '"', ['\\'] = '\\',
    [0x7f] = 1,          [0x80 ... 0xff] = 2,
};

/* As xml_escape_raw; a byte that is not valid UTF-8 is written as \ufffd. */
static void json_escape_raw(xapi_buf *b, const char *str, size_t n) {
    static const char hex[16] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    char *p;

    if (n == 0)
        return;
    p = room(b, n);
    while (i < n) {
        size_t lim;

        p = copy_clean_words(p, s, n, &i, json_word_dirty);
        lim = n - i < 8 ? n : i + 8;
        while (i < lim) {
            unsigned char c = json_class[s[i]];
            uint32_t cp;
            size_t len;

            if (!c) {
                *p++ = (char)s[i++];
                continue;
            }
            /* JSON carries every Unicode scalar value */
            if (c == 2 && (len = xapi_utf8_decode(str + i, n - i, &cp)) > 0) {
                memcpy(p, s + i, len);
                p += len;
                i += len;
                continue;
            }
            b->len = (size_t)(p - b->data);
            p = room(b, 6 + (n - i));
            if (c == 2) {
                EMIT_LIT(p, "\\ufffd");
            } else if (c == 1) {
                p[0] = '\\';
                p[1] = 'u';
                p[2] = '0';
                p[3] = '0';
                p[4] = hex[s[i] >> 4];
                p[5] = hex[s[i] & 15];
                p += 6;
            } else {
                p[0] = '\\';
                p[1] = (char)c;
                p += 2;
            }
            i++;
        }
    }
    b->len = (size_t)(p - b->data);
}

void xapi_json_escape(xapi_buf *b, const char *s, size_t n) {
    room(b, 0);
    json_escape_raw(b, s, n);
    terminate(b);
}

/* --- Structure ------------------------------------------------------------ */

void xapi_out_init(xapi_out *o, xapi_format fmt, xapi_buf *buf) {
    o->fmt = fmt;
    o->buf = buf;
    o->depth = 0;
    o->nonempty[0] = false;
}

/* JSON: before a value, the comma if the enclosing array already has an
 * element. After a member name nonempty[depth] is false (see member), so the
 * member's value writes no comma and marks the object non-empty again. */
static inline void json_sep(xapi_out *o) {
    if (o->nonempty[o->depth])
        put(o->buf, ",", 1);
    o->nonempty[o->depth] = true;
}

static void push(xapi_out *o) {
    if (o->depth + 1 >= XAPI_OUT_MAX_DEPTH) {
        /* Decoded values are limited to XAPI_RPC_MAX_DEPTH, the schema is far
         * shallower: getting here is a programming error. */
        static const char msg[] = "xenapid: xapi_out nesting too deep\n";
        ssize_t r = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)r;
        abort();
    }
    o->depth++;
    o->nonempty[o->depth] = false;
}

static void pop(xapi_out *o) {
    if (o->depth > 0)
        o->depth--;
}

/* --- Scalars -------------------------------------------------------------- */

static inline void out_string(xapi_out *o, const char *s, size_t n) {
    xapi_buf *b = o->buf;

    if (o->fmt == XAPI_FMT_XML) {
        room(b, 7 + n + 8);
        PUT_LIT(b, "<value>");
        xml_escape_raw(b, s, n);
        PUT_LIT(b, "</value>");
    } else {
        json_sep(o);
        room(b, n + 2);
        put(b, "\"", 1);
        json_escape_raw(b, s, n);
        put(b, "\"", 1);
    }
}

void xapi_out_string(xapi_out *o, const char *s, size_t n) {
    out_string(o, s ? s : "", s ? n : 0);
    terminate(o->buf);
}

void xapi_out_cstring(xapi_out *o, const char *s) {
    if (!s)
        s = "";
    out_string(o, s, strlen(s));
    terminate(o->buf);
}

static inline void out_int(xapi_out *o, int64_t i) {
    xapi_buf *b = o->buf;
    char *p;

    if (o->fmt == XAPI_FMT_XML) {
        p = room(b, 7 + INT_MAX_CHARS + 8);
        EMIT_LIT(p, "<value>");
        p += fmt_int(p, i);
        EMIT_LIT(p, "</value>");
    } else {
        json_sep(o);
        p = room(b, INT_MAX_CHARS);
        p += fmt_int(p, i);
    }
    b->len = (size_t)(p - b->data);
}

void xapi_out_int(xapi_out *o, int64_t i) {
    out_int(o, i);
    terminate(o->buf);
}

void xapi_out_int32(xapi_out *o, int32_t i) {
    xapi_buf *b = o->buf;
    char *p;

    if (o->fmt == XAPI_FMT_XML) {
        p = room(b, 11 + INT_MAX_CHARS + 13);
        EMIT_LIT(p, "<value><i4>");
        p += fmt_int(p, i);
        EMIT_LIT(p, "</i4></value>");
        b->len = (size_t)(p - b->data);
    } else
        out_int(o, i);
    terminate(b);
}

void xapi_out_float(xapi_out *o, double f) {
    xapi_buf *b = o->buf;
    char tmp[64];
    int n;

    if (o->fmt == XAPI_FMT_XML) {
        /* As rpclib: OCaml's %.16g, which prints nan / inf / -inf. */
        n = snprintf(tmp, sizeof(tmp), "%.16g", f);
        room(b, 15 + (size_t)n + 17);
        PUT_LIT(b, "<value><double>");
        put(b, tmp, (size_t)n);
        PUT_LIT(b, "</double></value>");
    } else {
        json_sep(o);
        if (!isfinite(f))
            PUT_LIT(b, "null");
        else {
            n = snprintf(tmp, sizeof(tmp), "%.17g", f);
            put(b, tmp, (size_t)n);
        }
    }
    terminate(b);
}

static inline void out_bool(xapi_out *o, bool v) {
    xapi_buf *b = o->buf;

    if (o->fmt == XAPI_FMT_XML) {
        if (v)
            PUT_LIT(b, "<value><boolean>1</boolean></value>");
        else
            PUT_LIT(b, "<value><boolean>0</boolean></value>");
    } else {
        json_sep(o);
        if (v)
            PUT_LIT(b, "true");
        else
            PUT_LIT(b, "false");
    }
}

void xapi_out_bool(xapi_out *o, bool v) {
    out_bool(o, v);
    terminate(o->buf);
}

static inline void out_datetime(xapi_out *o, int64_t t) {
    xapi_buf *b = o->buf;
    char *p;

    if (o->fmt == XAPI_FMT_XML) {
        p = room(b, 24 + XAPI_DATETIME_LEN + 27);
        EMIT_LIT(p, "<value><dateTime.iso8601>");
        xapi_datetime_format(t, p); /* writes a NUL, overwritten next */
        p += XAPI_DATETIME_LEN;
        EMIT_LIT(p, "</dateTime.iso8601></value>");
    } else {
        json_sep(o);
        p = room(b, XAPI_DATETIME_LEN + 2);
        *p++ = '"';
        xapi_datetime_format(t, p);
        p += XAPI_DATETIME_LEN;
        *p++ = '"';
    }
    b->len = (size_t)(p - b->data);
}

void xapi_out_datetime(xapi_out *o, int64_t epoch_seconds) {
    out_datetime(o, epoch_seconds);
    terminate(o->buf);
}

void xapi_out_void(xapi_out *o) {
    out_string(o, "", 0);
    terminate(o->buf);
}

static void out_nil(xapi_out *o) {
    if (o->fmt == XAPI_FMT_XML)
        PUT_LIT(o->buf, "<value><nil/></value>");
    else {
        json_sep(o);
        PUT_LIT(o->buf, "null");
    }
}

/* --- Containers ----------------------------------------------------------- */

static inline void array_begin(xapi_out *o) {
    if (o->fmt == XAPI_FMT_XML)
        PUT_LIT(o->buf, "<value><array><data>");
    else {
        json_sep(o);
        put(o->buf, "[", 1);
    }
    push(o);
}

void xapi_out_array_begin(xapi_out *o) {
    array_begin(o);
    terminate(o->buf);
}

static inline void array_end(xapi_out *o) {
    pop(o);
    if (o->fmt == XAPI_FMT_XML)
        PUT_LIT(o->buf, "</data></array></value>");
    else
        put(o->buf, "]", 1);
}

void xapi_out_array_end(xapi_out *o) {
    array_end(o);
    terminate(o->buf);
}

static inline void struct_begin(xapi_out *o) {
    if (o->fmt == XAPI_FMT_XML)
        PUT_LIT(o->buf, "<value><struct>");
    else {
        json_sep(o);
        put(o->buf, "{", 1);
    }
    push(o);
}

void xapi_out_struct_begin(xapi_out *o) {
    struct_begin(o);
    terminate(o->buf);
}

/* XML closes the previous member when the next one starts or the struct
 * ends, since the member's value is written by separate calls. */
static inline void member(xapi_out *o, const char *name, size_t n) {
    xapi_buf *b = o->buf;

    if (o->fmt == XAPI_FMT_XML) {
        room(b, 9 + 14 + n + 7);
        if (o->nonempty[o->depth])
            PUT_LIT(b, "</member>");
        o->nonempty[o->depth] = true;
        PUT_LIT(b, "<member><name>");
        xml_escape_raw(b, name, n);
        PUT_LIT(b, "</name>");
    } else {
        room(b, 1 + n + 3);
        if (o->nonempty[o->depth])
            put(b, ",", 1);
        o->nonempty[o->depth] = false; /* the value adds no comma */
        put(b, "\"", 1);
        json_escape_raw(b, name, n);
        PUT_LIT(b, "\":");
    }
}

void xapi_out_member(xapi_out *o, const char *name, size_t n) {
    member(o, name ? name : "", name ? n : 0);
    terminate(o->buf);
}

void xapi_out_cmember(xapi_out *o, const char *name) {
    if (!name)
        name = "";
    member(o, name, strlen(name));
    terminate(o->buf);
}

static inline void struct_end(xapi_out *o) {
    if (o->fmt == XAPI_FMT_XML) {
        if (o->nonempty[o->depth])
            PUT_LIT(o->buf, "</member></struct></value>");
        else
            PUT_LIT(o->buf, "</struct></value>");
        pop(o);
    } else {
        pop(o);
        put(o->buf, "}", 1);
    }
}

void xapi_out_struct_end(xapi_out *o) {
    struct_end(o);
    terminate(o->buf);
}

/* --- Generic values ------------------------------------------------------- */

static void out_value(xapi_out *o, const xapi_value *v);

/* An array of items[first..n). */
static void out_items(xapi_out *o, const xapi_value *items, uint32_t first, uint32_t n) {
    array_begin(o);
    for (uint32_t i = first; i < n; i++)
        out_value(o, &items[i]);
    array_end(o);
}

static void out_value(xapi_out *o, const xapi_value *v) {
    switch (v->kind) {
    case XAPI_V_STRING:
        out_string(o, v->s, v->n);
        break;
    case XAPI_V_INT:
        out_int(o, v->i);
        break;
    case XAPI_V_FLOAT:
        xapi_out_float(o, v->f);
        break;
    case XAPI_V_BOOL:
        out_bool(o, v->b);
        break;
    case XAPI_V_DATETIME:
        out_datetime(o, v->i);
        break;
    case XAPI_V_ARRAY:
        out_items(o, v->items, 0, v->n);
        break;
    case XAPI_V_STRUCT:
        struct_begin(o);
        for (uint32_t i = 0; i < v->n; i++) {
            member(o, v->members[i].name, strlen(v->members[i].name));
            out_value(o, &v->members[i].value);
        }
        struct_end(o);
        break;
    default:
        out_nil(o);
        break;
    }
}

void xapi_out_value(xapi_out *o, const xapi_value *v) {
    if (v)
        out_value(o, v);
    else
        out_nil(o);
    terminate(o->buf);
}

/* --- Records -------------------------------------------------------------- */

/* What opens each member of a class's record, escaped once for both formats:
 * XML "<member><name>NAME</name>", JSON "\"NAME\":". NULL for fields that
 * records leave out (event snapshots). Built on first use, kept for good. */
typedef struct member_open {
    const char *xml, *json;
    uint32_t xml_len, json_len;
} member_open;

static member_open *record_opens[XAPI_NCLASSES];
static pthread_once_t record_opens_once = PTHREAD_ONCE_INIT;

static void build_record_opens(void) {
    for (unsigned c = 0; c < xapi_nclasses && c < XAPI_NCLASSES; c++) {
        const xapi_class *cls = &xapi_classes[c];
        member_open *t = xapi_calloc(cls->nfields ? cls->nfields : 1, sizeof *t);

        for (unsigned i = 0; i < cls->nfields; i++) {
            const xapi_field *f = &cls->fields[i];
            xapi_buf b = XAPI_BUF_INIT;
            size_t xl;

            if (f->type->kind == XAPI_T_ANY_RECORD)
                continue;
            PUT_LIT(&b, "<member><name>");
            xml_escape_raw(&b, f->name, f->name_len);
            PUT_LIT(&b, "</name>");
            xl = b.len;
            put(&b, "\"", 1);
            json_escape_raw(&b, f->name, f->name_len);
            PUT_LIT(&b, "\":");
            t[i].xml = b.data;
            t[i].xml_len = (uint32_t)xl;
            t[i].json = b.data + xl;
            t[i].json_len = (uint32_t)(b.len - xl);
        }
        record_opens[c] = t;
    }
}

/* member() with the name's bytes ready. */
static inline void member_ready(xapi_out *o, const member_open *m) {
    xapi_buf *b = o->buf;
    char *p;

    if (o->fmt == XAPI_FMT_XML) {
        p = room(b, 9 + m->xml_len);
        if (o->nonempty[o->depth])
            EMIT_LIT(p, "</member>");
        o->nonempty[o->depth] = true;
        memcpy(p, m->xml, m->xml_len);
        p += m->xml_len;
    } else {
        p = room(b, 1 + m->json_len);
        if (o->nonempty[o->depth])
            *p++ = ',';
        o->nonempty[o->depth] = false; /* the value adds no comma */
        memcpy(p, m->json, m->json_len);
        p += m->json_len;
    }
    b->len = (size_t)(p - b->data);
}

void xapi_out_record(xapi_out *o, const xapi_class *cls, const xapi_value *fields) {
    const member_open *opens;

    pthread_once(&record_opens_once, build_record_opens);
    opens = record_opens[cls->id];
    struct_begin(o);
    for (unsigned i = 0; i < cls->nfields; i++) {
        if (!opens[i].xml)
            continue;
        member_ready(o, &opens[i]);
        out_value(o, &fields[i]);
    }
    struct_end(o);
    terminate(o->buf);
}

/* --- Envelopes ------------------------------------------------------------ */

#define XML_HEAD "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct><member><name>Status</name>"
#define XML_TAIL "</member></struct></value></param></params></methodResponse>"

static const char *reply_id(const xapi_rpc_reply *r) {
    return r->json_id && r->json_id[0] ? r->json_id : "null";
}

/* The end of a JSON reply object: the request's id, then the closing brace. */
static void json_id_close(const xapi_rpc_reply *r, xapi_buf *b) {
    PUT_LIT(b, ",\"id\":");
    xapi_buf_puts(b, reply_id(r));
    put(b, "}", 1);
}

static void reset_out(const xapi_rpc_reply *r, xapi_out *o) {
    o->fmt = r->fmt;
    o->depth = 0;
    o->nonempty[0] = false;
}

size_t xapi_reply_begin(const xapi_rpc_reply *r, xapi_out *o) {
    size_t mark = o->buf->len;

    reset_out(r, o);
    if (r->fmt == XAPI_FMT_XML)
        PUT_LIT(o->buf, XML_HEAD "<value>Success</value></member><member><name>Value</name>");
    else if (r->json_version == 2)
        PUT_LIT(o->buf, "{\"jsonrpc\":\"2.0\",\"result\":");
    else
        PUT_LIT(o->buf, "{\"result\":");
    room(o->buf, 0);
    terminate(o->buf);
    return mark;
}

void xapi_reply_end_success(const xapi_rpc_reply *r, xapi_out *o) {
    xapi_buf *b = o->buf;

    if (r->fmt == XAPI_FMT_XML)
        PUT_LIT(b, XML_TAIL);
    else {
        if (r->json_version != 2)
            PUT_LIT(b, ",\"error\":null");
        json_id_close(r, b);
    }
    terminate(b);
}

void xapi_reply_failure(const xapi_rpc_reply *r, xapi_out *o, size_t mark, const xapi_value *err) {
    xapi_buf *b = o->buf;
    bool is_array = err && err->kind == XAPI_V_ARRAY;
    uint32_t n = is_array ? err->n : (err ? 1 : 0);
    const xapi_value *items = is_array ? err->items : err;

    xapi_buf_truncate(b, mark);
    reset_out(r, o);
    if (r->fmt == XAPI_FMT_XML) {
        PUT_LIT(b, XML_HEAD "<value>Failure</value></member><member><name>ErrorDescription</name>");
        out_items(o, items, 0, n);
        PUT_LIT(b, XML_TAIL);
    } else if (r->json_version == 2) {
        PUT_LIT(b, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":1,\"message\":");
        if (n > 0)
            out_value(o, &items[0]);
        else
            out_string(o, "", 0);
        PUT_LIT(b, ",\"data\":");
        o->nonempty[0] = false;
        out_items(o, items, 1, n);
        put(b, "}", 1);
        json_id_close(r, b);
    } else {
        PUT_LIT(b, "{\"result\":null,\"error\":");
        out_items(o, items, 0, n);
        json_id_close(r, b);
    }
    room(b, 0);
    terminate(b);
}
