/* Runs a driver's external program (mount, umount, showmount) as an argv,
 * never through a shell, with a time limit: the store lock is not held, but
 * the operation waits, so a program that never ends (a mount of a server
 * that does not answer) must not hold it forever. The program is found on
 * the daemon's PATH and runs with a minimal environment, stdin /dev/null,
 * stdout and stderr read apart (bounded), in its own process group
 * (killed whole at the time limit). Used by the nfs and lvm drivers. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/log.h"
#include "storage/command.h"
#include "xapi/buf.h"
#include "xapi/value.h"
#include "storage/driver.h"

unsigned storage_io_timeout = 60;

static int64_t now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reaps pid, waiting at most wait_ms (a program stuck in the kernel may not die at once). */
static bool reap(pid_t pid, int *status, int wait_ms) {
    for (int waited = 0;; waited += 50) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return r == pid;
        if (waited >= wait_ms)
            return false;
        usleep(50000);
    }
}

/* The last non-empty line of a command's stderr, trimmed. */
static char *last_line(const xapi_buf *b) {
    size_t end = b->len, start;

    while (end > 0 && (b->data[end - 1] == '\n' || b->data[end - 1] == ' '))
        end--;
    start = end;
    while (start > 0 && b->data[start - 1] != '\n')
        start--;
    while (start < end && b->data[start] == ' ')
        start++;
    return xapi_strndup(b->data ? b->data + start : "", end - start);
}

int storage_run(const char *const *argv, int timeout_ms, char **ret_out, char **ret_err) {
    int status;

    return storage_run_status(argv, timeout_ms, ret_out, ret_err, &status);
}

int storage_run_status(const char *const *argv, int timeout_ms, char **ret_out, char **ret_err, int *ret_status) {
    /* LVM_SUPPRESS_FD_WARNINGS: the daemon's descriptors are O_CLOEXEC, but
     * lvm2 warns about any it finds open, which is noise in error texts
     * (other programs ignore it). */
    static char *const envp[] = {(char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C",
                                 (char *)"LVM_SUPPRESS_FD_WARNINGS=1", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none;
    xapi_buf out = XAPI_BUF_INIT, err = XAPI_BUF_INIT;
    int fds[2] = {-1, -1}, pe[2] = {-1, -1}, status = 0, rc;
    int64_t deadline = now_ms() + timeout_ms;
    pid_t pid = -1;

    *ret_status = 0;
    if (pipe2(fds, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        rc = -errno;
        goto out;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
    rc = -posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(fds[1]);
    close(pe[1]);
    fds[1] = pe[1] = -1;
    if (rc < 0) {
        pid = -1;
        goto out;
    }
    for (int open_fds = 2; open_fds > 0;) {
        struct pollfd pf[2] = {{fds[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
        int64_t left = deadline - now_ms();
        char chunk[65536];

        if (left <= 0 || out.len + err.len > STORAGE_CMD_MAX_OUTPUT) {
            rc = left <= 0 ? -ETIME : -E2BIG;
            kill(-pid, SIGKILL);
            break;
        }
        if (poll(pf, 2, (int)(left > 1000 ? 1000 : left)) < 0 && errno != EINTR) {
            rc = -errno;
            kill(-pid, SIGKILL);
            break;
        }
        for (int i = 0; i < 2; i++) {
            ssize_t n;

            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            n = read(pf[i].fd, chunk, sizeof chunk);
            if (n > 0)
                xapi_buf_append(i ? &err : &out, chunk, (size_t)n);
            else if (n == 0 || errno != EINTR) {
                close(pf[i].fd);
                if (i)
                    pe[0] = -1;
                else
                    fds[0] = -1;
                open_fds--;
            }
        }
    }
    /* Both pipes are closed (or it was killed); a program stuck in the kernel
     * (a mount of a server that does not answer) may still not end, and is
     * then left rather than waited for. */
    if (rc == 0 && !reap(pid, &status, (int)(deadline - now_ms() > 0 ? deadline - now_ms() : 0))) {
        rc = -ETIME;
        kill(-pid, SIGKILL);
    }
    if (rc < 0 && !reap(pid, &status, 2000))
        log_warning("storage: %s (pid %d) did not end when killed", argv[0], (int)pid);
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        rc = -EIO;
        *ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
out:
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    if (ret_err)
        *ret_err = rc == -ETIME ? xapi_strdup("timed out") : last_line(&err);
    if (ret_out) {
        xapi_buf_putc(&out, '\0');
        *ret_out = out.data;
        out.data = NULL;
    }
    free(out.data);
    free(err.data);
    return rc;
}
