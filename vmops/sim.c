/* The simulator backend: domains that exist only in this process (and in a
 * state file, so they survive a restart of the daemon as real domains survive
 * a restart of xapi). Deterministic: domids count up from 1, a guest answers
 * a shutdown or reboot request after a fixed delay. A control socket, reachable
 * only from the host's root, makes guests act on their own for tests. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/log.h"
#include "vmops/backend.h"
#include "xapi/store.h"
#include "xapi/value.h"

#define SIM_MAX_DOMAINS 4096
#define SIM_MAX_DEVICES 64
#define CONTROL_LINE_MAX 256

typedef enum guest_mode {
    GUEST_COOPERATIVE = 0, /* honours shutdown and reboot requests */
    GUEST_IGNORES,         /* never answers: clean operations time out */
} guest_mode;

typedef struct sim_domain {
    char uuid[37];
    char *name;
    int domid;
    vmops_domain_state state;
    vmops_shutdown_reason reason;
    int64_t memory;
    int vcpus;
    int64_t start_time;
    guest_mode mode;
    /* test hook ("reboot-before-next-op"): the guest reboots just as the next
     * operation on its domain reaches the backend, which then finds it shut down */
    bool reboot_before_next_op;
    bool announce; /* a shutdown its event has yet to report (the guest thread does) */
    /* a request the guest is about to act on */
    vmops_shutdown_reason pending;
    int64_t pending_due_ns;
    char *disks[SIM_MAX_DEVICES]; /* vdev, NULL when free */
    char *nics[SIM_MAX_DEVICES];  /* mac, by devid */
    /* statistics: time spent running, brought up to date at each sample; not saved, so after
     * a restart of the daemon a sim guest's counters start again from zero (a counter reset) */
    uint64_t run_ns;
    int64_t run_at_ns; /* monotonic time run_ns was last brought up to date; 0: never */
} sim_domain;

typedef struct sim {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    sim_domain *doms[SIM_MAX_DOMAINS];
    int next_domid;
    int64_t memory_total;
    int guest_delay_ms;
    char *state_path;
    char *control_path;
    char *console_dir;
    int control_fd;
    int stop_pipe[2];
    bool stop;
    pthread_t guest_thread, control_thread;
    bool threads;
    unsigned consoles; /* console threads running (sim_console_main) */
} sim;

/* fmt holds one "%s", replaced by arg: messages for the API error. */
static char *msg_dup(const char *fmt, const char *arg) {
    const char *at = strstr(fmt, "%s");
    char *m = NULL;

    if (!at)
        return xapi_strdup(fmt);
    if (asprintf(&m, "%.*s%s%s", (int)(at - fmt), fmt, arg, at + 2) < 0)
        xapi_oom();
    return m;
}

static sim_domain *find_domid(sim *s, int domid) {
    for (int i = 0; i < SIM_MAX_DOMAINS; i++)
        if (s->doms[i] && s->doms[i]->domid == domid)
            return s->doms[i];
    return NULL;
}

static void save(sim *s);

/* find_domid for an operation on the domain: its absence is the caller's error. */
static sim_domain *domain_for_op(sim *s, int domid, char **ret_msg) {
    sim_domain *d = find_domid(s, domid);

    if (!d)
        *ret_msg = xapi_strdup("no such domain");
    else if (d->reboot_before_next_op && d->state == VMOPS_STATE_RUNNING) {
        d->reboot_before_next_op = false;
        d->state = VMOPS_STATE_SHUTDOWN;
        d->reason = VMOPS_REASON_REBOOT;
        d->announce = true;
        save(s);
        pthread_cond_signal(&s->wake);
    }
    return d;
}

/* domain_for_op for what only a live guest can do: *ret_rc -ENOENT if it is
 * gone, -ESRCH if it has shut down (and waits to be destroyed). */
static sim_domain *live_domain_for_op(sim *s, int domid, int *ret_rc, char **ret_msg) {
    sim_domain *d = domain_for_op(s, domid, ret_msg);

    if (!d) {
        *ret_rc = -ENOENT;
        return NULL;
    }
    if (d->state != VMOPS_STATE_RUNNING && d->state != VMOPS_STATE_PAUSED) {
        *ret_msg = xapi_strdup("the guest has shut down");
        *ret_rc = -ESRCH;
        return NULL;
    }
    return d;
}

static sim_domain *find_uuid(sim *s, const char *uuid) {
    for (int i = 0; i < SIM_MAX_DOMAINS; i++)
        if (s->doms[i] && strcmp(s->doms[i]->uuid, uuid) == 0)
            return s->doms[i];
    return NULL;
}

static void dom_free(sim_domain *d) {
    if (!d)
        return;
    for (int i = 0; i < SIM_MAX_DEVICES; i++) {
        free(d->disks[i]);
        free(d->nics[i]);
    }
    free(d->name);
    free(d);
}

static void recompute_free(vmops_backend *b) {
    sim *s = b->priv;
    int64_t used = 0;

    for (int i = 0; i < SIM_MAX_DOMAINS; i++)
        if (s->doms[i])
            used += s->doms[i]->memory;
    b->host_memory_free = s->memory_total - used;
}

/* The state file, rewritten atomically after every change. */
static void save(sim *s) {
    json_object *root = json_object_new_object(), *arr = json_object_new_array();
    char *tmp = NULL;
    const char *text;
    int fd;

    json_object_object_add(root, "next_domid", json_object_new_int(s->next_domid));
    for (int i = 0; i < SIM_MAX_DOMAINS; i++) {
        sim_domain *d = s->doms[i];
        json_object *o, *disks, *nics;

        if (!d)
            continue;
        o = json_object_new_object();
        disks = json_object_new_array();
        nics = json_object_new_array();
        json_object_object_add(o, "uuid", json_object_new_string(d->uuid));
        json_object_object_add(o, "name", json_object_new_string(d->name ? d->name : ""));
        json_object_object_add(o, "domid", json_object_new_int(d->domid));
        json_object_object_add(o, "state", json_object_new_int(d->state));
        json_object_object_add(o, "reason", json_object_new_int(d->reason));
        json_object_object_add(o, "memory", json_object_new_int64(d->memory));
        json_object_object_add(o, "vcpus", json_object_new_int(d->vcpus));
        json_object_object_add(o, "start_time", json_object_new_int64(d->start_time));
        for (int k = 0; k < SIM_MAX_DEVICES; k++) {
            json_object_array_add(disks, d->disks[k] ? json_object_new_string(d->disks[k]) : NULL);
            json_object_array_add(nics, d->nics[k] ? json_object_new_string(d->nics[k]) : NULL);
        }
        json_object_object_add(o, "disks", disks);
        json_object_object_add(o, "nics", nics);
        json_object_array_add(arr, o);
    }
    json_object_object_add(root, "domains", arr);
    text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
    if (asprintf(&tmp, "%s.tmp", s->state_path) < 0)
        xapi_oom();
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        size_t len = strlen(text);
        /* No fsync: the simulated domains live as long as the machine's page cache, like real ones. */
        bool ok = write(fd, text, len) == (ssize_t)len;
        close(fd);
        if (ok)
            rename(tmp, s->state_path);
        else
            log_error("sim: cannot write %s", tmp);
    }
    free(tmp);
    json_object_put(root);
}

static void load(sim *s) {
    json_object *root = json_object_from_file(s->state_path), *arr;

    if (!root)
        return;
    s->next_domid = json_object_get_int(json_object_object_get(root, "next_domid"));
    if (s->next_domid < 1)
        s->next_domid = 1;
    arr = json_object_object_get(root, "domains");
    for (size_t i = 0; arr && i < json_object_array_length(arr) && i < SIM_MAX_DOMAINS; i++) {
        json_object *o = json_object_array_get_idx(arr, i), *disks, *nics;
        sim_domain *d = xapi_calloc(1, sizeof *d);

        snprintf(d->uuid, sizeof d->uuid, "%s", json_object_get_string(json_object_object_get(o, "uuid")));
        d->name = xapi_strdup(json_object_get_string(json_object_object_get(o, "name")) ?: "");
        d->domid = json_object_get_int(json_object_object_get(o, "domid"));
        d->state = json_object_get_int(json_object_object_get(o, "state"));
        d->reason = json_object_get_int(json_object_object_get(o, "reason"));
        d->memory = json_object_get_int64(json_object_object_get(o, "memory"));
        d->vcpus = json_object_get_int(json_object_object_get(o, "vcpus"));
        d->start_time = json_object_get_int64(json_object_object_get(o, "start_time"));
        d->pending = VMOPS_REASON_NONE;
        disks = json_object_object_get(o, "disks");
        nics = json_object_object_get(o, "nics");
        for (int k = 0; k < SIM_MAX_DEVICES; k++) {
            json_object *dk = disks ? json_object_array_get_idx(disks, (size_t)k) : NULL;
            json_object *nk = nics ? json_object_array_get_idx(nics, (size_t)k) : NULL;
            d->disks[k] = dk ? xapi_strdup(json_object_get_string(dk)) : NULL;
            d->nics[k] = nk ? xapi_strdup(json_object_get_string(nk)) : NULL;
        }
        s->doms[i] = d;
    }
    json_object_put(root);
}

/* What a simulated guest "prints": enough for tests to see which devices it got. */
static void console_write(sim *s, const char *uuid, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void console_write(sim *s, const char *uuid, const char *fmt, ...) {
    char *path = NULL;
    FILE *f;
    va_list ap;

    if (asprintf(&path, "%s/%s.log", s->console_dir, uuid) < 0)
        xapi_oom();
    f = fopen(path, "ae");
    free(path);
    if (!f)
        return;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

/* The size of a direct-boot image file; 0 for none, or one the simulator cannot read. */
static int64_t image_size(const char *path) {
    struct stat st;

    if (!path || !*path || stat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    return (int64_t)st.st_size;
}

static int add_domain(vmops_backend *b, const vmops_domain_config *cfg, int *ret_domid, char **ret_msg) {
    sim *s = b->priv;
    sim_domain *d;
    int slot = -1;

    if (find_uuid(s, cfg->uuid)) {
        *ret_msg = msg_dup("a domain for VM %s already exists", cfg->uuid);
        return -EEXIST;
    }
    if (cfg->memory_target > b->host_memory_free) {
        *ret_msg = xapi_strdup("not enough free memory");
        return -ENOMEM;
    }
    if (image_size(cfg->kernel) + image_size(cfg->ramdisk) > cfg->memory_target) {
        /* as libxc's domain builder refuses it: the images are loaded into the guest's memory */
        *ret_msg = msg_dup("segment kernel too large: %s and its ramdisk do not fit in the VM's memory",
                           cfg->kernel);
        return -EFBIG;
    }
    for (size_t i = 0; i < cfg->ndisks; i++)
        if (cfg->disks[i].target && *cfg->disks[i].target && access(cfg->disks[i].target, F_OK) < 0) {
            *ret_msg = msg_dup("disk image %s not found", cfg->disks[i].target);
            return -ENOENT;
        }
    for (int i = 0; i < SIM_MAX_DOMAINS && slot < 0; i++)
        if (!s->doms[i])
            slot = i;
    if (slot < 0) {
        *ret_msg = xapi_strdup("too many domains");
        return -ENOSPC;
    }
    d = xapi_calloc(1, sizeof *d);
    snprintf(d->uuid, sizeof d->uuid, "%s", cfg->uuid);
    d->name = xapi_strdup(cfg->name ? cfg->name : "");
    d->domid = s->next_domid++;
    d->state = VMOPS_STATE_PAUSED;
    d->reason = VMOPS_REASON_NONE;
    d->pending = VMOPS_REASON_NONE;
    d->memory = cfg->memory_target;
    d->vcpus = (int)cfg->vcpus_at_startup;
    d->start_time = xapi_wall_seconds();
    for (size_t i = 0; i < cfg->ndisks && cfg->disks[i].devid >= 0 && cfg->disks[i].devid < SIM_MAX_DEVICES; i++)
        d->disks[cfg->disks[i].devid] = xapi_strdup(cfg->disks[i].vdev ? cfg->disks[i].vdev : "");
    for (size_t i = 0; i < cfg->nnics && cfg->nics[i].devid >= 0 && cfg->nics[i].devid < SIM_MAX_DEVICES; i++)
        d->nics[cfg->nics[i].devid] = xapi_strdup(cfg->nics[i].mac);
    s->doms[slot] = d;
    recompute_free(b);
    save(s);
    console_write(s, d->uuid, "SIM-GUEST-UP domain %d name %s\n", d->domid, d->name);
    for (size_t i = 0; i < cfg->ndisks; i++)
        console_write(s, d->uuid, "SIM-DISK %s: %s\n", cfg->disks[i].vdev ? cfg->disks[i].vdev : "?",
                      cfg->disks[i].target ? cfg->disks[i].target : "(empty)");
    for (size_t i = 0; i < cfg->nnics; i++)
        console_write(s, d->uuid, "SIM-MAC eth%d: %s\n", cfg->nics[i].devid, cfg->nics[i].mac);
    *ret_domid = d->domid;
    return 0;
}

static int sim_create(vmops_backend *b, const vmops_domain_config *cfg, int *ret_domid, char **ret_msg) {
    sim *s = b->priv;
    int rc;

    pthread_mutex_lock(&s->lock);
    rc = add_domain(b, cfg, ret_domid, ret_msg);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int set_state(vmops_backend *b, int domid, vmops_domain_state from, vmops_domain_state to, char **ret_msg) {
    sim *s = b->priv;
    sim_domain *d;
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    d = domain_for_op(s, domid, ret_msg);
    if (!d)
        rc = -ENOENT;
    else if (d->state != from && d->state != to) {
        *ret_msg = xapi_strdup("domain is not in the right state");
        rc = -EINVAL;
    } else {
        d->state = to;
        save(s);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sim_unpause(vmops_backend *b, int domid, char **ret_msg) {
    return set_state(b, domid, VMOPS_STATE_PAUSED, VMOPS_STATE_RUNNING, ret_msg);
}

static int sim_pause(vmops_backend *b, int domid, char **ret_msg) {
    return set_state(b, domid, VMOPS_STATE_RUNNING, VMOPS_STATE_PAUSED, ret_msg);
}

static int sim_set_vcpus(vmops_backend *b, int domid, int n, int max, char **ret_msg) {
    sim *s = b->priv;
    sim_domain *d;
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    d = live_domain_for_op(s, domid, &rc, ret_msg);
    if (d && (n < 1 || n > max)) {
        *ret_msg = xapi_strdup("VCPU count out of range");
        rc = -EINVAL;
    } else if (d) {
        d->vcpus = n;
        save(s);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sim_request_shutdown(vmops_backend *b, int domid, bool reboot, char **ret_msg) {
    sim *s = b->priv;
    sim_domain *d;
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    d = live_domain_for_op(s, domid, &rc, ret_msg);
    if (d && d->mode == GUEST_COOPERATIVE) {
        /* A paused guest runs no code: it acts when unpaused. */
        d->pending = reboot ? VMOPS_REASON_REBOOT : VMOPS_REASON_POWEROFF;
        d->pending_due_ns = xapi_now_ns() + (int64_t)s->guest_delay_ms * 1000000LL;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void remove_domain(vmops_backend *b, sim_domain *d) {
    sim *s = b->priv;

    for (int i = 0; i < SIM_MAX_DOMAINS; i++)
        if (s->doms[i] == d)
            s->doms[i] = NULL;
    dom_free(d);
    recompute_free(b);
    save(s);
}

static int sim_destroy(vmops_backend *b, int domid, char **ret_msg) {
    sim *s = b->priv;
    sim_domain *d;
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    d = domain_for_op(s, domid, ret_msg);
    if (!d)
        rc = -ENOENT;
    else
        remove_domain(b, d);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sim_suspend(vmops_backend *b, int domid, const char *path, char **ret_msg) {
    sim *s = b->priv;
    sim_domain *d;
    FILE *f;
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    d = live_domain_for_op(s, domid, &rc, ret_msg);
    if (!d)
        goto out;
    f = fopen(path, "we");
    if (!f) {
        rc = -errno;
        *ret_msg = msg_dup("cannot write the suspend image %s", path);
        goto out;
    }
    /* The "memory image": enough to check that resume gets the same guest back. */
    fprintf(f, "xenapid-sim-image %s %lld %d\n", d->uuid, (long long)d->memory, d->vcpus);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = -EIO;
    fclose(f);
    if (rc == 0)
        remove_domain(b, d);
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sim_resume(vmops_backend *b, const vmops_domain_config *cfg, const char *path, int *ret_domid,
                      char **ret_msg) {
    sim *s = b->priv;
    char uuid[64] = "";
    FILE *f = fopen(path, "re");
    int rc;

    if (!f) {
        *ret_msg = msg_dup("suspend image %s not found", path);
        return -ENOENT;
    }
    rc = fscanf(f, "xenapid-sim-image %63s", uuid) == 1 ? 0 : -EINVAL;
    fclose(f);
    if (rc < 0 || strcmp(uuid, cfg->uuid) != 0) {
        *ret_msg = msg_dup("%s is not a suspend image of this VM", path);
        return -EINVAL;
    }
    pthread_mutex_lock(&s->lock);
    rc = add_domain(b, cfg, ret_domid, ret_msg);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int device_op(vmops_backend *b, int domid, bool disk, int devid, const char *value, bool attach,
                     char **ret_msg) {
    sim *s = b->priv;
    sim_domain *d;
    char **slot;
    int rc = 0;

    if (devid < 0 || devid >= SIM_MAX_DEVICES) {
        *ret_msg = xapi_strdup("device number out of range");
        return -EINVAL;
    }
    pthread_mutex_lock(&s->lock);
    d = domain_for_op(s, domid, ret_msg);
    if (!d) {
        rc = -ENOENT;
        goto out;
    }
    slot = disk ? &d->disks[devid] : &d->nics[devid];
    if (attach == (*slot != NULL)) {
        *ret_msg = xapi_strdup(attach ? "device already attached" : "device not attached");
        rc = attach ? -EEXIST : -ENOENT;
        goto out;
    }
    if (attach) {
        *slot = xapi_strdup(value ? value : "");
        if (disk)
            console_write(s, d->uuid, "SIM-DISK %s: hot-plugged\n", *slot);
        else
            console_write(s, d->uuid, "SIM-MAC eth%d: %s hot-plugged\n", devid, *slot);
    } else {
        free(*slot);
        *slot = NULL;
    }
    save(s);
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sim_disk_attach(vmops_backend *b, int domid, const vmops_disk *d, char **ret_msg) {
    if (d->target && *d->target && access(d->target, F_OK) < 0) {
        *ret_msg = msg_dup("disk image %s not found", d->target);
        return -ENOENT;
    }
    return device_op(b, domid, true, d->devid, d->vdev, true, ret_msg);
}

static int sim_disk_detach(vmops_backend *b, int domid, const vmops_disk *d, char **ret_msg) {
    return device_op(b, domid, true, d->devid, NULL, false, ret_msg);
}

static int sim_nic_attach(vmops_backend *b, int domid, const vmops_nic *n, char **ret_msg) {
    return device_op(b, domid, false, n->devid, n->mac, true, ret_msg);
}

static int sim_nic_detach(vmops_backend *b, int domid, const vmops_nic *n, char **ret_msg) {
    return device_op(b, domid, false, n->devid, NULL, false, ret_msg);
}

static int sim_list(vmops_backend *b, vmops_domain_info **ret, size_t *ret_n) {
    sim *s = b->priv;
    vmops_domain_info *v = NULL;
    size_t n = 0;

    pthread_mutex_lock(&s->lock);
    v = xapi_calloc(SIM_MAX_DOMAINS, sizeof *v);
    for (int i = 0; i < SIM_MAX_DOMAINS; i++) {
        sim_domain *d = s->doms[i];
        if (!d)
            continue;
        snprintf(v[n].uuid, sizeof v[n].uuid, "%s", d->uuid);
        v[n].domid = d->domid;
        v[n].state = d->state;
        v[n].reason = d->reason;
        v[n].memory_actual = d->memory;
        v[n].vcpus = d->vcpus;
        v[n].start_time = d->start_time;
        n++;
    }
    pthread_mutex_unlock(&s->lock);
    *ret = v;
    *ret_n = n;
    return 0;
}

/* Plausible figures that move with the time a guest has run, so tests can
 * tell a running guest from a paused one: vCPU i is busy 10 + 5 (i mod 8) %
 * of the time, VIF devid n receives (n + 1) MB and sends half of that per
 * second of running, each disk reads 2 MB and writes 0.5 MB per second. */
static void sample_domain(sim_domain *d, int64_t now, vmops_domain_sample *o) {
    if (d->state == VMOPS_STATE_RUNNING && d->run_at_ns > 0 && now > d->run_at_ns)
        d->run_ns += (uint64_t)(now - d->run_at_ns);
    d->run_at_ns = now;
    snprintf(o->uuid, sizeof o->uuid, "%s", d->uuid);
    o->domid = d->domid;
    o->nvcpus = d->vcpus < 1 ? 1 : d->vcpus > VMOPS_SAMPLE_MAX_VCPUS ? VMOPS_SAMPLE_MAX_VCPUS : d->vcpus;
    for (int i = 0; i < o->nvcpus; i++)
        o->vcpu_time_ns[i] = d->run_ns / 100 * (uint64_t)(10 + 5 * (i % 8));
    o->memory = d->memory;
    o->memory_target = d->memory;
    o->memory_internal_free_kib = d->memory / 1024 / 4;
    for (int k = 0; k < SIM_MAX_DEVICES && o->nvifs < VMOPS_SAMPLE_MAX_DEVS; k++)
        if (d->nics[k]) {
            o->vifs[o->nvifs].devid = k;
            o->vifs[o->nvifs].rx_bytes = d->run_ns / 1000 * (uint64_t)(k + 1);
            o->vifs[o->nvifs].tx_bytes = d->run_ns / 2000 * (uint64_t)(k + 1);
            o->nvifs++;
        }
    for (int k = 0; k < SIM_MAX_DEVICES && o->nvbds < VMOPS_SAMPLE_MAX_DEVS; k++)
        if (d->disks[k] && *d->disks[k]) {
            snprintf(o->vbds[o->nvbds].dev, sizeof o->vbds[o->nvbds].dev, "%s", d->disks[k]);
            o->vbds[o->nvbds].read_bytes = d->run_ns / 500;
            o->vbds[o->nvbds].write_bytes = d->run_ns / 2000;
            o->nvbds++;
        }
}

static int sim_sample(vmops_backend *b, vmops_domain_sample **ret, size_t *ret_n) {
    sim *s = b->priv;
    vmops_domain_sample *v = NULL;
    size_t n = 0, cap = 0;
    int64_t now = xapi_now_ns();

    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < SIM_MAX_DOMAINS; i++)
        if (s->doms[i] && (s->doms[i]->state == VMOPS_STATE_RUNNING || s->doms[i]->state == VMOPS_STATE_PAUSED))
            cap++;
    v = xapi_calloc(cap ? cap : 1, sizeof *v);
    for (int i = 0; i < SIM_MAX_DOMAINS && n < cap; i++) {
        sim_domain *d = s->doms[i];
        if (d && (d->state == VMOPS_STATE_RUNNING || d->state == VMOPS_STATE_PAUSED))
            sample_domain(d, now, &v[n++]);
    }
    pthread_mutex_unlock(&s->lock);
    *ret = v;
    *ret_n = n;
    return 0;
}

static char *sim_console_log_path(vmops_backend *b, const char *uuid, int domid) {
    sim *s = b->priv;
    char *p = NULL;

    if (asprintf(&p, "%s/%s.log", s->console_dir, uuid) < 0)
        xapi_oom();
    return p;
}

/* The guest "runs": acts on due requests, reporting them like a hypervisor would. */
/* A simulated live console: the guest's end of a socket pair, served by its
 * own thread. It greets (the RFB version line a VNC server sends first, or a
 * marker line naming the domain), echoes what is typed, and closes when the
 * domain stops running or the client's end closes. */
#define SIM_CONSOLE_TICK_MS 200
#define SIM_CONSOLES_MAX 256

typedef struct sim_console {
    vmops_backend *b;
    int fd;
    int domid;
    vmops_console_protocol protocol;
    char uuid[37];
} sim_console;

static bool sim_console_live(sim *s, int domid) {
    sim_domain *d = find_domid(s, domid);

    return !s->stop && d && (d->state == VMOPS_STATE_RUNNING || d->state == VMOPS_STATE_PAUSED);
}

static void write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static void *sim_console_main(void *arg) {
    sim_console *c = arg;
    sim *s = c->b->priv;
    char buf[4096];
    int len;

    len = c->protocol == VMOPS_CONSOLE_RFB
              ? snprintf(buf, sizeof buf, "RFB 003.008\n")
              : snprintf(buf, sizeof buf, "SIM-CONSOLE domain %d uuid %s\r\n", c->domid, c->uuid);
    write_all(c->fd, buf, (size_t)len);
    for (;;) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int ready = poll(&p, 1, SIM_CONSOLE_TICK_MS);
        bool live;
        ssize_t n;

        pthread_mutex_lock(&s->lock);
        live = sim_console_live(s, c->domid);
        pthread_mutex_unlock(&s->lock);
        if (!live || (ready < 0 && errno != EINTR))
            break;
        if (ready <= 0)
            continue;
        n = recv(c->fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        write_all(c->fd, buf, (size_t)n);
    }
    close(c->fd);
    pthread_mutex_lock(&s->lock);
    s->consoles--;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
    free(c);
    return NULL;
}

static int sim_console_open(vmops_backend *b, const char *uuid, int domid, vmops_console_protocol protocol,
                            int *ret_fd, char **ret_msg) {
    sim *s = b->priv;
    sim_console *c = NULL;
    pthread_attr_t attr;
    pthread_t thread;
    int sv[2] = {-1, -1}, rc;

    pthread_mutex_lock(&s->lock);
    if (!sim_console_live(s, domid)) {
        pthread_mutex_unlock(&s->lock);
        *ret_msg = xapi_strdup("no such running domain");
        return -ESRCH;
    }
    if (s->consoles >= SIM_CONSOLES_MAX) {
        pthread_mutex_unlock(&s->lock);
        *ret_msg = xapi_strdup("too many simulated consoles open");
        return -EMFILE;
    }
    s->consoles++;
    pthread_mutex_unlock(&s->lock);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
        rc = -errno;
        goto fail;
    }
    c = xapi_calloc(1, sizeof *c);
    *c = (sim_console){.b = b, .fd = sv[1], .domid = domid, .protocol = protocol};
    snprintf(c->uuid, sizeof c->uuid, "%s", uuid ? uuid : "");
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 128 * 1024);
    rc = -pthread_create(&thread, &attr, sim_console_main, c);
    pthread_attr_destroy(&attr);
    if (rc < 0)
        goto fail;
    *ret_fd = sv[0];
    return 0;
fail:
    free(c);
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    pthread_mutex_lock(&s->lock);
    s->consoles--;
    pthread_mutex_unlock(&s->lock);
    *ret_msg = xapi_strdup("cannot start the simulated console");
    return rc;
}

static void *guest_main(void *arg) {
    vmops_backend *b = arg;
    sim *s = b->priv;

    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        int64_t now = xapi_now_ns(), next = now + 1000000000LL;
        char uuid[37] = "";
        int domid = -1;
        vmops_shutdown_reason reason = VMOPS_REASON_NONE;

        for (int i = 0; i < SIM_MAX_DOMAINS && domid < 0; i++) {
            sim_domain *d = s->doms[i];
            if (d && d->announce) {
                d->announce = false;
                memcpy(uuid, d->uuid, sizeof uuid);
                domid = d->domid;
                reason = d->reason;
                break;
            }
            if (!d || d->pending == VMOPS_REASON_NONE || d->state != VMOPS_STATE_RUNNING)
                continue;
            if (d->pending_due_ns <= now) {
                d->state = VMOPS_STATE_SHUTDOWN;
                d->reason = d->pending;
                d->pending = VMOPS_REASON_NONE;
                save(s);
                memcpy(uuid, d->uuid, sizeof uuid);
                domid = d->domid;
                reason = d->reason;
            } else if (d->pending_due_ns < next)
                next = d->pending_due_ns;
        }
        if (domid >= 0) {
            pthread_mutex_unlock(&s->lock);
            if (b->on_event)
                b->on_event(b->event_ud, uuid, domid, reason);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        {
            struct timespec ts = {next / 1000000000LL, next % 1000000000LL};
            pthread_cond_timedwait(&s->wake, &s->lock, &ts);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* One control command: "<verb> <vm uuid>". Returns the reply line. */
static const char *control_command(vmops_backend *b, char *line) {
    sim *s = b->priv;
    char verb[32] = "", uuid[64] = "";
    sim_domain *d;
    const char *reply = "ok\n";
    vmops_shutdown_reason reason = VMOPS_REASON_NONE;
    int domid = -1;

    if (sscanf(line, "%31s %63s", verb, uuid) != 2)
        return "error usage: shutdown|reboot|crash|ignore-requests|cooperate|reboot-before-next-op <vm uuid>\n";
    pthread_mutex_lock(&s->lock);
    d = find_uuid(s, uuid);
    if (!d)
        reply = "error no domain for that VM\n";
    else if (strcmp(verb, "ignore-requests") == 0)
        d->mode = GUEST_IGNORES;
    else if (strcmp(verb, "cooperate") == 0)
        d->mode = GUEST_COOPERATIVE;
    else if (strcmp(verb, "reboot-before-next-op") == 0)
        d->reboot_before_next_op = true;
    else if (strcmp(verb, "shutdown") == 0 || strcmp(verb, "reboot") == 0 || strcmp(verb, "crash") == 0) {
        if (d->state != VMOPS_STATE_RUNNING)
            reply = "error domain is not running\n";
        else {
            reason = verb[0] == 's' ? VMOPS_REASON_POWEROFF : verb[0] == 'r' ? VMOPS_REASON_REBOOT : VMOPS_REASON_CRASH;
            d->state = VMOPS_STATE_SHUTDOWN;
            d->reason = reason;
            domid = d->domid;
            save(s);
        }
    } else
        reply = "error unknown command\n";
    pthread_mutex_unlock(&s->lock);
    if (domid >= 0 && b->on_event)
        b->on_event(b->event_ud, uuid, domid, reason);
    return reply;
}

static void *control_main(void *arg) {
    vmops_backend *b = arg;
    sim *s = b->priv;

    for (;;) {
        struct pollfd p[2] = {{s->control_fd, POLLIN, 0}, {s->stop_pipe[0], POLLIN, 0}};
        char line[CONTROL_LINE_MAX];
        size_t len = 0;
        int fd;

        if (poll(p, 2, -1) < 0)
            continue;
        if (p[1].revents)
            break;
        fd = accept4(s->control_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        /* One short line per connection; a slow or silent peer is dropped after a second. */
        for (;;) {
            struct pollfd pc = {fd, POLLIN, 0};
            ssize_t n;
            if (poll(&pc, 1, 1000) <= 0)
                break;
            n = read(fd, line + len, sizeof line - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
            if (memchr(line, '\n', len) || len == sizeof line - 1)
                break;
        }
        line[len] = 0;
        if (len > 0) {
            const char *reply = control_command(b, line);
            if (write(fd, reply, strlen(reply)) < 0)
                log_debug("sim: control reply lost");
        }
        close(fd);
    }
    return NULL;
}

static int open_control(sim *s) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(s->control_path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, s->control_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    unlink(s->control_path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    chmod(s->control_path, 0600);
    s->control_fd = fd;
    return 0;
}

static void sim_free(vmops_backend *b) {
    sim *s;

    if (!b)
        return;
    s = b->priv;
    if (s) {
        if (s->threads) {
            pthread_mutex_lock(&s->lock);
            s->stop = true;
            pthread_cond_broadcast(&s->wake);
            pthread_mutex_unlock(&s->lock);
            if (write(s->stop_pipe[1], "x", 1) < 0)
                log_debug("sim: stop pipe");
            pthread_join(s->guest_thread, NULL);
            pthread_join(s->control_thread, NULL);
        }
        pthread_mutex_lock(&s->lock); /* console threads see stop within a tick */
        s->stop = true;
        while (s->consoles > 0)
            pthread_cond_wait(&s->wake, &s->lock);
        pthread_mutex_unlock(&s->lock);
        if (s->control_fd >= 0) {
            close(s->control_fd);
            unlink(s->control_path);
        }
        if (s->stop_pipe[0] >= 0)
            close(s->stop_pipe[0]);
        if (s->stop_pipe[1] >= 0)
            close(s->stop_pipe[1]);
        for (int i = 0; i < SIM_MAX_DOMAINS; i++)
            dom_free(s->doms[i]);
        free(s->state_path);
        free(s->control_path);
        free(s->console_dir);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        free(s);
    }
    free(b->xen_version);
    free(b);
}

static const vmops_backend_ops sim_ops = {
    .name = "sim",
    .create = sim_create,
    .unpause = sim_unpause,
    .pause = sim_pause,
    .set_vcpus = sim_set_vcpus,
    .request_shutdown = sim_request_shutdown,
    .destroy = sim_destroy,
    .suspend = sim_suspend,
    .resume = sim_resume,
    .disk_attach = sim_disk_attach,
    .disk_detach = sim_disk_detach,
    .nic_attach = sim_nic_attach,
    .nic_detach = sim_nic_detach,
    .list = sim_list,
    .sample = sim_sample,
    .console_log_path = sim_console_log_path,
    .console_open = sim_console_open,
    .free = sim_free,
};

int vmops_sim_new(const char *state_dir, int guest_delay_ms, int64_t memory_total, vmops_backend **ret) {
    vmops_backend *b = xapi_calloc(1, sizeof *b);
    sim *s = xapi_calloc(1, sizeof *s);
    pthread_condattr_t ca;
    int rc;

    b->ops = &sim_ops;
    b->priv = s;
    b->xen_version = xapi_strdup("4.17.0-sim");
    s->control_fd = -1;
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    s->next_domid = 1;
    s->memory_total = memory_total;
    s->guest_delay_ms = guest_delay_ms;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (asprintf(&s->state_path, "%s/sim-domains.json", state_dir) < 0 ||
        asprintf(&s->control_path, "%s/sim-control.sock", state_dir) < 0 ||
        asprintf(&s->console_dir, "%s/sim-console", state_dir) < 0)
        xapi_oom();
    mkdir(s->console_dir, 0700);
    load(s);
    recompute_free(b);
    rc = open_control(s);
    if (rc < 0) {
        log_error("sim: cannot open the control socket %s: %s", s->control_path, strerror(-rc));
        goto fail;
    }
    if (pipe2(s->stop_pipe, O_CLOEXEC) < 0) {
        rc = -errno;
        goto fail;
    }
    if (pthread_create(&s->guest_thread, NULL, guest_main, b) != 0) {
        rc = -EAGAIN;
        goto fail;
    }
    if (pthread_create(&s->control_thread, NULL, control_main, b) != 0) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->guest_thread, NULL);
        rc = -EAGAIN;
        goto fail;
    }
    s->threads = true;
    *ret = b;
    return 0;
fail:
    sim_free(b);
    return rc;
}
