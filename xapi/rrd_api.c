/* Statistics as clients read them: xapi's HTTP handlers /rrd_updates,
 * /host_rrd and /vm_rrd (rrdd_http_handler.ml), a Prometheus text endpoint
 * /metrics, and the data source messages of host and VM (get_data_sources,
 * query_data_source, record_data_source, forget_data_source_archives). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xapi/api.h"
#include "xapi/error.h"
#include "xapi/http.h"
#include "xapi/rrd_api.h"
#include "xapi/rrd_db.h"

#define MAX_VM_ARGS 4096

static bool parse_int64(const char *s, int64_t *ret) {
    char *end;
    long long v;

    if (!s || !*s)
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *ret = v;
    return true;
}

static bool uuid_form(const char *s) {
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        char c = s[i];
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/* JSON only when asked for by name: a `json` argument, or an Accept header
 * naming application/json before text/xml. xapi also answers JSON to a bare
 * wildcard; CloudStack's Java client sends one and parses XML, so a wildcard
 * keeps XML here. */
static bool wants_json(xapi_http_req *r) {
    const char *accept = xapi_http_req_header(r, "Accept");
    const char *j, *x;

    if (xapi_http_req_arg(r, "json"))
        return true;
    if (!accept)
        return false;
    j = strstr(accept, "application/json");
    x = strstr(accept, "text/xml");
    return j && (!x || j < x);
}

static bool authorized(xapi_http_req *r, xapi_http_reply *rep) {
    if (xapi_http_req_authorized(r))
        return true;
    xapi_http_reply_text(rep, 401, "a valid session_id is needed\n");
    return false;
}

static void reply_buf(xapi_http_reply *rep, xapi_buf *b, bool json) {
    rep->status = 200;
    rep->type = json ? "application/json" : "text/xml";
    rep->body = xapi_buf_steal(b, &rep->len);
}

/* ---- /rrd_updates ---- */

typedef struct vm_args {
    char (*uuid)[37];
    size_t n;
    bool all, bad, given;
} vm_args;

static void take_vm_arg(void *ud, const char *v) {
    vm_args *a = ud;

    a->given = true;
    if (strcmp(v, "all") == 0)
        a->all = true;
    else if (strcmp(v, "none") == 0)
        ;
    else if (!uuid_form(v) || a->n >= MAX_VM_ARGS)
        a->bad = true;
    else
        snprintf(a->uuid[a->n++], 37, "%s", v);
}

static void rrd_updates_get(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep) {
    xapi_rrd_xport_query q = {0};
    const char *cf = xapi_http_req_arg(r, "cf"), *host = xapi_http_req_arg(r, "host");
    const char *interval = xapi_http_req_arg(r, "interval");
    xapi_buf out = XAPI_BUF_INIT;
    xapi_rrd_source *src = NULL;
    vm_args vms = {0};
    size_t n = 0, cap;
    char host_uuid[37] = "";

    if (!authorized(r, rep))
        return;
    if (!parse_int64(xapi_http_req_arg(r, "start"), &q.start)) {
        xapi_http_reply_text(rep, 400, "start (unix seconds, or negative: relative to the last update) is needed\n");
        return;
    }
    if (interval && (!parse_int64(interval, &q.interval) || q.interval < 0)) {
        xapi_http_reply_text(rep, 400, "interval must be a number of seconds\n");
        return;
    }
    q.all_cfs = !cf || xapi_rrd_cf_parse(cf, &q.cf) < 0; /* as xapi: an unknown cf means all */
    q.json = wants_json(r);
    vms.uuid = xapi_calloc(MAX_VM_ARGS, sizeof *vms.uuid);
    xapi_http_req_args(r, "vm_uuid", take_vm_arg, &vms);
    if (vms.bad) {
        free(vms.uuid);
        xapi_http_reply_text(rep, 400, "vm_uuid must be a VM uuid, all or none\n");
        return;
    }
    if (!vms.given)
        vms.all = true;

    xapi_store_rdlock(srv->store);
    {
        xapi_obj *h = xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_host], srv->host_ref);
        if (h)
            memcpy(host_uuid, h->uuid, sizeof host_uuid);
    }
    xapi_store_rdunlock(srv->store);

    xapi_rrd_db_lock();
    cap = 1 + vms.n;
    for (size_t i = 0;; i++) {
        xapi_rrd_kind k;
        const char *u;
        bool live;
        if (!xapi_rrd_db_nth(i, &k, &u, &live))
            break;
        cap++;
    }
    src = xapi_calloc(cap + 1, sizeof *src);
    if (host && strcmp(host, "true") == 0 && (src[n].rrd = xapi_rrd_db_get(XAPI_RRD_HOST, host_uuid))) {
        src[n].cls = "host";
        src[n++].uuid = host_uuid;
    }
    if (vms.all) {
        xapi_rrd_kind k;
        const char *u;
        bool live;
        xapi_rrd *rrd;
        for (size_t i = 0; (rrd = xapi_rrd_db_nth(i, &k, &u, &live)); i++)
            if (k == XAPI_RRD_VM && live) {
                src[n].cls = "vm";
                src[n].uuid = u;
                src[n++].rrd = rrd;
            }
    } else
        for (size_t i = 0; i < vms.n; i++)
            if ((src[n].rrd = xapi_rrd_db_get(XAPI_RRD_VM, vms.uuid[i]))) {
                src[n].cls = "vm";
                src[n++].uuid = vms.uuid[i];
            }
    xapi_rrd_xport(src, n, &q, &out);
    xapi_rrd_db_unlock();
    free(src);
    free(vms.uuid);
    reply_buf(rep, &out, q.json); /* the CORS headers xapi sends here go with every reply (http.c) */
}

/* ---- /host_rrd, /vm_rrd ---- */

static void dump_get(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep, xapi_rrd_kind kind, const char *uuid) {
    xapi_buf out = XAPI_BUF_INIT;
    bool json = wants_json(r);
    xapi_rrd *rrd;

    xapi_rrd_db_lock();
    rrd = xapi_rrd_db_get(kind, uuid);
    if (rrd)
        xapi_rrd_dump(rrd, json, &out);
    xapi_rrd_db_unlock();
    if (!rrd) {
        xapi_http_reply_text(rep, 404, "no RRD for that object on this host\n");
        return;
    }
    reply_buf(rep, &out, json);
    rep->close = true; /* xapi: HTTP/1.0, connection close */
}

static void host_rrd_get(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep) {
    char uuid[37] = "";
    xapi_obj *h;

    if (!authorized(r, rep))
        return;
    xapi_store_rdlock(srv->store);
    h = xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_host], srv->host_ref);
    if (h)
        memcpy(uuid, h->uuid, sizeof uuid);
    xapi_store_rdunlock(srv->store);
    dump_get(srv, r, rep, XAPI_RRD_HOST, uuid);
}

static void vm_rrd_get(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep) {
    const char *uuid = xapi_http_req_arg(r, "uuid");

    if (!authorized(r, rep))
        return;
    if (!uuid || !uuid_form(uuid)) {
        xapi_http_reply_text(rep, 400, "uuid (a VM uuid) is needed\n");
        return;
    }
    dump_get(srv, r, rep, XAPI_RRD_VM, uuid);
}

/* ---- /metrics (Prometheus text format 0.0.4) ---- */

typedef struct metric_name {
    const char *family;   /* without the xenapid_<class>_ prefix */
    const char *help;
    bool counter;         /* the raw counter, not the rate */
    double scale;
    char label[16];       /* label name, "" for none */
    char label_value[XAPI_RRD_NAME_MAX];
} metric_name;

/* xapi's DS names to metric families; a name not listed is exported as a
 * gauge of its latest value, named after it. */
static bool map_metric(xapi_rrd_kind kind, const char *ds, metric_name *m) {
    char dev[XAPI_RRD_NAME_MAX];
    int n;
    size_t len = strlen(ds);

    memset(m, 0, sizeof *m);
    m->scale = 1;
    if (sscanf(ds, "cpu%d", &n) == 1 && strspn(ds + 3, "0123456789") == len - 3) {
        m->family = kind == XAPI_RRD_VM ? "cpu_seconds_total" : "cpu_idle_seconds_total";
        m->help = kind == XAPI_RRD_VM ? "CPU time used by the vCPU" : "Time the CPU was idle";
        m->counter = true;
        snprintf(m->label, sizeof m->label, kind == XAPI_RRD_VM ? "vcpu" : "cpu");
        snprintf(m->label_value, sizeof m->label_value, "%d", n);
        return true;
    }
    if (len > 4 && (strcmp(ds + len - 3, "_rx") == 0 || strcmp(ds + len - 3, "_tx") == 0) &&
        (strncmp(ds, "vif_", 4) == 0 || strncmp(ds, "pif_", 4) == 0)) {
        bool rx = ds[len - 2] == 'r';
        snprintf(dev, sizeof dev, "%.*s", (int)(len - 7), ds + 4);
        m->family = rx ? "network_receive_bytes_total" : "network_transmit_bytes_total";
        m->help = rx ? "Bytes received (as the guest sees them, for a VM)" : "Bytes sent (as the guest sees them, for a VM)";
        m->counter = true;
        snprintf(m->label, sizeof m->label, ds[0] == 'v' ? "vif" : "device");
        snprintf(m->label_value, sizeof m->label_value, "%s", dev);
        return true;
    }
    if (strncmp(ds, "vbd_", 4) == 0 && len > 9 &&
        (strcmp(ds + len - 5, "_read") == 0 || strcmp(ds + len - 6, "_write") == 0)) {
        bool rd = strcmp(ds + len - 5, "_read") == 0;
        snprintf(dev, sizeof dev, "%.*s", (int)(len - 4 - (rd ? 5 : 6)), ds + 4);
        m->family = rd ? "disk_read_bytes_total" : "disk_written_bytes_total";
        m->help = rd ? "Bytes read from the virtual disk" : "Bytes written to the virtual disk";
        m->counter = true;
        snprintf(m->label, sizeof m->label, "device");
        snprintf(m->label_value, sizeof m->label_value, "%s", dev);
        return true;
    }
    static const struct {
        const char *ds, *family, *help;
        double scale;
    } fixed[] = {
        {"memory", "memory_bytes", "Memory allocated to the VM", 1},
        {"memory_target", "memory_target_bytes", "Balloon target of the VM", 1},
        {"memory_internal_free", "memory_internal_free_bytes", "Free memory as the guest reports it", 1024},
        {"cpu_usage", "cpu_usage_ratio", "Mean use of the VM's vCPUs over the last interval", 1},
        {"cpu_avg", "cpu_usage_ratio", "Mean use of the host's CPUs over the last interval", 1},
        {"loadavg", "load1", "Load average over one minute (dom0)", 1},
        {"memory_total_kib", "memory_total_bytes", "Memory of the host", 1024},
        {"memory_free_kib", "memory_free_bytes", "Memory free for guests", 1024},
        {"running_vcpus", "running_vcpus", "vCPUs of running domains", 1},
        {"running_domains", "running_domains", "Running domains", 1},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (strcmp(ds, fixed[i].ds) == 0) {
            m->family = fixed[i].family;
            m->help = fixed[i].help;
            m->scale = fixed[i].scale;
            return true;
        }
    return false;
}

typedef struct metric_line {
    char family[96];
    const char *help;
    bool counter;
    char text[256];
} metric_line;

static int cmp_line(const void *a, const void *b) {
    const metric_line *x = a, *y = b;
    int c = strcmp(x->family, y->family);
    return c ? c : strcmp(x->text, y->text);
}

static void metrics_get(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep) {
    metric_line *lines = NULL;
    size_t n = 0, cap = 0;
    xapi_buf out = XAPI_BUF_INIT;
    xapi_rrd *rrd;
    xapi_rrd_kind kind;
    const char *uuid;
    bool live;

    if (!authorized(r, rep))
        return;
    xapi_rrd_db_lock();
    for (size_t i = 0; (rrd = xapi_rrd_db_nth(i, &kind, &uuid, &live)); i++) {
        const char *cls = kind == XAPI_RRD_HOST ? "host" : "vm";
        if (!live)
            continue;
        for (size_t d = 0; d < rrd->nds; d++) {
            const xapi_rrd_ds *ds = &rrd->ds[d];
            metric_name m;
            double v;
            metric_line *l;
            xapi_buf t = XAPI_BUF_INIT;

            bool known = map_metric(kind, ds->name, &m);
            if (!known && ds->type != XAPI_RRD_GAUGE)
                continue;
            v = m.counter ? (ds->have_last ? ds->last : NAN) : xapi_rrd_latest(rrd, (int)d);
            if (!m.counter && ds->type == XAPI_RRD_GAUGE && isnan(v))
                v = ds->value;
            if (isnan(v))
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                lines = xapi_realloc(lines, cap * sizeof *lines);
            }
            l = &lines[n++];
            snprintf(l->family, sizeof l->family, "xenapid_%s_%s", cls, known ? m.family : ds->name);
            l->help = known ? m.help : "xapi data source of that name (latest value)";
            l->counter = m.counter;
            xapi_buf_printf(&t, "%s{%s=\"%s\"", l->family, cls, uuid);
            if (m.label[0])
                xapi_buf_printf(&t, ",%s=\"%s\"", m.label, m.label_value);
            xapi_buf_puts(&t, "} ");
            if (isinf(v))
                xapi_buf_puts(&t, v > 0 ? "+Inf" : "-Inf");
            else
                xapi_buf_printf(&t, "%.17g", v * m.scale);
            snprintf(l->text, sizeof l->text, "%s", t.data);
            xapi_buf_free(&t);
        }
    }
    xapi_rrd_db_unlock();
    if (n)
        qsort(lines, n, sizeof *lines, cmp_line);
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(lines[i].family, lines[i - 1].family) != 0)
            xapi_buf_printf(&out, "# HELP %s %s\n# TYPE %s %s\n", lines[i].family, lines[i].help, lines[i].family,
                            lines[i].counter ? "counter" : "gauge");
        xapi_buf_printf(&out, "%s\n", lines[i].text);
    }
    free(lines);
    if (!out.data)
        xapi_buf_puts(&out, "");
    rep->status = 200;
    rep->type = "text/plain; version=0.0.4; charset=utf-8";
    rep->body = xapi_buf_steal(&out, &rep->len);
}

/* ---- data source messages ---- */

typedef struct ds_info {
    const char *units, *description;
} ds_info;

static ds_info describe(xapi_rrd_kind kind, const char *name) {
    metric_name m;
    size_t len = strlen(name);

    if (strncmp(name, "cpu", 3) == 0 && map_metric(kind, name, &m) && m.counter)
        return (ds_info){"(fraction)", kind == XAPI_RRD_VM ? "CPU usage of the vCPU" : "Physical cpu usage"};
    if (strcmp(name, "cpu_usage") == 0 || strcmp(name, "cpu_avg") == 0)
        return (ds_info){"(fraction)", "Average physical cpu usage"};
    if (len > 3 && (strcmp(name + len - 3, "_rx") == 0 || strcmp(name + len - 3, "_tx") == 0))
        return (ds_info){"B/s", name[len - 2] == 'r' ? "Bytes per second received" : "Bytes per second sent"};
    if (strncmp(name, "vbd_", 4) == 0)
        return (ds_info){"B/s", strstr(name, "_read") ? "Reads from the device in bytes per second"
                                                      : "Writes to the device in bytes per second"};
    if (strcmp(name, "memory") == 0 || strcmp(name, "memory_target") == 0)
        return (ds_info){"B", strcmp(name, "memory") == 0 ? "Memory currently allocated to VM" : "Target of VM balloon driver"};
    if (strcmp(name, "memory_internal_free") == 0)
        return (ds_info){"KiB", "Memory used as reported by the guest agent"};
    if (strcmp(name, "memory_total_kib") == 0 || strcmp(name, "memory_free_kib") == 0)
        return (ds_info){"KiB", strcmp(name, "memory_total_kib") == 0 ? "Total amount of memory in the host"
                                                                       : "Total amount of free memory"};
    if (strcmp(name, "loadavg") == 0)
        return (ds_info){"", "Domain0 loadavg"};
    if (strcmp(name, "running_vcpus") == 0 || strcmp(name, "running_domains") == 0)
        return (ds_info){"", strcmp(name, "running_vcpus") == 0 ? "The total number of running vCPUs"
                                                                : "The total number of running domains"};
    return (ds_info){"unknown", "description not available"};
}

/* The object's uuid, after checking the ref (HANDLE_INVALID). */
static int object_uuid(xapi_call *c, xapi_rrd_kind kind, char uuid[37]) {
    const xapi_class *cls = &xapi_classes[kind == XAPI_RRD_HOST ? XAPI_C_host : XAPI_C_VM];
    xapi_obj *o;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, cls, c->args[0].s, &o);
    if (rc == 0)
        memcpy(uuid, o->uuid, 37);
    xapi_store_rdunlock(c->srv->store);
    return rc;
}

static void out_ds_record(xapi_out *o, xapi_rrd_kind kind, const char *name, bool enabled, bool standard, double min,
                          double max) {
    ds_info info = describe(kind, name);

    xapi_out_struct_begin(o);
    xapi_out_cmember(o, "name_label");
    xapi_out_cstring(o, name);
    xapi_out_cmember(o, "name_description");
    xapi_out_cstring(o, info.description);
    xapi_out_cmember(o, "enabled");
    xapi_out_bool(o, enabled);
    xapi_out_cmember(o, "standard");
    xapi_out_bool(o, standard);
    xapi_out_cmember(o, "units");
    xapi_out_cstring(o, info.units);
    xapi_out_cmember(o, "min");
    xapi_out_float(o, min);
    xapi_out_cmember(o, "max");
    xapi_out_float(o, max);
    xapi_out_cmember(o, "value");
    xapi_out_float(o, 0.0); /* as xapi: the value is for query_data_source */
    xapi_out_struct_end(o);
}

static int get_data_sources(xapi_call *c, xapi_rrd_kind kind) {
    char uuid[37];
    xapi_rrd *rrd;
    const xapi_rrd_input *live;
    size_t nlive = 0;
    int rc = object_uuid(c, kind, uuid);

    if (rc < 0)
        return rc;
    xapi_out_array_begin(c->out);
    xapi_rrd_db_lock();
    rrd = xapi_rrd_db_get(kind, uuid);
    for (size_t d = 0; rrd && d < rrd->nds; d++) {
        const xapi_rrd_ds *ds = &rrd->ds[d];
        bool is_live = xapi_rrd_db_has_live_source(kind, uuid, ds->name, NULL);
        out_ds_record(c->out, kind, ds->name, true, is_live, ds->min, ds->max);
    }
    /* live sources not recorded (forgotten since the last sample): listed, not enabled */
    live = xapi_rrd_db_live(kind, uuid, &nlive);
    for (size_t i = 0; rrd && i < nlive; i++)
        if (xapi_rrd_find_ds(rrd, live[i].name) < 0)
            out_ds_record(c->out, kind, live[i].name, false, true, live[i].min, live[i].max);
    xapi_rrd_db_unlock();
    xapi_out_array_end(c->out);
    return 0;
}

/* xapi lets rrdd's Datasource_missing through as INTERNAL_ERROR; a name the
 * client got wrong is its error to see, so here it is INVALID_VALUE. */
static int ds_missing(xapi_call *c, const char *name) {
    return xapi_call_fail(c, "INVALID_VALUE", "data_source", name);
}

static int query_data_source(xapi_call *c, xapi_rrd_kind kind) {
    char uuid[37];
    const char *name = c->args[1].s;
    xapi_rrd *rrd;
    double v = NAN;
    int idx = -1, rc = object_uuid(c, kind, uuid);

    if (rc < 0)
        return rc;
    xapi_rrd_db_lock();
    rrd = xapi_rrd_db_get(kind, uuid);
    if (rrd && (idx = xapi_rrd_find_ds(rrd, name)) >= 0)
        v = xapi_rrd_latest(rrd, idx);
    xapi_rrd_db_unlock();
    if (idx < 0)
        return ds_missing(c, name);
    xapi_out_float(c->out, v);
    return 0;
}

static int record_data_source(xapi_call *c, xapi_rrd_kind kind) {
    char uuid[37];
    const char *name = c->args[1].s;
    xapi_rrd_input in;
    xapi_rrd *rrd;
    int rc = object_uuid(c, kind, uuid);

    if (rc < 0)
        return rc;
    xapi_rrd_db_lock();
    rrd = xapi_rrd_db_get(kind, uuid);
    if (rrd && xapi_rrd_find_ds(rrd, name) < 0 && xapi_rrd_db_has_live_source(kind, uuid, name, &in)) {
        rc = xapi_rrd_add_ds(rrd, name, in.type, in.min, in.max, in.inverse);
        xapi_rrd_db_touch(kind, uuid);
    } else if (!rrd || xapi_rrd_find_ds(rrd, name) < 0)
        rc = -ENOENT;
    xapi_rrd_db_unlock();
    if (rc == -ENOENT)
        return ds_missing(c, name);
    if (rc < 0)
        return rc;
    xapi_out_void(c->out);
    return 0;
}

static int forget_data_source_archives(xapi_call *c, xapi_rrd_kind kind) {
    char uuid[37];
    xapi_rrd *rrd;
    int rc = object_uuid(c, kind, uuid);

    if (rc < 0)
        return rc;
    xapi_rrd_db_lock();
    rrd = xapi_rrd_db_get(kind, uuid);
    if (rrd && xapi_rrd_find_ds(rrd, c->args[1].s) >= 0) {
        xapi_rrd_remove_ds(rrd, xapi_rrd_find_ds(rrd, c->args[1].s));
        xapi_rrd_db_touch(kind, uuid);
    }
    xapi_rrd_db_unlock();
    xapi_out_void(c->out);
    return 0;
}

#define PER_CLASS(fn)                                                                                                  \
    static int host_##fn(xapi_call *c) { return fn(c, XAPI_RRD_HOST); }                                                \
    static int vm_##fn(xapi_call *c) { return fn(c, XAPI_RRD_VM); }
PER_CLASS(get_data_sources)
PER_CLASS(query_data_source)
PER_CLASS(record_data_source)
PER_CLASS(forget_data_source_archives)

static const xapi_handler rrd_handlers[] = {
    {"host", "get_data_sources", host_get_data_sources},
    {"host", "query_data_source", host_query_data_source},
    {"host", "record_data_source", host_record_data_source},
    {"host", "forget_data_source_archives", host_forget_data_source_archives},
    {"VM", "get_data_sources", vm_get_data_sources},
    {"VM", "query_data_source", vm_query_data_source},
    {"VM", "record_data_source", vm_record_data_source},
    {"VM", "forget_data_source_archives", vm_forget_data_source_archives},
    {NULL, NULL, NULL},
};

void xapi_rrd_register(void) {
    xapi_register_handlers(rrd_handlers);
    xapi_http_register_stream_get("/rrd_updates", rrd_updates_get);
    xapi_http_register_stream_get("/host_rrd", host_rrd_get);
    xapi_http_register_stream_get("/vm_rrd", vm_rrd_get);
    xapi_http_register_stream_get("/metrics", metrics_get);
}
