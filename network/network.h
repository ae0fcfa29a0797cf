/* Networking: networks (Linux bridges), PIFs of this host, VLANs, bonds, VIF
 * checks, and the host devices they stand for (made over rtnetlink). */
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
 * Caller holds the store lock. (network_prepare_for_vif makes the devices.) */
int network_vlan_of(xapi_server *srv, const char *network_ref, char **ret_device, int64_t *ret_tag,
                    char **ret_parent_bridge);
/* Before a VIF on the network of this bridge is plugged (a domain built, a
 * hot-plug): the bridge exists, is up, has the network's MTU, and its VLAN
 * device, bond or NIC is a port of it. Caller holds no store lock. Nothing
 * when host_networking is off or no network has this bridge.
 * HOST_CANNOT_ATTACH_NETWORK [host, network] on failure. */
int network_prepare_for_vif(xapi_server *srv, const char *bridge, xapi_value *err);
/* A VIF's backend device enforces the VIF's MTU, rate limit and locking mode
 * (vif_policy.c): call when it becomes attached (true) or detached (false),
 * once the backend device exists / before it goes, with the store lock held
 * (quick kernel calls). Nothing without host_networking or the device. */
void network_vif_attached_changed(xapi_server *srv, const xapi_obj *vm, const xapi_obj *vif, bool attached);
/* At start, after vmops_init: the networks' devices and the rules of every
 * attached VIF of a running VM made again where missing. */
void network_vif_repair(xapi_server *srv);
