/* The datamodel side of VBDs: what VBD.create checks and resolves
 * (userdevice "autodetect", CD rules), CD media changes (VBD.insert/eject),
 * VBD.set_mode and VM.get_allowed_VBD_devices. Plugging belongs to the VM
 * layer (vmops). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "storage/internal.h"
#include "xapi/error.h"

static storage_media_fn media_handler;

void storage_set_media_handler(storage_media_fn fn) {
    media_handler = fn;
}

/* A canonical decimal slot ("0".."15", no sign, no leading zero), else -1. */
static int parse_slot(const char *s) {
    int n = 0;

    if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 3)
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (*p - '0');
    }
    return n < STORAGE_VBD_DEVICES ? n : -1;
}

/* The slot a device name stands for: a number, or xvdX / hdX / sdX. */
static int device_slot(const char *s) {
    size_t n = strlen(s);

    if ((n == 4 && strncmp(s, "xvd", 3) == 0) || (n == 3 && (strncmp(s, "hd", 2) == 0 || strncmp(s, "sd", 2) == 0))) {
        char ch = s[n - 1];
        return ch >= 'a' && ch <= 'z' ? ch - 'a' : -1;
    }
    return parse_slot(s);
}

static void used_slots(xapi_server *srv, const xapi_obj *vm, const xapi_obj *self, bool used[STORAGE_VBD_DEVICES]) {
    const xapi_value *vbds = &vm->fields[XAPI_F_VM_VBDs];

    memset(used, 0, STORAGE_VBD_DEVICES * sizeof *used);
    for (uint32_t i = 0; i < vbds->n; i++) {
        xapi_obj *b = xapi_store_get_class(srv->store, storage_cls(XAPI_C_VBD), vbds->items[i].s);
        int k;

        if (!b || b == self)
            continue;
        if ((k = device_slot(b->fields[XAPI_F_VBD_userdevice].s)) >= 0 && k < STORAGE_VBD_DEVICES)
            used[k] = true;
        if ((k = device_slot(b->fields[XAPI_F_VBD_device].s)) >= 0 && k < STORAGE_VBD_DEVICES)
            used[k] = true;
    }
}

int storage_vbd_userdevice(xapi_server *srv, const xapi_obj *vm, const char *userdevice, const xapi_obj *self,
                           char ret[16], xapi_value *err) {
    bool used[STORAGE_VBD_DEVICES];
    int slot;

    used_slots(srv, vm, self, used);
    if (strcmp(userdevice, "autodetect") == 0) {
        for (slot = 0; slot < STORAGE_VBD_DEVICES && used[slot]; slot++)
            ;
        if (slot == STORAGE_VBD_DEVICES)
            return xapi_fail(err, "INVALID_DEVICE", userdevice, NULL);
    } else {
        slot = parse_slot(userdevice);
        if (slot < 0)
            return xapi_fail(err, "INVALID_DEVICE", userdevice, NULL);
        if (used[slot])
            return xapi_fail(err, "DEVICE_ALREADY_EXISTS", userdevice, NULL);
    }
    snprintf(ret, 16, "%d", slot);
    return 0;
}

/* ---- VBD.create --------------------------------------------------------------- */

static bool is_pv(const xapi_obj *vm) {
    const char *dt = vm->fields[XAPI_F_VM_domain_type].s;

    if (strcmp(dt, "hvm") == 0)
        return false;
    if (strcmp(dt, "pv") == 0 || strcmp(dt, "pvh") == 0 || strcmp(dt, "pv_in_pvh") == 0)
        return true;
    return vm->fields[XAPI_F_VM_HVM_boot_policy].s[0] == '\0';
}

static int vbd_after_create(xapi_call *c, xapi_obj *o) {
    static const char *const disk_types[] = {"system", "user", "ephemeral", "suspend",
                                             "crashdump", "metadata", "rrd", "pvs_cache"};
    xapi_server *srv = c->srv;
    xapi_store *st = srv->store;
    const char *type = o->fields[XAPI_F_VBD_type].s, *mode = o->fields[XAPI_F_VBD_mode].s;
    bool empty = o->fields[XAPI_F_VBD_empty].b;
    xapi_obj *vm, *vdi = NULL;
    const xapi_value *ops;
    char dev[16];
    int rc;

    vm = xapi_store_get_class(st, storage_cls(XAPI_C_VM), o->fields[XAPI_F_VBD_VM].s);
    if (!vm)
        return xapi_call_fail(c, "HANDLE_INVALID", "VM", o->fields[XAPI_F_VBD_VM].s);
    if (!empty) {
        bool ok = false;
        vdi = xapi_store_get_class(st, storage_cls(XAPI_C_VDI), o->fields[XAPI_F_VBD_VDI].s);
        if (!vdi)
            return xapi_call_fail(c, "HANDLE_INVALID", "VDI", o->fields[XAPI_F_VBD_VDI].s);
        for (size_t i = 0; i < sizeof disk_types / sizeof disk_types[0]; i++)
            ok |= strcmp(vdi->fields[XAPI_F_VDI_type].s, disk_types[i]) == 0;
        if (!ok)
            return xapi_call_fail(c, "VDI_INCOMPATIBLE_TYPE", vdi->ref, vdi->fields[XAPI_F_VDI_type].s);
    }
    if (strcmp(type, "CD") == 0 && strcmp(mode, "RO") != 0)
        return xapi_call_fail(c, "VBD_CDS_MUST_BE_READONLY", NULL);
    if (strcmp(type, "CD") != 0 && empty)
        return xapi_call_fail(c, "VBD_NOT_REMOVABLE_MEDIA", "in constructor");
    if (vdi && strcmp(mode, "RW") == 0 && vdi->fields[XAPI_F_VDI_read_only].b)
        return xapi_call_fail(c, "VDI_READONLY", vdi->ref);
    ops = &vm->fields[XAPI_F_VM_current_operations];
    for (uint32_t i = 0; i < ops->n; i++) {
        const char *op = xapi_value_str(&ops->members[i].value);
        if (strcmp(op, "migrate_send") == 0 || strcmp(op, "pool_migrate") == 0)
            return xapi_call_fail(c, "OTHER_OPERATION_IN_PROGRESS", "VM", vm->ref, op, ops->members[i].name);
    }
    if (strcmp(type, "Floppy") == 0 && is_pv(vm))
        return xapi_call_fail(c, "NOT_IMPLEMENTED", "VBD of type 'floppy' is not supported on PV domain");
    rc = storage_vbd_userdevice(srv, vm, o->fields[XAPI_F_VBD_userdevice].s, o, dev, &c->err);
    if (rc < 0)
        return rc;
    xapi_obj_set_string(st, o, XAPI_F_VBD_userdevice, dev);
    /* device and currently_attached only mean something for a suspended VM's devices. */
    if (strcmp(vm->fields[XAPI_F_VM_power_state].s, "Suspended") != 0) {
        xapi_obj_set_string(st, o, XAPI_F_VBD_device, "");
        xapi_obj_set_bool(st, o, XAPI_F_VBD_currently_attached, false);
    }
    if (vdi)
        storage_vdi_update_allowed_operations(srv, vdi);
    return 0;
}

static int vbd_before_set(xapi_call *c, xapi_obj *o, int field, const xapi_value *v) {
    xapi_server *srv = c->srv;

    if (field == XAPI_F_VBD_userdevice) {
        xapi_obj *vm = xapi_store_get_class(srv->store, storage_cls(XAPI_C_VM), o->fields[XAPI_F_VBD_VM].s);
        char dev[16];

        if (strcmp(v->s, "autodetect") == 0)
            return xapi_call_fail(c, "INVALID_DEVICE", v->s);
        if (vm)
            return storage_vbd_userdevice(srv, vm, v->s, o, dev, &c->err);
        return parse_slot(v->s) < 0 ? xapi_call_fail(c, "INVALID_DEVICE", v->s) : 0;
    }
    if (field == XAPI_F_VBD_type) {
        if (strcmp(v->s, "CD") == 0 && strcmp(o->fields[XAPI_F_VBD_mode].s, "RO") != 0)
            return xapi_call_fail(c, "VBD_CDS_MUST_BE_READONLY", NULL);
        if (strcmp(v->s, "CD") != 0 && o->fields[XAPI_F_VBD_empty].b)
            return xapi_call_fail(c, "VBD_NOT_REMOVABLE_MEDIA", o->ref);
    }
    return 0;
}

static int vbd_before_destroy(xapi_call *c, xapi_obj *o) {
    if (o->fields[XAPI_F_VBD_currently_attached].b) {
        xapi_obj *vm = xapi_store_get_class(c->srv->store, storage_cls(XAPI_C_VM), o->fields[XAPI_F_VBD_VM].s);
        char msg[200];
        snprintf(msg, sizeof msg, "VBD '%s' still attached to '%s'", o->uuid, vm ? vm->uuid : "");
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", msg);
    }
    return 0;
}

const xapi_class_hooks storage_vbd_hooks = {
    .after_create = vbd_after_create,
    .before_destroy = vbd_before_destroy,
    .before_set = vbd_before_set,
};

/* ---- VBD.insert / eject / set_mode --------------------------------------------------- */

static int bad_power(xapi_call *c, const xapi_obj *vm, const char *expected) {
    return xapi_call_fail(c, "VM_BAD_POWER_STATE", vm->ref, expected, storage_power_lower(vm));
}

/* The checks of insert (vdi_ref set) or eject, with the write lock held. */
static int media_check(xapi_call *c, const char *vbd_ref, const char *vdi_ref, xapi_obj **ret_vbd, xapi_obj **ret_vm) {
    xapi_store *st = c->srv->store;
    xapi_obj *vbd, *vm, *vdi = NULL;
    bool suspended;
    int rc;

    rc = xapi_lookup(c, storage_cls(XAPI_C_VBD), vbd_ref, &vbd);
    if (rc == 0 && vdi_ref)
        rc = xapi_lookup(c, storage_cls(XAPI_C_VDI), vdi_ref, &vdi);
    if (rc < 0)
        return rc;
    vm = xapi_store_get_class(st, storage_cls(XAPI_C_VM), vbd->fields[XAPI_F_VBD_VM].s);
    if (!vm)
        return xapi_call_fail(c, "HANDLE_INVALID", "VM", vbd->fields[XAPI_F_VBD_VM].s);
    suspended = strcmp(vm->fields[XAPI_F_VM_power_state].s, "Suspended") == 0;
    if (vdi_ref && suspended)
        return bad_power(c, vm, "halted, running");
    if (strcmp(vbd->fields[XAPI_F_VBD_type].s, "CD") != 0)
        return xapi_call_fail(c, "VBD_NOT_REMOVABLE_MEDIA", vbd->ref);
    if (vdi_ref && !vbd->fields[XAPI_F_VBD_empty].b)
        return xapi_call_fail(c, "VBD_NOT_EMPTY", vbd->ref);
    if (!vdi_ref && vbd->fields[XAPI_F_VBD_empty].b)
        return xapi_call_fail(c, "VBD_IS_EMPTY", vbd->ref);
    if (vdi && !vdi->fields[XAPI_F_VDI_managed].b)
        return xapi_call_fail(c, "VDI_NOT_MANAGED", vdi->ref);
    if (!vdi_ref && suspended)
        return bad_power(c, vm, "halted, running");
    *ret_vbd = vbd;
    *ret_vm = vm;
    return 0;
}

static void media_set(xapi_server *srv, xapi_obj *vbd, const char *vdi_ref) {
    xapi_store *st = srv->store;
    xapi_obj *old = xapi_store_get_class(st, storage_cls(XAPI_C_VDI), vbd->fields[XAPI_F_VBD_VDI].s), *nv;

    xapi_obj_set_string(st, vbd, XAPI_F_VBD_VDI, vdi_ref ? vdi_ref : XAPI_NULL_REF);
    xapi_obj_set_bool(st, vbd, XAPI_F_VBD_empty, vdi_ref == NULL);
    if (old)
        storage_vdi_update_allowed_operations(srv, old);
    nv = vdi_ref ? xapi_store_get_class(st, storage_cls(XAPI_C_VDI), vdi_ref) : NULL;
    if (nv)
        storage_vdi_update_allowed_operations(srv, nv);
}

static int media_change(xapi_call *c, const char *vdi_ref) {
    xapi_store *st = c->srv->store;
    const char *vbd_ref = c->args[0].s;
    xapi_obj *vbd = NULL, *vm = NULL;
    int rc;

    xapi_store_write_begin(st);
    rc = media_check(c, vbd_ref, vdi_ref, &vbd, &vm);
    if (rc == 0 && strcmp(vm->fields[XAPI_F_VM_power_state].s, "Halted") != 0) {
        /* The guest must see the change: the VM layer does it, then the record follows. */
        if (!media_handler)
            rc = bad_power(c, vm, "halted");
        else {
            xapi_store_write_end(st);
            rc = media_handler(c->srv, vbd_ref, vdi_ref, &c->err);
            if (rc < 0)
                return rc;
            xapi_store_write_begin(st);
            rc = xapi_lookup(c, storage_cls(XAPI_C_VBD), vbd_ref, &vbd);
        }
    }
    if (rc == 0)
        media_set(c->srv, vbd, vdi_ref);
    return xapi_finish_void(c, rc);
}

static int vbd_insert(xapi_call *c) {
    return media_change(c, c->args[1].s);
}

static int vbd_eject(xapi_call *c) {
    return media_change(c, NULL);
}

static int vbd_set_mode(xapi_call *c) {
    xapi_store *st = c->srv->store;
    xapi_obj *vbd, *vm;
    int rc;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, storage_cls(XAPI_C_VBD), c->args[0].s, &vbd);
    if (rc == 0) {
        vm = xapi_store_get_class(st, storage_cls(XAPI_C_VM), vbd->fields[XAPI_F_VBD_VM].s);
        if (!vm)
            rc = xapi_call_fail(c, "HANDLE_INVALID", "VM", vbd->fields[XAPI_F_VBD_VM].s);
        else if (strcmp(vm->fields[XAPI_F_VM_power_state].s, "Halted") != 0)
            rc = bad_power(c, vm, "halted");
        else if (strcmp(vbd->fields[XAPI_F_VBD_type].s, "CD") == 0 && strcmp(c->args[1].s, "RO") != 0)
            rc = xapi_call_fail(c, "VBD_CDS_MUST_BE_READONLY", NULL);
    }
    if (rc == 0)
        xapi_obj_set_string(st, vbd, XAPI_F_VBD_mode, c->args[1].s);
    return xapi_finish_void(c, rc);
}

/* ---- VM.get_allowed_VBD_devices ------------------------------------------------------ */

static int vm_get_allowed_vbd_devices(xapi_call *c) {
    bool used[STORAGE_VBD_DEVICES];
    xapi_obj *vm;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, storage_cls(XAPI_C_VM), c->args[0].s, &vm);
    if (rc == 0) {
        used_slots(c->srv, vm, NULL, used);
        xapi_out_array_begin(c->out);
        for (int i = 0; i < STORAGE_VBD_DEVICES; i++)
            if (!used[i]) {
                char n[8];
                snprintf(n, sizeof n, "%d", i);
                xapi_out_cstring(c->out, n);
            }
        xapi_out_array_end(c->out);
    }
    xapi_store_rdunlock(c->srv->store);
    return rc;
}

const xapi_handler storage_vbd_handlers[] = {
    {"VBD", "insert", vbd_insert},
    {"VBD", "eject", vbd_eject},
    {"VBD", "set_mode", vbd_set_mode},
    {"VM", "get_allowed_VBD_devices", vm_get_allowed_vbd_devices},
    {NULL, NULL, NULL},
};
