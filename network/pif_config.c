/* A PIF's IP configuration and which PIF is the management interface:
 * PIF.reconfigure_ip, PIF.reconfigure_ipv6 and host.management_reconfigure,
 * with xapi's checks and record changes. They change the records only:
 * applying them to the host's interfaces (addresses, routes, DHCP, moving
 * the listening address) belongs to the network rework of issue 12, and
 * until then the next PIF.scan or start shows the host's real settings
 * again. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "network/internal.h"
#include "xapi/error.h"

static bool ip_valid(int family, const char *s) {
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(family, s, buf) == 1;
}

/* "addr/prefix" with a prefix the family allows. */
static bool cidr_valid(int family, const char *s) {
    const char *slash = strrchr(s, '/');
    char addr[INET6_ADDRSTRLEN + 1];
    char *end = NULL;
    long prefix;

    if (!slash || (size_t)(slash - s) >= sizeof addr || !slash[1])
        return false;
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    prefix = strtol(slash + 1, &end, 10);
    return *end == '\0' && prefix >= 0 && prefix <= (family == AF_INET6 ? 128 : 32) && ip_valid(family, addr);
}

/* Every address of a comma-separated DNS list (xapi's Helpers.assert_is_valid_ip on each). */
static int check_dns(xapi_call *c, int family, const char *dns) {
    char *list = xapi_strdup(dns), *save = NULL;
    int rc = 0;

    for (char *a = strtok_r(list, ",", &save); a && rc == 0; a = strtok_r(NULL, ",", &save))
        if (!ip_valid(family, a))
            rc = xapi_call_fail(c, "INVALID_IP_ADDRESS_SPECIFIED", "DNS");
    /* "a,,b" or a trailing comma: an empty address. */
    if (rc == 0 && *dns && (dns[0] == ',' || dns[strlen(dns) - 1] == ',' || strstr(dns, ",,")))
        rc = xapi_call_fail(c, "INVALID_IP_ADDRESS_SPECIFIED", "DNS");
    free(list);
    return rc;
}

/* The PIF of the call's first argument, if it may be reconfigured (write lock held). */
static int lookup_managed_pif(xapi_call *c, xapi_obj **ret) {
    int rc = xapi_lookup(c, net_cls(XAPI_C_PIF), c->args[0].s, ret);

    if (rc == 0 && !(*ret)->fields[XAPI_F_PIF_managed].b)
        rc = xapi_call_fail(c, "PIF_UNMANAGED", (*ret)->ref);
    return rc;
}

/* PIF.reconfigure_ip(self, mode, IP, netmask, gateway, DNS). */
static int pif_reconfigure_ip(xapi_call *c) {
    const char *mode = c->args[1].s, *ip = c->args[2].s, *netmask = c->args[3].s, *gateway = c->args[4].s,
               *dns = c->args[5].s;
    const char *const params[][2] = {{"IP", ip}, {"netmask", netmask}, {"gateway", gateway}};
    xapi_store *st = c->srv->store;
    xapi_obj *pif;
    int rc;

    xapi_store_write_begin(st);
    rc = lookup_managed_pif(c, &pif);
    if (rc == 0 && strcmp(mode, "Static") == 0) {
        if (!ip_valid(AF_INET, ip))
            rc = xapi_call_fail(c, "INVALID_IP_ADDRESS_SPECIFIED", "IP");
        else if (!ip_valid(AF_INET, netmask))
            rc = xapi_call_fail(c, "INVALID_IP_ADDRESS_SPECIFIED", "netmask");
    }
    for (size_t i = 0; rc == 0 && i < sizeof params / sizeof params[0]; i++)
        if (*params[i][1] && !ip_valid(AF_INET, params[i][1]))
            rc = xapi_call_fail(c, "INVALID_IP_ADDRESS_SPECIFIED", params[i][0]);
    if (rc == 0)
        rc = check_dns(c, AF_INET, dns);
    /* The management interface keeps an address of its primary type. */
    if (rc == 0 && pif->fields[XAPI_F_PIF_management].b && strcmp(mode, "None") == 0 &&
        strcmp(pif->fields[XAPI_F_PIF_primary_address_type].s, "IPv6") != 0)
        rc = xapi_call_fail(c, "PIF_IS_MANAGEMENT_INTERFACE", pif->ref);
    if (rc == 0) {
        xapi_obj_set_string(st, pif, XAPI_F_PIF_ip_configuration_mode, mode);
        xapi_obj_set_string(st, pif, XAPI_F_PIF_IP, ip);
        xapi_obj_set_string(st, pif, XAPI_F_PIF_netmask, netmask);
        xapi_obj_set_string(st, pif, XAPI_F_PIF_gateway, gateway);
        xapi_obj_set_string(st, pif, XAPI_F_PIF_DNS, dns);
        log_info("network: PIF %s (%s) IPv4 configuration recorded: %s %s/%s gateway %s", pif->uuid,
                 pif->fields[XAPI_F_PIF_device].s, mode, ip, netmask, gateway);
    }
    return xapi_finish_void(c, rc);
}

/* PIF.reconfigure_ipv6(self, mode, IPv6, gateway, DNS). */
static int pif_reconfigure_ipv6(xapi_call *c) {
    const char *mode = c->args[1].s, *ipv6 = c->args[2].s, *gateway = c->args[3].s, *dns = c->args[4].s;
    xapi_store *st = c->srv->store;
    xapi_value addrs = xapi_value_array();
    xapi_obj *pif;
    int rc;

    xapi_store_write_begin(st);
    rc = lookup_managed_pif(c, &pif);
    if (rc == 0 && *gateway && !ip_valid(AF_INET6, gateway))
        rc = xapi_call_fail(c, "INVALID_IP_ADDRESS_SPECIFIED", "gateway");
    if (rc == 0 && *ipv6 && !cidr_valid(AF_INET6, ipv6))
        rc = xapi_call_fail(c, "INVALID_CIDR_ADDRESS_SPECIFIED", "IPv6");
    if (rc == 0)
        rc = check_dns(c, AF_INET6, dns);
    if (rc == 0 && pif->fields[XAPI_F_PIF_management].b && strcmp(mode, "None") == 0 &&
        strcmp(pif->fields[XAPI_F_PIF_primary_address_type].s, "IPv6") == 0)
        rc = xapi_call_fail(c, "PIF_IS_MANAGEMENT_INTERFACE", pif->ref);
    if (rc == 0) {
        /* As xapi: the list is the one address given (an empty string if none). */
        xapi_array_append(&addrs, xapi_value_string(ipv6));
        xapi_obj_set_string(st, pif, XAPI_F_PIF_ipv6_configuration_mode, mode);
        xapi_obj_set_string(st, pif, XAPI_F_PIF_ipv6_gateway, gateway);
        xapi_obj_set(st, pif, XAPI_F_PIF_IPv6, addrs);
        if (*dns)
            xapi_obj_set_string(st, pif, XAPI_F_PIF_DNS, dns);
        log_info("network: PIF %s (%s) IPv6 configuration recorded: %s %s", pif->uuid,
                 pif->fields[XAPI_F_PIF_device].s, mode, ipv6);
    } else
        xapi_value_free(&addrs);
    return xapi_finish_void(c, rc);
}

/* host.management_reconfigure(pif): the PIF becomes its host's management
 * interface (the others of that host stop being it). */
static int host_management_reconfigure(xapi_call *c) {
    xapi_store *st = c->srv->store;
    xapi_obj *pif, *pool;
    const char *host, *type;
    int rc;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, net_cls(XAPI_C_PIF), c->args[0].s, &pif);
    if (rc < 0)
        return xapi_finish_void(c, rc);
    pool = xapi_store_get_class(st, net_cls(XAPI_C_pool), c->srv->pool_ref);
    type = pif->fields[XAPI_F_PIF_primary_address_type].s;
    if (pool && pool->fields[XAPI_F_pool_ha_enabled].b)
        rc = xapi_call_fail(c, "HA_IS_ENABLED");
    else if (!net_null_ref(pif->fields[XAPI_F_PIF_bond_slave_of].s))
        rc = xapi_call_fail(c, "CANNOT_PLUG_BOND_SLAVE", pif->ref);
    else if (strcmp(type, "IPv6") != 0 && strcmp(pif->fields[XAPI_F_PIF_ip_configuration_mode].s, "None") == 0)
        rc = xapi_call_fail(c, "PIF_HAS_NO_NETWORK_CONFIGURATION", pif->ref);
    else if (strcmp(type, "IPv6") == 0 && strcmp(pif->fields[XAPI_F_PIF_ipv6_configuration_mode].s, "None") == 0)
        rc = xapi_call_fail(c, "PIF_HAS_NO_V6_NETWORK_CONFIGURATION", pif->ref);
    if (rc < 0 || pif->fields[XAPI_F_PIF_management].b)
        return xapi_finish_void(c, rc);
    host = pif->fields[XAPI_F_PIF_host].s;
    for (xapi_obj *p = xapi_store_first(st, net_cls(XAPI_C_PIF)); p; p = xapi_store_next(p)) {
        if (strcmp(p->fields[XAPI_F_PIF_host].s, host) != 0 || p == pif)
            continue;
        if (p->fields[XAPI_F_PIF_management].b && strcmp(p->fields[XAPI_F_PIF_primary_address_type].s, type) != 0) {
            rc = xapi_call_fail(c, "PIF_INCOMPATIBLE_PRIMARY_ADDRESS_TYPE");
            return xapi_finish_void(c, rc);
        }
    }
    for (xapi_obj *p = xapi_store_first(st, net_cls(XAPI_C_PIF)); p; p = xapi_store_next(p))
        if (strcmp(p->fields[XAPI_F_PIF_host].s, host) == 0 && p->fields[XAPI_F_PIF_management].b)
            xapi_obj_set_bool(st, p, XAPI_F_PIF_management, false);
    xapi_obj_set_bool(st, pif, XAPI_F_PIF_management, true);
    xapi_obj_set_bool(st, pif, XAPI_F_PIF_currently_attached, true);
    log_info("network: PIF %s (%s) recorded as the management interface", pif->uuid, pif->fields[XAPI_F_PIF_device].s);
    return xapi_finish_void(c, 0);
}

const xapi_handler network_pif_config_handlers[] = {
    {"PIF", "reconfigure_ip", pif_reconfigure_ip},
    {"PIF", "reconfigure_ipv6", pif_reconfigure_ipv6},
    {"host", "management_reconfigure", host_management_reconfigure},
    {NULL, NULL, NULL},
};
