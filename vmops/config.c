/* VM, VBD, VIF records to the backend's flat domain description. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "network/network.h"
#include "storage/storage.h"
#include "vmops/config.h"
#include "xapi/error.h"

#define MAX_DEVICE_NUMBER 255

static const char *map_get(const xapi_value *m, const char *key) {
    const xapi_value *v = m->kind == XAPI_V_STRUCT ? xapi_struct_get(m, key) : NULL;
    return v && v->kind == XAPI_V_STRING ? v->s : NULL;
}

static char *dup_or_null(const char *s) {
    return s && *s ? xapi_strdup(s) : NULL;
}

vmops_domain_type vmops_domain_type_of(const xapi_obj *vm) {
    const char *t = vm->fields[XAPI_F_VM_domain_type].s;

    if (strcmp(t, "hvm") == 0)
        return VMOPS_HVM;
    if (strcmp(t, "pvh") == 0)
        return VMOPS_PVH;
    if (strcmp(t, "pv") == 0 || strcmp(t, "pv_in_pvh") == 0)
        return VMOPS_PV;
    /* "unspecified": the older rule, HVM when there is an HVM boot policy. */
    return *vm->fields[XAPI_F_VM_HVM_boot_policy].s ? VMOPS_HVM : VMOPS_PV;
}

static vmops_action normal_exit_action(const char *s) {
    return strcmp(s, "restart") == 0 ? VMOPS_ACTION_RESTART : VMOPS_ACTION_DESTROY;
}

static vmops_action crash_action(const char *s) {
    if (strcmp(s, "restart") == 0)
        return VMOPS_ACTION_RESTART;
    if (strcmp(s, "preserve") == 0)
        return VMOPS_ACTION_PRESERVE;
    if (strcmp(s, "rename_restart") == 0)
        return VMOPS_ACTION_RENAME_RESTART;
    if (strcmp(s, "coredump_and_destroy") == 0)
        return VMOPS_ACTION_COREDUMP_DESTROY;
    if (strcmp(s, "coredump_and_restart") == 0)
        return VMOPS_ACTION_COREDUMP_RESTART;
    return VMOPS_ACTION_DESTROY;
}

int vmops_parse_device_number(const char *s) {
    char *end = NULL;
    long n;

    if (!s || !*s)
        return -1;
    n = strtol(s, &end, 10);
    if (*end || n < 0 || n > MAX_DEVICE_NUMBER)
        return -1;
    return (int)n;
}

char *vmops_vdev_name(vmops_domain_type type, int devid) {
    const char *prefix = type == VMOPS_HVM && devid < 4 ? "hd" : "xvd";
    char *s = NULL;
    int r;

    if (devid < 26)
        r = asprintf(&s, "%s%c", prefix, 'a' + devid);
    else
        r = asprintf(&s, "%s%c%c", prefix, 'a' + devid / 26 - 1, 'a' + devid % 26);
    if (r < 0)
        xapi_oom();
    return s;
}

int vmops_disk_from_vbd(xapi_server *srv, const xapi_obj *vm, const xapi_obj *vbd, vmops_disk *ret, xapi_value *err) {
    vmops_domain_type type = vmops_domain_type_of(vm);
    const char *vdi_ref = vbd->fields[XAPI_F_VBD_VDI].s;
    xapi_obj *vdi;
    int devid = vmops_parse_device_number(vbd->fields[XAPI_F_VBD_userdevice].s);
    int rc;

    memset(ret, 0, sizeof *ret);
    if (devid < 0)
        return xapi_fail(err, "INVALID_DEVICE", vbd->fields[XAPI_F_VBD_userdevice].s, NULL);
    snprintf(ret->vbd_uuid, sizeof ret->vbd_uuid, "%s", vbd->uuid);
    ret->devid = devid;
    ret->vdev = vmops_vdev_name(type, devid);
    ret->cdrom = strcmp(vbd->fields[XAPI_F_VBD_type].s, "CD") == 0;
    ret->readonly = ret->cdrom || strcmp(vbd->fields[XAPI_F_VBD_mode].s, "RO") == 0;
    ret->bootable = vbd->fields[XAPI_F_VBD_bootable].b;
    vdi = xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_VDI], vdi_ref);
    if (vbd->fields[XAPI_F_VBD_empty].b || !vdi) {
        if (!ret->cdrom && !vbd->fields[XAPI_F_VBD_empty].b && strcmp(vdi_ref, XAPI_NULL_REF) != 0) {
            free(ret->vdev);
            ret->vdev = NULL;
            return xapi_fail(err, "HANDLE_INVALID", "VDI", vdi_ref, NULL);
        }
        return 0; /* an empty CD drive */
    }
    rc = storage_vdi_attach_info(srv, vdi, &ret->target, &ret->format, err);
    if (rc < 0) {
        free(ret->vdev);
        ret->vdev = NULL;
        return rc;
    }
    if (vdi->fields[XAPI_F_VDI_read_only].b)
        ret->readonly = true;
    return 0;
}

int vmops_nic_from_vif(xapi_server *srv, const xapi_obj *vif, vmops_nic *ret, xapi_value *err) {
    const xapi_value *qos = &vif->fields[XAPI_F_VIF_qos_algorithm_params];
    int devid = vmops_parse_device_number(vif->fields[XAPI_F_VIF_device].s);
    xapi_obj *net;

    memset(ret, 0, sizeof *ret);
    if (devid < 0)
        return xapi_fail(err, "INVALID_DEVICE", vif->fields[XAPI_F_VIF_device].s, NULL);
    net = xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_network], vif->fields[XAPI_F_VIF_network].s);
    if (!net)
        return xapi_fail(err, "HANDLE_INVALID", "network", vif->fields[XAPI_F_VIF_network].s, NULL);
    snprintf(ret->vif_uuid, sizeof ret->vif_uuid, "%s", vif->uuid);
    ret->devid = devid;
    snprintf(ret->mac, sizeof ret->mac, "%s", vif->fields[XAPI_F_VIF_MAC].s);
    ret->bridge = network_bridge_of(srv, net->ref);
    ret->mtu = vif->fields[XAPI_F_VIF_MTU].i;
    if (strcmp(vif->fields[XAPI_F_VIF_qos_algorithm_type].s, "ratelimit") == 0 && map_get(qos, "kbps"))
        ret->rate_kbps = strtoll(map_get(qos, "kbps"), NULL, 10);
    return 0;
}

int vmops_build_config(xapi_server *srv, const xapi_obj *vm, vmops_domain_config *ret, xapi_value *err) {
    xapi_store *st = srv->store;
    vmops_domain_config c = {0};
    const xapi_value *platform = &vm->fields[XAPI_F_VM_platform];
    const xapi_value *vbds = &vm->fields[XAPI_F_VM_VBDs], *vifs = &vm->fields[XAPI_F_VM_VIFs];
    int rc = 0;

    snprintf(c.uuid, sizeof c.uuid, "%s", vm->uuid);
    c.name = xapi_strdup(vm->fields[XAPI_F_VM_name_label].s);
    c.type = vmops_domain_type_of(vm);
    c.memory_static_max = vm->fields[XAPI_F_VM_memory_static_max].i;
    c.memory_dynamic_max = vm->fields[XAPI_F_VM_memory_dynamic_max].i;
    c.memory_dynamic_min = vm->fields[XAPI_F_VM_memory_dynamic_min].i;
    c.memory_target = c.memory_dynamic_max;
    c.vcpus_max = vm->fields[XAPI_F_VM_VCPUs_max].i;
    c.vcpus_at_startup = vm->fields[XAPI_F_VM_VCPUs_at_startup].i;
    c.kernel = dup_or_null(vm->fields[XAPI_F_VM_PV_kernel].s);
    c.ramdisk = dup_or_null(vm->fields[XAPI_F_VM_PV_ramdisk].s);
    c.cmdline = dup_or_null(vm->fields[XAPI_F_VM_PV_args].s);
    c.bootloader = dup_or_null(vm->fields[XAPI_F_VM_PV_bootloader].s);
    c.bootloader_args = dup_or_null(vm->fields[XAPI_F_VM_PV_bootloader_args].s);
    c.boot_order = dup_or_null(map_get(&vm->fields[XAPI_F_VM_HVM_boot_params], "order"));
    c.on_poweroff = normal_exit_action(vm->fields[XAPI_F_VM_actions_after_shutdown].s);
    c.on_reboot = normal_exit_action(vm->fields[XAPI_F_VM_actions_after_reboot].s);
    c.on_crash = crash_action(vm->fields[XAPI_F_VM_actions_after_crash].s);
    if (platform->kind == XAPI_V_STRUCT && platform->n > 0) {
        c.platform_keys = xapi_calloc(platform->n, sizeof *c.platform_keys);
        c.platform_values = xapi_calloc(platform->n, sizeof *c.platform_values);
        for (uint32_t i = 0; i < platform->n; i++) {
            c.platform_keys[i] = xapi_strdup(platform->members[i].name);
            c.platform_values[i] = xapi_strdup(xapi_value_str(&platform->members[i].value));
        }
        c.nplatform = platform->n;
    }

    c.disks = xapi_calloc(vbds->n + 1, sizeof *c.disks);
    for (uint32_t i = 0; i < vbds->n; i++) {
        xapi_obj *vbd = xapi_store_get_class(st, &xapi_classes[XAPI_C_VBD], vbds->items[i].s);
        if (!vbd)
            continue;
        for (size_t k = 0; k < c.ndisks; k++)
            if (c.disks[k].devid == vmops_parse_device_number(vbd->fields[XAPI_F_VBD_userdevice].s)) {
                rc = xapi_fail(err, "VM_DUPLICATE_VBD_DEVICE", vm->ref, vbd->ref,
                               vbd->fields[XAPI_F_VBD_userdevice].s, NULL);
                goto fail;
            }
        rc = vmops_disk_from_vbd(srv, vm, vbd, &c.disks[c.ndisks], err);
        if (rc < 0)
            goto fail;
        c.ndisks++;
    }
    c.nics = xapi_calloc(vifs->n + 1, sizeof *c.nics);
    for (uint32_t i = 0; i < vifs->n; i++) {
        xapi_obj *vif = xapi_store_get_class(st, &xapi_classes[XAPI_C_VIF], vifs->items[i].s);
        if (!vif)
            continue;
        rc = vmops_nic_from_vif(srv, vif, &c.nics[c.nnics], err);
        if (rc < 0)
            goto fail;
        c.nnics++;
    }
    *ret = c;
    return 0;
fail:
    vmops_domain_config_free(&c);
    return rc;
}
