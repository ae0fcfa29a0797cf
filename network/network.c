/* Networks (Linux bridges) and this host's PIFs: network.create/destroy
 * checks, the PIFs introspected at every start (and by PIF.scan), and the
 * host internal management network xapi always has. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "network/ifaces.h"
#include "network/internal.h"
#include "xapi/error.h"

const char *net_map_get(const xapi_value *map, const char *key) {
    const xapi_value *v = map && map->kind == XAPI_V_STRUCT ? xapi_struct_get(map, key) : NULL;
    return v && v->kind == XAPI_V_STRING ? v->s : NULL;
}

int net_check_mtu(xapi_value *err, int64_t mtu) {
    char text[32];

    if (mtu >= NETWORK_MTU_MIN && mtu <= NETWORK_MTU_MAX)
        return 0;
    snprintf(text, sizeof text, "%" PRId64, mtu);
    return xapi_fail(err, "INVALID_VALUE", "MTU", text, NULL);
}

static bool bridge_used(xapi_store *st, const char *bridge, const xapi_obj *self) {
    for (xapi_obj *n = xapi_store_first(st, net_cls(XAPI_C_network)); n; n = xapi_store_next(n))
        if (n != self && strcmp(n->fields[XAPI_F_network_bridge].s, bridge) == 0)
            return true;
    return false;
}

/* stem<N> with the lowest N no network uses (prefer `want` when >= 0 and free). */
static void choose_bridge(xapi_store *st, const char *stem, long want, const xapi_obj *self, char *out, size_t size) {
    if (want >= 0) {
        snprintf(out, size, "%s%ld", stem, want);
        if (!bridge_used(st, out, self))
            return;
    }
    for (long n = 0;; n++) {
        snprintf(out, size, "%s%ld", stem, n);
        if (!bridge_used(st, out, self))
            return;
    }
}

/* ---- network.create / set / destroy hooks ------------------------------------------- */

static bool bridge_name_ok(const char *b) {
    static const char *const reserved[] = {"xen", "xapi", "vif", "tap", "eth"};
    size_t n = strlen(b);

    if (n == 0 || n > 15)
        return false;
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strncmp(b, reserved[i], strlen(reserved[i])) == 0)
            return false;
    for (const char *p = b; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return false;
    return true;
}

static int network_after_create(xapi_call *c, xapi_obj *o) {
    xapi_store *st = c->srv->store;
    const char *bridge = o->fields[XAPI_F_network_bridge].s;
    int64_t mtu = o->fields[XAPI_F_network_MTU].i;
    int rc;

    if (mtu <= 0)
        xapi_obj_set_int(st, o, XAPI_F_network_MTU, mtu = 1500);
    rc = net_check_mtu(&c->err, mtu);
    if (rc < 0)
        return rc;
    if (!*bridge) {
        char name[32];
        choose_bridge(st, "xapi", -1, o, name, sizeof name);
        xapi_obj_set_string(st, o, XAPI_F_network_bridge, name);
        return 0;
    }
    if (!bridge_name_ok(bridge))
        return xapi_call_fail(c, "INVALID_VALUE", "bridge", bridge);
    if (bridge_used(st, bridge, o))
        return xapi_call_fail(c, "BRIDGE_NAME_EXISTS", bridge);
    return 0;
}

static int network_before_set(xapi_call *c, xapi_obj *o, int field, const xapi_value *v) {
    if (field == XAPI_F_network_MTU)
        return net_check_mtu(&c->err, v->i);
    return 0;
}

static int refs_fail(xapi_call *c, const char *code, const xapi_value *refs) {
    const char **p = xapi_calloc(refs->n + 1, sizeof *p);
    int rc;

    for (uint32_t i = 0; i < refs->n; i++)
        p[i] = refs->items[i].s;
    rc = xapi_failv(&c->err, code, p, refs->n);
    free(p);
    return rc;
}

static int network_before_destroy(xapi_call *c, xapi_obj *o) {
    xapi_store *st = c->srv->store;
    const xapi_value *vifs = &o->fields[XAPI_F_network_VIFs], *pifs = &o->fields[XAPI_F_network_PIFs];
    xapi_value attached = xapi_value_array(), all;
    const char *internal = net_map_get(&o->fields[XAPI_F_network_other_config], "is_host_internal_management_network");
    int rc = 0;

    for (uint32_t i = 0; i < vifs->n; i++) {
        xapi_obj *v = xapi_store_get_class(st, net_cls(XAPI_C_VIF), vifs->items[i].s);
        if (v && v->fields[XAPI_F_VIF_currently_attached].b)
            xapi_array_append(&attached, xapi_value_string(v->ref));
    }
    if (attached.n > 0)
        rc = refs_fail(c, "NETWORK_CONTAINS_VIF", &attached);
    else if (pifs->n > 0)
        rc = refs_fail(c, "NETWORK_CONTAINS_PIF", pifs);
    else if (internal && strcmp(internal, "true") == 0)
        rc = xapi_call_fail(c, "CANNOT_DESTROY_SYSTEM_NETWORK", o->ref);
    xapi_value_free(&attached);
    if (rc < 0)
        return rc;
    /* As xapi: the network's (detached) VIFs go with it. */
    all = xapi_value_copy(vifs);
    for (uint32_t i = 0; i < all.n; i++) {
        xapi_obj *v = xapi_store_get_class(st, net_cls(XAPI_C_VIF), all.items[i].s);
        if (v)
            xapi_obj_destroy(st, v);
    }
    xapi_value_free(&all);
    /* Its bridge goes with it when xenapid made it and no device is left on it. */
    net_bridge_release(c->srv, o->fields[XAPI_F_network_bridge].s);
    return 0;
}

static const xapi_class_hooks network_hooks = {
    .after_create = network_after_create,
    .before_destroy = network_before_destroy,
    .before_set = network_before_set,
};

/* ---- for the VM layer ------------------------------------------------------------ */

char *network_bridge_of(xapi_server *srv, const char *network_ref) {
    xapi_obj *n = xapi_store_get_class(srv->store, net_cls(XAPI_C_network), network_ref);

    return n ? xapi_strdup(n->fields[XAPI_F_network_bridge].s) : NULL;
}

int network_vlan_of(xapi_server *srv, const char *network_ref, char **ret_device, int64_t *ret_tag,
                    char **ret_parent_bridge) {
    xapi_store *st = srv->store;
    xapi_obj *n = xapi_store_get_class(st, net_cls(XAPI_C_network), network_ref);
    const xapi_value *pifs;

    if (!n)
        return 0;
    pifs = &n->fields[XAPI_F_network_PIFs];
    for (uint32_t i = 0; i < pifs->n; i++) {
        xapi_obj *p = xapi_store_get_class(st, net_cls(XAPI_C_PIF), pifs->items[i].s);
        xapi_obj *vlan, *tagged, *pn;

        if (!p || strcmp(p->fields[XAPI_F_PIF_host].s, srv->host_ref) != 0 || p->fields[XAPI_F_PIF_VLAN].i < 0)
            continue;
        vlan = xapi_store_get_class(st, net_cls(XAPI_C_VLAN), p->fields[XAPI_F_PIF_VLAN_master_of].s);
        tagged = vlan ? xapi_store_get_class(st, net_cls(XAPI_C_PIF), vlan->fields[XAPI_F_VLAN_tagged_PIF].s) : NULL;
        pn = tagged ? xapi_store_get_class(st, net_cls(XAPI_C_network), tagged->fields[XAPI_F_PIF_network].s) : NULL;
        *ret_device = xapi_strdup(p->fields[XAPI_F_PIF_device].s);
        *ret_tag = p->fields[XAPI_F_PIF_VLAN].i;
        *ret_parent_bridge = xapi_strdup(pn ? pn->fields[XAPI_F_network_bridge].s : "");
        return 1;
    }
    return 0;
}

/* ---- PIFs of this host ------------------------------------------------------------- */

static xapi_obj *find_pif(xapi_store *st, const char *host, const char *device) {
    for (xapi_obj *p = xapi_store_first(st, net_cls(XAPI_C_PIF)); p; p = xapi_store_next(p))
        if (p->fields[XAPI_F_PIF_physical].b && p->fields[XAPI_F_PIF_VLAN].i < 0 &&
            strcmp(p->fields[XAPI_F_PIF_host].s, host) == 0 && strcmp(p->fields[XAPI_F_PIF_device].s, device) == 0)
            return p;
    return NULL;
}

/* ethN gets xenbrN, as XCP-ng names them. */
static long eth_number(const char *dev) {
    char *end = NULL;
    long n;

    if (strncmp(dev, "eth", 3) != 0 || !dev[3])
        return -1;
    n = strtol(dev + 3, &end, 10);
    return *end || n < 0 || n > 9999 ? -1 : n;
}

static xapi_obj *pif_network(xapi_server *srv, xapi_obj *pif, const net_iface *it) {
    xapi_store *st = srv->store;
    xapi_obj *n = xapi_store_get_class(st, net_cls(XAPI_C_network), pif->fields[XAPI_F_PIF_network].s);
    char bridge[32], label[64];

    if (n)
        return n;
    if (*it->master && !bridge_used(st, it->master, NULL))
        snprintf(bridge, sizeof bridge, "%s", it->master);
    else
        choose_bridge(st, "xenbr", eth_number(it->name), NULL, bridge, sizeof bridge);
    snprintf(label, sizeof label, "Pool-wide network associated with %s", it->name);
    n = xapi_obj_create(st, net_cls(XAPI_C_network));
    xapi_obj_set_string(st, n, XAPI_F_network_name_label, label);
    xapi_obj_set_string(st, n, XAPI_F_network_name_description, "");
    xapi_obj_set_string(st, n, XAPI_F_network_bridge, bridge);
    xapi_obj_set_int(st, n, XAPI_F_network_MTU, it->mtu >= NETWORK_MTU_MIN && it->mtu <= NETWORK_MTU_MAX ? it->mtu : 1500);
    xapi_obj_set(st, n, XAPI_F_network_other_config, xapi_value_struct());
    xapi_obj_set_bool(st, n, XAPI_F_network_managed, true);
    xapi_obj_set_string(st, pif, XAPI_F_PIF_network, n->ref);
    log_info("network: %s on bridge %s for %s", n->uuid, bridge, it->name);
    return n;
}

static void fill_pif(xapi_server *srv, xapi_obj *p, const net_iface *it, bool management, const char *dns) {
    xapi_store *st = srv->store;
    xapi_value v6 = xapi_value_array();

    xapi_obj_set_string(st, p, XAPI_F_PIF_MAC, it->mac);
    xapi_obj_set_int(st, p, XAPI_F_PIF_MTU, it->mtu);
    xapi_obj_set_bool(st, p, XAPI_F_PIF_currently_attached, it->up || management);
    xapi_obj_set_bool(st, p, XAPI_F_PIF_management, management);
    xapi_obj_set_string(st, p, XAPI_F_PIF_ip_configuration_mode, *it->ip ? (it->dhcp ? "DHCP" : "Static") : "None");
    xapi_obj_set_string(st, p, XAPI_F_PIF_IP, it->ip);
    xapi_obj_set_string(st, p, XAPI_F_PIF_netmask, it->netmask);
    xapi_obj_set_string(st, p, XAPI_F_PIF_gateway, it->gateway);
    xapi_obj_set_string(st, p, XAPI_F_PIF_DNS, management || (*it->ip && !it->dhcp) ? dns : "");
    for (int i = 0; i < it->nipv6; i++)
        xapi_array_append(&v6, xapi_value_string(it->ipv6[i]));
    xapi_obj_set(st, p, XAPI_F_PIF_IPv6, v6);
    xapi_obj_set_string(st, p, XAPI_F_PIF_ipv6_configuration_mode,
                        it->nipv6 ? (it->ipv6_autoconf ? "Autoconf" : "Static") : "None");
    xapi_obj_set_string(st, p, XAPI_F_PIF_primary_address_type, "IPv4");
}

static void ensure_internal_network(xapi_server *srv) {
    xapi_store *st = srv->store;
    xapi_value oc;
    xapi_obj *n;

    for (n = xapi_store_first(st, net_cls(XAPI_C_network)); n; n = xapi_store_next(n)) {
        const char *v = net_map_get(&n->fields[XAPI_F_network_other_config], "is_host_internal_management_network");
        if (v && strcmp(v, "true") == 0)
            return;
    }
    oc = xapi_value_struct();
    xapi_struct_set(&oc, "is_guest_installer_network", xapi_value_string("true"));
    xapi_struct_set(&oc, "is_host_internal_management_network", xapi_value_string("true"));
    xapi_struct_set(&oc, "ip_begin", xapi_value_string("169.254.0.1"));
    xapi_struct_set(&oc, "ip_end", xapi_value_string("169.254.255.254"));
    xapi_struct_set(&oc, "netmask", xapi_value_string("255.255.0.0"));
    n = xapi_obj_create(st, net_cls(XAPI_C_network));
    xapi_obj_set_string(st, n, XAPI_F_network_name_label, "Host internal management network");
    xapi_obj_set_string(st, n, XAPI_F_network_name_description,
                        "Network on which guests will be assigned a private link-local IP address which can be used "
                        "to talk XenAPI");
    xapi_obj_set_string(st, n, XAPI_F_network_bridge, "xenapi");
    xapi_obj_set_int(st, n, XAPI_F_network_MTU, 1500);
    xapi_obj_set(st, n, XAPI_F_network_other_config, oc);
    xapi_obj_set_bool(st, n, XAPI_F_network_managed, true);
}

/* Makes the PIF records of this host match the interfaces (write lock held). */
static void sync_pifs(xapi_server *srv, const net_iface *ifs, size_t n) {
    xapi_store *st = srv->store;
    xapi_obj *host = xapi_store_get_class(st, net_cls(XAPI_C_host), srv->host_ref);
    const char *address = host ? host->fields[XAPI_F_host_address].s : "";
    char route_if[IF_NAMESIZE], dns[256];
    const net_iface *mgmt = NULL;

    net_default_route_iface(route_if);
    net_dns_servers(dns, sizeof dns);
    for (size_t i = 0; i < n && !mgmt; i++)
        if (*ifs[i].ip && strcmp(ifs[i].ip, address) == 0)
            mgmt = &ifs[i];
    for (size_t i = 0; i < n && !mgmt; i++)
        if (*route_if && (strcmp(ifs[i].name, route_if) == 0 || strcmp(ifs[i].master, route_if) == 0))
            mgmt = &ifs[i];

    for (size_t i = 0; i < n; i++) {
        xapi_obj *p = find_pif(st, srv->host_ref, ifs[i].name);

        if (!p) {
            p = xapi_obj_create(st, net_cls(XAPI_C_PIF));
            xapi_obj_set_string(st, p, XAPI_F_PIF_device, ifs[i].name);
            xapi_obj_set_string(st, p, XAPI_F_PIF_host, srv->host_ref);
            xapi_obj_set_int(st, p, XAPI_F_PIF_VLAN, -1);
            xapi_obj_set_bool(st, p, XAPI_F_PIF_physical, true);
            xapi_obj_set_bool(st, p, XAPI_F_PIF_managed, true);
            xapi_obj_set(st, p, XAPI_F_PIF_other_config, xapi_value_struct());
            log_info("network: PIF %s for %s (%s)", p->uuid, ifs[i].name, ifs[i].mac);
        }
        pif_network(srv, p, &ifs[i]);
        fill_pif(srv, p, &ifs[i], &ifs[i] == mgmt, dns);
    }
    /* Interfaces that went away keep their PIF (xapi needs PIF.forget), detached. */
    for (xapi_obj *p = xapi_store_first(st, net_cls(XAPI_C_PIF)); p; p = xapi_store_next(p)) {
        bool present = false;

        if (!p->fields[XAPI_F_PIF_physical].b || strcmp(p->fields[XAPI_F_PIF_host].s, srv->host_ref) != 0)
            continue;
        for (size_t i = 0; i < n && !present; i++)
            present = strcmp(ifs[i].name, p->fields[XAPI_F_PIF_device].s) == 0;
        if (!present) {
            xapi_obj_set_bool(st, p, XAPI_F_PIF_currently_attached, false);
            xapi_obj_set_bool(st, p, XAPI_F_PIF_management, false);
        }
    }
    ensure_internal_network(srv);
}

int network_bootstrap(xapi_server *srv) {
    net_iface *ifs = NULL;
    size_t n = 0;
    int rc;

    rc = net_ifaces_read(&ifs, &n);
    if (rc < 0)
        log_warning("network: cannot list the network interfaces: %s", strerror(-rc));
    xapi_store_write_begin(srv->store);
    sync_pifs(srv, ifs, n);
    rc = xapi_store_write_end_durable(srv->store);
    free(ifs);
    return rc;
}

static int pif_scan(xapi_call *c) {
    net_iface *ifs = NULL;
    size_t n = 0;
    xapi_obj *host;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, net_cls(XAPI_C_host), c->args[0].s, &host);
    xapi_store_rdunlock(c->srv->store);
    if (rc < 0)
        return rc;
    if (net_ifaces_read(&ifs, &n) < 0)
        n = 0;
    xapi_store_write_begin(c->srv->store);
    sync_pifs(c->srv, ifs, n);
    free(ifs);
    return xapi_finish_void(c, 0);
}

static const xapi_handler network_handlers[] = {
    {"PIF", "scan", pif_scan},
    {NULL, NULL, NULL},
};

void network_register(void) {
    xapi_register_handlers(network_handlers);
    xapi_register_handlers(network_vlan_handlers);
    xapi_register_handlers(network_bond_handlers); /* after xapi_unsupported_register: replaces its Bond.create/destroy */
    xapi_register_handlers(network_vif_handlers);
    xapi_register_handlers(network_pif_config_handlers);
    xapi_register_handlers(network_vif_policy_handlers);
    xapi_register_hooks(XAPI_C_network, &network_hooks);
    xapi_register_hooks(XAPI_C_VIF, &network_vif_hooks);
    xapi_register_hooks(XAPI_C_VIF, &network_vif_policy_hooks);
}
