/* A read-ahead transport for the TLS sessions of libmicrohttpd's connections.
 *
 * GnuTLS reads a record with two recv() calls, its 5-byte header and then the
 * rest, so every small call over HTTPS costs one more system call than over
 * plain HTTP. This transport reads what the socket holds in one recv() into a
 * buffer of its own and hands GnuTLS the header and the body from there.
 *
 * Bytes in that buffer are invisible to poll(), and MHD 0.9.75 polls the
 * socket again once gnutls_record_recv() returned less than it asked for (it
 * reads on without polling only if its buffer came back full and
 * gnutls_record_check_pending() says more is there). So xenapid defines both
 * functions itself (see tls_readahead.c): for a session of this transport,
 * gnutls_record_recv() goes on decrypting records while whole ones are
 * buffered, and gnutls_record_check_pending() counts the buffered bytes.
 * Pipelined requests, a request split into many records, and CONNECT tunnels
 * (which poll the socket and ask check_pending first) so never wait on bytes
 * already read. Sessions of any other transport see GnuTLS's own functions. */
#pragma once

#include <gnutls/gnutls.h>

typedef struct xapi_tls_readahead xapi_tls_readahead;

/* Makes session read through a buffer from fd (its socket) and send to it
 * with sendmsg(MSG_NOSIGNAL), as GnuTLS's default transport does. Before the
 * handshake, from any thread; the session must then be used from one thread
 * at a time (MHD's thread per connection). Free it after the session's last
 * use (gnutls_deinit needs no transport). */
xapi_tls_readahead *xapi_tls_readahead_attach(gnutls_session_t session, int fd);
void xapi_tls_readahead_free(xapi_tls_readahead *ra);
