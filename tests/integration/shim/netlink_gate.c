/* netlink-gate.so: an LD_PRELOAD shim for the daemon in test_vif_plumbing.py only: a stalled
 * netlink call made on demand. With XENAPID_TEST_NETLINK_GATE=PATH set, rtnl_qdisc_delete (the call
 * that clears a VIF's rate limit, made for every VIF without one when it is plugged) first creates
 * PATH.entered, then waits while PATH exists, then goes on. The test holds the gate closed and looks
 * at what the daemon still answers meanwhile (a kernel that holds its rtnl lock for seconds, as seen
 * in the Xen lab, looks the same from the daemon). With XENAPID_TEST_NETLINK_DELAY_MS=N each such call
 * takes N ms more (bench/boot_storm.py --netlink-delay-ms: a slow kernel's netlink in a storm). */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct nl_sock;
struct rtnl_qdisc;
typedef int (*qdisc_delete_fn)(struct nl_sock *sk, struct rtnl_qdisc *q);

int rtnl_qdisc_delete(struct nl_sock *sk, struct rtnl_qdisc *q); /* libnl's, wrapped */

int rtnl_qdisc_delete(struct nl_sock *sk, struct rtnl_qdisc *q) {
    static qdisc_delete_fn real;
    const char *gate = getenv("XENAPID_TEST_NETLINK_GATE");
    const char *delay = getenv("XENAPID_TEST_NETLINK_DELAY_MS");

    if (!real) {
        /* dlsym returns a void *; POSIX guarantees it converts to a function pointer */
        *(void **)&real = dlsym(RTLD_NEXT, "rtnl_qdisc_delete");
        if (!real)
            return -1;
    }
    if (delay && atoi(delay) > 0)
        usleep((useconds_t)atoi(delay) * 1000);
    if (gate && access(gate, F_OK) == 0) {
        char entered[4096];
        int fd;

        snprintf(entered, sizeof entered, "%s.entered", gate);
        fd = open(entered, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
        while (access(gate, F_OK) == 0)
            usleep(10000);
    }
    return real(sk, q);
}
