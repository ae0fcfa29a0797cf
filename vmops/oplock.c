/* The per-VM operation lock: see oplock.h. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/config.h"
#include "storage/storage.h"
#include "xapi/error.h"
#include "xapi/task.h"
#include "vmops/oplock.h"

#define WAIT_SLICE_NS (200 * 1000000LL) /* how often waiters look at cancellation */

/* An Async call waiting for the lock without a thread (xapi_task_park). */
typedef struct parked_call {
    struct parked_call *next;
    xapi_task_job *job;
    char task[XAPI_REF_LEN + 1];
    char op[40];
    bool hard;
    int64_t deadline_ns;
    xapi_value err; /* once out of the queue: abandoned with err, or resumed (none) */
} parked_call;

typedef struct oplock_entry {
    struct oplock_entry *next;
    char vm_ref[XAPI_REF_LEN + 1];
    char vm_uuid[XAPI_UUID_LEN + 1];
    bool busy;
    bool reserved; /* busy for the parked call op_ref, resumed but not yet back */
    char op[40];
    char op_ref[XAPI_REF_LEN + 1];
    unsigned users; /* the holder, the waiters and the parked calls */
    /* queued hard_shutdown/hard_reboot (threads, parked): they go first */
    unsigned hard_threads, hard_parked;
    parked_call *parked, *parked_tail; /* in arrival order */
    pthread_cond_t cond;
    /* what the holder waits for */
    int expect_domid;
    bool event_seen;
    vmops_shutdown_reason event_reason;
    bool preempt;
} oplock_entry;

static pthread_mutex_t L = PTHREAD_MUTEX_INITIALIZER;
static oplock_entry *entries;
/* the parked calls' timer: deadlines, cancellations, the daemon's stop */
static pthread_cond_t timer_cond = PTHREAD_COND_INITIALIZER;
static bool timer_running, check_cancels;
static xapi_server *timer_srv;

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
        /* A start, resume or reboot attaches the VM's disks from now on: their VDIs allow only
         * what may run on an attached disk (storage_vdi_check_op), as once they are. */
        for (uint32_t i = 0; i < vm->fields[XAPI_F_VM_VBDs].n; i++) {
            xapi_obj *vbd = xapi_store_get_class(st, &xapi_classes[XAPI_C_VBD], vm->fields[XAPI_F_VM_VBDs].items[i].s);
            xapi_obj *vdi = vbd ? xapi_store_get_class(st, &xapi_classes[XAPI_C_VDI], vbd->fields[XAPI_F_VBD_VDI].s)
                                : NULL;
            if (vdi)
                storage_vdi_update_allowed_operations(srv, vdi);
        }
    }
    /* Not waited for: the operation's own result is, and it follows in the same queue. */
    xapi_store_write_end(st);
}

/* Whether op must (still) wait: the lock is held, or a hard operation, which
 * may cut short what holds it, queues and op is not one. */
static bool lock_taken_for(const oplock_entry *e, const char *op) {
    return e->busy || (e->hard_threads + e->hard_parked > 0 && !is_hard_op(op));
}

/* Parked calls leaving their queue, dealt with once L is released: they
 * end the task or run it again, which takes the store's lock. */
static void settle(parked_call *done) {
    while (done) {
        parked_call *next = done->next;
        if (done->err.kind == XAPI_V_ARRAY)
            xapi_task_abandon(done->job, &done->err);
        else
            xapi_task_resume(done->job);
        xapi_value_free(&done->err);
        free(done);
        done = next;
    }
}

static void unlink_parked(oplock_entry *e, parked_call *p, parked_call **done) {
    parked_call **pp;

    for (pp = &e->parked; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    e->parked_tail = NULL;
    for (parked_call *q = e->parked; q; q = q->next)
        e->parked_tail = q;
    if (p->hard)
        e->hard_parked--;
    p->next = *done;
    *done = p;
}

/* The lock is free (L held): it goes to the first parked hard operation, else
 * (unless a hard operation waits on a thread) to the first parked call, kept
 * for it until its new run takes it. Threads waiting are woken either way. */
static void hand_over(oplock_entry *e, parked_call **done) {
    parked_call *p = NULL;

    pthread_cond_broadcast(&e->cond);
    if (e->busy)
        return;
    for (parked_call *q = e->parked; q && !p; q = q->next)
        if (q->hard)
            p = q;
    if (!p && e->hard_threads == 0)
        p = e->parked;
    if (!p)
        return;
    unlink_parked(e, p, done);
    e->busy = true;
    e->reserved = true;
    snprintf(e->op, sizeof e->op, "%s", p->op);
    snprintf(e->op_ref, sizeof e->op_ref, "%s", p->task);
    e->expect_domid = -1;
    e->event_seen = false;
    e->preempt = false;
    /* the parked call's count in users is now the reservation's */
}

/* Releases the lock (L held). */
static void release_locked(oplock_entry *e, parked_call **done) {
    e->busy = false;
    e->reserved = false;
    e->op[0] = 0;
    e->expect_domid = -1;
    hand_over(e, done);
}

static void *timer_main(void *arg);

/* Parks the call running as task: true if it is an Async worker's (L held). */
static bool park(xapi_call *c, oplock_entry *e, const char *op, int64_t deadline, xapi_task_job **ret) {
    xapi_task_job *job = xapi_task_park(c->task);
    parked_call *p;

    if (!job)
        return false;
    p = xapi_calloc(1, sizeof *p);
    p->job = job;
    snprintf(p->task, sizeof p->task, "%s", c->task);
    snprintf(p->op, sizeof p->op, "%s", op);
    p->hard = is_hard_op(op);
    p->deadline_ns = deadline;
    if (p->hard) {
        e->hard_parked++;
        if (is_clean_op(e->op) && e->expect_domid >= 0) {
            e->preempt = true; /* as for a waiting thread: see vmops_op_begin */
            pthread_cond_broadcast(&e->cond);
        }
    }
    if (e->parked_tail)
        e->parked_tail->next = p;
    else
        e->parked = p;
    e->parked_tail = p;
    timer_srv = c->srv;
    if (!timer_running) {
        pthread_attr_t attr;
        pthread_t th;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        timer_running = pthread_create(&th, &attr, timer_main, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    *ret = job;
    return true;
}

/* The reason op is blocked on vm (its blocked_operations entry), or NULL. A
 * blocked start or resume also blocks start_on and resume_on: on one host they
 * are the same operation, and clients (Nova's rescue, suspend and soft delete)
 * block "start" to keep the VM from being started by any call. */
static const char *blocked_reason(const xapi_obj *vm, const char *op) {
    const xapi_value *blocked = &vm->fields[XAPI_F_VM_blocked_operations];
    const xapi_value *v;
    size_t n = strlen(op);

    if (blocked->kind != XAPI_V_STRUCT)
        return NULL;
    if ((v = xapi_struct_get(blocked, op)))
        return v->s;
    if (n > 3 && strcmp(op + n - 3, "_on") == 0) {
        char base[32];

        snprintf(base, sizeof base, "%.*s", (int)(n - 3), op);
        if ((v = xapi_struct_get(blocked, base)))
            return v->s;
    }
    return NULL;
}

int vmops_op_begin(xapi_call *c, const char *vm_ref, const char *op, bool hidden, vmops_op *ret) {
    xapi_server *srv = c->srv;
    int64_t deadline = xapi_now_ns() + (int64_t)srv->config->op_wait_timeout * 1000000000LL;
    char uuid[XAPI_UUID_LEN + 1];
    const char *reason;
    parked_call *done = NULL;
    xapi_task_job *job = NULL;
    oplock_entry *e;
    xapi_obj *vm;
    int rc = 0;

    xapi_store_rdlock(srv->store);
    rc = xapi_lookup(c, &xapi_classes[XAPI_C_VM], vm_ref, &vm);
    if (rc == 0)
        memcpy(uuid, vm->uuid, sizeof uuid);
    /* As xapi, the first check: a client's call of a blocked operation (the
     * daemon's own, acting on a guest's shutdown say, are not the client's to block). */
    if (rc == 0 && !hidden && *c->session && (reason = blocked_reason(vm, op)))
        rc = xapi_call_fail(c, "OPERATION_BLOCKED", vm_ref, reason);
    xapi_store_rdunlock(srv->store);
    if (rc < 0)
        return rc;

    memset(ret, 0, sizeof *ret);
    pthread_mutex_lock(&L);
    e = entry_get(vm_ref, uuid);
    e->users++;
    if (e->busy && e->reserved && c->task && strcmp(e->op_ref, c->task) == 0) {
        /* resumed: the lock was kept for this call */
        e->reserved = false;
        e->users--;
        if (srv->stopping) {
            rc = xapi_call_fail(c, "TASK_CANCELLED", c->task);
            release_locked(e, &done);
            entry_put(e);
            pthread_mutex_unlock(&L);
            settle(done);
            return rc;
        }
        goto take;
    }
    if (lock_taken_for(e, op) && !srv->stopping && park(c, e, op, deadline, &job)) {
        /* (the parked record may be handed over and freed once L is released;
         * the job lives on until this thread's run of it returns) */
        pthread_mutex_unlock(&L);
        xapi_task_parked_allow_cancel(job);
        /* The call unwinds; its outcome is dropped, and it runs again once resumed. */
        return xapi_call_fail(c, "TASK_PARKED", c->task);
    }
    if (is_hard_op(op))
        e->hard_threads++;
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
        e->hard_threads--;
    if (rc == 0 && srv->stopping) /* no new operation once the daemon stops, even on a free VM */
        rc = xapi_call_fail(c, "TASK_CANCELLED", c->task ? c->task : XAPI_NULL_REF);
    if (rc < 0) {
        hand_over(e, &done); /* a hard waiter leaving may let a parked call in */
        entry_put(e);
        pthread_mutex_unlock(&L);
        settle(done);
        return rc;
    }
    e->busy = true;
take:
    snprintf(e->op, sizeof e->op, "%s", op);
    if (c->task)
        snprintf(e->op_ref, sizeof e->op_ref, "%s", c->task);
    else
        xapi_ref_generate(e->op_ref);
    e->expect_domid = -1;
    e->event_seen = false;
    e->preempt = false;
    pthread_mutex_unlock(&L);

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
    parked_call *done = NULL;

    pthread_mutex_lock(&L);
    release_locked(e, &done);
    entry_put(e);
    pthread_mutex_unlock(&L);
    settle(done);
    op->entry = NULL;
}

/* A resumed call ended: if its new run never took the lock kept for it
 * (it failed before, e.g. its VM or SR was destroyed meanwhile), release it. */
static void resumed_call_ended(const char *task) {
    parked_call *done = NULL;

    pthread_mutex_lock(&L);
    for (oplock_entry *e = entries; e; e = e->next)
        if (e->busy && e->reserved && strcmp(e->op_ref, task) == 0) {
            release_locked(e, &done);
            entry_put(e);
            break;
        }
    pthread_mutex_unlock(&L);
    settle(done);
}

/* Parked calls whose task is being cancelled (L not held): their refs. */
static bool any_cancelling(xapi_server *srv, char (*refs)[XAPI_REF_LEN + 1], bool *hit, size_t n) {
    bool any = false;

    for (size_t i = 0; i < n; i++) {
        hit[i] = task_cancelling(srv, refs[i]);
        any |= hit[i];
    }
    return any;
}

/* Ends parked calls past their deadline, cancelled, or cut by the daemon's
 * stop; runs while any call is parked. */
static void *timer_main(void *arg) {
    pthread_setname_np(pthread_self(), "op-timer");
    pthread_mutex_lock(&L);
    for (;;) {
        xapi_server *srv = timer_srv;
        parked_call *done = NULL;
        char (*refs)[XAPI_REF_LEN + 1] = NULL;
        bool *hit = NULL, any = false;
        size_t n = 0, cap = 0;
        int64_t now = xapi_now_ns();

        if (check_cancels) {
            check_cancels = false;
            for (oplock_entry *e = entries; e; e = e->next)
                for (parked_call *p = e->parked; p; p = p->next) {
                    if (n == cap) {
                        cap = cap ? 2 * cap : 64;
                        refs = xapi_realloc(refs, cap * sizeof *refs);
                    }
                    memcpy(refs[n++], p->task, XAPI_REF_LEN + 1);
                }
            hit = xapi_calloc(n ? n : 1, sizeof *hit);
            pthread_mutex_unlock(&L);
            any = any_cancelling(srv, refs, hit, n);
            pthread_mutex_lock(&L);
        }
        for (oplock_entry *e = entries, *next_e; e; e = next_e) {
            bool changed = false;
            next_e = e->next;
            for (parked_call *p = e->parked, *next; p; p = next) {
                bool cancelled = srv->stopping;
                next = p->next;
                for (size_t i = 0; any && !cancelled && i < n; i++)
                    cancelled = hit[i] && strcmp(refs[i], p->task) == 0;
                if (cancelled)
                    xapi_fail(&p->err, "TASK_CANCELLED", p->task, NULL);
                else if (now >= p->deadline_ns)
                    xapi_fail(&p->err, "OTHER_OPERATION_IN_PROGRESS", "VM", e->vm_ref, e->op,
                              e->op_ref, NULL);
                else
                    continue;
                unlink_parked(e, p, &done);
                changed = true;
                e->users--;
            }
            if (changed) {
                hand_over(e, &done); /* (a hard one leaving may let others in) */
                e->users++;
                entry_put(e);
            }
        }
        free(refs);
        free(hit);
        if (done) {
            pthread_mutex_unlock(&L);
            settle(done);
            pthread_mutex_lock(&L);
        }
        {
            bool parked = false;
            for (oplock_entry *e = entries; e && !parked; e = e->next)
                parked = e->parked != NULL;
            if (!parked) {
                timer_running = false;
                break;
            }
        }
        if (!check_cancels) {
            int64_t until = xapi_now_ns() + WAIT_SLICE_NS;
            struct timespec ts = {until / 1000000000LL, until % 1000000000LL};
            pthread_cond_timedwait(&timer_cond, &L, &ts);
        }
    }
    pthread_mutex_unlock(&L);
    return NULL;
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
        if (e->preempt || e->hard_parked > 0) { /* a hard operation cuts it short */
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
    check_cancels = true;
    pthread_cond_signal(&timer_cond);
    pthread_mutex_unlock(&L);
}

void vmops_op_init(void) {
    xapi_task_set_resumed_end_hook(resumed_call_ended);
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
                                         "checkpoint", "power_state_reset", NULL};
    static const char *const suspended[] = {"resume", "resume_on", "hard_shutdown", "shutdown", "snapshot",
                                            "checkpoint", "clone", "copy", "export", "power_state_reset", NULL};
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
    if (vm->fields[XAPI_F_VM_blocked_operations].n > 0) {
        xapi_value kept = xapi_value_array();

        for (uint32_t i = 0; i < ops.n; i++)
            if (!blocked_reason(vm, ops.items[i].s))
                xapi_array_append(&kept, xapi_value_copy(&ops.items[i]));
        xapi_value_free(&ops);
        ops = kept;
    }
    xapi_obj_set(st, vm, XAPI_F_VM_allowed_operations, ops);
}
