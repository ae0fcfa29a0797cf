/* event.from delivery latency, measured in C so that the client adds no
 * noise: one thread holds S keep-alive connections, sends event.from(["pool"],
 * token, 30) on each and, once all are waiting, changes the pool on another
 * connection; epoll then notes when each full answer arrived. That is one
 * round; the next waits from the token the answers carried. Prints p50/p99
 * over all rounds of the time from the change's request, and from the
 * change's answer (its durable commit, which no event may precede), to each
 * subscriber's answer, in ms.
 *
 * Usage: event_wait PORT SESSION TOKEN POOL_REF SUBSCRIBERS [ROUNDS] */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SUBSCRIBERS 1024
#define MAX_ROUNDS 100
#define RESPONSE_MAX (256 << 10)
#define TOKEN_MAX 64
#define PAUSE_US 300000

static int port;
static const char *session;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int connect_local(void) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("connect");
        exit(2);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static size_t build_post(char *out, size_t cap, const char *body) {
    return (size_t)snprintf(out, cap,
                            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nContent-Length: %zu\r\n\r\n%s",
                            strlen(body), body);
}

static size_t build_event_from(char *out, size_t cap, const char *token) {
    char body[4096];

    snprintf(body, sizeof body,
             "<?xml version=\"1.0\"?><methodCall><methodName>event.from</methodName><params>"
             "<param><value>%s</value></param><param><value><array><data><value>pool</value></data></array></value></param>"
             "<param><value>%s</value></param><param><value><double>30</double></value></param></params></methodCall>",
             session, token);
    return build_post(out, cap, body);
}

/* Reads one whole HTTP response (Content-Length framing) into buf
 * (RESPONSE_MAX bytes, allocated and touched before timing starts); returns
 * whether it says Success and holds must_contain. */
static int read_response_into(int fd, char *buf, const char *must_contain) {
    size_t len = 0, need = 0;

    buf[0] = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, RESPONSE_MAX - 1 - len);
        char *hdr_end, *cl;
        if (n <= 0)
            return 0;
        len += (size_t)n;
        buf[len] = 0;
        hdr_end = strstr(buf, "\r\n\r\n");
        if (!hdr_end)
            continue;
        cl = strcasestr(buf, "Content-Length:");
        need = (size_t)(hdr_end + 4 - buf) + (cl ? strtoull(cl + 15, NULL, 10) : 0);
        if (len >= need)
            break;
    }
    return strstr(buf, "Success") != NULL && strstr(buf, must_contain) != NULL;
}

/* The token member of an event.from answer. */
static int token_of(const char *buf, char out[TOKEN_MAX]) {
    const char *p = strstr(buf, "<name>token</name><value>");
    const char *end;

    if (!p)
        return -1;
    p += strlen("<name>token</name><value>");
    if (strncmp(p, "<string>", 8) == 0)
        p += 8;
    end = strchr(p, '<');
    if (!end || end - p >= TOKEN_MAX)
        return -1;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = 0;
    return 0;
}

/* One subscriber's connection and the answer it is reading. */
typedef struct subscriber {
    int fd;
    char *buf; /* RESPONSE_MAX bytes, allocated and touched before timing starts */
    size_t len;
    char token[TOKEN_MAX];
} subscriber;

/* Whether buf holds a whole HTTP response (Content-Length framing). */
static int response_complete(const char *buf, size_t len) {
    const char *hdr_end = strstr(buf, "\r\n\r\n"), *cl;

    if (!hdr_end)
        return 0;
    cl = strcasestr(buf, "Content-Length:");
    return len >= (size_t)(hdr_end + 4 - buf) + (cl ? strtoull(cl + 15, NULL, 10) : 0);
}

static int p99_index(int n) {
    return (n * 99) / 100 < n ? (n * 99) / 100 : n - 1;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    static double lat[MAX_ROUNDS * MAX_SUBSCRIBERS], after_ack[MAX_ROUNDS * MAX_SUBSCRIBERS], idle_read[MAX_ROUNDS];
    static double round_lat[MAX_SUBSCRIBERS], round_p99[MAX_ROUNDS];
    static subscriber subs[MAX_SUBSCRIBERS];
    char body[4096], change[8192], request[8192], *buf = calloc(1, RESPONSE_MAX);
    double t0, t_ack, commit_ms = 0;
    int n, rounds = 1, nok = 0, nbad = 0, fd, ep;
    size_t answer_bytes = 0;

    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: event_wait PORT SESSION TOKEN POOL_REF SUBSCRIBERS [ROUNDS]\n");
        return 2;
    }
    port = atoi(argv[1]);
    session = argv[2];
    n = atoi(argv[5]);
    if (argc == 7)
        rounds = atoi(argv[6]);
    if (n < 1 || n > MAX_SUBSCRIBERS || rounds < 1 || rounds > MAX_ROUNDS || strlen(argv[3]) >= TOKEN_MAX)
        return 2;
    ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        subs[i].fd = connect_local();
        subs[i].buf = calloc(1, RESPONSE_MAX);
        snprintf(subs[i].token, sizeof subs[i].token, "%s", argv[3]);
        epoll_ctl(ep, EPOLL_CTL_ADD, subs[i].fd, &ev);
    }
    fd = connect_local();
    /* Baseline, same pause: what a call that only reads costs when it wakes an idle machine. */
    for (int r = 0; r < rounds; r++) {
        snprintf(body, sizeof body,
                 "<?xml version=\"1.0\"?><methodCall><methodName>pool.get_name_label</methodName><params>"
                 "<param><value>%s</value></param><param><value>%s</value></param></params></methodCall>",
                 session, argv[4]);
        build_post(change, sizeof change, body);
        usleep(PAUSE_US);
        t0 = now_ms();
        if (write_all(fd, change, strlen(change)) < 0 || !read_response_into(fd, buf, "<methodResponse>"))
            return 1;
        idle_read[r] = now_ms() - t0;
    }
    for (int r = 0; r < rounds; r++) {
        int pending = n, round_first = nok;

        for (int i = 0; i < n; i++) {
            size_t len = build_event_from(request, sizeof request, subs[i].token);
            subs[i].len = 0;
            subs[i].buf[0] = 0;
            if (write_all(subs[i].fd, request, len) < 0)
                return 1;
        }
        snprintf(body, sizeof body,
                 "<?xml version=\"1.0\"?><methodCall><methodName>pool.set_name_description</methodName><params>"
                 "<param><value>%s</value></param><param><value>%s</value></param><param><value>bench %d %d</value>"
                 "</param></params></methodCall>",
                 session, argv[4], getpid(), r);
        build_post(change, sizeof change, body);
        usleep(PAUSE_US); /* every subscriber is now blocked in event.from */
        t0 = now_ms();
        if (write_all(fd, change, strlen(change)) < 0 || !read_response_into(fd, buf, "<methodResponse>"))
            return 1;
        t_ack = now_ms();
        commit_ms += t_ack - t0;
        while (pending > 0) {
            struct epoll_event evs[64];
            int k = epoll_wait(ep, evs, 64, 30000);
            if (k <= 0)
                return 1;
            for (int e = 0; e < k; e++) {
                subscriber *sb = &subs[evs[e].data.u32];
                ssize_t got = read(sb->fd, sb->buf + sb->len, RESPONSE_MAX - 1 - sb->len);
                double t = now_ms();
                if (got <= 0)
                    return 1;
                sb->len += (size_t)got;
                sb->buf[sb->len] = 0;
                if (!response_complete(sb->buf, sb->len))
                    continue;
                pending--;
                answer_bytes = sb->len;
                if (strstr(sb->buf, "Success") && strstr(sb->buf, "<name>events</name><value><array><data><value>") &&
                    token_of(sb->buf, sb->token) == 0) {
                    after_ack[nok] = t - t_ack;
                    lat[nok++] = t - t0;
                } else
                    nbad++;
            }
        }
        /* One change: the p99 over its subscribers (the goal's measure), from the request. */
        if (nok > round_first) {
            int m = nok - round_first;
            memcpy(round_lat, lat + round_first, (size_t)m * sizeof round_lat[0]);
            qsort(round_lat, (size_t)m, sizeof round_lat[0], cmp);
            round_p99[r] = round_lat[p99_index(m)];
        }
    }
    qsort(round_p99, (size_t)rounds, sizeof round_p99[0], cmp);
    qsort(lat, (size_t)nok, sizeof lat[0], cmp);
    qsort(after_ack, (size_t)nok, sizeof after_ack[0], cmp);
    qsort(idle_read, (size_t)rounds, sizeof idle_read[0], cmp);
    printf("baseline: a read-only call after the same pause p50 %.2f ms p99 %.2f ms\n", idle_read[rounds / 2],
           idle_read[p99_index(rounds)]);
    printf("answer: %zu bytes\n", answer_bytes);
    printf("delivered %d/%d; from the change's request p50 %.2f ms p99 %.2f ms max %.2f ms; "
           "change committed in %.2f ms (mean); from the commit p50 %.2f ms p99 %.2f ms max %.2f ms\n",
           nok, n * rounds, nok ? lat[nok / 2] : -1.0, nok ? lat[p99_index(nok)] : -1.0, nok ? lat[nok - 1] : -1.0,
           commit_ms / rounds, nok ? after_ack[nok / 2] : -1.0, nok ? after_ack[p99_index(nok)] : -1.0,
           nok ? after_ack[nok - 1] : -1.0);
    printf("per change (p99 over its %d subscribers, from the request): median change %.2f ms, best %.2f ms, "
           "worst %.2f ms\n",
           n, round_p99[rounds / 2], round_p99[0], round_p99[rounds - 1]);
    free(buf);
    return nok == n * rounds && nbad == 0 ? 0 : 1;
}
