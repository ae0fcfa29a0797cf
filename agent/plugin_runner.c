/* Host plugin runner. See plugin_runner.h.
 *
 * posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK), no fork of a big
 * multithreaded process, exec errors returned to the caller) with file actions
 * that give the child /dev/null, the two pipes and nothing else (closefrom 3),
 * and attributes that reset what the daemon set for itself (blocked signals,
 * SIGPIPE ignored). The pipes are O_CLOEXEC, so children other threads start
 * meanwhile (libxl's) do not keep them open. The end is seen through a pidfd,
 * so a grandchild holding stdout open does not keep the call waiting. */
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/plugin_runner.h"
#include "xapi/buf.h"
#include "xapi/out.h"

#define READ_CHUNK 65536
#define DRAIN_CHUNKS 16

bool agent_plugin_name_ok(const char *name) {
    size_t n = name ? strlen(name) : 0;

    return n > 0 && n <= NAME_MAX && name[0] != '.' && !strchr(name, '/');
}

void agent_plugin_reply_free(agent_plugin_reply *r) {
    if (!r)
        return;
    free(r->out);
    free(r->err);
    *r = (agent_plugin_reply){0};
}

/* argv[1] as xapi writes it: no XML declaration, strings as untyped <value>s. */
static void encode_call(const agent_plugin_request *req, xapi_buf *b) {
    XAPI_BUF_LIT(b, "<methodCall><methodName>");
    xapi_xml_escape(b, req->fn, strlen(req->fn));
    XAPI_BUF_LIT(b, "</methodName><params><param><value>");
    xapi_xml_escape(b, req->session, strlen(req->session));
    XAPI_BUF_LIT(b, "</value></param><param><value><struct>");
    for (const char *const *a = req->args; a && a[0] && a[1]; a += 2) {
        XAPI_BUF_LIT(b, "<member><name>");
        xapi_xml_escape(b, a[0], strlen(a[0]));
        XAPI_BUF_LIT(b, "</name><value>");
        xapi_xml_escape(b, a[1], strlen(a[1]));
        XAPI_BUF_LIT(b, "</value></member>");
    }
    XAPI_BUF_LIT(b, "</struct></value></param></params></methodCall>");
}

static int64_t now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int spawn(const char *path, char *const argv[], char *const envp[], int out_w, int err_w, pid_t *ret_pid) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    int rc;

    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, out_w, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, err_w, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
    posix_spawn_file_actions_addchdir_np(&fa, "/");
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    rc = -posix_spawn(ret_pid, path, &fa, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

/* Reads what is there, at most DRAIN_CHUNKS chunks (a writer that never stops
 * cannot keep us here); returns 1 at EOF, 0 otherwise. Beyond max, stderr is
 * dropped; stdout sets *too_big. */
static int drain(int fd, xapi_buf *b, size_t max, bool *too_big) {
    char chunk[READ_CHUNK];

    for (unsigned chunks = 0; chunks < DRAIN_CHUNKS; chunks++) {
        ssize_t n = read(fd, chunk, sizeof chunk);

        if (n == 0)
            return 1;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? 0 : 1;
        if (b->len + (size_t)n > max) {
            xapi_buf_append(b, chunk, max - b->len);
            if (too_big) {
                *too_big = true;
                return 0;
            }
            continue;
        }
        xapi_buf_append(b, chunk, (size_t)n);
    }
    return 0;
}

int agent_plugin_run(const agent_plugin_request *req, agent_plugin_reply *ret) {
    xapi_buf call = XAPI_BUF_INIT, out = XAPI_BUF_INIT, err = XAPI_BUF_INIT;
    char *path = NULL;
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, pidfd = -1;
    pid_t pid = -1;
    agent_plugin_end end = AGENT_PLUGIN_EXITED;
    bool out_eof = false, err_eof = false, too_big = false, exited = false;
    int64_t deadline, next_stop_check;
    struct stat st;
    int ws = 0, rc;

    if (!agent_plugin_name_ok(req->name))
        return -ENOENT;
    if (asprintf(&path, "%s/%s", req->dir, req->name) < 0)
        xapi_oom();
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = -ENOENT;
        goto out;
    }
    if (access(path, X_OK) < 0) {
        rc = -EACCES;
        goto out;
    }
    encode_call(req, &call);
    if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
        rc = -errno;
        goto out;
    }
    {
        char *argv[] = {path, call.data, NULL};
        rc = spawn(path, argv, (char *const *)req->env, out_pipe[1], err_pipe[1], &pid);
    }
    if (rc < 0) {
        pid = -1;
        *ret = (agent_plugin_reply){.end = AGENT_PLUGIN_NOT_STARTED, .status = -rc, .out = xapi_strdup(""),
                                    .err = xapi_strdup("")};
        rc = 0;
        goto out;
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    out_pipe[1] = err_pipe[1] = -1;
    fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* -1 on old kernels: then waitpid is polled */

    deadline = now_ms() + req->timeout_ms;
    next_stop_check = now_ms() + AGENT_PLUGIN_POLL_MS;
    while (!exited) {
        struct pollfd fds[3] = {{out_eof ? -1 : out_pipe[0], POLLIN, 0},
                                {err_eof ? -1 : err_pipe[0], POLLIN, 0},
                                {pidfd, POLLIN, 0}};
        int64_t now = now_ms(), wait = deadline - now;

        if (wait <= 0) {
            end = AGENT_PLUGIN_TIMED_OUT;
            break;
        }
        if (req->stop && now >= next_stop_check) {
            if (req->stop(req->opaque)) {
                end = AGENT_PLUGIN_STOPPED;
                break;
            }
            next_stop_check = now + AGENT_PLUGIN_POLL_MS;
        }
        if (req->stop && wait > next_stop_check - now)
            wait = next_stop_check - now;
        if (pidfd < 0 && wait > 10)
            wait = 10;
        if (poll(fds, 3, (int)wait) < 0 && errno != EINTR) {
            rc = -errno;
            goto out;
        }
        if (fds[2].revents || (pidfd < 0 && waitpid(pid, &ws, WNOHANG) == pid)) {
            exited = true; /* what it wrote before it ended is in the pipes: read it all below */
            if (pidfd >= 0)
                waitpid(pid, &ws, 0);
        }
        if (!out_eof && (fds[0].revents || exited))
            out_eof = drain(out_pipe[0], &out, req->max_output, &too_big);
        if (!err_eof && (fds[1].revents || exited))
            err_eof = drain(err_pipe[0], &err, AGENT_PLUGIN_MAX_STDERR, NULL);
        if (too_big) {
            end = AGENT_PLUGIN_OUTPUT_TOO_BIG;
            break;
        }
    }
    if (!exited) {
        kill(-pid, SIGKILL); /* the whole group: what the plugin started goes too */
        waitpid(pid, &ws, 0);
        drain(err_pipe[0], &err, AGENT_PLUGIN_MAX_STDERR, NULL);
    } else if (WIFSIGNALED(ws)) {
        end = AGENT_PLUGIN_SIGNALED;
    }
    pid = -1;

    ret->end = end;
    ret->status = end == AGENT_PLUGIN_SIGNALED ? WTERMSIG(ws) : end == AGENT_PLUGIN_EXITED ? WEXITSTATUS(ws) : 0;
    ret->out = xapi_buf_steal(&out, &ret->out_len);
    ret->err = xapi_buf_steal(&err, &ret->err_len);
    rc = 0;
out:
    if (pid > 0) {
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (pidfd >= 0)
        close(pidfd);
    for (int i = 0; i < 2; i++) {
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
    }
    xapi_buf_free(&call);
    xapi_buf_free(&out);
    xapi_buf_free(&err);
    free(path);
    return rc;
}
