/* Unit tests: host facts, checked against the machine the tests run on. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/hostinfo.h"

static int setup(void **state) {
    agent_hostinfo *h = calloc(1, sizeof *h);

    assert_non_null(h);
    assert_int_equal(agent_hostinfo_read(h), 0);
    *state = h;
    return 0;
}

static int teardown(void **state) {
    agent_hostinfo_free(*state);
    free(*state);
    return 0;
}

static int cpuinfo_processors(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[4096];
    int n = 0;

    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "processor", 9) == 0 && strchr(line, ':'))
            n++;
    fclose(f);
    return n;
}

static void test_hostname(void **state) {
    agent_hostinfo *h = *state;
    char name[HOST_NAME_MAX + 1] = "";

    assert_int_equal(gethostname(name, sizeof name), 0);
    assert_string_equal(h->hostname, name);
}

static void test_uname(void **state) {
    agent_hostinfo *h = *state;
    struct utsname u;

    assert_int_equal(uname(&u), 0);
    assert_string_equal(h->kernel_release, u.release);
    assert_string_equal(h->machine, u.machine);
    assert_non_null(h->os_name);
    assert_true(strlen(h->os_name) > 0);
    assert_null(strchr(h->os_name, '"'));
}

static void test_cpus(void **state) {
    agent_hostinfo *h = *state;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int listed = cpuinfo_processors();

    assert_true(h->cpu_count > 0);
    if (h->cpu_count != online && h->cpu_count != listed)
        fail_msg("cpu_count %d: online %ld, /proc/cpuinfo %d", h->cpu_count, online, listed);
    assert_non_null(h->cpus);
    for (int i = 0; i < h->cpu_count; i++) {
        const agent_cpu *c = &h->cpus[i];

        assert_non_null(c->vendor);
        assert_non_null(c->model_name);
        assert_non_null(c->flags);
        assert_true(c->speed_mhz >= 0);
    }
#if defined(__x86_64__) || defined(__i386__)
    if (listed > 0) {
        /* x86 always lists these. */
        assert_true(strlen(h->cpus[0].vendor) > 0);
        assert_true(strlen(h->cpus[0].model_name) > 0);
        assert_non_null(strstr(h->cpus[0].flags, "fpu"));
        assert_true(h->cpus[0].family > 0);
    }
#endif
}

static void test_memory(void **state) {
    agent_hostinfo *h = *state;
    long pages = sysconf(_SC_PHYS_PAGES), pagesize = sysconf(_SC_PAGESIZE);

    assert_true(h->memory_total > 0);
    assert_true(h->memory_free > 0);
    assert_true(h->memory_free <= h->memory_total);
    /* MemTotal and the physical page count describe the same memory. */
    if (pages > 0 && pagesize > 0) {
        int64_t phys = (int64_t)pages * pagesize;

        assert_true(h->memory_total <= phys + phys / 100);
        assert_true(h->memory_total >= phys - phys / 100);
    }
}

static void test_boot_time(void **state) {
    agent_hostinfo *h = *state;
    char *end = NULL;
    long long t;

    assert_non_null(h->boot_time);
    t = strtoll(h->boot_time, &end, 10);
    assert_true(end != h->boot_time && *end == '\0');
    assert_true(t > 1000000000LL); /* after 2001 */
    assert_true(t <= (long long)time(NULL));
}

/* An IPv4 address of this machine (or the 127.0.0.1 fallback). */
static void test_address(void **state) {
    agent_hostinfo *h = *state;
    struct ifaddrs *ifa = NULL;
    struct in_addr a;
    bool local = false;

    assert_non_null(h->address);
    assert_int_equal(inet_pton(AF_INET, h->address, &a), 1);
    if (strcmp(h->address, "127.0.0.1") == 0)
        return;
    assert_int_equal(getifaddrs(&ifa), 0);
    for (struct ifaddrs *i = ifa; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
            ((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr.s_addr == a.s_addr)
            local = true;
    freeifaddrs(ifa);
    assert_true(local);
}

static void test_read_twice_and_free(void **state) {
    agent_hostinfo a = {0}, b = {0};

    assert_int_equal(agent_hostinfo_read(&a), 0);
    assert_int_equal(agent_hostinfo_read(&b), 0);
    assert_string_equal(a.hostname, b.hostname);
    assert_string_equal(a.address, b.address);
    assert_int_equal(a.cpu_count, b.cpu_count);
    agent_hostinfo_free(&a);
    assert_null(a.hostname);
    assert_null(a.cpus);
    agent_hostinfo_free(&a); /* idempotent */
    agent_hostinfo_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostname),   cmocka_unit_test(test_uname),     cmocka_unit_test(test_cpus),
        cmocka_unit_test(test_memory),     cmocka_unit_test(test_boot_time), cmocka_unit_test(test_address),
        cmocka_unit_test(test_read_twice_and_free),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
