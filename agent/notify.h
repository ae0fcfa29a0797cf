/* systemd service manager notifications (sd_notify); all no-ops when not
 * started by systemd. */
#pragma once

#include <stdint.h>

void agent_notify_ready(const char *status);
void agent_notify_status(const char *status);
void agent_notify_stopping(void);
/* The watchdog interval in microseconds (0 when not enabled). */
uint64_t agent_notify_watchdog_usec(void);
void agent_notify_watchdog(void);
