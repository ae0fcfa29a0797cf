/* Tasks and the Async workers. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/log.h"
#include "xapi/error.h"
#include "xapi/task.h"

#define COMPLETED_TASK_SECONDS 3900    /* xapi's completed_task_timeout */
#define PENDING_TASK_SECONDS 86400
#define MAX_RUNNING_WORKERS 64
#define SHUTDOWN_WAIT_SECONDS 5

/* One Async call, from its spawn to its end: queued for a worker slot, run
 * on a worker thread, possibly parked (on a VM's lock: no thread) and run
 * again from the start once resumed. */
struct xapi_task_job {
    struct xapi_task_job *next; /* in the queue for a slot */
    xapi_server *srv;
    char *method; /* without "Async." */
    char *originator;
    bool local_root;
    xapi_value params;
    char task[XAPI_REF_LEN + 1];
    enum { JOB_RUNNING, JOB_PARKING, JOB_PARKED, JOB_RESUMED_EARLY, JOB_ABANDONED_EARLY } state;
    bool resumed;      /* run again after a park: never dropped without running */
    xapi_value abandon_err;
};
typedef struct xapi_task_job job;

/* Async calls whose operation looks at task.cancel while it waits. */
static const char *const cancellable_methods[] = {"VM.clean_shutdown", "VM.clean_reboot", "VM.shutdown", "VM.start",
                                          "VM.start_on", "VM.resume", "VM.suspend", "host.call_plugin", NULL};
static void (*cancel_hook)(void);

/* The pool: at most MAX_RUNNING_WORKERS jobs run at once, each on a thread
 * holding a slot; the others queue for one, holding no thread. A job waiting
 * for its guest keeps its thread but lends its slot (park_begin/end); a job
 * parked on a VM's lock keeps neither. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER; /* a slot for an unparking job; a job ended */
static unsigned slots_free = MAX_RUNNING_WORKERS;
static unsigned unparking;     /* threads waiting to take a slot back */
static job *queue_head, *queue_tail;
static unsigned jobs_alive;    /* queued, running or parked */
static __thread job *current_job;
static __thread bool lent_slot;

static const xapi_class *task_class(void) {
    return &xapi_classes[XAPI_C_task];
}

void xapi_task_end(xapi_server *srv, const char *ref, const char *result, const xapi_value *err) {
    xapi_store *st = srv->store;
    xapi_obj *t = xapi_store_get_class(st, task_class(), ref);
    bool cancelled = err && err->kind == XAPI_V_ARRAY && err->n > 0 && strcmp(err->items[0].s, "TASK_CANCELLED") == 0;

    if (!t)
        return; /* destroyed meanwhile */
    xapi_obj_set_string(st, t, XAPI_F_task_status, !err ? "success" : cancelled ? "cancelled" : "failure");
    xapi_obj_set(st, t, XAPI_F_task_progress, xapi_value_float(1.0));
    xapi_obj_set(st, t, XAPI_F_task_finished, xapi_value_datetime(xapi_wall_seconds()));
    xapi_obj_set(st, t, XAPI_F_task_allowed_operations, xapi_value_array());
    if (err)
        xapi_obj_set(st, t, XAPI_F_task_error_info, xapi_value_copy(err));
    else
        xapi_obj_set_string(st, t, XAPI_F_task_result, result);
}

static void task_finish(xapi_server *srv, const char *ref, bool ok, const char *result, const xapi_value *err) {
    xapi_store_write_begin(srv->store);
    xapi_task_end(srv, ref, result, ok ? NULL : err);
    xapi_store_write_end_durable(srv->store);
}

static bool is_cancellable_method(const char *method) {
    for (const char *const *m = cancellable_methods; *m; m++)
        if (strcmp(*m, method) == 0)
            return true;
    return false;
}

/* allowed_operations of the task: cancel, or nothing. */
static void set_cancellable(xapi_server *srv, const char *task, bool cancellable) {
    xapi_obj *t;

    xapi_store_write_begin(srv->store);
    t = xapi_store_get_class(srv->store, task_class(), task);
    if (t && strcmp(t->fields[XAPI_F_task_status].s, "pending") == 0) {
        xapi_value ops = xapi_value_array();
        if (cancellable)
            xapi_array_append(&ops, xapi_value_string("cancel"));
        xapi_obj_set(srv->store, t, XAPI_F_task_allowed_operations, ops);
    }
    xapi_store_write_end(srv->store);
}

static void (*resumed_end_hook)(const char *task);

void xapi_task_set_resumed_end_hook(void (*fn)(const char *task)) {
    resumed_end_hook = fn;
}

/* Ends the job with err (or its result) and frees it. */
static void job_end(job *j, bool ok, const char *result, const xapi_value *err) {
    task_finish(j->srv, j->task, ok, result, err);
    if (j->resumed && resumed_end_hook)
        resumed_end_hook(j->task);
    xapi_value_free(&j->params);
    xapi_value_free(&j->abandon_err);
    free(j->method);
    free(j->originator);
    free(j);
    pthread_mutex_lock(&pool_lock);
    jobs_alive--;
    pthread_cond_broadcast(&pool_cond);
    pthread_mutex_unlock(&pool_lock);
}

static void job_cancel(job *j) {
    xapi_value err = {0};

    xapi_fail(&err, "TASK_CANCELLED", j->task, NULL);
    job_end(j, false, NULL, &err);
    xapi_value_free(&err);
}

/* Runs j once: its end, or its park (then the job is the lock's). Returns
 * whether to run it again at once (resumed before its thread let it go). */
static bool job_run(job *j) {
    xapi_buf b = XAPI_BUF_INIT;
    xapi_value err = {0};
    xapi_peer peer = {j->local_root, j->originator, NULL};
    xapi_out o;
    bool again = false;
    int rc;

    if (j->srv->stopping && !j->resumed) { /* queued when the daemon began to stop: never run */
        job_cancel(j);
        return false;
    }
    current_job = j;
    j->state = JOB_RUNNING;
    xapi_out_init(&o, XAPI_FMT_XML, &b);
    rc = xapi_invoke(j->srv, &peer, j->method, &j->params, &o, &err, j->task);
    current_job = NULL;
    pthread_mutex_lock(&pool_lock);
    if (j->state == JOB_PARKING) {
        j->state = JOB_PARKED; /* the lock resumes or abandons it */
        j = NULL;
    } else if (j->state == JOB_RESUMED_EARLY)
        again = true;
    pthread_mutex_unlock(&pool_lock);
    if (j && !again) {
        if (j->state == JOB_ABANDONED_EARLY)
            job_end(j, false, NULL, &j->abandon_err);
        else /* the result is an XML-RPC <value> fragment, whatever protocol the caller used */
            job_end(j, rc == 0, b.data ? b.data : "<value></value>", &err);
    }
    xapi_buf_free(&b);
    xapi_value_free(&err);
    return again;
}

/* A slot is free (pool_lock held): an unparking thread takes it, else the
 * next queued job (returned, to run on the caller's thread), else it is free. */
static job *slot_release_locked(void) {
    job *next = NULL;

    if (unparking > 0) {
        slots_free++;
        pthread_cond_broadcast(&pool_cond);
    } else if (queue_head) {
        next = queue_head;
        queue_head = next->next;
        if (!queue_head)
            queue_tail = NULL;
        next->next = NULL;
    } else
        slots_free++;
    return next;
}

static void *worker_main(void *arg) {
    job *j = arg;

    pthread_setname_np(pthread_self(), "task");
    while (j) {
        while (job_run(j))
            ;
        pthread_mutex_lock(&pool_lock);
        j = slot_release_locked();
        pthread_mutex_unlock(&pool_lock);
    }
    return NULL;
}

/* Starts a thread for j, which holds a slot (pool_lock held). */
static int start_worker_locked(job *j) {
    pthread_attr_t attr;
    pthread_t th;
    int rc;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    rc = pthread_create(&th, &attr, worker_main, j) == 0 ? 0 : -EAGAIN;
    pthread_attr_destroy(&attr);
    return rc;
}

/* Runs j when a slot is free, queued until then (it holds no thread there). */
static void job_submit(job *j) {
    pthread_mutex_lock(&pool_lock);
    if (slots_free > 0 && unparking == 0) {
        slots_free--;
        if (start_worker_locked(j) == 0) {
            pthread_mutex_unlock(&pool_lock);
            return;
        }
        slots_free++;
        log_warning("tasks: cannot start a worker thread; task %s waits for a running one", j->task);
    }
    if (queue_tail)
        queue_tail->next = j;
    else
        queue_head = j;
    queue_tail = j;
    pthread_mutex_unlock(&pool_lock);
}

void xapi_task_park_begin(xapi_server *srv, const char *task) {
    job *j = current_job, *next;

    if (!j || !task || strcmp(j->task, task) != 0 || lent_slot)
        return;
    lent_slot = true;
    pthread_mutex_lock(&pool_lock);
    next = slot_release_locked();
    if (next && start_worker_locked(next) < 0) {
        /* back to the head of the queue, with the slot free for the next taker */
        next->next = queue_head;
        queue_head = next;
        if (!queue_tail)
            queue_tail = next;
        slots_free++;
    }
    pthread_mutex_unlock(&pool_lock);
}

void xapi_task_park_end(xapi_server *srv, const char *task) {
    job *j = current_job;

    if (!j || !task || strcmp(j->task, task) != 0 || !lent_slot)
        return;
    /* A thread coming back holds a VM's lock: it goes before queued jobs. */
    pthread_mutex_lock(&pool_lock);
    unparking++;
    while (slots_free == 0)
        pthread_cond_wait(&pool_cond, &pool_lock);
    slots_free--;
    unparking--;
    pthread_mutex_unlock(&pool_lock);
    lent_slot = false;
}

xapi_task_job *xapi_task_park(const char *task) {
    job *j = current_job;

    if (!j || !task || strcmp(j->task, task) != 0 || lent_slot)
        return NULL;
    pthread_mutex_lock(&pool_lock);
    if (j->state == JOB_RUNNING)
        j->state = JOB_PARKING;
    pthread_mutex_unlock(&pool_lock);
    return j;
}

void xapi_task_parked_allow_cancel(xapi_task_job *j) {
    /* (a resume racing this may leave cancel allowed on a running call that
     * ignores it: harmless, the call's outcome still ends the task) */
    if (!is_cancellable_method(j->method))
        set_cancellable(j->srv, j->task, true);
}

void xapi_task_resume(xapi_task_job *j) {
    bool submit;

    if (!is_cancellable_method(j->method))
        set_cancellable(j->srv, j->task, false);
    pthread_mutex_lock(&pool_lock);
    j->resumed = true;
    submit = j->state == JOB_PARKED;
    j->state = submit ? JOB_RUNNING : JOB_RESUMED_EARLY;
    pthread_mutex_unlock(&pool_lock);
    if (submit)
        job_submit(j);
}

void xapi_task_abandon(xapi_task_job *j, const xapi_value *err) {
    bool now;

    pthread_mutex_lock(&pool_lock);
    now = j->state == JOB_PARKED;
    if (!now) {
        j->abandon_err = xapi_value_copy(err);
        j->state = JOB_ABANDONED_EARLY;
    }
    pthread_mutex_unlock(&pool_lock);
    if (now)
        job_end(j, false, NULL, err);
}

xapi_obj *xapi_task_new(xapi_server *srv, const char *label, const char *description) {
    xapi_store *st = srv->store;
    xapi_obj *t = xapi_obj_create(st, task_class());

    xapi_obj_set_string(st, t, XAPI_F_task_name_label, label);
    xapi_obj_set_string(st, t, XAPI_F_task_name_description, description);
    xapi_obj_set(st, t, XAPI_F_task_created, xapi_value_datetime(xapi_wall_seconds()));
    xapi_obj_set_string(st, t, XAPI_F_task_status, "pending");
    xapi_obj_set_string(st, t, XAPI_F_task_resident_on, srv->host_ref);
    xapi_obj_set(st, t, XAPI_F_task_progress, xapi_value_float(0.0));
    return t;
}

int xapi_task_spawn(xapi_server *srv, const xapi_peer *peer, const char *method, const char *session,
                    const xapi_value *params, char ret_ref[XAPI_REF_LEN + 1], xapi_value *err) {
    xapi_store *st = srv->store;
    job *j = xapi_calloc(1, sizeof *j);
    xapi_obj *t;

    j->srv = srv;
    j->method = xapi_strdup(method + strlen("Async."));
    j->originator = peer && peer->originator ? xapi_strdup(peer->originator) : NULL;
    j->local_root = peer && peer->local_root;
    j->params = xapi_value_copy(params);

    xapi_store_write_begin(st);
    t = xapi_task_new(srv, method, "");
    if (is_cancellable_method(j->method)) {
        xapi_value ops = xapi_value_array();
        xapi_array_append(&ops, xapi_value_string("cancel"));
        xapi_obj_set(st, t, XAPI_F_task_allowed_operations, ops);
    }
    memcpy(j->task, t->ref, sizeof j->task);
    if (xapi_store_write_end_durable(st) < 0) {
        xapi_value_free(&j->params);
        free(j->method);
        free(j->originator);
        free(j);
        if (err->kind != XAPI_V_ARRAY)
            xapi_fail(err, "INTERNAL_ERROR", "cannot create the task", NULL);
        return -XAPI_EFAIL;
    }
    memcpy(ret_ref, j->task, XAPI_REF_LEN + 1);
    pthread_mutex_lock(&pool_lock);
    jobs_alive++;
    pthread_mutex_unlock(&pool_lock);
    job_submit(j);
    (void)session;
    return 0;
}

/* ---- task.* messages --------------------------------------------------- */

static int task_create(xapi_call *c) {
    xapi_obj *t;
    char ref[XAPI_REF_LEN + 1];

    xapi_store_write_begin(c->srv->store);
    t = xapi_task_new(c->srv, c->args[0].s, c->args[1].s);
    memcpy(ref, t->ref, sizeof ref);
    return xapi_finish_ref(c, 0, ref);
}

static int task_destroy(xapi_call *c) {
    xapi_obj *t;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, task_class(), c->args[0].s, &t);
    if (rc == 0)
        xapi_obj_destroy(c->srv->store, t);
    return xapi_finish_void(c, rc);
}

static int task_cancel(xapi_call *c) {
    xapi_obj *t;
    bool cancellable = false;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, task_class(), c->args[0].s, &t);
    if (rc == 0) {
        const xapi_value *ops = &t->fields[XAPI_F_task_allowed_operations];
        for (uint32_t i = 0; i < ops->n; i++)
            cancellable |= strcmp(ops->items[i].s, "cancel") == 0;
        if (!cancellable)
            rc = xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "The task cannot be cancelled");
        else
            xapi_obj_set_string(c->srv->store, t, XAPI_F_task_status, "cancelling");
    }
    rc = xapi_finish(c, rc);
    if (rc == 0 && cancel_hook)
        cancel_hook();
    if (rc == 0)
        xapi_out_void(c->out);
    return rc;
}

void xapi_task_set_cancel_hook(void (*fn)(void)) {
    cancel_hook = fn;
}

/* task.set_* for external agents reporting on a task they created. */
static int task_set(xapi_call *c, int field) {
    xapi_obj *t;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, task_class(), c->args[0].s, &t);
    if (rc == 0) {
        xapi_obj_set(c->srv->store, t, field, xapi_value_copy(&c->args[1]));
        if (field == XAPI_F_task_status && strcmp(c->args[1].s, "pending") != 0)
            xapi_obj_set(c->srv->store, t, XAPI_F_task_finished, xapi_value_datetime(xapi_wall_seconds()));
    }
    return xapi_finish_void(c, rc);
}

static int task_set_status(xapi_call *c) {
    return task_set(c, XAPI_F_task_status);
}
static int task_set_progress(xapi_call *c) {
    return task_set(c, XAPI_F_task_progress);
}
static int task_set_result(xapi_call *c) {
    return task_set(c, XAPI_F_task_result);
}
static int task_set_error_info(xapi_call *c) {
    return task_set(c, XAPI_F_task_error_info);
}

int xapi_tasks_init(xapi_server *srv) {
    xapi_store *st = srv->store;
    xapi_value err = xapi_value_array();
    unsigned n = 0;

    xapi_array_append(&err, xapi_value_string("INTERNAL_ERROR"));
    xapi_array_append(&err, xapi_value_string("xenapid restarted while the task was running"));
    xapi_store_write_begin(st);
    for (xapi_obj *t = xapi_store_first(st, task_class()); t; t = xapi_store_next(t))
        if (strcmp(t->fields[XAPI_F_task_status].s, "pending") == 0 ||
            strcmp(t->fields[XAPI_F_task_status].s, "cancelling") == 0) {
            xapi_obj_set_string(st, t, XAPI_F_task_status, "failure");
            xapi_obj_set(st, t, XAPI_F_task_error_info, xapi_value_copy(&err));
            xapi_obj_set(st, t, XAPI_F_task_finished, xapi_value_datetime(xapi_wall_seconds()));
            n++;
        }
    xapi_value_free(&err);
    if (n)
        log_notice("tasks: %u task(s) left pending by the previous run marked failed", n);
    return xapi_store_write_end_durable(st);
}

void xapi_tasks_expire(xapi_server *srv) {
    xapi_store *st = srv->store;
    int64_t now = xapi_wall_seconds();
    unsigned finished = 0, limit = (unsigned)srv->config->max_tasks;
    xapi_obj *t, *next;

    xapi_store_write_begin(st);
    for (t = xapi_store_first(st, task_class()); t; t = next) {
        bool pending = strcmp(t->fields[XAPI_F_task_status].s, "pending") == 0;
        next = xapi_store_next(t);
        if (pending ? now - t->fields[XAPI_F_task_created].i > PENDING_TASK_SECONDS
                    : now - t->fields[XAPI_F_task_finished].i > COMPLETED_TASK_SECONDS)
            xapi_obj_destroy(st, t);
        else if (!pending)
            finished++;
    }
    /* Beyond the limit, the oldest finished tasks go first (the class list is in creation order). */
    for (t = xapi_store_first(st, task_class()); t && finished > limit; t = next) {
        next = xapi_store_next(t);
        if (strcmp(t->fields[XAPI_F_task_status].s, "pending") != 0) {
            xapi_obj_destroy(st, t);
            finished--;
        }
    }
    xapi_store_write_end_durable(st);
}

void xapi_tasks_shutdown(xapi_server *srv) {
    struct timespec ts;
    job *queued;

    /* Queued jobs never run (a resumed one runs, to give its lock back); the
     * others' waits end once srv->stopping is set, parked ones are abandoned
     * by their lock. A job still running past the bound is in the backend,
     * and is left to the exit. */
    pthread_mutex_lock(&pool_lock);
    queued = queue_head;
    queue_head = queue_tail = NULL;
    pthread_mutex_unlock(&pool_lock);
    while (queued) {
        job *next = queued->next;
        if (queued->resumed)
            job_submit(queued);
        else
            job_cancel(queued);
        queued = next;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += SHUTDOWN_WAIT_SECONDS;
    pthread_mutex_lock(&pool_lock);
    while (jobs_alive > 0)
        if (pthread_cond_timedwait(&pool_cond, &pool_lock, &ts) != 0)
            break;
    pthread_mutex_unlock(&pool_lock);
    (void)srv;
}

const xapi_handler xapi_task_handlers[] = {
    {"task", "create", task_create},
    {"task", "destroy", task_destroy},
    {"task", "cancel", task_cancel},
    {"task", "set_status", task_set_status},
    {"task", "set_progress", task_set_progress},
    {"task", "set_result", task_set_result},
    {"task", "set_error_info", task_set_error_info},
    {NULL, NULL, NULL},
};
