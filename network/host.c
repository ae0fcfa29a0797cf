/* The host side of networks: what a network needs on this host (its bridge,
 * the 802.1q device of its VLAN PIF, its bond, the NIC of its physical PIF)
 * worked out from the records, then made over rtnetlink (netlink.c). The
 * devices xenapid made itself are listed in <state_dir>/network-devices, so
 * it removes only those: not other_config, which a client can write, and a
 * bridge the host's admin made (xenbr0 holding the host's address) must
 * survive its network. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/log.h"
#include "network/internal.h"
#include "network/netlink.h"
#include "xapi/error.h"

#define CREATED_FILE "network-devices"
#define CREATED_MAX 4096

bool net_host_enabled(const xapi_server *srv) {
    const char *v = srv->config && srv->config->host_networking ? srv->config->host_networking : "auto";

    if (strcmp(v, "on") == 0)
        return true;
    if (strcmp(v, "off") == 0)
        return false;
    return srv->config && srv->config->backend && strcmp(srv->config->backend, "libxl") == 0;
}

/* ---- names and modes ------------------------------------------------------------------ */

/* xcp-networkd's bridge backend names a VLAN device <parent>.<tag> (eth0.100). */
int net_vlan_device_name(const char *parent, int64_t tag, char out[IF_NAMESIZE]) {
    int k;

    if (tag < 0 || tag > 4094 || !*parent)
        return -EINVAL;
    k = snprintf(out, IF_NAMESIZE, "%s.%" PRId64, parent, tag);
    return k > 0 && k < IF_NAMESIZE ? 0 : -ENAMETOOLONG;
}

/* xapi's bond modes on Linux bonding (upstream Linux has no SLB):
 * - balance-slb (source-MAC load balancing, no switch support needed) ->
 *   balance-tlb: no switch support either, transmit spread over the members,
 *   receive on one; not balance-alb, whose receive balancing rewrites ARP
 *   replies with member MACs and so misdirects the bridged guests' traffic;
 * - active-backup -> active-backup;
 * - lacp -> 802.3ad (the switch runs LACP). */
int net_bond_mode_linux(const char *mode, int *ret) {
    if (strcmp(mode, "balance-slb") == 0)
        *ret = NETWORK_NL_BOND_TLB;
    else if (strcmp(mode, "active-backup") == 0)
        *ret = NETWORK_NL_BOND_ACTIVE_BACKUP;
    else if (strcmp(mode, "lacp") == 0)
        *ret = NETWORK_NL_BOND_8023AD;
    else
        return -EINVAL;
    return 0;
}

/* ---- the devices xenapid made ----------------------------------------------------------- */

static pthread_mutex_t created_lock = PTHREAD_MUTEX_INITIALIZER;

static char *created_path(const xapi_server *srv) {
    char *p = NULL;

    if (asprintf(&p, "%s/" CREATED_FILE, srv->config && srv->config->state_dir ? srv->config->state_dir : ".") < 0)
        xapi_oom();
    return p;
}

/* The list (names separated by '\n'), and whether name is in it. Lock held. */
static bool created_read(const xapi_server *srv, const char *name, xapi_value *ret_names) {
    char *path = created_path(srv), line[64];
    FILE *f = fopen(path, "re");
    bool found = false;

    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!*line)
            continue;
        if (name && strcmp(line, name) == 0)
            found = true;
        else if (ret_names && ret_names->n < CREATED_MAX)
            xapi_array_append(ret_names, xapi_value_string(line));
    }
    if (f)
        fclose(f);
    free(path);
    return found;
}

static int created_write(const xapi_server *srv, const xapi_value *names) {
    char *path = created_path(srv), *tmp = NULL;
    FILE *f;
    int rc = 0;

    if (asprintf(&tmp, "%s.tmp", path) < 0)
        xapi_oom();
    f = fopen(tmp, "we");
    if (!f) {
        rc = -errno;
        goto out;
    }
    for (uint32_t i = 0; i < names->n; i++)
        fprintf(f, "%s\n", names->items[i].s);
    if (fflush(f) != 0 || fsync(fileno(f)) < 0)
        rc = -errno;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
out:
    if (rc < 0)
        log_warning("network: cannot write %s: %s", path, strerror(-rc));
    free(tmp);
    free(path);
    return rc;
}

static void created_set(const xapi_server *srv, const char *name, bool made) {
    xapi_value names = xapi_value_array();

    pthread_mutex_lock(&created_lock);
    if (created_read(srv, name, &names) != made) {
        if (made)
            xapi_array_append(&names, xapi_value_string(name));
        created_write(srv, &names);
    }
    pthread_mutex_unlock(&created_lock);
    xapi_value_free(&names);
}

bool net_created_has(const xapi_server *srv, const char *name) {
    bool found;

    pthread_mutex_lock(&created_lock);
    found = created_read(srv, name, NULL);
    pthread_mutex_unlock(&created_lock);
    return found;
}

/* Deletes a device xenapid made (and forgets it); leaves any other alone. */
int net_device_release(const xapi_server *srv, const char *name) {
    int rc;

    if (!net_host_enabled(srv) || !net_created_has(srv, name))
        return 0;
    rc = network_nl_link_delete(name);
    if (rc < 0 && rc != -ENODEV) {
        log_warning("network: cannot remove %s: %s", name, strerror(-rc));
        return rc;
    }
    created_set(srv, name, false);
    log_notice("network: removed %s", name);
    return 0;
}

int net_bridge_release(const xapi_server *srv, const char *bridge) {
    char (*ports)[IF_NAMESIZE] = NULL;
    size_t n = 0;

    if (!net_host_enabled(srv) || !net_created_has(srv, bridge))
        return 0;
    if (network_nl_ports(bridge, &ports, &n) == 0 && n > 0) {
        log_notice("network: keeping bridge %s: %s is still a port of it", bridge, ports[0]);
        free(ports);
        return 0;
    }
    free(ports);
    return net_device_release(srv, bridge);
}

/* ---- a network on this host ------------------------------------------------------------- */

#define PLAN_MAX_UPLINKS 8
#define PLAN_MAX_MEMBERS 8

typedef enum uplink_kind { UPLINK_NIC, UPLINK_VLAN, UPLINK_BOND } uplink_kind;

typedef struct uplink {
    uplink_kind kind;
    char pif[XAPI_REF_LEN + 1];
    char dev[IF_NAMESIZE];
    char parent[IF_NAMESIZE]; /* VLAN: the tagged device */
    int tag;
    int bond_mode;
    char members[PLAN_MAX_MEMBERS][IF_NAMESIZE];
    size_t nmembers;
} uplink;

typedef struct net_plan {
    char network[XAPI_REF_LEN + 1];
    char bridge[IF_NAMESIZE];
    int64_t mtu;
    uplink up[PLAN_MAX_UPLINKS];
    size_t nup;
} net_plan;

static void copy_name(char out[IF_NAMESIZE], const char *s) {
    snprintf(out, IF_NAMESIZE, "%s", s);
}

/* What the network needs on this host (store lock held). */
static void plan_of(xapi_server *srv, xapi_obj *net, net_plan *p) {
    xapi_store *st = srv->store;
    const xapi_value *pifs = &net->fields[XAPI_F_network_PIFs];

    memset(p, 0, sizeof *p);
    memcpy(p->network, net->ref, sizeof p->network);
    copy_name(p->bridge, net->fields[XAPI_F_network_bridge].s);
    p->mtu = net->fields[XAPI_F_network_MTU].i;
    for (uint32_t i = 0; i < pifs->n && p->nup < PLAN_MAX_UPLINKS; i++) {
        xapi_obj *pif = xapi_store_get_class(st, net_cls(XAPI_C_PIF), pifs->items[i].s);
        const xapi_value *masters;
        uplink *u = &p->up[p->nup];
        char dev[IF_NAMESIZE];

        if (!pif || strcmp(pif->fields[XAPI_F_PIF_host].s, srv->host_ref) != 0)
            continue;
        memset(u, 0, sizeof *u);
        memcpy(u->pif, pif->ref, sizeof u->pif);
        masters = &pif->fields[XAPI_F_PIF_bond_master_of];
        if (pif->fields[XAPI_F_PIF_VLAN].i >= 0) {
            xapi_obj *vlan = xapi_store_get_class(st, net_cls(XAPI_C_VLAN), pif->fields[XAPI_F_PIF_VLAN_master_of].s);
            xapi_obj *tagged =
                vlan ? xapi_store_get_class(st, net_cls(XAPI_C_PIF), vlan->fields[XAPI_F_VLAN_tagged_PIF].s) : NULL;

            u->kind = UPLINK_VLAN;
            u->tag = (int)pif->fields[XAPI_F_PIF_VLAN].i;
            if (tagged) /* blamed for a failure: it outlives a VLAN.create taken back */
                memcpy(u->pif, tagged->ref, sizeof u->pif);
            copy_name(u->parent, tagged ? tagged->fields[XAPI_F_PIF_device].s : pif->fields[XAPI_F_PIF_device].s);
            if (net_vlan_device_name(u->parent, u->tag, dev) < 0)
                continue;
            memcpy(u->dev, dev, sizeof u->dev);
        } else if (masters->n > 0) {
            xapi_obj *bond = xapi_store_get_class(st, net_cls(XAPI_C_Bond), masters->items[0].s);
            const xapi_value *slaves = bond ? &bond->fields[XAPI_F_Bond_slaves] : NULL;

            u->kind = UPLINK_BOND;
            copy_name(u->dev, pif->fields[XAPI_F_PIF_device].s);
            if (!bond || net_bond_mode_linux(bond->fields[XAPI_F_Bond_mode].s, &u->bond_mode) < 0)
                u->bond_mode = NETWORK_NL_BOND_ACTIVE_BACKUP;
            for (uint32_t k = 0; slaves && k < slaves->n && u->nmembers < PLAN_MAX_MEMBERS; k++) {
                xapi_obj *m = xapi_store_get_class(st, net_cls(XAPI_C_PIF), slaves->items[k].s);
                if (m)
                    copy_name(u->members[u->nmembers++], m->fields[XAPI_F_PIF_device].s);
            }
        } else {
            /* A NIC that carries the host's own address stays out of the bridge:
             * enslaving it would take that address away. */
            if (*pif->fields[XAPI_F_PIF_IP].s || pif->fields[XAPI_F_PIF_management].b ||
                pif->fields[XAPI_F_PIF_IPv6].n > 0)
                continue;
            u->kind = UPLINK_NIC;
            copy_name(u->dev, pif->fields[XAPI_F_PIF_device].s);
        }
        p->nup++;
    }
}

static const char *nl_reason(const uplink *u, int rc) {
    if (rc == -EOPNOTSUPP && u && u->kind == UPLINK_VLAN)
        return "the kernel has no 802.1q VLAN support (module 8021q)";
    if (rc == -EOPNOTSUPP && u && u->kind == UPLINK_BOND)
        return "the kernel has no bonding support (module bonding)";
    if (rc == -ENOTUNIQ)
        return "a device of that name exists and is of another kind";
    return strerror(-rc);
}

/* Makes the plan true. On failure *ret_failed is the uplink that failed
 * (NULL: the bridge) and the reason is returned as a negative errno. */
static int plan_apply(const xapi_server *srv, const net_plan *p, const uplink **ret_failed) {
    bool made = false;
    int rc;

    *ret_failed = NULL;
    rc = network_nl_bridge_ensure(p->bridge, p->mtu, &made);
    if (rc < 0) {
        log_warning("network: bridge %s: %s", p->bridge, nl_reason(NULL, rc));
        return rc;
    }
    if (made) {
        created_set(srv, p->bridge, true);
        log_notice("network: created bridge %s (MTU %" PRId64 ")", p->bridge, p->mtu);
    }
    for (size_t i = 0; i < p->nup; i++) {
        const uplink *u = &p->up[i];
        const char *members[PLAN_MAX_MEMBERS];

        made = false;
        if (u->kind == UPLINK_VLAN)
            rc = network_nl_vlan_ensure(u->parent, u->tag, u->dev, &made);
        else if (u->kind == UPLINK_BOND) {
            for (size_t k = 0; k < u->nmembers; k++)
                members[k] = u->members[k];
            rc = network_nl_bond_ensure(u->dev, (network_nl_bond_mode)u->bond_mode, members, u->nmembers, &made);
        } else
            rc = network_nl_link_exists(u->dev, NULL) ? 0 : -ENODEV;
        if (rc == 0 && made) {
            created_set(srv, u->dev, true);
            log_notice("network: created %s %s", u->kind == UPLINK_VLAN ? "VLAN device" : "bond", u->dev);
        }
        if (rc == 0)
            rc = network_nl_link_set_master(u->dev, p->bridge);
        if (rc < 0) {
            log_warning("network: %s on bridge %s: %s", u->dev, p->bridge, nl_reason(u, rc));
            *ret_failed = u;
            return rc;
        }
    }
    return 0;
}

/* PIF_CONFIGURATION_ERROR [PIF, why] for an uplink, HOST_CANNOT_ATTACH_NETWORK [host, network] for the bridge. */
static int plan_fail(const xapi_server *srv, const net_plan *p, const uplink *failed, int rc, xapi_value *err) {
    char host[XAPI_REF_LEN + 1];

    if (failed)
        return xapi_fail(err, "PIF_CONFIGURATION_ERROR", failed->pif, nl_reason(failed, rc), NULL);
    memcpy(host, srv->host_ref, sizeof host);
    return xapi_fail(err, "HOST_CANNOT_ATTACH_NETWORK", host, p->network, NULL);
}

int net_network_apply_locked(xapi_server *srv, xapi_obj *net, xapi_value *err) {
    net_plan p;
    const uplink *failed;
    int rc;

    if (!net_host_enabled(srv))
        return 0;
    plan_of(srv, net, &p);
    rc = plan_apply(srv, &p, &failed);
    return rc < 0 ? plan_fail(srv, &p, failed, rc, err) : 0;
}

static xapi_obj *network_by_bridge(xapi_store *st, const char *bridge) {
    for (xapi_obj *n = xapi_store_first(st, net_cls(XAPI_C_network)); n; n = xapi_store_next(n))
        if (strcmp(n->fields[XAPI_F_network_bridge].s, bridge) == 0)
            return n;
    return NULL;
}

int network_prepare_for_vif(xapi_server *srv, const char *bridge, xapi_value *err) {
    net_plan p;
    const uplink *failed;
    xapi_obj *net;
    int rc;

    if (!net_host_enabled(srv) || !bridge || !*bridge)
        return 0;
    xapi_store_rdlock(srv->store);
    net = network_by_bridge(srv->store, bridge);
    if (net)
        plan_of(srv, net, &p);
    xapi_store_rdunlock(srv->store);
    if (!net)
        return 0; /* not a network's: the backend's own default */
    rc = plan_apply(srv, &p, &failed);
    return rc < 0 ? plan_fail(srv, &p, failed, rc, err) : 0;
}
