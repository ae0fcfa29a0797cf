/* The HTTPS listener's certificate and key: read from the configured files,
 * or, when neither file exists yet, a self-signed pair generated once (as
 * xapi makes its xapi-ssl.pem at first boot) and kept there. */
#pragma once

#include <stddef.h>

#include "agent/config.h"

typedef struct xapi_tls_identity {
    char *cert_pem; /* NUL-terminated PEM, as MHD_OPTION_HTTPS_MEM_CERT wants */
    char *key_pem;
} xapi_tls_identity;

/* Loads (or first generates) cfg->tls_certificate and cfg->tls_key and checks
 * that they are a usable pair. Returns 0 or a negative errno after logging
 * what is wrong. */
int xapi_tls_identity_load(const agent_config *cfg, xapi_tls_identity *ret);
/* Wipes the key and frees both; idempotent. */
void xapi_tls_identity_free(xapi_tls_identity *id);

/* The names the generated certificate is made for (host name, listen address
 * or, for a wildcard address, every address of this host): a self-signed
 * certificate valid XAPI_TLS_VALIDITY_DAYS from a day ago. Exposed for tests. */
#define XAPI_TLS_VALIDITY_DAYS 3650
int xapi_tls_generate(const char *listen_host, char **ret_cert_pem, char **ret_key_pem);
