/* systemd-machined registrations of running guests (see machined.h).
 *
 * The calls go out from one worker thread, off every lock of the API: a slow
 * or absent bus delays a registration, never VM.start. A host without
 * machined (no system bus, or org.freedesktop.machine1 neither running nor
 * activatable) is normal: said once at info level, then tried again at most
 * every RETRY_SECONDS, each skipped registration logged at debug level.
 *
 * Why UnregisterMachine and not TerminateMachine: a machine registered (not
 * created) belongs to the caller's unit, here xenapid.service, and
 * TerminateMachine stops that unit; UnregisterMachine only forgets the
 * machine. The leader is the guest's device model (qemu) when it has one;
 * else 0, the caller itself, which machined takes for one machine only (it
 * keys machines by leader pid): a second guest without a device model is
 * then not registered, and the log says why. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "agent/log.h"
#include "vmops/machined.h"
#include "xapi/store.h"

#define QUEUE_MAX 256
#define MACHINE_NAME_MAX 64
#define CALL_TIMEOUT_USEC (5 * 1000000ULL)
#define RETRY_SECONDS 60
#define REGISTERED_MAX 4096

typedef struct job {
    bool running;
    int domid;
    char uuid[37];
    char name[MACHINE_NAME_MAX + 1];
} job;

/* The machines this process registered: uuid -> name (the label may change before the VM stops). */
typedef struct registered {
    char uuid[37];
    char name[MACHINE_NAME_MAX + 1];
} registered;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool started, stop;
    pthread_t thread;
    vmops_backend *backend;
    job queue[QUEUE_MAX];
    unsigned head, len;
    /* the worker's own */
    sd_bus *bus;
    int64_t retry_at_ns;  /* unavailable until then */
    bool said_unavailable;
    registered *reg;
    size_t nreg;
} M = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

int vmops_machined_name(const char *name_label, const char *vm_uuid, char *buf, size_t len) {
    static const char prefix[] = "xenapid-";
    size_t n = sizeof prefix - 1;
    char out[MACHINE_NAME_MAX + 1];

    memcpy(out, prefix, n);
    /* machined takes host names: letters, digits and '-', in labels split by single dots. */
    for (const char *p = name_label ? name_label : ""; *p && n < MACHINE_NAME_MAX; p++) {
        char c = name_char(*p) ? *p : *p == '.' ? '.' : '-';
        if ((c == '.' || c == '-') && (out[n - 1] == '.' || out[n - 1] == '-'))
            continue; /* nothing empty between dots, no runs of replaced characters */
        out[n++] = c;
    }
    while (out[n - 1] == '.' || out[n - 1] == '-')
        n--;
    out[n] = 0;
    if (n < sizeof prefix) /* nothing of the label: the uuid */
        snprintf(out, sizeof out, "%s%s", prefix, vm_uuid ? vm_uuid : "");
    if (strlen(out) >= len)
        return -ENOBUFS;
    memcpy(buf, out, strlen(out) + 1);
    return 0;
}

static int uuid_bytes(const char *uuid, uint8_t ret[16]) {
    sd_id128_t id;
    int r = sd_id128_from_string(uuid, &id);

    if (r < 0)
        return r;
    memcpy(ret, id.bytes, 16);
    return 0;
}

/* No machined here (for now): says so once, and waits before trying again. */
static void unavailable(const char *why) {
    if (!M.said_unavailable)
        log_info("machined: %s: running guests are not registered with systemd-machined", why);
    M.said_unavailable = true;
    M.retry_at_ns = xapi_now_ns() + RETRY_SECONDS * 1000000000LL;
    if (M.bus)
        M.bus = sd_bus_flush_close_unref(M.bus);
}

static bool bus_ready(void) {
    int r;

    if (M.bus)
        return true;
    if (M.retry_at_ns && xapi_now_ns() < M.retry_at_ns)
        return false;
    r = sd_bus_open_system(&M.bus);
    if (r < 0) {
        char why[128];
        snprintf(why, sizeof why, "no system bus (%s)", strerror(-r));
        M.bus = NULL;
        unavailable(why);
        return false;
    }
    return true;
}

static bool service_missing(const sd_bus_error *e) {
    return sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                  SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_DISCONNECTED);
}

static registered *find_registered(const char *uuid) {
    for (size_t i = 0; i < M.nreg; i++)
        if (strcmp(M.reg[i].uuid, uuid) == 0)
            return &M.reg[i];
    return NULL;
}

static void do_register(const job *j) {
    sd_bus_message *m = NULL, *reply = NULL;
    sd_bus_error e = SD_BUS_ERROR_NULL;
    uint8_t id[16];
    uint32_t leader = 0;
    int r;

    if (find_registered(j->uuid))
        return; /* a VM that runs on (unpaused, reconciled) */
    if (uuid_bytes(j->uuid, id) < 0 || M.nreg >= REGISTERED_MAX)
        return;
    if (!bus_ready()) {
        log_debug("machined: not registering %s (VM %s): no machined", j->name, j->uuid);
        return;
    }
    if (M.backend->ops->device_model_pid && j->domid > 0)
        leader = (uint32_t)M.backend->ops->device_model_pid(M.backend, j->domid);
    r = sd_bus_message_new_method_call(M.bus, &m, "org.freedesktop.machine1", "/org/freedesktop/machine1",
                                       "org.freedesktop.machine1.Manager", "RegisterMachine");
    if (r >= 0)
        r = sd_bus_message_append(m, "s", j->name);
    if (r >= 0)
        r = sd_bus_message_append_array(m, 'y', id, sizeof id);
    if (r >= 0)
        r = sd_bus_message_append(m, "ssus", "xenapid", "vm", leader, "");
    if (r >= 0)
        r = sd_bus_call(M.bus, m, CALL_TIMEOUT_USEC, &e, &reply);
    if (r >= 0 || sd_bus_error_has_name(&e, "org.freedesktop.machine1.MachineExists")) {
        registered *g;
        M.reg = realloc(M.reg, (M.nreg + 1) * sizeof *M.reg);
        if (!M.reg)
            xapi_oom();
        g = &M.reg[M.nreg++];
        memcpy(g->uuid, j->uuid, sizeof g->uuid);
        memcpy(g->name, j->name, sizeof g->name);
        log_info("machined: registered VM %s as %s (leader %s)", j->uuid, j->name,
                 leader ? "its device model" : "xenapid");
    } else if (service_missing(&e)) {
        unavailable(e.message ? e.message : "org.freedesktop.machine1 is not there");
        log_debug("machined: not registering %s (VM %s): no machined", j->name, j->uuid);
    } else if (!leader && sd_bus_error_get_errno(&e) == EEXIST)
        log_info("machined: VM %s (%s) not registered: it has no device model, and xenapid leads another "
                 "machine already",
                 j->uuid, j->name);
    else
        log_warning("machined: cannot register VM %s as %s: %s", j->uuid, j->name,
                    e.message ? e.message : strerror(-r));
    sd_bus_error_free(&e);
    sd_bus_message_unref(reply);
    sd_bus_message_unref(m);
}

static void do_unregister(const job *j) {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    registered *g = find_registered(j->uuid);
    char name[MACHINE_NAME_MAX + 1];
    int r;

    if (!g)
        return;
    memcpy(name, g->name, sizeof name);
    *g = M.reg[--M.nreg];
    if (!bus_ready())
        return;
    r = sd_bus_call_method(M.bus, "org.freedesktop.machine1", "/org/freedesktop/machine1",
                           "org.freedesktop.machine1.Manager", "UnregisterMachine", &e, NULL, "s", name);
    if (r >= 0)
        log_info("machined: unregistered %s (VM %s)", name, j->uuid);
    else if (!sd_bus_error_has_name(&e, "org.freedesktop.machine1.NoSuchMachine"))
        log_warning("machined: cannot unregister %s (VM %s): %s", name, j->uuid, e.message ? e.message : strerror(-r));
    sd_bus_error_free(&e);
}

static void *worker_main(void *arg) {
    pthread_setname_np(pthread_self(), "machined");

    (void)arg;
    pthread_mutex_lock(&M.lock);
    for (;;) {
        job j;

        while (!M.stop && M.len == 0)
            pthread_cond_wait(&M.wake, &M.lock);
        if (M.stop)
            break;
        j = M.queue[M.head];
        M.head = (M.head + 1) % QUEUE_MAX;
        M.len--;
        pthread_mutex_unlock(&M.lock);
        if (j.running)
            do_register(&j);
        else
            do_unregister(&j);
        pthread_mutex_lock(&M.lock);
    }
    pthread_mutex_unlock(&M.lock);
    return NULL;
}

int vmops_machined_start(bool enabled, vmops_backend *b) {
    int rc;

    if (!enabled) {
        log_debug("machined: register_machines is off");
        return 0;
    }
    pthread_mutex_lock(&M.lock);
    M.backend = b;
    M.stop = false;
    rc = pthread_create(&M.thread, NULL, worker_main, NULL);
    M.started = rc == 0;
    pthread_mutex_unlock(&M.lock);
    return -rc;
}

void vmops_machined_stop(void) {
    if (!M.started)
        return;
    pthread_mutex_lock(&M.lock);
    M.stop = true;
    pthread_cond_signal(&M.wake);
    pthread_mutex_unlock(&M.lock);
    pthread_join(M.thread, NULL);
    M.started = false;
    M.head = M.len = 0;
    if (M.bus)
        M.bus = sd_bus_flush_close_unref(M.bus);
    free(M.reg);
    M.reg = NULL;
    M.nreg = 0;
}

static void enqueue(const job *j) {
    pthread_mutex_lock(&M.lock);
    if (!M.started || M.stop) {
        pthread_mutex_unlock(&M.lock);
        return;
    }
    if (M.len == QUEUE_MAX)
        log_warning("machined: %u registrations waiting for the bus: dropping the one of VM %s", M.len, j->uuid);
    else {
        M.queue[(M.head + M.len) % QUEUE_MAX] = *j;
        M.len++;
        pthread_cond_signal(&M.wake);
    }
    pthread_mutex_unlock(&M.lock);
}

void vmops_machined_running(const char *vm_uuid, const char *name_label, int domid) {
    job j = {.running = true, .domid = domid};

    snprintf(j.uuid, sizeof j.uuid, "%s", vm_uuid);
    if (vmops_machined_name(name_label, vm_uuid, j.name, sizeof j.name) < 0)
        return;
    enqueue(&j);
}

void vmops_machined_stopped(const char *vm_uuid) {
    job j = {.running = false};

    snprintf(j.uuid, sizeof j.uuid, "%s", vm_uuid);
    enqueue(&j);
}
