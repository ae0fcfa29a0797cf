/* The machine's floor for event.from delivery: S threads, each owning one
 * loopback TCP connection, sleep on one futex word (as xenapid's event
 * waiters do); a wake-up of all of them makes each write BYTES to its
 * connection, and one epoll client notes when each answer is complete. No
 * HTTP, no parsing, no store: what waking S threads and moving S answers
 * costs here, to read xenapid's delivery times against. Same pause between
 * rounds as event_wait, so the machine is equally idle when a round starts.
 *
 * Usage: fanout_floor SUBSCRIBERS BYTES [ROUNDS] */
#include <arpa/inet.h>
#include <limits.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_SUBSCRIBERS 1024
#define MAX_ROUNDS 100
#define PAUSE_US 300000

static _Atomic uint32_t wake_word;
static int server_fd[MAX_SUBSCRIBERS];
static char *payload;
static size_t payload_len;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *waiter(void *arg) {
    long i = (long)arg;

    for (;;) {
        uint32_t seen = atomic_load(&wake_word);
        const char *p = payload;
        size_t left = payload_len;

        syscall(SYS_futex, &wake_word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
        if (atomic_load(&wake_word) == seen)
            continue; /* spurious */
        while (left > 0) {
            ssize_t n = write(server_fd[i], p, left);
            if (n <= 0)
                return NULL;
            p += n;
            left -= (size_t)n;
        }
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    static int client_fd[MAX_SUBSCRIBERS];
    static size_t got[MAX_SUBSCRIBERS];
    static double lat[MAX_ROUNDS * MAX_SUBSCRIBERS];
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t salen = sizeof sa;
    int n, rounds = 30, k = 0, listener, ep, one = 1;
    char *buf;

    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: fanout_floor SUBSCRIBERS BYTES [ROUNDS]\n");
        return 2;
    }
    n = atoi(argv[1]);
    payload_len = (size_t)atol(argv[2]);
    if (argc == 4)
        rounds = atoi(argv[3]);
    if (n < 1 || n > MAX_SUBSCRIBERS || payload_len < 1 || payload_len > (1 << 20) || rounds < 1 || rounds > MAX_ROUNDS)
        return 2;
    payload = calloc(1, payload_len);
    buf = malloc(1 << 20);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&sa, sizeof sa) < 0 || getsockname(listener, (struct sockaddr *)&sa, &salen) < 0 ||
        listen(listener, 1024) < 0) {
        perror("listen");
        return 2;
    }
    ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        client_fd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(client_fd[i], (struct sockaddr *)&sa, sizeof sa) < 0 || (server_fd[i] = accept(listener, NULL, NULL)) < 0) {
            perror("connect");
            return 2;
        }
        setsockopt(server_fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        epoll_ctl(ep, EPOLL_CTL_ADD, client_fd[i], &ev);
    }
    for (long i = 0; i < n; i++) {
        pthread_t th;
        pthread_create(&th, NULL, waiter, (void *)i);
        pthread_detach(th);
    }
    for (int r = 0; r < rounds; r++) {
        int pending = n;
        double t0;

        memset(got, 0, sizeof got);
        usleep(PAUSE_US);
        t0 = now_ms();
        atomic_fetch_add(&wake_word, 1);
        syscall(SYS_futex, &wake_word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
        while (pending > 0) {
            struct epoll_event evs[64];
            int m = epoll_wait(ep, evs, 64, 10000);
            if (m <= 0)
                return 1;
            for (int e = 0; e < m; e++) {
                uint32_t i = evs[e].data.u32;
                ssize_t g = read(client_fd[i], buf, 1 << 20);
                if (g <= 0)
                    return 1;
                got[i] += (size_t)g;
                if (got[i] == payload_len) {
                    pending--;
                    lat[k++] = now_ms() - t0;
                }
            }
        }
    }
    qsort(lat, (size_t)k, sizeof lat[0], cmp);
    printf("floor: %d threads woken at once, each writing %zu bytes: p50 %.2f ms p99 %.2f ms max %.2f ms\n", n,
           payload_len, lat[k / 2], lat[(k * 99) / 100 < k ? (k * 99) / 100 : k - 1], lat[k - 1]);
    return 0;
}
