/* The HTTPS certificate and key: see tls.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/log.h"
#include "xapi/tls.h"
#include "xapi/value.h"

#define PEM_MAX (1024 * 1024) /* a certificate chain or key file bigger than this is not one */

static void crt_freep(gnutls_x509_crt_t *c) {
    if (*c)
        gnutls_x509_crt_deinit(*c);
}
static void privkey_freep(gnutls_x509_privkey_t *k) {
    if (*k)
        gnutls_x509_privkey_deinit(*k);
}
static void datum_freep(gnutls_datum_t *d) {
    if (d->data)
        gnutls_free(d->data);
}
#define _cleanup_(f) __attribute__((cleanup(f)))

static int tls_fail(int gerr, const char *what) {
    log_error("tls: %s: %s", what, gnutls_strerror(gerr));
    return -EIO;
}

static bool is_wildcard(const char *host) {
    return !*host || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

static int add_ip_san(gnutls_x509_crt_t crt, int family, const void *addr) {
    return gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, addr, family == AF_INET ? 4 : 16,
                                                GNUTLS_FSAN_APPEND);
}

/* Subject alternative names: this host's name and the address clients use
 * (the listen address, or every address of this host when listening on all). */
static int add_names(gnutls_x509_crt_t crt, const char *hostname, const char *listen_host) {
    struct in6_addr a6;
    struct in_addr a4;
    struct ifaddrs *ifs = NULL;
    int rc;

    rc = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, hostname, (unsigned)strlen(hostname),
                                              GNUTLS_FSAN_APPEND);
    if (rc < 0)
        return rc;
    if (inet_pton(AF_INET, listen_host, &a4) == 1 && !is_wildcard(listen_host))
        return add_ip_san(crt, AF_INET, &a4);
    if (inet_pton(AF_INET6, listen_host, &a6) == 1 && !is_wildcard(listen_host))
        return add_ip_san(crt, AF_INET6, &a6);
    if (!is_wildcard(listen_host)) /* a name: resolved at start, the clients use it too */
        return strcmp(listen_host, hostname) == 0
                   ? 0
                   : gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, listen_host,
                                                          (unsigned)strlen(listen_host), GNUTLS_FSAN_APPEND);
    if (getifaddrs(&ifs) < 0)
        return 0; /* the host name alone */
    for (struct ifaddrs *i = ifs; i && rc >= 0; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        if (i->ifa_addr->sa_family == AF_INET)
            rc = add_ip_san(crt, AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr);
        else if (i->ifa_addr->sa_family == AF_INET6 &&
                 !IN6_IS_ADDR_LINKLOCAL(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr))
            rc = add_ip_san(crt, AF_INET6, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr);
    }
    freeifaddrs(ifs);
    return rc;
}

int xapi_tls_generate(const char *listen_host, char **ret_cert_pem, char **ret_key_pem) {
    _cleanup_(crt_freep) gnutls_x509_crt_t crt = NULL;
    _cleanup_(privkey_freep) gnutls_x509_privkey_t key = NULL;
    _cleanup_(datum_freep) gnutls_datum_t cert_pem = {NULL, 0};
    _cleanup_(datum_freep) gnutls_datum_t key_pem = {NULL, 0};
    unsigned char serial[16], key_id[64];
    size_t key_id_size = sizeof key_id;
    char hostname[HOST_NAME_MAX + 1] = "localhost";
    time_t now = time(NULL);
    int rc;

    if (gethostname(hostname, sizeof hostname) < 0 || !*hostname)
        strcpy(hostname, "localhost");
    hostname[sizeof hostname - 1] = '\0';
    /* ECDSA P-256: every current client has it (Java 8+, OpenSSL, GnuTLS, Node), and a
     * handshake costs the server far less than RSA, which matters under a flood of them. */
    if ((rc = gnutls_x509_privkey_init(&key)) < 0 ||
        (rc = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1),
                                           0)) < 0)
        return tls_fail(rc, "cannot generate a key");
    if ((rc = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof serial)) < 0)
        return tls_fail(rc, "cannot make a serial number");
    serial[0] &= 0x7f; /* a positive number */
    serial[0] |= 0x01; /* of full length: no leading zero byte to strip */
    if ((rc = gnutls_x509_crt_init(&crt)) < 0 || (rc = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
        (rc = gnutls_x509_crt_set_serial(crt, serial, sizeof serial)) < 0 ||
        /* A day back: a client whose clock is a little behind still accepts it. */
        (rc = gnutls_x509_crt_set_activation_time(crt, now - 86400)) < 0 ||
        (rc = gnutls_x509_crt_set_expiration_time(crt, now + (time_t)XAPI_TLS_VALIDITY_DAYS * 86400)) < 0 ||
        (rc = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, hostname,
                                            (unsigned)strlen(hostname))) < 0 ||
        (rc = gnutls_x509_crt_set_key(crt, key)) < 0 || (rc = add_names(crt, hostname, listen_host)) < 0 ||
        (rc = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
        (rc = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
        (rc = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
        (rc = gnutls_x509_crt_get_key_id(crt, 0, key_id, &key_id_size)) < 0 ||
        (rc = gnutls_x509_crt_set_subject_key_id(crt, key_id, key_id_size)) < 0 ||
        (rc = gnutls_x509_crt_set_authority_key_id(crt, key_id, key_id_size)) < 0 ||
        (rc = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) < 0)
        return tls_fail(rc, "cannot make the certificate");
    if ((rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cert_pem)) < 0 ||
        (rc = gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &key_pem)) < 0)
        return tls_fail(rc, "cannot encode the certificate");
    *ret_cert_pem = strndup((const char *)cert_pem.data, cert_pem.size);
    *ret_key_pem = strndup((const char *)key_pem.data, key_pem.size);
    gnutls_memset(key_pem.data, 0, key_pem.size);
    if (!*ret_cert_pem || !*ret_key_pem)
        xapi_oom();
    return 0;
}

/* Writes path atomically (temporary file, fsync, rename) with the given mode. */
static int write_file(const char *path, const char *data, mode_t mode) {
    char *tmp = NULL;
    size_t len = strlen(data), off = 0;
    int fd = -1, rc = 0;

    if (asprintf(&tmp, "%s.tmp", path) < 0)
        xapi_oom();
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        rc = agent_log_errno(LOG_ERR, errno, "tls: cannot create %s", tmp);
        goto out;
    }
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = agent_log_errno(LOG_ERR, errno, "tls: cannot write %s", tmp);
            goto out;
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        fd = -1;
        rc = agent_log_errno(LOG_ERR, errno, "tls: cannot write %s", tmp);
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        rc = agent_log_errno(LOG_ERR, errno, "tls: cannot rename %s to %s", tmp, path);
out:
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

static int read_pem(const char *path, char **ret) {
    struct stat sb;
    char *buf = NULL;
    size_t len = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return agent_log_errno(LOG_ERR, errno, "tls: cannot open %s", path);
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > PEM_MAX) {
        log_error("tls: %s is not a PEM file (not a regular file, or bigger than %d bytes)", path, PEM_MAX);
        rc = -EINVAL;
        goto out;
    }
    buf = xapi_malloc((size_t)sb.st_size + 1);
    while (len < (size_t)sb.st_size && (n = read(fd, buf + len, (size_t)sb.st_size - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = agent_log_errno(LOG_ERR, errno, "tls: cannot read %s", path);
            goto out;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    *ret = buf;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

/* Checks the pair the way the server will use it, and logs its fingerprint
 * (what a client pins, or compares with `openssl x509 -fingerprint -sha256`). */
static int check_pair(const agent_config *cfg, const xapi_tls_identity *id) {
    gnutls_certificate_credentials_t cred = NULL;
    _cleanup_(crt_freep) gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t c = {(unsigned char *)id->cert_pem, (unsigned)strlen(id->cert_pem)};
    gnutls_datum_t k = {(unsigned char *)id->key_pem, (unsigned)strlen(id->key_pem)};
    unsigned char fp[32];
    size_t fp_size = sizeof fp;
    char hex[sizeof fp * 3 + 1] = "";
    int rc;

    if ((rc = gnutls_certificate_allocate_credentials(&cred)) < 0)
        return tls_fail(rc, "cannot allocate credentials");
    rc = gnutls_certificate_set_x509_key_mem2(cred, &c, &k, GNUTLS_X509_FMT_PEM, NULL, 0);
    gnutls_certificate_free_credentials(cred);
    if (rc < 0) {
        log_error("tls: %s and %s are not a usable certificate and key: %s", cfg->tls_certificate, cfg->tls_key,
                  gnutls_strerror(rc));
        return -EINVAL;
    }
    if (gnutls_x509_crt_init(&crt) == 0 && gnutls_x509_crt_import(crt, &c, GNUTLS_X509_FMT_PEM) == 0 &&
        gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp, &fp_size) == 0)
        for (size_t i = 0; i < fp_size; i++)
            snprintf(hex + 3 * i, sizeof hex - 3 * i, "%02X%s", fp[i], i + 1 < fp_size ? ":" : "");
    log_notice("tls: certificate %s, SHA-256 fingerprint %s", cfg->tls_certificate, hex);
    return 0;
}

int xapi_tls_identity_load(const agent_config *cfg, xapi_tls_identity *ret) {
    xapi_tls_identity id = {NULL, NULL};
    bool have_cert = access(cfg->tls_certificate, F_OK) == 0, have_key = access(cfg->tls_key, F_OK) == 0;
    int rc;

    if (have_cert != have_key) {
        log_error("tls: %s exists but %s does not: give both (or remove the other to have a new pair generated)",
                  have_cert ? cfg->tls_certificate : cfg->tls_key, have_cert ? cfg->tls_key : cfg->tls_certificate);
        return -ENOENT;
    }
    if (!have_cert) {
        rc = xapi_tls_generate(cfg->listen_tls_host, &id.cert_pem, &id.key_pem);
        /* The key first: a certificate without its key is never left behind. */
        if (rc == 0)
            rc = write_file(cfg->tls_key, id.key_pem, 0600);
        if (rc == 0 && (rc = write_file(cfg->tls_certificate, id.cert_pem, 0644)) < 0)
            unlink(cfg->tls_key);
        if (rc < 0)
            goto out;
        log_notice("tls: generated a self-signed certificate %s (key %s), valid %d days", cfg->tls_certificate,
                   cfg->tls_key, XAPI_TLS_VALIDITY_DAYS);
    } else if ((rc = read_pem(cfg->tls_certificate, &id.cert_pem)) < 0 || (rc = read_pem(cfg->tls_key, &id.key_pem)) < 0)
        goto out;
    rc = check_pair(cfg, &id);
    if (rc < 0)
        goto out;
    *ret = id;
    id = (xapi_tls_identity){NULL, NULL};
out:
    xapi_tls_identity_free(&id);
    return rc;
}

void xapi_tls_identity_free(xapi_tls_identity *id) {
    if (!id)
        return;
    if (id->key_pem)
        gnutls_memset(id->key_pem, 0, strlen(id->key_pem));
    free(id->key_pem);
    free(id->cert_pem);
    id->key_pem = id->cert_pem = NULL;
}
