/* Sessions: login against the local accounts file, validation of every
 * call's session, limits (count, per originator) and idle expiry. */
#pragma once

#include "xapi/api.h"

extern const xapi_handler xapi_session_handlers[];

/* 0 when ref names a live session (and notes it as active), else -ENOENT. */
int xapi_session_check(xapi_server *srv, const char *ref);
/* Destroys sessions idle longer than the configured timeout. */
void xapi_sessions_expire(xapi_server *srv);
/* Checks user's password (the accounts file, then PAM when configured) for a
 * caller at peer (its address as in xapi_call.peer_address; NULL: internal),
 * guessing being limited per peer and per user name (see
 * auth_parallel_per_peer in etc/xenapid.conf). 0 on a match, with the
 * account's roles (a mask of XAPI_ROLE_* bits) in *ret_roles and its subject
 * identifier in ret_sid; after auth_fail_delay_ms, -EACCES for a wrong
 * password, or -EBUSY when too many attempts from that peer or for that user
 * were in progress for this one to be checked at all. */
int xapi_session_authenticate(xapi_server *srv, const char *peer, const char *user, const char *password,
                              unsigned *ret_roles, char *ret_sid, size_t sid_size);
