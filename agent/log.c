/* Logging: to the journal (native protocol, with priorities) when running
 * under systemd, else one line per message on stderr:
 *     xenapid[PID]: LEVEL: message
 * Self-contained: depends on nothing else in the tree. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "agent/log.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

enum { LOG_MODE_UNSET, LOG_MODE_STDERR, LOG_MODE_JOURNAL };

/* log_lock orders the lines written; mode and level are read without it, by
 * every message, most of which (debug lines at the info level) go nowhere. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int log_mode = LOG_MODE_UNSET; /* resolved as "auto" on first use when never opened */
static _Atomic int log_max_level = LOG_INFO;

/* The pid in each stderr line, asked of the kernel once per process (glibc
 * does not cache getpid, and on a Xen dom0 a system call is dear): again in
 * a forked child, which may log before it execs. */
static _Atomic pid_t log_pid;
static pthread_once_t log_pid_once = PTHREAD_ONCE_INIT;

static void log_pid_forget(void) {
    log_pid = 0;
}

static void log_pid_watch_forks(void) {
    pthread_atfork(NULL, NULL, log_pid_forget);
}

static pid_t current_pid(void) {
    pid_t pid;

    pthread_once(&log_pid_once, log_pid_watch_forks);
    pid = log_pid;
    if (pid == 0)
        log_pid = pid = getpid();
    return pid;
}

static const char *const level_names[] = {
    [LOG_EMERG] = "emergency", [LOG_ALERT] = "alert",   [LOG_CRIT] = "critical", [LOG_ERR] = "error",
    [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info",     [LOG_DEBUG] = "debug",
};

static int clamp_level(int level) {
    level = LOG_PRI(level);
    return level < LOG_EMERG ? LOG_EMERG : level > LOG_DEBUG ? LOG_DEBUG : level;
}

/* "auto": the journal when systemd gave us a journal stream or a notify
 * socket (i.e. we run as a service), stderr otherwise. */
static int resolve_mode(const char *mode) {
    bool journal;

    if (mode && strcmp(mode, "stderr") == 0)
        return LOG_MODE_STDERR;
    if (mode && strcmp(mode, "journal") == 0)
        journal = true;
    else
        journal = getenv("JOURNAL_STREAM") || getenv("NOTIFY_SOCKET");
    /* sd_journal_print() silently drops messages when journald is absent
     * (containers, test rigs): then stderr is the better place. */
    if (journal && access(JOURNAL_SOCKET, F_OK) < 0)
        journal = false;
    return journal ? LOG_MODE_JOURNAL : LOG_MODE_STDERR;
}

void agent_log_open(const char *mode, int max_level) {
    log_mode = resolve_mode(mode);
    log_max_level = clamp_level(max_level);
}

void agent_log_set_level(int max_level) {
    log_max_level = clamp_level(max_level);
}

/* Formats and emits one message; suffix (may be NULL) is appended after ": ".
 * Keeps errno intact so that callers can log and then still look at it. */
__attribute__((format(printf, 3, 0))) static void log_emit(int level, const char *suffix, const char *fmt,
                                                         va_list ap) {
    static const char oom[] = "(out of memory formatting the message)";
    int saved_errno = errno;
    char *msg = NULL;
    const char *text;
    size_t n;
    int mode, max;

    level = clamp_level(level);
    max = log_max_level;
    if (level > max)
        goto out;
    mode = log_mode;
    if (mode == LOG_MODE_UNSET) { /* two threads may both resolve it: the same answer */
        mode = resolve_mode(NULL);
        log_mode = mode;
    }

    errno = saved_errno; /* for %m */
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    text = msg ? msg : oom;
    n = msg ? strlen(msg) : 0;
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';

    pthread_mutex_lock(&log_lock);
    /* Should the journal be unreachable, the message still goes somewhere. */
    if (mode != LOG_MODE_JOURNAL ||
        sd_journal_print(level, "%s%s%s", text, suffix ? ": " : "", suffix ? suffix : "") < 0) {
        fprintf(stderr, "xenapid[%ld]: %s: %s%s%s\n", (long)current_pid(), level_names[level], text, suffix ? ": " : "",
                suffix ? suffix : "");
        fflush(stderr);
    }
    pthread_mutex_unlock(&log_lock);
out:
    free(msg);
    errno = saved_errno;
}

void agent_log(int level, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    log_emit(level, NULL, fmt, ap);
    va_end(ap);
}

int agent_log_errno(int level, int err, const char *fmt, ...) {
    char buf[256];
    const char *s = NULL;
    va_list ap;

    err = err < 0 ? -err : err;
    if (err != 0)
        s = strerror_r(err, buf, sizeof buf); /* GNU variant: returns the string */
    va_start(ap, fmt);
    log_emit(level, s, fmt, ap);
    va_end(ap);
    return -err;
}
