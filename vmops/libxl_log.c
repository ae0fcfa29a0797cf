/* xentoollog -> agent/log.h. libxl's levels map to syslog's; its debug chatter
 * (one line per xenstore watch, hotplug step...) goes to LOG_DEBUG. Errors are
 * also kept per thread: a synchronous libxl call logs its failure on the
 * thread that made it, so the operation can say why it failed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "vmops/libxl_log.h"
#include "xapi/value.h"

#define MESSAGE_MAX 1024
/* Room for a whole message and errno's text after it: the error an operation reports is not cut short. */
#define LAST_ERROR_MAX (MESSAGE_MAX + 128)

static __thread char last_error[LAST_ERROR_MAX];
/* The first error since the clear that says the guest's memory cannot hold its boot image: libxl
 * logs its own errors after libxc's ("cannot (re-)build domain"), which would hide the cause. */
static __thread char too_small[LAST_ERROR_MAX];

bool vmops_libxl_error_is_memory_too_small(const char *msg) {
    /* libxc's xc_dom_chk_alloc_pages: "segment kernel too large (0x3a00 > 0x2000 - 0x1000 pages)",
     * for the kernel, the ramdisk, or what is placed after them (page tables, start info...) */
    const char *seg = msg ? strstr(msg, "segment ") : NULL;

    return seg && strstr(seg, " too large (") && strstr(seg, " pages)");
}
/* The first error about the device model since the clear: libxl's own last words
 * after it (the domain's destruction) would hide why an HVM guest did not start. */
static __thread char dm_error[LAST_ERROR_MAX];

static int syslog_level(xentoollog_level level) {
    switch (level) {
    case XTL_CRITICAL:
    case XTL_ERROR:
        return LOG_ERR;
    case XTL_WARN:
        return LOG_WARNING;
    case XTL_NOTICE:
        return LOG_NOTICE;
    case XTL_INFO:
        return LOG_INFO;
    default:
        return LOG_DEBUG;
    }
}

static void logger_vmessage(xentoollog_logger *lg, xentoollog_level level, int errnoval, const char *context,
                            const char *format, va_list al) __attribute__((format(printf, 5, 0)));
static void logger_vmessage(xentoollog_logger *lg, xentoollog_level level, int errnoval, const char *context,
                            const char *format, va_list al) {
    char msg[MESSAGE_MAX];
    int n = vsnprintf(msg, sizeof msg, format, al);

    if (n < 0)
        return;
    /* libxl's messages come without a newline; some of the libraries under it end theirs with one */
    n = (int)strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    if (errnoval >= 0)
        agent_log(syslog_level(level), "%s: %s: %s", context ? context : "libxl", msg, strerror(errnoval));
    else
        agent_log(syslog_level(level), "%s: %s", context ? context : "libxl", msg);
    if (level >= XTL_ERROR) {
        if (errnoval >= 0)
            snprintf(last_error, sizeof last_error, "%s: %s", msg, strerror(errnoval));
        else
            snprintf(last_error, sizeof last_error, "%s", msg);
        if (!too_small[0] && vmops_libxl_error_is_memory_too_small(msg))
            snprintf(too_small, sizeof too_small, "%s", msg);
        /* libxl's words for its QEMU: "domain N device model: startup timed out",
         * "device model did not start", "... device model: spawn failed" */
        if (!dm_error[0] && strstr(msg, "device model"))
            snprintf(dm_error, sizeof dm_error, "%s", last_error);
    }
}

static void logger_destroy(xentoollog_logger *lg) {
    free(lg);
}

xentoollog_logger *vmops_libxl_logger_new(void) {
    xentoollog_logger *lg = xapi_calloc(1, sizeof *lg);

    lg->vmessage = logger_vmessage;
    lg->progress = NULL;
    lg->destroy = logger_destroy;
    return lg;
}

void vmops_libxl_logger_free(xentoollog_logger *lg) {
    if (lg)
        lg->destroy(lg);
}

void vmops_libxl_error_clear(void) {
    last_error[0] = 0;
    too_small[0] = 0;
    dm_error[0] = 0;
}

const char *vmops_libxl_error_last(void) {
    return last_error[0] ? last_error : NULL;
}

const char *vmops_libxl_error_memory_too_small(void) {
    return too_small[0] ? too_small : NULL;
}

const char *vmops_libxl_dm_error(void) {
    return dm_error[0] ? dm_error : NULL;
}
