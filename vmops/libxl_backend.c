/* The libxl backend: real Xen, through one libxl context shared by all API
 * threads. Every operation is a synchronous libxl call (ao_how NULL) made on
 * the calling API thread, which holds only its VM's lock; libxl's event
 * machinery runs meanwhile in the backend's own loop (libxl_events.c), which
 * also delivers domain shutdowns and deaths.
 *
 * Each domain we create, restore or find (list) gets a death watch
 * (libxl_evenable_domain_death). A shutdown is reported through b->on_event,
 * unless the backend caused it itself (suspend, destroy): those domains are
 * "quiet" while it happens. A domain that dies without having shut down was
 * destroyed by someone else (xl destroy): reported as a poweroff.
 *
 * Lock order: x->lock may be held across libxl_evenable/evdisable_domain_death
 * (which call only the loop's hooks, never back into this file), and is never
 * taken by anything libxl calls; no other libxl call is made with it held. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netdb.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <libxl.h>
#include <libxl_utils.h>
#include <xenstore.h>

#include "agent/log.h"
#include "network/netlink.h"
#include "storage/command.h"
#include "vmops/backend.h"
#include "vmops/libxl_config.h"
#include "vmops/libxl_events.h"
#include "vmops/libxl_log.h"
#include "xapi/value.h"

#define DEFAULT_CONSOLE_LOG_DIR "/var/log/xen/console"
#define DEFAULT_BRIDGE "xenbr0" /* libxl's choice for a NIC without one */
/* A saved image is libxl's migration stream, version 2 (what libxl_domain_suspend writes). */
#define SAVE_STREAM_VERSION 2

typedef struct watch {
    uint32_t domid;
    char uuid[37];
    uint64_t key; /* the for_user of its events */
    libxl_evgen_domain_death *evg;
    bool quiet;             /* the backend is suspending or destroying it: its shutdown is ours */
    bool shutdown_reported; /* (or seen by list(), whose caller deals with it) */
    struct watch *next;
} watch;

/* The domain name a VM last ran under: its console log outlives the domain. */
typedef struct last_name {
    char uuid[37];
    char *name;
    struct last_name *next;
} last_name;

typedef struct xlb {
    vmops_backend *b;
    libxl_ctx *ctx;
    xentoollog_logger *lg;
    vmops_libxl_loop *loop;
    pthread_mutex_t lock; /* watches, next_key, names */
    watch *watches;
    uint64_t next_key;
    last_name *names;
    char *console_dir;
    char *hotplug_helper; /* the device script of our disks and NICs; NULL: Xen's own */
} xlb;

/* ---- errors ---------------------------------------------------------------------------- */

static int errno_of(int xlrc) {
    switch (xlrc) {
    case ERROR_DOMAIN_NOTFOUND:
        return -ENOENT;
    case ERROR_NOMEM:
        return -ENOMEM;
    case ERROR_INVAL:
        return -EINVAL;
    case ERROR_NOPARAVIRT:
        return -EOPNOTSUPP;
    case ERROR_TIMEDOUT:
        return -ETIMEDOUT;
    case ERROR_ABORTED:
        return -ECANCELED;
    default:
        return -EIO;
    }
}

static void set_msg(char **ret_msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_msg(char **ret_msg, const char *fmt, ...) {
    va_list ap;

    if (!ret_msg)
        return;
    free(*ret_msg);
    *ret_msg = NULL;
    va_start(ap, fmt);
    if (vasprintf(ret_msg, fmt, ap) < 0)
        xapi_oom();
    va_end(ap);
}

/* A failed libxl call: "what: why" (why: the last error libxl logged on this
 * thread, else libxl's error code). Returns the matching -errno. */
static int xl_fail(char **ret_msg, int xlrc, const char *what) {
    const char *why = vmops_libxl_error_last();

    set_msg(ret_msg, "%s: %s (libxl error %d, %s)", what, why ? why : "failed", xlrc, libxl_error_to_string(xlrc));
    log_error("libxl backend: %s", *ret_msg);
    return errno_of(xlrc);
}

/* ---- small helpers ---------------------------------------------------------------------- */

static void update_free_memory(xlb *x) {
    uint64_t kb = 0;

    if (libxl_get_free_memory(x->ctx, &kb) == 0)
        __atomic_store_n(&x->b->host_memory_free, (int64_t)(kb * 1024), __ATOMIC_RELAXED);
}

/* 0 if domid is a domain other than dom0, -ENOENT (with a message) if not. */
static int check_domain(xlb *x, int domid, libxl_dominfo *ret_info, char **ret_msg) {
    libxl_dominfo info;
    int xlrc;

    if (domid <= 0) {
        set_msg(ret_msg, domid == 0 ? "domain 0 is not a guest" : "no such domain %d", domid);
        return domid == 0 ? -EPERM : -ENOENT;
    }
    libxl_dominfo_init(&info);
    xlrc = libxl_domain_info(x->ctx, &info, (uint32_t)domid);
    if (xlrc == 0 && ret_info)
        *ret_info = info;
    else
        libxl_dominfo_dispose(&info);
    if (xlrc == ERROR_DOMAIN_NOTFOUND) {
        set_msg(ret_msg, "no such domain %d", domid);
        return -ENOENT;
    }
    if (xlrc != 0)
        return xl_fail(ret_msg, xlrc, "reading the domain's state");
    return 0;
}

/* Before a libxl call on a guest domain: the domain exists, and the error
 * libxl last logged on this thread is forgotten so that it cannot explain
 * the call's failure. */
static int begin_domain_call(xlb *x, int domid, char **ret_msg) {
    int rc = check_domain(x, domid, NULL, ret_msg);

    if (rc == 0)
        vmops_libxl_error_clear();
    return rc;
}

static void uuid_string(const libxl_uuid *u, char out[37]) {
    snprintf(out, 37, LIBXL_UUID_FMT, LIBXL_UUID_BYTES(*u));
}

static vmops_shutdown_reason reason_of(int r) {
    switch (r) {
    case LIBXL_SHUTDOWN_REASON_POWEROFF:
        return VMOPS_REASON_POWEROFF;
    case LIBXL_SHUTDOWN_REASON_REBOOT:
        return VMOPS_REASON_REBOOT;
    case LIBXL_SHUTDOWN_REASON_SUSPEND:
        return VMOPS_REASON_SUSPEND;
    case LIBXL_SHUTDOWN_REASON_CRASH:
        return VMOPS_REASON_CRASH;
    case LIBXL_SHUTDOWN_REASON_WATCHDOG:
        return VMOPS_REASON_WATCHDOG;
    case LIBXL_SHUTDOWN_REASON_SOFT_RESET:
        return VMOPS_REASON_SOFT_RESET;
    default:
        /* Xen's shutdown codes beyond libxl's: a guest that stopped for a reason we cannot name */
        return VMOPS_REASON_CRASH;
    }
}

/* The bridge for the guest's vif (what vif-bridge adds it to) must be there:
 * network/ makes it before a domain is built or a NIC plugged
 * (network_prepare_for_vif), or the host's admin did (host_networking = off). */
static int check_bridge(const char *name, char **ret_msg) {
    if (!name || !*name)
        name = DEFAULT_BRIDGE;
    if (!network_nl_link_exists(name, "bridge")) {
        set_msg(ret_msg, "there is no bridge %s on this host", name);
        return -ENODEV;
    }
    return 0;
}

/* ---- death watches ------------------------------------------------------------------------- */

static watch *find_watch(xlb *x, uint32_t domid) {
    for (watch *w = x->watches; w; w = w->next)
        if (w->domid == domid)
            return w;
    return NULL;
}

/* Lock held. Unlinks and frees w, disabling its libxl watch. */
static void drop_watch(xlb *x, watch *w) {
    for (watch **p = &x->watches; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    if (w->evg)
        libxl_evdisable_domain_death(x->ctx, w->evg);
    free(w);
}

/* Watches domid (idempotent). already_shut_down: the caller knows the domain
 * is shut down and deals with it, so that shutdown is not reported again. */
static int watch_domain(xlb *x, uint32_t domid, const char *uuid, bool already_shut_down) {
    watch *w;
    int xlrc, rc = 0;

    pthread_mutex_lock(&x->lock);
    if (find_watch(x, domid))
        goto out;
    w = xapi_calloc(1, sizeof *w);
    w->domid = domid;
    snprintf(w->uuid, sizeof w->uuid, "%s", uuid);
    w->key = ++x->next_key;
    w->shutdown_reported = already_shut_down;
    xlrc = libxl_evenable_domain_death(x->ctx, domid, w->key, &w->evg);
    if (xlrc != 0) {
        log_error("libxl backend: cannot watch domain %u: libxl error %d, %s", domid, xlrc, libxl_error_to_string(xlrc));
        free(w);
        rc = errno_of(xlrc);
        goto out;
    }
    w->next = x->watches;
    x->watches = w;
out:
    pthread_mutex_unlock(&x->lock);
    return rc;
}

static void unwatch_domain(xlb *x, uint32_t domid) {
    watch *w;

    pthread_mutex_lock(&x->lock);
    w = find_watch(x, domid);
    if (w)
        drop_watch(x, w);
    pthread_mutex_unlock(&x->lock);
}

static void set_quiet(xlb *x, uint32_t domid, bool quiet) {
    watch *w;

    pthread_mutex_lock(&x->lock);
    w = find_watch(x, domid);
    if (w)
        w->quiet = quiet;
    pthread_mutex_unlock(&x->lock);
}

/* A fresh watch for a domain whose shutdown has been seen (and was ours):
 * libxl reports one shutdown per watch. */
static void rearm_watch(xlb *x, uint32_t domid) {
    char uuid[37] = "";
    watch *w;

    pthread_mutex_lock(&x->lock);
    w = find_watch(x, domid);
    if (w) {
        memcpy(uuid, w->uuid, sizeof uuid);
        drop_watch(x, w);
    }
    pthread_mutex_unlock(&x->lock);
    if (*uuid)
        watch_domain(x, domid, uuid, false);
}

/* On the loop's thread. */
static void on_libxl_event(void *ud, libxl_event *ev) {
    vmops_backend *b = ud;
    xlb *x = b->priv;
    vmops_shutdown_reason reason = VMOPS_REASON_NONE;
    vmops_event_fn fn;
    bool report = false, died = false;
    char uuid[37] = "";
    uint32_t domid = ev->domid;
    watch *w;

    pthread_mutex_lock(&x->lock);
    for (w = x->watches; w && w->key != ev->for_user; w = w->next)
        ;
    switch (ev->type) {
    case LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN:
        if (!w)
            break;
        if (w->quiet || w->shutdown_reported) {
            log_debug("libxl backend: domain %u shut down (reason %d): expected", domid,
                      ev->u.domain_shutdown.shutdown_reason);
            w->shutdown_reported = true;
            break;
        }
        w->shutdown_reported = true;
        reason = reason_of(ev->u.domain_shutdown.shutdown_reason);
        memcpy(uuid, w->uuid, sizeof uuid);
        report = true;
        log_info("libxl backend: domain %u (%s) shut down, reason %s", domid, uuid,
                 libxl_shutdown_reason_to_string((libxl_shutdown_reason)ev->u.domain_shutdown.shutdown_reason));
        break;
    case LIBXL_EVENT_TYPE_DOMAIN_DEATH:
        died = true;
        if (!w)
            break;
        if (!w->quiet && !w->shutdown_reported) {
            /* destroyed behind our back: to the VM layer, it powered off */
            memcpy(uuid, w->uuid, sizeof uuid);
            reason = VMOPS_REASON_POWEROFF;
            report = true;
            log_notice("libxl backend: domain %u (%s) was destroyed by someone else", domid, uuid);
        }
        drop_watch(x, w);
        break;
    default:
        log_debug("libxl backend: ignoring %s event of domain %u", libxl_event_type_to_string(ev->type), domid);
        break;
    }
    pthread_mutex_unlock(&x->lock);
    libxl_event_free(x->ctx, ev);
    if (died)
        update_free_memory(x);
    fn = __atomic_load_n(&b->on_event, __ATOMIC_ACQUIRE);
    if (report && fn)
        fn(b->event_ud, uuid, (int)domid, reason);
    else if (report)
        log_notice("libxl backend: nobody to tell of domain %u's shutdown yet", domid);
}

static void remember_name(xlb *x, const char *uuid, const char *name) {
    last_name *n;

    pthread_mutex_lock(&x->lock);
    for (n = x->names; n && strcmp(n->uuid, uuid) != 0; n = n->next)
        ;
    if (!n) {
        n = xapi_calloc(1, sizeof *n);
        snprintf(n->uuid, sizeof n->uuid, "%s", uuid);
        n->next = x->names;
        x->names = n;
    }
    free(n->name);
    n->name = xapi_strdup(name);
    pthread_mutex_unlock(&x->lock);
}

/* ---- building domains --------------------------------------------------------------------------- */

/* How long VM.start waits for the VM's dying domain to give back the memory it needs: 100 x 100 ms. */
#define DYING_DOMAIN_WAIT_TRIES 100
#define DYING_DOMAIN_WAIT_US 100000

/* Before creating: no domain of this VM yet, a name libxl accepts, the
 * bridges, enough memory. May change d's name. */
static int prepare_domain(xlb *x, const vmops_domain_config *cfg, libxl_domain_config *d, char **ret_msg) {
    libxl_domain_config copy;
    libxl_dominfo *doms = NULL;
    uint64_t need = 0, free_kb = 0;
    uint32_t other = 0;
    bool have_need;
    int n = 0, rc;

    libxl_domain_config_init(&copy);
    /* what libxl will take from Xen for it (guest memory, page tables, video, shadow) */
    libxl_domain_config_copy(x->ctx, &copy, d);
    vmops_libxl_error_clear();
    have_need = libxl_domain_need_memory(x->ctx, &copy, INVALID_DOMID, &need) == 0;
    /* The VM's previous domain may still be dying after a reboot or a destroy (libxl has said it
     * is gone, Xen has not freed it yet): wait a bounded time for it while Xen lacks the memory
     * the new domain needs, then let it be. Once the memory is there the dying domain is in
     * nobody's way: in the lab an HVM guest's old domain stayed dying for minutes after
     * VM.hard_reboot (its QEMU, which had not taken libxl's SIGHUP, still mapped its pages: see
     * vmops_libxl_fork) with 1 GiB free, and waiting for it only made the reboot 10 s longer.
     * A live one is a real conflict. */
    for (int tries = 0;; tries++) {
        bool dying = false;
        uint32_t dying_id = 0;

        doms = libxl_list_domain(x->ctx, &n);
        if (!doms) {
            rc = xl_fail(ret_msg, ERROR_FAIL, "listing domains");
            goto out;
        }
        for (int i = 0; i < n; i++) {
            if (doms[i].domid == 0 || libxl_uuid_compare(&doms[i].uuid, &d->c_info.uuid) != 0)
                continue;
            if (!doms[i].dying) {
                set_msg(ret_msg, "a domain for VM %s already exists (domain %u)", cfg->uuid, doms[i].domid);
                rc = -EEXIST;
                goto out;
            }
            dying = true;
            dying_id = doms[i].domid;
        }
        if (!dying)
            break;
        free_kb = 0;
        if (!have_need || libxl_get_free_memory(x->ctx, &free_kb) != 0 || need <= free_kb ||
            tries >= DYING_DOMAIN_WAIT_TRIES) {
            log_info("libxl backend: VM %s's domain %u still dying after %d ms (Xen has %" PRIu64
                     " KiB free, the new domain needs %" PRIu64 " KiB): going on",
                     cfg->uuid, dying_id, tries * DYING_DOMAIN_WAIT_US / 1000, free_kb, need);
            break;
        }
        libxl_dominfo_list_free(doms, n);
        doms = NULL;
        n = 0;
        usleep(DYING_DOMAIN_WAIT_US);
    }
    /* libxl wants unique domain names; VM names need not be */
    if (libxl_name_to_domid(x->ctx, d->c_info.name, &other) == 0) {
        char *name = NULL;
        if (asprintf(&name, "%s-%.8s", d->c_info.name, cfg->uuid) < 0)
            xapi_oom();
        if (libxl_name_to_domid(x->ctx, name, &other) == 0) {
            free(name);
            name = xapi_strdup(cfg->uuid);
        }
        log_notice("libxl backend: domain name '%s' is taken (domain %u); using '%s'", d->c_info.name, other, name);
        free(d->c_info.name);
        d->c_info.name = name;
    }
    for (int i = 0; i < d->num_nics; i++) {
        rc = check_bridge(d->nics[i].bridge, ret_msg);
        if (rc < 0)
            goto out;
    }
    if (have_need && libxl_get_free_memory(x->ctx, &free_kb) == 0 && need > free_kb) {
        set_msg(ret_msg, "the domain needs %" PRIu64 " KiB, Xen has %" PRIu64 " KiB free", need, free_kb);
        rc = -ENOMEM;
        goto out;
    }
    rc = 0;
out:
    if (doms)
        libxl_dominfo_list_free(doms, n);
    libxl_domain_config_dispose(&copy);
    return rc;
}

/* Creates (restore_fd < 0) or restores the domain, paused, and watches it. */
static int make_domain(vmops_backend *b, const vmops_domain_config *cfg, int restore_fd, int *ret_domid,
                       char **ret_msg) {
    xlb *x = b->priv;
    libxl_domain_config d;
    libxl_domain_restore_params params;
    uint32_t domid = INVALID_DOMID;
    struct timespec t0, t1;
    int rc, xlrc;

    libxl_domain_config_init(&d);
    libxl_domain_restore_params_init(&params);
    rc = vmops_libxl_domain_config(cfg, &d, ret_msg);
    if (rc < 0)
        goto out;
    rc = vmops_libxl_device_model_check(&d, vmops_libxl_device_models, ret_msg);
    if (rc < 0)
        goto out;
    rc = prepare_domain(x, cfg, &d, ret_msg);
    if (rc < 0)
        goto out;
    rc = vmops_libxl_device_scripts(&d, x->hotplug_helper, ret_msg);
    if (rc < 0)
        goto out;
    /* QEMU binds the VNC socket there (Xen's tools make the folder at boot; a host may lack it) */
    if (d.b_info.type == LIBXL_DOMAIN_TYPE_HVM && mkdir(VMOPS_LIBXL_VNC_DIR, 0755) < 0 && errno != EEXIST)
        log_warning("libxl backend: cannot make %s for the VNC socket: %s", VMOPS_LIBXL_VNC_DIR, strerror(errno));
    vmops_libxl_error_clear();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (restore_fd < 0)
        xlrc = libxl_domain_create_new(x->ctx, &d, &domid, NULL, NULL);
    else {
        params.checkpointed_stream = LIBXL_CHECKPOINTED_STREAM_NONE;
        params.stream_version = SAVE_STREAM_VERSION;
        xlrc = libxl_domain_create_restore(x->ctx, &d, &domid, restore_fd, -1, &params, NULL, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (xlrc != 0) {
        /* libxl destroys what it had built. QEMU that did not start (libxl
         * gives it 60 s to say "running" in xenstore, then 10 s for its QMP
         * answers, LIBXL_DEVICE_MODEL_START_TIMEOUT and LIBXL_QMP_CMD_TIMEOUT,
         * both fixed when libxl is built; an HVM guest cannot run without it)
         * is xapi's FAILED_TO_START_EMULATOR, not an internal error. */
        const char *dm = d.b_info.type == LIBXL_DOMAIN_TYPE_HVM ? vmops_libxl_dm_error() : NULL;

        if (dm) {
            set_msg(ret_msg, "the device model did not start: %s (libxl error %d, %s)", dm, xlrc,
                    libxl_error_to_string(xlrc));
            log_error("libxl backend: VM %s: %s", cfg->uuid, *ret_msg);
            rc = -ENOEXEC;
            goto out;
        }
        rc = xl_fail(ret_msg, xlrc, restore_fd < 0 ? "creating the domain" : "restoring the domain");
        /* the VM's memory cannot hold its kernel (libxc said so before libxl's own errors): the
         * caller's to fix, not the host's, -EFBIG for vmops (VM_MEMORY_SIZE_TOO_LOW) */
        if (vmops_libxl_error_memory_too_small()) {
            set_msg(ret_msg, "the VM's memory (%" PRId64 " bytes) is too small for its boot image: %s",
                    cfg->memory_target, vmops_libxl_error_memory_too_small());
            rc = -EFBIG;
        }
        goto out;
    }
    rc = watch_domain(x, domid, cfg->uuid, false);
    if (rc < 0) {
        set_msg(ret_msg, "cannot watch the new domain %u", domid);
        libxl_domain_destroy(x->ctx, domid, NULL);
        goto out;
    }
    remember_name(x, cfg->uuid, d.c_info.name);
    /* (libxl's time, hotplug scripts included: for the start-time breakdown) */
    log_info("libxl backend: VM %s is domain %u ('%s'), paused; libxl took %ld ms", cfg->uuid, domid,
             d.c_info.name, (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
    *ret_domid = (int)domid;
    rc = 0;
out:
    update_free_memory(x);
    libxl_domain_restore_params_dispose(&params);
    libxl_domain_config_dispose(&d);
    return rc;
}

/* ---- the operations ----------------------------------------------------------------------------- */

static int xlb_create(vmops_backend *b, const vmops_domain_config *cfg, int *ret_domid, char **ret_msg) {
    return make_domain(b, cfg, -1, ret_domid, ret_msg);
}

static int pause_or_unpause(vmops_backend *b, int domid, bool pause, char **ret_msg) {
    xlb *x = b->priv;
    int rc, xlrc;

    rc = begin_domain_call(x, domid, ret_msg);
    if (rc < 0)
        return rc;
    xlrc = pause ? libxl_domain_pause(x->ctx, (uint32_t)domid, NULL)
                 : libxl_domain_unpause(x->ctx, (uint32_t)domid, NULL);
    if (xlrc != 0)
        return xl_fail(ret_msg, xlrc, pause ? "pausing" : "unpausing");
    return 0;
}

static int xlb_unpause(vmops_backend *b, int domid, char **ret_msg) {
    return pause_or_unpause(b, domid, false, ret_msg);
}

static int xlb_pause(vmops_backend *b, int domid, char **ret_msg) {
    return pause_or_unpause(b, domid, true, ret_msg);
}

static int xlb_set_vcpus(vmops_backend *b, int domid, int n, int max, char **ret_msg) {
    xlb *x = b->priv;
    libxl_bitmap online;
    int rc, xlrc;

    libxl_bitmap_init(&online);
    rc = begin_domain_call(x, domid, ret_msg);
    if (rc < 0)
        goto out;
    if (n < 1 || n > max) {
        set_msg(ret_msg, "%d VCPUs asked, 1 to %d possible", n, max);
        rc = -EINVAL;
        goto out;
    }
    if (libxl_cpu_bitmap_alloc(x->ctx, &online, max) != 0) {
        set_msg(ret_msg, "cannot allocate a VCPU map");
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++)
        libxl_bitmap_set(&online, i);
    xlrc = libxl_set_vcpuonline(x->ctx, (uint32_t)domid, &online, NULL);
    if (xlrc != 0) {
        rc = xl_fail(ret_msg, xlrc, "setting the online VCPUs");
        goto out;
    }
    log_info("libxl backend: domain %d has %d of %d VCPUs online", domid, n, max);
    rc = 0;
out:
    libxl_bitmap_dispose(&online);
    return rc;
}

/* Writes the request to the guest's control/shutdown node and returns; the
 * guest's answer is its shutdown, reported by the death watch. An HVM guest
 * without PV drivers gets the ACPI power button instead (no clean reboot). */
static int xlb_request_shutdown(vmops_backend *b, int domid, bool reboot, char **ret_msg) {
    xlb *x = b->priv;
    int rc, xlrc;

    rc = begin_domain_call(x, domid, ret_msg);
    if (rc < 0)
        return rc;
    xlrc = reboot ? libxl_domain_reboot(x->ctx, (uint32_t)domid, NULL)
                  : libxl_domain_shutdown(x->ctx, (uint32_t)domid, NULL);
    if (xlrc == ERROR_NOPARAVIRT && !reboot) {
        log_info("libxl backend: domain %d has no PV drivers: pressing its ACPI power button", domid);
        vmops_libxl_error_clear();
        xlrc = libxl_send_trigger(x->ctx, (uint32_t)domid, LIBXL_TRIGGER_POWER, 0, NULL);
    }
    if (xlrc == ERROR_NOPARAVIRT) {
        set_msg(ret_msg, "the guest of domain %d has no PV drivers to ask for a clean reboot", domid);
        return -EOPNOTSUPP;
    }
    if (xlrc != 0)
        return xl_fail(ret_msg, xlrc, reboot ? "asking the guest to reboot" : "asking the guest to shut down");
    return 0;
}

static int xlb_destroy(vmops_backend *b, int domid, char **ret_msg) {
    xlb *x = b->priv;
    int rc, xlrc;

    rc = check_domain(x, domid, NULL, ret_msg);
    if (rc < 0)
        return rc;
    set_quiet(x, (uint32_t)domid, true);
    vmops_libxl_error_clear();
    xlrc = libxl_domain_destroy(x->ctx, (uint32_t)domid, NULL);
    if (xlrc != 0 && xlrc != ERROR_DOMAIN_NOTFOUND) {
        set_quiet(x, (uint32_t)domid, false);
        rc = xl_fail(ret_msg, xlrc, "destroying the domain");
        goto out;
    }
    unwatch_domain(x, (uint32_t)domid);
    rc = 0;
out:
    update_free_memory(x);
    return rc;
}

static int xlb_suspend(vmops_backend *b, int domid, const char *path, char **ret_msg) {
    xlb *x = b->priv;
    libxl_dominfo info;
    int fd = -1, rc, xlrc;

    rc = check_domain(x, domid, NULL, ret_msg);
    if (rc < 0)
        return rc;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        set_msg(ret_msg, "cannot write the suspend image %s: %s", path, strerror(errno));
        return rc;
    }
    set_quiet(x, (uint32_t)domid, true);
    vmops_libxl_error_clear();
    xlrc = libxl_domain_suspend(x->ctx, (uint32_t)domid, fd, 0, NULL);
    if (xlrc != 0)
        rc = xl_fail(ret_msg, xlrc, "saving the domain");
    else if (fsync(fd) < 0) {
        rc = -errno;
        set_msg(ret_msg, "writing the suspend image %s: %s", path, strerror(errno));
    }
    if (close(fd) < 0 && rc == 0) {
        rc = -errno;
        set_msg(ret_msg, "writing the suspend image %s: %s", path, strerror(errno));
    }
    fd = -1;
    if (rc < 0) {
        /* The guest carries on if it had suspended (as xl save does). */
        unlink(path);
        libxl_dominfo_init(&info);
        if (libxl_domain_info(x->ctx, &info, (uint32_t)domid) == 0 && info.shutdown &&
            info.shutdown_reason == LIBXL_SHUTDOWN_REASON_SUSPEND) {
            xlrc = libxl_domain_resume(x->ctx, (uint32_t)domid, 1, NULL);
            log_notice("libxl backend: domain %d %s after the failed save", domid,
                       xlrc == 0 ? "resumed" : "could not be resumed");
        }
        libxl_dominfo_dispose(&info);
        rearm_watch(x, (uint32_t)domid);
        set_quiet(x, (uint32_t)domid, false);
        goto out;
    }
    vmops_libxl_error_clear();
    xlrc = libxl_domain_destroy(x->ctx, (uint32_t)domid, NULL);
    if (xlrc != 0 && xlrc != ERROR_DOMAIN_NOTFOUND) {
        rc = xl_fail(ret_msg, xlrc, "destroying the saved domain");
        goto out;
    }
    unwatch_domain(x, (uint32_t)domid);
    log_info("libxl backend: domain %d saved to %s", domid, path);
    rc = 0;
out:
    update_free_memory(x);
    return rc;
}

static int xlb_resume(vmops_backend *b, const vmops_domain_config *cfg, const char *path, int *ret_domid,
                      char **ret_msg) {
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        set_msg(ret_msg, "cannot read the suspend image %s: %s", path, strerror(errno));
        return rc;
    }
    rc = make_domain(b, cfg, fd, ret_domid, ret_msg);
    close(fd);
    return rc;
}

/* A failed add (a hotplug script that failed or timed out) can leave the
 * device in xenstore, half made: the guest sees a disk that never
 * connects, and the next plug of the same slot fails because it exists.
 * What libxl left behind is destroyed (forced, no guest handshake). */
static void drop_half_added_disk(xlb *x, int domid, const char *vdev) {
    libxl_device_disk left;

    libxl_device_disk_init(&left);
    if (vdev && libxl_vdev_to_device_disk(x->ctx, (uint32_t)domid, vdev, &left) == 0) {
        log_warning("libxl backend: domain %d: removing disk %s left by the failed add", domid, vdev);
        if (libxl_device_disk_destroy(x->ctx, (uint32_t)domid, &left, NULL) != 0)
            log_error("libxl backend: domain %d: cannot remove the half-added disk %s", domid, vdev);
    }
    libxl_device_disk_dispose(&left);
}

static void drop_half_added_nic(xlb *x, int domid, int devid) {
    libxl_device_nic left;

    libxl_device_nic_init(&left);
    if (libxl_devid_to_device_nic(x->ctx, (uint32_t)domid, devid, &left) == 0) {
        log_warning("libxl backend: domain %d: removing NIC %d left by the failed add", domid, devid);
        if (libxl_device_nic_destroy(x->ctx, (uint32_t)domid, &left, NULL) != 0)
            log_error("libxl backend: domain %d: cannot remove the half-added NIC %d", domid, devid);
    }
    libxl_device_nic_dispose(&left);
}

/* A disk to remove is taken as libxl has it (backend type included); the
 * guest is asked to let go, and after libxl's timeout it is forced. */
static int attach_or_detach_disk(vmops_backend *b, int domid, const vmops_disk *d, bool attach, char **ret_msg) {
    xlb *x = b->priv;
    libxl_device_disk disk;
    int rc, xlrc;

    libxl_device_disk_init(&disk);
    rc = check_domain(x, domid, NULL, ret_msg);
    if (rc < 0)
        goto out;
    if (attach) {
        rc = vmops_libxl_disk(d, &disk, ret_msg);
        if (rc == 0)
            rc = vmops_libxl_disk_script(&disk, x->hotplug_helper, ret_msg);
    } else if (!d->vdev || libxl_vdev_to_device_disk(x->ctx, (uint32_t)domid, d->vdev, &disk) != 0) {
        set_msg(ret_msg, "domain %d has no disk %s", domid, d->vdev ? d->vdev : "(none)");
        rc = -ENOENT;
    }
    if (rc < 0)
        goto out;
    vmops_libxl_error_clear();
    xlrc = attach ? libxl_device_disk_add(x->ctx, (uint32_t)domid, &disk, NULL)
                  : libxl_device_disk_remove(x->ctx, (uint32_t)domid, &disk, NULL);
    if (xlrc != 0) {
        rc = xl_fail(ret_msg, xlrc, attach ? "adding the disk" : "removing the disk");
        if (attach)
            drop_half_added_disk(x, domid, disk.vdev);
        goto out;
    }
    rc = 0;
out:
    libxl_device_disk_dispose(&disk);
    return rc;
}

static int xlb_disk_attach(vmops_backend *b, int domid, const vmops_disk *d, char **ret_msg) {
    return attach_or_detach_disk(b, domid, d, true, ret_msg);
}

static int xlb_disk_detach(vmops_backend *b, int domid, const vmops_disk *d, char **ret_msg) {
    return attach_or_detach_disk(b, domid, d, false, ret_msg);
}

static int attach_or_detach_nic(vmops_backend *b, int domid, const vmops_nic *n, bool attach, char **ret_msg) {
    xlb *x = b->priv;
    libxl_device_nic nic;
    int rc, xlrc;

    libxl_device_nic_init(&nic);
    rc = check_domain(x, domid, NULL, ret_msg);
    if (rc < 0)
        goto out;
    if (attach) {
        rc = vmops_libxl_nic(n, &nic, ret_msg);
        vmops_libxl_nic_script(&nic, x->hotplug_helper);
        if (rc == 0)
            rc = check_bridge(nic.bridge, ret_msg);
    } else if (libxl_devid_to_device_nic(x->ctx, (uint32_t)domid, n->devid, &nic) != 0) {
        set_msg(ret_msg, "domain %d has no NIC %d", domid, n->devid);
        rc = -ENOENT;
    }
    if (rc < 0)
        goto out;
    vmops_libxl_error_clear();
    xlrc = attach ? libxl_device_nic_add(x->ctx, (uint32_t)domid, &nic, NULL)
                  : libxl_device_nic_remove(x->ctx, (uint32_t)domid, &nic, NULL);
    if (xlrc != 0) {
        rc = xl_fail(ret_msg, xlrc, attach ? "adding the NIC" : "removing the NIC");
        if (attach)
            drop_half_added_nic(x, domid, nic.devid);
        goto out;
    }
    rc = 0;
out:
    libxl_device_nic_dispose(&nic);
    return rc;
}

static int xlb_nic_attach(vmops_backend *b, int domid, const vmops_nic *n, char **ret_msg) {
    return attach_or_detach_nic(b, domid, n, true, ret_msg);
}

static int xlb_nic_detach(vmops_backend *b, int domid, const vmops_nic *n, char **ret_msg) {
    return attach_or_detach_nic(b, domid, n, false, ret_msg);
}

static vmops_domain_state state_of(const libxl_dominfo *d) {
    if (d->dying)
        return VMOPS_STATE_DYING;
    if (d->shutdown)
        return VMOPS_STATE_SHUTDOWN;
    if (d->paused)
        return VMOPS_STATE_PAUSED;
    return VMOPS_STATE_RUNNING;
}

/* Every domain but dom0, each then watched: a domain found shut down here is
 * for the caller to deal with (reconcile does), so its shutdown is not
 * reported again. */
static int xlb_list(vmops_backend *b, vmops_domain_info **ret, size_t *ret_n) {
    xlb *x = b->priv;
    libxl_dominfo *doms;
    vmops_domain_info *v;
    size_t k = 0;
    int n = 0;

    vmops_libxl_error_clear();
    doms = libxl_list_domain(x->ctx, &n);
    if (!doms) {
        log_error("libxl backend: cannot list domains: %s", vmops_libxl_error_last() ?: "libxl_list_domain failed");
        return -EIO;
    }
    v = xapi_calloc((size_t)n + 1, sizeof *v);
    for (int i = 0; i < n; i++) {
        const libxl_dominfo *d = &doms[i];

        if (d->domid == 0)
            continue;
        uuid_string(&d->uuid, v[k].uuid);
        v[k].domid = (int)d->domid;
        v[k].state = state_of(d);
        v[k].reason = d->shutdown ? reason_of(d->shutdown_reason) : VMOPS_REASON_NONE;
        v[k].memory_actual = (int64_t)d->current_memkb * 1024;
        v[k].vcpus = (int)d->vcpu_online;
        v[k].start_time = (int64_t)libxl_vm_get_start_time(x->ctx, d->domid);
        if (!d->dying) {
            char *name = libxl_domid_to_name(x->ctx, d->domid);
            watch_domain(x, d->domid, v[k].uuid, d->shutdown);
            if (name)
                remember_name(x, v[k].uuid, name);
            free(name);
        }
        k++;
    }
    libxl_dominfo_list_free(doms, n);
    update_free_memory(x);
    *ret = v;
    *ret_n = k;
    return 0;
}

/* A counter from sysfs (netback, blkback statistics); 0 when it cannot be read
 * (the device is going away: the RRD sees a reset, not an error). */
static uint64_t read_sys_counter(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static uint64_t read_sys_counter(const char *fmt, ...) {
    char path[256], buf[32];
    va_list ap;
    ssize_t n;
    int fd;

    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    return strtoull(buf, NULL, 10);
}

static void sample_domain(xlb *x, const libxl_dominfo *d, vmops_domain_sample *o) {
    libxl_vcpuinfo *vcpus = NULL;
    libxl_device_nic *nics = NULL;
    libxl_device_disk *disks = NULL;
    int nvcpu = 0, nnic = 0, ndisk = 0;
    int nrcpus = 0;
    uint64_t target_kb = 0;

    uuid_string(&d->uuid, o->uuid);
    o->domid = (int)d->domid;
    o->memory = (int64_t)d->current_memkb * 1024;
    o->memory_target = libxl_get_memory_target(x->ctx, d->domid, &target_kb) == 0 ? (int64_t)target_kb * 1024
                                                                                     : o->memory;
    o->memory_internal_free_kib = -1; /* needs a guest agent */
    vcpus = libxl_list_vcpu(x->ctx, d->domid, &nvcpu, &nrcpus);
    for (int i = 0; vcpus && i < nvcpu && o->nvcpus < VMOPS_SAMPLE_MAX_VCPUS; i++)
        if (vcpus[i].online)
            o->vcpu_time_ns[o->nvcpus++] = vcpus[i].vcpu_time;
    if (vcpus)
        libxl_vcpuinfo_list_free(vcpus, nvcpu);
    /* netback counts from the host's side: what the guest receives, vifD.N transmits */
    nics = libxl_device_nic_list(x->ctx, d->domid, &nnic);
    for (int i = 0; nics && i < nnic && o->nvifs < VMOPS_SAMPLE_MAX_DEVS; i++) {
        o->vifs[o->nvifs].devid = nics[i].devid;
        o->vifs[o->nvifs].rx_bytes =
            read_sys_counter("/sys/class/net/vif%u.%d/statistics/tx_bytes", d->domid, nics[i].devid);
        o->vifs[o->nvifs].tx_bytes =
            read_sys_counter("/sys/class/net/vif%u.%d/statistics/rx_bytes", d->domid, nics[i].devid);
        o->nvifs++;
    }
    if (nics)
        libxl_device_nic_list_free(nics, nnic);
    disks = libxl_device_disk_list(x->ctx, d->domid, &ndisk);
    for (int i = 0; disks && i < ndisk && o->nvbds < VMOPS_SAMPLE_MAX_DEVS; i++) {
        libxl_diskinfo di;

        if (!disks[i].vdev || libxl_device_disk_getinfo(x->ctx, d->domid, &disks[i], &di) != 0)
            continue;
        snprintf(o->vbds[o->nvbds].dev, sizeof o->vbds[o->nvbds].dev, "%s", disks[i].vdev);
        /* blkback counts 512-byte sectors */
        o->vbds[o->nvbds].read_bytes =
            512 * read_sys_counter("/sys/bus/xen-backend/devices/vbd-%u-%d/statistics/rd_sect", d->domid, di.devid);
        o->vbds[o->nvbds].write_bytes =
            512 * read_sys_counter("/sys/bus/xen-backend/devices/vbd-%u-%d/statistics/wr_sect", d->domid, di.devid);
        o->nvbds++;
        libxl_diskinfo_dispose(&di);
    }
    if (disks)
        libxl_device_disk_list_free(disks, ndisk);
}

static int xlb_sample(vmops_backend *b, vmops_domain_sample **ret, size_t *ret_n) {
    xlb *x = b->priv;
    libxl_dominfo *doms;
    vmops_domain_sample *v;
    size_t k = 0;
    int n = 0;

    vmops_libxl_error_clear();
    doms = libxl_list_domain(x->ctx, &n);
    if (!doms)
        return -EIO;
    v = xapi_calloc((size_t)n + 1, sizeof *v);
    for (int i = 0; i < n; i++)
        if (doms[i].domid != 0 && !doms[i].dying && !doms[i].shutdown)
            sample_domain(x, &doms[i], &v[k++]);
    libxl_dominfo_list_free(doms, n);
    *ret = v;
    *ret_n = k;
    return 0;
}

/* xenconsoled --log=guest --log-dir=DIR writes DIR/guest-<domain name>.log
 * (and keeps it after the domain is gone: then the name the VM last ran under). */
static char *xlb_console_log_path(vmops_backend *b, const char *uuid, int domid) {
    xlb *x = b->priv;
    char *name = NULL, *path = NULL;

    /* The name the domain was made (or found) with first: asking xenstore
     * for it took a second at each VM.start in the lab, xenstored busy with
     * the new domain's devices. */
    if (uuid) {
        pthread_mutex_lock(&x->lock);
        for (last_name *n = x->names; n && !name; n = n->next)
            if (strcmp(n->uuid, uuid) == 0)
                name = xapi_strdup(n->name);
        pthread_mutex_unlock(&x->lock);
    }
    if (!name && domid > 0)
        name = libxl_domid_to_name(x->ctx, (uint32_t)domid);
    if (!name)
        return NULL;
    if (asprintf(&path, "%s/guest-%s.log", x->console_dir, name) < 0)
        xapi_oom();
    free(name);
    return path;
}

/* "<what> <arg>: <errno's text>", for the API error. */
static char *msg_errno(const char *what, const char *arg, int err) {
    char *m = NULL;

    if (asprintf(&m, "%s %s: %s", what, arg, strerror(err)) < 0)
        xapi_oom();
    return m;
}

/* The text console: xenconsoled's pty for the domain (the PV console, the
 * emulated serial port of an HVM guest), raw as `xl console` sets it. */
static int open_tty_console(xlb *x, int domid, int *ret_fd, char **ret_msg) {
    struct termios tio;
    char *path = NULL;
    int fd, rc;

    rc = libxl_primary_console_get_tty(x->ctx, (uint32_t)domid, &path);
    if (rc) {
        *ret_msg = xapi_strdup("the domain has no text console");
        return rc == ERROR_DOMAIN_NOTFOUND || rc == ERROR_INVAL ? -ESRCH : -ENODEV;
    }
    fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        *ret_msg = msg_errno("cannot open the console", path, -rc);
        free(path);
        return rc;
    }
    free(path);
    if (tcgetattr(fd, &tio) == 0) {
        cfmakeraw(&tio);
        tcsetattr(fd, TCSANOW, &tio);
    }
    *ret_fd = fd;
    return 0;
}

/* The device model's VNC server on the UNIX socket the domain's config gives
 * it (vmops_libxl_vnc_address). -ENOENT when there is no such socket. */
static int open_vnc_socket(const char *uuid, int *ret_fd, char **ret_msg) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char *addr = vmops_libxl_vnc_address(uuid);
    int fd = -1, rc;

    if (strncmp(addr, "unix:", 5) != 0 || strlen(addr + 5) >= sizeof sa.sun_path) {
        rc = -ENOENT;
        goto out;
    }
    strcpy(sa.sun_path, addr + 5);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        rc = -errno;
        if (rc != -ENOENT)
            *ret_msg = msg_errno("cannot connect to the VNC server at", sa.sun_path, -rc);
        goto out;
    }
    *ret_fd = fd;
    fd = -1;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    free(addr);
    return rc;
}

/* The device model's VNC server on TCP (a domain started before VNC moved to
 * a UNIX socket): libxl writes where it listens to
 * /local/domain/<domid>/console/vnc-listen and vnc-port, which is what
 * `xl vncviewer` connects to. */
static int open_vnc_console(int domid, int *ret_fd, char **ret_msg) {
    struct xs_handle *xs = xs_open(0);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char key[96], *listen = NULL, *port = NULL;
    unsigned int len;
    int fd = -1, rc;

    if (!xs) {
        *ret_msg = xapi_strdup("cannot reach xenstore");
        return -EIO;
    }
    snprintf(key, sizeof key, "/local/domain/%d/console/vnc-listen", domid);
    listen = xs_read(xs, XBT_NULL, key, &len);
    snprintf(key, sizeof key, "/local/domain/%d/console/vnc-port", domid);
    port = xs_read(xs, XBT_NULL, key, &len);
    if (!port) {
        *ret_msg = xapi_strdup("the domain has no VNC console");
        rc = -ENODEV;
        goto out;
    }
    /* A server on every address is reached on the loopback one. */
    rc = getaddrinfo(!listen || strcmp(listen, "0.0.0.0") == 0 ? "127.0.0.1" : strcmp(listen, "::") == 0 ? "::1" : listen,
                     port, &hints, &res);
    if (rc != 0) {
        *ret_msg = xapi_strdup("the domain's VNC address is not an address");
        rc = -ENODEV;
        goto out;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        rc = -errno;
        *ret_msg = msg_errno("cannot connect to the VNC server on port", port, -rc);
        goto out;
    }
    *ret_fd = fd;
    fd = -1;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (res)
        freeaddrinfo(res);
    free(listen);
    free(port);
    xs_close(xs);
    return rc;
}

/* libxl spawns the device model with its pid in the domain's image/device-model-pid. */
static int xlb_device_model_pid(vmops_backend *b, int domid) {
    struct xs_handle *xs = xs_open(0);
    char key[96], *v = NULL;
    unsigned int len;
    long pid = 0;

    (void)b;
    if (!xs)
        return 0;
    snprintf(key, sizeof key, "/local/domain/%d/image/device-model-pid", domid);
    v = xs_read(xs, XBT_NULL, key, &len);
    if (v)
        pid = strtol(v, NULL, 10);
    free(v);
    xs_close(xs);
    return pid > 1 && pid <= INT32_MAX ? (int)pid : 0;
}

static int xlb_console_open(vmops_backend *b, const char *uuid, int domid, vmops_console_protocol protocol,
                            int *ret_fd, char **ret_msg) {
    if (domid <= 0) {
        *ret_msg = xapi_strdup("no such running domain");
        return -ESRCH;
    }
    if (protocol == VMOPS_CONSOLE_RFB) {
        int rc = open_vnc_socket(uuid, ret_fd, ret_msg);

        return rc == -ENOENT ? open_vnc_console(domid, ret_fd, ret_msg) : rc;
    }
    return open_tty_console(b->priv, domid, ret_fd, ret_msg);
}

static char *xlb_vnc_address(vmops_backend *b, const char *uuid) {
    (void)b;
    return vmops_libxl_vnc_address(uuid);
}

static void xlb_free(vmops_backend *b) {
    xlb *x;

    if (!b)
        return;
    x = b->priv;
    if (x) {
        pthread_mutex_lock(&x->lock);
        while (x->watches)
            drop_watch(x, x->watches);
        while (x->names) {
            last_name *n = x->names;
            x->names = n->next;
            free(n->name);
            free(n);
        }
        pthread_mutex_unlock(&x->lock);
        vmops_libxl_loop_stop(x->loop);
        libxl_ctx_free(x->ctx);
        vmops_libxl_loop_free(x->loop);
        vmops_libxl_logger_free(x->lg);
        pthread_mutex_destroy(&x->lock);
        free(x->console_dir);
        free(x->hotplug_helper);
        free(x);
    }
    free(b->xen_version);
    free(b);
}

static const vmops_backend_ops xlb_ops = {
    .name = "libxl",
    .create = xlb_create,
    .unpause = xlb_unpause,
    .pause = xlb_pause,
    .set_vcpus = xlb_set_vcpus,
    .request_shutdown = xlb_request_shutdown,
    .destroy = xlb_destroy,
    .suspend = xlb_suspend,
    .resume = xlb_resume,
    .disk_attach = xlb_disk_attach,
    .disk_detach = xlb_disk_detach,
    .nic_attach = xlb_nic_attach,
    .nic_detach = xlb_nic_detach,
    .list = xlb_list,
    .sample = xlb_sample,
    .console_log_path = xlb_console_log_path,
    .console_open = xlb_console_open,
    .device_model_pid = xlb_device_model_pid,
    .vnc_address = xlb_vnc_address,
    .free = xlb_free,
};

/* "auto": xenapid-hotplug beside the daemon, when it is there; "xen": none (Xen's scripts). */
static char *find_hotplug_helper(const char *setting) {
    char exe[PATH_MAX], *slash, *path = NULL;
    ssize_t n;

    if (setting && strcmp(setting, "xen") == 0)
        return NULL;
    if (setting && *setting && strcmp(setting, "auto") != 0) {
        if (access(setting, X_OK) == 0)
            return xapi_strdup(setting);
        log_warning("libxl backend: hotplug_helper %s: %s; Xen's hotplug scripts are used", setting, strerror(errno));
        return NULL;
    }
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = 0;
    slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = 0;
    if (asprintf(&path, "%s/xenapid-hotplug", exe) < 0)
        xapi_oom();
    if (access(path, X_OK) == 0)
        return path;
    log_warning("libxl backend: no %s beside the daemon; Xen's hotplug scripts are used", path);
    free(path);
    return NULL;
}

/* VHD disks' nbdkit sockets and records (vmops/vhd_nbd.h) go to the state
 * directory's nbd/, which xenapid-hotplug finds in the environment libxl
 * passes on. nbdkit outlives a restart of xenapid as the guests do; what a
 * domain that died meanwhile left (its backend gone, so libxl will run no
 * remove for it) is ended by the helper's sweep. */
static void vhd_disks_setup(const char *state_dir, const char *helper) {
    char abs[PATH_MAX], *dir = NULL, *out = NULL, *err = NULL;
    int rc;

    if (!state_dir || !realpath(state_dir, abs)) {
        log_warning("libxl backend: state directory %s: %s; VHD disks use %s", state_dir ? state_dir : "(none)",
                    strerror(errno), "/run/xenapid/nbd");
        return;
    }
    if (asprintf(&dir, "%s/nbd", abs) < 0)
        xapi_oom();
    setenv("XENAPID_NBD_DIR", dir, 1);
    if (helper) {
        rc = storage_run((const char *const[]){helper, "sweep", dir, NULL}, 60000, &out, &err);
        if (rc < 0)
            log_warning("libxl backend: sweep of VHD disks' servers in %s: %s (%s)", dir, strerror(-rc),
                        err && *err ? err : "no message");
        else if (out && atoi(out) > 0)
            log_info("libxl backend: ended %d VHD disk server(s) left by domains that are gone", atoi(out));
    }
    free(out);
    free(err);
    free(dir);
}

int vmops_libxl_new(const char *state_dir, const char *console_log_dir, const char *hotplug_helper,
                    vmops_backend **ret) {
    vmops_backend *b = NULL;
    xlb *x = NULL;
    const libxl_version_info *vi;
    int rc, xlrc;

    b = xapi_calloc(1, sizeof *b);
    x = xapi_calloc(1, sizeof *x);
    b->ops = &xlb_ops;
    b->priv = x;
    x->b = b;
    pthread_mutex_init(&x->lock, NULL);
    x->console_dir = xapi_strdup(console_log_dir && *console_log_dir ? console_log_dir : DEFAULT_CONSOLE_LOG_DIR);
    x->lg = vmops_libxl_logger_new();

    xlrc = libxl_ctx_alloc(&x->ctx, LIBXL_VERSION, 0, x->lg);
    if (xlrc != 0) {
        bool xen = access("/dev/xen/privcmd", F_OK) == 0 || access("/proc/xen/privcmd", F_OK) == 0;
        log_error("libxl backend: cannot open libxl (libxl error %d, %s): %s", xlrc, libxl_error_to_string(xlrc),
                  xen ? "is xenstored running, and is xenapid running as root in dom0?"
                      : "this machine is not running Xen (no /dev/xen/privcmd or /proc/xen/privcmd)");
        x->ctx = NULL;
        rc = xen ? -EIO : -ENODEV;
        goto fail;
    }
    rc = vmops_libxl_loop_new(x->ctx, on_libxl_event, b, &x->loop);
    if (rc < 0) {
        log_error("libxl backend: cannot set up libxl's event loop: %s", strerror(-rc));
        goto fail;
    }
    rc = vmops_libxl_loop_start(x->loop);
    if (rc < 0) {
        log_error("libxl backend: cannot start the event loop thread: %s", strerror(-rc));
        goto fail;
    }
    vi = libxl_get_version_info(x->ctx);
    if (vi) {
        if (asprintf(&b->xen_version, "%d.%d%s", vi->xen_version_major, vi->xen_version_minor,
                     vi->xen_version_extra ? vi->xen_version_extra : "") < 0)
            xapi_oom();
    } else
        b->xen_version = xapi_strdup("unknown");
    update_free_memory(x);
    x->hotplug_helper = find_hotplug_helper(hotplug_helper);
    vhd_disks_setup(state_dir, x->hotplug_helper);
    log_info("libxl backend: Xen %s, %" PRId64 " MiB free for guests, guest consoles in %s, device script %s",
             b->xen_version, b->host_memory_free >> 20, x->console_dir,
             x->hotplug_helper ? x->hotplug_helper : "Xen's (block, vif-bridge)");
    *ret = b;
    return 0;
fail:
    xlb_free(b);
    return rc;
}
