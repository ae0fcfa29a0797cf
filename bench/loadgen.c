/* loadgen: an HTTP/1.1 keep-alive load generator for XML-RPC / JSON-RPC.
 *
 * N threads, one connection each, send one request body (a template) over and
 * over for D seconds or a total count, check every response (HTTP 200 and the
 * expected substring), and report requests/s and latency percentiles.
 *
 *   loadgen -p PORT [-H 127.0.0.1] [-u /] [-c CONNS] (-d SECONDS | -n COUNT)
 *           (-b BODY | -f FILE) [-e EXPECT] [-j] [-L USER:PASS] [-r REFS_FILE]
 *           [-w WARMUP_SECONDS] [-o OUT_FILE] [-D] [-l LABEL]
 *
 * Template placeholders, replaced per request:
 *   @SESSION@  the session of one login done before the run (-L)
 *   @REF@      a ref from REFS_FILE (one per line): connection t uses line t mod N
 *   @SEQ@      a number unique within the run (so that every set_* changes the value)
 *   @THREAD@   the connection's index
 *
 * -j      JSON-RPC: Content-Type application/json, login by JSON-RPC 2.0.
 * -t      HTTPS (GnuTLS, certificate not verified: a benchmark, not a client); the
 *         handshake is done when a connection opens, before any timing.
 * -e      substring every response must contain (default "Success"; with -j "\"result\"").
 *         It is looked for in the first 64 KiB of the body (where the envelope's status is).
 * -D      discard bodies as they arrive (big replies: no copy kept), only their size is counted.
 * -o      writes the last response body to a file (implies keeping bodies).
 *
 * Output: one line of key=value pairs (label, conns, requests, errors, seconds, rps,
 * p50_us, p90_us, p99_us, max_us, mean_us, ttfb_p50_us, bytes_per_reply, cpu_us_per_req: the
 * load generator's own CPU time per measured request, its TLS included) on stdout,
 * errors on stderr. Exit status 1 if any request failed. */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define RECV_CHUNK (256 * 1024)
#define CHECK_PREFIX (64 * 1024)
#define MAX_CONNS 1024

typedef struct part {
    enum { P_TEXT, P_SESSION, P_REF, P_SEQ, P_THREAD } kind;
    const char *text;
    size_t len;
} part;

static struct {
    const char *host, *path, *expect, *label, *out_file;
    int port, conns;
    double duration, warmup;
    long count;
    bool json, discard, tls;
    gnutls_certificate_credentials_t cred;
    char *body;
    part *parts;
    size_t nparts;
    char session[128];
    char **refs;
    size_t nrefs;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    volatile int phase; /* 0 warmup, 1 measuring, 2 stop */
    long remaining;     /* -n: requests left to hand out */
    pthread_mutex_t lock;
} G = {.host = "127.0.0.1", .path = "/", .conns = 1, .label = "run"};

typedef struct worker {
    int id;
    pthread_t th;
    uint32_t *lat_us, *ttfb_us;
    size_t nlat, caplat;
    long errors;
    uint64_t bytes;
    uint64_t seq;
    char *last_body;
    size_t last_len;
} worker;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t cap = 0, n = 0;

    if (!f)
        die("cannot open %s: %s", path, strerror(errno));
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : 65536;
            data = realloc(data, cap + 1);
            if (!data)
                die("out of memory");
        }
        size_t r = fread(data + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    data[n] = 0;
    if (len)
        *len = n;
    return data;
}

/* ---- a connection ---------------------------------------------------------- */

typedef struct conn {
    int fd;
    gnutls_session_t tls; /* -t */
    char *rbuf; /* received bytes not yet consumed */
    size_t rlen, rcap;
} conn;

static void conn_open(conn *c) {
    int one = 1;

    c->fd = socket(G.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    if (connect(c->fd, (struct sockaddr *)&G.addr, G.addrlen) < 0)
        die("connect to %s:%d: %s", G.host, G.port, strerror(errno));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (G.tls) {
        int rc;

        if (gnutls_init(&c->tls, GNUTLS_CLIENT) < 0 || gnutls_set_default_priority(c->tls) < 0 ||
            gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, G.cred) < 0)
            die("gnutls_init failed");
        gnutls_transport_set_int(c->tls, c->fd);
        do
            rc = gnutls_handshake(c->tls);
        while (rc < 0 && !gnutls_error_is_fatal(rc));
        if (rc < 0)
            die("TLS handshake with %s:%d: %s", G.host, G.port, gnutls_strerror(rc));
    }
    if (!c->rbuf) {
        c->rcap = RECV_CHUNK;
        c->rbuf = malloc(c->rcap + 1);
        if (!c->rbuf)
            die("out of memory");
    }
    c->rlen = 0;
}

static void conn_close(conn *c) {
    if (c->tls) {
        gnutls_deinit(c->tls);
        c->tls = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->rlen = 0;
}

static ssize_t conn_recv(conn *c, char *buf, size_t n) {
    ssize_t r;

    if (c->tls) {
        do
            r = gnutls_record_recv(c->tls, buf, n);
        while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
        return r == GNUTLS_E_PREMATURE_TERMINATION ? 0 : r < 0 ? -1 : r;
    }
    do
        r = recv(c->fd, buf, n, 0);
    while (r < 0 && errno == EINTR);
    return r;
}

static int send_all(conn *c, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = c->tls ? gnutls_record_send(c->tls, p, n) : send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (c->tls ? w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED : errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads more into rbuf (growing it when needed); returns bytes read, 0 on EOF, -1 on error. */
static ssize_t fill(conn *c) {
    ssize_t r;

    if (c->rcap - c->rlen < 4096) {
        c->rcap *= 2;
        c->rbuf = realloc(c->rbuf, c->rcap + 1);
        if (!c->rbuf)
            die("out of memory");
    }
    r = conn_recv(c, c->rbuf + c->rlen, c->rcap - c->rlen);
    if (r > 0)
        c->rlen += (size_t)r;
    return r;
}

typedef struct response {
    int status;
    size_t body_len;
    bool close;
    int64_t first_byte_ns;
    /* the kept part of the body: all of it, or its first CHECK_PREFIX bytes with -D */
    char *body;
    size_t kept, kcap;
} response;

static void keep(response *r, const char *p, size_t n, bool all) {
    size_t want = all ? n : (r->kept < CHECK_PREFIX ? (n < CHECK_PREFIX - r->kept ? n : CHECK_PREFIX - r->kept) : 0);

    if (want == 0)
        return;
    if (r->kcap - r->kept < want + 1) {
        while (r->kcap - r->kept < want + 1)
            r->kcap = r->kcap ? r->kcap * 2 : 65536;
        r->body = realloc(r->body, r->kcap);
        if (!r->body)
            die("out of memory");
    }
    memcpy(r->body + r->kept, p, want);
    r->kept += want;
    r->body[r->kept] = 0;
}

/* Reads one response; 0 on success, -1 on a transport or protocol error. */
static int read_response(conn *c, response *r, bool keep_all) {
    char *hend = NULL, *p;
    size_t hlen, clen = 0, have;
    bool has_clen = false;

    r->kept = 0;
    r->first_byte_ns = 0;
    r->close = false;
    while (!(hend = c->rlen >= 4 ? memmem(c->rbuf, c->rlen, "\r\n\r\n", 4) : NULL)) {
        ssize_t n = fill(c);
        if (n <= 0)
            return -1;
        if (!r->first_byte_ns)
            r->first_byte_ns = now_ns();
        if (c->rlen > 65536 && !memmem(c->rbuf, 65536, "\r\n\r\n", 4))
            return -1; /* no header is that long */
    }
    if (!r->first_byte_ns)
        r->first_byte_ns = now_ns();
    hlen = (size_t)(hend - c->rbuf) + 4;
    c->rbuf[hlen - 1] = 0;
    if (sscanf(c->rbuf, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    for (p = strstr(c->rbuf, "\r\n"); p && p < hend; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            clen = strtoull(line + 15, NULL, 10);
            has_clen = true;
        } else if (strncasecmp(line, "Connection:", 11) == 0 && strcasestr(line, "close") &&
                   strcasestr(line, "close") < strstr(line, "\r\n"))
            r->close = true;
        else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strcasestr(line, "chunked") &&
                 strcasestr(line, "chunked") < strstr(line, "\r\n")) {
            fprintf(stderr, "loadgen: chunked responses are not supported\n");
            return -1;
        }
    }
    if (!has_clen) {
        fprintf(stderr, "loadgen: response without Content-Length\n");
        return -1;
    }
    r->body_len = clen;
    /* the body: first what is already buffered, then straight from the socket */
    have = c->rlen - hlen;
    if (have > clen)
        have = clen;
    keep(r, c->rbuf + hlen, have, keep_all);
    memmove(c->rbuf, c->rbuf + hlen + have, c->rlen - hlen - have);
    c->rlen -= hlen + have;
    while (have < clen) {
        size_t want = clen - have;
        ssize_t n;

        if (want > c->rcap)
            want = c->rcap;
        n = conn_recv(c, c->rbuf, want);
        if (n <= 0)
            return -1;
        keep(r, c->rbuf, (size_t)n, keep_all);
        have += (size_t)n;
    }
    return 0;
}

/* ---- requests -------------------------------------------------------------- */

static size_t head_len(size_t body_len, char *out, size_t cap) {
    return (size_t)snprintf(out, cap,
                            "POST %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: xenapid-loadgen\r\n"
                            "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                            G.path, G.host, G.port, G.json ? "application/json" : "text/xml", body_len);
}

typedef struct reqbuf {
    char *data;
    size_t len, cap;
} reqbuf;

static void rb_put(reqbuf *b, const char *p, size_t n) {
    if (b->cap - b->len < n + 1) {
        while (b->cap - b->len < n + 1)
            b->cap = b->cap ? b->cap * 2 : 4096;
        b->data = realloc(b->data, b->cap);
        if (!b->data)
            die("out of memory");
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* The request for one call: headers and the template filled in. */
static void build_request(reqbuf *req, reqbuf *body, worker *w) {
    char head[512], num[32];
    size_t hl;

    body->len = 0;
    for (size_t i = 0; i < G.nparts; i++) {
        const part *pt = &G.parts[i];
        switch (pt->kind) {
        case P_TEXT:
            rb_put(body, pt->text, pt->len);
            break;
        case P_SESSION:
            rb_put(body, G.session, strlen(G.session));
            break;
        case P_REF:
            if (!G.nrefs)
                die("@REF@ needs -r REFS_FILE");
            rb_put(body, G.refs[(size_t)w->id % G.nrefs], strlen(G.refs[(size_t)w->id % G.nrefs]));
            break;
        case P_SEQ:
            rb_put(body, num, (size_t)snprintf(num, sizeof num, "%d-%llu", w->id, (unsigned long long)w->seq));
            break;
        case P_THREAD:
            rb_put(body, num, (size_t)snprintf(num, sizeof num, "%d", w->id));
            break;
        }
    }
    hl = head_len(body->len, head, sizeof head);
    req->len = 0;
    rb_put(req, head, hl);
    rb_put(req, body->data, body->len);
}

static void parse_template(void) {
    static const struct {
        const char *tag;
        int kind;
    } tags[] = {{"@SESSION@", P_SESSION}, {"@REF@", P_REF}, {"@SEQ@", P_SEQ}, {"@THREAD@", P_THREAD}};
    const char *p = G.body, *start = G.body;

    G.parts = calloc(strlen(G.body) + 2, sizeof *G.parts);
    while ((p = strchr(p, '@'))) {
        bool matched = false;
        for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
            size_t tl = strlen(tags[t].tag);
            if (strncmp(p, tags[t].tag, tl) == 0) {
                if (p > start)
                    G.parts[G.nparts++] = (part){P_TEXT, start, (size_t)(p - start)};
                G.parts[G.nparts++] = (part){tags[t].kind, NULL, 0};
                p += tl;
                start = p;
                matched = true;
                break;
            }
        }
        if (!matched)
            p++;
    }
    if (*start)
        G.parts[G.nparts++] = (part){P_TEXT, start, strlen(start)};
}

/* One call on a fresh connection (login): the whole body. */
static char *one_call(const char *body, int *status) {
    conn c = {.fd = -1};
    response r = {0};
    char head[512];
    size_t hl = head_len(strlen(body), head, sizeof head);

    conn_open(&c);
    if (send_all(&c, head, hl) < 0 || send_all(&c, body, strlen(body)) < 0 || read_response(&c, &r, true) < 0)
        die("login call failed");
    conn_close(&c);
    free(c.rbuf);
    *status = r.status;
    return r.body ? r.body : strdup("");
}

static void login(const char *userpass) {
    char user[256], *colon, body[1024], *reply, *ref;
    int status;

    snprintf(user, sizeof user, "%s", userpass);
    colon = strchr(user, ':');
    if (!colon)
        die("-L wants USER:PASSWORD");
    *colon = 0;
    if (G.json)
        snprintf(body, sizeof body,
                 "{\"jsonrpc\":\"2.0\",\"method\":\"session.login_with_password\",\"params\":[\"%s\",\"%s\",\"1.0\","
                 "\"loadgen\"],\"id\":1}",
                 user, colon + 1);
    else
        snprintf(body, sizeof body,
                 "<?xml version=\"1.0\"?><methodCall><methodName>session.login_with_password</methodName><params>"
                 "<param><value>%s</value></param><param><value>%s</value></param><param><value>1.0</value></param>"
                 "<param><value>loadgen</value></param></params></methodCall>",
                 user, colon + 1);
    reply = one_call(body, &status);
    ref = strstr(reply, "OpaqueRef:");
    if (status != 200 || !ref || strlen(ref) < 46)
        die("login failed (HTTP %d): %.300s", status, reply);
    snprintf(G.session, sizeof G.session, "%.46s", ref);
    free(reply);
}

static void *run_worker(void *arg) {
    worker *w = arg;
    conn c = {.fd = -1};
    reqbuf req = {0}, body = {0};
    response r = {0};
    bool keep_all = !G.discard || (G.out_file && w->id == 0);
    int64_t deadline = 0;

    conn_open(&c);
    for (;;) {
        int64_t t0, t1;
        bool ok, measuring;

        if (G.count > 0) {
            pthread_mutex_lock(&G.lock);
            ok = G.remaining > 0;
            if (ok)
                G.remaining--;
            pthread_mutex_unlock(&G.lock);
            if (!ok)
                break;
            measuring = true;
        } else {
            if (G.phase == 2)
                break;
            measuring = G.phase == 1;
            (void)deadline;
        }
        w->seq++;
        build_request(&req, &body, w);
        if (c.fd < 0)
            conn_open(&c);
        t0 = now_ns();
        if (send_all(&c, req.data, req.len) < 0 || read_response(&c, &r, keep_all) < 0) {
            t1 = now_ns();
            if (G.phase == 2 && G.count == 0)
                break; /* the run ended while this call was under way */
            fprintf(stderr, "loadgen: connection %d: transport error\n", w->id);
            w->errors++;
            conn_close(&c);
            continue;
        }
        t1 = now_ns();
        ok = r.status == 200 && r.body && memmem(r.body, r.kept, G.expect, strlen(G.expect));
        if (!ok) {
            if (w->errors < 3)
                fprintf(stderr, "loadgen: connection %d: HTTP %d: %.400s\n", w->id, r.status,
                        r.body ? r.body : "");
            w->errors++;
        }
        if (r.close)
            conn_close(&c);
        if (!measuring)
            continue;
        if (w->nlat == w->caplat) {
            w->caplat = w->caplat ? w->caplat * 2 : 65536;
            w->lat_us = realloc(w->lat_us, w->caplat * sizeof *w->lat_us);
            w->ttfb_us = realloc(w->ttfb_us, w->caplat * sizeof *w->ttfb_us);
            if (!w->lat_us || !w->ttfb_us)
                die("out of memory");
        }
        w->lat_us[w->nlat] = (uint32_t)((t1 - t0) / 1000);
        w->ttfb_us[w->nlat] = (uint32_t)((r.first_byte_ns - t0) / 1000);
        w->nlat++;
        w->bytes += r.body_len;
    }
    if (keep_all && r.body) {
        w->last_body = r.body;
        w->last_len = r.kept;
    } else
        free(r.body);
    conn_close(&c);
    free(c.rbuf);
    free(req.data);
    free(body.data);
    return NULL;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t pct(const uint32_t *v, size_t n, double p) {
    size_t i;
    if (!n)
        return 0;
    i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* This process's CPU time so far (all threads, user and system), in microseconds. */
static int64_t cpu_us(void) {
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return 0;
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen -p PORT [-H HOST] [-u PATH] [-c CONNS] (-d SECONDS | -n COUNT)\n"
                    "               (-b BODY | -f FILE) [-e EXPECT] [-j] [-L USER:PASS] [-r REFS_FILE]\n"
                    "               [-w WARMUP_SECONDS] [-o OUT_FILE] [-D] [-l LABEL] [-t]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *userpass = NULL, *refs_file = NULL;
    worker *ws;
    int opt;
    int64_t t0, t1 = 0, c0, c1 = 0;
    size_t total = 0, k = 0;
    long errors = 0;
    uint64_t bytes = 0, sum = 0;
    uint32_t *lat, *ttfb;
    double secs;

    while ((opt = getopt(argc, argv, "H:p:u:c:d:n:b:f:e:jL:r:w:o:Dl:th")) != -1) {
        switch (opt) {
        case 'H': G.host = optarg; break;
        case 'p': G.port = atoi(optarg); break;
        case 'u': G.path = optarg; break;
        case 'c': G.conns = atoi(optarg); break;
        case 'd': G.duration = atof(optarg); break;
        case 'n': G.count = atol(optarg); break;
        case 'b': G.body = strdup(optarg); break;
        case 'f': G.body = read_file(optarg, NULL); break;
        case 'e': G.expect = optarg; break;
        case 'j': G.json = true; break;
        case 'L': userpass = optarg; break;
        case 'r': refs_file = optarg; break;
        case 'w': G.warmup = atof(optarg); break;
        case 'o': G.out_file = optarg; break;
        case 'D': G.discard = true; break;
        case 'l': G.label = optarg; break;
        case 't': G.tls = true; break;
        default: usage();
        }
    }
    if (G.port <= 0 || !G.body || (G.duration <= 0 && G.count <= 0) || G.conns < 1 || G.conns > MAX_CONNS)
        usage();
    if (!G.expect)
        G.expect = G.json ? "\"result\"" : "Success";
    if (G.tls && gnutls_certificate_allocate_credentials(&G.cred) < 0)
        die("gnutls: cannot allocate credentials");
    {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
        char portstr[16];
        snprintf(portstr, sizeof portstr, "%d", G.port);
        if (getaddrinfo(G.host, portstr, &hints, &res) != 0)
            die("cannot resolve %s", G.host);
        memcpy(&G.addr, res->ai_addr, res->ai_addrlen);
        G.addrlen = res->ai_addrlen;
        freeaddrinfo(res);
    }
    if (refs_file) {
        size_t len;
        char *data = read_file(refs_file, &len), *line, *save = NULL;
        G.refs = calloc(len / 2 + 2, sizeof *G.refs);
        for (line = strtok_r(data, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save))
            if (*line)
                G.refs[G.nrefs++] = line;
        if (!G.nrefs)
            die("%s has no refs", refs_file);
    }
    if (userpass)
        login(userpass);
    parse_template();
    pthread_mutex_init(&G.lock, NULL);
    G.remaining = G.count;
    G.phase = G.count > 0 || G.warmup <= 0 ? 1 : 0;

    ws = calloc((size_t)G.conns, sizeof *ws);
    t0 = now_ns();
    c0 = cpu_us();
    for (int i = 0; i < G.conns; i++) {
        ws[i].id = i;
        if (pthread_create(&ws[i].th, NULL, run_worker, &ws[i]) != 0)
            die("pthread_create failed");
    }
    if (G.count <= 0) {
        struct timespec ts;
        if (G.warmup > 0) {
            ts.tv_sec = (time_t)G.warmup;
            ts.tv_nsec = (long)((G.warmup - (double)ts.tv_sec) * 1e9);
            nanosleep(&ts, NULL);
            t0 = now_ns();
            c0 = cpu_us();
            G.phase = 1;
        }
        ts.tv_sec = (time_t)G.duration;
        ts.tv_nsec = (long)((G.duration - (double)ts.tv_sec) * 1e9);
        nanosleep(&ts, NULL);
        G.phase = 2;
        t1 = now_ns();
        c1 = cpu_us();
    }
    for (int i = 0; i < G.conns; i++)
        pthread_join(ws[i].th, NULL);
    if (G.count > 0) {
        t1 = now_ns();
        c1 = cpu_us();
    }
    secs = (double)(t1 - t0) / 1e9;

    for (int i = 0; i < G.conns; i++) {
        total += ws[i].nlat;
        errors += ws[i].errors;
        bytes += ws[i].bytes;
    }
    lat = malloc((total + 1) * sizeof *lat);
    ttfb = malloc((total + 1) * sizeof *ttfb);
    for (int i = 0; i < G.conns; i++) {
        memcpy(lat + k, ws[i].lat_us, ws[i].nlat * sizeof *lat);
        memcpy(ttfb + k, ws[i].ttfb_us, ws[i].nlat * sizeof *ttfb);
        k += ws[i].nlat;
    }
    for (size_t i = 0; i < total; i++)
        sum += lat[i];
    qsort(lat, total, sizeof *lat, cmp_u32);
    qsort(ttfb, total, sizeof *ttfb, cmp_u32);
    if (G.out_file && ws[0].last_body) {
        FILE *f = fopen(G.out_file, "wb");
        if (!f || fwrite(ws[0].last_body, 1, ws[0].last_len, f) != ws[0].last_len || fclose(f) != 0)
            die("cannot write %s", G.out_file);
    }
    printf("label=%s conns=%d requests=%zu errors=%ld seconds=%.3f rps=%.1f p50_us=%u p90_us=%u p99_us=%u "
           "max_us=%u mean_us=%.0f ttfb_p50_us=%u bytes_per_reply=%.0f cpu_us_per_req=%.1f\n",
           G.label, G.conns, total, errors, secs, secs > 0 ? (double)total / secs : 0.0, pct(lat, total, 0.50),
           pct(lat, total, 0.90), pct(lat, total, 0.99), total ? lat[total - 1] : 0,
           total ? (double)sum / (double)total : 0.0, pct(ttfb, total, 0.50),
           total ? (double)bytes / (double)total : 0.0, total ? (double)(c1 - c0) / (double)total : 0.0);
    fflush(stdout);
    return errors ? 1 : 0;
}
