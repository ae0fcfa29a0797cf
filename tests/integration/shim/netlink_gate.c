/* netlink-gate.so: an LD_PRELOAD shim for the daemon in test_vif_plumbing.py and bench/boot_storm.py
 * only: a stalled netlink call made on demand. It wraps libnl's rtnl_link_get_kernel for the names of
 * VIF backend devices (vif<domid>.<n>): the look-up every VIF's plumbing starts with, and nothing else
 * makes. With XENAPID_TEST_NETLINK_GATE=PATH set, such a call first creates PATH.entered, then waits
 * while PATH exists, then goes on: the test holds the gate closed and looks at what the daemon still
 * answers meanwhile (a kernel that holds its rtnl lock for seconds, or a dom0 starved of CPU as in the
 * Xen lab, looks the same from the daemon). With XENAPID_TEST_NETLINK_DELAY_MS=N each such call takes
 * N ms more (bench/boot_storm.py --netlink-delay-ms: a slow kernel's netlink in a storm). */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct nl_sock;
struct rtnl_link;
typedef int (*get_kernel_fn)(struct nl_sock *sk, int ifindex, const char *name, struct rtnl_link **result);

int rtnl_link_get_kernel(struct nl_sock *sk, int ifindex, const char *name, struct rtnl_link **result); /* libnl's */

int rtnl_link_get_kernel(struct nl_sock *sk, int ifindex, const char *name, struct rtnl_link **result) {
    static get_kernel_fn real;
    const char *gate = getenv("XENAPID_TEST_NETLINK_GATE");
    const char *delay = getenv("XENAPID_TEST_NETLINK_DELAY_MS");

    if (!real) {
        /* dlsym returns a void *; POSIX guarantees it converts to a function pointer */
        *(void **)&real = dlsym(RTLD_NEXT, "rtnl_link_get_kernel");
        if (!real)
            return -1;
    }
    if (!name || strncmp(name, "vif", 3) != 0)
        return real(sk, ifindex, name, result);
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
    return real(sk, ifindex, name, result);
}
