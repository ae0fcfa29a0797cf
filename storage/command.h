/* A driver's external program run with a time limit (storage/command.c). */
#pragma once

#include <stddef.h>

/* Runs argv (argv[0] found on PATH) for at most timeout_s seconds, its
 * stdout and stderr together in out (NUL-terminated, truncated to outsize,
 * trailing newlines cut): 0 with the exit status (128 + signal when killed)
 * in *ret_status, -ETIMEDOUT when it was killed at the time limit, or -errno
 * when it could not start (-ENOENT: no such program). */
int storage_command_run(const char *const *argv, unsigned timeout_s, char *out, size_t outsize, int *ret_status);
