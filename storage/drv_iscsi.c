/* "iscsi" and "lvmoiscsi": xapi's iSCSI SRs (sm's RawISCSISR with
 * LUNperVDI, and LVHDoISCSISR) through open-iscsi's iscsiadm, run as argv
 * with the storage_io_timeout limit (storage/command.c), never a shell.
 *
 * device_config as sm takes it: target (an address or host name; of a comma
 * list the first), port (3260), targetIQN, chapuser + chappassword
 * (optional), and for lvmoiscsi SCSIid. PBD.plug makes the node record and
 * logs in; PBD.unplug logs out. The LUNs are those sysfs shows under the
 * sessions to targetIQN (storage/iscsi.c), each known by its SCSIid.
 * Several SRs may use one target (an iscsi SR and lvmoiscsi SRs on its
 * LUNs): the session is counted, and the last user logs out.
 *
 * iscsi: one VDI per LUN (location = SCSIid; sm_config LUNid, SCSIid),
 * introduced by SR.scan; LUNs are made on the target, not here, so
 * VDI.create fails as LUNperVDI's does without a free LUN (SRNoSpace).
 * lvmoiscsi: the lvm driver (storage/drv_lvm.c: VG_XenStorage-<sr uuid>,
 * LV-<vdi uuid>) on the LUN named by SCSIid.
 *
 * SR.probe answers as BaseISCSI: without targetIQN it discovers the target's
 * IQNs and fails ConfigTargetIQNMissing (96) with them as XML in the third
 * parameter; lvmoiscsi without SCSIid fails ConfigSCSIid (107) with the LUNs
 * as XML; iscsi with a targetIQN answers the LUNs' XML (sm's raw driver
 * answers the SRs it has on that IQN, which a driver here cannot see: the
 * LUNs are what a client probing wants); lvmoiscsi complete answers lvm's
 * SRlist of the LUN. A probe that had to log in logs out again. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/log.h"
#include "storage/command.h"
#include "storage/internal.h"
#include "storage/iscsi.h"
#include "storage/lvm.h"

#define ISCSI_CONNECT_TIMEOUT_MS 5000 /* sm's _testHost of the target's port */
#define ISCSI_LUN_WAIT_MS 15000       /* sm's MAX_TIMEOUT for the devices to appear after a login */
#define ISCSI_MAX_CHAP 256

/* iscsiadm's exit statuses (open-iscsi include/iscsi_err.h). */
enum {
    ISCSI_ERR_TRANS = 4,
    ISCSI_ERR_TRANS_TIMEOUT = 8,
    ISCSI_ERR_TRANS_NOT_FOUND = 12,
    ISCSI_ERR_SESS_EXISTS = 15,
    ISCSI_ERR_FATAL_LOGIN = 19,
    ISCSI_ERR_NO_OBJS_FOUND = 21,
    ISCSI_ERR_LOGIN_AUTH_FAILED = 24,
};

/* device_config, checked. */
typedef struct iscsi_conf {
    char target[256];  /* as given (an address or a host name) */
    int port;
    const char *iqn;   /* NULL when absent (probe) */
    const char *chap_user, *chap_password;
    const char *scsi_id;
} iscsi_conf;

static bool host_valid(const char *s, size_t n) {
    if (n == 0 || n > 255 || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]", s[i]))
            return false;
    return true;
}

/* device_config's keys, without I/O; with need_iqn, targetIQN is required (96). */
static int conf_parse(const xapi_value *dc, bool need_iqn, iscsi_conf *ret, storage_err *e) {
    const char *target = storage_map_get(dc, "target"), *port = storage_map_get(dc, "port");
    const char *iqn = storage_map_get(dc, "targetIQN"), *user = storage_map_get(dc, "chapuser");
    const char *pass = storage_map_get(dc, "chappassword"), *id = storage_map_get(dc, "SCSIid");
    size_t n;

    memset(ret, 0, sizeof *ret);
    if (!target || !*target)
        return storage_err_set(e, SM_ERR_CONFIG_TARGET_MISSING, EINVAL, "The request is missing the target parameter",
                               NULL);
    n = strcspn(target, ",");
    if (!host_valid(target, n) || n >= sizeof ret->target)
        return storage_err_set(e, SM_ERR_DNS, EINVAL, "Incorrect DNS name, unable to resolve.", target);
    memcpy(ret->target, target, n);
    ret->target[n] = '\0';
    ret->port = STORAGE_ISCSI_DEFAULT_PORT;
    if (port && *port) {
        char *end = NULL;
        long v;

        errno = 0;
        v = strtol(port, &end, 10);
        if (errno || *end || v < 1 || v > 65535 || port[0] == '+' || port[0] == '-' || port[0] == ' ')
            return storage_err_set(e, SM_ERR_ISCSI_PORT, EINVAL,
                                   "Incorrect value for iSCSI port, must be a number between 1 and 65535", port);
        ret->port = (int)v;
    }
    if (iqn && *iqn) {
        if (!storage_iscsi_iqn_valid(iqn))
            return storage_err_set(e, SM_ERR_INVALID_IQN, EINVAL, "The IQN provided is an invalid format", iqn);
        ret->iqn = iqn;
    } else if (need_iqn)
        return storage_err_set(e, SM_ERR_CONFIG_TARGET_IQN_MISSING, EINVAL,
                               "The request is missing or has an incorrect target IQN parameter", NULL);
    if (storage_map_get(dc, "chappassword_secret") && !pass)
        return storage_err_set(e, SM_ERR_INVALID_ARG, EINVAL, "Invalid argument",
                               "chappassword_secret is not supported: give chappassword");
    if (user && *user) {
        if (!pass || !*pass || strlen(user) > ISCSI_MAX_CHAP || strlen(pass) > ISCSI_MAX_CHAP ||
            strpbrk(user, "\n\r") || strpbrk(pass, "\n\r"))
            return storage_err_set(e, SM_ERR_INVALID_ARG, EINVAL, "Invalid argument",
                                   "chapuser needs a chappassword (each at most 256 characters, one line)");
        ret->chap_user = user;
        ret->chap_password = pass;
    }
    if (id && *id) {
        if (!storage_iscsi_scsi_id_valid(id))
            return storage_err_set(e, SM_ERR_CONFIG_SCSIID, EINVAL, "The SCSIid parameter is missing or incorrect",
                                   id);
        ret->scsi_id = id;
    }
    return 0;
}

/* The target's address as iscsiadm's -p takes it ("10.0.0.1:3260", "[fe80::1]:3260"), resolved (DNSError 140). */
static int portal_of(const iscsi_conf *c, char *ret, size_t size, storage_err *e) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    char host[256], addr[NI_MAXHOST];
    size_t n = strlen(c->target);

    /* iscsiadm and sm write IPv6 addresses in brackets */
    if (c->target[0] == '[' && n > 2 && c->target[n - 1] == ']')
        snprintf(host, sizeof host, "%.*s", (int)(n - 2), c->target + 1);
    else
        snprintf(host, sizeof host, "%s", c->target);
    if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
        return storage_err_set(e, SM_ERR_DNS, ENOENT, "Incorrect DNS name, unable to resolve.", c->target);
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof addr, NULL, 0, NI_NUMERICHOST) != 0) {
        freeaddrinfo(ai);
        return storage_err_set(e, SM_ERR_DNS, ENOENT, "Incorrect DNS name, unable to resolve.", c->target);
    }
    if (ai->ai_family == AF_INET6)
        snprintf(ret, size, "[%.64s]:%d", addr, c->port);
    else
        snprintf(ret, size, "%.64s:%d", addr, c->port);
    freeaddrinfo(ai);
    return 0;
}

/* sm's _testHost: the target's port takes a TCP connection (ISCSITarget 141 otherwise). */
static int check_reachable(const iscsi_conf *c, storage_err *e) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    char host[256], port[8];
    size_t n = strlen(c->target);
    int fd = -1, rc, soerr = 0;
    socklen_t len = sizeof soerr;

    if (c->target[0] == '[' && n > 2 && c->target[n - 1] == ']')
        snprintf(host, sizeof host, "%.*s", (int)(n - 2), c->target + 1);
    else
        snprintf(host, sizeof host, "%s", c->target);
    snprintf(port, sizeof port, "%d", c->port);
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
        return storage_err_set(e, SM_ERR_DNS, ENOENT, "Incorrect DNS name, unable to resolve.", c->target);
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    rc = fd < 0 ? -errno : 0;
    if (rc == 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        struct pollfd p = {fd, POLLOUT, 0};

        if (errno != EINPROGRESS)
            rc = -errno;
        else if (poll(&p, 1, ISCSI_CONNECT_TIMEOUT_MS) <= 0)
            rc = -ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr)
            rc = soerr ? -soerr : -errno;
    }
    freeaddrinfo(ai);
    if (fd >= 0)
        close(fd);
    if (rc < 0) {
        char detail[320];
        snprintf(detail, sizeof detail, "%s port %d: %s", c->target, c->port, strerror(-rc));
        return storage_err_set(e, SM_ERR_ISCSI_TARGET, -rc, "Unable to connect to ISCSI service on target", detail);
    }
    return 0;
}

/* Runs iscsiadm with args (NULL-terminated); its exit status in *ret_status (0: success). */
static int iscsiadm(const char *const *args, char **ret_out, char **ret_err, int *ret_status) {
    const char *argv[24];
    size_t n = 0;
    int rc;

    argv[n++] = storage_iscsiadm;
    for (size_t i = 0; args[i] && n + 1 < sizeof argv / sizeof *argv; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    rc = storage_run_status(argv, (int)storage_io_timeout * 1000, ret_out, ret_err, ret_status);
    if (rc < 0 && rc != -EIO)
        *ret_status = -1; /* did not run, or timed out */
    else if (rc < 0)
        agent_log(LOG_WARNING, "iscsiadm %s %s: exit status %d: %s", args[0], args[1] ? args[1] : "", *ret_status,
                  ret_err && *ret_err ? *ret_err : "");
    return rc;
}

/* An iscsiadm failure as sm reports it: code, with iscsiadm's last stderr line as detail. */
static int iscsiadm_fail(int rc, int status, const char *err, int code, const char *description, storage_err *e) {
    char detail[400];

    if (rc == -ETIME)
        snprintf(detail, sizeof detail, "iscsiadm timed out after %u s", storage_io_timeout);
    else if (status < 0)
        snprintf(detail, sizeof detail, "cannot run %.200s: %s", storage_iscsiadm, strerror(-rc));
    else
        snprintf(detail, sizeof detail, "code is %d: %s", status, err && *err ? err : "");
    return storage_err_set(e, code, -rc, description, detail);
}

/* Runs an iscsiadm update of the node (or discovery db) record: -n name -v value. */
static int node_update(const char *mode, const char *portal, const iscsi_conf *c, const char *name, const char *value,
                       storage_err *e) {
    const char *node[] = {"-m", mode, "-T", c->iqn, "-p", portal, "-o", "update", "-n", name, "-v", value, NULL};
    const char *disc[] = {"-m", mode, "-t", "sendtargets", "-p", portal, "-o", "update", "-n", name, "-v", value, NULL};
    char *err = NULL;
    int status, rc = iscsiadm(strcmp(mode, "node") == 0 ? node : disc, NULL, &err, &status);

    if (rc < 0)
        rc = iscsiadm_fail(rc, status, err, SM_ERR_ISCSI_LOGIN,
                           "ISCSI login failed - check access settings for the initiator on the storage, if CHAP is "
                           "used verify CHAP credentials",
                           e);
    free(err);
    return rc;
}

/* The CHAP settings of a node or discovery record. */
static int set_chap(const char *mode, const char *portal, const iscsi_conf *c, storage_err *e) {
    const char *prefix = strcmp(mode, "node") == 0 ? "node.session.auth" : "discovery.sendtargets.auth";
    char name[64];
    int rc;

    snprintf(name, sizeof name, "%s.authmethod", prefix);
    rc = node_update(mode, portal, c, name, c->chap_user ? "CHAP" : "None", e);
    if (rc == 0 && c->chap_user) {
        snprintf(name, sizeof name, "%s.username", prefix);
        rc = node_update(mode, portal, c, name, c->chap_user, e);
    }
    if (rc == 0 && c->chap_user) {
        snprintf(name, sizeof name, "%s.password", prefix);
        rc = node_update(mode, portal, c, name, c->chap_password, e);
    }
    return rc;
}

/* SendTargets discovery of the target: its portals and IQNs. */
static int discover(const iscsi_conf *c, storage_iscsi_portal **ret, size_t *ret_n, storage_err *e) {
    char portal[300], *out = NULL, *err = NULL;
    int status = 0, rc;

    rc = check_reachable(c, e);
    if (rc == 0)
        rc = portal_of(c, portal, sizeof portal, e);
    if (rc < 0)
        return rc;
    if (c->chap_user) {
        const char *make[] = {"-m", "discoverydb", "-t", "sendtargets", "-p", portal, "-o", "new", NULL};
        const char *run[] = {"-m", "discoverydb", "-t", "sendtargets", "-p", portal, "--discover", NULL};

        rc = iscsiadm(make, NULL, &err, &status);
        free(err);
        err = NULL;
        rc = set_chap("discoverydb", portal, c, e);
        if (rc == 0)
            rc = iscsiadm(run, &out, &err, &status);
        else
            goto out;
    } else {
        const char *run[] = {"-m", "discovery", "-t", "sendtargets", "-p", portal, NULL};
        rc = iscsiadm(run, &out, &err, &status);
    }
    if (rc < 0) {
        if (status == ISCSI_ERR_LOGIN_AUTH_FAILED)
            rc = iscsiadm_fail(rc, status, err, SM_ERR_ISCSI_LOGIN,
                               "ISCSI login failed - check access settings for the initiator on the storage, if CHAP "
                               "is used verify CHAP credentials",
                               e);
        else if (status == ISCSI_ERR_TRANS || status == ISCSI_ERR_TRANS_TIMEOUT)
            rc = iscsiadm_fail(rc, status, err, SM_ERR_ISCSI_TARGET, "Unable to connect to ISCSI service on target",
                               e);
        else
            rc = iscsiadm_fail(rc, status, err, SM_ERR_ISCSI_DISCOVERY, "ISCSI discovery failed", e);
        goto out;
    }
    rc = storage_iscsi_parse_discovery(out, STORAGE_ISCSI_MAX_TARGETS, ret, ret_n);
    if (rc < 0)
        rc = storage_err_set(e, SM_ERR_ISCSI_DISCOVERY, -rc, "ISCSI discovery failed",
                             rc == -E2BIG ? "too many targets" : "unexpected iscsiadm output");
out:
    free(out);
    free(err);
    return rc;
}

static int64_t now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Logs in to the target (node record made, CHAP set), unless a session is
 * there already (*ret_new false then); waits for its LUNs to show. */
static int login(const iscsi_conf *c, bool *ret_new, storage_err *e) {
    static const char login_failed[] =
        "ISCSI login failed - check access settings for the initiator on the storage, if CHAP is used verify CHAP "
        "credentials";
    char portal[300], *err = NULL;
    int status = 0, rc;

    if (storage_iscsi_session_exists(storage_iscsi_sysfs_root, c->iqn)) {
        *ret_new = false;
        return 0;
    }
    rc = check_reachable(c, e);
    if (rc == 0)
        rc = portal_of(c, portal, sizeof portal, e);
    if (rc < 0)
        return rc;
    {
        const char *make[] = {"-m", "node", "-T", c->iqn, "-p", portal, "-o", "new", NULL};
        rc = iscsiadm(make, NULL, &err, &status);
        if (rc < 0) {
            rc = iscsiadm_fail(rc, status, err, SM_ERR_ISCSI_LOGIN, login_failed, e);
            goto out;
        }
    }
    rc = set_chap("node", portal, c, e);
    if (rc < 0)
        goto out;
    free(err);
    err = NULL;
    {
        const char *in[] = {"-m", "node", "-T", c->iqn, "-p", portal, "--login", NULL};
        rc = iscsiadm(in, NULL, &err, &status);
    }
    if (rc < 0 && status == ISCSI_ERR_SESS_EXISTS)
        rc = 0;
    if (rc < 0) {
        if (status == ISCSI_ERR_TRANS || status == ISCSI_ERR_TRANS_TIMEOUT)
            rc = iscsiadm_fail(rc, status, err, SM_ERR_ISCSI_TARGET, "Unable to connect to ISCSI service on target",
                               e);
        else
            rc = iscsiadm_fail(rc, status, err, SM_ERR_ISCSI_LOGIN, login_failed, e);
        goto out;
    }
    /* The kernel scans the LUNs after the login returns. */
    for (int64_t deadline = now_ms() + ISCSI_LUN_WAIT_MS;;) {
        storage_iscsi_lun *l = NULL;
        size_t n = 0;
        bool any = storage_iscsi_find_luns(storage_iscsi_sysfs_root, c->iqn, &l, &n) == 0 && n > 0;

        storage_iscsi_luns_free(l, n);
        if (any || now_ms() >= deadline)
            break;
        usleep(200000);
    }
    if (!storage_iscsi_session_exists(storage_iscsi_sysfs_root, c->iqn))
        rc = storage_err_set(e, SM_ERR_ISCSI_DEVICE, ENODEV, "ISCSI device failed to appear", "during login");
    else
        *ret_new = true;
out:
    free(err);
    return rc;
}

/* Who uses each target's session in this daemon: plugged SRs, and probes
 * and SR operations while they run. The session goes (logout) when the last
 * one lets go, if one of them made it or an SR was plugged on it; a session
 * someone else made and only probes used stays. Calls run in I/O threads of
 * their own (storage/io.h): the table has its lock. */
typedef struct session_use {
    char iqn[224];
    unsigned n;
    bool ours;
    struct session_use *next;
} session_use;

static pthread_mutex_t uses_lock = PTHREAD_MUTEX_INITIALIZER;
static session_use *uses;

static void session_hold(const iscsi_conf *c, bool ours) {
    session_use *u;

    pthread_mutex_lock(&uses_lock);
    for (u = uses; u && strcmp(u->iqn, c->iqn) != 0; u = u->next)
        ;
    if (!u) {
        u = xapi_calloc(1, sizeof *u);
        snprintf(u->iqn, sizeof u->iqn, "%s", c->iqn);
        u->next = uses;
        uses = u;
    }
    u->n++;
    u->ours = u->ours || ours;
    pthread_mutex_unlock(&uses_lock);
}

/* One user fewer: whether the session should go now (the last user, and ours). */
static bool session_release(const iscsi_conf *c) {
    bool last = false;

    pthread_mutex_lock(&uses_lock);
    for (session_use **p = &uses; *p; p = &(*p)->next) {
        session_use *u = *p;
        if (strcmp(u->iqn, c->iqn) != 0)
            continue;
        if (--u->n == 0) {
            last = u->ours;
            *p = u->next;
            free(u);
        }
        break;
    }
    pthread_mutex_unlock(&uses_lock);
    return last;
}

static int logout(const iscsi_conf *c, storage_err *e) {
    char portal[300], *err = NULL;
    int status = 0, rc;

    rc = portal_of(c, portal, sizeof portal, e);
    if (rc < 0)
        return rc;
    {
        const char *out[] = {"-m", "node", "-T", c->iqn, "-p", portal, "--logout", NULL};
        rc = iscsiadm(out, NULL, &err, &status);
    }
    if (rc < 0 && status == ISCSI_ERR_NO_OBJS_FOUND) /* not logged in */
        rc = 0;
    if (rc < 0)
        rc = iscsiadm_fail(rc, status, err, SM_ERR_ISCSI_LOGOUT, "ISCSI logout failed", e);
    free(err);
    return rc;
}

/* Asks the kernel to look for LUNs added on the target since the login (SR.scan). */
static void rescan(const iscsi_conf *c) {
    char portal[300], *err = NULL;
    storage_err ignored = {0};
    int status;

    if (portal_of(c, portal, sizeof portal, &ignored) < 0)
        return;
    const char *args[] = {"-m", "node", "-T", c->iqn, "-p", portal, "--rescan", NULL};
    iscsiadm(args, NULL, &err, &status);
    free(err);
}

static int luns(const iscsi_conf *c, storage_iscsi_lun **ret, size_t *ret_n, storage_err *e) {
    int rc = storage_iscsi_find_luns(storage_iscsi_sysfs_root, c->iqn, ret, ret_n);

    if (rc < 0)
        return storage_err_set(e, SM_ERR_SR_SCAN, -rc, "The SR scan failed", "too many LUNs");
    return 0;
}

/* The handle's device_config (checked again: the PBD's may have been changed since). */
static int sr_conf(const storage_sr *sr, iscsi_conf *ret, storage_err *e) {
    return conf_parse(&sr->config, true, ret, e);
}

/* ---- iscsi ------------------------------------------------------------------------------------ */

static int iscsi_config_at(const xapi_value *dc, const xapi_value *sm_config, const char *sr_uuid,
                           const char *mount_root, storage_sr *ret, storage_err *e) {
    iscsi_conf c;
    int rc;

    (void)sr_uuid;
    (void)mount_root;
    rc = conf_parse(dc, true, &c, e);
    if (rc < 0)
        return rc;
    /* sm's path for a target's LUNs: one SR per target IQN and portal */
    if (asprintf(&ret->path, "/dev/iscsi/%s/%s:%d", c.iqn, c.target, c.port) < 0)
        xapi_oom();
    return 0;
}

static int iscsi_sr_attach(const storage_sr *sr, storage_err *e) {
    iscsi_conf c;
    bool fresh;
    int rc = sr_conf(sr, &c, e);

    if (rc == 0)
        rc = login(&c, &fresh, e);
    if (rc == 0) {
        session_hold(&c, true);
        agent_log(LOG_INFO, "SR %s: %s to %s on %s:%d", sr->uuid, fresh ? "logged in" : "already logged in", c.iqn,
                  c.target, c.port);
    }
    return rc;
}

/* A plugged SR lets go of its target's session: logged out if no other SR uses it. */
static int sr_session_release(const storage_sr *sr, const iscsi_conf *c, storage_err *e) {
    int rc;

    if (!session_release(c)) {
        agent_log(LOG_INFO, "SR %s: the session to %s stays: another SR uses it", sr->uuid, c->iqn);
        return 0;
    }
    rc = logout(c, e);
    if (rc == 0)
        agent_log(LOG_INFO, "SR %s: logged out of %s", sr->uuid, c->iqn);
    return rc;
}

static int iscsi_sr_detach(const storage_sr *sr, storage_err *e) {
    iscsi_conf c;
    int rc = sr_conf(sr, &c, e);

    return rc < 0 ? rc : sr_session_release(sr, &c, e);
}

static int iscsi_sr_stat(const storage_sr *sr, int64_t *ret_size, int64_t *ret_used, storage_err *e) {
    storage_iscsi_lun *l = NULL;
    int64_t size = 0;
    iscsi_conf c;
    size_t n = 0;
    int rc = sr_conf(sr, &c, e);

    if (rc == 0)
        rc = luns(&c, &l, &n, e);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        size += l[i].size;
    storage_iscsi_luns_free(l, n);
    /* every LUN is a VDI's whole: as sm, the SR is as used as it is big */
    *ret_size = size;
    *ret_used = size;
    return 0;
}

static void lun_info(const storage_iscsi_lun *l, storage_vdi_info *ret) {
    char name[64];

    memset(ret, 0, sizeof *ret);
    snprintf(name, sizeof name, "LUN%u", l->lun);
    ret->location = xapi_strdup(l->scsi_id);
    ret->name = xapi_strdup(name);
    ret->virtual_size = l->size;
    ret->physical_utilisation = l->size;
    if (asprintf(&ret->lun_id, "%u", l->lun) < 0)
        xapi_oom();
}

static int iscsi_sr_scan(const storage_sr *sr, size_t max, storage_vdi_info **ret, size_t *ret_n, storage_err *e) {
    storage_iscsi_lun *l = NULL;
    storage_vdi_info *v;
    iscsi_conf c;
    size_t n = 0;
    int rc = sr_conf(sr, &c, e);

    if (rc < 0)
        return rc;
    rescan(&c);
    rc = luns(&c, &l, &n, e);
    if (rc < 0)
        return rc;
    if (n > max) {
        storage_iscsi_luns_free(l, n);
        return storage_err_set(e, SM_ERR_SR_SCAN, E2BIG, "The SR scan failed", "too many LUNs");
    }
    v = xapi_calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        lun_info(&l[i], &v[i]);
    storage_iscsi_luns_free(l, n);
    *ret = v;
    *ret_n = n;
    return 0;
}

/* The SR's LUN with that SCSIid: 0 and *ret filled (ret->dev moved out), or -ENOENT. */
static int find_lun(const iscsi_conf *c, const char *scsi_id, storage_iscsi_lun *ret) {
    storage_iscsi_lun *l = NULL;
    size_t n = 0;
    int rc = -ENOENT;

    if (!storage_iscsi_scsi_id_valid(scsi_id) || storage_iscsi_find_luns(storage_iscsi_sysfs_root, c->iqn, &l, &n) < 0)
        return -ENOENT;
    for (size_t i = 0; i < n && rc < 0; i++)
        if (strcmp(l[i].scsi_id, scsi_id) == 0) {
            *ret = l[i];
            l[i] = (storage_iscsi_lun){0};
            rc = 0;
        }
    storage_iscsi_luns_free(l, n);
    return rc;
}

static void lun_clear(storage_iscsi_lun *l) {
    free(l->scsi_id);
    free(l->dev);
    free(l->vendor);
    free(l->serial);
}

static int iscsi_vdi_stat(const storage_sr *sr, const char *location, storage_vdi_info *ret, storage_err *e) {
    storage_iscsi_lun l;
    iscsi_conf c;
    int rc = sr_conf(sr, &c, e);

    if (rc < 0)
        return rc;
    if (find_lun(&c, location, &l) < 0)
        return storage_err_set(e, SM_ERR_VDI_UNAVAILABLE, ENOENT, "The VDI is not available", "no such LUN");
    lun_info(&l, ret);
    lun_clear(&l);
    return 0;
}

static char *iscsi_vdi_path(const storage_sr *sr, const char *location) {
    storage_iscsi_lun l;
    storage_err e = {0};
    iscsi_conf c;
    char *p = NULL;

    if (sr_conf(sr, &c, &e) < 0 || find_lun(&c, location, &l) < 0)
        return NULL;
    if (asprintf(&p, "/dev/%s", l.dev) < 0)
        xapi_oom();
    lun_clear(&l);
    return p;
}

static int iscsi_vdi_create(const storage_sr *sr, const char *location, int64_t size, storage_vdi_info *ret,
                            storage_err *e) {
    (void)sr;
    (void)location;
    (void)size;
    (void)ret;
    return storage_err_set(e, SM_ERR_SR_NO_SPACE, ENOSPC, "There is insufficient space",
                           "an iscsi SR has one VDI per LUN: make a LUN on the target, then SR.scan");
}

static int iscsi_vdi_import(const storage_sr *sr, const char *location, const char *src_path, int64_t size,
                            storage_err *e) {
    (void)src_path;
    return iscsi_vdi_create(sr, location, size, NULL, e);
}

static int iscsi_vdi_publish(const storage_sr *sr, const char *location, storage_vdi_info *ret, storage_err *e) {
    return iscsi_vdi_create(sr, location, 0, ret, e);
}

static void iscsi_vdi_discard(const storage_sr *sr, const char *location) {
    (void)sr;
    (void)location;
}

/* Logs in for a probe or an SR operation (*ret_fresh: it did), a user of the
 * session until probe_logout, which logs out if it was the last and the
 * session is ours: one this daemon made, or one a plugged SR used. */
static int probe_login(const iscsi_conf *c, bool *ret_fresh, storage_err *e) {
    int rc = login(c, ret_fresh, e);

    if (rc == 0)
        session_hold(c, *ret_fresh);
    return rc;
}

static void probe_logout(const iscsi_conf *c) {
    storage_err ignored = {0};

    if (session_release(c))
        logout(c, &ignored);
}

/* Without targetIQN: the target's IQNs, as ConfigTargetIQNMissing's stderr. */
static int probe_targets(const iscsi_conf *c, storage_err *e) {
    storage_iscsi_portal *p = NULL;
    char *xml = NULL;
    size_t n = 0;
    int rc = discover(c, &p, &n, e);

    if (rc < 0)
        return rc;
    storage_iscsi_targets_xml(p, n, c->target, c->port, &xml);
    storage_iscsi_portals_free(p, n);
    rc = storage_err_set(e, SM_ERR_CONFIG_TARGET_IQN_MISSING, EINVAL,
                         "The request is missing or has an incorrect target IQN parameter", NULL);
    snprintf(e->out, sizeof e->out, "%s", xml);
    free(xml);
    return rc;
}

/* The target's LUNs as XML (logged in for it if need be). */
static int probe_luns(const iscsi_conf *c, char **ret_xml, storage_err *e) {
    storage_iscsi_lun *l = NULL;
    size_t n = 0;
    bool fresh = false;
    int rc = probe_login(c, &fresh, e);

    if (rc < 0)
        return rc;
    rc = luns(c, &l, &n, e);
    if (rc == 0)
        storage_iscsi_luns_xml(l, n, ret_xml);
    storage_iscsi_luns_free(l, n);
    probe_logout(c);
    return rc;
}

static int iscsi_sr_probe(const xapi_value *dc, const xapi_value *sm_config, char **ret_xml, storage_err *e) {
    iscsi_conf c;
    int rc;

    (void)sm_config;
    rc = conf_parse(dc, false, &c, e);
    if (rc < 0)
        return rc;
    if (!c.iqn)
        return probe_targets(&c, e);
    return probe_luns(&c, ret_xml, e);
}

const storage_driver storage_iscsi_driver = {
    .type = "iscsi",
    .description = "iSCSI target, a raw VDI per LUN (open-iscsi)",
    .content_type = "user",
    .format = "raw",
    .block = true,
    .caps = STORAGE_CAP_SR_CREATE | STORAGE_CAP_SR_SCAN | STORAGE_CAP_VDI_CREATE,
    .sr_config_at = iscsi_config_at,
    .sr_attach = iscsi_sr_attach,
    .sr_detach = iscsi_sr_detach,
    .sr_stat = iscsi_sr_stat,
    .sr_scan = iscsi_sr_scan,
    .vdi_create = iscsi_vdi_create,
    .vdi_stat = iscsi_vdi_stat,
    .vdi_path = iscsi_vdi_path,
    .vdi_import = iscsi_vdi_import,
    .vdi_publish = iscsi_vdi_publish,
    .vdi_discard = iscsi_vdi_discard,
    .sr_probe = iscsi_sr_probe,
};

/* ---- lvmoiscsi ---------------------------------------------------------------------------------- */

static const storage_driver *const lvm = &storage_lvm_driver;

static int lvmoiscsi_config_at(const xapi_value *dc, const xapi_value *sm_config, const char *sr_uuid,
                               const char *mount_root, storage_sr *ret, storage_err *e) {
    iscsi_conf c;
    int rc;

    (void)mount_root;
    rc = conf_parse(dc, true, &c, e);
    if (rc < 0)
        return rc;
    if (!c.scsi_id)
        return storage_err_set(e, SM_ERR_CONFIG_SCSIID, EINVAL, "The SCSIid parameter is missing or incorrect", NULL);
    if (!sr_uuid || !storage_uuid_valid(sr_uuid))
        return storage_err_set(e, SM_ERR_INVALID_ARG, EINVAL, "Invalid argument", "no SR uuid");
    if (asprintf(&ret->path, "/dev/VG_XenStorage-%s", sr_uuid) < 0)
        xapi_oom();
    return 0;
}

/* Logged in (*ret_fresh: by this call), the LUN named by SCSIid found: an lvm
 * driver handle on it (path = the VG, device = the LUN's node). */
static int lvm_handle(const storage_sr *sr, storage_sr *ret, iscsi_conf *c, bool *ret_fresh, storage_err *e) {
    storage_iscsi_lun l;
    int rc = sr_conf(sr, c, e);

    if (rc == 0)
        rc = probe_login(c, ret_fresh, e);
    if (rc < 0)
        return rc;
    if (find_lun(c, c->scsi_id, &l) < 0) {
        probe_logout(c);
        return storage_err_set(e, SM_ERR_CONFIG_SCSIID, ENOENT, "The SCSIid parameter is missing or incorrect",
                               c->scsi_id);
    }
    *ret = (storage_sr){.drv = lvm, .path = xapi_strdup(sr->path)};
    snprintf(ret->uuid, sizeof ret->uuid, "%s", sr->uuid);
    if (asprintf(&ret->device, "/dev/%s", l.dev) < 0)
        xapi_oom();
    lun_clear(&l);
    return 0;
}

typedef enum lun_op { LUN_CREATE, LUN_ATTACH, LUN_DELETE } lun_op;

/* The lvm driver's SR.create, PBD.plug or SR.destroy on the LUN, logged in
 * for it; a failed create or attach, and a delete, log out again if this
 * call logged in. */
static int on_lun(const storage_sr *sr, lun_op op, char *const *locations, size_t n, storage_err *e) {
    storage_sr h = {0};
    iscsi_conf c;
    bool fresh = false;
    int rc = lvm_handle(sr, &h, &c, &fresh, e);

    if (rc < 0)
        return rc;
    if (op == LUN_CREATE)
        rc = lvm->sr_create(&h, e);
    else if (op == LUN_ATTACH)
        rc = lvm->sr_attach(&h, e);
    else
        rc = lvm->sr_delete(&h, locations, n, e);
    if (rc == 0 && op == LUN_ATTACH)
        session_hold(&c, true); /* the plugged SR's, until its detach */
    if (rc == 0 && op == LUN_CREATE)
        session_release(&c); /* the attach that follows holds it: no logout in between */
    else
        probe_logout(&c);
    storage_sr_handle_free(&h);
    return rc;
}

static int lvmoiscsi_sr_create(const storage_sr *sr, storage_err *e) {
    return on_lun(sr, LUN_CREATE, NULL, 0, e);
}

static int lvmoiscsi_sr_attach(const storage_sr *sr, storage_err *e) {
    return on_lun(sr, LUN_ATTACH, NULL, 0, e);
}

static int lvmoiscsi_sr_detach(const storage_sr *sr, storage_err *e) {
    iscsi_conf c;
    int rc = sr_conf(sr, &c, e);

    if (rc == 0 && storage_iscsi_session_exists(storage_iscsi_sysfs_root, c.iqn))
        rc = lvm->sr_detach(sr, e);
    if (rc == 0)
        rc = sr_session_release(sr, &c, e);
    return rc;
}

static int lvmoiscsi_sr_delete(const storage_sr *sr, char *const *locations, size_t n, storage_err *e) {
    return on_lun(sr, LUN_DELETE, locations, n, e);
}

/* Without SCSIid: the LUNs as ConfigSCSIid's stderr; with it, lvm's SRlist of the LUN. */
static int lvmoiscsi_sr_probe(const xapi_value *dc, const xapi_value *sm_config, char **ret_xml, storage_err *e) {
    storage_iscsi_lun l;
    iscsi_conf c;
    bool fresh = false;
    char *xml = NULL;
    int rc;

    rc = conf_parse(dc, false, &c, e);
    if (rc < 0)
        return rc;
    if (!c.iqn)
        return probe_targets(&c, e);
    if (!c.scsi_id) {
        rc = probe_luns(&c, &xml, e);
        if (rc < 0)
            return rc;
        rc = storage_err_set(e, SM_ERR_CONFIG_SCSIID, EINVAL, "The SCSIid parameter is missing or incorrect", NULL);
        snprintf(e->out, sizeof e->out, "%s", xml);
        free(xml);
        return rc;
    }
    rc = probe_login(&c, &fresh, e);
    if (rc < 0)
        return rc;
    if (find_lun(&c, c.scsi_id, &l) < 0)
        rc = storage_err_set(e, SM_ERR_CONFIG_SCSIID, ENOENT, "The SCSIid parameter is missing or incorrect",
                             c.scsi_id);
    else {
        xapi_value lvm_dc = xapi_value_struct();
        char *dev = NULL;

        if (asprintf(&dev, "/dev/%s", l.dev) < 0)
            xapi_oom();
        xapi_struct_set(&lvm_dc, "device", xapi_value_string(dev));
        rc = lvm->sr_probe(&lvm_dc, sm_config, ret_xml, e);
        xapi_value_free(&lvm_dc);
        free(dev);
        lun_clear(&l);
    }
    probe_logout(&c);
    return rc;
}

/* Once attached, the SR is the VG: the lvm driver's own calls. */
const storage_driver storage_lvmoiscsi_driver = {
    .type = "lvmoiscsi",
    .description = "LVM over iSCSI: a volume group on a LUN, raw logical volumes",
    .content_type = "user",
    STORAGE_LVM_VOLUME_OPS,
    .sr_config_at = lvmoiscsi_config_at,
    .sr_create = lvmoiscsi_sr_create,
    .sr_attach = lvmoiscsi_sr_attach,
    .sr_detach = lvmoiscsi_sr_detach,
    .sr_delete = lvmoiscsi_sr_delete,
    .sr_probe = lvmoiscsi_sr_probe,
};
