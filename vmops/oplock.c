/* The per-VM operation lock: see oplock.h. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/config.h"
#include "xapi/error.h"
#include "xapi/task.h"
#include "vmops/oplock.h"

#define WAIT_SLICE_NS (200 * 1000000LL) /* how often waiters look at cancellation */

typedef struct oplock_entry {
    struct oplock_entry *next;
    char vm_ref[XAPI_REF_LEN + 1];
    char vm_uuid[XAPI_UUID_LEN + 1];
    bool busy;
    char op[40];
    char op_ref[XAPI_REF_LEN + 1];
    unsigned users; /* the holder and the waiters */
    unsigned hard_waiters; /* queued hard_shutdown/hard_reboot: they go first */
    pthread_cond_t cond;
    /* what the holder waits for */
    int expect_domid;
    bool event_seen;
    vmops_shutdown_reason event_reason;
    bool preempt;
} oplock_entry;

static pthread_mutex_t L = PTHREAD_MUTEX_INITIALIZER;
static oplock_entry *entries;

static oplock_entry *entry_get(const char *vm_ref, const char *vm_uuid) {
    oplock_entry *e;
    pthread_condattr_t ca;

    for (e = entries; e; e = e->next)
        if (strcmp(e->vm_ref, vm_ref) == 0)
            return e;
    e = xapi_calloc(1, sizeof *e);
    snprintf(e->vm_ref, sizeof e->vm_ref, "%s", vm_ref);
    snprintf(e->vm_uuid, sizeof e->vm_uuid, "%s", vm_uuid);
    e->expect_domid = -1;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->cond, &ca);
    pthread_condattr_destroy(&ca);
    e->next = entries;
    entries = e;
    return e;
}

static void entry_put(oplock_entry *e) {
    oplock_entry **pp;

    if (--e->users > 0 || e->busy)
        return;
    for (pp = &entries; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    pthread_cond_destroy(&e->cond);
    free(e);
}

static void timed_wait(oplock_entry *e, int64_t deadline_ns) {
    int64_t until = xapi_now_ns() + WAIT_SLICE_NS;
    struct timespec ts;

    if (deadline_ns < until)
        until = deadline_ns;
    ts.tv_sec = until / 1000000000LL;
    ts.tv_nsec = until % 1000000000LL;
    pthread_cond_timedwait(&e->cond, &L, &ts);
}

static bool task_cancelling(xapi_server *srv, const char *task) {
    xapi_obj *t;
    bool r = false;

    if (!task)
        return false;
    xapi_store_rdlock(srv->store);
    t = xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_task], task);
    if (t)
        r = strcmp(t->fields[XAPI_F_task_status].s, "cancelling") == 0;
    xapi_store_rdunlock(srv->store);
    return r;
}

static bool is_clean_op(const char *op) {
    return strcmp(op, "clean_shutdown") == 0 || strcmp(op, "clean_reboot") == 0 || strcmp(op, "shutdown") == 0;
}

static bool is_hard_op(const char *op) {
    return strcmp(op, "hard_shutdown") == 0 || strcmp(op, "hard_reboot") == 0;
}

static void set_current_op(xapi_server *srv, const char *vm_ref, const char *op_ref, const char *op) {
    xapi_store *st = srv->store;
    xapi_obj *vm;

    xapi_store_write_begin(st);
    vm = xapi_store_get_class(st, &xapi_classes[XAPI_C_VM], vm_ref);
    if (vm) {
        xapi_value cur = xapi_value_copy(&vm->fields[XAPI_F_VM_current_operations]);
        if (op)
            xapi_struct_set(&cur, op_ref, xapi_value_string(op));
        else
            xapi_struct_remove(&cur, op_ref);
        xapi_obj_set(st, vm, XAPI_F_VM_current_operations, cur);
        vmops_update_allowed_operations(st, vm);
    }
    /* Not waited for: the operation's own result is, and it follows in the same queue. */
    xapi_store_write_end(st);
}

/* Whether op must (still) wait: the lock is held, or a hard operation, which
 * may cut short what holds it, queues and op is not one. */
static bool lock_taken_for(const oplock_entry *e, const char *op) {
    return e->busy || (e->hard_waiters > 0 && !is_hard_op(op));
}

int vmops_op_begin(xapi_call *c, const char *vm_ref, const char *op, bool hidden, vmops_op *ret) {
    xapi_server *srv = c->srv;
    int64_t deadline = xapi_now_ns() + (int64_t)srv->config->op_wait_timeout * 1000000000LL;
    char uuid[XAPI_UUID_LEN + 1];
    oplock_entry *e;
    bool parked = false;
    xapi_obj *vm;
    int rc = 0;

    xapi_store_rdlock(srv->store);
    rc = xapi_lookup(c, &xapi_classes[XAPI_C_VM], vm_ref, &vm);
    if (rc == 0)
        memcpy(uuid, vm->uuid, sizeof uuid);
    xapi_store_rdunlock(srv->store);
    if (rc < 0)
        return rc;

    memset(ret, 0, sizeof *ret);
    pthread_mutex_lock(&L);
    e = entry_get(vm_ref, uuid);
    e->users++;
    if (is_hard_op(op))
        e->hard_waiters++;
    if (lock_taken_for(e, op)) {
        pthread_mutex_unlock(&L);
        xapi_task_park_begin(srv, c->task);
        parked = true;
        pthread_mutex_lock(&L);
    }
    while (lock_taken_for(e, op)) {
        if (is_hard_op(op) && is_clean_op(e->op) && e->expect_domid >= 0) {
            /* xapi lets a hard shutdown cut a clean one short. */
            e->preempt = true;
            pthread_cond_broadcast(&e->cond);
        }
        if (xapi_now_ns() >= deadline) {
            rc = xapi_call_fail(c, "OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref, e->op, e->op_ref);
            break;
        }
        pthread_mutex_unlock(&L);
        if (task_cancelling(srv, c->task) || srv->stopping) {
            pthread_mutex_lock(&L);
            rc = xapi_call_fail(c, "TASK_CANCELLED", c->task ? c->task : XAPI_NULL_REF);
            break;
        }
        pthread_mutex_lock(&L);
        if (lock_taken_for(e, op))
            timed_wait(e, deadline);
    }
    if (is_hard_op(op))
        e->hard_waiters--;
    if (rc == 0 && srv->stopping) /* no new operation once the daemon stops, even on a free VM */
        rc = xapi_call_fail(c, "TASK_CANCELLED", c->task ? c->task : XAPI_NULL_REF);
    if (rc < 0) {
        entry_put(e);
        pthread_mutex_unlock(&L);
        if (parked)
            xapi_task_park_end(srv, c->task);
        return rc;
    }
    e->busy = true;
    snprintf(e->op, sizeof e->op, "%s", op);
    if (c->task)
        snprintf(e->op_ref, sizeof e->op_ref, "%s", c->task);
    else
        xapi_ref_generate(e->op_ref);
    e->expect_domid = -1;
    e->event_seen = false;
    e->preempt = false;
    pthread_mutex_unlock(&L);
    if (parked)
        xapi_task_park_end(srv, c->task);

    snprintf(ret->vm_ref, sizeof ret->vm_ref, "%s", vm_ref);
    memcpy(ret->vm_uuid, uuid, sizeof uuid);
    snprintf(ret->op, sizeof ret->op, "%s", op);
    memcpy(ret->op_ref, e->op_ref, sizeof ret->op_ref);
    ret->task = c->task;
    ret->hidden = hidden;
    ret->entry = e;
    if (!hidden)
        set_current_op(srv, vm_ref, ret->op_ref, op);
    return 0;
}

void vmops_op_end(xapi_server *srv, vmops_op *op) {
    oplock_entry *e = op->entry;

    if (!e)
        return;
    if (!op->hidden)
        set_current_op(srv, op->vm_ref, op->op_ref, NULL);
    pthread_mutex_lock(&L);
    e->busy = false;
    e->op[0] = 0;
    e->expect_domid = -1;
    pthread_cond_broadcast(&e->cond);
    entry_put(e);
    pthread_mutex_unlock(&L);
    op->entry = NULL;
}

void vmops_op_expect_domain_event(vmops_op *op, int domid) {
    pthread_mutex_lock(&L);
    op->entry->expect_domid = domid;
    op->entry->event_seen = false;
    pthread_mutex_unlock(&L);
}

bool vmops_op_take_domain_event(vmops_op *op, vmops_shutdown_reason *ret_reason) {
    oplock_entry *e = op->entry;
    bool seen;

    pthread_mutex_lock(&L);
    seen = e->event_seen;
    if (seen)
        *ret_reason = e->event_reason;
    e->expect_domid = -1;
    e->event_seen = false;
    pthread_mutex_unlock(&L);
    return seen;
}

int vmops_op_wait_domain_event(xapi_server *srv, vmops_op *op, int domid, int64_t deadline_ns,
                               vmops_shutdown_reason *ret_reason) {
    oplock_entry *e = op->entry;
    int rc = 0;

    /* A guest may take its time (or never answer): meanwhile an Async call
     * holds no worker slot either. */
    xapi_task_park_begin(srv, op->task);
    pthread_mutex_lock(&L);
    e->expect_domid = domid;
    for (;;) {
        if (e->event_seen) {
            *ret_reason = e->event_reason;
            break;
        }
        if (e->preempt) {
            rc = -EINTR;
            break;
        }
        if (xapi_now_ns() >= deadline_ns) {
            rc = -ETIMEDOUT;
            break;
        }
        pthread_mutex_unlock(&L);
        if (task_cancelling(srv, op->task) || srv->stopping) {
            pthread_mutex_lock(&L);
            rc = -ECANCELED;
            break;
        }
        pthread_mutex_lock(&L);
        if (!e->event_seen && !e->preempt)
            timed_wait(e, deadline_ns);
    }
    e->expect_domid = -1;
    pthread_mutex_unlock(&L);
    xapi_task_park_end(srv, op->task);
    return rc;
}

bool vmops_op_deliver_event(const char *vm_uuid, int domid, vmops_shutdown_reason reason) {
    bool taken = false;

    pthread_mutex_lock(&L);
    for (oplock_entry *e = entries; e; e = e->next)
        if (e->busy && e->expect_domid == domid && strcmp(e->vm_uuid, vm_uuid) == 0) {
            e->event_seen = true;
            e->event_reason = reason;
            pthread_cond_broadcast(&e->cond);
            taken = true;
            break;
        }
    pthread_mutex_unlock(&L);
    return taken;
}

void vmops_op_wake_all(void) {
    pthread_mutex_lock(&L);
    for (oplock_entry *e = entries; e; e = e->next)
        pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&L);
}

/* ---- allowed_operations ------------------------------------------------ */

static void add_ops(xapi_value *set, const char *const *ops) {
    for (; *ops; ops++)
        xapi_array_append(set, xapi_value_string(*ops));
}

void vmops_update_allowed_operations(xapi_store *st, xapi_obj *vm) {
    static const char *const halted[] = {"start", "start_on", "clone", "copy", "snapshot", "export", "destroy",
                                         "make_into_template", "changing_memory_limits", "changing_static_range",
                                         "changing_dynamic_range", "changing_VCPUs", "changing_shadow_memory",
                                         "power_state_reset", NULL};
    static const char *const running[] = {"clean_shutdown", "clean_reboot", "hard_shutdown", "hard_reboot",
                                          "shutdown", "pause", "suspend", "snapshot", "checkpoint",
                                          "changing_dynamic_range", "changing_VCPUs_live", "power_state_reset", NULL};
    static const char *const paused[] = {"unpause", "hard_shutdown", "hard_reboot", "shutdown", "snapshot",
                                         "power_state_reset", NULL};
    static const char *const suspended[] = {"resume", "resume_on", "hard_shutdown", "shutdown", "snapshot", "clone",
                                            "copy", "export", "power_state_reset", NULL};
    static const char *const template_ops[] = {"clone", "copy", "provision", "export", NULL};
    static const char *const snapshot_ops[] = {"revert", "clone", "copy", "export", "destroy", NULL};
    const char *ps = vm->fields[XAPI_F_VM_power_state].s;
    const xapi_value *cur = &vm->fields[XAPI_F_VM_current_operations];
    xapi_value ops = xapi_value_array();

    if (vm->fields[XAPI_F_VM_is_control_domain].b) {
        /* nothing: the control domain is not managed through these operations */
    } else if (cur->n > 0) {
        /* Busy: only a hard operation may cut a clean shutdown or reboot short. */
        for (uint32_t i = 0; i < cur->n; i++)
            if (is_clean_op(cur->members[i].value.s)) {
                static const char *const hard[] = {"hard_shutdown", "hard_reboot", NULL};
                add_ops(&ops, hard);
                break;
            }
    } else if (vm->fields[XAPI_F_VM_is_a_snapshot].b) {
        add_ops(&ops, snapshot_ops);
    } else if (vm->fields[XAPI_F_VM_is_a_template].b) {
        add_ops(&ops, template_ops);
        if (strcmp(vm->fields[XAPI_F_VM_other_config].kind == XAPI_V_STRUCT &&
                           xapi_struct_get(&vm->fields[XAPI_F_VM_other_config], "default_template")
                       ? xapi_struct_get(&vm->fields[XAPI_F_VM_other_config], "default_template")->s
                       : "",
                   "true") != 0)
            xapi_array_append(&ops, xapi_value_string("destroy"));
    } else if (strcmp(ps, "Halted") == 0)
        add_ops(&ops, halted);
    else if (strcmp(ps, "Running") == 0)
        add_ops(&ops, running);
    else if (strcmp(ps, "Paused") == 0)
        add_ops(&ops, paused);
    else if (strcmp(ps, "Suspended") == 0)
        add_ops(&ops, suspended);
    xapi_obj_set(st, vm, XAPI_F_VM_allowed_operations, ops);
}
