/* VIF address locking as nftables rules (nft.c); no XenAPI types here. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define NETWORK_NFT_TABLE "xenapid"

typedef struct network_nft_vif_rules {
    const char *device; /* the VIF's backend device; also its chain's name */
    const char *mac;    /* the only source MAC let through (unless drop_all) */
    bool drop_all;      /* locking_mode disabled: nothing passes */
    const char *const *ipv4;
    size_t nipv4;
    const char *const *ipv6;
    size_t nipv6;
} network_nft_vif_rules;

/* Replaces the device's chain: frames from the guest pass only from its MAC
 * and allowed addresses. -EINVAL on a bad value, -EOPNOTSUPP without nf_tables. */
int network_nft_vif_apply(const network_nft_vif_rules *r);
/* Removes the device's chain, if any. */
int network_nft_vif_remove(const char *device);
