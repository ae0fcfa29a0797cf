/* Tasks and the Async workers. */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
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

typedef struct worker {
    xapi_server *srv;
    char *method; /* without "Async." */
    char *originator;
    bool local_root;
    xapi_value params;
    char task[XAPI_REF_LEN + 1];
} worker;

/* Async calls whose operation looks at task.cancel while it waits. */
static const char *const cancellable_methods[] = {"VM.clean_shutdown", "VM.clean_reboot", "VM.shutdown", "VM.start",
                                          "VM.start_on", "VM.resume", "VM.suspend", NULL};
static void (*cancel_hook)(void);

static sem_t running_slots;
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t workers_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t workers_done = PTHREAD_COND_INITIALIZER;
static unsigned workers_alive;

static void slots_init(void) {
    sem_init(&running_slots, 0, MAX_RUNNING_WORKERS);
}

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

static void *worker_main(void *arg) {
    worker *w = arg;
    xapi_buf b = XAPI_BUF_INIT;
    xapi_value err = {0};
    xapi_peer peer = {w->local_root, w->originator, NULL};
    xapi_out o;
    int rc;

    sem_wait(&running_slots);
    xapi_out_init(&o, XAPI_FMT_XML, &b);
    rc = xapi_invoke(w->srv, &peer, w->method, &w->params, &o, &err, w->task);
    /* The result is an XML-RPC <value> fragment, whatever protocol the caller used. */
    task_finish(w->srv, w->task, rc == 0, b.data ? b.data : "<value></value>", &err);
    sem_post(&running_slots);

    xapi_buf_free(&b);
    xapi_value_free(&err);
    xapi_value_free(&w->params);
    free(w->method);
    free(w->originator);
    free(w);
    pthread_mutex_lock(&workers_lock);
    workers_alive--;
    pthread_cond_broadcast(&workers_done);
    pthread_mutex_unlock(&workers_lock);
    return NULL;
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
    worker *w = NULL;
    pthread_attr_t attr;
    pthread_t th;
    xapi_obj *t;

    pthread_once(&slots_once, slots_init);
    w = xapi_calloc(1, sizeof *w);
    w->srv = srv;
    w->method = xapi_strdup(method + strlen("Async."));
    w->originator = peer && peer->originator ? xapi_strdup(peer->originator) : NULL;
    w->local_root = peer && peer->local_root;
    w->params = xapi_value_copy(params);

    xapi_store_write_begin(st);
    t = xapi_task_new(srv, method, "");
    for (const char *const *m = cancellable_methods; *m; m++)
        if (strcmp(*m, w->method) == 0) {
            xapi_value ops = xapi_value_array();
            xapi_array_append(&ops, xapi_value_string("cancel"));
            xapi_obj_set(st, t, XAPI_F_task_allowed_operations, ops);
        }
    memcpy(w->task, t->ref, sizeof w->task);
    if (xapi_store_write_end_durable(st) < 0)
        goto fail;

    pthread_mutex_lock(&workers_lock);
    workers_alive++;
    pthread_mutex_unlock(&workers_lock);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    memcpy(ret_ref, w->task, XAPI_REF_LEN + 1);
    if (pthread_create(&th, &attr, worker_main, w) != 0) {
        pthread_attr_destroy(&attr);
        pthread_mutex_lock(&workers_lock);
        workers_alive--;
        pthread_mutex_unlock(&workers_lock);
        xapi_fail(err, "INTERNAL_ERROR", "cannot start the task", NULL);
        task_finish(srv, w->task, false, NULL, err);
        goto fail;
    }
    pthread_attr_destroy(&attr);
    (void)session;
    return 0;
fail:
    xapi_value_free(&w->params);
    free(w->method);
    free(w->originator);
    free(w);
    if (err->kind != XAPI_V_ARRAY)
        xapi_fail(err, "INTERNAL_ERROR", "cannot create the task", NULL);
    return -XAPI_EFAIL;
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

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&workers_lock);
    while (workers_alive > 0)
        if (pthread_cond_timedwait(&workers_done, &workers_lock, &ts) != 0)
            break;
    pthread_mutex_unlock(&workers_lock);
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
