/* RRDs as xapi renders them: the /rrd_updates "xport" (rrd_updates.ml) and
 * the full dump of /host_rrd and /vm_rrd (rrd.ml xml_to_output, Json). Names
 * and uuids are plain ([A-Za-z0-9_.-]: the sampler makes sure), so nothing
 * needs escaping. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xapi/rrd.h"
#include "xapi/value.h"

static bool cf_wanted(const xapi_rrd_xport_query *q, const xapi_rrd_rra *a) {
    return q->all_cfs || a->cf == q->cf;
}

static int64_t rra_span(const xapi_rrd *r, const xapi_rrd_rra *a) {
    return (int64_t)r->step * a->pdp_cnt;
}

/* xapi's find_best_rras: the finest archive as coarse as the interval asked
 * for that still reaches back to start, else the coarsest. */
static const xapi_rrd_rra *best_rra(const xapi_rrd *r, const xapi_rrd_xport_query *q, int64_t start) {
    const xapi_rrd_rra *coarsest = NULL;
    int64_t pdp_interval = q->interval / (r->step ? r->step : 1);

    for (size_t i = 0; i < r->nrra; i++) {
        const xapi_rrd_rra *a = &r->rra[i];
        if (!cf_wanted(q, a))
            continue;
        if (!coarsest || a->pdp_cnt > coarsest->pdp_cnt)
            coarsest = a;
        if ((int64_t)a->pdp_cnt >= pdp_interval && r->last_updated - (double)rra_span(r, a) * a->rows <= (double)start)
            return a;
    }
    return coarsest;
}

static bool rra_selected(const xapi_rrd_rra *a, const xapi_rrd_rra *best, const xapi_rrd_xport_query *q) {
    return best && cf_wanted(q, a) && a->pdp_cnt == best->pdp_cnt && a->rows == best->rows;
}

static void put_num(xapi_buf *b, bool json, double v) {
    if (json)
        xapi_buf_putc(b, '"');
    xapi_rrd_fmt_double(b, v);
    if (json)
        xapi_buf_putc(b, '"');
}

static void put_int(xapi_buf *b, bool json, const char *tag, int64_t v, bool comma) {
    if (json)
        xapi_buf_printf(b, "%s\"%s\":\"%" PRId64 "\"", comma ? "," : "", tag, v);
    else
        xapi_buf_printf(b, "<%s>%" PRId64 "</%s>", tag, v, tag);
}

/* One column of the xport: a DS of an archive of a source. */
typedef struct column {
    const xapi_rrd_source *src;
    const xapi_rrd_rra *rra;
    int ds;
} column;

void xapi_rrd_xport(const xapi_rrd_source *src, size_t n, const xapi_rrd_xport_query *q, xapi_buf *out) {
    const xapi_rrd *first = n > 0 ? src[0].rrd : NULL;
    const xapi_rrd_rra *best = NULL;
    unsigned step = first ? first->step : 5;
    int64_t start = INT64_MAX, span, end = 0, mstart, nrows = 0;
    column *cols = NULL;
    size_t ncols = 0, cap = 0;
    bool json = q->json;

    for (size_t i = 0; i < n; i++) {
        const xapi_rrd *r = src[i].rrd;
        int64_t s;
        if (r->step != step)
            continue;
        s = q->start < 0 ? (int64_t)r->last_updated + q->start : q->start;
        if (s < start)
            start = s;
    }
    if (start == INT64_MAX)
        start = q->start < 0 ? 0 : q->start;
    /* far from the ends of int64, so rounding to a step cannot overflow */
    if (start > (INT64_C(1) << 62))
        start = INT64_C(1) << 62;
    if (start < -(INT64_C(1) << 62))
        start = -(INT64_C(1) << 62);
    if (first)
        best = best_rra(first, q, start);
    span = best ? rra_span(first, best) : step;
    if (best)
        end = xapi_rrd_rra_end(first, best);
    mstart = (start >= 0 ? start / span : (start - span + 1) / span) * span + span;
    if (best)
        for (int64_t t = end; t >= mstart && nrows < best->rows; t -= span)
            nrows++;
    /* only RRDs of the first one's step; for each, the archives like the best one, grouped by archive */
    for (size_t i = 0; best && i < n; i++) {
        const xapi_rrd *r = src[i].rrd;
        for (size_t k = 0; r->step == step && k < r->nrra; k++) {
            if (!rra_selected(&r->rra[k], best, q))
                continue;
            for (size_t d = 0; d < r->nds; d++) {
                if (ncols == cap) {
                    cap = cap ? cap * 2 : 64;
                    cols = xapi_realloc(cols, cap * sizeof *cols);
                }
                cols[ncols++] = (column){&src[i], &r->rra[k], (int)d};
            }
        }
    }

    if (json)
        XAPI_BUF_LIT(out, "{\"meta\":{");
    else
        XAPI_BUF_LIT(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><xport><meta>");
    put_int(out, json, "start", mstart, false);
    put_int(out, json, "step", span, true);
    put_int(out, json, "end", end, true);
    put_int(out, json, "rows", nrows, true);
    put_int(out, json, "columns", (int64_t)ncols, true);
    xapi_buf_puts(out, json ? ",\"legend\":[" : "<legend>");
    for (size_t c = 0; c < ncols; c++) {
        const column *k = &cols[c];
        xapi_buf_printf(out, json ? "%s\"%s:%s:%s:%s\"" : "%s<entry>%s:%s:%s:%s</entry>", json && c ? "," : "",
                        xapi_rrd_cf_name(k->rra->cf), k->src->cls, k->src->uuid, k->src->rrd->ds[k->ds].name);
    }
    xapi_buf_puts(out, json ? "]},\"data\":[" : "</legend></meta><data>");
    for (int64_t row = 0; row < nrows; row++) {
        int64_t t = end - row * span;
        if (json)
            xapi_buf_printf(out, "%s{\"t\":\"%" PRId64 "\",\"values\":[", row ? "," : "", t);
        else
            xapi_buf_printf(out, "<row><t>%" PRId64 "</t>", t);
        for (size_t c = 0; c < ncols; c++) {
            double v = xapi_rrd_rra_value_at(cols[c].src->rrd, cols[c].rra, cols[c].ds, t);
            if (json) {
                if (c)
                    xapi_buf_putc(out, ',');
                put_num(out, true, v);
            } else {
                XAPI_BUF_LIT(out, "<v>");
                xapi_rrd_fmt_double(out, v);
                XAPI_BUF_LIT(out, "</v>");
            }
        }
        xapi_buf_puts(out, json ? "]}" : "</row>");
    }
    xapi_buf_puts(out, json ? "]}" : "</data></xport>");
    free(cols);
}

/* ---- full dump ---- */

static void put_field(xapi_buf *b, bool json, const char *tag, double v, bool *comma) {
    if (json) {
        xapi_buf_printf(b, "%s\"%s\":", *comma ? "," : "", tag);
        put_num(b, true, v);
    } else {
        xapi_buf_printf(b, "<%s>", tag);
        xapi_rrd_fmt_double(b, v);
        xapi_buf_printf(b, "</%s>", tag);
    }
    *comma = true;
}

static void put_text(xapi_buf *b, bool json, const char *tag, const char *v, bool *comma) {
    if (json)
        xapi_buf_printf(b, "%s\"%s\":\"%s\"", *comma ? "," : "", tag, v);
    else
        xapi_buf_printf(b, "<%s>%s</%s>", tag, v, tag);
    *comma = true;
}

static void put_ds(xapi_buf *b, bool json, const xapi_rrd *r, const xapi_rrd_ds *ds) {
    char num[32];
    bool c = false;

    put_text(b, json, "name", ds->name, &c);
    put_text(b, json, "type", xapi_rrd_type_name(ds->type), &c);
    put_field(b, json, "minimal_heartbeat", XAPI_RRD_HEARTBEAT, &c);
    put_field(b, json, "min", ds->min, &c);
    put_field(b, json, "max", ds->max, &c);
    if (json) {
        snprintf(num, sizeof num, "%" PRId64, (int64_t)r->last_updated);
        put_text(b, json, "last_updated", num, &c);
    }
    put_field(b, json, "last_ds", ds->have_last ? ds->last : NAN, &c);
    put_field(b, json, "value", ds->value, &c);
    snprintf(num, sizeof num, "%" PRId64, (int64_t)ds->unknown_sec);
    put_text(b, json, "unknown_sec", num, &c);
}

static void put_rra(xapi_buf *b, bool json, const xapi_rrd *r, const xapi_rrd_rra *a) {
    char num[32];
    bool c = false;

    put_text(b, json, "cf", xapi_rrd_cf_name(a->cf), &c);
    snprintf(num, sizeof num, "%u", a->pdp_cnt);
    put_text(b, json, "pdp_per_row", num, &c);
    if (json) {
        XAPI_BUF_LIT(b, ",\"params\":{");
        c = false;
        put_field(b, json, "xff", a->xff, &c);
        XAPI_BUF_LIT(b, "},\"cdp_prep\":{\"ds\":[");
    } else {
        XAPI_BUF_LIT(b, "<params>");
        put_field(b, json, "xff", a->xff, &c);
        XAPI_BUF_LIT(b, "</params><cdp_prep>");
    }
    for (size_t d = 0; d < r->nds; d++) {
        c = false;
        xapi_buf_puts(b, json ? (d ? ",{" : "{") : "<ds>");
        put_field(b, json, "primary_value", 0.0, &c);
        put_field(b, json, "secondary_value", 0.0, &c);
        put_field(b, json, "value", a->cdp_value[d], &c);
        snprintf(num, sizeof num, "%u", a->cdp_unknown[d]);
        put_text(b, json, "unknown_datapoints", num, &c);
        xapi_buf_puts(b, json ? "}" : "</ds>");
    }
    xapi_buf_puts(b, json ? "]},\"database\":[" : "</cdp_prep><database>");
    for (unsigned k = 0; k < a->rows; k++) { /* oldest first */
        unsigned at = (a->head + 1 + k) % a->rows;
        xapi_buf_puts(b, json ? (k ? ",[" : "[") : "<row>");
        for (size_t d = 0; d < r->nds; d++) {
            if (json) {
                if (d)
                    xapi_buf_putc(b, ',');
                put_num(b, true, a->col[d][at]);
            } else {
                XAPI_BUF_LIT(b, "<v>");
                xapi_rrd_fmt_double(b, a->col[d][at]);
                XAPI_BUF_LIT(b, "</v>");
            }
        }
        xapi_buf_puts(b, json ? "]" : "</row>");
    }
    xapi_buf_puts(b, json ? "]" : "</database>");
}

void xapi_rrd_dump(const xapi_rrd *r, bool json, xapi_buf *out) {
    char num[32];
    bool c = false;

    xapi_buf_puts(out, json ? "{" : "<?xml version=\"1.0\" encoding=\"UTF-8\"?><rrd>");
    put_text(out, json, "version", "0003", &c);
    snprintf(num, sizeof num, "%u", r->step);
    put_text(out, json, "step", num, &c);
    snprintf(num, sizeof num, "%" PRId64, (int64_t)r->last_updated);
    put_text(out, json, "lastupdate", num, &c);
    if (json)
        XAPI_BUF_LIT(out, ",\"ds\":[");
    for (size_t d = 0; d < r->nds; d++) {
        xapi_buf_puts(out, json ? (d ? ",{" : "{") : "<ds>");
        put_ds(out, json, r, &r->ds[d]);
        xapi_buf_puts(out, json ? "}" : "</ds>");
    }
    if (json)
        XAPI_BUF_LIT(out, "],\"rra\":[");
    for (size_t i = 0; i < r->nrra; i++) {
        xapi_buf_puts(out, json ? (i ? ",{" : "{") : "<rra>");
        put_rra(out, json, r, &r->rra[i]);
        xapi_buf_puts(out, json ? "}" : "</rra>");
    }
    xapi_buf_puts(out, json ? "]}" : "</rrd>");
}
