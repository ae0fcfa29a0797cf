/* VM lifecycle: the XenAPI VM operations, implemented over the backend
 * interface (backend.h) with xapi's semantics (power-state machine,
 * allowed/current operations, per-VM operation lock, actions after guest
 * shutdown/reboot/crash, reconciliation with the hypervisor at start). */
#pragma once

#include "xapi/api.h"

/* Registers the VM, VBD and VIF handlers and class hooks. */
void vmops_register(void);
/* Creates the backend named in the configuration, installs the default
 * templates at first start and reconciles every VM with its domain. */
int vmops_init(xapi_server *srv);
void vmops_shutdown(xapi_server *srv);
