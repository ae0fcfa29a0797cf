/* Growable byte buffer. See buf.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "value.h"

#define BUF_MIN_CAP 256

void xapi_buf_reserve(xapi_buf *b, size_t extra) {
    size_t need, cap;

    /* Room for extra bytes plus the terminating NUL. */
    if (extra > SIZE_MAX - 1 - b->len)
        xapi_oom();
    need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    cap = b->cap ? b->cap : BUF_MIN_CAP;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            xapi_oom();
        cap *= 2;
    }
    b->data = xapi_realloc(b->data, cap);
    b->cap = cap;
    if (b->len == 0)
        b->data[0] = 0;
}

void xapi_buf_append(xapi_buf *b, const void *p, size_t n) {
    xapi_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void xapi_buf_puts(xapi_buf *b, const char *s) {
    xapi_buf_append(b, s, strlen(s));
}

void xapi_buf_putc(xapi_buf *b, char c) {
    xapi_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = 0;
}

void xapi_buf_printf(xapi_buf *b, const char *fmt, ...) {
    va_list ap;
    int r;

    xapi_buf_reserve(b, 64);
    va_start(ap, fmt);
    r = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (r < 0)
        xapi_oom(); /* only EOVERFLOW / encoding errors: not reachable with our formats */
    if ((size_t)r >= b->cap - b->len) {
        xapi_buf_reserve(b, (size_t)r);
        va_start(ap, fmt);
        r = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (r < 0)
            xapi_oom();
    }
    b->len += (size_t)r;
    b->data[b->len] = 0;
}

void xapi_buf_truncate(xapi_buf *b, size_t len) {
    if (len >= b->len)
        return;
    b->len = len;
    b->data[len] = 0;
}

char *xapi_buf_steal(xapi_buf *b, size_t *ret_len) {
    char *p = b->data;
    size_t len = b->len;

    if (!p)
        p = xapi_strdup("");
    *b = (xapi_buf)XAPI_BUF_INIT;
    if (ret_len)
        *ret_len = len;
    return p;
}

void xapi_buf_free(xapi_buf *b) {
    free(b->data);
    *b = (xapi_buf)XAPI_BUF_INIT;
}
