/* VM.clone, copy, snapshot, checkpoint, revert and provision: new VM records
 * with their devices, and disks cloned, copied or created by the storage layer. */
#include <errno.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "storage/driver.h"
#include "storage/storage.h"
#include "vmops/config.h"
#include "vmops/oplock.h"
#include "vmops/vm_internal.h"
#include "xapi/error.h"

#define MAX_DISKS 256

static const xapi_class *C_VM = &xapi_classes[XAPI_C_VM];
static const xapi_class *C_VBD = &xapi_classes[XAPI_C_VBD];
static const xapi_class *C_VIF = &xapi_classes[XAPI_C_VIF];

/* Fields that describe a VM's identity or its running state: never copied. */
static bool vm_field_is_own(int f) {
    switch (f) {
    case XAPI_F_VM_uuid:
    case XAPI_F_VM_allowed_operations:
    case XAPI_F_VM_current_operations:
    case XAPI_F_VM_power_state:
    case XAPI_F_VM_resident_on:
    case XAPI_F_VM_domid:
    case XAPI_F_VM_metrics:
    case XAPI_F_VM_guest_metrics:
    case XAPI_F_VM_is_a_snapshot:
    case XAPI_F_VM_snapshot_of:
    case XAPI_F_VM_snapshot_time:
    case XAPI_F_VM_parent:
    case XAPI_F_VM_suspend_VDI:
    case XAPI_F_VM_is_control_domain:
    case XAPI_F_VM_memory_target:
        return true;
    }
    return false;
}

static bool device_field_is_own(const xapi_class *cls, int f) {
    if (cls == C_VBD)
        return f == XAPI_F_VBD_uuid || f == XAPI_F_VBD_VM || f == XAPI_F_VBD_VDI ||
               f == XAPI_F_VBD_currently_attached || f == XAPI_F_VBD_allowed_operations ||
               f == XAPI_F_VBD_current_operations || f == XAPI_F_VBD_metrics || f == XAPI_F_VBD_device;
    return f == XAPI_F_VIF_uuid || f == XAPI_F_VIF_VM || f == XAPI_F_VIF_currently_attached ||
           f == XAPI_F_VIF_allowed_operations || f == XAPI_F_VIF_current_operations || f == XAPI_F_VIF_metrics;
}

/* A detached copy of an object's fields. */
static xapi_value *fields_copy(const xapi_obj *o) {
    xapi_value *v = xapi_calloc(o->cls->nfields, sizeof *v);
    for (unsigned i = 0; i < o->cls->nfields; i++)
        v[i] = xapi_value_copy(&o->fields[i]);
    return v;
}

static void fields_free(const xapi_class *cls, xapi_value *v) {
    if (!v)
        return;
    for (unsigned i = 0; i < cls->nfields; i++)
        xapi_value_free(&v[i]);
    free(v);
}

typedef struct source_vm {
    xapi_value *vm;
    xapi_value *vbds[MAX_DISKS];
    unsigned nvbds;
    xapi_value *vifs[MAX_DISKS];
    unsigned nvifs;
    char new_vdi[MAX_DISKS][XAPI_REF_LEN + 1];
} source_vm;

static void source_free(source_vm *s) {
    fields_free(C_VM, s->vm);
    for (unsigned i = 0; i < s->nvbds; i++)
        fields_free(C_VBD, s->vbds[i]);
    for (unsigned i = 0; i < s->nvifs; i++)
        fields_free(C_VIF, s->vifs[i]);
    memset(s, 0, sizeof *s);
}

static void source_read(xapi_store *st, const xapi_obj *vm, source_vm *s) {
    const xapi_value *vbds = &vm->fields[XAPI_F_VM_VBDs], *vifs = &vm->fields[XAPI_F_VM_VIFs];

    s->vm = fields_copy(vm);
    for (uint32_t i = 0; i < vbds->n && s->nvbds < MAX_DISKS; i++) {
        xapi_obj *o = xapi_store_get_class(st, C_VBD, vbds->items[i].s);
        if (o)
            s->vbds[s->nvbds++] = fields_copy(o);
    }
    for (uint32_t i = 0; i < vifs->n && s->nvifs < MAX_DISKS; i++) {
        xapi_obj *o = xapi_store_get_class(st, C_VIF, vifs->items[i].s);
        if (o)
            s->vifs[s->nvifs++] = fields_copy(o);
    }
}

static bool has_disk(const xapi_value *vbd) {
    return !vbd[XAPI_F_VBD_empty].b && strcmp(vbd[XAPI_F_VBD_VDI].s, XAPI_NULL_REF) != 0 &&
           strcmp(vbd[XAPI_F_VBD_type].s, "CD") != 0;
}

static bool in_set(const xapi_value *set, const char *s) {
    for (uint32_t i = 0; set && i < set->n; i++)
        if (strcmp(set->items[i].s, s) == 0)
            return true;
    return false;
}

/* Creates the device records of the new VM (write lock held). */
static void create_devices(xapi_store *st, const source_vm *s, const char *vm_ref) {
    for (unsigned i = 0; i < s->nvbds; i++) {
        xapi_obj *o = xapi_obj_create(st, C_VBD);
        for (unsigned f = 0; f < C_VBD->nfields; f++)
            if (!C_VBD->fields[f].derived && !device_field_is_own(C_VBD, (int)f))
                xapi_obj_set(st, o, (int)f, xapi_value_copy(&s->vbds[i][f]));
        xapi_obj_set_string(st, o, XAPI_F_VBD_VM, vm_ref);
        if (*s->new_vdi[i])
            xapi_obj_set_string(st, o, XAPI_F_VBD_VDI, s->new_vdi[i]);
    }
    for (unsigned i = 0; i < s->nvifs; i++) {
        xapi_obj *o = xapi_obj_create(st, C_VIF);
        for (unsigned f = 0; f < C_VIF->nfields; f++)
            if (!C_VIF->fields[f].derived && !device_field_is_own(C_VIF, (int)f))
                xapi_obj_set(st, o, (int)f, xapi_value_copy(&s->vifs[i][f]));
        xapi_obj_set_string(st, o, XAPI_F_VIF_VM, vm_ref);
    }
}

typedef enum copy_kind { KIND_CLONE, KIND_COPY, KIND_SNAPSHOT, KIND_CHECKPOINT } copy_kind;

static const char *const op_names[] = {"clone", "copy", "snapshot", "checkpoint"};

static bool is_snapshot_kind(copy_kind kind) {
    return kind == KIND_SNAPSHOT || kind == KIND_CHECKPOINT;
}

/* Reads the VM to copy, unless it cannot be (store read lock held). */
static int read_source(xapi_call *c, copy_kind kind, const char *vm_ref, source_vm *src) {
    xapi_obj *vm;
    int rc;

    rc = xapi_lookup(c, C_VM, vm_ref, &vm);
    if (rc < 0)
        return rc;
    if (vm->fields[XAPI_F_VM_is_control_domain].b)
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "The control domain cannot be copied");
    if (is_snapshot_kind(kind) && vm->fields[XAPI_F_VM_is_a_snapshot].b)
        return xapi_call_fail(c, "VM_IS_SNAPSHOT", vm_ref, op_names[kind]);
    if (!is_snapshot_kind(kind)) {
        rc = vmops_check_power_state(c, vm_ref, vm->fields[XAPI_F_VM_power_state].s, VMOPS_PS_HALTED);
        if (rc < 0)
            return rc;
    }
    source_read(c->srv->store, vm, src);
    return 0;
}

/* Whether every disk of the VM (CDs aside) is on an SR whose driver can snapshot (store lock held). */
static bool disks_can_snapshot(xapi_store *st, const xapi_obj *vm) {
    const xapi_value *vbds = &vm->fields[XAPI_F_VM_VBDs];

    for (uint32_t i = 0; i < vbds->n; i++) {
        const xapi_obj *vbd = xapi_store_get_class(st, C_VBD, vbds->items[i].s), *vdi, *sr;
        const storage_driver *drv;

        if (!vbd || vbd->fields[XAPI_F_VBD_empty].b || strcmp(vbd->fields[XAPI_F_VBD_type].s, "CD") == 0)
            continue;
        vdi = xapi_store_get_class(st, &xapi_classes[XAPI_C_VDI], vbd->fields[XAPI_F_VBD_VDI].s);
        sr = vdi ? xapi_store_get_class(st, &xapi_classes[XAPI_C_SR], vdi->fields[XAPI_F_VDI_SR].s) : NULL;
        drv = sr ? storage_driver_find(sr->fields[XAPI_F_SR_type].s) : NULL;
        if (vdi && !(drv && drv->caps & STORAGE_CAP_VDI_SNAPSHOT))
            return false;
    }
    return true;
}

/* VM.checkpoint's checks (xapi's order: power state, template, snapshot),
 * then, for a running VM, its memory saved as by VM.suspend: the snapshot
 * then copies the suspend image with the disks, and the VM is resumed after.
 * ret_power_state: the VM's state before (VM lock held). */
static int checkpoint_begin(xapi_call *c, vmops_op *op, const char *vm_ref, char ret_power_state[16]) {
    xapi_store *st = c->srv->store;
    int64_t domid = -1;
    xapi_obj *vm;
    int rc;

    xapi_store_rdlock(st);
    rc = xapi_lookup(c, C_VM, vm_ref, &vm);
    if (rc == 0 && vm->fields[XAPI_F_VM_is_control_domain].b)
        rc = xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "The control domain cannot be checkpointed");
    if (rc == 0)
        rc = vmops_check_power_state(c, vm_ref, vm->fields[XAPI_F_VM_power_state].s,
                                     VMOPS_PS_PAUSED | VMOPS_PS_SUSPENDED | VMOPS_PS_RUNNING);
    if (rc == 0 && vm->fields[XAPI_F_VM_is_a_template].b && !vm->fields[XAPI_F_VM_is_a_snapshot].b)
        rc = xapi_call_fail(c, "VM_IS_TEMPLATE", vm_ref, "checkpoint");
    if (rc == 0 && vm->fields[XAPI_F_VM_is_a_snapshot].b)
        rc = xapi_call_fail(c, "VM_IS_SNAPSHOT", vm_ref, "checkpoint");
    if (rc == 0 && vmops_power_state_in(vm->fields[XAPI_F_VM_power_state].s, VMOPS_PS_RUNNING) &&
        !disks_can_snapshot(st, vm))
        rc = xapi_call_fail(c, "SR_OPERATION_NOT_SUPPORTED", vm_ref);
    if (rc == 0 && vmops_power_state_in(vm->fields[XAPI_F_VM_power_state].s, VMOPS_PS_SUSPENDED) &&
        !xapi_store_get_class(st, &xapi_classes[XAPI_C_VDI], vm->fields[XAPI_F_VM_suspend_VDI].s))
        /* An image an earlier version kept as a file: not a VDI the snapshot could copy. */
        rc = xapi_call_fail(c, "VM_HAS_NO_SUSPEND_VDI", vm_ref);
    if (rc == 0) {
        snprintf(ret_power_state, 16, "%s", vm->fields[XAPI_F_VM_power_state].s);
        domid = vm->fields[XAPI_F_VM_domid].i;
    }
    xapi_store_rdunlock(st);
    if (rc == 0 && strcmp(ret_power_state, "Running") == 0)
        rc = vmops_suspend_domain(c, op, (int)domid);
    return rc;
}

/* A checkpointed VM that was running runs again. The call's outcome stays
 * the snapshot's if that failed (the resume's own failure is logged). */
static int checkpoint_end(xapi_call *c, vmops_op *op, const char *power_state_before, int rc) {
    xapi_value snapshot_err = {0};
    int resume_rc;

    if (strcmp(power_state_before, "Running") != 0)
        return rc;
    if (rc < 0) {
        snapshot_err = c->err;
        c->err = (xapi_value){0};
    }
    resume_rc = vmops_resume_domain(c, op, false);
    if (rc == 0)
        return resume_rc;
    if (resume_rc < 0) {
        log_warning("VM %s: not resumed after a failed checkpoint: %s", op->vm_uuid,
                    c->err.kind == XAPI_V_ARRAY && c->err.n > 0 ? c->err.items[0].s : "?");
        xapi_value_free(&c->err);
    }
    c->err = snapshot_err;
    return rc;
}

/* xapi's VM.snapshot_info of a snapshot. */
static xapi_value snapshot_info(const char *power_state) {
    xapi_value info = xapi_value_struct();

    xapi_struct_set(&info, "disk-snapshot-type", xapi_value_string("crash_consistent"));
    xapi_struct_set(&info, "power-state-at-snapshot", xapi_value_string(power_state));
    return info;
}

static int copy_vm(xapi_call *c, copy_kind kind, const char *vm_ref, const char *new_name, const char *sr_ref,
                   const xapi_value *ignore_vdis) {
    xapi_store *st = c->srv->store;
    source_vm src = {0};
    char new_ref[XAPI_REF_LEN + 1], suspend_vdi[XAPI_REF_LEN + 1] = "", power_state_before[16] = "";
    bool with_memory;
    xapi_obj *nvm;
    vmops_op op;
    int rc;

    if (sr_ref && *sr_ref && strcmp(sr_ref, XAPI_NULL_REF) != 0) {
        xapi_obj *sr;
        xapi_store_rdlock(st);
        rc = xapi_lookup(c, &xapi_classes[XAPI_C_SR], sr_ref, &sr);
        xapi_store_rdunlock(st);
        if (rc < 0)
            return rc;
    } else
        sr_ref = NULL;
    rc = vmops_op_begin(c, vm_ref, op_names[kind], false, &op);
    if (rc < 0)
        return rc;
    if (kind == KIND_CHECKPOINT) {
        rc = checkpoint_begin(c, &op, vm_ref, power_state_before);
        if (rc < 0) {
            /* A VM whose suspend failed is as it was: nothing to resume. */
            power_state_before[0] = '\0';
            goto out;
        }
    }
    xapi_store_rdlock(st);
    rc = read_source(c, kind, vm_ref, &src);
    xapi_store_rdunlock(st);
    if (rc < 0)
        goto out;

    for (unsigned i = 0; i < src.nvbds; i++) {
        const char *vdi = src.vbds[i][XAPI_F_VBD_VDI].s;
        if (!has_disk(src.vbds[i]))
            continue;
        if (is_snapshot_kind(kind) && in_set(ignore_vdis, vdi)) {
            snprintf(src.new_vdi[i], sizeof src.new_vdi[i], "%s", XAPI_NULL_REF);
            continue;
        }
        rc = storage_vdi_clone(c->srv, vdi,
                               is_snapshot_kind(kind) ? STORAGE_SNAPSHOT : kind == KIND_COPY ? STORAGE_COPY
                                                                                              : STORAGE_CLONE,
                               sr_ref, src.new_vdi[i], &c->err);
        if (rc < 0)
            goto out;
    }
    /* A checkpoint of a suspended (or just suspended) VM has its own copy of the memory image. */
    with_memory = kind == KIND_CHECKPOINT && strcmp(src.vm[XAPI_F_VM_power_state].s, "Suspended") == 0;
    if (with_memory) {
        rc = storage_vdi_clone(c->srv, src.vm[XAPI_F_VM_suspend_VDI].s, STORAGE_SNAPSHOT, NULL, suspend_vdi, &c->err);
        if (rc < 0)
            goto out;
    }

    xapi_store_write_begin(st);
    nvm = xapi_obj_create(st, C_VM);
    for (unsigned f = 0; f < C_VM->nfields; f++)
        if (!C_VM->fields[f].derived && !vm_field_is_own((int)f))
            xapi_obj_set(st, nvm, (int)f, xapi_value_copy(&src.vm[f]));
    xapi_obj_set_string(st, nvm, XAPI_F_VM_name_label, new_name);
    if (is_snapshot_kind(kind)) {
        xapi_obj_set_bool(st, nvm, XAPI_F_VM_is_a_snapshot, true);
        xapi_obj_set_bool(st, nvm, XAPI_F_VM_is_a_template, true);
        xapi_obj_set_string(st, nvm, XAPI_F_VM_snapshot_of, vm_ref);
        xapi_obj_set(st, nvm, XAPI_F_VM_snapshot_time, xapi_value_datetime(xapi_wall_seconds()));
        xapi_obj_set(st, nvm, XAPI_F_VM_snapshot_info,
                     snapshot_info(*power_state_before ? power_state_before : src.vm[XAPI_F_VM_power_state].s));
    } else {
        /* A copy of a default template is the user's own. */
        xapi_value oc = xapi_value_copy(&src.vm[XAPI_F_VM_other_config]);
        xapi_struct_remove(&oc, "default_template");
        xapi_obj_set(st, nvm, XAPI_F_VM_other_config, oc);
    }
    xapi_obj_set_string(st, nvm, XAPI_F_VM_power_state, "Halted");
    xapi_obj_set_int(st, nvm, XAPI_F_VM_domid, -1);
    memcpy(new_ref, nvm->ref, sizeof new_ref);
    create_devices(st, &src, new_ref);
    vmops_record_stopped(c->srv, nvm, with_memory);
    if (with_memory)
        xapi_obj_set_string(st, nvm, XAPI_F_VM_suspend_VDI, suspend_vdi);
    rc = xapi_commit(c);
    if (rc == 0)
        log_info("VM %s: %s '%s' made as %s", op.vm_uuid, op_names[kind], new_name, nvm->uuid);
out:
    source_free(&src);
    if (kind == KIND_CHECKPOINT)
        rc = checkpoint_end(c, &op, power_state_before, rc);
    vmops_op_end(c->srv, &op);
    if (rc == 0)
        xapi_out_cstring(c->out, new_ref);
    return rc;
}

static int vm_clone(xapi_call *c) {
    return copy_vm(c, KIND_CLONE, c->args[0].s, c->args[1].s, NULL, NULL);
}

static int vm_copy(xapi_call *c) {
    return copy_vm(c, KIND_COPY, c->args[0].s, c->args[1].s, c->args[2].s, NULL);
}

static int vm_snapshot(xapi_call *c) {
    return copy_vm(c, KIND_SNAPSHOT, c->args[0].s, c->args[1].s, NULL, c->nargs > 2 ? &c->args[2] : NULL);
}

static int vm_checkpoint(xapi_call *c) {
    return copy_vm(c, KIND_CHECKPOINT, c->args[0].s, c->args[1].s, NULL, NULL);
}

/* Fields a revert restores from the snapshot. */
static const int revert_fields[] = {
    XAPI_F_VM_memory_static_max, XAPI_F_VM_memory_dynamic_max, XAPI_F_VM_memory_dynamic_min,
    XAPI_F_VM_memory_static_min, XAPI_F_VM_VCPUs_max, XAPI_F_VM_VCPUs_at_startup, XAPI_F_VM_VCPUs_params,
    XAPI_F_VM_actions_after_shutdown, XAPI_F_VM_actions_after_reboot, XAPI_F_VM_actions_after_crash,
    XAPI_F_VM_PV_bootloader, XAPI_F_VM_PV_kernel, XAPI_F_VM_PV_ramdisk, XAPI_F_VM_PV_args,
    XAPI_F_VM_PV_bootloader_args, XAPI_F_VM_HVM_boot_policy, XAPI_F_VM_HVM_boot_params, XAPI_F_VM_platform,
    XAPI_F_VM_domain_type,
};

static int vm_revert(xapi_call *c) {
    const char *snap_ref = c->args[0].s;
    xapi_store *st = c->srv->store;
    char vm_ref[XAPI_REF_LEN + 1] = "", image[XAPI_REF_LEN + 1] = "";
    source_vm snap = {0};
    xapi_value old_vdis = xapi_value_array();
    xapi_obj *s, *vm;
    vmops_op op = {0};
    int rc;

    xapi_store_rdlock(st);
    rc = xapi_lookup(c, C_VM, snap_ref, &s);
    if (rc == 0 && !s->fields[XAPI_F_VM_is_a_snapshot].b)
        rc = xapi_call_fail(c, "REVERT_ONLY_ALLOWED_ON_SNAPSHOT");
    if (rc == 0) {
        snprintf(vm_ref, sizeof vm_ref, "%s", s->fields[XAPI_F_VM_snapshot_of].s);
        if (!xapi_store_get_class(st, C_VM, vm_ref))
            rc = xapi_call_fail(c, "HANDLE_INVALID", "VM", vm_ref);
    }
    xapi_store_rdunlock(st);
    if (rc < 0)
        goto done;
    rc = vmops_op_begin(c, vm_ref, "revert", false, &op);
    if (rc < 0)
        goto done;

    /* A VM reverts from halted: stop whatever runs. */
    xapi_store_rdlock(st);
    vm = xapi_store_get_class(st, C_VM, vm_ref);
    s = xapi_store_get_class(st, C_VM, snap_ref);
    if (!vm || !s)
        rc = xapi_call_fail(c, "HANDLE_INVALID", "VM", !vm ? vm_ref : snap_ref);
    else {
        const char *ps = vm->fields[XAPI_F_VM_power_state].s;
        int64_t domid = vm->fields[XAPI_F_VM_domid].i;
        source_read(st, s, &snap);
        xapi_store_rdunlock(st);
        rc = vmops_force_halt(c, &op, ps, (int)domid);
        xapi_store_rdlock(st);
    }
    xapi_store_rdunlock(st);
    if (rc < 0)
        goto out;

    for (unsigned i = 0; i < snap.nvbds; i++)
        if (has_disk(snap.vbds[i])) {
            rc = storage_vdi_clone(c->srv, snap.vbds[i][XAPI_F_VBD_VDI].s, STORAGE_CLONE, NULL, snap.new_vdi[i],
                                   &c->err);
            if (rc < 0)
                goto out;
        }
    /* A checkpoint brings the VM back suspended, on a copy of its memory image. */
    if (strcmp(snap.vm[XAPI_F_VM_power_state].s, "Suspended") == 0 &&
        strcmp(snap.vm[XAPI_F_VM_suspend_VDI].s, XAPI_NULL_REF) != 0) {
        rc = storage_vdi_clone(c->srv, snap.vm[XAPI_F_VM_suspend_VDI].s, STORAGE_CLONE, NULL, image, &c->err);
        if (rc < 0)
            goto out;
    }

    xapi_store_write_begin(st);
    vm = xapi_store_get_class(st, C_VM, vm_ref);
    if (!vm) {
        xapi_store_write_abort(st);
        rc = xapi_call_fail(c, "HANDLE_INVALID", "VM", vm_ref);
        goto out;
    }
    for (size_t k = 0; k < sizeof revert_fields / sizeof revert_fields[0]; k++)
        xapi_obj_set(st, vm, revert_fields[k], xapi_value_copy(&snap.vm[revert_fields[k]]));
    /* Each disk of the snapshot replaces the VM's disk in the same slot. */
    for (unsigned i = 0; i < snap.nvbds; i++) {
        const char *slot = snap.vbds[i][XAPI_F_VBD_userdevice].s;
        const xapi_value *vbds = &vm->fields[XAPI_F_VM_VBDs];
        bool replaced = false;

        if (!*snap.new_vdi[i])
            continue;
        for (uint32_t k = 0; k < vbds->n && !replaced; k++) {
            xapi_obj *vbd = xapi_store_get_class(st, C_VBD, vbds->items[k].s);
            if (!vbd || strcmp(vbd->fields[XAPI_F_VBD_userdevice].s, slot) != 0)
                continue;
            if (strcmp(vbd->fields[XAPI_F_VBD_VDI].s, XAPI_NULL_REF) != 0)
                xapi_array_append(&old_vdis, xapi_value_string(vbd->fields[XAPI_F_VBD_VDI].s));
            xapi_obj_set_string(st, vbd, XAPI_F_VBD_VDI, snap.new_vdi[i]);
            replaced = true;
        }
        if (!replaced) {
            xapi_obj *vbd = xapi_obj_create(st, C_VBD);
            for (unsigned f = 0; f < C_VBD->nfields; f++)
                if (!C_VBD->fields[f].derived && !device_field_is_own(C_VBD, (int)f))
                    xapi_obj_set(st, vbd, (int)f, xapi_value_copy(&snap.vbds[i][f]));
            xapi_obj_set_string(st, vbd, XAPI_F_VBD_VM, vm_ref);
            xapi_obj_set_string(st, vbd, XAPI_F_VBD_VDI, snap.new_vdi[i]);
        }
    }
    if (*image) {
        vmops_record_stopped(c->srv, vm, true);
        xapi_obj_set_string(st, vm, XAPI_F_VM_suspend_VDI, image);
    }
    vmops_update_allowed_operations(st, vm);
    rc = xapi_commit(c);
    if (rc < 0)
        goto out;
    /* The replaced disks are no longer anybody's (snapshots have their own copies). */
    for (uint32_t i = 0; i < old_vdis.n; i++) {
        xapi_value params = xapi_value_array(), err = {0};
        xapi_buf b = XAPI_BUF_INIT;
        xapi_out o;

        xapi_out_init(&o, XAPI_FMT_XML, &b);
        xapi_array_append(&params, xapi_value_string(c->session));
        xapi_array_append(&params, xapi_value_copy(&old_vdis.items[i]));
        if (xapi_invoke(c->srv, NULL, "VDI.destroy", &params, &o, &err, NULL) < 0)
            log_warning("revert: old disk %s not destroyed: %s", old_vdis.items[i].s,
                        err.kind == XAPI_V_ARRAY ? err.items[0].s : "?");
        xapi_value_free(&params);
        xapi_value_free(&err);
        xapi_buf_free(&b);
    }
    log_info("VM %s reverted to snapshot %s", op.vm_uuid, snap_ref);
out:
    vmops_op_end(c->srv, &op);
done:
    source_free(&snap);
    xapi_value_free(&old_vdis);
    if (rc == 0)
        xapi_out_void(c->out);
    return rc;
}

/* ---- provision --------------------------------------------------------------------- */

typedef struct provision_disk {
    char device[16];
    int64_t size;
    char sr[XAPI_UUID_LEN + 1];
    bool bootable;
    char type[16];
    char vdi[XAPI_REF_LEN + 1];
} provision_disk;

/* other_config:disks, e.g. <provision><disk device="0" size="8589934592" sr="" bootable="true" type="system"/></provision> */
static int parse_disks(const char *xml, provision_disk *disks, unsigned *ret_n) {
    xmlDocPtr doc = NULL;
    xmlNodePtr root, n;
    unsigned count = 0;
    int rc = 0;

    if (strstr(xml, "<!"))
        return -EINVAL;
    doc = xmlReadMemory(xml, (int)strlen(xml), "disks.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc)
        return -EINVAL;
    root = xmlDocGetRootElement(doc);
    if (!root || xmlStrcmp(root->name, BAD_CAST "provision") != 0) {
        rc = -EINVAL;
        goto out;
    }
    for (n = root->children; n; n = n->next) {
        xmlChar *dev, *size, *sr, *boot, *type;
        provision_disk *d;

        if (n->type != XML_ELEMENT_NODE || xmlStrcmp(n->name, BAD_CAST "disk") != 0)
            continue;
        if (count == MAX_DISKS) {
            rc = -E2BIG;
            goto out;
        }
        d = &disks[count];
        memset(d, 0, sizeof *d);
        dev = xmlGetProp(n, BAD_CAST "device");
        size = xmlGetProp(n, BAD_CAST "size");
        sr = xmlGetProp(n, BAD_CAST "sr");
        boot = xmlGetProp(n, BAD_CAST "bootable");
        type = xmlGetProp(n, BAD_CAST "type");
        snprintf(d->device, sizeof d->device, "%s", dev ? (char *)dev : "");
        d->size = size ? strtoll((char *)size, NULL, 10) : 0;
        snprintf(d->sr, sizeof d->sr, "%s", sr ? (char *)sr : "");
        d->bootable = boot && xmlStrcmp(boot, BAD_CAST "true") == 0;
        snprintf(d->type, sizeof d->type, "%s", type ? (char *)type : "system");
        xmlFree(dev);
        xmlFree(size);
        xmlFree(sr);
        xmlFree(boot);
        xmlFree(type);
        if (vmops_parse_device_number(d->device) < 0 || d->size <= 0) {
            rc = -EINVAL;
            goto out;
        }
        count++;
    }
    *ret_n = count;
out:
    xmlFreeDoc(doc);
    return rc;
}

static int vm_provision(xapi_call *c) {
    const char *vm_ref = c->args[0].s;
    xapi_store *st = c->srv->store;
    provision_disk *disks = xapi_calloc(MAX_DISKS, sizeof *disks);
    unsigned n = 0;
    char *xml = NULL, *name = NULL, default_sr[XAPI_REF_LEN + 1] = XAPI_NULL_REF;
    xapi_obj *vm, *pool;
    vmops_op op = {0};
    int rc;

    rc = vmops_op_begin(c, vm_ref, "provision", false, &op);
    if (rc < 0)
        goto done;
    xapi_store_rdlock(st);
    vm = xapi_store_get_class(st, C_VM, vm_ref);
    if (!vm)
        rc = xapi_call_fail(c, "HANDLE_INVALID", "VM", vm_ref);
    else if (!vm->fields[XAPI_F_VM_is_a_template].b)
        rc = xapi_call_fail(c, "PROVISION_ONLY_ALLOWED_ON_TEMPLATE");
    else {
        const xapi_value *d = xapi_struct_get(&vm->fields[XAPI_F_VM_other_config], "disks");
        xml = d ? xapi_strdup(d->s) : NULL;
        name = xapi_strdup(vm->fields[XAPI_F_VM_name_label].s);
        pool = xapi_store_get_class(st, &xapi_classes[XAPI_C_pool], c->srv->pool_ref);
        if (pool)
            snprintf(default_sr, sizeof default_sr, "%s", pool->fields[XAPI_F_pool_default_SR].s);
    }
    xapi_store_rdunlock(st);
    if (rc < 0 || !xml)
        goto out;
    if (parse_disks(xml, disks, &n) < 0) {
        rc = xapi_call_fail(c, "INVALID_VALUE", "other_config:disks", xml);
        goto out;
    }
    for (unsigned i = 0; i < n; i++) {
        char sr_ref[XAPI_REF_LEN + 1], label[300];

        snprintf(sr_ref, sizeof sr_ref, "%s", default_sr);
        if (*disks[i].sr) {
            xapi_obj *sr;
            xapi_store_rdlock(st);
            sr = xapi_store_get_by_uuid(st, &xapi_classes[XAPI_C_SR], disks[i].sr);
            if (sr)
                snprintf(sr_ref, sizeof sr_ref, "%s", sr->ref);
            xapi_store_rdunlock(st);
            if (!sr) {
                rc = xapi_call_fail(c, "UUID_INVALID", "SR", disks[i].sr);
                goto out;
            }
        }
        if (strcmp(sr_ref, XAPI_NULL_REF) == 0) {
            rc = xapi_call_fail(c, "VM_REQUIRES_SR", vm_ref, XAPI_NULL_REF);
            goto out;
        }
        snprintf(label, sizeof label, "%s %s", name, disks[i].device);
        rc = storage_vdi_create(c->srv, sr_ref, label, disks[i].size, disks[i].type, disks[i].vdi, &c->err);
        if (rc < 0)
            goto out;
    }
    xapi_store_write_begin(st);
    vm = xapi_store_get_class(st, C_VM, vm_ref);
    if (vm) {
        xapi_value oc = xapi_value_copy(&vm->fields[XAPI_F_VM_other_config]);
        for (unsigned i = 0; i < n; i++) {
            xapi_obj *vbd = xapi_obj_create(st, C_VBD);
            xapi_obj_set_string(st, vbd, XAPI_F_VBD_VM, vm_ref);
            xapi_obj_set_string(st, vbd, XAPI_F_VBD_VDI, disks[i].vdi);
            xapi_obj_set_string(st, vbd, XAPI_F_VBD_userdevice, disks[i].device);
            xapi_obj_set_bool(st, vbd, XAPI_F_VBD_bootable, disks[i].bootable);
            xapi_obj_set_string(st, vbd, XAPI_F_VBD_mode, "RW");
            xapi_obj_set_string(st, vbd, XAPI_F_VBD_type, "Disk");
            xapi_obj_set_bool(st, vbd, XAPI_F_VBD_unpluggable, true);
        }
        /* Provisioned once: the recipe goes. */
        xapi_struct_remove(&oc, "disks");
        xapi_obj_set(st, vm, XAPI_F_VM_other_config, oc);
    }
    rc = xapi_commit(c);
out:
    vmops_op_end(c->srv, &op);
done:
    free(disks);
    free(xml);
    free(name);
    if (rc == 0)
        xapi_out_void(c->out);
    return rc;
}

const xapi_handler vmops_copy_handlers[] = {
    {"VM", "clone", vm_clone},
    {"VM", "copy", vm_copy},
    {"VM", "snapshot", vm_snapshot},
    {"VM", "checkpoint", vm_checkpoint},
    {"VM", "revert", vm_revert},
    {"VM", "provision", vm_provision},
    {NULL, NULL, NULL},
};
