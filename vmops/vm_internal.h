/* Shared between the files of the VM layer. */
#pragma once

#include "vmops/backend.h"
#include "vmops/oplock.h"
#include "xapi/api.h"

enum { REC_HALTED, REC_SUSPENDED, REC_RUNNING, REC_PAUSED, REC_STARTED, REC_STARTED_PAUSED };

/* Power states as sets: what an operation starts from. */
enum { VMOPS_PS_HALTED = 1, VMOPS_PS_RUNNING = 2, VMOPS_PS_PAUSED = 4, VMOPS_PS_SUSPENDED = 8 };

extern const xapi_handler vmops_copy_handlers[];

char *vmops_lower(const char *s);
int vmops_check_memory(xapi_value *err, int64_t smin, int64_t dmin, int64_t dmax, int64_t smax);
char *vmops_suspend_image_path(xapi_server *srv, const char *vm_uuid);
/* Whether power_state (as the record has it) is one of states (VMOPS_PS_*). */
bool vmops_power_state_in(const char *power_state, unsigned states);
/* 0 if power_state is one of allowed, else VM_BAD_POWER_STATE. */
int vmops_check_power_state(xapi_call *c, const char *vm_ref, const char *power_state, unsigned allowed);
/* Creates the VM's domain and unpauses it unless paused (VM lock held). */
int vmops_boot(xapi_call *c, const char *vm_ref, bool paused, int *ret_domid, int64_t *ret_memory);
/* Record the VM's state (store write lock held). */
void vmops_record_running(xapi_server *srv, xapi_obj *vm, int domid, bool paused, int64_t memory);
void vmops_record_started(xapi_server *srv, xapi_obj *vm);
void vmops_record_stopped(xapi_server *srv, xapi_obj *vm, bool suspended);
/* Records the VM's new state and waits until it is durable (VM lock held). */
int vmops_record(xapi_call *c, const char *vm_ref, int domid, int what, int64_t memory);
/* Replaces the VM's domain by a fresh one (reboot). */
int vmops_restart_domain(xapi_call *c, const char *vm_ref, int old_domid, bool paused);
int vmops_destroy_domain(xapi_call *c, int domid);
/* Destroys the VM's domain and records it halted (VM lock held). */
int vmops_halt_domain(xapi_call *c, const char *vm_ref, int domid);
/* Halts the VM whatever it has: its domain (running, paused) is destroyed, its
 * suspend image (suspended) discarded. A halted VM is left as it is. */
int vmops_force_halt(xapi_call *c, const vmops_op *op, const char *power_state, int domid);
/* Applies actions_after_* to a domain that shut down without being asked. */
void vmops_handle_guest_event(xapi_server *srv, const char *uuid, int domid, vmops_shutdown_reason reason);
