/* The host's and the VMs' RRDs in memory, and their files. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/log.h"
#include "xapi/rrd_db.h"
#include "xapi/value.h"

typedef struct rrd_entry {
    xapi_rrd_kind kind;
    char uuid[37];
    xapi_rrd *rrd;
    bool live;          /* updated in the current or the last round */
    bool seen;          /* updated in the current round */
    bool dirty;         /* changed since it was last written */
    xapi_rrd_input *last_in; /* the last sample's sources */
    size_t nlast;
} rrd_entry;

static struct {
    pthread_mutex_t lock;
    char *dir;
    unsigned step;
    rrd_entry *e;
    size_t n, cap;
} db = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const kind_prefix[] = {"host", "vm"};

static char *entry_path(xapi_rrd_kind kind, const char *uuid) {
    char *p = NULL;
    if (asprintf(&p, "%s/%s-%s.rrd", db.dir, kind_prefix[kind], uuid) < 0)
        xapi_oom();
    return p;
}

static bool uuid_ok(const char *s) {
    size_t n = strlen(s);
    if (n != 36)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '-' || (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
              (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return true;
}

static rrd_entry *find(xapi_rrd_kind kind, const char *uuid) {
    for (size_t i = 0; i < db.n; i++)
        if (db.e[i].kind == kind && strcmp(db.e[i].uuid, uuid) == 0)
            return &db.e[i];
    return NULL;
}

static rrd_entry *add(xapi_rrd_kind kind, const char *uuid, xapi_rrd *r) {
    rrd_entry *e;

    if (db.n == db.cap) {
        db.cap = db.cap ? db.cap * 2 : 64;
        db.e = xapi_realloc(db.e, db.cap * sizeof *db.e);
    }
    e = &db.e[db.n++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    snprintf(e->uuid, sizeof e->uuid, "%s", uuid);
    e->rrd = r;
    return e;
}

static void entry_free(rrd_entry *e) {
    xapi_rrd_free(e->rrd);
    free(e->last_in);
}

int xapi_rrd_db_open(const char *state_dir, unsigned step) {
    DIR *d = NULL;
    struct dirent *de;

    pthread_mutex_lock(&db.lock);
    db.step = step;
    if (asprintf(&db.dir, "%s/rrd", state_dir) < 0)
        xapi_oom();
    if (mkdir(db.dir, 0700) < 0 && errno != EEXIST) {
        int rc = -errno;
        pthread_mutex_unlock(&db.lock);
        return agent_log_errno(LOG_ERR, rc, "rrd: cannot create %s", db.dir);
    }
    d = opendir(db.dir);
    while (d && (de = readdir(d))) {
        char uuid[37];
        xapi_rrd_kind kind;
        xapi_rrd *r = NULL;
        char *path;
        size_t len = strlen(de->d_name);
        int rc;

        if (len < 4 || strcmp(de->d_name + len - 4, ".rrd") != 0)
            continue;
        if (strncmp(de->d_name, "host-", 5) == 0 && len == 5 + 36 + 4)
            kind = XAPI_RRD_HOST;
        else if (strncmp(de->d_name, "vm-", 3) == 0 && len == 3 + 36 + 4)
            kind = XAPI_RRD_VM;
        else
            continue;
        snprintf(uuid, sizeof uuid, "%.36s", de->d_name + (kind == XAPI_RRD_HOST ? 5 : 3));
        if (!uuid_ok(uuid) || find(kind, uuid))
            continue;
        path = entry_path(kind, uuid);
        rc = xapi_rrd_load(path, &r);
        if (rc == 0 && r->step != step) {
            /* rows of another width cannot be continued: start again */
            log_warning("rrd: %s was sampled every %u s, now every %u s: starting it afresh", path, r->step, step);
            xapi_rrd_free(r);
        } else if (rc < 0)
            log_warning("rrd: %s cannot be read (%s): starting it afresh", path, strerror(-rc));
        else
            add(kind, uuid, r);
        free(path);
    }
    if (d)
        closedir(d);
    log_info("rrd: %zu archives loaded from %s", db.n, db.dir);
    pthread_mutex_unlock(&db.lock);
    return 0;
}

void xapi_rrd_db_close(void) {
    pthread_mutex_lock(&db.lock);
    for (size_t i = 0; i < db.n; i++)
        entry_free(&db.e[i]);
    free(db.e);
    free(db.dir);
    db.e = NULL;
    db.dir = NULL;
    db.n = db.cap = 0;
    pthread_mutex_unlock(&db.lock);
}

unsigned xapi_rrd_db_step(void) {
    return db.step ? db.step : 5;
}

int xapi_rrd_db_update(xapi_rrd_kind kind, const char *uuid, const xapi_rrd_input *in, size_t n, double t) {
    rrd_entry *e;
    double *vals;
    int rc = 0;

    pthread_mutex_lock(&db.lock);
    e = find(kind, uuid);
    if (!e) {
        /* first sight: the archive starts one step back, so this sample makes a point */
        e = add(kind, uuid, xapi_rrd_new(xapi_rrd_db_step(), t - xapi_rrd_db_step(), kind == XAPI_RRD_HOST));
    }
    for (size_t i = 0; i < n; i++) {
        int idx = xapi_rrd_add_ds(e->rrd, in[i].name, in[i].type, in[i].min, in[i].max, in[i].inverse);
        if (idx < 0 && rc == 0)
            rc = idx;
    }
    vals = xapi_malloc((e->rrd->nds + 1) * sizeof *vals);
    for (size_t d = 0; d < e->rrd->nds; d++)
        vals[d] = NAN;
    for (size_t i = 0; i < n; i++) {
        int idx = xapi_rrd_find_ds(e->rrd, in[i].name);
        if (idx >= 0)
            vals[idx] = in[i].value;
    }
    xapi_rrd_update(e->rrd, t, vals);
    free(vals);
    e->last_in = xapi_realloc(e->last_in, (n + 1) * sizeof *e->last_in);
    memcpy(e->last_in, in, n * sizeof *in);
    e->nlast = n;
    e->seen = e->live = e->dirty = true;
    pthread_mutex_unlock(&db.lock);
    return rc;
}

void xapi_rrd_db_round_begin(void) {
    pthread_mutex_lock(&db.lock);
    for (size_t i = 0; i < db.n; i++) {
        db.e[i].live = db.e[i].seen;
        db.e[i].seen = false;
    }
    pthread_mutex_unlock(&db.lock);
}

void xapi_rrd_db_lock(void) {
    pthread_mutex_lock(&db.lock);
}

void xapi_rrd_db_unlock(void) {
    pthread_mutex_unlock(&db.lock);
}

xapi_rrd *xapi_rrd_db_get(xapi_rrd_kind kind, const char *uuid) {
    rrd_entry *e = find(kind, uuid);
    return e ? e->rrd : NULL;
}

bool xapi_rrd_db_is_live(xapi_rrd_kind kind, const char *uuid) {
    rrd_entry *e = find(kind, uuid);
    return e && (e->live || e->seen);
}

bool xapi_rrd_db_has_live_source(xapi_rrd_kind kind, const char *uuid, const char *name, xapi_rrd_input *ret) {
    rrd_entry *e = find(kind, uuid);
    for (size_t i = 0; e && i < e->nlast; i++)
        if (strcmp(e->last_in[i].name, name) == 0) {
            if (ret)
                *ret = e->last_in[i];
            return true;
        }
    return false;
}

const xapi_rrd_input *xapi_rrd_db_live(xapi_rrd_kind kind, const char *uuid, size_t *ret_n) {
    rrd_entry *e = find(kind, uuid);
    *ret_n = e ? e->nlast : 0;
    return e ? e->last_in : NULL;
}

xapi_rrd *xapi_rrd_db_nth(size_t i, xapi_rrd_kind *ret_kind, const char **ret_uuid, bool *ret_live) {
    if (i >= db.n)
        return NULL;
    *ret_kind = db.e[i].kind;
    *ret_uuid = db.e[i].uuid;
    *ret_live = db.e[i].live || db.e[i].seen;
    return db.e[i].rrd;
}

void xapi_rrd_db_touch(xapi_rrd_kind kind, const char *uuid) {
    rrd_entry *e = find(kind, uuid);
    if (e)
        e->dirty = true;
}

typedef struct pending_write {
    char *path;
    xapi_buf data; /* empty: remove the file */
} pending_write;

int xapi_rrd_db_save(bool (*keep_vm)(void *ud, const char *uuid), void *ud) {
    pending_write *w = NULL;
    size_t nw = 0;
    int rc = 0;

    pthread_mutex_lock(&db.lock);
    if (!db.dir) {
        pthread_mutex_unlock(&db.lock);
        return 0;
    }
    w = xapi_calloc(db.n + 1, sizeof *w);
    for (size_t i = 0; i < db.n;) {
        rrd_entry *e = &db.e[i];
        if (e->kind == XAPI_RRD_VM && keep_vm && !keep_vm(ud, e->uuid)) {
            w[nw++].path = entry_path(e->kind, e->uuid);
            entry_free(e);
            db.e[i] = db.e[--db.n];
            continue;
        }
        if (e->dirty) {
            w[nw].path = entry_path(e->kind, e->uuid);
            xapi_rrd_encode(e->rrd, &w[nw].data);
            nw++;
            e->dirty = false;
        }
        i++;
    }
    pthread_mutex_unlock(&db.lock);
    for (size_t i = 0; i < nw; i++) {
        int r = w[i].data.len ? xapi_rrd_write_file(w[i].path, w[i].data.data, w[i].data.len)
                              : (unlink(w[i].path) < 0 && errno != ENOENT ? -errno : 0);
        if (r < 0) {
            log_warning("rrd: cannot write %s: %s", w[i].path, strerror(-r));
            if (rc == 0)
                rc = r;
        }
        free(w[i].path);
        xapi_buf_free(&w[i].data);
    }
    free(w);
    return rc;
}
