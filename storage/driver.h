/* The SR driver interface: what the storage layer (storage/) asks of the
 * code that knows one kind of storage. A driver sees an SR as the handle
 * below and VDIs as "locations" (its own names for them: the VDI uuid for the
 * file driver, the file name for the ISO library); it never touches the
 * object store, so everything about records, locks, errors of the API and
 * allowed operations stays in one place.
 *
 * Calls are synchronous, each in a time-limited job (storage/io.h: a thread
 * abandoned at storage_io_timeout, so a driver may block on storage that
 * stopped answering). The SR calls (create, attach, detach, delete, scan,
 * stat, probe) run without the store lock, the SR marked busy meanwhile; the
 * VDI ones (create, delete, set_hidden, resize, stat, coalesce) without it
 * too, the VDI marked busy (current_operations), but for a few still made
 * under the lock, bounded by the job's limit (README); publish (a rename)
 * with the write lock held; the slow one (import: copying data) without it, into a staging object
 * that scans do not see until publish makes it the VDI's data. Every call returns 0 or a
 * negative errno and, on failure, fills *e with the SM error number and text
 * that become SR_BACKEND_FAILURE_<code> ["", text, ""], as xapi reports its
 * SM drivers' errors. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "xapi/value.h"

/* SM error numbers (xapi-project/sm XE_SR_ERRORCODES.xml) the drivers use. */
enum {
    SM_ERR_INVALID_ARG = 1,
    SM_ERR_SR_NOT_EMPTY = 39,
    SM_ERR_SR_SCAN = 40,
    SM_ERR_SR_EXISTS = 42,
    SM_ERR_SR_NO_SPACE = 44,
    SM_ERR_VDI_UNAVAILABLE = 46,
    SM_ERR_SR_UNAVAILABLE = 47,
    SM_ERR_LVM_MOUNT = 52,
    SM_ERR_FILE_SR_CREATE = 61,
    SM_ERR_NFS_VERSION = 72,
    SM_ERR_NFS_MOUNT = 73,
    SM_ERR_NFS_UNMOUNT = 74,
    SM_ERR_NFS_DELETE = 76,
    SM_ERR_NFS_CREATE = 88,
    SM_ERR_CONFIG_SERVER_MISSING = 100,
    SM_ERR_CONFIG_SERVER_PATH_MISSING = 101,
    SM_ERR_CONFIG_SERVER_PATH_BAD = 102,
    SM_ERR_NFS_TARGET = 108,
    SM_ERR_FILE_SR_RMDIR = 62,
    SM_ERR_VDI_CREATE = 78,
    SM_ERR_VDI_SIZE = 79,
    SM_ERR_VDI_DELETE = 80,
    SM_ERR_VDI_CLONE = 81,
    SM_ERR_VDI_SNAPSHOT = 82,
    SM_ERR_CONFIG_LOCATION_MISSING = 94,
    SM_ERR_CONFIG_DEVICE_MISSING = 90,
    SM_ERR_SNAPSHOT_CHAIN_TOO_LONG = 109,
    SM_ERR_VDI_RESIZE = 110,
    SM_ERR_ISCSI_DEVICE = 67,
    SM_ERR_ISCSI_LOGIN = 68,
    SM_ERR_ISCSI_LOGOUT = 69,
    SM_ERR_ISCSI_DISCOVERY = 83,
    SM_ERR_CONFIG_TARGET_MISSING = 95,
    SM_ERR_CONFIG_TARGET_IQN_MISSING = 96,
    SM_ERR_INVALID_IQN = 106,
    SM_ERR_CONFIG_SCSIID = 107,
    SM_ERR_DNS = 140,
    SM_ERR_ISCSI_TARGET = 141,
    SM_ERR_ISCSI_PORT = 142,
    SM_ERR_ISO_LOCATION_MISSING = 220,
    SM_ERR_ISO_LOCAL_PATH = 226,
};

typedef struct storage_err {
    int code;       /* SM error number, 0 if none */
    char text[512]; /* "<description> [opterr=<detail>]" */
    char out[4096]; /* the third parameter (sm's stderr: nfs probe's exports list), "" if none */
} storage_err;

/* Fills e and returns -abs(errno_value). */
int storage_err_set(storage_err *e, int code, int errno_value, const char *description, const char *detail);

/* What a driver can do; the layer refuses the rest with SR_OPERATION_NOT_SUPPORTED. */
enum {
    STORAGE_CAP_SR_CREATE = 1u << 0,
    STORAGE_CAP_SR_DELETE = 1u << 1,
    STORAGE_CAP_SR_SCAN = 1u << 2,
    STORAGE_CAP_VDI_CREATE = 1u << 3,  /* also: target of VDI.copy, clone and snapshot */
    STORAGE_CAP_VDI_DELETE = 1u << 4,
    STORAGE_CAP_VDI_CLONE = 1u << 5,
    STORAGE_CAP_VDI_SNAPSHOT = 1u << 6,
    STORAGE_CAP_VDI_RESIZE = 1u << 7,
    STORAGE_CAP_VDI_RESIZE_ONLINE = 1u << 8,
    STORAGE_CAP_VDI_INTRODUCE = 1u << 9,
    STORAGE_CAP_VDI_WRITE = 1u << 10,  /* data may be overwritten (VDI.copy into an existing VDI) */
};
/* What a writable directory of VDI files (ext, file) can do: everything above. */
#define STORAGE_CAPS_DIRECTORY                                                                                  \
    (STORAGE_CAP_SR_CREATE | STORAGE_CAP_SR_DELETE | STORAGE_CAP_SR_SCAN | STORAGE_CAP_VDI_CREATE |              \
     STORAGE_CAP_VDI_DELETE | STORAGE_CAP_VDI_CLONE | STORAGE_CAP_VDI_SNAPSHOT | STORAGE_CAP_VDI_RESIZE |         \
     STORAGE_CAP_VDI_RESIZE_ONLINE | STORAGE_CAP_VDI_INTRODUCE | STORAGE_CAP_VDI_WRITE)

/* An SR as a driver sees it: built by the layer from the SR and PBD records. */
typedef struct storage_sr {
    const struct storage_driver *drv;
    char uuid[37];
    char *path;                     /* device_config "location", resolved by the driver */
    char *device;                   /* a block device (ext) or an export (nfs: server:/path/<sr uuid>) the driver mounts at path, or NULL */
    char *options;                  /* mount options (nfs), or NULL */
    bool nosubdir;                  /* nfs: SR sm_config nosubdir=true, the SR is the export itself (device is
                                     * server:serverpath) instead of its <sr uuid> directory, as sm's NFSSR */
    xapi_value config;              /* the PBD's device_config, for drivers that need more (iscsi: target, CHAP) */
} storage_sr;

/* One VDI as the driver knows it (scan, stat, create). */
typedef struct storage_vdi_info {
    char *location;                 /* the driver's name for it */
    char *name;                     /* a name_label suggestion ("" if none) */
    int64_t virtual_size;           /* bytes */
    int64_t physical_utilisation;   /* bytes actually allocated */
    bool read_only;
    /* VHD drivers: the image's format is VHD (sm_config vdi_type=vhd), its
     * parent's location (sm_config vhd-parent; NULL: none), and whether it
     * is hidden (a "base copy": not managed, read-only). */
    bool vhd;
    char *parent;
    bool hidden;
    /* A raw image in a driver whose VDIs are otherwise VHDs (sm_config vdi_type=raw). */
    bool raw;
    /* A LUN of an iSCSI SR: its SCSI LUN number (sm_config LUNid; the
     * location is its SCSIid, sm_config SCSIid), or NULL. */
    char *lun_id;
} storage_vdi_info;

void storage_vdi_info_free(storage_vdi_info *v);
void storage_vdi_infos_free(storage_vdi_info *v, size_t n);

struct storage_vhd_file; /* storage/vhd_file.h */

typedef struct storage_driver {
    const char *type;               /* SR.type: "file", "iso" */
    const char *description;
    const char *content_type;       /* default SR.content_type */
    const char *format;             /* data format of its new VDIs: "raw", "vhd" (a VHD directory also holds
                                     * images of the other: the file tells, storage_path_is_vhd) */
    unsigned caps;                  /* STORAGE_CAP_* */
    bool block;                     /* VDIs are block devices (vdi_path under /dev), not files in a directory */

    /* Checks device_config and gives the path the SR lives at (malloc'd). No I/O. */
    int (*sr_config)(const xapi_value *device_config, char **ret_path, storage_err *e);
    /* SR.create: makes the storage (the directory) if needed. */
    int (*sr_create)(const storage_sr *sr, storage_err *e);
    /* PBD.plug: checks the storage is there and usable. */
    int (*sr_attach)(const storage_sr *sr, storage_err *e);
    /* PBD.unplug (optional): releases the storage (deactivates a VG). */
    int (*sr_detach)(const storage_sr *sr, storage_err *e);
    /* SR.destroy: removes the storage; `locations` are the VDIs the database still knows. */
    int (*sr_delete)(const storage_sr *sr, char *const *locations, size_t n, storage_err *e);
    /* Total and used bytes of the storage (statvfs). */
    int (*sr_stat)(const storage_sr *sr, int64_t *ret_size, int64_t *ret_used, storage_err *e);
    /* Every VDI present, bounded by max (-E2BIG beyond). */
    int (*sr_scan)(const storage_sr *sr, size_t max, storage_vdi_info **ret, size_t *ret_n, storage_err *e);
    /* Removes leftovers of interrupted imports (at start only). */
    void (*sr_cleanup)(const storage_sr *sr);

    /* A new empty VDI of size bytes named location (thin: a sparse file). */
    int (*vdi_create)(const storage_sr *sr, const char *location, int64_t size, storage_vdi_info *ret, storage_err *e);
    int (*vdi_delete)(const storage_sr *sr, const char *location, storage_err *e);
    /* Grows a VDI; shrinking is an SM_ERR_VDI_SIZE error. */
    int (*vdi_resize)(const storage_sr *sr, const char *location, int64_t size, storage_vdi_info *ret, storage_err *e);
    int (*vdi_stat)(const storage_sr *sr, const char *location, storage_vdi_info *ret, storage_err *e);
    /* Where the data is, for backends and for copying from it (malloc'd), or NULL if the location is not valid. */
    char *(*vdi_path)(const storage_sr *sr, const char *location);

    /* VDI.copy/clone/snapshot into this SR: copies src_path (size bytes) to a
     * staging object for `location` (slow; no lock held) ... */
    int (*vdi_import)(const storage_sr *sr, const char *location, const char *src_path, int64_t size, storage_err *e);
    /* ... then makes it the VDI's data (quick, under the lock) ... */
    int (*vdi_publish)(const storage_sr *sr, const char *location, storage_vdi_info *ret, storage_err *e);
    /* ... or throws it away. */
    void (*vdi_discard)(const storage_sr *sr, const char *location);
    /* Overwrites an existing VDI's first size bytes with src_path's (VDI.copy into_vdi; no lock held). */
    int (*vdi_write)(const storage_sr *sr, const char *location, const char *src_path, int64_t size, storage_err *e);

    /* SR.probe (optional; no store lock held, may do I/O): the SRs the storage
     * named by device_config holds, as sm's probe XML (malloc'd). A driver
     * without it answers what sm does for a driver without SR_PROBE. */
    int (*sr_probe)(const xapi_value *device_config, const xapi_value *sm_config, char **ret_xml, storage_err *e);
    /* Optional, instead of sr_config: the SR's place may depend on its uuid
     * (ext: <mount_root>/<uuid> unless device_config names a path) and its
     * sm_config (nfs: nosubdir; NULL: none). Fills ret->path and
     * ret->device (malloc'd). No I/O. */
    int (*sr_config_at)(const xapi_value *device_config, const xapi_value *sm_config, const char *sr_uuid,
                        const char *mount_root, storage_sr *ret, storage_err *e);
    /* Optional: VDI.snapshot/clone as a VHD chain in constant time (no lock
     * held): location's image becomes the hidden parent `base` (a new
     * location), location a new empty leaf over it, and a second leaf over
     * base is staged for new_location (then vdi_publish or vdi_discard, as
     * after vdi_import; the chain is whole either way). */
    int (*vdi_chain)(const storage_sr *sr, const char *location, const char *base, const char *new_location,
                     storage_err *e);
    /* Optional: marks an image hidden (a parent whose VDI was destroyed while children need it). */
    int (*vdi_set_hidden)(const storage_sr *sr, const char *location, bool hidden, storage_err *e);
    /* Optional: the VDI's image opened with its chain (storage/vhd_file.h; writable: the leaf), for
     * reading and writing its disk (VDI import/export) instead of the file's bytes. */
    int (*vdi_open_vhd)(const storage_sr *sr, const char *location, bool writable, struct storage_vhd_file **ret,
                        storage_err *e);
    /* Optional: folds location (a VHD leaf, its parent's only child) into its
     * parent, which then takes its name: the chain is one shorter. -E2BIG
     * (nothing changed) when the leaf holds more than max_bytes of data. A
     * failure midway leaves the chain reading as before. */
    int (*vdi_coalesce_leaf)(const storage_sr *sr, const char *location, int64_t max_bytes, storage_err *e);
    /* Optional, drivers whose VDIs are VHDs: a raw VDI instead, for what must
     * be plain bytes (a suspend image, which the backends write as such;
     * sm_config type=raw at VDI.create, as sm's FileSR takes it) and for
     * copies of one. Then vdi_publish / vdi_discard as after vdi_import; the
     * other operations tell raw from VHD by what is there. */
    int (*vdi_create_raw)(const storage_sr *sr, const char *location, int64_t size, storage_vdi_info *ret,
                          storage_err *e);
    int (*vdi_import_raw)(const storage_sr *sr, const char *location, const char *src_path, int64_t size,
                          storage_err *e);
    /* Optional, drivers whose new VDIs are raw but that hold VHDs too (file): a VHD VDI instead, for
     * sm_config type=vhd at VDI.create (as sm's FileSR takes it). */
    int (*vdi_create_vhd)(const storage_sr *sr, const char *location, int64_t size, storage_vdi_info *ret,
                          storage_err *e);
} storage_driver;

const storage_driver *storage_driver_find(const char *type);
/* "ext" (storage/drv_ext.c). */
extern const storage_driver storage_ext_driver;
/* "lvm" (storage/drv_lvm.c). */
extern const storage_driver storage_lvm_driver;
/* "iscsi" and "lvmoiscsi" (storage/drv_iscsi.c). */
extern const storage_driver storage_iscsi_driver;
extern const storage_driver storage_lvmoiscsi_driver;
/* "nfs" (storage/drv_nfs.c). */
extern const storage_driver storage_nfs_driver;
/* The programs it runs (config nfs_mount, nfs_umount, nfs_showmount): a name looked up on
 * /usr/sbin:/usr/bin:/sbin:/bin, or a path (a test's stand-in for an NFS server). */
extern char storage_nfs_mount[1024];
extern char storage_nfs_umount[1024];
extern char storage_nfs_showmount[1024];
/* The time limit in seconds of a driver's external command (mount, umount, showmount, lvm2) and of a
 * driver call's job (storage/io.h): config storage_io_timeout. */
extern unsigned storage_io_timeout;
/* Where SRs of drivers with sr_config_at live by default (config sr_mount_root). */
extern char storage_mount_root[1024];
/* The SR's place from device_config (and the SR's sm_config, or NULL): sr_config_at when the driver has
 * it, else sr_config. */
int storage_sr_config(const storage_driver *drv, const xapi_value *device_config, const xapi_value *sm_config,
                      const char *sr_uuid, storage_sr *ret, storage_err *e);
/* NULL-terminated list of every driver. */
extern const storage_driver *const storage_drivers[];

/* sm's probe XML of the SRs in a directory: its uuid-named subdirectories (storage/drv_file.c). */
int storage_dir_srlist_xml(const char *path, char **ret_xml, storage_err *e);
/* path is a mount point (another filesystem than its parent's). */
bool storage_is_mountpoint(const char *path);
/* mkdir -p: the parents 0755, the last one 0700 (storage/drv_file.c). */
int storage_mkdirs(const char *path);
/* Shared by drivers that keep VDIs as files (storage/fileops.c). */
/* Opens path, a VDI's file in an SR directory (flags as open(2), never
 * O_TRUNC: a hard link would be cut before it is seen), only if it is a
 * regular file with a single link and not a symlink: the fd, or -ELOOP
 * (symlink), -EMLINK (hard link), -EINVAL (not a regular file), -errno. */
int storage_open_file(const char *path, int flags, mode_t mode);
/* The same check on path without opening it (lstat): 0 (its stat in
 * *ret_st if not NULL) or a negative errno. */
int storage_check_file(const char *path, struct stat *ret_st);
/* A VDI's data at path as its driver keeps it: a plain file (storage_check_file,
 * storage_open_file) or, for a block driver, a block device (the driver's own
 * names under /dev, which are udev's symlinks). 0 / an fd, or a negative errno. */
int storage_check_vdi(const storage_driver *drv, const char *path);
int storage_open_vdi(const storage_driver *drv, const char *path, int flags);
/* Unlinks the files (vdi_path) of the locations, for sr_delete. */
int storage_unlink_vdis(const storage_sr *sr, char *const *locations, size_t n, storage_err *e);
/* Removes the .<name>.part staging files an interrupted operation left (sr_cleanup). */
void storage_remove_parts(const storage_sr *sr);
/* Copies src to dst (an open, empty or existing file): FICLONE reflink when
 * the filesystem can and dst is empty, else only the data extents
 * (SEEK_DATA/SEEK_HOLE), leaving holes as holes. Copies [0, size); with
 * punch_holes, ranges that are holes in src are deallocated in dst (overwrite). */
int storage_copy_file(const char *src_path, int dst_fd, int64_t size, bool punch_holes);
