/* LVM volume groups and logical volumes through lvm2's commands (the lvm
 * SR, storage/drv_lvm.c): every command is run from an argv (never a
 * shell), with a time limit and bounded output, and its JSON report
 * (--reportformat json) parsed here, apart from the running, so that
 * recorded outputs can be tested without device-mapper. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "storage/command.h"
#include "storage/driver.h"


/* One row of a report: the values of the requested fields, in their order. */
typedef struct storage_lvm_row {
    char **values;
} storage_lvm_row;

/* Parses lvm2's `--reportformat json` output: the rows of the report
 * section `kind` ("vg", "lv", "pv"), each with the fields named by
 * `fields` (nfields of them; a missing field is an error: -EBADMSG).
 * At most max rows (-E2BIG beyond). */
int storage_lvm_report_parse(const char *json, const char *kind, const char *const *fields, size_t nfields,
                             size_t max, storage_lvm_row **ret_rows, size_t *ret_n);
void storage_lvm_rows_free(storage_lvm_row *rows, size_t n, size_t nfields);

/* A decimal byte count as lvm2 prints it with --units b --nosuffix ("62914560", or "62914560B"). */
int storage_lvm_parse_bytes(const char *s, int64_t *ret);

/* SR.probe's answer from `pvs -o pv_name,vg_name,vg_size` rows: one SR per
 * VG_XenStorage-<uuid>, with its devices (Devlist) and size, as sm's
 * lvutil.srlist_toxml (minidom's pretty print). Always 0. */
int storage_lvm_probe_xml(const storage_lvm_row *pvs, size_t n, char **ret_xml);

/* The lvm driver's calls on an attached SR (the VG sr->path names), shared
 * with lvmoiscsi (storage/drv_iscsi.c), whose SR is an lvm SR once its LUN is
 * logged in. */
int storage_lvm_sr_stat(const storage_sr *sr, int64_t *ret_size, int64_t *ret_used, storage_err *e);
int storage_lvm_sr_scan(const storage_sr *sr, size_t max, storage_vdi_info **ret, size_t *ret_n, storage_err *e);
void storage_lvm_sr_cleanup(const storage_sr *sr);
int storage_lvm_vdi_create(const storage_sr *sr, const char *location, int64_t size, storage_vdi_info *ret,
                           storage_err *e);
int storage_lvm_vdi_delete(const storage_sr *sr, const char *location, storage_err *e);
int storage_lvm_vdi_resize(const storage_sr *sr, const char *location, int64_t size, storage_vdi_info *ret,
                           storage_err *e);
int storage_lvm_vdi_stat(const storage_sr *sr, const char *location, storage_vdi_info *ret, storage_err *e);
char *storage_lvm_vdi_path(const storage_sr *sr, const char *location);
int storage_lvm_vdi_import(const storage_sr *sr, const char *location, const char *src_path, int64_t size,
                           storage_err *e);
int storage_lvm_vdi_publish(const storage_sr *sr, const char *location, storage_vdi_info *ret, storage_err *e);
void storage_lvm_vdi_discard(const storage_sr *sr, const char *location);
int storage_lvm_vdi_write(const storage_sr *sr, const char *location, const char *src_path, int64_t size,
                          storage_err *e);
/* ...as a driver's initializers, with what the SR can do. */
#define STORAGE_LVM_VOLUME_OPS                                                                                    \
    .caps = STORAGE_CAP_SR_CREATE | STORAGE_CAP_SR_DELETE | STORAGE_CAP_SR_SCAN | STORAGE_CAP_VDI_CREATE |      \
            STORAGE_CAP_VDI_DELETE | STORAGE_CAP_VDI_CLONE | STORAGE_CAP_VDI_SNAPSHOT | STORAGE_CAP_VDI_RESIZE | \
            STORAGE_CAP_VDI_WRITE,                                                                              \
    .format = "raw", .block = true, .sr_stat = storage_lvm_sr_stat, .sr_scan = storage_lvm_sr_scan,             \
    .sr_cleanup = storage_lvm_sr_cleanup, .vdi_create = storage_lvm_vdi_create,                                 \
    .vdi_delete = storage_lvm_vdi_delete, .vdi_resize = storage_lvm_vdi_resize, .vdi_stat = storage_lvm_vdi_stat, \
    .vdi_path = storage_lvm_vdi_path, .vdi_import = storage_lvm_vdi_import,                                     \
    .vdi_publish = storage_lvm_vdi_publish, .vdi_discard = storage_lvm_vdi_discard,                             \
    .vdi_write = storage_lvm_vdi_write
