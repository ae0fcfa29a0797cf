/* The object store: see store.h for the model. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/log.h"
#include "xapi/buf.h"
#include "xapi/error.h"
#include "xapi/out.h"
#include "xapi/store.h"
#include "xapi/types.h"

#define TOMBSTONES_KEPT 16384

typedef struct commit_item {
    struct commit_item *next;
    uint64_t seq, gen;
    enum { ITEM_UPSERT, ITEM_DELETE, ITEM_MARK } op;
    char ref[XAPI_REF_LEN + 1];
    const xapi_class *cls;
    uint64_t created_gen;
    char *data; /* ITEM_UPSERT: the record as JSON */
} commit_item;

typedef struct class_list {
    xapi_obj *head, *tail;
    unsigned count;
} class_list;

struct xapi_store {
    pthread_rwlock_t lock;

    /* hash tables by ref and by uuid; sizes are powers of two */
    xapi_obj **by_ref, **by_uuid;
    size_t nbuckets, nobjs;

    class_list classes[XAPI_NCLASSES];
    xapi_obj *gen_head, *gen_tail; /* most recently changed first */
    xapi_obj *dirty;               /* changed in the current write transaction */

    xapi_tombstone *tombs; /* ring */
    size_t tomb_start, tomb_count;
    uint64_t tomb_horizon; /* deletions at or before this generation may be forgotten */

    uint64_t gen;      /* last generation handed out (under the write lock) */
    uint64_t next_seq; /* under the write lock */

    /* committer */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;       /* work queued, or stop */
    pthread_cond_t durable_cond; /* durable_seq / durable_gen moved (CLOCK_MONOTONIC) */
    commit_item *qhead, *qtail;
    uint64_t durable_seq, durable_gen;
    unsigned wake_epoch;
    bool stop, failed;
    pthread_t committer;
    bool committer_running;

    sqlite3 *db;
    int lock_fd;
};

/* ---- small helpers ---------------------------------------------------- */

int64_t xapi_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t xapi_wall_seconds(void) {
    return (int64_t)time(NULL);
}

void xapi_uuid_generate(char out[XAPI_UUID_LEN + 1]) {
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    size_t got = 0;
    char *p = out;

    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            abort(); /* no entropy source at all: nothing sensible to do */
        }
        got += (size_t)n;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p = 0;
}

void xapi_ref_generate(char out[XAPI_REF_LEN + 1]) {
    memcpy(out, "OpaqueRef:", 10);
    xapi_uuid_generate(out + 10);
}

static size_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 29));
}

static void hash_resize(xapi_store *s, size_t n) {
    xapi_obj **nr = xapi_calloc(n, sizeof *nr), **nu = xapi_calloc(n, sizeof *nu);

    for (size_t i = 0; i < s->nbuckets; i++) {
        xapi_obj *o, *next;
        for (o = s->by_ref[i]; o; o = next) {
            next = o->next_by_ref;
            size_t h = hash_str(o->ref) & (n - 1);
            o->next_by_ref = nr[h];
            nr[h] = o;
        }
        for (o = s->by_uuid[i]; o; o = next) {
            next = o->next_by_uuid;
            size_t h = hash_str(o->uuid) & (n - 1);
            o->next_by_uuid = nu[h];
            nu[h] = o;
        }
    }
    free(s->by_ref);
    free(s->by_uuid);
    s->by_ref = nr;
    s->by_uuid = nu;
    s->nbuckets = n;
}

static void index_add(xapi_store *s, xapi_obj *o) {
    size_t h;
    class_list *cl = &s->classes[o->cls->id];

    if (s->nobjs + 1 > s->nbuckets)
        hash_resize(s, s->nbuckets * 2);
    h = hash_str(o->ref) & (s->nbuckets - 1);
    o->next_by_ref = s->by_ref[h];
    s->by_ref[h] = o;
    h = hash_str(o->uuid) & (s->nbuckets - 1);
    o->next_by_uuid = s->by_uuid[h];
    s->by_uuid[h] = o;
    s->nobjs++;

    o->class_prev = cl->tail;
    o->class_next = NULL;
    if (cl->tail)
        cl->tail->class_next = o;
    else
        cl->head = o;
    cl->tail = o;
    cl->count++;
}

static void index_remove(xapi_store *s, xapi_obj *o) {
    xapi_obj **pp;
    class_list *cl = &s->classes[o->cls->id];

    for (pp = &s->by_ref[hash_str(o->ref) & (s->nbuckets - 1)]; *pp; pp = &(*pp)->next_by_ref)
        if (*pp == o) {
            *pp = o->next_by_ref;
            break;
        }
    for (pp = &s->by_uuid[hash_str(o->uuid) & (s->nbuckets - 1)]; *pp; pp = &(*pp)->next_by_uuid)
        if (*pp == o) {
            *pp = o->next_by_uuid;
            break;
        }
    s->nobjs--;

    if (o->class_prev)
        o->class_prev->class_next = o->class_next;
    else
        cl->head = o->class_next;
    if (o->class_next)
        o->class_next->class_prev = o->class_prev;
    else
        cl->tail = o->class_prev;
    cl->count--;
}

static void gen_unlink(xapi_store *s, xapi_obj *o) {
    if (o->gen_prev)
        o->gen_prev->gen_next = o->gen_next;
    else if (s->gen_head == o)
        s->gen_head = o->gen_next;
    if (o->gen_next)
        o->gen_next->gen_prev = o->gen_prev;
    else if (s->gen_tail == o)
        s->gen_tail = o->gen_prev;
    o->gen_prev = o->gen_next = NULL;
}

static void gen_push_head(xapi_store *s, xapi_obj *o) {
    o->gen_prev = NULL;
    o->gen_next = s->gen_head;
    if (s->gen_head)
        s->gen_head->gen_prev = o;
    else
        s->gen_tail = o;
    s->gen_head = o;
}

/* Loading reads objects newest first, so each one goes at the tail. */
static void gen_push_tail(xapi_store *s, xapi_obj *o) {
    o->gen_next = NULL;
    o->gen_prev = s->gen_tail;
    if (s->gen_tail)
        s->gen_tail->gen_next = o;
    else
        s->gen_head = o;
    s->gen_tail = o;
}

static xapi_obj *obj_alloc(const xapi_class *cls, const char *ref, const char *uuid) {
    xapi_obj *o = xapi_calloc(1, sizeof *o);

    o->cls = cls;
    snprintf(o->ref, sizeof o->ref, "%s", ref);
    snprintf(o->uuid, sizeof o->uuid, "%s", uuid);
    o->fields = xapi_calloc(cls->nfields ? cls->nfields : 1, sizeof *o->fields);
    for (unsigned i = 0; i < cls->nfields; i++)
        if (cls->fields[i].def)
            o->fields[i] = xapi_value_copy(cls->fields[i].def);
    if (cls->f_uuid >= 0) {
        xapi_value_free(&o->fields[cls->f_uuid]);
        o->fields[cls->f_uuid] = xapi_value_string(uuid);
    }
    return o;
}

static void obj_free(xapi_obj *o) {
    if (!o)
        return;
    for (unsigned i = 0; i < o->cls->nfields; i++)
        xapi_value_free(&o->fields[i]);
    free(o->fields);
    free(o);
}

static void mark_dirty(xapi_store *s, xapi_obj *o, bool persist) {
    if (!o->dirty) {
        o->dirty = true;
        o->dirty_next = s->dirty;
        s->dirty = o;
    }
    if (persist)
        o->persist_dirty = true;
}

/* ---- back-references ---------------------------------------------------- */

static void backref_add(xapi_store *s, xapi_obj *target, int set_field, const char *ref, bool events) {
    xapi_value *set = &target->fields[set_field];

    for (uint32_t i = 0; i < set->n; i++)
        if (strcmp(set->items[i].s, ref) == 0)
            return;
    xapi_array_append(set, xapi_value_string(ref));
    if (events)
        mark_dirty(s, target, false);
}

static void backref_remove(xapi_store *s, xapi_obj *target, int set_field, const char *ref) {
    xapi_value *set = &target->fields[set_field];

    for (uint32_t i = 0; i < set->n; i++)
        if (strcmp(set->items[i].s, ref) == 0) {
            xapi_value_free(&set->items[i]);
            memmove(&set->items[i], &set->items[i + 1], (set->n - i - 1) * sizeof *set->items);
            set->n--;
            mark_dirty(s, target, false);
            return;
        }
}

/* For a ref field with a back-reference set: the object it points at, if served. */
static xapi_obj *backref_target(xapi_store *s, const xapi_obj *o, int field) {
    const xapi_field *f = &o->cls->fields[field];
    const xapi_value *v = &o->fields[field];

    if (f->rel_class < 0 || f->derived || v->kind != XAPI_V_STRING)
        return NULL;
    return xapi_store_get_class(s, &xapi_classes[f->rel_class], v->s);
}

/* ---- reads ---------------------------------------------------------------- */

void xapi_store_rdlock(xapi_store *s) {
    pthread_rwlock_rdlock(&s->lock);
}

void xapi_store_rdunlock(xapi_store *s) {
    pthread_rwlock_unlock(&s->lock);
}

xapi_obj *xapi_store_get(xapi_store *s, const char *ref) {
    xapi_obj *o;

    for (o = s->by_ref[hash_str(ref) & (s->nbuckets - 1)]; o; o = o->next_by_ref)
        if (strcmp(o->ref, ref) == 0)
            return o;
    return NULL;
}

xapi_obj *xapi_store_get_class(xapi_store *s, const xapi_class *cls, const char *ref) {
    xapi_obj *o = xapi_store_get(s, ref);
    return o && o->cls == cls ? o : NULL;
}

xapi_obj *xapi_store_get_by_uuid(xapi_store *s, const xapi_class *cls, const char *uuid) {
    xapi_obj *o;

    for (o = s->by_uuid[hash_str(uuid) & (s->nbuckets - 1)]; o; o = o->next_by_uuid)
        if (o->cls == cls && strcmp(o->uuid, uuid) == 0)
            return o;
    return NULL;
}

xapi_obj *xapi_store_first(xapi_store *s, const xapi_class *cls) {
    return s->classes[cls->id].head;
}

xapi_obj *xapi_store_next(xapi_obj *o) {
    return o->class_next;
}

unsigned xapi_store_count(xapi_store *s, const xapi_class *cls) {
    return s->classes[cls->id].count;
}

xapi_obj *xapi_store_changed_first(xapi_store *s) {
    return s->gen_head;
}

xapi_obj *xapi_store_changed_next(xapi_obj *o) {
    return o->gen_next;
}

bool xapi_store_tombstones_since(xapi_store *s, uint64_t since,
                                 void (*fn)(const xapi_tombstone *t, void *ud), void *ud) {
    /* newest first, stop at the first one not newer than since */
    for (size_t k = s->tomb_count; k > 0; k--) {
        const xapi_tombstone *t = &s->tombs[(s->tomb_start + k - 1) % TOMBSTONES_KEPT];
        if (t->gen <= since)
            break;
        if (t->gen <= s->durable_gen)
            fn(t, ud);
    }
    return since >= s->tomb_horizon;
}

/* ---- writes --------------------------------------------------------------- */

void xapi_store_write_begin(xapi_store *s) {
    pthread_rwlock_wrlock(&s->lock);
}

xapi_obj *xapi_obj_create_with(xapi_store *s, const xapi_class *cls, const char *ref, const char *uuid) {
    xapi_obj *o;

    if (xapi_store_get(s, ref) || xapi_store_get_by_uuid(s, cls, uuid))
        return NULL;
    o = obj_alloc(cls, ref, uuid);
    o->created_gen = UINT64_MAX; /* set at write_end */
    index_add(s, o);
    mark_dirty(s, o, true);
    return o;
}

xapi_obj *xapi_obj_create(xapi_store *s, const xapi_class *cls) {
    char ref[XAPI_REF_LEN + 1], uuid[XAPI_UUID_LEN + 1];

    xapi_uuid_generate(uuid);
    xapi_ref_generate(ref);
    return xapi_obj_create_with(s, cls, ref, uuid);
}

void xapi_obj_set(xapi_store *s, xapi_obj *o, int field, xapi_value v) {
    const xapi_field *f = &o->cls->fields[field];
    xapi_obj *old_target = NULL, *new_target = NULL;

    if (xapi_value_equal(&o->fields[field], &v)) {
        xapi_value_free(&v);
        return;
    }
    if (f->rel_class >= 0 && !f->derived)
        old_target = backref_target(s, o, field);
    xapi_value_free(&o->fields[field]);
    o->fields[field] = v;
    if (f->rel_class >= 0 && !f->derived) {
        new_target = backref_target(s, o, field);
        if (old_target)
            backref_remove(s, old_target, f->rel_field, o->ref);
        if (new_target)
            backref_add(s, new_target, f->rel_field, o->ref, true);
    }
    mark_dirty(s, o, !f->derived);
}

void xapi_obj_set_string(xapi_store *s, xapi_obj *o, int field, const char *str) {
    xapi_obj_set(s, o, field, xapi_value_string(str));
}

void xapi_obj_set_int(xapi_store *s, xapi_obj *o, int field, int64_t i) {
    xapi_obj_set(s, o, field, xapi_value_int(i));
}

void xapi_obj_set_bool(xapi_store *s, xapi_obj *o, int field, bool b) {
    xapi_obj_set(s, o, field, xapi_value_bool(b));
}

void xapi_obj_touch(xapi_store *s, xapi_obj *o) {
    mark_dirty(s, o, false);
}

void xapi_obj_set_volatile(xapi_obj *o, int field, xapi_value v) {
    xapi_value_free(&o->fields[field]);
    o->fields[field] = v;
}

void xapi_obj_destroy(xapi_store *s, xapi_obj *o) {
    if (o->deleted)
        return;
    for (unsigned i = 0; i < o->cls->nfields; i++) {
        xapi_obj *t = backref_target(s, o, (int)i);
        if (t)
            backref_remove(s, t, o->cls->fields[i].rel_field, o->ref);
    }
    index_remove(s, o);
    gen_unlink(s, o);
    o->deleted = true;
    mark_dirty(s, o, true);
}

/* The record as stored: a JSON object of the fields that differ from their
 * default, derived sets left out (they are rebuilt on load). */
static char *serialize(const xapi_obj *o) {
    xapi_buf b = XAPI_BUF_INIT;
    xapi_out out;

    xapi_out_init(&out, XAPI_FMT_JSON, &b);
    xapi_out_struct_begin(&out);
    for (unsigned i = 0; i < o->cls->nfields; i++) {
        const xapi_field *f = &o->cls->fields[i];
        if (f->derived || !f->def)
            continue;
        if ((int)i != o->cls->f_uuid && xapi_value_equal(&o->fields[i], f->def))
            continue;
        xapi_out_member(&out, f->name, f->name_len);
        xapi_out_value(&out, &o->fields[i]);
    }
    xapi_out_struct_end(&out);
    return xapi_buf_steal(&b, NULL);
}

static void tombstone_add(xapi_store *s, const char *ref, const xapi_class *cls, uint64_t gen) {
    xapi_tombstone *t;

    if (s->tomb_count == TOMBSTONES_KEPT) {
        s->tomb_horizon = s->tombs[s->tomb_start].gen;
        s->tomb_start = (s->tomb_start + 1) % TOMBSTONES_KEPT;
        s->tomb_count--;
    }
    t = &s->tombs[(s->tomb_start + s->tomb_count) % TOMBSTONES_KEPT];
    snprintf(t->ref, sizeof t->ref, "%s", ref);
    t->cls = cls;
    t->gen = gen;
    s->tomb_count++;
}

uint64_t xapi_store_write_end(xapi_store *s) {
    commit_item *head = NULL, **tail = &head;
    xapi_obj *o, *next;
    uint64_t gen, seq = 0;

    if (!s->dirty) {
        pthread_rwlock_unlock(&s->lock);
        return 0;
    }
    gen = ++s->gen;
    seq = ++s->next_seq;
    for (o = s->dirty; o; o = next) {
        commit_item *it = NULL;

        next = o->dirty_next;
        o->dirty_next = NULL;
        o->dirty = false;
        if (o->deleted) {
            if (o->created_gen != UINT64_MAX) { /* created and destroyed in one transaction: nothing to store */
                it = xapi_calloc(1, sizeof *it);
                it->op = ITEM_DELETE;
            }
            if (o->cls->gen_events && o->created_gen != UINT64_MAX)
                tombstone_add(s, o->ref, o->cls, gen);
        } else {
            if (o->created_gen == UINT64_MAX)
                o->created_gen = gen;
            o->gen = gen;
            gen_unlink(s, o);
            gen_push_head(s, o);
            if (o->persist_dirty) {
                it = xapi_calloc(1, sizeof *it);
                it->op = ITEM_UPSERT;
                it->data = serialize(o);
                it->created_gen = o->created_gen;
            }
            o->persist_dirty = false;
        }
        if (it) {
            snprintf(it->ref, sizeof it->ref, "%s", o->ref);
            it->cls = o->cls;
            it->seq = seq;
            it->gen = gen;
            *tail = it;
            tail = &it->next;
        }
        if (o->deleted)
            obj_free(o);
    }
    s->dirty = NULL;
    /* Always one marker so the durable generation advances in order. */
    *tail = xapi_calloc(1, sizeof **tail);
    (*tail)->op = ITEM_MARK;
    (*tail)->seq = seq;
    (*tail)->gen = gen;

    pthread_mutex_lock(&s->qlock);
    if (s->qtail)
        s->qtail->next = head;
    else
        s->qhead = head;
    for (s->qtail = head; s->qtail->next; s->qtail = s->qtail->next)
        ;
    pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);

    pthread_rwlock_unlock(&s->lock);
    return seq;
}

int xapi_store_wait_durable(xapi_store *s, uint64_t seq) {
    int rc = 0;

    if (seq == 0)
        return 0;
    pthread_mutex_lock(&s->qlock);
    while (s->durable_seq < seq && !s->failed)
        pthread_cond_wait(&s->durable_cond, &s->qlock);
    if (s->durable_seq < seq)
        rc = -EIO;
    pthread_mutex_unlock(&s->qlock);
    return rc;
}

uint64_t xapi_store_durable_gen(xapi_store *s) {
    uint64_t g;

    pthread_mutex_lock(&s->qlock);
    g = s->durable_gen;
    pthread_mutex_unlock(&s->qlock);
    return g;
}

uint64_t xapi_store_wait_gen(xapi_store *s, uint64_t since, int64_t deadline_ns, const volatile bool *cancel) {
    uint64_t g;
    unsigned epoch;

    pthread_mutex_lock(&s->qlock);
    epoch = s->wake_epoch;
    while (s->durable_gen <= since && !(cancel && *cancel) && s->wake_epoch == epoch && !s->stop) {
        int64_t now = xapi_now_ns();
        struct timespec ts;

        if (now >= deadline_ns)
            break;
        ts.tv_sec = deadline_ns / 1000000000LL;
        ts.tv_nsec = deadline_ns % 1000000000LL;
        pthread_cond_timedwait(&s->durable_cond, &s->qlock, &ts);
    }
    g = s->durable_gen;
    pthread_mutex_unlock(&s->qlock);
    return g;
}

void xapi_store_wake_all(xapi_store *s) {
    pthread_mutex_lock(&s->qlock);
    s->wake_epoch++;
    pthread_cond_broadcast(&s->durable_cond);
    pthread_mutex_unlock(&s->qlock);
}

/* ---- SQLite --------------------------------------------------------------- */

static int db_exec(sqlite3 *db, const char *sql) {
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("store: %s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

static int commit_batch(xapi_store *s, commit_item *batch) {
    sqlite3_stmt *up = NULL, *del = NULL, *tomb = NULL, *meta = NULL;
    uint64_t last_gen = 0;
    int rc = -EIO;

    if (db_exec(s->db, "BEGIN IMMEDIATE") < 0)
        return -EIO;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO objects(ref, class, gen, created_gen, data) VALUES(?1, ?2, ?3, ?4, ?5) "
                           "ON CONFLICT(ref) DO UPDATE SET gen = excluded.gen, data = excluded.data",
                           -1, &up, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM objects WHERE ref = ?1", -1, &del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO tombstones(ref, class, gen) VALUES(?1, ?2, ?3)", -1,
                           &tomb, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO meta(key, value) VALUES('gen', ?1)", -1, &meta, NULL) !=
            SQLITE_OK) {
        log_error("store: prepare: %s", sqlite3_errmsg(s->db));
        goto out;
    }
    for (commit_item *it = batch; it; it = it->next) {
        sqlite3_stmt *st = NULL;

        last_gen = it->gen;
        if (it->op == ITEM_UPSERT) {
            st = up;
            sqlite3_bind_text(st, 1, it->ref, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, it->cls->name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)it->gen);
            sqlite3_bind_int64(st, 4, (sqlite3_int64)it->created_gen);
            sqlite3_bind_text(st, 5, it->data, -1, SQLITE_STATIC);
        } else if (it->op == ITEM_DELETE) {
            st = del;
            sqlite3_bind_text(st, 1, it->ref, -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                goto step_failed;
            sqlite3_reset(st);
            if (!it->cls->gen_events)
                continue;
            st = tomb;
            sqlite3_bind_text(st, 1, it->ref, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, it->cls->name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)it->gen);
        } else
            continue;
        if (sqlite3_step(st) != SQLITE_DONE)
            goto step_failed;
        sqlite3_reset(st);
        continue;
    step_failed:
        log_error("store: write %s: %s", it->ref, sqlite3_errmsg(s->db));
        goto out;
    }
    sqlite3_bind_int64(meta, 1, (sqlite3_int64)last_gen);
    if (sqlite3_step(meta) != SQLITE_DONE) {
        log_error("store: meta: %s", sqlite3_errmsg(s->db));
        goto out;
    }
    if (db_exec(s->db, "COMMIT") < 0)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_finalize(up);
    sqlite3_finalize(del);
    sqlite3_finalize(tomb);
    sqlite3_finalize(meta);
    return rc;
}

static void *committer_main(void *arg) {
    xapi_store *s = arg;

    pthread_mutex_lock(&s->qlock);
    for (;;) {
        commit_item *batch, *it, *next;
        uint64_t seq = 0, gen = 0;
        int rc = -EIO;

        while (!s->qhead && !s->stop)
            pthread_cond_wait(&s->qcond, &s->qlock);
        if (!s->qhead)
            break;
        batch = s->qhead;
        s->qhead = s->qtail = NULL;
        pthread_mutex_unlock(&s->qlock);

        /* A failed commit is retried a few times; if the disk stays broken we
         * stop rather than answer writes we could not make durable. */
        for (int attempt = 0; attempt < 5 && rc < 0; attempt++) {
            rc = commit_batch(s, batch);
            if (rc < 0)
                usleep(100000);
        }
        if (rc < 0) {
            log_error("store: cannot commit to the database; stopping so that no unsaved write is acknowledged");
            abort();
        }
        for (it = batch; it; it = next) {
            next = it->next;
            seq = it->seq;
            gen = it->gen;
            free(it->data);
            free(it);
        }
        pthread_mutex_lock(&s->qlock);
        s->durable_seq = seq;
        s->durable_gen = gen;
        pthread_cond_broadcast(&s->durable_cond);
    }
    pthread_mutex_unlock(&s->qlock);
    return NULL;
}

/* ---- loading -------------------------------------------------------------- */

static xapi_value json_to_value(json_object *j) {
    xapi_value v = {0};

    switch (json_object_get_type(j)) {
    case json_type_null:
        return xapi_value_nil();
    case json_type_boolean:
        return xapi_value_bool(json_object_get_boolean(j));
    case json_type_int:
        return xapi_value_int(json_object_get_int64(j));
    case json_type_double:
        return xapi_value_float(json_object_get_double(j));
    case json_type_string:
        return xapi_value_stringn(json_object_get_string(j), (size_t)json_object_get_string_len(j));
    case json_type_array:
        v = xapi_value_array();
        for (size_t i = 0; i < json_object_array_length(j); i++)
            xapi_array_append(&v, json_to_value(json_object_array_get_idx(j, i)));
        return v;
    case json_type_object:
        v = xapi_value_struct();
        json_object_object_foreach(j, key, val) xapi_struct_append(&v, key, json_to_value(val));
        return v;
    }
    return v;
}

static int load_object(xapi_store *s, const char *ref, const char *clsname, uint64_t gen, uint64_t created_gen,
                       const char *data) {
    const xapi_class *cls = xapi_class_by_name(clsname);
    json_object *j = NULL;
    xapi_value err = {0};
    xapi_obj *o = NULL;
    const char *uuid = NULL;
    int rc = 0;

    if (!cls) {
        log_warning("store: %s has unknown class %s; ignored", ref, clsname);
        return 0;
    }
    j = json_tokener_parse(data);
    if (!j || !json_object_is_type(j, json_type_object)) {
        log_error("store: %s: unreadable record", ref);
        rc = -EBADMSG;
        goto out;
    }
    if (json_object_object_get_ex(j, "uuid", NULL))
        uuid = json_object_get_string(json_object_object_get(j, "uuid"));
    if (!uuid || strlen(uuid) != XAPI_UUID_LEN) {
        log_error("store: %s: record without a uuid", ref);
        rc = -EBADMSG;
        goto out;
    }
    o = obj_alloc(cls, ref, uuid);
    json_object_object_foreach(j, key, val) {
        int fi = xapi_field_index(cls, key);
        xapi_value in, typed = {0};

        if (fi < 0 || cls->fields[fi].derived || !cls->fields[fi].def)
            continue; /* a field this version no longer has */
        in = json_to_value(val);
        if (xapi_coerce(cls->fields[fi].type, &in, key, &typed, &err) == 0) {
            xapi_value_free(&o->fields[fi]);
            o->fields[fi] = typed;
        } else
            log_warning("store: %s.%s: stored value does not fit the schema; default kept", ref, key);
        xapi_value_free(&in);
    }
    o->gen = gen;
    o->created_gen = created_gen;
    index_add(s, o);
    gen_push_tail(s, o);
    o = NULL;
out:
    xapi_value_free(&err);
    if (j)
        json_object_put(j);
    obj_free(o);
    return rc;
}

static int load_all(xapi_store *s) {
    sqlite3_stmt *st = NULL;
    int rc = 0, r;

    /* Highest generation first, so each insert lands at the tail of the list. */
    if (sqlite3_prepare_v2(s->db, "SELECT ref, class, gen, created_gen, data FROM objects ORDER BY gen DESC", -1,
                           &st, NULL) != SQLITE_OK)
        return -EIO;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t gen = (uint64_t)sqlite3_column_int64(st, 2);
        rc = load_object(s, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1), gen,
                         (uint64_t)sqlite3_column_int64(st, 3), (const char *)sqlite3_column_text(st, 4));
        if (rc < 0)
            goto out;
        if (gen > s->gen)
            s->gen = gen;
    }
    if (r != SQLITE_DONE)
        rc = -EIO;
    sqlite3_finalize(st);
    st = NULL;
    if (rc < 0)
        goto out;

    /* Tombstones, oldest first, keeping the newest TOMBSTONES_KEPT. */
    if (sqlite3_prepare_v2(s->db,
                           "SELECT ref, class, gen FROM (SELECT * FROM tombstones ORDER BY gen DESC LIMIT ?1) "
                           "ORDER BY gen ASC",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = -EIO;
        goto out;
    }
    sqlite3_bind_int(st, 1, TOMBSTONES_KEPT);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const xapi_class *cls = xapi_class_by_name((const char *)sqlite3_column_text(st, 1));
        uint64_t gen = (uint64_t)sqlite3_column_int64(st, 2);
        if (cls)
            tombstone_add(s, (const char *)sqlite3_column_text(st, 0), cls, gen);
        if (gen > s->gen)
            s->gen = gen;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (s->tomb_count > 0) {
        uint64_t oldest = s->tombs[s->tomb_start].gen;
        s->tomb_horizon = oldest > 0 ? oldest - 1 : 0;
        /* Forget what was pruned from memory so the table stays bounded. */
        if (sqlite3_prepare_v2(s->db, "DELETE FROM tombstones WHERE gen < ?1", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, (sqlite3_int64)oldest);
            sqlite3_step(st);
        }
    }
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'gen'", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        uint64_t g = (uint64_t)sqlite3_column_int64(st, 0);
        if (g > s->gen)
            s->gen = g;
    }
out:
    sqlite3_finalize(st);
    return rc;
}

/* Derived sets are not stored: rebuild them from the ref fields. */
static void rebuild_backrefs(xapi_store *s) {
    for (xapi_obj *o = s->gen_tail; o; o = o->gen_prev)
        for (unsigned i = 0; i < o->cls->nfields; i++) {
            xapi_obj *t = backref_target(s, o, (int)i);
            if (t)
                backref_add(s, t, o->cls->fields[i].rel_field, o->ref, false);
        }
}

int xapi_store_open(const char *state_dir, xapi_store **ret) {
    xapi_store *s = NULL;
    char *path = NULL;
    pthread_rwlockattr_t rwa;
    pthread_condattr_t ca;
    int rc;

    s = xapi_calloc(1, sizeof *s);
    s->lock_fd = -1;
    s->nbuckets = 1024;
    s->by_ref = xapi_calloc(s->nbuckets, sizeof *s->by_ref);
    s->by_uuid = xapi_calloc(s->nbuckets, sizeof *s->by_uuid);
    s->tombs = xapi_calloc(TOMBSTONES_KEPT, sizeof *s->tombs);
    pthread_rwlockattr_init(&rwa);
    /* Writers must not starve behind a stream of readers. */
    pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->lock, &rwa);
    pthread_rwlockattr_destroy(&rwa);
    pthread_mutex_init(&s->qlock, NULL);
    pthread_cond_init(&s->qcond, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->durable_cond, &ca);
    pthread_condattr_destroy(&ca);

    if (mkdir(state_dir, 0700) < 0 && errno != EEXIST) {
        rc = agent_log_errno(LOG_ERR, errno, "store: cannot create %s", state_dir);
        goto fail;
    }
    if (asprintf(&path, "%s/xenapid.lock", state_dir) < 0)
        xapi_oom();
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        rc = agent_log_errno(LOG_ERR, errno, "store: cannot open %s", path);
        goto fail;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        log_error("store: %s is in use by another xenapid (lock %s held)", state_dir, path);
        goto fail;
    }
    free(path);
    if (asprintf(&path, "%s/xenapid.db", state_dir) < 0)
        xapi_oom();
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        log_error("store: cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
        rc = -EIO;
        goto fail;
    }
    /* WAL with a sync at every commit: an acknowledged write survives a crash
     * of the process and of the machine. */
    if ((rc = db_exec(s->db, "PRAGMA journal_mode=WAL")) < 0 || (rc = db_exec(s->db, "PRAGMA synchronous=FULL")) < 0 ||
        (rc = db_exec(s->db, "CREATE TABLE IF NOT EXISTS objects(ref TEXT PRIMARY KEY, class TEXT NOT NULL, "
                             "gen INTEGER NOT NULL, created_gen INTEGER NOT NULL, data TEXT NOT NULL)")) < 0 ||
        (rc = db_exec(s->db, "CREATE TABLE IF NOT EXISTS tombstones(ref TEXT PRIMARY KEY, class TEXT NOT NULL, "
                             "gen INTEGER NOT NULL)")) < 0 ||
        (rc = db_exec(s->db, "CREATE INDEX IF NOT EXISTS tombstones_gen ON tombstones(gen)")) < 0 ||
        (rc = db_exec(s->db, "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value)")) < 0)
        goto fail;
    rc = load_all(s);
    if (rc < 0) {
        log_error("store: cannot load %s", path);
        goto fail;
    }
    rebuild_backrefs(s);
    s->durable_gen = s->gen;
    free(path);
    path = NULL;

    if (pthread_create(&s->committer, NULL, committer_main, s) != 0) {
        rc = -EAGAIN;
        goto fail;
    }
    s->committer_running = true;
    *ret = s;
    return 0;
fail:
    free(path);
    xapi_store_close(s);
    return rc;
}

void xapi_store_close(xapi_store *s) {
    if (!s)
        return;
    if (s->committer_running) {
        pthread_mutex_lock(&s->qlock);
        s->stop = true;
        pthread_cond_broadcast(&s->qcond);
        pthread_cond_broadcast(&s->durable_cond);
        pthread_mutex_unlock(&s->qlock);
        pthread_join(s->committer, NULL);
    }
    for (unsigned c = 0; c < XAPI_NCLASSES; c++) {
        xapi_obj *o, *next;
        for (o = s->classes[c].head; o; o = next) {
            next = o->class_next;
            obj_free(o);
        }
    }
    if (s->db)
        sqlite3_close(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->by_ref);
    free(s->by_uuid);
    free(s->tombs);
    pthread_rwlock_destroy(&s->lock);
    pthread_mutex_destroy(&s->qlock);
    pthread_cond_destroy(&s->qcond);
    pthread_cond_destroy(&s->durable_cond);
    free(s);
}
