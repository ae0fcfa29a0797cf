/* systemd service manager notifications. sd_notify() is a no-op returning 0
 * when NOTIFY_SOCKET is unset, so none of this needs to know whether we run
 * under systemd. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "agent/notify.h"

/* STATUS= is one line of the newline-separated notify message: a newline in
 * the text would start a new (bogus) assignment, so flatten it. */
static void send_status(const char *prefix, const char *status) {
    char *s = NULL;

    if (!status) {
        if (prefix)
            (void)sd_notify(0, prefix);
        return;
    }
    s = strdup(status);
    if (s)
        for (char *p = s; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    (void)sd_notifyf(0, "%s%sSTATUS=%s", prefix ? prefix : "", prefix ? "\n" : "", s ? s : "");
    free(s);
}

void agent_notify_ready(const char *status) {
    send_status("READY=1", status);
}

void agent_notify_status(const char *status) {
    send_status(NULL, status);
}

void agent_notify_stopping(void) {
    (void)sd_notify(0, "STOPPING=1");
}

uint64_t agent_notify_watchdog_usec(void) {
    uint64_t usec = 0;

    /* Keep WATCHDOG_USEC/WATCHDOG_PID in the environment: harmless, and the
     * answer stays the same if asked again. */
    if (sd_watchdog_enabled(0, &usec) <= 0)
        return 0;
    return usec;
}

void agent_notify_watchdog(void) {
    (void)sd_notify(0, "WATCHDOG=1");
}
