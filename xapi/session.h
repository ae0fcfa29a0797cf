/* Sessions: login against the local accounts file, validation of every
 * call's session, limits (count, per originator) and idle expiry. */
#pragma once

#include "xapi/api.h"

extern const xapi_handler xapi_session_handlers[];

/* 0 when ref names a live session (and notes it as active), else -ENOENT. */
int xapi_session_check(xapi_server *srv, const char *ref);
/* Destroys sessions idle longer than the configured timeout. */
void xapi_sessions_expire(xapi_server *srv);
