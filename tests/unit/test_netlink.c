/* The rtnetlink calls of network/netlink.c, in a network namespace of the
 * test's own (needs root; skipped with a line saying so otherwise).
 * Netlink sockets are kept between calls and outlive the thread that used
 * them (an HTTP connection's): the next thread's calls reuse them, answers
 * stay right across the kernel's refusals on a kept socket and across
 * threads calling at once, and no more than a few are kept. A bridge made or adopted is then checked with ioctls, by its ifindex:
 * changes made behind xenapid's back (MTU, down, removed, its name taken by
 * a device of another kind) are still seen. `ip` only sets up what
 * netlink.c does not make (veth pairs) and makes those changes. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "network/netlink.h"

static bool have_netns;

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static network_nl_link link_of(const char *dev) {
    network_nl_link *v = NULL, found = {.mtu = -1};
    size_t n = 0;

    assert_int_equal(network_nl_links(&v, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, dev) == 0)
            found = v[i];
    free(v);
    return found;
}

static int64_t mtu_of(const char *dev) {
    return link_of(dev).mtu;
}

static void need_netns(void) {
    if (!have_netns) {
        print_message("skipped: no network namespace of our own (needs root)\n");
        skip();
    }
}

static void test_refusals_leave_the_socket_right(void **state) {
    char (*ports)[IF_NAMESIZE] = NULL;
    size_t nports = 0;
    bool created = false;

    (void)state;
    need_netns();
    assert_int_equal(network_nl_bridge_ensure("xbr0", 1500, &created), 0);
    assert_true(created);
    assert_int_equal(network_nl_bridge_ensure("xbr0", 1500, &created), 0);
    assert_false(created);
    assert_int_equal(system("ip link add xv0 type veth peer name xv1"), 0);
    for (int i = 0; i < 20; i++) {
        /* a refusal, then answers that must be this call's, not a leftover */
        assert_int_equal(network_nl_bridge_ensure("xv0", 0, NULL), -ENOTUNIQ);
        assert_true(network_nl_link_exists("xbr0", "bridge"));
        assert_int_equal(network_nl_link_delete("nope0"), -ENODEV);
        assert_false(network_nl_link_exists("nope0", NULL));
        assert_true(network_nl_link_exists("xv0", "veth"));
        assert_false(network_nl_link_exists("xv0", "bridge"));
        assert_int_equal(network_nl_vif_apply("nope0", 1400, 0, false), -ENODEV);
        assert_int_equal(network_nl_link_set_master("nope0", "xbr0"), -ENODEV);
    }
    assert_int_equal(network_nl_link_set_master("xv0", "xbr0"), 0);
    assert_int_equal(network_nl_ports("xbr0", &ports, &nports), 0);
    assert_int_equal(nports, 1);
    assert_string_equal(ports[0], "xv0");
    free(ports);
    assert_int_equal(network_nl_vif_apply("xv0", 1400, 0, false), 0);
    assert_int_equal(mtu_of("xv0"), 1400);
    assert_int_equal(network_nl_link_delete("xv0"), 0);
    assert_false(network_nl_link_exists("xv1", NULL)); /* the peer goes with it */
    assert_int_equal(network_nl_link_delete("xbr0"), 0);
    assert_false(network_nl_link_exists("xbr0", NULL));
}

static void test_changes_behind_our_back_are_seen(void **state) {
    bool created = false;

    (void)state;
    need_netns();
    assert_int_equal(network_nl_bridge_ensure("xbr9", 1500, &created), 0);
    assert_true(created);
    assert_int_equal(network_nl_bridge_ensure("xbr9", 1500, &created), 0); /* known now */
    assert_false(created);
    assert_int_equal(system("ip link set xbr9 mtu 1400"), 0);
    assert_int_equal(network_nl_bridge_ensure("xbr9", 1500, NULL), 0);
    assert_int_equal(mtu_of("xbr9"), 1500);
    assert_int_equal(system("ip link set xbr9 down"), 0);
    assert_int_equal(network_nl_bridge_ensure("xbr9", 1500, NULL), 0);
    assert_true(link_of("xbr9").up);
    /* its name taken by a device of another kind */
    assert_int_equal(system("ip link del xbr9 && ip link add xbr9 type veth peer name xbr9p"), 0);
    assert_false(network_nl_link_exists("xbr9", "bridge"));
    assert_int_equal(network_nl_bridge_ensure("xbr9", 1500, NULL), -ENOTUNIQ);
    assert_int_equal(network_nl_link_delete("xbr9"), 0);
    assert_false(network_nl_link_exists("xbr9", "bridge"));
    /* removed behind our back, then made again by us */
    assert_int_equal(network_nl_bridge_ensure("xbr9", 1500, &created), 0);
    assert_true(created);
    assert_true(network_nl_link_exists("xbr9", "bridge"));
    assert_int_equal(system("ip link del xbr9"), 0);
    assert_false(network_nl_link_exists("xbr9", "bridge"));
    assert_int_equal(network_nl_bridge_ensure("xbr9", 1500, &created), 0);
    assert_true(created);
    assert_int_equal(network_nl_link_delete("xbr9"), 0);
}

static void *one_call(void *arg) {
    (void)arg;
    network_nl_link_exists("lo", NULL);
    return NULL;
}

static void *fifty_calls(void *arg) {
    int *fds_during = arg;

    for (int i = 0; i < 50; i++)
        network_nl_link_exists(i % 2 ? "lo" : "nope0", NULL);
    *fds_during = open_fds();
    return NULL;
}

/* A connection's thread ends after its call: the socket stays for the next. */
static void test_a_socket_outlives_its_thread(void **state) {
    pthread_t t;
    int before, kept, during = 0;

    (void)state;
    need_netns();
    before = open_fds();
    assert_int_equal(pthread_create(&t, NULL, one_call, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    kept = open_fds();
    assert_true(kept <= before + 1); /* none more than one: one call, one socket at most */
    assert_int_equal(pthread_create(&t, NULL, fifty_calls, &during), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(during, kept);    /* its calls, failed look-ups too, used the kept one */
    assert_int_equal(open_fds(), kept); /* and left it there */
    assert_int_equal(pthread_create(&t, NULL, one_call, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(open_fds(), kept);
}

typedef struct prober {
    char name[IF_NAMESIZE];
    int wrong;
} prober;

static void *probe_names(void *arg) {
    prober *p = arg;

    for (int i = 0; i < 200; i++) {
        bool want = i % 2 == 0;
        if (network_nl_link_exists(want ? p->name : "nope0", want ? "bridge" : NULL) != want)
            p->wrong++;
    }
    return NULL;
}

static void test_threads_get_their_own_answers(void **state) {
    prober p[4];
    pthread_t t[4];
    int before;

    (void)state;
    need_netns();
    before = open_fds();
    for (int i = 0; i < 4; i++) {
        p[i] = (prober){0};
        snprintf(p[i].name, sizeof p[i].name, "xbr%d", i + 1);
        assert_int_equal(network_nl_bridge_ensure(p[i].name, 0, NULL), 0);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, probe_names, &p[i]), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(p[i].wrong, 0);
        assert_int_equal(network_nl_link_delete(p[i].name), 0);
    }
    assert_true(open_fds() <= before + 4); /* one per thread calling at once at most, kept */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals_leave_the_socket_right),
        cmocka_unit_test(test_changes_behind_our_back_are_seen),
        cmocka_unit_test(test_a_socket_outlives_its_thread),
        cmocka_unit_test(test_threads_get_their_own_answers),
    };

    have_netns = geteuid() == 0 && unshare(CLONE_NEWNET) == 0;
    if (have_netns && system("ip link set lo up") != 0)
        have_netns = false;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
