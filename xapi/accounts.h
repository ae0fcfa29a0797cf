/* Local accounts: `name:crypt(3)-hash` lines in a file (mode 0600), like
 * /etc/shadow. Hashes are yescrypt ($y$) via crypt_gensalt_ra. */
#pragma once

#include <stdbool.h>

/* Ensures the file exists with a root account. When it is missing: the root
 * password comes from password (if non-NULL and non-empty), else a random one
 * is generated and written to *ret_generated (caller frees; NULL otherwise).
 * Returns 0 or -errno. */
int xapi_accounts_ensure(const char *path, const char *password, char **ret_generated);
/* Constant-time-ish verification through crypt_r. Returns true on a match. */
bool xapi_accounts_verify(const char *path, const char *user, const char *password);
/* Adds or replaces an account (used by the setup script / tests). */
int xapi_accounts_set(const char *path, const char *user, const char *password);
