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
 * once the backend device exists / before it goes, with the store lock held.
 * Nothing without host_networking or the device. The VM layer's start, stop
 * and hot-plug use the plumbing calls below instead, off the store's lock. */
void network_vif_attached_changed(xapi_server *srv, const xapi_obj *vm, const xapi_obj *vif, bool attached);

/* What a VIF's backend device must enforce, copied out of the store, so that
 * it is applied without the store's lock: netlink and nftables calls wait on
 * the kernel (its rtnl lock, an RCU grace period at a hook's change), which
 * on a loaded host took seconds while every other writer queued behind. */
typedef struct network_vif_plumbing {
    char device[16]; /* vif<domid>.<device> */
    char vif_uuid[XAPI_UUID_LEN + 1];
    int64_t mtu;
    uint64_t rate;      /* bytes per second; 0: no limit */
    char locking[16];   /* unlocked, locked or disabled (network_default resolved) */
    char mac[18];
    char **ipv4, **ipv6; /* NULL-terminated */
    size_t nipv4, nipv6;
} network_vif_plumbing;

/* The plumbing of vif once it is attached to domain domid (store lock held,
 * read or write). 1 and *ret filled when there is something to apply, 0 when
 * not (host_networking off, no usable device name). */
int network_vif_plumbing_of(xapi_server *srv, const xapi_obj *vif, int64_t domid, network_vif_plumbing *ret);
/* Applies it to the device, if the device exists (no store lock needed).
 * fresh: the device was just made with its domain or hot-plug, so it has
 * none of our rules or rate limit (a netdev chain goes with its device):
 * nothing is removed; an unlocked VIF without a limit costs nothing at the
 * default MTU and one netlink look-up at another (each nft call reads the
 * ruleset first: on the lab's loaded dom0 that was seconds a start). 0,
 * -ENODEV without the device (not looked for when there is nothing to
 * apply), or the first failure (logged). */
int network_vif_plumbing_apply(const network_vif_plumbing *p, bool fresh);
/* Removes the device's rules and rate limit (no store lock needed); nothing
 * when the device is gone (its chain and qdisc went with it). */
void network_vif_plumbing_remove(const network_vif_plumbing *p);
bool network_vif_plumbing_equal(const network_vif_plumbing *a, const network_vif_plumbing *b);
void network_vif_plumbing_free(network_vif_plumbing *p);

/* At start, after vmops_init: the networks' devices and the rules of every
 * attached VIF of a running VM made again where missing. */
void network_vif_repair(xapi_server *srv);
