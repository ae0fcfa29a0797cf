/* xenapid: the XenAPI agent of a Xen host. Start-up, the main loop (signals,
 * housekeeping, watchdog) and shutdown. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/config.h"
#include "agent/log.h"
#include "agent/notify.h"
#include "agent/stats.h"
#include "network/network.h"
#include "storage/storage.h"
#include "vmops/backend.h"
#include "vmops/vmops.h"
#include "xapi/accounts.h"
#include "xapi/api.h"
#include "xapi/event.h"
#include "xapi/host.h"
#include "xapi/http.h"
#include "xapi/rbac.h"
#include "xapi/rrd_api.h"
#include "xapi/session.h"
#include "xapi/task.h"
#include "xapi/unsupported.h"

#define HOUSEKEEPING_SECONDS 60
/* The store cannot be opened, or start-up cannot write to it (full disk,
 * damaged or empty database): starting again would fail the same way, so
 * systemd does not (RestartPreventExitStatus= in systemd/xenapid.service). */
#define EXIT_STORE 74 /* EX_IOERR */

static void register_modules(void) {
    xapi_unsupported_register(); /* first: the modules' own handlers replace these */
    xapi_register_handlers(xapi_session_handlers);
    xapi_rbac_register();
    xapi_register_handlers(xapi_task_handlers);
    xapi_register_handlers(xapi_host_handlers);
    storage_register(); network_register();
    xapi_register_handlers(xapi_event_handlers);
    vmops_register();
    xapi_rrd_register();
}

/* First start: make sure root can log in, and say how. */
static int ensure_accounts(const agent_config *cfg) {
    const char *pw = getenv("XENAPID_ROOT_PASSWORD");
    char *generated = NULL;
    int rc;

    rc = xapi_accounts_ensure(cfg->accounts_file, pw, &generated);
    if (rc < 0)
        return agent_log_errno(LOG_ERR, rc, "cannot create the accounts file %s", cfg->accounts_file);
    if (generated) {
        /* Printed once, on stdout, so that whoever started us can read it. */
        printf("xenapid: created account 'root' with password: %s\n"
               "xenapid: (stored hashed in %s; change it with session.change_password)\n",
               generated, cfg->accounts_file);
        fflush(stdout);
        free(generated);
    }
    return 0;
}

int main(int argc, char **argv) {
    agent_config cfg = {0};
    xapi_server srv = {0};
    xapi_http *http = NULL;
    agent_stats *stats = NULL;
    sigset_t sigs;
    uint64_t watchdog_usec;
    int64_t next_housekeeping;
    struct timespec t0;
    char status[768];
    int exit_status = EXIT_FAILURE;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = agent_config_load(argc, argv, &cfg);
    if (rc != 0)
        return rc > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
    agent_log_open(cfg.log_target, cfg.log_level);

    /* Signals are taken synchronously by the main loop; every thread inherits the mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = xapi_store_open(cfg.state_dir, &srv.store);
    if (rc < 0) {
        if (rc == -EBUSY)
            fprintf(stderr, "xenapid: another xenapid is already running on %s\n", cfg.state_dir);
        else {
            log_error("cannot start: the store in %s cannot be used (%s); see the messages above. Not restarted "
                      "automatically: fix it, then start xenapid again",
                      cfg.state_dir, rc == -ENOSPC ? "no space left" : strerror(-rc));
            exit_status = EXIT_STORE;
        }
        goto out;
    }
    /* After the store: it makes the state directory, where the accounts file is by default. */
    rc = ensure_accounts(&cfg);
    if (rc < 0)
        goto out;
    srv.config = &cfg;
    register_modules();
    rc = xapi_dispatch_init(&srv);
    if (rc < 0)
        goto out;
    rc = xapi_rbac_init();
    if (rc < 0)
        goto out;
    rc = xapi_host_bootstrap(&srv, "4.17.0");
    if (rc < 0)
        goto out;
    rc = xapi_rbac_sync_accounts(&srv);
    if (rc < 0)
        goto out;
    rc = storage_bootstrap(&srv);
    if (rc < 0)
        goto out;
    rc = network_bootstrap(&srv);
    if (rc < 0)
        goto out;
    rc = vmops_init(&srv);
    if (rc < 0)
        goto out;
    network_vif_repair(&srv);
    rc = xapi_host_set_xen_version(&srv, srv.backend->xen_version);
    if (rc < 0)
        goto out;
    rc = xapi_tasks_init(&srv);
    if (rc < 0)
        goto out;
    rc = agent_stats_start(&srv, &stats);
    if (rc < 0)
        goto out;
    rc = xapi_http_start(&srv, cfg.listen_host, cfg.listen_port, cfg.unix_socket, &http);
    if (rc < 0)
        goto out;

    {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        char plain[300] = "", tls[300] = "";
        if (*cfg.listen_host)
            snprintf(plain, sizeof plain, " http://%s:%d", cfg.listen_host, xapi_http_port(http));
        if (*cfg.listen_tls_host)
            snprintf(tls, sizeof tls, " https://%s:%d", cfg.listen_tls_host, xapi_http_tls_port(http));
        snprintf(status, sizeof status, "serving XenAPI on%s%s%s%s (backend %s)", plain, tls,
                 *cfg.unix_socket ? " and " : "", cfg.unix_socket, cfg.backend);
        log_notice("%s, ready in %ld ms", status,
                   (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
    }
    agent_notify_ready(status);

    watchdog_usec = agent_notify_watchdog_usec();
    next_housekeeping = xapi_wall_seconds() + HOUSEKEEPING_SECONDS;
    for (;;) {
        struct timespec wait = {1, 0};
        siginfo_t si;
        int sig;

        if (watchdog_usec > 0 && watchdog_usec / 2 < 1000000) {
            wait.tv_sec = 0;
            wait.tv_nsec = (long)(watchdog_usec / 2 * 1000);
        }
        sig = sigtimedwait(&sigs, &si, &wait);
        if (sig == SIGTERM || sig == SIGINT) {
            log_notice("signal %d: shutting down", sig);
            break;
        }
        if (sig == SIGHUP)
            log_info("SIGHUP: nothing to reload; configuration is read at start");
        if (watchdog_usec > 0)
            agent_notify_watchdog();
        if (xapi_wall_seconds() >= next_housekeeping) {
            xapi_sessions_expire(&srv);
            xapi_tasks_expire(&srv);
            next_housekeeping = xapi_wall_seconds() + HOUSEKEEPING_SECONDS;
        }
    }
    agent_notify_stopping();
    srv.stopping = true;
    rc = 0;
out:
    if (rc < 0 && srv.store && xapi_store_write_error(srv.store) < 0) {
        int werr = xapi_store_write_error(srv.store);
        log_error("cannot start: what start-up found cannot be stored in %s (%s). Not restarted automatically: "
                  "%s, then start xenapid again",
                  cfg.state_dir, werr == -ENOSPC ? "no space left" : "I/O error",
                  werr == -ENOSPC ? "free some space there" : "fix the storage");
        exit_status = EXIT_STORE;
    }
    if (srv.store)
        xapi_store_wake_all(srv.store);
    xapi_http_stop(http);
    agent_stats_stop(stats); /* after the readers, before the backend goes */
    xapi_tasks_shutdown(&srv);
    vmops_shutdown(&srv);
    xapi_dispatch_free();
    xapi_store_close(srv.store);
    agent_config_free(&cfg);
    return rc < 0 ? exit_status : EXIT_SUCCESS;
}
