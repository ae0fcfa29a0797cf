/* lvm2 commands and their reports (see storage/lvm.h). */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "storage/lvm.h"
#include "xapi/buf.h"
#include "xapi/value.h"

static int64_t now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    /* LVM_SUPPRESS_FD_WARNINGS: the daemon's descriptors are O_CLOEXEC, but
     * lvm2 warns about any it finds open, which is noise in error texts. */
    static char *const envp[] = {(char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C",
                                 (char *)"LVM_SUPPRESS_FD_WARNINGS=1", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none;
    xapi_buf out = XAPI_BUF_INIT, err = XAPI_BUF_INIT;
    int fds[2] = {-1, -1}, pe[2] = {-1, -1}, status = 0, rc;
    int64_t deadline = now_ms() + timeout_ms;
    pid_t pid = -1;

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
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        rc = -EIO;
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

void storage_lvm_rows_free(storage_lvm_row *rows, size_t n, size_t nfields) {
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < nfields; k++)
            free(rows[i].values[k]);
        free(rows[i].values);
    }
    free(rows);
}

int storage_lvm_report_parse(const char *json, const char *kind, const char *const *fields, size_t nfields,
                             size_t max, storage_lvm_row **ret_rows, size_t *ret_n) {
    json_object *root = NULL, *report, *list = NULL;
    storage_lvm_row *rows = NULL;
    size_t n = 0, count;
    int rc = 0;

    root = json ? json_tokener_parse(json) : NULL;
    if (!root || !json_object_object_get_ex(root, "report", &report) ||
        !json_object_is_type(report, json_type_array)) {
        rc = -EBADMSG;
        goto out;
    }
    /* One section per command; a command on several VGs may print several. */
    for (size_t s = 0; s < json_object_array_length(report) && !list; s++) {
        json_object *sec = json_object_array_get_idx(report, s);
        if (!json_object_object_get_ex(sec, kind, &list))
            list = NULL;
    }
    if (!list || !json_object_is_type(list, json_type_array)) {
        rc = -EBADMSG;
        goto out;
    }
    count = json_object_array_length(list);
    if (count > max) {
        rc = -E2BIG;
        goto out;
    }
    rows = xapi_calloc(count ? count : 1, sizeof *rows);
    for (; n < count; n++) {
        json_object *row = json_object_array_get_idx(list, n);

        rows[n].values = xapi_calloc(nfields, sizeof *rows[n].values);
        for (size_t k = 0; k < nfields; k++) {
            json_object *v;
            if (!json_object_object_get_ex(row, fields[k], &v) || !json_object_is_type(v, json_type_string)) {
                n++;
                rc = -EBADMSG;
                goto out;
            }
            rows[n].values[k] = xapi_strdup(json_object_get_string(v));
        }
    }
    *ret_rows = rows;
    *ret_n = n;
    rows = NULL;
out:
    if (rows)
        storage_lvm_rows_free(rows, n, nfields);
    json_object_put(root);
    return rc;
}

int storage_lvm_parse_bytes(const char *s, int64_t *ret) {
    char *end;
    long long v;

    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || (*end && strcmp(end, "B") != 0))
        return -EINVAL;
    *ret = v;
    return 0;
}
