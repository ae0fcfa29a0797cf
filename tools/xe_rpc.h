/* xe's connection to the daemon: XML-RPC calls over libcurl (the local UNIX socket, plain HTTP
 * or HTTPS). xmlrpc-c only encodes calls and decodes replies: its curl transport (1.33 on
 * Debian 12) has no UNIX socket option and no hook to set one, so the transport is libcurl's
 * easy interface directly, one handle kept alive for every call of the command. Replies are
 * decoded by xe_value.c (xmlrpc-c's decoder is too slow for large lists). */
#pragma once

#include <stdbool.h>
#include <xmlrpc-c/base.h>

#include "tools/xe_value.h"

typedef struct xe_target {
    const char *unix_socket; /* non-NULL: connect there (the host part of the URL is ignored) */
    const char *server;      /* host name or address for TCP */
    int port;
    bool tls;
    const char *cafile;      /* TLS: verify the server against this bundle; NULL: no verification, as xe */
} xe_target;

typedef struct xe_conn xe_conn;

enum {
    XE_RPC_OK = 0,
    XE_RPC_FAILURE = 1,   /* XenAPI failure: xe_conn_error() holds [CODE, params...] */
    XE_RPC_TRANSPORT = 2, /* could not talk to the server: xe_conn_message() says why */
};

int xe_conn_open(const xe_target *t, xe_conn **ret_conn);
void xe_conn_close(xe_conn *c);
/* Probes the connection (the UNIX socket can be absent): 0 or XE_RPC_TRANSPORT. */
int xe_conn_login(xe_conn *c, const char *user, const char *password);
void xe_conn_logout(xe_conn *c);

/* Calls method with the session prepended to params (an array, consumed: NULL = no params).
 * On XE_RPC_OK *ret_value is the Value, valid until xe_conn_close. */
int xe_call(xe_conn *c, const char *method, xmlrpc_value *params, const xv **ret_value);
/* Like xe_call with a format for xmlrpc_build_value of the params after the session, e.g. "(s)". */
int xe_callf(xe_conn *c, const xv **ret_value, const char *method, const char *format, ...);

const xv *xe_conn_error(xe_conn *c);     /* the last ErrorDescription array */
const char *xe_conn_message(xe_conn *c); /* the last transport error */
xmlrpc_env *xe_env(xe_conn *c);          /* for building values; a fault there is a bug (abort) */
void xe_check_env(xmlrpc_env *env);
