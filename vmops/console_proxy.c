/* CONNECT /console: a running guest's live console over the client's own
 * connection, as xapi's connect_console. After "200 OK" the bytes go both
 * ways unchanged: vt100 from xenconsoled's pty, RFB from the device model's
 * VNC server (whatever the backend opens, see backend.h console_open).
 *
 * The relay runs on the connection's own thread and holds no store lock: a
 * slow client only holds up its own console (the guest's output waits in the
 * backend: xenconsoled's ring, the VNC server's socket). It ends when either
 * side closes, or when the console's VM stops or moves to another domain
 * (checked every CHECK_MS, for a backend whose descriptor outlives the guest). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/log.h"
#include "vmops/backend.h"
#include "vmops/console.h"
#include "xapi/http.h"

#define RELAY_BUF (16 * 1024)
#define CHECK_MS 500

/* Bytes read from one side, on their way to the other. */
typedef struct relay_buf {
    char data[RELAY_BUF];
    size_t len, off;
} relay_buf;

static int64_t now_ms(void) {
    return xapi_now_ns() / 1000000;
}

/* Sends what is buffered for the guest: 0, or < 0 when the guest's side is gone. */
static int flush_to_guest(int fd, relay_buf *b) {
    ssize_t n;

    while (b->off < b->len) {
        n = write(fd, b->data + b->off, b->len - b->off);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        b->off += (size_t)n;
    }
    b->len = b->off = 0;
    return 0;
}

/* Sends what is buffered for the client (again with the same bytes after -EAGAIN, as TLS needs). */
static int flush_to_client(xapi_http_tunnel *t, relay_buf *b) {
    ssize_t n;

    while (b->off < b->len) {
        n = xapi_http_tunnel_send(t, b->data + b->off, b->len - b->off);
        if (n == -EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        b->off += (size_t)n;
    }
    b->len = b->off = 0;
    return 0;
}

/* Carries bytes both ways until one side ends or the console goes. */
static void relay(xapi_server *srv, const vmops_console_target *target, xapi_http_tunnel *t, int fd) {
    relay_buf *to_guest = xapi_calloc(1, sizeof *to_guest), *to_client = xapi_calloc(1, sizeof *to_client);
    int64_t checked = now_ms();
    const char *why = "the guest's console closed";
    ssize_t n;

    for (;;) {
        struct pollfd p[2] = {{.fd = xapi_http_tunnel_fd(t)}, {.fd = fd}};
        bool pending = to_guest->len == 0 && xapi_http_tunnel_pending(t);
        int ready;

        if (to_guest->len == 0)
            p[0].events |= POLLIN;
        if (to_client->len)
            p[0].events |= POLLOUT;
        if (to_client->len == 0)
            p[1].events |= POLLIN;
        if (to_guest->len)
            p[1].events |= POLLOUT;
        ready = poll(p, 2, pending ? 0 : CHECK_MS);
        if (ready < 0 && errno != EINTR) {
            why = "poll failed";
            break;
        }
        if (now_ms() - checked >= CHECK_MS) {
            if (!vmops_console_alive(srv, target)) {
                why = "the VM stopped";
                break;
            }
            checked = now_ms();
        }
        if (ready <= 0 && !pending)
            continue;
        if (to_guest->len == 0 && (pending || p[0].revents)) {
            n = xapi_http_tunnel_recv(t, to_guest->data, sizeof to_guest->data);
            if (n == 0 || (n < 0 && n != -EAGAIN)) {
                why = "the client closed";
                break;
            }
            if (n > 0)
                to_guest->len = (size_t)n;
        }
        if (flush_to_guest(fd, to_guest) < 0)
            break;
        if (to_client->len == 0 && p[1].revents) {
            n = read(fd, to_client->data, sizeof to_client->data);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                break;
            if (n > 0)
                to_client->len = (size_t)n;
        }
        if (flush_to_client(t, to_client) < 0) {
            why = "the client closed";
            break;
        }
    }
    log_debug("console %s: connection over: %s", target->ref, why);
    free(to_guest);
    free(to_client);
}

void vmops_console_connect(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep) {
    vmops_console_target target;
    vmops_backend *b = srv->backend;
    xapi_http_tunnel *t;
    char *msg = NULL;
    int fd = -1, rc;

    if (vmops_console_resolve(srv, r, rep, &target) < 0)
        return;
    rc = b->ops->console_open(b, target.vm_uuid, target.domid, target.protocol, &fd, &msg);
    if (rc == -ESRCH)
        vmops_console_reply_error(rep, 409, "VM_BAD_POWER_STATE", target.vm_ref, "running", "halted");
    else if (rc < 0) {
        log_warning("console %s of VM %s: %s", target.ref, target.vm_uuid, msg ? msg : strerror(-rc));
        /* Not the client's doing: the host runs this guest without such a console. */
        vmops_console_reply_error(rep, 503, "INTERNAL_ERROR", msg ? msg : strerror(-rc), NULL, NULL);
    }
    free(msg);
    if (rc < 0)
        return;
    t = xapi_http_req_tunnel(r);
    if (t)
        relay(srv, &target, t, fd);
    close(fd);
}
