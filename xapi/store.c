/* The object store: see store.h for the model. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <limits.h>
#include <linux/futex.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/* A writer waiting for its sequence to be durable: woken alone, by whoever
 * commits it (or to commit the next batch itself). */
typedef struct durable_waiter {
    struct durable_waiter *next;
    uint64_t seq;
    int rc; /* 1 while pending, then 0 or the commit's negative errno */
    pthread_cond_t cond;
} durable_waiter;

typedef struct class_list {
    xapi_obj *head, *tail;
    unsigned count;
} class_list;

/* The undo log of one write transaction: what it changed in memory, in
 * order, so that the change can be taken back newest first. An entry holds
 * what the change replaced (the old value is moved here rather than freed,
 * so a write pays one append per change and the free it would have done
 * anyway, later). A transaction's log lives until its commit is durable:
 * if the commit fails, every transaction not yet durable is undone and
 * memory is again what the database holds. */
typedef enum {
    UNDO_FIELD,      /* o->fields[field] was v */
    UNDO_SET_ADD,    /* a ref was appended to the set o->fields[field] */
    UNDO_SET_REMOVE, /* v was removed from the set o->fields[field] at index */
    UNDO_CREATE,     /* o was created */
    UNDO_DESTROY,    /* o was destroyed: its neighbours in the class and generation lists */
    UNDO_PUBLISH,    /* write_end gave o a generation: what it had, and its neighbours */
    UNDO_TOMBSTONE,  /* write_end added a tombstone, evicting the oldest if the ring was full */
} undo_kind;

typedef struct undo_entry {
    undo_kind kind;
    int field;
    uint32_t index;
    bool in_gen_list;
    xapi_obj *o;
    xapi_value v;
    xapi_obj *class_prev, *gen_prev, *gen_next;
    uint64_t gen, created_gen;
    xapi_tombstone *evicted; /* UNDO_TOMBSTONE, ring was full */
    uint64_t horizon;
} undo_entry;

typedef struct undo_log {
    struct undo_log *next; /* in pending (oldest first) or in the free pool */
    uint64_t seq;
    undo_entry *e;
    size_t n, cap;
} undo_log;

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
    bool in_txn;       /* a write transaction is open: changes are logged */
    undo_log *txn;     /* the open transaction's log, made at its first change */

    /* committer */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;       /* work queued for the committer thread, or stop */
    commit_item *qhead, *qtail;
    int64_t qhead_since_ns;     /* when the queue last became non-empty */
    int64_t last_enqueue_ns;
    durable_waiter *waiters; /* writers waiting for their writes to be settled */
    undo_log *pending, *pending_tail; /* logs of written transactions not yet durable, oldest first */
    undo_log *undo_pool;              /* emptied logs, kept for reuse */
    bool committer_watching;    /* the committer thread polls the queue: no need to signal it */
    /* Event waiters read durable_gen without a lock and sleep on wake_word
     * with futex(2): a publish bumps the word and wakes them all at once,
     * and none has to take a lock on the way out (with a condition variable,
     * a hundred subscribers queue on its mutex one after the other). */
    _Atomic uint64_t durable_gen;
    _Atomic uint32_t wake_word;
    _Atomic uint32_t gen_waiters;
    bool stop;
    _Atomic int write_error; /* the last commit failed (-ENOSPC, -EIO): said once, until one works again */
    bool committing; /* a thread owns the database and is committing a batch */
    pthread_t committer;
    bool committer_running;

    char *dir;
    sqlite3 *db;
    /* prepared once, used by whichever thread is committing */
    sqlite3_stmt *st_begin, *st_commit, *st_rollback, *st_upsert, *st_delete, *st_tomb, *st_meta;
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

/* Random bytes from the kernel, fetched for 16 uuids at a time: a VM.start
 * makes 3 objects (6 uuids), and on a dom0 whose system calls are dear each
 * getrandom counted. One pool for all threads: an HTTP connection's thread
 * lives for its connection only, and a pool of its own would be filled anew
 * for nearly every call. The daemon's children exec at once and make none
 * (a forked copy of the pool is never used). */
static void random_bytes(uint8_t *out, size_t len) {
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static uint8_t pool[256];
    static size_t left;

    pthread_mutex_lock(&lock);
    while (len > 0) {
        size_t take;

        if (left == 0) {
            size_t got = 0;
            while (got < sizeof pool) {
                ssize_t n = getrandom(pool + got, sizeof pool - got, 0);
                if (n < 0) {
                    if (errno == EINTR)
                        continue;
                    abort(); /* no entropy source at all: nothing sensible to do */
                }
                got += (size_t)n;
            }
            left = sizeof pool;
        }
        take = len < left ? len : left;
        memcpy(out, pool + sizeof pool - left, take);
        explicit_bzero(pool + sizeof pool - left, take); /* each byte is handed out once */
        left -= take;
        out += take;
        len -= take;
    }
    pthread_mutex_unlock(&lock);
}

void xapi_uuid_generate(char out[XAPI_UUID_LEN + 1]) {
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    char *p = out;

    random_bytes(b, sizeof b);
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

/* Indexes o, in its class list after class_prev (at the head if NULL). */
static void index_insert(xapi_store *s, xapi_obj *o, xapi_obj *class_prev) {
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

    o->class_prev = class_prev;
    o->class_next = class_prev ? class_prev->class_next : cl->head;
    if (o->class_next)
        o->class_next->class_prev = o;
    else
        cl->tail = o;
    if (class_prev)
        class_prev->class_next = o;
    else
        cl->head = o;
    cl->count++;
}

static void index_add(xapi_store *s, xapi_obj *o) {
    index_insert(s, o, s->classes[o->cls->id].tail);
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

static bool gen_listed(const xapi_store *s, const xapi_obj *o) {
    return o->gen_prev || o->gen_next || s->gen_head == o;
}

/* Puts o back between prev and next, which are neighbours. */
static void gen_relink(xapi_store *s, xapi_obj *o, xapi_obj *prev, xapi_obj *next) {
    o->gen_prev = prev;
    o->gen_next = next;
    if (prev)
        prev->gen_next = o;
    else
        s->gen_head = o;
    if (next)
        next->gen_prev = o;
    else
        s->gen_tail = o;
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

/* ---- undo log ------------------------------------------------------------ */

#define UNDO_POOL_MAX 16
#define UNDO_KEEP_ENTRIES 1024 /* a pooled log bigger than this gives its array back */

/* Hold qlock. */
static void undo_pool_put(xapi_store *s, undo_log *l) {
    unsigned n = 0;

    for (undo_log *p = s->undo_pool; p; p = p->next)
        n++;
    if (n >= UNDO_POOL_MAX) {
        free(l->e);
        free(l);
        return;
    }
    l->next = s->undo_pool;
    s->undo_pool = l;
}

/* Logs a change of the open transaction; NULL outside one (loading). */
static undo_entry *undo_push(xapi_store *s, undo_kind kind, xapi_obj *o) {
    undo_log *l = s->txn;
    undo_entry *e;

    if (!s->in_txn)
        return NULL;
    if (!l) {
        pthread_mutex_lock(&s->qlock);
        l = s->undo_pool;
        if (l)
            s->undo_pool = l->next;
        pthread_mutex_unlock(&s->qlock);
        if (!l)
            l = xapi_calloc(1, sizeof *l);
        l->next = NULL;
        l->seq = 0;
        l->n = 0;
        s->txn = l;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->e = xapi_realloc(l->e, l->cap * sizeof *l->e);
    }
    e = &l->e[l->n++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->o = o;
    return e;
}

/* The transaction is durable (or had nothing to store): frees what its log
 * kept, the objects it destroyed with it. Needs no lock: nothing else can
 * reach any of it. */
static void undo_release(undo_log *l) {
    for (size_t i = 0; i < l->n; i++) {
        undo_entry *e = &l->e[i];
        switch (e->kind) {
        case UNDO_FIELD:
        case UNDO_SET_REMOVE:
            xapi_value_free(&e->v);
            break;
        case UNDO_DESTROY:
            obj_free(e->o);
            break;
        case UNDO_TOMBSTONE:
            free(e->evicted);
            break;
        default:
            break;
        }
    }
    l->n = 0;
    if (l->cap > UNDO_KEEP_ENTRIES) {
        free(l->e);
        l->e = NULL;
        l->cap = 0;
    }
}

/* Takes the transaction back, newest change first (hold the write lock).
 * Each entry finds memory as it was right after its change, so neighbours
 * recorded then are neighbours again. */
static void undo_apply(xapi_store *s, undo_log *l) {
    for (size_t i = l->n; i-- > 0;) {
        undo_entry *e = &l->e[i];
        xapi_obj *o = e->o;
        xapi_value *set;

        switch (e->kind) {
        case UNDO_FIELD:
            xapi_value_free(&o->fields[e->field]);
            o->fields[e->field] = e->v;
            break;
        case UNDO_SET_ADD:
            set = &o->fields[e->field];
            xapi_value_free(&set->items[--set->n]);
            break;
        case UNDO_SET_REMOVE:
            set = &o->fields[e->field];
            xapi_array_append(set, e->v);
            memmove(&set->items[e->index + 1], &set->items[e->index],
                    (set->n - 1 - e->index) * sizeof *set->items);
            set->items[e->index] = e->v;
            break;
        case UNDO_CREATE:
            index_remove(s, o);
            obj_free(o);
            break;
        case UNDO_DESTROY:
            index_insert(s, o, e->class_prev);
            if (e->in_gen_list)
                gen_relink(s, o, e->gen_prev, e->gen_next);
            o->deleted = false;
            break;
        case UNDO_PUBLISH:
            gen_unlink(s, o);
            if (e->in_gen_list)
                gen_relink(s, o, e->gen_prev, e->gen_next);
            o->gen = e->gen;
            o->created_gen = e->created_gen;
            break;
        case UNDO_TOMBSTONE:
            s->tomb_count--;
            if (e->evicted) {
                s->tomb_start = (s->tomb_start + TOMBSTONES_KEPT - 1) % TOMBSTONES_KEPT;
                s->tombs[s->tomb_start] = *e->evicted;
                s->tomb_count++;
                s->tomb_horizon = e->horizon;
                free(e->evicted);
            }
            break;
        }
    }
    l->n = 0; /* everything it held is back in place */
}

/* ---- back-references ---------------------------------------------------- */

static void backref_add(xapi_store *s, xapi_obj *target, int set_field, const char *ref, bool events) {
    xapi_value *set = &target->fields[set_field];

    for (uint32_t i = 0; i < set->n; i++)
        if (strcmp(set->items[i].s, ref) == 0)
            return;
    xapi_array_append(set, xapi_value_string(ref));
    {
        undo_entry *e = undo_push(s, UNDO_SET_ADD, target);
        if (e)
            e->field = set_field;
    }
    if (events)
        mark_dirty(s, target, false);
}

static void backref_remove(xapi_store *s, xapi_obj *target, int set_field, const char *ref) {
    xapi_value *set = &target->fields[set_field];

    for (uint32_t i = 0; i < set->n; i++)
        if (strcmp(set->items[i].s, ref) == 0) {
            undo_entry *e = undo_push(s, UNDO_SET_REMOVE, target);
            if (e) {
                e->field = set_field;
                e->index = i;
                e->v = set->items[i];
            } else
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
    s->in_txn = true;
}

xapi_obj *xapi_obj_create_with(xapi_store *s, const xapi_class *cls, const char *ref, const char *uuid) {
    xapi_obj *o;

    if (xapi_store_get(s, ref) || xapi_store_get_by_uuid(s, cls, uuid))
        return NULL;
    o = obj_alloc(cls, ref, uuid);
    o->created_gen = UINT64_MAX; /* set at write_end */
    index_add(s, o);
    undo_push(s, UNDO_CREATE, o);
    mark_dirty(s, o, true);
    return o;
}

xapi_obj *xapi_obj_create(xapi_store *s, const xapi_class *cls) {
    char ref[XAPI_REF_LEN + 1], uuid[XAPI_UUID_LEN + 1];

    xapi_uuid_generate(uuid);
    xapi_ref_generate(ref);
    return xapi_obj_create_with(s, cls, ref, uuid);
}

/* Whether a value has the shape its field's type needs: a wrong shape is a
 * bug in the caller and would be refused when the store is loaded again. */
static bool kind_fits(const xapi_type *t, const xapi_value *v) {
    switch ((xapi_tkind)t->kind) {
    case XAPI_T_STRING:
    case XAPI_T_ENUM:
    case XAPI_T_REF:
        return v->kind == XAPI_V_STRING;
    case XAPI_T_INT:
        return v->kind == XAPI_V_INT;
    case XAPI_T_FLOAT:
        return v->kind == XAPI_V_FLOAT;
    case XAPI_T_BOOL:
        return v->kind == XAPI_V_BOOL;
    case XAPI_T_DATETIME:
        return v->kind == XAPI_V_DATETIME;
    case XAPI_T_SET:
        return v->kind == XAPI_V_ARRAY;
    case XAPI_T_MAP:
        return v->kind == XAPI_V_STRUCT;
    default:
        return true;
    }
}

void xapi_obj_set(xapi_store *s, xapi_obj *o, int field, xapi_value v) {
    const xapi_field *f = &o->cls->fields[field];

    if (!kind_fits(f->type, &v)) {
        log_error("store: %s.%s set with a value of the wrong kind; ignored", o->cls->name, f->name);
        xapi_value_free(&v);
        return;
    }
    xapi_obj *old_target = NULL, *new_target = NULL;

    if (xapi_value_equal(&o->fields[field], &v)) {
        xapi_value_free(&v);
        return;
    }
    if (f->rel_class >= 0 && !f->derived)
        old_target = backref_target(s, o, field);
    {
        undo_entry *e = undo_push(s, UNDO_FIELD, o);
        if (e) {
            e->field = field;
            e->v = o->fields[field];
        } else
            xapi_value_free(&o->fields[field]);
    }
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
    {
        undo_entry *e = undo_push(s, UNDO_DESTROY, o);
        if (e) {
            e->class_prev = o->class_prev;
            e->in_gen_list = gen_listed(s, o);
            e->gen_prev = o->gen_prev;
            e->gen_next = o->gen_next;
        }
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
    undo_entry *e = undo_push(s, UNDO_TOMBSTONE, NULL);
    xapi_tombstone *t;

    if (s->tomb_count == TOMBSTONES_KEPT) {
        if (e) {
            e->evicted = xapi_malloc(sizeof *e->evicted);
            *e->evicted = s->tombs[s->tomb_start];
            e->horizon = s->tomb_horizon;
        }
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

/* Ends a transaction with no logged change left to keep. */
static void txn_close(xapi_store *s) {
    undo_log *l = s->txn;

    s->txn = NULL;
    s->in_txn = false;
    if (l) {
        undo_release(l);
        pthread_mutex_lock(&s->qlock);
        undo_pool_put(s, l);
        pthread_mutex_unlock(&s->qlock);
    }
}

/* w: the caller waits for the write and commits it itself (registered as a
 * waiter here, before anyone can commit the write). */
static uint64_t write_end(xapi_store *s, durable_waiter *w) {
    commit_item *head = NULL, **tail = &head;
    xapi_obj *o, *next;
    uint64_t gen, seq = 0;
    undo_log *l;

    if (!s->dirty) {
        txn_close(s);
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
            undo_entry *e = undo_push(s, UNDO_PUBLISH, o);

            if (e) {
                e->gen = o->gen;
                e->created_gen = o->created_gen;
                e->in_gen_list = gen_listed(s, o);
                e->gen_prev = o->gen_prev;
                e->gen_next = o->gen_next;
            }
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
        /* A destroyed object is freed with the log once the write is durable. */
    }
    s->dirty = NULL;
    /* Always one marker so the durable generation advances in order. */
    *tail = xapi_calloc(1, sizeof **tail);
    (*tail)->op = ITEM_MARK;
    (*tail)->seq = seq;
    (*tail)->gen = gen;
    l = s->txn ? s->txn : xapi_calloc(1, sizeof *l); /* no log: changed outside write_begin */
    s->txn = NULL;
    s->in_txn = false;
    l->seq = seq;

    pthread_mutex_lock(&s->qlock);
    s->last_enqueue_ns = xapi_now_ns();
    if (s->qtail)
        s->qtail->next = head;
    else {
        s->qhead = head;
        s->qhead_since_ns = s->last_enqueue_ns;
    }
    for (s->qtail = head; s->qtail->next; s->qtail = s->qtail->next)
        ;
    if (s->pending_tail)
        s->pending_tail->next = l;
    else
        s->pending = l;
    s->pending_tail = l;
    if (w) {
        w->seq = seq;
        w->next = s->waiters;
        s->waiters = w;
    }
    /* A writer that waits for its write commits it itself (see
     * commit_queued), with no other thread woken on the way; the committer
     * thread is there for the others, and only woken when it is not already
     * watching the queue. */
    if (!w && !s->committer_watching)
        pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);

    pthread_rwlock_unlock(&s->lock);
    return seq;
}

uint64_t xapi_store_write_end(xapi_store *s) {
    return write_end(s, NULL);
}

void xapi_store_write_abort(xapi_store *s) {
    xapi_obj *o, *next;

    for (o = s->dirty; o; o = next) {
        next = o->dirty_next;
        o->dirty_next = NULL;
        o->dirty = false;
        o->persist_dirty = false;
    }
    s->dirty = NULL;
    if (s->txn)
        undo_apply(s, s->txn);
    txn_close(s);
    pthread_rwlock_unlock(&s->lock);
}

static bool commit_queued(xapi_store *s);

int xapi_store_write_end_durable(xapi_store *s) {
    durable_waiter w = {.rc = 1}, **pp;

    pthread_cond_init(&w.cond, NULL);
    if (write_end(s, &w) == 0) {
        pthread_cond_destroy(&w.cond);
        return 0;
    }
    pthread_mutex_lock(&s->qlock);
    /* Nobody is committing: commit what is queued (our write with it) here
     * rather than hand it to another thread and wait to be woken. */
    while (w.rc > 0)
        if (!commit_queued(s))
            pthread_cond_wait(&w.cond, &s->qlock);
    for (pp = &s->waiters; *pp; pp = &(*pp)->next)
        if (*pp == &w) {
            *pp = w.next;
            break;
        }
    pthread_mutex_unlock(&s->qlock);
    pthread_cond_destroy(&w.cond);
    return w.rc;
}

uint64_t xapi_store_durable_gen(xapi_store *s) {
    return atomic_load(&s->durable_gen);
}

static void wake_gen_waiters(xapi_store *s) {
    atomic_fetch_add(&s->wake_word, 1);
    if (atomic_load(&s->gen_waiters) > 0)
        syscall(SYS_futex, &s->wake_word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

uint64_t xapi_store_wait_gen(xapi_store *s, uint64_t since, int64_t deadline_ns, const volatile bool *cancel) {
    uint32_t start = atomic_load(&s->wake_word), word = start;
    uint64_t g;

    atomic_fetch_add(&s->gen_waiters, 1);
    /* The word is read before the generation: a publish in between changes
     * the word, and the futex then refuses to sleep. */
    while ((g = atomic_load(&s->durable_gen)) <= since && word == start && !(cancel && *cancel) &&
           !__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE) && xapi_now_ns() < deadline_ns) {
        struct timespec ts = {deadline_ns / 1000000000LL, deadline_ns % 1000000000LL};

        /* Absolute CLOCK_MONOTONIC deadline: FUTEX_WAIT_BITSET's default clock. */
        syscall(SYS_futex, &s->wake_word, FUTEX_WAIT_BITSET_PRIVATE, start, &ts, NULL, FUTEX_BITSET_MATCH_ANY);
        word = atomic_load(&s->wake_word);
    }
    atomic_fetch_sub(&s->gen_waiters, 1);
    return g;
}

void xapi_store_wake_all(xapi_store *s) {
    wake_gen_waiters(s);
}

/* ---- SQLite --------------------------------------------------------------- */

static int db_errno(sqlite3 *db, int r);

static int db_exec(sqlite3 *db, const char *sql) {
    char *msg = NULL;
    int r = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (r != SQLITE_OK) {
        log_error("store: %s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return db_errno(db, r);
    }
    return 0;
}

/* -ENOSPC when the disk (or quota) is full, -EIO for anything else. */
static int db_errno(sqlite3 *db, int r) {
    int sys = sqlite3_system_errno(db);

    if ((r & 0xff) == SQLITE_FULL || sys == ENOSPC || sys == EDQUOT)
        return -ENOSPC;
    return -EIO;
}

static int step_done(xapi_store *s, sqlite3_stmt *st, const char *what) {
    int r = sqlite3_step(st);

    if (r != SQLITE_DONE) {
        int rc = db_errno(s->db, r);
        if (!s->write_error) /* once per outage, not once per write */
            log_error("store: %s: %s", what, sqlite3_errmsg(s->db));
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return rc;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return 0;
}

/* One transaction for the whole batch. The statements are prepared once (see
 * prepare_statements); meta.gen is written only when the batch's last
 * generation is not already recorded by one of its rows, so that the common
 * write (one object changed) dirties one page of the database. */
static int commit_batch(xapi_store *s, commit_item *batch) {
    uint64_t last_gen = 0, stored_gen = 0;
    int rc;

    if ((rc = step_done(s, s->st_begin, "BEGIN")) < 0)
        return rc;
    for (commit_item *it = batch; it; it = it->next) {
        last_gen = it->gen;
        if (it->op == ITEM_UPSERT) {
            sqlite3_stmt *st = s->st_upsert;
            sqlite3_bind_text(st, 1, it->ref, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, it->cls->name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)it->gen);
            sqlite3_bind_int64(st, 4, (sqlite3_int64)it->created_gen);
            sqlite3_bind_text(st, 5, it->data, -1, SQLITE_STATIC);
            if ((rc = step_done(s, st, it->ref)) < 0)
                goto out;
            stored_gen = it->gen;
        } else if (it->op == ITEM_DELETE) {
            sqlite3_bind_text(s->st_delete, 1, it->ref, -1, SQLITE_STATIC);
            if ((rc = step_done(s, s->st_delete, it->ref)) < 0)
                goto out;
            if (!it->cls->gen_events)
                continue;
            sqlite3_bind_text(s->st_tomb, 1, it->ref, -1, SQLITE_STATIC);
            sqlite3_bind_text(s->st_tomb, 2, it->cls->name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s->st_tomb, 3, (sqlite3_int64)it->gen);
            if ((rc = step_done(s, s->st_tomb, it->ref)) < 0)
                goto out;
            stored_gen = it->gen;
        }
    }
    /* Loading takes the highest generation of objects, tombstones and meta. */
    if (last_gen > stored_gen) {
        sqlite3_bind_int64(s->st_meta, 1, (sqlite3_int64)last_gen);
        if ((rc = step_done(s, s->st_meta, "meta")) < 0)
            goto out;
    }
    rc = step_done(s, s->st_commit, "COMMIT");
out:
    if (rc < 0 && !sqlite3_get_autocommit(s->db))
        step_done(s, s->st_rollback, "ROLLBACK");
    return rc;
}

static int prepare_statements(xapi_store *s) {
    static const struct {
        size_t off;
        const char *sql;
    } stmts[] = {
        {offsetof(xapi_store, st_begin), "BEGIN IMMEDIATE"},
        {offsetof(xapi_store, st_commit), "COMMIT"},
        {offsetof(xapi_store, st_rollback), "ROLLBACK"},
        {offsetof(xapi_store, st_upsert),
         "INSERT INTO objects(ref, class, gen, created_gen, data) VALUES(?1, ?2, ?3, ?4, ?5) "
         "ON CONFLICT(ref) DO UPDATE SET gen = excluded.gen, data = excluded.data"},
        {offsetof(xapi_store, st_delete), "DELETE FROM objects WHERE ref = ?1"},
        {offsetof(xapi_store, st_tomb), "INSERT OR REPLACE INTO tombstones(ref, class, gen) VALUES(?1, ?2, ?3)"},
        /* An UPDATE in place: INSERT OR REPLACE would rewrite the key's index page too. */
        {offsetof(xapi_store, st_meta), "UPDATE meta SET value = ?1 WHERE key = 'gen'"},
    };

    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
        sqlite3_stmt **st = (sqlite3_stmt **)((char *)s + stmts[i].off);
        if (sqlite3_prepare_v3(s->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
            log_error("store: prepare %s: %s", stmts[i].sql, sqlite3_errmsg(s->db));
            return -EIO;
        }
    }
    return 0;
}

static void finalize_statements(xapi_store *s) {
    sqlite3_stmt **all[] = {&s->st_begin, &s->st_commit, &s->st_rollback, &s->st_upsert,
                            &s->st_delete, &s->st_tomb,   &s->st_meta};

    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        sqlite3_finalize(*all[i]);
        *all[i] = NULL;
    }
}

/* Group commit. Called with qlock held. If nobody is committing and writes
 * are queued, takes the whole queue, commits it in one transaction (qlock
 * released meanwhile), publishes the new durable sequence and returns true.
 * Whoever finds work and no committer does it: a writer waiting for its own
 * write (no thread hand-off on the way to the disk and back), or the
 * committer thread (writes nobody waits for). */
static void items_free(commit_item *it) {
    for (commit_item *next; it; it = next) {
        next = it->next;
        free(it->data);
        free(it);
    }
}

/* Wakes the writers whose writes are now settled (with rc), and one writer
 * whose write is still queued: it commits the next batch. The others sleep
 * on. Hold qlock. */
static void settle_waiters(xapi_store *s, uint64_t upto, int rc) {
    bool handed = !s->qhead;

    for (durable_waiter *w = s->waiters; w; w = w->next) {
        if (w->rc <= 0)
            continue;
        if (w->seq <= upto) {
            w->rc = rc;
            pthread_cond_signal(&w->cond);
        } else if (!handed) {
            pthread_cond_signal(&w->cond);
            handed = true;
        }
    }
    if (!handed) /* queued writes nobody waits for */
        pthread_cond_signal(&s->qcond);
}

/* The batch could not be stored. Every write not yet durable fails with it
 * (those queued since were made on top of it) and memory goes back to what
 * the database holds: their logs are undone, newest first. Called without
 * qlock, returns with it. */
static void commit_failed(xapi_store *s, commit_item *batch, int rc) {
    undo_log *newest_first = NULL, *l, *next;

    pthread_rwlock_wrlock(&s->lock);
    pthread_mutex_lock(&s->qlock);
    items_free(batch);
    items_free(s->qhead);
    s->qhead = s->qtail = NULL;
    for (l = s->pending; l; l = next) {
        next = l->next;
        l->next = newest_first;
        newest_first = l;
    }
    s->pending = s->pending_tail = NULL;
    for (l = newest_first; l; l = next) {
        next = l->next;
        undo_apply(s, l);
        undo_pool_put(s, l);
    }
    /* The generations handed out since were never visible (events only see
     * durable ones): hand them out again. */
    s->gen = atomic_load(&s->durable_gen);
    settle_waiters(s, s->next_seq, rc);
    s->committing = false;
    pthread_rwlock_unlock(&s->lock);
}

/* Group commit. Called with qlock held. If nobody is committing and writes
 * are queued, takes the whole queue, commits it in one transaction (qlock
 * released meanwhile), publishes the new durable sequence (or, if the
 * commit failed, takes back every write not yet durable) and returns true.
 * Whoever finds work and no committer does it: a writer waiting for its own
 * write (no thread hand-off on the way to the disk and back), or the
 * committer thread (writes nobody waits for). */
static bool commit_queued(xapi_store *s) {
    commit_item *batch, *it;
    undo_log *done = NULL, **tail = &done, *l, *next;
    uint64_t seq = 0, gen = 0;
    int rc = -EIO;

    if (s->committing || !s->qhead)
        return false;
    s->committing = true;
    batch = s->qhead;
    s->qhead = s->qtail = NULL;
    pthread_mutex_unlock(&s->qlock);

    /* An I/O error is retried a few times; a full disk is not (space does
     * not come back in a few milliseconds, and the writer is waiting). */
    for (int attempt = 0; attempt < 3; attempt++) {
        rc = commit_batch(s, batch);
        if (rc == 0 || rc == -ENOSPC)
            break;
        usleep(50000);
    }
    if (rc < 0) {
        if (!s->write_error)
            log_error("store: cannot write to %s/xenapid.db (%s): writes fail until it can, reads go on",
                      s->dir, rc == -ENOSPC ? "no space left" : "I/O error");
        atomic_store(&s->write_error, rc);
        commit_failed(s, batch, rc);
        return true;
    }
    if (s->write_error)
        log_notice("store: %s/xenapid.db can be written again", s->dir);
    atomic_store(&s->write_error, 0);
    for (it = batch; it; it = it->next) {
        seq = it->seq;
        gen = it->gen;
    }
    items_free(batch);
    pthread_mutex_lock(&s->qlock);
    s->durable_gen = gen;
    s->committing = false;
    /* The logs of what is now durable: nothing will be undone there. */
    while (s->pending && s->pending->seq <= seq) {
        l = s->pending;
        s->pending = l->next;
        l->next = NULL;
        *tail = l;
        tail = &l->next;
    }
    if (!s->pending)
        s->pending_tail = NULL;
    wake_gen_waiters(s);
    settle_waiters(s, seq, 0);
    if (done) {
        pthread_mutex_unlock(&s->qlock);
        for (l = done; l; l = l->next)
            undo_release(l);
        pthread_mutex_lock(&s->qlock);
        for (l = done; l; l = next) {
            next = l->next;
            undo_pool_put(s, l);
        }
    }
    return true;
}

/* Writes nobody waits for are committed by this thread, at most
 * COMMITTER_PICKUP_NS after they were queued (a waiting writer commits its
 * own write at once). While writes keep coming it watches the queue with a
 * timeout instead of being woken for each of them; after COMMITTER_IDLE_NS
 * without writes it sleeps until the next one. */
#define COMMITTER_PICKUP_NS 1000000LL
#define COMMITTER_IDLE_NS 100000000LL

static void *committer_main(void *arg) {
    xapi_store *s = arg;

    pthread_setname_np(pthread_self(), "store-commit");
    pthread_mutex_lock(&s->qlock);
    s->committer_watching = true;
    for (;;) {
        int64_t now = xapi_now_ns(), until;
        struct timespec ts;

        if (s->stop && !s->qhead && !s->committing)
            break;
        if (s->qhead && !s->committing && (s->stop || now - s->qhead_since_ns >= COMMITTER_PICKUP_NS)) {
            commit_queued(s);
            continue;
        }
        if (!s->qhead && !s->stop && now - s->last_enqueue_ns >= COMMITTER_IDLE_NS) {
            s->committer_watching = false;
            while (!s->qhead && !s->stop)
                pthread_cond_wait(&s->qcond, &s->qlock);
            s->committer_watching = true;
            continue;
        }
        until = now + COMMITTER_PICKUP_NS;
        if (s->qhead && !s->committing && s->qhead_since_ns + COMMITTER_PICKUP_NS < until)
            until = s->qhead_since_ns + COMMITTER_PICKUP_NS;
        ts.tv_sec = until / 1000000000LL;
        ts.tv_nsec = until % 1000000000LL;
        pthread_cond_timedwait(&s->qcond, &s->qlock, &ts);
    }
    pthread_mutex_unlock(&s->qlock);
    return NULL;
}

/* ---- loading -------------------------------------------------------------- */

/* Records are read with a JSON reader of their own, straight into typed
 * values: building json-c objects, converting them to generic values and
 * those to typed copies made a store of 10,000 VMs take most of the start-up
 * time. It reads any JSON (escapes, surrogate pairs, numbers, nesting), not
 * only what serialize() writes. A value already in the form its field's type
 * wants (what serialize() writes) is taken as it is; anything else goes
 * through xapi_coerce as before. */

#define JSON_MAX_DEPTH 64

typedef struct jreader {
    const char *p, *end;
    xapi_buf tmp; /* strings with escapes, keys */
} jreader;

static void jskip_ws(jreader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int jhex4(const char *p, unsigned *ret) {
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *ret = v;
    return 0;
}

static void jput_utf8(xapi_buf *b, unsigned cp) {
    char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    xapi_buf_append(b, u, n);
}

/* A string at r->p (on the opening quote: " or, as json-c accepts, ').
 * Without escapes it is returned in place (*ret points into the input); with
 * escapes it is decoded into r->tmp. */
static int jstring(jreader *r, const char **ret, size_t *ret_len) {
    const char quote = *r->p;
    const char *p = ++r->p, *start = p;

    while (p < r->end && *p != quote && *p != '\\')
        p++;
    if (p >= r->end)
        return -1;
    if (*p == quote) {
        *ret = start;
        *ret_len = (size_t)(p - start);
        r->p = p + 1;
        return 0;
    }
    xapi_buf_truncate(&r->tmp, 0);
    xapi_buf_append(&r->tmp, start, (size_t)(p - start));
    while (p < r->end && *p != quote) {
        const char *q = p;
        unsigned cp, lo;

        if (*p != '\\') {
            while (q < r->end && *q != quote && *q != '\\')
                q++;
            xapi_buf_append(&r->tmp, p, (size_t)(q - p));
            p = q;
            continue;
        }
        if (++p >= r->end)
            return -1;
        switch (*p++) {
        case '"': xapi_buf_putc(&r->tmp, '"'); break;
        case '\'': xapi_buf_putc(&r->tmp, '\''); break;
        case '\\': xapi_buf_putc(&r->tmp, '\\'); break;
        case '/': xapi_buf_putc(&r->tmp, '/'); break;
        case 'b': xapi_buf_putc(&r->tmp, '\b'); break;
        case 'f': xapi_buf_putc(&r->tmp, '\f'); break;
        case 'n': xapi_buf_putc(&r->tmp, '\n'); break;
        case 'r': xapi_buf_putc(&r->tmp, '\r'); break;
        case 't': xapi_buf_putc(&r->tmp, '\t'); break;
        case 'u':
            if (r->end - p < 4 || jhex4(p, &cp) < 0)
                return -1;
            p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && r->end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
                jhex4(p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            } else if (cp >= 0xd800 && cp < 0xe000)
                cp = 0xfffd; /* a lone surrogate: the replacement character, as json-c */
            jput_utf8(&r->tmp, cp);
            break;
        default:
            return -1;
        }
    }
    if (p >= r->end)
        return -1;
    r->p = p + 1;
    if (!r->tmp.data)
        xapi_buf_reserve(&r->tmp, 0);
    *ret = r->tmp.data;
    *ret_len = r->tmp.len;
    return 0;
}

static int jnumber(jreader *r, xapi_value *v) {
    const char *p = r->p;
    bool is_float = false;
    char tmp[64];
    size_t n;

    if (p < r->end && *p == '-')
        p++;
    if (p < r->end && (*p < '0' || *p > '9'))
        return -1;
    while (p < r->end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' ||
                          *p == '-')) {
        if (*p == '.' || *p == 'e' || *p == 'E')
            is_float = true;
        p++;
    }
    n = (size_t)(p - r->p);
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, r->p, n);
    tmp[n] = 0;
    errno = 0;
    if (!is_float) {
        char *e;
        long long i = strtoll(tmp, &e, 10); /* out of range: saturated, as json-c */
        if (*e)
            return -1;
        *v = xapi_value_int(i);
        r->p = p;
        return 0;
    }
    {
        char *e;
        double f = strtod(tmp, &e);
        if (*e)
            return -1;
        *v = xapi_value_float(f);
    }
    r->p = p;
    return 0;
}

static int jvalue(jreader *r, xapi_value *v, int depth);

static int jlit(jreader *r, const char *lit, size_t n) {
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0)
        return -1;
    r->p += n;
    return 0;
}

/* Calls member(key, key_len, ud) at each member's value; it reads the value. */
static int jobject(jreader *r, int (*member)(jreader *r, const char *key, size_t key_len, void *ud), void *ud) {
    jskip_ws(r);
    if (r->p >= r->end || *r->p != '{')
        return -1;
    r->p++;
    jskip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return 0;
    }
    for (;;) {
        const char *k;
        size_t kl;
        char *key;
        int rc;

        jskip_ws(r);
        if (r->p >= r->end || (*r->p != '"' && *r->p != '\'') || jstring(r, &k, &kl) < 0)
            return -1;
        key = strndup(k, kl); /* r->tmp is reused by the value */
        if (!key)
            xapi_oom();
        jskip_ws(r);
        if (r->p >= r->end || *r->p != ':') {
            free(key);
            return -1;
        }
        r->p++;
        rc = member(r, key, kl, ud);
        free(key);
        if (rc < 0)
            return rc;
        jskip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            jskip_ws(r);
            if (r->p < r->end && *r->p == '}') { /* a trailing comma, which json-c accepts */
                r->p++;
                return 0;
            }
            continue;
        }
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            return 0;
        }
        return -1;
    }
}

typedef struct jstruct_ctx {
    xapi_value *st;
    int depth;
} jstruct_ctx;

static int jstruct_member(jreader *r, const char *key, size_t key_len, void *ud) {
    jstruct_ctx *c = ud;
    xapi_value v = {0};

    if (jvalue(r, &v, c->depth + 1) < 0)
        return -1;
    xapi_struct_append(c->st, key, v);
    return 0;
}

static int jvalue(jreader *r, xapi_value *v, int depth) {
    const char *str;
    size_t n;

    if (depth > JSON_MAX_DEPTH)
        return -1;
    jskip_ws(r);
    if (r->p >= r->end)
        return -1;
    switch (*r->p) {
    case '"':
    case '\'':
        if (jstring(r, &str, &n) < 0)
            return -1;
        *v = xapi_value_stringn(str, n);
        return 0;
    case '{': {
        jstruct_ctx c = {v, depth};
        *v = xapi_value_struct();
        return jobject(r, jstruct_member, &c);
    }
    case '[':
        *v = xapi_value_array();
        r->p++;
        jskip_ws(r);
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return 0;
        }
        for (;;) {
            xapi_value item = {0};
            if (jvalue(r, &item, depth + 1) < 0)
                return -1;
            xapi_array_append(v, item);
            jskip_ws(r);
            if (r->p < r->end && *r->p == ',') {
                r->p++;
                jskip_ws(r);
                if (r->p < r->end && *r->p == ']') { /* a trailing comma, which json-c accepts */
                    r->p++;
                    return 0;
                }
                continue;
            }
            if (r->p < r->end && *r->p == ']') {
                r->p++;
                return 0;
            }
            return -1;
        }
    case 't':
        *v = xapi_value_bool(true);
        return jlit(r, "true", 4);
    case 'f':
        *v = xapi_value_bool(false);
        return jlit(r, "false", 5);
    case 'n':
        *v = xapi_value_nil();
        return jlit(r, "null", 4);
    default:
        return jnumber(r, v);
    }
}

/* Enum values by exact spelling, for the check that a stored value is
 * already canonical (xapi_enum_canonical compares case-insensitively, one
 * value after the other). An enum where two values differ only in case is
 * left to xapi_coerce. */
typedef struct enum_index {
    const char **slots; /* open addressing, power-of-two size */
    size_t mask;
    bool ambiguous;
} enum_index;

static enum_index *enum_indexes;
static pthread_once_t enum_indexes_once = PTHREAD_ONCE_INIT;

static void build_enum_indexes(void) {
    enum_indexes = xapi_calloc(xapi_nenums ? xapi_nenums : 1, sizeof *enum_indexes);
    for (unsigned e = 0; e < xapi_nenums; e++) {
        const xapi_enum *en = &xapi_enums[e];
        enum_index *ix = &enum_indexes[e];
        size_t size = 8;

        while (size < (size_t)en->n * 2)
            size <<= 1;
        ix->slots = xapi_calloc(size, sizeof *ix->slots);
        ix->mask = size - 1;
        for (unsigned i = 0; i < en->n; i++) {
            size_t h = hash_str(en->values[i]) & ix->mask;
            for (unsigned j = 0; j < i; j++)
                if (strcasecmp(en->values[i], en->values[j]) == 0)
                    ix->ambiguous = true;
            while (ix->slots[h])
                h = (h + 1) & ix->mask;
            ix->slots[h] = en->values[i];
        }
    }
}

static bool enum_is_canonical(const xapi_enum *en, const char *s) {
    const enum_index *ix;
    ptrdiff_t e = en - xapi_enums;

    if (e < 0 || (size_t)e >= xapi_nenums) /* an enum outside the table: ask the slow way */
        return false;
    ix = &enum_indexes[e];
    if (ix->ambiguous)
        return false;
    for (size_t h = hash_str(s) & ix->mask; ix->slots[h]; h = (h + 1) & ix->mask)
        if (strcmp(ix->slots[h], s) == 0)
            return true;
    return false;
}

/* Whether v is already what xapi_coerce(t, v) would return (converting an
 * int to a float in place): then it is used as it is, without a copy. */
static bool already_typed(const xapi_type *t, xapi_value *v) {
    switch ((xapi_tkind)t->kind) {
    case XAPI_T_STRING:
    case XAPI_T_REF:
        return v->kind == XAPI_V_STRING && xapi_utf8_valid(v->s, v->n);
    case XAPI_T_INT:
        return v->kind == XAPI_V_INT;
    case XAPI_T_FLOAT:
        if (v->kind == XAPI_V_INT)
            *v = xapi_value_float((double)v->i);
        return v->kind == XAPI_V_FLOAT;
    case XAPI_T_BOOL:
        return v->kind == XAPI_V_BOOL;
    case XAPI_T_ENUM:
        return v->kind == XAPI_V_STRING && enum_is_canonical(t->enumv, v->s);
    case XAPI_T_SET:
        if (v->kind != XAPI_V_ARRAY)
            return false;
        for (uint32_t i = 0; i < v->n; i++) {
            if (!already_typed(t->elem, &v->items[i]))
                return false;
            for (uint32_t j = 0; j < i; j++) /* a set holds each element once */
                if (xapi_value_equal(&v->items[i], &v->items[j]))
                    return false;
        }
        return true;
    case XAPI_T_MAP:
        if (v->kind != XAPI_V_STRUCT)
            return false;
        for (uint32_t i = 0; i < v->n; i++) {
            const char *k = v->members[i].name;
            unsigned kk = t->key->kind;

            if (!xapi_utf8_valid(k, strlen(k)))
                return false;
            if (kk == XAPI_T_ENUM ? !enum_is_canonical(t->key->enumv, k) : kk != XAPI_T_STRING && kk != XAPI_T_REF)
                return false;
            if (!already_typed(t->elem, &v->members[i].value))
                return false;
            for (uint32_t j = 0; j < i; j++)
                if (strcmp(k, v->members[j].name) == 0)
                    return false;
        }
        return true;
    case XAPI_T_OPTION:
        return already_typed(t->elem, v);
    case XAPI_T_RECORD:
    case XAPI_T_ANY_RECORD:
        return v->kind == XAPI_V_STRUCT;
    default: /* DATETIME is stored as text: xapi_coerce parses it */
        return false;
    }
}

typedef struct record_ctx {
    const char *ref;
    const xapi_class *cls;
    xapi_value *fields;
    unsigned next; /* where the next member is expected: fields are stored in schema order */
    char uuid[XAPI_UUID_LEN + 1];
    bool has_uuid;
} record_ctx;

static int record_member(jreader *r, const char *key, size_t key_len, void *ud) {
    record_ctx *c = ud;
    const xapi_class *cls = c->cls;
    int fi = -1;
    xapi_value v = {0}, typed = {0}, err = {0};

    if (c->next < cls->nfields && cls->fields[c->next].name_len == key_len &&
        memcmp(cls->fields[c->next].name, key, key_len) == 0)
        fi = (int)c->next;
    else
        fi = xapi_field_index(cls, key);
    if (jvalue(r, &v, 1) < 0) {
        xapi_value_free(&v);
        return -1;
    }
    if (strcmp(key, "uuid") == 0) {
        c->has_uuid = v.kind == XAPI_V_STRING && v.n == XAPI_UUID_LEN;
        if (c->has_uuid)
            memcpy(c->uuid, v.s, XAPI_UUID_LEN + 1);
    }
    if (fi < 0 || cls->fields[fi].derived || !cls->fields[fi].def) { /* a field this version no longer has */
        xapi_value_free(&v);
        return 0;
    }
    c->next = (unsigned)fi + 1;
    if (!already_typed(cls->fields[fi].type, &v)) {
        if (xapi_coerce(cls->fields[fi].type, &v, key, &typed, &err) < 0) {
            log_warning("store: %s.%s: stored value does not fit the schema; default kept", c->ref, key);
            xapi_value_free(&v);
            xapi_value_free(&err);
            return 0;
        }
        xapi_value_free(&v);
        v = typed;
    }
    xapi_value_free(&c->fields[fi]); /* a key given twice: the last one counts */
    c->fields[fi] = v;
    return 0;
}

/* Reads one stored record into a new object (not yet indexed); NULL with
 * *rc set if it cannot be read, NULL with *rc == 0 for an unknown class. */
static xapi_obj *load_object(jreader *r, const char *ref, const xapi_class *cls, uint64_t gen,
                             uint64_t created_gen, const char *data, size_t len, int *rc) {
    record_ctx c = {.ref = ref, .cls = cls};
    xapi_obj *o;

    *rc = 0;
    c.fields = xapi_calloc(cls->nfields ? cls->nfields : 1, sizeof *c.fields);
    r->p = data;
    r->end = data + len;
    if (jobject(r, record_member, &c) < 0) { /* what follows the record is ignored, as by json-c */
        log_error("store: %s: unreadable record", ref);
        *rc = -EBADMSG;
    } else if (!c.has_uuid) {
        log_error("store: %s: record without a uuid", ref);
        *rc = -EBADMSG;
    }
    if (*rc < 0) {
        for (unsigned i = 0; i < cls->nfields; i++)
            xapi_value_free(&c.fields[i]);
        free(c.fields);
        return NULL;
    }
    /* Fields left out were at their default (see serialize). */
    for (unsigned i = 0; i < cls->nfields; i++)
        if (c.fields[i].kind == XAPI_V_NIL && cls->fields[i].def)
            c.fields[i] = xapi_value_copy(cls->fields[i].def);
    if (cls->f_uuid >= 0) {
        xapi_value_free(&c.fields[cls->f_uuid]);
        c.fields[cls->f_uuid] = xapi_value_stringn(c.uuid, XAPI_UUID_LEN);
    }
    o = xapi_calloc(1, sizeof *o);
    o->cls = cls;
    snprintf(o->ref, sizeof o->ref, "%s", ref);
    memcpy(o->uuid, c.uuid, sizeof o->uuid);
    o->fields = c.fields;
    o->gen = gen;
    o->created_gen = created_gen;
    return o;
}

typedef struct loaded {
    xapi_obj *o;
    int64_t rowid;
} loaded;

static int loaded_newest_first(const void *a, const void *b) {
    const loaded *x = a, *y = b;

    if (x->o->gen != y->o->gen)
        return x->o->gen > y->o->gen ? -1 : 1;
    return x->rowid < y->rowid ? -1 : x->rowid > y->rowid;
}

static int load_all(xapi_store *s) {
    sqlite3_stmt *st = NULL;
    jreader jr = {0};
    loaded *objs = NULL;
    size_t n = 0, cap = 0;
    const xapi_class *last_cls = NULL;
    int rc = 0, r;

    pthread_once(&enum_indexes_once, build_enum_indexes);
    /* In table order, sorted here: ORDER BY gen would make SQLite sort whole rows. */
    if (sqlite3_prepare_v2(s->db, "SELECT ref, class, gen, created_gen, data, rowid FROM objects", -1, &st, NULL) !=
        SQLITE_OK)
        return -EIO;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *ref = (const char *)sqlite3_column_text(st, 0);
        const char *clsname = (const char *)sqlite3_column_text(st, 1);
        uint64_t gen = (uint64_t)sqlite3_column_int64(st, 2);
        const char *data = (const char *)sqlite3_column_text(st, 4);
        size_t len = (size_t)sqlite3_column_bytes(st, 4);
        xapi_obj *o;

        if (!ref || !clsname || !data) {
            log_error("store: a row of the objects table has NULLs");
            rc = -EBADMSG;
            goto out;
        }
        if (!last_cls || strcmp(last_cls->name, clsname) != 0)
            last_cls = xapi_class_by_name(clsname);
        if (!last_cls) {
            log_warning("store: %s has unknown class %s; ignored", ref, clsname);
            continue;
        }
        o = load_object(&jr, ref, last_cls, gen, (uint64_t)sqlite3_column_int64(st, 3), data, len, &rc);
        if (rc < 0)
            goto out;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            objs = xapi_realloc(objs, cap * sizeof *objs);
        }
        objs[n].o = o;
        objs[n].rowid = sqlite3_column_int64(st, 5);
        n++;
        if (gen > s->gen)
            s->gen = gen;
    }
    if (r != SQLITE_DONE)
        rc = -EIO;
    sqlite3_finalize(st);
    st = NULL;
    if (rc < 0)
        goto out;
    /* Highest generation first, so each one goes at the tail of the list. */
    if (n > 1)
        qsort(objs, n, sizeof *objs, loaded_newest_first);
    if (n >= s->nbuckets) { /* sized once rather than doubled all along */
        size_t size = s->nbuckets;
        while (size <= n)
            size *= 2;
        hash_resize(s, size);
    }
    for (size_t i = 0; i < n; i++) {
        index_add(s, objs[i].o);
        gen_push_tail(s, objs[i].o);
        objs[i].o = NULL;
    }

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
    if (r != SQLITE_DONE) {
        rc = -EIO;
        goto out;
    }
    if (s->tomb_count > 0) {
        uint64_t oldest = s->tombs[s->tomb_start].gen;
        s->tomb_horizon = oldest > 0 ? oldest - 1 : 0;
        /* Forget what was pruned from memory so the table stays bounded. */
        if (sqlite3_prepare_v2(s->db, "DELETE FROM tombstones WHERE gen < ?1", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, (sqlite3_int64)oldest);
            if (sqlite3_step(st) != SQLITE_DONE) /* a full disk, say: done at a later start */
                log_warning("store: cannot prune old tombstones: %s", sqlite3_errmsg(s->db));
        }
        /* Finalized before st is reused: an unfinalized statement keeps sqlite3_close from closing the store. */
        sqlite3_finalize(st);
        st = NULL;
    }
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'gen'", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        uint64_t g = (uint64_t)sqlite3_column_int64(st, 0);
        if (g > s->gen)
            s->gen = g;
    }
out:
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++)
        obj_free(objs[i].o);
    free(objs);
    xapi_buf_free(&jr.tmp);
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

#define DB_SCHEMA                                                                                               \
    "CREATE TABLE IF NOT EXISTS objects(ref TEXT PRIMARY KEY, class TEXT NOT NULL, gen INTEGER NOT NULL, "      \
    "created_gen INTEGER NOT NULL, data TEXT NOT NULL);"                                                        \
    "CREATE TABLE IF NOT EXISTS tombstones(ref TEXT PRIMARY KEY, class TEXT NOT NULL, gen INTEGER NOT NULL);"   \
    "CREATE INDEX IF NOT EXISTS tombstones_gen ON tombstones(gen);"                                            \
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);"                                            \
    "INSERT OR IGNORE INTO meta(key, value) VALUES('gen', 0)"

/* Only the daemon reads these: they hold live session refs. Fixes what an
 * older version (or a umask) left readable. */
static int make_private(const char *path, mode_t mode) {
    struct stat st;

    if (stat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0)
        return -errno;
    return 0;
}

static const char *const db_file_suffixes[] = {"", "-wal", "-shm"};

static int make_db_files_private(const char *db_path) {
    int rc = 0;

    for (size_t i = 0; i < sizeof db_file_suffixes / sizeof db_file_suffixes[0] && rc == 0; i++) {
        char *p = NULL;
        if (asprintf(&p, "%s%s", db_path, db_file_suffixes[i]) < 0)
            xapi_oom();
        rc = make_private(p, 0600);
        if (rc < 0)
            agent_log_errno(LOG_ERR, rc, "store: cannot make %s private (mode 0600)", p);
        free(p);
    }
    return rc;
}

/* A database with its WAL and shm: a stale WAL would be replayed into a new file of the same name. */
static void unlink_db_files(const char *db_path) {
    for (size_t i = 0; i < sizeof db_file_suffixes / sizeof db_file_suffixes[0]; i++) {
        char *p = NULL;
        if (asprintf(&p, "%s%s", db_path, db_file_suffixes[i]) < 0)
            xapi_oom();
        unlink(p);
        free(p);
    }
}

/* First start: the database is made under another name and renamed into
 * place once it is a complete, empty store, so that a database file that is
 * there is always one that was made; an empty file is never a first start. */
static int db_create(const char *state_dir, const char *path) {
    sqlite3 *db = NULL;
    char *tmp = NULL;
    int fd = -1, dfd = -1, rc;

    if (asprintf(&tmp, "%s.new", path) < 0)
        xapi_oom();
    unlink_db_files(tmp); /* left by a first start that did not finish */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = agent_log_errno(LOG_ERR, errno, "store: cannot create %s", tmp);
        goto out;
    }
    if (sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        log_error("store: cannot open %s: %s", tmp, db ? sqlite3_errmsg(db) : "out of memory");
        rc = -EIO;
        goto out;
    }
    if ((rc = db_exec(db, "PRAGMA journal_mode=WAL")) < 0 || (rc = db_exec(db, "PRAGMA synchronous=FULL")) < 0 ||
        (rc = db_exec(db, DB_SCHEMA)) < 0)
        goto out;
    if (sqlite3_close(db) != SQLITE_OK) { /* checkpoints the WAL into the file and removes it */
        log_error("store: cannot close %s: %s", tmp, sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    db = NULL;
    if (fsync(fd) < 0 || rename(tmp, path) < 0) {
        rc = agent_log_errno(LOG_ERR, errno, "store: cannot put %s in place", path);
        goto out;
    }
    dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        rc = agent_log_errno(LOG_ERR, errno, "store: cannot sync %s", state_dir);
        goto out;
    }
    log_info("store: created %s", path);
    rc = 0;
out:
    if (db)
        sqlite3_close(db);
    if (rc < 0)
        unlink_db_files(tmp);
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    free(tmp);
    return rc;
}

/* A database file that is there must be one: never taken for a first start
 * (everything would be forgotten). -EBADMSG if it is not. */
static int db_check_file(const char *path) {
    static const char magic[16] = "SQLite format 3";
    char head[16];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return agent_log_errno(LOG_ERR, errno, "store: cannot read %s", path);
    n = read(fd, head, sizeof head);
    if (n < 0)
        rc = agent_log_errno(LOG_ERR, errno, "store: cannot read %s", path);
    else if (n == 0) {
        log_error("store: %s is empty (0 bytes), not a database; refusing to start on it as if it were a first "
                  "start, which would forget every object. Restore it from a backup, or remove it (and any %s-wal) "
                  "to start afresh with an empty store",
                  path, path);
        rc = -EBADMSG;
    } else if ((size_t)n < sizeof head || memcmp(head, magic, sizeof head) != 0) {
        log_error("store: %s is not an SQLite database; restore it from a backup, or move it away to start afresh "
                  "with an empty store",
                  path);
        rc = -EBADMSG;
    }
    close(fd);
    return rc;
}

int xapi_store_open(const char *state_dir, xapi_store **ret) {
    xapi_store *s = NULL;
    char *path = NULL;
    pthread_rwlockattr_t rwa;
    pthread_condattr_t ca;
    struct stat dst;
    int rc;

    s = xapi_calloc(1, sizeof *s);
    s->lock_fd = -1;
    s->dir = xapi_strdup(state_dir);
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
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->qcond, &ca);
    pthread_condattr_destroy(&ca);

    if (mkdir(state_dir, 0700) < 0 && errno != EEXIST) {
        rc = agent_log_errno(LOG_ERR, errno, "store: cannot create %s", state_dir);
        goto fail;
    }
    if (stat(state_dir, &dst) < 0 || !S_ISDIR(dst.st_mode)) {
        rc = agent_log_errno(LOG_ERR, errno ? errno : ENOTDIR, "store: %s is not a directory", state_dir);
        goto fail;
    }
    if ((rc = make_private(state_dir, 0700)) < 0) {
        agent_log_errno(LOG_ERR, rc, "store: cannot make %s private (mode 0700)", state_dir);
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
    if (fchmod(s->lock_fd, 0600) < 0) {
        rc = agent_log_errno(LOG_ERR, errno, "store: cannot make %s private (mode 0600)", path);
        goto fail;
    }
    free(path);
    if (asprintf(&path, "%s/xenapid.db", state_dir) < 0)
        xapi_oom();
    if (access(path, F_OK) < 0 && errno == ENOENT) {
        log_notice("store: no database in %s: first start, creating an empty store", state_dir);
        if ((rc = db_create(state_dir, path)) < 0)
            goto fail;
    } else if ((rc = db_check_file(path)) < 0)
        goto fail;
    if ((rc = make_db_files_private(path)) < 0)
        goto fail;
    /* No SQLITE_OPEN_CREATE: the file is there (made above if it was not). */
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        log_error("store: cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
        rc = -EIO;
        goto fail;
    }
    /* WAL with a sync at every commit: an acknowledged write survives a crash
     * of the process and of the machine. */
    if ((rc = db_exec(s->db, "PRAGMA journal_mode=WAL")) < 0 || (rc = db_exec(s->db, "PRAGMA synchronous=FULL")) < 0 ||
        (rc = db_exec(s->db, DB_SCHEMA)) < 0 || (rc = prepare_statements(s)) < 0) {
        if (rc == -ENOSPC)
            log_error("store: cannot use %s: no space left in %s", path, state_dir);
        else
            log_error("store: cannot use %s; if it is damaged, restore it from a backup (or move it away to "
                      "start afresh with an empty store)",
                      path);
        goto fail;
    }
    rc = load_all(s);
    if (rc < 0) {
        log_error("store: cannot load %s; if it is damaged, restore it from a backup (or move it away to start "
                  "afresh with an empty store)",
                  path);
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
        pthread_mutex_unlock(&s->qlock);
        wake_gen_waiters(s);
        pthread_join(s->committer, NULL);
    }
    for (unsigned c = 0; c < XAPI_NCLASSES; c++) {
        xapi_obj *o, *next;
        for (o = s->classes[c].head; o; o = next) {
            next = o->class_next;
            obj_free(o);
        }
    }
    for (undo_log *l = s->pending, *next; l; l = next) { /* none once the committer has drained the queue */
        next = l->next;
        undo_release(l);
        free(l->e);
        free(l);
    }
    for (undo_log *l = s->undo_pool, *next; l; l = next) {
        next = l->next;
        free(l->e);
        free(l);
    }
    finalize_statements(s);
    /* Every statement is finalized by now: a failure here is a bug. */
    if (s->db && sqlite3_close(s->db) != SQLITE_OK)
        log_error("store: closing the database: %s", sqlite3_errmsg(s->db));
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->by_ref);
    free(s->by_uuid);
    free(s->tombs);
    free(s->dir);
    pthread_rwlock_destroy(&s->lock);
    pthread_mutex_destroy(&s->qlock);
    pthread_cond_destroy(&s->qcond);
    free(s);
}

int xapi_store_fail(xapi_store *s, int rc, xapi_value *err) {
    char msg[512];

    if (rc == -ENOSPC)
        return xapi_fail(err, "OUT_OF_SPACE", s->dir, NULL);
    snprintf(msg, sizeof msg, "the change could not be stored in %s/xenapid.db (I/O error; see the log)", s->dir);
    return xapi_fail(err, "INTERNAL_ERROR", msg, NULL);
}

int xapi_store_write_error(xapi_store *s) {
    return atomic_load(&s->write_error);
}
