/* The statistics sampler (see stats.h). Data source names, types and ranges
 * are xapi's (rrdp_cpu, rrdp_netdev, rrdp_squeezed, rrdp_iostat). */
#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/log.h"
#include "agent/stats.h"
#include "vmops/backend.h"
#include "xapi/rrd_db.h"

#define HOST_MAX_CPUS 1024
#define HOST_MAX_PIFS 64
#define HOST_MAX_INPUTS (2 * HOST_MAX_CPUS + 2 * HOST_MAX_PIFS + 16)
#define VM_MAX_INPUTS (VMOPS_SAMPLE_MAX_VCPUS + 4 * VMOPS_SAMPLE_MAX_DEVS + 8)

struct agent_stats {
    xapi_server *srv;
    char host_uuid[XAPI_UUID_LEN + 1];
    double memory_total_kib;
    /* The control domain's VM: its domain 0 sample (a backend's uuid for it is Xen's,
     * not the record's) or, from a backend with no domain 0 (sim), its memory. */
    char dom0_uuid[XAPI_UUID_LEN + 1];
    int64_t dom0_memory;
    const char *proc_dir; /* "/proc" */
    const char *net_dir;  /* "/sys/class/net" */
    xapi_rrd_input *in;   /* scratch: one object's inputs */
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
};

typedef struct inputs {
    xapi_rrd_input *v;
    size_t n, max;
} inputs;

static void put(inputs *in, xapi_rrd_ds_type type, double min, double max, bool inverse, double value,
                const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static void put(inputs *in, xapi_rrd_ds_type type, double min, double max, bool inverse, double value,
                const char *fmt, ...) {
    xapi_rrd_input *i;
    va_list ap;

    if (in->n >= in->max)
        return;
    i = &in->v[in->n];
    va_start(ap, fmt);
    vsnprintf(i->name, sizeof i->name, fmt, ap);
    va_end(ap);
    i->type = type;
    i->min = min;
    i->max = max;
    i->inverse = inverse;
    i->value = value;
    in->n++;
}

#define GAUGE(in, v, ...) put(in, XAPI_RRD_GAUGE, -INFINITY, INFINITY, false, v, __VA_ARGS__)
#define BYTES(in, v, ...) put(in, XAPI_RRD_DERIVE, 0, INFINITY, false, v, __VA_ARGS__)
#define FRACTION(in, v, inv, ...) put(in, XAPI_RRD_DERIVE, 0, 1, inv, v, __VA_ARGS__)

/* Names go into XML and JSON unescaped and into file names: plain only. */
static bool plain_name(const char *s) {
    if (!*s || strlen(s) > 32)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-' || *s == '.'))
            return false;
    return true;
}

/* ---- host ---- */

static void host_cpus(agent_stats *s, inputs *in) {
    char path[256], line[512];
    double hz = (double)sysconf(_SC_CLK_TCK);
    double idle_sum = 0;
    int ncpu = 0;
    FILE *f;

    snprintf(path, sizeof path, "%s/stat", s->proc_dir);
    f = fopen(path, "re");
    if (!f)
        return;
    while (fgets(line, sizeof line, f) && ncpu < HOST_MAX_CPUS) {
        unsigned long long user, nice, sys, idle, iowait;
        int n;
        if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9')
            continue;
        if (sscanf(line + 3, "%d %llu %llu %llu %llu %llu", &n, &user, &nice, &sys, &idle, &iowait) != 6)
            continue;
        /* xapi stores 1 - (idle time per second) */
        FRACTION(in, (double)(idle + iowait) / hz, true, "cpu%d", n);
        idle_sum += (double)(idle + iowait) / hz;
        ncpu++;
    }
    fclose(f);
    if (ncpu > 0)
        FRACTION(in, idle_sum / ncpu, true, "cpu_avg");
}

static void host_loadavg(agent_stats *s, inputs *in) {
    char path[256];
    double load;
    FILE *f;

    snprintf(path, sizeof path, "%s/loadavg", s->proc_dir);
    f = fopen(path, "re");
    if (!f)
        return;
    if (fscanf(f, "%lf", &load) == 1)
        GAUGE(in, load, "loadavg");
    fclose(f);
}

static bool read_counter(const char *dir, const char *dev, const char *what, double *ret) {
    char path[512], buf[32];
    FILE *f;
    bool ok = false;

    snprintf(path, sizeof path, "%s/%s/statistics/%s", dir, dev, what);
    f = fopen(path, "re");
    if (!f)
        return false;
    if (fgets(buf, sizeof buf, f)) {
        *ret = strtod(buf, NULL);
        ok = true;
    }
    fclose(f);
    return ok;
}

static bool is_bridge(const char *dir, const char *dev) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/bridge", dir, dev);
    return access(path, F_OK) == 0;
}

/* The host's own interfaces, as PIFs are: not the loopback, nor bridges
 * (xenbr0 carries what its PIF does: pif_aggr would count it twice), nor the
 * backends of guests' VIFs (vifD.N, tapD.N), which are the VMs' figures. */
static void host_pifs(agent_stats *s, inputs *in) {
    DIR *d = opendir(s->net_dir);
    struct dirent *de;
    double aggr_rx = 0, aggr_tx = 0;
    int n = 0;

    if (!d)
        return;
    while ((de = readdir(d)) && n < HOST_MAX_PIFS) {
        double rx, tx;
        const char *dev = de->d_name;
        if (dev[0] == '.' || strcmp(dev, "lo") == 0 || strncmp(dev, "vif", 3) == 0 || strncmp(dev, "tap", 3) == 0 ||
            !plain_name(dev) || is_bridge(s->net_dir, dev))
            continue;
        if (!read_counter(s->net_dir, dev, "rx_bytes", &rx) || !read_counter(s->net_dir, dev, "tx_bytes", &tx))
            continue;
        BYTES(in, rx, "pif_%s_rx", dev);
        BYTES(in, tx, "pif_%s_tx", dev);
        aggr_rx += rx;
        aggr_tx += tx;
        n++;
    }
    closedir(d);
    if (n > 0) {
        BYTES(in, aggr_rx, "pif_aggr_rx");
        BYTES(in, aggr_tx, "pif_aggr_tx");
    }
}

/* ---- VMs ---- */

static void vm_inputs(const vmops_domain_sample *d, inputs *in) {
    double total = 0;

    for (int i = 0; i < d->nvcpus; i++) {
        FRACTION(in, (double)d->vcpu_time_ns[i] / 1e9, false, "cpu%d", i);
        total += (double)d->vcpu_time_ns[i] / 1e9;
    }
    if (d->nvcpus > 0)
        FRACTION(in, total / d->nvcpus, false, "cpu_usage");
    GAUGE(in, (double)d->memory, "memory");
    GAUGE(in, (double)d->memory_target, "memory_target");
    if (d->memory_internal_free_kib >= 0)
        GAUGE(in, (double)d->memory_internal_free_kib, "memory_internal_free");
    for (int i = 0; i < d->nvifs; i++) {
        BYTES(in, (double)d->vifs[i].rx_bytes, "vif_%d_rx", d->vifs[i].devid);
        BYTES(in, (double)d->vifs[i].tx_bytes, "vif_%d_tx", d->vifs[i].devid);
    }
    for (int i = 0; i < d->nvbds; i++) {
        if (!plain_name(d->vbds[i].dev))
            continue;
        BYTES(in, (double)d->vbds[i].read_bytes, "vbd_%s_read", d->vbds[i].dev);
        BYTES(in, (double)d->vbds[i].write_bytes, "vbd_%s_write", d->vbds[i].dev);
    }
}

/* The control domain's sample under its VM's uuid, as xapi keeps dom0's RRD
 * (Nova reads its memory): the backend's domain 0 renamed, or made up from the
 * record where the backend has none. */
static void add_dom0(const agent_stats *s, vmops_domain_sample **doms, size_t *ndoms) {
    vmops_domain_sample *d;

    for (size_t i = 0; i < *ndoms; i++)
        if ((*doms)[i].domid == 0) {
            memcpy((*doms)[i].uuid, s->dom0_uuid, sizeof s->dom0_uuid);
            return;
        }
    *doms = xapi_realloc(*doms, (*ndoms + 1) * sizeof **doms);
    d = &(*doms)[(*ndoms)++];
    memset(d, 0, sizeof *d);
    memcpy(d->uuid, s->dom0_uuid, sizeof s->dom0_uuid);
    d->memory = d->memory_target = s->dom0_memory;
    d->memory_internal_free_kib = -1;
}

void agent_stats_round(agent_stats *s, double t) {
    vmops_backend *b = s->srv->backend;
    vmops_domain_sample *doms = NULL;
    size_t ndoms = 0;
    inputs in = {s->in, 0, HOST_MAX_INPUTS};
    int vcpus = 0;

    xapi_rrd_db_round_begin();
    if (b && b->ops->sample && b->ops->sample(b, &doms, &ndoms) < 0) {
        doms = NULL;
        ndoms = 0;
    }
    if (*s->dom0_uuid)
        add_dom0(s, &doms, &ndoms);
    for (size_t i = 0; i < ndoms; i++) {
        inputs vin = {s->in, 0, VM_MAX_INPUTS};
        vcpus += doms[i].nvcpus;
        vm_inputs(&doms[i], &vin);
        xapi_rrd_db_update(XAPI_RRD_VM, doms[i].uuid, vin.v, vin.n, t);
    }
    free(doms);

    host_cpus(s, &in);
    host_loadavg(s, &in);
    GAUGE(&in, s->memory_total_kib, "memory_total_kib");
    GAUGE(&in, b ? (double)(__atomic_load_n(&b->host_memory_free, __ATOMIC_RELAXED) / 1024) : NAN, "memory_free_kib");
    GAUGE(&in, (double)vcpus, "running_vcpus");
    GAUGE(&in, (double)ndoms, "running_domains");
    host_pifs(s, &in);
    xapi_rrd_db_update(XAPI_RRD_HOST, s->host_uuid, in.v, in.n, t);
}

/* ---- saving ---- */

typedef struct vm_set {
    char (*uuid)[XAPI_UUID_LEN + 1];
    size_t n;
} vm_set;

static int cmp_uuid(const void *a, const void *b) {
    return strcmp(a, b);
}

static bool vm_exists(void *ud, const char *uuid) {
    vm_set *set = ud;
    return bsearch(uuid, set->uuid, set->n, sizeof *set->uuid, cmp_uuid) != NULL;
}

int agent_stats_save(agent_stats *s) {
    const xapi_class *C_VM = &xapi_classes[XAPI_C_VM];
    xapi_store *st = s->srv->store;
    vm_set set = {0};
    int rc;

    /* the VMs that exist, read before (never under) the RRD lock */
    xapi_store_rdlock(st);
    set.uuid = xapi_calloc(xapi_store_count(st, C_VM) + 1, sizeof *set.uuid);
    for (xapi_obj *o = xapi_store_first(st, C_VM); o; o = xapi_store_next(o))
        memcpy(set.uuid[set.n++], o->uuid, sizeof *set.uuid);
    xapi_store_rdunlock(st);
    qsort(set.uuid, set.n, sizeof *set.uuid, cmp_uuid);
    rc = xapi_rrd_db_save(vm_exists, &set);
    free(set.uuid);
    return rc;
}

/* ---- the thread ---- */

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *sampler(void *arg) {
    agent_stats *s = arg;
    unsigned step = (unsigned)s->srv->config->stats_interval;
    int64_t save_every = s->srv->config->stats_save_interval;
    double next_save = wall_now() + (double)save_every;

    pthread_setname_np(pthread_self(), "xenapid-stats");
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        double now = wall_now();
        /* on step boundaries, as rrdd samples */
        double next = (floor(now / step) + 1) * step;
        struct timespec until = {(time_t)next, (long)((next - floor(next)) * 1e9)};

        while (!s->stop && pthread_cond_timedwait(&s->wake, &s->lock, &until) != ETIMEDOUT)
            ;
        if (s->stop)
            break;
        pthread_mutex_unlock(&s->lock);
        agent_stats_round(s, wall_now());
        if (wall_now() >= next_save) {
            agent_stats_save(s);
            next_save = wall_now() + (double)save_every;
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int agent_stats_new(xapi_server *srv, agent_stats **ret) {
    agent_stats *s = xapi_calloc(1, sizeof *s);
    xapi_obj *h, *m;
    int rc;

    s->srv = srv;
    s->proc_dir = "/proc";
    s->net_dir = "/sys/class/net";
    s->in = xapi_calloc(HOST_MAX_INPUTS, sizeof *s->in);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    xapi_store_rdlock(srv->store);
    h = xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_host], srv->host_ref);
    m = h ? xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_host_metrics], h->fields[XAPI_F_host_metrics].s)
          : NULL;
    if (h)
        memcpy(s->host_uuid, h->uuid, sizeof s->host_uuid);
    s->memory_total_kib = m ? (double)(m->fields[XAPI_F_host_metrics_memory_total].i / 1024) : NAN;
    for (xapi_obj *vm = xapi_store_first(srv->store, &xapi_classes[XAPI_C_VM]); vm; vm = xapi_store_next(vm))
        if (vm->fields[XAPI_F_VM_is_control_domain].b && strcmp(vm->fields[XAPI_F_VM_resident_on].s, srv->host_ref) == 0) {
            memcpy(s->dom0_uuid, vm->uuid, sizeof s->dom0_uuid);
            s->dom0_memory = vm->fields[XAPI_F_VM_memory_dynamic_max].i;
        }
    xapi_store_rdunlock(srv->store);
    rc = xapi_rrd_db_open(srv->config->state_dir, (unsigned)srv->config->stats_interval);
    if (rc < 0) {
        agent_stats_free(s);
        return rc;
    }
    *ret = s;
    return 0;
}

void agent_stats_free(agent_stats *s) {
    if (!s)
        return;
    xapi_rrd_db_close();
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s->in);
    free(s);
}

int agent_stats_start(xapi_server *srv, agent_stats **ret) {
    agent_stats *s = NULL;
    int rc = agent_stats_new(srv, &s);

    if (rc < 0)
        return rc;
    /* A first round before the API opens: the first /rrd_updates after a start
     * (CloudStack asks as soon as it has connected) lists every data source. */
    agent_stats_round(s, wall_now());
    rc = -pthread_create(&s->thread, NULL, sampler, s);
    if (rc < 0) {
        agent_stats_free(s);
        return agent_log_errno(LOG_ERR, rc, "stats: cannot start the sampler");
    }
    s->running = true;
    *ret = s;
    return 0;
}

void agent_stats_stop(agent_stats *s) {
    int rc;

    if (!s)
        return;
    if (s->running) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    rc = agent_stats_save(s);
    if (rc < 0)
        log_warning("stats: the archives could not all be written at stop: %s", strerror(-rc));
    agent_stats_free(s);
}
