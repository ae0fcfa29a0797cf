/* Consoles: a console record for each running VM (rfb for HVM guests, whose
 * device model serves VNC; vt100 for PV and PVH guests), and GET /console,
 * which returns what the guest printed on its text console (the backend
 * captures it in a log file). CONNECT /console: console_proxy.c. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/log.h"
#include "vmops/backend.h"
#include "vmops/config.h"
#include "vmops/console.h"
#include "xapi/http.h"
#include "xapi/session.h"

#define CONSOLE_MAX_BYTES (1 << 20) /* the newest MiB of a log */

static const xapi_class *C_console = &xapi_classes[XAPI_C_console];

/* Where a client reaches GET /console: the scheme the calling client came in
 * with (an Async worker or no caller: HTTPS when it is on, as xapi's locations
 * are), the matching listen address (the host's address when listening on
 * every address) and port, left out when it is the scheme's default. */
static char *console_location(xapi_server *srv, const xapi_obj *host, const char *ref) {
    const agent_config *cfg = srv->config;
    const char *scheme = xapi_http_caller_scheme();
    bool tls = scheme ? strcmp(scheme, "https") == 0 : *cfg->listen_tls_host != '\0';
    const char *lh;
    bool any, v6;
    int port;
    char port_text[16] = "", *loc = NULL;

    if (tls ? !*cfg->listen_tls_host : !*cfg->listen_host)
        tls = !tls; /* a UNIX socket caller when only the other one is configured */
    lh = tls ? cfg->listen_tls_host : cfg->listen_host;
    port = tls ? cfg->listen_tls_port : cfg->listen_port;
    any = strcmp(lh, "0.0.0.0") == 0 || strcmp(lh, "::") == 0;
    v6 = !any && strchr(lh, ':');
    if (any)
        lh = host && *host->fields[XAPI_F_host_address].s ? host->fields[XAPI_F_host_address].s : "127.0.0.1";
    if (port != (tls ? 443 : 80))
        snprintf(port_text, sizeof port_text, ":%d", port);
    if (asprintf(&loc, "%s://%s%s%s%s/console?ref=%s", tls ? "https" : "http", v6 ? "[" : "", lh, v6 ? "]" : "",
                 port_text, ref) < 0)
        xapi_oom();
    return loc;
}

static void console_add(xapi_server *srv, const xapi_obj *host, xapi_obj *vm, const char *protocol,
                        const char *vnc) {
    xapi_store *st = srv->store;
    xapi_obj *con = xapi_obj_create(st, C_console);
    char *loc = console_location(srv, host, con->ref);

    xapi_obj_set_string(st, con, XAPI_F_console_protocol, protocol);
    xapi_obj_set_string(st, con, XAPI_F_console_location, loc);
    xapi_obj_set_string(st, con, XAPI_F_console_VM, vm->ref);
    if (vnc) {
        xapi_value oc = xapi_value_struct();
        xapi_struct_set(&oc, "vnc", xapi_value_string(vnc));
        xapi_obj_set(st, con, XAPI_F_console_other_config, oc);
    }
    free(loc);
}

/* A PV guest has its text console (vt100); an HVM guest, as on xapi, its
 * graphical one first (rfb, other_config:vnc the VNC server's address in
 * dom0), and its text console (the PV console) after it. */
void vmops_console_ensure(xapi_server *srv, xapi_obj *vm) {
    xapi_store *st = srv->store;
    const vmops_backend *b = srv->backend;
    xapi_obj *h;
    char *vnc = NULL;

    if (vm->fields[XAPI_F_VM_consoles].n > 0)
        return;
    h = xapi_store_get_class(st, &xapi_classes[XAPI_C_host], srv->host_ref);
    if (vmops_domain_type_of(vm) == VMOPS_HVM) {
        if (b && b->ops->vnc_address)
            vnc = b->ops->vnc_address(srv->backend, vm->uuid);
        console_add(srv, h, vm, "rfb", vnc);
    }
    console_add(srv, h, vm, "vt100", NULL);
    free(vnc);
}

void vmops_console_remove(xapi_server *srv, xapi_obj *vm) {
    xapi_store *st = srv->store;
    xapi_value refs = xapi_value_copy(&vm->fields[XAPI_F_VM_consoles]);

    for (uint32_t i = 0; i < refs.n; i++) {
        xapi_obj *c = xapi_store_get_class(st, C_console, refs.items[i].s);
        if (c)
            xapi_obj_destroy(st, c);
    }
    xapi_value_free(&refs);
}

#define GUEST_CONSOLE_DIR "/var/log/xen/guest"

static const char *guest_console_dir(const agent_config *cfg) {
    if (!cfg || !cfg->guest_console_dir)
        return NULL;
    if (strcmp(cfg->guest_console_dir, "auto") == 0)
        /* sim's domids are its own, and tests run many sims at once: no shared folder */
        return strcmp(cfg->backend, "sim") == 0 ? NULL : GUEST_CONSOLE_DIR;
    return *cfg->guest_console_dir ? cfg->guest_console_dir : NULL;
}

/* The folder and its parent (/var/log/xen on a host without Xen's packages' folders). */
static int make_dir(const char *dir) {
    char *parent = NULL, *slash;
    int rc = 0;

    if (mkdir(dir, 0755) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return -errno;
    parent = xapi_strdup(dir);
    slash = strrchr(parent, '/');
    if (!slash || slash == parent) {
        rc = -ENOENT;
        goto out;
    }
    *slash = 0;
    if ((mkdir(parent, 0755) < 0 && errno != EEXIST) || (mkdir(dir, 0755) < 0 && errno != EEXIST))
        rc = -errno;
out:
    free(parent);
    return rc;
}

/* The symbolic link tmp to target, made afresh: -errno. */
static int symlink_new(const char *target, const char *tmp) {
    if (symlink(target, tmp) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    (void)unlink(tmp); /* left by a link that failed half-way */
    return symlink(target, tmp) == 0 ? 0 : -errno;
}

/* Nova's get_console_output reads the last 100 KiB of /var/log/xen/guest/console.<last_dom_id>
 * (xapi's hosts keep the logs by domid); xenconsoled names them after the domain. The link is
 * kept after the domain is gone, as the log itself is, until its domid comes again. */
void vmops_console_log_link(xapi_server *srv, const char *uuid, int domid) {
    const char *dir = guest_console_dir(srv->config);
    char *target = NULL, *link = NULL, *tmp = NULL;
    int rc;

    if (!dir || domid < 0 || !srv->backend || !srv->backend->ops->console_log_path)
        return;
    target = srv->backend->ops->console_log_path(srv->backend, uuid, domid);
    if (!target)
        goto out;
    if (asprintf(&link, "%s/console.%d", dir, domid) < 0 || asprintf(&tmp, "%s/.console.%d.new", dir, domid) < 0)
        xapi_oom();
    /* Two system calls when the folder is there (every VM.start but the
     * first): the new link beside the old one, renamed over it. */
    rc = symlink_new(target, tmp);
    if (rc == -ENOENT) {
        rc = make_dir(dir);
        if (rc < 0) {
            log_warning("console log of domain %d: cannot make %s: %s", domid, dir, strerror(-rc));
            goto out;
        }
        rc = symlink_new(target, tmp);
    }
    if (rc == 0 && rename(tmp, link) < 0)
        rc = -errno;
    if (rc < 0) {
        log_warning("console log of domain %d: cannot link %s to %s: %s", domid, link, target, strerror(-rc));
        (void)unlink(tmp);
    }
out:
    free(target);
    free(link);
    free(tmp);
}

static char *read_tail(const char *path, size_t *ret_len) {
    struct stat sb;
    char *buf = NULL;
    off_t start;
    ssize_t n;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return NULL;
    if (fstat(fd, &sb) < 0) {
        close(fd);
        return NULL;
    }
    start = sb.st_size > CONSOLE_MAX_BYTES ? sb.st_size - CONSOLE_MAX_BYTES : 0;
    buf = xapi_malloc(CONSOLE_MAX_BYTES + 1);
    while (len < CONSOLE_MAX_BYTES && (n = pread(fd, buf + len, CONSOLE_MAX_BYTES - len, start + (off_t)len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = 0;
    *ret_len = len;
    return buf;
}

void vmops_console_reply_error(xapi_http_reply *rep, unsigned status, const char *code, const char *p1,
                               const char *p2, const char *p3) {
    char *text = NULL;

    if (asprintf(&text, "%s%s%s%s%s%s%s\n", code, p1 ? " " : "", p1 ? p1 : "", p2 ? " " : "", p2 ? p2 : "",
                 p3 ? " " : "", p3 ? p3 : "") < 0)
        xapi_oom();
    xapi_http_reply_text(rep, status, text);
    free(text);
}

/* The console a ref names: a console, or a VM's (its rfb one first). Read lock held. */
static xapi_obj *console_of_ref(xapi_store *st, const char *ref, xapi_obj **ret_vm) {
    xapi_obj *con = xapi_store_get_class(st, C_console, ref), *vm, *first = NULL;
    const xapi_value *refs;

    if (con) {
        *ret_vm = xapi_store_get_class(st, &xapi_classes[XAPI_C_VM], con->fields[XAPI_F_console_VM].s);
        return con;
    }
    vm = xapi_store_get_class(st, &xapi_classes[XAPI_C_VM], ref);
    *ret_vm = vm;
    if (!vm)
        return NULL;
    refs = &vm->fields[XAPI_F_VM_consoles];
    for (uint32_t i = 0; i < refs->n; i++) {
        con = xapi_store_get_class(st, C_console, refs->items[i].s);
        if (con && strcmp(con->fields[XAPI_F_console_protocol].s, "rfb") == 0)
            return con;
        if (con && !first)
            first = con;
    }
    return first;
}

int vmops_console_resolve(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep, vmops_console_target *ret) {
    const char *ref = xapi_http_req_arg(r, "ref"), *uuid = xapi_http_req_arg(r, "uuid");
    vmops_console_target t = {.domid = -1};
    xapi_obj *con = NULL, *vm = NULL;
    xapi_value denied = {0};
    char state[32] = "";
    int rc;

    rc = xapi_http_req_authorize(r, "connect_console", XAPI_ROLE_VM_OPERATOR, &denied);
    if (rc < 0) {
        xapi_http_reply_text(rep, rc == -EPERM ? 403 : 401,
                             rc == -EPERM ? "RBAC_PERMISSION_DENIED http/connect_console\n"
                                          : "a valid session_id is needed\n");
        xapi_value_free(&denied);
        return rc;
    }
    xapi_store_rdlock(srv->store);
    if (ref)
        con = console_of_ref(srv->store, ref, &vm);
    else if (uuid) {
        con = xapi_store_get_by_uuid(srv->store, C_console, uuid);
        vm = con ? xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_VM], con->fields[XAPI_F_console_VM].s)
                 : NULL;
    }
    if (vm) {
        snprintf(t.vm_ref, sizeof t.vm_ref, "%s", vm->ref);
        memcpy(t.vm_uuid, vm->uuid, sizeof t.vm_uuid);
        t.domid = (int)vm->fields[XAPI_F_VM_domid].i;
        snprintf(state, sizeof state, "%s", vm->fields[XAPI_F_VM_power_state].s);
    }
    if (con && vm) {
        snprintf(t.ref, sizeof t.ref, "%s", con->ref);
        t.protocol = strcmp(con->fields[XAPI_F_console_protocol].s, "rfb") == 0 ? VMOPS_CONSOLE_RFB
                                                                                : VMOPS_CONSOLE_VT100;
    }
    xapi_store_rdunlock(srv->store);
    if (vm && !con) {
        for (char *p = state; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        vmops_console_reply_error(rep, 409, "VM_BAD_POWER_STATE", t.vm_ref, "running", state);
        return -ESRCH;
    }
    if (!con) {
        vmops_console_reply_error(rep, 404, "HANDLE_INVALID", "console", ref ? ref : uuid ? uuid : "", NULL);
        return -ENOENT;
    }
    *ret = t;
    return 0;
}

bool vmops_console_alive(xapi_server *srv, const vmops_console_target *t) {
    xapi_obj *con, *vm;
    bool alive;

    xapi_store_rdlock(srv->store);
    con = xapi_store_get_class(srv->store, C_console, t->ref);
    vm = con ? xapi_store_get_class(srv->store, &xapi_classes[XAPI_C_VM], t->vm_ref) : NULL;
    alive = vm && vm->fields[XAPI_F_VM_domid].i == t->domid;
    xapi_store_rdunlock(srv->store);
    return alive;
}

static void console_get(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep) {
    vmops_console_target t;
    char *path;

    if (vmops_console_resolve(srv, r, rep, &t) < 0)
        return;
    path = srv->backend->ops->console_log_path(srv->backend, t.vm_uuid, t.domid);
    rep->body = path ? read_tail(path, &rep->len) : NULL;
    free(path);
    if (!rep->body) {
        rep->body = xapi_strdup("");
        rep->len = 0;
    }
    rep->type = "text/plain; charset=utf-8";
    rep->status = 200;
}

void vmops_console_register(void) {
    xapi_http_register_stream_get("/console", console_get);
    xapi_http_register_connect("/console", vmops_console_connect);
}
