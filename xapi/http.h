/* The HTTP front: XML-RPC on POST / and /RPC2 (and legacy /json), JSON-RPC on
 * POST /jsonrpc, CORS preflight, on TCP and on a local UNIX socket whose root
 * callers are pre-authenticated; beside them, the GET and PUT handlers modules
 * register (consoles, disk images). One thread per connection: calls may
 * block (event.from, VM operations, disk transfers) without holding up
 * anybody else. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "xapi/api.h"

typedef struct xapi_http xapi_http;

/* ---- handlers beside the RPC endpoints (consoles, disk images): GET
 * replies from a buffer or produced piece by piece, PUT uploads taken piece
 * by piece (disk images: never whole in memory) ---- */

/* One request, valid during the handler call it is given to. */
typedef struct xapi_http_req xapi_http_req;

/* A query argument, else a cookie of that name (NULL if neither). */
const char *xapi_http_req_arg(xapi_http_req *r, const char *name);
const char *xapi_http_req_header(xapi_http_req *r, const char *name);
/* Every value of a query argument given more than once (?vm_uuid=a&vm_uuid=b),
 * in order: fn is called with each; returns how many there were. */
unsigned xapi_http_req_args(xapi_http_req *r, const char *name, void (*fn)(void *ud, const char *value), void *ud);
/* Whether the caller is authenticated, as xapi's HTTP handlers accept it:
 * session_id (query or cookie) naming a live session, or HTTP basic auth with
 * a local account, checked as a login is (xapi_session_authenticate: limited
 * per address and user name; a failure waits auth_fail_delay_ms). */
bool xapi_http_req_authorized(xapi_http_req *r);
/* The same, and the caller's role must be at least need (an xapi_role) for the handler
 * http/<action> (xapi's HTTP permissions: "put_import_raw_vdi"...): 0; -EACCES when not
 * authenticated (401); -EPERM with err RBAC_PERMISSION_DENIED [http/<action>, ...] (403). */
int xapi_http_req_authorize(xapi_http_req *r, const char *action, unsigned need, xapi_value *err);

#define XAPI_HTTP_MAX_HEADERS 4

typedef struct xapi_http_reply {
    unsigned status;
    const char *type;              /* content type (static string); text/plain if NULL */
    char *body;                    /* malloc'd, len bytes; or a streamed body: */
    size_t len;
    /* With read set: the body is stream_len bytes that read produces in order
     * (pos: bytes produced so far): > 0 bytes put in buf, or < 0 to abort the
     * connection. done is called once when the reply is over, with complete
     * true if every byte was produced, and frees state. */
    ssize_t (*read)(void *state, uint64_t pos, char *buf, size_t max);
    void (*done)(void *state, bool complete);
    /* Optional, with read: whether the body's bytes from pos are in a file as
     * they are, for a plain connection to read them from there itself (pread,
     * gathered with read's bytes into large sends) instead of through read and
     * libmicrohttpd's buffers: 1 with the file's fd,
     * the offset there and *len cut to what lies there in one piece; 0 to have
     * read produce them; < 0 to abort. Bytes are asked for in order, each once,
     * by extent or by read; the fd must stay open until done. */
    int (*extent)(void *state, uint64_t pos, uint64_t *len, int *ret_fd, uint64_t *ret_offset);
    void *state;
    uint64_t stream_len;
    struct {
        char name[32];
        char value[224];
    } headers[XAPI_HTTP_MAX_HEADERS];
    unsigned nheaders;
    bool close;                    /* Connection: close after it */
} xapi_http_reply;

/* Adds a response header (silently dropped beyond XAPI_HTTP_MAX_HEADERS). */
void xapi_http_reply_header(xapi_http_reply *rep, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A plain text reply with that status; closes the connection unless 200. */
void xapi_http_reply_text(xapi_http_reply *rep, unsigned status, const char *text);

/* GET path: fills the reply (rep->status 0 counts as 500). */
typedef void (*xapi_http_stream_get_fn)(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep);
void xapi_http_register_stream_get(const char *path, xapi_http_stream_get_fn fn);

/* PUT path: the body is handed over as it arrives, whatever its size
 * (Content-Length or chunked); the RPC body limit and request_timeout do not
 * apply, but the body must keep up upload_min_rate_kib over each
 * request_timeout window or the connection is cut (abort). */
typedef struct xapi_http_put_ops {
    /* The headers are in: 0 with *ret_state to take the body; or < 0 with
     * rep filled, answered at once without reading the body. */
    int (*begin)(xapi_server *srv, xapi_http_req *r, void **ret_state, xapi_http_reply *rep);
    /* The next piece of the body: 0, or < 0 to take no more of it (the rest
     * is read and dropped, up to a bound past which the connection closes). */
    int (*data)(void *state, const char *buf, size_t len);
    /* The body is over: fills rep and frees state. */
    void (*end)(void *state, xapi_http_reply *rep);
    /* The connection ended before the body did (client gone, timeout): frees state. */
    void (*abort)(void *state);
} xapi_http_put_ops;
void xapi_http_register_put(const char *path, const xapi_http_put_ops *ops);

typedef struct xapi_http_tunnel xapi_http_tunnel;
/* POST path answered outside HTTP (xapi's thin CLI protocol): once the body is in, fn gets the
 * connection (plain, TLS or the UNIX socket; see xapi_http_tunnel_* below, on the connection's
 * own thread) and speaks on it; no HTTP reply is sent and the connection closes when fn returns. */
typedef void (*xapi_http_raw_post_fn)(xapi_server *srv, const xapi_peer *peer, const char *body, size_t len,
                                      xapi_http_tunnel *t);
void xapi_http_register_raw_post(const char *path, xapi_http_raw_post_fn fn);
/* CONNECT path (consoles): the handler either fills rep (an error, answered
 * as any reply), or takes the connection over with xapi_http_req_tunnel and
 * carries raw bytes both ways until it returns; the connection then closes.
 * It stays one of MHD's connections meanwhile (counted against
 * max_connections and max_connections_per_peer, shut down when the server
 * stops) and runs on its own thread. MHD 0.9.75 only hands a connection over
 * after a 101 (MHD_create_response_for_upgrade), and console clients (Nova's
 * proxy, xapi's) want "200 OK", so the status line is written here. Bytes a
 * client sends after its request and before reading the 200 are lost. */
typedef void (*xapi_http_connect_fn)(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep);
void xapi_http_register_connect(const char *path, xapi_http_connect_fn fn);

/* The client's connection, taken over (plain or TLS). */
/* Answers "HTTP/1.1 200 OK" and hands the connection over; NULL if the client is gone. */
xapi_http_tunnel *xapi_http_req_tunnel(xapi_http_req *r);
/* The socket, to poll (POLLIN/POLLOUT) between calls that said -EAGAIN. */
int xapi_http_tunnel_fd(const xapi_http_tunnel *t);
/* Bytes already decrypted and waiting (TLS): read them before polling. */
bool xapi_http_tunnel_pending(const xapi_http_tunnel *t);
/* Non-blocking: > 0 bytes; 0 at the client's end; -EAGAIN; or another negative errno. */
ssize_t xapi_http_tunnel_recv(xapi_http_tunnel *t, void *buf, size_t max);
/* Non-blocking: > 0 bytes taken; -EAGAIN (then call again with the same
 * bytes once the socket is writable, as TLS requires); or a negative errno. */
ssize_t xapi_http_tunnel_send(xapi_http_tunnel *t, const void *buf, size_t len);

/* Plain HTTP on listen_host:listen_port (none if listen_host is NULL or ""),
 * HTTPS on srv->config's listen_tls (none if empty), and the UNIX socket. */
int xapi_http_start(xapi_server *srv, const char *listen_host, int listen_port, const char *unix_path,
                    xapi_http **ret);
void xapi_http_stop(xapi_http *h);
/* The TCP ports actually bound (useful with port 0); 0 for no such listener. */
int xapi_http_port(const xapi_http *h);
int xapi_http_tls_port(const xapi_http *h);
/* "https" or "http": how the client of the calling connection thread came in;
 * NULL outside one (Async workers, housekeeping). */
const char *xapi_http_caller_scheme(void);
