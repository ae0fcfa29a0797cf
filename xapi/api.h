/* The API core: the server context, the call context handlers receive, and
 * the dispatcher that turns a decoded request into a reply.
 *
 * A wire name resolves to an entry of the method table built at start from
 * the schema: generic accessors for every field of every class, the implicit
 * constructors and queries, and explicit messages with C handlers registered
 * by the modules (sessions, hosts, VMs, storage, network). Arguments are
 * counted and typed against the schema before any handler runs, so handlers
 * see only well-typed values. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "xapi/out.h"
#include "xapi/rpc.h"
#include "xapi/schema.h"
#include "xapi/store.h"
#include "xapi/value.h"

struct agent_config;
struct vmops_backend;

typedef struct xapi_server {
    xapi_store *store;
    const struct agent_config *config;
    struct vmops_backend *backend;
    char host_ref[XAPI_REF_LEN + 1]; /* this host */
    char pool_ref[XAPI_REF_LEN + 1];
    volatile bool stopping;
    /* internal state of the modules (sessions, tasks, events) */
    void *sessions;
    void *tasks;
    void *events;
} xapi_server;

typedef struct xapi_call {
    xapi_server *srv;
    const char *method;        /* wire name as called, without "Async." */
    const xapi_class *cls;
    const xapi_message *msg;   /* NULL for implicit messages */
    xapi_value *args;          /* typed arguments, session excluded */
    unsigned nargs;
    char session[XAPI_REF_LEN + 1]; /* the caller's session ("" for no_session messages) */
    bool local_root;           /* over the UNIX socket from root: logins need no password */
    const char *originator;    /* HTTP "originator" header, or NULL */
    const char *peer_address;  /* the client's IP address, "uid N" on the UNIX socket, or NULL (internal) */
    const char *task;          /* the task running this call (Async), or NULL */
    xapi_out *out;             /* where the result goes */
    xapi_value err;            /* set on failure: [CODE, params...] */
    void *create_state;        /* the generic constructor's: what a before_create hook left for after_create */
} xapi_call;

typedef int (*xapi_handler_fn)(xapi_call *c);

typedef struct xapi_handler {
    const char *cls;
    const char *msg;
    xapi_handler_fn fn;
} xapi_handler;

/* Per-class hooks for the generic constructor and destructor. */
typedef struct xapi_class_hooks {
    /* Before the generic constructor takes the write lock (none held): slow work the new record
     * needs (a VDI's data, on storage that may be slow to answer). It may choose the object's uuid
     * (uuid, "" for a generated one) and leave c->create_state for after_create; create_undo then
     * runs (no lock held) if the constructor fails after it, with what after_create left there. */
    int (*before_create)(xapi_call *c, const xapi_value *rec, char uuid[XAPI_UUID_LEN + 1]);
    void (*create_undo)(xapi_call *c);
    /* After the record's fields are set, before the transaction ends (write lock held). */
    int (*after_create)(xapi_call *c, xapi_obj *o);
    /* Before a generic destroy (write lock held): refuse, or destroy dependents. */
    int (*before_destroy)(xapi_call *c, xapi_obj *o);
    /* Before a generic setter changes a field (write lock held): refuse or adjust. */
    int (*before_set)(xapi_call *c, xapi_obj *o, int field, const xapi_value *v);
    /* After a generic setter changed a field (write lock held): derived state. */
    void (*after_set)(xapi_call *c, xapi_obj *o, int field);
} xapi_class_hooks;

/* Module registration (called before xapi_dispatch_init). */
void xapi_register_handlers(const xapi_handler *handlers); /* array ends with {NULL} */
void xapi_register_hooks(int class_id, const xapi_class_hooks *hooks);

int xapi_dispatch_init(xapi_server *srv);
void xapi_dispatch_free(void);
/* Calls fn with every RBAC permission (a method's wire name, or "<method>/key:<key>") and the
 * role it needs; stops at fn's first error. */
int xapi_dispatch_permissions(int (*fn)(void *ud, const char *name, unsigned role), void *ud);

/* Transport-level facts about the caller. */
typedef struct xapi_peer {
    bool local_root;
    const char *originator;
    const char *address; /* as xapi_call.peer_address */
} xapi_peer;

/* Runs one decoded request and writes the whole reply (envelope included) to
 * `reply` in the request's format. */
void xapi_dispatch(xapi_server *srv, const xapi_peer *peer, const xapi_request *req, xapi_buf *reply);

/* Runs a call whose name and arguments are already known (Async workers,
 * multicall). out receives just the value. Returns 0 or -XAPI_EFAIL with *err set. */
int xapi_invoke(xapi_server *srv, const xapi_peer *peer, const char *method, const xapi_value *params, xapi_out *out,
                xapi_value *err, const char *task);

/* ---- helpers for handlers ---- */

/* Resolves a ref argument to an object of class cls; HANDLE_INVALID otherwise.
 * Must hold the store lock. */
int xapi_lookup(xapi_call *c, const xapi_class *cls, const char *ref, xapi_obj **ret);
/* Writes a complete record. */
void xapi_record_out(xapi_out *o, const xapi_obj *obj);
/* Commits the current write transaction and waits until it is durable; if it
 * cannot be stored, it is taken back and the call fails (see xapi_store_fail). */
int xapi_commit(xapi_call *c);
/* Ends the current write transaction by the handler's outcome: on failure
 * (rc < 0) aborts it (every change taken back) and returns rc, otherwise
 * xapi_commit. */
int xapi_finish(xapi_call *c, int rc);
/* xapi_finish, then on success the call's answer: void, or the ref. */
int xapi_finish_void(xapi_call *c, int rc);
int xapi_finish_ref(xapi_call *c, int rc, const char *ref);
/* Fails the call: see xapi_fail. */
#define xapi_call_fail(c, ...) xapi_fail(&(c)->err, __VA_ARGS__, NULL)
