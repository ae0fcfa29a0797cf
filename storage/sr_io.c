/* An SR's driver I/O done outside the store lock (storage/internal.h:
 * storage_sr_io_run): create, attach, scan, sizes, detach, delete and probe,
 * and the VDI calls,
 * in one time-limited job (storage/io.h) on a copy of the SR's handle, so
 * that the caller can drop the lock, wait, and publish what it learnt. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "storage/internal.h"
#include "storage/io.h"

static char *dup_or_null(const char *s) {
    return s ? xapi_strdup(s) : NULL;
}

void storage_sr_handle_copy(const storage_sr *h, storage_sr *ret) {
    *ret = *h;
    ret->path = dup_or_null(h->path);
    ret->device = dup_or_null(h->device);
    ret->options = dup_or_null(h->options);
    ret->config = xapi_value_copy(&h->config); /* the PBD's device_config (iscsi's target, CHAP) */
}

void storage_sr_io_free(storage_sr_io *io) {
    if (!io)
        return;
    storage_sr_handle_free(&io->h);
    for (size_t i = 0; i < io->nloc; i++)
        free(io->locations[i]);
    free(io->locations);
    storage_vdi_infos_free(io->infos, io->n);
    free(io);
}

static void sr_io_free(void *ctx) {
    storage_sr_io_free(ctx);
}

static int sr_io_steps(void *ctx, storage_err *e) {
    storage_sr_io *io = ctx;
    const storage_driver *drv = io->h.drv;
    int rc;

    if ((io->steps & STORAGE_SR_IO_CREATE) && drv->sr_create && (rc = drv->sr_create(&io->h, e)) < 0)
        return rc;
    if ((io->steps & STORAGE_SR_IO_ATTACH) && drv->sr_attach && (rc = drv->sr_attach(&io->h, e)) < 0)
        return rc;
    if ((io->steps & STORAGE_SR_IO_SCAN) && drv->sr_scan && (drv->caps & STORAGE_CAP_SR_SCAN)) {
        io->scan_rc = drv->sr_scan(&io->h, STORAGE_MAX_SCAN, &io->infos, &io->n, &io->scan_e);
        io->scanned = io->scan_rc == 0;
        if (!io->scanned) {
            io->infos = NULL;
            io->n = 0;
        }
    }
    if ((io->steps & STORAGE_SR_IO_STAT) && drv->sr_stat)
        io->have_stat = drv->sr_stat(&io->h, &io->size, &io->used, &(storage_err){0}) == 0;
    if ((io->steps & STORAGE_SR_IO_DETACH) && drv->sr_detach && (rc = drv->sr_detach(&io->h, e)) < 0)
        return rc;
    if ((io->steps & STORAGE_SR_IO_DELETE) && drv->sr_delete &&
        (rc = drv->sr_delete(&io->h, io->locations, io->nloc, e)) < 0)
        return rc;
    return 0;
}

int storage_sr_io_run(const storage_sr *h, unsigned steps, char *const *locations, size_t nloc, const char *what,
                      storage_sr_io **ret, storage_err *e) {
    storage_sr_io *io = xapi_calloc(1, sizeof *io);
    int rc;

    storage_sr_handle_copy(h, &io->h);
    io->steps = steps;
    io->locations = xapi_calloc(nloc + 1, sizeof *io->locations);
    for (size_t i = 0; i < nloc; i++)
        io->locations[io->nloc++] = xapi_strdup(locations[i]);
    rc = storage_io_run(h->uuid, what, sr_io_steps, io, sr_io_free, e);
    if (rc == -ETIME)
        return rc; /* io is the stuck thread's now */
    if (rc < 0) {
        storage_sr_io_free(io);
        return rc;
    }
    *ret = io;
    return 0;
}

/* ---- SR.probe --------------------------------------------------------------------- */

typedef struct probe_job {
    const storage_driver *drv;
    xapi_value device_config, sm_config;
    bool have_sm;
    char *xml;
} probe_job;

static void probe_free(void *ctx) {
    probe_job *p = ctx;

    xapi_value_free(&p->device_config);
    xapi_value_free(&p->sm_config);
    free(p->xml);
    free(p);
}

static int probe_run(void *ctx, storage_err *e) {
    probe_job *p = ctx;

    return p->drv->sr_probe(&p->device_config, p->have_sm ? &p->sm_config : NULL, &p->xml, e);
}

int storage_sr_probe_io(const storage_driver *drv, const xapi_value *device_config, const xapi_value *sm_config,
                        char **ret_xml, storage_err *e) {
    probe_job *p = xapi_calloc(1, sizeof *p);
    int rc;

    p->drv = drv;
    p->device_config = xapi_value_copy(device_config);
    p->have_sm = sm_config != NULL;
    if (sm_config)
        p->sm_config = xapi_value_copy(sm_config);
    rc = storage_io_run(NULL, "SR.probe", probe_run, p, probe_free, e);
    if (rc == -ETIME)
        return rc;
    if (rc == 0) {
        *ret_xml = p->xml;
        p->xml = NULL;
    }
    probe_free(p);
    return rc;
}

/* ---- one driver call on a VDI, bounded ------------------------------------------------- */

typedef struct vdi_job {
    storage_sr h;
    enum {
        VDI_JOB_CREATE,
        VDI_JOB_CREATE_RAW,
        VDI_JOB_CREATE_VHD,
        VDI_JOB_DELETE,
        VDI_JOB_RESIZE,
        VDI_JOB_STAT,
        VDI_JOB_HIDE,
        VDI_JOB_COALESCE,
        VDI_JOB_PATH,
        VDI_JOB_PUBLISH,
    } kind;
    char *location;
    int64_t size;
    storage_vdi_info info;
    char *path; /* VDI_JOB_PATH's result */
    void (*late)(void *arg, int rc); /* see storage_io_vdi_delete_late */
    void *late_arg;
} vdi_job;

static void vdi_job_free(void *ctx) {
    vdi_job *j = ctx;

    storage_sr_handle_free(&j->h);
    free(j->location);
    storage_vdi_info_free(&j->info);
    free(j->path);
    free(j->late_arg);
    free(j);
}

static void vdi_job_late(void *ctx, int rc) {
    vdi_job *j = ctx;

    if (j->late)
        j->late(j->late_arg, rc);
}

static int vdi_job_run(void *ctx, storage_err *e) {
    vdi_job *j = ctx;
    const storage_driver *drv = j->h.drv;
    int rc;

    switch (j->kind) {
    case VDI_JOB_CREATE:
        return drv->vdi_create(&j->h, j->location, j->size, &j->info, e);
    case VDI_JOB_CREATE_RAW:
        return drv->vdi_create_raw(&j->h, j->location, j->size, &j->info, e);
    case VDI_JOB_CREATE_VHD:
        return drv->vdi_create_vhd(&j->h, j->location, j->size, &j->info, e);
    case VDI_JOB_DELETE:
        return drv->vdi_delete(&j->h, j->location, e);
    case VDI_JOB_RESIZE:
        return drv->vdi_resize(&j->h, j->location, j->size, &j->info, e);
    case VDI_JOB_STAT:
        return drv->vdi_stat(&j->h, j->location, &j->info, e);
    case VDI_JOB_HIDE:
        return drv->vdi_set_hidden(&j->h, j->location, true, e);
    case VDI_JOB_COALESCE: /* then the leaf as it is now; the chain changed even if that fails (info empty) */
        rc = drv->vdi_coalesce_leaf(&j->h, j->location, j->size, e);
        if (rc == 0 && drv->vdi_stat(&j->h, j->location, &j->info, &(storage_err){0}) < 0) {
            storage_vdi_info_free(&j->info);
            memset(&j->info, 0, sizeof j->info);
        }
        return rc;
    case VDI_JOB_PUBLISH:
        return drv->vdi_publish(&j->h, j->location, &j->info, e);
    case VDI_JOB_PATH: /* not a failure of the storage: e stays empty */
        j->path = drv->vdi_path(&j->h, j->location);
        return j->path ? storage_check_vdi(drv, j->path) : -ENOENT;
    }
    return -EINVAL;
}

/* The job's info into *ret, its path into *ret_path (either may be NULL). */
static int run_vdi_job_late(const storage_sr *h, int kind, const char *what, const char *location, int64_t size,
                            storage_vdi_info *ret, char **ret_path, void (*late)(void *arg, int rc), void *late_arg,
                            storage_err *e) {
    vdi_job *j = xapi_calloc(1, sizeof *j);
    int rc;

    storage_sr_handle_copy(h, &j->h);
    j->kind = kind;
    j->location = xapi_strdup(location);
    j->size = size;
    j->late = late;
    j->late_arg = late_arg;
    rc = storage_io_run_late(h->uuid, what, vdi_job_run, j, vdi_job_free, vdi_job_late, e);
    if (rc == -ETIME)
        return rc;
    if (rc == 0 && ret) {
        *ret = j->info;
        memset(&j->info, 0, sizeof j->info);
    }
    if (rc == 0 && ret_path) {
        *ret_path = j->path;
        j->path = NULL;
    }
    vdi_job_free(j);
    return rc;
}

static int run_vdi_job(const storage_sr *h, int kind, const char *what, const char *location, int64_t size,
                       storage_vdi_info *ret, char **ret_path, storage_err *e) {
    return run_vdi_job_late(h, kind, what, location, size, ret, ret_path, NULL, NULL, e);
}

int storage_io_vdi_delete_late(const storage_sr *h, const char *location, bool hide, void (*late)(void *arg, int rc),
                               void *late_arg, storage_err *e) {
    return run_vdi_job_late(h, hide ? VDI_JOB_HIDE : VDI_JOB_DELETE, "VDI.destroy", location, 0, NULL, NULL, late,
                            late_arg, e);
}

int storage_io_vdi_create(const storage_sr *h, const char *location, int64_t size, storage_vdi_info *ret,
                          storage_err *e) {
    return run_vdi_job(h, VDI_JOB_CREATE, "VDI.create", location, size, ret, NULL, e);
}

int storage_io_vdi_create_raw(const storage_sr *h, const char *location, int64_t size, storage_vdi_info *ret,
                              storage_err *e) {
    return run_vdi_job(h, VDI_JOB_CREATE_RAW, "VDI.create", location, size, ret, NULL, e);
}

int storage_io_vdi_create_vhd(const storage_sr *h, const char *location, int64_t size, storage_vdi_info *ret,
                              storage_err *e) {
    return run_vdi_job(h, VDI_JOB_CREATE_VHD, "VDI.create", location, size, ret, NULL, e);
}

int storage_io_vdi_delete(const storage_sr *h, const char *location, storage_err *e) {
    return run_vdi_job(h, VDI_JOB_DELETE, "VDI.destroy", location, 0, NULL, NULL, e);
}

int storage_io_vdi_resize(const storage_sr *h, const char *location, int64_t size, storage_vdi_info *ret,
                          storage_err *e) {
    return run_vdi_job(h, VDI_JOB_RESIZE, "VDI.resize", location, size, ret, NULL, e);
}

int storage_io_vdi_stat(const storage_sr *h, const char *what, const char *location, storage_vdi_info *ret,
                        storage_err *e) {
    return run_vdi_job(h, VDI_JOB_STAT, what, location, 0, ret, NULL, e);
}

int storage_io_vdi_path(const storage_sr *h, const char *location, char **ret_path, storage_err *e) {
    return storage_io_vdi_find(h, "VDI attach", location, ret_path, e);
}

int storage_io_vdi_find(const storage_sr *h, const char *what, const char *location, char **ret_path,
                        storage_err *e) {
    return run_vdi_job(h, VDI_JOB_PATH, what, location, 0, NULL, ret_path, e);
}

int storage_io_vdi_publish(const storage_sr *h, const char *what, const char *location, storage_vdi_info *ret,
                           storage_err *e) {
    return run_vdi_job(h, VDI_JOB_PUBLISH, what, location, 0, ret, NULL, e);
}

int storage_io_vdi_hide(const storage_sr *h, const char *location, storage_err *e) {
    return run_vdi_job(h, VDI_JOB_HIDE, "VDI.destroy", location, 0, NULL, NULL, e);
}

int storage_io_vdi_coalesce_leaf(const storage_sr *h, const char *location, int64_t max_bytes,
                                 storage_vdi_info *ret, storage_err *e) {
    return run_vdi_job(h, VDI_JOB_COALESCE, "leaf coalesce", location, max_bytes, ret, NULL, e);
}

/* ---- the SR's sizes after an operation --------------------------------------------------- */

void storage_sr_sizes_refresh(xapi_server *srv, const char *sr_ref) {
    xapi_store *st = srv->store;
    storage_sr h = {0};
    storage_sr_io *io = NULL;
    storage_err e = {0};
    xapi_value ignored = {0};
    xapi_obj *sr;
    int rc;

    xapi_store_rdlock(st);
    sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), sr_ref);
    rc = sr ? storage_sr_plugged(srv, sr, &h, &ignored) : -ENOENT;
    xapi_store_rdunlock(st);
    if (rc < 0 || !h.drv->sr_stat)
        goto out;
    /* Skipped at once while the SR has a stuck job: the sizes stay as they were. */
    if (storage_sr_io_run(&h, STORAGE_SR_IO_STAT, NULL, 0, "SR sizes", &io, &e) < 0) {
        log_warning("storage: SR %s: sizes not updated: %s", h.uuid, e.text);
        goto out;
    }
    xapi_store_write_begin(st);
    sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), sr_ref);
    if (sr && storage_sr_attached(srv, sr))
        storage_sr_set_sizes(srv, sr, io);
    xapi_store_write_end(st);
out:
    storage_sr_io_free(io);
    storage_sr_handle_free(&h);
    xapi_value_free(&ignored);
}
