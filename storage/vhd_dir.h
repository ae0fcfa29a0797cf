/* A directory of <vdi uuid>.vhd images (storage/drv_ext.c): what the ext,
 * nfs and file drivers share once their directory is there (plain, or
 * mounted).
 * Each is the storage_driver operation of the same name. */
#pragma once

#include "storage/driver.h"

int storage_vhd_dir_sr_stat(const storage_sr *sr, int64_t *ret_size, int64_t *ret_used, storage_err *e);
int storage_vhd_dir_sr_scan(const storage_sr *sr, size_t max, storage_vdi_info **ret, size_t *ret_n,
                            storage_err *e);
int storage_vhd_dir_vdi_create(const storage_sr *sr, const char *loc, int64_t size, storage_vdi_info *ret,
                               storage_err *e);
int storage_vhd_dir_vdi_delete(const storage_sr *sr, const char *loc, storage_err *e);
int storage_vhd_dir_vdi_resize(const storage_sr *sr, const char *loc, int64_t size, storage_vdi_info *ret,
                               storage_err *e);
int storage_vhd_dir_vdi_stat(const storage_sr *sr, const char *loc, storage_vdi_info *ret, storage_err *e);
char *storage_vhd_dir_vdi_path(const storage_sr *sr, const char *loc);
/* vdi_path for a driver whose new VDIs are raw (file): the .vhd when there is one, else the .raw (also for
 * a location with neither, which its vdi_create makes raw). */
char *storage_vhd_dir_vdi_path_raw(const storage_sr *sr, const char *loc);
/* path is a VHD directory's image, <dir>/<uuid>.vhd (a copy from it reads the chain). */
bool storage_vhd_dir_is_image(const char *path);
int storage_vhd_dir_vdi_import(const storage_sr *sr, const char *loc, const char *src_path, int64_t size,
                               storage_err *e);
/* A raw VDI (<uuid>.raw) instead of a VHD: storage_driver's vdi_create_raw and vdi_import_raw. */
int storage_vhd_dir_vdi_create_raw(const storage_sr *sr, const char *loc, int64_t size, storage_vdi_info *ret,
                                   storage_err *e);
int storage_vhd_dir_vdi_import_raw(const storage_sr *sr, const char *loc, const char *src_path, int64_t size,
                                   storage_err *e);
int storage_vhd_dir_vdi_publish(const storage_sr *sr, const char *loc, storage_vdi_info *ret, storage_err *e);
void storage_vhd_dir_vdi_discard(const storage_sr *sr, const char *loc);
int storage_vhd_dir_vdi_write(const storage_sr *sr, const char *loc, const char *src_path, int64_t size,
                              storage_err *e);
int storage_vhd_dir_vdi_chain(const storage_sr *sr, const char *loc, const char *base, const char *new_loc,
                              storage_err *e);
int storage_vhd_dir_vdi_set_hidden(const storage_sr *sr, const char *loc, bool hidden, storage_err *e);
int storage_vhd_dir_vdi_open_vhd(const storage_sr *sr, const char *loc, bool writable,
                                 struct storage_vhd_file **ret, storage_err *e);
int storage_vhd_dir_vdi_coalesce_leaf(const storage_sr *sr, const char *loc, int64_t max_bytes, storage_err *e);

/* The operations a directory of VHD and raw images has whichever format its new VDIs take. */
#define STORAGE_VHD_DIR_IMAGE_OPS                                                                                  \
    .caps = STORAGE_CAPS_DIRECTORY, .sr_stat = storage_vhd_dir_sr_stat, .sr_scan = storage_vhd_dir_sr_scan,       \
    .sr_cleanup = storage_remove_parts, .vdi_delete = storage_vhd_dir_vdi_delete,                                 \
    .vdi_resize = storage_vhd_dir_vdi_resize, .vdi_stat = storage_vhd_dir_vdi_stat,                               \
    .vdi_publish = storage_vhd_dir_vdi_publish, .vdi_discard = storage_vhd_dir_vdi_discard,                       \
    .vdi_write = storage_vhd_dir_vdi_write, .vdi_chain = storage_vhd_dir_vdi_chain,                               \
    .vdi_set_hidden = storage_vhd_dir_vdi_set_hidden, .vdi_open_vhd = storage_vhd_dir_vdi_open_vhd,               \
    .vdi_coalesce_leaf = storage_vhd_dir_vdi_coalesce_leaf

/* The operations (and STORAGE_CAPS_DIRECTORY) of a VHD directory driver, for its storage_driver initializer. */
#define STORAGE_VHD_DIR_OPS                                                                                        \
    .format = "vhd", STORAGE_VHD_DIR_IMAGE_OPS, .vdi_create = storage_vhd_dir_vdi_create,                          \
    .vdi_path = storage_vhd_dir_vdi_path, .vdi_import = storage_vhd_dir_vdi_import,                               \
    .vdi_create_raw = storage_vhd_dir_vdi_create_raw, .vdi_import_raw = storage_vhd_dir_vdi_import_raw
