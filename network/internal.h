/* Shared by the network module's files (others use network.h). */
#pragma once

#include <string.h>

#include "network/network.h"

#define NETWORK_MTU_MIN 68
#define NETWORK_MTU_MAX 65535
#define NETWORK_VIF_DEVICES 16 /* VM.get_allowed_VIF_devices: "0".."15", as xapi */
#define NETWORK_VIF_MAX_ALLOWED 64 /* addresses in a VIF's ipv4_allowed / ipv6_allowed */
#define NETWORK_VLAN_MAC "fe:ff:ff:ff:ff:ff"

extern const xapi_handler network_vlan_handlers[];
extern const xapi_handler network_vif_handlers[];
extern const xapi_handler network_pif_config_handlers[];
extern const xapi_class_hooks network_vif_hooks;
extern const xapi_class_hooks network_vif_policy_hooks;
extern const xapi_handler network_vif_policy_handlers[];

static inline const xapi_class *net_cls(int id) {
    return &xapi_classes[id];
}

static inline bool net_null_ref(const char *ref) {
    return !ref || !*ref || strcmp(ref, XAPI_NULL_REF) == 0;
}

const char *net_map_get(const xapi_value *map, const char *key);
/* MTU in range, else INVALID_VALUE ["MTU", value]. */
int net_check_mtu(xapi_value *err, int64_t mtu);

/* ---- host devices (host.c) ---- */
#include <net/if.h>
/* Whether xenapid makes host devices (config host_networking). */
bool net_host_enabled(const xapi_server *srv);
int net_vlan_device_name(const char *parent, int64_t tag, char out[IF_NAMESIZE]);
/* xapi's bond mode -> the Linux bonding mode (network_nl_bond_mode); -EINVAL if unknown. */
int net_bond_mode_linux(const char *mode, int *ret);
bool net_created_has(const xapi_server *srv, const char *name);
/* Remove a device / a port-less bridge xenapid made; others are left alone. */
int net_device_release(const xapi_server *srv, const char *name);
int net_bridge_release(const xapi_server *srv, const char *bridge);
/* The network's bridge and uplinks on this host, made now (store lock held; quick kernel calls):
 * PIF_CONFIGURATION_ERROR [PIF, reason] or HOST_CANNOT_ATTACH_NETWORK [host, network] on failure. */
int net_network_apply_locked(xapi_server *srv, xapi_obj *net, xapi_value *err);
/* MAC syntax (vif.c). */
bool net_mac_valid(const char *mac);
extern const xapi_handler network_bond_handlers[];
