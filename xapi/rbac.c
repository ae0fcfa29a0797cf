/* RBAC. xapi's roles are static: six roles and one permission per message,
 * served from memory (never stored), with xapi's well-known identities: a
 * permission's uuid is the MD5 of its wire name ("VM.start"), a role's the MD5
 * of its name, except pool-admin's fixed one (the default of subject.roles);
 * a ref is "OpaqueRef:" and the uuid. A role holds every permission whose
 * message needs that role or a lesser one. */
#include <ctype.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/config.h"
#include "agent/log.h"
#include "xapi/accounts.h"
#include "xapi/error.h"
#include "xapi/rbac.h"

#define POOL_ADMIN_UUID "0165f154-ba3e-034e-6b27-5d271af109ba"
#define PERMISSION_DESCRIPTION "A basic permission"

static const struct {
    const char *name;
    const char *description;
} ROLES[XAPI_NROLES] = {
    [XAPI_ROLE_READ_ONLY] = {"read-only", "The Read-Only role can log in with basic read-only access"},
    [XAPI_ROLE_VM_OPERATOR] = {"vm-operator", "The VM Operator role can use VMs and interact with VM consoles"},
    [XAPI_ROLE_VM_ADMIN] = {"vm-admin", "The VM Administrator role can manage VMs and templates"},
    [XAPI_ROLE_VM_POWER_ADMIN] = {"vm-power-admin",
                                  "The VM Power Administrator role has full access to VM and template management "
                                  "and can choose where to start VMs and use the dynamic memory control and VM "
                                  "snapshot features"},
    [XAPI_ROLE_POOL_OPERATOR] = {"pool-operator",
                                 "The Pool Operator role manages host- and pool-wide resources, including setting "
                                 "up storage, creating resource pools and managing patches, high availability (HA) "
                                 "and workload balancing (WLB)"},
    [XAPI_ROLE_POOL_ADMIN] = {"pool-admin",
                              "The Pool Administrator role has full access to all features and settings, including "
                              "accessing Dom0 and managing subjects, roles and external authentication"},
};

/* A role or a permission: xapi keeps both in the role class. */
typedef struct role_obj {
    char ref[XAPI_REF_LEN + 1];
    char uuid[XAPI_UUID_LEN + 1];
    char *name_label;       /* permissions: the lowercase wire name */
    const char *description;
    unsigned char role;     /* a role: its rank; a permission: the rank it needs */
    bool is_permission;
} role_obj;

static struct {
    role_obj roles[XAPI_NROLES];
    role_obj *perms;
    size_t nperms, cap;
} R;

const char *xapi_role_name(unsigned role) {
    return role < XAPI_NROLES ? ROLES[role].name : NULL;
}

int xapi_role_parse(const char *name) {
    for (unsigned i = 0; i < XAPI_NROLES; i++)
        if (strcasecmp(ROLES[i].name, name) == 0)
            return (int)i;
    return -1;
}

int xapi_roles_parse(const char *list, unsigned *ret_mask) {
    unsigned mask = 0;

    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ","), skip = n + (p[n] == ',');
        char name[32];
        int r;

        while (n > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
            skip--;
        }
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n > 0) {
            if (n >= sizeof name)
                return -EINVAL;
            memcpy(name, p, n);
            name[n] = '\0';
            r = xapi_role_parse(name);
            if (r < 0)
                return -EINVAL;
            mask |= 1u << r;
        }
        p += skip;
    }
    *ret_mask = mask;
    return 0;
}

int xapi_roles_highest(unsigned mask) {
    for (int r = XAPI_NROLES - 1; r >= 0; r--)
        if (mask & (1u << r))
            return r;
    return -1;
}

/* ---- the static objects ---------------------------------------------------- */

static int hash_uuid(const char *s, char ret[XAPI_UUID_LEN + 1]) {
    unsigned char md[16];

    /* MD5 names a role here as in xapi, not for security (GnuTLS: the HTTPS library already linked). */
    if (gnutls_hash_fast(GNUTLS_DIG_MD5, s, strlen(s), md) < 0)
        return -EIO;
    snprintf(ret, XAPI_UUID_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", md[0],
             md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10], md[11], md[12], md[13], md[14],
             md[15]);
    return 0;
}

static void set_identity(role_obj *o, const char *uuid) {
    snprintf(o->uuid, sizeof o->uuid, "%s", uuid);
    snprintf(o->ref, sizeof o->ref, "OpaqueRef:%s", uuid);
}

static int add_permission(void *ud, const char *name, unsigned role) {
    char uuid[XAPI_UUID_LEN + 1];
    role_obj *p;
    int rc;

    (void)ud;
    rc = hash_uuid(name, uuid);
    if (rc < 0)
        return rc;
    if (R.nperms == R.cap) {
        R.cap = R.cap ? R.cap * 2 : 1024;
        R.perms = xapi_realloc(R.perms, R.cap * sizeof *R.perms);
    }
    p = &R.perms[R.nperms++];
    memset(p, 0, sizeof *p);
    set_identity(p, uuid);
    p->name_label = xapi_strdup(name);
    for (char *c = p->name_label; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    p->description = PERMISSION_DESCRIPTION;
    p->role = (unsigned char)role;
    p->is_permission = true;
    return 0;
}

int xapi_rbac_init(void) {
    int rc;

    for (unsigned r = 0; r < XAPI_NROLES; r++) {
        role_obj *o = &R.roles[r];
        char uuid[XAPI_UUID_LEN + 1];

        if (r == XAPI_ROLE_POOL_ADMIN)
            snprintf(uuid, sizeof uuid, "%s", POOL_ADMIN_UUID);
        else if ((rc = hash_uuid(ROLES[r].name, uuid)) < 0)
            return rc;
        set_identity(o, uuid);
        o->name_label = (char *)ROLES[r].name;
        o->description = ROLES[r].description;
        o->role = (unsigned char)r;
    }
    rc = xapi_dispatch_permissions(add_permission, NULL);
    if (rc < 0)
        return rc;
    log_debug("rbac: %zu permissions", R.nperms);
    return 0;
}

void xapi_rbac_free(void) {
    for (size_t i = 0; i < R.nperms; i++)
        free(R.perms[i].name_label);
    free(R.perms);
    memset(&R, 0, sizeof R);
}

/* Roles first, then permissions: index i over both. */
static size_t nobjs(void) {
    return XAPI_NROLES + R.nperms;
}

static const role_obj *obj_at(size_t i) {
    return i < XAPI_NROLES ? &R.roles[XAPI_NROLES - 1 - i] : &R.perms[i - XAPI_NROLES];
}

static const role_obj *find_ref(const char *ref) {
    for (size_t i = 0; i < nobjs(); i++)
        if (strcmp(obj_at(i)->ref, ref) == 0)
            return obj_at(i);
    return NULL;
}

static int role_of_ref(const char *ref) {
    for (unsigned r = 0; r < XAPI_NROLES; r++)
        if (strcmp(R.roles[r].ref, ref) == 0)
            return (int)r;
    return -1;
}

/* The roles among a set of role refs, as a mask. */
static unsigned roles_mask(const xapi_value *roles) {
    unsigned mask = 0;

    for (uint32_t i = 0; i < roles->n; i++) {
        int r = role_of_ref(roles->items[i].s);
        if (r >= 0)
            mask |= 1u << r;
    }
    return mask;
}

/* Whether permission p is one of o's (a permission's only permission is itself). */
static bool holds(const role_obj *o, const role_obj *p) {
    return o->is_permission ? o == p : p->role <= o->role;
}

/* ---- the check ------------------------------------------------------------- */

/* The session's rank: the local superuser's, or the highest role of its subject; -1 for none. */
static int session_rank(xapi_server *srv, const char *session) {
    xapi_store *st = srv->store;
    xapi_obj *s, *subj;
    int rank = -1;

    xapi_store_rdlock(st);
    s = xapi_store_get_class(st, &xapi_classes[XAPI_C_session], session);
    if (s && s->fields[XAPI_F_session_is_local_superuser].b)
        rank = XAPI_ROLE_LOCAL_ROOT;
    else if (s && (subj = xapi_store_get_class(st, &xapi_classes[XAPI_C_subject],
                                               s->fields[XAPI_F_session_subject].s)))
        rank = xapi_roles_highest(roles_mask(&subj->fields[XAPI_F_subject_roles]));
    xapi_store_rdunlock(st);
    return rank;
}

int xapi_rbac_check(xapi_server *srv, const char *session, unsigned need, const char *permission, xapi_value *err) {
    if (need == XAPI_ROLE_READ_ONLY)
        return 0;
    return xapi_rbac_check_rank(session_rank(srv, session), need, permission, err);
}

int xapi_rbac_check_rank(int rank, unsigned need, const char *permission, xapi_value *err) {
    char msg[512];
    size_t len;

    if (rank >= (int)need)
        return 0;
    len = (size_t)snprintf(msg, sizeof msg, "No permission in user session. (Roles with this permission: ");
    for (int r = XAPI_NROLES - 1; r >= (int)need; r--)
        len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s", r == XAPI_NROLES - 1 ? "" : ", ",
                                ROLES[r].name);
    snprintf(msg + len, sizeof msg - len, ")");
    log_info("rbac: %s denied", permission);
    return xapi_fail(err, "RBAC_PERMISSION_DENIED", permission, msg, NULL);
}

/* ---- sessions and subjects ------------------------------------------------- */

static xapi_value role_refs(unsigned mask) {
    xapi_value v = xapi_value_array();

    for (unsigned r = 0; r < XAPI_NROLES; r++)
        if (mask & (1u << r))
            xapi_array_append(&v, xapi_value_string(R.roles[r].ref));
    return v;
}

/* As xapi's session: the names of the roles held and of every permission they give. */
static xapi_value permission_labels(unsigned mask) {
    xapi_value v = xapi_value_array();
    int top = xapi_roles_highest(mask);

    for (unsigned r = 0; r < XAPI_NROLES; r++)
        if (mask & (1u << r))
            xapi_array_append(&v, xapi_value_string(ROLES[r].name));
    for (size_t i = 0; i < R.nperms; i++)
        if ((int)R.perms[i].role <= top)
            xapi_array_append(&v, xapi_value_string(R.perms[i].name_label));
    return v;
}

static xapi_obj *subject_by_sid(xapi_store *st, const char *sid) {
    for (xapi_obj *o = xapi_store_first(st, &xapi_classes[XAPI_C_subject]); o; o = xapi_store_next(o))
        if (strcmp(o->fields[XAPI_F_subject_subject_identifier].s, sid) == 0)
            return o;
    return NULL;
}

/* The subject of sid, made (named uname) if missing. Write lock held. */
static xapi_obj *ensure_subject(xapi_store *st, const char *sid, const char *uname) {
    xapi_obj *subj = subject_by_sid(st, sid);
    xapi_value oc;

    if (subj)
        return subj;
    subj = xapi_obj_create(st, &xapi_classes[XAPI_C_subject]);
    xapi_obj_set_string(st, subj, XAPI_F_subject_subject_identifier, sid);
    oc = xapi_value_struct();
    xapi_struct_append(&oc, "subject-name", xapi_value_string(uname));
    xapi_struct_append(&oc, "subject-is-group", xapi_value_string("false"));
    xapi_struct_append(&oc, "subject-account-disabled", xapi_value_string("false"));
    xapi_obj_set(st, subj, XAPI_F_subject_other_config, oc);
    return subj;
}

/* Gives the subject the roles of mask, writing only a change. Write lock held. */
static void set_subject_roles(xapi_store *st, xapi_obj *subj, unsigned mask) {
    xapi_value v = role_refs(mask);

    if (xapi_value_equal(&v, &subj->fields[XAPI_F_subject_roles]))
        xapi_value_free(&v);
    else
        xapi_obj_set(st, subj, XAPI_F_subject_roles, v);
}

void xapi_rbac_session_setup(xapi_server *srv, xapi_obj *session, const char *uname, const char *sid, unsigned mask) {
    xapi_store *st = srv->store;
    xapi_obj *subj = ensure_subject(st, sid, uname);

    /* The account's roles are the truth: whoever edited them last, the file or subject.add_to_roles. */
    set_subject_roles(st, subj, mask);
    xapi_obj_set_bool(st, session, XAPI_F_session_is_local_superuser, false);
    xapi_obj_set_string(st, session, XAPI_F_session_subject, subj->ref);
    xapi_obj_set_string(st, session, XAPI_F_session_auth_user_sid, sid);
    xapi_obj_set(st, session, XAPI_F_session_rbac_permissions, permission_labels(mask));
}

typedef struct account_sync {
    xapi_store *st;
    char **seen; /* subject refs of the file's accounts */
    size_t n;
} account_sync;

/* One account of the file: its subject, with its roles (see session.c for the legacy rule). */
static int sync_account(void *ud, const char *user, const char *roles) {
    account_sync *a = ud;
    unsigned mask = 1u << XAPI_ROLE_POOL_ADMIN;
    char sid[256];
    xapi_obj *subj;

    if (strcmp(user, "root") == 0)
        return 0;
    if (roles && xapi_roles_parse(roles, &mask) < 0)
        mask = 0;
    snprintf(sid, sizeof sid, "local:%s", user);
    subj = ensure_subject(a->st, sid, user);
    set_subject_roles(a->st, subj, mask);
    a->seen = xapi_realloc(a->seen, (a->n + 1) * sizeof *a->seen);
    a->seen[a->n++] = xapi_strdup(subj->ref);
    return 0;
}

int xapi_rbac_sync_accounts(xapi_server *srv) {
    account_sync a = {srv->store, NULL, 0};
    xapi_obj *o, *next;
    int rc;

    xapi_store_write_begin(a.st);
    rc = xapi_accounts_list(srv->config->accounts_file, sync_account, &a);
    /* The subjects of accounts gone from the file go too. */
    for (o = xapi_store_first(a.st, &xapi_classes[XAPI_C_subject]); rc == 0 && o; o = next) {
        bool kept = strncmp(o->fields[XAPI_F_subject_subject_identifier].s, "local:", 6) != 0;

        next = xapi_store_next(o);
        for (size_t i = 0; i < a.n && !kept; i++)
            kept = strcmp(a.seen[i], o->ref) == 0;
        if (kept)
            continue;
        for (xapi_obj *s = xapi_store_first(a.st, &xapi_classes[XAPI_C_session]), *snext; s; s = snext) {
            snext = xapi_store_next(s);
            if (strcmp(s->fields[XAPI_F_session_subject].s, o->ref) == 0)
                xapi_obj_destroy(a.st, s);
        }
        xapi_obj_destroy(a.st, o);
    }
    for (size_t i = 0; i < a.n; i++)
        free(a.seen[i]);
    free(a.seen);
    if (rc < 0) {
        xapi_store_write_end(a.st);
        return rc;
    }
    return xapi_store_write_end_durable(a.st);
}

/* ---- the role class -------------------------------------------------------- */

static void out_refs(xapi_out *o, const role_obj *of) {
    xapi_out_array_begin(o);
    for (size_t i = 0; i < R.nperms; i++)
        if (!of->is_permission && holds(of, &R.perms[i]))
            xapi_out_cstring(o, R.perms[i].ref);
    xapi_out_array_end(o);
}

static void out_record(xapi_out *o, const role_obj *r) {
    xapi_out_struct_begin(o);
    xapi_out_cmember(o, "uuid");
    xapi_out_cstring(o, r->uuid);
    xapi_out_cmember(o, "name_label");
    xapi_out_cstring(o, r->name_label);
    xapi_out_cmember(o, "name_description");
    xapi_out_cstring(o, r->description);
    xapi_out_cmember(o, "subroles");
    out_refs(o, r);
    xapi_out_cmember(o, "is_internal");
    xapi_out_bool(o, r->is_permission);
    xapi_out_struct_end(o);
}

/* The object named by the first argument, or HANDLE_INVALID. */
static int self_arg(xapi_call *c, const role_obj **ret) {
    const role_obj *r = find_ref(c->args[0].s);

    if (!r)
        return xapi_call_fail(c, "HANDLE_INVALID", "role", c->args[0].s);
    *ret = r;
    return 0;
}

/* get_all_where: xapi answers its two client-used filters and otherwise everything. */
static bool where_match(const xapi_call *c, const role_obj *r) {
    if (c->nargs == 0)
        return true;
    if (strcmp(c->args[0].s, "subroles<>[]") == 0)
        return !r->is_permission;
    if (strcmp(c->args[0].s, "subroles=[]") == 0)
        return r->is_permission;
    return true;
}

static int role_get_all(xapi_call *c) {
    xapi_out_array_begin(c->out);
    for (size_t i = 0; i < nobjs(); i++)
        if (where_match(c, obj_at(i)))
            xapi_out_cstring(c->out, obj_at(i)->ref);
    xapi_out_array_end(c->out);
    return 0;
}

static int role_get_all_records(xapi_call *c) {
    xapi_out_struct_begin(c->out);
    for (size_t i = 0; i < nobjs(); i++)
        if (where_match(c, obj_at(i))) {
            xapi_out_cmember(c->out, obj_at(i)->ref);
            out_record(c->out, obj_at(i));
        }
    xapi_out_struct_end(c->out);
    return 0;
}

static int role_get_record(xapi_call *c) {
    const role_obj *r = NULL;
    int rc = self_arg(c, &r);

    if (rc == 0)
        out_record(c->out, r);
    return rc;
}

static int role_get_by_uuid(xapi_call *c) {
    for (size_t i = 0; i < nobjs(); i++)
        if (strcmp(obj_at(i)->uuid, c->args[0].s) == 0) {
            xapi_out_cstring(c->out, obj_at(i)->ref);
            return 0;
        }
    return xapi_call_fail(c, "UUID_INVALID", "role", c->args[0].s);
}

static const role_obj *find_label(const char *label) {
    for (size_t i = 0; i < nobjs(); i++)
        if (strcmp(obj_at(i)->name_label, label) == 0)
            return obj_at(i);
    return NULL;
}

static int role_get_by_name_label(xapi_call *c) {
    const role_obj *r = find_label(c->args[0].s);

    xapi_out_array_begin(c->out);
    if (r)
        xapi_out_cstring(c->out, r->ref);
    xapi_out_array_end(c->out);
    return 0;
}

#define ROLE_GETTER(fname, emit)                                                                                   \
    static int role_get_##fname(xapi_call *c) {                                                                    \
        const role_obj *r = NULL;                                                                                  \
        int rc = self_arg(c, &r);                                                                                  \
        if (rc == 0)                                                                                               \
            emit;                                                                                                  \
        return rc;                                                                                                 \
    }
ROLE_GETTER(uuid, xapi_out_cstring(c->out, r->uuid))
ROLE_GETTER(name_label, xapi_out_cstring(c->out, r->name_label))
ROLE_GETTER(name_description, xapi_out_cstring(c->out, r->description))
ROLE_GETTER(subroles, out_refs(c->out, r))
ROLE_GETTER(is_internal, xapi_out_bool(c->out, r->is_permission))

/* The permissions of a role (a permission's: itself), as refs or names. */
static int permissions_of(xapi_call *c, bool labels) {
    const role_obj *r = NULL;
    int rc = self_arg(c, &r);

    if (rc < 0)
        return rc;
    xapi_out_array_begin(c->out);
    for (size_t i = 0; i < R.nperms; i++)
        if (holds(r, &R.perms[i]))
            xapi_out_cstring(c->out, labels ? R.perms[i].name_label : R.perms[i].ref);
    xapi_out_array_end(c->out);
    return 0;
}

static int role_get_permissions(xapi_call *c) {
    return permissions_of(c, false);
}

static int role_get_permissions_name_label(xapi_call *c) {
    return permissions_of(c, true);
}

/* Every role (not the permission itself) that holds the permission; none for an unknown one. */
static void out_holders(xapi_out *o, const role_obj *p) {
    xapi_out_array_begin(o);
    for (int r = XAPI_NROLES - 1; p && p->is_permission && r >= 0; r--)
        if (holds(&R.roles[r], p))
            xapi_out_cstring(o, R.roles[r].ref);
    xapi_out_array_end(o);
}

static int role_get_by_permission(xapi_call *c) {
    out_holders(c->out, find_ref(c->args[0].s));
    return 0;
}

static int role_get_by_permission_name_label(xapi_call *c) {
    out_holders(c->out, find_label(c->args[0].s));
    return 0;
}

/* ---- subjects -------------------------------------------------------------- */

static int subject_get_permissions_name_label(xapi_call *c) {
    xapi_obj *o = NULL;
    unsigned mask = 0;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, &xapi_classes[XAPI_C_subject], c->args[0].s, &o);
    if (rc == 0) {
        xapi_value v;

        mask = roles_mask(&o->fields[XAPI_F_subject_roles]);
        v = permission_labels(mask);
        xapi_out_value(c->out, &v);
        xapi_value_free(&v);
    }
    xapi_store_rdunlock(c->srv->store);
    return rc;
}

int xapi_rbac_subject_roles(xapi_server *srv, const char *sid, unsigned *ret_mask) {
    xapi_obj *o;
    int rc = -ENOENT;

    xapi_store_rdlock(srv->store);
    o = subject_by_sid(srv->store, sid);
    if (o) {
        *ret_mask = roles_mask(&o->fields[XAPI_F_subject_roles]);
        rc = 0;
    }
    xapi_store_rdunlock(srv->store);
    return rc;
}

/* "vm-admin,read-only": what the accounts file keeps. */
static void roles_text(unsigned mask, char *buf, size_t size) {
    size_t n = 0;

    buf[0] = '\0';
    for (int r = XAPI_NROLES - 1; r >= 0; r--)
        if (mask & (1u << r))
            n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? "," : "", ROLES[r].name);
}

/* subject.add_to_roles / remove_from_roles. A local account's roles live in the accounts file
 * (what the next login reads): it is written first, then the subject. */
static int change_roles(xapi_call *c, bool add) {
    xapi_store *st = c->srv->store;
    const char *local = NULL;
    xapi_obj *o = NULL;
    char sid[256] = "", text[128];
    unsigned mask = 0;
    int r = role_of_ref(c->args[1].s), rc;

    xapi_store_rdlock(st);
    rc = xapi_lookup(c, &xapi_classes[XAPI_C_subject], c->args[0].s, &o);
    if (rc == 0) {
        snprintf(sid, sizeof sid, "%s", o->fields[XAPI_F_subject_subject_identifier].s);
        mask = roles_mask(&o->fields[XAPI_F_subject_roles]);
    }
    xapi_store_rdunlock(st);
    if (rc < 0)
        return rc;
    if (r < 0 && add)
        return xapi_call_fail(c, "ROLE_NOT_FOUND");
    if (add ? (r >= 0 && (mask & (1u << r))) : (r < 0 || !(mask & (1u << r))))
        return xapi_call_fail(c, add ? "ROLE_ALREADY_EXISTS" : "ROLE_NOT_FOUND");
    mask = add ? mask | (1u << r) : mask & ~(1u << r);
    if (strncmp(sid, "local:", 6) == 0)
        local = sid + 6;
    roles_text(mask, text, sizeof text);
    if (local && (rc = xapi_accounts_set_roles(c->srv->config->accounts_file, local, text)) < 0 && rc != -ENOENT)
        return xapi_call_fail(c, "INTERNAL_ERROR", "cannot write the accounts file");
    xapi_store_write_begin(st);
    rc = xapi_lookup(c, &xapi_classes[XAPI_C_subject], c->args[0].s, &o);
    if (rc == 0)
        xapi_obj_set(st, o, XAPI_F_subject_roles, role_refs(mask));
    log_notice("rbac: subject %s now has the roles '%s'", sid, text);
    return xapi_finish_void(c, rc);
}

static int subject_add_to_roles(xapi_call *c) {
    return change_roles(c, true);
}

static int subject_remove_from_roles(xapi_call *c) {
    return change_roles(c, false);
}

/* Destroys the sessions of a subject identifier (or of a subject ref), never the local
 * superuser's nor the caller's. Write lock held. */
static void logout_sessions(xapi_call *c, const char *sid, const char *subject) {
    xapi_store *st = c->srv->store;
    xapi_obj *o, *next;

    for (o = xapi_store_first(st, &xapi_classes[XAPI_C_session]); o; o = next) {
        next = xapi_store_next(o);
        if (o->fields[XAPI_F_session_is_local_superuser].b || strcmp(o->ref, c->session) == 0)
            continue;
        if ((sid && strcmp(o->fields[XAPI_F_session_auth_user_sid].s, sid) == 0) ||
            (subject && strcmp(o->fields[XAPI_F_session_subject].s, subject) == 0))
            xapi_obj_destroy(st, o);
    }
}

static int session_logout_subject_identifier(xapi_call *c) {
    xapi_store_write_begin(c->srv->store);
    logout_sessions(c, c->args[0].s, NULL);
    xapi_store_wake_all(c->srv->store);
    return xapi_finish_void(c, 0);
}

/* As xapi: one subject per identifier. */
static int subject_after_create(xapi_call *c, xapi_obj *o) {
    const char *sid = o->fields[XAPI_F_subject_subject_identifier].s;

    for (xapi_obj *p = xapi_store_first(c->srv->store, &xapi_classes[XAPI_C_subject]); p; p = xapi_store_next(p))
        if (p != o && strcmp(p->fields[XAPI_F_subject_subject_identifier].s, sid) == 0)
            return xapi_call_fail(c, "SUBJECT_ALREADY_EXISTS");
    return 0;
}

/* As xapi: a subject's sessions end with it. */
static int subject_before_destroy(xapi_call *c, xapi_obj *o) {
    logout_sessions(c, NULL, o->ref);
    xapi_store_wake_all(c->srv->store);
    return 0;
}

static const xapi_class_hooks subject_hooks = {
    .after_create = subject_after_create,
    .before_destroy = subject_before_destroy,
};

const xapi_handler xapi_rbac_handlers[] = {
    {"role", "get_all", role_get_all},
    {"role", "get_all_where", role_get_all},
    {"role", "get_all_records", role_get_all_records},
    {"role", "get_all_records_where", role_get_all_records},
    {"role", "get_record", role_get_record},
    {"role", "get_by_uuid", role_get_by_uuid},
    {"role", "get_by_name_label", role_get_by_name_label},
    {"role", "get_uuid", role_get_uuid},
    {"role", "get_name_label", role_get_name_label},
    {"role", "get_name_description", role_get_name_description},
    {"role", "get_subroles", role_get_subroles},
    {"role", "get_is_internal", role_get_is_internal},
    {"role", "get_permissions", role_get_permissions},
    {"role", "get_permissions_name_label", role_get_permissions_name_label},
    {"role", "get_by_permission", role_get_by_permission},
    {"role", "get_by_permission_name_label", role_get_by_permission_name_label},
    {"subject", "get_permissions_name_label", subject_get_permissions_name_label},
    {"subject", "add_to_roles", subject_add_to_roles},
    {"subject", "remove_from_roles", subject_remove_from_roles},
    {"session", "logout_subject_identifier", session_logout_subject_identifier},
    {NULL, NULL, NULL},
};

void xapi_rbac_register(void) {
    xapi_register_handlers(xapi_rbac_handlers);
    xapi_register_hooks(XAPI_C_subject, &subject_hooks);
}
