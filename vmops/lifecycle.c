/* The VM layer's life: choosing the backend, reconciling every VM with its
 * domain at start, default templates, and what happens when a guest shuts
 * down, reboots or crashes on its own. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/log.h"
#include "vmops/machined.h"
#include "vmops/oplock.h"
#include "vmops/vm_internal.h"
#include "vmops/vmops.h"
#include "xapi/error.h"

static const xapi_class *C_VM = &xapi_classes[XAPI_C_VM];

/* ---- guest-initiated shutdowns ---------------------------------------------- */

typedef struct guest_event {
    xapi_server *srv;
    char uuid[XAPI_UUID_LEN + 1];
    int domid;
    vmops_shutdown_reason reason;
} guest_event;

static const char *reason_name(vmops_shutdown_reason r) {
    switch (r) {
    case VMOPS_REASON_POWEROFF:
        return "poweroff";
    case VMOPS_REASON_REBOOT:
        return "reboot";
    case VMOPS_REASON_SUSPEND:
        return "suspend";
    case VMOPS_REASON_CRASH:
        return "crash";
    case VMOPS_REASON_WATCHDOG:
        return "watchdog";
    case VMOPS_REASON_SOFT_RESET:
        return "soft_reset";
    case VMOPS_REASON_NONE:
        break;
    }
    return "unknown";
}

void vmops_handle_guest_event(xapi_server *srv, const char *uuid, int domid, vmops_shutdown_reason reason) {
    xapi_call c = {.srv = srv};
    char ref[XAPI_REF_LEN + 1] = "", action[32] = "";
    bool restart = false, stale = true;
    xapi_obj *vm;
    vmops_op op;
    int rc;

    xapi_store_rdlock(srv->store);
    vm = xapi_store_get_by_uuid(srv->store, C_VM, uuid);
    if (vm) {
        int f = reason == VMOPS_REASON_REBOOT ? XAPI_F_VM_actions_after_reboot
                : reason == VMOPS_REASON_CRASH || reason == VMOPS_REASON_WATCHDOG ? XAPI_F_VM_actions_after_crash
                                                                                   : XAPI_F_VM_actions_after_shutdown;
        snprintf(ref, sizeof ref, "%s", vm->ref);
        snprintf(action, sizeof action, "%s", vm->fields[f].s);
    }
    xapi_store_rdunlock(srv->store);
    if (!*ref) {
        log_warning("domain %d (%s) shut down (%s) but belongs to no VM; left alone", domid, uuid,
                    reason_name(reason));
        return;
    }
    if (reason == VMOPS_REASON_SOFT_RESET)
        return;
    restart = strcmp(action, "restart") == 0 || strcmp(action, "rename_restart") == 0 ||
              strcmp(action, "coredump_and_restart") == 0;
    rc = vmops_op_begin(&c, ref, restart ? "hard_reboot" : "hard_shutdown", false, &op);
    if (rc < 0) {
        log_error("VM %s: cannot act on its guest's %s: %s", uuid, reason_name(reason),
                  c.err.kind == XAPI_V_ARRAY ? c.err.items[0].s : "?");
        xapi_value_free(&c.err);
        return;
    }
    /* The domain may have been dealt with while we queued (e.g. a hard_shutdown). */
    xapi_store_rdlock(srv->store);
    vm = xapi_store_get_class(srv->store, C_VM, ref);
    if (vm && vm->fields[XAPI_F_VM_domid].i == domid &&
        vmops_power_state_in(vm->fields[XAPI_F_VM_power_state].s, VMOPS_PS_RUNNING | VMOPS_PS_PAUSED))
        stale = false;
    xapi_store_rdunlock(srv->store);
    if (stale)
        goto out;

    log_info("VM %s: guest %s; actions_after: %s", uuid, reason_name(reason), action);
    if (strcmp(action, "preserve") == 0) {
        /* Kept for inspection, as xapi does: the record still says it runs. */
    } else if (restart) {
        rc = vmops_restart_domain(&c, ref, domid, false);
    } else {
        rc = vmops_halt_domain(&c, ref, domid);
    }
    if (rc < 0)
        log_error("VM %s: acting on its guest's %s failed: %s", uuid, reason_name(reason),
                  c.err.kind == XAPI_V_ARRAY && c.err.n > 1 ? c.err.items[1].s : "?");
out:
    vmops_op_end(srv, &op);
    xapi_value_free(&c.err);
}

static void *guest_event_main(void *arg) {
    guest_event *e = arg;

    vmops_handle_guest_event(e->srv, e->uuid, e->domid, e->reason);
    free(e);
    return NULL;
}

/* From the backend's thread: an operation waiting for it takes it; otherwise it
 * is handled on a thread of its own, which queues on the VM's lock like any caller. */
static void on_domain_event(void *ud, const char *uuid, int domid, vmops_shutdown_reason reason) {
    xapi_server *srv = ud;
    guest_event *e;
    pthread_attr_t attr;
    pthread_t th;

    if (vmops_op_deliver_event(uuid, domid, reason))
        return;
    e = xapi_calloc(1, sizeof *e);
    e->srv = srv;
    snprintf(e->uuid, sizeof e->uuid, "%s", uuid);
    e->domid = domid;
    e->reason = reason;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, guest_event_main, e) != 0) {
        log_error("cannot start a thread for the event of domain %d; handling it inline", domid);
        guest_event_main(e);
    }
    pthread_attr_destroy(&attr);
}

/* ---- reconciliation ----------------------------------------------------------- */

static const vmops_domain_info *find_domain(const vmops_domain_info *doms, size_t n, const char *uuid) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(doms[i].uuid, uuid) == 0)
            return &doms[i];
    return NULL;
}

/* After a restart or a crash of the daemon, every VM's record is made to agree
 * with the hypervisor: nothing stays in current_operations, power states and
 * domids are the backend's. Domains nobody owns are reported, never destroyed. */
static int reconcile(xapi_server *srv) {
    vmops_backend *b = srv->backend;
    xapi_store *st = srv->store;
    vmops_domain_info *doms = NULL;
    guest_event *missed[64];
    unsigned nmissed = 0;
    size_t n = 0;
    int rc;

    rc = b->ops->list(b, &doms, &n);
    if (rc < 0)
        return agent_log_errno(LOG_ERR, rc, "cannot list the hypervisor's domains");

    xapi_store_write_begin(st);
    for (xapi_obj *vm = xapi_store_first(st, C_VM); vm; vm = xapi_store_next(vm)) {
        const vmops_domain_info *d;
        const char *ps = vm->fields[XAPI_F_VM_power_state].s;

        if (vm->fields[XAPI_F_VM_is_control_domain].b)
            continue;
        if (vm->fields[XAPI_F_VM_current_operations].n > 0) {
            log_notice("VM %s: operation interrupted by the restart", vm->uuid);
            xapi_obj_set(st, vm, XAPI_F_VM_current_operations, xapi_value_struct());
        }
        d = find_domain(doms, n, vm->uuid);
        if (d) {
            bool paused = d->state == VMOPS_STATE_PAUSED;
            if (strcmp(ps, paused ? "Paused" : "Running") != 0 || vm->fields[XAPI_F_VM_domid].i != d->domid)
                log_notice("VM %s: found as domain %d (%s)", vm->uuid, d->domid, paused ? "paused" : "running");
            vmops_record_running(srv, vm, d->domid, paused, d->memory_actual);
            if (d->state == VMOPS_STATE_SHUTDOWN && nmissed < sizeof missed / sizeof missed[0]) {
                guest_event *e = xapi_calloc(1, sizeof *e);
                e->srv = srv;
                snprintf(e->uuid, sizeof e->uuid, "%s", vm->uuid);
                e->domid = d->domid;
                e->reason = d->reason;
                missed[nmissed++] = e;
            }
        } else if (strcmp(ps, "Running") == 0 || strcmp(ps, "Paused") == 0) {
            log_notice("VM %s: its domain is gone; now halted", vm->uuid);
            vmops_record_stopped(srv, vm, false);
        } else if (strcmp(ps, "Suspended") == 0) {
            char vdi[XAPI_REF_LEN + 1], *img = NULL;
            if (vmops_suspend_image_find(srv, vm, vdi, &img) < 0) {
                log_notice("VM %s: its suspend image is gone; now halted", vm->uuid);
                vmops_record_stopped(srv, vm, false);
            }
            free(img);
        } else if (vm->fields[XAPI_F_VM_domid].i != -1 && !vm->fields[XAPI_F_VM_is_a_template].b)
            vmops_record_stopped(srv, vm, false);
    }
    for (size_t i = 0; i < n; i++)
        if (!xapi_store_get_by_uuid(st, C_VM, doms[i].uuid))
            log_warning("domain %d (%s) belongs to no VM; left alone", doms[i].domid, doms[i].uuid);
    rc = xapi_store_write_end_durable(st);
    free(doms);
    /* Guests that shut down while we were away get their actions now. */
    for (unsigned i = 0; i < nmissed; i++)
        guest_event_main(missed[i]);
    return rc;
}

/* ---- default templates --------------------------------------------------------- */

typedef struct template_def {
    const char *name, *description, *domain_type;
    int64_t memory;
    const char *pv_bootloader, *pv_args;
    const char *boot_order;
    const char *install_methods;
    int64_t disk_size;
} template_def;

static const template_def templates[] = {
    {"Other install media", "Template for installing any operating system from install media (HVM)", "hvm",
     1LL << 30, "", "", "cd", "cdrom", 16LL << 30},
    {"Generic Linux PV", "Template for a paravirtualised Linux guest booted with pygrub or a given kernel", "pv",
     512LL << 20, "pygrub", "console=hvc0", NULL, "cdrom,nfs,http,ftp", 8LL << 30},
    {"Generic Linux PVH", "Template for a PVH Linux guest booted from a given kernel", "pvh", 512LL << 20, "",
     "console=hvc0", NULL, "http,ftp", 8LL << 30},
};

static void put(xapi_value *m, const char *k, const char *v) {
    xapi_struct_set(m, k, xapi_value_string(v));
}

static void install_templates(xapi_server *srv) {
    xapi_store *st = srv->store;

    xapi_store_write_begin(st);
    for (size_t t = 0; t < sizeof templates / sizeof templates[0]; t++) {
        const template_def *d = &templates[t];
        xapi_value oc = xapi_value_struct(), platform = xapi_value_struct(), boot = xapi_value_struct();
        char disks[256];
        bool found = false;
        xapi_obj *vm;

        for (vm = xapi_store_first(st, C_VM); vm && !found; vm = xapi_store_next(vm))
            found = vm->fields[XAPI_F_VM_is_a_template].b && strcmp(vm->fields[XAPI_F_VM_name_label].s, d->name) == 0;
        if (found) {
            xapi_value_free(&oc);
            xapi_value_free(&platform);
            xapi_value_free(&boot);
            continue;
        }
        vm = xapi_obj_create(st, C_VM);
        xapi_obj_set_string(st, vm, XAPI_F_VM_name_label, d->name);
        xapi_obj_set_string(st, vm, XAPI_F_VM_name_description, d->description);
        xapi_obj_set_bool(st, vm, XAPI_F_VM_is_a_template, true);
        xapi_obj_set_string(st, vm, XAPI_F_VM_domain_type, d->domain_type);
        xapi_obj_set_int(st, vm, XAPI_F_VM_memory_static_min, d->memory / 2);
        xapi_obj_set_int(st, vm, XAPI_F_VM_memory_dynamic_min, d->memory);
        xapi_obj_set_int(st, vm, XAPI_F_VM_memory_dynamic_max, d->memory);
        xapi_obj_set_int(st, vm, XAPI_F_VM_memory_static_max, d->memory);
        xapi_obj_set_int(st, vm, XAPI_F_VM_VCPUs_max, 1);
        xapi_obj_set_int(st, vm, XAPI_F_VM_VCPUs_at_startup, 1);
        xapi_obj_set_string(st, vm, XAPI_F_VM_actions_after_shutdown, "destroy");
        xapi_obj_set_string(st, vm, XAPI_F_VM_actions_after_reboot, "restart");
        xapi_obj_set_string(st, vm, XAPI_F_VM_actions_after_crash, "restart");
        xapi_obj_set_string(st, vm, XAPI_F_VM_PV_bootloader, d->pv_bootloader);
        xapi_obj_set_string(st, vm, XAPI_F_VM_PV_args, d->pv_args);
        if (d->boot_order) {
            xapi_obj_set_string(st, vm, XAPI_F_VM_HVM_boot_policy, "BIOS order");
            put(&boot, "order", d->boot_order);
            put(&platform, "acpi", "1");
            put(&platform, "apic", "true");
            put(&platform, "pae", "true");
            put(&platform, "nx", "true");
            put(&platform, "viridian", "true");
        }
        xapi_obj_set(st, vm, XAPI_F_VM_HVM_boot_params, boot);
        xapi_obj_set(st, vm, XAPI_F_VM_platform, platform);
        snprintf(disks, sizeof disks,
                 "<provision><disk device=\"0\" size=\"%lld\" sr=\"\" bootable=\"true\" type=\"system\"/></provision>",
                 (long long)d->disk_size);
        put(&oc, "default_template", "true");
        put(&oc, "install-methods", d->install_methods);
        put(&oc, "disks", disks);
        xapi_obj_set(st, vm, XAPI_F_VM_other_config, oc);
        xapi_obj_set_string(st, vm, XAPI_F_VM_power_state, "Halted");
        xapi_obj_set_int(st, vm, XAPI_F_VM_domid, -1);
        vmops_update_allowed_operations(st, vm);
        log_info("installed template '%s'", d->name);
    }
    xapi_store_write_end_durable(st);
}

/* ---- start and stop -------------------------------------------------------------- */

int vmops_init(xapi_server *srv) {
    const agent_config *cfg = srv->config;
    vmops_backend *b = NULL;
    int64_t memory = 0;
    xapi_obj *h, *m;
    int rc;

    xapi_store_rdlock(srv->store);
    h = xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_host], srv->host_ref);
    m = h ? xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_host_metrics], h->fields[XAPI_F_host_metrics].s)
          : NULL;
    if (m)
        memory = m->fields[XAPI_F_host_metrics_memory_total].i;
    xapi_store_rdunlock(srv->store);

    if (strcmp(cfg->backend, "sim") == 0)
        rc = vmops_sim_new(cfg->state_dir, cfg->sim_guest_delay_ms, memory, &b);
    else {
#ifdef XENAPID_HAVE_LIBXL
        rc = vmops_libxl_new(cfg->state_dir, cfg->console_log_dir, cfg->hotplug_helper, &b);
#else
        log_error("this xenapid was built without the libxl backend");
        rc = -ENOTSUP;
#endif
    }
    if (rc < 0)
        return rc;
    b->on_event = on_domain_event;
    b->event_ud = srv;
    srv->backend = b;
    rc = vmops_machined_start(cfg->register_machines, b);
    if (rc < 0)
        return rc;
    install_templates(srv);
    return reconcile(srv);
}

void vmops_shutdown(xapi_server *srv) {
    vmops_machined_stop();
    if (srv->backend) {
        srv->backend->ops->free(srv->backend);
        srv->backend = NULL;
    }
}
