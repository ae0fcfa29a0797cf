/* VHD images: see vhd.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/vhd.h"
#include "storage/vhd_format.h"

#define FOOTER_COOKIE VHD_FOOTER_COOKIE
#define HEADER_COOKIE VHD_HEADER_COOKIE
#define DISK_FIXED VHD_DISK_FIXED
#define DISK_DYNAMIC VHD_DISK_DYNAMIC
#define DISK_DIFFERENCING VHD_DISK_DIFFERENCING
#define BAT_UNUSED VHD_BAT_UNUSED
#define MAX_HEADER_OFFSET (UINT64_C(1) << 20) /* where a dynamic header may start, at most */
#define MIN_BLOCK_SIZE STORAGE_VHD_SECTOR
#define MAX_BLOCK_SIZE (64u << 20)

enum {
    F_DATA_OFFSET = VHD_F_DATA_OFFSET,
    F_CURRENT_SIZE = VHD_F_CURRENT_SIZE,
    F_DISK_TYPE = VHD_F_DISK_TYPE,
    F_CHECKSUM = VHD_F_CHECKSUM,
    H_DATA_OFFSET = VHD_H_DATA_OFFSET,
    H_TABLE_OFFSET = VHD_H_TABLE_OFFSET,
    H_VERSION = VHD_H_VERSION,
    H_MAX_ENTRIES = VHD_H_MAX_ENTRIES,
    H_BLOCK_SIZE = VHD_H_BLOCK_SIZE,
    H_CHECKSUM = VHD_H_CHECKSUM,
};

static bool footer_valid(const uint8_t *f) {
    return memcmp(f, FOOTER_COOKIE, 8) == 0 &&
           vhd_get32(f + F_CHECKSUM) == vhd_checksum(f, STORAGE_VHD_FOOTER_SIZE, F_CHECKSUM);
}

static uint32_t bitmap_bytes(uint32_t block_size) {
    return (uint32_t)vhd_round_up((block_size / STORAGE_VHD_SECTOR + 7) / 8, STORAGE_VHD_SECTOR);
}

/* ---- decoder ------------------------------------------------------------------ */

typedef enum phase {
    P_FIRST,          /* the first sector: footer copy of a dynamic image, or fixed data */
    P_FIXED,          /* fixed: data, the last sector held back (the footer) */
    P_TO_HEADER,
    P_HEADER,
    P_TO_BAT,
    P_BAT,
    P_BLOCKS,
    P_TRAILER,        /* after the last block: the footer */
    P_FAILED,
} phase;

typedef struct placed {
    uint64_t offset;  /* in the image */
    uint32_t block;   /* in the disk */
} placed;

struct storage_vhd_decoder {
    storage_vhd_write_fn write;
    void *opaque;
    phase ph;
    uint64_t pos;                          /* image bytes consumed */
    uint8_t buf[STORAGE_VHD_HEADER_SIZE];  /* first sector, header; fixed: the held-back tail */
    size_t have;
    uint64_t size;                         /* virtual size */
    uint64_t header_offset, bat_offset, bat_len;
    uint32_t block_size, bitmap_len, nblocks;
    uint8_t *bat;                          /* the first nblocks entries as read */
    placed *order;                         /* present blocks by offset in the image */
    uint32_t norder, next;
    uint8_t *bitmap;                       /* of the block being read */
    uint64_t fixed_len;                    /* fixed: data bytes passed on */
    char error[160];
};

static int fail(storage_vhd_decoder *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(storage_vhd_decoder *d, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(d->error, sizeof d->error, fmt, ap);
    va_end(ap);
    d->ph = P_FAILED;
    return -EINVAL;
}

storage_vhd_decoder *storage_vhd_decoder_new(storage_vhd_write_fn write, void *opaque) {
    storage_vhd_decoder *d = calloc(1, sizeof *d);

    if (!d)
        return NULL;
    d->write = write;
    d->opaque = opaque;
    return d;
}

void storage_vhd_decoder_free(storage_vhd_decoder *d) {
    if (!d)
        return;
    free(d->bat);
    free(d->order);
    free(d->bitmap);
    free(d);
}

const char *storage_vhd_decoder_error(const storage_vhd_decoder *d) {
    return d->error;
}

/* Takes bytes into d->buf until it holds want; true when it does. */
static bool gather(storage_vhd_decoder *d, size_t want, const uint8_t **p, size_t *len) {
    size_t k = want - d->have < *len ? want - d->have : *len;

    memcpy(d->buf + d->have, *p, k);
    d->have += k;
    *p += k;
    *len -= k;
    d->pos += k;
    return d->have == want;
}

/* Drops bytes up to image offset `to`; true once there. */
static bool skip_to(storage_vhd_decoder *d, uint64_t to, const uint8_t **p, size_t *len) {
    uint64_t k = to - d->pos < *len ? to - d->pos : *len;

    *p += k;
    *len -= (size_t)k;
    d->pos += k;
    return d->pos == to;
}

static int first_sector(storage_vhd_decoder *d) {
    const uint8_t *f = d->buf;
    uint32_t type = vhd_get32(f + F_DISK_TYPE);

    if (memcmp(f, FOOTER_COOKIE, 8) != 0 || (type != DISK_DYNAMIC && type != DISK_DIFFERENCING)) {
        d->ph = P_FIXED; /* the sector is data, held back in case it is the footer */
        return 0;
    }
    if (!footer_valid(f))
        return fail(d, "bad footer checksum");
    if (type == DISK_DIFFERENCING)
        return fail(d, "differencing VHDs are not supported");
    d->size = vhd_get64(f + F_CURRENT_SIZE);
    d->header_offset = vhd_get64(f + F_DATA_OFFSET);
    if (d->size > STORAGE_VHD_MAX_SIZE)
        return fail(d, "virtual size %llu too large", (unsigned long long)d->size);
    if (d->header_offset < STORAGE_VHD_FOOTER_SIZE || d->header_offset > MAX_HEADER_OFFSET)
        return fail(d, "dynamic header at %llu", (unsigned long long)d->header_offset);
    d->have = 0;
    d->ph = P_TO_HEADER;
    return 0;
}

static int dynamic_header(storage_vhd_decoder *d) {
    const uint8_t *h = d->buf;
    uint64_t entries;

    if (memcmp(h, HEADER_COOKIE, 8) != 0)
        return fail(d, "no dynamic header");
    if (vhd_get32(h + H_CHECKSUM) != vhd_checksum(h, STORAGE_VHD_HEADER_SIZE, H_CHECKSUM))
        return fail(d, "bad dynamic header checksum");
    d->bat_offset = vhd_get64(h + H_TABLE_OFFSET);
    entries = vhd_get32(h + H_MAX_ENTRIES);
    d->block_size = vhd_get32(h + H_BLOCK_SIZE);
    if (d->block_size < MIN_BLOCK_SIZE || d->block_size > MAX_BLOCK_SIZE || (d->block_size & (d->block_size - 1)))
        return fail(d, "block size %u", d->block_size);
    if (d->bat_offset < d->header_offset + STORAGE_VHD_HEADER_SIZE || d->bat_offset > STORAGE_VHD_MAX_SIZE)
        return fail(d, "BAT at %llu, not after the header", (unsigned long long)d->bat_offset);
    d->nblocks = (uint32_t)((d->size + d->block_size - 1) / d->block_size);
    if (entries < d->nblocks)
        return fail(d, "BAT of %llu entries for %u blocks", (unsigned long long)entries, d->nblocks);
    d->bat_len = entries * 4;
    d->bitmap_len = bitmap_bytes(d->block_size);
    d->bat = malloc((size_t)d->nblocks * 4 + 1);
    d->bitmap = malloc(d->bitmap_len);
    if (!d->bat || !d->bitmap)
        return -ENOMEM;
    d->have = 0;
    d->ph = P_TO_BAT;
    return 0;
}

static int by_offset(const void *a, const void *b) {
    const placed *x = a, *y = b;

    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The BAT is in: where the blocks are, and zeros for the blocks absent. */
static int bat_done(storage_vhd_decoder *d) {
    uint64_t data_start = d->bat_offset + d->bat_len, zero_from = 0;
    bool in_zeros = false;
    int rc;

    d->order = malloc(((size_t)d->nblocks + 1) * sizeof *d->order);
    if (!d->order)
        return -ENOMEM;
    for (uint32_t i = 0; i < d->nblocks; i++) {
        uint32_t e = vhd_get32(d->bat + (size_t)i * 4);
        uint64_t at = (uint64_t)i * d->block_size;

        if (e == BAT_UNUSED) {
            if (!in_zeros)
                zero_from = at;
            in_zeros = true;
            continue;
        }
        if ((uint64_t)e * STORAGE_VHD_SECTOR < data_start)
            return fail(d, "block %u at sector %u, inside the metadata", i, e);
        d->order[d->norder++] = (placed){(uint64_t)e * STORAGE_VHD_SECTOR, i};
        if (in_zeros && (rc = d->write(d->opaque, zero_from, NULL, at - zero_from)) < 0)
            return rc;
        in_zeros = false;
    }
    if (in_zeros && (rc = d->write(d->opaque, zero_from, NULL, d->size - zero_from)) < 0)
        return rc;
    if (d->norder > 1) /* an image without blocks may have no array: qsort(NULL, 0) is undefined */
        qsort(d->order, d->norder, sizeof *d->order, by_offset);
    for (uint32_t k = 1; k < d->norder; k++)
        if (d->order[k - 1].offset + d->bitmap_len + d->block_size > d->order[k].offset)
            return fail(d, "blocks %u and %u overlap", d->order[k - 1].block, d->order[k].block);
    d->ph = d->norder ? P_BLOCKS : P_TRAILER;
    return 0;
}

static bool sector_present(const storage_vhd_decoder *d, uint64_t sector) {
    return d->bitmap[sector / 8] & (0x80u >> (sector % 8));
}

/* Data of the current block from byte `at` of its data: present sectors as
 * they are, the others as zeros, nothing past the virtual size. */
static int block_data(storage_vhd_decoder *d, uint64_t at, const uint8_t *p, size_t len) {
    uint64_t base = (uint64_t)d->order[d->next].block * d->block_size;

    while (len > 0) {
        bool present = sector_present(d, at / STORAGE_VHD_SECTOR);
        uint64_t end = (at / STORAGE_VHD_SECTOR + 1) * STORAGE_VHD_SECTOR;
        size_t k;
        int rc;

        while (end < at + len && sector_present(d, end / STORAGE_VHD_SECTOR) == present)
            end += STORAGE_VHD_SECTOR;
        k = end < at + len ? (size_t)(end - at) : len;
        if (base + at < d->size) {
            size_t n = base + at + k <= d->size ? k : (size_t)(d->size - base - at);
            rc = d->write(d->opaque, base + at, present ? p : NULL, n);
            if (rc < 0)
                return rc;
        }
        p += k;
        len -= k;
        at += k;
    }
    return 0;
}

static int blocks(storage_vhd_decoder *d, const uint8_t **p, size_t *len) {
    const placed *b = &d->order[d->next];
    uint64_t in, k;
    int rc;

    if (d->pos < b->offset) { /* blocks are in image order, each after the last one's end */
        skip_to(d, b->offset, p, len);
        return 0;
    }
    in = d->pos - b->offset; /* < bitmap_len + block_size: the block is left when done */
    if (in < d->bitmap_len) {
        k = d->bitmap_len - in < *len ? d->bitmap_len - in : *len;
        memcpy(d->bitmap + in, *p, (size_t)k);
    } else {
        in -= d->bitmap_len;
        k = d->block_size - in < *len ? d->block_size - in : *len;
        rc = block_data(d, in, *p, (size_t)k);
        if (rc < 0)
            return rc;
        if (in + k == d->block_size && ++d->next == d->norder)
            d->ph = P_TRAILER;
    }
    *p += k;
    *len -= (size_t)k;
    d->pos += k;
    return 0;
}

/* Fixed: passes on everything but the last sector seen so far. */
static int fixed(storage_vhd_decoder *d, const uint8_t **p, size_t *len) {
    size_t n = *len, out = d->have + n > STORAGE_VHD_FOOTER_SIZE ? d->have + n - STORAGE_VHD_FOOTER_SIZE : 0;
    size_t from_buf = out < d->have ? out : d->have, from_data = out - from_buf;
    int rc;

    if (d->fixed_len + out > STORAGE_VHD_MAX_SIZE)
        return fail(d, "image larger than %llu bytes", (unsigned long long)STORAGE_VHD_MAX_SIZE);
    if (from_buf) {
        rc = d->write(d->opaque, d->fixed_len, d->buf, from_buf);
        if (rc < 0)
            return rc;
        d->fixed_len += from_buf;
        memmove(d->buf, d->buf + from_buf, d->have - from_buf);
        d->have -= from_buf;
    }
    if (from_data) {
        rc = d->write(d->opaque, d->fixed_len, *p, from_data);
        if (rc < 0)
            return rc;
        d->fixed_len += from_data;
    }
    memcpy(d->buf + d->have, *p + from_data, n - from_data);
    d->have += n - from_data;
    d->pos += n;
    *p += n;
    *len = 0;
    return 0;
}

int storage_vhd_decoder_feed(storage_vhd_decoder *d, const void *data, size_t len) {
    const uint8_t *p = data;
    int rc = 0;

    d->error[0] = '\0';
    while (len > 0 && rc == 0)
        switch (d->ph) {
        case P_FIRST:
            if (gather(d, STORAGE_VHD_FOOTER_SIZE, &p, &len))
                rc = first_sector(d);
            break;
        case P_FIXED:
            rc = fixed(d, &p, &len);
            break;
        case P_TO_HEADER:
            if (skip_to(d, d->header_offset, &p, &len))
                d->ph = P_HEADER;
            break;
        case P_HEADER:
            if (gather(d, STORAGE_VHD_HEADER_SIZE, &p, &len))
                rc = dynamic_header(d);
            break;
        case P_TO_BAT:
            if (skip_to(d, d->bat_offset, &p, &len))
                d->ph = P_BAT;
            break;
        case P_BAT: {
            uint64_t in = d->pos - d->bat_offset, k = d->bat_len - in < len ? d->bat_len - in : len;
            uint64_t keep = (uint64_t)d->nblocks * 4;
            if (in < keep)
                memcpy(d->bat + in, p, (size_t)(keep - in < k ? keep - in : k));
            p += k;
            len -= (size_t)k;
            d->pos += k;
            if (d->pos == d->bat_offset + d->bat_len)
                rc = bat_done(d);
            break;
        }
        case P_BLOCKS:
            rc = blocks(d, &p, &len);
            break;
        case P_TRAILER:
            d->pos += len;
            len = 0;
            break;
        case P_FAILED:
            return fail(d, "the image was already refused");
        }
    if (rc < 0 && d->ph != P_FAILED) {
        d->ph = P_FAILED;
        if (rc == -EINVAL && !d->error[0])
            snprintf(d->error, sizeof d->error, "invalid data");
    }
    return rc;
}

int storage_vhd_decoder_finish(storage_vhd_decoder *d, uint64_t *ret_size) {
    const uint8_t *f = d->buf;

    d->error[0] = '\0';
    switch (d->ph) {
    case P_FIXED:
        if (d->have != STORAGE_VHD_FOOTER_SIZE || !footer_valid(f) || vhd_get32(f + F_DISK_TYPE) != DISK_FIXED)
            return fail(d, "not a VHD (no valid footer)");
        if (vhd_get64(f + F_CURRENT_SIZE) != d->fixed_len)
            return fail(d, "fixed VHD of %llu bytes holds %llu", (unsigned long long)vhd_get64(f + F_CURRENT_SIZE),
                        (unsigned long long)d->fixed_len);
        *ret_size = d->fixed_len;
        return 0;
    case P_TRAILER:
        *ret_size = d->size;
        return 0;
    case P_FAILED:
        return fail(d, "the image was already refused");
    default:
        return fail(d, "the image ends early (at byte %llu)", (unsigned long long)d->pos);
    }
}

/* ---- encoder ----------------------------------------------------------------- */

uint32_t storage_vhd_blocks(uint64_t disk_size) {
    if (disk_size > STORAGE_VHD_MAX_SIZE)
        return 0;
    return (uint32_t)((vhd_round_up(disk_size, STORAGE_VHD_SECTOR) + STORAGE_VHD_BLOCK_SIZE - 1) / STORAGE_VHD_BLOCK_SIZE);
}

uint32_t storage_vhd_geometry(uint64_t size) {
    uint64_t total = size / STORAGE_VHD_SECTOR, cth;
    uint32_t spt, heads;

    if (total > UINT64_C(65535) * 16 * 255)
        total = UINT64_C(65535) * 16 * 255;
    if (total >= UINT64_C(65535) * 16 * 63) {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        spt = 17;
        cth = total / spt;
        heads = (uint32_t)((cth + 1023) / 1024);
        if (heads < 4)
            heads = 4;
        if (cth >= (uint64_t)heads * 1024 || heads > 16) {
            spt = 31;
            heads = 16;
            cth = total / spt;
        }
        if (cth >= (uint64_t)heads * 1024) {
            spt = 63;
            heads = 16;
            cth = total / spt;
        }
    }
    return (uint32_t)(cth / heads) << 16 | heads << 8 | spt;
}

void storage_vhd_footer_init(uint8_t *f, uint64_t size, uint32_t type, const uint8_t id[16], int64_t now) {
    memset(f, 0, STORAGE_VHD_FOOTER_SIZE);
    memcpy(f, FOOTER_COOKIE, 8);
    vhd_put32(f + VHD_F_FEATURES, 2);
    vhd_put32(f + VHD_F_VERSION, 0x00010000);
    vhd_put64(f + F_DATA_OFFSET, type == DISK_FIXED ? UINT64_MAX : STORAGE_VHD_FOOTER_SIZE);
    vhd_put32(f + VHD_F_TIMESTAMP, now > VHD_EPOCH ? (uint32_t)(now - VHD_EPOCH) : 0);
    /* blktap's vhd-util, as XenServer's own VHDs: readers that otherwise size
     * a VHD by its CHS geometry (qemu) take current_size for this creator. */
    memcpy(f + VHD_F_CREATOR_APP, "tap\0", 4);
    vhd_put32(f + VHD_F_CREATOR_VERSION, 0x00010000);
    memcpy(f + VHD_F_CREATOR_OS, "Lnux", 4);
    vhd_put64(f + VHD_F_ORIGINAL_SIZE, size);
    vhd_put64(f + F_CURRENT_SIZE, size);
    vhd_put32(f + VHD_F_GEOMETRY, storage_vhd_geometry(size));
    vhd_put32(f + F_DISK_TYPE, type);
    memcpy(f + VHD_F_UNIQUE_ID, id, 16);
    vhd_put32(f + F_CHECKSUM, vhd_checksum(f, STORAGE_VHD_FOOTER_SIZE, F_CHECKSUM));
}

void storage_vhd_header_init(uint8_t *h, uint64_t bat_offset, uint32_t max_bat) {
    memcpy(h, HEADER_COOKIE, 8);
    vhd_put64(h + H_DATA_OFFSET, UINT64_MAX);
    vhd_put64(h + H_TABLE_OFFSET, bat_offset);
    vhd_put32(h + H_VERSION, 0x00010000);
    vhd_put32(h + H_MAX_ENTRIES, max_bat);
    vhd_put32(h + H_BLOCK_SIZE, STORAGE_VHD_BLOCK_SIZE);
}

int storage_vhd_layout_init(storage_vhd_layout *l, uint64_t disk_size, const bool *present, const uint8_t id[16],
                            int64_t now) {
    uint64_t size = vhd_round_up(disk_size, STORAGE_VHD_SECTOR), bat_at = STORAGE_VHD_FOOTER_SIZE + STORAGE_VHD_HEADER_SIZE;
    uint32_t nblocks = storage_vhd_blocks(disk_size), n = 0, per_block = (STORAGE_VHD_SECTOR + STORAGE_VHD_BLOCK_SIZE) /
                                                                         STORAGE_VHD_SECTOR;
    storage_vhd_layout t = {0};
    uint8_t *h;

    if (disk_size > STORAGE_VHD_MAX_SIZE)
        return -EFBIG;
    t.size = size;
    t.nblocks = nblocks;
    t.meta_len = (size_t)vhd_round_up(bat_at + (uint64_t)nblocks * 4, STORAGE_VHD_SECTOR);
    t.meta = calloc(1, t.meta_len);
    t.allocated = malloc(((size_t)nblocks + 1) * sizeof *t.allocated);
    if (!t.meta || !t.allocated) {
        storage_vhd_layout_free(&t);
        return -ENOMEM;
    }
    storage_vhd_footer_init(t.footer, size, DISK_DYNAMIC, id, now);
    memcpy(t.meta, t.footer, STORAGE_VHD_FOOTER_SIZE);
    h = t.meta + STORAGE_VHD_FOOTER_SIZE;
    storage_vhd_header_init(h, bat_at, nblocks);
    vhd_put32(h + H_CHECKSUM, vhd_checksum(h, STORAGE_VHD_HEADER_SIZE, H_CHECKSUM));
    for (uint32_t i = 0; i < nblocks; i++) {
        uint32_t e = BAT_UNUSED;
        if (present[i]) {
            e = (uint32_t)(t.meta_len / STORAGE_VHD_SECTOR) + n * per_block;
            t.allocated[n++] = i;
        }
        vhd_put32(t.meta + bat_at + (size_t)i * 4, e);
    }
    t.nallocated = n;
    t.total = t.meta_len + (uint64_t)n * per_block * STORAGE_VHD_SECTOR + STORAGE_VHD_FOOTER_SIZE;
    *l = t;
    return 0;
}

void storage_vhd_layout_free(storage_vhd_layout *l) {
    free(l->meta);
    free(l->allocated);
    *l = (storage_vhd_layout){0};
}

ssize_t storage_vhd_layout_read(const storage_vhd_layout *l, uint64_t pos, void *buf, size_t max,
                                storage_vhd_read_fn read, void *opaque) {
    const uint64_t per_block = STORAGE_VHD_SECTOR + STORAGE_VHD_BLOCK_SIZE;
    uint64_t blocks_end = l->meta_len + (uint64_t)l->nallocated * per_block, in, k;
    int rc;

    if (pos >= l->total || max == 0)
        return -EINVAL;
    if (pos < l->meta_len) {
        k = l->meta_len - pos < max ? l->meta_len - pos : max;
        memcpy(buf, l->meta + pos, (size_t)k);
        return (ssize_t)k;
    }
    if (pos >= blocks_end) {
        in = pos - blocks_end;
        k = STORAGE_VHD_FOOTER_SIZE - in < max ? STORAGE_VHD_FOOTER_SIZE - in : max;
        memcpy(buf, l->footer + in, (size_t)k);
        return (ssize_t)k;
    }
    in = (pos - l->meta_len) % per_block;
    if (in < STORAGE_VHD_SECTOR) { /* the bitmap: every sector present */
        k = STORAGE_VHD_SECTOR - in < max ? STORAGE_VHD_SECTOR - in : max;
        memset(buf, 0xFF, (size_t)k);
        return (ssize_t)k;
    }
    in -= STORAGE_VHD_SECTOR;
    k = STORAGE_VHD_BLOCK_SIZE - in < max ? STORAGE_VHD_BLOCK_SIZE - in : max;
    rc = read(opaque, (uint64_t)l->allocated[(pos - l->meta_len) / per_block] * STORAGE_VHD_BLOCK_SIZE + in, buf,
              (size_t)k);
    return rc < 0 ? rc : (ssize_t)k;
}

bool storage_vhd_layout_data_at(const storage_vhd_layout *l, uint64_t pos, uint64_t *len, uint64_t *ret_disk_offset) {
    const uint64_t per_block = STORAGE_VHD_SECTOR + STORAGE_VHD_BLOCK_SIZE;
    uint64_t in;

    if (pos < l->meta_len || pos >= l->meta_len + (uint64_t)l->nallocated * per_block)
        return false;
    in = (pos - l->meta_len) % per_block;
    if (in < STORAGE_VHD_SECTOR)
        return false;
    in -= STORAGE_VHD_SECTOR;
    if (*len > STORAGE_VHD_BLOCK_SIZE - in)
        *len = STORAGE_VHD_BLOCK_SIZE - in;
    *ret_disk_offset = (uint64_t)l->allocated[(pos - l->meta_len) / per_block] * STORAGE_VHD_BLOCK_SIZE + in;
    return true;
}
