/* VM lifecycle with xapi's semantics over the backend interface. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/log.h"
#include "network/network.h"
#include "storage/storage.h"
#include "vmops/config.h"
#include "vmops/console.h"
#include "vmops/machined.h"
#include "vmops/oplock.h"
#include "vmops/vm_internal.h"
#include "vmops/vmops.h"
#include "xapi/error.h"
#include "xapi/task.h"

#define MIN_GUEST_MEMORY (16LL << 20)

static const xapi_class *C_VM = &xapi_classes[XAPI_C_VM];
static const xapi_class *C_VBD = &xapi_classes[XAPI_C_VBD];
static const xapi_class *C_VIF = &xapi_classes[XAPI_C_VIF];

/* ---- small helpers ------------------------------------------------------- */

char *vmops_lower(const char *s) {
    char *r = xapi_strdup(s);
    for (char *p = r; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return r;
}

static const struct {
    unsigned set;
    const char *name;      /* as the record has it */
    const char *lowercase; /* as VM_BAD_POWER_STATE lists it */
} power_states[] = {
    {VMOPS_PS_HALTED, "Halted", "halted"},
    {VMOPS_PS_RUNNING, "Running", "running"},
    {VMOPS_PS_PAUSED, "Paused", "paused"},
    {VMOPS_PS_SUSPENDED, "Suspended", "suspended"},
};

bool vmops_power_state_in(const char *power_state, unsigned states) {
    for (size_t i = 0; i < sizeof power_states / sizeof power_states[0]; i++)
        if ((states & power_states[i].set) && strcmp(power_state, power_states[i].name) == 0)
            return true;
    return false;
}

int vmops_check_power_state(xapi_call *c, const char *vm_ref, const char *power_state, unsigned allowed) {
    char expected[64] = "", *actual;
    int rc;

    if (vmops_power_state_in(power_state, allowed))
        return 0;
    for (size_t i = 0; i < sizeof power_states / sizeof power_states[0]; i++)
        if (allowed & power_states[i].set)
            snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s%s", *expected ? ", " : "",
                     power_states[i].lowercase);
    actual = vmops_lower(power_state);
    rc = xapi_call_fail(c, "VM_BAD_POWER_STATE", vm_ref, expected, actual);
    free(actual);
    return rc;
}

static char *i64(int64_t v) {
    char *s = NULL;
    if (asprintf(&s, "%" PRId64, v) < 0)
        xapi_oom();
    return s;
}

static int not_enough_memory(xapi_call *c, int64_t needed) {
    char *n = i64(needed), *a = i64(c->srv->backend->host_memory_free);
    int rc = xapi_call_fail(c, "HOST_NOT_ENOUGH_FREE_MEMORY", n, a);

    free(n);
    free(a);
    return rc;
}

/* A backend failure as an API error. */
static int backend_fail(xapi_call *c, const char *what, int rc, char *msg, int64_t needed) {
    int r;

    if (rc == -ENOMEM && needed > 0) {
        r = not_enough_memory(c, needed);
    } else {
        char *text = NULL;
        if (asprintf(&text, "%s: %s", what, msg ? msg : strerror(-rc)) < 0)
            xapi_oom();
        r = xapi_call_fail(c, "INTERNAL_ERROR", text);
        free(text);
    }
    free(msg);
    return r;
}

/* Whether the domain is gone, or has shut down and waits to be dealt with. */
static bool domain_stopped(vmops_backend *b, int domid) {
    vmops_domain_info *doms = NULL;
    bool stopped = true;
    size_t n = 0;

    if (b->ops->list(b, &doms, &n) < 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (doms[i].domid == domid)
            stopped = doms[i].state == VMOPS_STATE_SHUTDOWN || doms[i].state == VMOPS_STATE_DYING;
    free(doms);
    return stopped;
}

/* A backend failure on the VM's running domain. When the domain stopped
 * meanwhile, the guest halted, rebooted or crashed under the operation (its
 * own handling follows on the VM's lock): the caller lost a race, and is told
 * so the way xapi tells it, VM_BAD_POWER_STATE with the states the operation
 * needs (from, VMOPS_PS_*). */
static int domain_op_fail(xapi_call *c, const char *vm_ref, int domid, unsigned from, const char *what, int rc,
                          char *msg) {
    if (domain_stopped(c->srv->backend, domid)) {
        log_info("VM %s: %s lost a race with its guest (domain %d stopped): %s", vm_ref, what, domid,
                 msg ? msg : strerror(-rc));
        free(msg);
        return vmops_check_power_state(c, vm_ref, "Halted", from);
    }
    return backend_fail(c, what, rc, msg, 0);
}

/* A failure to build the VM's domain (create, resume) as an API error: a
 * device model missing or not started and a memory too small for the kernel
 * have xapi's codes for them. */
static int build_fail(xapi_call *c, const char *vm_ref, const char *what, int rc, char *msg, int64_t needed) {
    if (rc == -ENOEXEC) {
        rc = xapi_call_fail(c, "FAILED_TO_START_EMULATOR", vm_ref, "qemu-dm", msg ? msg : "device model missing");
        free(msg);
        return rc;
    }
    if (rc == -EFBIG) { /* the VM's own memory settings (xapi checks them before the build) */
        log_info("VM %s: %s: %s", vm_ref, what, msg ? msg : "memory too small for the kernel");
        free(msg);
        return xapi_call_fail(c, "VM_MEMORY_SIZE_TOO_LOW", vm_ref);
    }
    if (rc == -EMEDIUMTYPE) { /* a disk the backend cannot attach: SM's VDIUnavailable, as xapi reports it */
        char *text = NULL;
        if (asprintf(&text, "The VDI is not available [opterr=%s]", msg ? msg : "unsupported disk format") < 0)
            xapi_oom();
        rc = xapi_call_fail(c, "SR_BACKEND_FAILURE_46", "", text, "");
        free(text);
        free(msg);
        return rc;
    }
    return backend_fail(c, what, rc, msg, needed);
}

/* Where VMs suspended by earlier versions keep their image: a file in the state directory. */
static char *legacy_image_path(xapi_server *srv, const char *vm_uuid) {
    char *p = NULL;

    if (asprintf(&p, "%s/suspend/%s.img", srv->config->state_dir, vm_uuid) < 0)
        xapi_oom();
    return p;
}

/* Room for a save image: the guest's memory at most, plus libxl's own records. */
#define SUSPEND_IMAGE_OVERHEAD (16LL << 20)

/* The SR for a VM's suspend image, as xapi chooses it: the VM's suspend_SR,
 * else the pool's suspend_image_SR, else its default SR. Store lock held. */
static const char *suspend_sr(xapi_server *srv, const xapi_obj *vm) {
    const xapi_class *sr_cls = &xapi_classes[XAPI_C_SR];
    const xapi_obj *pool = xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_pool], srv->pool_ref);
    const char *candidates[] = {vm->fields[XAPI_F_VM_suspend_SR].s,
                                pool ? pool->fields[XAPI_F_pool_suspend_image_SR].s : XAPI_NULL_REF,
                                pool ? pool->fields[XAPI_F_pool_default_SR].s : XAPI_NULL_REF};

    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (xapi_store_get_class(srv->store, sr_cls, candidates[i]))
            return candidates[i];
    return NULL;
}

int vmops_suspend_image_create(xapi_call *c, const char *vm_ref, char ret_vdi[XAPI_REF_LEN + 1], char **ret_path) {
    xapi_server *srv = c->srv;
    char sr[XAPI_REF_LEN + 1] = "", vdi[XAPI_REF_LEN + 1], *path = NULL, *format = NULL, *name = NULL;
    const char *chosen;
    int64_t size = 0;
    xapi_obj *vm, *v;
    int rc;

    xapi_store_rdlock(srv->store);
    vm = xapi_store_get_class(srv->store, C_VM, vm_ref);
    if (vm && (chosen = suspend_sr(srv, vm))) {
        snprintf(sr, sizeof sr, "%s", chosen);
        size = vm->fields[XAPI_F_VM_memory_static_max].i + SUSPEND_IMAGE_OVERHEAD;
        if (asprintf(&name, "Suspend image of %s", vm->fields[XAPI_F_VM_name_label].s) < 0)
            xapi_oom();
    }
    xapi_store_rdunlock(srv->store);
    if (!sr[0])
        return xapi_call_fail(c, "VM_NO_SUSPEND_SR", vm_ref);
    rc = storage_vdi_create(srv, sr, name, size, "suspend", vdi, &c->err);
    free(name);
    if (rc < 0)
        return rc;
    xapi_store_rdlock(srv->store);
    v = xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_VDI], vdi);
    rc = v ? storage_vdi_attach_info(srv, v, &path, &format, &c->err) : xapi_call_fail(c, "HANDLE_INVALID", "VDI", vdi);
    xapi_store_rdunlock(srv->store);
    /* The backends write the image as plain bytes: into a VHD (an ext SR) they would destroy it. */
    if (rc == 0 && strcmp(format, "raw") != 0) {
        free(path);
        path = NULL;
        rc = xapi_call_fail(c, "SR_OPERATION_NOT_SUPPORTED", sr);
    }
    free(format);
    if (rc < 0) {
        xapi_value ignored = {0};
        storage_vdi_destroy(srv, vdi, &ignored);
        xapi_value_free(&ignored);
        return rc;
    }
    memcpy(ret_vdi, vdi, XAPI_REF_LEN + 1);
    *ret_path = path;
    return 0;
}

int vmops_suspend_image_find(xapi_server *srv, const xapi_obj *vm, char ret_vdi[XAPI_REF_LEN + 1], char **ret_path) {
    const xapi_obj *vdi = xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_VDI], vm->fields[XAPI_F_VM_suspend_VDI].s);
    char *path = NULL, *format = NULL;
    xapi_value err = {0};
    int rc;

    if (!vdi) {
        path = legacy_image_path(srv, vm->uuid);
        if (access(path, F_OK) < 0) {
            free(path);
            return -ENOENT;
        }
        ret_vdi[0] = '\0';
        *ret_path = path;
        return 0;
    }
    rc = storage_vdi_attach_info(srv, vdi, &path, &format, &err);
    xapi_value_free(&err);
    free(format);
    if (rc < 0 || access(path, F_OK) < 0) {
        free(path);
        return -ENOENT;
    }
    memcpy(ret_vdi, vdi->ref, XAPI_REF_LEN + 1);
    *ret_path = path;
    return 0;
}

/* vmops_suspend_image_find of the VM vm_ref, taking the store lock. */
static int find_suspend_image(xapi_server *srv, const char *vm_ref, char ret_vdi[XAPI_REF_LEN + 1], char **ret_path) {
    xapi_obj *vm;
    int rc;

    xapi_store_rdlock(srv->store);
    vm = xapi_store_get_class(srv->store, C_VM, vm_ref);
    rc = vm ? vmops_suspend_image_find(srv, vm, ret_vdi, ret_path) : -ENOENT;
    xapi_store_rdunlock(srv->store);
    return rc;
}

void vmops_suspend_image_drop(xapi_server *srv, const char *vdi_ref, const char *path) {
    xapi_value err = {0};

    if (!vdi_ref[0]) {
        unlink(path);
        return;
    }
    if (storage_vdi_destroy(srv, vdi_ref, &err) < 0)
        log_warning("suspend image VDI %s not destroyed: %s", vdi_ref,
                    err.kind == XAPI_V_ARRAY && err.n > 0 ? err.items[0].s : "?");
    xapi_value_free(&err);
}

typedef struct vm_view {
    char power_state[16];
    int64_t domid;
    bool is_template, is_snapshot, is_control_domain;
    int64_t memory_target;
} vm_view;

static int view_vm(xapi_call *c, const char *ref, vm_view *ret) {
    xapi_obj *vm;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, C_VM, ref, &vm);
    if (rc == 0) {
        snprintf(ret->power_state, sizeof ret->power_state, "%s", vm->fields[XAPI_F_VM_power_state].s);
        ret->domid = vm->fields[XAPI_F_VM_domid].i;
        ret->is_template = vm->fields[XAPI_F_VM_is_a_template].b;
        ret->is_snapshot = vm->fields[XAPI_F_VM_is_a_snapshot].b;
        ret->is_control_domain = vm->fields[XAPI_F_VM_is_control_domain].b;
        ret->memory_target = vm->fields[XAPI_F_VM_memory_dynamic_max].i;
    }
    xapi_store_rdunlock(c->srv->store);
    return rc;
}

int vmops_check_memory(xapi_value *err, int64_t smin, int64_t dmin, int64_t dmax, int64_t smax) {
    if (!(smin <= dmin && dmin <= dmax && dmax <= smax))
        return xapi_fail(err, "MEMORY_CONSTRAINT_VIOLATION",
                         "Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max", NULL);
    if (smin < 0)
        return xapi_fail(err, "MEMORY_CONSTRAINT_VIOLATION", "Memory limits must be positive", NULL);
    return 0;
}

static int check_vm_memory(xapi_call *c, const xapi_obj *vm) {
    return vmops_check_memory(&c->err, vm->fields[XAPI_F_VM_memory_static_min].i,
                              vm->fields[XAPI_F_VM_memory_dynamic_min].i, vm->fields[XAPI_F_VM_memory_dynamic_max].i,
                              vm->fields[XAPI_F_VM_memory_static_max].i);
}

/* ---- recording what happened ---------------------------------------------- */

static xapi_obj *metrics_of(xapi_store *st, xapi_obj *vm) {
    xapi_obj *m = xapi_store_get_class(st, &xapi_classes[XAPI_C_VM_metrics], vm->fields[XAPI_F_VM_metrics].s);

    if (!m) {
        m = xapi_obj_create(st, &xapi_classes[XAPI_C_VM_metrics]);
        xapi_obj_set_string(st, vm, XAPI_F_VM_metrics, m->ref);
    }
    return m;
}

/* VM_metrics.state is a string set in the datamodel. */
static void set_metrics_state(xapi_store *st, xapi_obj *m, const char *state) {
    xapi_value v = xapi_value_array();
    xapi_array_append(&v, xapi_value_string(state));
    xapi_obj_set(st, m, XAPI_F_VM_metrics_state, v);
}

static void update_host_memory(xapi_server *srv) {
    xapi_store *st = srv->store;
    xapi_obj *h = xapi_store_get_class(st, &xapi_classes[XAPI_C_host], srv->host_ref);
    xapi_obj *m = h ? xapi_store_get_class(st, &xapi_classes[XAPI_C_host_metrics], h->fields[XAPI_F_host_metrics].s)
                    : NULL;

    if (m) {
        xapi_obj_set_int(st, m, XAPI_F_host_metrics_memory_free, srv->backend->host_memory_free);
        xapi_obj_set(st, m, XAPI_F_host_metrics_last_updated, xapi_value_datetime(xapi_wall_seconds()));
    }
}

/* A disk attached or not changes what its VDI allows (write lock held). */
static void update_vdi_of(xapi_server *srv, xapi_obj *vbd) {
    xapi_obj *vdi = xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_VDI], vbd->fields[XAPI_F_VBD_VDI].s);
    if (vdi)
        storage_vdi_update_allowed_operations(srv, vdi);
}

/* plumb: the VIFs' backend devices are set up or cleared here, under the
 * lock (the daemon's start, copies); vmops_record does it without the lock. */
static void set_devices_attached(xapi_server *srv, xapi_obj *vm, bool attached, bool plumb) {
    xapi_store *st = srv->store;
    vmops_domain_type type = vmops_domain_type_of(vm);
    const xapi_value *vbds = &vm->fields[XAPI_F_VM_VBDs], *vifs = &vm->fields[XAPI_F_VM_VIFs];

    for (uint32_t i = 0; i < vbds->n; i++) {
        xapi_obj *vbd = xapi_store_get_class(st, C_VBD, vbds->items[i].s);
        int devid;
        if (!vbd)
            continue;
        xapi_obj_set_bool(st, vbd, XAPI_F_VBD_currently_attached, attached);
        update_vdi_of(srv, vbd);
        devid = vmops_parse_device_number(vbd->fields[XAPI_F_VBD_userdevice].s);
        if (attached && devid >= 0) {
            char *vdev = vmops_vdev_name(type, devid);
            xapi_obj_set_string(st, vbd, XAPI_F_VBD_device, vdev);
            free(vdev);
        }
    }
    for (uint32_t i = 0; i < vifs->n; i++) {
        xapi_obj *vif = xapi_store_get_class(st, C_VIF, vifs->items[i].s);
        if (!vif)
            continue;
        if (plumb && !attached && vif->fields[XAPI_F_VIF_currently_attached].b)
            network_vif_attached_changed(srv, vm, vif, false);
        xapi_obj_set_bool(st, vif, XAPI_F_VIF_currently_attached, attached);
        if (plumb && attached)
            network_vif_attached_changed(srv, vm, vif, true);
    }
}

/* The VM runs (or is paused) as domid. Write lock held. */
static void record_running(xapi_server *srv, xapi_obj *vm, int domid, bool paused, int64_t memory, bool plumb) {
    xapi_store *st = srv->store;
    xapi_obj *m = metrics_of(st, vm), *g;
    int64_t now = xapi_wall_seconds();

    xapi_obj_set_string(st, vm, XAPI_F_VM_power_state, paused ? "Paused" : "Running");
    xapi_obj_set_int(st, vm, XAPI_F_VM_domid, domid);
    xapi_obj_set_string(st, vm, XAPI_F_VM_resident_on, srv->host_ref);
    xapi_obj_set_int(st, vm, XAPI_F_VM_memory_target, memory);
    set_metrics_state(st, m, paused ? "paused" : "running");
    xapi_obj_set_int(st, m, XAPI_F_VM_metrics_memory_actual, memory);
    xapi_obj_set_int(st, m, XAPI_F_VM_metrics_VCPUs_number, vm->fields[XAPI_F_VM_VCPUs_at_startup].i);
    xapi_obj_set(st, m, XAPI_F_VM_metrics_last_updated, xapi_value_datetime(now));
    xapi_obj_set_string(st, m, XAPI_F_VM_metrics_current_domain_type,
                        vmops_domain_type_of(vm) == VMOPS_HVM   ? "hvm"
                        : vmops_domain_type_of(vm) == VMOPS_PVH ? "pvh"
                                                                : "pv");
    g = xapi_store_get_class(st, &xapi_classes[XAPI_C_VM_guest_metrics], vm->fields[XAPI_F_VM_guest_metrics].s);
    if (!g) {
        g = xapi_obj_create(st, &xapi_classes[XAPI_C_VM_guest_metrics]);
        xapi_obj_set_string(st, vm, XAPI_F_VM_guest_metrics, g->ref);
    }
    xapi_obj_set_bool(st, g, XAPI_F_VM_guest_metrics_live, !paused);
    xapi_obj_set(st, g, XAPI_F_VM_guest_metrics_last_updated, xapi_value_datetime(now));
    set_devices_attached(srv, vm, true, plumb);
    vmops_console_ensure(srv, vm);
    if (plumb) /* else vmops_record links it, without the lock (a xenstore read, file system calls) */
        vmops_console_log_link(srv, vm->uuid, (int)domid);
    vmops_machined_running(vm->uuid, vm->fields[XAPI_F_VM_name_label].s, domid);
    update_host_memory(srv);
    vmops_update_allowed_operations(st, vm);
}

void vmops_record_running(xapi_server *srv, xapi_obj *vm, int domid, bool paused, int64_t memory) {
    record_running(srv, vm, domid, paused, memory, true);
}

void vmops_record_started(xapi_server *srv, xapi_obj *vm) {
    xapi_obj *m = metrics_of(srv->store, vm);
    xapi_obj_set(srv->store, m, XAPI_F_VM_metrics_start_time, xapi_value_datetime(xapi_wall_seconds()));
}

/* The VM has no domain any more: halted, or suspended to its image. Write lock held. */
static void record_stopped(xapi_server *srv, xapi_obj *vm, bool suspended, bool plumb) {
    xapi_store *st = srv->store;
    xapi_obj *m = metrics_of(st, vm), *g;

    set_devices_attached(srv, vm, false, plumb); /* first: a VIF's device name needs the domid */
    xapi_obj_set_string(st, vm, XAPI_F_VM_power_state, suspended ? "Suspended" : "Halted");
    xapi_obj_set_int(st, vm, XAPI_F_VM_domid, -1);
    xapi_obj_set_string(st, vm, XAPI_F_VM_resident_on, XAPI_NULL_REF);
    set_metrics_state(st, m, suspended ? "suspended" : "halted");
    xapi_obj_set_int(st, m, XAPI_F_VM_metrics_memory_actual, 0);
    xapi_obj_set(st, m, XAPI_F_VM_metrics_last_updated, xapi_value_datetime(xapi_wall_seconds()));
    g = xapi_store_get_class(st, &xapi_classes[XAPI_C_VM_guest_metrics], vm->fields[XAPI_F_VM_guest_metrics].s);
    if (g)
        xapi_obj_set_bool(st, g, XAPI_F_VM_guest_metrics_live, false);
    vmops_console_remove(srv, vm);
    vmops_machined_stopped(vm->uuid);
    update_host_memory(srv);
    vmops_update_allowed_operations(st, vm);
}

void vmops_record_stopped(xapi_server *srv, xapi_obj *vm, bool suspended) {
    record_stopped(srv, vm, suspended, true);
}

/* The plumbing of a VM's VIFs, copied out of the store. */
typedef struct plumbing_set {
    network_vif_plumbing *v;
    size_t n;
} plumbing_set;

/* Store lock held. attached_only: the VIFs the record has attached (what a
 * stop clears); else all of them (what a start attaches). */
static void plumbing_gather(xapi_server *srv, const xapi_obj *vm, int64_t domid, bool attached_only,
                            plumbing_set *ret) {
    const xapi_value *vifs = &vm->fields[XAPI_F_VM_VIFs];

    ret->v = xapi_calloc(vifs->n + 1, sizeof *ret->v);
    ret->n = 0;
    for (uint32_t i = 0; i < vifs->n; i++) {
        xapi_obj *vif = xapi_store_get_class(srv->store, C_VIF, vifs->items[i].s);
        if (vif && (!attached_only || vif->fields[XAPI_F_VIF_currently_attached].b) &&
            network_vif_plumbing_of(srv, vif, domid, &ret->v[ret->n]) > 0)
            ret->n++;
    }
}

static void plumbing_free(plumbing_set *p) {
    for (size_t i = 0; i < p->n; i++)
        network_vif_plumbing_free(&p->v[i]);
    free(p->v);
    *p = (plumbing_set){0};
}

static bool is_up(int what) {
    return what == REC_RUNNING || what == REC_PAUSED || what == REC_STARTED || what == REC_STARTED_PAUSED;
}

/* The VM's operation lock keeps its domain and VIF list as they are while the
 * store's lock is free; a VIF's settings may still change (VIF.set_*). While
 * the record has it detached, its setter leaves the device alone: what
 * changed between the gathering and the record is applied here, under a read
 * lock so that a later setter's own apply (under the write lock) comes after. */
static void plumbing_catch_up(xapi_server *srv, const char *vm_ref, int64_t domid, const plumbing_set *done) {
    plumbing_set now = {0};
    xapi_obj *vm;

    xapi_store_rdlock(srv->store);
    vm = xapi_store_get_class(srv->store, C_VM, vm_ref);
    if (vm) {
        plumbing_gather(srv, vm, domid, true, &now);
        for (size_t i = 0; i < now.n; i++) {
            bool same = false;
            for (size_t k = 0; k < done->n && !same; k++)
                same = network_vif_plumbing_equal(&now.v[i], &done->v[k]);
            if (!same)
                network_vif_plumbing_apply(&now.v[i], false);
        }
    }
    xapi_store_rdunlock(srv->store);
    plumbing_free(&now);
}

/* Whether a record need not be durable before the reply: a fresh start's,
 * which says no more than the hypervisor does (the VM's domain, its power
 * state, memory and devices attached). If the daemon dies before the
 * committer has written it, the store still says Halted, and reconcile() at
 * the next start finds the domain by the VM's uuid and records it running
 * again, VIFs' plumbing and console with it; only VM_metrics.start_time is
 * lost. Writes made after it are ordered after it (one commit queue), so
 * whatever a client does next on the VM is durable only with it. Everything
 * else waits: a halt (a domain that is gone says nothing), a resume (its
 * suspend image goes) and a reboot (the new domid). While the store's writes
 * fail, the start waits too, to fail as before rather than be taken back
 * after its reply. */
static bool recoverable_from_hypervisor(xapi_store *st, int what) {
    return (what == REC_STARTED || what == REC_STARTED_PAUSED) && xapi_store_write_error(st) == 0;
}

/* The calling thread's CPU time: a start's figures split its wall time
 * (xapi_now_ns, CLOCK_MONOTONIC like every other duration here) from the CPU
 * it spent, to tell waiting from working on a loaded host. */
static int64_t thread_cpu_ns(void) {
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A stamp for a timed record (times not NULL), else 0 and no clock read. */
static int64_t stamp(const vmops_record_times *times) {
    return times ? xapi_now_ns() : 0;
}

int vmops_record_timed(xapi_call *c, const char *vm_ref, int domid, int what, int64_t memory,
                       vmops_record_times *times) {
    xapi_store *st = c->srv->store;
    plumbing_set plumb = {0};
    char uuid[XAPI_UUID_LEN + 1] = "";
    bool up = is_up(what);
    int64_t plumbed, locked, recorded, durable;
    xapi_obj *vm;
    int rc;

    /* Mark busy, unlock, plumb, relock, publish: the VM is busy (its
     * operation lock); its VIFs' devices are set up before the record says
     * they are attached, or cleared once it says they are not, and no other
     * writer waits on the store's lock meanwhile. */
    xapi_store_rdlock(st);
    vm = xapi_store_get_class(st, C_VM, vm_ref);
    if (vm) {
        plumbing_gather(c->srv, vm, up ? domid : vm->fields[XAPI_F_VM_domid].i, !up, &plumb);
        snprintf(uuid, sizeof uuid, "%s", vm->uuid);
    }
    xapi_store_rdunlock(st);
    if (up) /* the domain was just built: its VIFs' devices are new */
        for (size_t i = 0; i < plumb.n; i++)
            network_vif_plumbing_apply(&plumb.v[i], true);
    plumbed = stamp(times);

    xapi_store_write_begin(st);
    locked = stamp(times);
    vm = xapi_store_get_class(st, C_VM, vm_ref);
    if (vm) {
        if (up) {
            record_running(c->srv, vm, domid, what == REC_PAUSED || what == REC_STARTED_PAUSED, memory, false);
            if (what == REC_STARTED || what == REC_STARTED_PAUSED)
                vmops_record_started(c->srv, vm);
        } else
            record_stopped(c->srv, vm, what == REC_SUSPENDED, false);
    }
    recorded = stamp(times);
    if (recoverable_from_hypervisor(st, what)) {
        xapi_store_write_end(st); /* the committer thread makes it durable, within a few ms */
        rc = 0;
    } else
        rc = xapi_commit(c);
    durable = stamp(times);

    if (!up) {
        for (size_t i = 0; i < plumb.n; i++)
            network_vif_plumbing_remove(&plumb.v[i]);
    } else if (rc == 0) {
        if (plumb.n > 0)
            plumbing_catch_up(c->srv, vm_ref, domid, &plumb);
        if (*uuid)
            vmops_console_log_link(c->srv, uuid, domid);
    }
    if (times) {
        times->end_ns = xapi_now_ns();
        times->nvifs = (unsigned)plumb.n;
        times->plumbing_ns = plumbed - times->begin_ns + (up ? 0 : times->end_ns - durable);
        times->lock_wait_ns = locked - plumbed;
        times->locked_ns = recorded - locked;
        times->durable_ns = durable - recorded;
        times->after_ns = up ? times->end_ns - durable : 0;
    }
    plumbing_free(&plumb);
    return rc;
}

int vmops_record(xapi_call *c, const char *vm_ref, int domid, int what, int64_t memory) {
    return vmops_record_timed(c, vm_ref, domid, what, memory, NULL);
}

/* ---- building a domain ----------------------------------------------------- */

/* Checks the VM can start here and describes its domain (VM lock held, store lock not). */
static int prepare_start(xapi_call *c, const char *vm_ref, vmops_domain_config *ret, int64_t *ret_network_ns) {
    xapi_server *srv = c->srv;
    xapi_obj *vm;
    int rc;

    xapi_store_rdlock(srv->store);
    rc = xapi_lookup(c, C_VM, vm_ref, &vm);
    if (rc < 0)
        goto out;
    rc = check_vm_memory(c, vm);
    if (rc < 0)
        goto out;
    if (vm->fields[XAPI_F_VM_memory_static_max].i < MIN_GUEST_MEMORY) {
        rc = xapi_call_fail(c, "VM_MEMORY_SIZE_TOO_LOW", vm_ref);
        goto out;
    }
    if (vm->fields[XAPI_F_VM_VCPUs_at_startup].i < 1 ||
        vm->fields[XAPI_F_VM_VCPUs_at_startup].i > vm->fields[XAPI_F_VM_VCPUs_max].i) {
        rc = xapi_call_fail(c, "INVALID_VALUE", "VCPUs_at_startup",
                            "VCPUs_at_startup must be between 1 and VCPUs_max");
        goto out;
    }
    rc = vmops_build_config(srv, vm, ret, &c->err);
    if (rc < 0)
        goto out;
    if (ret->memory_target > srv->backend->host_memory_free) {
        rc = not_enough_memory(c, ret->memory_target);
        vmops_domain_config_free(ret);
        goto out;
    }
    xapi_store_rdunlock(srv->store);
    /* the networks' devices on this host, before the domain needs them (no store lock: I/O) */
    if (ret->nnics > 0) {
        int64_t t0 = xapi_now_ns();
        for (size_t i = 0; i < ret->nnics && rc == 0; i++)
            rc = network_prepare_for_vif(srv, ret->nics[i].bridge, &c->err);
        *ret_network_ns = xapi_now_ns() - t0;
    }
    if (rc < 0)
        vmops_domain_config_free(ret);
    return rc;
out:
    xapi_store_rdunlock(srv->store);
    return rc;
}

/* Creates and (unless paused) unpauses the domain. */
int vmops_boot(xapi_call *c, const char *vm_ref, bool paused, vmops_boot_result *ret) {
    vmops_backend *b = c->srv->backend;
    vmops_domain_config cfg = {0};
    char *msg = NULL;
    int64_t wall0, cpu0, network_ns = 0;
    int domid = -1, rc;

    rc = prepare_start(c, vm_ref, &cfg, &network_ns);
    if (rc < 0)
        return rc;
    wall0 = xapi_now_ns();
    cpu0 = thread_cpu_ns();
    rc = b->ops->create(b, &cfg, &domid, &msg);
    if (rc < 0) {
        rc = build_fail(c, vm_ref, "creating the domain", rc, msg, cfg.memory_target);
        goto out;
    }
    if (!paused) {
        rc = b->ops->unpause(b, domid, &msg);
        if (rc < 0) {
            char *m2 = NULL;
            b->ops->destroy(b, domid, &m2);
            free(m2);
            rc = backend_fail(c, "unpausing the domain", rc, msg, 0);
            goto out;
        }
    }
    *ret = (vmops_boot_result){.domid = domid,
                               .memory = cfg.memory_target,
                               .backend_begin_ns = wall0,
                               .backend_end_ns = xapi_now_ns(),
                               .backend_begin_cpu_ns = cpu0,
                               .backend_end_cpu_ns = thread_cpu_ns(),
                               .network_ns = network_ns};
out:
    vmops_domain_config_free(&cfg);
    return rc;
}

int vmops_destroy_domain(xapi_call *c, int domid) {
    vmops_backend *b = c->srv->backend;
    char *msg = NULL;
    int rc = b->ops->destroy(b, domid, &msg);

    if (rc == -ENOENT) { /* already gone: what we wanted */
        free(msg);
        return 0;
    }
    if (rc < 0)
        return backend_fail(c, "destroying the domain", rc, msg, 0);
    return 0;
}

int vmops_halt_domain(xapi_call *c, const char *vm_ref, int domid) {
    int rc = vmops_destroy_domain(c, domid);

    if (rc < 0)
        return rc;
    return vmops_record(c, vm_ref, -1, REC_HALTED, 0);
}

int vmops_force_halt(xapi_call *c, const vmops_op *op, const char *power_state, int domid) {
    char vdi[XAPI_REF_LEN + 1], *img = NULL;
    int rc;

    if (vmops_power_state_in(power_state, VMOPS_PS_RUNNING | VMOPS_PS_PAUSED))
        return vmops_halt_domain(c, op->vm_ref, domid);
    if (!vmops_power_state_in(power_state, VMOPS_PS_SUSPENDED))
        return 0;
    rc = find_suspend_image(c->srv, op->vm_ref, vdi, &img);
    if (rc == 0)
        vmops_suspend_image_drop(c->srv, vdi, img);
    free(img);
    return vmops_record(c, op->vm_ref, -1, REC_HALTED, 0);
}

/* Replaces the domain by a new one (VM lock held). */
int vmops_restart_domain(xapi_call *c, const char *vm_ref, int old_domid, bool paused) {
    vmops_boot_result boot;
    int rc;

    rc = vmops_destroy_domain(c, old_domid);
    if (rc < 0)
        return rc;
    rc = vmops_boot(c, vm_ref, paused, &boot);
    if (rc < 0) {
        xapi_value keep = c->err;
        c->err = (xapi_value){0};
        vmops_record(c, vm_ref, -1, REC_HALTED, 0); /* the old domain is gone either way */
        xapi_value_free(&c->err);
        c->err = keep;
        return rc;
    }
    return vmops_record(c, vm_ref, boot.domid, paused ? REC_PAUSED : REC_RUNNING, boot.memory);
}

static int wait_error(xapi_call *c, const vmops_op *op, int rc, const char *vm_ref) {
    char *t;

    switch (rc) {
    case -ETIMEDOUT:
        t = i64(c->srv->config->clean_shutdown_timeout);
        rc = xapi_call_fail(c, "VM_SHUTDOWN_TIMEOUT", vm_ref, t);
        free(t);
        return rc;
    case -ECANCELED:
    case -EINTR: /* a hard operation took over */
        return xapi_call_fail(c, "TASK_CANCELLED", op->task ? op->task : op->op_ref);
    default:
        return xapi_call_fail(c, "INTERNAL_ERROR", strerror(-rc));
    }
}

/* Asks the guest and waits for its answer (VM lock held). */
static int ask_guest(xapi_call *c, vmops_op *op, int domid, bool reboot, vmops_shutdown_reason *ret_reason) {
    vmops_backend *b = c->srv->backend;
    int64_t deadline = xapi_now_ns() + (int64_t)c->srv->config->clean_shutdown_timeout * 1000000000LL;
    char *msg = NULL;
    int rc;

    vmops_op_expect_domain_event(op, domid);
    rc = b->ops->request_shutdown(b, domid, reboot, &msg);
    if (rc < 0 && vmops_op_take_domain_event(op, ret_reason)) {
        /* the guest stopped on its own just before: that is its answer */
        free(msg);
        return 0;
    }
    if (rc < 0)
        return domain_op_fail(c, op->vm_ref, domid, VMOPS_PS_RUNNING,
                              reboot ? "asking the guest to reboot" : "asking the guest to shut down", rc, msg);
    rc = vmops_op_wait_domain_event(c->srv, op, domid, deadline, ret_reason);
    if (rc < 0)
        return wait_error(c, op, rc, op->vm_ref);
    return 0;
}

/* ---- the operations ---------------------------------------------------------- */

/* A lifecycle operation runs holding its VM's operation lock, from the VM's
 * record as it was once the lock was taken. paused: whether the VM is to end
 * paused (start, resume, pause, unpause); the others ignore it. */
typedef int lifecycle_fn(xapi_call *c, vmops_op *op, const vm_view *v, bool paused);

typedef struct lifecycle_op {
    const char *name; /* in current_operations */
    unsigned from;    /* the power states it starts from (VMOPS_PS_*), or ANY_POWER_STATE */
    lifecycle_fn *run;
} lifecycle_op;

/* No power state is checked before run: it takes any, or checks for itself
 * after what it refuses first. */
#define ANY_POWER_STATE 0u

/* Runs o on the VM named by the call's first argument. */
static int run_lifecycle_op(xapi_call *c, const lifecycle_op *o, bool paused) {
    const char *vm_ref = c->args[0].s;
    vmops_op op;
    vm_view v;
    int rc;

    rc = vmops_op_begin(c, vm_ref, o->name, false, &op);
    if (rc < 0)
        return rc;
    rc = view_vm(c, vm_ref, &v);
    if (rc < 0)
        goto out;
    if (o->from != ANY_POWER_STATE) {
        rc = vmops_check_power_state(c, vm_ref, v.power_state, o->from);
        if (rc < 0)
            goto out;
    }
    rc = o->run(c, &op, &v, paused);
out:
    vmops_op_end(c->srv, &op);
    if (rc == 0)
        xapi_out_void(c->out);
    return rc;
}

/* What cannot start at all is refused before its power state is looked at. */
static int start_vm(xapi_call *c, vmops_op *op, const vm_view *v, bool paused) {
    /* from here (the VM's lock taken) to the record (queued for the committer): the start's own time */
    int64_t wall0 = xapi_now_ns(), cpu0 = thread_cpu_ns(), cpu1;
    int64_t own_wall, own_cpu, backend_wall, backend_cpu, before_wall, before_cpu;
    vmops_boot_result boot;
    vmops_record_times rt;
    int rc;

    if (v->is_control_domain)
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "The control domain cannot be started");
    if (v->is_template || v->is_snapshot)
        return xapi_call_fail(c, "VM_IS_TEMPLATE", op->vm_ref, "start");
    rc = vmops_check_power_state(c, op->vm_ref, v->power_state, VMOPS_PS_HALTED);
    if (rc < 0)
        return rc;
    rc = vmops_boot(c, op->vm_ref, paused, &boot);
    if (rc < 0)
        return rc;
    rt = (vmops_record_times){.begin_ns = boot.backend_end_ns};
    rc = vmops_record_timed(c, op->vm_ref, boot.domid, paused ? REC_STARTED_PAUSED : REC_STARTED, boot.memory, &rt);
    if (rc < 0)
        return rc;
    cpu1 = thread_cpu_ns();
    backend_wall = boot.backend_end_ns - boot.backend_begin_ns;
    backend_cpu = boot.backend_end_cpu_ns - boot.backend_begin_cpu_ns;
    own_wall = rt.end_ns - wall0 - backend_wall;
    own_cpu = cpu1 - cpu0 - backend_cpu;
    before_wall = boot.backend_begin_ns - wall0;
    before_cpu = boot.backend_begin_cpu_ns - cpu0;
    /* the e2e boot storm and bench/boot_storm.py read these figures; the
     * record's parts say where a slow one waited (its VIFs' devices, other
     * writers, the disk). Every boundary is read once (14 clock reads): on
     * the lab's dom0 each is a system call. */
    log_info("VM %s started as domain %d; own time %" PRId64 " us wall, %" PRId64 " us CPU; backend %" PRId64
             " us wall, %" PRId64 " us CPU; record %" PRId64 " us wall (plumbing %" PRId64 " us for %u VIFs, lock wait %" PRId64
             " us, locked %" PRId64 " us, durable wait %" PRId64 " us, then %" PRId64 " us); before the backend %" PRId64
             " us (its networks' devices %" PRId64 " us); CPU before the backend %" PRId64 " us, in the record %" PRId64 " us",
             op->vm_uuid, boot.domid, own_wall / 1000, own_cpu / 1000, backend_wall / 1000, backend_cpu / 1000,
             (rt.end_ns - rt.begin_ns) / 1000, rt.plumbing_ns / 1000, rt.nvifs, rt.lock_wait_ns / 1000,
             rt.locked_ns / 1000, rt.durable_ns / 1000, rt.after_ns / 1000, before_wall / 1000, boot.network_ns / 1000,
             before_cpu / 1000, (cpu1 - boot.backend_end_cpu_ns) / 1000);
    return 0;
}

static int hard_shut_down(xapi_call *c, vmops_op *op, const vm_view *v, bool paused) {
    int rc = vmops_force_halt(c, op, v->power_state, (int)v->domid);

    if (rc == 0)
        log_info("VM %s hard shut down", op->vm_uuid);
    return rc;
}

/* Whatever the guest does (halt, reboot, crash), a shutdown ends halted. */
static int shut_down_cleanly(xapi_call *c, vmops_op *op, const vm_view *v, bool fallback_to_hard) {
    vmops_shutdown_reason reason;
    int rc;

    rc = ask_guest(c, op, (int)v->domid, false, &reason);
    if (rc < 0 && fallback_to_hard && c->err.kind == XAPI_V_ARRAY &&
        strcmp(c->err.items[0].s, "VM_SHUTDOWN_TIMEOUT") == 0) {
        log_notice("VM %s did not shut down cleanly; forcing it", op->vm_uuid);
        rc = 0;
    }
    if (rc < 0)
        return rc;
    rc = vmops_halt_domain(c, op->vm_ref, (int)v->domid);
    if (rc == 0)
        log_info("VM %s shut down", op->vm_uuid);
    return rc;
}

static int clean_shut_down(xapi_call *c, vmops_op *op, const vm_view *v, bool paused) {
    return shut_down_cleanly(c, op, v, false);
}

/* VM.shutdown: a guest that cannot answer (paused, suspended) or does not in
 * time is halted hard. */
static int shut_down(xapi_call *c, vmops_op *op, const vm_view *v, bool paused) {
    int rc;

    if (vmops_power_state_in(v->power_state, VMOPS_PS_PAUSED | VMOPS_PS_SUSPENDED))
        return vmops_force_halt(c, op, v->power_state, (int)v->domid);
    rc = vmops_check_power_state(c, op->vm_ref, v->power_state, VMOPS_PS_RUNNING);
    if (rc < 0)
        return rc;
    return shut_down_cleanly(c, op, v, true);
}

static int clean_reboot(xapi_call *c, vmops_op *op, const vm_view *v, bool paused) {
    vmops_shutdown_reason reason;
    int rc;

    rc = ask_guest(c, op, (int)v->domid, true, &reason);
    if (rc < 0)
        return rc;
    if (reason == VMOPS_REASON_POWEROFF) {
        /* The guest halted instead of rebooting: xapi reports it and leaves it halted. */
        rc = vmops_halt_domain(c, op->vm_ref, (int)v->domid);
        return rc < 0 ? rc : xapi_call_fail(c, "VM_HALTED", op->vm_ref);
    }
    rc = vmops_restart_domain(c, op->vm_ref, (int)v->domid, false);
    if (rc == 0)
        log_info("VM %s rebooted", op->vm_uuid);
    return rc;
}

static int hard_reboot(xapi_call *c, vmops_op *op, const vm_view *v, bool paused) {
    return vmops_restart_domain(c, op->vm_ref, (int)v->domid, false);
}

static int pause_or_unpause(xapi_call *c, vmops_op *op, const vm_view *v, bool paused) {
    vmops_backend *b = c->srv->backend;
    char *msg = NULL;
    int rc;

    rc = paused ? b->ops->pause(b, (int)v->domid, &msg) : b->ops->unpause(b, (int)v->domid, &msg);
    if (rc < 0)
        return domain_op_fail(c, op->vm_ref, (int)v->domid, paused ? VMOPS_PS_RUNNING : VMOPS_PS_PAUSED,
                              paused ? "pausing" : "unpausing", rc, msg);
    return vmops_record(c, op->vm_ref, (int)v->domid, paused ? REC_PAUSED : REC_RUNNING, v->memory_target);
}

static int suspend_vm(xapi_call *c, vmops_op *op, const vm_view *v, bool paused) {
    vmops_backend *b = c->srv->backend;
    char vdi[XAPI_REF_LEN + 1], *msg = NULL, *img = NULL;
    xapi_obj *vm;
    int rc;

    rc = vmops_suspend_image_create(c, op->vm_ref, vdi, &img);
    if (rc < 0)
        return rc;
    rc = b->ops->suspend(b, (int)v->domid, img, &msg);
    if (rc < 0) {
        rc = domain_op_fail(c, op->vm_ref, (int)v->domid, VMOPS_PS_RUNNING, "suspending", rc, msg);
        vmops_suspend_image_drop(c->srv, vdi, img);
        goto out;
    }
    /* Committed with the power state just below. */
    xapi_store_write_begin(c->srv->store);
    vm = xapi_store_get_class(c->srv->store, C_VM, op->vm_ref);
    if (vm)
        xapi_obj_set_string(c->srv->store, vm, XAPI_F_VM_suspend_VDI, vdi);
    xapi_store_write_end(c->srv->store);
    rc = vmops_record(c, op->vm_ref, -1, REC_SUSPENDED, 0);
    if (rc == 0)
        log_info("VM %s suspended to VDI %s (%s)", op->vm_uuid, vdi, img);
out:
    free(img);
    return rc;
}

static int resume_vm(xapi_call *c, vmops_op *op, const vm_view *v, bool paused) {
    vmops_backend *b = c->srv->backend;
    vmops_domain_config cfg = {0};
    char vdi[XAPI_REF_LEN + 1], *msg = NULL, *img = NULL;
    int64_t network_ns = 0;
    int domid = -1, rc;

    /* A checkpoint is Suspended too, but is not a VM that runs. */
    if (v->is_snapshot)
        return xapi_call_fail(c, "VM_IS_SNAPSHOT", op->vm_ref, op->op);
    if (v->is_template)
        return xapi_call_fail(c, "VM_IS_TEMPLATE", op->vm_ref, op->op);
    rc = prepare_start(c, op->vm_ref, &cfg, &network_ns);
    if (rc < 0)
        goto out;
    rc = find_suspend_image(c->srv, op->vm_ref, vdi, &img);
    if (rc < 0) {
        rc = xapi_call_fail(c, "VM_HAS_NO_SUSPEND_VDI", op->vm_ref);
        goto out;
    }
    rc = b->ops->resume(b, &cfg, img, &domid, &msg);
    if (rc < 0) {
        rc = build_fail(c, op->vm_ref, "resuming", rc, msg, cfg.memory_target);
        goto out;
    }
    if (!paused && (rc = b->ops->unpause(b, domid, &msg)) < 0) {
        rc = backend_fail(c, "unpausing", rc, msg, 0);
        goto out;
    }
    rc = vmops_record(c, op->vm_ref, domid, paused ? REC_PAUSED : REC_RUNNING, cfg.memory_target);
    if (rc == 0) {
        vmops_suspend_image_drop(c->srv, vdi, img);
        log_info("VM %s resumed as domain %d", op->vm_uuid, domid);
    }
out:
    free(img);
    vmops_domain_config_free(&cfg);
    return rc;
}

int vmops_suspend_domain(xapi_call *c, vmops_op *op, int domid) {
    vm_view v = {.domid = domid};

    return suspend_vm(c, op, &v, false);
}

int vmops_resume_domain(xapi_call *c, vmops_op *op, bool paused) {
    vm_view v = {.domid = -1};

    return resume_vm(c, op, &v, paused);
}

static int reset_power_state(xapi_call *c, vmops_op *op, const vm_view *v, bool paused) {
    vmops_backend *b = c->srv->backend;
    vmops_domain_info *doms = NULL;
    size_t n = 0;
    int rc;

    if (v->is_control_domain)
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "The control domain's power state cannot be reset");
    b->ops->list(b, &doms, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(doms[i].uuid, op->vm_uuid) == 0) {
            /* The VM really runs here: resetting its record would lose it. */
            rc = xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "The VM has a live domain on this host");
            goto out;
        }
    rc = vmops_record(c, op->vm_ref, -1, REC_HALTED, 0);
out:
    free(doms);
    return rc;
}

/* VM.set_VCPUs_number_live (CloudStack's ScaleVm): as xapi, 1..VCPUs_max, and
 * VCPUs_at_startup follows so that the next start keeps the count. An HVM
 * guest would need ACPI CPU hot-plug through its device model: refused. */
static int set_vcpus_live(xapi_call *c, vmops_op *op, const vm_view *v, bool paused) {
    vmops_backend *b = c->srv->backend;
    int64_t n = c->args[1].i, max = 0;
    vmops_domain_type type = VMOPS_PV;
    char *msg = NULL, *t = NULL;
    xapi_obj *vm, *m;
    int rc;

    xapi_store_rdlock(c->srv->store);
    vm = xapi_store_get_class(c->srv->store, C_VM, op->vm_ref);
    if (vm) {
        max = vm->fields[XAPI_F_VM_VCPUs_max].i;
        type = vmops_domain_type_of(vm);
    }
    xapi_store_rdunlock(c->srv->store);
    if (n < 1 || n > max) {
        t = i64(n);
        rc = xapi_call_fail(c, "INVALID_VALUE", "nvcpu", t);
        free(t);
        return rc;
    }
    if (type == VMOPS_HVM)
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "VCPU hot-plug of HVM guests is not supported");
    rc = b->ops->set_vcpus(b, (int)v->domid, (int)n, (int)max, &msg);
    if (rc < 0)
        return domain_op_fail(c, op->vm_ref, (int)v->domid, VMOPS_PS_RUNNING, "changing the VCPUs", rc, msg);
    xapi_store_write_begin(c->srv->store);
    vm = xapi_store_get_class(c->srv->store, C_VM, op->vm_ref);
    if (vm) {
        xapi_obj_set_int(c->srv->store, vm, XAPI_F_VM_VCPUs_at_startup, n);
        m = metrics_of(c->srv->store, vm);
        if (m)
            xapi_obj_set_int(c->srv->store, m, XAPI_F_VM_metrics_VCPUs_number, n);
    }
    return xapi_commit(c);
}

static const lifecycle_op start_op = {"start", ANY_POWER_STATE, start_vm},
                          start_on_op = {"start_on", ANY_POWER_STATE, start_vm},
                          clean_shutdown_op = {"clean_shutdown", VMOPS_PS_RUNNING, clean_shut_down},
                          shutdown_op = {"shutdown", ANY_POWER_STATE, shut_down},
                          hard_shutdown_op = {"hard_shutdown", VMOPS_PS_RUNNING | VMOPS_PS_PAUSED | VMOPS_PS_SUSPENDED,
                                              hard_shut_down},
                          clean_reboot_op = {"clean_reboot", VMOPS_PS_RUNNING, clean_reboot},
                          hard_reboot_op = {"hard_reboot", VMOPS_PS_RUNNING | VMOPS_PS_PAUSED, hard_reboot},
                          pause_op = {"pause", VMOPS_PS_RUNNING, pause_or_unpause},
                          unpause_op = {"unpause", VMOPS_PS_PAUSED, pause_or_unpause},
                          suspend_op = {"suspend", VMOPS_PS_RUNNING, suspend_vm},
                          resume_op = {"resume", VMOPS_PS_SUSPENDED, resume_vm},
                          resume_on_op = {"resume_on", VMOPS_PS_SUSPENDED, resume_vm},
                          power_state_reset_op = {"power_state_reset", ANY_POWER_STATE, reset_power_state},
                          set_vcpus_live_op = {"changing_VCPUs_live", VMOPS_PS_RUNNING, set_vcpus_live};

static int lookup_host(xapi_call *c, const char *host_ref) {
    xapi_obj *h;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, &xapi_classes[XAPI_C_host], host_ref, &h);
    xapi_store_rdunlock(c->srv->store);
    return rc;
}

static int vm_start(xapi_call *c) {
    return run_lifecycle_op(c, &start_op, c->args[1].b);
}

/* start_on / resume_on (vm, host, paused, force): this host runs only its
 * own VMs; for another, there is no SR it could use (the disks and the
 * suspend image are here). */
static int run_on_host(xapi_call *c, const lifecycle_op *op) {
    const char *vm_ref = c->args[0].s, *host_ref = c->args[1].s;
    int rc;

    if (strcmp(host_ref, c->srv->host_ref) == 0)
        return run_lifecycle_op(c, op, c->args[2].b);
    rc = lookup_host(c, host_ref);
    return rc < 0 ? rc : xapi_call_fail(c, "VM_REQUIRES_SR", vm_ref, XAPI_NULL_REF);
}

static int vm_start_on(xapi_call *c) {
    return run_on_host(c, &start_on_op);
}

static int vm_clean_shutdown(xapi_call *c) {
    return run_lifecycle_op(c, &clean_shutdown_op, false);
}

static int vm_shutdown(xapi_call *c) {
    return run_lifecycle_op(c, &shutdown_op, false);
}

static int vm_hard_shutdown(xapi_call *c) {
    return run_lifecycle_op(c, &hard_shutdown_op, false);
}

static int vm_clean_reboot(xapi_call *c) {
    return run_lifecycle_op(c, &clean_reboot_op, false);
}

static int vm_hard_reboot(xapi_call *c) {
    return run_lifecycle_op(c, &hard_reboot_op, false);
}

static int vm_pause(xapi_call *c) {
    return run_lifecycle_op(c, &pause_op, true);
}

static int vm_unpause(xapi_call *c) {
    return run_lifecycle_op(c, &unpause_op, false);
}

static int vm_suspend(xapi_call *c) {
    return run_lifecycle_op(c, &suspend_op, false);
}

static int vm_resume(xapi_call *c) {
    return run_lifecycle_op(c, &resume_op, c->args[1].b);
}

static int vm_resume_on(xapi_call *c) {
    return run_on_host(c, &resume_on_op);
}

static int vm_set_VCPUs_number_live(xapi_call *c) {
    return run_lifecycle_op(c, &set_vcpus_live_op, false);
}

static int vm_power_state_reset(xapi_call *c) {
    return run_lifecycle_op(c, &power_state_reset_op, false);
}

/* ---- memory and VCPUs ------------------------------------------------------- */

/* Edits of a VM's record: the store's write lock is held from begin to end,
 * and only an edit that succeeded is committed. */
static int edit_vm_end(xapi_call *c, int rc) {
    if (rc == 0)
        rc = xapi_commit(c);
    else
        xapi_store_write_abort(c->srv->store);
    if (rc == 0)
        xapi_out_void(c->out);
    return rc;
}

static int edit_vm_begin(xapi_call *c, const char *vm_ref, xapi_obj **ret_vm) {
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, C_VM, vm_ref, ret_vm);
    if (rc < 0)
        edit_vm_end(c, rc);
    return rc;
}

/* Sets memory fields of a halted VM after checking the constraint. Any of the
 * four may be -1 for "unchanged". */
static int set_memory(xapi_call *c, int64_t smin, int64_t smax, int64_t dmin, int64_t dmax) {
    const char *vm_ref = c->args[0].s;
    xapi_store *st = c->srv->store;
    xapi_obj *vm;
    int rc;

    rc = edit_vm_begin(c, vm_ref, &vm);
    if (rc < 0)
        return rc;
    if (smin < 0)
        smin = vm->fields[XAPI_F_VM_memory_static_min].i;
    if (smax < 0)
        smax = vm->fields[XAPI_F_VM_memory_static_max].i;
    if (dmin < 0)
        dmin = vm->fields[XAPI_F_VM_memory_dynamic_min].i;
    if (dmax < 0)
        dmax = vm->fields[XAPI_F_VM_memory_dynamic_max].i;
    if (smin != vm->fields[XAPI_F_VM_memory_static_min].i || smax != vm->fields[XAPI_F_VM_memory_static_max].i) {
        rc = vmops_check_power_state(c, vm_ref, vm->fields[XAPI_F_VM_power_state].s, VMOPS_PS_HALTED);
        if (rc < 0)
            goto out;
    }
    rc = vmops_check_memory(&c->err, smin, dmin, dmax, smax);
    if (rc < 0)
        goto out;
    xapi_obj_set_int(st, vm, XAPI_F_VM_memory_static_min, smin);
    xapi_obj_set_int(st, vm, XAPI_F_VM_memory_static_max, smax);
    xapi_obj_set_int(st, vm, XAPI_F_VM_memory_dynamic_min, dmin);
    xapi_obj_set_int(st, vm, XAPI_F_VM_memory_dynamic_max, dmax);
out:
    return edit_vm_end(c, rc);
}

static int vm_set_memory_limits(xapi_call *c) {
    return set_memory(c, c->args[1].i, c->args[2].i, c->args[3].i, c->args[4].i);
}
static int vm_set_memory_static_range(xapi_call *c) {
    return set_memory(c, c->args[1].i, c->args[2].i, -1, -1);
}
static int vm_set_memory_dynamic_range(xapi_call *c) {
    return set_memory(c, -1, -1, c->args[1].i, c->args[2].i);
}
static int vm_set_memory_static_max(xapi_call *c) {
    return set_memory(c, -1, c->args[1].i, -1, -1);
}
static int vm_set_memory_static_min(xapi_call *c) {
    return set_memory(c, c->args[1].i, -1, -1, -1);
}
static int vm_set_memory_dynamic_max(xapi_call *c) {
    return set_memory(c, -1, -1, -1, c->args[1].i);
}
static int vm_set_memory_dynamic_min(xapi_call *c) {
    return set_memory(c, -1, -1, c->args[1].i, -1);
}
static int vm_set_memory(xapi_call *c) {
    int64_t v = c->args[1].i;
    return set_memory(c, -1, v, v, v);
}

static int set_vcpus(xapi_call *c, bool max) {
    const char *vm_ref = c->args[0].s;
    int64_t value = c->args[1].i;
    xapi_store *st = c->srv->store;
    xapi_obj *vm;
    int rc;

    rc = edit_vm_begin(c, vm_ref, &vm);
    if (rc < 0)
        return rc;
    rc = vmops_check_power_state(c, vm_ref, vm->fields[XAPI_F_VM_power_state].s, VMOPS_PS_HALTED);
    if (rc < 0)
        goto out;
    if (value < 1 || (max ? value < vm->fields[XAPI_F_VM_VCPUs_at_startup].i
                          : value > vm->fields[XAPI_F_VM_VCPUs_max].i)) {
        char *t = i64(value);
        rc = xapi_call_fail(c, "INVALID_VALUE", max ? "VCPUs_max" : "VCPUs_at_startup", t);
        free(t);
        goto out;
    }
    xapi_obj_set_int(st, vm, max ? XAPI_F_VM_VCPUs_max : XAPI_F_VM_VCPUs_at_startup, value);
out:
    return edit_vm_end(c, rc);
}

static int vm_set_VCPUs_max(xapi_call *c) {
    return set_vcpus(c, true);
}
static int vm_set_VCPUs_at_startup(xapi_call *c) {
    return set_vcpus(c, false);
}

/* ---- operation queries -------------------------------------------------------- */

static int vm_assert_operation_valid(xapi_call *c) {
    xapi_obj *vm;
    bool ok = false;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, C_VM, c->args[0].s, &vm);
    if (rc == 0) {
        const xapi_value *ops = &vm->fields[XAPI_F_VM_allowed_operations];
        for (uint32_t i = 0; i < ops->n && !ok; i++)
            ok = strcmp(ops->items[i].s, c->args[1].s) == 0;
    }
    xapi_store_rdunlock(c->srv->store);
    if (rc < 0)
        return rc;
    if (!ok)
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "The operation is not allowed in the VM's current state");
    xapi_out_void(c->out);
    return 0;
}

static int vm_update_allowed_operations(xapi_call *c) {
    xapi_obj *vm;
    int rc;

    rc = edit_vm_begin(c, c->args[0].s, &vm);
    if (rc < 0)
        return rc;
    vmops_update_allowed_operations(c->srv->store, vm);
    return edit_vm_end(c, 0);
}

static int vm_get_boot_record(xapi_call *c) {
    xapi_obj *vm;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, C_VM, c->args[0].s, &vm);
    if (rc == 0)
        xapi_record_out(c->out, vm);
    xapi_store_rdunlock(c->srv->store);
    return rc;
}

/* ---- hot-plug -------------------------------------------------------------------- */

/* VBD.current_operations "plug" while a disk is being attached (write lock held):
 * its VDI is in use from the checks on, not only once the VBD is attached. */
static void mark_plug(xapi_server *srv, xapi_obj *vbd, const char *op_ref, bool on) {
    xapi_value cur = xapi_value_copy(&vbd->fields[XAPI_F_VBD_current_operations]);

    if (on)
        xapi_struct_set(&cur, op_ref, xapi_value_string("plug"));
    else
        xapi_struct_remove(&cur, op_ref);
    xapi_obj_set(srv->store, vbd, XAPI_F_VBD_current_operations, cur);
    update_vdi_of(srv, vbd);
}

static int device_plug(xapi_call *c, bool vbd, bool plug, bool force) {
    const xapi_class *cls = vbd ? C_VBD : C_VIF;
    const char *dev_ref = c->args[0].s;
    vmops_backend *b = c->srv->backend;
    char vm_ref[XAPI_REF_LEN + 1];
    vmops_disk disk = {0};
    vmops_nic nic = {0};
    char *msg = NULL;
    xapi_obj *dev, *vm;
    vmops_op op = {0};
    network_vif_plumbing plumbing = {.mtu = 0};
    bool attached, marked = false, have_plumbing = false;
    int domid = -1, rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, cls, dev_ref, &dev);
    if (rc == 0)
        snprintf(vm_ref, sizeof vm_ref, "%s", dev->fields[vbd ? XAPI_F_VBD_VM : XAPI_F_VIF_VM].s);
    xapi_store_rdunlock(c->srv->store);
    if (rc < 0)
        return rc;
    rc = vmops_op_begin(c, vm_ref, "hotplug", true, &op);
    if (rc < 0)
        return rc;

    /* A write: a disk being plugged is marked (VBD.current_operations "plug") in the same
     * transaction as the checks, so that VDI.destroy meanwhile finds it in use. */
    xapi_store_write_begin(c->srv->store);
    dev = xapi_store_get_class(c->srv->store, cls, dev_ref);
    vm = xapi_store_get_class(c->srv->store, C_VM, vm_ref);
    if (!dev || !vm) {
        rc = xapi_call_fail(c, "HANDLE_INVALID", cls->name, dev_ref);
        goto unlock;
    }
    attached = dev->fields[vbd ? XAPI_F_VBD_currently_attached : XAPI_F_VIF_currently_attached].b;
    rc = vmops_check_power_state(c, vm_ref, vm->fields[XAPI_F_VM_power_state].s, VMOPS_PS_RUNNING);
    if (rc < 0)
        goto unlock;
    if (plug && attached) {
        rc = xapi_call_fail(c, "DEVICE_ALREADY_ATTACHED", dev_ref);
        goto unlock;
    }
    if (!plug && !attached) {
        rc = xapi_call_fail(c, "DEVICE_ALREADY_DETACHED", dev_ref);
        goto unlock;
    }
    if (vbd && !plug && !force && !dev->fields[XAPI_F_VBD_unpluggable].b) {
        rc = xapi_call_fail(c, "VBD_NOT_UNPLUGGABLE", dev_ref);
        goto unlock;
    }
    domid = (int)vm->fields[XAPI_F_VM_domid].i;
    rc = vbd ? vmops_disk_from_vbd(c->srv, vm, dev, &disk, &c->err) : vmops_nic_from_vif(c->srv, dev, &nic, &c->err);
    if (rc == 0 && vbd && plug) {
        mark_plug(c->srv, dev, op.op_ref, true);
        marked = true;
    }
unlock:
    xapi_store_write_end(c->srv->store);
    if (rc == 0 && !vbd && plug)
        rc = network_prepare_for_vif(c->srv, nic.bridge, &c->err);
    if (rc < 0)
        goto out;

    if (vbd)
        rc = plug ? b->ops->disk_attach(b, domid, &disk, &msg) : b->ops->disk_detach(b, domid, &disk, &msg);
    else
        rc = plug ? b->ops->nic_attach(b, domid, &nic, &msg) : b->ops->nic_detach(b, domid, &nic, &msg);
    if (rc < 0) {
        rc = domain_op_fail(c, vm_ref, domid, VMOPS_PS_RUNNING, plug ? "attaching the device" : "detaching the device",
                            rc, msg);
        goto out;
    }
    /* A VIF's backend device is set up before the record says it is attached
     * (or cleared after it says it is not), without the store's lock, as at
     * VM.start; the VM's lock keeps the domain. */
    if (!vbd) {
        xapi_store_rdlock(c->srv->store);
        dev = xapi_store_get_class(c->srv->store, cls, dev_ref);
        have_plumbing = dev && network_vif_plumbing_of(c->srv, dev, domid, &plumbing) > 0;
        xapi_store_rdunlock(c->srv->store);
        if (have_plumbing && plug) /* the hot-plug just made the device */
            network_vif_plumbing_apply(&plumbing, true);
    }
    xapi_store_write_begin(c->srv->store);
    dev = xapi_store_get_class(c->srv->store, cls, dev_ref);
    if (dev && marked) {
        mark_plug(c->srv, dev, op.op_ref, false);
        marked = false;
    }
    if (dev) {
        xapi_obj_set_bool(c->srv->store, dev, vbd ? XAPI_F_VBD_currently_attached : XAPI_F_VIF_currently_attached,
                          plug);
        if (vbd && plug)
            xapi_obj_set_string(c->srv->store, dev, XAPI_F_VBD_device, disk.vdev);
        if (vbd)
            update_vdi_of(c->srv, dev);
    }
    rc = xapi_commit(c);
    if (have_plumbing && !plug)
        network_vif_plumbing_remove(&plumbing);
    else if (have_plumbing && rc == 0) {
        /* a setter meanwhile saw the VIF detached and left its device alone */
        network_vif_plumbing now;
        xapi_store_rdlock(c->srv->store);
        dev = xapi_store_get_class(c->srv->store, cls, dev_ref);
        if (dev && network_vif_plumbing_of(c->srv, dev, domid, &now) > 0) {
            if (!network_vif_plumbing_equal(&now, &plumbing))
                network_vif_plumbing_apply(&now, false);
            network_vif_plumbing_free(&now);
        }
        xapi_store_rdunlock(c->srv->store);
    }
out:
    if (have_plumbing)
        network_vif_plumbing_free(&plumbing);
    if (marked) {
        xapi_store_write_begin(c->srv->store);
        dev = xapi_store_get_class(c->srv->store, cls, dev_ref);
        if (dev)
            mark_plug(c->srv, dev, op.op_ref, false);
        xapi_store_write_end(c->srv->store);
    }
    free(disk.vdev);
    free(disk.target);
    free(disk.format);
    free(nic.bridge);
    vmops_op_end(c->srv, &op);
    if (rc == 0)
        xapi_out_void(c->out);
    return rc;
}

static int vbd_plug(xapi_call *c) {
    return device_plug(c, true, true, false);
}
static int vbd_unplug(xapi_call *c) {
    return device_plug(c, true, false, false);
}
static int vbd_unplug_force(xapi_call *c) {
    return device_plug(c, true, false, true);
}
static int vif_plug(xapi_call *c) {
    return device_plug(c, false, true, false);
}
static int vif_unplug(xapi_call *c) {
    return device_plug(c, false, false, false);
}
static int vif_unplug_force(xapi_call *c) {
    return device_plug(c, false, false, true);
}

/* ---- class hooks ---------------------------------------------------------------- */

/* As xapi's derive_domain_type and derive_hvm_boot_policy: older clients set
 * only HVM_boot_policy ("" for PV), newer ones only domain_type; each follows
 * the other so both kinds of client see (and boot) the same type. */
static const char *domain_type_for_boot_policy(const char *policy) {
    return *policy ? "hvm" : "pv";
}

static const char *boot_policy_for_domain_type(const char *domain_type) {
    return strcmp(domain_type, "hvm") == 0 ? "BIOS order" : "";
}

static int vm_after_create(xapi_call *c, xapi_obj *vm) {
    xapi_store *st = c->srv->store;
    int rc;

    rc = check_vm_memory(c, vm);
    if (rc < 0)
        return rc;
    /* A new VM is halted whatever the record said (CloudStack sends a template's full record). */
    xapi_obj_set_string(st, vm, XAPI_F_VM_power_state, "Halted");
    xapi_obj_set_int(st, vm, XAPI_F_VM_domid, -1);
    if (strcmp(vm->fields[XAPI_F_VM_domain_type].s, "unspecified") == 0)
        xapi_obj_set_string(st, vm, XAPI_F_VM_domain_type,
                            domain_type_for_boot_policy(vm->fields[XAPI_F_VM_HVM_boot_policy].s));
    metrics_of(st, vm);
    vmops_update_allowed_operations(st, vm);
    return 0;
}

static void destroy_ref(xapi_store *st, const xapi_class *cls, const char *ref) {
    xapi_obj *o = xapi_store_get_class(st, cls, ref);
    if (o)
        xapi_obj_destroy(st, o);
}

static int vm_before_destroy(xapi_call *c, xapi_obj *vm) {
    xapi_store *st = c->srv->store;
    const xapi_value *oc = &vm->fields[XAPI_F_VM_other_config], *dt;
    xapi_value refs;
    int rc;

    if (vm->fields[XAPI_F_VM_is_control_domain].b)
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "The control domain cannot be destroyed");
    dt = xapi_struct_get(oc, "default_template");
    if (vm->fields[XAPI_F_VM_is_a_template].b && dt && strcmp(dt->s, "true") == 0)
        return xapi_call_fail(c, "VM_CANNOT_DELETE_DEFAULT_TEMPLATE", vm->ref);
    rc = vmops_check_power_state(c, vm->ref, vm->fields[XAPI_F_VM_power_state].s, VMOPS_PS_HALTED);
    if (rc < 0)
        return rc;
    if (vm->fields[XAPI_F_VM_current_operations].n > 0) {
        const xapi_member *m = &vm->fields[XAPI_F_VM_current_operations].members[0];
        return xapi_call_fail(c, "OTHER_OPERATION_IN_PROGRESS", "VM", vm->ref, m->value.s, m->name);
    }
    /* Devices and metrics go with the VM; the disks (VDIs) stay. */
    refs = xapi_value_copy(&vm->fields[XAPI_F_VM_VBDs]);
    for (uint32_t i = 0; i < refs.n; i++)
        destroy_ref(st, C_VBD, refs.items[i].s);
    xapi_value_free(&refs);
    refs = xapi_value_copy(&vm->fields[XAPI_F_VM_VIFs]);
    for (uint32_t i = 0; i < refs.n; i++)
        destroy_ref(st, C_VIF, refs.items[i].s);
    xapi_value_free(&refs);
    refs = xapi_value_copy(&vm->fields[XAPI_F_VM_consoles]);
    for (uint32_t i = 0; i < refs.n; i++)
        destroy_ref(st, &xapi_classes[XAPI_C_console], refs.items[i].s);
    xapi_value_free(&refs);
    destroy_ref(st, &xapi_classes[XAPI_C_VM_metrics], vm->fields[XAPI_F_VM_metrics].s);
    destroy_ref(st, &xapi_classes[XAPI_C_VM_guest_metrics], vm->fields[XAPI_F_VM_guest_metrics].s);
    return 0;
}

static int device_before_destroy(xapi_call *c, xapi_obj *o) {
    int f = o->cls == C_VBD ? XAPI_F_VBD_currently_attached : XAPI_F_VIF_currently_attached;

    if (o->fields[f].b)
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "The device is attached to a running VM; unplug it first");
    return 0;
}

static int vm_before_set(xapi_call *c, xapi_obj *vm, int field, const xapi_value *v) {
    if (field == XAPI_F_VM_domain_type && strcmp(v->s, "unspecified") == 0)
        return xapi_call_fail(c, "INVALID_VALUE", "domain_type", v->s);
    return 0;
}

/* Template and snapshot flags, and other_config:default_template, decide what is allowed. */
static void vm_after_set(xapi_call *c, xapi_obj *vm, int field) {
    xapi_store *st = c->srv->store;

    if (field == XAPI_F_VM_is_a_template || field == XAPI_F_VM_other_config || field == XAPI_F_VM_blocked_operations)
        vmops_update_allowed_operations(st, vm);
    else if (field == XAPI_F_VM_HVM_boot_policy)
        xapi_obj_set_string(st, vm, XAPI_F_VM_domain_type,
                            domain_type_for_boot_policy(vm->fields[XAPI_F_VM_HVM_boot_policy].s));
    else if (field == XAPI_F_VM_domain_type)
        xapi_obj_set_string(st, vm, XAPI_F_VM_HVM_boot_policy,
                            boot_policy_for_domain_type(vm->fields[XAPI_F_VM_domain_type].s));
}

static const xapi_class_hooks vm_hooks = {
    .after_create = vm_after_create,
    .before_set = vm_before_set,
    .before_destroy = vm_before_destroy,
    .after_set = vm_after_set,
};

static const xapi_class_hooks device_hooks = {
    .before_destroy = device_before_destroy,
};

static const xapi_handler vm_handlers[] = {
    {"VM", "start", vm_start},
    {"VM", "start_on", vm_start_on},
    {"VM", "clean_shutdown", vm_clean_shutdown},
    {"VM", "shutdown", vm_shutdown},
    {"VM", "hard_shutdown", vm_hard_shutdown},
    {"VM", "clean_reboot", vm_clean_reboot},
    {"VM", "hard_reboot", vm_hard_reboot},
    {"VM", "pause", vm_pause},
    {"VM", "unpause", vm_unpause},
    {"VM", "suspend", vm_suspend},
    {"VM", "resume", vm_resume},
    {"VM", "resume_on", vm_resume_on},
    {"VM", "set_VCPUs_number_live", vm_set_VCPUs_number_live},
    {"VM", "power_state_reset", vm_power_state_reset},
    {"VM", "set_memory_limits", vm_set_memory_limits},
    {"VM", "set_memory_static_range", vm_set_memory_static_range},
    {"VM", "set_memory_dynamic_range", vm_set_memory_dynamic_range},
    {"VM", "set_memory_static_max", vm_set_memory_static_max},
    {"VM", "set_memory_static_min", vm_set_memory_static_min},
    {"VM", "set_memory_dynamic_max", vm_set_memory_dynamic_max},
    {"VM", "set_memory_dynamic_min", vm_set_memory_dynamic_min},
    {"VM", "set_memory", vm_set_memory},
    {"VM", "set_VCPUs_max", vm_set_VCPUs_max},
    {"VM", "set_VCPUs_at_startup", vm_set_VCPUs_at_startup},
    {"VM", "assert_operation_valid", vm_assert_operation_valid},
    {"VM", "update_allowed_operations", vm_update_allowed_operations},
    {"VM", "get_boot_record", vm_get_boot_record},
    {"VBD", "plug", vbd_plug},
    {"VBD", "unplug", vbd_unplug},
    {"VBD", "unplug_force", vbd_unplug_force},
    {"VIF", "plug", vif_plug},
    {"VIF", "unplug", vif_unplug},
    {"VIF", "unplug_force", vif_unplug_force},
    {NULL, NULL, NULL},
};

void vmops_register(void) {
    xapi_register_handlers(vm_handlers);
    xapi_register_handlers(vmops_copy_handlers);
    xapi_register_hooks(XAPI_C_VM, &vm_hooks);
    xapi_register_hooks(XAPI_C_VBD, &device_hooks);
    xapi_register_hooks(XAPI_C_VIF, &device_hooks);
    xapi_task_set_cancel_hook(vmops_op_wake_all);
    vmops_op_init();
    vmops_console_register();
}
