/* libxl-slowclock.so: an LD_PRELOAD shim for the other toolstacks of the Xen lab's baselines only
 * (tests/e2e/suite.py: the xl benchmark's retries and the boot storm's xl loop; tests/e2e/steps_libvirt.py:
 * libvirtd, whose libxl driver runs libxl inside it).
 *
 * libxl gives each hotplug script 40 s (LIBXL_HOTPLUG_TIMEOUT, compiled in) and kills it after. Under
 * QEMU's TCG on a loaded host Xen's bash `block` and `vif-bridge` took longer than that, so every xl
 * create of a baseline failed, and every libvirt create. libxl measures its timeouts with gettimeofday():
 * this wrapper makes that clock run XENLAB_SLOWCLOCK times slower (from the first call on) for the calls
 * libxenlight itself makes, so that each of libxl's limits is that many times longer in real time. Other
 * callers keep the real clock: libvirtd's own deadlines (a job's wait, keepalives) are absolute times
 * from g_get_real_time(), i.e. gettimeofday(), which a slow clock for all made lie in the past.
 *
 * libxl fires a timeout in two places: in its own poll loop (a synchronous call such as libvirt's
 * libxl_domain_create_new, and all of xl), by its own clock, and through the application's event loop
 * when the application registered libxl_osevent_hooks (libvirtd does): libxl hands the absolute time on
 * its clock to the hooks, and libvirt's hook turns it into a relative one against the real clock. So
 * libxl_osevent_register_hooks is wrapped too: a timeout given to the application is the same distance
 * from now times the factor, on the real clock, and both places fire it at the same moment.
 * Nothing runs faster or is skipped; the suite times the toolstacks with its own clock. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <libxl.h>
#include <libxl_event.h>

typedef int (*gettimeofday_fn)(struct timeval *restrict tv, void *restrict tz);
typedef void (*register_hooks_fn)(libxl_ctx *ctx, const libxl_osevent_hooks *hooks, void *user);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static gettimeofday_fn real_gettimeofday;
static long double factor = 1.0L;
static long double start_us;

/* The application's hooks, which the stretched copy calls; one set (libvirtd registers one) */
static pthread_mutex_t hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static const libxl_osevent_hooks *app_hooks;
static libxl_osevent_hooks stretched_hooks;


static long double tv_us(struct timeval tv) {
    return (long double) tv.tv_sec * 1e6L + tv.tv_usec;
}

static struct timeval us_tv(long double us) {
    struct timeval tv;

    tv.tv_sec = (time_t) (us / 1e6L);
    tv.tv_usec = (suseconds_t) (us - (long double) tv.tv_sec * 1e6L);
    return tv;
}

static void init(void) {
    struct timeval now;
    const char *f;

    /* dlsym returns a void *; POSIX guarantees it converts to a function pointer */
    *(void **) &real_gettimeofday = dlsym(RTLD_NEXT, "gettimeofday");
    if (!real_gettimeofday)
        return;
    f = getenv("XENLAB_SLOWCLOCK");
    if (f && strtold(f, NULL) >= 1.0L)
        factor = strtold(f, NULL);
    if (real_gettimeofday(&now, NULL) == 0)
        start_us = tv_us(now);
}

/* libxl's clock at real time us */
static long double slow_us(long double us) {
    return start_us + (us - start_us) / factor;
}

static int from_libxenlight(const void *caller) {
    const char *base;
    Dl_info di;

    if (!dladdr(caller, &di) || !di.dli_fname)
        return 0;
    base = strrchr(di.dli_fname, '/');
    return strncmp(base ? base + 1 : di.dli_fname, "libxenlight.so", strlen("libxenlight.so")) == 0;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    const void *caller = __builtin_return_address(0);
    struct timeval now;
    int rc;

    pthread_once(&once, init);
    if (!real_gettimeofday)
        return -1;
    rc = real_gettimeofday(&now, tz);
    if (rc != 0)
        return rc;
    *tv = factor == 1.0L || !from_libxenlight(caller) ? now : us_tv(slow_us(tv_us(now)));
    return 0;
}

/* libxl's abs is on its slow clock: the application gets the same distance from now, times the
 * factor, on the real clock (a time already past stays past) */
static int stretched_timeout_register(void *user, void **for_app_registration_out, struct timeval abs,
                                      void *for_libxl) {
    struct timeval now;
    long double rel;

    if (real_gettimeofday(&now, NULL) == 0) {
        rel = tv_us(abs) - slow_us(tv_us(now));
        abs = us_tv(tv_us(now) + (rel > 0 ? rel * factor : rel));
    }
    return app_hooks->timeout_register(user, for_app_registration_out, abs, for_libxl);
}

void libxl_osevent_register_hooks(libxl_ctx *ctx, const libxl_osevent_hooks *hooks, void *user) {
    register_hooks_fn real;

    pthread_once(&once, init);
    *(void **) &real = dlsym(RTLD_NEXT, "libxl_osevent_register_hooks");
    if (!real)
        abort();    /* libxl's own returns nothing either: no way to say it failed */
    pthread_mutex_lock(&hooks_lock);
    /* timeout_modify is only ever called with {0,0}, "now", which needs no stretching */
    if (hooks && hooks->timeout_register && real_gettimeofday && factor != 1.0L
        && (!app_hooks || app_hooks == hooks)) {
        app_hooks = hooks;
        stretched_hooks = *hooks;
        stretched_hooks.timeout_register = stretched_timeout_register;
        hooks = &stretched_hooks;
    }
    pthread_mutex_unlock(&hooks_lock);
    real(ctx, hooks, user);
}
