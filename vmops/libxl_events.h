/* libxl inside xenapid's own event loop: a thread of the backend polls the
 * file descriptors and runs the timeouts libxl registers through
 * libxl_osevent_register_hooks, libxl reaps only its own children
 * (libxl_sigchld_owner_libxl_always_selective_reap: the rest of the daemon may
 * fork and waitpid as it likes), and libxl's events (domain shutdown, death)
 * are handed to the backend on that thread, never inside a libxl call.
 *
 * Order: libxl_ctx_alloc, vmops_libxl_loop_new (before anything else uses the
 * ctx), vmops_libxl_loop_start; at the end vmops_libxl_loop_stop,
 * libxl_ctx_free, vmops_libxl_loop_free. */
#pragma once

#include <sys/types.h>

#include <libxl.h>
#include <libxl_event.h>

typedef struct vmops_libxl_loop vmops_libxl_loop;

/* Called on the loop's thread with an event it now owns (libxl_event_free). */
typedef void (*vmops_libxl_event_fn)(void *ud, libxl_event *ev);

/* Registers the hooks with ctx. Returns 0 or -errno. */
int vmops_libxl_loop_new(libxl_ctx *ctx, vmops_libxl_event_fn fn, void *ud, vmops_libxl_loop **ret);
int vmops_libxl_loop_start(vmops_libxl_loop *l);
/* Stops and joins the thread; events not yet delivered are dropped. */
void vmops_libxl_loop_stop(vmops_libxl_loop *l);
/* After libxl_ctx_free (the hooks are used until then). NULL is fine. */
void vmops_libxl_loop_free(vmops_libxl_loop *l);

/* fork() for libxl (its childproc fork_replacement): the child starts with no signal blocked.
 * The daemon's threads block SIGTERM, SIGINT and SIGHUP for its main loop (agent/main.c) and
 * some block all; a mask survives fork and exec, and libxl resets only SIGPIPE's disposition.
 * So QEMU never took the SIGHUP with which libxl's domain destroy ends it: in the lab every
 * destroyed HVM domain's QEMU kept running, and Xen kept the domain dying with the guest pages
 * QEMU still mapped. user is unused. */
pid_t vmops_libxl_fork(void *user);
