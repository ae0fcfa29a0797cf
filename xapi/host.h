/* This host, its pool, its CPUs, metrics and control domain. */
#pragma once

#include "xapi/api.h"

extern const xapi_handler xapi_host_handlers[];

/* Creates the host and pool records at first start; refreshes what the
 * machine tells (hostname, address, CPUs, memory, versions) at every start. */
int xapi_host_bootstrap(xapi_server *srv, const char *xen_version);
/* The hypervisor's version, once the backend knows it (software_version:xen). */
int xapi_host_set_xen_version(xapi_server *srv, const char *xen_version);
