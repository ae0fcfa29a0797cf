/* Local accounts: `name:crypt(3)-hash:roles` lines in a file (mode 0600), like
 * /etc/shadow. Hashes are yescrypt ($y$) via crypt_gensalt_ra. roles is a
 * comma-separated list of xapi role names ("vm-operator"); lines written
 * before roles existed have no third field (see xapi_accounts_authenticate). */
#pragma once

#include <stdbool.h>

/* Ensures the file exists with a root account. When it is missing: the root
 * password comes from password (if non-NULL and non-empty), else a random one
 * is generated and written to *ret_generated (caller frees; NULL otherwise).
 * Returns 0 or -errno. */
int xapi_accounts_ensure(const char *path, const char *password, char **ret_generated);
/* Constant-time-ish verification through crypt_r. Returns true on a match. */
bool xapi_accounts_verify(const char *path, const char *user, const char *password);
/* Checks a password. 0 on a match, with *ret_roles (if non-NULL) the account's
 * roles field (caller frees), or NULL for a line without one; -ENOENT for an
 * unknown user, -EACCES for a wrong password. */
int xapi_accounts_authenticate(const char *path, const char *user, const char *password, char **ret_roles);
/* Sets an account's password, adding the account if missing; its roles stay. */
int xapi_accounts_set(const char *path, const char *user, const char *password);
/* Adds or replaces an account with a password and roles. */
int xapi_accounts_add(const char *path, const char *user, const char *password, const char *roles);
/* Replaces the roles of an existing account (-ENOENT if none). */
int xapi_accounts_set_roles(const char *path, const char *user, const char *roles);
/* Calls fn with every account's name and roles field (NULL when the line has none), in file
 * order; stops at fn's first error. */
int xapi_accounts_list(const char *path, int (*fn)(void *ud, const char *user, const char *roles), void *ud);
/* Checks a host user's password through the PAM service (its auth and account
 * stacks). 0 on success, -EACCES when PAM says no, -EIO when PAM cannot start. */
int xapi_accounts_pam_authenticate(const char *service, const char *user, const char *password);
