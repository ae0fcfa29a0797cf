/* Generic XenAPI values, datetimes and UTF-8 validation. See value.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "value.h"

char xapi_empty_string[1] = "";

_Noreturn void xapi_oom(void) {
    static const char msg[] = "xenapid: out of memory\n";
    ssize_t r = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)r;
    abort();
}

void *xapi_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        xapi_oom();
    return p;
}

void *xapi_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        xapi_oom();
    return p;
}

void *xapi_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q)
        xapi_oom();
    return q;
}

char *xapi_strdup(const char *s) {
    return xapi_strndup(s, strlen(s));
}

char *xapi_strndup(const char *s, size_t n) {
    char *p = xapi_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* --- Constructors ------------------------------------------------------- */

static uint32_t len32(size_t n) {
    /* Values are at most a few hundred KiB (request bodies are capped); a
     * string that does not fit the 32-bit length is a bug or a lost cause. */
    if (n > UINT32_MAX)
        xapi_oom();
    return (uint32_t)n;
}

xapi_value xapi_value_nil(void) {
    return (xapi_value){.kind = XAPI_V_NIL};
}

xapi_value xapi_value_string(const char *s) {
    return xapi_value_stringn(s, strlen(s));
}

xapi_value xapi_value_stringn(const char *s, size_t n) {
    if (n == 0)
        return (xapi_value){.kind = XAPI_V_STRING, .n = 0, .s = xapi_empty_string};
    return (xapi_value){.kind = XAPI_V_STRING, .n = len32(n), .s = xapi_strndup(s, n)};
}

xapi_value xapi_value_string_take(char *s) {
    size_t n;

    if (!s)
        return (xapi_value){.kind = XAPI_V_STRING, .n = 0, .s = xapi_empty_string};
    n = strlen(s);
    if (n == 0 && s != xapi_empty_string) {
        free(s);
        s = xapi_empty_string;
    }
    return (xapi_value){.kind = XAPI_V_STRING, .n = len32(n), .s = s};
}

xapi_value xapi_value_int(int64_t i) {
    return (xapi_value){.kind = XAPI_V_INT, .i = i};
}

xapi_value xapi_value_float(double f) {
    return (xapi_value){.kind = XAPI_V_FLOAT, .f = f};
}

xapi_value xapi_value_bool(bool b) {
    return (xapi_value){.kind = XAPI_V_BOOL, .b = b};
}

xapi_value xapi_value_datetime(int64_t epoch_seconds) {
    return (xapi_value){.kind = XAPI_V_DATETIME, .i = epoch_seconds};
}

xapi_value xapi_value_array(void) {
    return (xapi_value){.kind = XAPI_V_ARRAY, .n = 0, .items = NULL};
}

xapi_value xapi_value_struct(void) {
    return (xapi_value){.kind = XAPI_V_STRUCT, .n = 0, .members = NULL};
}

/* --- Containers --------------------------------------------------------- */

/* There is no capacity field in the 16-byte node: the capacity of items /
 * members is implied by the count. An array of n > 0 elements always has room
 * for at least max(4, next power of two >= n); so storage grows when n is 0 or
 * a power of two >= 4. Arrays built by hand must follow the same rule
 * (xapi_value_copy does). */
static size_t implied_capacity(size_t n) {
    size_t c = 4;

    if (n == 0)
        return 0;
    while (c < n)
        c <<= 1;
    return c;
}

static bool needs_growth(uint32_t n) {
    return n == 0 || (n >= 4 && (n & (n - 1)) == 0);
}

static size_t grown_capacity(uint32_t n) {
    if (n == UINT32_MAX)
        xapi_oom();
    return n == 0 ? 4 : (size_t)n * 2;
}

void xapi_array_append(xapi_value *array, xapi_value item) {
    if (needs_growth(array->n))
        array->items = xapi_realloc(array->items, grown_capacity(array->n) * sizeof(xapi_value));
    array->items[array->n++] = item;
}

static char *dup_name(const char *name) {
    return name[0] ? xapi_strdup(name) : xapi_empty_string;
}

static void free_name(char *name) {
    if (name != xapi_empty_string)
        free(name);
}

void xapi_struct_append(xapi_value *st, const char *name, xapi_value value) {
    if (needs_growth(st->n))
        st->members = xapi_realloc(st->members, grown_capacity(st->n) * sizeof(xapi_member));
    st->members[st->n].name = dup_name(name);
    st->members[st->n].value = value;
    st->n++;
}

xapi_value *xapi_struct_get(const xapi_value *st, const char *name) {
    if (!st || st->kind != XAPI_V_STRUCT)
        return NULL;
    for (uint32_t i = 0; i < st->n; i++)
        if (strcmp(st->members[i].name, name) == 0)
            return &st->members[i].value;
    return NULL;
}

void xapi_struct_set(xapi_value *st, const char *name, xapi_value value) {
    xapi_value *v = xapi_struct_get(st, name);

    if (v) {
        xapi_value_free(v);
        *v = value;
        return;
    }
    xapi_struct_append(st, name, value);
}

bool xapi_struct_remove(xapi_value *st, const char *name) {
    if (!st || st->kind != XAPI_V_STRUCT)
        return false;
    for (uint32_t i = 0; i < st->n; i++) {
        if (strcmp(st->members[i].name, name) != 0)
            continue;
        free_name(st->members[i].name);
        xapi_value_free(&st->members[i].value);
        memmove(&st->members[i], &st->members[i + 1], (st->n - i - 1) * sizeof(xapi_member));
        st->n--;
        /* Storage is kept: the implied capacity of n-1 is never larger. */
        return true;
    }
    return false;
}

void xapi_value_free(xapi_value *v) {
    if (!v)
        return;
    switch (v->kind) {
    case XAPI_V_STRING:
        if (v->s != xapi_empty_string)
            free(v->s);
        break;
    case XAPI_V_ARRAY:
        for (uint32_t i = 0; i < v->n; i++)
            xapi_value_free(&v->items[i]);
        free(v->items);
        break;
    case XAPI_V_STRUCT:
        for (uint32_t i = 0; i < v->n; i++) {
            free_name(v->members[i].name);
            xapi_value_free(&v->members[i].value);
        }
        free(v->members);
        break;
    default:
        break;
    }
    *v = xapi_value_nil();
}

xapi_value xapi_value_copy(const xapi_value *v) {
    xapi_value c = *v;

    switch (v->kind) {
    case XAPI_V_STRING:
        c.s = v->n ? xapi_strndup(v->s, v->n) : xapi_empty_string;
        break;
    case XAPI_V_ARRAY:
        c.items = v->n ? xapi_malloc(implied_capacity(v->n) * sizeof(xapi_value)) : NULL;
        for (uint32_t i = 0; i < v->n; i++)
            c.items[i] = xapi_value_copy(&v->items[i]);
        break;
    case XAPI_V_STRUCT:
        c.members = v->n ? xapi_malloc(implied_capacity(v->n) * sizeof(xapi_member)) : NULL;
        for (uint32_t i = 0; i < v->n; i++) {
            c.members[i].name = dup_name(v->members[i].name);
            c.members[i].value = xapi_value_copy(&v->members[i].value);
        }
        break;
    default:
        break;
    }
    return c;
}

bool xapi_value_equal(const xapi_value *a, const xapi_value *b) {
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case XAPI_V_NIL:
        return true;
    case XAPI_V_STRING:
        return a->n == b->n && memcmp(a->s, b->s, a->n) == 0;
    case XAPI_V_INT:
    case XAPI_V_DATETIME:
        return a->i == b->i;
    case XAPI_V_FLOAT:
        return a->f == b->f || (isnan(a->f) && isnan(b->f));
    case XAPI_V_BOOL:
        return a->b == b->b;
    case XAPI_V_ARRAY:
        if (a->n != b->n)
            return false;
        for (uint32_t i = 0; i < a->n; i++)
            if (!xapi_value_equal(&a->items[i], &b->items[i]))
                return false;
        return true;
    case XAPI_V_STRUCT:
        /* Maps: member order does not matter. */
        if (a->n != b->n)
            return false;
        for (uint32_t i = 0; i < a->n; i++) {
            const xapi_value *bv;

            if (strcmp(a->members[i].name, b->members[i].name) == 0)
                bv = &b->members[i].value;
            else
                bv = xapi_struct_get(b, a->members[i].name);
            if (!bv || !xapi_value_equal(&a->members[i].value, bv))
                return false;
        }
        return true;
    default:
        return false;
    }
}

/* --- Datetimes ---------------------------------------------------------- */

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: what four digits can say. */
#define DATETIME_MIN INT64_C(-62167219200)
#define DATETIME_MAX INT64_C(253402300799)

static inline void put2(char *p, unsigned v) {
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

/* Formatted by hand (days to civil date, H. Hinnant's algorithm) rather than
 * with gmtime_r, which takes glibc's timezone lock: this is on the reply path
 * of every record that has a datetime field. */
void xapi_datetime_format(int64_t t, char *buf) {
    int64_t days, secs, era, z;
    unsigned doe, yoe, doy, mp, d, m, y;

    if (t < DATETIME_MIN)
        t = DATETIME_MIN;
    if (t > DATETIME_MAX)
        t = DATETIME_MAX;
    days = t / 86400;
    secs = t % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = (unsigned)(yoe + era * 400 + (m <= 2));

    put2(buf, y / 100);
    put2(buf + 2, y % 100);
    put2(buf + 4, m);
    put2(buf + 6, d);
    buf[8] = 'T';
    put2(buf + 9, (unsigned)(secs / 3600));
    buf[11] = ':';
    put2(buf + 12, (unsigned)(secs / 60 % 60));
    buf[14] = ':';
    put2(buf + 15, (unsigned)(secs % 60));
    buf[17] = 'Z';
    buf[18] = 0;
}

static bool digits(const char **p, unsigned count, int *ret) {
    int v = 0;

    for (unsigned i = 0; i < count; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += count;
    *ret = v;
    return true;
}

static bool skip_char(const char **p, char c) {
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

static int days_in_month(int year, int month) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 2 && leap ? 29 : days[month - 1];
}

int xapi_datetime_parse(const char *s, int64_t *ret_epoch_seconds) {
    const char *p = s;
    int year, mon, day, hour, min, sec, oh = 0, om = 0, sign = 0;
    struct tm tm = {0};
    time_t t;

    if (!s)
        return -EINVAL;
    /* Date: YYYYMMDD or YYYY-MM-DD. */
    if (!digits(&p, 4, &year))
        return -EINVAL;
    if (skip_char(&p, '-')) {
        if (!digits(&p, 2, &mon) || !skip_char(&p, '-') || !digits(&p, 2, &day))
            return -EINVAL;
    } else if (!digits(&p, 2, &mon) || !digits(&p, 2, &day))
        return -EINVAL;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -EINVAL;
    p++;
    /* Time: HH:MM:SS or HHMMSS. */
    if (!digits(&p, 2, &hour))
        return -EINVAL;
    if (skip_char(&p, ':')) {
        if (!digits(&p, 2, &min) || !skip_char(&p, ':') || !digits(&p, 2, &sec))
            return -EINVAL;
    } else if (!digits(&p, 2, &min) || !digits(&p, 2, &sec))
        return -EINVAL;
    /* Fraction: ignored (the API has whole seconds). */
    if (*p == '.' || *p == ',') {
        p++;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    /* Zone: Z, +hh:mm, +hhmm, +hh, or none (UTC). */
    if (*p == 'Z' || *p == 'z')
        p++;
    else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        p++;
        if (!digits(&p, 2, &oh))
            return -EINVAL;
        if (skip_char(&p, ':')) {
            if (!digits(&p, 2, &om))
                return -EINVAL;
        } else if (*p >= '0' && *p <= '9' && !digits(&p, 2, &om))
            return -EINVAL;
    }
    if (*p)
        return -EINVAL;

    if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 || min > 59 ||
        sec > 60 || oh > 23 || om > 59)
        return -EINVAL;

    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec; /* 60 (leap second) normalises to the next minute */
    t = timegm(&tm);
    *ret_epoch_seconds = (int64_t)t - sign * (oh * 3600 + om * 60);
    return 0;
}

/* --- UTF-8 -------------------------------------------------------------- */

/* The length of the valid multi-byte sequence at s[0..n) (s[0] >= 0x80), or 0. */
static inline size_t utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];

    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlongs */
        unsigned char hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
        return n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80; /* no overlongs */
        unsigned char hi = c == 0xF4 ? 0x8F : 0xBF; /* max U+10FFFF */
        return n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0; /* continuation byte, C0/C1 overlong leads, F5..FF */
}

bool xapi_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (i < n) {
        size_t len;

        if (s[i] < 0x80) {
            /* ASCII runs, eight bytes at a time. */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            while (i < n && s[i] < 0x80)
                i++;
            continue;
        }
        len = utf8_seq_len(s + i, n - i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

size_t xapi_utf8_decode(const char *str, size_t n, uint32_t *ret_cp) {
    const unsigned char *s = (const unsigned char *)str;
    size_t len;

    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        *ret_cp = s[0];
        return 1;
    }
    len = utf8_seq_len(s, n);
    if (len == 2)
        *ret_cp = (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    else if (len == 3)
        *ret_cp = (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    else if (len == 4)
        *ret_cp = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
                  (s[3] & 0x3F);
    return len;
}

bool xapi_string_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (i < n) {
        uint32_t cp;
        size_t len;

        /* Printable ASCII runs, eight bytes at a time: a byte below 0x20 borrows
         * into its high bit, one above 0x7f has it set already. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (((w - UINT64_C(0x2020202020202020)) | w) & UINT64_C(0x8080808080808080))
                break;
            i += 8;
        }
        if (i == n)
            break;
        len = xapi_utf8_decode(str + i, n - i, &cp);
        if (len == 0 || !xapi_xml_char(cp) || (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
            return false;
        i += len;
    }
    return true;
}
