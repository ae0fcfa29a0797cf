/* tests/e2e/shim/test/fake_libxenlight.c: libxl's clock and its timeouts for the slow-clock test */
#ifndef FAKE_LIBXENLIGHT_H
#define FAKE_LIBXENLIGHT_H
#include <sys/time.h>

int fake_libxl_now(struct timeval *ret_now);
int fake_libxl_timeout_rel(int ms, struct timeval *ret_abs);
#endif
