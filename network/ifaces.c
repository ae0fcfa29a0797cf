/* Introspection of the host's network interfaces: links and addresses over
 * rtnetlink. Best effort everywhere: a container without netlink gives fewer
 * facts, not errors. */
#include <errno.h>
#include <limits.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "network/ifaces.h"
#include "network/netlink.h"
#include "xapi/value.h"

static bool skipped_name(const char *n) {
    static const char *const prefixes[] = {"vif", "tap", "veth", "xenbr", "xapi", "virbr", "docker", "br-"};

    if (strcmp(n, "lo") == 0)
        return true;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(n, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

static int iface_cmp(const void *a, const void *b) {
    return strverscmp(((const net_iface *)a)->name, ((const net_iface *)b)->name);
}

/* ---- addresses over netlink ----------------------------------------------------- */

typedef struct addr {
    char ifname[IF_NAMESIZE];
    int family;
    unsigned char prefix;
    unsigned char scope;
    bool finite;     /* valid lifetime not forever: handed out by DHCP or SLAAC */
    bool secondary;
    char text[INET6_ADDRSTRLEN];
} addr;

static int dump_addrs(addr **ret, size_t *ret_n) {
    struct {
        struct nlmsghdr nh;
        struct ifaddrmsg ifa;
    } req = {0};
    union {
        struct nlmsghdr nh;
        char buf[32768];
    } u;
    addr *v = NULL;
    size_t n = 0;
    bool done = false;
    int fd, rc = 0;

    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
    req.nh.nlmsg_type = RTM_GETADDR;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.nh.nlmsg_seq = 1;
    req.ifa.ifa_family = AF_UNSPEC;
    if (send(fd, &req, req.nh.nlmsg_len, 0) < 0) {
        rc = -errno;
        goto out;
    }
    while (!done) {
        ssize_t len = recv(fd, u.buf, sizeof u.buf, 0);
        struct nlmsghdr *nh;

        if (len < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (len == 0)
            break;
        for (nh = &u.nh; NLMSG_OK(nh, (unsigned)len); nh = NLMSG_NEXT(nh, len)) {
            struct ifaddrmsg *ifa;
            struct rtattr *rta;
            const void *local = NULL, *address = NULL;
            int alen;
            addr a = {0};

            if (nh->nlmsg_type == NLMSG_DONE || nh->nlmsg_type == NLMSG_ERROR) {
                done = true;
                break;
            }
            if (nh->nlmsg_type != RTM_NEWADDR)
                continue;
            ifa = NLMSG_DATA(nh);
            if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)
                continue;
            alen = (int)IFA_PAYLOAD(nh);
            a.family = ifa->ifa_family;
            a.prefix = ifa->ifa_prefixlen;
            a.scope = ifa->ifa_scope;
            a.secondary = ifa->ifa_flags & IFA_F_SECONDARY;
            for (rta = IFA_RTA(ifa); RTA_OK(rta, alen); rta = RTA_NEXT(rta, alen)) {
                if (rta->rta_type == IFA_LOCAL)
                    local = RTA_DATA(rta);
                else if (rta->rta_type == IFA_ADDRESS)
                    address = RTA_DATA(rta);
                else if (rta->rta_type == IFA_CACHEINFO && RTA_PAYLOAD(rta) >= sizeof(struct ifa_cacheinfo)) {
                    const struct ifa_cacheinfo *ci = RTA_DATA(rta);
                    a.finite = ci->ifa_valid != 0xFFFFFFFFu;
                } else if (rta->rta_type == IFA_FLAGS && RTA_PAYLOAD(rta) >= sizeof(uint32_t)) {
                    uint32_t fl;
                    memcpy(&fl, RTA_DATA(rta), sizeof fl);
                    a.secondary = fl & IFA_F_SECONDARY;
                }
            }
            if (!local)
                local = address;
            if (!local || !if_indextoname(ifa->ifa_index, a.ifname) ||
                !inet_ntop(a.family, local, a.text, sizeof a.text))
                continue;
            if (n % 32 == 0)
                v = xapi_realloc(v, (n + 32) * sizeof *v);
            if (n < 4096)
                v[n++] = a;
        }
    }
out:
    close(fd);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static void prefix_to_mask(unsigned prefix, char out[INET_ADDRSTRLEN]) {
    struct in_addr m;

    m.s_addr = prefix == 0 ? 0 : htonl(prefix >= 32 ? 0xFFFFFFFFu : ~((1u << (32 - prefix)) - 1));
    inet_ntop(AF_INET, &m, out, INET_ADDRSTRLEN);
}

/* ---- routes, leases, resolv.conf ---------------------------------------------------- */

/* Whether a line of /proc/net/route is a default route; its interface, gateway and metric. */
static bool parse_default_route(const char *line, char name[IF_NAMESIZE + 1], unsigned long *gw,
                                unsigned long *metric) {
    unsigned long dest, flags, refcnt, use, mask;

    if (sscanf(line, "%16s %lx %lx %lx %lu %lu %lu %lx", name, &dest, gw, &flags, &refcnt, &use, metric, &mask) != 8)
        return false;
    return dest == 0 && mask == 0;
}

static void gateway_of(const char *iface, char out[INET_ADDRSTRLEN]) {
    FILE *f = fopen("/proc/net/route", "re");
    char line[512];
    unsigned long best = ULONG_MAX;

    out[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        char name[IF_NAMESIZE + 1];
        unsigned long gw, metric;
        struct in_addr a;

        if (!parse_default_route(line, name, &gw, &metric) || gw == 0 || strcmp(name, iface) != 0 || metric >= best)
            continue;
        best = metric;
        a.s_addr = (in_addr_t)gw; /* already in network order as the kernel prints it */
        inet_ntop(AF_INET, &a, out, INET_ADDRSTRLEN);
    }
    if (f)
        fclose(f);
}

void net_default_route_iface(char ret[IF_NAMESIZE]) {
    FILE *f = fopen("/proc/net/route", "re");
    char line[512];
    unsigned long best = ULONG_MAX;

    ret[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        char name[IF_NAMESIZE + 1];
        unsigned long gw, metric;

        if (!parse_default_route(line, name, &gw, &metric) || metric >= best || strlen(name) >= IF_NAMESIZE)
            continue;
        best = metric;
        memcpy(ret, name, strlen(name) + 1);
    }
    if (f)
        fclose(f);
}

static bool has_lease(const char *iface) {
    char p[PATH_MAX], idx[32];
    static const char *const patterns[][2] = {
        {"/var/lib/dhcp/dhclient.", ".leases"}, {"/var/lib/dhclient/dhclient-", ".leases"},
        {"/var/lib/dhclient/dhclient.", ".leases"}, {"/run/dhcpcd/", ".lease"},
        {"/var/lib/dhcpcd/", ".lease"}, {"/var/lib/dhcpcd5/dhcpcd-", ".lease"},
    };
    struct stat st;

    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
        snprintf(p, sizeof p, "%s%s%s", patterns[i][0], iface, patterns[i][1]);
        if (stat(p, &st) == 0 && st.st_size > 0)
            return true;
    }
    snprintf(idx, sizeof idx, "%u", if_nametoindex(iface));
    snprintf(p, sizeof p, "/run/systemd/netif/leases/%s", idx);
    if (stat(p, &st) == 0)
        return true;
    return false;
}

void net_dns_servers(char *ret, size_t size) {
    FILE *f = fopen("/etc/resolv.conf", "re");
    char line[512];
    size_t len = 0;

    ret[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        char ns[INET6_ADDRSTRLEN + 1];
        int k;

        if (sscanf(line, " nameserver %46s", ns) != 1)
            continue;
        k = snprintf(ret + len, size - len, "%s%s", len ? "," : "", ns);
        if (k < 0 || (size_t)k >= size - len) {
            ret[len] = '\0';
            break;
        }
        len += (size_t)k;
    }
    if (f)
        fclose(f);
}

/* ---- all together ------------------------------------------------------------------ */

static void fill_ipv4(net_iface *it, const char *from, const addr *addrs, size_t naddrs) {
    for (size_t i = 0; i < naddrs; i++) {
        const addr *a = &addrs[i];
        if (a->family != AF_INET || a->secondary || strcmp(a->ifname, from) != 0)
            continue;
        snprintf(it->ip, sizeof it->ip, "%.15s", a->text);
        prefix_to_mask(a->prefix, it->netmask);
        gateway_of(from, it->gateway);
        it->dhcp = a->finite || has_lease(from);
        return;
    }
}

static void fill_ipv6(net_iface *it, const char *from, const addr *addrs, size_t naddrs) {
    for (size_t i = 0; i < naddrs && it->nipv6 < NET_MAX_IPV6; i++) {
        const addr *a = &addrs[i];
        if (a->family != AF_INET6 || a->scope != RT_SCOPE_UNIVERSE || strcmp(a->ifname, from) != 0)
            continue;
        snprintf(it->ipv6[it->nipv6++], sizeof it->ipv6[0], "%s/%u", a->text, a->prefix);
        it->ipv6_autoconf |= a->finite;
    }
}

/* A NIC a PIF stands for: hardware, or a veth (a container's uplink, a test's NIC). */
static bool physical(const network_nl_link *l) {
    return !skipped_name(l->name) && (l->hardware || strcmp(l->kind, "veth") == 0);
}

int net_ifaces_read(net_iface **ret, size_t *ret_n) {
    network_nl_link *links = NULL;
    net_iface *v = NULL;
    addr *addrs = NULL;
    size_t n = 0, nlinks = 0, naddrs = 0;
    int rc;

    rc = network_nl_links(&links, &nlinks);
    if (rc < 0)
        return rc;
    v = xapi_calloc(nlinks + 1, sizeof *v);
    for (size_t i = 0; i < nlinks && n < NET_MAX_IFACES; i++) {
        const network_nl_link *l = &links[i];
        net_iface *it;

        if (!physical(l))
            continue;
        it = &v[n++];
        memcpy(it->name, l->name, sizeof it->name);
        memcpy(it->mac, l->mac, sizeof it->mac);
        it->mtu = l->mtu > 0 ? l->mtu : 1500;
        it->up = l->up;
        it->carrier = l->carrier;
        for (size_t k = 0; k < nlinks; k++)
            if (*l->master && strcmp(links[k].name, l->master) == 0 && strcmp(links[k].kind, "bridge") == 0)
                memcpy(it->master, l->master, sizeof it->master);
    }
    free(links);
    if (dump_addrs(&addrs, &naddrs) < 0)
        naddrs = 0;
    for (size_t i = 0; i < n; i++) {
        net_iface *it = &v[i];
        fill_ipv4(it, it->name, addrs, naddrs);
        if (!*it->ip && *it->master)
            fill_ipv4(it, it->master, addrs, naddrs);
        fill_ipv6(it, it->name, addrs, naddrs);
        if (it->nipv6 == 0 && *it->master)
            fill_ipv6(it, it->master, addrs, naddrs);
    }
    free(addrs);
    if (n)
        qsort(v, n, sizeof *v, iface_cmp);
    *ret = v;
    *ret_n = n;
    return 0;
}
