/* Round-robin databases: the consolidation arithmetic of xapi's rrd.ml
 * (ds_update, rra_update), its renderings, and a binary file format. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xapi/rrd.h"
#include "xapi/value.h"

/* ---- creation ---- */

static void rra_init(xapi_rrd_rra *a, xapi_rrd_cf cf, unsigned pdp_cnt, unsigned rows, double xff) {
    a->cf = cf;
    a->pdp_cnt = pdp_cnt ? pdp_cnt : 1;
    a->rows = rows ? rows : 1;
    a->xff = xff;
    a->head = 0;
    a->col = NULL;
    a->cdp_value = NULL;
    a->cdp_unknown = NULL;
}

static double cf_init(xapi_rrd_cf cf) {
    return cf == XAPI_RRD_MIN ? INFINITY : cf == XAPI_RRD_MAX ? -INFINITY : 0.0;
}

xapi_rrd *xapi_rrd_new(unsigned step, double now, bool min_max) {
    static const struct {
        unsigned seconds, rows;
    } coarse[] = {{60, 120}, {3600, 168}, {86400, 366}};
    xapi_rrd *r = xapi_calloc(1, sizeof *r);
    size_t k = 0;

    r->step = step ? step : 5;
    r->last_updated = now;
    r->rra = xapi_calloc(1 + 3 * 3, sizeof *r->rra);
    rra_init(&r->rra[k++], XAPI_RRD_AVERAGE, 1, 600 / r->step, 0.5);
    for (size_t i = 0; i < 3; i++) {
        unsigned pdp = coarse[i].seconds / r->step;
        rra_init(&r->rra[k++], XAPI_RRD_AVERAGE, pdp, coarse[i].rows, min_max ? 1.0 : 0.5);
        if (min_max) {
            rra_init(&r->rra[k++], XAPI_RRD_MIN, pdp, coarse[i].rows, 1.0);
            rra_init(&r->rra[k++], XAPI_RRD_MAX, pdp, coarse[i].rows, 1.0);
        }
    }
    r->nrra = k;
    return r;
}

void xapi_rrd_free(xapi_rrd *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->nrra; i++) {
        for (size_t d = 0; r->rra[i].col && d < r->nds; d++)
            free(r->rra[i].col[d]);
        free(r->rra[i].col);
        free(r->rra[i].cdp_value);
        free(r->rra[i].cdp_unknown);
    }
    free(r->rra);
    free(r->ds);
    free(r);
}

int xapi_rrd_find_ds(const xapi_rrd *r, const char *name) {
    for (size_t i = 0; i < r->nds; i++)
        if (strcmp(r->ds[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void grow_columns(xapi_rrd *r, size_t nds) {
    r->ds = xapi_realloc(r->ds, nds * sizeof *r->ds);
    for (size_t i = 0; i < r->nrra; i++) {
        xapi_rrd_rra *a = &r->rra[i];
        a->col = xapi_realloc(a->col, nds * sizeof *a->col);
        a->cdp_value = xapi_realloc(a->cdp_value, nds * sizeof *a->cdp_value);
        a->cdp_unknown = xapi_realloc(a->cdp_unknown, nds * sizeof *a->cdp_unknown);
    }
}

int xapi_rrd_add_ds(xapi_rrd *r, const char *name, xapi_rrd_ds_type type, double min, double max, bool inverse) {
    int idx = xapi_rrd_find_ds(r, name);
    size_t d = r->nds;

    if (idx >= 0)
        return idx;
    if (!*name || strlen(name) >= XAPI_RRD_NAME_MAX)
        return -EINVAL;
    if (r->nds >= XAPI_RRD_MAX_DS)
        return -E2BIG;
    grow_columns(r, d + 1);
    memset(&r->ds[d], 0, sizeof r->ds[d]);
    snprintf(r->ds[d].name, sizeof r->ds[d].name, "%s", name);
    r->ds[d].type = type;
    r->ds[d].min = min;
    r->ds[d].max = max;
    r->ds[d].inverse = inverse;
    r->ds[d].value = NAN;
    for (size_t i = 0; i < r->nrra; i++) {
        xapi_rrd_rra *a = &r->rra[i];
        a->col[d] = xapi_malloc(a->rows * sizeof(double));
        for (unsigned k = 0; k < a->rows; k++)
            a->col[d][k] = NAN;
        a->cdp_value[d] = cf_init(a->cf);
        /* the row being built began before this DS existed: what it missed is unknown */
        a->cdp_unknown[d] = (unsigned)(((int64_t)(r->last_updated / r->step)) % a->pdp_cnt);
    }
    r->nds = d + 1;
    return (int)d;
}

void xapi_rrd_remove_ds(xapi_rrd *r, int idx) {
    size_t tail;

    if (idx < 0 || (size_t)idx >= r->nds)
        return;
    tail = r->nds - (size_t)idx - 1;
    memmove(&r->ds[idx], &r->ds[idx + 1], tail * sizeof *r->ds);
    for (size_t i = 0; i < r->nrra; i++) {
        xapi_rrd_rra *a = &r->rra[i];
        free(a->col[idx]);
        memmove(&a->col[idx], &a->col[idx + 1], tail * sizeof *a->col);
        memmove(&a->cdp_value[idx], &a->cdp_value[idx + 1], tail * sizeof *a->cdp_value);
        memmove(&a->cdp_unknown[idx], &a->cdp_unknown[idx + 1], tail * sizeof *a->cdp_unknown);
    }
    r->nds--;
}

/* ---- update ---- */

/* The input turned into the value a primary data point holds: a rate for
 * ABSOLUTE and DERIVE. A DERIVE's first sample, or one below the last (the
 * counter was reset: the domain restarted), is unknown rather than xapi's raw
 * value, which would read as an enormous rate. */
static double process_input(xapi_rrd_ds *ds, double in, double interval) {
    double v = in;

    if (ds->type == XAPI_RRD_DERIVE) {
        bool ok = ds->have_last && !isnan(in) && in >= ds->last;
        v = ok ? (in - ds->last) / interval : NAN;
        ds->have_last = !isnan(in);
        ds->last = in;
        /* the counter ticked a little more than the interval allows (clock granularity) */
        if (v > ds->max && v <= ds->max * 1.05)
            v = ds->max;
    } else if (ds->type == XAPI_RRD_ABSOLUTE)
        v = in / interval;
    if (interval > XAPI_RRD_HEARTBEAT)
        return NAN;
    return v;
}

static double finish_pdp(const xapi_rrd_ds *ds, double interval) {
    double v = ds->value;

    if (interval > XAPI_RRD_HEARTBEAT || isnan(v))
        return NAN;
    if (ds->inverse)
        v = 1.0 - v;
    return v < ds->min || v > ds->max ? NAN : v;
}

/* n primary data points of value pdp go into the row being built. */
static void consolidate(xapi_rrd_rra *a, size_t d, unsigned n, double pdp) {
    if (n == 0)
        return;
    if (isnan(pdp)) {
        a->cdp_unknown[d] += n;
        return;
    }
    switch (a->cf) {
    case XAPI_RRD_AVERAGE:
        a->cdp_value[d] += pdp * n;
        break;
    case XAPI_RRD_MIN:
        a->cdp_value[d] = fmin(a->cdp_value[d], pdp);
        break;
    case XAPI_RRD_MAX:
        a->cdp_value[d] = fmax(a->cdp_value[d], pdp);
        break;
    case XAPI_RRD_LAST:
        a->cdp_value[d] = pdp;
        break;
    }
}

static double finish_cdp(xapi_rrd_rra *a, size_t d) {
    unsigned known = a->cdp_unknown[d] >= a->pdp_cnt ? 0 : a->pdp_cnt - a->cdp_unknown[d];
    double v;

    if (known == 0 || a->cdp_unknown[d] > (unsigned)(a->xff * a->pdp_cnt))
        v = NAN;
    else if (a->cf == XAPI_RRD_AVERAGE)
        v = a->cdp_value[d] / known;
    else
        v = a->cdp_value[d];
    a->cdp_value[d] = cf_init(a->cf);
    a->cdp_unknown[d] = 0;
    return v;
}

static void push_row(xapi_rrd *r, xapi_rrd_rra *a, const double *vals) {
    a->head = (a->head + 1) % a->rows;
    for (size_t d = 0; d < r->nds; d++)
        a->col[d][a->head] = vals[d];
}

/* elapsed primary data points completed since proc_pdp (the start of the last processed one). */
static void rra_update(xapi_rrd *r, int64_t proc_pdp, int64_t elapsed, const double *pdps, double *tmp) {
    for (size_t i = 0; i < r->nrra; i++) {
        xapi_rrd_rra *a = &r->rra[i];
        int64_t offset = a->pdp_cnt - (proc_pdp % a->pdp_cnt);
        int64_t rows_due = elapsed < offset ? 0 : (elapsed - offset) / a->pdp_cnt + 1;

        for (size_t d = 0; d < r->nds; d++)
            consolidate(a, d, (unsigned)(elapsed < offset ? elapsed : offset), pdps[d]);
        if (rows_due == 0)
            continue;
        for (size_t d = 0; d < r->nds; d++)
            tmp[d] = finish_cdp(a, d);
        push_row(r, a, tmp);
        /* a long gap: the rows it spans hold the newest point (as xapi does) */
        for (int64_t k = 1; k < rows_due && k <= a->rows; k++)
            push_row(r, a, pdps);
        for (size_t d = 0; d < r->nds; d++)
            consolidate(a, d, (unsigned)((elapsed - offset) % a->pdp_cnt), pdps[d]);
    }
}

void xapi_rrd_update(xapi_rrd *r, double t, const double *values) {
    double interval = t - r->last_updated;
    int64_t proc_pdp = (int64_t)floor(r->last_updated / r->step);
    int64_t occu_pdp = (int64_t)floor(t / r->step);
    int64_t elapsed;
    double occu_age = t - (double)occu_pdp * r->step;
    double pre_int, post_int;
    double *pdps, *tmp;

    if (interval < 0) { /* the clock went back: count it as one step */
        interval = r->step;
        occu_pdp = proc_pdp + 1;
        occu_age = 0;
        t = (double)occu_pdp * r->step;
    }
    if (interval == 0)
        return;
    elapsed = occu_pdp - proc_pdp;
    pre_int = elapsed > 0 ? interval - occu_age : interval;
    post_int = elapsed > 0 ? occu_age : 0.0;
    r->last_updated = t;
    pdps = xapi_malloc((r->nds + 1) * sizeof(double));
    tmp = xapi_malloc((r->nds + 1) * sizeof(double));
    for (size_t d = 0; d < r->nds; d++) {
        xapi_rrd_ds *ds = &r->ds[d];
        double v = process_input(ds, values[d], interval);
        if (isnan(v))
            ds->unknown_sec = pre_int;
        ds->value = v;
    }
    if (elapsed > 0) {
        for (size_t d = 0; d < r->nds; d++)
            pdps[d] = finish_pdp(&r->ds[d], interval);
        rra_update(r, proc_pdp, elapsed, pdps, tmp);
        for (size_t d = 0; d < r->nds; d++)
            r->ds[d].unknown_sec = isnan(r->ds[d].value) ? post_int : 0.0;
    }
    free(pdps);
    free(tmp);
}

/* ---- reading ---- */

int64_t xapi_rrd_rra_end(const xapi_rrd *r, const xapi_rrd_rra *a) {
    int64_t span = (int64_t)r->step * a->pdp_cnt;
    return (int64_t)floor(r->last_updated / span) * span;
}

double xapi_rrd_rra_value_at(const xapi_rrd *r, const xapi_rrd_rra *a, int ds, int64_t t) {
    int64_t span = (int64_t)r->step * a->pdp_cnt, end = xapi_rrd_rra_end(r, a), back;

    if (ds < 0 || (size_t)ds >= r->nds || t > end || (end - t) % span != 0)
        return NAN;
    back = (end - t) / span;
    if (back >= a->rows)
        return NAN;
    return a->col[ds][(a->head + a->rows - (unsigned)back) % a->rows];
}

double xapi_rrd_latest(const xapi_rrd *r, int ds) {
    for (size_t i = 0; i < r->nrra; i++)
        if (r->rra[i].cf == XAPI_RRD_AVERAGE && ds >= 0 && (size_t)ds < r->nds)
            return r->rra[i].col[ds][r->rra[i].head];
    return NAN;
}

const char *xapi_rrd_cf_name(xapi_rrd_cf cf) {
    static const char *const names[] = {"AVERAGE", "MIN", "MAX", "LAST"};
    return names[cf];
}

int xapi_rrd_cf_parse(const char *s, xapi_rrd_cf *ret) {
    for (int i = XAPI_RRD_AVERAGE; i <= XAPI_RRD_LAST; i++)
        if (strcmp(s, xapi_rrd_cf_name((xapi_rrd_cf)i)) == 0) {
            *ret = (xapi_rrd_cf)i;
            return 0;
        }
    return -EINVAL;
}

const char *xapi_rrd_type_name(xapi_rrd_ds_type t) {
    static const char *const names[] = {"GAUGE", "ABSOLUTE", "DERIVE"};
    return names[t];
}

void xapi_rrd_fmt_double(xapi_buf *b, double v) {
    if (isnan(v))
        XAPI_BUF_LIT(b, "NaN");
    else if (isinf(v))
        xapi_buf_puts(b, v > 0 ? "Infinity" : "-Infinity");
    else if (v == 0)
        XAPI_BUF_LIT(b, "0.0");
    else if (fabs(v) < 1e15 && v == (double)(int64_t)v) /* what %0.15g prints for it, 5x faster */
        xapi_buf_printf(b, "%" PRId64, (int64_t)v);
    else
        xapi_buf_printf(b, "%0.15g", v);
}
