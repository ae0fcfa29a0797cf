/* The HTTP front: XML-RPC on POST / and /RPC2 (and legacy /json), JSON-RPC on
 * POST /jsonrpc, CORS preflight, on TCP and on a local UNIX socket whose root
 * callers are pre-authenticated. One thread per connection: calls may block
 * (event.from, VM operations) without holding up anybody else. */
#pragma once

#include "xapi/api.h"

typedef struct xapi_http xapi_http;

/* Handlers for plain GETs beside the RPC endpoints (e.g. /console). arg(ctx,
 * name) reads a query argument (NULL if absent); the handler sets the body
 * (malloc'd), its length and content type, and returns the HTTP status. */
typedef const char *(*xapi_http_arg_fn)(void *ctx, const char *name);
typedef unsigned (*xapi_http_get_fn)(xapi_server *srv, xapi_http_arg_fn arg, void *ctx, char **ret_body,
                                     size_t *ret_len, const char **ret_type);
/* Registers fn for GET path (before xapi_http_start). */
void xapi_http_register_get(const char *path, xapi_http_get_fn fn);

int xapi_http_start(xapi_server *srv, const char *listen_host, int listen_port, const char *unix_path,
                    xapi_http **ret);
void xapi_http_stop(xapi_http *h);
/* The TCP port actually bound (useful with port 0). */
int xapi_http_port(const xapi_http *h);
