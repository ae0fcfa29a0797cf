/* The on-disk form of an RRD: compact binary in this machine's byte order
 * (the files never leave it; xapi's gzipped XML dump would cost ~10x the
 * bytes and a parser), checked field by field on load so a damaged file is
 * refused, never trusted. Layout:
 *   "XRRD" u32 version(1) u32 step f64 last_updated u32 nds u32 nrra
 *   nds x { char name[64] u32 type u32 inverse u32 have_last f64 min max last value unknown_sec }
 *   nrra x { u32 cf pdp_cnt rows head f64 xff; nds x { f64 cdp_value u32 cdp_unknown }; nds x rows x f64 } */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xapi/rrd.h"
#include "xapi/value.h"

#define RRD_MAGIC "XRRD"
#define RRD_VERSION 1
#define RRD_MAX_ROWS 100000
#define RRD_MAX_RRAS 32

static void put32(xapi_buf *b, uint32_t v) {
    xapi_buf_append(b, &v, sizeof v);
}

static void putd(xapi_buf *b, double v) {
    xapi_buf_append(b, &v, sizeof v);
}

void xapi_rrd_encode(const xapi_rrd *r, xapi_buf *b) {
    xapi_buf_append(b, RRD_MAGIC, 4);
    put32(b, RRD_VERSION);
    put32(b, r->step);
    putd(b, r->last_updated);
    put32(b, (uint32_t)r->nds);
    put32(b, (uint32_t)r->nrra);
    for (size_t d = 0; d < r->nds; d++) {
        const xapi_rrd_ds *ds = &r->ds[d];
        xapi_buf_append(b, ds->name, sizeof ds->name);
        put32(b, ds->type);
        put32(b, ds->inverse);
        put32(b, ds->have_last);
        putd(b, ds->min);
        putd(b, ds->max);
        putd(b, ds->last);
        putd(b, ds->value);
        putd(b, ds->unknown_sec);
    }
    for (size_t i = 0; i < r->nrra; i++) {
        const xapi_rrd_rra *a = &r->rra[i];
        put32(b, a->cf);
        put32(b, a->pdp_cnt);
        put32(b, a->rows);
        put32(b, a->head);
        putd(b, a->xff);
        for (size_t d = 0; d < r->nds; d++) {
            putd(b, a->cdp_value[d]);
            put32(b, a->cdp_unknown[d]);
        }
        for (size_t d = 0; d < r->nds; d++)
            xapi_buf_append(b, a->col[d], a->rows * sizeof(double));
    }
}

int xapi_rrd_save(const xapi_rrd *r, const char *path) {
    xapi_buf b = XAPI_BUF_INIT;
    int rc;

    xapi_rrd_encode(r, &b);
    rc = xapi_rrd_write_file(path, b.data, b.len);
    xapi_buf_free(&b);
    return rc;
}

int xapi_rrd_write_file(const char *path, const char *data, size_t len) {
    char *tmp = NULL;
    size_t off = 0;
    int fd = -1, rc = 0;

    if (asprintf(&tmp, "%s.tmp", path) < 0)
        xapi_oom();
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            goto out;
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0) {
        rc = -errno;
        goto out;
    }
    if (close(fd) < 0) {
        fd = -1;
        rc = -errno;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        rc = -errno;
out:
    if (fd >= 0)
        close(fd);
    if (rc < 0 && tmp)
        unlink(tmp);
    free(tmp);
    return rc;
}

typedef struct reader {
    const char *p;
    size_t left;
    bool bad;
} reader;

static void get(reader *rd, void *dst, size_t n) {
    if (rd->bad || rd->left < n) {
        rd->bad = true;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, rd->p, n);
    rd->p += n;
    rd->left -= n;
}

static uint32_t get32(reader *rd) {
    uint32_t v;
    get(rd, &v, sizeof v);
    return v;
}

static double getd(reader *rd) {
    double v;
    get(rd, &v, sizeof v);
    return v;
}

static int decode(const char *data, size_t len, xapi_rrd **ret) {
    reader rd = {data, len, false};
    xapi_rrd *r = NULL;
    char magic[4];
    uint32_t nds, nrra;
    int rc = -EBADMSG;

    get(&rd, magic, 4);
    if (rd.bad || memcmp(magic, RRD_MAGIC, 4) != 0 || get32(&rd) != RRD_VERSION)
        return -EBADMSG;
    r = xapi_calloc(1, sizeof *r);
    r->step = get32(&rd);
    r->last_updated = getd(&rd);
    nds = get32(&rd);
    nrra = get32(&rd);
    if (rd.bad || r->step < 1 || r->step > 3600 || nds > XAPI_RRD_MAX_DS || nrra < 1 || nrra > RRD_MAX_RRAS)
        goto out;
    r->ds = xapi_calloc(nds + 1, sizeof *r->ds);
    r->rra = xapi_calloc(nrra, sizeof *r->rra);
    r->nrra = nrra;
    r->nds = nds; /* xapi_rrd_free copes with archives not reached (no columns) */
    for (uint32_t d = 0; d < nds; d++) {
        xapi_rrd_ds *ds = &r->ds[d];
        get(&rd, ds->name, sizeof ds->name);
        ds->name[sizeof ds->name - 1] = 0;
        ds->type = (xapi_rrd_ds_type)get32(&rd);
        ds->inverse = get32(&rd) != 0;
        ds->have_last = get32(&rd) != 0;
        ds->min = getd(&rd);
        ds->max = getd(&rd);
        ds->last = getd(&rd);
        ds->value = getd(&rd);
        ds->unknown_sec = getd(&rd);
        if (rd.bad || ds->type > XAPI_RRD_DERIVE || !ds->name[0])
            goto out;
    }
    for (uint32_t i = 0; i < nrra; i++) {
        xapi_rrd_rra *a = &r->rra[i];
        a->cf = (xapi_rrd_cf)get32(&rd);
        a->pdp_cnt = get32(&rd);
        a->rows = get32(&rd);
        a->head = get32(&rd);
        a->xff = getd(&rd);
        if (rd.bad || a->cf > XAPI_RRD_LAST || a->pdp_cnt < 1 || a->rows < 1 || a->rows > RRD_MAX_ROWS ||
            a->head >= a->rows || !(a->xff >= 0 && a->xff <= 1) || rd.left < (size_t)nds * a->rows * sizeof(double))
            goto out;
        a->col = xapi_calloc(nds + 1, sizeof *a->col);
        a->cdp_value = xapi_calloc(nds + 1, sizeof *a->cdp_value);
        a->cdp_unknown = xapi_calloc(nds + 1, sizeof *a->cdp_unknown);
        for (uint32_t d = 0; d < nds; d++) {
            a->cdp_value[d] = getd(&rd);
            a->cdp_unknown[d] = get32(&rd);
        }
        for (uint32_t d = 0; d < nds; d++) {
            a->col[d] = xapi_malloc(a->rows * sizeof(double));
            get(&rd, a->col[d], a->rows * sizeof(double));
        }
        if (rd.bad)
            goto out;
    }
    if (rd.left != 0)
        goto out;
    rc = 0;
out:
    if (rc < 0) {
        xapi_rrd_free(r);
        return rc;
    }
    *ret = r;
    return 0;
}

int xapi_rrd_load(const char *path, xapi_rrd **ret) {
    struct stat sb;
    char *data = NULL;
    size_t off = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &sb) < 0 || sb.st_size > (off_t)64 << 20) {
        rc = fstat(fd, &sb) < 0 ? -errno : -EFBIG;
        close(fd);
        return rc;
    }
    data = xapi_malloc((size_t)sb.st_size + 1);
    while (off < (size_t)sb.st_size) {
        ssize_t n = read(fd, data + off, (size_t)sb.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    rc = off == (size_t)sb.st_size ? decode(data, off, ret) : -EIO;
    free(data);
    return rc;
}
