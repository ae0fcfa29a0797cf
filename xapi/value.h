/* Generic XenAPI values: what the wire decoders produce and what the store keeps.
 *
 * One 16-byte node per value. Strings are NUL-terminated and never NULL (the
 * empty string is the shared constant xapi_empty_string, never freed), so
 * readers need no NULL checks. Maps and records are STRUCTs whose member names
 * are the (stringified) keys. Datetimes are seconds since the epoch, UTC.
 *
 * Memory: allocation failure aborts (xapi_oom), as libxl does: a daemon that
 * cannot allocate a few bytes cannot answer anyway, and it keeps every caller
 * free of impossible error paths. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum xapi_vkind {
    XAPI_V_NIL = 0, /* <nil/> or JSON null: never stored, rejected by coercion */
    XAPI_V_STRING,
    XAPI_V_INT,
    XAPI_V_FLOAT,
    XAPI_V_BOOL,
    XAPI_V_DATETIME,
    XAPI_V_ARRAY,
    XAPI_V_STRUCT,
} xapi_vkind;

typedef struct xapi_value xapi_value;
typedef struct xapi_member xapi_member;

struct xapi_value {
    uint8_t kind; /* xapi_vkind */
    uint32_t n;   /* string length in bytes, or item / member count */
    union {
        int64_t i; /* INT, DATETIME (epoch seconds) */
        double f;
        bool b;
        char *s;               /* STRING: never NULL */
        xapi_value *items;     /* ARRAY: n items */
        xapi_member *members;  /* STRUCT: n members, in insertion order */
    };
};

struct xapi_member {
    char *name; /* never NULL */
    xapi_value value;
};

extern char xapi_empty_string[1];

_Noreturn void xapi_oom(void);
void *xapi_malloc(size_t n);
void *xapi_calloc(size_t n, size_t size);
void *xapi_realloc(void *p, size_t n);
char *xapi_strdup(const char *s);
char *xapi_strndup(const char *s, size_t n);

/* Constructors: return a value that owns copies of its inputs. */
xapi_value xapi_value_nil(void);
xapi_value xapi_value_string(const char *s);
xapi_value xapi_value_stringn(const char *s, size_t n);
xapi_value xapi_value_string_take(char *s); /* takes ownership of a malloc'd string */
xapi_value xapi_value_int(int64_t i);
xapi_value xapi_value_float(double f);
xapi_value xapi_value_bool(bool b);
xapi_value xapi_value_datetime(int64_t epoch_seconds);
xapi_value xapi_value_array(void);  /* empty */
xapi_value xapi_value_struct(void); /* empty */

/* Appends take ownership of item / value (the caller must not free it). */
void xapi_array_append(xapi_value *array, xapi_value item);
void xapi_struct_append(xapi_value *st, const char *name, xapi_value value);
/* Replaces an existing member of that name, else appends. */
void xapi_struct_set(xapi_value *st, const char *name, xapi_value value);
/* NULL when absent. */
xapi_value *xapi_struct_get(const xapi_value *st, const char *name);
/* Removes the member if present; returns whether it was. */
bool xapi_struct_remove(xapi_value *st, const char *name);

void xapi_value_free(xapi_value *v); /* frees the contents; *v becomes NIL */
xapi_value xapi_value_copy(const xapi_value *v);
bool xapi_value_equal(const xapi_value *a, const xapi_value *b);

static inline const char *xapi_value_str(const xapi_value *v) {
    return v && v->kind == XAPI_V_STRING ? v->s : "";
}

/* Datetime text: xapi's "YYYYMMDDTHH:MM:SSZ". buf must hold XAPI_DATETIME_LEN+1. */
#define XAPI_DATETIME_LEN 18
void xapi_datetime_format(int64_t epoch_seconds, char *buf);
/* Accepts YYYYMMDDTHH:MM:SSZ, RFC3339/ISO8601 with or without dashes and colons,
 * optional fraction, Z or +hh:mm offset or none (UTC). 0 or -EINVAL. */
int xapi_datetime_parse(const char *s, int64_t *ret_epoch_seconds);

/* Strict UTF-8 check (no overlongs, no surrogates, max U+10FFFF). */
bool xapi_utf8_valid(const char *s, size_t n);

/* The length (1..4) of the valid UTF-8 sequence at s[0..n), its code point in
 * *ret_cp; 0 if s does not start with one (or n is 0). */
size_t xapi_utf8_decode(const char *s, size_t n, uint32_t *ret_cp);

/* Whether XML 1.0 can carry the character: TAB, LF, CR, U+0020..U+D7FF,
 * U+E000..U+FFFD, U+10000..U+10FFFF. */
static inline bool xapi_xml_char(uint32_t cp) {
    return cp >= 0x20 ? cp <= 0xd7ff || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff)
                      : cp == '\t' || cp == '\n' || cp == '\r';
}

/* Whether s[0..n) is a string a client may store: what xapi's database takes
 * (its UTF8_XML check), so that every reply can carry it. Valid UTF-8 of XML
 * characters (xapi_xml_char) and no Unicode non-characters (U+FDD0..U+FDEF,
 * U+nFFFE, U+nFFFF). */
bool xapi_string_valid(const char *s, size_t n);
