/* "ext": xapi's local EXT SR as clouds find it. The SR is a directory,
 * <sr_mount_root>/<sr uuid> (device_config "device" is mounted there), or
 * the directory device_config "path" names (then <sr_mount_root>/<sr uuid>
 * is made a symlink to it, where clients look). Each VDI is a VHD image
 * <vdi uuid>.vhd made by storage/vhd_file.c (location = the uuid).
 *
 * VDI.snapshot and VDI.clone make a chain as sm's FileSR does, in constant
 * time: the VDI's image becomes a hidden parent <base>.vhd, the VDI a new
 * empty differencing leaf over it, the snapshot or clone another. Parents
 * are found by the name their child records (the locator's basename), only
 * as <uuid>.vhd entries of the same directory, each opened without following
 * a link (storage_open_file): nothing in a chain leads outside the SR.
 * Whatever is read from an image goes through the validated parser.
 *
 * New images are made as .<uuid>.vhd.part (invisible to scans), synced, then
 * renamed into place without replacing anything; a failure unlinks them.
 *
 * A VDI may also be raw, <vdi uuid>.raw (sm_config vdi_type=raw, as sm's
 * FileSR keeps one made with sm_config type=raw): the daemon's suspend
 * images, which the backends write as plain bytes. Its location is the uuid
 * too; the operations tell the two apart by what is there, and a .raw beside
 * a .vhd of the same uuid is never used (the .vhd is the VDI; the start-up
 * sweep reports the .raw). A raw image is never a parent: chains are VHDs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "agent/log.h"
#include "storage/driver.h"
#include "storage/vhd_dir.h"
#include "storage/vhd_file.h"

#define EXT_MAX_PATH 1024
#define EXT_CHAIN_MAX 30  /* sm's vhdutil MAX_CHAIN_SIZE: SnapshotChainTooLong beyond */
#define EXT_CHUNK (2u << 20)

static const char *dc_get(const xapi_value *dc, const char *key) {
    const xapi_value *v = dc ? xapi_struct_get(dc, key) : NULL;
    return v && v->kind == XAPI_V_STRING ? v->s : NULL;
}

static bool is_uuid(const char *s, size_t n) {
    if (n != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

static bool valid_location(const char *loc) {
    return loc && is_uuid(loc, strlen(loc));
}

/* <uuid>.vhd */
static bool vhd_name(const char *name) {
    return strlen(name) == 40 && strcmp(name + 36, ".vhd") == 0 && is_uuid(name, 36);
}

/* <uuid>.raw */
static bool raw_name(const char *name) {
    return strlen(name) == 40 && strcmp(name + 36, ".raw") == 0 && is_uuid(name, 36);
}

/* <sr>/<prefix><location><ext>[suffix], NULL for a location that is no uuid. */
static char *ext_file(const storage_sr *sr, const char *loc, const char *prefix, const char *ext,
                      const char *suffix) {
    char *p = NULL;

    if (!valid_location(loc))
        return NULL;
    if (asprintf(&p, "%s/%s%s%s%s", sr->path, prefix, loc, ext, suffix) < 0)
        xapi_oom();
    return p;
}

static char *ext_path(const storage_sr *sr, const char *loc) {
    return ext_file(sr, loc, "", ".vhd", "");
}

static char *ext_part(const storage_sr *sr, const char *loc) {
    return ext_file(sr, loc, ".", ".vhd", ".part");
}

static char *raw_path(const storage_sr *sr, const char *loc) {
    return ext_file(sr, loc, "", ".raw", "");
}

static char *raw_part(const storage_sr *sr, const char *loc) {
    return ext_file(sr, loc, ".", ".raw", ".part");
}

/* The image of location: its .vhd, or its .raw when only that is there (*ret_raw then). */
static char *ext_image(const storage_sr *sr, const char *loc, bool *ret_raw) {
    char *vhd = ext_path(sr, loc), *raw;
    struct stat st;

    *ret_raw = false;
    if (!vhd || lstat(vhd, &st) == 0 || errno != ENOENT)
        return vhd;
    raw = raw_path(sr, loc);
    if (lstat(raw, &st) < 0) {
        free(raw);
        return vhd;
    }
    free(vhd);
    *ret_raw = true;
    return raw;
}

static int ext_err(storage_err *e, int code, int rc, const char *what, const char *detail) {
    if (rc == -ENOSPC || rc == -EDQUOT)
        return storage_err_set(e, SM_ERR_SR_NO_SPACE, rc, "There is insufficient space", strerror(-rc));
    /* A raw image larger than the filesystem's files can be. */
    if (rc == -EFBIG)
        return storage_err_set(e, SM_ERR_VDI_SIZE, rc, "VDI Invalid size", strerror(-rc));
    return storage_err_set(e, code, rc, what, detail && *detail ? detail : strerror(rc < 0 ? -rc : rc));
}

/* ---- the SR ----------------------------------------------------------------- */

static int ext_config_at(const xapi_value *dc, const xapi_value *sm_config, const char *sr_uuid,
                         const char *mount_root, storage_sr *ret, storage_err *e) {
    const char *path = dc_get(dc, "path"), *device = dc_get(dc, "device");
    char *p = NULL;
    size_t n;

    if (path && *path) {
        n = strlen(path);
        if (path[0] != '/' || n >= EXT_MAX_PATH || strstr(path, "/../") || (n >= 3 && !strcmp(path + n - 3, "/..")))
            return storage_err_set(e, SM_ERR_INVALID_ARG, EINVAL, "Invalid argument",
                                   "path must be an absolute path without '..'");
        while (n > 1 && path[n - 1] == '/')
            n--;
        p = xapi_strndup(path, n);
    } else {
        if (!sr_uuid || !is_uuid(sr_uuid, strlen(sr_uuid)) || !mount_root || mount_root[0] != '/')
            return storage_err_set(e, SM_ERR_CONFIG_DEVICE_MISSING, EINVAL,
                                   "The request is missing the device parameter", NULL);
        if (asprintf(&p, "%s/%s", mount_root, sr_uuid) < 0)
            xapi_oom();
    }
    if (device && (device[0] != '/' || strstr(device, "/../") || strchr(device, ','))) {
        free(p);
        return storage_err_set(e, SM_ERR_INVALID_ARG, EINVAL, "Invalid argument",
                               "device must be one absolute block device path");
    }
    ret->path = p;
    ret->device = device && *device ? xapi_strdup(device) : NULL;
    return 0;
}

/* The layer calls sr_config_at; without the SR's uuid only a device_config path resolves. */
static int ext_config(const xapi_value *dc, char **ret_path, storage_err *e) {
    storage_sr h = {0};
    int rc = ext_config_at(dc, NULL, NULL, NULL, &h, e);

    free(h.device);
    if (rc == 0)
        *ret_path = h.path;
    return rc;
}

bool storage_is_mountpoint(const char *path) {
    char *up = NULL;
    struct statx stx;
    struct stat a, b;
    bool yes;

    /* The kernel says, where it can: a bind mount of a directory of the same
     * filesystem (an export of this host, a test's stand-in for one) has its
     * parent's st_dev. */
    if (statx(AT_FDCWD, path, AT_NO_AUTOMOUNT, 0, &stx) == 0 && (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
        return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
    if (asprintf(&up, "%s/..", path) < 0)
        xapi_oom();
    yes = stat(path, &a) == 0 && stat(up, &b) == 0 && a.st_dev != b.st_dev;
    free(up);
    return yes;
}

/* The directory there (the device mounted on it when there is one). */
static int ext_ready(const storage_sr *sr, int code, const char *what, storage_err *e) {
    struct stat st;
    int rc = storage_mkdirs(sr->path);

    if (rc < 0)
        return storage_err_set(e, code, rc, what, strerror(-rc));
    if (sr->device && !storage_is_mountpoint(sr->path) && mount(sr->device, sr->path, "ext4", MS_NOATIME, "") < 0)
        return storage_err_set(e, code, errno, what, strerror(errno));
    if (lstat(sr->path, &st) < 0 || !S_ISDIR(st.st_mode))
        return storage_err_set(e, code, ENOTDIR, what, "not a directory");
    if (access(sr->path, R_OK | W_OK | X_OK) < 0)
        return storage_err_set(e, code, errno, what, strerror(errno));
    return 0;
}

static int ext_sr_create(const storage_sr *sr, storage_err *e) {
    int rc = ext_ready(sr, SM_ERR_FILE_SR_CREATE, "File SR creation error", e);
    struct dirent *de;
    DIR *d;

    if (rc < 0)
        return rc;
    d = opendir(sr->path);
    if (!d)
        return storage_err_set(e, SM_ERR_FILE_SR_CREATE, errno, "File SR creation error", strerror(errno));
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "lost+found")) {
            rc = storage_err_set(e, SM_ERR_SR_EXISTS, EEXIST, "The SR already exists", "the directory is not empty");
            break;
        }
    closedir(d);
    return rc;
}

static int ext_sr_attach(const storage_sr *sr, storage_err *e) {
    return ext_ready(sr, SM_ERR_SR_UNAVAILABLE, "The SR is not available", e);
}

static int ext_sr_delete(const storage_sr *sr, char *const *locations, size_t n, storage_err *e) {
    int rc = storage_unlink_vdis(sr, locations, n, e);

    if (rc < 0)
        return rc;
    storage_remove_parts(sr);
    if (sr->device && storage_is_mountpoint(sr->path) && umount(sr->path) < 0)
        return storage_err_set(e, SM_ERR_SR_UNAVAILABLE, errno, "The SR is not available", strerror(errno));
    if (rmdir(sr->path) < 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST)
        return storage_err_set(e, SM_ERR_FILE_SR_RMDIR, errno, "File SR failed to remove directory", strerror(errno));
    return 0;
}

int storage_vhd_dir_sr_stat(const storage_sr *sr, int64_t *ret_size, int64_t *ret_used, storage_err *e) {
    struct statvfs vfs;

    if (statvfs(sr->path, &vfs) < 0)
        return storage_err_set(e, SM_ERR_SR_UNAVAILABLE, errno, "The SR is not available", strerror(errno));
    *ret_size = (int64_t)vfs.f_blocks * (int64_t)vfs.f_frsize;
    *ret_used = (int64_t)(vfs.f_blocks - vfs.f_bfree) * (int64_t)vfs.f_frsize;
    return 0;
}

/* ---- images -------------------------------------------------------------------- */

/* Opens one image of the SR by path (a plain file of its own, not a link). */
static int open_image(const char *path, bool writable, storage_vhd_file **ret, char *err, size_t errlen) {
    int fd = storage_open_file(path, writable ? O_RDWR : O_RDONLY, 0);

    if (fd < 0) {
        snprintf(err, errlen, "%s", strerror(-fd));
        return fd;
    }
    return storage_vhd_file_open_fd(ret, fd, path, writable, err, errlen);
}

/* The parent's location recorded in a differencing image: 0 and NULL for
 * none, -EXDEV for a parent that is no <uuid>.vhd beside it (outside the SR,
 * or raw). */
static int parent_location(storage_vhd_file *f, char **ret) {
    char *name;

    *ret = NULL;
    if (f->info.type != STORAGE_VHD_TYPE_DIFFERENCING)
        return 0;
    name = storage_vhd_file_parent_name(f);
    if (!name || !vhd_name(name)) {
        free(name);
        return -EXDEV;
    }
    name[36] = '\0';
    *ret = name;
    return 0;
}

/* Opens an image and its parents (each one in the SR, checked): -ELOOP past
 * STORAGE_VHD_MAX_CHAIN, -EXDEV for a parent outside the SR. */
static int open_chain(const storage_sr *sr, const char *loc, bool writable, storage_vhd_file **ret, char *err,
                      size_t errlen) {
    storage_vhd_file *top = NULL, *cur;
    char *path = ext_path(sr, loc), *ploc = NULL;
    unsigned depth = 1;
    int rc;

    if (!path)
        return -EINVAL;
    rc = open_image(path, writable, &top, err, errlen);
    free(path);
    for (cur = top; rc == 0;) {
        if ((rc = parent_location(cur, &ploc)) < 0 || !ploc)
            break;
        if (++depth > STORAGE_VHD_MAX_CHAIN) {
            rc = -ELOOP;
            break;
        }
        path = ext_path(sr, ploc);
        rc = open_image(path, false, &cur->parent, err, errlen);
        if (rc == 0 && memcmp(cur->parent->info.uuid, cur->info.parent_uuid, 16) != 0) {
            snprintf(err, errlen, "%s is not the parent %s.vhd was made over", path, loc);
            rc = -EINVAL;
        }
        free(path);
        free(ploc);
        ploc = NULL;
        if (rc == 0)
            cur = cur->parent;
    }
    if (rc < 0) {
        if (rc == -EXDEV)
            snprintf(err, errlen, "the parent of a VHD in the chain is not a VHD of this SR");
        storage_vhd_file_close(top);
        return rc;
    }
    *ret = top;
    return 0;
}

static int image_info(const char *path, const char *loc, storage_vdi_info *ret, char *err, size_t errlen) {
    storage_vhd_file *f = NULL;
    char *ploc = NULL;
    struct stat st;
    int rc = open_image(path, false, &f, err, errlen);

    if (rc < 0)
        return rc;
    if (fstat(f->fd, &st) < 0)
        rc = -errno;
    if (rc == 0 && (rc = parent_location(f, &ploc)) < 0)
        snprintf(err, errlen, "its parent is not a VHD of this SR");
    if (rc == 0 && ret) {
        ret->location = xapi_strdup(loc);
        ret->name = xapi_strdup("");
        ret->virtual_size = (int64_t)storage_vhd_file_virtual_size(f);
        ret->physical_utilisation = (int64_t)st.st_blocks * 512;
        ret->read_only = f->info.hidden;
        ret->vhd = true;
        ret->parent = ploc;
        ret->hidden = f->info.hidden;
        ploc = NULL;
    }
    free(ploc);
    storage_vhd_file_close(f);
    return rc;
}

/* A raw image: a plain file of its own, its size the disk's. */
static int raw_info(const char *path, const char *loc, storage_vdi_info *ret, char *err, size_t errlen) {
    struct stat st;
    int rc = storage_check_file(path, &st);

    if (rc < 0) {
        snprintf(err, errlen, "%s", strerror(-rc));
        return rc;
    }
    if (ret) {
        ret->location = xapi_strdup(loc);
        ret->name = xapi_strdup("");
        ret->virtual_size = (int64_t)st.st_size;
        ret->physical_utilisation = (int64_t)st.st_blocks * 512;
        ret->raw = true;
    }
    return 0;
}

int storage_vhd_dir_vdi_stat(const storage_sr *sr, const char *loc, storage_vdi_info *ret, storage_err *e) {
    char err[256] = "invalid location";
    bool raw;
    char *p = ext_image(sr, loc, &raw);
    int rc = !p ? -EINVAL : raw ? raw_info(p, loc, ret, err, sizeof err) : image_info(p, loc, ret, err, sizeof err);

    free(p);
    return rc < 0 ? storage_err_set(e, SM_ERR_VDI_UNAVAILABLE, rc, "The VDI is not available", err) : 0;
}

int storage_vhd_dir_sr_scan(const storage_sr *sr, size_t max, storage_vdi_info **ret, size_t *ret_n, storage_err *e) {
    storage_vdi_info *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d = opendir(sr->path);

    if (!d)
        return storage_err_set(e, SM_ERR_SR_SCAN, errno, "The SR scan failed", strerror(errno));
    while ((de = readdir(d))) {
        char loc[37], *p, err[256] = "";
        bool raw = raw_name(de->d_name);
        struct stat st;

        if (!vhd_name(de->d_name) && !raw)
            continue;
        if (n == max) {
            closedir(d);
            storage_vdi_infos_free(v, n);
            return storage_err_set(e, SM_ERR_SR_SCAN, E2BIG, "The SR scan failed", "too many VDIs");
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            v = xapi_realloc(v, cap * sizeof *v);
        }
        memcpy(loc, de->d_name, 36);
        loc[36] = '\0';
        p = ext_path(sr, loc);
        v[n] = (storage_vdi_info){0};
        if (raw && lstat(p, &st) == 0)
            log_warning("storage: SR %s: %s left out: %s.vhd is that VDI", sr->uuid, de->d_name, loc);
        else if (raw) {
            free(p);
            p = raw_path(sr, loc);
            if (raw_info(p, loc, &v[n], err, sizeof err) == 0)
                n++;
            else
                log_warning("storage: SR %s: %s left out: %s", sr->uuid, de->d_name, err);
        } else if (image_info(p, loc, &v[n], err, sizeof err) == 0)
            n++;
        else
            log_warning("storage: SR %s: %s left out: %s", sr->uuid, de->d_name, err);
        free(p);
    }
    closedir(d);
    *ret = v;
    *ret_n = n;
    return 0;
}

char *storage_vhd_dir_vdi_path(const storage_sr *sr, const char *loc) {
    bool raw;

    return ext_image(sr, loc, &raw);
}

char *storage_vhd_dir_vdi_path_raw(const storage_sr *sr, const char *loc) {
    char *vhd = ext_path(sr, loc);
    struct stat st;

    if (!vhd || lstat(vhd, &st) == 0 || errno != ENOENT)
        return vhd;
    free(vhd);
    return raw_path(sr, loc);
}

static int sync_dir(const storage_sr *sr) {
    int fd = open(sr->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* A fresh staging name: what is there (a leftover, a planted link) goes first. */
static int clear_part(const char *part) {
    return unlink(part) < 0 && errno != ENOENT ? -errno : 0;
}

/* Makes the staged image of loc its real one, never over an existing entry:
 * its VHD, or its raw image when that is what was staged. */
static int publish_part(const storage_sr *sr, const char *loc) {
    char *from = ext_part(sr, loc), *to = ext_path(sr, loc);
    struct stat st;
    int rc = 0;

    if (from && lstat(from, &st) < 0 && errno == ENOENT) {
        free(from);
        free(to);
        from = raw_part(sr, loc);
        to = raw_path(sr, loc);
    }

    if (!from || !to)
        rc = -EINVAL;
    else if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        rc = sync_dir(sr);
    else if (errno != EINVAL)
        rc = -errno;
    /* NFS has no RENAME_NOREPLACE: link(2) never replaces an entry either, then the staging name goes. */
    else if (link(from, to) < 0)
        rc = -errno;
    else if (unlink(from) < 0)
        rc = -errno;
    else
        rc = sync_dir(sr);
    if (rc < 0 && from)
        unlink(from);
    free(from);
    free(to);
    return rc;
}

static int create_part(const storage_sr *sr, const char *loc, uint64_t size, const char *parent, char *err,
                       size_t errlen) {
    char *part = ext_part(sr, loc);
    storage_vhd_create_params p = {0};
    int rc;

    if (!part)
        return -EINVAL;
    rc = clear_part(part);
    p.path = part;
    p.size = size;
    p.parent = parent;
    p.keep_empty_parent = true;
    p.now = time(NULL);
    if (rc == 0)
        rc = storage_vhd_create(&p, err, errlen);
    if (rc < 0)
        unlink(part);
    free(part);
    return rc;
}

int storage_vhd_dir_vdi_create(const storage_sr *sr, const char *loc, int64_t size, storage_vdi_info *ret,
                          storage_err *e) {
    char err[256] = "";
    int rc;

    if (!valid_location(loc))
        return storage_err_set(e, SM_ERR_VDI_CREATE, EINVAL, "VDI Creation failed", "invalid location");
    /* An empty VDI still is one block: a VHD has no zero-sized form. */
    rc = create_part(sr, loc, size > 0 ? (uint64_t)size : 1, NULL, err, sizeof err);
    if (rc == 0)
        rc = publish_part(sr, loc);
    if (rc < 0)
        return ext_err(e, SM_ERR_VDI_CREATE, rc, "VDI Creation failed", err);
    rc = storage_vhd_dir_vdi_stat(sr, loc, ret, e);
    if (rc == 0 && size == 0)
        ret->virtual_size = 0;
    return rc;
}

int storage_vhd_dir_vdi_delete(const storage_sr *sr, const char *loc, storage_err *e) {
    bool raw;
    char *p = ext_image(sr, loc, &raw);
    int rc = 0;

    if (p && unlink(p) < 0 && errno != ENOENT)
        rc = storage_err_set(e, SM_ERR_VDI_DELETE, errno, "Failed to mark VDI hidden", strerror(errno));
    free(p);
    return rc;
}

int storage_vhd_dir_vdi_set_hidden(const storage_sr *sr, const char *loc, bool hidden, storage_err *e) {
    char *p = ext_path(sr, loc), err[256] = "invalid location";
    storage_vhd_file *f = NULL;
    int rc = p ? open_image(p, true, &f, err, sizeof err) : -EINVAL;

    if (rc == 0 && (rc = storage_vhd_file_set_hidden(f, hidden)) == 0 && fsync(f->fd) < 0)
        rc = -errno;
    storage_vhd_file_close(f);
    free(p);
    return rc < 0 ? ext_err(e, SM_ERR_VDI_DELETE, rc, "Failed to mark VDI hidden", err) : 0;
}

/* A raw image grows as a sparse file does. */
static int raw_resize(const storage_sr *sr, const char *path, const char *loc, int64_t size, storage_vdi_info *ret,
                      storage_err *e) {
    struct stat st;
    int fd = storage_open_file(path, O_RDWR, 0), rc = 0;

    if (fd < 0)
        return storage_err_set(e, SM_ERR_VDI_UNAVAILABLE, fd, "The VDI is not available", strerror(-fd));
    if (fstat(fd, &st) < 0)
        rc = ext_err(e, SM_ERR_VDI_UNAVAILABLE, -errno, "The VDI is not available", NULL);
    else if (size < st.st_size)
        rc = storage_err_set(e, SM_ERR_VDI_SIZE, EINVAL, "VDI Invalid size", "shrinking not allowed");
    else if (ftruncate(fd, size) < 0 || fsync(fd) < 0)
        rc = ext_err(e, SM_ERR_VDI_RESIZE, -errno, "VDI resize failed", NULL);
    close(fd);
    return rc < 0 ? rc : storage_vhd_dir_vdi_stat(sr, loc, ret, e);
}

int storage_vhd_dir_vdi_resize(const storage_sr *sr, const char *loc, int64_t size, storage_vdi_info *ret,
                          storage_err *e) {
    char err[256] = "invalid location";
    storage_vhd_file *f = NULL;
    bool raw;
    char *p = ext_image(sr, loc, &raw);
    int rc;

    if (p && raw) {
        rc = raw_resize(sr, p, loc, size, ret, e);
        free(p);
        return rc;
    }
    rc = p ? open_image(p, true, &f, err, sizeof err) : -EINVAL;

    free(p);
    if (rc < 0)
        return storage_err_set(e, SM_ERR_VDI_UNAVAILABLE, rc, "The VDI is not available", err);
    if ((uint64_t)size < storage_vhd_file_virtual_size(f)) {
        storage_vhd_file_close(f);
        return storage_err_set(e, SM_ERR_VDI_SIZE, EINVAL, "VDI Invalid size", "shrinking not allowed");
    }
    rc = storage_vhd_file_resize(f, (uint64_t)size);
    if (rc == 0 && fsync(f->fd) < 0)
        rc = -errno;
    storage_vhd_file_close(f);
    if (rc < 0)
        return ext_err(e, SM_ERR_VDI_RESIZE, rc, "VDI resize failed", NULL);
    return storage_vhd_dir_vdi_stat(sr, loc, ret, e);
}

/* ---- data in ------------------------------------------------------------------- */

static bool all_zero(const uint8_t *p, size_t n) {
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

bool storage_vhd_dir_is_image(const char *path) {
    const char *slash = strrchr(path, '/');

    return slash && vhd_name(slash + 1);
}

/* The source of a copy: another ext VDI's image (read through its chain), or a raw file. */
static int open_source(const char *src_path, storage_vhd_file **ret, int *ret_fd, char *err, size_t errlen) {
    const char *slash = strrchr(src_path, '/');

    *ret = NULL;
    *ret_fd = -1;
    if (storage_vhd_dir_is_image(src_path)) {
        storage_sr src = {.path = xapi_strndup(src_path, (size_t)(slash - src_path))};
        char loc[37];
        int rc;
        memcpy(loc, slash + 1, 36);
        loc[36] = '\0';
        rc = open_chain(&src, loc, false, ret, err, errlen);
        free(src.path);
        return rc;
    }
    *ret_fd = storage_open_file(src_path, O_RDONLY, 0);
    return *ret_fd < 0 ? *ret_fd : 0;
}

static int read_source(storage_vhd_file *vf, int fd, uint64_t off, uint8_t *buf, size_t len) {
    size_t done = 0;

    if (vf)
        return storage_vhd_file_read(vf, off, buf, len);
    while (done < len) {
        ssize_t k = pread(fd, buf + done, len - done, (off_t)(off + done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0) {
            memset(buf + done, 0, len - done);
            break;
        }
        done += (size_t)k;
    }
    return 0;
}

/* Copies [0, size) of the source into dst block by block: blocks that read
 * as zeros in the source are left alone when dst reads them as zeros too
 * (fresh images stay sparse), else written. */
static int copy_into(storage_vhd_file *dst, const char *src_path, uint64_t size, char *err, size_t errlen) {
    storage_vhd_file *src = NULL;
    uint8_t *a = NULL, *b = NULL;
    int fd = -1, rc = open_source(src_path, &src, &fd, err, errlen);

    if (rc < 0)
        return rc;
    a = xapi_malloc(EXT_CHUNK);
    b = xapi_malloc(EXT_CHUNK);
    for (uint64_t off = 0; off < size && rc == 0; off += EXT_CHUNK) {
        size_t len = size - off < EXT_CHUNK ? (size_t)(size - off) : EXT_CHUNK;
        size_t whole = (len + 511) / 512 * 512;
        memset(a + len, 0, whole - len);
        if ((rc = read_source(src, fd, off, a, len)) < 0)
            break;
        if (all_zero(a, len)) {
            if ((rc = storage_vhd_file_read(dst, off, b, whole)) < 0 || all_zero(b, whole))
                continue;
        }
        rc = storage_vhd_file_write(dst, off, a, whole);
    }
    if (rc == 0 && fsync(dst->fd) < 0)
        rc = -errno;
    free(a);
    free(b);
    storage_vhd_file_close(src);
    if (fd >= 0)
        close(fd);
    return rc;
}

int storage_vhd_dir_vdi_import(const storage_sr *sr, const char *loc, const char *src_path, int64_t size,
                          storage_err *e) {
    char *part = ext_part(sr, loc), err[256] = "";
    storage_vhd_file *f = NULL;
    int rc;

    if (!part)
        return storage_err_set(e, SM_ERR_VDI_CLONE, EINVAL, "Failed to clone VDI", "invalid location");
    rc = create_part(sr, loc, size > 0 ? (uint64_t)size : 1, NULL, err, sizeof err);
    if (rc == 0)
        rc = open_image(part, true, &f, err, sizeof err);
    if (rc == 0)
        rc = copy_into(f, src_path, (uint64_t)size, err, sizeof err);
    storage_vhd_file_close(f);
    if (rc < 0)
        unlink(part);
    free(part);
    return rc < 0 ? ext_err(e, SM_ERR_VDI_CLONE, rc, "Failed to clone VDI", err) : 0;
}

/* Copies [0, size) of the source (a VHD chain or a raw file) into fd, a raw
 * image: fresh (size bytes of holes), where zeros stay holes, or existing,
 * where zeros are punched or written. */
static int copy_to_raw(int fd, const char *src_path, uint64_t size, bool fresh, char *err, size_t errlen) {
    storage_vhd_file *src = NULL;
    uint8_t *a = NULL;
    int sfd = -1, rc = open_source(src_path, &src, &sfd, err, errlen);

    if (rc == 0 && !src)
        rc = storage_copy_file(src_path, fd, (int64_t)size, !fresh);
    if (rc < 0 || !src)
        goto out;
    a = xapi_malloc(EXT_CHUNK);
    for (uint64_t off = 0; off < size && rc == 0; off += EXT_CHUNK) {
        size_t len = size - off < EXT_CHUNK ? (size_t)(size - off) : EXT_CHUNK, done = 0;
        if ((rc = read_source(src, -1, off, a, len)) < 0)
            break;
        if (all_zero(a, len) &&
            (fresh || fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0))
            continue;
        while (done < len && rc == 0) {
            ssize_t k = pwrite(fd, a + done, len - done, (off_t)(off + done));
            if (k < 0 && errno != EINTR)
                rc = -errno;
            else if (k > 0)
                done += (size_t)k;
        }
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
out:
    free(a);
    storage_vhd_file_close(src);
    if (sfd >= 0)
        close(sfd);
    if (rc < 0 && !err[0])
        snprintf(err, errlen, "%s", strerror(-rc));
    return rc;
}

/* A staged raw image of size bytes (holes), open for writing: the fd. */
static int create_raw_part(const storage_sr *sr, const char *loc, int64_t size) {
    char *part = raw_part(sr, loc);
    int fd = part ? clear_part(part) : -EINVAL;

    if (fd == 0)
        fd = storage_open_file(part, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0 && ftruncate(fd, size) < 0) {
        int rc = -errno;
        close(fd);
        fd = rc;
    }
    if (fd < 0 && part && fd != -EEXIST)
        unlink(part);
    free(part);
    return fd;
}

int storage_vhd_dir_vdi_create_raw(const storage_sr *sr, const char *loc, int64_t size, storage_vdi_info *ret,
                                   storage_err *e) {
    int fd = valid_location(loc) ? create_raw_part(sr, loc, size) : -EINVAL, rc = 0;

    if (fd < 0)
        return ext_err(e, SM_ERR_VDI_CREATE, fd, "VDI Creation failed", fd == -EINVAL ? "invalid location" : NULL);
    if (fsync(fd) < 0)
        rc = -errno;
    close(fd);
    if (rc == 0)
        rc = publish_part(sr, loc);
    if (rc < 0) {
        storage_vhd_dir_vdi_discard(sr, loc);
        return ext_err(e, SM_ERR_VDI_CREATE, rc, "VDI Creation failed", NULL);
    }
    return storage_vhd_dir_vdi_stat(sr, loc, ret, e);
}

int storage_vhd_dir_vdi_import_raw(const storage_sr *sr, const char *loc, const char *src_path, int64_t size,
                                   storage_err *e) {
    char err[256] = "";
    int fd = valid_location(loc) ? create_raw_part(sr, loc, size) : -EINVAL, rc;

    if (fd < 0)
        return ext_err(e, SM_ERR_VDI_CLONE, fd, "Failed to clone VDI", fd == -EINVAL ? "invalid location" : NULL);
    rc = copy_to_raw(fd, src_path, (uint64_t)size, true, err, sizeof err);
    close(fd);
    if (rc < 0)
        storage_vhd_dir_vdi_discard(sr, loc);
    return rc < 0 ? ext_err(e, SM_ERR_VDI_CLONE, rc, "Failed to clone VDI", err) : 0;
}

int storage_vhd_dir_vdi_publish(const storage_sr *sr, const char *loc, storage_vdi_info *ret, storage_err *e) {
    int rc = publish_part(sr, loc);

    if (rc < 0)
        return storage_err_set(e, SM_ERR_VDI_CLONE, rc, "Failed to clone VDI",
                               rc == -EEXIST ? "the VDI already exists" : strerror(-rc));
    return storage_vhd_dir_vdi_stat(sr, loc, ret, e);
}

void storage_vhd_dir_vdi_discard(const storage_sr *sr, const char *loc) {
    char *p = ext_part(sr, loc), *r = raw_part(sr, loc);

    if (p)
        unlink(p);
    if (r)
        unlink(r);
    free(p);
    free(r);
}

int storage_vhd_dir_vdi_write(const storage_sr *sr, const char *loc, const char *src_path, int64_t size,
                         storage_err *e) {
    char err[256] = "invalid location";
    storage_vhd_file *f = NULL;
    bool raw;
    char *p = ext_image(sr, loc, &raw);
    int rc, fd;

    if (p && raw) {
        fd = storage_open_file(p, O_WRONLY, 0);
        free(p);
        if (fd < 0)
            return storage_err_set(e, SM_ERR_VDI_UNAVAILABLE, fd, "The VDI is not available", strerror(-fd));
        err[0] = '\0';
        rc = copy_to_raw(fd, src_path, (uint64_t)size, false, err, sizeof err);
        close(fd);
        return rc < 0 ? ext_err(e, SM_ERR_VDI_CLONE, rc, "Failed to clone VDI", err) : 0;
    }
    rc = p ? open_chain(sr, loc, true, &f, err, sizeof err) : -EINVAL;
    free(p);
    if (rc < 0)
        return storage_err_set(e, SM_ERR_VDI_UNAVAILABLE, rc, "The VDI is not available", err);
    rc = copy_into(f, src_path, (uint64_t)size, err, sizeof err);
    storage_vhd_file_close(f);
    return rc < 0 ? ext_err(e, SM_ERR_VDI_CLONE, rc, "Failed to clone VDI", err) : 0;
}

/* ---- chains ------------------------------------------------------------------------ */

int storage_vhd_dir_vdi_chain(const storage_sr *sr, const char *loc, const char *base, const char *new_loc,
                         storage_err *e) {
    char *orig = ext_path(sr, loc), *base_path = ext_path(sr, base), *leaf_part = ext_part(sr, loc);
    char err[256] = "";
    storage_vhd_file *f = NULL;
    uint64_t size = 0;
    bool linked = false, swapped = false;
    int rc = 0;

    if (!orig || !base_path || !leaf_part || !valid_location(new_loc)) {
        rc = storage_err_set(e, SM_ERR_VDI_CLONE, EINVAL, "Failed to clone VDI", "invalid location");
        goto out;
    }
    rc = open_chain(sr, loc, false, &f, err, sizeof err);
    if (rc == 0 && storage_vhd_file_depth(f) >= EXT_CHAIN_MAX) {
        rc = storage_err_set(e, SM_ERR_SNAPSHOT_CHAIN_TOO_LONG, ELOOP, "The snapshot chain is too long", NULL);
        goto out;
    }
    if (rc < 0) {
        rc = storage_err_set(e, SM_ERR_VDI_CLONE, rc, "Failed to clone VDI", err);
        goto out;
    }
    size = storage_vhd_file_virtual_size(f);
    storage_vhd_file_close(f);
    f = NULL;
    /* 1. The image gets its second name, the base's (no data moves). */
    if (link(orig, base_path) < 0) {
        rc = ext_err(e, SM_ERR_VDI_CLONE, -errno, "Failed to clone VDI", NULL);
        goto out;
    }
    linked = true;
    /* 2. The two leaves over it, staged. */
    if ((rc = create_part(sr, loc, size, base_path, err, sizeof err)) < 0 ||
        (rc = create_part(sr, new_loc, size, base_path, err, sizeof err)) < 0) {
        rc = ext_err(e, SM_ERR_VDI_CLONE, rc, "Failed to clone VDI", err);
        goto out;
    }
    /* 3. The VDI's name moves to its new leaf: from here the chain is whole. */
    if (rename(leaf_part, orig) < 0 || (rc = sync_dir(sr)) < 0) {
        rc = ext_err(e, SM_ERR_VDI_CLONE, rc < 0 ? rc : -errno, "Failed to clone VDI", NULL);
        goto out;
    }
    swapped = true;
    /* 4. The base is hidden: a read-only parent, no VDI of its own to use. */
    rc = open_image(base_path, true, &f, err, sizeof err);
    if (rc == 0 && (rc = storage_vhd_file_set_hidden(f, true)) == 0 && fsync(f->fd) < 0)
        rc = -errno;
    if (rc < 0) {
        rc = ext_err(e, SM_ERR_VDI_CLONE, rc, "Failed to clone VDI", err);
        goto out;
    }
out:
    storage_vhd_file_close(f);
    if (rc < 0 && !swapped) {
        if (leaf_part)
            unlink(leaf_part);
        if (linked)
            unlink(base_path); /* the data keeps its first name */
        storage_vhd_dir_vdi_discard(sr, new_loc);
    } else if (rc < 0)
        storage_vhd_dir_vdi_discard(sr, new_loc); /* the VDI is a leaf over a base: consistent */
    free(orig);
    free(base_path);
    free(leaf_part);
    return rc;
}

int storage_vhd_dir_vdi_open_vhd(const storage_sr *sr, const char *loc, bool writable, storage_vhd_file **ret,
                            storage_err *e) {
    char err[256] = "invalid location";
    int rc = open_chain(sr, loc, writable, ret, err, sizeof err);

    return rc < 0 ? storage_err_set(e, SM_ERR_VDI_UNAVAILABLE, rc, "The VDI is not available", err) : 0;
}

int storage_vhd_dir_vdi_coalesce_leaf(const storage_sr *sr, const char *loc, int64_t max_bytes, storage_err *e) {
    char *leaf_path = ext_path(sr, loc), *ploc = NULL, *parent_path = NULL, err[256] = "invalid location";
    storage_vhd_file *f = NULL;
    uint64_t sectors = 0;
    int rc = leaf_path ? open_image(leaf_path, false, &f, err, sizeof err) : -EINVAL;

    if (rc == 0 && ((rc = parent_location(f, &ploc)) < 0 || !ploc)) {
        snprintf(err, sizeof err, "not a VHD over a parent of this SR");
        rc = -EINVAL;
    }
    if (rc == 0 && (uint64_t)storage_vhd_info_allocated(&f->info) * f->info.block_size > (uint64_t)max_bytes)
        rc = -E2BIG;
    if (rc == 0) {
        parent_path = ext_path(sr, ploc);
        rc = open_image(parent_path, true, &f->parent, err, sizeof err);
    }
    if (rc == 0 && memcmp(f->parent->info.uuid, f->info.parent_uuid, 16) != 0) {
        snprintf(err, sizeof err, "%s is not the parent %s.vhd was made over", parent_path, loc);
        rc = -EINVAL;
    }
    if (rc == 0 && (rc = storage_vhd_file_coalesce(f, &sectors)) < 0)
        snprintf(err, sizeof err, "%s", f->error[0] ? f->error : strerror(-rc));
    /* The parent now reads as the leaf did: it becomes the leaf, visible. */
    if (rc == 0 && (rc = storage_vhd_file_set_hidden(f->parent, false)) == 0 && fsync(f->parent->fd) < 0)
        rc = -errno;
    if (rc == 0 && rename(parent_path, leaf_path) < 0) {
        rc = -errno;
        storage_vhd_file_set_hidden(f->parent, true); /* still the leaf's parent */
    }
    if (rc == 0)
        rc = sync_dir(sr);
    storage_vhd_file_close(f);
    free(leaf_path);
    free(parent_path);
    free(ploc);
    if (rc == -E2BIG)
        return rc;
    return rc < 0 ? ext_err(e, SM_ERR_VDI_DELETE, rc, "Failed to coalesce VDI", err) : 0;
}

const storage_driver storage_ext_driver = {
    .type = "ext",
    .description = "Local EXT SR: VHD files in a directory (mounted or plain)",
    .content_type = "user",
    STORAGE_VHD_DIR_OPS,
    .sr_config = ext_config,
    .sr_config_at = ext_config_at,
    .sr_create = ext_sr_create,
    .sr_attach = ext_sr_attach,
    .sr_delete = ext_sr_delete,
};
