/* A read-ahead transport for MHD's TLS sessions: see tls_readahead.h. */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "xapi/tls_readahead.h"
#include "xapi/value.h"

/* One TLS record at its largest (2^14 bytes of data, 256 of TLS 1.3 expansion,
 * the 5-byte header) and some: a small call's request takes one recv(), a
 * bulk upload one recv() per record instead of two. */
#define RA_SIZE (16 * 1024 + 512)

struct xapi_tls_readahead {
    gnutls_session_t session;
    int fd;
    int deferred;    /* a result of gnutls_record_recv held back behind data (see there) */
    bool has_deferred;
    size_t off, len; /* buf[off, len): read from the socket, not yet taken by GnuTLS */
    unsigned char buf[RA_SIZE];
};

/* The read-ahead transport of the session this thread serves (MHD: one thread
 * per connection), set at its first read. Only a session found here is ours:
 * the functions below never look into a transport pointer they did not set. */
static _Thread_local xapi_tls_readahead *thread_ra;

static xapi_tls_readahead *ours(gnutls_session_t session) {
    xapi_tls_readahead *ra = thread_ra;

    return ra && ra->session == session ? ra : NULL;
}

static ssize_t ra_pull(gnutls_transport_ptr_t p, void *data, size_t size) {
    xapi_tls_readahead *ra = p;
    size_t n;

    thread_ra = ra;
    if (ra->off == ra->len) {
        ssize_t r = recv(ra->fd, ra->buf, sizeof ra->buf, 0);

        if (r <= 0)
            return r; /* GnuTLS reads errno for EAGAIN and EINTR */
        ra->off = 0;
        ra->len = (size_t)r;
    }
    n = ra->len - ra->off < size ? ra->len - ra->off : size;
    memcpy(data, ra->buf + ra->off, n);
    ra->off += n;
    return (ssize_t)n;
}

static int ra_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms) {
    xapi_tls_readahead *ra = p;
    struct pollfd pfd = {.fd = ra->fd, .events = POLLIN};
    int r;

    if (ra->off < ra->len)
        return 1;
    r = poll(&pfd, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
    return r < 0 ? -1 : r;
}

static ssize_t ra_push(gnutls_transport_ptr_t p, const giovec_t *iov, int iovcnt) {
    xapi_tls_readahead *ra = p;
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};

    return sendmsg(ra->fd, &m, MSG_NOSIGNAL);
}

xapi_tls_readahead *xapi_tls_readahead_attach(gnutls_session_t session, int fd) {
    xapi_tls_readahead *ra = xapi_malloc(sizeof *ra); /* not calloc: the buffer's pages stay untouched until used */

    ra->session = session;
    ra->fd = fd;
    ra->has_deferred = false;
    ra->deferred = 0;
    ra->off = ra->len = 0;
    gnutls_transport_set_ptr(session, ra);
    gnutls_transport_set_pull_function(session, ra_pull);
    gnutls_transport_set_pull_timeout_function(session, ra_pull_timeout);
    gnutls_transport_set_vec_push_function(session, ra_push);
    return ra;
}

void xapi_tls_readahead_free(xapi_tls_readahead *ra) {
    free(ra);
}

/* ---- GnuTLS's record reading, for sessions of this transport --------------- */

typedef ssize_t (*record_recv_fn)(gnutls_session_t, void *, size_t);
typedef size_t (*check_pending_fn)(gnutls_session_t);

static record_recv_fn real_record_recv;
static check_pending_fn real_check_pending;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

static void find_real(void) {
    void *r = dlsym(RTLD_NEXT, "gnutls_record_recv"), *p = dlsym(RTLD_NEXT, "gnutls_record_check_pending");

    if (!r || !p)
        abort(); /* libgnutls is linked in: cannot happen */
    /* POSIX: a dlsym() result converts to a function pointer */
    memcpy(&real_record_recv, &r, sizeof r);
    memcpy(&real_check_pending, &p, sizeof p);
}

/* Returns the data of every whole record already read from the socket, up to
 * size, not just the first one's: MHD polls the socket next unless its buffer
 * came back full. A record still incomplete ends the run (GNUTLS_E_AGAIN: the
 * rest wakes poll()). The end of the stream or an error after some data is
 * returned by the next call; until then the socket is shut for reading, so
 * that poll() wakes for that call (MHD, like the tunnels, closes the
 * connection on either, and nothing may be read after them anyway). */
ssize_t gnutls_record_recv(gnutls_session_t session, void *data, size_t size) {
    xapi_tls_readahead *ra;
    size_t got = 0;
    ssize_t r;

    pthread_once(&real_once, find_real);
    if (!(ra = ours(session)))
        return real_record_recv(session, data, size);
    if (ra->has_deferred) {
        ra->has_deferred = false;
        return ra->deferred;
    }
    for (;;) {
        r = real_record_recv(session, (char *)data + got, size - got);
        if (r <= 0) {
            if (got == 0)
                return r;
            if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) {
                ra->deferred = (int)r;
                ra->has_deferred = true;
                (void)shutdown(ra->fd, SHUT_RD);
            }
            return (ssize_t)got;
        }
        got += (size_t)r;
        if (got == size || (ra->off == ra->len && real_check_pending(session) == 0))
            return (ssize_t)got;
    }
}

size_t gnutls_record_check_pending(gnutls_session_t session) {
    xapi_tls_readahead *ra;
    size_t n;

    pthread_once(&real_once, find_real);
    n = real_check_pending(session);
    if ((ra = ours(session)))
        n += ra->len - ra->off + ra->has_deferred;
    return n;
}
