/* Driver I/O with a time limit that a thread stuck in the kernel cannot
 * outlast (storage/io.c). A process blocked in D state on a dead NFS mount
 * cannot be killed or waited for, so the I/O runs in a thread of its own and
 * the caller stops waiting at the limit: the stuck thread is abandoned (its
 * result thrown away when it ends), the SR counts as stuck until it does,
 * and further I/O on that SR fails at once instead of piling up threads. */
#pragma once

#include "storage/driver.h"

#define STORAGE_IO_MAX_STUCK 32 /* abandoned I/O threads at once, all SRs together */

typedef int (*storage_io_fn)(void *ctx, storage_err *e);

/* Runs fn(ctx, e) for the SR sr_uuid (NULL: no SR yet, as SR.probe) and
 * waits at most storage_io_timeout seconds (plus a second, so that a
 * command's own time limit reports first). Returns fn's result with its
 * *e; -ETIME when it did not finish (*e: SR_UNAVAILABLE naming `what` and
 * the limit), and then ctx belongs to the stuck thread, which frees it with
 * ctx_free when it ends; -EBUSY (*e says why) without running fn when the SR
 * already has a stuck operation or too many threads are stuck. Except on
 * -ETIME, ctx is still the caller's. */
int storage_io_run(const char *sr_uuid, const char *what, storage_io_fn fn, void *ctx, void (*ctx_free)(void *),
                   storage_err *e);
/* The same, and if fn is abandoned, late(ctx, its result) when it ends after
 * all (in its thread, without any lock held, before ctx_free): for an
 * operation whose late success must still reach the records. */
int storage_io_run_late(const char *sr_uuid, const char *what, storage_io_fn fn, void *ctx,
                        void (*ctx_free)(void *), void (*late)(void *ctx, int rc), storage_err *e);
/* How many abandoned I/O threads have not ended yet (for tests and logs). */
unsigned storage_io_stuck(void);
