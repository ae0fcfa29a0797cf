/* This host and its one-host pool: created at first start, refreshed from the
 * real machine at every start. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/hostinfo.h"
#include "agent/log.h"
#include "xapi/error.h"
#include "xapi/host.h"
#include "xapi/plugin.h"

#define XENAPID_VERSION "0.1.0"

static void map_put(xapi_value *m, const char *k, const char *v) {
    xapi_struct_set(m, k, xapi_value_string(v));
}

static void map_put_int(xapi_value *m, const char *k, int64_t v) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%" PRId64, v);
    map_put(m, k, tmp);
}

static xapi_obj *first_of(xapi_store *st, int class_id) {
    return xapi_store_first(st, &xapi_classes[class_id]);
}

static xapi_obj *ensure_ref(xapi_store *st, int class_id, xapi_obj *from, int ref_field) {
    xapi_obj *o = NULL;

    if (from)
        o = xapi_store_get_class(st, &xapi_classes[class_id], from->fields[ref_field].s);
    if (!o) {
        o = xapi_obj_create(st, &xapi_classes[class_id]);
        if (from)
            xapi_obj_set_string(st, from, ref_field, o->ref);
    }
    return o;
}

static void fill_host(xapi_server *srv, xapi_obj *h, const agent_hostinfo *hi, const char *xen_version) {
    xapi_store *st = srv->store;
    xapi_value sv = xapi_value_struct(), cpu = xapi_value_struct(), lic = xapi_value_struct();
    xapi_value caps = xapi_value_array(), boot = xapi_value_array();
    const agent_cpu *c0 = hi->cpu_count > 0 ? &hi->cpus[0] : NULL;

    if (!*h->fields[XAPI_F_host_name_label].s)
        xapi_obj_set_string(st, h, XAPI_F_host_name_label, hi->hostname);
    xapi_obj_set_string(st, h, XAPI_F_host_hostname, hi->hostname);
    xapi_obj_set_string(st, h, XAPI_F_host_address, hi->address);
    xapi_obj_set_int(st, h, XAPI_F_host_API_version_major, xapi_api_version_major);
    xapi_obj_set_int(st, h, XAPI_F_host_API_version_minor, xapi_api_version_minor);
    xapi_obj_set_string(st, h, XAPI_F_host_API_version_vendor, "XenSource");
    xapi_obj_set_bool(st, h, XAPI_F_host_enabled, true);

    /* CloudStack picks its resource class from product_brand/product_version,
     * Nova needs a dotted numeric product_version: present as the XCP-ng
     * release whose API this implements, and say who we really are. */
    map_put(&sv, "product_brand", "XCP-ng");
    map_put(&sv, "product_version", "8.2.1");
    map_put(&sv, "product_version_text", "8.2");
    map_put(&sv, "product_version_text_short", "8.2");
    map_put(&sv, "platform_name", "XCP");
    map_put(&sv, "platform_version", "3.2.1");
    map_put(&sv, "build_number", "xenapid");
    map_put(&sv, "hostname", hi->hostname);
    map_put(&sv, "date", "2026-11-23");
    map_put(&sv, "xapi", "23.31");
    map_put(&sv, "xen", xen_version);
    map_put(&sv, "linux", hi->kernel_release);
    map_put(&sv, "xenapid", XENAPID_VERSION);
    map_put(&sv, "dbv", "2023.0");
    xapi_obj_set(st, h, XAPI_F_host_software_version, sv);

    xapi_array_append(&caps, xapi_value_string("xen-3.0-x86_64"));
    xapi_array_append(&caps, xapi_value_string("hvm-3.0-x86_32"));
    xapi_array_append(&caps, xapi_value_string("hvm-3.0-x86_32p"));
    xapi_array_append(&caps, xapi_value_string("hvm-3.0-x86_64"));
    xapi_obj_set(st, h, XAPI_F_host_capabilities, caps);

    map_put_int(&cpu, "cpu_count", hi->cpu_count);
    map_put_int(&cpu, "socket_count", 1);
    if (c0) {
        map_put(&cpu, "vendor", c0->vendor);
        map_put(&cpu, "modelname", c0->model_name);
        map_put_int(&cpu, "family", c0->family);
        map_put_int(&cpu, "model", c0->model);
        map_put_int(&cpu, "stepping", c0->stepping);
        map_put_int(&cpu, "speed", c0->speed_mhz);
        map_put(&cpu, "flags", c0->flags);
        map_put(&cpu, "features", "");
    }
    xapi_obj_set(st, h, XAPI_F_host_cpu_info, cpu);

    /* CloudStack reads restrict_dmc on every VM create; nothing is restricted here. */
    map_put(&lic, "restrict_dmc", "false");
    map_put(&lic, "restrict_vswitch_controller", "false");
    map_put(&lic, "restrict_pooling", "false");
    map_put(&lic, "restrict_lab", "false");
    map_put(&lic, "restrict_ha", "true");
    map_put(&lic, "restrict_marathon", "false");
    map_put(&lic, "restrict_email_alerting", "false");
    map_put(&lic, "restrict_historical_performance", "false");
    map_put(&lic, "restrict_wlb", "true");
    map_put(&lic, "restrict_rbac", "false");
    map_put(&lic, "restrict_cpu_masking", "false");
    map_put(&lic, "restrict_vgpu", "true");
    map_put(&lic, "restrict_integrated_gpu_passthrough", "true");
    map_put(&lic, "sku_type", "free");
    map_put(&lic, "sku_marketing_name", "xenapid");
    map_put(&lic, "expiry", "30000101T00:00:00Z");
    xapi_obj_set(st, h, XAPI_F_host_license_params, lic);
    xapi_obj_set_string(st, h, XAPI_F_host_edition, "xcp-ng");

    xapi_array_append(&boot, xapi_value_string("pygrub"));
    xapi_array_append(&boot, xapi_value_string("eliloader"));
    xapi_obj_set(st, h, XAPI_F_host_supported_bootloaders, boot);
    xapi_obj_set_string(st, h, XAPI_F_host_sched_policy, "credit");
}

static void fill_cpus(xapi_server *srv, xapi_obj *h, const agent_hostinfo *hi) {
    xapi_store *st = srv->store;
    const xapi_class *cls = &xapi_classes[XAPI_C_host_cpu];
    xapi_obj *o, *next;
    int n = 0;

    /* Re-create only when the count changed, so refs stay stable across restarts. */
    for (o = xapi_store_first(st, cls); o; o = xapi_store_next(o))
        n++;
    if (n != hi->cpu_count)
        for (o = xapi_store_first(st, cls); o; o = next) {
            next = xapi_store_next(o);
            xapi_obj_destroy(st, o);
        }
    o = xapi_store_first(st, cls);
    for (int i = 0; i < hi->cpu_count; i++) {
        const agent_cpu *c = &hi->cpus[i];
        char tmp[32];

        if (!o) {
            o = xapi_obj_create(st, cls);
            xapi_obj_set_string(st, o, XAPI_F_host_cpu_host, h->ref);
        }
        xapi_obj_set_int(st, o, XAPI_F_host_cpu_number, i);
        xapi_obj_set_string(st, o, XAPI_F_host_cpu_vendor, c->vendor);
        xapi_obj_set_int(st, o, XAPI_F_host_cpu_speed, c->speed_mhz);
        xapi_obj_set_string(st, o, XAPI_F_host_cpu_modelname, c->model_name);
        xapi_obj_set_int(st, o, XAPI_F_host_cpu_family, c->family);
        xapi_obj_set_int(st, o, XAPI_F_host_cpu_model, c->model);
        snprintf(tmp, sizeof tmp, "%d", c->stepping);
        xapi_obj_set_string(st, o, XAPI_F_host_cpu_stepping, tmp);
        xapi_obj_set_string(st, o, XAPI_F_host_cpu_flags, c->flags);
        o = xapi_store_next(o);
    }
}

#define CONTROL_DOMAIN_STEM "Control domain on host: "

/* The control domain: Nova finds dom0 with `field "domid"="0"`. */
static void fill_dom0(xapi_server *srv, xapi_obj *h, const agent_hostinfo *hi) {
    xapi_store *st = srv->store;
    xapi_obj *vm = xapi_store_get_class(st, &xapi_classes[XAPI_C_VM], h->fields[XAPI_F_host_control_domain].s);
    xapi_obj *m;
    char label[300];

    if (!vm) {
        vm = xapi_obj_create(st, &xapi_classes[XAPI_C_VM]);
        xapi_obj_set_string(st, h, XAPI_F_host_control_domain, vm->ref);
    }
    /* As xapi: the default name follows the hostname; a name the user gave is theirs. */
    if (!*vm->fields[XAPI_F_VM_name_label].s ||
        strncmp(vm->fields[XAPI_F_VM_name_label].s, CONTROL_DOMAIN_STEM, strlen(CONTROL_DOMAIN_STEM)) == 0) {
        snprintf(label, sizeof label, CONTROL_DOMAIN_STEM "%s", hi->hostname);
        xapi_obj_set_string(st, vm, XAPI_F_VM_name_label, label);
    }
    xapi_obj_set_string(st, vm, XAPI_F_VM_name_description, "The domain which manages physical devices and manages other domains");
    xapi_obj_set_bool(st, vm, XAPI_F_VM_is_control_domain, true);
    xapi_obj_set_string(st, vm, XAPI_F_VM_power_state, "Running");
    xapi_obj_set_int(st, vm, XAPI_F_VM_domid, 0);
    xapi_obj_set_string(st, vm, XAPI_F_VM_resident_on, h->ref);
    xapi_obj_set_int(st, vm, XAPI_F_VM_memory_static_max, hi->memory_total);
    xapi_obj_set_int(st, vm, XAPI_F_VM_memory_dynamic_max, hi->memory_total);
    xapi_obj_set_int(st, vm, XAPI_F_VM_memory_dynamic_min, hi->memory_total);
    xapi_obj_set_int(st, vm, XAPI_F_VM_memory_static_min, hi->memory_total);
    xapi_obj_set_int(st, vm, XAPI_F_VM_VCPUs_max, hi->cpu_count);
    xapi_obj_set_int(st, vm, XAPI_F_VM_VCPUs_at_startup, hi->cpu_count);
    xapi_obj_set_string(st, vm, XAPI_F_VM_domain_type, "pv");
    m = ensure_ref(st, XAPI_C_VM_metrics, vm, XAPI_F_VM_metrics);
    xapi_obj_set_int(st, m, XAPI_F_VM_metrics_memory_actual, hi->memory_total);
    xapi_obj_set_int(st, m, XAPI_F_VM_metrics_VCPUs_number, hi->cpu_count);
    {
        xapi_value state = xapi_value_array(); /* a string set */
        xapi_array_append(&state, xapi_value_string("running"));
        xapi_obj_set(st, m, XAPI_F_VM_metrics_state, state);
    }
    xapi_obj_set_string(st, m, XAPI_F_VM_metrics_current_domain_type, "pv");
}

int xapi_host_bootstrap(xapi_server *srv, const char *xen_version) {
    xapi_store *st = srv->store;
    agent_hostinfo hi = {0};
    xapi_obj *h, *pool, *metrics;
    int rc;

    rc = agent_hostinfo_read(&hi);
    if (rc < 0)
        return agent_log_errno(LOG_ERR, rc, "cannot read the host's facts");

    xapi_store_write_begin(st);
    h = first_of(st, XAPI_C_host);
    if (!h) {
        h = xapi_obj_create(st, &xapi_classes[XAPI_C_host]);
        log_info("host: first start, this host is %s", h->uuid);
    }
    fill_host(srv, h, &hi, xen_version);
    metrics = ensure_ref(st, XAPI_C_host_metrics, h, XAPI_F_host_metrics);
    xapi_obj_set_int(st, metrics, XAPI_F_host_metrics_memory_total, hi.memory_total);
    xapi_obj_set_int(st, metrics, XAPI_F_host_metrics_memory_free, hi.memory_free);
    xapi_obj_set_bool(st, metrics, XAPI_F_host_metrics_live, true);
    xapi_obj_set(st, metrics, XAPI_F_host_metrics_last_updated, xapi_value_datetime(xapi_wall_seconds()));
    fill_cpus(srv, h, &hi);
    fill_dom0(srv, h, &hi);

    pool = first_of(st, XAPI_C_pool);
    if (!pool)
        pool = xapi_obj_create(st, &xapi_classes[XAPI_C_pool]);
    xapi_obj_set_string(st, pool, XAPI_F_pool_master, h->ref);
    memcpy(srv->host_ref, h->ref, sizeof srv->host_ref);
    memcpy(srv->pool_ref, pool->ref, sizeof srv->pool_ref);
    rc = xapi_store_write_end_durable(st);
    agent_hostinfo_free(&hi);
    return rc;
}

int xapi_host_set_xen_version(xapi_server *srv, const char *xen_version) {
    xapi_store *st = srv->store;
    xapi_obj *h;

    xapi_store_write_begin(st);
    h = xapi_store_get_class(st, &xapi_classes[XAPI_C_host], srv->host_ref);
    if (h) {
        xapi_value sv = xapi_value_copy(&h->fields[XAPI_F_host_software_version]);
        xapi_struct_set(&sv, "xen", xapi_value_string(xen_version));
        xapi_obj_set(st, h, XAPI_F_host_software_version, sv);
    }
    return xapi_store_write_end_durable(st);
}

/* ---- host.* messages ----------------------------------------------------- */

static int host_check(xapi_call *c) {
    xapi_obj *h;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, &xapi_classes[XAPI_C_host], c->args[0].s, &h);
    xapi_store_rdunlock(c->srv->store);
    return rc;
}

static int get_servertime(xapi_call *c) {
    int rc = host_check(c);
    if (rc == 0)
        xapi_out_datetime(c->out, xapi_wall_seconds());
    return rc;
}

static int compute_free_memory(xapi_call *c) {
    xapi_obj *h, *m;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, &xapi_classes[XAPI_C_host], c->args[0].s, &h);
    if (rc == 0) {
        m = xapi_store_get_class(c->srv->store, &xapi_classes[XAPI_C_host_metrics], h->fields[XAPI_F_host_metrics].s);
        xapi_out_int(c->out, m ? m->fields[XAPI_F_host_metrics_memory_free].i : 0);
    }
    xapi_store_rdunlock(c->srv->store);
    return rc;
}

static int compute_memory_overhead(xapi_call *c) {
    int rc = host_check(c);
    if (rc == 0)
        xapi_out_int(c->out, 0);
    return rc;
}

const xapi_handler xapi_host_handlers[] = {
    {"host", "get_servertime", get_servertime},
    {"host", "get_server_localtime", get_servertime},
    {"host", "compute_free_memory", compute_free_memory},
    {"host", "compute_memory_overhead", compute_memory_overhead},
    {"host", "call_plugin", xapi_host_call_plugin},
    {NULL, NULL, NULL},
};
