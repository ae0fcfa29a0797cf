/* A stand-in libxenlight.so for test_libxl_slowclock.c only: the two things of libxl's event machinery
 * (libxl_event.c) the slow-clock shim changes, with libxl's own clock (its gettimeofday() calls, made
 * from a library named libxenlight.so) and libxl's own way of handing a timeout to an application that
 * registered libxl_osevent_hooks: an absolute time, now on that clock plus the timeout. */
#include <sys/time.h>

#include <libxl.h>
#include <libxl_event.h>

#include "fake_libxenlight.h"

static const libxl_osevent_hooks *app_hooks;
static void *app_user;


void libxl_osevent_register_hooks(libxl_ctx *ctx, const libxl_osevent_hooks *hooks, void *user) {
    (void) ctx;
    app_hooks = hooks;
    app_user = user;
}

/* as libxl__gettimeofday, whose error check after the call keeps it a call, not a jump: the shim
 * tells libxenlight's readings by their return address (all of libxl 4.17's are calls) */
int fake_libxl_now(struct timeval *ret_now) {
    if (gettimeofday(ret_now, NULL) != 0)
        return -1;
    return 0;
}

/* as libxl__ev_time_register_rel: time_rel_to_abs, then the application's timeout_register */
int fake_libxl_timeout_rel(int ms, struct timeval *ret_abs) {
    struct timeval now, add = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 }, abs;
    void *reg = NULL;
    int rc;

    if (!app_hooks || !app_hooks->timeout_register)
        return -1;
    rc = gettimeofday(&now, NULL);
    if (rc != 0)
        return rc;
    timeradd(&now, &add, &abs);
    *ret_abs = abs;
    return app_hooks->timeout_register(app_user, &reg, abs, NULL);
}
