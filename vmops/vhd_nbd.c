/* VHD disks through nbdkit and the kernel's NBD client (see vhd_nbd.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/nbd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmops/nbd.h"
#include "vmops/vhd_nbd.h"

#define KEY_MAX 64
#define START_TRIES 300 /* x 100 ms: nbdkit opens the chain and binds its socket in well under a second */
#define STOP_TRIES 50   /* x 100 ms before SIGKILL */

typedef struct files {
    char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char pid[PATH_MAX];
    char rec[PATH_MAX];
} files;

bool vmops_vhd_nbd_key_valid(const char *key) {
    size_t n = strlen(key);

    if (n == 0 || n > KEY_MAX)
        return false;
    return strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == n;
}

static int files_of(const char *dir, const char *key, files *f) {
    if (!vmops_vhd_nbd_key_valid(key))
        return -EINVAL;
    if ((size_t)snprintf(f->sock, sizeof f->sock, "%s/%s.sock", dir, key) >= sizeof f->sock ||
        (size_t)snprintf(f->pid, sizeof f->pid, "%s/%s.pid", dir, key) >= sizeof f->pid ||
        (size_t)snprintf(f->rec, sizeof f->rec, "%s/%s.nbd", dir, key) >= sizeof f->rec)
        return -ENAMETOOLONG;
    return 0;
}

static int read_small(const char *path, char *buf, size_t n) {
    ssize_t k;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0)
        return -errno;
    k = read(fd, buf, n - 1);
    close(fd);
    if (k < 0)
        return -errno;
    buf[k] = 0;
    return 0;
}

static int write_record(const files *f, int index, pid_t pgid) {
    char tmp[PATH_MAX + 8], line[64];
    int fd, n, rc = 0;

    snprintf(tmp, sizeof tmp, "%s.tmp", f->rec);
    n = snprintf(line, sizeof line, "%d %d\n", index, (int)pgid);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    if (write(fd, line, (size_t)n) != n)
        rc = -EIO;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, f->rec) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

/* A process that still runs (a zombie does not: init reaps it when it likes). */
static bool running(pid_t pid) {
    char path[64], st[256], *paren;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_small(path, st, sizeof st) < 0)
        return false;
    paren = strrchr(st, ')');
    return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

/* nbdkit's group: its pidfile's process, when it is still in the group we
 * made (a pid is not reused as a group id while the group lives). Without a
 * pidfile (nbdkit gone, or the file removed) nothing says the group is still
 * ours: once nbdkit's group has ended, its number can be any new process's
 * (a QEMU, another nbdkit) after setsid, so it is not signalled.
 * start_nbdkit returns once the pidfile is there. */
static void stop_group(const files *f, pid_t pgid) {
    char buf[32];
    pid_t pid = 0;

    if (pgid <= 1)
        return;
    if (read_small(f->pid, buf, sizeof buf) == 0)
        pid = (pid_t)atoi(buf);
    if (pid <= 1 || getpgid(pid) != pgid)
        return; /* not ours any more */
    if (kill(-pgid, SIGTERM) < 0)
        return;
    for (int i = 0; i < STOP_TRIES && running(pid); i++)
        usleep(100000);
    if (running(pid))
        kill(-pgid, SIGKILL);
}

static void remove_files(const files *f) {
    unlink(f->sock);
    unlink(f->pid);
    unlink(f->rec);
}

/* nbdkit forks into the background once its plugin has opened the chain and
 * the socket listens; the first process's exit status says whether it did.
 * setsid: the daemon's group is ours to end, and no terminal or session of
 * xenapid's reaches it. Its stderr (the reason of a refusal) comes back through errfd. */
static int start_nbdkit(const vmops_vhd_nbd_params *p, const files *f, pid_t *ret_pgid, char *err, size_t errlen) {
    char file_arg[PATH_MAX + 8];
    const char *argv[16];
    int pipefd[2] = {-1, -1}, status = 0, rc;
    size_t a = 0;
    pid_t pid;

    if ((size_t)snprintf(file_arg, sizeof file_arg, "file=%s", p->image) >= sizeof file_arg)
        return -ENAMETOOLONG;
    argv[a++] = p->nbdkit ? p->nbdkit : "nbdkit";
    argv[a++] = "--unix";
    argv[a++] = f->sock;
    argv[a++] = "--pidfile";
    argv[a++] = f->pid;
    argv[a++] = "--threads";
    argv[a++] = VMOPS_VHD_NBD_THREADS;
    if (p->readonly)
        argv[a++] = "--readonly";
    argv[a++] = p->plugin;
    argv[a++] = file_arg;
    if (p->readonly)
        argv[a++] = "readonly=true";
    argv[a] = NULL;
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    pid = fork();
    if (pid < 0) {
        rc = -errno;
        goto out;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);

        setsid();
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
        }
        dup2(pipefd[1], STDERR_FILENO);
        /* nothing of libxl's or xenapid's (xenstore, listening sockets) lives on in the daemon */
        close_range(3, ~0u, 0);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    pipefd[1] = -1;
    rc = -ETIMEDOUT;
    for (int i = 0; i < START_TRIES; i++) {
        pid_t w = waitpid(pid, &status, WNOHANG);

        if (w == pid) {
            rc = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
            break;
        }
        if (w < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        usleep(100000);
    }
    if (rc == -ETIMEDOUT) {
        kill(-pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    /* stop_group trusts the group only while the pidfile names a member of
     * it, and nbdkit's daemon may write that file just after the first
     * process has exited: attach goes on once it is there (3 s at most) */
    for (int i = 0; rc == 0 && i < START_TRIES && access(f->pid, F_OK) < 0; i++)
        usleep(10000);
    if (rc < 0) {
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        ssize_t k = 0;

        /* what nbdkit said, without waiting for a writer that may live on */
        if (errlen > 1 && poll(&pfd, 1, 0) == 1)
            k = read(pipefd[0], err, errlen - 1);
        err[k > 0 ? k : 0] = 0;
        if (k > 0)
            err[strcspn(err, "\n")] = 0;
        else
            snprintf(err, errlen, "nbdkit %s", rc == -ETIMEDOUT ? "did not become ready" : "failed");
        goto out;
    }
    *ret_pgid = pid;
out:
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    return rc;
}

static int connect_unix(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int rc = -errno;

        close(fd);
        return rc;
    }
    return fd;
}

static int device_number(int index, dev_t *ret) {
    char path[64], buf[32];
    unsigned maj, min;
    int rc;

    snprintf(path, sizeof path, "/sys/block/nbd%d/dev", index);
    rc = read_small(path, buf, sizeof buf);
    if (rc < 0)
        return rc;
    if (sscanf(buf, "%u:%u", &maj, &min) != 2)
        return -EPROTO;
    *ret = makedev(maj, min);
    return 0;
}

/* One connection per CPU (the kernel receives on each in a thread of its own). */
static unsigned connections_of(const vmops_vhd_nbd_params *p) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = p->connections ? p->connections : cpus > 0 ? (unsigned)cpus : 1;

    if (n > VMOPS_VHD_NBD_CONNECTIONS)
        n = VMOPS_VHD_NBD_CONNECTIONS;
    return n;
}

int vmops_vhd_nbd_attach(const vmops_vhd_nbd_params *p, vmops_vhd_nbd *ret, char *err, size_t errlen) {
    vmops_nbd_connect_params c = {.nsocks = 0};
    files f;
    uint64_t size;
    uint16_t flags;
    pid_t pgid = 0;
    dev_t dev;
    int index = -1, rc;

    err[0] = 0;
    if (!p->image || !p->dir || !p->key || !p->plugin) {
        snprintf(err, errlen, "incomplete parameters");
        return -EINVAL;
    }
    rc = files_of(p->dir, p->key, &f);
    if (rc < 0) {
        snprintf(err, errlen, "bad key or state directory");
        return rc;
    }
    if (mkdir(p->dir, 0700) < 0 && errno != EEXIST) {
        rc = -errno;
        snprintf(err, errlen, "cannot make %s", p->dir);
        return rc;
    }
    /* a record under this key is from a device that was never detached (a
     * domid used again after a crash of everything): it ends first */
    vmops_vhd_nbd_detach(p->dir, p->key);
    remove_files(&f);
    rc = start_nbdkit(p, &f, &pgid, err, errlen);
    if (rc < 0)
        goto fail;
    rc = write_record(&f, -1, pgid);
    if (rc < 0) {
        snprintf(err, errlen, "cannot write %s", f.rec);
        goto fail;
    }
    for (unsigned want = connections_of(p); c.nsocks < want;) {
        int fd = connect_unix(f.sock);

        if (fd < 0) {
            rc = fd;
            snprintf(err, errlen, "cannot connect to nbdkit's socket %s", f.sock);
            goto fail;
        }
        c.sock_fds[c.nsocks++] = fd;
        rc = vmops_nbd_handshake(fd, &size, &flags);
        if (rc < 0) {
            snprintf(err, errlen, "NBD handshake with nbdkit failed");
            goto fail;
        }
        if (p->readonly && !(flags & NBD_FLAG_READ_ONLY)) {
            rc = -EPROTO;
            snprintf(err, errlen, "nbdkit serves a read-only disk writable");
            goto fail;
        }
        if (!(flags & NBD_FLAG_CAN_MULTI_CONN))
            want = 1; /* a server that cannot keep connections coherent gets one */
    }
    c.size = size;
    c.flags = flags;
    c.identifier = f.sock;
    rc = vmops_nbd_connect(&c, &index);
    if (rc < 0) {
        snprintf(err, errlen, rc == -ENOENT ? "no NBD support in the kernel (modprobe nbd)"
                                            : "cannot connect an NBD device");
        goto fail;
    }
    rc = write_record(&f, index, pgid);
    if (rc < 0) {
        snprintf(err, errlen, "cannot write %s", f.rec);
        goto fail;
    }
    rc = device_number(index, &dev);
    if (rc < 0) {
        snprintf(err, errlen, "no device number for nbd%d", index);
        goto fail;
    }
    /* a tuning: the device works without it (older kernels, no sysfs) */
    vmops_nbd_set_max_request(index, p->max_request_kib ? p->max_request_kib : VMOPS_VHD_NBD_MAX_REQUEST_KIB);
    for (unsigned i = 0; i < c.nsocks; i++)
        close(c.sock_fds[i]);
    ret->index = index;
    ret->dev = dev;
    ret->pgid = pgid;
    return 0;
fail:
    for (unsigned i = 0; i < c.nsocks; i++)
        close(c.sock_fds[i]);
    if (index >= 0)
        vmops_nbd_disconnect(index, f.sock);
    stop_group(&f, pgid);
    remove_files(&f);
    return rc;
}

int vmops_vhd_nbd_detach(const char *dir, const char *key) {
    char buf[64];
    int index = -1, pgid = 0, rc;
    files f;

    rc = files_of(dir, key, &f);
    if (rc < 0)
        return rc;
    rc = read_small(f.rec, buf, sizeof buf);
    if (rc < 0)
        return rc;
    if (sscanf(buf, "%d %d", &index, &pgid) != 2) {
        remove_files(&f);
        return -EPROTO;
    }
    /* the device first: its requests in flight fail rather than hang on a dead server */
    rc = index >= 0 ? vmops_nbd_disconnect(index, f.sock) : 0;
    if (rc == -ENXIO || rc == -ESTALE)
        rc = 0;
    stop_group(&f, (pid_t)pgid);
    remove_files(&f);
    return rc;
}
