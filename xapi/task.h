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
/* Async calls run on at most a fixed number of worker slots. A call about to
 * wait for something another call holds (a VM's operation lock) or for a
 * guest (a clean shutdown's answer) parks: it
 * gives its slot back, so that calls queued on one busy VM never starve the
 * host's other Async calls, and can be cancelled while it waits; unparking
 * takes a slot again (and drops a cancel the method does not otherwise
 * allow). Both do nothing outside an Async worker running task. */
void xapi_task_park_begin(xapi_server *srv, const char *task);
void xapi_task_park_end(xapi_server *srv, const char *task);
/* Called after a task is marked cancelling, so waiting operations look at it. */
void xapi_task_set_cancel_hook(void (*fn)(void));
/* At start: tasks left pending by a previous run are marked failed. */
int xapi_tasks_init(xapi_server *srv);
/* Destroys finished tasks past their lifetime and beyond the count limit. */
void xapi_tasks_expire(xapi_server *srv);
/* Waits (bounded) for running task workers to finish, at shutdown. */
void xapi_tasks_shutdown(xapi_server *srv);
