/* Storage: SR drivers, SRs, PBDs, VDIs and their operations.
 * The "file" driver keeps each VDI as a sparse raw file <sr dir>/<vdi uuid>.raw. */
#pragma once

#include "xapi/api.h"

/* Registers storage handlers and class hooks (call before xapi_dispatch_init). */
void storage_register(void);
/* First start: a local ext SR ("Local storage", device_config path <state_dir>/sr/<uuid>)
 * with its PBD plugged on this host, made the pool's default SR (a store made by an earlier
 * version keeps its local file SR); every start: PBDs re-plugged. */
int storage_bootstrap(xapi_server *srv);

/* The path and format a VDI is attached from. Caller holds the store lock;
 * *ret_path / *ret_format malloc'd. -XAPI_EFAIL with *err set (VDI_MISSING, SR_NOT_ATTACHED...). */
int storage_vdi_attach_info(xapi_server *srv, const xapi_obj *vdi, char **ret_path, char **ret_format, xapi_value *err);

/* Clones (or copies, or snapshots) a VDI to a new VDI record + data, for VM.clone/copy/snapshot.
 * mode: STORAGE_CLONE (same SR, may share data), STORAGE_COPY (full copy, to sr_ref or, when
 * NULL, the source's SR; always writable), STORAGE_SNAPSHOT (point in time: is_a_snapshot,
 * snapshot_of, snapshot_time; read_only as the source, as xapi).
 * Takes the store lock itself (call without it); the data is copied without it, the source
 * marked in current_operations meanwhile (destroy/resize of it: VDI_IN_USE). */
typedef enum storage_clone_mode { STORAGE_CLONE, STORAGE_COPY, STORAGE_SNAPSHOT } storage_clone_mode;
int storage_vdi_clone(xapi_server *srv, const char *vdi_ref, storage_clone_mode mode, const char *sr_ref,
                      char ret_ref[XAPI_REF_LEN + 1], xapi_value *err);
/* Creates an empty VDI of size bytes on sr_ref (VM.provision). Takes the store lock itself. */
int storage_vdi_create(xapi_server *srv, const char *sr_ref, const char *name, int64_t size, const char *type,
                       char ret_ref[XAPI_REF_LEN + 1], xapi_value *err);

/* Destroys a VDI and its data, as VDI.destroy does (VDI_IN_USE while it is
 * in use). Takes the store lock itself. */
int storage_vdi_destroy(xapi_server *srv, const char *vdi_ref, xapi_value *err);

/* ---- also offered to the VM layer ---- */

/* Recomputes a VDI's allowed_operations; call after changing the
 * currently_attached of one of its VBDs (VBD.plug/unplug, VM start/shutdown).
 * Caller holds the write lock. */
void storage_vdi_update_allowed_operations(xapi_server *srv, xapi_obj *vdi);

/* The userdevice a VBD of `vm` gets: a decimal slot "0".."15" not used by
 * another VBD of the VM (self: the VBD being changed, or NULL), or for
 * "autodetect" the lowest free one. INVALID_DEVICE [userdevice] or
 * DEVICE_ALREADY_EXISTS [userdevice]. Caller holds the store lock. */
#define STORAGE_VBD_DEVICES 16
int storage_vbd_userdevice(xapi_server *srv, const xapi_obj *vm, const char *userdevice, const xapi_obj *self,
                           char ret[16], xapi_value *err);

/* VBD.insert/eject on a VM that is not halted must reach the guest: the VM
 * layer registers this; it is called without the store lock once the API
 * checks passed (vdi_ref NULL: eject), and storage updates the VBD record
 * (VDI, empty) when it returns 0. Without a handler, insert/eject on a running
 * VM fail with VM_BAD_POWER_STATE [vm, "halted", actual]. */
typedef int (*storage_media_fn)(xapi_server *srv, const char *vbd_ref, const char *vdi_ref, xapi_value *err);
void storage_set_media_handler(storage_media_fn fn);

/* Registers the HTTP handlers PUT /import_raw_vdi and GET /export_raw_vdi
 * (storage/vdi_transfer.c): a VDI's data in and out, raw or VHD. */
void storage_transfer_register(void);
