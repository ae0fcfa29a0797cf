/* Runs a driver's external program (mount, umount, showmount) as an argv,
 * never through a shell, with a time limit: the store lock is not held, but
 * the operation waits, so a program that never ends (a mount of a server
 * that does not answer) must not hold it forever. The program is found on
 * the daemon's PATH and runs with a minimal environment, stdin /dev/null,
 * stdout and stderr read together (bounded), in its own process group
 * (killed whole at the time limit). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/log.h"
#include "storage/command.h"
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

int storage_command_run(const char *const *argv, unsigned timeout_s, char *out, size_t outsize, int *ret_status) {
    char *envp[] = {(char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none;
    size_t len = 0;
    int pipefd[2] = {-1, -1}, status = 0, rc;
    int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
    bool timed_out = false;
    pid_t pid = -1;

    if (outsize)
        out[0] = '\0';
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
    rc = -posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(pipefd[1]);
    if (rc < 0) {
        close(pipefd[0]);
        return rc;
    }
    for (;;) {
        struct pollfd pf = {pipefd[0], POLLIN, 0};
        int64_t left = deadline - now_ms();
        char chunk[4096];
        ssize_t n;

        if (left <= 0) {
            timed_out = true;
            break;
        }
        if (poll(&pf, 1, (int)(left > 1000 ? 1000 : left)) <= 0)
            continue;
        n = read(pipefd[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF: the program (and whatever inherited its output) is done */
        if (outsize && len + 1 < outsize) {
            size_t k = (size_t)n < outsize - 1 - len ? (size_t)n : outsize - 1 - len;
            memcpy(out + len, chunk, k);
            len += k;
            out[len] = '\0';
        }
    }
    close(pipefd[0]);
    if (!timed_out && !reap(pid, &status, (int)(deadline - now_ms() > 0 ? deadline - now_ms() : 0)))
        timed_out = true;
    if (timed_out) {
        kill(-pid, SIGKILL);
        if (!reap(pid, &status, 2000))
            log_warning("storage: %s (pid %d) did not end when killed after %u s", argv[0], (int)pid, timeout_s);
        return -ETIMEDOUT;
    }
    /* Last line of output without its newline, for error texts. */
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' '))
        out[--len] = '\0';
    *ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return 0;
}
