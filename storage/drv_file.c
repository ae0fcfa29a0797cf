/* Two drivers over a local directory. Neither follows a symlink or a hard
 * link in it, in a scan or when opening a VDI (storage_open_file): nothing in
 * the directory leads outside it.
 *
 * "file": xapi's FileSR, a directory of VDI images (location = the VDI
 * uuid) handled by the code of ext's VHD directories (storage/vhd_dir.h):
 * raw files <vdi uuid>.raw, which VDI.create makes (sparse; a clone, copy or
 * snapshot of one is a copy of the file, a reflink where the filesystem can),
 * and VHD images <vdi uuid>.vhd with their parents, which SR.scan finds
 * (CloudStack's templates on secondary storage) and copies of a VHD make;
 * a snapshot or clone of one is a chain, as on ext. New images are staged
 * as .<name>.part files, invisible to scans.
 *
 * "iso": a read-only library; every *.iso (or *.img) file in the directory is
 * a VDI whose location is its file name. Nothing is ever written there. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "agent/log.h"
#include "storage/driver.h"
#include "storage/vhd_dir.h"

#define MAX_SR_PATH 1024
#define MAX_LOCATION 255
#define MAX_PROBE_SRS 4096 /* SRs one probe lists */

static const char *dc_get(const xapi_value *dc, const char *key) {
    const xapi_value *v = dc ? xapi_struct_get(dc, key) : NULL;
    return v && v->kind == XAPI_V_STRING ? v->s : NULL;
}

/* "location" as an absolute path, without trailing slashes. */
static int location_path(const xapi_value *dc, int missing_code, char **ret, storage_err *e) {
    const char *loc = dc_get(dc, "location");
    size_t n;

    if (!loc || !*loc)
        return storage_err_set(e, missing_code, EINVAL, "The request is missing the location parameter", NULL);
    n = strlen(loc);
    if (loc[0] != '/' || n >= MAX_SR_PATH || strstr(loc, "/../") || (n >= 3 && strcmp(loc + n - 3, "/..") == 0))
        return storage_err_set(e, SM_ERR_INVALID_ARG, EINVAL, "Invalid argument",
                               "location must be an absolute path without '..'");
    while (n > 1 && loc[n - 1] == '/')
        n--;
    *ret = xapi_strndup(loc, n);
    return 0;
}

/* A name that is one plain entry of the directory, and a string the API can
 * carry (a location a client reads back and passes in again). */
static bool plain_name(const char *s) {
    size_t n = strlen(s);

    if (n == 0 || n > MAX_LOCATION || s[0] == '.' || !xapi_string_valid(s, n))
        return false;
    for (const char *p = s; *p; p++)
        if (*p == '/' || (unsigned char)*p < 0x20)
            return false;
    return true;
}

static char *join(const char *dir, const char *name, const char *prefix, const char *suffix) {
    char *p = NULL;

    if (asprintf(&p, "%s/%s%s%s", dir, prefix, name, suffix) < 0)
        xapi_oom();
    return p;
}

static int fill_info(const char *path, const char *location, const char *name, bool ro, storage_vdi_info *ret) {
    struct stat st;
    int rc = storage_check_file(path, &st);

    if (rc < 0)
        return rc;
    if (ret) {
        ret->location = xapi_strdup(location);
        ret->name = xapi_strdup(name ? name : "");
        ret->virtual_size = st.st_size;
        ret->physical_utilisation = (int64_t)st.st_blocks * 512;
        ret->read_only = ro;
    }
    return 0;
}

static int dir_check(const storage_sr *sr, int code, const char *what, storage_err *e) {
    struct stat st;

    if (stat(sr->path, &st) < 0)
        return storage_err_set(e, code, errno, what, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return storage_err_set(e, code, ENOTDIR, what, "not a directory");
    return 0;
}

static int dir_stat(const storage_sr *sr, int64_t *ret_size, int64_t *ret_used, storage_err *e) {
    struct statvfs vfs;

    if (statvfs(sr->path, &vfs) < 0)
        return storage_err_set(e, SM_ERR_SR_UNAVAILABLE, errno, "The SR is not available", strerror(errno));
    *ret_size = (int64_t)vfs.f_blocks * (int64_t)vfs.f_frsize;
    *ret_used = (int64_t)(vfs.f_blocks - vfs.f_bfree) * (int64_t)vfs.f_frsize;
    return 0;
}

/* The VDIs among the entries of the SR's directory: is_vdi picks the names (at
 * most max of them, else E2BIG with the detail too_many), vdi_info reads each
 * (0 or a negative errno: an entry it cannot read is left out). */
static int scan_dir(const storage_sr *sr, size_t max, bool (*is_vdi)(const char *name),
                    int (*vdi_info)(const char *path, const char *name, storage_vdi_info *ret), const char *too_many,
                    storage_vdi_info **ret, size_t *ret_n, storage_err *e) {
    storage_vdi_info *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d;

    d = opendir(sr->path);
    if (!d)
        return storage_err_set(e, SM_ERR_SR_SCAN, errno, "The SR scan failed", strerror(errno));
    while ((de = readdir(d))) {
        char *p;

        if (!is_vdi(de->d_name))
            continue;
        if (n == max) {
            closedir(d);
            storage_vdi_infos_free(v, n);
            return storage_err_set(e, SM_ERR_SR_SCAN, E2BIG, "The SR scan failed", too_many);
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            v = xapi_realloc(v, cap * sizeof *v);
        }
        p = join(sr->path, de->d_name, "", "");
        v[n] = (storage_vdi_info){0};
        if (vdi_info(p, de->d_name, &v[n]) == 0)
            n++;
        free(p);
    }
    closedir(d);
    *ret = v;
    *ret_n = n;
    return 0;
}

/* ---- "file" ---------------------------------------------------------------- */

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

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SR.probe of a directory, as sm's NFS driver probes an export: every
 * uuid-named subdirectory is an SR (the layout of /run/sr-mount, where a
 * host mounts its SRs), listed in sm's SRlist XML (minidom's pretty print).
 * Symlinks are not followed. */
int storage_dir_srlist_xml(const char *path, char **ret_xml, storage_err *e) {
    char **names = NULL, *xml = NULL;
    size_t n = 0, cap = 0, len = 0;
    struct dirent *de;
    FILE *f = NULL;
    DIR *d = NULL;
    int rc = 0;

    d = opendir(path);
    if (!d) {
        rc = storage_err_set(e, SM_ERR_SR_UNAVAILABLE, errno, "The SR is not available", strerror(errno));
        goto out;
    }
    while ((de = readdir(d))) {
        struct stat st;

        if (!is_uuid(de->d_name, strlen(de->d_name)) || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISDIR(st.st_mode))
            continue;
        if (n == MAX_PROBE_SRS) {
            rc = storage_err_set(e, SM_ERR_SR_SCAN, E2BIG, "The SR scan failed", "too many SRs");
            goto out;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = xapi_realloc(names, cap * sizeof *names);
        }
        names[n++] = xapi_strdup(de->d_name);
    }
    if (n > 1) /* no array at all when nothing was found: qsort(NULL, 0) is undefined */
        qsort(names, n, sizeof *names, name_cmp);
    f = open_memstream(&xml, &len);
    if (!f)
        xapi_oom();
    fputs("<?xml version=\"1.0\" ?>\n", f);
    if (n == 0)
        fputs("<SRlist/>\n", f);
    else {
        fputs("<SRlist>\n", f);
        for (size_t i = 0; i < n; i++)
            fprintf(f, "\t<SR>\n\t\t<UUID>%s</UUID>\n\t</SR>\n", names[i]);
        fputs("</SRlist>\n", f);
    }
    if (fclose(f) != 0)
        xapi_oom();
    *ret_xml = xml;
out:
    if (d)
        closedir(d);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int dir_probe(const xapi_value *dc, int missing_code, char **ret_xml, storage_err *e) {
    char *path = NULL;
    int rc = location_path(dc, missing_code, &path, e);

    if (rc == 0)
        rc = storage_dir_srlist_xml(path, ret_xml, e);
    free(path);
    return rc;
}

static int file_config(const xapi_value *dc, char **ret_path, storage_err *e) {
    return location_path(dc, SM_ERR_CONFIG_LOCATION_MISSING, ret_path, e);
}

static int file_sr_probe(const xapi_value *dc, const xapi_value *sm_config, char **ret_xml, storage_err *e) {
    return dir_probe(dc, SM_ERR_CONFIG_LOCATION_MISSING, ret_xml, e);
}

/* mkdir -p */
int storage_mkdirs(const char *path) {
    char tmp[MAX_SR_PATH];
    size_t n = strlen(path);

    if (n >= sizeof tmp)
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* As sm's FileSR: the directory is made if missing, and must be empty. */
static int file_sr_create(const storage_sr *sr, storage_err *e) {
    int rc = storage_mkdirs(sr->path);
    struct dirent *de;
    DIR *d;

    if (rc < 0)
        return storage_err_set(e, SM_ERR_FILE_SR_CREATE, rc, "File SR creation error", strerror(-rc));
    rc = dir_check(sr, SM_ERR_FILE_SR_CREATE, "File SR creation error", e);
    if (rc < 0)
        return rc;
    d = opendir(sr->path);
    if (!d)
        return storage_err_set(e, SM_ERR_FILE_SR_CREATE, errno, "File SR creation error", strerror(errno));
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            rc = storage_err_set(e, SM_ERR_SR_EXISTS, EEXIST, "The SR already exists", "the directory is not empty");
            break;
        }
    closedir(d);
    return rc;
}

static int file_sr_attach(const storage_sr *sr, storage_err *e) {
    int rc = dir_check(sr, SM_ERR_SR_UNAVAILABLE, "The SR is not available", e);

    if (rc == 0 && access(sr->path, R_OK | W_OK | X_OK) < 0)
        return storage_err_set(e, SM_ERR_SR_UNAVAILABLE, errno, "The SR is not available", strerror(errno));
    return rc;
}

static int file_sr_delete(const storage_sr *sr, char *const *locations, size_t n, storage_err *e) {
    int rc = storage_unlink_vdis(sr, locations, n, e);

    if (rc < 0)
        return rc;
    storage_remove_parts(sr);
    if (rmdir(sr->path) < 0 && errno != ENOENT) {
        if (errno == ENOTEMPTY || errno == EEXIST) {
            /* Files we do not own stay, and so does their directory. */
            log_warning("storage: SR directory %s is not empty, left in place", sr->path);
            return 0;
        }
        return storage_err_set(e, SM_ERR_FILE_SR_RMDIR, errno, "File SR failed to remove directory", strerror(errno));
    }
    return 0;
}

/* A copy into the SR keeps the source's format: a VHD (CloudStack's backups
 * to secondary storage are VHD files there) or raw data (a raw VDI, an LV, a LUN). */
static int file_vdi_import(const storage_sr *sr, const char *location, const char *src_path, int64_t size,
                           storage_err *e) {
    return (storage_vhd_dir_is_image(src_path) ? storage_vhd_dir_vdi_import : storage_vhd_dir_vdi_import_raw)(
        sr, location, src_path, size, e);
}

/* sm's FileSR makes VHDs; this one keeps making raw files as earlier versions did (their local SR and its
 * VDIs stay as they were), and takes the VHDs (with their parents) that are put there or copied in. */
static const storage_driver file_driver = {
    .type = "file",
    .description = "Local directory of raw files and VHD images",
    .content_type = "user",
    .format = "raw",
    STORAGE_VHD_DIR_IMAGE_OPS,
    .sr_config = file_config,
    .sr_create = file_sr_create,
    .sr_attach = file_sr_attach,
    .sr_delete = file_sr_delete,
    .vdi_create = storage_vhd_dir_vdi_create_raw,
    .vdi_create_vhd = storage_vhd_dir_vdi_create,
    .vdi_path = storage_vhd_dir_vdi_path_raw,
    .vdi_import = file_vdi_import,
    .sr_probe = file_sr_probe,
};

/* ---- "iso" ----------------------------------------------------------------- */

static bool iso_name(const char *s) {
    size_t n = strlen(s);

    return plain_name(s) && n > 4 && (strcasecmp(s + n - 4, ".iso") == 0 || strcasecmp(s + n - 4, ".img") == 0);
}

/* sm's ISO driver names a bad location its own way. */
static int iso_location_error(int rc, storage_err *e) {
    if (rc < 0 && e->code == SM_ERR_INVALID_ARG)
        storage_err_set(e, SM_ERR_ISO_LOCAL_PATH, EINVAL, "Invalid local path", "location must be an absolute path");
    return rc;
}

static int iso_config(const xapi_value *dc, char **ret_path, storage_err *e) {
    return iso_location_error(location_path(dc, SM_ERR_ISO_LOCATION_MISSING, ret_path, e), e);
}

static int iso_sr_probe(const xapi_value *dc, const xapi_value *sm_config, char **ret_xml, storage_err *e) {
    return iso_location_error(dir_probe(dc, SM_ERR_ISO_LOCATION_MISSING, ret_xml, e), e);
}

static int iso_sr_attach(const storage_sr *sr, storage_err *e) {
    int rc = dir_check(sr, SM_ERR_SR_UNAVAILABLE, "The SR is not available", e);

    if (rc == 0 && access(sr->path, R_OK | X_OK) < 0)
        return storage_err_set(e, SM_ERR_SR_UNAVAILABLE, errno, "The SR is not available", strerror(errno));
    return rc;
}

static int iso_sr_delete(const storage_sr *sr, char *const *locations, size_t n, storage_err *e) {
    return 0; /* the library belongs to whoever fills it */
}

/* Only images: a library directory may hold other files nobody should attach. */
static char *iso_vdi_path(const storage_sr *sr, const char *location) {
    if (!iso_name(location))
        return NULL;
    return join(sr->path, location, "", "");
}

/* An image is all allocated, as far as the API goes. */
static int iso_vdi_info(const char *path, const char *name, storage_vdi_info *ret) {
    int rc = fill_info(path, name, name, true, ret);

    if (rc == 0)
        ret->physical_utilisation = ret->virtual_size;
    return rc;
}

static int iso_sr_scan(const storage_sr *sr, size_t max, storage_vdi_info **ret, size_t *ret_n, storage_err *e) {
    return scan_dir(sr, max, iso_name, iso_vdi_info, "too many files", ret, ret_n, e);
}

static int iso_vdi_stat(const storage_sr *sr, const char *location, storage_vdi_info *ret, storage_err *e) {
    char *p = iso_vdi_path(sr, location);
    int rc = p ? iso_vdi_info(p, location, ret) : -EINVAL;

    free(p);
    return rc < 0 ? storage_err_set(e, SM_ERR_VDI_UNAVAILABLE, rc, "The VDI is not available", strerror(-rc)) : 0;
}

static const storage_driver iso_driver = {
    .type = "iso",
    .description = "Local directory of ISO images (read-only)",
    .content_type = "iso",
    .format = "raw",
    .caps = STORAGE_CAP_SR_CREATE | STORAGE_CAP_SR_DELETE | STORAGE_CAP_SR_SCAN | STORAGE_CAP_VDI_INTRODUCE,
    .sr_config = iso_config,
    .sr_create = iso_sr_attach, /* the library must exist already */
    .sr_attach = iso_sr_attach,
    .sr_delete = iso_sr_delete,
    .sr_stat = dir_stat,
    .sr_scan = iso_sr_scan,
    .vdi_stat = iso_vdi_stat,
    .vdi_path = iso_vdi_path,
    .sr_probe = iso_sr_probe,
};

/* ---- the table ---------------------------------------------------------------- */

const storage_driver *const storage_drivers[] = {&file_driver, &storage_ext_driver, &iso_driver, &storage_lvm_driver, &storage_nfs_driver,
                                               &storage_iscsi_driver, &storage_lvmoiscsi_driver, NULL};

const storage_driver *storage_driver_find(const char *type) {
    for (size_t i = 0; storage_drivers[i]; i++)
        if (strcmp(storage_drivers[i]->type, type) == 0)
            return storage_drivers[i];
    return NULL;
}
