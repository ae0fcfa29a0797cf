/* Facts about the machine this agent runs on, read from the real system.
 * Everything but the host name and uname(2) has a fallback, so that a
 * container or an odd /proc still gives a usable (if approximate) answer.
 * Every string of the result is non-NULL (possibly ""). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "agent/hostinfo.h"

static inline void freep(void *p) {
    free(*(void **)p);
}
static inline void fclosep(FILE **f) {
    if (*f)
        fclose(*f);
}
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Replaces *field with a copy of value (NULL: ""). */
static int set_str(char **field, const char *value) {
    char *s = strdup(value ? value : "");

    if (!s)
        return -ENOMEM;
    free(*field);
    *field = s;
    return 0;
}

static char *strip(char *s) {
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* --- /proc/cpuinfo --------------------------------------------------------- */

static void cpu_free(agent_cpu *c) {
    free(c->vendor);
    free(c->model_name);
    free(c->flags);
    *c = (agent_cpu){0};
}

static int cpu_fill_empty(agent_cpu *c) {
    if ((!c->vendor && set_str(&c->vendor, "") < 0) || (!c->model_name && set_str(&c->model_name, "") < 0) ||
        (!c->flags && set_str(&c->flags, "") < 0))
        return -ENOMEM;
    return 0;
}

static int parse_int_field(const char *v) {
    long n;
    char *end = NULL;

    errno = 0;
    n = strtol(v, &end, 0); /* base 0: ARM's "CPU part : 0xd08" */
    if (errno || end == v || n < INT_MIN || n > INT_MAX)
        return 0;
    return (int)n;
}

/* One agent_cpu per "processor" stanza. Knows the x86 field names, and the
 * ARM ones as fallbacks. */
static int read_cpuinfo(agent_cpu **ret, int *ret_count) {
    _cleanup_fclose_ FILE *f = NULL;
    _cleanup_free_ char *line = NULL;
    agent_cpu *cpus = NULL, *c = NULL;
    size_t cap = 0;
    int n = 0, rc;

    f = fopen("/proc/cpuinfo", "re");
    if (!f)
        return -errno;
    while (getline(&line, &cap, f) >= 0) {
        char *colon = strchr(line, ':'), *key, *value;

        if (!colon)
            continue;
        *colon = '\0';
        key = strip(line);
        value = strip(colon + 1);
        if (strcmp(key, "processor") == 0) {
            agent_cpu *p = realloc(cpus, (size_t)(n + 1) * sizeof *cpus);

            if (!p) {
                rc = -ENOMEM;
                goto out;
            }
            cpus = p;
            c = &cpus[n++];
            *c = (agent_cpu){0};
            continue;
        }
        if (!c)
            continue; /* header lines before the first processor (old ARM kernels) */
        rc = 0;
        if (strcmp(key, "vendor_id") == 0 || (strcmp(key, "CPU implementer") == 0 && !c->vendor))
            rc = set_str(&c->vendor, value);
        else if (strcmp(key, "model name") == 0 || (strcmp(key, "cpu model") == 0 && !c->model_name))
            rc = set_str(&c->model_name, value);
        else if (strcmp(key, "flags") == 0 || (strcmp(key, "Features") == 0 && !c->flags))
            rc = set_str(&c->flags, value);
        else if (strcmp(key, "cpu family") == 0 || strcmp(key, "CPU architecture") == 0)
            c->family = parse_int_field(value);
        else if (strcmp(key, "model") == 0 || strcmp(key, "CPU part") == 0)
            c->model = parse_int_field(value);
        else if (strcmp(key, "stepping") == 0 || strcmp(key, "CPU revision") == 0)
            c->stepping = parse_int_field(value);
        else if (strcmp(key, "cpu MHz") == 0)
            c->speed_mhz = (int64_t)(strtod(value, NULL) + 0.5);
        if (rc < 0)
            goto out;
    }
    for (int i = 0; i < n; i++) {
        rc = cpu_fill_empty(&cpus[i]);
        if (rc < 0)
            goto out;
    }
    *ret = cpus;
    *ret_count = n;
    return 0;
out:
    for (int i = 0; i < n; i++)
        cpu_free(&cpus[i]);
    free(cpus);
    return rc;
}

/* Without a usable /proc/cpuinfo: the online count, with no details. */
static int fallback_cpus(agent_cpu **ret, int *ret_count) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    agent_cpu *cpus;

    if (n < 1)
        n = 1;
    cpus = calloc((size_t)n, sizeof *cpus);
    if (!cpus)
        return -ENOMEM;
    for (long i = 0; i < n; i++)
        if (cpu_fill_empty(&cpus[i]) < 0) {
            for (long j = 0; j <= i; j++)
                cpu_free(&cpus[j]);
            free(cpus);
            return -ENOMEM;
        }
    *ret = cpus;
    *ret_count = (int)n;
    return 0;
}

/* --- memory, boot time ------------------------------------------------------ */

static void read_memory(int64_t *ret_total, int64_t *ret_free) {
    _cleanup_fclose_ FILE *f = NULL;
    char line[256];
    int64_t total = -1, avail = -1, mfree = -1, buffers = 0, cached = 0;

    f = fopen("/proc/meminfo", "re");
    while (f && fgets(line, sizeof line, f)) {
        char key[64];
        int64_t kb;

        if (sscanf(line, "%63[^:]: %" SCNd64, key, &kb) != 2)
            continue;
        if (strcmp(key, "MemTotal") == 0)
            total = kb * 1024;
        else if (strcmp(key, "MemAvailable") == 0)
            avail = kb * 1024;
        else if (strcmp(key, "MemFree") == 0)
            mfree = kb * 1024;
        else if (strcmp(key, "Buffers") == 0)
            buffers = kb * 1024;
        else if (strcmp(key, "Cached") == 0)
            cached = kb * 1024;
    }
    if (avail < 0 && mfree >= 0) /* kernels before 3.14 */
        avail = mfree + buffers + cached;
    if (total <= 0) {
        struct sysinfo si;

        if (sysinfo(&si) == 0) {
            total = (int64_t)si.totalram * si.mem_unit;
            if (avail < 0)
                avail = (int64_t)(si.freeram + si.bufferram) * si.mem_unit;
        }
    }
    *ret_total = total > 0 ? total : 0;
    *ret_free = avail > 0 ? avail : 0;
}

static int64_t read_boot_time(void) {
    _cleanup_fclose_ FILE *f = NULL;
    char line[256];
    struct timespec now, up;

    f = fopen("/proc/stat", "re");
    while (f && fgets(line, sizeof line, f)) {
        int64_t t;

        if (sscanf(line, "btime %" SCNd64, &t) == 1 && t > 0)
            return t;
    }
    /* Derived: the wall clock minus the time since boot. */
    if (clock_gettime(CLOCK_REALTIME, &now) == 0 && clock_gettime(CLOCK_BOOTTIME, &up) == 0)
        return (int64_t)now.tv_sec - (int64_t)up.tv_sec;
    return 0;
}

/* --- /etc/os-release -------------------------------------------------------- */

/* A shell-style value: "quoted", 'quoted' or bare, with \-escapes in "". */
static void unquote(char *s) {
    char *r = s, *w = s, q = 0;

    if (*r == '"' || *r == '\'')
        q = *r++;
    for (; *r && *r != q; r++) {
        if (q != '\'' && *r == '\\' && r[1])
            r++;
        *w++ = *r;
    }
    *w = '\0';
}

static int read_os_name(char **ret) {
    static const char *const files[] = {"/etc/os-release", "/usr/lib/os-release"};
    _cleanup_free_ char *line = NULL, *name = NULL;
    size_t cap = 0;

    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        _cleanup_fclose_ FILE *f = fopen(files[i], "re");

        if (!f)
            continue;
        while (getline(&line, &cap, f) >= 0) {
            char *s = strip(line);
            bool pretty = strncmp(s, "PRETTY_NAME=", 12) == 0;

            if (!pretty && strncmp(s, "NAME=", 5) != 0)
                continue;
            s = strchr(s, '=') + 1;
            unquote(s);
            if (!*s)
                continue;
            if (pretty)
                return set_str(ret, s);
            if (!name && !(name = strdup(s)))
                return -ENOMEM;
        }
        break; /* /usr/lib/os-release only when /etc/os-release is absent */
    }
    return set_str(ret, name ? name : "Linux");
}

/* --- the address ------------------------------------------------------------ */

/* The interface of the IPv4 default route with the lowest metric. */
static int default_route_iface(char ret[IF_NAMESIZE]) {
    _cleanup_fclose_ FILE *f = NULL;
    char line[512];
    unsigned long best_metric = ULONG_MAX;
    bool found = false;

    f = fopen("/proc/net/route", "re");
    if (!f)
        return -errno;
    /* Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT */
    while (fgets(line, sizeof line, f)) {
        char iface[IF_NAMESIZE + 1];
        unsigned long dest, gw, flags, refcnt, use, metric, mask;

        if (sscanf(line, "%16s %lx %lx %lx %lu %lu %lu %lx", iface, &dest, &gw, &flags, &refcnt, &use, &metric,
                   &mask) != 8)
            continue; /* the header */
        if (dest != 0 || mask != 0 || !(flags & RTF_UP) || strlen(iface) >= IF_NAMESIZE)
            continue;
        if (!found || metric < best_metric) {
            memcpy(ret, iface, strlen(iface) + 1);
            best_metric = metric;
            found = true;
        }
    }
    return found ? 0 : -ENOENT;
}

/* The first IPv4 address of the default-route interface, else of the first
 * up non-loopback interface, else 127.0.0.1. */
static int read_address(char **ret) {
    struct ifaddrs *ifa = NULL;
    char iface[IF_NAMESIZE] = "";
    char best[INET_ADDRSTRLEN] = "", any[INET_ADDRSTRLEN] = "";
    int rc;

    (void)default_route_iface(iface);
    if (getifaddrs(&ifa) == 0) {
        for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)i->ifa_addr;
            char text[INET_ADDRSTRLEN];

            if (!sin || sin->sin_family != AF_INET || !inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text))
                continue;
            if (!*best && *iface && strcmp(i->ifa_name, iface) == 0)
                memcpy(best, text, sizeof text);
            if (!*any && !(i->ifa_flags & IFF_LOOPBACK) && (i->ifa_flags & IFF_UP))
                memcpy(any, text, sizeof text);
        }
        freeifaddrs(ifa);
    }
    rc = set_str(ret, *best ? best : *any ? any : "127.0.0.1");
    return rc;
}

/* --- all together ------------------------------------------------------------ */

int agent_hostinfo_read(agent_hostinfo *ret) {
    agent_hostinfo h = {0};
    struct utsname u;
    char name[HOST_NAME_MAX + 1];
    int rc;

    if (gethostname(name, sizeof name) < 0) {
        rc = -errno;
        goto out;
    }
    name[sizeof name - 1] = '\0';
    if (uname(&u) < 0) {
        rc = -errno;
        goto out;
    }
    rc = set_str(&h.hostname, name);
    if (rc < 0)
        goto out;
    rc = set_str(&h.kernel_release, u.release);
    if (rc < 0)
        goto out;
    rc = set_str(&h.machine, u.machine);
    if (rc < 0)
        goto out;
    rc = read_os_name(&h.os_name);
    if (rc < 0)
        goto out;
    rc = read_address(&h.address);
    if (rc < 0)
        goto out;

    rc = read_cpuinfo(&h.cpus, &h.cpu_count);
    if (rc == -ENOMEM)
        goto out;
    if (rc < 0 || h.cpu_count == 0) {
        free(h.cpus);
        h.cpus = NULL;
        rc = fallback_cpus(&h.cpus, &h.cpu_count);
        if (rc < 0)
            goto out;
    }
    read_memory(&h.memory_total, &h.memory_free);
    if (asprintf(&h.boot_time, "%" PRId64, read_boot_time()) < 0) {
        h.boot_time = NULL;
        rc = -ENOMEM;
        goto out;
    }

    *ret = h;
    return 0;
out:
    agent_hostinfo_free(&h);
    return rc;
}

void agent_hostinfo_free(agent_hostinfo *h) {
    if (!h)
        return;
    free(h->hostname);
    free(h->address);
    free(h->kernel_release);
    free(h->os_name);
    free(h->machine);
    for (int i = 0; h->cpus && i < h->cpu_count; i++)
        cpu_free(&h->cpus[i]);
    free(h->cpus);
    free(h->boot_time);
    *h = (agent_hostinfo){0};
}
