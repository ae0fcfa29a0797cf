/* The RRDs of this host and of its VMs, shared by the sampler (which feeds
 * them) and the HTTP and XenAPI readers, under one mutex of their own (never
 * the store lock; nothing blocks while holding it). Kept under
 * <state_dir>/rrd/, one file per object (host-<uuid>.rrd, vm-<uuid>.rrd),
 * written by xapi_rrd_db_save at a bounded rate, not at every sample: the
 * main store is not touched at all. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "xapi/rrd.h"

/* One data source's figure in a sample. */
typedef struct xapi_rrd_input {
    char name[XAPI_RRD_NAME_MAX];
    xapi_rrd_ds_type type;
    double min, max;
    bool inverse;
    double value; /* NaN: unknown */
} xapi_rrd_input;

typedef enum xapi_rrd_kind { XAPI_RRD_HOST = 0, XAPI_RRD_VM } xapi_rrd_kind;

/* Loads what state_dir/rrd holds; step: seconds between samples. */
int xapi_rrd_db_open(const char *state_dir, unsigned step);
void xapi_rrd_db_close(void);
unsigned xapi_rrd_db_step(void);

/* One sample of one object at time t: creates its RRD (or a DS) on first
 * sight; a recorded DS missing from the sample gets an unknown point. */
int xapi_rrd_db_update(xapi_rrd_kind kind, const char *uuid, const xapi_rrd_input *in, size_t n, double t);
/* After a round: only the VMs updated in it count as live (resident). */
void xapi_rrd_db_round_begin(void);

void xapi_rrd_db_lock(void);
void xapi_rrd_db_unlock(void);
/* Under the lock: the RRD of an object (NULL if none), whether it was
 * sampled in the last round, and the names its last sample had. */
xapi_rrd *xapi_rrd_db_get(xapi_rrd_kind kind, const char *uuid);
bool xapi_rrd_db_is_live(xapi_rrd_kind kind, const char *uuid);
bool xapi_rrd_db_has_live_source(xapi_rrd_kind kind, const char *uuid, const char *name, xapi_rrd_input *ret);
/* Under the lock: the sources of the object's last sample (n of them). */
const xapi_rrd_input *xapi_rrd_db_live(xapi_rrd_kind kind, const char *uuid, size_t *ret_n);
/* Under the lock: the i-th RRD (i from 0 while it returns non-NULL). */
xapi_rrd *xapi_rrd_db_nth(size_t i, xapi_rrd_kind *ret_kind, const char **ret_uuid, bool *ret_live);
/* Under the lock: the RRD changed other than by a sample (a DS forgotten or recorded). */
void xapi_rrd_db_touch(xapi_rrd_kind kind, const char *uuid);

/* Writes the RRDs changed since the last save; drops the VM RRDs (and files)
 * for which keep_vm says false (the VM no longer exists). Disk I/O happens
 * outside the lock. Returns 0 or the first error. */
int xapi_rrd_db_save(bool (*keep_vm)(void *ud, const char *uuid), void *ud);
