/* Daemon configuration: built-in defaults, then the config file, then the
 * command line. See etc/xenapid.conf for the file format and every key. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "agent/config.h"

#ifndef XENAPID_VERSION
#define XENAPID_VERSION "0.1.0"
#endif

/* Used when no --config is given and it exists: running from a source tree. */
#define DEFAULT_CONFIG_FILE "./etc/xenapid.conf"

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

__attribute__((format(printf, 2, 3))) static int config_error(const char *where, const char *fmt, ...) {
    va_list ap;

    fprintf(stderr, "xenapid: %s: ", where);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -EINVAL;
}

/* --- values ---------------------------------------------------------------- */

static int parse_port(const char *s, int *ret) {
    long v = 0;

    if (!*s || strlen(s) > 5)
        return -EINVAL;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > 65535)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

/* HOST:PORT, or [IPV6]:PORT. The host is returned without brackets, as
 * getaddrinfo() wants it. */
static int parse_listen(const char *where, const char *s, char **ret_host, int *ret_port) {
    const char *host, *colon, *port;
    size_t hostlen;
    char *h = NULL;
    int p = 0;

    if (!*s) { /* no listener of this kind */
        h = strdup("");
        if (!h)
            return -ENOMEM;
        *ret_host = h;
        *ret_port = 0;
        return 0;
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (!close)
            return config_error(where, "invalid listen address '%s': missing ']'", s);
        host = s + 1;
        hostlen = (size_t)(close - host);
        if (hostlen == 0 || !memchr(host, ':', hostlen))
            return config_error(where, "invalid listen address '%s': expected an IPv6 address in brackets", s);
        if (close[1] != ':')
            return config_error(where, "invalid listen address '%s': expected [ADDRESS]:PORT", s);
        port = close + 2;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return config_error(where, "invalid listen address '%s': expected HOST:PORT", s);
        host = s;
        hostlen = (size_t)(colon - s);
        if (hostlen == 0)
            return config_error(where, "invalid listen address '%s': the host is missing", s);
        if (memchr(host, ':', hostlen))
            return config_error(where, "invalid listen address '%s': write IPv6 addresses in brackets, as [::1]:8080",
                                s);
        port = colon + 1;
    }
    if (parse_port(port, &p) < 0)
        return config_error(where, "invalid port '%s' in listen address '%s': expected 1..65535", port, s);
    h = strndup(host, hostlen);
    if (!h)
        return -ENOMEM;
    *ret_host = h;
    *ret_port = p;
    return 0;
}

static int parse_int(const char *s, int min, int max, int *ret) {
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end || v < min || v > max)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

static const struct {
    const char *name;
    int level;
} log_levels[] = {
    {"emerg", LOG_EMERG},     {"emergency", LOG_EMERG}, {"alert", LOG_ALERT}, {"crit", LOG_CRIT},
    {"critical", LOG_CRIT},   {"err", LOG_ERR},         {"error", LOG_ERR},   {"warning", LOG_WARNING},
    {"warn", LOG_WARNING},    {"notice", LOG_NOTICE},   {"info", LOG_INFO},   {"debug", LOG_DEBUG},
};

static int parse_log_level(const char *s, int *ret) {
    for (size_t i = 0; i < sizeof log_levels / sizeof log_levels[0]; i++)
        if (strcasecmp(s, log_levels[i].name) == 0) {
            *ret = log_levels[i].level;
            return 0;
        }
    return parse_int(s, LOG_EMERG, LOG_DEBUG, ret);
}

/* --- keys ------------------------------------------------------------------ */

typedef enum key_kind {
    KEY_LISTEN,     /* HOST:PORT or "" into listen_host/listen_port */
    KEY_LISTEN_TLS, /* the same into listen_tls_host/listen_tls_port */
    KEY_PATH,       /* non-empty string */
    KEY_PATH_EMPTY, /* string, "" allowed (disables) */
    KEY_CHOICE,     /* one of choices[] */
    KEY_LOG_LEVEL,
    KEY_INT, /* min..max */
    KEY_BOOL, /* true/false, yes/no, on/off, 1/0 */
} key_kind;

static const char *const backend_choices[] = {"sim", "libxl", NULL};
static const char *const host_networking_choices[] = {"auto", "on", "off", NULL};
static const char *const log_target_choices[] = {"auto", "journal", "stderr", NULL};
static const char *const role_choices[] = {"pool-admin", "pool-operator", "vm-power-admin", "vm-admin",
                                           "vm-operator", "read-only", NULL};

static const struct config_key {
    const char *name;
    key_kind kind;
    size_t offset;
    int min, max;
    const char *const *choices;
} config_keys[] = {
    {"listen", KEY_LISTEN, 0, 0, 0, NULL},
    {"listen_tls", KEY_LISTEN_TLS, 0, 0, 0, NULL},
    {"tls_certificate", KEY_PATH, offsetof(agent_config, tls_certificate), 0, 0, NULL},
    {"tls_key", KEY_PATH, offsetof(agent_config, tls_key), 0, 0, NULL},
    {"tls_priorities", KEY_PATH, offsetof(agent_config, tls_priorities), 0, 0, NULL},
    {"unix_socket", KEY_PATH_EMPTY, offsetof(agent_config, unix_socket), 0, 0, NULL},
    {"state_dir", KEY_PATH, offsetof(agent_config, state_dir), 0, 0, NULL},
    {"accounts_file", KEY_PATH, offsetof(agent_config, accounts_file), 0, 0, NULL},
    {"backend", KEY_CHOICE, offsetof(agent_config, backend), 0, 0, backend_choices},
    {"log_target", KEY_CHOICE, offsetof(agent_config, log_target), 0, 0, log_target_choices},
    {"log_level", KEY_LOG_LEVEL, offsetof(agent_config, log_level), 0, 0, NULL},
    {"max_sessions", KEY_INT, offsetof(agent_config, max_sessions), 1, INT_MAX, NULL},
    {"max_sessions_per_originator", KEY_INT, offsetof(agent_config, max_sessions_per_originator), 1, INT_MAX, NULL},
    {"max_sessions_per_user", KEY_INT, offsetof(agent_config, max_sessions_per_user), 1, INT_MAX, NULL},
    {"max_sessions_total", KEY_INT, offsetof(agent_config, max_sessions_total), 1, INT_MAX, NULL},
    {"session_idle_timeout", KEY_INT, offsetof(agent_config, session_idle_timeout), 1, INT_MAX, NULL},
    {"auth_fail_delay_ms", KEY_INT, offsetof(agent_config, auth_fail_delay_ms), 0, 600000, NULL},
    {"auth_parallel_per_peer", KEY_INT, offsetof(agent_config, auth_parallel_per_peer), 1, 1024, NULL},
    {"auth_parallel_per_user", KEY_INT, offsetof(agent_config, auth_parallel_per_user), 1, 1024, NULL},
    {"auth_queue", KEY_INT, offsetof(agent_config, auth_queue), 0, 65536, NULL},
    {"max_connections", KEY_INT, offsetof(agent_config, max_connections), 1, INT_MAX, NULL},
    {"max_connections_per_peer", KEY_INT, offsetof(agent_config, max_connections_per_peer), 1, INT_MAX, NULL},
    {"connection_timeout", KEY_INT, offsetof(agent_config, connection_timeout), 0, INT_MAX, NULL},
    {"request_timeout", KEY_INT, offsetof(agent_config, request_timeout), 0, 86400, NULL},
    {"upload_min_rate_kib", KEY_INT, offsetof(agent_config, upload_min_rate_kib), 0, 1048576, NULL},
    {"max_tasks", KEY_INT, offsetof(agent_config, max_tasks), 1, INT_MAX, NULL},
    {"event_batch_delay_ms", KEY_INT, offsetof(agent_config, event_batch_delay_ms), 0, 60000, NULL},
    {"op_wait_timeout", KEY_INT, offsetof(agent_config, op_wait_timeout), 0, 3600, NULL},
    {"storage_io_timeout", KEY_INT, offsetof(agent_config, storage_io_timeout), 1, 3600, NULL},
    {"clean_shutdown_timeout", KEY_INT, offsetof(agent_config, clean_shutdown_timeout), 1, 86400, NULL},
    {"sim_guest_delay_ms", KEY_INT, offsetof(agent_config, sim_guest_delay_ms), 0, 60000, NULL},
    {"host_networking", KEY_CHOICE, offsetof(agent_config, host_networking), 0, 0, host_networking_choices},
    {"register_machines", KEY_BOOL, offsetof(agent_config, register_machines), 0, 0, NULL},
    {"console_log_dir", KEY_PATH, offsetof(agent_config, console_log_dir), 0, 0, NULL},
    {"guest_console_dir", KEY_PATH_EMPTY, offsetof(agent_config, guest_console_dir), 0, 0, NULL},
    {"hotplug_helper", KEY_PATH, offsetof(agent_config, hotplug_helper), 0, 0, NULL},
    {"plugin_dir", KEY_PATH, offsetof(agent_config, plugin_dir), 0, 0, NULL},
    {"sr_mount_root", KEY_PATH, offsetof(agent_config, sr_mount_root), 0, 0, NULL},
    {"iscsiadm", KEY_PATH, offsetof(agent_config, iscsiadm), 0, 0, NULL},
    {"iscsi_sysfs_root", KEY_PATH, offsetof(agent_config, iscsi_sysfs_root), 0, 0, NULL},
    {"nfs_mount", KEY_PATH, offsetof(agent_config, nfs_mount), 0, 0, NULL},
    {"nfs_umount", KEY_PATH, offsetof(agent_config, nfs_umount), 0, 0, NULL},
    {"nfs_showmount", KEY_PATH, offsetof(agent_config, nfs_showmount), 0, 0, NULL},
    {"plugin_pythonpath", KEY_PATH_EMPTY, offsetof(agent_config, plugin_pythonpath), 0, 0, NULL},
    {"plugin_timeout", KEY_INT, offsetof(agent_config, plugin_timeout), 1, 7 * 86400, NULL},
    {"plugin_max_output", KEY_INT, offsetof(agent_config, plugin_max_output), 4096, 1 << 30, NULL},
    {"plugin_max_running", KEY_INT, offsetof(agent_config, plugin_max_running), 1, 4096, NULL},
    {"plugin_queue_timeout", KEY_INT, offsetof(agent_config, plugin_queue_timeout), 0, 3600, NULL},
    {"pam_service", KEY_PATH_EMPTY, offsetof(agent_config, pam_service), 0, 0, NULL},
    {"pam_default_role", KEY_CHOICE, offsetof(agent_config, pam_default_role), 0, 0, role_choices},
    {"stats_interval", KEY_INT, offsetof(agent_config, stats_interval), 1, 60, NULL},
    {"stats_save_interval", KEY_INT, offsetof(agent_config, stats_save_interval), 1, 86400, NULL},
};

/* "a, b or c", for messages; static storage (errors only, single-threaded start-up). */
static const char *choices_text(const char *const *choices) {
    static char buf[128];
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; choices[i] && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i == 0 ? "" : choices[i + 1] ? ", " : " or ",
                              choices[i]);
    return buf;
}

static int replace_string(char **field, const char *value) {
    char *s = strdup(value);

    if (!s)
        return -ENOMEM;
    free(*field);
    *field = s;
    return 0;
}

/* Sets key to value in c; `where` names the origin for messages ("FILE:LINE"
 * or "--option"). */
static int apply_key(agent_config *c, const char *where, const char *key, const char *value) {
    const struct config_key *k = NULL;
    char *base = (char *)c;

    for (size_t i = 0; i < sizeof config_keys / sizeof config_keys[0]; i++)
        if (strcmp(config_keys[i].name, key) == 0) {
            k = &config_keys[i];
            break;
        }
    if (!k)
        return config_error(where, "unknown key '%s'", key);

    switch (k->kind) {
    case KEY_LISTEN:
    case KEY_LISTEN_TLS: {
        bool tls = k->kind == KEY_LISTEN_TLS;
        char *host = NULL;
        int port = 0, rc;

        rc = parse_listen(where, value, &host, &port);
        if (rc < 0)
            return rc;
        free(tls ? c->listen_tls_host : c->listen_host);
        *(tls ? &c->listen_tls_host : &c->listen_host) = host;
        *(tls ? &c->listen_tls_port : &c->listen_port) = port;
        return 0;
    }
    case KEY_PATH:
        if (!*value)
            return config_error(where, "%s must not be empty", key);
        return replace_string((char **)(base + k->offset), value);
    case KEY_PATH_EMPTY:
        return replace_string((char **)(base + k->offset), value);
    case KEY_CHOICE:
        for (const char *const *ch = k->choices; *ch; ch++)
            if (strcmp(*ch, value) == 0)
                return replace_string((char **)(base + k->offset), value);
        return config_error(where, "invalid %s '%s': expected %s", key, value, choices_text(k->choices));
    case KEY_LOG_LEVEL:
        if (parse_log_level(value, (int *)(base + k->offset)) < 0)
            return config_error(where, "invalid log_level '%s': expected debug, info, notice, warning or error",
                                value);
        return 0;
    case KEY_INT:
        if (parse_int(value, k->min, k->max, (int *)(base + k->offset)) < 0)
            return config_error(where, "invalid %s '%s': expected an integer in %d..%d", key, value, k->min, k->max);
        return 0;
    case KEY_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "on") == 0 ||
            strcmp(value, "1") == 0)
            *(bool *)(base + k->offset) = true;
        else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "off") == 0 ||
                 strcmp(value, "0") == 0)
            *(bool *)(base + k->offset) = false;
        else
            return config_error(where, "invalid %s '%s': expected true or false", key, value);
        return 0;
    }
    return -EINVAL;
}

/* --- the file -------------------------------------------------------------- */

static char *strip(char *s) {
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

static int parse_file(agent_config *c, const char *path) {
    _cleanup_fclose_ FILE *f = NULL;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    int rc;

    f = fopen(path, "re");
    if (!f) {
        rc = -errno;
        fprintf(stderr, "xenapid: cannot open the config file %s: %s\n", path, strerror(-rc));
        return rc;
    }
    for (;;) {
        char where[PATH_MAX + 32];
        char *s, *eq, *key, *value;
        size_t vlen;

        errno = 0;
        if (getline(&line, &cap, f) < 0) {
            if (ferror(f)) {
                rc = errno ? -errno : -EIO;
                fprintf(stderr, "xenapid: cannot read the config file %s: %s\n", path, strerror(-rc));
                return rc;
            }
            break;
        }
        lineno++;
        snprintf(where, sizeof where, "%s:%u", path, lineno);
        s = strip(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            if (s[strlen(s) - 1] != ']')
                return config_error(where, "invalid section header '%s'", s);
            continue; /* sections are accepted and ignored */
        }
        eq = strchr(s, '=');
        if (!eq)
            return config_error(where, "expected 'key = value', got '%s'", s);
        *eq = '\0';
        key = strip(s);
        value = strip(eq + 1);
        if (!*key)
            return config_error(where, "missing key before '='");
        vlen = strlen(value);
        if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0]) {
            value[vlen - 1] = '\0';
            value++;
        }
        rc = apply_key(c, where, key, value);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* --- the command line -------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "Usage: xenapid [OPTIONS]\n"
            "The XenAPI agent of a Xen host.\n"
            "\n"
            "  -c, --config FILE       configuration file (default " DEFAULT_CONFIG_FILE " if it exists)\n"
            "  -l, --listen HOST:PORT  XML-RPC/JSON-RPC listen address (plain HTTP); IPv6 as [::1]:8080\n"
            "  -t, --listen-tls HOST:PORT  the same over HTTPS, e.g. 0.0.0.0:443\n"
            "  -s, --state-dir DIR     where the database and the local socket live\n"
            "  -u, --unix-socket PATH  the local socket (default <state-dir>/xapi.sock; xapi's is /var/lib/xcp/xapi)\n"
            "  -b, --backend sim|libxl the VM backend\n"
            "  -f, --foreground        accepted for compatibility (xenapid never forks)\n"
            "  -h, --help              show this help and exit\n"
            "  -V, --version           show the version and exit\n"
            "\n"
            "Options override the configuration file.\n");
}

typedef struct overrides {
    const char *config, *listen, *listen_tls, *state_dir, *unix_socket, *backend;
    bool foreground;
} overrides;

static int parse_args(int argc, char **argv, overrides *o) {
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},  {"listen", required_argument, NULL, 'l'},
        {"listen-tls", required_argument, NULL, 't'},
        {"state-dir", required_argument, NULL, 's'}, {"unix-socket", required_argument, NULL, 'u'},
        {"backend", required_argument, NULL, 'b'},
        {"foreground", no_argument, NULL, 'f'},     {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0},
    };
    int opt;

    optind = 0; /* full re-initialisation of GNU getopt: we may be called more than once */
    opterr = 1;
    while ((opt = getopt_long(argc, argv, "c:l:t:s:u:b:fhV", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            o->config = optarg;
            break;
        case 'l':
            o->listen = optarg;
            break;
        case 't':
            o->listen_tls = optarg;
            break;
        case 's':
            o->state_dir = optarg;
            break;
        case 'u':
            o->unix_socket = optarg;
            break;
        case 'b':
            o->backend = optarg;
            break;
        case 'f':
            o->foreground = true;
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("xenapid " XENAPID_VERSION "\n");
            return 1;
        default: /* getopt has said what is wrong */
            fprintf(stderr, "Try 'xenapid --help' for more information.\n");
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "xenapid: unexpected argument '%s'\nTry 'xenapid --help' for more information.\n",
                argv[optind]);
        return -EINVAL;
    }
    if (o->config && !*o->config) {
        fprintf(stderr, "xenapid: --config: the file name must not be empty\n");
        return -EINVAL;
    }
    return 0;
}

/* --- loading ------------------------------------------------------------------ */

static int set_defaults(agent_config *c) {
    c->listen_host = strdup("127.0.0.1");
    c->listen_port = 8080;
    c->listen_tls_host = strdup("");
    c->listen_tls_port = 0;
    /* TLS 1.2 and 1.3 only, GnuTLS's usual ("NORMAL") ciphers otherwise. */
    c->tls_priorities = strdup("NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2");
    c->state_dir = strdup("./var");
    c->backend = strdup("sim");
    c->foreground = false;
    c->log_target = strdup("auto");
    c->log_level = LOG_INFO;
    c->max_sessions = 400;
    c->max_sessions_per_originator = 500;
    c->max_sessions_per_user = 500;
    c->max_sessions_total = 10000;
    c->session_idle_timeout = 86400;
    c->auth_fail_delay_ms = 3000;
    c->auth_parallel_per_peer = 4;
    c->auth_parallel_per_user = 8;
    c->auth_queue = 64;
    c->max_connections = 1024;
    c->max_connections_per_peer = 128;
    c->connection_timeout = 30;
    c->request_timeout = 30;
    c->upload_min_rate_kib = 16;
    c->max_tasks = 200;
    c->event_batch_delay_ms = 50;
    c->op_wait_timeout = 30;
    c->storage_io_timeout = 60;
    c->clean_shutdown_timeout = 1200;
    c->sim_guest_delay_ms = 20;
    c->register_machines = true;
    c->console_log_dir = strdup("/var/log/xen/console");
    c->guest_console_dir = strdup("auto");
    c->hotplug_helper = strdup("auto");
    c->host_networking = strdup("auto");
    if (!c->host_networking || !c->listen_host || !c->listen_tls_host || !c->tls_priorities || !c->state_dir || !c->backend ||
        !c->log_target || !c->console_log_dir || !c->hotplug_helper ||
        !c->guest_console_dir)
        return -ENOMEM;
    c->plugin_dir = strdup("/etc/xapi.d/plugins");
    c->plugin_pythonpath = strdup("");
    c->plugin_timeout = 3600;
    c->plugin_max_output = 16 << 20;
    c->plugin_max_running = 32;
    c->plugin_queue_timeout = 30;
    c->stats_interval = 5;
    c->stats_save_interval = 300;
    if (!c->plugin_dir || !c->plugin_pythonpath)
        return -ENOMEM;
    c->sr_mount_root = strdup("/var/run/sr-mount");
    c->iscsiadm = strdup("iscsiadm");
    c->iscsi_sysfs_root = strdup("/sys");
    if (!c->sr_mount_root || !c->iscsiadm || !c->iscsi_sysfs_root)
        return -ENOMEM;
    c->nfs_mount = strdup("mount");
    c->nfs_umount = strdup("umount");
    c->nfs_showmount = strdup("showmount");
    if (!c->nfs_mount || !c->nfs_umount || !c->nfs_showmount)
        return -ENOMEM;
    c->pam_service = strdup("");
    c->pam_default_role = strdup("read-only");
    if (!c->pam_service || !c->pam_default_role)
        return -ENOMEM;
    return 0;
}

/* dir/name, without doubling a slash dir ends with. */
static int path_in(const char *dir, const char *name, char **ret) {
    size_t n = strlen(dir);

    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (asprintf(ret, "%.*s%s%s", (int)n, dir, n > 0 && dir[n - 1] == '/' ? "" : "/", name) < 0) {
        *ret = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* *field, unless already set: name in the state directory. */
static int default_in_state_dir(const agent_config *c, char **field, const char *name) {
    return *field ? 0 : path_in(c->state_dir, name, field);
}

/* The defaults that depend on other settings, once everything is known. */
static int derive_defaults(agent_config *c) {
    int rc;

    if (default_in_state_dir(c, &c->unix_socket, "xapi.sock") < 0 ||
        default_in_state_dir(c, &c->tls_certificate, "xenapid-cert.pem") < 0 ||
        default_in_state_dir(c, &c->tls_key, "xenapid-key.pem") < 0)
        return -ENOMEM;
    /* Never relative to the working directory: two daemons started from one
     * place with their own state directories would share it. */
    if (!c->accounts_file) {
        if (c->config_file) {
            _cleanup_free_ char *copy = strdup(c->config_file);

            if (!copy)
                return -ENOMEM;
            rc = path_in(dirname(copy), "accounts", &c->accounts_file);
        } else
            rc = path_in(c->state_dir, "accounts", &c->accounts_file);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int agent_config_load(int argc, char **argv, agent_config *ret) {
    agent_config c = {0};
    overrides o = {0};
    int rc;

    rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;

    rc = set_defaults(&c);
    if (rc < 0)
        goto out;
    if (o.config)
        c.config_file = strdup(o.config);
    else if (access(DEFAULT_CONFIG_FILE, F_OK) == 0)
        c.config_file = strdup(DEFAULT_CONFIG_FILE);
    if ((o.config || c.config_file) && !c.config_file) {
        rc = -ENOMEM;
        goto out;
    }
    if (c.config_file) {
        rc = parse_file(&c, c.config_file);
        if (rc < 0)
            goto out;
    }

    if (o.listen) {
        rc = apply_key(&c, "--listen", "listen", o.listen);
        if (rc < 0)
            goto out;
    }
    if (o.listen_tls) {
        rc = apply_key(&c, "--listen-tls", "listen_tls", o.listen_tls);
        if (rc < 0)
            goto out;
    }
    if (!*c.listen_host && !*c.listen_tls_host) {
        rc = config_error(c.config_file ? c.config_file : "xenapid",
                          "listen and listen_tls are both empty: nothing to serve the API on");
        goto out;
    }
    if (o.state_dir) {
        rc = apply_key(&c, "--state-dir", "state_dir", o.state_dir);
        if (rc < 0)
            goto out;
    }
    if (o.unix_socket) {
        rc = apply_key(&c, "--unix-socket", "unix_socket", o.unix_socket);
        if (rc < 0)
            goto out;
    }
    if (o.backend) {
        rc = apply_key(&c, "--backend", "backend", o.backend);
        if (rc < 0)
            goto out;
    }
    if (o.foreground)
        c.foreground = true;

    rc = derive_defaults(&c);
    if (rc < 0)
        goto out;

    *ret = c;
    return 0;
out:
    if (rc == -ENOMEM)
        fprintf(stderr, "xenapid: out of memory loading the configuration\n");
    agent_config_free(&c);
    return rc;
}

void agent_config_free(agent_config *c) {
    if (!c)
        return;
    free(c->config_file);
    free(c->listen_host);
    free(c->listen_tls_host);
    free(c->tls_certificate);
    free(c->tls_key);
    free(c->tls_priorities);
    free(c->unix_socket);
    free(c->state_dir);
    free(c->accounts_file);
    free(c->backend);
    free(c->log_target);
    free(c->console_log_dir);
    free(c->guest_console_dir);
    free(c->hotplug_helper);
    free(c->host_networking);
    free(c->plugin_dir);
    free(c->sr_mount_root);
    free(c->iscsiadm);
    free(c->iscsi_sysfs_root);
    free(c->nfs_mount);
    free(c->nfs_umount);
    free(c->nfs_showmount);
    free(c->plugin_pythonpath);
    free(c->pam_service);
    free(c->pam_default_role);
    *c = (agent_config){0};
}
