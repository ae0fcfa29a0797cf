/* Loop devices through the loop ioctls (see loopdev.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmops/loopdev.h"

/* Another attacher (losetup, another helper) can take the device between
 * GET_FREE and CONFIGURE (EBUSY): ask again, a few times. */
#define LOOP_ATTACH_TRIES 8

/* LOOP_CONFIGURE (Linux 5.8) sets the file and flags in one call; older
 * kernels take LOOP_SET_FD then LOOP_SET_STATUS64. */
static int configure(int lfd, int ffd, bool readonly, const char *path) {
    struct loop_config c;

    memset(&c, 0, sizeof c);
    c.fd = (unsigned)ffd;
    c.info.lo_flags = readonly ? LO_FLAGS_READ_ONLY : 0;
    snprintf((char *)c.info.lo_file_name, sizeof c.info.lo_file_name, "%s", path);
    if (ioctl(lfd, LOOP_CONFIGURE, &c) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOTTY)
        return -errno;
    if (ioctl(lfd, LOOP_SET_FD, ffd) < 0)
        return -errno;
    if (ioctl(lfd, LOOP_SET_STATUS64, &c.info) < 0) {
        int rc = -errno;

        ioctl(lfd, LOOP_CLR_FD, 0);
        return rc;
    }
    return 0;
}

int vmops_loop_attach(const char *path, bool readonly, char *ret_name, size_t n, dev_t *ret_dev) {
    char name[32];
    struct stat st;
    int ctl = -1, ffd = -1, lfd = -1, rc = -EBUSY;

    ffd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY);
    if (ffd < 0) {
        rc = -errno;
        goto out;
    }
    ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        rc = -errno;
        goto out;
    }
    for (int i = 0; i < LOOP_ATTACH_TRIES; i++) {
        int nr = ioctl(ctl, LOOP_CTL_GET_FREE);

        if (nr < 0) {
            rc = -errno;
            goto out;
        }
        snprintf(name, sizeof name, "/dev/loop%d", nr);
        lfd = open(name, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (lfd < 0) {
            rc = -errno;
            goto out;
        }
        rc = configure(lfd, ffd, readonly, path);
        if (rc != -EBUSY)
            break;
        close(lfd);
        lfd = -1;
    }
    if (rc < 0)
        goto out;
    if (fstat(lfd, &st) < 0) {
        rc = -errno;
        ioctl(lfd, LOOP_CLR_FD, 0);
        goto out;
    }
    if (strlen(name) >= n) {
        rc = -ENAMETOOLONG;
        ioctl(lfd, LOOP_CLR_FD, 0);
        goto out;
    }
    strcpy(ret_name, name);
    *ret_dev = st.st_rdev;
    rc = 0;
out:
    if (lfd >= 0)
        close(lfd);
    if (ctl >= 0)
        close(ctl);
    if (ffd >= 0)
        close(ffd);
    return rc;
}

int vmops_loop_detach(const char *name, const char *path) {
    struct loop_info64 info;
    int fd = -1, rc;

    if (strncmp(name, "/dev/loop", 9) != 0 || strchr(name + 9, '/'))
        return -EINVAL;
    fd = open(name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ENXIO : -errno;
    if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0) {
        rc = -errno; /* ENXIO: nothing attached */
        goto out;
    }
    /* lo_file_name keeps the first 63 bytes of the name given at attach */
    if (path && strncmp((const char *)info.lo_file_name, path, sizeof info.lo_file_name - 1) != 0) {
        rc = -ESTALE;
        goto out;
    }
    rc = ioctl(fd, LOOP_CLR_FD, 0) < 0 ? -errno : 0;
out:
    close(fd);
    return rc;
}
