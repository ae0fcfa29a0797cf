/* Daemon configuration: built-in defaults, then the config file
 * (etc/xenapid.conf, INI-style `key = value` lines, `#` comments, optional
 * [section] headers ignored), then command-line options. */
#pragma once

#include <stdbool.h>

typedef struct agent_config {
    char *config_file;   /* NULL: none given and default absent */
    char *listen_host;   /* plain HTTP; default "127.0.0.1"; "" (with port 0): no plain HTTP listener */
    int listen_port;     /* default 8080 */
    char *listen_tls_host; /* HTTPS; default "" (none) */
    int listen_tls_port;   /* default 0 (none) */
    char *tls_certificate; /* PEM certificate chain; default "<state_dir>/xenapid-cert.pem" */
    char *tls_key;         /* PEM private key; default "<state_dir>/xenapid-key.pem" */
    char *tls_priorities;  /* GnuTLS priority string */
    char *unix_socket;   /* default "<state_dir>/xapi.sock"; "" disables */
    char *state_dir;     /* default "./var" */
    char *accounts_file; /* default "<config dir>/accounts", or "<state_dir>/accounts" when no config file */
    char *backend;       /* "sim" (default) or "libxl" */
    bool foreground;     /* default false (accepted for compatibility; the daemon never forks) */
    char *log_target;    /* "auto", "journal", "stderr" */
    int log_level;       /* syslog level, default LOG_INFO; config "log_level = debug|info|notice|warning|error" */
    int max_sessions;    /* root's sessions without an originator (xapi's anonymous pool), default 400 */
    int max_sessions_per_originator; /* root's sessions with one originator, default 500 */
    int max_sessions_per_user;       /* sessions of one non-root user name, default 500 */
    int max_sessions_total;          /* last resort over all groups, default 10000 */
    int session_idle_timeout; /* seconds, default 86400 */
    int auth_fail_delay_ms;   /* default 3000 */
    int auth_parallel_per_peer; /* password checks in progress per client address, default 4 */
    int auth_parallel_per_user; /* password checks in progress per user name, default 8 */
    int auth_queue;           /* attempts waiting for a check, per address and per user name, default 64 */
    int max_connections;      /* per listener (TCP, UNIX socket), default 1024 */
    int max_connections_per_peer; /* per client address (TCP) or uid (UNIX socket), default 128 */
    int connection_timeout;   /* idle/slow client timeout, seconds, default 30 */
    int request_timeout;      /* seconds to deliver a whole request, 0: none, default 30 */
    int upload_min_rate_kib;  /* KiB/s a streamed PUT body must keep up, default 16 */
    int max_tasks;            /* default 200 */
    int event_batch_delay_ms; /* default 50 */
    int op_wait_timeout;      /* seconds an operation waits for a busy VM, default 30 */
    int storage_io_timeout;   /* seconds a storage driver's mount/umount/showmount may run, default 60 */
    int clean_shutdown_timeout; /* seconds a guest has to honour a clean shutdown/reboot, default 1200 */
    int sim_guest_delay_ms;   /* sim backend: how long a simulated guest takes to react, default 20 */
    char *host_networking;    /* "auto" (default: with the libxl backend only), "on", "off": network/ makes host devices */
    bool register_machines;   /* running guests registered with systemd-machined, default true */
    char *hotplug_helper;     /* libxl backend: device script, "auto" (xenapid-hotplug beside the daemon), "xen", a path */
    char *console_log_dir;    /* libxl backend: where xenconsoled logs guests, default "/var/log/xen/console" */
    char *iscsiadm;           /* iscsi SRs: open-iscsi's iscsiadm, default "iscsiadm" (found on /usr/sbin:/usr/bin:/sbin:/bin) */
    char *iscsi_sysfs_root;   /* iscsi SRs: where sessions and LUNs are looked up (<root>/class/iscsi_session), default "/sys" */
    char *nfs_mount;          /* nfs SRs: mount(8), default "mount" (found on /usr/sbin:/usr/bin:/sbin:/bin) */
    char *nfs_umount;         /* nfs SRs: umount(8), default "umount" */
    char *nfs_showmount;      /* nfs SRs: showmount(8) (SR.probe without serverpath), default "showmount" */
    char *guest_console_dir;  /* console.<domid> links to those logs, as xapi keeps them; "auto", "" (off) or a dir */
    char *sr_mount_root;      /* where ext SRs without a "path" live (<root>/<sr uuid>), default "/var/run/sr-mount" */
    char *plugin_dir;         /* host.call_plugin programs, default "/etc/xapi.d/plugins" */
    char *plugin_pythonpath;  /* PYTHONPATH given to plugins, default "" (none: modules installed) */
    int plugin_timeout;       /* seconds a plugin may run, default 3600 */
    int plugin_max_output;    /* bytes of stdout a plugin may print, default 16 MiB */
    int plugin_max_running;   /* plugins running at once, default 32 */
    int plugin_queue_timeout; /* seconds a call waits for a free plugin slot, default 30 */
    char *pam_service;        /* PAM service for host users not in the accounts file; "" (default): no PAM */
    char *pam_default_role;   /* the role of host users logged in through PAM, default "read-only" */
    int stats_interval;       /* seconds between two statistics samples (the RRD step), default 5 */
    int stats_save_interval;  /* seconds between two writes of the RRD archives to state_dir/rrd, default 300 */
} agent_config;

/* Parses argv (may print usage/version and return 1 meaning "exit 0"),
 * loads the config file, applies argv over it. Returns 0, 1, or -errno
 * after printing a clear message to stderr. */
int agent_config_load(int argc, char **argv, agent_config *ret);
void agent_config_free(agent_config *c);
