/* libxl's (xentoollog) messages into the daemon's log, and the last error
 * libxl logged on the calling thread, for the message of a failed operation. */
#pragma once

#include <stdbool.h>
#include <xentoollog.h>

/* A logger for libxl_ctx_alloc; free with vmops_libxl_logger_free after the ctx. */
xentoollog_logger *vmops_libxl_logger_new(void);
void vmops_libxl_logger_free(xentoollog_logger *lg);
/* Forget this thread's last libxl error (call before a libxl operation). */
void vmops_libxl_error_clear(void);
/* This thread's last error logged by libxl since the clear, or NULL. */
const char *vmops_libxl_error_last(void);
/* Whether an error message of libxc/libxl says the guest's memory is too small for its boot image
 * (the kernel, the ramdisk and what the domain builder puts after them). */
bool vmops_libxl_error_is_memory_too_small(const char *msg);
/* This thread's first such error since the clear, or NULL. */
const char *vmops_libxl_error_memory_too_small(void);
/* This thread's first error about the device model (QEMU) since the clear, or NULL. */
const char *vmops_libxl_dm_error(void);
