/* What a plugged VIF's backend device enforces: the VIF's MTU, its rate
 * limit (qos_algorithm_type ratelimit, kbps; a TBF qdisc on the device, so
 * host-to-guest traffic: the guest's receive side) and its locking mode
 * (nftables, nft.c). Applied when the VIF becomes attached (VM start,
 * VIF.plug) and when one of those fields changes while it is; removed when
 * it is detached. Nothing when host_networking is off or when the device does
 * not exist (the simulator, another toolstack's naming). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "network/internal.h"
#include "network/netlink.h"
#include "network/nft.h"
#include "xapi/error.h"
#include "xapi/store.h"

/* libxl's default backend name: vif<domid>.<devid>. */
static int vif_device_name(int64_t domid, const xapi_obj *vif, char out[IF_NAMESIZE]) {
    const char *dev = vif->fields[XAPI_F_VIF_device].s;
    int n;

    if (domid < 0 || !*dev || strspn(dev, "0123456789") != strlen(dev))
        return -EINVAL;
    n = snprintf(out, IF_NAMESIZE, "vif%" PRId64 ".%s", domid, dev);
    return n > 0 && n < IF_NAMESIZE ? 0 : -EINVAL;
}

/* locking_mode, with network_default resolved through the network. */
static const char *effective_locking_mode(xapi_server *srv, const xapi_obj *vif) {
    const char *mode = vif->fields[XAPI_F_VIF_locking_mode].s;
    xapi_obj *net;

    if (strcmp(mode, "network_default") != 0)
        return mode;
    net = xapi_store_get_class(srv->store, net_cls(XAPI_C_network), vif->fields[XAPI_F_VIF_network].s);
    return net && strcmp(net->fields[XAPI_F_network_default_locking_mode].s, "disabled") == 0 ? "disabled"
                                                                                              : "unlocked";
}

static char **strings_of(const xapi_value *set) {
    char **v = xapi_calloc(set->n + 1, sizeof *v);

    for (uint32_t i = 0; i < set->n; i++)
        v[i] = xapi_strdup(set->items[i].s);
    return v;
}

/* qos_algorithm_type ratelimit with kbps: bytes per second, else 0 (no limit). */
static uint64_t rate_of(const xapi_obj *vif) {
    const char *kbps = net_map_get(&vif->fields[XAPI_F_VIF_qos_algorithm_params], "kbps");
    char *end = NULL;
    unsigned long long k;

    if (strcmp(vif->fields[XAPI_F_VIF_qos_algorithm_type].s, "ratelimit") != 0 || !kbps)
        return 0;
    errno = 0;
    k = strtoull(kbps, &end, 10);
    if (errno || end == kbps || *end || k == 0 || k > INT32_MAX / 1024) {
        /* as xapi: a bad kbps leaves the VIF without a limit (and says so) */
        log_warning("network: VIF %s: ignoring qos_algorithm_params:kbps=%s", vif->uuid, kbps);
        return 0;
    }
    /* xapi's kbps are kilobytes per second */
    return k * 1024;
}

int network_vif_plumbing_of(xapi_server *srv, const xapi_obj *vif, int64_t domid, network_vif_plumbing *ret) {
    network_vif_plumbing p = {.mtu = vif->fields[XAPI_F_VIF_MTU].i};

    if (!net_host_enabled(srv) || vif_device_name(domid, vif, p.device) < 0)
        return 0;
    snprintf(p.vif_uuid, sizeof p.vif_uuid, "%s", vif->uuid);
    snprintf(p.locking, sizeof p.locking, "%s", effective_locking_mode(srv, vif));
    snprintf(p.mac, sizeof p.mac, "%s", vif->fields[XAPI_F_VIF_MAC].s);
    p.rate = rate_of(vif);
    p.ipv4 = strings_of(&vif->fields[XAPI_F_VIF_ipv4_allowed]);
    p.nipv4 = vif->fields[XAPI_F_VIF_ipv4_allowed].n;
    p.ipv6 = strings_of(&vif->fields[XAPI_F_VIF_ipv6_allowed]);
    p.nipv6 = vif->fields[XAPI_F_VIF_ipv6_allowed].n;
    *ret = p;
    return 1;
}

void network_vif_plumbing_free(network_vif_plumbing *p) {
    for (size_t i = 0; p->ipv4 && i < p->nipv4; i++)
        free(p->ipv4[i]);
    for (size_t i = 0; p->ipv6 && i < p->nipv6; i++)
        free(p->ipv6[i]);
    free(p->ipv4);
    free(p->ipv6);
    p->ipv4 = p->ipv6 = NULL;
    p->nipv4 = p->nipv6 = 0;
}

static bool strings_equal(char *const *a, size_t na, char *const *b, size_t nb) {
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

bool network_vif_plumbing_equal(const network_vif_plumbing *a, const network_vif_plumbing *b) {
    return strcmp(a->device, b->device) == 0 && a->mtu == b->mtu && a->rate == b->rate &&
           strcmp(a->locking, b->locking) == 0 && strcmp(a->mac, b->mac) == 0 &&
           strings_equal(a->ipv4, a->nipv4, b->ipv4, b->nipv4) && strings_equal(a->ipv6, a->nipv6, b->ipv6, b->nipv6);
}

static int apply_locking(const network_vif_plumbing *p, bool fresh) {
    network_nft_vif_rules r = {.device = p->device,
                               .mac = p->mac,
                               .drop_all = strcmp(p->locking, "disabled") == 0,
                               .ipv4 = (const char *const *)p->ipv4,
                               .nipv4 = p->nipv4,
                               .ipv6 = (const char *const *)p->ipv6,
                               .nipv6 = p->nipv6};

    if (strcmp(p->locking, "unlocked") == 0)
        return fresh ? 0 : network_nft_vif_remove(p->device);
    return network_nft_vif_apply(&r);
}

/* What a device has when it is made (netback's vif, QEMU's tap): no qdisc
 * or rules of ours, and this MTU. */
#define FRESH_DEVICE_MTU 1500

int network_vif_plumbing_apply(const network_vif_plumbing *p, bool fresh) {
    int rc, r;

    /* Nothing to change on a device just made for an unlocked VIF without a
     * limit at the default MTU (most VIFs): no look-up either, a VM start's
     * last netlink round trip */
    if (fresh && (p->mtu <= 0 || p->mtu == FRESH_DEVICE_MTU) && p->rate == 0 && strcmp(p->locking, "unlocked") == 0)
        return 0;
    /* MTU and rate on one netlink socket; that call also says whether the device exists */
    rc = network_nl_vif_apply(p->device, p->mtu, p->rate, !fresh);
    if (rc == -ENODEV)
        return rc;
    r = apply_locking(p, fresh);
    rc = rc < 0 ? rc : r;
    if (rc < 0)
        log_warning("network: %s (VIF %s): cannot apply its settings: %s", p->device, p->vif_uuid, strerror(-rc));
    return rc;
}

void network_vif_plumbing_remove(const network_vif_plumbing *p) {
    if (!network_nl_link_exists(p->device, NULL))
        return;
    network_nft_vif_remove(p->device);
    network_nl_link_clear_rate(p->device);
}

static int network_vif_apply_locked(xapi_server *srv, const xapi_obj *vm, const xapi_obj *vif) {
    network_vif_plumbing p;
    int rc;

    if (network_vif_plumbing_of(srv, vif, vm->fields[XAPI_F_VM_domid].i, &p) <= 0)
        return 0;
    rc = network_vif_plumbing_apply(&p, false);
    network_vif_plumbing_free(&p);
    return rc == -ENODEV ? 0 : rc;
}

static void network_vif_release_locked(xapi_server *srv, const xapi_obj *vm, const xapi_obj *vif) {
    network_vif_plumbing p;

    if (network_vif_plumbing_of(srv, vif, vm->fields[XAPI_F_VM_domid].i, &p) <= 0)
        return;
    network_vif_plumbing_remove(&p);
    network_vif_plumbing_free(&p);
}

void network_vif_attached_changed(xapi_server *srv, const xapi_obj *vm, const xapi_obj *vif, bool attached) {
    if (attached)
        network_vif_apply_locked(srv, vm, vif);
    else
        network_vif_release_locked(srv, vm, vif);
}

/* ---- the VIF's messages (generic setters: checked, then applied while plugged) ---- */

static bool running(const xapi_obj *vm) {
    const char *ps = vm->fields[XAPI_F_VM_power_state].s;
    return strcmp(ps, "Running") == 0 || strcmp(ps, "Paused") == 0;
}

static int vif_policy_before_set(xapi_call *c, xapi_obj *o, int field, const xapi_value *v) {
    int af;
    const char *name;

    (void)o;
    if (field == XAPI_F_VIF_ipv4_allowed) {
        af = AF_INET;
        name = "ipv4_allowed";
    } else if (field == XAPI_F_VIF_ipv6_allowed) {
        af = AF_INET6;
        name = "ipv6_allowed";
    } else
        return 0;
    for (uint32_t i = 0; i < v->n; i++) {
        unsigned char a[16];
        if (v->items[i].kind != XAPI_V_STRING || inet_pton(af, v->items[i].s, a) != 1)
            return xapi_call_fail(c, "INVALID_IP_ADDRESS_SPECIFIED", name);
    }
    if (v->n > NETWORK_VIF_MAX_ALLOWED)
        return xapi_call_fail(c, "INVALID_VALUE", name, "too many addresses");
    return 0;
}

static void vif_policy_after_set(xapi_call *c, xapi_obj *o, int field) {
    xapi_obj *vm;

    if (field != XAPI_F_VIF_locking_mode && field != XAPI_F_VIF_ipv4_allowed && field != XAPI_F_VIF_ipv6_allowed &&
        field != XAPI_F_VIF_qos_algorithm_type && field != XAPI_F_VIF_qos_algorithm_params && field != XAPI_F_VIF_MTU)
        return;
    if (!o->fields[XAPI_F_VIF_currently_attached].b)
        return;
    vm = xapi_store_get_class(c->srv->store, net_cls(XAPI_C_VM), o->fields[XAPI_F_VIF_VM].s);
    if (vm && running(vm))
        network_vif_apply_locked(c->srv, vm, o);
}

const xapi_class_hooks network_vif_policy_hooks = {
    .before_set = vif_policy_before_set,
    .after_set = vif_policy_after_set,
};

/* network.set_default_locking_mode (a DynamicRO field: no generic writer):
 * the network's plugged VIFs in network_default follow at once. */
static int network_set_default_locking_mode(xapi_call *c) {
    xapi_store *st = c->srv->store;
    const xapi_value *vifs;
    xapi_obj *net;
    int rc;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, net_cls(XAPI_C_network), c->args[0].s, &net);
    if (rc < 0)
        return xapi_finish_void(c, rc);
    xapi_obj_set_string(st, net, XAPI_F_network_default_locking_mode, c->args[1].s);
    vifs = &net->fields[XAPI_F_network_VIFs];
    for (uint32_t i = 0; i < vifs->n; i++) {
        xapi_obj *vif = xapi_store_get_class(st, net_cls(XAPI_C_VIF), vifs->items[i].s);
        xapi_obj *vm = vif ? xapi_store_get_class(st, net_cls(XAPI_C_VM), vif->fields[XAPI_F_VIF_VM].s) : NULL;
        if (vm && running(vm) && vif->fields[XAPI_F_VIF_currently_attached].b &&
            strcmp(vif->fields[XAPI_F_VIF_locking_mode].s, "network_default") == 0)
            network_vif_apply_locked(c->srv, vm, vif);
    }
    return xapi_finish_void(c, 0);
}

const xapi_handler network_vif_policy_handlers[] = {
    {"network", "set_default_locking_mode", network_set_default_locking_mode},
    {NULL, NULL, NULL},
};

/* After a restart (vmops knows the running domains): the bridges, VLANs and
 * bonds of every attached VIF's network, and its rules, made again where
 * missing (a host reboot, a flushed ruleset, a device removed by hand). */
void network_vif_repair(xapi_server *srv) {
    char **bridges = NULL;
    size_t n = 0;
    xapi_value err = {0};

    if (!net_host_enabled(srv))
        return;
    xapi_store_rdlock(srv->store);
    for (xapi_obj *vif = xapi_store_first(srv->store, net_cls(XAPI_C_VIF)); vif; vif = xapi_store_next(vif)) {
        xapi_obj *vm = xapi_store_get_class(srv->store, net_cls(XAPI_C_VM), vif->fields[XAPI_F_VIF_VM].s);
        char *br;
        if (!vm || !running(vm) || !vif->fields[XAPI_F_VIF_currently_attached].b)
            continue;
        network_vif_apply_locked(srv, vm, vif);
        br = network_bridge_of(srv, vif->fields[XAPI_F_VIF_network].s);
        if (br) {
            bridges = xapi_realloc(bridges, (n + 1) * sizeof *bridges);
            bridges[n++] = br;
        }
    }
    xapi_store_rdunlock(srv->store);
    for (size_t i = 0; i < n; i++) {
        if (network_prepare_for_vif(srv, bridges[i], &err) < 0)
            log_warning("network: cannot repair bridge %s", bridges[i]);
        xapi_value_free(&err);
        err = (xapi_value){0};
        free(bridges[i]);
    }
    free(bridges);
}
