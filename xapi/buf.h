/* A growable byte buffer: the target of every encoder. Always NUL-terminated
 * after any append (data[len] == 0), so it can be used as a C string. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

typedef struct xapi_buf {
    char *data;
    size_t len;
    size_t cap;
} xapi_buf;

#define XAPI_BUF_INIT {NULL, 0, 0}

void xapi_buf_reserve(xapi_buf *b, size_t extra);
void xapi_buf_append(xapi_buf *b, const void *p, size_t n);
void xapi_buf_puts(xapi_buf *b, const char *s);
void xapi_buf_putc(xapi_buf *b, char c);
void xapi_buf_printf(xapi_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void xapi_buf_truncate(xapi_buf *b, size_t len);
/* Hands the storage to the caller (who frees it); b becomes empty. */
char *xapi_buf_steal(xapi_buf *b, size_t *ret_len);
void xapi_buf_free(xapi_buf *b);

#define XAPI_BUF_LIT(b, lit) xapi_buf_append((b), (lit), sizeof(lit) - 1)
