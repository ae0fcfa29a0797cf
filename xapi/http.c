/* HTTP server on libmicrohttpd: see http.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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
#include "xapi/cli.h"
#include "xapi/http.h"
#include "xapi/rbac.h"
#include "xapi/session.h"
#include "xapi/tls.h"
#include "xapi/tls_readahead.h"

#define THREAD_STACK (512 * 1024)

/* What a connection is doing, for the request deadline (request_timeout). */
typedef enum conn_phase {
    PHASE_WAITING,   /* for its next request, or receiving its headers or RPC body: the deadline runs */
    PHASE_UPLOADING, /* a streamed PUT body: it must keep up upload_min_rate_kib */
    PHASE_RECEIVED,  /* the request is in: the call runs, the reply goes out (MHD's idle timeout) */
} conn_phase;

/* One open connection (MHD's socket context), from MHD_CONNECTION_NOTIFY_STARTED to _CLOSED. */
typedef struct conn_track {
    struct conn_track *prev, *next;
    struct xapi_http *h;
    int fd;              /* valid until _CLOSED: MHD closes the socket only after that notification */
    bool local;          /* on the UNIX socket */
    uid_t uid;           /* local: the peer's uid */
    conn_phase phase;
    int64_t since_ms;    /* monotonic: when the current deadline window started */
    uint64_t window_bytes; /* PHASE_UPLOADING: body bytes since since_ms */
    bool cut;            /* shut down by the reaper or a limit */
    bool tcp_corked;     /* TLS: MHD may have set TCP_CORK since uncork() last took it off (see there) */
    xapi_tls_readahead *ra; /* TLS: the session's transport, freed at _CLOSED (after MHD's last use of it) */
    char peer[INET6_ADDRSTRLEN + 16]; /* address text, or "uid N" on the UNIX socket */
} conn_track;

struct xapi_http {
    xapi_server *srv;
    struct MHD_Daemon *tcp, *tls, *local;
    int tcp_fd, tls_fd, local_fd;
    int port, tls_port;
    char *unix_path;
    unsigned inflight; /* RPC calls being dispatched (atomic): drained before the server stops */
    /* open connections, and the thread that enforces request_timeout on them */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    conn_track *conns;
    bool reaper_started, reaper_stop;
    pthread_t reaper;
    xapi_tls_identity tls_id;
};

#define STOP_DRAIN_MS 3000 /* how long stopping waits for in-flight calls to answer */

/* Thread per connection: whether this thread's connection came in over TLS
 * (-1: not a connection thread), for the locations the API hands out. */
static _Thread_local int thread_conn_tls = -1;

const char *xapi_http_caller_scheme(void) {
    return thread_conn_tls < 0 ? NULL : thread_conn_tls ? "https" : "http";
}

typedef enum endpoint { EP_XMLRPC, EP_JSONRPC, EP_PUT, EP_RAW } endpoint;

/* ---- connection limits and the request deadline ----------------------------- */

static int64_t now_ms(void) {
    return xapi_now_ns() / 1000000;
}

static conn_track *track_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci ? ci->socket_context : NULL;
}

/* Enters phase p; a new phase starts a new deadline window. */
static void set_phase(struct MHD_Connection *conn, conn_phase p) {
    conn_track *t = track_of(conn);

    if (!t)
        return;
    pthread_mutex_lock(&t->h->lock);
    if (t->phase != p) {
        t->phase = p;
        t->since_ms = now_ms();
        t->window_bytes = 0;
    }
    pthread_mutex_unlock(&t->h->lock);
}

/* n more bytes of a streamed body: a window that brought enough restarts the clock. */
static void note_upload(struct MHD_Connection *conn, size_t n) {
    conn_track *t = track_of(conn);
    const agent_config *cfg;

    if (!t)
        return;
    cfg = t->h->srv->config;
    pthread_mutex_lock(&t->h->lock);
    t->window_bytes += n;
    if (t->window_bytes >= (uint64_t)cfg->upload_min_rate_kib * 1024 * (uint64_t)cfg->request_timeout) {
        t->since_ms = now_ms();
        t->window_bytes = 0;
    }
    pthread_mutex_unlock(&t->h->lock);
}

/* Lock held. */
static void cut(conn_track *t, const char *why) {
    log_notice("http: connection from %s %s: disconnected", t->peer, why);
    shutdown(t->fd, SHUT_RDWR); /* its thread sees the end of the stream and closes it */
    t->cut = true;
}

static void describe_peer(conn_track *t, const struct sockaddr *sa) {
    struct ucred cred;
    socklen_t len = sizeof cred;

    snprintf(t->peer, sizeof t->peer, "?");
    if (!sa)
        return;
    if (sa->sa_family == AF_UNIX) {
        t->local = true;
        t->uid = (uid_t)-1;
        if (getsockopt(t->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            t->uid = cred.uid;
        snprintf(t->peer, sizeof t->peer, "uid %ld", t->uid == (uid_t)-1 ? -1L : (long)t->uid);
    } else if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, t->peer, sizeof t->peer);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, t->peer, sizeof t->peer);
}

/* MHD_OPTION_NOTIFY_CONNECTION: tracks every connection. TCP connections are
 * limited per address by MHD itself (MHD_OPTION_PER_IP_CONNECTION_LIMIT);
 * the UNIX socket's, per uid, here. */
static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode code) {
    xapi_http *h = cls;
    conn_track *t = *socket_context;
    const union MHD_ConnectionInfo *ci;
    unsigned same = 0;

    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (!t)
            return;
        pthread_mutex_lock(&h->lock);
        if (t->prev)
            t->prev->next = t->next;
        else
            h->conns = t->next;
        if (t->next)
            t->next->prev = t->prev;
        pthread_mutex_unlock(&h->lock);
        if (t->ra)
            xapi_tls_readahead_free(t->ra);
        free(t);
        *socket_context = NULL;
        return;
    }
    if (code != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    t = xapi_calloc(1, sizeof *t);
    t->h = h;
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    t->fd = ci ? ci->connect_fd : -1;
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    describe_peer(t, ci ? ci->client_addr : NULL);
    t->phase = PHASE_WAITING;
    t->since_ms = now_ms();
    /* Before the handshake, which runs on the connection's own thread. */
    if (h->tls && t->fd >= 0 && MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON)->daemon == h->tls &&
        (ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION)) && ci->tls_session)
        t->ra = xapi_tls_readahead_attach(ci->tls_session, t->fd);
    pthread_mutex_lock(&h->lock);
    if (t->local)
        for (conn_track *o = h->conns; o; o = o->next)
            same += o->local && o->uid == t->uid && !o->cut;
    t->next = h->conns;
    if (h->conns)
        h->conns->prev = t;
    h->conns = t;
    if (t->local && t->fd >= 0 && same >= (unsigned)h->srv->config->max_connections_per_peer)
        cut(t, "is over max_connections_per_peer");
    pthread_mutex_unlock(&h->lock);
    *socket_context = t;
}

/* Disconnects connections that took longer than request_timeout to deliver
 * their request (MHD's own timeout restarts on every byte: a dripping client
 * never trips it), or whose streamed upload fell below upload_min_rate_kib. */
static void *reaper_main(void *arg) {
    xapi_http *h = arg;
    const agent_config *cfg = h->srv->config;
    int64_t limit = (int64_t)cfg->request_timeout * 1000;
    char why[96];

    pthread_setname_np(pthread_self(), "http-reaper");
    pthread_mutex_lock(&h->lock);
    while (!h->reaper_stop) {
        int64_t now = now_ms();
        struct timespec ts;

        for (conn_track *t = h->conns; t; t = t->next) {
            if (t->cut || t->fd < 0 || t->phase == PHASE_RECEIVED || now - t->since_ms < limit)
                continue;
            if (t->phase == PHASE_UPLOADING) {
                if (cfg->upload_min_rate_kib == 0)
                    continue;
                snprintf(why, sizeof why, "uploads slower than %d KiB/s", cfg->upload_min_rate_kib);
            } else
                snprintf(why, sizeof why, "did not send a whole request within %d s", cfg->request_timeout);
            cut(t, why);
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->wake, &h->lock, &ts);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static int reaper_start(xapi_http *h) {
    pthread_condattr_t a;
    int rc;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&h->wake, &a);
    pthread_condattr_destroy(&a);
    if (h->srv->config->request_timeout == 0)
        return 0;
    rc = pthread_create(&h->reaper, NULL, reaper_main, h);
    if (rc != 0)
        return -rc;
    h->reaper_started = true;
    return 0;
}

static void reaper_stop(xapi_http *h) {
    if (!h->reaper_started)
        return;
    pthread_mutex_lock(&h->lock);
    h->reaper_stop = true;
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->reaper, NULL);
    h->reaper_started = false;
}


/* ---- streaming handlers ---------------------------------------------------- */

#define MAX_STREAM_HANDLERS 8
#define STREAM_BLOCK (256 * 1024)        /* bytes a streamed reply produces per call */
#define PUT_DROP_MAX (16 * 1024 * 1024)  /* body bytes read and dropped after a refusal */

struct xapi_http_tunnel {
    int fd;
    gnutls_session_t tls; /* NULL on plain HTTP and the UNIX socket */
};

struct xapi_http_req {
    xapi_http *h;
    struct MHD_Connection *conn;
    bool tunneled;
    xapi_http_tunnel tunnel;
};

static struct {
    const char *path;
    xapi_http_stream_get_fn fn;
} stream_get_handlers[MAX_STREAM_HANDLERS];

static struct {
    const char *path;
    const xapi_http_put_ops *ops;
} put_handlers[MAX_STREAM_HANDLERS];

static struct {
    const char *path;
    xapi_http_connect_fn fn;
} connect_handlers[MAX_STREAM_HANDLERS];

void xapi_http_register_connect(const char *path, xapi_http_connect_fn fn) {
    for (unsigned i = 0; i < MAX_STREAM_HANDLERS; i++)
        if (!connect_handlers[i].path) {
            connect_handlers[i].path = path;
            connect_handlers[i].fn = fn;
            return;
        }
    abort();
}

static xapi_http_connect_fn find_connect(const char *url) {
    for (unsigned i = 0; i < MAX_STREAM_HANDLERS && connect_handlers[i].path; i++)
        if (strcmp(connect_handlers[i].path, url) == 0)
            return connect_handlers[i].fn;
    return NULL;
}

/* ---- CONNECT tunnels: the connection's socket (or TLS session) used directly,
 * from the connection's own thread, while MHD waits in the handler call ---- */

int xapi_http_tunnel_fd(const xapi_http_tunnel *t) {
    return t->fd;
}

bool xapi_http_tunnel_pending(const xapi_http_tunnel *t) {
    return t->tls && gnutls_record_check_pending(t->tls) > 0;
}

ssize_t xapi_http_tunnel_recv(xapi_http_tunnel *t, void *buf, size_t max) {
    ssize_t n;

    if (t->tls) {
        n = gnutls_record_recv(t->tls, buf, max);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
            return -EAGAIN;
        if (n == GNUTLS_E_PREMATURE_TERMINATION)
            return 0;
        return n < 0 ? -EIO : n;
    }
    n = recv(t->fd, buf, max, 0);
    if (n < 0)
        return errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
    return n;
}

ssize_t xapi_http_tunnel_send(xapi_http_tunnel *t, const void *buf, size_t len) {
    ssize_t n;

    if (t->tls) {
        n = gnutls_record_send(t->tls, buf, len);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
            return -EAGAIN;
        return n < 0 ? -EIO : n;
    }
    n = send(t->fd, buf, len, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
    return n;
}

#define TUNNEL_GREETING_MS 10000 /* for the client to take the 200 line */

/* The connection's socket, and its TLS session when it came in over TLS: 0 or -EIO. */
static int tunnel_attach(xapi_http *h, struct MHD_Connection *conn, xapi_http_tunnel *ret_t) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    xapi_http_tunnel t = {.fd = -1};

    if (!ci)
        return -EIO;
    t.fd = ci->connect_fd;
    if (h->tls && MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON)->daemon == h->tls) {
        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (!ci || !ci->tls_session)
            return -EIO;
        t.tls = ci->tls_session;
    }
    *ret_t = t;
    return 0;
}

xapi_http_tunnel *xapi_http_req_tunnel(xapi_http_req *r) {
    static const char ok[] = "HTTP/1.1 200 OK\r\n\r\n";
    xapi_http_tunnel *t = &r->tunnel;
    size_t off = 0;

    if (tunnel_attach(r->h, r->conn, t) < 0)
        return NULL;
    r->tunneled = true; /* from here on the connection closes when the handler returns */
    while (off < sizeof ok - 1) {
        struct pollfd p = {.fd = t->fd, .events = POLLOUT};
        ssize_t n = xapi_http_tunnel_send(t, ok + off, sizeof ok - 1 - off);

        if (n == -EAGAIN) {
            if (poll(&p, 1, TUNNEL_GREETING_MS) <= 0)
                return NULL;
            continue;
        }
        if (n < 0)
            return NULL;
        off += (size_t)n;
    }
    return t;
}

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

typedef struct arg_iter {
    const char *name;
    void (*fn)(void *ud, const char *value);
    void *ud;
    unsigned n;
} arg_iter;

static enum MHD_Result each_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    arg_iter *it = cls;
    if (key && strcmp(key, it->name) == 0) {
        it->fn(it->ud, value ? value : "");
        it->n++;
    }
    return MHD_YES;
}

unsigned xapi_http_req_args(xapi_http_req *r, const char *name, void (*fn)(void *ud, const char *value), void *ud) {
    arg_iter it = {name, fn, ud, 0};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, each_arg, &it);
    return it.n;
}

const char *xapi_http_req_header(xapi_http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

static const char *peer_of(struct MHD_Connection *conn) {
    conn_track *t = track_of(conn);

    return t ? t->peer : NULL;
}

int xapi_http_req_authorize(xapi_http_req *r, const char *action, unsigned need, xapi_value *err) {
    const char *sid = xapi_http_req_arg(r, "session_id");
    char *user = NULL, *pass = NULL, permission[64];
    int rank = -EACCES;

    snprintf(permission, sizeof permission, "http/%s", action);
    if (sid && xapi_session_check(r->h->srv, sid) == 0)
        return xapi_rbac_check(r->h->srv, sid, need, permission, err) < 0 ? -EPERM : 0;
    user = MHD_basic_auth_get_username_password(r->conn, &pass);
    if (user) {
        unsigned roles = 0;
        char subject[256];

        /* Limited and delayed as session.login_with_password is; a session of this account would have its rank. */
        if (xapi_session_authenticate(r->h->srv, peer_of(r->conn), user, pass ? pass : "", &roles, subject,
                                      sizeof subject) == 0)
            rank = strcmp(user, "root") == 0 ? XAPI_ROLE_LOCAL_ROOT : xapi_roles_highest(roles);
    }
    if (user)
        MHD_free(user);
    if (pass)
        MHD_free(pass);
    if (rank == -EACCES)
        return -EACCES;
    return xapi_rbac_check_rank(rank, need, permission, err) < 0 ? -EPERM : 0;
}

bool xapi_http_req_authorized(xapi_http_req *r) {
    xapi_value err = {0};
    int rc = xapi_http_req_authorize(r, "", XAPI_ROLE_READ_ONLY, &err);

    xapi_value_free(&err);
    return rc == 0;
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
                                      const char *content_type, bool close_after, bool may_cork);

static enum MHD_Result stream_direct(struct MHD_Connection *conn, xapi_http_reply *rep);

/* Sends what a streaming handler filled in; rep's body and stream pass to the response. */
static enum MHD_Result send_http_reply(struct MHD_Connection *conn, xapi_http_reply *rep) {
    struct MHD_Response *resp;
    stream *s;

    if (rep->read && rep->extent && !thread_conn_tls && rep->stream_len > 0) {
        free(rep->body);
        rep->body = NULL;
        return stream_direct(conn, rep);
    }
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
                          rep->type ? rep->type : "text/plain; charset=utf-8", rep->close, true);
}

static int direct_send(int fd, const char *buf, size_t len, int timeout_ms);
static void direct_head(xapi_buf *b, const xapi_http_reply *rep, uint64_t len);

/* How long a direct reply waits for a client that takes nothing: connection_timeout, as MHD would. */
static int direct_timeout_ms(struct MHD_Connection *conn) {
    conn_track *t = track_of(conn);
    int s = t ? t->h->srv->config->connection_timeout : 30;

    return s > 0 ? s * 1000 : -1;
}

#define DIRECT_BUF (1024 * 1024) /* bytes of a direct reply gathered for one send */

/* Reads all len bytes of fd at off (an extent is asked for once). len or -EIO. */
static ssize_t direct_pread(int fd, char *buf, size_t len, uint64_t off) {
    size_t got = 0;

    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EIO; /* 0: the file is shorter than it was */
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* A streamed reply with extents on a plain connection, sent here by the
 * connection's thread: the pieces in files read with pread, the rest as read
 * produces it, gathered into DIRECT_BUF and sent with one send each. Not
 * sendfile, although it spares xenapid its copies: over loopback the client,
 * which is what a transfer waits for, then copies every byte out of the
 * file's pages (cold in the CPU's caches) instead of out of buffers just
 * written, and that costs it more than the copies cost here (a 537 MB VHD
 * export to a file: curl 0.47 s of system time and xenapid 0.06-0.11 s with
 * sendfile; 0.34-0.37 s and 0.13-0.19 s so; bench/vhd_export_ab.py). A VHD
 * block's 512-byte sector bitmap also goes out with its data, not as a send
 * of its own. MHD sees none of it, so the connection closes after it (MHD_NO). */
static enum MHD_Result stream_direct(struct MHD_Connection *conn, xapi_http_reply *rep) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    xapi_buf head = XAPI_BUF_INIT;
    uint64_t pos = 0;
    size_t fill = 0;
    char *buf = NULL;
    int rc = -EIO, sock, timeout_ms = direct_timeout_ms(conn);

    sock = ci ? ci->connect_fd : -1;
    direct_head(&head, rep, rep->stream_len);
    if (ci)
        rc = direct_send(sock, head.data, head.len, timeout_ms);
    xapi_buf_free(&head);
    if (rc == 0)
        buf = xapi_malloc(DIRECT_BUF);
    while (rc == 0 && pos < rep->stream_len) {
        uint64_t want = rep->stream_len - pos < DIRECT_BUF - fill ? rep->stream_len - pos : DIRECT_BUF - fill;
        uint64_t n = want, off;
        ssize_t k;
        int fd;

        rc = rep->extent(rep->state, pos, &n, &fd, &off);
        if (rc < 0)
            break;
        if (rc > 0)
            k = direct_pread(fd, buf + fill, (size_t)n, off);
        else
            k = rep->read(rep->state, pos, buf + fill, (size_t)want);
        if (k <= 0) {
            rc = -EIO;
            break;
        }
        rc = 0;
        fill += (size_t)k;
        pos += (uint64_t)k;
        if (fill == DIRECT_BUF || pos == rep->stream_len) {
            rc = direct_send(sock, buf, fill, timeout_ms);
            fill = 0;
        }
    }
    free(buf);
    if (rep->done)
        rep->done(rep->state, rc == 0 && pos == rep->stream_len);
    return MHD_NO;
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
    uint64_t received; /* body bytes MHD handed over */
    uint64_t direct_len; /* a body put_direct may read the rest of: its length (0: all through MHD) */
    xapi_http_raw_post_fn raw; /* EP_RAW */
    gnutls_session_t corked;   /* a small reply's TLS records held until it is all queued */
} request_ctx;

#define PUT_DIRECT_BUF (1024 * 1024) /* bytes of a PUT body read at once by put_direct */

/* Sends all of buf on a plain connection's socket, waiting at most
 * timeout_ms for room each time. 0 or -EIO. */
static int direct_send(int fd, const char *buf, size_t len, int timeout_ms) {
    while (len > 0) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (poll(&p, 1, timeout_ms) <= 0)
                return -EIO;
            continue;
        }
        if (n <= 0)
            return -EIO;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The status line and headers of rep as MHD would send them (see
 * queue_response), for a reply of len body bytes that closes the connection. */
static void direct_head(xapi_buf *b, const xapi_http_reply *rep, uint64_t len) {
    unsigned status = rep->status ? rep->status : MHD_HTTP_INTERNAL_SERVER_ERROR;

    xapi_buf_printf(b, "HTTP/1.1 %u %s\r\nConnection: close\r\nContent-Length: %llu\r\n", status,
                    MHD_get_reason_phrase_for(status), (unsigned long long)len);
    for (unsigned i = 0; i < rep->nheaders; i++)
        xapi_buf_printf(b, "%s: %s\r\n", rep->headers[i].name, rep->headers[i].value);
    xapi_buf_printf(b, "Content-Type: %s\r\nAccess-Control-Allow-Origin: *\r\n"
                       "Access-Control-Allow-Headers: X-Requested-With, Content-Type\r\n\r\n",
                    rep->type ? rep->type : "text/plain; charset=utf-8");
}

/* Waits until fd has bytes to read (or its end): 0, or -ETIMEDOUT after
 * connection_timeout seconds without any, as MHD waits for a client. */
static int direct_wait(xapi_http *h, int fd) {
    int timeout = h->srv->config->connection_timeout;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;

    while ((n = poll(&p, 1, timeout > 0 ? timeout * 1000 : -1)) < 0 && errno == EINTR)
        ;
    return n > 0 ? 0 : -ETIMEDOUT;
}

/* The rest of a PUT body of known length (left bytes) on a plain connection,
 * read from the socket by the connection's thread in PUT_DIRECT_BUF pieces
 * instead of through MHD, which hands a body over in pieces of its
 * connection pool (32 KiB: 33,000 receive calls and as many polls for a 1 GiB
 * import). A larger pool is no way out: MHD clears all of it at every request
 * of a keep-alive connection, which made small calls 2.8 times as slow. MHD
 * never sees these bytes, so the reply is written here too and the
 * connection closes after it (MHD_NO), as after a CONNECT tunnel. With the
 * body cut short, or a refusal's rest past PUT_DROP_MAX, the connection just
 * closes (completed() aborts the handler). */
static enum MHD_Result put_direct(xapi_http *h, struct MHD_Connection *conn, request_ctx *ctx, uint64_t left) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    xapi_http_reply rep = {0};
    xapi_buf head = XAPI_BUF_INIT;
    char *buf;
    void *state;
    int fd;

    if (!ci)
        return MHD_YES; /* MHD reads the rest */
    fd = ci->connect_fd;
    buf = xapi_malloc(PUT_DIRECT_BUF);
    while (left > 0) {
        ssize_t n = recv(fd, buf, left < PUT_DIRECT_BUF ? (size_t)left : PUT_DIRECT_BUF, 0);

        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (direct_wait(h, fd) < 0)
                break;
            continue;
        }
        if (n <= 0)
            break; /* the client went, or the upload watchdog cut it (too slow) */
        note_upload(conn, (size_t)n);
        left -= (uint64_t)n;
        if (!ctx->put_refused && ctx->put->data(ctx->put_state, buf, (size_t)n) < 0)
            ctx->put_refused = true;
        else if (ctx->put_refused && (ctx->dropped += (uint64_t)n) > PUT_DROP_MAX)
            break;
    }
    free(buf);
    if (left > 0)
        return MHD_NO;
    set_phase(conn, PHASE_RECEIVED);
    state = ctx->put_state;
    ctx->put_state = NULL;
    ctx->put->end(state, &rep);
    direct_head(&head, &rep, rep.len);
    if (direct_send(fd, head.data, head.len, direct_timeout_ms(conn)) == 0 && rep.len)
        (void)direct_send(fd, rep.body, rep.len, direct_timeout_ms(conn));
    xapi_buf_free(&head);
    free(rep.body);
    return MHD_NO;
}

/* The length of a PUT body whose rest the connection's thread may read itself
 * (put_direct): a plain connection's body of known length; 0 for a TLS
 * connection or a chunked body, which go through MHD. Read once, at the headers. */
static uint64_t direct_body_length(struct MHD_Connection *conn) {
    const char *clen;

    if (thread_conn_tls || MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return 0;
    clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return clen ? strtoull(clen, NULL, 10) : 0;
}

/* A PUT to a streaming handler: headers (first call), body pieces, end. */
static enum MHD_Result handle_put(xapi_http *h, struct MHD_Connection *conn, const xapi_http_put_ops *ops,
                                  request_ctx **pctx, const char *upload_data, size_t *upload_data_size) {
    request_ctx *ctx = *pctx;
    xapi_http_reply rep = {0};
    void *state = NULL;

    if (!ctx) {
        xapi_http_req r = {.h = h, .conn = conn};
        if (ops->begin(h->srv, &r, &state, &rep) < 0)
            return send_http_reply(conn, &rep);
        ctx = xapi_calloc(1, sizeof *ctx);
        ctx->ep = EP_PUT;
        ctx->put = ops;
        ctx->put_state = state;
        ctx->direct_len = direct_body_length(conn);
        *pctx = ctx;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        ctx->received += n;
        if (!ctx->put_refused && ops->data(ctx->put_state, upload_data, n) < 0)
            ctx->put_refused = true;
        else if (ctx->put_refused && (ctx->dropped += n) > PUT_DROP_MAX)
            return MHD_NO; /* closes the connection: abort frees the state */
        if (ctx->direct_len > ctx->received)
            return put_direct(h, conn, ctx, ctx->direct_len - ctx->received);
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
    return queue_response(conn, status, resp, content_type, close_after, true);
}

/* may_cork: MHD may cork the socket to send this response (see uncork()). */
static enum MHD_Result queue_response(struct MHD_Connection *conn, unsigned status, struct MHD_Response *resp,
                                      const char *content_type, bool close_after, bool may_cork) {
    enum MHD_Result r;
    conn_track *t;

    set_phase(conn, PHASE_RECEIVED); /* an early answer ends the request's deadline too */
    if (may_cork && thread_conn_tls > 0 && (t = track_of(conn)))
        t->tcp_corked = true;
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

/* MHD 0.9.75 writes a reply's header and body with one gnutls_record_send each: two
 * records, two TCP segments, two wake-ups of the client for one small call. Corked, the
 * session packs what MHD sends into as few records as fit, and completed() sends them. */
#define TLS_CORK_MAX (12 * 1024) /* of body: larger replies fill whole records anyway */

static gnutls_session_t cork(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);

    if (!ci || !ci->tls_session)
        return NULL;
    gnutls_record_cork(ci->tls_session);
    return ci->tls_session;
}

#define TLS_UNCORK_MS 10000 /* for the client to take a small reply */

/* Sends what cork() held. A client that does not take it in TLS_UNCORK_MS (or a reply that
 * ended otherwise) loses the connection: corked data would pile up under the next replies. */
static void uncork(struct MHD_Connection *conn, gnutls_session_t tls, bool send) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int64_t deadline = 0; /* set when the first try cannot send it all: the common case needs no clock */
    conn_track *t = track_of(conn);
    int r = GNUTLS_E_AGAIN;

    if (!ci)
        return;
    while (send) {
        struct pollfd p = {.fd = ci->connect_fd, .events = POLLOUT};
        int64_t now;

        r = gnutls_record_uncork(tls, 0);
        if (r >= 0 || (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED))
            break;
        now = xapi_now_ns() / 1000000;
        if (!deadline)
            deadline = now + TLS_UNCORK_MS;
        else if (now >= deadline)
            break;
        (void)poll(&p, 1, (int)(deadline - now));
    }
    if (r < 0) {
        shutdown(ci->connect_fd, SHUT_RDWR);
        return;
    }
    /* MHD corks the socket (TCP_CORK) to send a small buffer response's header, pushes the
     * body with TCP_NODELAY and leaves the cork on: bytes written after that, these, would
     * wait Linux's 200 ms without a push. It never corks again once it has (it believes the
     * socket still corked), so one push per connection is enough, and corked replies
     * (send_reply: MHD pushes their header and body, never corks) need none of their own. */
    if (!t || t->tcp_corked) {
        (void)setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_CORK, &(int){0}, sizeof(int));
        if (t)
            t->tcp_corked = false;
    }
}

/* A corked reply (see cork()) goes out as a response of known size whose body MHD asks for:
 * MHD then sends the header and the body each with "push", for which it makes no
 * setsockopt() calls (for a small buffer response it makes two a reply: TCP_CORK before
 * the header, TCP_NODELAY after the body), and the session makes one record of them.
 * Otherwise a buffer response: over plain HTTP, MHD sends its header and body in one
 * sendmsg(). Both point into the thread's reply buffer (see reply_buffer). */
static ssize_t reply_read(void *cls, uint64_t pos, char *buf, size_t max) {
    const xapi_buf *reply = cls;

    if (pos >= reply->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (max > reply->len - pos)
        max = reply->len - (size_t)pos;
    memcpy(buf, reply->data + pos, max);
    return (ssize_t)max;
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, const xapi_buf *reply, const char *content_type,
                                  bool corked) {
    struct MHD_Response *resp;

    if (corked)
        resp = MHD_create_response_from_callback(reply->len, reply->len ? reply->len : 1, reply_read, (void *)reply,
                                                 NULL);
    else
        resp = MHD_create_response_from_buffer(reply->len, reply->data ? reply->data : (char *)"",
                                               MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    return queue_response(conn, MHD_HTTP_OK, resp, content_type, false, !corked);
}

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *text, bool close_after) {
    return send_buffer(conn, status, xapi_strdup(text), strlen(text), "text/plain; charset=utf-8", close_after);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls) {
    xapi_http *h = cls;
    request_ctx *ctx = *con_cls;
    xapi_request req = {0};
    xapi_buf *reply;
    xapi_peer peer = {0};
    conn_track *track;
    const char *clen;
    int rc;

    thread_conn_tls = h->tls && MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON)->daemon == h->tls;
    if (ctx && ctx->ep == EP_PUT) {
        if (*upload_data_size > 0)
            note_upload(conn, *upload_data_size);
        else
            set_phase(conn, PHASE_RECEIVED);
        return handle_put(h, conn, ctx->put, (request_ctx **)con_cls, upload_data, upload_data_size);
    }
    if (!ctx) {
        const xapi_http_put_ops *put;
        xapi_http_stream_get_fn sget;
        xapi_http_connect_fn cfn;

        if (strcmp(method, "OPTIONS") == 0) /* CORS preflight */
            return send_buffer(conn, MHD_HTTP_OK, xapi_strdup(""), 0, "text/plain", false);
        if (strcmp(method, "PUT") == 0 && (put = find_put(url))) {
            /* A streamed body: bound by its rate, not by request_timeout. */
            set_phase(conn, PHASE_UPLOADING);
            return handle_put(h, conn, put, (request_ctx **)con_cls, upload_data, upload_data_size);
        }
        if (strcmp(method, "GET") == 0 && (sget = find_stream_get(url))) {
            xapi_http_req r = {.h = h, .conn = conn};
            xapi_http_reply rep = {0};
            set_phase(conn, PHASE_RECEIVED);
            sget(h->srv, &r, &rep);
            return send_http_reply(conn, &rep);
        }
        if (strcmp(method, "CONNECT") == 0 && (cfn = find_connect(url))) {
            xapi_http_req r = {.h = h, .conn = conn, .tunnel = {.fd = -1}};
            xapi_http_reply rep = {0};
            set_phase(conn, PHASE_RECEIVED); /* a console is open as long as it is used */
            cfn(h->srv, &r, &rep);
            if (r.tunneled) {
                free(rep.body);
                return MHD_NO; /* MHD closes the connection */
            }
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
    set_phase(conn, PHASE_RECEIVED); /* the call may take long (event.from, VM.start): no deadline */
    if (ctx->too_large)
        return send_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n", true);
    track = track_of(conn);
    /* Root on the UNIX socket is the only caller trusted without a password. */
    peer.local_root = track && track->local && track->uid == 0;
    peer.address = track ? track->peer : NULL;
    peer.originator = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "originator");
    if (ctx->ep == EP_RAW) {
        xapi_http_tunnel t;

        /* The protocol speaks on the connection itself: bytes on the socket, or records of its TLS session. */
        if (tunnel_attach(h, conn, &t) == 0)
            ctx->raw(h->srv, &peer, ctx->body.data ? ctx->body.data : "", ctx->body.len, &t);
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
    if (thread_conn_tls > 0 && reply->len <= TLS_CORK_MAX)
        ctx->corked = cork(conn);
    return send_reply(conn, reply, ctx->ep == EP_JSONRPC ? "application/json" : "text/xml", ctx->corked != NULL);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    request_ctx *ctx = *con_cls;
    xapi_http *h = cls;

    set_phase(conn, PHASE_WAITING); /* the next request's deadline starts now */

    if (ctx) {
        if (ctx->corked)
            uncork(conn, ctx->corked, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
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

/* tls: HTTPS with h->tls_id. The connection limit and the idle timeout count
 * from accept(), so they cover TLS handshakes as well: a client that starts
 * one and stalls is dropped like any idle client, on its own thread. */
static struct MHD_Daemon *start_daemon(xapi_http *h, int fd, bool tls) {
    const agent_config *cfg = h->srv->config;
    /* MHD counts IP addresses only; the UNIX socket's uids: notify_connection. */
    unsigned per_ip = fd == h->local_fd ? 0 : (unsigned)cfg->max_connections_per_peer;
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_id.cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_id.key_pem},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)cfg->tls_priorities},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_OptionItem plain_options[] = {{MHD_OPTION_END, 0, NULL}};

    /* The logger first: MHD reports what it makes of the later options through it. */
    return MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                                MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0),
                            0, NULL, NULL, handle, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, MHD_OPTION_ARRAY,
                            tls ? tls_options : plain_options, MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_NOTIFY_CONNECTION,
                            notify_connection, h, MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout,
                            MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_END);
}

/* A TCP listener and its server; the fd and daemon are stored as soon as they
 * exist, for xapi_http_stop to release on failure. */
static int start_tcp(xapi_http *h, const char *host, int port, bool tls, int *fd, int *ret_port,
                     struct MHD_Daemon **daemon) {
    int rc = listen_tcp(host, port, fd, ret_port);

    if (rc < 0)
        return rc;
    *daemon = start_daemon(h, *fd, tls);
    if (!*daemon) {
        log_error("http: cannot start the HTTP%s server on %s:%d (see the debug log for libmicrohttpd's reason)",
                  tls ? "S" : "", host, port);
        return -EIO;
    }
    return 0;
}

int xapi_http_start(xapi_server *srv, const char *listen_host, int listen_port, const char *unix_path,
                    xapi_http **ret) {
    xapi_http *h = xapi_calloc(1, sizeof *h);
    int rc;

    h->srv = srv;
    h->tcp_fd = h->tls_fd = h->local_fd = -1;
    pthread_mutex_init(&h->lock, NULL);
    xapi_cli_register();
    rc = reaper_start(h);
    if (rc < 0)
        goto fail;
    if (listen_host && *listen_host) {
        rc = start_tcp(h, listen_host, listen_port, false, &h->tcp_fd, &h->port, &h->tcp);
        if (rc < 0)
            goto fail;
    }
    if (*srv->config->listen_tls_host) {
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            log_error("http: listen_tls is set but this libmicrohttpd has no TLS support");
            rc = -EOPNOTSUPP;
            goto fail;
        }
        rc = xapi_tls_identity_load(srv->config, &h->tls_id);
        if (rc < 0)
            goto fail;
        rc = start_tcp(h, srv->config->listen_tls_host, srv->config->listen_tls_port, true, &h->tls_fd, &h->tls_port,
                       &h->tls);
        if (rc < 0)
            goto fail;
    }
    if (unix_path && *unix_path) {
        rc = listen_unix(unix_path, &h->local_fd);
        if (rc < 0)
            goto fail;
        h->unix_path = xapi_strdup(unix_path);
        h->local = start_daemon(h, h->local_fd, false);
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
    reaper_stop(h);
    if (h->tcp)
        MHD_stop_daemon(h->tcp);
    if (h->tls)
        MHD_stop_daemon(h->tls);
    if (h->local)
        MHD_stop_daemon(h->local);
    if (h->tcp_fd >= 0)
        close(h->tcp_fd);
    if (h->tls_fd >= 0)
        close(h->tls_fd);
    xapi_tls_identity_free(&h->tls_id);
    if (h->local_fd >= 0)
        close(h->local_fd);
    if (h->unix_path) {
        unlink(h->unix_path);
        free(h->unix_path);
    }
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

int xapi_http_port(const xapi_http *h) {
    return h->port;
}

int xapi_http_tls_port(const xapi_http *h) {
    return h->tls_port;
}
