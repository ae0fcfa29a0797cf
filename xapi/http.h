/* The HTTP front: XML-RPC on POST / and /RPC2 (and legacy /json), JSON-RPC on
 * POST /jsonrpc, CORS preflight, on TCP and on a local UNIX socket whose root
 * callers are pre-authenticated. One thread per connection: calls may block
 * (event.from, VM operations) without holding up anybody else. */
#pragma once

#include "xapi/api.h"

typedef struct xapi_http xapi_http;

int xapi_http_start(xapi_server *srv, const char *listen_host, int listen_port, const char *unix_path,
                    xapi_http **ret);
void xapi_http_stop(xapi_http *h);
/* The TCP port actually bound (useful with port 0). */
int xapi_http_port(const xapi_http *h);
