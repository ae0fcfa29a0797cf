/* Statistics benchmark (issue 10): with N VMs running on the sim backend,
 *   1. the sampler's CPU per round (host figures from /proc and /sys, every
 *      domain's from the backend, into the RRDs): goal under 1 % of one core
 *      per 5 s round, i.e. under 50 ms of CPU a round;
 *   2. one hour of rounds (720 at 5 s, simulated time), then /rrd_updates'
 *      body for every VM and the host: time and bytes, for CloudStack's query
 *      (cf=AVERAGE, interval=60, start=now-1100) and for the whole hour at
 *      the finest archive that covers it;
 *   3. writing every archive to disk (the periodic save): time and bytes;
 *      loading them back (what a start adds).
 * Usage: rrd_bench [VMS] (default 1000). Numbers printed, not asserted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/stats.h"
#include "vmops/backend.h"
#include "xapi/api.h"
#include "xapi/rrd_db.h"
#include "xapi/store.h"

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void xport_all(const char *what, int64_t start, int64_t interval, double now) {
    xapi_rrd_xport_query q = {.start = start, .interval = interval, .all_cfs = false, .cf = XAPI_RRD_AVERAGE};
    xapi_rrd_source *src = NULL;
    xapi_buf out = XAPI_BUF_INIT;
    size_t n = 0;
    double t0, t1;
    xapi_rrd_kind k;
    const char *u;
    bool live;
    xapi_rrd *r;

    t0 = wall();
    xapi_rrd_db_lock();
    for (size_t i = 0; xapi_rrd_db_nth(i, &k, &u, &live); i++)
        n++;
    src = calloc(n + 1, sizeof *src);
    n = 0;
    for (size_t i = 0; (r = xapi_rrd_db_nth(i, &k, &u, &live)); i++) /* the host first, as with host=true */
        if (k == XAPI_RRD_HOST)
            src[n++] = (xapi_rrd_source){"host", u, r};
    for (size_t i = 0; (r = xapi_rrd_db_nth(i, &k, &u, &live)); i++)
        if (k == XAPI_RRD_VM)
            src[n++] = (xapi_rrd_source){"vm", u, r};
    xapi_rrd_xport(src, n, &q, &out);
    xapi_rrd_db_unlock();
    t1 = wall();
    printf("  /rrd_updates %-34s %7.1f ms  %9zu bytes  (%zu objects)\n", what, (t1 - t0) * 1e3, out.len, n);
    (void)now;
    free(src);
    xapi_buf_free(&out);
}

int main(int argc, char **argv) {
    int nvms = argc > 1 ? atoi(argv[1]) : 1000;
    char dir[] = "/tmp/xenapid-rrd-bench.XXXXXX";
    agent_config cfg = {0};
    xapi_server srv = {0};
    agent_stats *stats = NULL;
    vmops_backend *b = NULL;
    double t, c0, c1, w0, w1;
    int rc;

    if (!mkdtemp(dir))
        return 1;
    cfg.state_dir = dir;
    cfg.stats_interval = 5;
    cfg.stats_save_interval = 300;
    srv.config = &cfg;
    rc = xapi_store_open(dir, &srv.store);
    if (rc == 0)
        rc = vmops_sim_new(dir, 0, (int64_t)nvms * (300 << 20), &b);
    if (rc < 0) {
        fprintf(stderr, "rrd_bench: cannot set up: %s\n", strerror(-rc));
        return 1;
    }
    srv.backend = b;
    for (int i = 0; i < nvms; i++) {
        vmops_disk disk = {.devid = 0, .vdev = "xvda", .target = "", .format = "raw"};
        vmops_nic nic = {.devid = 0, .mac = "00:16:3e:00:00:01", .bridge = "xenbr0"};
        vmops_domain_config dc = {.type = VMOPS_PV, .memory_target = 256 << 20, .memory_static_max = 256 << 20,
                                  .vcpus_max = 2, .vcpus_at_startup = 2, .disks = &disk, .ndisks = 1,
                                  .nics = &nic, .nnics = 1};
        char *msg = NULL, name[32];
        int domid;

        xapi_uuid_generate(dc.uuid);
        snprintf(name, sizeof name, "bench-%d", i);
        dc.name = name;
        if (b->ops->create(b, &dc, &domid, &msg) < 0 || b->ops->unpause(b, domid, &msg) < 0) {
            fprintf(stderr, "rrd_bench: cannot create domain %d: %s\n", i, msg ? msg : "?");
            return 1;
        }
    }
    if (agent_stats_new(&srv, &stats) < 0)
        return 1;

    printf("== statistics, %d VMs on sim (2 vCPUs, 1 VIF, 1 disk each), step 5 s\n", nvms);
    t = (double)time(NULL) - 3600;
    agent_stats_round(stats, t); /* first sight: RRDs created */
    c0 = cpu_seconds();
    w0 = wall();
    for (int i = 1; i <= 720; i++)
        agent_stats_round(stats, t + 5.0 * i);
    c1 = cpu_seconds();
    w1 = wall();
    printf("  sampler: %.2f ms CPU per round (%.2f ms wall), %.3f %% of one core at one round per 5 s "
           "(goal < 1 %%: %s)\n",
           (c1 - c0) / 720 * 1e3, (w1 - w0) / 720 * 1e3, (c1 - c0) / 720 / 5 * 100,
           (c1 - c0) / 720 / 5 < 0.01 ? "met" : "MISSED");
    t += 5.0 * 720;
    xport_all("cf=AVERAGE interval=60 start=-1100", -1100, 60, t);
    xport_all("cf=AVERAGE interval=0 start=-3600", -3600, 0, t);
    xport_all("cf=AVERAGE interval=5 start=-600", -600, 5, t);
    {
        struct rusage ru;
        char cmd[sizeof dir + 32];
        w0 = wall();
        rc = xapi_rrd_db_save(NULL, NULL); /* every archive kept: the store of this bench holds no VMs */
        w1 = wall();
        snprintf(cmd, sizeof cmd, "du -sk %s/rrd", dir);
        printf("  save of every archive (temp file, fsync, rename each): %.0f ms, rc %d; on disk: ", (w1 - w0) * 1e3,
               rc);
        fflush(stdout);
        if (system(cmd) != 0)
            printf("?\n");
        getrusage(RUSAGE_SELF, &ru);
        printf("  peak RSS of this process: %ld MiB\n", ru.ru_maxrss / 1024);
        /* what a start of the daemon adds: loading every archive */
        xapi_rrd_db_close();
        w0 = wall();
        rc = xapi_rrd_db_open(dir, 5);
        w1 = wall();
        printf("  loading every archive at start: %.0f ms, rc %d\n", (w1 - w0) * 1e3, rc);
    }
    agent_stats_free(stats);
    b->ops->free(b);
    xapi_store_close(srv.store);
    {
        char cmd[sizeof dir + 16];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0)
            return 1;
    }
    return 0;
}
