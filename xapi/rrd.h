/* Round-robin databases as xapi's rrdd keeps them (one per host, one per VM):
 * data sources of a type (GAUGE, ABSOLUTE, DERIVE) normalised into primary
 * data points every step, consolidated (AVERAGE, MIN, MAX) into archives at
 * 5 s, 1 min, 1 h and 1 day with xapi's row counts; rendered as xapi renders
 * them (/rrd_updates "xport", the full dump of /host_rrd and /vm_rrd) and
 * kept on disk in a compact binary file.
 *
 * Pure data: no locking (the owner locks, see rrd_db.h), no I/O but
 * xapi_rrd_save/xapi_rrd_load. Functions return 0 or a negative errno. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xapi/buf.h"

#define XAPI_RRD_NAME_MAX 64
#define XAPI_RRD_MAX_DS 1024
#define XAPI_RRD_HEARTBEAT 300.0 /* seconds; a longer gap gives unknown (NaN) data points */

typedef enum xapi_rrd_ds_type { XAPI_RRD_GAUGE = 0, XAPI_RRD_ABSOLUTE, XAPI_RRD_DERIVE } xapi_rrd_ds_type;
typedef enum xapi_rrd_cf { XAPI_RRD_AVERAGE = 0, XAPI_RRD_MIN, XAPI_RRD_MAX, XAPI_RRD_LAST } xapi_rrd_cf;

typedef struct xapi_rrd_ds {
    char name[XAPI_RRD_NAME_MAX];
    xapi_rrd_ds_type type;
    double min, max;
    bool inverse;       /* stored value is 1 - x (host cpuN from idle time) */
    bool have_last;
    double last;        /* last input (a DERIVE counter) */
    double value;       /* the primary data point being built */
    double unknown_sec;
} xapi_rrd_ds;

typedef struct xapi_rrd_rra {
    xapi_rrd_cf cf;
    unsigned pdp_cnt;   /* primary data points per row */
    unsigned rows;
    double xff;         /* fraction of unknown points past which a row is unknown */
    unsigned head;      /* index of the newest row */
    double **col;       /* per DS: rows values, ring indexed like head */
    double *cdp_value;  /* per DS: the row being consolidated */
    unsigned *cdp_unknown;
} xapi_rrd_rra;

typedef struct xapi_rrd {
    unsigned step;      /* seconds */
    double last_updated;
    size_t nds;
    xapi_rrd_ds *ds;
    size_t nrra;
    xapi_rrd_rra *rra;
} xapi_rrd;

/* xapi's archives: 5 s x 120 (AVERAGE), 1 min x 120, 1 h x 168, 1 day x 366;
 * the three coarser ones AVERAGE, and with min_max also MIN and MAX (a host's
 * RRD; a VM's has AVERAGE only). Rows scale with step so each archive spans
 * what xapi's does. */
xapi_rrd *xapi_rrd_new(unsigned step, double now, bool min_max);
void xapi_rrd_free(xapi_rrd *r);

/* Index of a DS, or -1. */
int xapi_rrd_find_ds(const xapi_rrd *r, const char *name);
/* Adds a DS whose archived rows are unknown; returns its index (or the
 * existing one), -E2BIG past XAPI_RRD_MAX_DS, -EINVAL for a bad name. */
int xapi_rrd_add_ds(xapi_rrd *r, const char *name, xapi_rrd_ds_type type, double min, double max, bool inverse);
/* Removes a DS and everything archived of it. */
void xapi_rrd_remove_ds(xapi_rrd *r, int idx);

/* One sample at time t: values[i] for DS i (NaN: unknown). */
void xapi_rrd_update(xapi_rrd *r, double t, const double *values);

/* The newest consolidated value of a DS in the finest AVERAGE archive (NaN if none). */
double xapi_rrd_latest(const xapi_rrd *r, int ds);
/* The time of an archive's newest row. */
int64_t xapi_rrd_rra_end(const xapi_rrd *r, const xapi_rrd_rra *a);
/* The value of DS ds in archive a at the row for time t (NaN outside the archive). */
double xapi_rrd_rra_value_at(const xapi_rrd *r, const xapi_rrd_rra *a, int ds, int64_t t);

const char *xapi_rrd_cf_name(xapi_rrd_cf cf);
int xapi_rrd_cf_parse(const char *s, xapi_rrd_cf *ret);
const char *xapi_rrd_type_name(xapi_rrd_ds_type t);

/* Numbers as xapi writes them: %0.15g, zero as 0.0, NaN, Infinity, -Infinity. */
void xapi_rrd_fmt_double(xapi_buf *b, double v);

/* ---- /rrd_updates ---- */
typedef struct xapi_rrd_source {
    const char *cls;   /* "host", "vm" */
    const char *uuid;
    const xapi_rrd *rrd;
} xapi_rrd_source;

typedef struct xapi_rrd_xport_query {
    int64_t start;     /* unix seconds; negative: relative to the first RRD's last update */
    int64_t interval;  /* seconds per row wanted; 0: the finest */
    bool all_cfs;      /* else only cf */
    xapi_rrd_cf cf;
    bool json;
} xapi_rrd_xport_query;

/* The xport document of these sources (xapi's Rrd_updates.create_multi). */
void xapi_rrd_xport(const xapi_rrd_source *src, size_t n, const xapi_rrd_xport_query *q, xapi_buf *out);
/* The full dump (/host_rrd, /vm_rrd), XML or JSON. */
void xapi_rrd_dump(const xapi_rrd *r, bool json, xapi_buf *out);

/* The binary form (rrd_file.c), and writing bytes to path atomically (temp
 * file, fsync, rename), so an RRD can be encoded under a lock and written
 * outside it; xapi_rrd_save does both; xapi_rrd_load reads a file back. */
void xapi_rrd_encode(const xapi_rrd *r, xapi_buf *out);
int xapi_rrd_write_file(const char *path, const char *data, size_t len);
int xapi_rrd_save(const xapi_rrd *r, const char *path);
int xapi_rrd_load(const char *path, xapi_rrd **ret);
