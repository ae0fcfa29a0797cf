/* The Xen lab's slow-clock shim (tests/e2e/shim/libxl_slowclock.c), run preloaded with
 * XENLAB_SLOWCLOCK=4 over a stand-in libxenlight.so (fake_libxenlight.c): libxenlight's clock is
 * slowed and the program's is not (libvirtd's own deadlines are on the program's), and a timeout that
 * libxl hands to the application's event loop is the factor times longer in real time, as libxl's own
 * poll loop sees it on its slowed clock. No speed is measured: the sleep bounds real time from below. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <cmocka.h>
#include <libxl.h>
#include <libxl_event.h>

#include "fake_libxenlight.h"

#define FACTOR 4

static struct timeval registered;   /* the abs the application's hook was given */
static int registrations;

static long long tv_ms(struct timeval tv) {
    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int app_timeout_register(void *user, void **for_app_registration_out, struct timeval abs,
                                void *for_libxl) {
    (void) user;
    (void) for_app_registration_out;
    (void) for_libxl;
    registered = abs;
    registrations++;
    return 0;
}

static const libxl_osevent_hooks app_hooks = { .timeout_register = app_timeout_register };

static int setup(void **state) {
    const char *f = getenv("XENLAB_SLOWCLOCK"), *pre = getenv("LD_PRELOAD");

    (void) state;
    /* without the shim preloaded and its factor, nothing here would mean anything */
    if (!f || atoi(f) != FACTOR || !pre || !strstr(pre, "libxl-slowclock"))
        return -1;
    libxl_osevent_register_hooks(NULL, &app_hooks, NULL);
    return 0;
}

static void test_only_libxenlight_slowed(void **state) {
    struct timespec nap = { .tv_sec = 0, .tv_nsec = 200 * 1000 * 1000 };
    struct timeval app0, app1, lib0, lib1;

    (void) state;
    assert_int_equal(gettimeofday(&app0, NULL), 0);
    assert_int_equal(fake_libxl_now(&lib0), 0);
    assert_int_equal(nanosleep(&nap, NULL), 0);
    assert_int_equal(fake_libxl_now(&lib1), 0);
    assert_int_equal(gettimeofday(&app1, NULL), 0);
    /* the program's clock is real: at least the nap */
    assert_true(tv_ms(app1) - tv_ms(app0) >= 200);
    /* libxl's ran at most a quarter of the real time between its two readings, inside the program's */
    assert_true((tv_ms(lib1) - tv_ms(lib0)) * 2 < tv_ms(app1) - tv_ms(app0));
}

static void test_hook_timeout_stretched(void **state) {
    struct timeval lib_abs, after;
    long long rel;

    (void) state;
    registrations = 0;
    assert_int_equal(fake_libxl_timeout_rel(40000, &lib_abs), 0);   /* LIBXL_HOTPLUG_TIMEOUT */
    assert_int_equal(gettimeofday(&after, NULL), 0);
    assert_int_equal(registrations, 1);
    /* libxl's own poll loop fires it at 40 s on its clock, 160 s in real time: so does the application */
    rel = tv_ms(registered) - tv_ms(after);
    assert_true(rel <= 40000LL * FACTOR);
    assert_true(rel > 40000LL * (FACTOR - 1));
}

static void test_hook_past_stays_past(void **state) {
    struct timeval lib_abs, after;

    (void) state;
    assert_int_equal(fake_libxl_timeout_rel(-1000, &lib_abs), 0);
    assert_int_equal(gettimeofday(&after, NULL), 0);
    assert_true(tv_ms(registered) <= tv_ms(after));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_libxenlight_slowed),
        cmocka_unit_test(test_hook_timeout_stretched),
        cmocka_unit_test(test_hook_past_stays_past),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
