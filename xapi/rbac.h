/* Roles (RBAC) as xapi has them: six static roles in a total order, one
 * permission per message (its lowercase wire name, plus "<message>/key:<key>"
 * for protected map keys), the role class serving them, the subjects that
 * hold roles, and the check of every call against the schema's roles. */
#pragma once

#include <stdint.h>

#include "xapi/api.h"

/* The role class, subject.add_to_roles..., and the subject hooks; before xapi_dispatch_init. */
void xapi_rbac_register(void);

/* "pool-admin"... for a rank below XAPI_ROLE_LOCAL_ROOT; NULL otherwise. */
const char *xapi_role_name(unsigned role);
/* The rank of a role name (case-insensitive, as xapi's role names are lowercase), or -1. */
int xapi_role_parse(const char *name);
/* A comma-separated role list ("vm-admin,read-only", blanks around names allowed) as a bit mask of ranks;
 * -EINVAL naming an unknown role. The empty list is the empty mask. */
int xapi_roles_parse(const char *list, unsigned *ret_mask);
/* The highest rank in a mask, or -1 for none. */
int xapi_roles_highest(unsigned mask);

/* Builds the permission table from the dispatcher's methods; after xapi_dispatch_init. */
int xapi_rbac_init(void);
void xapi_rbac_free(void);

/* Whether the session may call what needs role `need`; permission names the
 * call for the error (lowercase wire name). Fails err with
 * RBAC_PERMISSION_DENIED [permission, "No permission in user session. (Roles
 * with this permission: ...)"] otherwise. Reads nothing but the store's
 * session and subject objects, and only when need is above read-only. */
int xapi_rbac_check(xapi_server *srv, const char *session, unsigned need, const char *permission, xapi_value *err);
/* The same for a caller of known rank (-1: none). */
int xapi_rbac_check_rank(int rank, unsigned need, const char *permission, xapi_value *err);

/* Logins: what a session of a user who is not the local superuser carries.
 * Called inside the login's store write section, with the new session
 * object; finds or creates the user's subject (identifier sid, display name
 * uname) with the roles of mask. */
/* At start: a subject (local:NAME) for every account of the file but root, with its roles;
 * the subjects of accounts no longer there are destroyed. */
int xapi_rbac_sync_accounts(xapi_server *srv);
/* The roles of the subject with identifier sid, -ENOENT if there is none. */
int xapi_rbac_subject_roles(xapi_server *srv, const char *sid, unsigned *ret_mask);
void xapi_rbac_session_setup(xapi_server *srv, xapi_obj *session, const char *uname, const char *sid, unsigned mask);
