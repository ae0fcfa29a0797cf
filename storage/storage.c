/* The storage module: registration and what happens at every start. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/log.h"
#include "storage/internal.h"
#include "storage/iscsi.h"
#include "xapi/error.h"

void storage_register(void) {
    xapi_register_handlers(storage_sr_handlers);
    xapi_register_handlers(storage_vdi_handlers);
    xapi_register_handlers(storage_vbd_handlers);
    xapi_register_hooks(XAPI_C_VDI, &storage_vdi_hooks);
    xapi_register_hooks(XAPI_C_PBD, &storage_pbd_hooks);
    xapi_register_hooks(XAPI_C_VBD, &storage_vbd_hooks);
    storage_transfer_register();
}

/* The local SR: an ext SR of this host at <state_dir>/sr/<its uuid> (device_config
 * "path"), or the file SR (device_config "location") stores made before ext had. */
static xapi_obj *find_local_sr(xapi_server *srv, const char *sr_dir) {
    xapi_store *st = srv->store;

    for (xapi_obj *p = xapi_store_first(st, storage_cls(XAPI_C_PBD)); p; p = xapi_store_next(p)) {
        xapi_obj *sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), p->fields[XAPI_F_PBD_SR].s);
        const char *type = sr ? sr->fields[XAPI_F_SR_type].s : "";
        const char *loc = storage_map_get(&p->fields[XAPI_F_PBD_device_config],
                                          strcmp(type, "ext") == 0 ? "path" : "location");
        size_t n = strlen(sr_dir);

        if (!sr || !loc || strcmp(p->fields[XAPI_F_PBD_host].s, srv->host_ref) != 0 ||
            (strcmp(type, "file") != 0 && strcmp(type, "ext") != 0))
            continue;
        if (strncmp(loc, sr_dir, n) == 0 && loc[n] == '/' && strcmp(loc + n + 1, sr->uuid) == 0)
            return sr;
    }
    return NULL;
}

static int create_local_sr(xapi_server *srv, const char *sr_dir, xapi_value *err) {
    xapi_store *st = srv->store;
    xapi_value dc = xapi_value_struct(), oc = xapi_value_struct(), sm = xapi_value_struct();
    char uuid[XAPI_UUID_LEN + 1], ref[XAPI_REF_LEN + 1], *path = NULL;
    xapi_obj *pool, *host;
    int rc;

    xapi_uuid_generate(uuid);
    if (asprintf(&path, "%s/%s", sr_dir, uuid) < 0)
        xapi_oom();
    xapi_struct_set(&dc, "path", xapi_value_string(path));
    xapi_struct_set(&oc, "i18n-key", xapi_value_string("local-storage"));
    xapi_struct_set(&oc, "i18n-original-value-name_label", xapi_value_string("Local storage"));
    rc = storage_sr_create_locked(srv, srv->host_ref, &dc, "Local storage", "", "ext", "user", false, &sm, &oc, uuid,
                                  ref, err);
    if (rc == 0) {
        pool = xapi_store_get_class(st, storage_cls(XAPI_C_pool), srv->pool_ref);
        host = xapi_store_get_class(st, storage_cls(XAPI_C_host), srv->host_ref);
        if (pool) {
            xapi_obj_set_string(st, pool, XAPI_F_pool_default_SR, ref);
            xapi_obj_set_string(st, pool, XAPI_F_pool_suspend_image_SR, ref);
            xapi_obj_set_string(st, pool, XAPI_F_pool_crash_dump_SR, ref);
        }
        if (host) {
            xapi_obj_set_string(st, host, XAPI_F_host_suspend_image_sr, ref);
            xapi_obj_set_string(st, host, XAPI_F_host_crash_dump_sr, ref);
        }
        log_info("storage: first start: local SR %s at %s", uuid, path);
    }
    free(path);
    xapi_value_free(&dc);
    xapi_value_free(&oc);
    xapi_value_free(&sm);
    return rc;
}

int storage_bootstrap(xapi_server *srv) {
    xapi_store *st = srv->store;
    xapi_value err = {0};
    char state[PATH_MAX], *sr_dir = NULL;
    xapi_obj *o;
    int rc = 0;

    if (!realpath(srv->config->state_dir, state))
        return agent_log_errno(LOG_ERR, errno, "storage: cannot resolve the state directory %s",
                               srv->config->state_dir);
    if (asprintf(&sr_dir, "%s/sr", state) < 0)
        xapi_oom();
    snprintf(storage_mount_root, sizeof storage_mount_root, "%s", srv->config->sr_mount_root);
    storage_io_timeout = (unsigned)srv->config->storage_io_timeout;
    snprintf(storage_iscsiadm, sizeof storage_iscsiadm, "%s", srv->config->iscsiadm);
    snprintf(storage_iscsi_sysfs_root, sizeof storage_iscsi_sysfs_root, "%s", srv->config->iscsi_sysfs_root);
    snprintf(storage_nfs_mount, sizeof storage_nfs_mount, "%s", srv->config->nfs_mount);
    snprintf(storage_nfs_umount, sizeof storage_nfs_umount, "%s", srv->config->nfs_umount);
    snprintf(storage_nfs_showmount, sizeof storage_nfs_showmount, "%s", srv->config->nfs_showmount);

    xapi_store_write_begin(st);
    /* Operations the previous run left in progress ended with it. */
    for (o = xapi_store_first(st, storage_cls(XAPI_C_VDI)); o; o = xapi_store_next(o))
        if (o->fields[XAPI_F_VDI_current_operations].n > 0)
            xapi_obj_set(st, o, XAPI_F_VDI_current_operations, xapi_value_struct());
    for (o = xapi_store_first(st, storage_cls(XAPI_C_SR)); o; o = xapi_store_next(o))
        if (o->fields[XAPI_F_SR_current_operations].n > 0)
            xapi_obj_set(st, o, XAPI_F_SR_current_operations, xapi_value_struct());

    /* Without it the daemon still serves (other SRs can be made): say so and go on. */
    if (!find_local_sr(srv, sr_dir) && create_local_sr(srv, sr_dir, &err) < 0)
        log_error("storage: cannot create the local SR under %s: %s %s", sr_dir,
                  err.n ? xapi_value_str(&err.items[0]) : "?", err.n > 2 ? xapi_value_str(&err.items[2]) : "");

    /* Every SR of this host is plugged again: the driver checks its storage, a scan syncs the records. */
    for (o = xapi_store_first(st, storage_cls(XAPI_C_PBD)); o; o = xapi_store_next(o)) {
        xapi_obj *sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), o->fields[XAPI_F_PBD_SR].s);
        storage_sr h = {0};

        if (!sr || strcmp(o->fields[XAPI_F_PBD_host].s, srv->host_ref) != 0)
            continue;
        if (storage_sr_handle(srv, sr, o, &h, &err) == 0) {
            if (h.drv->sr_cleanup)
                h.drv->sr_cleanup(&h);
            storage_sr_handle_free(&h);
        }
        xapi_obj_set_bool(st, o, XAPI_F_PBD_currently_attached, false);
        if (storage_pbd_plug_locked(srv, o, &err) < 0)
            log_warning("storage: SR %s (%s) could not be plugged: %s %s", sr->uuid, sr->fields[XAPI_F_SR_type].s,
                        err.n ? xapi_value_str(&err.items[0]) : "?", err.n > 2 ? xapi_value_str(&err.items[2]) : "");
        else if (storage_sr_handle(srv, sr, o, &h, &err) == 0) {
            storage_sr_sweep(srv, sr, &h); /* the scan made the records: what is left is no VDI's */
            storage_sr_handle_free(&h);
        }
    }
    for (o = xapi_store_first(st, storage_cls(XAPI_C_SR)); o; o = xapi_store_next(o))
        storage_sr_update_allowed_all(srv, o);
    if (xapi_store_write_end_durable(st) < 0)
        rc = -EIO;
    xapi_value_free(&err);
    free(sr_dir);
    return rc < 0 ? rc : 0;
}
