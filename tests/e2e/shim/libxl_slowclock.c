/* libxl-slowclock.so: an LD_PRELOAD shim for `xl` in the Xen lab's baselines only (tests/e2e/suite.py:
 * the xl benchmark's retries and the boot storm's xl loop).
 *
 * libxl gives each hotplug script 40 s (LIBXL_HOTPLUG_TIMEOUT, compiled in) and kills it after. Under
 * QEMU's TCG on a loaded host Xen's bash `block` and `vif-bridge` took longer than that, so every xl
 * create of a baseline failed. libxl's own event loop, which xl runs, measures its timeouts with
 * gettimeofday(): this wrapper makes that clock run XENLAB_SLOWCLOCK times slower (from the first call
 * on), so that each of libxl's limits is that many times longer in real time. Nothing runs faster or
 * is skipped; the suite times xl with its own clock. Not for libvirtd: its libxl driver hands libxl's
 * timeouts to libvirt's event loop as relative ones, so there the factor cancels out. */
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>

typedef int (*gettimeofday_fn)(struct timeval *restrict tv, void *restrict tz);

static gettimeofday_fn real_gettimeofday;
static long double factor = 1.0L;
static long double start_us = -1.0L;


int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    struct timeval now;
    long double us;
    const char *f;
    int rc;

    if (!real_gettimeofday) {
        /* dlsym returns a void *; POSIX guarantees it converts to a function pointer */
        *(void **) &real_gettimeofday = dlsym(RTLD_NEXT, "gettimeofday");
        if (!real_gettimeofday)
            return -1;
        f = getenv("XENLAB_SLOWCLOCK");
        if (f && strtold(f, NULL) >= 1.0L)
            factor = strtold(f, NULL);
    }
    rc = real_gettimeofday(&now, tz);
    if (rc != 0 || factor == 1.0L) {
        if (rc == 0)
            *tv = now;
        return rc;
    }
    us = (long double) now.tv_sec * 1e6L + now.tv_usec;
    if (start_us < 0)
        start_us = us;
    us = start_us + (us - start_us) / factor;
    tv->tv_sec = (time_t) (us / 1e6L);
    tv->tv_usec = (suseconds_t) (us - (long double) tv->tv_sec * 1e6L);
    return 0;
}
