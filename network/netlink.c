/* rtnetlink operations on the host's devices, through libnl-route-3 (see
 * netlink.h). Calls come from API threads and a libnl socket is not to be
 * shared between threads, so each thread keeps one socket between its calls:
 * a VM start makes two look-ups or more, and on a dom0 whose system calls are
 * dear (PV, or under TCG) opening and binding a socket for each cost more
 * than the look-up (6 system calls of the 11 a look-up made; it makes 3 now:
 * with a buffer as big as any reply, no reply is peeked at first). */
#include <errno.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <net/if_arp.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bonding.h>
#include <netlink/route/link/vlan.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/tc.h>
#include <linux/pkt_sched.h>

#include "network/netlink.h"
#include "xapi/value.h"

/* libnl's error numbers as errnos. */
static int nl_errno(int nlerr) {
    switch (nlerr < 0 ? -nlerr : nlerr) {
    case 0:
        return 0;
    case NLE_NOMEM:
        return -ENOMEM;
    case NLE_EXIST:
        return -EEXIST;
    case NLE_INVAL:
    case NLE_RANGE:
        return -EINVAL;
    case NLE_OPNOTSUPP:
    case NLE_AF_NOSUPPORT:
    case NLE_MSGTYPE_NOSUPPORT:
        return -EOPNOTSUPP;
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
        return -ENODEV;
    case NLE_BUSY:
        return -EBUSY;
    case NLE_PERM:
    case NLE_NOACCESS:
        return -EPERM;
    case NLE_AGAIN:
        return -EAGAIN;
    default:
        return -EIO;
    }
}

/* Big enough for any message the kernel sends (it caps a dump's messages
 * at 32 KiB): each reply is read with one recvmsg, without a peek first. */
#define NL_RECV_BUF (64 * 1024)

/* Sockets kept between calls, for whichever thread calls next: HTTP
 * connections each have a thread of their own (libmicrohttpd's thread per
 * connection), so a socket kept per thread would be made again for nearly
 * every call (6 system calls). A thread takes one for a call and gives it
 * back; more than NL_SOCKS_KEPT at once are freed when given back. */
#define NL_SOCKS_KEPT 8

static pthread_mutex_t socks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nl_sock *socks_kept[NL_SOCKS_KEPT];
static unsigned nsocks_kept;

/* A socket for one call, kept or new; the caller gives it back with nl_give. */
static int nl_take(struct nl_sock **ret) {
    struct nl_sock *sk = NULL;
    int rc;

    pthread_mutex_lock(&socks_lock);
    if (nsocks_kept > 0)
        sk = socks_kept[--nsocks_kept];
    pthread_mutex_unlock(&socks_lock);
    if (sk) {
        *ret = sk;
        return 0;
    }
    sk = nl_socket_alloc();
    if (!sk)
        return -ENOMEM;
    rc = nl_connect(sk, NETLINK_ROUTE);
    if (rc < 0) {
        nl_socket_free(sk);
        return nl_errno(rc);
    }
    nl_socket_disable_msg_peek(sk);
    rc = nl_socket_set_msg_buf_size(sk, NL_RECV_BUF);
    if (rc < 0) {
        nl_socket_free(sk);
        return nl_errno(rc);
    }
    *ret = sk;
    return 0;
}

/* Whether a socket whose call ended in rc has read all its replies: success
 * or the kernel's refusal of a request. Any other failure (a short read, a
 * reply out of sequence, no memory) may leave a reply unread. */
static bool sock_clean_after(int rc) {
    switch (rc) {
    case 0:
    case -ENODEV:
    case -EEXIST:
    case -ENOTUNIQ:
    case -EINVAL:
    case -EOPNOTSUPP:
    case -EBUSY:
    case -EPERM:
        return true;
    default:
        return false;
    }
}

/* Gives sk back after a call that ended in rc (NULL: none taken): kept
 * when it has no reply left unread and there is room. */
static void nl_give(struct nl_sock *sk, int rc) {
    bool kept = false;

    if (!sk)
        return;
    if (sock_clean_after(rc)) {
        pthread_mutex_lock(&socks_lock);
        if (nsocks_kept < NL_SOCKS_KEPT) {
            socks_kept[nsocks_kept++] = sk;
            kept = true;
        }
        pthread_mutex_unlock(&socks_lock);
    }
    if (!kept)
        nl_socket_free(sk);
}

/* The link called name, as an errno. */
static int link_get(struct nl_sock *sk, const char *name, struct rtnl_link **ret) {
    return nl_errno(rtnl_link_get_kernel(sk, 0, name, ret));
}

static bool name_ok(const char *name) {
    return name && *name && strlen(name) < IF_NAMESIZE && !strchr(name, '/') && !strchr(name, ' ');
}

/* A socket for a call on the device name: -EINVAL first when the name cannot be one. */
static int nl_take_named(const char *name, struct nl_sock **ret) {
    return name_ok(name) ? nl_take(ret) : -EINVAL;
}

/* A socket of its own and the link called name on it: what a call on one
 * existing link starts with. The caller puts *ret_l and gives *ret_sk back (nl_give). A bad
 * name is -EINVAL; a failed look-up is lookup_err when that is not 0 (a
 * caller that promises -ENODEV for any), else libnl's error as an errno. */
static int link_open(const char *name, int lookup_err, struct nl_sock **ret_sk, struct rtnl_link **ret_l) {
    struct nl_sock *sk = NULL;
    struct rtnl_link *l = NULL;
    int rc;

    rc = nl_take_named(name, &sk);
    if (rc < 0)
        return rc;
    rc = link_get(sk, name, &l);
    if (rc < 0) {
        nl_give(sk, rc);
        return lookup_err ? lookup_err : rc;
    }
    *ret_sk = sk;
    *ret_l = l;
    return 0;
}

static bool kind_is(struct rtnl_link *l, const char *kind) {
    const char *k = rtnl_link_get_type(l);
    return k && strcmp(k, kind) == 0;
}

enum { LEAVE = -1, DOWN = 0, UP = 1 };

/* Applies state/mtu/master changes to the named link. master: -1 leaves it, 0 removes it.
 * Nothing is sent when the link is already so: every VIF's plug checks its
 * bridge and uplinks, and on a starved dom0 each round trip costs. */
static int link_apply(struct nl_sock *sk, struct rtnl_link *orig, int state, int64_t mtu, int master) {
    struct rtnl_link *ch = NULL;
    bool up, change = false;
    int rc;

    ch = rtnl_link_alloc();
    if (!ch) {
        rc = -ENOMEM;
        goto out;
    }
    if (mtu > 0 && (int64_t)rtnl_link_get_mtu(orig) != mtu) {
        rtnl_link_set_mtu(ch, (unsigned)mtu);
        change = true;
    }
    if (master >= 0 && rtnl_link_get_master(orig) != master) {
        rtnl_link_set_master(ch, master);
        change = true;
    }
    up = rtnl_link_get_flags(orig) & IFF_UP;
    if (state == UP && !up) {
        rtnl_link_set_flags(ch, IFF_UP);
        change = true;
    } else if (state == DOWN && up) {
        rtnl_link_unset_flags(ch, IFF_UP);
        change = true;
    }
    rc = change ? nl_errno(rtnl_link_change(sk, orig, ch, 0)) : 0;
out:
    if (ch)
        rtnl_link_put(ch);
    return rc;
}

static int link_change(struct nl_sock *sk, const char *name, int state, int64_t mtu, int master) {
    struct rtnl_link *orig = NULL;
    int rc;

    rc = link_get(sk, name, &orig);
    if (rc < 0)
        return rc;
    rc = link_apply(sk, orig, state, mtu, master);
    rtnl_link_put(orig);
    return rc;
}

/* Adds new (named name) unless a link of that name exists: then it must be of
 * kind, and *ret_have (if not NULL) is it, for the caller to put. */
static int add_or_adopt(struct nl_sock *sk, struct rtnl_link *new, const char *name, const char *kind,
                        bool *ret_created, struct rtnl_link **ret_have) {
    struct rtnl_link *have = NULL;
    bool created = false;
    int rc;

    if (link_get(sk, name, &have) == 0) {
        rc = kind_is(have, kind) ? 0 : -ENOTUNIQ;
        if (rc == 0 && ret_have)
            *ret_have = have;
        else
            rtnl_link_put(have);
        if (rc < 0)
            return rc;
    } else {
        rtnl_link_set_name(new, name);
        rc = nl_errno(rtnl_link_add(sk, new, NLM_F_CREATE | NLM_F_EXCL));
        if (rc == -EEXIST) /* made meanwhile by someone else: adopted */
            rc = 0;
        else if (rc < 0)
            return rc;
        else
            created = true;
    }
    if (ret_created)
        *ret_created = created;
    return 0;
}

/* The bridges this process made or adopted, by name and ifindex: every
 * VM.start and VIF plug asks for its network's bridge, and on the lab's dom0
 * a netlink look-up of a bridge cost a daemon thread 1.5 ms of CPU (the
 * kernel fills and libnl parses ~1.9 KB of attributes, under the rtnl lock
 * other threads' device work holds). A bridge known here is checked with
 * three ioctls that take no rtnl lock and parse nothing: the name still has
 * that ifindex (the kernel hands ifindexes out cyclically, so the same number
 * with the same name is the same device), it is up, and has the MTU. */
#define KNOWN_BRIDGES 64

static struct {
    pthread_mutex_t lock;
    char name[KNOWN_BRIDGES][IF_NAMESIZE];
    int ifindex[KNOWN_BRIDGES];
} known_bridges = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int known_bridge_slot(const char *name) {
    for (int i = 0; i < KNOWN_BRIDGES; i++)
        if (known_bridges.ifindex[i] > 0 && strcmp(known_bridges.name[i], name) == 0)
            return i;
    return -1;
}

/* The ifindex the bridge `name` had when last made or adopted, or 0. */
static int known_bridge(const char *name) {
    int i, idx = 0;

    pthread_mutex_lock(&known_bridges.lock);
    i = known_bridge_slot(name);
    if (i >= 0)
        idx = known_bridges.ifindex[i];
    pthread_mutex_unlock(&known_bridges.lock);
    return idx;
}

/* ifindex 0: forget it. */
static void known_bridge_set(const char *name, int ifindex) {
    int i;

    pthread_mutex_lock(&known_bridges.lock);
    i = known_bridge_slot(name);
    if (i < 0 && ifindex > 0)
        for (i = 0; i < KNOWN_BRIDGES && known_bridges.ifindex[i] > 0; i++)
            ;
    if (i >= 0 && i < KNOWN_BRIDGES) { /* a full table: the bridge is looked up over netlink each time */
        snprintf(known_bridges.name[i], IF_NAMESIZE, "%s", name);
        known_bridges.ifindex[i] = ifindex;
    }
    pthread_mutex_unlock(&known_bridges.lock);
}

/* The ifindex of name (0 when there is none), through the socket's ioctls. */
static int ifindex_of(struct nl_sock *sk, const char *name) {
    struct ifreq r = {0};

    snprintf(r.ifr_name, sizeof r.ifr_name, "%s", name);
    return ioctl(nl_socket_get_fd(sk), SIOCGIFINDEX, &r) == 0 ? r.ifr_ifindex : 0;
}

/* Whether name is still the bridge made or adopted here: it has that ifindex. */
static bool known_bridge_still(struct nl_sock *sk, const char *name) {
    int idx = known_bridge(name);

    return idx > 0 && ifindex_of(sk, name) == idx;
}

/* Whether name is still the known bridge, up and (mtu > 0) with that MTU. */
static bool known_bridge_fine(struct nl_sock *sk, const char *name, int64_t mtu) {
    int fd = nl_socket_get_fd(sk);
    struct ifreq r = {0};

    if (!known_bridge_still(sk, name))
        return false;
    snprintf(r.ifr_name, sizeof r.ifr_name, "%s", name);
    if (ioctl(fd, SIOCGIFFLAGS, &r) < 0 || !(r.ifr_flags & IFF_UP))
        return false;
    return mtu <= 0 || (ioctl(fd, SIOCGIFMTU, &r) == 0 && r.ifr_mtu == mtu);
}

int network_nl_bridge_ensure(const char *name, int64_t mtu, bool *ret_created) {
    struct nl_sock *sk = NULL;
    struct rtnl_link *l = NULL, *have = NULL;
    bool created = false;
    int rc;

    rc = nl_take_named(name, &sk);
    if (rc < 0)
        return rc;
    if (known_bridge_fine(sk, name, mtu)) {
        if (ret_created)
            *ret_created = false;
        goto out;
    }
    l = rtnl_link_alloc();
    if (!l) {
        rc = -ENOMEM;
        goto out;
    }
    rc = nl_errno(rtnl_link_set_type(l, "bridge"));
    if (rc == 0)
        rc = add_or_adopt(sk, l, name, "bridge", &created, &have);
    /* one look-up for a bridge that exists: every plug of a VIF comes here */
    if (rc == 0)
        rc = have ? link_apply(sk, have, UP, mtu, -1) : link_change(sk, name, UP, mtu, -1);
    if (have)
        rtnl_link_put(have);
    if (rc < 0 && created)
        rtnl_link_delete(sk, l);
    if (rc == 0 && ret_created)
        *ret_created = created;
    known_bridge_set(name, rc == 0 ? ifindex_of(sk, name) : 0);
out:
    if (l)
        rtnl_link_put(l);
    nl_give(sk, rc);
    return rc;
}

int network_nl_vlan_ensure(const char *parent, int tag, const char *name, bool *ret_created) {
    struct nl_sock *sk = NULL;
    struct rtnl_link *l = NULL, *p = NULL;
    bool created = false;
    int rc;

    if (!name_ok(parent) || !name_ok(name) || tag < 0 || tag > 4094)
        return -EINVAL;
    rc = nl_take(&sk);
    if (rc < 0)
        return rc;
    rc = link_get(sk, parent, &p);
    if (rc < 0)
        goto out;
    l = rtnl_link_vlan_alloc();
    if (!l) {
        rc = -ENOMEM;
        goto out;
    }
    rtnl_link_set_link(l, rtnl_link_get_ifindex(p));
    rc = nl_errno(rtnl_link_vlan_set_id(l, (uint16_t)tag));
    if (rc == 0)
        rc = add_or_adopt(sk, l, name, "vlan", &created, NULL);
    if (rc == 0)
        rc = link_change(sk, parent, UP, 0, -1); /* a VLAN carries nothing over a parent that is down */
    if (rc == 0)
        rc = link_change(sk, name, UP, 0, -1);
    if (rc < 0 && created)
        rtnl_link_delete(sk, l);
    if (rc == 0 && ret_created)
        *ret_created = created;
out:
    if (p)
        rtnl_link_put(p);
    if (l)
        rtnl_link_put(l);
    nl_give(sk, rc);
    return rc;
}

/* RTM_NEWLINK of a bond in mode: libnl 3.7 has no setter for IFLA_BOND_MODE. */
static int bond_add(struct nl_sock *sk, const char *name, network_nl_bond_mode mode) {
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    struct nl_msg *m = nlmsg_alloc_simple(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    struct nlattr *info, *data;
    int rc = -ENOMEM;

    if (!m)
        return -ENOMEM;
    if (nlmsg_append(m, &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0 || nla_put_string(m, IFLA_IFNAME, name) < 0)
        goto out;
    info = nla_nest_start(m, IFLA_LINKINFO);
    if (!info || nla_put_string(m, IFLA_INFO_KIND, "bond") < 0)
        goto out;
    data = nla_nest_start(m, IFLA_INFO_DATA);
    if (!data || nla_put_u8(m, IFLA_BOND_MODE, (uint8_t)mode) < 0)
        goto out;
    nla_nest_end(m, data);
    nla_nest_end(m, info);
    rc = nl_errno(nl_send_sync(sk, m)); /* frees m */
    m = NULL;
out:
    if (m)
        nlmsg_free(m);
    return rc;
}

int network_nl_bond_ensure(const char *name, network_nl_bond_mode mode, const char *const *members, size_t nmembers,
                           bool *ret_created) {
    struct nl_sock *sk = NULL;
    struct rtnl_link *have = NULL, *bond = NULL;
    bool created = false;
    int rc;

    if (!name_ok(name))
        return -EINVAL;
    for (size_t i = 0; i < nmembers; i++)
        if (!name_ok(members[i]))
            return -EINVAL;
    rc = nl_take(&sk);
    if (rc < 0)
        return rc;
    if (link_get(sk, name, &have) == 0) {
        rc = kind_is(have, "bond") ? 0 : -ENOTUNIQ;
    } else {
        rc = bond_add(sk, name, mode);
        created = rc == 0;
        if (rc == -EEXIST)
            rc = 0;
    }
    if (rc == 0)
        rc = link_get(sk, name, &bond);
    for (size_t i = 0; rc == 0 && i < nmembers; i++) {
        struct rtnl_link *m = NULL;

        rc = link_get(sk, members[i], &m);
        if (rc == 0 && rtnl_link_get_master(m) != rtnl_link_get_ifindex(bond)) {
            rc = link_change(sk, members[i], DOWN, 0, -1); /* bonding enslaves only devices that are down */
            if (rc == 0)
                rc = nl_errno(rtnl_link_bond_enslave(sk, bond, m));
        }
        if (m)
            rtnl_link_put(m);
    }
    if (rc == 0)
        rc = link_change(sk, name, UP, 0, -1);
    if (rc < 0 && created && bond)
        rtnl_link_delete(sk, bond);
    if (rc == 0 && ret_created)
        *ret_created = created;
    if (have)
        rtnl_link_put(have);
    if (bond)
        rtnl_link_put(bond);
    nl_give(sk, rc);
    return rc;
}

int network_nl_link_set_master(const char *dev, const char *master) {
    struct nl_sock *sk = NULL;
    struct rtnl_link *m = NULL;
    int rc, idx = 0;

    if (!name_ok(dev) || (master && !name_ok(master)))
        return -EINVAL;
    rc = nl_take(&sk);
    if (rc < 0)
        return rc;
    if (master) {
        rc = link_get(sk, master, &m);
        if (rc < 0)
            goto out;
        idx = rtnl_link_get_ifindex(m);
    }
    rc = link_change(sk, dev, UP, 0, idx);
out:
    if (m)
        rtnl_link_put(m);
    nl_give(sk, rc);
    return rc;
}

int network_nl_link_set_mtu(const char *dev, int64_t mtu) {
    struct nl_sock *sk = NULL;
    int rc;

    if (!name_ok(dev) || mtu <= 0)
        return -EINVAL;
    rc = nl_take(&sk);
    if (rc < 0)
        return rc;
    rc = link_change(sk, dev, LEAVE, mtu, -1);
    nl_give(sk, rc);
    return rc;
}

int network_nl_link_delete(const char *name) {
    struct nl_sock *sk = NULL;
    struct rtnl_link *l = NULL;
    int rc;

    rc = link_open(name, 0, &sk, &l);
    if (rc < 0)
        return rc;
    rc = nl_errno(rtnl_link_delete(sk, l));
    if (rc == 0)
        known_bridge_set(name, 0);
    rtnl_link_put(l);
    nl_give(sk, rc);
    return rc;
}

static void fill_link(struct rtnl_link *l, struct nl_cache *cache, network_nl_link *out) {
    struct nl_addr *a = rtnl_link_get_addr(l);
    const char *kind = rtnl_link_get_type(l);
    int master = rtnl_link_get_master(l);

    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", rtnl_link_get_name(l));
    snprintf(out->kind, sizeof out->kind, "%s", kind ? kind : "");
    if (a && nl_addr_get_len(a) == 6) {
        const unsigned char *b = nl_addr_get_binary_addr(a);
        snprintf(out->mac, sizeof out->mac, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
    }
    out->mtu = rtnl_link_get_mtu(l);
    out->up = rtnl_link_get_flags(l) & IFF_UP;
    out->carrier = rtnl_link_get_carrier(l) != 0;
    out->hardware = !kind && rtnl_link_get_arptype(l) == ARPHRD_ETHER && !(rtnl_link_get_flags(l) & IFF_LOOPBACK);
    if (master > 0 && cache)
        rtnl_link_i2name(cache, master, out->master, sizeof out->master);
}

int network_nl_links(network_nl_link **ret, size_t *ret_n) {
    struct nl_sock *sk = NULL;
    struct nl_cache *cache = NULL;
    network_nl_link *v = NULL;
    size_t n = 0;
    int rc;

    rc = nl_take(&sk);
    if (rc < 0)
        return rc;
    rc = nl_errno(rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache));
    if (rc < 0)
        goto out;
    v = xapi_calloc((size_t)nl_cache_nitems(cache) + 1, sizeof *v);
    for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o))
        fill_link((struct rtnl_link *)o, cache, &v[n++]);
    *ret = v;
    *ret_n = n;
    v = NULL;
out:
    free(v);
    if (cache)
        nl_cache_free(cache);
    nl_give(sk, rc);
    return rc;
}

int network_nl_ports(const char *master, char (**ret)[IF_NAMESIZE], size_t *ret_n) {
    network_nl_link *links = NULL;
    char (*v)[IF_NAMESIZE] = NULL;
    size_t n = 0, k = 0;
    int rc;

    rc = network_nl_links(&links, &n);
    if (rc < 0)
        return rc;
    v = xapi_calloc(n + 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        if (strcmp(links[i].master, master) == 0)
            memcpy(v[k++], links[i].name, IF_NAMESIZE);
    free(links);
    *ret = v;
    *ret_n = k;
    return 0;
}

bool network_nl_link_exists(const char *name, const char *kind) {
    struct nl_sock *sk = NULL;
    struct rtnl_link *l = NULL;
    bool found;

    /* a bridge known here by its ifindex: one ioctl (see known_bridges) */
    if (kind && strcmp(kind, "bridge") == 0 && name_ok(name) && nl_take(&sk) == 0) {
        found = known_bridge_still(sk, name);
        nl_give(sk, 0);
        sk = NULL;
        if (found)
            return true;
    }
    if (link_open(name, 0, &sk, &l) < 0)
        return false;
    found = !kind || kind_is(l, kind);
    rtnl_link_put(l);
    nl_give(sk, 0);
    return found;
}

/* Traffic control on a VIF's backend device: a TBF root qdisc shapes what the
 * host sends to the guest (the device's egress is the guest's receive side). */

/* A qdisc object for the root of the link with this ifindex, for the caller to fill and send. */
static int root_qdisc_new(int ifindex, struct rtnl_qdisc **ret_q) {
    struct rtnl_qdisc *q = rtnl_qdisc_alloc();

    if (!q)
        return -ENOMEM;
    rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
    rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
    *ret_q = q;
    return 0;
}

static int set_rate(struct nl_sock *sk, int ifindex, uint64_t bytes_per_sec) {
    struct rtnl_qdisc *q = NULL;
    uint64_t burst, limit;
    int rc;

    if (bytes_per_sec == 0 || bytes_per_sec > INT32_MAX)
        return -EINVAL;
    /* a burst of 20 ms of traffic, at least a few full frames */
    burst = bytes_per_sec / 50 < 16384 ? 16384 : bytes_per_sec / 50;
    limit = burst + bytes_per_sec / 4;
    if (limit > INT32_MAX)
        limit = INT32_MAX;
    rc = root_qdisc_new(ifindex, &q);
    if (rc < 0)
        return rc;
    rtnl_tc_set_handle(TC_CAST(q), TC_HANDLE(1, 0));
    rc = nl_errno(rtnl_tc_set_kind(TC_CAST(q), "tbf"));
    if (rc < 0)
        goto out;
    rtnl_qdisc_tbf_set_limit(q, (int)limit);
    rtnl_qdisc_tbf_set_rate(q, (int)bytes_per_sec, (int)burst, 0);
    rc = nl_errno(rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_REPLACE));
out:
    rtnl_qdisc_put(q);
    return rc;
}

static int clear_rate(struct nl_sock *sk, int ifindex) {
    struct rtnl_qdisc *q = NULL;
    int rc;

    rc = root_qdisc_new(ifindex, &q);
    if (rc < 0)
        return rc;
    rc = nl_errno(rtnl_qdisc_delete(sk, q));
    /* no root qdisc of ours: nothing to remove */
    if (rc == -ENODEV || rc == -EINVAL)
        rc = 0;
    rtnl_qdisc_put(q);
    return rc;
}

/* One socket and one look-up of the link for a rate call (the link's ifindex). */
static int rate_call(const char *dev, bool set, uint64_t bytes_per_sec) {
    struct nl_sock *sk = NULL;
    struct rtnl_link *l = NULL;
    int rc;

    rc = link_open(dev, 0, &sk, &l);
    if (rc < 0)
        return rc;
    rc = set ? set_rate(sk, rtnl_link_get_ifindex(l), bytes_per_sec) : clear_rate(sk, rtnl_link_get_ifindex(l));
    rtnl_link_put(l);
    nl_give(sk, rc);
    return rc;
}

int network_nl_link_set_rate(const char *dev, uint64_t bytes_per_sec) {
    return rate_call(dev, true, bytes_per_sec);
}

int network_nl_link_clear_rate(const char *dev) {
    return rate_call(dev, false, 0);
}

int network_nl_vif_apply(const char *dev, int64_t mtu, uint64_t bytes_per_sec, bool clear) {
    struct nl_sock *sk = NULL;
    struct rtnl_link *l = NULL, *ch = NULL;
    int rc, r;

    /* one look-up: whether it exists, its MTU and its ifindex */
    rc = link_open(dev, -ENODEV, &sk, &l);
    if (rc < 0)
        return rc;
    if (mtu > 0 && (int64_t)rtnl_link_get_mtu(l) != mtu) {
        ch = rtnl_link_alloc();
        if (!ch) {
            rc = -ENOMEM;
            goto out;
        }
        rtnl_link_set_mtu(ch, (unsigned)mtu);
        rc = nl_errno(rtnl_link_change(sk, l, ch, 0));
    }
    r = bytes_per_sec > 0 ? set_rate(sk, rtnl_link_get_ifindex(l), bytes_per_sec)
        : clear               ? clear_rate(sk, rtnl_link_get_ifindex(l))
                              : 0;
    rc = rc < 0 ? rc : r;
out:
    if (ch)
        rtnl_link_put(ch);
    if (l)
        rtnl_link_put(l);
    nl_give(sk, rc);
    return rc;
}
