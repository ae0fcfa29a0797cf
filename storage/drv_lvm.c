/* "lvm": xapi's local LVM SR (sm's LVHDSR) with raw volumes. The SR is the
 * volume group VG_XenStorage-<sr uuid> on device_config "device" (one or
 * more block devices, comma separated, as sm takes them); each VDI a raw
 * logical volume LV-<vdi uuid> (sm's name for a raw, "aio", LVM VDI;
 * location = the vdi uuid), thick: physical_utilisation is the LV's size.
 *
 * Everything goes through lvm2's commands (storage/lvm.c: argv, a time
 * limit each, JSON reports). VDI.snapshot and VDI.clone are full copies
 * into a new LV (LV-<uuid>-part while copying, invisible to scans, renamed
 * into place by publish): LVM's own snapshots are copy-on-write volumes
 * that die when their exception store fills, which a VDI must not do.
 * PBD.plug activates the VG, PBD.unplug deactivates it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/log.h"
#include "storage/driver.h"
#include "storage/internal.h"
#include "storage/lvm.h"

#define LVM_VG_PREFIX "VG_XenStorage-"
#define LVM_LV_PREFIX "LV-"
#define LVM_PART_SUFFIX "-part"
#define LVM_MAX_DEVICES 16
#define LVM_MAX_PROBE_PVS 4096 /* PVs on the host one probe reads */
#define LVM_MAX_DEVICE_LEN 256
#define LVM_COPY_CHUNK (1u << 20)

static const char *dc_get(const xapi_value *dc, const char *key) {
    const xapi_value *v = dc ? xapi_struct_get(dc, key) : NULL;
    return v && v->kind == XAPI_V_STRING ? v->s : NULL;
}

static bool is_uuid(const char *s) {
    return s && storage_uuid_valid(s);
}

/* One device of the list: an absolute path under /dev with no "..", no
 * option-looking or odd characters (each goes to lvm2 as one argument). */
static bool device_ok(const char *d, size_t n) {
    if (n < 6 || n > LVM_MAX_DEVICE_LEN || strncmp(d, "/dev/", 5) != 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = d[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' || c == '-' ||
              c == '_' || c == '.' || c == ':' || c == '+'))
            return false;
        if (c == '.' && i + 1 < n && d[i + 1] == '.')
            return false;
    }
    return true;
}

/* device_config "device" split at commas: the devices (malloc'd) or an SM error. */
static int lvm_devices(const char *list, char ***ret, size_t *ret_n, storage_err *e) {
    char **devs = NULL;
    size_t n = 0;
    const char *p = list;

    if (!list || !*list)
        return storage_err_set(e, SM_ERR_CONFIG_DEVICE_MISSING, EINVAL,
                               "The request is missing the device parameter", NULL);
    devs = xapi_calloc(LVM_MAX_DEVICES, sizeof *devs);
    for (;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);

        if (n == LVM_MAX_DEVICES || !device_ok(p, len)) {
            for (size_t i = 0; i < n; i++)
                free(devs[i]);
            free(devs);
            return storage_err_set(e, SM_ERR_INVALID_ARG, EINVAL, "Invalid argument",
                                   n == LVM_MAX_DEVICES ? "too many devices" : "device is not a path under /dev");
        }
        devs[n++] = xapi_strndup(p, len);
        if (!c)
            break;
        p = c + 1;
    }
    *ret = devs;
    *ret_n = n;
    return 0;
}

static void free_devices(char **devs, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(devs[i]);
    free(devs);
}

/* sr->path is /dev/<vg>; the VG's name is its last component. */
static const char *vg_name(const storage_sr *sr) {
    return sr->path + 5;
}

static int lvm_config_at(const xapi_value *dc, const xapi_value *sm_config, const char *sr_uuid,
                         const char *mount_root, storage_sr *ret, storage_err *e) {
    char **devs = NULL;
    size_t n = 0;
    int rc;

    rc = lvm_devices(dc_get(dc, "device"), &devs, &n, e);
    if (rc < 0)
        return rc;
    free_devices(devs, n);
    if (asprintf(&ret->path, "/dev/" LVM_VG_PREFIX "%s", sr_uuid) < 0)
        xapi_oom();
    ret->device = xapi_strdup(dc_get(dc, "device"));
    return 0;
}

/* Runs an lvm2 command; a failure becomes the SM error code with the command's last stderr line as detail. */
static int lvm_cmd(const char *const *argv, char **ret_out, int code, const char *description, storage_err *e) {
    /* Without udevd (a minimal dom0) lvm2 would wait for udev to make the
     * volumes' /dev nodes, and fail: then it makes them itself. */
    static const char no_udev[] = "activation{udev_sync=0 udev_rules=0}";
    const char *args[24];
    size_t n = 0;
    char *err = NULL;
    int rc;

    args[n++] = argv[0];
    if (access("/run/udev/control", F_OK) < 0) {
        args[n++] = "--config";
        args[n++] = no_udev;
    }
    for (size_t i = 1; argv[i - 1] && n < sizeof args / sizeof *args; i++)
        args[n++] = argv[i];
    if (n == sizeof args / sizeof *args)
        return storage_err_set(e, SM_ERR_INVALID_ARG, E2BIG, "Invalid argument", "too many arguments");
    rc = storage_run(args, (int)storage_io_timeout * 1000, ret_out, &err);

    if (rc < 0) {
        agent_log(LOG_WARNING, "%s failed: %s", argv[0], err && *err ? err : strerror(-rc));
        rc = storage_err_set(e, code, -rc, description, err && *err ? err : strerror(-rc));
        if (ret_out) {
            free(*ret_out);
            *ret_out = NULL;
        }
    }
    free(err);
    return rc;
}

static int lvm_sr_create(const storage_sr *sr, storage_err *e) {
    char **devs = NULL;
    const char **argv = NULL;
    size_t n = 0, k = 0, made = 0;
    int rc;

    rc = lvm_devices(sr->device, &devs, &n, e);
    if (rc < 0)
        return rc;
    /* Not -ff: pvcreate refuses a device that belongs to a volume group (another SR's). */
    for (; made < n && rc == 0; made++) {
        const char *pv[] = {"pvcreate", "-y", devs[made], NULL};
        rc = lvm_cmd(pv, NULL, SM_ERR_SR_UNAVAILABLE, "The SR is not available", e);
    }
    if (rc == 0) {
        argv = xapi_calloc(n + 4, sizeof *argv);
        argv[k++] = "vgcreate";
        argv[k++] = vg_name(sr);
        for (size_t i = 0; i < n; i++)
            argv[k++] = devs[i];
        rc = lvm_cmd(argv, NULL, SM_ERR_SR_UNAVAILABLE, "The SR is not available", e);
    } else
        made--; /* the one that failed is not ours to wipe */
    /* A failed create leaves no label behind on the devices it labelled. */
    for (size_t i = 0; rc < 0 && i < made; i++) {
        const char *pv[] = {"pvremove", "-y", devs[i], NULL};
        storage_err ignored = {0};
        lvm_cmd(pv, NULL, SM_ERR_SR_UNAVAILABLE, "The SR is not available", &ignored);
    }
    free(argv);
    free_devices(devs, n);
    return rc;
}

static int lvm_sr_attach(const storage_sr *sr, storage_err *e) {
    const char *argv[] = {"vgchange", "-ay", vg_name(sr), NULL};
    return lvm_cmd(argv, NULL, SM_ERR_LVM_MOUNT, "Logical Volume mount/activate error", e);
}

static int lvm_sr_detach(const storage_sr *sr, storage_err *e) {
    const char *argv[] = {"vgchange", "-an", vg_name(sr), NULL};
    return lvm_cmd(argv, NULL, SM_ERR_LVM_MOUNT, "Logical Volume mount/activate error", e);
}

static int lvm_sr_delete(const storage_sr *sr, char *const *locations, size_t nloc, storage_err *e) {
    const char *vg[] = {"vgremove", "-f", vg_name(sr), NULL};
    char **devs = NULL;
    size_t n = 0;
    int rc;

    rc = lvm_cmd(vg, NULL, SM_ERR_SR_UNAVAILABLE, "The SR is not available", e);
    if (rc < 0)
        return rc;
    /* The VG is gone; labels left on a device are harmless. */
    if (lvm_devices(sr->device, &devs, &n, e) == 0)
        for (size_t i = 0; i < n; i++) {
            const char *pv[] = {"pvremove", "-ff", "-y", devs[i], NULL};
            storage_err ignored = {0};
            lvm_cmd(pv, NULL, SM_ERR_SR_UNAVAILABLE, "The SR is not available", &ignored);
        }
    free_devices(devs, n);
    return 0;
}

int storage_lvm_sr_stat(const storage_sr *sr, int64_t *ret_size, int64_t *ret_used, storage_err *e) {
    static const char *const fields[] = {"vg_size", "vg_free"};
    const char *argv[] = {"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_size,vg_free",
                          vg_name(sr), NULL};
    storage_lvm_row *rows = NULL;
    char *out = NULL;
    int64_t size, fr;
    size_t n = 0;
    int rc;

    rc = lvm_cmd(argv, &out, SM_ERR_SR_UNAVAILABLE, "The SR is not available", e);
    if (rc < 0)
        return rc;
    rc = storage_lvm_report_parse(out, "vg", fields, 2, 1, &rows, &n);
    if (rc == 0 && (n != 1 || storage_lvm_parse_bytes(rows[0].values[0], &size) < 0 ||
                    storage_lvm_parse_bytes(rows[0].values[1], &fr) < 0 || fr > size))
        rc = -EBADMSG;
    if (rc < 0)
        rc = storage_err_set(e, SM_ERR_SR_UNAVAILABLE, -rc, "The SR is not available", "unexpected vgs output");
    else {
        *ret_size = size;
        *ret_used = size - fr;
    }
    storage_lvm_rows_free(rows, n, 2);
    free(out);
    return rc;
}

/* LV-<uuid>: the location, or NULL for any other LV (staging copies, sm's MGT, foreign volumes). */
static const char *lv_location(const char *lv) {
    size_t p = strlen(LVM_LV_PREFIX);
    return strncmp(lv, LVM_LV_PREFIX, p) == 0 && is_uuid(lv + p) ? lv + p : NULL;
}

static void lv_info(const char *location, int64_t size, storage_vdi_info *ret) {
    memset(ret, 0, sizeof *ret);
    ret->location = xapi_strdup(location);
    ret->name = xapi_strdup("");
    ret->virtual_size = size;
    ret->physical_utilisation = size;
}

/* The VG's LVs (lv_name, lv_size), or only `lv` when not NULL. */
static int lvm_lvs(const storage_sr *sr, const char *lv, size_t max, storage_lvm_row **ret, size_t *ret_n,
                   storage_err *e) {
    static const char *const fields[] = {"lv_name", "lv_size"};
    char *target = NULL, *out = NULL;
    int rc;

    if (lv && asprintf(&target, "%s/%s", vg_name(sr), lv) < 0)
        xapi_oom();
    {
        const char *argv[] = {"lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "lv_name,lv_size",
                              target ? target : vg_name(sr), NULL};
        rc = lvm_cmd(argv, &out, lv ? SM_ERR_VDI_UNAVAILABLE : SM_ERR_SR_SCAN,
                     lv ? "The VDI is not available" : "The SR scan failed", e);
    }
    if (rc == 0) {
        rc = storage_lvm_report_parse(out, "lv", fields, 2, max, ret, ret_n);
        if (rc < 0)
            rc = storage_err_set(e, SM_ERR_SR_SCAN, -rc, "The SR scan failed",
                                 rc == -E2BIG ? "too many volumes" : "unexpected lvs output");
    }
    free(target);
    free(out);
    return rc;
}

int storage_lvm_sr_scan(const storage_sr *sr, size_t max, storage_vdi_info **ret, size_t *ret_n, storage_err *e) {
    storage_lvm_row *rows = NULL;
    storage_vdi_info *v = NULL;
    size_t n = 0, k = 0;
    int rc;

    /* Room for sm's MGT and a few staging volumes beyond max VDIs. */
    rc = lvm_lvs(sr, NULL, max + 16, &rows, &n, e);
    if (rc < 0)
        return rc;
    v = xapi_calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        const char *loc = lv_location(rows[i].values[0]);
        int64_t size;

        if (!loc || storage_lvm_parse_bytes(rows[i].values[1], &size) < 0)
            continue;
        if (k == max) {
            rc = storage_err_set(e, SM_ERR_SR_SCAN, E2BIG, "The SR scan failed", "too many volumes");
            break;
        }
        lv_info(loc, size, &v[k++]);
    }
    storage_lvm_rows_free(rows, n, 2);
    if (rc < 0) {
        storage_vdi_infos_free(v, k);
        return rc;
    }
    *ret = v;
    *ret_n = k;
    return 0;
}

static char *lv_name(const char *location, const char *suffix) {
    char *p = NULL;

    if (!is_uuid(location))
        return NULL;
    if (asprintf(&p, LVM_LV_PREFIX "%s%s", location, suffix) < 0)
        xapi_oom();
    return p;
}

static int lvm_vdi_stat_lv(const storage_sr *sr, const char *location, const char *suffix, storage_vdi_info *ret,
                           storage_err *e) {
    storage_lvm_row *rows = NULL;
    char *lv = lv_name(location, suffix);
    int64_t size;
    size_t n = 0;
    int rc;

    if (!lv)
        return storage_err_set(e, SM_ERR_VDI_UNAVAILABLE, EINVAL, "The VDI is not available", "bad location");
    rc = lvm_lvs(sr, lv, 1, &rows, &n, e);
    if (rc == 0 && (n != 1 || storage_lvm_parse_bytes(rows[0].values[1], &size) < 0))
        rc = storage_err_set(e, SM_ERR_VDI_UNAVAILABLE, EBADMSG, "The VDI is not available", "unexpected lvs output");
    if (rc == 0)
        lv_info(location, size, ret);
    storage_lvm_rows_free(rows, n, 2);
    free(lv);
    return rc;
}

int storage_lvm_vdi_stat(const storage_sr *sr, const char *location, storage_vdi_info *ret, storage_err *e) {
    return lvm_vdi_stat_lv(sr, location, "", ret, e);
}

static int lvm_lvcreate(const storage_sr *sr, const char *location, const char *suffix, int64_t size, storage_err *e) {
    char *lv = lv_name(location, suffix), sz[32];
    int rc;

    if (!lv)
        return storage_err_set(e, SM_ERR_VDI_CREATE, EINVAL, "VDI Creation failed", "bad location");
    snprintf(sz, sizeof sz, "%lldb", (long long)(size > 0 ? size : 1));
    {
        /* -Wy -Zy: no old signature or data at the start of the new volume. */
        const char *argv[] = {"lvcreate", "-y", "-Wy", "-Zy", "-n", lv, "-L", sz, vg_name(sr), NULL};
        rc = lvm_cmd(argv, NULL, SM_ERR_VDI_CREATE, "VDI Creation failed", e);
    }
    free(lv);
    return rc;
}

static int lvm_lvremove(const storage_sr *sr, const char *location, const char *suffix, storage_err *e) {
    char *lv = lv_name(location, suffix), *target = NULL;
    int rc;

    if (!lv)
        return storage_err_set(e, SM_ERR_VDI_DELETE, EINVAL, "VDI Deletion failed", "bad location");
    if (asprintf(&target, "%s/%s", vg_name(sr), lv) < 0)
        xapi_oom();
    {
        const char *argv[] = {"lvremove", "-f", target, NULL};
        rc = lvm_cmd(argv, NULL, SM_ERR_VDI_DELETE, "VDI Deletion failed", e);
    }
    free(target);
    free(lv);
    return rc;
}

int storage_lvm_vdi_create(const storage_sr *sr, const char *location, int64_t size, storage_vdi_info *ret,
                          storage_err *e) {
    int rc = lvm_lvcreate(sr, location, "", size, e);

    if (rc == 0 && (rc = storage_lvm_vdi_stat(sr, location, ret, e)) < 0) {
        storage_err ignored = {0};
        lvm_lvremove(sr, location, "", &ignored);
    }
    return rc;
}

int storage_lvm_vdi_delete(const storage_sr *sr, const char *location, storage_err *e) {
    return lvm_lvremove(sr, location, "", e);
}

int storage_lvm_vdi_resize(const storage_sr *sr, const char *location, int64_t size, storage_vdi_info *ret,
                          storage_err *e) {
    storage_vdi_info cur = {0};
    char *lv = NULL, sz[32];
    int rc;

    rc = storage_lvm_vdi_stat(sr, location, &cur, e);
    if (rc < 0)
        return rc;
    if (size < cur.virtual_size) {
        rc = storage_err_set(e, SM_ERR_VDI_SIZE, EINVAL, "VDI size is invalid", "shrinking is not supported");
        goto out;
    }
    if (size > cur.virtual_size) {
        if (asprintf(&lv, "%s/" LVM_LV_PREFIX "%s", vg_name(sr), location) < 0)
            xapi_oom();
        snprintf(sz, sizeof sz, "%lldb", (long long)size);
        const char *argv[] = {"lvextend", "-L", sz, lv, NULL};
        rc = lvm_cmd(argv, NULL, SM_ERR_VDI_RESIZE, "VDI resize failed", e);
    }
    if (rc == 0)
        rc = storage_lvm_vdi_stat(sr, location, ret, e);
out:
    storage_vdi_info_free(&cur);
    free(lv);
    return rc;
}

static char *lvm_path(const storage_sr *sr, const char *location, const char *suffix) {
    char *lv = lv_name(location, suffix), *p = NULL;

    if (!lv)
        return NULL;
    if (asprintf(&p, "%s/%s", sr->path, lv) < 0)
        xapi_oom();
    free(lv);
    return p;
}

char *storage_lvm_vdi_path(const storage_sr *sr, const char *location) {
    return lvm_path(sr, location, "");
}

/* Copies size bytes of src_path (a file or a block device) to the block device dst_path, zeros included:
 * a thick LV holds whatever its extents held before. */
static int copy_to_lv(const char *src_path, const char *dst_path, int64_t size) {
    struct stat st;
    char *buf = NULL;
    int src = -1, dst = -1, rc = 0;
    int64_t off = 0;

    src = open(src_path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    dst = open(dst_path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (src < 0 || dst < 0 || fstat(dst, &st) < 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISBLK(st.st_mode)) {
        rc = -ENOTBLK;
        goto out;
    }
    buf = xapi_malloc(LVM_COPY_CHUNK);
    while (off < size) {
        size_t want = (size_t)(size - off) < LVM_COPY_CHUNK ? (size_t)(size - off) : LVM_COPY_CHUNK;
        ssize_t r = pread(src, buf, want, off), w;

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto out;
        }
        if (r == 0) { /* a source shorter than size: the rest reads as zeros */
            memset(buf, 0, want);
            r = (ssize_t)want;
        }
        for (ssize_t done = 0; done < r; done += w) {
            w = pwrite(dst, buf + done, (size_t)(r - done), off + done);
            if (w < 0 && errno == EINTR)
                w = 0;
            else if (w <= 0) {
                rc = w < 0 ? -errno : -EIO;
                goto out;
            }
        }
        off += r;
    }
    if (fdatasync(dst) < 0)
        rc = -errno;
out:
    free(buf);
    if (src >= 0)
        close(src);
    if (dst >= 0)
        close(dst);
    return rc;
}

int storage_lvm_vdi_import(const storage_sr *sr, const char *location, const char *src_path, int64_t size,
                          storage_err *e) {
    char *dst = NULL;
    int rc;

    rc = lvm_lvcreate(sr, location, LVM_PART_SUFFIX, size, e);
    if (rc < 0)
        return rc;
    dst = lvm_path(sr, location, LVM_PART_SUFFIX);
    rc = copy_to_lv(src_path, dst, size);
    if (rc < 0) {
        storage_err ignored = {0};
        storage_err_set(e, SM_ERR_VDI_CREATE, -rc, "VDI Creation failed", strerror(-rc));
        lvm_lvremove(sr, location, LVM_PART_SUFFIX, &ignored);
    }
    free(dst);
    return rc;
}

int storage_lvm_vdi_publish(const storage_sr *sr, const char *location, storage_vdi_info *ret, storage_err *e) {
    char *from = lv_name(location, LVM_PART_SUFFIX), *to = lv_name(location, "");
    int rc;

    if (!from || !to)
        rc = storage_err_set(e, SM_ERR_VDI_CREATE, EINVAL, "VDI Creation failed", "bad location");
    else {
        const char *argv[] = {"lvrename", vg_name(sr), from, to, NULL};
        rc = lvm_cmd(argv, NULL, SM_ERR_VDI_CREATE, "VDI Creation failed", e);
    }
    if (rc == 0)
        rc = storage_lvm_vdi_stat(sr, location, ret, e);
    free(from);
    free(to);
    return rc;
}

void storage_lvm_vdi_discard(const storage_sr *sr, const char *location) {
    storage_err ignored = {0};
    lvm_lvremove(sr, location, LVM_PART_SUFFIX, &ignored);
}

int storage_lvm_vdi_write(const storage_sr *sr, const char *location, const char *src_path, int64_t size,
                         storage_err *e) {
    char *dst = storage_lvm_vdi_path(sr, location);
    int rc = dst ? copy_to_lv(src_path, dst, size) : -EINVAL;

    free(dst);
    return rc < 0 ? storage_err_set(e, SM_ERR_VDI_UNAVAILABLE, -rc, "The VDI is not available", strerror(-rc)) : 0;
}

/* Staging volumes an interrupted copy left behind. */
void storage_lvm_sr_cleanup(const storage_sr *sr) {
    storage_lvm_row *rows = NULL;
    storage_err e = {0};
    size_t n = 0, p = strlen(LVM_LV_PREFIX), s = strlen(LVM_PART_SUFFIX);

    if (lvm_lvs(sr, NULL, 65536, &rows, &n, &e) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        const char *lv = rows[i].values[0];
        char loc[37];

        if (strlen(lv) != p + 36 + s || strncmp(lv, LVM_LV_PREFIX, p) != 0 || strcmp(lv + p + 36, LVM_PART_SUFFIX))
            continue;
        memcpy(loc, lv + p, 36);
        loc[36] = '\0';
        if (is_uuid(loc)) {
            agent_log(LOG_NOTICE, "SR %s: removing the staging volume %s", sr->uuid, lv);
            storage_lvm_vdi_discard(sr, loc);
        }
    }
    storage_lvm_rows_free(rows, n, 2);
}

int storage_lvm_probe_xml(const storage_lvm_row *pvs, size_t n, char **ret_xml) {
    /* pvs rows: pv_name, vg_name, vg_size. One SR per VG_XenStorage-<uuid>, its devices in order. */
    size_t plen = strlen(LVM_VG_PREFIX), len = 0, nsr = 0;
    char *xml = NULL;
    FILE *f = open_memstream(&xml, &len);

    if (!f)
        xapi_oom();
    fputs("<?xml version=\"1.0\" ?>\n", f);
    for (size_t i = 0; i < n; i++) {
        const char *vg = pvs[i].values[1];
        bool seen = false;

        if (strncmp(vg, LVM_VG_PREFIX, plen) != 0 || !is_uuid(vg + plen))
            continue;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(pvs[k].values[1], vg) == 0;
        if (seen)
            continue;
        if (nsr++ == 0)
            fputs("<SRlist>\n", f);
        fprintf(f, "\t<SR>\n\t\t<UUID>%s</UUID>\n\t\t<Devlist>", vg + plen);
        for (size_t k = i, first = 1; k < n; k++)
            if (strcmp(pvs[k].values[1], vg) == 0) {
                fprintf(f, "%s%s", first ? "" : ",", pvs[k].values[0]);
                first = 0;
            }
        fprintf(f, "</Devlist>\n\t\t<size>%s</size>\n\t</SR>\n", pvs[i].values[2]);
    }
    fputs(nsr ? "</SRlist>\n" : "<SRlist/>\n", f);
    if (fclose(f) != 0)
        xapi_oom();
    *ret_xml = xml;
    return 0;
}

/* One of the devices asked about, by the node it leads to (a /dev/disk/by-id link names the same disk). */
static bool device_asked(const char *pv, char **devs, size_t n) {
    char *a = realpath(pv, NULL);
    bool found = false;

    for (size_t i = 0; i < n && !found; i++) {
        char *b = realpath(devs[i], NULL);
        found = strcmp(pv, devs[i]) == 0 || (a && b && strcmp(a, b) == 0);
        free(b);
    }
    free(a);
    return found;
}

/* SR.probe: the VGs named as SRs on the devices, each with all its devices,
 * as sm's lvutil.srlist_toxml. */
static int lvm_sr_probe(const xapi_value *dc, const xapi_value *sm_config, char **ret_xml, storage_err *e) {
    static const char *const fields[] = {"pv_name", "vg_name", "vg_size"};
    const char *argv[] = {"pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
                          "pv_name,vg_name,vg_size", NULL};
    storage_lvm_row *rows = NULL, *keep = NULL;
    char **devs = NULL, *out = NULL;
    size_t n = 0, nrows = 0, nkeep = 0;
    int rc;

    rc = lvm_devices(dc_get(dc, "device"), &devs, &n, e);
    if (rc < 0)
        return rc;
    rc = lvm_cmd(argv, &out, SM_ERR_SR_UNAVAILABLE, "The SR is not available", e);
    if (rc == 0 && (rc = storage_lvm_report_parse(out, "pv", fields, 3, LVM_MAX_PROBE_PVS, &rows, &nrows)) < 0)
        rc = storage_err_set(e, SM_ERR_SR_SCAN, -rc, "The SR scan failed", "unexpected pvs output");
    if (rc < 0)
        goto out;
    keep = xapi_calloc(nrows ? nrows : 1, sizeof *keep);
    for (size_t i = 0; i < nrows; i++) {
        bool wanted = false;
        for (size_t k = 0; k < nrows && !wanted; k++)
            wanted = *rows[i].values[1] && strcmp(rows[k].values[1], rows[i].values[1]) == 0 &&
                     device_asked(rows[k].values[0], devs, n);
        if (wanted)
            keep[nkeep++] = rows[i];
    }
    rc = storage_lvm_probe_xml(keep, nkeep, ret_xml);
out:
    free(keep);
    storage_lvm_rows_free(rows, nrows, 3);
    free(out);
    free_devices(devs, n);
    return rc;
}

const storage_driver storage_lvm_driver = {
    .type = "lvm",
    .description = "Local LVM volume group, raw logical volumes",
    .content_type = "user",
    STORAGE_LVM_VOLUME_OPS,
    .sr_config_at = lvm_config_at,
    .sr_create = lvm_sr_create,
    .sr_attach = lvm_sr_attach,
    .sr_detach = lvm_sr_detach,
    .sr_delete = lvm_sr_delete,
    .sr_probe = lvm_sr_probe,
};
