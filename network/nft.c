/* A VIF's address locking as nftables rules, through nft's JSON API
 * (libnftables): table `netdev xenapid`, one base chain per VIF backend
 * device, hooked at that device's ingress, so it sees every frame the guest
 * sends and nothing else. Values reaching here are checked by the caller
 * (MAC syntax, addresses through inet_pton, device names): they are still
 * written as JSON strings, never as nft language. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <nftables/libnftables.h>

#include "agent/log.h"
#include "network/nft.h"
#include "xapi/buf.h"

static bool device_ok(const char *d) {
    return d && *d && strlen(d) < 16 && strspn(d, "abcdefghijklmnopqrstuvwxyz0123456789.-_") == strlen(d);
}

/* One context for the process, made at the first use and kept: a context
 * per call paid nft_ctx_new's set-up (its symbol tables read from files)
 * and a fresh ruleset cache for every VIF. A context is not thread-safe:
 * callers take turns on ctx_lock. */
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nft_ctx *shared_ctx;

static int run(const char *json, bool ignore_errors) {
    struct nft_ctx *ctx;
    int rc;

    pthread_mutex_lock(&ctx_lock);
    if (!shared_ctx) {
        shared_ctx = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!shared_ctx) {
            rc = -ENOMEM;
            goto out;
        }
        nft_ctx_output_set_flags(shared_ctx, NFT_CTX_OUTPUT_JSON); /* libnftables 1.0.6 parses JSON input in JSON mode */
        nft_ctx_buffer_output(shared_ctx);
        nft_ctx_buffer_error(shared_ctx);
    }
    ctx = shared_ctx;
    rc = nft_run_cmd_from_buffer(ctx, json) == 0 ? 0 : -EIO;
    if (rc < 0 && !ignore_errors) {
        const char *e = nft_ctx_get_error_buffer(ctx);
        /* a kernel without nf_tables answers "Operation not supported"/"Protocol not supported" */
        if (e && (strstr(e, "not supported") || strstr(e, "No such file or directory")))
            rc = -EOPNOTSUPP;
        log_warning("network: nftables: %s", e ? e : "failed");
    }
    /* reading a buffer empties it: nothing of this call is left for the next */
    (void)nft_ctx_get_output_buffer(ctx);
    (void)nft_ctx_get_error_buffer(ctx);
out:
    pthread_mutex_unlock(&ctx_lock);
    return rc;
}

static void put_table(xapi_buf *b) {
    xapi_buf_puts(b, "\"family\":\"netdev\",\"table\":\"" NETWORK_NFT_TABLE "\"");
}

static void put_chain_cmd(xapi_buf *b, const char *verb, const char *dev, bool hook) {
    xapi_buf_printf(b, "{\"%s\":{\"chain\":{", verb);
    put_table(b);
    xapi_buf_printf(b, ",\"name\":\"%s\"", dev);
    if (hook)
        xapi_buf_printf(b, ",\"type\":\"filter\",\"hook\":\"ingress\",\"dev\":\"%s\",\"prio\":0,\"policy\":\"drop\"",
                        dev);
    xapi_buf_puts(b, "}}},");
}

/* One rule: the match expressions (already JSON, comma-joined) then accept. */
static void put_rule(xapi_buf *b, const char *dev, const char *matches, const char *verdict) {
    xapi_buf_puts(b, "{\"add\":{\"rule\":{");
    put_table(b);
    xapi_buf_printf(b, ",\"chain\":\"%s\",\"expr\":[%s%s{\"%s\":null}]}}},", dev, matches, *matches ? "," : "",
                    verdict);
}

static void put_set(xapi_buf *b, const char *const *v, size_t n) {
    xapi_buf_puts(b, "{\"set\":[");
    for (size_t i = 0; i < n; i++)
        xapi_buf_printf(b, "%s\"%s\"", i ? "," : "", v[i]);
    xapi_buf_puts(b, "]}");
}

static void put_match(xapi_buf *b, const char *op, const char *proto, const char *field) {
    xapi_buf_printf(b, "{\"match\":{\"op\":\"%s\",\"left\":{\"payload\":{\"protocol\":\"%s\",\"field\":\"%s\"}},"
                       "\"right\":",
                    op, proto, field);
}

/* accept when proto's field is one of the addresses (m: scratch) */
static void put_addr_rule(xapi_buf *b, xapi_buf *m, const char *dev, const char *proto, const char *field,
                          const char *const *v, size_t n) {
    xapi_buf_truncate(m, 0);
    put_match(m, "==", proto, field);
    put_set(m, v, n);
    xapi_buf_puts(m, "}}");
    put_rule(b, dev, m->data, "accept");
}

static bool addrs_ok(int af, const char *const *v, size_t n) {
    unsigned char a[16];

    for (size_t i = 0; i < n; i++)
        if (inet_pton(af, v[i], a) != 1)
            return false;
    return true;
}

int network_nft_vif_apply(const network_nft_vif_rules *r) {
    xapi_buf b = XAPI_BUF_INIT, m = XAPI_BUF_INIT;
    int rc;

    if (!device_ok(r->device) || (!r->drop_all && (!r->mac || strlen(r->mac) != 17)) ||
        !addrs_ok(AF_INET, r->ipv4, r->nipv4) || !addrs_ok(AF_INET6, r->ipv6, r->nipv6))
        return -EINVAL;
    xapi_buf_puts(&b, "{\"nftables\":[{\"add\":{\"table\":{\"family\":\"netdev\",\"name\":\"" NETWORK_NFT_TABLE
                      "\"}}},");
    /* made if missing, then replaced whole in the same transaction */
    put_chain_cmd(&b, "add", r->device, true);
    put_chain_cmd(&b, "delete", r->device, false);
    put_chain_cmd(&b, "add", r->device, true);
    if (!r->drop_all) {
        /* a frame from another source MAC is dropped whatever its addresses */
        put_match(&m, "!=", "ether", "saddr");
        xapi_buf_printf(&m, "\"%s\"}}", r->mac);
        put_rule(&b, r->device, m.data, "drop");
        if (r->nipv4) {
            put_addr_rule(&b, &m, r->device, "arp", "saddr ip", r->ipv4, r->nipv4);
            put_addr_rule(&b, &m, r->device, "ip", "saddr", r->ipv4, r->nipv4);
        }
        if (r->nipv6) {
            put_addr_rule(&b, &m, r->device, "ip6", "saddr", r->ipv6, r->nipv6);
            /* neighbour discovery from the link-local address the guest derives */
            xapi_buf_truncate(&m, 0);
            put_match(&m, "==", "ip6", "saddr");
            xapi_buf_puts(&m, "{\"prefix\":{\"addr\":\"fe80::\",\"len\":10}}}},");
            put_match(&m, "==", "ip6", "nexthdr");
            xapi_buf_puts(&m, "\"ipv6-icmp\"}}");
            put_rule(&b, r->device, m.data, "accept");
        }
    }
    xapi_buf_truncate(&b, b.len - 1); /* the last comma */
    xapi_buf_puts(&b, "]}");
    rc = run(b.data, false);
    xapi_buf_free(&m);
    xapi_buf_free(&b);
    return rc;
}

int network_nft_vif_remove(const char *device) {
    xapi_buf b = XAPI_BUF_INIT;
    int rc;

    if (!device_ok(device))
        return -EINVAL;
    xapi_buf_puts(&b, "{\"nftables\":[");
    put_chain_cmd(&b, "delete", device, false);
    xapi_buf_truncate(&b, b.len - 1);
    xapi_buf_puts(&b, "]}");
    /* no table or no such chain: nothing to remove */
    rc = run(b.data, true);
    xapi_buf_free(&b);
    return rc == -ENOMEM ? rc : 0;
}
