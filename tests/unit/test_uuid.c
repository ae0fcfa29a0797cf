/* Uuids and refs (xapi/store.c): random v4 uuids, each distinct, drawn from
 * one pool of random bytes for all threads. The daemon gives each HTTP
 * connection a thread that lives only for that connection. A pool kept per
 * thread would be filled again for nearly every call, so the test counts the
 * getrandom calls made while short-lived threads each make one uuid. The
 * test defines getrandom itself; its definition comes before glibc's for the
 * static core it links. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "xapi/store.h"

static int getrandom_calls;

ssize_t getrandom(void *buf, size_t len, unsigned int flags) {
    __atomic_fetch_add(&getrandom_calls, 1, __ATOMIC_RELAXED);
    return syscall(SYS_getrandom, buf, len, flags);
}

#define NTHREADS 16

static char made[NTHREADS][XAPI_UUID_LEN + 1];

static void *make_one(void *arg) {
    xapi_uuid_generate(made[(intptr_t)arg]);
    return NULL;
}

static bool is_v4(const char *u) {
    if (strlen(u) != 36 || u[8] != '-' || u[13] != '-' || u[18] != '-' || u[23] != '-')
        return false;
    if (u[14] != '4' || !strchr("89ab", u[19]))
        return false;
    for (int i = 0; i < 36; i++)
        if (i != 8 && i != 13 && i != 18 && i != 23 && !strchr("0123456789abcdef", u[i]))
            return false;
    return true;
}

static void test_short_lived_threads_share_one_pool(void **state) {
    int before;

    (void)state;
    xapi_uuid_generate(made[0]); /* the pool filled once, here */
    before = getrandom_calls;
    for (intptr_t i = 0; i < NTHREADS; i++) { /* one after the other, as connections come */
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, make_one, (void *)i), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
    }
    /* 16 uuids of 16 bytes are 256 bytes: one refill at most, not one per thread */
    assert_true(getrandom_calls - before <= 1);
    for (int i = 0; i < NTHREADS; i++) {
        assert_true(is_v4(made[i]));
        for (int k = 0; k < i; k++)
            assert_string_not_equal(made[i], made[k]);
    }
}

static void *make_many(void *arg) {
    char (*out)[XAPI_UUID_LEN + 1] = arg;

    for (int i = 0; i < 64; i++)
        xapi_uuid_generate(out[i]);
    return NULL;
}

static void test_threads_at_once_get_distinct_uuids(void **state) {
    static char out[4][64][XAPI_UUID_LEN + 1];
    pthread_t t[4];

    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, make_many, out[i]), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int a = 0; a < 4 * 64; a++) {
        assert_true(is_v4(out[a / 64][a % 64]));
        for (int b = 0; b < a; b++)
            assert_string_not_equal(out[a / 64][a % 64], out[b / 64][b % 64]);
    }
}

static void test_refs_are_opaque_refs_of_uuids(void **state) {
    char ref[XAPI_REF_LEN + 1];

    (void)state;
    xapi_ref_generate(ref);
    assert_int_equal(strncmp(ref, "OpaqueRef:", 10), 0);
    assert_true(is_v4(ref + 10));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_lived_threads_share_one_pool),
        cmocka_unit_test(test_threads_at_once_get_distinct_uuids),
        cmocka_unit_test(test_refs_are_opaque_refs_of_uuids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
