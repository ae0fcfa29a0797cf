/* Sessions. The session table lives in the store like any class (so sessions
 * survive a restart of the daemon), but last_active is refreshed in memory
 * only: it changes on every call and is worth no disk write. */
#include <errno.h>
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

#define SESSIONS_PER_ORIGINATOR 500
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

/* The oldest session by last_active, among those of one originator if given. */
static xapi_obj *oldest_session(xapi_store *st, const char *originator, unsigned *ret_count) {
    xapi_obj *oldest = NULL;
    unsigned n = 0;

    for (xapi_obj *o = xapi_store_first(st, session_class()); o; o = xapi_store_next(o)) {
        if (originator && strcmp(o->fields[XAPI_F_session_originator].s, originator) != 0)
            continue;
        n++;
        if (!oldest || o->fields[XAPI_F_session_last_active].i < oldest->fields[XAPI_F_session_last_active].i)
            oldest = o;
    }
    *ret_count = n;
    return oldest;
}

static void session_destroy(xapi_server *srv, xapi_obj *o) {
    log_debug("session %s ends", o->fields[XAPI_F_session_uuid].s);
    xapi_obj_destroy(srv->store, o);
}

/* Whether the password is right; the account's roles in *ret_mask, its subject identifier in
 * sid. Accounts from before roles (no roles field) keep the pool-admin rights every account had
 * then. Users the file does not know may be host users, through PAM if configured. */
static bool account_roles(xapi_call *c, const char *uname, const char *pwd, unsigned *ret_mask, char *sid,
                          size_t sid_size) {
    const agent_config *cfg = c->srv->config;
    char *roles = NULL;
    unsigned mask = 1u << XAPI_ROLE_POOL_ADMIN;
    int rc = xapi_accounts_authenticate(cfg->accounts_file, uname, pwd, &roles);
    bool ok = rc == 0;

    snprintf(sid, sid_size, "local:%s", uname);
    if (rc == -ENOENT && *cfg->pam_service && xapi_accounts_pam_authenticate(cfg->pam_service, uname, pwd) == 0) {
        snprintf(sid, sid_size, "pam:%s", uname);
        ok = true;
        /* A host user's subject, once made (at the first login, or by subject.create), keeps its roles. */
        if (xapi_rbac_subject_roles(c->srv, sid, &mask) < 0)
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

static int login_common(xapi_call *c, const char *uname, const char *pwd, const char *originator) {
    xapi_store *st = c->srv->store;
    const agent_config *cfg = c->srv->config;
    int64_t now = xapi_wall_seconds();
    xapi_obj *o, *old;
    unsigned count, roles = 0;
    char ref[XAPI_REF_LEN + 1], sid[256] = "";
    bool superuser = c->local_root || strcmp(uname, "root") == 0;
    int rc;

    if (!*originator && c->originator)
        originator = c->originator;
    if (!c->local_root && !account_roles(c, uname, pwd, &roles, sid, sizeof sid)) {
        /* Slow down password guessing; the connection thread sleeps, nobody else waits. */
        struct timespec ts = {cfg->auth_fail_delay_ms / 1000, (long)(cfg->auth_fail_delay_ms % 1000) * 1000000L};
        log_notice("session: authentication failed for user '%s'", uname);
        nanosleep(&ts, NULL);
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
    /* Limits: the oldest sessions make room, as xapi does. */
    if (*originator) {
        old = oldest_session(st, originator, &count);
        if (count >= SESSIONS_PER_ORIGINATOR && old)
            session_destroy(c->srv, old);
    }
    old = oldest_session(st, NULL, &count);
    if (count >= (unsigned)cfg->max_sessions && old)
        session_destroy(c->srv, old);

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
