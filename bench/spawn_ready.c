/* spawn_ready: starts a server and measures how long it takes to listen.
 *
 *   spawn_ready -p PORT [-o LOG_FILE] [-s SETTLE_MS] -- COMMAND [ARGS...]
 *
 * Forks and execs COMMAND (stdout and stderr to LOG_FILE, default /dev/null),
 * then tries to connect to 127.0.0.1:PORT every 100 microseconds. Once a
 * connection succeeds it waits SETTLE_MS (default 100) and prints
 *   pid=N ready_ms=T rss_kb=R hwm_kb=H
 * where T runs from just before fork() to the first accepted connection, and R
 * and H are VmRSS and VmHWM of the server from /proc/N/status. The server
 * is left running (stop it with kill N). Exits 1 if the server exits or is not
 * listening within 60 s. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static long status_kb(pid_t pid, const char *key) {
    char path[64], line[256];
    size_t kl = strlen(key);
    long v = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = atol(line + kl + 1);
            break;
        }
    fclose(f);
    return v;
}

int main(int argc, char **argv) {
    const char *log = "/dev/null";
    int port = 0, settle_ms = 100, opt;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    long long t0, t1;
    pid_t pid;

    while ((opt = getopt(argc, argv, "+p:o:s:")) != -1) {
        if (opt == 'p')
            port = atoi(optarg);
        else if (opt == 'o')
            log = optarg;
        else if (opt == 's')
            settle_ms = atoi(optarg);
        else {
            fprintf(stderr, "usage: spawn_ready -p PORT [-o LOG] [-s SETTLE_MS] -- COMMAND [ARGS...]\n");
            return 2;
        }
    }
    if (port <= 0 || optind >= argc) {
        fprintf(stderr, "usage: spawn_ready -p PORT [-o LOG] [-s SETTLE_MS] -- COMMAND [ARGS...]\n");
        return 2;
    }
    sa.sin_port = htons((uint16_t)port);
    t0 = now_us();
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setsid(); /* outlives us; run.sh stops it by pid */
        execvp(argv[optind], argv + optind);
        _exit(127);
    }
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), st;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(fd);
            break;
        }
        close(fd);
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "spawn_ready: %s exited before listening (status %d)\n", argv[optind], st);
            return 1;
        }
        if (now_us() - t0 > 60000000LL) {
            fprintf(stderr, "spawn_ready: %s not listening after 60 s\n", argv[optind]);
            return 1;
        }
        usleep(100);
    }
    t1 = now_us();
    usleep((useconds_t)settle_ms * 1000);
    printf("pid=%d ready_ms=%.1f rss_kb=%ld hwm_kb=%ld\n", (int)pid, (double)(t1 - t0) / 1000.0,
           status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM"));
    return 0;
}
