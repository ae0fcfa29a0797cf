/* Networking: networks (Linux bridges), PIFs of this host, VLANs, VIF checks. */
#pragma once

#include "xapi/api.h"

void network_register(void);
/* Every start: a PIF per physical interface of this host (introspected), each
 * with a network; the management PIF marked (management=true, IP filled). */
int network_bootstrap(xapi_server *srv);
/* The bridge a network's VIFs attach to (caller holds the store lock); malloc'd. */
char *network_bridge_of(xapi_server *srv, const char *network_ref);

/* For a VLAN network: its untagged PIF's device and tag on this host, and the
 * bridge of the tagged PIF's network (malloc'd). 1 if it is one, 0 otherwise.
 * Caller holds the store lock. The kernel VLAN device and its bridge are not
 * made by this module: the backend creates them when a guest uses the network. */
int network_vlan_of(xapi_server *srv, const char *network_ref, char **ret_device, int64_t *ret_tag,
                    char **ret_parent_bridge);
