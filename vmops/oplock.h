/* The per-VM operation lock. One operation at a time per VM; a second one
 * queues for up to the configured wait, then fails with
 * OTHER_OPERATION_IN_PROGRESS. A plain call queues on its own thread; an
 * Async call parks (xapi_task_park: no thread, no worker slot) and the
 * release hands the lock to the first parked call, kept for it until it
 * runs again; queued hard_shutdown/hard_reboot go first. Once the daemon
 * stops, waits end with TASK_CANCELLED. While an operation runs it is listed in the
 * VM's current_operations and allowed_operations are recomputed, as xapi does.
 * The lock also carries what the running operation waits for: the domain
 * event answering a clean shutdown or reboot request, a preemption by a hard
 * operation, or the cancellation of its task. */
#pragma once

#include <stdbool.h>

#include "vmops/backend.h"
#include "xapi/api.h"

typedef struct vmops_op {
    char vm_ref[XAPI_REF_LEN + 1];
    char vm_uuid[XAPI_UUID_LEN + 1];
    char op[40];
    char op_ref[XAPI_REF_LEN + 1]; /* the key in current_operations: the task, or a fresh ref */
    const char *task;              /* task ref if async, for cancellation */
    bool hidden;                   /* not shown in current_operations (device hot-plug, internal) */
    struct oplock_entry *entry;
} vmops_op;

/* Takes the VM's lock for op. A hard_shutdown/hard_reboot preempts a clean
 * shutdown or reboot that is waiting for its guest. Returns 0 or -XAPI_EFAIL
 * (also when an Async call parks: its caller unwinds, doing nothing, and is
 * run again from the start; so callers only read before they call this). */
int vmops_op_begin(xapi_call *c, const char *vm_ref, const char *op, bool hidden, vmops_op *ret);
/* Releases the lock and removes the operation from current_operations. */
void vmops_op_end(xapi_server *srv, vmops_op *op);

/* Declares that the operation will wait for a shutdown of domid: call before
 * asking the guest, so that a quick answer is not missed. */
void vmops_op_expect_domain_event(vmops_op *op, int domid);
/* Stops expecting the domain's event: true (with *ret_reason) if it came
 * already, and is then the caller's to act on; false once later events go to
 * the guest-event handling. */
bool vmops_op_take_domain_event(vmops_op *op, vmops_shutdown_reason *ret_reason);
/* Waits (holding the op) until the backend reports a shutdown of domid, the
 * deadline passes, the op is preempted or its task cancelled.
 * Returns 0 with *ret_reason, -ETIMEDOUT, -EINTR (preempted) or -ECANCELED. */
int vmops_op_wait_domain_event(xapi_server *srv, vmops_op *op, int domid, int64_t deadline_ns,
                               vmops_shutdown_reason *ret_reason);
/* Called with a backend event: if the VM's running operation waits for it, it
 * gets it and true is returned; otherwise the caller handles the event. */
bool vmops_op_deliver_event(const char *vm_uuid, int domid, vmops_shutdown_reason reason);
/* At start: lets the task pool tell the locks about parked calls' ends. */
void vmops_op_init(void);
/* Wakes every waiter so it can notice a cancelled task. */
void vmops_op_wake_all(void);

/* The VM's allowed_operations for its current state (store write lock held). */
void vmops_update_allowed_operations(xapi_store *st, xapi_obj *vm);
