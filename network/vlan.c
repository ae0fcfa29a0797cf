/* VLANs: VLAN.create/destroy and the older PIF.create_VLAN / pool.create_VLAN
 * forms. A VLAN is a record and an untagged PIF (same device as the tagged
 * one, VLAN = tag) on the given network; with host_networking, the 802.1q
 * device <tagged device>.<tag> is made at once, a port of the network's
 * bridge (host.c), and removed with the VLAN. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "network/internal.h"
#include "xapi/error.h"

static int vlan_create_locked(xapi_server *srv, xapi_obj *tagged, int64_t tag, xapi_obj *net, char ret_vlan[],
                              char ret_pif[], xapi_value *err) {
    xapi_store *st = srv->store;
    const char *host = tagged->fields[XAPI_F_PIF_host].s;
    const xapi_value *net_pifs = &net->fields[XAPI_F_network_PIFs];
    const xapi_value *slaves = &tagged->fields[XAPI_F_PIF_VLAN_slave_of];
    xapi_obj *vlan, *pif;
    char text[32];
    int rc;

    if (!net->fields[XAPI_F_network_managed].b)
        return xapi_fail(err, "NETWORK_UNMANAGED", net->ref, NULL);
    for (uint32_t i = 0; i < net_pifs->n; i++) {
        xapi_obj *p = xapi_store_get_class(st, net_cls(XAPI_C_PIF), net_pifs->items[i].s);
        if (p && strcmp(p->fields[XAPI_F_PIF_host].s, host) == 0)
            return xapi_fail(err, "NETWORK_ALREADY_CONNECTED", host, p->ref, NULL);
    }
    if (!tagged->fields[XAPI_F_PIF_managed].b)
        return xapi_fail(err, "PIF_UNMANAGED", tagged->ref, NULL);
    if (!net_null_ref(tagged->fields[XAPI_F_PIF_bond_slave_of].s))
        return xapi_fail(err, "CANNOT_ADD_VLAN_TO_BOND_SLAVE", tagged->ref, NULL);
    if (tagged->fields[XAPI_F_PIF_VLAN].i >= 0 || !net_null_ref(tagged->fields[XAPI_F_PIF_VLAN_master_of].s))
        return xapi_fail(err, "PIF_IS_VLAN", tagged->ref, NULL);
    snprintf(text, sizeof text, "%" PRId64, tag);
    if (tag < 0 || tag > 4094)
        return xapi_fail(err, "VLAN_TAG_INVALID", text, NULL);
    for (uint32_t i = 0; i < slaves->n; i++) {
        xapi_obj *v = xapi_store_get_class(st, net_cls(XAPI_C_VLAN), slaves->items[i].s);
        if (v && v->fields[XAPI_F_VLAN_tag].i == tag)
            return xapi_fail(err, "PIF_VLAN_EXISTS", tagged->fields[XAPI_F_PIF_device].s, NULL);
    }

    vlan = xapi_obj_create(st, net_cls(XAPI_C_VLAN));
    pif = xapi_obj_create(st, net_cls(XAPI_C_PIF));
    xapi_obj_set_string(st, pif, XAPI_F_PIF_device, tagged->fields[XAPI_F_PIF_device].s);
    xapi_obj_set_string(st, pif, XAPI_F_PIF_network, net->ref);
    xapi_obj_set_string(st, pif, XAPI_F_PIF_host, host);
    xapi_obj_set_string(st, pif, XAPI_F_PIF_MAC, NETWORK_VLAN_MAC);
    xapi_obj_set_int(st, pif, XAPI_F_PIF_MTU, tagged->fields[XAPI_F_PIF_MTU].i);
    xapi_obj_set_int(st, pif, XAPI_F_PIF_VLAN, tag);
    xapi_obj_set_string(st, pif, XAPI_F_PIF_metrics, tagged->fields[XAPI_F_PIF_metrics].s);
    xapi_obj_set_bool(st, pif, XAPI_F_PIF_physical, false);
    /* Plugged: its device is made below (host_networking), or left to the host's admin. */
    xapi_obj_set_bool(st, pif, XAPI_F_PIF_currently_attached, true);
    xapi_obj_set_string(st, pif, XAPI_F_PIF_ip_configuration_mode, "None");
    xapi_obj_set_string(st, pif, XAPI_F_PIF_VLAN_master_of, vlan->ref);
    xapi_obj_set_bool(st, pif, XAPI_F_PIF_managed, true);
    xapi_obj_set_string(st, pif, XAPI_F_PIF_primary_address_type,
                        tagged->fields[XAPI_F_PIF_primary_address_type].s);
    xapi_obj_set(st, pif, XAPI_F_PIF_other_config, xapi_value_struct());
    xapi_obj_set_string(st, vlan, XAPI_F_VLAN_tagged_PIF, tagged->ref);
    xapi_obj_set_string(st, vlan, XAPI_F_VLAN_untagged_PIF, pif->ref);
    xapi_obj_set_int(st, vlan, XAPI_F_VLAN_tag, tag);
    xapi_obj_set(st, vlan, XAPI_F_VLAN_other_config, xapi_value_struct());
    /* As xapi plugs the new PIF: the 802.1q device, a port of the network's bridge. */
    rc = net_network_apply_locked(srv, net, err);
    if (rc < 0)
        return rc;
    if (ret_vlan)
        memcpy(ret_vlan, vlan->ref, XAPI_REF_LEN + 1);
    if (ret_pif)
        memcpy(ret_pif, pif->ref, XAPI_REF_LEN + 1);
    log_info("network: VLAN %" PRId64 " on %s, network %s", tag, tagged->fields[XAPI_F_PIF_device].s,
             net->fields[XAPI_F_network_bridge].s);
    return 0;
}

/* The 802.1q device goes when xenapid made it. */
static void release_vlan_device(xapi_server *srv, xapi_obj *vlan) {
    xapi_obj *tagged = xapi_store_get_class(srv->store, net_cls(XAPI_C_PIF), vlan->fields[XAPI_F_VLAN_tagged_PIF].s);
    char dev[IF_NAMESIZE];

    if (tagged && net_vlan_device_name(tagged->fields[XAPI_F_PIF_device].s, vlan->fields[XAPI_F_VLAN_tag].i, dev) == 0)
        net_device_release(srv, dev);
}

static int vlan_destroy_locked(xapi_server *srv, xapi_obj *vlan, xapi_value *err) {
    xapi_store *st = srv->store;
    xapi_obj *pif = xapi_store_get_class(st, net_cls(XAPI_C_PIF), vlan->fields[XAPI_F_VLAN_untagged_PIF].s);

    if (pif) {
        if (pif->fields[XAPI_F_PIF_VLAN].i < 0)
            return xapi_fail(err, "PIF_IS_PHYSICAL", NULL);
        if (pif->fields[XAPI_F_PIF_management].b)
            return xapi_fail(err, "PIF_IS_MANAGEMENT_INTERFACE", pif->ref, NULL);
        release_vlan_device(srv, vlan);
        xapi_obj_destroy(st, pif);
    }
    xapi_obj_destroy(st, vlan);
    return 0;
}

/* VLAN.create(tagged_PIF, tag, network) */
static int vlan_create(xapi_call *c) {
    xapi_obj *tagged, *net;
    char vlan[XAPI_REF_LEN + 1] = "";
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, net_cls(XAPI_C_PIF), c->args[0].s, &tagged);
    if (rc == 0)
        rc = xapi_lookup(c, net_cls(XAPI_C_network), c->args[2].s, &net);
    if (rc == 0)
        rc = vlan_create_locked(c->srv, tagged, c->args[1].i, net, vlan, NULL, &c->err);
    return xapi_finish_ref(c, rc, vlan);
}

static int vlan_destroy(xapi_call *c) {
    xapi_obj *vlan;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, net_cls(XAPI_C_VLAN), c->args[0].s, &vlan);
    if (rc == 0)
        rc = vlan_destroy_locked(c->srv, vlan, &c->err);
    return xapi_finish_void(c, rc);
}

/* The host's PIF for device without a VLAN tag: INVALID_VALUE ["device", device] if none. */
static int base_pif(xapi_call *c, const char *host, const char *device, xapi_obj **ret) {
    for (xapi_obj *p = xapi_store_first(c->srv->store, net_cls(XAPI_C_PIF)); p; p = xapi_store_next(p))
        if (strcmp(p->fields[XAPI_F_PIF_host].s, host) == 0 && strcmp(p->fields[XAPI_F_PIF_device].s, device) == 0 &&
            p->fields[XAPI_F_PIF_VLAN].i == -1) {
            *ret = p;
            return 0;
        }
    return xapi_call_fail(c, "INVALID_VALUE", "device", device);
}

/* PIF.create_VLAN(device, network, host, VLAN) -> the untagged PIF */
static int pif_create_vlan(xapi_call *c) {
    xapi_obj *net, *host, *tagged;
    char pif[XAPI_REF_LEN + 1] = "";
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, net_cls(XAPI_C_network), c->args[1].s, &net);
    if (rc == 0)
        rc = xapi_lookup(c, net_cls(XAPI_C_host), c->args[2].s, &host);
    if (rc == 0)
        rc = base_pif(c, host->ref, c->args[0].s, &tagged);
    if (rc == 0)
        rc = vlan_create_locked(c->srv, tagged, c->args[3].i, net, NULL, pif, &c->err);
    return xapi_finish_ref(c, rc, pif);
}

/* PIF.destroy(self): VLAN PIFs only. */
static int pif_destroy(xapi_call *c) {
    xapi_obj *pif, *vlan;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, net_cls(XAPI_C_PIF), c->args[0].s, &pif);
    if (rc == 0 && pif->fields[XAPI_F_PIF_VLAN].i < 0)
        rc = xapi_call_fail(c, "PIF_IS_PHYSICAL", NULL);
    if (rc == 0) {
        vlan = xapi_store_get_class(c->srv->store, net_cls(XAPI_C_VLAN), pif->fields[XAPI_F_PIF_VLAN_master_of].s);
        if (vlan)
            rc = vlan_destroy_locked(c->srv, vlan, &c->err);
        else if (pif->fields[XAPI_F_PIF_management].b)
            rc = xapi_call_fail(c, "PIF_IS_MANAGEMENT_INTERFACE", pif->ref);
        else
            xapi_obj_destroy(c->srv->store, pif);
    }
    return xapi_finish_void(c, rc);
}

/* pool.create_VLAN(device, network, VLAN) / pool.create_VLAN_from_PIF(pif, network, VLAN):
 * one VLAN per host (this pool has one), the untagged PIFs returned. */
static int pool_vlan_common(xapi_call *c, const char *device, xapi_obj *net, int64_t tag) {
    xapi_store *st = c->srv->store;
    xapi_value created = xapi_value_array();
    int rc = 0;

    for (xapi_obj *h = xapi_store_first(st, net_cls(XAPI_C_host)); h && rc == 0; h = xapi_store_next(h)) {
        xapi_obj *tagged;
        char pif[XAPI_REF_LEN + 1];

        rc = base_pif(c, h->ref, device, &tagged);
        if (rc == 0)
            rc = vlan_create_locked(c->srv, tagged, tag, net, NULL, pif, &c->err);
        if (rc == 0)
            xapi_array_append(&created, xapi_value_string(pif));
    }
    /* On failure nothing was changed: the first failure stops before any write. */
    rc = xapi_finish(c, rc);
    if (rc == 0)
        xapi_out_value(c->out, &created);
    xapi_value_free(&created);
    return rc;
}

static int pool_create_vlan(xapi_call *c) {
    xapi_obj *net;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, net_cls(XAPI_C_network), c->args[1].s, &net);
    if (rc < 0) {
        xapi_store_write_abort(c->srv->store);
        return rc;
    }
    return pool_vlan_common(c, c->args[0].s, net, c->args[2].i);
}

static int pool_create_vlan_from_pif(xapi_call *c) {
    xapi_obj *net, *pif;
    char device[64];
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, net_cls(XAPI_C_PIF), c->args[0].s, &pif);
    if (rc == 0)
        rc = xapi_lookup(c, net_cls(XAPI_C_network), c->args[1].s, &net);
    if (rc < 0) {
        xapi_store_write_abort(c->srv->store);
        return rc;
    }
    snprintf(device, sizeof device, "%s", pif->fields[XAPI_F_PIF_device].s);
    return pool_vlan_common(c, device, net, c->args[2].i);
}

const xapi_handler network_vlan_handlers[] = {
    {"VLAN", "create", vlan_create},
    {"VLAN", "destroy", vlan_destroy},
    {"PIF", "create_VLAN", pif_create_vlan},
    {"PIF", "destroy", pif_destroy},
    {"pool", "create_VLAN", pool_create_vlan},
    {"pool", "create_VLAN_from_PIF", pool_create_vlan_from_pif},
    {NULL, NULL, NULL},
};
