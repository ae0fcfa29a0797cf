/* Unit tests: configuration (defaults, the file, command-line overrides,
 * errors with FILE:LINE, IPv6 listen addresses, the shipped etc/xenapid.conf). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/config.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static char source_dir[PATH_MAX];

/* Each test runs in its own empty temporary directory, so that no
 * ./etc/xenapid.conf is found unless the test writes one. */
typedef struct fixture {
    char dir[64];
    char oldcwd[PATH_MAX];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);

    assert_non_null(f);
    assert_non_null(getcwd(f->oldcwd, sizeof f->oldcwd));
    strcpy(f->dir, "/tmp/xenapid-test-config-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(chdir(f->dir), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    char cmd[128];

    assert_int_equal(chdir(f->oldcwd), 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *content) {
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Runs agent_config_load with stderr (and stdout) captured into *ret_err. */
static int load_captured(int argc, char **argv, agent_config *c, char **ret_err) {
    char path[] = "/tmp/xenapid-test-stderr-XXXXXX";
    int fd = mkstemp(path), saved_err, saved_out, rc;
    char *buf;
    off_t len;

    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    fflush(stdout);
    saved_err = dup(2);
    saved_out = dup(1);
    dup2(fd, 2);
    dup2(fd, 1);
    rc = agent_config_load(argc, argv, c);
    fflush(stderr);
    fflush(stdout);
    dup2(saved_err, 2);
    dup2(saved_out, 1);
    close(saved_err);
    close(saved_out);
    len = lseek(fd, 0, SEEK_END);
    buf = calloc(1, (size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, (size_t)len, 0), len);
    close(fd);
    *ret_err = buf;
    return rc;
}

static void assert_defaults_except_paths(const agent_config *c) {
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8080);
    assert_string_equal(c->listen_tls_host, "");
    assert_int_equal(c->listen_tls_port, 0);
    assert_string_equal(c->tls_priorities, "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2");
    assert_string_equal(c->state_dir, "./var");
    assert_string_equal(c->backend, "sim");
    assert_false(c->foreground);
    assert_string_equal(c->log_target, "auto");
    assert_int_equal(c->log_level, LOG_INFO);
    assert_int_equal(c->max_sessions, 400);
    assert_int_equal(c->max_sessions_per_originator, 500);
    assert_int_equal(c->max_sessions_per_user, 500);
    assert_int_equal(c->max_sessions_total, 10000);
    assert_int_equal(c->session_idle_timeout, 86400);
    assert_int_equal(c->auth_fail_delay_ms, 3000);
    assert_int_equal(c->auth_parallel_per_peer, 4);
    assert_int_equal(c->auth_parallel_per_user, 8);
    assert_int_equal(c->auth_queue, 64);
    assert_int_equal(c->max_connections, 1024);
    assert_int_equal(c->max_connections_per_peer, 128);
    assert_int_equal(c->connection_timeout, 30);
    assert_int_equal(c->request_timeout, 30);
    assert_int_equal(c->upload_min_rate_kib, 16);
    assert_int_equal(c->max_tasks, 200);
    assert_int_equal(c->event_batch_delay_ms, 50);
    assert_true(c->register_machines);
    assert_string_equal(c->console_log_dir, "/var/log/xen/console");
    assert_string_equal(c->hotplug_helper, "auto");
    assert_string_equal(c->host_networking, "auto");
    assert_string_equal(c->plugin_dir, "/etc/xapi.d/plugins");
    assert_string_equal(c->plugin_pythonpath, "");
    assert_int_equal(c->plugin_timeout, 3600);
    assert_int_equal(c->plugin_max_output, 16 << 20);
    assert_int_equal(c->plugin_max_running, 32);
    assert_int_equal(c->plugin_queue_timeout, 30);
    assert_int_equal(c->storage_io_timeout, 60);
    assert_string_equal(c->pam_service, "");
    assert_string_equal(c->pam_default_role, "read-only");
    assert_int_equal(c->stats_interval, 5);
    assert_int_equal(c->stats_save_interval, 300);
}

/* --- defaults -------------------------------------------------------------- */

static void test_defaults_without_file(void **state) {
    char *argv[] = {"xenapid"};
    agent_config c = {0};

    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_null(c.config_file);
    assert_defaults_except_paths(&c);
    assert_string_equal(c.unix_socket, "./var/xapi.sock");
    assert_string_equal(c.accounts_file, "./var/accounts"); /* in the state directory, not ./etc */
    agent_config_free(&c);
    assert_null(c.listen_host);
    agent_config_free(&c); /* idempotent */
}

static void test_default_config_file_in_cwd(void **state) {
    char *argv[] = {"xenapid"};
    agent_config c = {0};

    assert_int_equal(mkdir("etc", 0755), 0);
    write_file("etc/xenapid.conf", "listen = 0.0.0.0:9000\n");
    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_string_equal(c.config_file, "./etc/xenapid.conf");
    assert_string_equal(c.listen_host, "0.0.0.0");
    assert_int_equal(c.listen_port, 9000);
    assert_string_equal(c.accounts_file, "./etc/accounts");
    agent_config_free(&c);
}

static void test_accounts_default_follows_config_dir(void **state) {
    char *argv1[] = {"xenapid", "--config", "a/b/x.conf"};
    char *argv2[] = {"xenapid", "-c", "x.conf"};
    agent_config c = {0};

    assert_int_equal(mkdir("a", 0755), 0);
    assert_int_equal(mkdir("a/b", 0755), 0);
    write_file("a/b/x.conf", "# nothing\n");
    write_file("x.conf", "\n");
    assert_int_equal(agent_config_load(ARGC(argv1), argv1, &c), 0);
    assert_string_equal(c.config_file, "a/b/x.conf");
    assert_string_equal(c.accounts_file, "a/b/accounts");
    agent_config_free(&c);
    assert_int_equal(agent_config_load(ARGC(argv2), argv2, &c), 0);
    assert_string_equal(c.accounts_file, "./accounts");
    agent_config_free(&c);
}

/* --- the file -------------------------------------------------------------- */

static void test_file_every_key(void **state) {
    char *argv[] = {"xenapid", "--config", "full.conf"};
    agent_config c = {0};

    write_file("full.conf", "# a comment\n"
                            "; another\n"
                            "\n"
                            "[xenapid]\n"
                            "  listen   =   10.0.0.1:8443  \n"
                            "unix_socket = /run/xenapid/xapi.sock\n"
                            "state_dir = \"/srv/xenapid state\"\n"
                            "accounts_file = '/etc/xenapid/accounts'\n"
                            "backend = libxl\n"
                            "log_target = journal\n"
                            "log_level = debug\n"
                            "max_sessions = 10\n"
                            "session_idle_timeout = 60\n"
                            "auth_fail_delay_ms = 0\n"
                            "max_connections = 16\n"
                            "connection_timeout = 0\n"
                            "max_sessions_per_originator = 11\n"
                            "max_sessions_per_user = 12\n"
                            "max_sessions_total = 13\n"
                            "auth_parallel_per_peer = 1\n"
                            "auth_parallel_per_user = 2\n"
                            "auth_queue = 0\n"
                            "max_connections_per_peer = 3\n"
                            "request_timeout = 0\n"
                            "upload_min_rate_kib = 0\n"
                            "max_tasks = 7\n"
                            "event_batch_delay_ms = 0\r\n"
                            "register_machines = no\n"
                            "console_log_dir = /srv/consoles\n"
                            "hotplug_helper = xen\n"
                            "host_networking = on\n"
                            "plugin_dir = /srv/plugins\n"
                            "plugin_pythonpath = /srv/python\n"
                            "plugin_timeout = 5\n"
                            "plugin_max_output = 4096\n"
                            "plugin_max_running = 2\n"
                            "plugin_queue_timeout = 0\n"
                            "storage_io_timeout = 7\n"
                            "pam_service = xenapid\n"
                            "pam_default_role = vm-operator\n"
                            "stats_interval = 1\n"
                            "stats_save_interval = 2\n"
                            "max_tasks = 8"); /* last one wins; no final newline */
    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_string_equal(c.listen_host, "10.0.0.1");
    assert_int_equal(c.listen_port, 8443);
    assert_string_equal(c.unix_socket, "/run/xenapid/xapi.sock");
    assert_string_equal(c.state_dir, "/srv/xenapid state");
    assert_string_equal(c.accounts_file, "/etc/xenapid/accounts");
    assert_string_equal(c.backend, "libxl");
    assert_string_equal(c.log_target, "journal");
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_int_equal(c.max_sessions, 10);
    assert_int_equal(c.session_idle_timeout, 60);
    assert_int_equal(c.auth_fail_delay_ms, 0);
    assert_int_equal(c.max_connections, 16);
    assert_int_equal(c.connection_timeout, 0);
    assert_int_equal(c.max_sessions_per_originator, 11);
    assert_int_equal(c.max_sessions_per_user, 12);
    assert_int_equal(c.max_sessions_total, 13);
    assert_int_equal(c.auth_parallel_per_peer, 1);
    assert_int_equal(c.auth_parallel_per_user, 2);
    assert_int_equal(c.auth_queue, 0);
    assert_int_equal(c.max_connections_per_peer, 3);
    assert_int_equal(c.request_timeout, 0);
    assert_int_equal(c.upload_min_rate_kib, 0);
    assert_int_equal(c.max_tasks, 8);
    assert_int_equal(c.event_batch_delay_ms, 0);
    assert_false(c.register_machines);
    assert_string_equal(c.console_log_dir, "/srv/consoles");
    assert_string_equal(c.hotplug_helper, "xen");
    assert_string_equal(c.host_networking, "on");
    assert_string_equal(c.plugin_dir, "/srv/plugins");
    assert_string_equal(c.plugin_pythonpath, "/srv/python");
    assert_int_equal(c.plugin_timeout, 5);
    assert_int_equal(c.plugin_max_output, 4096);
    assert_int_equal(c.plugin_max_running, 2);
    assert_int_equal(c.plugin_queue_timeout, 0);
    assert_int_equal(c.storage_io_timeout, 7);
    assert_string_equal(c.pam_service, "xenapid");
    assert_string_equal(c.pam_default_role, "vm-operator");
    assert_int_equal(c.stats_interval, 1);
    assert_int_equal(c.stats_save_interval, 2);
    agent_config_free(&c);
}

static void test_log_levels(void **state) {
    static const struct {
        const char *text;
        int level;
    } cases[] = {
        {"debug", LOG_DEBUG}, {"info", LOG_INFO},   {"notice", LOG_NOTICE}, {"warning", LOG_WARNING},
        {"warn", LOG_WARNING}, {"error", LOG_ERR},  {"ERR", LOG_ERR},       {"crit", LOG_CRIT},
        {"0", LOG_EMERG},     {"7", LOG_DEBUG},
    };
    char *argv[] = {"xenapid", "--config", "l.conf"};

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        agent_config c = {0};
        char text[64];

        snprintf(text, sizeof text, "log_level = %s\n", cases[i].text);
        write_file("l.conf", text);
        assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
        assert_int_equal(c.log_level, cases[i].level);
        agent_config_free(&c);
    }
}

static void test_unix_socket_empty_disables(void **state) {
    char *argv[] = {"xenapid", "--config", "u.conf"};
    agent_config c = {0};

    write_file("u.conf", "unix_socket = \"\"\n");
    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_string_equal(c.unix_socket, "");
    agent_config_free(&c);
    write_file("u.conf", "unix_socket =\n");
    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_string_equal(c.unix_socket, "");
    agent_config_free(&c);
}

static void test_unix_socket_follows_state_dir(void **state) {
    char *argv[] = {"xenapid", "--config", "s.conf"};
    agent_config c = {0};

    write_file("s.conf", "state_dir = /var/lib/xenapid/\n");
    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_string_equal(c.unix_socket, "/var/lib/xenapid/xapi.sock");
    agent_config_free(&c);
    write_file("s.conf", "state_dir = /\n");
    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_string_equal(c.unix_socket, "/xapi.sock");
    agent_config_free(&c);
}

/* Plain HTTP, HTTPS or both; the certificate and key default to the state dir. */
static void test_tls_listeners(void **state) {
    char *argv[] = {"xenapid", "--config", "t.conf"};
    char *argv_opt[] = {"xenapid", "--config", "t.conf", "--listen-tls", "127.0.0.9:1443"};
    agent_config c = {0};
    char *err = NULL;

    write_file("t.conf", "listen = \"\"\nlisten_tls = [::1]:8443\nstate_dir = /srv/x/\n");
    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_string_equal(c.listen_host, "");
    assert_int_equal(c.listen_port, 0);
    assert_string_equal(c.listen_tls_host, "::1");
    assert_int_equal(c.listen_tls_port, 8443);
    assert_string_equal(c.tls_certificate, "/srv/x/xenapid-cert.pem");
    assert_string_equal(c.tls_key, "/srv/x/xenapid-key.pem");
    agent_config_free(&c);

    write_file("t.conf", "listen_tls = 0.0.0.0:443\ntls_certificate = /etc/c.pem\ntls_key = /etc/k.pem\n"
                         "tls_priorities = SECURE256\n");
    assert_int_equal(agent_config_load(ARGC(argv_opt), argv_opt, &c), 0);
    assert_string_equal(c.listen_host, "127.0.0.1"); /* both at once */
    assert_int_equal(c.listen_port, 8080);
    assert_string_equal(c.listen_tls_host, "127.0.0.9");
    assert_int_equal(c.listen_tls_port, 1443);
    assert_string_equal(c.tls_certificate, "/etc/c.pem");
    assert_string_equal(c.tls_key, "/etc/k.pem");
    assert_string_equal(c.tls_priorities, "SECURE256");
    agent_config_free(&c);

    write_file("t.conf", "listen =\n");
    assert_int_equal(load_captured(ARGC(argv), argv, &c, &err), -EINVAL);
    assert_non_null(strstr(err, "nothing to serve the API on"));
    free(err);
    write_file("t.conf", "listen_tls = 127.0.0.1:0\n");
    assert_int_equal(load_captured(ARGC(argv), argv, &c, &err), -EINVAL);
    assert_non_null(strstr(err, "t.conf:1: invalid port '0'"));
    free(err);
    write_file("t.conf", "tls_key =\n");
    assert_int_equal(load_captured(ARGC(argv), argv, &c, &err), -EINVAL);
    assert_non_null(strstr(err, "tls_key must not be empty"));
    free(err);
}

/* --- command-line overrides -------------------------------------------------- */

static void test_argv_overrides_file(void **state) {
    char *argv[] = {"xenapid",     "--config",  "o.conf", "--listen",     "127.0.0.2:2000",
                    "--state-dir", "/tmp/other", "--backend", "libxl", "--foreground"};
    char *argv_short[] = {"xenapid", "-c", "o.conf", "-l", "[::1]:3000", "-s", "st", "-b", "sim", "-f"};
    char *argv_socket[] = {"xenapid", "-c", "o.conf", "--unix-socket", "/var/lib/xcp/xapi", "-s", "st"};
    agent_config c = {0};

    write_file("o.conf", "listen = 1.2.3.4:1000\n"
                         "state_dir = /from/file\n"
                         "backend = sim\n"
                         "max_tasks = 5\n");
    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_string_equal(c.listen_host, "127.0.0.2");
    assert_int_equal(c.listen_port, 2000);
    assert_string_equal(c.state_dir, "/tmp/other");
    assert_string_equal(c.unix_socket, "/tmp/other/xapi.sock"); /* derived after the override */
    assert_string_equal(c.backend, "libxl");
    assert_true(c.foreground);
    assert_int_equal(c.max_tasks, 5); /* from the file, not overridden */
    agent_config_free(&c);

    assert_int_equal(agent_config_load(ARGC(argv_short), argv_short, &c), 0);
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 3000);
    assert_string_equal(c.state_dir, "st");
    assert_string_equal(c.backend, "sim");
    assert_true(c.foreground);
    agent_config_free(&c);

    /* The packaged unit's xapi socket path, whatever state_dir is. */
    assert_int_equal(agent_config_load(ARGC(argv_socket), argv_socket, &c), 0);
    assert_string_equal(c.unix_socket, "/var/lib/xcp/xapi");
    assert_string_equal(c.state_dir, "st");
    agent_config_free(&c);
}

static void test_explicit_unix_socket_kept_over_state_dir(void **state) {
    char *argv[] = {"xenapid", "--config", "o.conf", "--state-dir", "/elsewhere"};
    agent_config c = {0};

    write_file("o.conf", "unix_socket = /run/xenapid/xapi.sock\n");
    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_string_equal(c.state_dir, "/elsewhere");
    assert_string_equal(c.unix_socket, "/run/xenapid/xapi.sock");
    agent_config_free(&c);
}

static void test_argv_without_file(void **state) {
    char *argv[] = {"xenapid", "--listen=localhost:1", "--state-dir=/x"};
    agent_config c = {0};

    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_null(c.config_file);
    assert_string_equal(c.listen_host, "localhost");
    assert_int_equal(c.listen_port, 1);
    assert_string_equal(c.accounts_file, "/x/accounts");
    assert_string_equal(c.unix_socket, "/x/xapi.sock");
    agent_config_free(&c);
    argv[2] = "--state-dir=/y//";
    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_string_equal(c.accounts_file, "/y/accounts");
    agent_config_free(&c);
}

/* --- IPv6 ------------------------------------------------------------------ */

static void test_ipv6_listen(void **state) {
    static const struct {
        const char *text, *host;
        int port;
    } cases[] = {
        {"[::1]:8080", "::1", 8080},
        {"[::]:65535", "::", 65535},
        {"[fe80::1%eth0]:443", "fe80::1%eth0", 443},
        {"[2001:db8::42]:1", "2001:db8::42", 1},
    };
    char *argv[] = {"xenapid", "--config", "v6.conf"};

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        agent_config c = {0};
        char text[128];

        snprintf(text, sizeof text, "listen = %s\n", cases[i].text);
        write_file("v6.conf", text);
        assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
        assert_string_equal(c.listen_host, cases[i].host);
        assert_int_equal(c.listen_port, cases[i].port);
        agent_config_free(&c);
    }
}

/* --- errors ------------------------------------------------------------------ */

static void test_bad_values_name_file_and_line(void **state) {
    static const struct {
        const char *content, *message;
    } cases[] = {
        {"# ok\n\nbogus = 1\n", "bad.conf:3: unknown key 'bogus'"},
        {"listen = 127.0.0.1:0\n", "bad.conf:1: invalid port '0'"},
        {"\nlisten = 127.0.0.1:65536\n", "bad.conf:2: invalid port '65536'"},
        {"listen = 127.0.0.1:http\n", "bad.conf:1: invalid port 'http'"},
        {"listen = 127.0.0.1:\n", "bad.conf:1: invalid port ''"},
        {"listen = 127.0.0.1\n", "bad.conf:1: invalid listen address '127.0.0.1'"},
        {"listen = :8080\n", "bad.conf:1: invalid listen address ':8080': the host is missing"},
        {"listen = ::1:8080\n", "bad.conf:1: invalid listen address '::1:8080': write IPv6 addresses in brackets"},
        {"listen = [::1:8080\n", "bad.conf:1: invalid listen address '[::1:8080': missing ']'"},
        {"listen = [::1]8080\n", "bad.conf:1: invalid listen address '[::1]8080'"},
        {"listen = []:8080\n", "bad.conf:1: invalid listen address '[]:8080'"},
        {"backend = sim\nbackend = xen\n", "bad.conf:2: invalid backend 'xen': expected sim or libxl"},
        {"host_networking = yes\n", "bad.conf:1: invalid host_networking 'yes': expected auto, on or off"},
        {"log_target = syslog\n", "bad.conf:1: invalid log_target 'syslog': expected auto, journal or stderr"},
        {"log_level = loud\n", "bad.conf:1: invalid log_level 'loud'"},
        {"register_machines = maybe\n", "bad.conf:1: invalid register_machines 'maybe': expected true or false"},
        {"log_level = 8\n", "bad.conf:1: invalid log_level '8'"},
        {"max_sessions = 0\n", "bad.conf:1: invalid max_sessions '0'"},
        {"max_sessions = -1\n", "bad.conf:1: invalid max_sessions '-1'"},
        {"max_sessions = 12abc\n", "bad.conf:1: invalid max_sessions '12abc'"},
        {"max_connections = 99999999999\n", "bad.conf:1: invalid max_connections '99999999999'"},
        {"session_idle_timeout =\n", "bad.conf:1: invalid session_idle_timeout ''"},
        {"auth_fail_delay_ms = -5\n", "bad.conf:1: invalid auth_fail_delay_ms '-5'"},
        {"max_sessions_per_originator = 0\n", "bad.conf:1: invalid max_sessions_per_originator '0'"},
        {"max_sessions_total = x\n", "bad.conf:1: invalid max_sessions_total 'x'"},
        {"auth_parallel_per_peer = 0\n", "bad.conf:1: invalid auth_parallel_per_peer '0'"},
        {"auth_queue = -1\n", "bad.conf:1: invalid auth_queue '-1'"},
        {"max_connections_per_peer = 0\n", "bad.conf:1: invalid max_connections_per_peer '0'"},
        {"request_timeout = 86401\n", "bad.conf:1: invalid request_timeout '86401'"},
        {"upload_min_rate_kib = -1\n", "bad.conf:1: invalid upload_min_rate_kib '-1'"},
        {"state_dir =\n", "bad.conf:1: state_dir must not be empty"},
        {"accounts_file = \"\"\n", "bad.conf:1: accounts_file must not be empty"},
        {"plugin_dir =\n", "bad.conf:1: plugin_dir must not be empty"},
        {"plugin_timeout = 0\n", "bad.conf:1: invalid plugin_timeout '0'"},
        {"plugin_max_output = 4095\n", "bad.conf:1: invalid plugin_max_output '4095'"},
        {"plugin_max_running = 0\n", "bad.conf:1: invalid plugin_max_running '0'"},
        {"plugin_queue_timeout = -1\n", "bad.conf:1: invalid plugin_queue_timeout '-1'"},
        {"stats_interval = 0\n", "bad.conf:1: invalid stats_interval '0'"},
        {"stats_interval = 61\n", "bad.conf:1: invalid stats_interval '61'"},
        {"stats_save_interval = 0\n", "bad.conf:1: invalid stats_save_interval '0'"},
        {"a\nlisten 127.0.0.1:80\n", "bad.conf:1: expected 'key = value', got 'a'"},
        {"= 3\n", "bad.conf:1: missing key"},
        {"[broken\n", "bad.conf:1: invalid section header"},
    };
    char *argv[] = {"xenapid", "--config", "bad.conf"};

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        agent_config c, before;
        char *err = NULL;

        memset(&c, 0x5a, sizeof c);
        before = c;
        write_file("bad.conf", cases[i].content);
        assert_int_equal(load_captured(ARGC(argv), argv, &c, &err), -EINVAL);
        if (!strstr(err, cases[i].message))
            fail_msg("case %zu: expected '%s' in '%s'", i, cases[i].message, err);
        assert_memory_equal(&c, &before, sizeof c); /* untouched on failure */
        free(err);
    }
}

static void test_bad_argv(void **state) {
    static const struct {
        const char *args[4];
        const char *message;
    } cases[] = {
        {{"--listen", "127.0.0.1:0"}, "--listen: invalid port '0'"},
        {{"--listen", "::1:80"}, "--listen: invalid listen address"},
        {{"--backend", "xen"}, "--backend: invalid backend 'xen'"},
        {{"--state-dir", ""}, "--state-dir: state_dir must not be empty"},
        {{"--bogus"}, "Try 'xenapid --help'"},
        {{"--listen"}, "Try 'xenapid --help'"},
        {{"extra"}, "unexpected argument 'extra'"},
        {{"--config", ""}, "--config: the file name must not be empty"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[6] = {"xenapid"};
        int argc = 1;
        agent_config c = {0};
        char *err = NULL;

        for (int j = 0; j < 4 && cases[i].args[j]; j++)
            argv[argc++] = (char *)cases[i].args[j];
        assert_int_equal(load_captured(argc, argv, &c, &err), -EINVAL);
        if (!strstr(err, cases[i].message))
            fail_msg("case %zu: expected '%s' in '%s'", i, cases[i].message, err);
        assert_null(c.listen_host);
        free(err);
    }
}

static void test_missing_config_file(void **state) {
    char *argv[] = {"xenapid", "--config", "/nonexistent/xenapid.conf"};
    char *argv_dir[] = {"xenapid", "--config", "."};
    agent_config c = {0};
    char *err = NULL;

    assert_int_equal(load_captured(ARGC(argv), argv, &c, &err), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/xenapid.conf"));
    free(err);
    assert_true(load_captured(ARGC(argv_dir), argv_dir, &c, &err) < 0);
    assert_non_null(strstr(err, "cannot read the config file ."));
    free(err);
    assert_null(c.listen_host);
}

static void test_help_and_version(void **state) {
    char *help[] = {"xenapid", "--help"};
    char *version[] = {"xenapid", "--config", "/nonexistent", "-V"};
    agent_config c = {0};
    char *out = NULL;

    assert_int_equal(load_captured(ARGC(help), help, &c, &out), 1);
    assert_non_null(strstr(out, "Usage: xenapid"));
    assert_non_null(strstr(out, "--state-dir"));
    free(out);
    /* Exits before looking at the (missing) file. */
    assert_int_equal(load_captured(ARGC(version), version, &c, &out), 1);
    assert_non_null(strstr(out, "xenapid "));
    free(out);
    assert_null(c.listen_host);
}

/* --- the shipped file ---------------------------------------------------------- */

static void shipped_path(char *buf, size_t size) {
    snprintf(buf, size, "%s/etc/xenapid.conf", source_dir);
    if (access(buf, R_OK) != 0)
        skip();
}

/* As shipped, every key is commented out: loading it gives the built-in defaults. */
static void test_shipped_config_is_the_defaults(void **state) {
    char path[PATH_MAX + 32];
    char *argv[] = {"xenapid", "--config", path};
    agent_config c = {0};

    shipped_path(path, sizeof path);
    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_defaults_except_paths(&c);
    assert_string_equal(c.unix_socket, "./var/xapi.sock");
    agent_config_free(&c);
}

/* Uncommenting every `#key = value` line must parse, cover every key, and
 * still give the defaults: the file documents what the code does. */
static void test_shipped_config_uncommented(void **state) {
    static const char *const keys[] = {
        "listen",      "unix_socket",          "state_dir",          "accounts_file",   "backend",
        "log_target",  "log_level",            "max_sessions",       "session_idle_timeout",
        "auth_fail_delay_ms", "max_connections", "connection_timeout", "max_tasks",      "event_batch_delay_ms",
        "plugin_dir",  "plugin_timeout",       "plugin_max_output",  "plugin_max_running", "plugin_queue_timeout",
        "max_sessions_per_originator", "max_sessions_per_user", "max_sessions_total", "auth_parallel_per_peer",
        "auth_parallel_per_user", "auth_queue", "max_connections_per_peer", "request_timeout", "upload_min_rate_kib",
        "tls_certificate", "tls_key", "tls_priorities",
        "stats_interval", "stats_save_interval", "register_machines",
    };
    char path[PATH_MAX + 32], line[1024];
    char *argv[] = {"xenapid", "--config", "etc/xenapid.conf"};
    bool seen[sizeof keys / sizeof keys[0]] = {false};
    agent_config c = {0};
    FILE *in, *out;

    shipped_path(path, sizeof path);
    assert_int_equal(mkdir("etc", 0755), 0);
    in = fopen(path, "r");
    out = fopen("etc/xenapid.conf", "w");
    assert_non_null(in);
    assert_non_null(out);
    while (fgets(line, sizeof line, in)) {
        size_t k = strspn(line + 1, "abcdefghijklmnopqrstuvwxyz_");

        if (line[0] == '#' && k > 0 && strncmp(line + 1 + k, " = ", 3) == 0) {
            for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
                if (strlen(keys[i]) == k && strncmp(line + 1, keys[i], k) == 0)
                    seen[i] = true;
            fputs(line + 1, out);
        } else
            fputs(line, out);
    }
    fclose(in);
    fclose(out);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!seen[i])
            fail_msg("etc/xenapid.conf does not document '%s'", keys[i]);

    assert_int_equal(agent_config_load(ARGC(argv), argv, &c), 0);
    assert_defaults_except_paths(&c);
    assert_string_equal(c.unix_socket, "./var/xapi.sock");
    assert_string_equal(c.accounts_file, "./etc/accounts");
    agent_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_without_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_config_file_in_cwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accounts_default_follows_config_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_every_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket_empty_disables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket_follows_state_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_listeners, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argv_overrides_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explicit_unix_socket_kept_over_state_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argv_without_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_listen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values_name_file_and_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_argv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_config_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_and_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shipped_config_is_the_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shipped_config_uncommented, setup, teardown),
    };
    const char *env = getenv("XENAPID_SOURCE_DIR");

    /* The source tree: from ctest's environment, else from where this file was compiled. */
    if (env && *env)
        snprintf(source_dir, sizeof source_dir, "%s", env);
    else {
        char here[PATH_MAX];
        const char *file = __FILE__, *tail = strstr(file, "tests/unit/test_config.c");

        snprintf(here, sizeof here, "%.*s", tail ? (int)(tail - file) : 0, file);
        if (!*here)
            strcpy(here, ".");
        if (!realpath(here, source_dir))
            source_dir[0] = '\0';
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
