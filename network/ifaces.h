/* The host's network interfaces as the kernel shows them (rtnetlink,
 * /proc/net/route, resolv.conf): what network_bootstrap turns into PIFs. */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_MAX_IFACES 256
#define NET_MAX_IPV6 4

typedef struct net_iface {
    char name[IF_NAMESIZE];
    char mac[18];                 /* lowercase aa:bb:cc:dd:ee:ff */
    int64_t mtu;
    bool up;                      /* administratively up */
    bool carrier;                 /* link detected */
    char master[IF_NAMESIZE];     /* the bridge it is a port of, "" if none */
    /* IPv4 configuration, of the interface or else of its bridge */
    char ip[INET_ADDRSTRLEN], netmask[INET_ADDRSTRLEN], gateway[INET_ADDRSTRLEN];
    bool dhcp;                    /* best effort: a lease file or an address with a finite lifetime */
    char ipv6[NET_MAX_IPV6][INET6_ADDRSTRLEN + 4]; /* "addr/prefix", global scope */
    int nipv6;
    bool ipv6_autoconf;
} net_iface;

/* The physical interfaces (hardware NICs and veths; not lo, bridges, bonds,
 * VLANs, tap, vif, nor veth* names), sorted by name (eth2 before eth10). */
int net_ifaces_read(net_iface **ret, size_t *ret_n);
/* The interface of the IPv4 default route ("" if none). */
void net_default_route_iface(char ret[IF_NAMESIZE]);
/* Comma-separated nameservers of /etc/resolv.conf. */
void net_dns_servers(char *ret, size_t size);
