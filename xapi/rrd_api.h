/* The statistics endpoints (/rrd_updates, /host_rrd, /vm_rrd, /metrics) and
 * the data source messages of host and VM, over the RRDs of rrd_db.h. */
#pragma once

/* Registers the HTTP handlers and the XenAPI messages (before xapi_dispatch_init). */
void xapi_rrd_register(void);
