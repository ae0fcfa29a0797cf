/* NBD handshake and the kernel's NBD devices over generic netlink (see nbd.h). */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <linux/nbd.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmops/nbd.h"

#define NBD_MAGIC_INIT 0x4e42444d41474943ULL /* "NBDMAGIC" */
#define NBD_MAGIC_OPT 0x49484156454f5054ULL  /* "IHAVEOPT" */
#define NBD_HS_FIXED_NEWSTYLE 1u
#define NBD_HS_NO_ZEROES 2u
#define NBD_OPT_EXPORT_NAME_ 1u
#define NBD_HANDSHAKE_MS 10000 /* a local nbdkit answers at once; a stuck one is not waited for */

#define NL_BUF 8192
#define NL_ALIGN4(n) (((n) + 3u) & ~3u)

/* ---- the handshake ---------------------------------------------------------- */

static int io_all(int fd, void *buf, size_t n, bool out, const struct timespec *deadline) {
    uint8_t *p = buf;

    while (n > 0) {
        struct pollfd pfd = {.fd = fd, .events = out ? POLLOUT : POLLIN};
        struct timespec now;
        long ms;
        ssize_t k;

        clock_gettime(CLOCK_MONOTONIC, &now);
        ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
        if (ms <= 0)
            return -ETIMEDOUT;
        k = poll(&pfd, 1, (int)ms);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -ETIMEDOUT;
        k = out ? send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(fd, p, n, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EPROTO; /* the server hung up mid-handshake */
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int vmops_nbd_handshake(int fd, uint64_t *ret_size, uint16_t *ret_flags) {
    struct timespec deadline;
    uint8_t hello[18], reply[10], zeroes[124];
    uint8_t opt[16];
    uint64_t magic, v64;
    uint32_t cflags, v32;
    uint16_t hflags, v16;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += NBD_HANDSHAKE_MS / 1000;
    if ((rc = io_all(fd, hello, sizeof hello, false, &deadline)) < 0)
        return rc;
    memcpy(&magic, hello, 8);
    memcpy(&v64, hello + 8, 8);
    memcpy(&v16, hello + 16, 2);
    hflags = be16toh(v16);
    /* only fixed newstyle: the old style has no options, and nbdkit speaks newstyle by default */
    if (be64toh(magic) != NBD_MAGIC_INIT || be64toh(v64) != NBD_MAGIC_OPT || !(hflags & NBD_HS_FIXED_NEWSTYLE))
        return -EPROTO;
    cflags = htobe32(NBD_HS_FIXED_NEWSTYLE | (hflags & NBD_HS_NO_ZEROES));
    /* NBD_OPT_EXPORT_NAME of "" (the default export): the reply is the export itself */
    v64 = htobe64(NBD_MAGIC_OPT);
    memcpy(opt, &v64, 8);
    v32 = htobe32(NBD_OPT_EXPORT_NAME_);
    memcpy(opt + 8, &v32, 4);
    v32 = 0;
    memcpy(opt + 12, &v32, 4);
    if ((rc = io_all(fd, &cflags, sizeof cflags, true, &deadline)) < 0 ||
        (rc = io_all(fd, opt, sizeof opt, true, &deadline)) < 0 ||
        (rc = io_all(fd, reply, sizeof reply, false, &deadline)) < 0)
        return rc;
    if (!(hflags & NBD_HS_NO_ZEROES) && (rc = io_all(fd, zeroes, sizeof zeroes, false, &deadline)) < 0)
        return rc;
    memcpy(&v64, reply, 8);
    memcpy(&v16, reply + 8, 2);
    *ret_size = be64toh(v64);
    *ret_flags = be16toh(v16);
    return 0;
}

/* ---- generic netlink ---------------------------------------------------------- */

typedef struct nlmsg {
    uint8_t buf[NL_BUF];
    size_t len;
} nlmsg;

static void msg_init(nlmsg *m, uint16_t family, uint8_t cmd, uint8_t version) {
    struct nlmsghdr *h = (struct nlmsghdr *)m->buf;
    struct genlmsghdr *g = (struct genlmsghdr *)(m->buf + NLMSG_HDRLEN);

    memset(m->buf, 0, sizeof m->buf);
    h->nlmsg_type = family;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    h->nlmsg_seq = 1;
    g->cmd = cmd;
    g->version = version;
    m->len = NLMSG_HDRLEN + GENL_HDRLEN;
}

/* Returns the attribute's offset (for a nest's length), or 0 when full. */
static size_t msg_put(nlmsg *m, uint16_t type, const void *data, size_t n) {
    struct nlattr *a = (struct nlattr *)(m->buf + m->len);
    size_t at = m->len;

    if (m->len + NL_ALIGN4(NLA_HDRLEN + n) > sizeof m->buf)
        return 0;
    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + n);
    if (n)
        memcpy(m->buf + m->len + NLA_HDRLEN, data, n);
    m->len += NL_ALIGN4(NLA_HDRLEN + n);
    return at;
}

static void msg_nest_end(nlmsg *m, size_t at) {
    ((struct nlattr *)(m->buf + at))->nla_len = (uint16_t)(m->len - at);
}

/* The attribute `type` among the attributes at p (n bytes), or NULL. */
static const struct nlattr *attr_find(const uint8_t *p, size_t n, uint16_t type) {
    while (n >= NLA_HDRLEN) {
        const struct nlattr *a = (const struct nlattr *)p;
        size_t step = NL_ALIGN4(a->nla_len);

        if (a->nla_len < NLA_HDRLEN || a->nla_len > n)
            return NULL;
        if ((a->nla_type & NLA_TYPE_MASK) == type)
            return a;
        if (step > n)
            return NULL;
        p += step;
        n -= step;
    }
    return NULL;
}

/* Sends m and reads until the ACK; find (if not 0) is an attribute of the
 * reply copied (up to n bytes) into ret_val. */
static int nl_call(nlmsg *m, uint16_t find, void *ret_val, size_t n) {
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    struct timeval tv = {.tv_sec = 10};
    bool found = false;
    uint8_t rbuf[NL_BUF];
    int fd = -1, rc;

    ((struct nlmsghdr *)m->buf)->nlmsg_len = (uint32_t)m->len;
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (sendto(fd, m->buf, m->len, 0, (struct sockaddr *)&sa, sizeof sa) < 0) {
        rc = -errno;
        goto out;
    }
    for (;;) {
        ssize_t k = recv(fd, rbuf, sizeof rbuf, 0);
        size_t left;
        const uint8_t *p = rbuf;

        if (k < 0) {
            rc = errno == EAGAIN ? -ETIMEDOUT : -errno;
            goto out;
        }
        left = (size_t)k;
        while (left >= NLMSG_HDRLEN) {
            const struct nlmsghdr *h = (const struct nlmsghdr *)p;

            if (h->nlmsg_len < NLMSG_HDRLEN || h->nlmsg_len > left) {
                rc = -EPROTO;
                goto out;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = (const struct nlmsgerr *)(p + NLMSG_HDRLEN);

                if (h->nlmsg_len < NLMSG_HDRLEN + sizeof *e) {
                    rc = -EPROTO;
                    goto out;
                }
                rc = e->error < 0 ? e->error : (find && !found ? -EPROTO : 0);
                goto out;
            }
            if (find && h->nlmsg_len > NLMSG_HDRLEN + GENL_HDRLEN) {
                const struct nlattr *a = attr_find(p + NLMSG_HDRLEN + GENL_HDRLEN,
                                                   h->nlmsg_len - NLMSG_HDRLEN - GENL_HDRLEN, find);

                if (a && (size_t)(a->nla_len - NLA_HDRLEN) >= n) {
                    memcpy(ret_val, (const uint8_t *)a + NLA_HDRLEN, n);
                    found = true;
                }
            }
            if (NL_ALIGN4(h->nlmsg_len) >= left)
                break;
            left -= NL_ALIGN4(h->nlmsg_len);
            p += NL_ALIGN4(h->nlmsg_len);
        }
    }
out:
    close(fd);
    return rc;
}

static int family_id(uint16_t *ret_id) {
    nlmsg m;
    uint16_t id = 0;
    int rc;

    msg_init(&m, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1);
    msg_put(&m, CTRL_ATTR_FAMILY_NAME, NBD_GENL_FAMILY_NAME, sizeof NBD_GENL_FAMILY_NAME);
    rc = nl_call(&m, CTRL_ATTR_FAMILY_ID, &id, sizeof id);
    if (rc < 0)
        return rc;
    *ret_id = id;
    return 0;
}

/* modprobe nbd (the program, no shell), bounded: the family appears with the module. */
static int load_module(void) {
    const char *const argv[] = {"modprobe", "-q", "nbd", NULL};
    int status;
    pid_t pid;

    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);

        if (null >= 0)
            dup2(null, STDIN_FILENO);
        execv("/sbin/modprobe", (char *const *)argv);
        execvp("modprobe", (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) { /* 30 s */
        pid_t w = waitpid(pid, &status, WNOHANG);

        if (w == pid)
            return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ENOENT;
        if (w < 0 && errno != EINTR)
            return -errno;
        usleep(100000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -ETIMEDOUT;
}

static int nbd_family(uint16_t *ret_id) {
    int rc = family_id(ret_id);

    if (rc != -ENOENT)
        return rc;
    rc = load_module();
    if (rc < 0)
        return rc;
    return family_id(ret_id);
}

int vmops_nbd_connect(const vmops_nbd_connect_params *p, int *ret_index) {
    uint64_t block = 512;
    uint64_t flags = p->flags;
    uint32_t index = 0;
    uint16_t family;
    size_t socks, item;
    nlmsg m;
    int rc;

    if (p->nsocks == 0 || p->nsocks > VMOPS_NBD_MAX_CONNECTIONS || p->size == 0 || p->size % 512)
        return -EINVAL;
    for (unsigned i = 0; i < p->nsocks; i++)
        if (p->sock_fds[i] < 0)
            return -EINVAL;
    rc = nbd_family(&family);
    if (rc < 0)
        return rc;
    msg_init(&m, family, NBD_CMD_CONNECT, NBD_GENL_VERSION);
    msg_put(&m, NBD_ATTR_SIZE_BYTES, &p->size, sizeof p->size);
    /* 512: blkback's sector, and VHD's; the kernel's default request timeout (30 s) stays */
    msg_put(&m, NBD_ATTR_BLOCK_SIZE_BYTES, &block, sizeof block);
    msg_put(&m, NBD_ATTR_SERVER_FLAGS, &flags, sizeof flags);
    if (p->identifier && !msg_put(&m, NBD_ATTR_BACKEND_IDENTIFIER, p->identifier, strlen(p->identifier) + 1))
        return -ENAMETOOLONG;
    socks = msg_put(&m, NBD_ATTR_SOCKETS | NLA_F_NESTED, NULL, 0);
    for (unsigned i = 0; i < p->nsocks; i++) {
        uint32_t fd = (uint32_t)p->sock_fds[i];

        item = msg_put(&m, NBD_SOCK_ITEM | NLA_F_NESTED, NULL, 0);
        msg_put(&m, NBD_SOCK_FD, &fd, sizeof fd);
        msg_nest_end(&m, item);
    }
    msg_nest_end(&m, socks);
    rc = nl_call(&m, NBD_ATTR_INDEX, &index, sizeof index);
    if (rc < 0)
        return rc;
    *ret_index = (int)index;
    return 0;
}

static int read_sys_uint(const char *path, unsigned *ret) {
    char buf[32];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return n < 0 ? -errno : -EPROTO;
    buf[n] = 0;
    if (sscanf(buf, "%u", ret) != 1)
        return -EPROTO;
    return 0;
}

int vmops_nbd_set_max_request(int index, unsigned kib) {
    char path[96], buf[16];
    unsigned hw;
    ssize_t n;
    int fd, rc;

    snprintf(path, sizeof path, "/sys/block/nbd%d/queue/max_hw_sectors_kb", index);
    rc = read_sys_uint(path, &hw);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof path, "/sys/block/nbd%d/queue/max_sectors_kb", index);
    n = snprintf(buf, sizeof buf, "%u\n", kib < hw ? kib : hw);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    rc = write(fd, buf, (size_t)n) == n ? 0 : -errno;
    close(fd);
    return rc;
}

/* /sys/block/nbdN/backend: what the connect named (absent on kernels before 5.13). */
static int backend_matches(int index, const char *identifier) {
    char path[64], have[512];
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/sys/block/nbd%d/backend", index);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    n = read(fd, have, sizeof have - 1);
    close(fd);
    if (n <= 0)
        return -ESTALE; /* not connected (any more) */
    have[n] = 0;
    have[strcspn(have, "\n")] = 0;
    return strcmp(have, identifier) == 0 ? 0 : -ESTALE;
}

int vmops_nbd_disconnect(int index, const char *identifier) {
    uint32_t i = (uint32_t)index;
    char path[64];
    uint16_t family;
    nlmsg m;
    int rc;

    if (index < 0)
        return -EINVAL;
    snprintf(path, sizeof path, "/sys/block/nbd%d", index);
    if (access(path, F_OK) < 0)
        return -ENXIO;
    if (identifier && (rc = backend_matches(index, identifier)) < 0)
        return rc;
    rc = family_id(&family);
    if (rc < 0)
        return rc == -ENOENT ? -ENXIO : rc;
    msg_init(&m, family, NBD_CMD_DISCONNECT, NBD_GENL_VERSION);
    msg_put(&m, NBD_ATTR_INDEX, &i, sizeof i);
    return nl_call(&m, 0, NULL, 0);
}
