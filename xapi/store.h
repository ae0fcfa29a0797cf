/* The object store: every XenAPI object in memory for fast reads, every change
 * made durable in SQLite (WAL) before the call that made it is answered.
 *
 * Concurrency: one reader/writer lock over the whole object graph. Readers
 * (getters, get_all_records, event scans) share it; a writer holds it only
 * while changing memory and serializing the changed objects. The SQLite work
 * happens on a committer thread that takes whatever writes are queued and
 * commits them in one transaction (group commit), so many concurrent writers
 * share one fsync. A writer waits for its sequence number to be durable
 * (xapi_store_wait_durable) before replying.
 *
 * Events: every write transaction gets the next generation number; each object
 * remembers the generation of its last change and of its creation, and a
 * deletion leaves a tombstone. Only durable generations are visible to event
 * readers, so a token handed to a client never refers to a change that a crash
 * could undo. Generations, tombstones and refs are persisted: tokens keep their
 * meaning across restarts. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "xapi/schema.h"
#include "xapi/value.h"

#define XAPI_REF_LEN 46 /* "OpaqueRef:" + 36 */
#define XAPI_UUID_LEN 36
#define XAPI_NULL_REF "OpaqueRef:NULL"

typedef struct xapi_obj xapi_obj;
struct xapi_obj {
    char ref[XAPI_REF_LEN + 1];
    char uuid[XAPI_UUID_LEN + 1];
    const xapi_class *cls;
    uint64_t gen;         /* generation of the last change */
    uint64_t created_gen; /* generation that created it */
    xapi_value *fields;   /* cls->nfields values, typed per the schema */
    bool deleted;         /* destroyed in the current write transaction */
    bool dirty;           /* changed in the current write transaction */
    bool persist_dirty;   /* has stored fields changed (not only derived ones) */
    /* private to the store */
    xapi_obj *next_by_ref, *next_by_uuid;
    xapi_obj *class_prev, *class_next;
    xapi_obj *gen_prev, *gen_next;
    xapi_obj *dirty_next;
};

typedef struct xapi_tombstone {
    char ref[XAPI_REF_LEN + 1];
    const xapi_class *cls;
    uint64_t gen;
} xapi_tombstone;

typedef struct xapi_store xapi_store;

/* Opens (creating if needed) <state_dir>/xenapid.db, taking an exclusive lock
 * on <state_dir>/xenapid.lock: a second daemon on the same store gets -EBUSY.
 * Loads every object. */
int xapi_store_open(const char *state_dir, xapi_store **ret);
void xapi_store_close(xapi_store *s);

void xapi_store_rdlock(xapi_store *s);
void xapi_store_rdunlock(xapi_store *s);

/* Write transactions: begin takes the write lock; end assigns the generation,
 * queues the changed objects for the committer, releases the lock and returns
 * the sequence number of the write (0 when nothing changed); abort takes
 * back every change made since begin (field values, created objects,
 * destroyed objects, back-reference sets) and releases the lock: no event,
 * no generation, nothing stored. A handler that fails aborts.
 *
 * Every change is logged in the transaction's undo log (the old value moved
 * there, not copied) until the write is durable: if a commit fails (disk
 * full, I/O error), every write not yet durable fails with it and is taken
 * back, so memory is always what the database holds. */
void xapi_store_write_begin(xapi_store *s);
uint64_t xapi_store_write_end(xapi_store *s);
void xapi_store_write_abort(xapi_store *s);
/* write_end, then waits until the write is durable; the calling thread
 * commits it itself when nobody else is committing (group commit). 0, or
 * -ENOSPC (the state directory's file system is full) or -EIO (any other
 * storage failure): the write was taken back. */
int xapi_store_write_end_durable(xapi_store *s);
/* The XenAPI error for a failed commit (rc from write_end_durable): sets
 * *err, returns -XAPI_EFAIL. -ENOSPC is xapi's OUT_OF_SPACE [location] with
 * the state directory (the code xapi gives when a host directory is full);
 * anything else is INTERNAL_ERROR [message]: a storage failure on the host,
 * which no client can cause. */
int xapi_store_fail(xapi_store *s, int rc, xapi_value *err);
/* 0, or the error of the last commit if it failed (writes are failing). */
int xapi_store_write_error(xapi_store *s);

/* Reads (hold at least the read lock; returned pointers live until unlock). */
xapi_obj *xapi_store_get(xapi_store *s, const char *ref);
xapi_obj *xapi_store_get_class(xapi_store *s, const xapi_class *cls, const char *ref);
xapi_obj *xapi_store_get_by_uuid(xapi_store *s, const xapi_class *cls, const char *uuid);
xapi_obj *xapi_store_first(xapi_store *s, const xapi_class *cls);
xapi_obj *xapi_store_next(xapi_obj *o);
unsigned xapi_store_count(xapi_store *s, const xapi_class *cls);

/* Writes (hold the write lock). New objects get a fresh ref and uuid, every
 * field its schema default. Setters take ownership of the value; setting a
 * ref field that has a back-reference set updates both sides. */
xapi_obj *xapi_obj_create(xapi_store *s, const xapi_class *cls);
/* The same with a given ref and uuid (bootstrap objects, tests): NULL if taken. */
xapi_obj *xapi_obj_create_with(xapi_store *s, const xapi_class *cls, const char *ref, const char *uuid);
void xapi_obj_set(xapi_store *s, xapi_obj *o, int field, xapi_value v);
void xapi_obj_set_string(xapi_store *s, xapi_obj *o, int field, const char *str);
void xapi_obj_set_int(xapi_store *s, xapi_obj *o, int field, int64_t i);
void xapi_obj_set_bool(xapi_store *s, xapi_obj *o, int field, bool b);
/* Marks the object changed without touching a field (event.inject). */
void xapi_obj_touch(xapi_store *s, xapi_obj *o);
/* Removes the object; its ref fields are cleared from their back-reference sets. */
void xapi_obj_destroy(xapi_store *s, xapi_obj *o);
/* Changes a field in memory only: no event, not stored (session last_active). */
void xapi_obj_set_volatile(xapi_obj *o, int field, xapi_value v);

/* Events. Generation numbers only ever grow. */
uint64_t xapi_store_durable_gen(xapi_store *s);
/* Objects changed after `since`, newest first (hold the read lock). */
xapi_obj *xapi_store_changed_first(xapi_store *s);
xapi_obj *xapi_store_changed_next(xapi_obj *o);
/* Tombstones newer than since: calls fn for each (hold the read lock). Returns
 * false if since is older than the oldest tombstone kept (deletions may have
 * been forgotten). */
bool xapi_store_tombstones_since(xapi_store *s, uint64_t since,
                                 void (*fn)(const xapi_tombstone *t, void *ud), void *ud);
/* Waits until the durable generation passes `since`, the deadline (CLOCK_MONOTONIC
 * ns) passes, or *cancel becomes true; returns the durable generation. */
uint64_t xapi_store_wait_gen(xapi_store *s, uint64_t since, int64_t deadline_ns, const volatile bool *cancel);
/* Wakes every waiter (used when sessions die so their waits can end). */
void xapi_store_wake_all(xapi_store *s);

/* Helpers */
void xapi_uuid_generate(char out[XAPI_UUID_LEN + 1]);
void xapi_ref_generate(char out[XAPI_REF_LEN + 1]);
int64_t xapi_now_ns(void);       /* CLOCK_MONOTONIC */
int64_t xapi_wall_seconds(void); /* CLOCK_REALTIME */
