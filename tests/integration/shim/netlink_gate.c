/* netlink-gate.so: an LD_PRELOAD shim for the daemon in test_vif_plumbing.py and bench/boot_storm.py
 * only: a stalled netlink call made on demand. It wraps libnl's rtnl_link_get_kernel for the names of
 * VIF backend devices (vif<domid>.<n>): the look-up every VIF's plumbing starts with, and nothing else
 * makes. With XENAPID_TEST_NETLINK_GATE=PATH set, such a call first creates PATH.entered, then waits
 * while PATH exists, then goes on: the test holds the gate closed and looks at what the daemon still
 * answers meanwhile (a kernel that holds its rtnl lock for seconds, or a dom0 starved of CPU as in the
 * Xen lab, looks the same from the daemon). With XENAPID_TEST_NETLINK_DELAY_MS=N each such call takes
 * N ms more (bench/boot_storm.py --netlink-delay-ms: a slow kernel's netlink in a storm).
 * With XENAPID_TEST_STORE_GATE=PATH set, a write to the store's write-ahead log (xenapid.db-wal) does the
 * same: the store's commit stalls before anything of it reaches the file, so a kill -9 meanwhile loses
 * every write not yet durable (test_durability.py: a start that does not wait for its commit). */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Creates PATH.entered, then waits while PATH exists (nothing if gate is NULL or PATH is absent). */
static void gate_wait(const char *gate) {
    char entered[4096];
    int fd;

    if (!gate || access(gate, F_OK) != 0)
        return;
    snprintf(entered, sizeof entered, "%s.entered", gate);
    fd = open(entered, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
    while (access(gate, F_OK) == 0)
        usleep(10000);
}

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
    gate_wait(gate);
    return real(sk, ifindex, name, result);
}

/* Whether fd is the store's write-ahead log. */
static int is_store_wal(int fd) {
    char link[64], path[4096];
    ssize_t n;

    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = 0;
    n = (ssize_t)strlen(path);
    return n >= 14 && strcmp(path + n - 14, "xenapid.db-wal") == 0;
}

typedef ssize_t (*pwrite_fn)(int fd, const void *buf, size_t count, off_t offset);

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset); /* glibc's: off_t is 64 bits on x86-64 */
ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset);

static ssize_t gated_pwrite(const char *sym, int fd, const void *buf, size_t count, off_t offset) {
    pwrite_fn real;
    const char *gate = getenv("XENAPID_TEST_STORE_GATE");

    *(void **)&real = dlsym(RTLD_NEXT, sym);
    if (!real)
        return -1;
    if (gate && is_store_wal(fd))
        gate_wait(gate);
    return real(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    return gated_pwrite("pwrite64", fd, buf, count, offset);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    return gated_pwrite("pwrite", fd, buf, count, offset);
}
