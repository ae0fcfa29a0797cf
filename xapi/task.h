/* Tasks and Async calls: an Async.X.y call becomes a task record and a worker
 * that runs X.y and stores its result (as an XML-RPC value fragment, as xapi
 * does) or its error in the task. */
#pragma once

#include "xapi/api.h"

extern const xapi_handler xapi_task_handlers[];

/* Starts the Async form of method (its name with the "Async." prefix) with
 * the original params (session first). */
int xapi_task_spawn(xapi_server *srv, const xapi_peer *peer, const char *method, const char *session,
                    const xapi_value *params, char ret_ref[XAPI_REF_LEN + 1], xapi_value *err);
/* A new pending task on this host (write lock held), for work that reports
 * through a task without being an Async call (HTTP transfers). */
xapi_obj *xapi_task_new(xapi_server *srv, const char *label, const char *description);
/* Ends a task (write lock held): success with result (an XML-RPC <value>
 * fragment) when err is NULL, else failure (or cancelled) with err. */
void xapi_task_end(xapi_server *srv, const char *ref, const char *result, const xapi_value *err);
/* Async calls run on at most a fixed number of worker slots; the others
 * queue for one, holding no thread. A call that would wait for what another
 * call holds gives its worker back:
 * - waiting for a guest (a clean shutdown's answer), it keeps its thread but
 *   lends its slot between park_begin and park_end (which takes one again);
 * - waiting for a VM's operation lock, it parks: xapi_task_park returns its
 *   job (NULL outside an Async worker: wait as usual), the call then fails
 *   out and its outcome is dropped; whoever releases the lock later resumes
 *   it (it runs again from the start: the call must have done nothing but
 *   read before it waits) or abandons it (it ends with err, never run).
 * While parked, a task can be cancelled whatever its method. */
typedef struct xapi_task_job xapi_task_job;
void xapi_task_park_begin(xapi_server *srv, const char *task);
void xapi_task_park_end(xapi_server *srv, const char *task);
xapi_task_job *xapi_task_park(const char *task);
/* Once parked (and visible to whoever resumes it): task.cancel may end it. */
void xapi_task_parked_allow_cancel(xapi_task_job *job);
/* fn(task) runs when a job that was resumed ends, whatever the outcome: the
 * lock kept for it is released if its new run never took it. */
void xapi_task_set_resumed_end_hook(void (*fn)(const char *task));
void xapi_task_resume(xapi_task_job *job);
void xapi_task_abandon(xapi_task_job *job, const xapi_value *err);
/* Called after a task is marked cancelling, so waiting operations look at it. */
void xapi_task_set_cancel_hook(void (*fn)(void));
/* At start: tasks left pending by a previous run are marked failed. */
int xapi_tasks_init(xapi_server *srv);
/* Destroys finished tasks past their lifetime and beyond the count limit. */
void xapi_tasks_expire(xapi_server *srv);
/* Waits (bounded) for running task workers to finish, at shutdown. */
void xapi_tasks_shutdown(xapi_server *srv);
