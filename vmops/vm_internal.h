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
/* A VM's suspend image lives in a VDI of type suspend (VM.suspend_VDI), as
 * in xapi. create: a new VDI for it on the suspend SR, and the path the
 * backend writes to (without the store lock; VM_NO_SUSPEND_SR). find: the
 * VDI (or "" for an image an earlier version kept as a file) and path of a
 * suspended VM's image, -ENOENT if it is gone (store lock held). drop:
 * destroys it once resumed or discarded (without the store lock). */
int vmops_suspend_image_create(xapi_call *c, const char *vm_ref, char ret_vdi[XAPI_REF_LEN + 1], char **ret_path);
int vmops_suspend_image_find(xapi_server *srv, const xapi_obj *vm, char ret_vdi[XAPI_REF_LEN + 1], char **ret_path);
void vmops_suspend_image_drop(xapi_server *srv, const char *vdi_ref, const char *path);
/* Whether power_state (as the record has it) is one of states (VMOPS_PS_*). */
bool vmops_power_state_in(const char *power_state, unsigned states);
/* 0 if power_state is one of allowed, else VM_BAD_POWER_STATE. */
int vmops_check_power_state(xapi_call *c, const char *vm_ref, const char *power_state, unsigned allowed);
/* What vmops_boot made: the domain, its memory, and when the backend's create
 * and unpause (libxl's domain build, device attachment) began and ended: the
 * start-time figures count the rest of a start as xenapid's own. Stamps, not
 * durations: on a Xen PV dom0 each clock read is a system call (no vDSO
 * clock there), so a start reads each boundary once and the parts are the
 * differences. */
typedef struct vmops_boot_result {
    int domid;
    int64_t memory;
    int64_t backend_begin_ns, backend_end_ns;         /* CLOCK_MONOTONIC */
    int64_t backend_begin_cpu_ns, backend_end_cpu_ns; /* CLOCK_THREAD_CPUTIME_ID of the calling thread */
    int64_t network_ns; /* before the backend: its networks' devices (network_prepare_for_vif) */
} vmops_boot_result;
/* Creates the VM's domain and unpauses it unless paused (VM lock held). */
int vmops_boot(xapi_call *c, const char *vm_ref, bool paused, vmops_boot_result *ret);
/* Record the VM's state (store write lock held). */
void vmops_record_running(xapi_server *srv, xapi_obj *vm, int domid, bool paused, int64_t memory);
void vmops_record_started(xapi_server *srv, xapi_obj *vm);
void vmops_record_stopped(xapi_server *srv, xapi_obj *vm, bool suspended);
/* Records the VM's new state and waits until it is durable (VM lock held),
 * except a fresh start's (REC_STARTED*), which the hypervisor can tell again
 * after a crash (see recoverable_from_hypervisor in vm.c).
 * The VIFs' plumbing (their backend devices' MTU, rate limit and rules) is
 * done without the store's lock: before the record for a domain that runs,
 * after it for one that is gone. */
int vmops_record(xapi_call *c, const char *vm_ref, int domid, int what, int64_t memory);
/* Where vmops_record's time went (CLOCK_MONOTONIC ns): the VIFs' plumbing,
 * the wait for the store's write lock, the record's own work under it, the
 * wait for its commit to be durable, and what follows it (the console log's
 * link, a catch-up of the plumbing). */
typedef struct vmops_record_times {
    int64_t begin_ns; /* set by the caller: when the record began (CLOCK_MONOTONIC) */
    int64_t end_ns;   /* when it ended */
    int64_t plumbing_ns, lock_wait_ns, locked_ns, durable_ns, after_ns;
    unsigned nvifs;
} vmops_record_times;
/* vmops_record, timed when times is not NULL (its begin_ns set). */
int vmops_record_timed(xapi_call *c, const char *vm_ref, int domid, int what, int64_t memory,
                       vmops_record_times *times);
/* Replaces the VM's domain by a fresh one (reboot). */
int vmops_restart_domain(xapi_call *c, const char *vm_ref, int old_domid, bool paused);
int vmops_destroy_domain(xapi_call *c, int domid);
/* Destroys the VM's domain and records it halted (VM lock held). */
int vmops_halt_domain(xapi_call *c, const char *vm_ref, int domid);
/* Halts the VM whatever it has: its domain (running, paused) is destroyed, its
 * suspend image (suspended) discarded. A halted VM is left as it is. */
int vmops_force_halt(xapi_call *c, const vmops_op *op, const char *power_state, int domid);
/* VM.suspend's and VM.resume's work on the VM whose lock op holds (VM.checkpoint
 * suspends and resumes around its snapshot): the image in a new suspend VDI and
 * the VM recorded Suspended; the VM rebuilt from its image, which goes. */
int vmops_suspend_domain(xapi_call *c, vmops_op *op, int domid);
int vmops_resume_domain(xapi_call *c, vmops_op *op, bool paused);
/* Applies actions_after_* to a domain that shut down without being asked. */
void vmops_handle_guest_event(xapi_server *srv, const char *uuid, int domid, vmops_shutdown_reason reason);
