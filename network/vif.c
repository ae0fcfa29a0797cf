/* The datamodel side of VIFs: VIF.create checks (device, MAC, MTU),
 * VIF.destroy of attached VIFs, VM.get_allowed_VIF_devices. Plugging belongs
 * to the VM layer (vmops). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "network/internal.h"
#include "xapi/error.h"

/* ---- MD5 (RFC 1321): xapi derives VIF MACs from the VM's mac_seed with it ---- */

static const uint32_t md5_k[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};
static const uint8_t md5_r[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                  5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                                  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

static void md5_block(uint32_t h[4], const uint8_t *p) {
    uint32_t w[16], a = h[0], b = h[1], c = h[2], d = h[3];

    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[i * 4] | (uint32_t)p[i * 4 + 1] << 8 | (uint32_t)p[i * 4 + 2] << 16 |
               (uint32_t)p[i * 4 + 3] << 24;
    for (int i = 0; i < 64; i++) {
        uint32_t f, t;
        int g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) % 16;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) % 16;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) % 16;
        }
        t = d;
        d = c;
        c = b;
        f += a + md5_k[i] + w[g];
        b += (f << md5_r[i]) | (f >> (32 - md5_r[i]));
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

static void md5(const void *data, size_t len, uint8_t out[16]) {
    uint32_t h[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
    const uint8_t *p = data;
    uint8_t tail[128] = {0};
    size_t rest = len % 64, tail_len = rest < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;

    for (size_t off = 0; off + 64 <= len; off += 64)
        md5_block(h, p + off);
    memcpy(tail, p + len - rest, rest);
    tail[rest] = 0x80;
    for (int i = 0; i < 8; i++)
        tail[tail_len - 8 + i] = (uint8_t)(bits >> (8 * i));
    md5_block(h, tail);
    if (tail_len == 128)
        md5_block(h, tail + 64);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++)
            out[i * 4 + k] = (uint8_t)(h[i] >> (8 * k));
}

/* xapi's Xapi_vif_helpers.gen_mac: MD5 applied 2*device+1 times to the seed,
 * bytes 0-3 of that and 1-2 of its MD5; locally administered, unicast. */
static void gen_mac(unsigned device, const char *seed, char out[18]) {
    uint8_t h[16], h2[16];
    unsigned rounds = 2 * device + 1;

    md5(seed, strlen(seed), h);
    for (unsigned i = 1; i < rounds; i++)
        md5(h, sizeof h, h);
    md5(h, sizeof h, h2);
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", (h[0] | 0x2) & ~0x1 & 0xff, h[1], h[2], h[3], h2[1], h2[2]);
}

static void random_mac(char out[18]) {
    uint8_t b[6] = {0};

    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (uint8_t)rand();
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", (b[0] | 0x2) & ~0x1 & 0xff, b[1], b[2], b[3], b[4], b[5]);
}

bool net_mac_valid(const char *m) {
    if (strlen(m) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        char ch = m[i];
        if (i % 3 == 2 ? ch != ':'
                       : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
            return false;
    }
    return true;
}

/* xapi's valid_device: an unsigned decimal (bounded here). -1 if not. */
static long parse_device(const char *s) {
    long n = 0;

    if (!*s || strlen(s) > 9)
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

static bool mac_in_use(xapi_store *st, const xapi_obj *self, const char *mac) {
    for (xapi_obj *v = xapi_store_first(st, net_cls(XAPI_C_VIF)); v; v = xapi_store_next(v))
        if (v != self && strcasecmp(v->fields[XAPI_F_VIF_MAC].s, mac) == 0)
            return true;
    return false;
}

/* ---- VIF.create / destroy hooks ------------------------------------------------------- */

static int vif_after_create(xapi_call *c, xapi_obj *o) {
    xapi_store *st = c->srv->store;
    const char *device = o->fields[XAPI_F_VIF_device].s, *mac = o->fields[XAPI_F_VIF_MAC].s;
    xapi_obj *vm, *net;
    const xapi_value *vifs;
    long dev;
    int rc;

    vm = xapi_store_get_class(st, net_cls(XAPI_C_VM), o->fields[XAPI_F_VIF_VM].s);
    if (!vm)
        return xapi_call_fail(c, "HANDLE_INVALID", "VM", o->fields[XAPI_F_VIF_VM].s);
    net = xapi_store_get_class(st, net_cls(XAPI_C_network), o->fields[XAPI_F_VIF_network].s);
    if (!net)
        return xapi_call_fail(c, "HANDLE_INVALID", "network", o->fields[XAPI_F_VIF_network].s);
    dev = parse_device(device);
    if (dev < 0)
        return xapi_call_fail(c, "INVALID_DEVICE", device);
    if (!*mac) {
        const char *seed = net_map_get(&vm->fields[XAPI_F_VM_other_config], "mac_seed");
        char gen[18];

        if (seed)
            gen_mac((unsigned)dev, seed, gen);
        else
            random_mac(gen);
        /* unique on the host: a copied mac_seed (a VM copied outside xapi) would repeat it */
        for (int tries = 0; tries < 16 && mac_in_use(st, o, gen); tries++)
            random_mac(gen);
        xapi_obj_set_string(st, o, XAPI_F_VIF_MAC, gen);
        xapi_obj_set_bool(st, o, XAPI_F_VIF_MAC_autogenerated, true);
        mac = o->fields[XAPI_F_VIF_MAC].s;
    }
    if (!net_mac_valid(mac))
        return xapi_call_fail(c, "MAC_INVALID", mac);
    vifs = &vm->fields[XAPI_F_VM_VIFs];
    for (uint32_t i = 0; i < vifs->n; i++) {
        xapi_obj *v = xapi_store_get_class(st, net_cls(XAPI_C_VIF), vifs->items[i].s);
        if (v && v != o && parse_device(v->fields[XAPI_F_VIF_device].s) == dev)
            return xapi_call_fail(c, "DEVICE_ALREADY_EXISTS", device);
    }
    if (o->fields[XAPI_F_VIF_MTU].i <= 0)
        xapi_obj_set_int(st, o, XAPI_F_VIF_MTU, net->fields[XAPI_F_network_MTU].i);
    rc = net_check_mtu(&c->err, o->fields[XAPI_F_VIF_MTU].i);
    if (rc < 0)
        return rc;
    if (strcmp(vm->fields[XAPI_F_VM_power_state].s, "Suspended") != 0)
        xapi_obj_set_bool(st, o, XAPI_F_VIF_currently_attached, false);
    return 0;
}

static int vif_before_destroy(xapi_call *c, xapi_obj *o) {
    xapi_obj *vm = xapi_store_get_class(c->srv->store, net_cls(XAPI_C_VM), o->fields[XAPI_F_VIF_VM].s);
    const char *ps = vm ? vm->fields[XAPI_F_VM_power_state].s : "Halted";

    if ((strcmp(ps, "Running") == 0 || strcmp(ps, "Paused") == 0) && o->fields[XAPI_F_VIF_currently_attached].b)
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "VIF currently attached to a running VM");
    return 0;
}

const xapi_class_hooks network_vif_hooks = {
    .after_create = vif_after_create,
    .before_destroy = vif_before_destroy,
};

/* ---- VM.get_allowed_VIF_devices ----------------------------------------------------- */

static int vm_get_allowed_vif_devices(xapi_call *c) {
    xapi_obj *vm;
    int rc;

    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, net_cls(XAPI_C_VM), c->args[0].s, &vm);
    if (rc == 0) {
        const xapi_value *vifs = &vm->fields[XAPI_F_VM_VIFs];
        xapi_out_array_begin(c->out);
        for (int d = 0; d < NETWORK_VIF_DEVICES; d++) {
            char n[8];
            bool used = false;
            snprintf(n, sizeof n, "%d", d);
            for (uint32_t i = 0; i < vifs->n && !used; i++) {
                xapi_obj *v = xapi_store_get_class(c->srv->store, net_cls(XAPI_C_VIF), vifs->items[i].s);
                used = v && strcmp(v->fields[XAPI_F_VIF_device].s, n) == 0;
            }
            if (!used)
                xapi_out_cstring(c->out, n);
        }
        xapi_out_array_end(c->out);
    }
    xapi_store_rdunlock(c->srv->store);
    return rc;
}

const xapi_handler network_vif_handlers[] = {
    {"VM", "get_allowed_VIF_devices", vm_get_allowed_vif_devices},
    {NULL, NULL, NULL},
};
