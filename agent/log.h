/* Logging: to the journal when running under systemd (JOURNAL_STREAM or
 * NOTIFY_SOCKET set), to stderr otherwise. Thread-safe. */
#pragma once

#include <syslog.h>

/* mode: "auto" (default), "journal" or "stderr". */
void agent_log_open(const char *mode, int max_level);
void agent_log_set_level(int max_level); /* LOG_ERR..LOG_DEBUG */
void agent_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs and returns -abs(err) so callers can `return agent_log_errno(r, "...")`. */
int agent_log_errno(int level, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...) agent_log(LOG_ERR, __VA_ARGS__)
#define log_warning(...) agent_log(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) agent_log(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) agent_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) agent_log(LOG_DEBUG, __VA_ARGS__)
