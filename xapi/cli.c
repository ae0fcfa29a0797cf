/* POST /cli: xapi's thin CLI protocol (see cli.h). The server speaks first, without an HTTP
 * status line: "XenSource thin CLI protocol", major 0, minor 2 (int32 little-endian each); the
 * client answers the same. Then every message is an int32 length and a payload of int32 tags
 * and strings (int32 length + bytes): Command (9) Print (0) / PrintStderr (16) / Exit (4).
 * The same over TLS (a stock `xe -s HOST` talks to port 443): the bytes go in its records. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/log.h"
#include "xapi/accounts.h"
#include "xapi/buf.h"
#include "xapi/cli.h"
#include "xapi/http.h"
#include "xapi/session.h"
#include "xapi/store.h"

#define CLI_PREFIX "XenSource thin CLI protocol"
#define CLI_MAJOR 0
#define CLI_MINOR 2
#define CLI_MAX_ARGS 256
#define CLI_MAX_OUTPUT (64u << 20) /* stdout + stderr of one command */
#define CLI_TIMEOUT_S 600           /* a command that takes longer is killed */
#define CLI_IO_TIMEOUT_S 30         /* the client's handshake and its reading of our writes */

enum { MSG_COMMAND = 9, CMD_PRINT = 0, CMD_EXIT = 4, CMD_PRINT_STDERR = 16 };

static void put_int(xapi_buf *b, uint32_t v) {
    unsigned char le[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};

    xapi_buf_append(b, (const char *)le, 4);
}

/* Waits until t can go on in direction events: 0, or -ETIMEDOUT past deadline (ms, monotonic). */
static int wait_ready(xapi_http_tunnel *t, short events, int64_t deadline) {
    struct pollfd p = {.fd = xapi_http_tunnel_fd(t), .events = events};
    int64_t left;

    if (events == POLLIN && xapi_http_tunnel_pending(t))
        return 0;
    for (;;) {
        left = deadline - xapi_now_ns() / 1000000;
        if (left <= 0)
            return -ETIMEDOUT;
        if (poll(&p, 1, (int)left) > 0 || errno != EINTR)
            return 0;
    }
}

/* Both bounded by CLI_IO_TIMEOUT_S: a client that stops reading or writing holds only its own thread. */
static int write_all(xapi_http_tunnel *t, const char *p, size_t n) {
    int64_t deadline = xapi_now_ns() / 1000000 + CLI_IO_TIMEOUT_S * 1000;

    while (n) {
        ssize_t w = xapi_http_tunnel_send(t, p, n);

        if (w == -EAGAIN) {
            if (wait_ready(t, POLLOUT, deadline) < 0)
                return -ETIMEDOUT;
            continue; /* TLS: again with the same bytes */
        }
        if (w <= 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(xapi_http_tunnel *t, char *p, size_t n) {
    int64_t deadline = xapi_now_ns() / 1000000 + CLI_IO_TIMEOUT_S * 1000;

    while (n) {
        ssize_t r = xapi_http_tunnel_recv(t, p, n);

        if (r == -EAGAIN) {
            if (wait_ready(t, POLLIN, deadline) < 0)
                return -ETIMEDOUT;
            continue;
        }
        if (r <= 0)
            return -EIO;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Appends one Command message: tag, then a string (s != NULL) or an int. */
static void put_command(xapi_buf *b, uint32_t tag, const char *s, size_t len, uint32_t value) {
    put_int(b, 4 + 4 + (s ? 4 + (uint32_t)len : 4));
    put_int(b, MSG_COMMAND);
    put_int(b, tag);
    if (s) {
        put_int(b, (uint32_t)len);
        xapi_buf_append(b, s, len);
    } else {
        put_int(b, value);
    }
}

void xapi_cli_xe_path(char *out, size_t size) {
    char self[PATH_MAX - 16];
    ssize_t n;

    /* Also keeps GCC's sanitizer build from seeing a NULL out (-Wformat-truncation). */
    if (!out || size == 0)
        return;
    n = readlink("/proc/self/exe", self, sizeof self - 1);

    if (n > 0) {
        char *slash;

        self[n] = 0;
        slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(out, size, "%s/xe", self);
            if (access(out, X_OK) == 0)
                return;
            snprintf(out, size, "%s/../bin/xe", self);
            if (access(out, X_OK) == 0)
                return;
        }
    }
    snprintf(out, size, "/usr/bin/xe");
}

/* Runs xe with argv, its stdout and stderr read into out/err (bounded): the exit status, or -errno. */
static int run_xe(const agent_config *cfg, char **argv, xapi_buf *out, xapi_buf *err) {
    char xe[PATH_MAX], sock_env[PATH_MAX + 32];
    char *envp[] = {sock_env, (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C.UTF-8", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none;
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, status = 0, rc;
    pid_t pid = -1;
    time_t deadline = time(NULL) + CLI_TIMEOUT_S;

    xapi_cli_xe_path(xe, sizeof xe);
    argv[0] = xe;
    snprintf(sock_env, sizeof sock_env, "XE_LOCAL_SOCKET=%s", cfg->unix_socket ? cfg->unix_socket : "");
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        rc = -errno;
        goto out;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
    rc = -posix_spawn(&pid, xe, &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    if (rc < 0)
        goto out;
    for (int open_fds = 2; open_fds > 0;) {
        struct pollfd pf[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
        char chunk[65536];

        if (time(NULL) > deadline || out->len + err->len > CLI_MAX_OUTPUT) {
            kill(-pid, SIGKILL);
            break;
        }
        if (poll(pf, 2, 1000) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            ssize_t n;

            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            n = read(pf[i].fd, chunk, sizeof chunk);
            if (n > 0) {
                xapi_buf_append(i ? err : out, chunk, (size_t)n);
            } else if (n == 0 || errno != EINTR) {
                close(i ? pe[0] : po[0]);
                if (i)
                    pe[0] = -1;
                else
                    po[0] = -1;
                open_fds--;
            }
        }
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
out:
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    return rc;
}

static bool authorized(xapi_server *srv, const xapi_peer *peer, const char *session, const char *user,
                       const char *password) {
    const agent_config *cfg = srv->config;

    if (peer->local_root)
        return true;
    if (session && xapi_session_check(srv, session) == 0) {
        const xapi_obj *o;
        bool super = false;

        xapi_store_rdlock(srv->store);
        o = xapi_store_get_class(srv->store, xapi_class_by_name("session"), session);
        super = o && o->fields[XAPI_F_session_is_local_superuser].b;
        xapi_store_rdunlock(srv->store);
        if (super)
            return true;
    }
    /* The command runs as root over the local socket: only root's password opens it. */
    if (user && password && strcmp(user, "root") == 0 && xapi_accounts_verify(cfg->accounts_file, user, password))
        return true;
    {
        struct timespec ts = {cfg->auth_fail_delay_ms / 1000, (long)(cfg->auth_fail_delay_ms % 1000) * 1000000L};
        log_notice("cli: authentication failed for user '%s'", user ? user : "");
        nanosleep(&ts, NULL);
    }
    return false;
}

static void serve(xapi_server *srv, const xapi_peer *peer, const char *body, size_t len, xapi_http_tunnel *t) {
    char *copy = NULL, *argv[CLI_MAX_ARGS + 2];
    const char *user = NULL, *password = NULL, *session = NULL;
    char hello[sizeof CLI_PREFIX - 1 + 8];
    xapi_buf msg = {0}, out = {0}, err = {0};
    unsigned argc = 1;
    int flags, status;

    /* The waits are ours (poll with a deadline), whatever mode MHD left the socket in. */
    flags = fcntl(xapi_http_tunnel_fd(t), F_GETFL);
    if (flags >= 0)
        fcntl(xapi_http_tunnel_fd(t), F_SETFL, flags | O_NONBLOCK);
    xapi_buf_append(&msg, CLI_PREFIX, sizeof CLI_PREFIX - 1);
    put_int(&msg, CLI_MAJOR);
    put_int(&msg, CLI_MINOR);
    if (write_all(t, msg.data, msg.len) < 0 || read_all(t, hello, sizeof hello) < 0 ||
        memcmp(hello, CLI_PREFIX, sizeof CLI_PREFIX - 1) != 0 || hello[sizeof CLI_PREFIX - 1] != CLI_MAJOR) {
        log_info("cli: not a thin CLI client, or another major version");
        goto out;
    }
    xapi_buf_truncate(&msg, 0);
    /* The words, one a line (a trailing \r dropped); credentials and session are ours. */
    copy = strndup(body, len);
    if (!copy)
        goto out;
    for (char *line = copy, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        line[strcspn(line, "\r")] = 0;
        if (strncmp(line, "username=", 9) == 0)
            user = line + 9;
        else if (strncmp(line, "password=", 9) == 0)
            password = line + 9;
        else if (argc == 1 && !session && strncmp(line, "session_id=", 11) == 0)
            session = line + 11;
        else if (*line && argc <= CLI_MAX_ARGS)
            argv[argc++] = line;
    }
    argv[argc] = NULL;
    if (!authorized(srv, peer, session, user, password)) {
        static const char text[] = "Authentication failed\nFor usage run: 'xe help'\n";
        put_command(&msg, CMD_PRINT_STDERR, text, sizeof text - 1, 0);
        status = 1;
    } else if (argc == 1) {
        static const char text[] = "Syntax error: \nFor usage run: 'xe help'\n";
        put_command(&msg, CMD_PRINT_STDERR, text, sizeof text - 1, 0);
        status = 1;
    } else {
        status = run_xe(srv->config, argv, &out, &err);
        if (status < 0) {
            static const char text[] = "Failed to contact a running management agent.\n";
            log_error("cli: cannot run xe: %s", strerror(-status));
            put_command(&msg, CMD_PRINT_STDERR, text, sizeof text - 1, 0);
            status = 1;
        }
        /* The client prints a Print and a newline: xe's last newline is that one. */
        if (out.len)
            put_command(&msg, CMD_PRINT, out.data, out.data[out.len - 1] == '\n' ? out.len - 1 : out.len, 0);
        if (err.len)
            put_command(&msg, CMD_PRINT_STDERR, err.data, err.len, 0);
    }
    put_command(&msg, CMD_EXIT, NULL, 0, (uint32_t)status);
    (void)write_all(t, msg.data, msg.len);
out:
    free(copy);
    xapi_buf_free(&msg);
    xapi_buf_free(&out);
    xapi_buf_free(&err);
}

void xapi_cli_register(void) {
    xapi_http_register_raw_post("/cli", serve);
}
