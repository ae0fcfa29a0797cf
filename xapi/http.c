/* HTTP server on libmicrohttpd: see http.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/log.h"
#include "xapi/accounts.h"
#include "xapi/cli.h"
#include "xapi/http.h"
#include "xapi/session.h"

#define THREAD_STACK (512 * 1024)

struct xapi_http {
    xapi_server *srv;
    struct MHD_Daemon *tcp, *local;
    int tcp_fd, local_fd;
    int port;
    char *unix_path;
    unsigned inflight; /* RPC calls being dispatched (atomic): drained before the server stops */
};

#define STOP_DRAIN_MS 3000 /* how long stopping waits for in-flight calls to answer */

typedef enum endpoint { EP_XMLRPC, EP_JSONRPC, EP_PUT, EP_RAW } endpoint;


/* ---- streaming handlers ---------------------------------------------------- */

#define MAX_STREAM_HANDLERS 8
#define STREAM_BLOCK (256 * 1024)        /* bytes a streamed reply produces per call */
#define PUT_DROP_MAX (16 * 1024 * 1024)  /* body bytes read and dropped after a refusal */

struct xapi_http_req {
    xapi_http *h;
    struct MHD_Connection *conn;
};

static struct {
    const char *path;
    xapi_http_stream_get_fn fn;
} stream_get_handlers[MAX_STREAM_HANDLERS];

static struct {
    const char *path;
    const xapi_http_put_ops *ops;
} put_handlers[MAX_STREAM_HANDLERS];

void xapi_http_register_stream_get(const char *path, xapi_http_stream_get_fn fn) {
    for (unsigned i = 0; i < MAX_STREAM_HANDLERS; i++)
        if (!stream_get_handlers[i].path) {
            stream_get_handlers[i].path = path;
            stream_get_handlers[i].fn = fn;
            return;
        }
    abort(); /* a fixed, small set of modules registers these */
}

void xapi_http_register_put(const char *path, const xapi_http_put_ops *ops) {
    for (unsigned i = 0; i < MAX_STREAM_HANDLERS; i++)
        if (!put_handlers[i].path) {
            put_handlers[i].path = path;
            put_handlers[i].ops = ops;
            return;
        }
    abort();
}

static struct {
    const char *path;
    xapi_http_raw_post_fn fn;
} raw_post_handlers[MAX_STREAM_HANDLERS];

void xapi_http_register_raw_post(const char *path, xapi_http_raw_post_fn fn) {
    for (unsigned i = 0; i < MAX_STREAM_HANDLERS; i++)
        if (!raw_post_handlers[i].path || strcmp(raw_post_handlers[i].path, path) == 0) {
            raw_post_handlers[i].path = path;
            raw_post_handlers[i].fn = fn;
            return;
        }
    abort();
}

static xapi_http_raw_post_fn find_raw_post(const char *url) {
    for (unsigned i = 0; i < MAX_STREAM_HANDLERS && raw_post_handlers[i].path; i++)
        if (strcmp(raw_post_handlers[i].path, url) == 0)
            return raw_post_handlers[i].fn;
    return NULL;
}

static xapi_http_stream_get_fn find_stream_get(const char *url) {
    for (unsigned i = 0; i < MAX_STREAM_HANDLERS && stream_get_handlers[i].path; i++)
        if (strcmp(stream_get_handlers[i].path, url) == 0)
            return stream_get_handlers[i].fn;
    return NULL;
}

static const xapi_http_put_ops *find_put(const char *url) {
    for (unsigned i = 0; i < MAX_STREAM_HANDLERS && put_handlers[i].path; i++)
        if (strcmp(put_handlers[i].path, url) == 0)
            return put_handlers[i].ops;
    return NULL;
}

/* Query arguments, then cookies (session_id may come in either, as with xapi). */
const char *xapi_http_req_arg(xapi_http_req *r, const char *name) {
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
    return v ? v : MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name);
}

const char *xapi_http_req_header(xapi_http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

bool xapi_http_req_authorized(xapi_http_req *r) {
    const agent_config *cfg = r->h->srv->config;
    const char *sid = xapi_http_req_arg(r, "session_id");
    char *user = NULL, *pass = NULL;
    bool ok;

    if (sid && xapi_session_check(r->h->srv, sid) == 0)
        return true;
    user = MHD_basic_auth_get_username_password(r->conn, &pass);
    ok = user && pass && xapi_accounts_verify(cfg->accounts_file, user, pass);
    if (user && !ok) {
        /* Slow down password guessing, as session.login_with_password does. */
        struct timespec ts = {cfg->auth_fail_delay_ms / 1000, (long)(cfg->auth_fail_delay_ms % 1000) * 1000000L};
        log_notice("http: basic authentication failed for user '%s'", user);
        nanosleep(&ts, NULL);
    }
    if (user)
        MHD_free(user);
    if (pass)
        MHD_free(pass);
    return ok;
}

void xapi_http_reply_header(xapi_http_reply *rep, const char *name, const char *fmt, ...) {
    va_list ap;

    if (rep->nheaders >= XAPI_HTTP_MAX_HEADERS)
        return;
    snprintf(rep->headers[rep->nheaders].name, sizeof rep->headers[0].name, "%s", name);
    va_start(ap, fmt);
    vsnprintf(rep->headers[rep->nheaders].value, sizeof rep->headers[0].value, fmt, ap);
    va_end(ap);
    rep->nheaders++;
}

void xapi_http_reply_text(xapi_http_reply *rep, unsigned status, const char *text) {
    free(rep->body);
    rep->status = status;
    rep->type = "text/plain; charset=utf-8";
    rep->body = xapi_strdup(text);
    rep->len = strlen(text);
    rep->close = status != MHD_HTTP_OK;
}

typedef struct stream {
    ssize_t (*read)(void *state, uint64_t pos, char *buf, size_t max);
    void (*done)(void *state, bool complete);
    void *state;
    uint64_t len;
    bool complete;
} stream;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *s = cls;
    ssize_t n;

    if (pos >= s->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (max > s->len - pos)
        max = (size_t)(s->len - pos);
    n = s->read(s->state, pos, buf, max);
    if (n <= 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (pos + (uint64_t)n >= s->len)
        s->complete = true;
    return n;
}

static void stream_free(void *cls) {
    stream *s = cls;

    if (s->done)
        s->done(s->state, s->complete);
    free(s);
}

static enum MHD_Result queue_response(struct MHD_Connection *conn, unsigned status, struct MHD_Response *resp,
                                      const char *content_type, bool close_after);

/* Sends what a streaming handler filled in; rep's body and stream pass to the response. */
static enum MHD_Result send_http_reply(struct MHD_Connection *conn, xapi_http_reply *rep) {
    struct MHD_Response *resp;
    stream *s;

    if (rep->read) {
        s = xapi_calloc(1, sizeof *s);
        *s = (stream){rep->read, rep->done, rep->state, rep->stream_len, rep->stream_len == 0};
        resp = MHD_create_response_from_callback(rep->stream_len, STREAM_BLOCK, stream_read, s, stream_free);
        if (!resp)
            stream_free(s);
        free(rep->body);
    } else {
        resp = MHD_create_response_from_buffer(rep->len, rep->body ? rep->body : xapi_strdup(""),
                                               MHD_RESPMEM_MUST_FREE);
        if (!resp)
            free(rep->body);
    }
    rep->body = NULL;
    if (!resp)
        return MHD_NO;
    for (unsigned i = 0; i < rep->nheaders; i++)
        MHD_add_response_header(resp, rep->headers[i].name, rep->headers[i].value);
    return queue_response(conn, rep->status ? rep->status : MHD_HTTP_INTERNAL_SERVER_ERROR, resp,
                          rep->type ? rep->type : "text/plain; charset=utf-8", rep->close);
}

typedef struct request_ctx {
    endpoint ep;
    bool too_large;
    xapi_buf body;
    /* EP_PUT: the handler and its state (NULL once ended) */
    const xapi_http_put_ops *put;
    void *put_state;
    bool put_refused;  /* data said no more: the rest is dropped */
    bool inflight;     /* counted in xapi_http.inflight */
    uint64_t dropped;
    xapi_http_raw_post_fn raw; /* EP_RAW */
} request_ctx;

/* A PUT to a streaming handler: headers (first call), body pieces, end. */
static enum MHD_Result handle_put(xapi_http *h, struct MHD_Connection *conn, const xapi_http_put_ops *ops,
                                  request_ctx **pctx, const char *upload_data, size_t *upload_data_size) {
    request_ctx *ctx = *pctx;
    xapi_http_reply rep = {0};
    void *state = NULL;

    if (!ctx) {
        xapi_http_req r = {h, conn};
        if (ops->begin(h->srv, &r, &state, &rep) < 0)
            return send_http_reply(conn, &rep);
        ctx = xapi_calloc(1, sizeof *ctx);
        ctx->ep = EP_PUT;
        ctx->put = ops;
        ctx->put_state = state;
        *pctx = ctx;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (!ctx->put_refused && ops->data(ctx->put_state, upload_data, n) < 0)
            ctx->put_refused = true;
        else if (ctx->put_refused && (ctx->dropped += n) > PUT_DROP_MAX)
            return MHD_NO; /* closes the connection: abort frees the state */
        return MHD_YES;
    }
    state = ctx->put_state;
    ctx->put_state = NULL;
    ops->end(state, &rep);
    return send_http_reply(conn, &rep);
}

static enum MHD_Result send_buffer(struct MHD_Connection *conn, unsigned status, char *data, size_t len,
                                   const char *content_type, bool close_after) {
    struct MHD_Response *resp;

    resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(data);
        return MHD_NO;
    }
    return queue_response(conn, status, resp, content_type, close_after);
}

static enum MHD_Result queue_response(struct MHD_Connection *conn, unsigned status, struct MHD_Response *resp,
                                      const char *content_type, bool close_after) {
    enum MHD_Result r;

    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", "X-Requested-With, Content-Type");
    if (close_after)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* The reply buffer of the calling connection thread (one thread per
 * connection), kept from one request to the next: a fresh buffer for each
 * reply costs page faults on every byte of a big one (get_all_records of
 * thousands of objects: tens of MB), as much as encoding it. The response
 * points into it (MHD_RESPMEM_PERSISTENT): MHD has sent and dropped it before
 * it reads the connection's next request, the only time the buffer is written
 * again. Memory held: at most about the connection's last reply (see
 * reply_buffer), freed when its thread ends with the connection. */
#define REPLY_KEEP_SMALL (256 * 1024)

static pthread_key_t reply_key;
static pthread_once_t reply_key_once = PTHREAD_ONCE_INIT;

static void reply_buffer_free(void *p) {
    xapi_buf *b = p;

    xapi_buf_free(b);
    free(b);
}

static void reply_key_create(void) {
    if (pthread_key_create(&reply_key, reply_buffer_free) != 0)
        abort();
}

static xapi_buf *reply_buffer(void) {
    xapi_buf *b;

    pthread_once(&reply_key_once, reply_key_create);
    b = pthread_getspecific(reply_key);
    if (!b) {
        b = xapi_calloc(1, sizeof *b);
        if (pthread_setspecific(reply_key, b) != 0)
            abort();
    } else if (b->cap > REPLY_KEEP_SMALL && b->len < b->cap / 4)
        xapi_buf_free(b); /* the last reply was much smaller than the storage it left */
    xapi_buf_truncate(b, 0);
    return b;
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, const xapi_buf *reply, const char *content_type) {
    struct MHD_Response *resp;

    resp = MHD_create_response_from_buffer(reply->len, reply->data ? reply->data : (char *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    return queue_response(conn, MHD_HTTP_OK, resp, content_type, false);
}

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *text, bool close_after) {
    return send_buffer(conn, status, xapi_strdup(text), strlen(text), "text/plain; charset=utf-8", close_after);
}

/* Whether the peer on a UNIX socket is root, the only local caller trusted without a password. */
static bool peer_is_local_root(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct ucred cred;
    socklen_t len = sizeof cred;

    if (!ci)
        return false;
    if (getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return false;
    return cred.uid == 0;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls) {
    xapi_http *h = cls;
    request_ctx *ctx = *con_cls;
    xapi_request req = {0};
    xapi_buf *reply;
    xapi_peer peer = {0};
    const char *clen;
    int rc;

    if (ctx && ctx->ep == EP_PUT)
        return handle_put(h, conn, ctx->put, (request_ctx **)con_cls, upload_data, upload_data_size);
    if (!ctx) {
        const xapi_http_put_ops *put;
        xapi_http_stream_get_fn sget;

        if (strcmp(method, "OPTIONS") == 0) /* CORS preflight */
            return send_buffer(conn, MHD_HTTP_OK, xapi_strdup(""), 0, "text/plain", false);
        if (strcmp(method, "PUT") == 0 && (put = find_put(url)))
            return handle_put(h, conn, put, (request_ctx **)con_cls, upload_data, upload_data_size);
        if (strcmp(method, "GET") == 0 && (sget = find_stream_get(url))) {
            xapi_http_req r = {h, conn};
            xapi_http_reply rep = {0};
            sget(h->srv, &r, &rep);
            return send_http_reply(conn, &rep);
        }
        if (strcmp(method, "GET") == 0 && strcmp(url, "/") == 0)
            return send_text(conn, MHD_HTTP_OK, "xenapid: XenAPI over XML-RPC (POST /) and JSON-RPC (POST /jsonrpc)\n",
                             false);
        if (strcmp(method, "GET") == 0 && strcmp(url, "/RPC2") != 0 && strcmp(url, "/json") != 0 &&
            strcmp(url, "/jsonrpc") != 0)
            return send_text(conn, MHD_HTTP_NOT_FOUND, "not found\n", true);
        /* As xapi: /jsonrpc is JSON-RPC, every other POST path is XML-RPC (Xen Orchestra posts to /xmlrpc). */
        if (strcmp(method, "POST") != 0)
            return send_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", true);
        /* Refuse an announced oversized body before reading any of it. */
        clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (clen && strtoull(clen, NULL, 10) > XAPI_RPC_MAX_BODY)
            return send_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n", true);
        ctx = xapi_calloc(1, sizeof *ctx);
        ctx->ep = strcmp(url, "/jsonrpc") == 0 ? EP_JSONRPC : EP_XMLRPC;
        if ((ctx->raw = find_raw_post(url)))
            ctx->ep = EP_RAW;
        *con_cls = ctx;
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        if (!ctx->too_large && ctx->body.len + *upload_data_size <= XAPI_RPC_MAX_BODY)
            xapi_buf_append(&ctx->body, upload_data, *upload_data_size);
        else
            ctx->too_large = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (ctx->too_large)
        return send_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n", true);
    peer.local_root = h->local && MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON)->daemon == h->local &&
                      peer_is_local_root(conn);
    peer.originator = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "originator");
    if (ctx->ep == EP_RAW) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

        if (ci)
            ctx->raw(h->srv, &peer, ctx->body.data ? ctx->body.data : "", ctx->body.len, ci->connect_fd);
        return MHD_NO; /* closes the connection without an HTTP reply */
    }

    rc = ctx->ep == EP_JSONRPC ? xapi_jsonrpc_decode(ctx->body.data ? ctx->body.data : "", ctx->body.len, &req)
                               : xapi_xmlrpc_decode(ctx->body.data ? ctx->body.data : "", ctx->body.len, &req);
    if (rc < 0) {
        xapi_request_free(&req);
        return send_text(conn, MHD_HTTP_BAD_REQUEST,
                         rc == -E2BIG ? "request nested too deeply or too large\n" : "malformed request\n", true);
    }
    reply = reply_buffer();
    /* counted until its answer is sent (completed) */
    __atomic_add_fetch(&h->inflight, 1, __ATOMIC_SEQ_CST);
    ctx->inflight = true;
    xapi_dispatch(h->srv, &peer, &req, reply);
    xapi_request_free(&req);
    return send_reply(conn, reply, ctx->ep == EP_JSONRPC ? "application/json" : "text/xml");
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    request_ctx *ctx = *con_cls;
    xapi_http *h = cls;

    if (ctx) {
        if (ctx->inflight)
            __atomic_sub_fetch(&h->inflight, 1, __ATOMIC_SEQ_CST);
        if (ctx->put_state)
            ctx->put->abort(ctx->put_state);
        xapi_buf_free(&ctx->body);
        free(ctx);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];

    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = 0;
    log_debug("http: %s", msg);
}

static int listen_tcp(const char *host, int port, int *ret_fd, int *ret_port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char portstr[16];
    int fd = -1, one = 1, rc;

    snprintf(portstr, sizeof portstr, "%d", port);
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        log_error("http: cannot resolve %s: %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        rc = agent_log_errno(LOG_ERR, errno, "http: cannot listen on %s:%d", host, port);
        goto out;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    *ret_fd = fd;
    fd = -1;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return rc;
}

static int listen_unix(const char *path, int *ret_fd) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = -1, rc;

    if (strlen(path) >= sizeof sa.sun_path) {
        log_error("http: socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* The store lock already proves no other daemon owns this state: a leftover socket is stale. */
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 128) < 0) {
        rc = agent_log_errno(LOG_ERR, errno, "http: cannot listen on %s", path);
        close(fd);
        return rc;
    }
    chmod(path, 0666); /* anyone may connect; only root is trusted without a password */
    *ret_fd = fd;
    return 0;
}

static struct MHD_Daemon *start_daemon(xapi_http *h, int fd) {
    const agent_config *cfg = h->srv->config;

    return MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                                MHD_USE_ERROR_LOG,
                            0, NULL, NULL, handle, h, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED,
                            completed, h, MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout,
                            MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, h, MHD_OPTION_END);
}

int xapi_http_start(xapi_server *srv, const char *listen_host, int listen_port, const char *unix_path,
                    xapi_http **ret) {
    xapi_http *h = xapi_calloc(1, sizeof *h);
    int rc;

    h->srv = srv;
    h->tcp_fd = h->local_fd = -1;
    xapi_cli_register();
    rc = listen_tcp(listen_host, listen_port, &h->tcp_fd, &h->port);
    if (rc < 0)
        goto fail;
    h->tcp = start_daemon(h, h->tcp_fd);
    if (!h->tcp) {
        log_error("http: cannot start the HTTP server");
        rc = -EIO;
        goto fail;
    }
    if (unix_path && *unix_path) {
        rc = listen_unix(unix_path, &h->local_fd);
        if (rc < 0)
            goto fail;
        h->unix_path = xapi_strdup(unix_path);
        h->local = start_daemon(h, h->local_fd);
        if (!h->local) {
            rc = -EIO;
            goto fail;
        }
    }
    *ret = h;
    return 0;
fail:
    xapi_http_stop(h);
    return rc;
}

void xapi_http_stop(xapi_http *h) {
    if (!h)
        return;
    /* The calls' waits end once the server is stopping: their answers go out
     * before the connections close. (MHD_stop_daemon still joins a thread
     * whose call is busy in the backend past this bound.) */
    for (int waited = 0; __atomic_load_n(&h->inflight, __ATOMIC_SEQ_CST) > 0 && waited < STOP_DRAIN_MS; waited += 10) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (h->tcp)
        MHD_stop_daemon(h->tcp);
    if (h->local)
        MHD_stop_daemon(h->local);
    if (h->tcp_fd >= 0)
        close(h->tcp_fd);
    if (h->local_fd >= 0)
        close(h->local_fd);
    if (h->unix_path) {
        unlink(h->unix_path);
        free(h->unix_path);
    }
    free(h);
}

int xapi_http_port(const xapi_http *h) {
    return h->port;
}
