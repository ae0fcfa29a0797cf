/* Shared by the network module's files (others use network.h). */
#pragma once

#include <string.h>

#include "network/network.h"

#define NETWORK_MTU_MIN 68
#define NETWORK_MTU_MAX 65535
#define NETWORK_VIF_DEVICES 16 /* VM.get_allowed_VIF_devices: "0".."15", as xapi */
#define NETWORK_VLAN_MAC "fe:ff:ff:ff:ff:ff"

extern const xapi_handler network_vlan_handlers[];
extern const xapi_handler network_vif_handlers[];
extern const xapi_handler network_pif_config_handlers[];
extern const xapi_class_hooks network_vif_hooks;

static inline const xapi_class *net_cls(int id) {
    return &xapi_classes[id];
}

static inline bool net_null_ref(const char *ref) {
    return !ref || !*ref || strcmp(ref, XAPI_NULL_REF) == 0;
}

const char *net_map_get(const xapi_value *map, const char *key);
/* MTU in range, else INVALID_VALUE ["MTU", value]. */
int net_check_mtu(xapi_value *err, int64_t mtu);
