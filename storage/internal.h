/* Shared by the storage layer's files (not for other modules: see storage.h). */
#pragma once

#include <stdint.h>

#include "storage/driver.h"
#include "storage/storage.h"

#define STORAGE_MAX_VDI_SIZE (INT64_C(16) << 40) /* 16 TiB: ext4's largest file */
#define STORAGE_MAX_SCAN 100000                  /* VDIs one scan may find */
#define STORAGE_MAX_DEVICE_CONFIG 64             /* keys in a device_config map */

extern const xapi_handler storage_sr_handlers[];
extern const xapi_handler storage_vdi_handlers[];
extern const xapi_handler storage_vbd_handlers[];
extern const xapi_class_hooks storage_vdi_hooks;
extern const xapi_class_hooks storage_pbd_hooks;
extern const xapi_class_hooks storage_vbd_hooks;

static inline const xapi_class *storage_cls(int id) {
    return &xapi_classes[id];
}

const char *storage_map_get(const xapi_value *map, const char *key);
bool storage_is_null_ref(const char *ref);
/* A lowercase uuid in canonical form. */
bool storage_uuid_valid(const char *s);

/* This host's PBD of the SR, or NULL. Store lock held (all of these). */
xapi_obj *storage_my_pbd(xapi_server *srv, const xapi_obj *sr);
/* A driver handle for the SR from its PBD (any state): SR_UNKNOWN_DRIVER, or a backend failure. */
int storage_sr_handle(xapi_server *srv, const xapi_obj *sr, const xapi_obj *pbd, storage_sr *ret, xapi_value *err);
void storage_sr_handle_free(storage_sr *h);
/* The SR is usable for VDI operations (this host's PBD plugged), with a handle:
 * SR_HAS_NO_PBDS [sr] otherwise, as xapi's Sm.assert_pbd_is_plugged. */
int storage_sr_plugged(xapi_server *srv, const xapi_obj *sr, storage_sr *ret, xapi_value *err);
/* The driver can do it: SR_OPERATION_NOT_SUPPORTED [sr] otherwise. */
int storage_sr_cap(const xapi_obj *sr, const storage_driver *drv, unsigned cap, xapi_value *err);
/* SR_BACKEND_FAILURE_<n> ["", text, ""]. */
int storage_backend_fail(xapi_value *err, const storage_err *e);

/* virtual_allocation (sum of the VDIs' sizes, leaving out `leaving`, a VDI
 * about to be destroyed). No I/O: the physical sizes (statvfs) come from
 * storage_sr_sizes_refresh once the lock is released. */
void storage_sr_refresh(xapi_server *srv, xapi_obj *sr, const xapi_obj *leaving);
void storage_sr_update_allowed(xapi_server *srv, xapi_obj *sr);
/* ...of the SR and every VDI in it. */
void storage_sr_update_allowed_all(xapi_server *srv, xapi_obj *sr);
bool storage_sr_attached(xapi_server *srv, const xapi_obj *sr);
/* Whether any object of class cls_id named in refs has its bool field set. */
bool storage_any_set(xapi_server *srv, const xapi_value *refs, int cls_id, int field);

/* VDI operations in progress (current_operations), by an operation id (the task, else a fresh ref). */
void storage_op_id(const xapi_call *c, char ret[XAPI_REF_LEN + 1]);
/* May op (a vdi_operations name) start now on the VDI? Checks operations in
 * progress, attached VBDs, managed, sharable/on_boot rules and the driver's
 * capabilities (not whether the SR is plugged). */
int storage_vdi_check_op(xapi_server *srv, xapi_obj *vdi, const char *op, xapi_value *err);
void storage_vdi_op_begin(xapi_server *srv, xapi_obj *vdi, const char *opid, const char *op);
/* OTHER_OPERATION_IN_PROGRESS ["VDI", vdi, op, id] while an operation other
 * than a read (clone, copy, snapshot) runs on the VDI: one that deletes or
 * changes its data without the lock (destroy, resize, update, a coalesce). */
int storage_vdi_check_no_writer(const xapi_obj *vdi, xapi_value *err);
void storage_vdi_op_end(xapi_server *srv, const char *vdi_ref, const char *opid);

/* The VDI whose data is at path (vdi_path) is a VHD: a <uuid>.vhd image of a
 * driver that reads VHD chains (its raw images are <uuid>.raw). Known from
 * the file, not from sm_config, which clients may change. */
bool storage_path_is_vhd(const storage_driver *drv, const char *path);
/* A new VDI record in sr with what the driver reports (managed, location, sizes). */
xapi_obj *storage_vdi_new(xapi_server *srv, xapi_obj *sr, const char *ref, const char *uuid,
                          const storage_vdi_info *info);
void storage_vdi_set_info(xapi_server *srv, xapi_obj *vdi, const storage_vdi_info *info);
/* Scans the SR (plugged, handle h) and reconciles the VDI records with what is there. */
int storage_sr_scan_locked(xapi_server *srv, xapi_obj *sr, const storage_sr *h, xapi_value *err);
/* The start-up sweep (storage/sweep.c), after the scan of a plugged directory SR:
 * each entry no VDI owns is logged and listed in other_config xenapid-leftovers;
 * nothing is deleted. Write lock held. */
void storage_sr_sweep(xapi_server *srv, xapi_obj *sr, const storage_sr *h);

/* ---- driver I/O without the store lock (storage/sr_io.c) ---- */

/* What one job does, in this order. */
enum {
    STORAGE_SR_IO_CREATE = 1u << 0, /* sr_create */
    STORAGE_SR_IO_ATTACH = 1u << 1, /* sr_attach */
    STORAGE_SR_IO_SCAN = 1u << 2,   /* sr_scan (its failure kept apart, in scan_rc) */
    STORAGE_SR_IO_STAT = 1u << 3,   /* sr_stat (its failure: have_stat false) */
    STORAGE_SR_IO_DETACH = 1u << 4, /* sr_detach */
    STORAGE_SR_IO_DELETE = 1u << 5, /* sr_delete of locations */
};

typedef struct storage_sr_io {
    unsigned steps;
    storage_sr h; /* the job's own copy */
    char **locations;
    size_t nloc;
    /* results */
    bool scanned;
    int scan_rc;
    storage_err scan_e;
    storage_vdi_info *infos;
    size_t n;
    bool have_stat;
    int64_t size, used;
} storage_sr_io;

/* Runs the steps on a copy of h in a time-limited job (storage/io.h): no
 * store lock is needed, and the caller should not hold it. 0 and *ret
 * (storage_sr_io_free), or the first failing step's error in *e (-ETIME:
 * the storage did not answer in time). */
int storage_sr_io_run(const storage_sr *h, unsigned steps, char *const *locations, size_t nloc, const char *what,
                      storage_sr_io **ret, storage_err *e);
void storage_sr_io_free(storage_sr_io *io);
void storage_sr_handle_copy(const storage_sr *h, storage_sr *ret);
/* The driver's sr_probe in a time-limited job. */
int storage_sr_probe_io(const storage_driver *drv, const xapi_value *device_config, const xapi_value *sm_config,
                        char **ret_xml, storage_err *e);
/* A driver's VDI calls, each in a time-limited job (no store lock held,
 * the VDI marked busy meanwhile): once an SR has a stuck job they fail at once. */
int storage_io_vdi_create(const storage_sr *h, const char *location, int64_t size, storage_vdi_info *ret,
                          storage_err *e);
/* The same for the driver's raw images (vdi_create_raw) and VHD images (vdi_create_vhd). */
int storage_io_vdi_create_raw(const storage_sr *h, const char *location, int64_t size, storage_vdi_info *ret,
                              storage_err *e);
int storage_io_vdi_create_vhd(const storage_sr *h, const char *location, int64_t size, storage_vdi_info *ret,
                              storage_err *e);
int storage_io_vdi_delete(const storage_sr *h, const char *location, storage_err *e);
int storage_io_vdi_resize(const storage_sr *h, const char *location, int64_t size, storage_vdi_info *ret,
                          storage_err *e);
/* vdi_stat, for the operation `what` (named in the error and the log if it times out). */
int storage_io_vdi_stat(const storage_sr *h, const char *what, const char *location, storage_vdi_info *ret,
                        storage_err *e);
/* vdi_path, and storage_check_vdi of it: 0 and the path, a negative errno
 * with *e empty when there is no such data, or *e SR_UNAVAILABLE when the
 * storage did not answer. */
int storage_io_vdi_path(const storage_sr *h, const char *location, char **ret_path, storage_err *e);
/* The same for the operation `what`. */
int storage_io_vdi_find(const storage_sr *h, const char *what, const char *location, char **ret_path,
                        storage_err *e);
/* vdi_publish of what vdi_import or vdi_chain staged, for the operation `what`. */
int storage_io_vdi_publish(const storage_sr *h, const char *what, const char *location, storage_vdi_info *ret,
                           storage_err *e);
/* VDI.destroy's deletion (or, hide, vdi_set_hidden(location, true)); if it
 * times out and then ends, late(late_arg, its result) in its thread without
 * a lock. late_arg (malloc'd) is freed whatever happens. */
int storage_io_vdi_delete_late(const storage_sr *h, const char *location, bool hide, void (*late)(void *arg, int rc),
                               void *late_arg, storage_err *e);
/* vdi_set_hidden(location, true). */
int storage_io_vdi_hide(const storage_sr *h, const char *location, storage_err *e);
/* vdi_coalesce_leaf, then the leaf's vdi_stat into *ret. */
int storage_io_vdi_coalesce_leaf(const storage_sr *h, const char *location, int64_t max_bytes,
                                 storage_vdi_info *ret, storage_err *e);
/* The SR's physical sizes from the driver (statvfs), read without the store
 * lock (call without it) and published if the SR is still plugged: what an
 * operation does after its transaction, so that no lock waits on the storage. */
void storage_sr_sizes_refresh(xapi_server *srv, const char *sr_ref);

/* The VDIs an SR had when a scan started without the lock: what the scan
 * may forget, and locations it must not bring back (destroyed meanwhile). */
typedef struct storage_scan_known {
    xapi_value refs, locations; /* arrays of strings */
} storage_scan_known;
void storage_scan_known_take(xapi_server *srv, const xapi_obj *sr, storage_scan_known *ret);
void storage_scan_known_free(storage_scan_known *k);
/* Reconciles the SR's VDI records with a scan's result (known: NULL when
 * the lock was held throughout), then its sizes from io. */
void storage_sr_apply_scan(xapi_server *srv, xapi_obj *sr, const storage_sr_io *io, const storage_scan_known *known);
/* virtual_allocation, and physical sizes when io has them (io may be NULL). */
void storage_sr_set_sizes(xapi_server *srv, xapi_obj *sr, const storage_sr_io *io);

/* SR operations in progress (SR.current_operations): one at a time; a
 * second gets OTHER_OPERATION_IN_PROGRESS ["SR", sr, op, its id]. */
int storage_sr_op_begin(xapi_server *srv, xapi_obj *sr, const char *opid, const char *op, xapi_value *err);
void storage_sr_op_end(xapi_server *srv, const char *sr_ref, const char *opid);
/* OTHER_OPERATION_IN_PROGRESS when the SR has an operation in progress (0: none). */
int storage_sr_check_idle(const xapi_obj *sr, xapi_value *err);
/* The power state of a VM in lowercase, for VM_BAD_POWER_STATE. */
const char *storage_power_lower(const xapi_obj *vm);

/* PBD.plug with the lock held (no-op when plugged): attach, scan, sizes. */
int storage_pbd_plug_locked(xapi_server *srv, xapi_obj *pbd, xapi_value *err);
/* SR.create with the lock held: the SR, its PBD on host_ref, plugged. */
int storage_sr_create_locked(xapi_server *srv, const char *host_ref, const xapi_value *device_config,
                             const char *name_label, const char *name_description, const char *type,
                             const char *content_type, bool shared, const xapi_value *sm_config,
                             const xapi_value *other_config, const char *uuid_in, char ret_ref[XAPI_REF_LEN + 1],
                             xapi_value *err);
