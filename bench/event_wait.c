/* event.from delivery latency, measured in C so that the client adds no
 * noise: S threads each send event.from(["pool"], TOKEN, 30) on their own
 * connection and block; once all are waiting, the main thread changes the
 * pool with CHANGE_BODY on another connection and each thread notes when its
 * full answer arrived. Prints p50/p99 of (answer time - change time) in ms.
 *
 * Usage: event_wait PORT SESSION TOKEN POOL_REF SUBSCRIBERS */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SUBSCRIBERS 1024
#define RESPONSE_MAX (256 << 10)

static int port;
static char request[8192];
static size_t request_len;
static double answered_at[MAX_SUBSCRIBERS];
static int answered_ok[MAX_SUBSCRIBERS];
static pthread_barrier_t barrier;

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

/* Reads one whole HTTP response (Content-Length framing); returns whether it says Success. */
/* buf: RESPONSE_MAX bytes, allocated and touched before timing starts. */
static int read_response_into(int fd, char *buf) {
    size_t len = 0, need = 0;
    int ok = 0;

    for (;;) {
        ssize_t n = read(fd, buf + len, RESPONSE_MAX - 1 - len);
        char *hdr_end, *cl;
        if (n <= 0)
            break;
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
    ok = strstr(buf, "Success") != NULL && strstr(buf, "<name>events</name><value><array><data><value>") != NULL;
    return ok;
}

static int read_response(int fd) {
    char *buf = calloc(1, RESPONSE_MAX);
    int ok = read_response_into(fd, buf);
    free(buf);
    return ok;
}

static void *subscriber(void *arg) {
    long i = (long)arg;
    int fd = connect_local();
    char *buf = calloc(1, RESPONSE_MAX); /* the client's own allocation stays out of the measurement */

    pthread_barrier_wait(&barrier);
    if (write(fd, request, request_len) != (ssize_t)request_len)
        return NULL;
    answered_ok[i] = read_response_into(fd, buf);
    free(buf);
    answered_at[i] = now_ms();
    close(fd);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    char body[4096], change[8192];
    pthread_t th[MAX_SUBSCRIBERS];
    double t0, lat[MAX_SUBSCRIBERS];
    int n, nok = 0, fd;
    size_t change_len;

    if (argc != 6) {
        fprintf(stderr, "usage: event_wait PORT SESSION TOKEN POOL_REF SUBSCRIBERS\n");
        return 2;
    }
    port = atoi(argv[1]);
    n = atoi(argv[5]);
    if (n < 1 || n > MAX_SUBSCRIBERS)
        return 2;
    snprintf(body, sizeof body,
             "<?xml version=\"1.0\"?><methodCall><methodName>event.from</methodName><params>"
             "<param><value>%s</value></param><param><value><array><data><value>pool</value></data></array></value></param>"
             "<param><value>%s</value></param><param><value><double>30</double></value></param></params></methodCall>",
             argv[2], argv[3]);
    request_len = build_post(request, sizeof request, body);
    snprintf(body, sizeof body,
             "<?xml version=\"1.0\"?><methodCall><methodName>pool.set_name_description</methodName><params>"
             "<param><value>%s</value></param><param><value>%s</value></param><param><value>bench %d</value></param>"
             "</params></methodCall>",
             argv[2], argv[4], getpid());
    change_len = build_post(change, sizeof change, body);

    pthread_barrier_init(&barrier, NULL, (unsigned)n + 1);
    for (long i = 0; i < n; i++)
        pthread_create(&th[i], NULL, subscriber, (void *)i);
    fd = connect_local();
    pthread_barrier_wait(&barrier);
    usleep(500000); /* every subscriber is now blocked in event.from */
    t0 = now_ms();
    if (write(fd, change, change_len) != (ssize_t)change_len)
        return 1;
    if (!strstr(change, "set_name_description") || read_response(fd) < 0)
        return 1;
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++)
        if (answered_ok[i])
            lat[nok++] = answered_at[i] - t0;
    qsort(lat, (size_t)nok, sizeof lat[0], cmp);
    printf("delivered %d/%d p50 %.2f ms p99 %.2f ms max %.2f ms\n", nok, n, nok ? lat[nok / 2] : -1.0,
           nok ? lat[(nok * 99) / 100 < nok ? (nok * 99) / 100 : nok - 1] : -1.0, nok ? lat[nok - 1] : -1.0);
    return nok == n ? 0 : 1;
}
