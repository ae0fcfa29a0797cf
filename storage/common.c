/* What the storage layer's files share: SR handles, sizes, allowed and
 * current operations, VDI records and the scan that reconciles them with
 * what the driver finds. Every function here runs with the store's write
 * lock held. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "storage/internal.h"
#include "xapi/error.h"

const char *storage_map_get(const xapi_value *map, const char *key) {
    const xapi_value *v = map && map->kind == XAPI_V_STRUCT ? xapi_struct_get(map, key) : NULL;
    return v && v->kind == XAPI_V_STRING ? v->s : NULL;
}

bool storage_is_null_ref(const char *ref) {
    return !ref || !*ref || strcmp(ref, XAPI_NULL_REF) == 0;
}

bool storage_uuid_valid(const char *s) {
    if (strlen(s) != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        char ch = s[i];
        if (dash ? ch != '-' : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
            return false;
    }
    return true;
}

const char *storage_power_lower(const xapi_obj *vm) {
    const char *p = vm->fields[XAPI_F_VM_power_state].s;

    if (strcmp(p, "Running") == 0)
        return "running";
    if (strcmp(p, "Paused") == 0)
        return "paused";
    if (strcmp(p, "Suspended") == 0)
        return "suspended";
    return "halted";
}

int storage_backend_fail(xapi_value *err, const storage_err *e) {
    char code[48];

    snprintf(code, sizeof code, "SR_BACKEND_FAILURE_%d", e->code ? e->code : 1);
    return xapi_fail(err, code, "", e->text, e->out, NULL);
}

xapi_obj *storage_my_pbd(xapi_server *srv, const xapi_obj *sr) {
    const xapi_value *pbds = &sr->fields[XAPI_F_SR_PBDs];

    for (uint32_t i = 0; i < pbds->n; i++) {
        xapi_obj *p = xapi_store_get_class(srv->store, storage_cls(XAPI_C_PBD), pbds->items[i].s);
        if (p && strcmp(p->fields[XAPI_F_PBD_host].s, srv->host_ref) == 0)
            return p;
    }
    return NULL;
}

bool storage_sr_attached(xapi_server *srv, const xapi_obj *sr) {
    xapi_obj *p = storage_my_pbd(srv, sr);
    return p && p->fields[XAPI_F_PBD_currently_attached].b;
}

bool storage_any_set(xapi_server *srv, const xapi_value *refs, int cls_id, int field) {
    for (uint32_t i = 0; i < refs->n; i++) {
        xapi_obj *o = xapi_store_get_class(srv->store, storage_cls(cls_id), refs->items[i].s);
        if (o && o->fields[field].b)
            return true;
    }
    return false;
}

char storage_mount_root[1024] = "/var/run/sr-mount";

int storage_sr_config(const storage_driver *drv, const xapi_value *device_config, const xapi_value *sm_config,
                      const char *sr_uuid, storage_sr *ret, storage_err *e) {
    int rc;

    ret->drv = drv;
    ret->device = NULL;
    ret->options = NULL;
    ret->nosubdir = false;
    ret->config = (xapi_value){0};
    if (drv->sr_config_at)
        rc = drv->sr_config_at(device_config, sm_config, sr_uuid, storage_mount_root, ret, e);
    else
        rc = drv->sr_config(device_config, &ret->path, e);
    if (rc == 0)
        ret->config = xapi_value_copy(device_config);
    return rc;
}

int storage_sr_handle(xapi_server *srv, const xapi_obj *sr, const xapi_obj *pbd, storage_sr *ret, xapi_value *err) {
    const storage_driver *drv = storage_driver_find(sr->fields[XAPI_F_SR_type].s);
    storage_err e = {0};
    storage_sr h = {0};
    xapi_value empty = xapi_value_struct();
    int rc;

    (void)srv;
    if (!drv)
        return xapi_fail(err, "SR_UNKNOWN_DRIVER", sr->fields[XAPI_F_SR_type].s, NULL);
    rc = storage_sr_config(drv, pbd ? &pbd->fields[XAPI_F_PBD_device_config] : &empty,
                           &sr->fields[XAPI_F_SR_sm_config], sr->uuid, &h, &e);
    xapi_value_free(&empty);
    if (rc < 0)
        return storage_backend_fail(err, &e);
    snprintf(h.uuid, sizeof h.uuid, "%s", sr->uuid);
    *ret = h;
    return 0;
}

void storage_sr_handle_free(storage_sr *h) {
    if (h) {
        free(h->path);
        free(h->device);
        free(h->options);
        xapi_value_free(&h->config);
        h->path = NULL;
        h->device = NULL;
        h->options = NULL;
    }
}

int storage_sr_plugged(xapi_server *srv, const xapi_obj *sr, storage_sr *ret, xapi_value *err) {
    xapi_obj *pbd = storage_my_pbd(srv, sr);

    const xapi_value *cur = &sr->fields[XAPI_F_SR_current_operations];

    if (!pbd || !pbd->fields[XAPI_F_PBD_currently_attached].b)
        return xapi_fail(err, "SR_HAS_NO_PBDS", sr->ref, NULL);
    /* An SR being unplugged or destroyed (without the lock) takes no new VDI work. */
    for (uint32_t i = 0; cur->kind == XAPI_V_STRUCT && i < cur->n; i++) {
        const char *op = xapi_value_str(&cur->members[i].value);
        if (strcmp(op, "unplug") == 0 || strcmp(op, "destroy") == 0)
            return xapi_fail(err, "OTHER_OPERATION_IN_PROGRESS", "SR", sr->ref, op, cur->members[i].name, NULL);
    }
    return storage_sr_handle(srv, sr, pbd, ret, err);
}

int storage_sr_cap(const xapi_obj *sr, const storage_driver *drv, unsigned cap, xapi_value *err) {
    if (!drv || !(drv->caps & cap))
        return xapi_fail(err, "SR_OPERATION_NOT_SUPPORTED", sr->ref, NULL);
    return 0;
}

void storage_sr_set_sizes(xapi_server *srv, xapi_obj *sr, const storage_sr_io *io) {
    xapi_store *st = srv->store;
    const xapi_value *vdis = &sr->fields[XAPI_F_SR_VDIs];
    int64_t alloc = 0;

    for (uint32_t i = 0; i < vdis->n; i++) {
        xapi_obj *v = xapi_store_get_class(st, storage_cls(XAPI_C_VDI), vdis->items[i].s);
        /* a hidden base copy is no disk of its own: its data is in the SR's physical use */
        if (v && !v->deleted && v->fields[XAPI_F_VDI_managed].b)
            alloc += v->fields[XAPI_F_VDI_virtual_size].i;
    }
    xapi_obj_set_int(st, sr, XAPI_F_SR_virtual_allocation, alloc);
    if (io && io->have_stat) {
        xapi_obj_set_int(st, sr, XAPI_F_SR_physical_size, io->size);
        xapi_obj_set_int(st, sr, XAPI_F_SR_physical_utilisation, io->used);
    }
}

void storage_sr_refresh(xapi_server *srv, xapi_obj *sr, const xapi_obj *leaving) {
    int64_t size;

    storage_sr_set_sizes(srv, sr, NULL);
    if (leaving && !leaving->deleted && leaving->fields[XAPI_F_VDI_managed].b) {
        size = sr->fields[XAPI_F_SR_virtual_allocation].i - leaving->fields[XAPI_F_VDI_virtual_size].i;
        xapi_obj_set_int(srv->store, sr, XAPI_F_SR_virtual_allocation, size);
    }
}

/* ---- SR operations in progress ------------------------------------------------------ */

int storage_sr_check_idle(const xapi_obj *sr, xapi_value *err) {
    const xapi_value *cur = &sr->fields[XAPI_F_SR_current_operations];

    if (cur->kind == XAPI_V_STRUCT && cur->n > 0)
        return xapi_fail(err, "OTHER_OPERATION_IN_PROGRESS", "SR", sr->ref, xapi_value_str(&cur->members[0].value),
                         cur->members[0].name, NULL);
    return 0;
}

int storage_sr_op_begin(xapi_server *srv, xapi_obj *sr, const char *opid, const char *op, xapi_value *err) {
    xapi_value cur;
    int rc = storage_sr_check_idle(sr, err);

    if (rc < 0)
        return rc;
    cur = xapi_value_copy(&sr->fields[XAPI_F_SR_current_operations]);
    if (cur.kind != XAPI_V_STRUCT) {
        xapi_value_free(&cur);
        cur = xapi_value_struct();
    }
    xapi_struct_set(&cur, opid, xapi_value_string(op));
    xapi_obj_set(srv->store, sr, XAPI_F_SR_current_operations, cur);
    storage_sr_update_allowed(srv, sr);
    return 0;
}

void storage_sr_op_end(xapi_server *srv, const char *sr_ref, const char *opid) {
    xapi_obj *sr = xapi_store_get_class(srv->store, storage_cls(XAPI_C_SR), sr_ref);
    xapi_value cur;

    if (!sr)
        return;
    cur = xapi_value_copy(&sr->fields[XAPI_F_SR_current_operations]);
    if (cur.kind == XAPI_V_STRUCT)
        xapi_struct_remove(&cur, opid);
    xapi_obj_set(srv->store, sr, XAPI_F_SR_current_operations, cur);
    storage_sr_update_allowed(srv, sr);
}

static void add_op(xapi_value *set, const char *op) {
    xapi_array_append(set, xapi_value_string(op));
}

void storage_sr_update_allowed(xapi_server *srv, xapi_obj *sr) {
    const storage_driver *drv = storage_driver_find(sr->fields[XAPI_F_SR_type].s);
    unsigned caps = drv ? drv->caps : 0;
    xapi_value ops = xapi_value_array();
    const xapi_value *pbds = &sr->fields[XAPI_F_SR_PBDs];
    bool any_attached = storage_any_set(srv, pbds, XAPI_C_PBD, XAPI_F_PBD_currently_attached);
    bool managed_vdis = storage_any_set(srv, &sr->fields[XAPI_F_SR_VDIs], XAPI_C_VDI, XAPI_F_VDI_managed);

    const xapi_value *cur = &sr->fields[XAPI_F_SR_current_operations];
    bool busy = cur->kind == XAPI_V_STRUCT && cur->n > 0;

    if (busy) {
        /* An SR operation in progress (its I/O runs without the lock): none of
         * the SR's own may start; VDI operations wait for the lock as usual. */
    } else if (drv && storage_sr_attached(srv, sr)) {
        if (caps & STORAGE_CAP_SR_SCAN)
            add_op(&ops, "scan");
        add_op(&ops, "update");
        add_op(&ops, "unplug");
        if (caps & STORAGE_CAP_VDI_CREATE) {
            add_op(&ops, "vdi_create");
            add_op(&ops, "vdi_copy");
        }
        if (caps & STORAGE_CAP_VDI_INTRODUCE)
            add_op(&ops, "vdi_introduce");
        if (caps & STORAGE_CAP_VDI_DELETE)
            add_op(&ops, "vdi_destroy");
        if (caps & STORAGE_CAP_VDI_RESIZE)
            add_op(&ops, "vdi_resize");
        if (caps & STORAGE_CAP_VDI_RESIZE_ONLINE)
            add_op(&ops, "vdi_resize_online");
        if (caps & STORAGE_CAP_VDI_CLONE)
            add_op(&ops, "vdi_clone");
        if (caps & STORAGE_CAP_VDI_SNAPSHOT)
            add_op(&ops, "vdi_snapshot");
        add_op(&ops, "vdi_forget");
        add_op(&ops, "vdi_update");
    } else if (drv)
        add_op(&ops, "plug");
    add_op(&ops, "pbd_create");
    add_op(&ops, "pbd_destroy");
    if (!any_attached && !busy) {
        add_op(&ops, "forget");
        if (pbds->n > 0 && !managed_vdis && (caps & STORAGE_CAP_SR_DELETE))
            add_op(&ops, "destroy");
    }
    xapi_obj_set(srv->store, sr, XAPI_F_SR_allowed_operations, ops);
}

void storage_sr_update_allowed_all(xapi_server *srv, xapi_obj *sr) {
    const xapi_value *vdis = &sr->fields[XAPI_F_SR_VDIs];

    storage_sr_update_allowed(srv, sr);
    for (uint32_t i = 0; i < vdis->n; i++) {
        xapi_obj *v = xapi_store_get_class(srv->store, storage_cls(XAPI_C_VDI), vdis->items[i].s);
        if (v)
            storage_vdi_update_allowed_operations(srv, v);
    }
}

/* ---- VDI operations ------------------------------------------------------------ */

void storage_op_id(const xapi_call *c, char ret[XAPI_REF_LEN + 1]) {
    if (c && c->task && *c->task)
        snprintf(ret, XAPI_REF_LEN + 1, "%s", c->task);
    else
        xapi_ref_generate(ret);
}

/* Operations that only read the VDI's data: they may overlap each other. */
static bool reads_data(const char *op) {
    return strcmp(op, "clone") == 0 || strcmp(op, "copy") == 0 || strcmp(op, "snapshot") == 0;
}

int storage_vdi_check_no_writer(const xapi_obj *vdi, xapi_value *err) {
    const xapi_value *cur = &vdi->fields[XAPI_F_VDI_current_operations];

    for (uint32_t i = 0; i < cur->n; i++) {
        const char *op = xapi_value_str(&cur->members[i].value);
        if (!reads_data(op))
            return xapi_fail(err, "OTHER_OPERATION_IN_PROGRESS", "VDI", vdi->ref, op, cur->members[i].name, NULL);
    }
    return 0;
}

static bool live_ok(const char *op) {
    return strcmp(op, "snapshot") == 0 || strcmp(op, "clone") == 0 || strcmp(op, "resize_online") == 0;
}

static unsigned cap_of(const char *op) {
    static const struct {
        const char *op;
        unsigned cap;
    } map[] = {
        {"clone", STORAGE_CAP_VDI_CLONE},
        {"snapshot", STORAGE_CAP_VDI_SNAPSHOT},
        {"resize", STORAGE_CAP_VDI_RESIZE},
        {"resize_online", STORAGE_CAP_VDI_RESIZE_ONLINE},
        {"destroy", STORAGE_CAP_VDI_DELETE},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].op, op) == 0)
            return map[i].cap;
    return 0;
}

/* The VBD's disk is being attached though the VBD does not say so yet: a
 * VBD.plug in progress (its current_operations), or its VM being started,
 * resumed or rebooted (from the VM's checks to its record of the disks). */
static bool being_attached(xapi_server *srv, const xapi_obj *vbd) {
    static const char *const attaching[] = {"start", "start_on", "resume", "resume_on", "hard_reboot",
                                            "clean_reboot"};
    const xapi_obj *vm;
    const xapi_value *cur;

    if (vbd->fields[XAPI_F_VBD_current_operations].n > 0)
        return true;
    vm = xapi_store_get_class(srv->store, storage_cls(XAPI_C_VM), vbd->fields[XAPI_F_VBD_VM].s);
    cur = vm ? &vm->fields[XAPI_F_VM_current_operations] : NULL;
    for (uint32_t i = 0; cur && i < cur->n; i++)
        for (size_t k = 0; k < sizeof attaching / sizeof attaching[0]; k++)
            if (strcmp(xapi_value_str(&cur->members[i].value), attaching[k]) == 0)
                return true;
    return false;
}

int storage_vdi_check_op(xapi_server *srv, xapi_obj *vdi, const char *op, xapi_value *err) {
    xapi_store *st = srv->store;
    const xapi_value *cur = &vdi->fields[XAPI_F_VDI_current_operations];
    const xapi_value *vbds = &vdi->fields[XAPI_F_VDI_VBDs];
    xapi_obj *sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), vdi->fields[XAPI_F_VDI_SR].s);
    const storage_driver *drv = sr ? storage_driver_find(sr->fields[XAPI_F_SR_type].s) : NULL;
    bool forgetting = strcmp(op, "forget") == 0 || strcmp(op, "update") == 0;
    unsigned cap = cap_of(op);

    for (uint32_t i = 0; i < cur->n; i++) {
        const char *running = xapi_value_str(&cur->members[i].value);
        if (reads_data(running) && reads_data(op))
            continue;
        if (reads_data(running))
            return xapi_fail(err, "VDI_IN_USE", vdi->ref, op, NULL);
        return xapi_fail(err, "OTHER_OPERATION_IN_PROGRESS", "VDI", vdi->ref, running, cur->members[i].name, NULL);
    }
    if (!forgetting && !vdi->fields[XAPI_F_VDI_managed].b)
        return xapi_fail(err, "VDI_NOT_MANAGED", vdi->ref, NULL);
    for (uint32_t i = 0; i < vbds->n && !live_ok(op); i++) {
        xapi_obj *b = xapi_store_get_class(st, storage_cls(XAPI_C_VBD), vbds->items[i].s);
        if (!b || (!b->fields[XAPI_F_VBD_currently_attached].b && !being_attached(srv, b)))
            continue;
        if (strcmp(op, "copy") == 0 && strcmp(b->fields[XAPI_F_VBD_mode].s, "RO") == 0)
            continue;
        return xapi_fail(err, "VDI_IN_USE", vdi->ref, op, NULL);
    }
    if (cap && sr && storage_sr_cap(sr, drv, cap, err) < 0)
        return -XAPI_EFAIL;
    if (strcmp(op, "snapshot") == 0 && vdi->fields[XAPI_F_VDI_sharable].b)
        return xapi_fail(err, "VDI_IS_SHARABLE", vdi->ref, NULL);
    if ((strcmp(op, "snapshot") == 0 || strcmp(op, "copy") == 0) &&
        strcmp(vdi->fields[XAPI_F_VDI_on_boot].s, "reset") == 0)
        return xapi_fail(err, "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", NULL);
    return 0;
}

void storage_vdi_update_allowed_operations(xapi_server *srv, xapi_obj *vdi) {
    static const char *const ops[] = {"clone", "copy", "resize", "resize_online", "snapshot", "destroy", "forget",
                                      "update"};
    xapi_obj *sr = xapi_store_get_class(srv->store, storage_cls(XAPI_C_SR), vdi->fields[XAPI_F_VDI_SR].s);
    bool plugged = sr && storage_sr_attached(srv, sr);
    xapi_value allowed = xapi_value_array(), err = {0};

    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (!plugged && strcmp(ops[i], "forget") != 0)
            continue;
        if (storage_vdi_check_op(srv, vdi, ops[i], &err) == 0)
            add_op(&allowed, ops[i]);
    }
    xapi_value_free(&err);
    xapi_obj_set(srv->store, vdi, XAPI_F_VDI_allowed_operations, allowed);
}

void storage_vdi_op_begin(xapi_server *srv, xapi_obj *vdi, const char *opid, const char *op) {
    xapi_value cur = xapi_value_copy(&vdi->fields[XAPI_F_VDI_current_operations]);

    xapi_struct_set(&cur, opid, xapi_value_string(op));
    xapi_obj_set(srv->store, vdi, XAPI_F_VDI_current_operations, cur);
    storage_vdi_update_allowed_operations(srv, vdi);
}

void storage_vdi_op_end(xapi_server *srv, const char *vdi_ref, const char *opid) {
    xapi_obj *vdi = xapi_store_get_class(srv->store, storage_cls(XAPI_C_VDI), vdi_ref);
    xapi_value cur;

    if (!vdi)
        return;
    cur = xapi_value_copy(&vdi->fields[XAPI_F_VDI_current_operations]);
    xapi_struct_remove(&cur, opid);
    xapi_obj_set(srv->store, vdi, XAPI_F_VDI_current_operations, cur);
    storage_vdi_update_allowed_operations(srv, vdi);
}

/* ---- VDI records ------------------------------------------------------------ */

/* What a scan or a stat learns: sizes, and for a VHD the sm_config keys sm's
 * drivers keep (vdi_type, vhd-parent) and whether it is a hidden base copy. */
static void set_found(xapi_server *srv, xapi_obj *vdi, const storage_vdi_info *info) {
    xapi_store *st = srv->store;
    xapi_value sm;

    xapi_obj_set_int(st, vdi, XAPI_F_VDI_virtual_size, info->virtual_size);
    xapi_obj_set_int(st, vdi, XAPI_F_VDI_physical_utilisation, info->physical_utilisation);
    xapi_obj_set_bool(st, vdi, XAPI_F_VDI_missing, false);
    if (info->lun_id) {
        sm = xapi_value_copy(&vdi->fields[XAPI_F_VDI_sm_config]);
        if (sm.kind != XAPI_V_STRUCT) {
            xapi_value_free(&sm);
            sm = xapi_value_struct();
        }
        xapi_struct_set(&sm, "LUNid", xapi_value_string(info->lun_id));
        xapi_struct_set(&sm, "SCSIid", xapi_value_string(info->location));
        xapi_obj_set(st, vdi, XAPI_F_VDI_sm_config, sm);
    }
    if (!info->vhd && !info->raw)
        return;
    sm = xapi_value_copy(&vdi->fields[XAPI_F_VDI_sm_config]);
    if (sm.kind != XAPI_V_STRUCT) {
        xapi_value_free(&sm);
        sm = xapi_value_struct();
    }
    xapi_struct_set(&sm, "vdi_type", xapi_value_string(info->raw ? "raw" : "vhd"));
    if (info->parent)
        xapi_struct_set(&sm, "vhd-parent", xapi_value_string(info->parent));
    else
        xapi_struct_remove(&sm, "vhd-parent");
    xapi_obj_set(st, vdi, XAPI_F_VDI_sm_config, sm);
    if (info->hidden) {
        xapi_obj_set_bool(st, vdi, XAPI_F_VDI_managed, false);
        xapi_obj_set_bool(st, vdi, XAPI_F_VDI_read_only, true);
    }
}

bool storage_path_is_vhd(const storage_driver *drv, const char *path) {
    size_t n = path ? strlen(path) : 0;

    /* What the file is, not the SR's kind: a VHD directory (ext, nfs, file) holds raw images too. */
    return drv->vdi_open_vhd && n > 4 && strcmp(path + n - 4, ".vhd") == 0;
}

void storage_vdi_set_info(xapi_server *srv, xapi_obj *vdi, const storage_vdi_info *info) {
    xapi_obj_set_string(srv->store, vdi, XAPI_F_VDI_location, info->location);
    set_found(srv, vdi, info);
}

xapi_obj *storage_vdi_new(xapi_server *srv, xapi_obj *sr, const char *ref, const char *uuid,
                          const storage_vdi_info *info) {
    xapi_store *st = srv->store;
    xapi_obj *v;

    v = ref && uuid ? xapi_obj_create_with(st, storage_cls(XAPI_C_VDI), ref, uuid)
                    : xapi_obj_create(st, storage_cls(XAPI_C_VDI));
    if (!v)
        return NULL;
    xapi_obj_set_string(st, v, XAPI_F_VDI_SR, sr->ref);
    xapi_obj_set_string(st, v, XAPI_F_VDI_name_label, info->name ? info->name : "");
    xapi_obj_set_string(st, v, XAPI_F_VDI_type, "user");
    xapi_obj_set_bool(st, v, XAPI_F_VDI_read_only, info->read_only);
    xapi_obj_set_bool(st, v, XAPI_F_VDI_sharable, false);
    xapi_obj_set_bool(st, v, XAPI_F_VDI_managed, true);
    xapi_obj_set_bool(st, v, XAPI_F_VDI_storage_lock, false);
    if (info->hidden && !(info->name && *info->name))
        xapi_obj_set_string(st, v, XAPI_F_VDI_name_label, "base copy");
    storage_vdi_set_info(srv, v, info);
    return v;
}

/* ---- scan ---------------------------------------------------------------------- */

static int info_cmp(const void *a, const void *b) {
    return strcmp(((const storage_vdi_info *)a)->location, ((const storage_vdi_info *)b)->location);
}

static bool vdi_attached(xapi_server *srv, const xapi_obj *vdi) {
    return storage_any_set(srv, &vdi->fields[XAPI_F_VDI_VBDs], XAPI_C_VBD, XAPI_F_VBD_currently_attached);
}

static bool chain_in_progress(xapi_server *srv, const xapi_obj *sr) {
    const storage_driver *drv = storage_driver_find(sr->fields[XAPI_F_SR_type].s);
    const xapi_value *vdis = &sr->fields[XAPI_F_SR_VDIs];

    if (!drv || !drv->vdi_chain)
        return false;
    for (uint32_t i = 0; i < vdis->n; i++) {
        xapi_obj *v = xapi_store_get_class(srv->store, storage_cls(XAPI_C_VDI), vdis->items[i].s);
        const xapi_value *cur = v ? &v->fields[XAPI_F_VDI_current_operations] : NULL;
        for (uint32_t k = 0; cur && k < cur->n; k++) {
            const char *op = xapi_value_str(&cur->members[k].value);
            if (strcmp(op, "snapshot") == 0 || strcmp(op, "clone") == 0)
                return true;
        }
    }
    return false;
}

void storage_scan_known_take(xapi_server *srv, const xapi_obj *sr, storage_scan_known *ret) {
    const xapi_value *vdis = &sr->fields[XAPI_F_SR_VDIs];

    ret->refs = xapi_value_array();
    ret->locations = xapi_value_array();
    for (uint32_t i = 0; i < vdis->n; i++) {
        xapi_obj *v = xapi_store_get_class(srv->store, storage_cls(XAPI_C_VDI), vdis->items[i].s);
        if (!v)
            continue;
        xapi_array_append(&ret->refs, xapi_value_string(v->ref));
        xapi_array_append(&ret->locations, xapi_value_string(v->fields[XAPI_F_VDI_location].s));
    }
}

void storage_scan_known_free(storage_scan_known *k) {
    xapi_value_free(&k->refs);
    xapi_value_free(&k->locations);
}

static bool in_strings(const xapi_value *a, const char *s) {
    for (uint32_t i = 0; i < a->n; i++)
        if (strcmp(a->items[i].s, s) == 0)
            return true;
    return false;
}

void storage_sr_apply_scan(xapi_server *srv, xapi_obj *sr, const storage_sr_io *io, const storage_scan_known *known) {
    xapi_store *st = srv->store;
    storage_vdi_info *infos = io->infos;
    size_t n = io->n, introduced = 0, forgotten = 0;
    bool *seen, chaining;
    xapi_value refs;

    if (n > 1) /* an empty SR may give no array at all: qsort(NULL, 0) is undefined */
        qsort(infos, n, sizeof *infos, info_cmp);
    seen = xapi_calloc(n + 1, sizeof *seen);

    /* Records first: refresh the present, forget the vanished. */
    refs = xapi_value_copy(&sr->fields[XAPI_F_SR_VDIs]);
    for (uint32_t i = 0; i < refs.n; i++) {
        xapi_obj *v = xapi_store_get_class(st, storage_cls(XAPI_C_VDI), refs.items[i].s);
        storage_vdi_info key = {.location = NULL};
        storage_vdi_info *found;

        if (!v)
            continue;
        key.location = v->fields[XAPI_F_VDI_location].s;
        found = n ? bsearch(&key, infos, n, sizeof *infos, info_cmp) : NULL;
        if (found) {
            seen[found - infos] = true;
            set_found(srv, v, found);
            storage_vdi_update_allowed_operations(srv, v);
            continue;
        }
        if (v->fields[XAPI_F_VDI_current_operations].n > 0)
            continue; /* being made or copied: not ours to judge */
        if (known && !in_strings(&known->refs, v->ref))
            continue; /* made while the scan ran: the scan may not have seen it */
        if (vdi_attached(srv, v)) {
            xapi_obj_set_bool(st, v, XAPI_F_VDI_missing, true);
            continue;
        }
        log_info("storage: SR %s: VDI %s (location %s) vanished, forgotten", sr->uuid, v->uuid,
                 v->fields[XAPI_F_VDI_location].s);
        xapi_obj_destroy(st, v);
        forgotten++;
    }
    xapi_value_free(&refs);

    /* Then what has no record yet, unless a VHD chain is being made in the SR:
     * its base has its name before it is hidden and has its record. */
    chaining = chain_in_progress(srv, sr);
    for (size_t i = 0; i < n && !chaining; i++) {
        char uuid[XAPI_UUID_LEN + 1], ref[XAPI_REF_LEN + 1];
        xapi_obj *v;

        if (seen[i])
            continue;
        /* A VDI destroyed while the scan ran: its file was seen before it went. */
        if (known && in_strings(&known->locations, infos[i].location))
            continue;
        if (storage_uuid_valid(infos[i].location) &&
            !xapi_store_get_by_uuid(st, storage_cls(XAPI_C_VDI), infos[i].location))
            snprintf(uuid, sizeof uuid, "%s", infos[i].location);
        else
            xapi_uuid_generate(uuid);
        xapi_ref_generate(ref);
        v = storage_vdi_new(srv, sr, ref, uuid, &infos[i]);
        if (!v)
            continue;
        storage_vdi_update_allowed_operations(srv, v);
        introduced++;
    }
    if (introduced || forgotten)
        log_info("storage: SR %s scanned: %zu VDI(s) introduced, %zu forgotten", sr->uuid, introduced, forgotten);
    storage_sr_set_sizes(srv, sr, io);
    storage_sr_update_allowed(srv, sr);
    free(seen);
}

int storage_sr_scan_locked(xapi_server *srv, xapi_obj *sr, const storage_sr *h, xapi_value *err) {
    storage_sr_io *io = NULL;
    storage_err e = {0};
    int rc;

    if (!h->drv->sr_scan)
        return xapi_fail(err, "SR_OPERATION_NOT_SUPPORTED", sr->ref, NULL);
    rc = storage_sr_io_run(h, STORAGE_SR_IO_SCAN | STORAGE_SR_IO_STAT, NULL, 0, "SR.scan", &io, &e);
    if (rc < 0)
        return storage_backend_fail(err, &e);
    if (!io->scanned) {
        rc = storage_backend_fail(err, &io->scan_e);
        storage_sr_io_free(io);
        return rc;
    }
    storage_sr_apply_scan(srv, sr, io, NULL);
    storage_sr_io_free(io);
    return 0;
}
