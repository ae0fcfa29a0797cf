/* The VHD on-disk structures shared by the streaming codec (vhd.c) and the
 * on-disk image library (vhd_file.c): field offsets, cookies, big-endian
 * accessors and the checksum. Internal to storage/. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define VHD_FOOTER_COOKIE "conectix"
#define VHD_HEADER_COOKIE "cxsparse"
#define VHD_DISK_FIXED 2
#define VHD_DISK_DYNAMIC 3
#define VHD_DISK_DIFFERENCING 4
#define VHD_BAT_UNUSED 0xFFFFFFFFu
#define VHD_EPOCH INT64_C(946684800) /* 2000-01-01T00:00:00Z, the footer's time origin */

/* Footer fields (byte offsets). */
enum {
    VHD_F_FEATURES = 8,
    VHD_F_VERSION = 12,
    VHD_F_DATA_OFFSET = 16,
    VHD_F_TIMESTAMP = 24,
    VHD_F_CREATOR_APP = 28,
    VHD_F_CREATOR_VERSION = 32,
    VHD_F_CREATOR_OS = 36,
    VHD_F_ORIGINAL_SIZE = 40,
    VHD_F_CURRENT_SIZE = 48,
    VHD_F_GEOMETRY = 56,
    VHD_F_DISK_TYPE = 60,
    VHD_F_CHECKSUM = 64,
    VHD_F_UNIQUE_ID = 68,
    VHD_F_SAVED = 84,
    VHD_F_HIDDEN = 85, /* tapdisk's extension: base copies */
};

/* Dynamic header fields. */
enum {
    VHD_H_DATA_OFFSET = 8,
    VHD_H_TABLE_OFFSET = 16,
    VHD_H_VERSION = 24,
    VHD_H_MAX_ENTRIES = 28,
    VHD_H_BLOCK_SIZE = 32,
    VHD_H_CHECKSUM = 36,
    VHD_H_PARENT_UUID = 40,
    VHD_H_PARENT_TIMESTAMP = 56,
    VHD_H_PARENT_NAME = 64,      /* 512 bytes of UTF-16BE */
    VHD_H_LOCATORS = 576,        /* 8 entries of 24 bytes */
    VHD_H_LOCATOR_SIZE = 24,
    VHD_H_LOCATOR_COUNT = 8,
};

/* tapdisk's batmap header (512 bytes right after the padded BAT). */
#define VHD_BATMAP_COOKIE "tdbatmap"
enum {
    VHD_B_OFFSET = 8,   /* u64: where the map is */
    VHD_B_SIZE = 16,    /* u32: its sectors */
    VHD_B_VERSION = 20,
    VHD_B_CHECKSUM = 24, /* one's complement of the map's byte sum */
    VHD_B_MARKER = 28,
};

static inline uint32_t vhd_get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t vhd_get64(const uint8_t *p) {
    return (uint64_t)vhd_get32(p) << 32 | vhd_get32(p + 4);
}

static inline void vhd_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void vhd_put64(uint8_t *p, uint64_t v) {
    vhd_put32(p, (uint32_t)(v >> 32));
    vhd_put32(p + 4, (uint32_t)v);
}

/* One's complement of the byte sum, the checksum field counted as zeros. */
static inline uint32_t vhd_checksum(const uint8_t *p, size_t len, size_t field) {
    uint32_t sum = 0;

    for (size_t i = 0; i < len; i++)
        if (i < field || i >= field + 4)
            sum += p[i];
    return ~sum;
}

static inline uint64_t vhd_round_up(uint64_t v, uint64_t to) {
    return (v + to - 1) / to * to;
}

/* Cylinders, heads, sectors per track for a size, as the VHD specification computes them. */
uint32_t storage_vhd_geometry(uint64_t size);
/* A footer of a disk of that size and type (VHD_DISK_*): tapdisk's creator
 * fields, data offset 512 (all-ones for a fixed disk), checksum set. */
void storage_vhd_footer_init(uint8_t *f, uint64_t size, uint32_t type, const uint8_t id[16], int64_t now);
/* The fields of a dynamic header (zeroed first by the caller) for 2 MiB
 * blocks, a BAT of max_bat entries at bat_offset; the checksum is left to set. */
void storage_vhd_header_init(uint8_t *h, uint64_t bat_offset, uint32_t max_bat);
