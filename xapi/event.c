/* Events: event.from (the current API) and event.register/next/unregister
 * (legacy), both read from the store's change list: every object remembers
 * the generation of its last change, deletions leave tombstones, so a token is
 * just a generation number and a caller gets each changed object once, in its
 * latest state (coalescing), however many times it changed. Only durable
 * generations are handed out, so a token survives a crash and a restart. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "agent/config.h"
#include "xapi/error.h"
#include "xapi/event.h"
#include "xapi/session.h"

#define MAX_SUBSCRIPTIONS 256          /* items in one class list */
#define MAX_REGISTERED_SESSIONS 1024   /* legacy event.register users */
#define LEGACY_MAX_PENDING 10000       /* event.next: beyond this backlog, EVENTS_LOST */
#define MAX_TIMEOUT_SECONDS 86400.0

typedef struct subscription {
    bool all;
    bool classes[XAPI_NCLASSES];
    char (*refs)[XAPI_REF_LEN + 1]; /* CLASS/ref items */
    int *ref_classes;
    unsigned nrefs;
} subscription;

static void subscription_free(subscription *s) {
    free(s->refs);
    free(s->ref_classes);
    memset(s, 0, sizeof *s);
}

static int subscription_parse(xapi_call *c, const xapi_value *classes, subscription *ret) {
    subscription s = {0};

    if (classes->n > MAX_SUBSCRIPTIONS)
        return xapi_call_fail(c, "EVENT_SUBSCRIPTION_PARSE_FAILURE", "too many subscriptions");
    s.refs = xapi_calloc(classes->n + 1, sizeof *s.refs);
    s.ref_classes = xapi_calloc(classes->n + 1, sizeof *s.ref_classes);
    for (uint32_t i = 0; i < classes->n; i++) {
        const char *item = classes->items[i].s;
        const char *slash = strchr(item, '/');
        char name[64];
        const xapi_class *cls;

        if (strcmp(item, "*") == 0) {
            s.all = true;
            continue;
        }
        snprintf(name, sizeof name, "%.*s", slash ? (int)(slash - item) : (int)strlen(item), item);
        cls = xapi_class_by_name_ci(name);
        /* A class without events (session, secret) is a valid subscription that never fires, as in xapi. */
        if (!cls || (slash && strlen(slash + 1) > XAPI_REF_LEN)) {
            subscription_free(&s);
            return xapi_call_fail(c, "EVENT_SUBSCRIPTION_PARSE_FAILURE", item);
        }
        if (slash) {
            snprintf(s.refs[s.nrefs], sizeof s.refs[s.nrefs], "%s", slash + 1);
            s.ref_classes[s.nrefs++] = cls->id;
        } else
            s.classes[cls->id] = true;
    }
    *ret = s;
    return 0;
}

static bool subscribed(const subscription *s, const xapi_class *cls, const char *ref) {
    if (!cls->gen_events)
        return false;
    if (s->all || s->classes[cls->id])
        return true;
    for (unsigned i = 0; i < s->nrefs; i++)
        if (s->ref_classes[i] == cls->id && strcmp(s->refs[i], ref) == 0)
            return true;
    return false;
}

static void token_format(uint64_t gen, char out[64]) {
    snprintf(out, 64, "%020" PRIu64 ",%020d", gen, 0);
}

static int token_parse(const char *t, uint64_t *ret) {
    unsigned long long g;
    int n = 0;

    if (!*t) {
        *ret = UINT64_MAX; /* "from the beginning" */
        return 0;
    }
    if (sscanf(t, "%llu,%*u%n", &g, &n) == 1 && t[n] == 0) {
        *ret = g;
        return 0;
    }
    if (sscanf(t, "%llu%n", &g, &n) == 1 && t[n] == 0) {
        *ret = g;
        return 0;
    }
    return -EINVAL;
}

typedef struct emit_ctx {
    xapi_out *o;
    const subscription *sub;
    unsigned count;
    bool legacy;
} emit_ctx;

static void emit_event(emit_ctx *e, uint64_t gen, const xapi_class *cls, const char *ref, const char *op,
                       const xapi_obj *snapshot) {
    char id[32];
    xapi_out *o = e->o;

    snprintf(id, sizeof id, "%" PRIu64, gen);
    xapi_out_struct_begin(o);
    xapi_out_cmember(o, "id");
    if (e->legacy)
        xapi_out_int(o, (int64_t)gen);
    else
        xapi_out_cstring(o, id);
    xapi_out_cmember(o, "timestamp");
    if (e->legacy) {
        char ts[32];
        snprintf(ts, sizeof ts, "%" PRId64 ".", xapi_wall_seconds());
        xapi_out_cstring(o, ts);
    } else
        xapi_out_cstring(o, "0.0");
    xapi_out_cmember(o, "class");
    xapi_out_cstring(o, cls->lname);
    xapi_out_cmember(o, "operation");
    xapi_out_cstring(o, op);
    xapi_out_cmember(o, "ref");
    xapi_out_cstring(o, ref);
    if (snapshot) {
        xapi_out_cmember(o, "obj_uuid");
        xapi_out_cstring(o, snapshot->uuid);
        xapi_out_cmember(o, "snapshot");
        xapi_record_out(o, snapshot);
    }
    xapi_out_struct_end(o);
    e->count++;
}

static void emit_tombstone(const xapi_tombstone *t, void *ud) {
    emit_ctx *e = ud;
    if (subscribed(e->sub, t->cls, t->ref))
        emit_event(e, t->gen, t->cls, t->ref, "del", NULL);
}

/* Writes every change in (since, upto] the subscription covers; since
 * UINT64_MAX means everything now present, as "add". Store read lock held. */
static unsigned emit_changes(xapi_store *st, const subscription *sub, uint64_t since, uint64_t upto, xapi_out *o,
                             bool legacy) {
    emit_ctx e = {o, sub, 0, legacy};
    bool initial = since == UINT64_MAX;

    for (xapi_obj *obj = xapi_store_changed_first(st); obj; obj = xapi_store_changed_next(obj)) {
        if (obj->gen > upto)
            continue; /* not durable yet: next time */
        if (!initial && obj->gen <= since)
            break;
        if (!subscribed(sub, obj->cls, obj->ref))
            continue;
        emit_event(&e, obj->gen, obj->cls, obj->ref, initial || obj->created_gen > since ? "add" : "mod", obj);
    }
    if (!initial)
        xapi_store_tombstones_since(st, since, emit_tombstone, &e);
    return e.count;
}

static void emit_ref_counts(xapi_store *st, xapi_out *o) {
    xapi_out_struct_begin(o);
    for (unsigned i = 0; i < xapi_nclasses; i++)
        if (xapi_classes[i].gen_events) {
            xapi_out_cmember(o, xapi_classes[i].lname);
            xapi_out_int32(o, (int32_t)xapi_store_count(st, &xapi_classes[i]));
        }
    xapi_out_struct_end(o);
}

static int64_t deadline_after(double seconds) {
    if (!isfinite(seconds) || seconds < 0 || seconds > MAX_TIMEOUT_SECONDS)
        seconds = seconds < 0 ? 0 : MAX_TIMEOUT_SECONDS;
    return xapi_now_ns() + (int64_t)(seconds * 1e9);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    if (ms > 0)
        nanosleep(&ts, NULL);
}

/* Many clients wait on the same token for the same classes (every Xen
 * Orchestra tab, every poller): the batch for one (classes, since, upto,
 * format) is encoded once and copied to the others. */
#define BATCH_CACHE_SLOTS 8
#define BATCH_CACHE_MAX_BYTES (1 << 20)

static struct {
    pthread_rwlock_t lock;
    unsigned next;
    struct {
        char *key;
        char *bytes;
        size_t len;
    } slot[BATCH_CACHE_SLOTS];
} batch_cache = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static char *batch_key(const xapi_call *c, uint64_t since, uint64_t upto) {
    xapi_buf b = XAPI_BUF_INIT;

    xapi_buf_printf(&b, "%d|%" PRIu64 "|%" PRIu64, (int)c->out->fmt, since, upto);
    for (uint32_t i = 0; i < c->args[0].n; i++) {
        xapi_buf_putc(&b, '|');
        xapi_buf_puts(&b, c->args[0].items[i].s);
    }
    return xapi_buf_steal(&b, NULL);
}

static bool batch_cache_get(const char *key, xapi_out *o) {
    bool hit = false;

    pthread_rwlock_rdlock(&batch_cache.lock);
    for (unsigned i = 0; i < BATCH_CACHE_SLOTS && !hit; i++)
        if (batch_cache.slot[i].key && strcmp(batch_cache.slot[i].key, key) == 0) {
            xapi_buf_append(o->buf, batch_cache.slot[i].bytes, batch_cache.slot[i].len);
            o->nonempty[o->depth] = true;
            hit = true;
        }
    pthread_rwlock_unlock(&batch_cache.lock);
    return hit;
}

static void batch_cache_put(const char *key, const char *bytes, size_t len) {
    unsigned i;

    if (len > BATCH_CACHE_MAX_BYTES)
        return;
    pthread_rwlock_wrlock(&batch_cache.lock);
    i = batch_cache.next++ % BATCH_CACHE_SLOTS;
    free(batch_cache.slot[i].key);
    free(batch_cache.slot[i].bytes);
    batch_cache.slot[i].key = xapi_strdup(key);
    batch_cache.slot[i].bytes = xapi_malloc(len);
    memcpy(batch_cache.slot[i].bytes, bytes, len);
    batch_cache.slot[i].len = len;
    pthread_rwlock_unlock(&batch_cache.lock);
}

static int event_from(xapi_call *c) {
    xapi_store *st = c->srv->store;
    subscription sub = {0};
    uint64_t since, upto;
    int64_t deadline = deadline_after(c->args[2].f);
    int delay = c->srv->config->event_batch_delay_ms;
    char token[64];
    int rc;

    rc = subscription_parse(c, &c->args[0], &sub);
    if (rc < 0)
        return rc;
    if (token_parse(c->args[1].s, &since) < 0) {
        subscription_free(&sub);
        return xapi_call_fail(c, "EVENT_FROM_TOKEN_PARSE_FAILURE", c->args[1].s);
    }
    for (;;) {
        size_t mark = c->out->buf->len;
        xapi_out saved = *c->out;
        unsigned n;

        char *key = NULL;

        upto = xapi_store_durable_gen(st);
        if (since != UINT64_MAX && since > upto)
            since = upto; /* a token from a store that was reset: start from now */
        if (since != UINT64_MAX && since < upto) {
            key = batch_key(c, since, upto);
            if (batch_cache_get(key, c->out)) {
                free(key);
                break;
            }
        }
        xapi_store_rdlock(st);
        xapi_out_struct_begin(c->out);
        xapi_out_cmember(c->out, "events");
        xapi_out_array_begin(c->out);
        n = emit_changes(st, &sub, since, upto, c->out, false);
        xapi_out_array_end(c->out);
        if (n > 0 || since == UINT64_MAX || xapi_now_ns() >= deadline) {
            xapi_out_cmember(c->out, "valid_ref_counts");
            emit_ref_counts(st, c->out);
            xapi_store_rdunlock(st);
            token_format(upto, token);
            xapi_out_cmember(c->out, "token");
            xapi_out_cstring(c->out, token);
            xapi_out_struct_end(c->out);
            if (key && n > 0)
                batch_cache_put(key, c->out->buf->data + mark, c->out->buf->len - mark);
            free(key);
            break;
        }
        free(key);
        xapi_store_rdunlock(st);
        xapi_buf_truncate(c->out->buf, mark);
        *c->out = saved;
        /* Nothing yet: wait for a change, then let a burst settle so it comes as one batch. */
        xapi_store_wait_gen(st, upto, deadline, &c->srv->stopping);
        if (xapi_session_check(c->srv, c->session) < 0) {
            subscription_free(&sub);
            return xapi_call_fail(c, "SESSION_INVALID", c->session);
        }
        if (c->srv->stopping)
            deadline = 0;
        else
            sleep_ms(delay);
    }
    subscription_free(&sub);
    return 0;
}

static int event_get_current_id(xapi_call *c) {
    xapi_out_int(c->out, (int64_t)xapi_store_durable_gen(c->srv->store));
    return 0;
}

static int event_inject(xapi_call *c) {
    const xapi_class *cls = xapi_class_by_name_ci(c->args[0].s);
    xapi_store *st = c->srv->store;
    char token[64];
    xapi_obj *o;
    int rc;

    if (!cls || !cls->in_database)
        return xapi_call_fail(c, "HANDLE_INVALID", c->args[0].s, c->args[1].s);
    xapi_store_write_begin(st);
    o = xapi_store_get_class(st, cls, c->args[1].s);
    if (!o) {
        xapi_store_write_abort(st);
        return xapi_call_fail(c, "HANDLE_INVALID", cls->name, c->args[1].s);
    }
    xapi_obj_touch(st, o);
    rc = xapi_commit(c);
    if (rc < 0)
        return rc;
    /* A token just before the touch: the next event.from returns the object. */
    token_format(xapi_store_durable_gen(st) - 1, token);
    xapi_out_cstring(c->out, token);
    return 0;
}

/* ---- legacy register/next/unregister -------------------------------------- */

typedef struct registration {
    char session[XAPI_REF_LEN + 1];
    xapi_value classes; /* the union of registered items */
    uint64_t cursor;
} registration;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static registration regs[MAX_REGISTERED_SESSIONS];

static registration *reg_find(const char *session, bool create) {
    registration *free_slot = NULL;

    for (unsigned i = 0; i < MAX_REGISTERED_SESSIONS; i++) {
        if (strcmp(regs[i].session, session) == 0)
            return &regs[i];
        if (!regs[i].session[0] && !free_slot)
            free_slot = &regs[i];
    }
    if (!create || !free_slot)
        return NULL;
    snprintf(free_slot->session, sizeof free_slot->session, "%s", session);
    free_slot->classes = xapi_value_array();
    free_slot->cursor = 0;
    return free_slot;
}

static int event_register(xapi_call *c) {
    subscription check = {0};
    registration *r;
    int rc;

    rc = subscription_parse(c, &c->args[0], &check);
    if (rc < 0)
        return rc;
    subscription_free(&check);
    pthread_mutex_lock(&reg_lock);
    /* Sessions that ended free their slot first. */
    for (unsigned i = 0; i < MAX_REGISTERED_SESSIONS; i++)
        if (regs[i].session[0] && xapi_session_check(c->srv, regs[i].session) < 0) {
            xapi_value_free(&regs[i].classes);
            memset(&regs[i], 0, sizeof regs[i]);
        }
    r = reg_find(c->session, false);
    if (!r) {
        r = reg_find(c->session, true);
        if (r)
            r->cursor = xapi_store_durable_gen(c->srv->store);
    }
    if (!r) {
        pthread_mutex_unlock(&reg_lock);
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "too many sessions registered for events");
    }
    for (uint32_t i = 0; i < c->args[0].n; i++) {
        bool present = false;
        for (uint32_t k = 0; k < r->classes.n && !present; k++)
            present = strcasecmp(r->classes.items[k].s, c->args[0].items[i].s) == 0;
        if (!present && r->classes.n < MAX_SUBSCRIPTIONS)
            xapi_array_append(&r->classes, xapi_value_copy(&c->args[0].items[i]));
    }
    pthread_mutex_unlock(&reg_lock);
    xapi_out_void(c->out);
    return 0;
}

static int event_unregister(xapi_call *c) {
    registration *r;

    pthread_mutex_lock(&reg_lock);
    r = reg_find(c->session, false);
    if (r)
        for (uint32_t i = 0; i < c->args[0].n; i++)
            for (uint32_t k = 0; k < r->classes.n; k++)
                if (strcasecmp(r->classes.items[k].s, c->args[0].items[i].s) == 0) {
                    xapi_value_free(&r->classes.items[k]);
                    memmove(&r->classes.items[k], &r->classes.items[k + 1],
                            (r->classes.n - k - 1) * sizeof r->classes.items[0]);
                    r->classes.n--;
                    break;
                }
    pthread_mutex_unlock(&reg_lock);
    xapi_out_void(c->out);
    return 0;
}

static void tombstone_ignore(const xapi_tombstone *t, void *ud) {
}

static int event_next(xapi_call *c) {
    xapi_store *st = c->srv->store;
    subscription sub = {0};
    xapi_value classes = {0};
    uint64_t cursor, upto;
    registration *r;
    int rc;

    pthread_mutex_lock(&reg_lock);
    r = reg_find(c->session, false);
    if (r) {
        classes = xapi_value_copy(&r->classes);
        cursor = r->cursor;
    }
    pthread_mutex_unlock(&reg_lock);
    if (!r)
        return xapi_call_fail(c, "SESSION_NOT_REGISTERED", c->session);
    rc = subscription_parse(c, &classes, &sub);
    xapi_value_free(&classes);
    if (rc < 0)
        return rc;
    for (;;) {
        size_t mark = c->out->buf->len;
        xapi_out saved = *c->out;
        unsigned n;
        bool lost = false;

        upto = xapi_store_durable_gen(st);
        xapi_store_rdlock(st);
        /* A subscriber that fell so far behind that deletions were forgotten has lost events. */
        lost = !xapi_store_tombstones_since(st, cursor, tombstone_ignore, NULL);
        if (lost) {
            xapi_store_rdunlock(st);
            goto events_lost;
        }
        xapi_out_array_begin(c->out);
        n = emit_changes(st, &sub, cursor, upto, c->out, true);
        xapi_out_array_end(c->out);
        xapi_store_rdunlock(st);
        if (n > LEGACY_MAX_PENDING) {
            /* More than a subscriber's queue holds: as xapi, tell it to resynchronise. */
            xapi_buf_truncate(c->out->buf, mark);
            *c->out = saved;
            goto events_lost;
        }
        if (n > 0) {
            pthread_mutex_lock(&reg_lock);
            r = reg_find(c->session, false);
            if (r)
                r->cursor = upto;
            pthread_mutex_unlock(&reg_lock);
            break;
        }
        xapi_buf_truncate(c->out->buf, mark);
        *c->out = saved;
        cursor = upto;
        xapi_store_wait_gen(st, upto, xapi_now_ns() + 30LL * 1000000000LL, &c->srv->stopping);
        if (xapi_session_check(c->srv, c->session) < 0 || c->srv->stopping) {
            subscription_free(&sub);
            return xapi_call_fail(c, "SESSION_INVALID", c->session);
        }
        sleep_ms(c->srv->config->event_batch_delay_ms);
    }
    subscription_free(&sub);
    return 0;
events_lost:
    pthread_mutex_lock(&reg_lock);
    r = reg_find(c->session, false);
    if (r)
        r->cursor = upto;
    pthread_mutex_unlock(&reg_lock);
    subscription_free(&sub);
    return xapi_call_fail(c, "EVENTS_LOST");
}

const xapi_handler xapi_event_handlers[] = {
    {"event", "from", event_from},
    {"event", "get_current_id", event_get_current_id},
    {"event", "inject", event_inject},
    {"event", "register", event_register},
    {"event", "unregister", event_unregister},
    {"event", "next", event_next},
    {NULL, NULL, NULL},
};
