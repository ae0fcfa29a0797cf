/* A driver's external program run with a time limit (storage/command.c). */
#pragma once

#include <stddef.h>

#define STORAGE_CMD_MAX_OUTPUT (4u << 20) /* stdout + stderr of one command */

/* Runs argv[0] (an absolute path, or found on /usr/sbin:/usr/bin:/sbin:/bin)
 * with /dev/null as stdin and a clean environment, in its own process group
 * (killed at timeout_ms or beyond STORAGE_CMD_MAX_OUTPUT). 0 on exit status
 * 0; -ETIME (timeout), -E2BIG (too much output), -EIO (non-zero exit or a
 * signal), or -errno (could not run). *ret_out (stdout) and *ret_err (the
 * stderr's last line, for error texts) are set whatever the result, when
 * not NULL (malloc'd, NUL-terminated). */
int storage_run(const char *const *argv, int timeout_ms, char **ret_out, char **ret_err);
/* The same, and on -EIO the program's exit status in *ret_status (128 +
 * signal number if a signal ended it), for programs whose status says why
 * (iscsiadm's ISCSI_ERR_* codes); *ret_status is 0 otherwise. */
int storage_run_status(const char *const *argv, int timeout_ms, char **ret_out, char **ret_err, int *ret_status);
