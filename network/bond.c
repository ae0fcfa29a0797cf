/* Bonds: Bond.create/destroy. A bond is a record, a master PIF (device bondN,
 * not physical) on the given network, and its members' bond_slave_of; with
 * host_networking the Linux bond is made at once (mode: host.c), its members
 * enslaved, itself a port of the network's bridge, and removed with it.
 * Bond.set_mode/set_property stay NOT_IMPLEMENTED (xapi/unsupported.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "network/internal.h"
#include "xapi/error.h"

#define BOND_MAX_MEMBERS 8

static bool device_used(xapi_store *st, const char *host, const char *dev) {
    for (xapi_obj *p = xapi_store_first(st, net_cls(XAPI_C_PIF)); p; p = xapi_store_next(p))
        if (strcmp(p->fields[XAPI_F_PIF_host].s, host) == 0 && strcmp(p->fields[XAPI_F_PIF_device].s, dev) == 0)
            return true;
    return false;
}

/* bondN with the lowest N no PIF of the host uses, as xapi chooses. */
static void choose_bond_device(xapi_store *st, const char *host, char out[IF_NAMESIZE]) {
    for (int n = 0;; n++) {
        snprintf(out, IF_NAMESIZE, "bond%d", n);
        if (!device_used(st, host, out))
            return;
    }
}

/* The members as PIF records, checked as xapi checks them. */
static int check_members(xapi_call *c, xapi_obj *net, const xapi_value *refs, xapi_obj **m) {
    xapi_store *st = c->srv->store;
    const xapi_value *net_pifs = &net->fields[XAPI_F_network_PIFs];
    int with_ip = 0, rc;

    for (uint32_t i = 0; i < refs->n; i++) {
        rc = xapi_lookup(c, net_cls(XAPI_C_PIF), refs->items[i].s, &m[i]);
        if (rc < 0)
            return rc;
    }
    if (refs->n < 2)
        return xapi_call_fail(c, "PIF_BOND_NEEDS_MORE_MEMBERS");
    if (refs->n > BOND_MAX_MEMBERS)
        return xapi_call_fail(c, "INVALID_VALUE", "members", "a bond has at most 8 members");
    for (uint32_t i = 0; i < refs->n; i++) {
        for (uint32_t k = 0; k < i; k++)
            if (m[k] == m[i])
                return xapi_call_fail(c, "INVALID_VALUE", "members", m[i]->ref);
        if (strcmp(m[i]->fields[XAPI_F_PIF_host].s, m[0]->fields[XAPI_F_PIF_host].s) != 0)
            return xapi_call_fail(c, "PIF_CANNOT_BOND_CROSS_HOST");
        if (!net_null_ref(m[i]->fields[XAPI_F_PIF_bond_slave_of].s) || m[i]->fields[XAPI_F_PIF_bond_master_of].n > 0)
            return xapi_call_fail(c, "PIF_ALREADY_BONDED", m[i]->ref);
        if (m[i]->fields[XAPI_F_PIF_VLAN].i >= 0 || !m[i]->fields[XAPI_F_PIF_physical].b)
            return xapi_call_fail(c, "PIF_IS_VLAN", m[i]->ref);
        if (m[i]->fields[XAPI_F_PIF_VLAN_slave_of].n > 0)
            return xapi_call_fail(c, "PIF_VLAN_STILL_EXISTS", m[i]->ref);
        if (!m[i]->fields[XAPI_F_PIF_managed].b)
            return xapi_call_fail(c, "PIF_UNMANAGED", m[i]->ref);
        /* xapi moves the management address onto the bond; this host does not (yet) */
        if (m[i]->fields[XAPI_F_PIF_management].b)
            return xapi_call_fail(c, "PIF_IS_MANAGEMENT_INTERFACE", m[i]->ref);
        if (*m[i]->fields[XAPI_F_PIF_IP].s)
            with_ip++;
    }
    if (with_ip > 1)
        return xapi_call_fail(c, "PIF_BOND_MORE_THAN_ONE_IP");
    if (!net->fields[XAPI_F_network_managed].b)
        return xapi_call_fail(c, "NETWORK_UNMANAGED", net->ref);
    for (uint32_t i = 0; i < net_pifs->n; i++) {
        xapi_obj *p = xapi_store_get_class(st, net_cls(XAPI_C_PIF), net_pifs->items[i].s);
        if (p && strcmp(p->fields[XAPI_F_PIF_host].s, m[0]->fields[XAPI_F_PIF_host].s) == 0)
            return xapi_call_fail(c, "NETWORK_ALREADY_CONNECTED", p->fields[XAPI_F_PIF_host].s, p->ref);
    }
    return 0;
}

/* Bond.create(network, members, MAC, mode, properties) */
static int bond_create(xapi_call *c) {
    xapi_store *st = c->srv->store;
    const xapi_value *refs = &c->args[1];
    const char *mac = c->args[2].s, *mode = c->args[3].s;
    xapi_obj *net, *m[BOND_MAX_MEMBERS + 1] = {0}, *bond, *master;
    char dev[IF_NAMESIZE], ref[XAPI_REF_LEN + 1] = "";
    int linux_mode, rc;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, net_cls(XAPI_C_network), c->args[0].s, &net);
    if (rc == 0 && refs->n > BOND_MAX_MEMBERS + 1)
        rc = xapi_call_fail(c, "INVALID_VALUE", "members", "a bond has at most 8 members");
    if (rc == 0)
        rc = check_members(c, net, refs, m);
    if (rc == 0 && *mac && !net_mac_valid(mac))
        rc = xapi_call_fail(c, "MAC_INVALID", mac);
    if (rc == 0 && net_bond_mode_linux(mode, &linux_mode) < 0)
        rc = xapi_call_fail(c, "INVALID_VALUE", "mode", mode);
    if (rc < 0)
        return xapi_finish(c, rc);

    choose_bond_device(st, m[0]->fields[XAPI_F_PIF_host].s, dev);
    bond = xapi_obj_create(st, net_cls(XAPI_C_Bond));
    master = xapi_obj_create(st, net_cls(XAPI_C_PIF));
    xapi_obj_set_string(st, master, XAPI_F_PIF_device, dev);
    xapi_obj_set_string(st, master, XAPI_F_PIF_network, net->ref);
    xapi_obj_set_string(st, master, XAPI_F_PIF_host, m[0]->fields[XAPI_F_PIF_host].s);
    xapi_obj_set_string(st, master, XAPI_F_PIF_MAC, *mac ? mac : m[0]->fields[XAPI_F_PIF_MAC].s);
    xapi_obj_set_int(st, master, XAPI_F_PIF_MTU, m[0]->fields[XAPI_F_PIF_MTU].i);
    xapi_obj_set_int(st, master, XAPI_F_PIF_VLAN, -1);
    xapi_obj_set_bool(st, master, XAPI_F_PIF_physical, false);
    xapi_obj_set_bool(st, master, XAPI_F_PIF_currently_attached, true);
    xapi_obj_set_string(st, master, XAPI_F_PIF_ip_configuration_mode, "None");
    xapi_obj_set_bool(st, master, XAPI_F_PIF_managed, true);
    xapi_obj_set_string(st, master, XAPI_F_PIF_primary_address_type, "IPv4");
    xapi_obj_set(st, master, XAPI_F_PIF_other_config, xapi_value_struct());
    xapi_obj_set_string(st, bond, XAPI_F_Bond_master, master->ref);
    xapi_obj_set_string(st, bond, XAPI_F_Bond_mode, mode);
    xapi_obj_set(st, bond, XAPI_F_Bond_properties, xapi_value_copy(&c->args[4]));
    xapi_obj_set(st, bond, XAPI_F_Bond_other_config, xapi_value_struct());
    xapi_obj_set_string(st, bond, XAPI_F_Bond_primary_slave, m[0]->ref);
    xapi_obj_set_bool(st, bond, XAPI_F_Bond_auto_update_mac, !*mac);
    xapi_obj_set_int(st, bond, XAPI_F_Bond_links_up, 0);
    for (uint32_t i = 0; i < refs->n; i++)
        xapi_obj_set_string(st, m[i], XAPI_F_PIF_bond_slave_of, bond->ref);
    memcpy(ref, bond->ref, sizeof ref);
    rc = net_network_apply_locked(c->srv, net, &c->err);
    if (rc == 0)
        log_info("network: bond %s (%s) on %s", dev, mode, net->fields[XAPI_F_network_bridge].s);
    return xapi_finish_ref(c, rc, ref);
}

static int bond_destroy(xapi_call *c) {
    xapi_store *st = c->srv->store;
    xapi_obj *bond, *master;
    xapi_value slaves;
    char dev[IF_NAMESIZE] = "";
    int rc;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, net_cls(XAPI_C_Bond), c->args[0].s, &bond);
    if (rc < 0)
        return xapi_finish(c, rc);
    master = xapi_store_get_class(st, net_cls(XAPI_C_PIF), bond->fields[XAPI_F_Bond_master].s);
    if (master && master->fields[XAPI_F_PIF_management].b)
        return xapi_finish(c, xapi_call_fail(c, "PIF_IS_MANAGEMENT_INTERFACE", master->ref));
    if (master && master->fields[XAPI_F_PIF_VLAN_slave_of].n > 0)
        return xapi_finish(c, xapi_call_fail(c, "PIF_VLAN_STILL_EXISTS", master->ref));
    slaves = xapi_value_copy(&bond->fields[XAPI_F_Bond_slaves]);
    for (uint32_t i = 0; i < slaves.n; i++) {
        xapi_obj *p = xapi_store_get_class(st, net_cls(XAPI_C_PIF), slaves.items[i].s);
        if (p)
            xapi_obj_set_string(st, p, XAPI_F_PIF_bond_slave_of, XAPI_NULL_REF);
    }
    xapi_value_free(&slaves);
    if (master) {
        snprintf(dev, sizeof dev, "%s", master->fields[XAPI_F_PIF_device].s);
        xapi_obj_destroy(st, master);
    }
    xapi_obj_destroy(st, bond);
    if (*dev)
        net_device_release(c->srv, dev); /* the members leave with it */
    return xapi_finish_void(c, 0);
}

const xapi_handler network_bond_handlers[] = {
    {"Bond", "create", bond_create},
    {"Bond", "destroy", bond_destroy},
    {NULL, NULL, NULL},
};
