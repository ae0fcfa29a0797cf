/* nbdkit-xenapid-vhd-plugin: serves a VHD image, and the chain of parents
 * under it, as one NBD export, so a guest can boot from a VHD chain on Xen
 * without blktap (not packaged for Debian 12) and without QEMU's `vpc`
 * driver (which ignores parents). The libxl backend starts one nbdkit per
 * disk and attaches it through the kernel's NBD client as a `phy` disk.
 *
 *   nbdkit --unix SOCK nbdkit-xenapid-vhd-plugin.so file=/sr/LEAF.vhd [readonly=true]
 *
 * Reads go through the chain (storage_vhd_file_read); writes go to the leaf
 * only, allocating blocks and setting sector bitmaps (storage_vhd_file_write).
 * Parents are opened read-only, so no request can change them. A hidden leaf
 * (the read-only parent of a snapshot or clone) is refused unless the export
 * is read-only: writing it would change what its children read.
 *
 * One image handle is shared by every connection; requests run in parallel
 * (nbdkit's threads, and the kernel client's connections): reads together
 * (pread on the shared fds, the sector bitmaps cached in the handle once
 * read), a write alone (it changes the BAT, bitmaps and footer), under one
 * rwlock. A separate shared object (nbdkit/, not storage/): nbdkit loads it,
 * the daemon never links it. */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/vhd_file.h"

#define SECTOR 512u

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static char *image_path;
static bool image_readonly;
static storage_vhd_file *image;
static pthread_rwlock_t image_lock = PTHREAD_RWLOCK_INITIALIZER; /* reads shared, writes exclusive */

static void xvhd_unload(void) {
    storage_vhd_file_close(image);
    image = NULL;
    free(image_path);
    image_path = NULL;
}

static int xvhd_config(const char *key, const char *value) {
    int b;

    if (strcmp(key, "readonly") == 0) {
        if ((b = nbdkit_parse_bool(value)) < 0)
            return -1;
        image_readonly = b;
        return 0;
    }
    if (strcmp(key, "file") != 0) {
        nbdkit_error("unknown parameter '%s' (file=PATH, readonly=BOOL)", key);
        return -1;
    }
    free(image_path);
    image_path = nbdkit_realpath(value);
    return image_path ? 0 : -1;
}

static int xvhd_config_complete(void) {
    if (!image_path) {
        nbdkit_error("file=PATH is required");
        return -1;
    }
    return 0;
}

/* rc's reason in nbdkit's log: why, when -EINVAL comes with one, else %m. */
static void report(int rc, const char *what, const char *why) {
    if (rc == -EINVAL && why[0]) {
        nbdkit_error("%s: %s%s", image_path, what, why);
        return;
    }
    errno = -rc;
    nbdkit_error("%s: %s%m", image_path, what);
}

/* The image is opened once, before any connection: readonly=true opens
 * even the leaf read-only (nbdkit's -r alone only refuses the writes). */
static int xvhd_get_ready(void) {
    storage_vhd_file *f = NULL;
    char err[256] = "";
    bool writable = !image_readonly;
    int rc;

    rc = storage_vhd_file_open(&f, image_path, writable, err, sizeof err);
    if (rc < 0) {
        report(rc, "", err);
        goto out;
    }
    if (writable && f->info.hidden) {
        nbdkit_error("%s is hidden (the read-only parent of a chain): serve it with readonly=true", image_path);
        rc = -EROFS;
        goto out;
    }
    rc = storage_vhd_file_open_chain(f, false);
    if (rc < 0) {
        report(rc, "parent chain: ", f->error);
        goto out;
    }
    storage_vhd_file_cache_bitmaps(f);
    image = f;
    f = NULL;
out:
    storage_vhd_file_close(f);
    return rc < 0 ? -1 : 0;
}

static void *xvhd_open(int readonly) {
    return image; /* any non-NULL handle: the state is the shared image */
}

static int64_t xvhd_get_size(void *handle) {
    return (int64_t)storage_vhd_file_virtual_size(image);
}

static int xvhd_can_write(void *handle) {
    return image->writable;
}

static int xvhd_can_flush(void *handle) {
    return 1;
}

static int xvhd_can_fua(void *handle) {
    return NBDKIT_FUA_EMULATE;
}

static int xvhd_can_multi_conn(void *handle) {
    return 1; /* one shared image: a read after a write's reply sees it, on any connection */
}

static int xvhd_block_size(void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum) {
    *minimum = 1;
    *preferred = 4096;
    *maximum = 0xffffffff;
    return 0;
}

static int fail(int rc) {
    nbdkit_set_error(-rc);
    report(rc, "", "");
    return -1;
}

static int xvhd_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags) {
    int rc;

    pthread_rwlock_rdlock(&image_lock);
    rc = storage_vhd_file_read(image, offset, buf, count);
    pthread_rwlock_unlock(&image_lock);
    return rc < 0 ? fail(rc) : 0;
}

/* A partial sector is read through the chain, patched and written whole, so
 * the bytes around it keep what the chain had there. */
static int write_partial(uint64_t offset, const uint8_t *buf, uint32_t count) {
    uint8_t sec[SECTOR];
    uint64_t start = offset - offset % SECTOR;
    int rc;

    rc = storage_vhd_file_read(image, start, sec, SECTOR);
    if (rc < 0)
        return rc;
    memcpy(sec + (offset - start), buf, count);
    return storage_vhd_file_write(image, start, sec, SECTOR);
}

/* Under image_lock held for writing: whole sectors straight to the image, partial ones merged. */
static int write_locked(const uint8_t *p, uint32_t count, uint64_t offset) {
    int rc;

    if (offset % SECTOR) {
        uint32_t k = SECTOR - (uint32_t)(offset % SECTOR);
        if (k > count)
            k = count;
        if ((rc = write_partial(offset, p, k)) < 0)
            return rc;
        p += k;
        offset += k;
        count -= k;
    }
    if (count >= SECTOR) {
        uint32_t whole = count - count % SECTOR;
        if ((rc = storage_vhd_file_write(image, offset, p, whole)) < 0)
            return rc;
        p += whole;
        offset += whole;
        count -= whole;
    }
    if (count > 0 && (rc = write_partial(offset, p, count)) < 0)
        return rc;
    return 0;
}

static int xvhd_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset, uint32_t flags) {
    int rc;

    pthread_rwlock_wrlock(&image_lock);
    rc = write_locked(buf, count, offset);
    pthread_rwlock_unlock(&image_lock);
    return rc < 0 ? fail(rc) : 0;
}

static int xvhd_flush(void *handle, uint32_t flags) {
    if (fsync(image->fd) < 0)
        return fail(-errno);
    return 0;
}

static struct nbdkit_plugin plugin = {
    .name = "xenapid-vhd",
    .longname = "xenapid VHD chain plugin",
    .description = "serves a VHD image through its chain of parents, writing to the leaf only",
    .config_help = "file=PATH      the leaf VHD (its parents are found through its locators)\n"
                   "readonly=BOOL  open the leaf read-only too (default false)",
    .magic_config_key = "file",
    .unload = xvhd_unload,
    .config = xvhd_config,
    .config_complete = xvhd_config_complete,
    .get_ready = xvhd_get_ready,
    .open = xvhd_open,
    .get_size = xvhd_get_size,
    .can_write = xvhd_can_write,
    .can_flush = xvhd_can_flush,
    .can_fua = xvhd_can_fua,
    .can_multi_conn = xvhd_can_multi_conn,
    .block_size = xvhd_block_size,
    .pread = xvhd_pread,
    .pwrite = xvhd_pwrite,
    .flush = xvhd_flush,
};

/* The entry point the macro defines, declared for -Wmissing-prototypes. */
NBDKIT_DLL_PUBLIC struct nbdkit_plugin *plugin_init(void);
NBDKIT_REGISTER_PLUGIN(plugin)
