/* Running guests registered with systemd-machined (`machinectl list`), as
 * libvirt registers its domains: RegisterMachine when a VM runs,
 * UnregisterMachine when it stops, over the system bus, from a worker thread
 * of its own (config register_machines). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "vmops/backend.h"

/* Starts the worker (nothing when off); b gives each guest's device model pid
 * (the machine's leader) and must outlive vmops_machined_stop. */
int vmops_machined_start(bool enabled, vmops_backend *b);
/* Stops it; what is still queued is dropped (the guests keep running, and a
 * registration whose leader is gone is dropped by machined itself). */
void vmops_machined_stop(void);
/* Queue a registration or its end. Never blocks on the bus: safe with the
 * store's write lock held; dropped (with a warning) when the queue is full. */
void vmops_machined_running(const char *vm_uuid, const char *name_label, int domid);
void vmops_machined_stopped(const char *vm_uuid);
/* The machine name of a VM: "xenapid-<name_label>" made a valid machine
 * name (letters, digits, '-', single dots inside; at most 64 characters), or
 * "xenapid-<uuid>" when nothing of the label is left. 0, or -ENOBUFS if buf
 * (at least 65 bytes to hold any) is too small. */
int vmops_machined_name(const char *name_label, const char *vm_uuid, char *buf, size_t len);
