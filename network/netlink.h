/* The host's network devices over rtnetlink (libnl-route-3): the only code
 * that changes them. Narrow, typed operations on device names and numbers,
 * no XenAPI types, so they can move behind a privileged helper later (one
 * message per function). All return 0 or a negative errno; "ensure" makes
 * what is missing, adopts what exists with the right kind, and says in
 * *ret_created (may be NULL) whether it made the device. */
#pragma once

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Linux bonding modes (IFLA_BOND_MODE values). */
typedef enum network_nl_bond_mode {
    NETWORK_NL_BOND_ACTIVE_BACKUP = 1,
    NETWORK_NL_BOND_8023AD = 4,
    NETWORK_NL_BOND_TLB = 5,
} network_nl_bond_mode;

typedef struct network_nl_link {
    char name[IF_NAMESIZE];
    char kind[16];            /* "bridge", "vlan", "bond", "veth"... "" for a hardware NIC */
    char mac[18];             /* lowercase aa:bb:cc:dd:ee:ff */
    int64_t mtu;
    bool up, carrier;
    bool hardware;            /* backed by a device (what sysfs shows as device/) */
    char master[IF_NAMESIZE]; /* the bridge or bond it is a port of, "" if none */
} network_nl_link;

/* The bridge `name`, up, with mtu (when > 0). -ENOTUNIQ: `name` exists and is not a bridge. */
int network_nl_bridge_ensure(const char *name, int64_t mtu, bool *ret_created);
/* The 802.1q device `name` (tag on parent), up. -EOPNOTSUPP: the kernel has no 8021q. */
int network_nl_vlan_ensure(const char *parent, int tag, const char *name, bool *ret_created);
/* The bond `name` in mode with the members enslaved (each taken down first, as bonding wants), up.
 * -EOPNOTSUPP: the kernel has no bonding. */
int network_nl_bond_ensure(const char *name, network_nl_bond_mode mode, const char *const *members, size_t nmembers,
                           bool *ret_created);
/* dev becomes a port of master (a bridge or bond), or of none when master is NULL; dev is brought up. */
int network_nl_link_set_master(const char *dev, const char *master);
int network_nl_link_set_mtu(const char *dev, int64_t mtu);
/* -ENODEV when there is none (nothing to do for a caller that wants it gone). */
int network_nl_link_delete(const char *name);
/* The ports of a bridge or bond (malloc'd array, *ret_n entries). */
int network_nl_ports(const char *master, char (**ret)[IF_NAMESIZE], size_t *ret_n);
/* Every link of this network namespace (malloc'd). */
int network_nl_links(network_nl_link **ret, size_t *ret_n);
/* Whether the device exists (and, if kind is not NULL, is of that kind). */
bool network_nl_link_exists(const char *name, const char *kind);
/* A TBF root qdisc on dev at bytes_per_sec: shapes what the host sends out of dev. */
int network_nl_link_set_rate(const char *dev, uint64_t bytes_per_sec);
/* Removes dev's root qdisc (back to the kernel's default); 0 when there was none. */
int network_nl_link_clear_rate(const char *dev);
/* A plugged VIF's backend device, on one socket with one look-up: its MTU
 * (when > 0 and different) and its root TBF (bytes_per_sec > 0) or none
 * (clear: remove one that may be there; a fresh device has none).
 * -ENODEV when the device does not exist. */
int network_nl_vif_apply(const char *dev, int64_t mtu, uint64_t bytes_per_sec, bool clear);
