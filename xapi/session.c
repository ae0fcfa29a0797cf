/* Sessions. The session table lives in the store like any class (so sessions
 * survive a restart of the daemon), but last_active is refreshed in memory
 * only: it changes on every call and is worth no disk write. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/log.h"
#include "xapi/accounts.h"
#include "xapi/error.h"
#include "xapi/rbac.h"
#include "xapi/session.h"

#define ACTIVE_REFRESH_SECONDS 60

static const xapi_class *session_class(void) {
    return &xapi_classes[XAPI_C_session];
}

int xapi_session_check(xapi_server *srv, const char *ref) {
    xapi_store *st = srv->store;
    int64_t now = xapi_wall_seconds();
    xapi_obj *o;
    bool stale = false;

    xapi_store_rdlock(st);
    o = xapi_store_get_class(st, session_class(), ref);
    if (o)
        stale = now - o->fields[XAPI_F_session_last_active].i >= ACTIVE_REFRESH_SECONDS;
    xapi_store_rdunlock(st);
    if (!o)
        return -ENOENT;
    if (stale) {
        xapi_store_write_begin(st);
        o = xapi_store_get_class(st, session_class(), ref);
        if (o)
            xapi_obj_set_volatile(o, XAPI_F_session_last_active, xapi_value_datetime(now));
        xapi_store_write_end(st);
    }
    return 0;
}

/* ---- session groups, as xapi's session GC counts them ---------------------- */

/* root (or no user name) without an originator; root with one originator;
 * one other user name, whatever the originator. */
typedef enum group_kind { GROUP_ANONYMOUS, GROUP_ORIGINATOR, GROUP_USER } group_kind;

typedef struct group_key {
    group_kind kind;
    const char *name; /* the originator or the user name ("" for anonymous) */
} group_key;

static const char *const group_names[] = {"root without originator", "originator", "user"};

static group_key group_of(const char *user, const char *originator) {
    if (*user && strcmp(user, "root") != 0)
        return (group_key){GROUP_USER, user};
    return (group_key){*originator ? GROUP_ORIGINATOR : GROUP_ANONYMOUS, originator};
}

static group_key session_group(const xapi_obj *o) {
    return group_of(o->fields[XAPI_F_session_auth_user_name].s, o->fields[XAPI_F_session_originator].s);
}

static int group_cmp(group_key a, group_key b) {
    return a.kind != b.kind ? (int)a.kind - (int)b.kind : strcmp(a.name, b.name);
}

static unsigned group_limit(const agent_config *cfg, group_key g) {
    switch (g.kind) {
    case GROUP_ANONYMOUS:
        return (unsigned)cfg->max_sessions;
    case GROUP_ORIGINATOR:
        return (unsigned)cfg->max_sessions_per_originator;
    case GROUP_USER:
        break;
    }
    return (unsigned)cfg->max_sessions_per_user;
}

static bool less_recently_used(const xapi_obj *a, const xapi_obj *b) {
    return a->fields[XAPI_F_session_last_active].i < b->fields[XAPI_F_session_last_active].i;
}

/* The least recently used session of group g, and how many the group has. */
static xapi_obj *oldest_in_group(xapi_store *st, group_key g, unsigned *ret_count) {
    xapi_obj *oldest = NULL;
    unsigned n = 0;

    for (xapi_obj *o = xapi_store_first(st, session_class()); o; o = xapi_store_next(o)) {
        if (group_cmp(session_group(o), g) != 0)
            continue;
        n++;
        if (!oldest || less_recently_used(o, oldest))
            oldest = o;
    }
    *ret_count = n;
    return oldest;
}

/* A session and its place in the store's order (creation order), which
 * breaks ties of last_active (whole seconds): the older goes first. */
typedef struct ranked_session {
    xapi_obj *o;
    size_t rank;
} ranked_session;

static int by_group(const void *a, const void *b) {
    const ranked_session *x = a, *y = b;
    int c = group_cmp(session_group(x->o), session_group(y->o));

    return c ? c : x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* The least recently used session of the biggest group (own's among equals),
 * or NULL when there are fewer than limit sessions in all. */
static xapi_obj *total_victim(xapi_store *st, group_key own, unsigned limit) {
    ranked_session *all = NULL;
    xapi_obj *victim = NULL;
    size_t n = 0, cap = 0, best = 0;

    for (xapi_obj *o = xapi_store_first(st, session_class()); o; o = xapi_store_next(o)) {
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            all = xapi_realloc(all, cap * sizeof *all);
        }
        all[n] = (ranked_session){o, n};
        n++;
    }
    if (n < limit)
        goto out;
    qsort(all, n, sizeof *all, by_group);
    for (size_t i = 0, j; i < n; i = j) {
        xapi_obj *oldest = all[i].o;
        bool is_own = group_cmp(session_group(all[i].o), own) == 0;

        for (j = i + 1; j < n && group_cmp(session_group(all[i].o), session_group(all[j].o)) == 0; j++)
            if (less_recently_used(all[j].o, oldest))
                oldest = all[j].o;
        if (j - i > best || (j - i == best && is_own)) {
            best = j - i;
            victim = oldest;
        }
    }
out:
    free(all);
    return victim;
}

static void session_destroy(xapi_server *srv, xapi_obj *o) {
    log_debug("session %s ends", o->fields[XAPI_F_session_uuid].s);
    xapi_obj_destroy(srv->store, o);
}

/* Whether the password is right; the account's roles in *ret_mask, its subject identifier in
 * sid. Accounts from before roles (no roles field) keep the pool-admin rights every account had
 * then. Users the file does not know may be host users, through PAM if configured. */
static bool account_roles(xapi_server *srv, const char *uname, const char *pwd, unsigned *ret_mask, char *sid,
                          size_t sid_size) {
    const agent_config *cfg = srv->config;
    char *roles = NULL;
    unsigned mask = 1u << XAPI_ROLE_POOL_ADMIN;
    int rc = xapi_accounts_authenticate(cfg->accounts_file, uname, pwd, &roles);
    bool ok = rc == 0;

    snprintf(sid, sid_size, "local:%s", uname);
    if (rc == -ENOENT && *cfg->pam_service && xapi_accounts_pam_authenticate(cfg->pam_service, uname, pwd) == 0) {
        snprintf(sid, sid_size, "pam:%s", uname);
        ok = true;
        /* A host user's subject, once made (at the first login, or by subject.create), keeps its roles. */
        if (xapi_rbac_subject_roles(srv, sid, &mask) < 0)
            roles = xapi_strdup(cfg->pam_default_role);
    }
    if (ok && roles && xapi_roles_parse(roles, &mask) < 0) {
        log_warning("session: account '%s' has an unknown role in '%s'; it gets none", uname, roles);
        mask = 0;
    }
    free(roles);
    *ret_mask = mask;
    return ok;
}

/* ---- password checks, limited per client address and per user name --------- */

#define AUTH_BUSY_MESSAGE "Too many login attempts in progress from this address or for this user; try again later"

/* Attempts in progress (a failed one until its delay is over) and waiting, for one key. */
typedef struct auth_key {
    struct auth_key *next;
    unsigned running, waiting;
    char name[];
} auth_key;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    pthread_once_t once;
    auth_key *peers, *users; /* keys with attempts running or waiting: a few per connection at most */
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_ONCE_INIT, NULL, NULL};

static void gate_init(void) {
    pthread_condattr_t a;

    /* timed waits on the monotonic clock: a clock step must not stretch them */
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_destroy(&gate.freed);
    pthread_cond_init(&gate.freed, &a);
    pthread_condattr_destroy(&a);
}

static auth_key *key_get(auth_key **list, const char *name) {
    auth_key *k;

    for (k = *list; k; k = k->next)
        if (strcmp(k->name, name) == 0)
            return k;
    k = xapi_calloc(1, sizeof *k + strlen(name) + 1);
    strcpy(k->name, name);
    k->next = *list;
    *list = k;
    return k;
}

static void key_put(auth_key **list, auth_key *k) {
    if (k->running || k->waiting)
        return;
    for (auth_key **p = list; *p; p = &(*p)->next)
        if (*p == k) {
            *p = k->next;
            free(k);
            return;
        }
}

static bool gate_open(const agent_config *cfg, const auth_key *p, const auth_key *u) {
    return p->running < (unsigned)cfg->auth_parallel_per_peer && u->running < (unsigned)cfg->auth_parallel_per_user;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Takes a place among the running attempts of peer and user: at once, or
 * after a wait in the bounded queue. -EBUSY when neither. */
static int gate_enter(const agent_config *cfg, const char *peer, const char *user, auth_key **ret_p, auth_key **ret_u) {
    auth_key *p, *u;
    int rc = 0;

    pthread_once(&gate.once, gate_init);
    pthread_mutex_lock(&gate.lock);
    p = key_get(&gate.peers, peer);
    u = key_get(&gate.users, user);
    if (!gate_open(cfg, p, u)) {
        if (p->waiting >= (unsigned)cfg->auth_queue || u->waiting >= (unsigned)cfg->auth_queue)
            rc = -EBUSY;
        else {
            struct timespec deadline;
            int64_t ns;

            clock_gettime(CLOCK_MONOTONIC, &deadline);
            ns = deadline.tv_nsec + ((int64_t)cfg->auth_fail_delay_ms + 1000) * 1000000LL;
            deadline.tv_sec += ns / 1000000000LL;
            deadline.tv_nsec = ns % 1000000000LL;
            p->waiting++;
            u->waiting++;
            while (!gate_open(cfg, p, u) && rc == 0)
                if (pthread_cond_timedwait(&gate.freed, &gate.lock, &deadline) == ETIMEDOUT && !gate_open(cfg, p, u))
                    rc = -EBUSY;
            p->waiting--;
            u->waiting--;
        }
    }
    if (rc == 0) {
        p->running++;
        u->running++;
        *ret_p = p;
        *ret_u = u;
    } else {
        key_put(&gate.peers, p);
        key_put(&gate.users, u);
    }
    pthread_mutex_unlock(&gate.lock);
    return rc;
}

static void gate_leave(auth_key *p, auth_key *u) {
    pthread_mutex_lock(&gate.lock);
    p->running--;
    u->running--;
    key_put(&gate.peers, p);
    key_put(&gate.users, u);
    pthread_cond_broadcast(&gate.freed);
    pthread_mutex_unlock(&gate.lock);
}

int xapi_session_authenticate(xapi_server *srv, const char *peer, const char *user, const char *password,
                              unsigned *ret_roles, char *ret_sid, size_t sid_size) {
    const agent_config *cfg = srv->config;
    auth_key *p = NULL, *u = NULL;
    unsigned roles = 0;
    char sid[256];
    int rc;

    if (!peer)
        peer = "";
    rc = gate_enter(cfg, peer, user, &p, &u);
    if (rc < 0) {
        /* Unchecked, but answered no sooner than a check would be: waiting guessers cost nothing. */
        log_info("auth: too many login attempts in progress from %s or for user '%s': refused unchecked",
                   *peer ? peer : "inside", user);
        sleep_ms(cfg->auth_fail_delay_ms);
        return rc;
    }
    if (account_roles(srv, user, password, &roles, sid, sizeof sid)) {
        *ret_roles = roles;
        snprintf(ret_sid, sid_size, "%s", sid);
        rc = 0;
    }
    else {
        /* The delay keeps this attempt's place: the next guess from here waits for it. */
        log_notice("auth: authentication failed for user '%s' from %s", user, *peer ? peer : "inside");
        sleep_ms(cfg->auth_fail_delay_ms);
        rc = -EACCES;
    }
    gate_leave(p, u);
    return rc;
}

/* Makes room for one more session of group g (write lock held): the oldest
 * sessions of g itself, then, past the host-wide last resort, of the biggest group. */
static void make_room(xapi_server *srv, group_key g) {
    xapi_store *st = srv->store;
    const agent_config *cfg = srv->config;
    unsigned limit = group_limit(cfg, g), count;
    xapi_obj *old;

    while ((old = oldest_in_group(st, g, &count)) && count >= limit) {
        log_debug("session: %s%s%s has %u sessions: its least recently used one ends", group_names[g.kind],
                   *g.name ? " " : "", g.name, count);
        session_destroy(srv, old);
    }
    while ((old = total_victim(st, g, (unsigned)cfg->max_sessions_total))) {
        log_warning("session: %d sessions on the host: one of the biggest group ('%s') ends",
                    cfg->max_sessions_total, session_group(old).name);
        session_destroy(srv, old);
    }
}

static int login_common(xapi_call *c, const char *uname, const char *pwd, const char *originator) {
    xapi_store *st = c->srv->store;
    int64_t now = xapi_wall_seconds();
    xapi_obj *o;
    unsigned roles = 0;
    char ref[XAPI_REF_LEN + 1], sid[256] = "";
    bool superuser = c->local_root || strcmp(uname, "root") == 0;
    int rc;

    if (!*originator && c->originator)
        originator = c->originator;
    if (!c->local_root) {
        rc = xapi_session_authenticate(c->srv, c->peer_address, uname, pwd, &roles, sid, sizeof sid);
        if (rc == -EBUSY)
            return xapi_call_fail(c, "SESSION_AUTHENTICATION_FAILED", uname, AUTH_BUSY_MESSAGE);
        if (rc < 0)
            return xapi_call_fail(c, "SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure");
    }
    if (!superuser && !roles) {
        char msg[512];

        /* As xapi: [uname, "Subject NAME (identifier SID) has no roles in this pool"]. */
        snprintf(msg, sizeof msg, "Subject %s (identifier %s) has no roles in this pool", uname, sid);
        log_notice("session: %s", msg);
        return xapi_call_fail(c, "RBAC_PERMISSION_DENIED", uname, msg);
    }

    xapi_store_write_begin(st);
    make_room(c->srv, group_of(uname, originator));
    o = xapi_obj_create(st, session_class());
    xapi_obj_set_string(st, o, XAPI_F_session_this_host, c->srv->host_ref);
    xapi_obj_set(st, o, XAPI_F_session_last_active, xapi_value_datetime(now));
    xapi_obj_set(st, o, XAPI_F_session_validation_time, xapi_value_datetime(now));
    xapi_obj_set_bool(st, o, XAPI_F_session_is_local_superuser, superuser);
    xapi_obj_set_string(st, o, XAPI_F_session_auth_user_name, uname);
    xapi_obj_set_string(st, o, XAPI_F_session_originator, originator);
    if (!superuser)
        xapi_rbac_session_setup(c->srv, o, uname, sid, roles);
    memcpy(ref, o->ref, sizeof ref);
    rc = xapi_commit(c);
    if (rc < 0)
        return rc;
    log_info("session: '%s' logged in%s%s", uname, *originator ? " from " : "", originator);
    xapi_out_cstring(c->out, ref);
    return 0;
}

static int logout(xapi_call *c) {
    xapi_store *st = c->srv->store;
    xapi_obj *o;
    int rc;

    xapi_store_write_begin(st);
    o = xapi_store_get_class(st, session_class(), c->session);
    if (o)
        session_destroy(c->srv, o);
    rc = xapi_commit(c);
    /* Blocked event waits on this session must notice. */
    xapi_store_wake_all(st);
    if (rc == 0)
        xapi_out_void(c->out);
    return rc;
}

/* Answers a string field of the session named by the first argument. */
static int out_session_string(xapi_call *c, int field) {
    xapi_obj *o;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, session_class(), c->args[0].s, &o);
    if (rc == 0)
        xapi_out_cstring(c->out, o->fields[field].s);
    xapi_store_rdunlock(c->srv->store);
    return rc;
}

static int get_this_host(xapi_call *c) {
    return out_session_string(c, XAPI_F_session_this_host);
}

static int get_this_user(xapi_call *c) {
    return out_session_string(c, XAPI_F_session_this_user);
}

static int change_password(xapi_call *c) {
    xapi_obj *o;
    char *user = NULL;
    int rc;

    xapi_store_rdlock(c->srv->store);
    o = xapi_store_get_class(c->srv->store, session_class(), c->session);
    if (o)
        user = xapi_strdup(o->fields[XAPI_F_session_auth_user_name].s);
    xapi_store_rdunlock(c->srv->store);
    if (!user)
        return xapi_call_fail(c, "SESSION_INVALID", c->session);
    if (!xapi_accounts_verify(c->srv->config->accounts_file, user, c->args[0].s)) {
        free(user);
        return xapi_call_fail(c, "SESSION_AUTHENTICATION_FAILED", "", "Old password does not match");
    }
    rc = xapi_accounts_set(c->srv->config->accounts_file, user, c->args[1].s);
    free(user);
    if (rc < 0)
        return xapi_call_fail(c, "INTERNAL_ERROR", "cannot write the accounts file");
    xapi_out_void(c->out);
    return 0;
}

/* The identifiers of the users of every session but the local superuser's, each once. */
static int get_all_subject_identifiers(xapi_call *c) {
    xapi_store *st = c->srv->store;

    xapi_out_array_begin(c->out);
    xapi_store_rdlock(st);
    for (xapi_obj *o = xapi_store_first(st, session_class()); o; o = xapi_store_next(o)) {
        const char *sid = o->fields[XAPI_F_session_auth_user_sid].s;
        bool seen = false;

        if (o->fields[XAPI_F_session_is_local_superuser].b || !*sid)
            continue;
        for (xapi_obj *p = xapi_store_first(st, session_class()); p != o && !seen; p = xapi_store_next(p))
            seen = !p->fields[XAPI_F_session_is_local_superuser].b &&
                   strcmp(p->fields[XAPI_F_session_auth_user_sid].s, sid) == 0;
        if (!seen)
            xapi_out_cstring(c->out, sid);
    }
    xapi_store_rdunlock(st);
    xapi_out_array_end(c->out);
    return 0;
}

/* last_active is refreshed in memory only: after a restart a session counts
 * as active from the start of this run at the latest. */
static int64_t run_started;

void xapi_sessions_expire(xapi_server *srv) {
    xapi_store *st = srv->store;
    int64_t now = xapi_wall_seconds(), cutoff = now - srv->config->session_idle_timeout;
    xapi_obj *o, *next;

    if (!run_started)
        run_started = now;
    if (run_started > cutoff)
        return;
    xapi_store_write_begin(st);
    for (o = xapi_store_first(st, session_class()); o; o = next) {
        next = xapi_store_next(o);
        if (o->fields[XAPI_F_session_last_active].i < cutoff)
            session_destroy(srv, o);
    }
    xapi_store_write_end_durable(st);
}

static int login(xapi_call *c) {
    return login_common(c, c->args[0].s, c->args[1].s, c->args[3].s);
}

static int local_login(xapi_call *c) {
    return login_common(c, c->args[0].s, c->args[1].s, "");
}

const xapi_handler xapi_session_handlers[] = {
    {"session", "login_with_password", login},
    {"session", "slave_local_login_with_password", local_login},
    {"session", "logout", logout},
    {"session", "local_logout", logout},
    {"session", "get_this_host", get_this_host},
    {"session", "get_this_user", get_this_user},
    {"session", "change_password", change_password},
    {"session", "get_all_subject_identifiers", get_all_subject_identifiers},
    {NULL, NULL, NULL},
};
