/* Helpers shared by the drivers that keep VDIs as files: errors, VDI infos,
 * opening a VDI's file without leaving the SR, and the sparse-aware copy used
 * by VDI.clone/copy/snapshot. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/log.h"
#include "storage/driver.h"

int storage_err_set(storage_err *e, int code, int errno_value, const char *description, const char *detail) {
    e->code = code;
    if (detail && *detail)
        snprintf(e->text, sizeof e->text, "%s [opterr=%s]", description, detail);
    else
        snprintf(e->text, sizeof e->text, "%s", description);
    if (errno_value < 0)
        errno_value = -errno_value;
    return errno_value ? -errno_value : -EIO;
}

void storage_vdi_info_free(storage_vdi_info *v) {
    if (!v)
        return;
    free(v->location);
    free(v->name);
    free(v->parent);
    free(v->lun_id);
    *v = (storage_vdi_info){0};
}

void storage_vdi_infos_free(storage_vdi_info *v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        storage_vdi_info_free(&v[i]);
    free(v);
}

/* What an SR directory may hold as a VDI's data: a regular file of its own.
 * A symlink or a hard link could be anything on the host (planted by whoever
 * can write to an ISO library share, say), so neither is followed. */
static int plain_file(const struct stat *st) {
    if (S_ISLNK(st->st_mode))
        return -ELOOP;
    if (!S_ISREG(st->st_mode))
        return -EINVAL;
    if (st->st_nlink > 1)
        return -EMLINK;
    return 0;
}

int storage_check_file(const char *path, struct stat *ret_st) {
    struct stat st;
    int rc;

    if (lstat(path, &st) < 0)
        return -errno;
    rc = plain_file(&st);
    if (rc == 0 && ret_st)
        *ret_st = st;
    return rc;
}

int storage_open_file(const char *path, int flags, mode_t mode) {
    struct stat st;
    int fd = -1, fl, rc;

    /* O_NOFOLLOW: the last component (the entry in the SR directory; the ones
     * before are the SR's own path) is not followed if it is a symlink;
     * O_NONBLOCK: a FIFO there does not block the open. */
    fd = open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, mode);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if (fstat(fd, &st) < 0 || (fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        rc = -errno;
        goto out;
    }
    rc = plain_file(&st);
    if (rc == 0) {
        rc = fd;
        fd = -1;
    }
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

#define COPY_CHUNK (4u << 20)

/* Copies [off, end) with copy_file_range, falling back to read/write. */
static int copy_range(int src, int dst, off_t off, off_t end) {
    char *buf = NULL;
    bool use_cfr = true;
    int rc = 0;

    while (off < end) {
        size_t want = (size_t)(end - off) > COPY_CHUNK ? COPY_CHUNK : (size_t)(end - off);
        ssize_t n;

        if (use_cfr) {
            loff_t in = off, out = off;
            n = copy_file_range(src, &in, dst, &out, want, 0);
            if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
                use_cfr = false;
                continue;
            }
        } else {
            if (!buf && !(buf = malloc(COPY_CHUNK))) {
                rc = -ENOMEM;
                break;
            }
            n = pread(src, buf, want, off);
            if (n > 0) {
                ssize_t w = 0;
                while (w < n) {
                    ssize_t k = pwrite(dst, buf + w, (size_t)(n - w), off + w);
                    if (k < 0) {
                        if (errno == EINTR)
                            continue;
                        rc = -errno;
                        goto out;
                    }
                    w += k;
                }
            }
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (n == 0) /* the source shrank under us: the rest reads as zeros */
            break;
        off += n;
    }
out:
    free(buf);
    return rc;
}

int storage_copy_file(const char *src_path, int dst_fd, int64_t size, bool punch_holes) {
    struct stat st;
    off_t off = 0, limit;
    int src, rc = 0;

    src = storage_open_file(src_path, O_RDONLY, 0);
    if (src < 0)
        return src;
    if (fstat(src, &st) < 0) {
        rc = -errno;
        goto out;
    }
    if (!punch_holes && st.st_size == size && ioctl(dst_fd, FICLONE, src) == 0)
        goto sync; /* a reflink: shares the extents, copy-on-write from now on */
    if (!punch_holes && ftruncate(dst_fd, size) < 0) {
        rc = -errno;
        goto out;
    }
    limit = st.st_size < size ? st.st_size : size;
    while (off < limit) {
        off_t data = lseek(src, off, SEEK_DATA), hole;

        if (data < 0) {
            if (errno == ENXIO)
                data = limit; /* only a hole remains */
            else
                data = off;   /* no SEEK_DATA here: copy everything */
        }
        if (data > limit)
            data = limit;
        if (punch_holes && data > off &&
            fallocate(dst_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, data - off) < 0) {
            /* No hole punching: write the zeros. */
            rc = -errno;
            if (rc != -EOPNOTSUPP)
                goto out;
            rc = 0;
            for (off_t z = off; z < data;) {
                static const char zeros[65536];
                size_t k = (size_t)(data - z) > sizeof zeros ? sizeof zeros : (size_t)(data - z);
                ssize_t w = pwrite(dst_fd, zeros, k, z);
                if (w < 0) {
                    if (errno == EINTR)
                        continue;
                    rc = -errno;
                    goto out;
                }
                z += w;
            }
        }
        if (data >= limit)
            break;
        hole = lseek(src, data, SEEK_HOLE);
        if (hole < 0 || hole > limit)
            hole = limit;
        rc = copy_range(src, dst_fd, data, hole);
        if (rc < 0)
            goto out;
        off = hole;
    }
sync:
    if (fdatasync(dst_fd) < 0)
        rc = -errno;
out:
    close(src);
    return rc;
}

int storage_unlink_vdis(const storage_sr *sr, char *const *locations, size_t n, storage_err *e) {
    for (size_t i = 0; i < n; i++) {
        char *p = sr->drv->vdi_path(sr, locations[i]);
        if (p && unlink(p) < 0 && errno != ENOENT) {
            int rc = storage_err_set(e, SM_ERR_VDI_DELETE, errno, "Failed to mark VDI hidden", strerror(errno));
            free(p);
            return rc;
        }
        free(p);
    }
    return 0;
}

void storage_remove_parts(const storage_sr *sr) {
    DIR *d = opendir(sr->path);
    struct dirent *de;

    while (d && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.' && n > 5 && strcmp(de->d_name + n - 5, ".part") == 0 &&
            unlinkat(dirfd(d), de->d_name, 0) == 0)
            log_notice("storage: removed %s/%s left by an interrupted operation", sr->path, de->d_name);
    }
    if (d)
        closedir(d);
}

int storage_check_vdi(const storage_driver *drv, const char *path) {
    struct stat st;

    if (!drv->block)
        return storage_check_file(path, NULL);
    if (stat(path, &st) < 0)
        return -errno;
    return S_ISBLK(st.st_mode) ? 0 : -ENOTBLK;
}

int storage_open_vdi(const storage_driver *drv, const char *path, int flags) {
    struct stat st;
    int fd;

    if (!drv->block)
        return storage_open_file(path, flags, 0);
    fd = open(path, flags | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode)) {
        close(fd);
        return -ENOTBLK;
    }
    return fd;
}
