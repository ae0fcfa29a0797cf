/* Unit tests: the VHD decoder and the dynamic VHD layout (storage/vhd.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "storage/vhd.h"

#define MiB (1u << 20)
#define BS STORAGE_VHD_BLOCK_SIZE

typedef struct disk {
    uint8_t *data;
    size_t size;
    int fail_with; /* write returns this when non-zero */
    unsigned writes;
} disk;

static int disk_write(void *opaque, uint64_t off, const void *data, size_t len) {
    disk *d = opaque;

    d->writes++;
    if (d->fail_with)
        return d->fail_with;
    assert_true(off + len <= d->size);
    if (data)
        memcpy(d->data + off, data, len);
    else
        memset(d->data + off, 0, len);
    return 0;
}

static int disk_read(void *opaque, uint64_t off, void *buf, size_t len) {
    disk *d = opaque;
    size_t have = off < d->size ? d->size - off : 0;

    if (have > len)
        have = len;
    memcpy(buf, d->data + off, have);
    memset((uint8_t *)buf + have, 0, len - have);
    return 0;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t sum_without(const uint8_t *p, size_t len, size_t field) {
    uint32_t s = 0;
    for (size_t i = 0; i < len; i++)
        if (i < field || i >= field + 4)
            s += p[i];
    return ~s;
}

/* A disk of 5 MiB + 3 sectors: data in blocks 0 and 2, block 1 all zeros. */
static disk sample_disk(void) {
    disk d = {.size = 5 * MiB + 3 * 512};

    d.data = calloc(1, d.size);
    for (size_t i = 0; i < 4096; i++)
        d.data[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 4 * MiB + 100; i < d.size; i++)
        d.data[i] = (uint8_t)(i >> 3);
    return d;
}

/* The whole image, produced in pieces of `piece` bytes. */
static uint8_t *render(const storage_vhd_layout *l, disk *src, size_t piece) {
    uint8_t *img = malloc(l->total);
    uint64_t pos = 0;

    while (pos < l->total) {
        ssize_t n = storage_vhd_layout_read(l, pos, img + pos, piece, disk_read, src);
        assert_true(n > 0);
        pos += (uint64_t)n;
    }
    return img;
}

static int decode(const uint8_t *img, size_t len, size_t piece, disk *out, uint64_t *ret_size,
                  storage_vhd_decoder **ret_dec) {
    storage_vhd_decoder *dec = storage_vhd_decoder_new(disk_write, out);
    int rc = 0;

    for (size_t at = 0; at < len && rc == 0; at += piece)
        rc = storage_vhd_decoder_feed(dec, img + at, len - at < piece ? len - at : piece);
    if (rc == 0)
        rc = storage_vhd_decoder_finish(dec, ret_size);
    if (ret_dec)
        *ret_dec = dec;
    else
        storage_vhd_decoder_free(dec);
    return rc;
}

static void layout_of(disk *src, storage_vhd_layout *l) {
    uint32_t n = storage_vhd_blocks(src->size);
    bool present[8] = {0};
    uint8_t id[16] = {1, 2, 3};

    assert_int_equal(n, 3);
    for (uint32_t i = 0; i < n; i++)
        for (size_t b = (size_t)i * BS; b < (size_t)(i + 1) * BS && b < src->size; b++)
            present[i] |= src->data[b] != 0;
    assert_int_equal(storage_vhd_layout_init(l, src->size, present, id, 946684800 + 1000), 0);
}

static void test_layout(void **state) {
    disk src = sample_disk();
    storage_vhd_layout l;
    uint8_t *img;

    layout_of(&src, &l);
    /* footer copy, header at 512, BAT at 1536 padded to 2048, two blocks, footer */
    assert_int_equal(l.meta_len, 2048);
    assert_int_equal(l.nallocated, 2);
    assert_int_equal(l.total, 2048 + 2 * (512 + BS) + 512);
    img = render(&l, &src, 1000);
    assert_memory_equal(img, "conectix", 8);
    assert_int_equal(be32(img + 64), sum_without(img, 512, 64));
    assert_int_equal(be32(img + 60), 3);                     /* dynamic */
    assert_int_equal(be32(img + 24), 1000);                  /* seconds since 2000 */
    assert_int_equal(be32(img + 52), 5 * MiB + 3 * 512);     /* current size (low word) */
    assert_memory_equal(img + 512, "cxsparse", 8);
    assert_int_equal(be32(img + 512 + 36), sum_without(img + 512, 1024, 36));
    assert_int_equal(be32(img + 512 + 28), 3);               /* max table entries */
    assert_int_equal(be32(img + 512 + 32), BS);
    assert_int_equal(be32(img + 1536), 2048 / 512);
    assert_int_equal(be32(img + 1540), 0xFFFFFFFFu);         /* the zero block is left out */
    assert_int_equal(be32(img + 1544), 2048 / 512 + (512 + BS) / 512);
    assert_int_equal(img[2048], 0xFF);                       /* bitmap: every sector present */
    assert_memory_equal(img + 2048 + 512, src.data, BS);
    assert_memory_equal(img + l.total - 512, img, 512);     /* the footer, twice */
    free(img);
    storage_vhd_layout_free(&l);
    free(src.data);
}

static void test_roundtrip(void **state) {
    static const size_t pieces[] = {1, 511, 777, 65536, 3 * MiB};
    disk src = sample_disk();
    storage_vhd_layout l;
    uint8_t *img;

    layout_of(&src, &l);
    img = render(&l, &src, 4096);
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        disk out = {.data = malloc(src.size), .size = src.size};
        uint64_t size = 0;
        memset(out.data, 0xEE, out.size); /* whatever was there: zeros must be written too */
        assert_int_equal(decode(img, l.total, pieces[i], &out, &size, NULL), 0);
        assert_int_equal(size, src.size);
        assert_memory_equal(out.data, src.data, src.size);
        free(out.data);
    }
    free(img);
    storage_vhd_layout_free(&l);
    free(src.data);
}

static void test_absent_sectors(void **state) {
    disk src = sample_disk(), out = {.data = calloc(1, src.size), .size = src.size};
    storage_vhd_layout l;
    uint64_t size;
    uint8_t *img;

    layout_of(&src, &l);
    img = render(&l, &src, 65536);
    img[2048] = 0x7F; /* block 0: sector 0 absent, its data junk to be ignored */
    assert_int_equal(decode(img, l.total, 4096, &out, &size, NULL), 0);
    assert_memory_equal(out.data + 512, src.data + 512, src.size - 512);
    for (size_t i = 0; i < 512; i++)
        assert_int_equal(out.data[i], 0);
    free(out.data);
    free(img);
    storage_vhd_layout_free(&l);
    free(src.data);
}

static void test_fixed(void **state) {
    disk src = sample_disk(), out = {.data = calloc(1, src.size), .size = src.size};
    storage_vhd_layout l;
    uint8_t *img = malloc(src.size + 512);
    uint64_t size = 0;

    layout_of(&src, &l);
    memcpy(img, src.data, src.size);
    memcpy(img + src.size, l.footer, 512);
    put_be32(img + src.size + 60, 2);                       /* fixed */
    memset(img + src.size + 16, 0xFF, 8);                   /* no dynamic header */
    put_be32(img + src.size + 64, sum_without(img + src.size, 512, 64));
    assert_int_equal(decode(img, src.size + 512, 1000, &out, &size, NULL), 0);
    assert_int_equal(size, src.size);
    assert_memory_equal(out.data, src.data, src.size);
    /* no footer at the end: not a VHD */
    memset(out.data, 0, out.size);
    assert_int_equal(decode(img, src.size, 1000, &out, &size, NULL), -EINVAL);
    free(out.data);
    free(img);
    storage_vhd_layout_free(&l);
    free(src.data);
}

static void test_refusals(void **state) {
    disk src = sample_disk(), out = {.data = calloc(1, src.size), .size = src.size};
    storage_vhd_decoder *dec;
    storage_vhd_layout l;
    uint64_t size;
    uint8_t *img;

    layout_of(&src, &l);
    img = render(&l, &src, 65536);

    /* cut short */
    assert_int_equal(decode(img, l.total - 512 - 100, 4096, &out, &size, &dec), -EINVAL);
    assert_non_null(strstr(storage_vhd_decoder_error(dec), "ends early"));
    storage_vhd_decoder_free(dec);

    /* a damaged dynamic header */
    img[600] ^= 1;
    assert_int_equal(decode(img, l.total, 4096, &out, &size, &dec), -EINVAL);
    assert_non_null(strstr(storage_vhd_decoder_error(dec), "checksum"));
    /* and the decoder stays refused */
    assert_int_equal(storage_vhd_decoder_feed(dec, img, 10), -EINVAL);
    storage_vhd_decoder_free(dec);
    img[600] ^= 1;

    /* two blocks at the same place */
    memcpy(img + 1544, img + 1536, 4);
    assert_int_equal(decode(img, l.total, 4096, &out, &size, &dec), -EINVAL);
    assert_non_null(strstr(storage_vhd_decoder_error(dec), "overlap"));
    storage_vhd_decoder_free(dec);

    /* a block inside the metadata */
    put_be32(img + 1544, 1);
    assert_int_equal(decode(img, l.total, 4096, &out, &size, NULL), -EINVAL);
    put_be32(img + 1544, 2048 / 512 + (512 + BS) / 512);

    /* a differencing disk */
    put_be32(img + 60, 4);
    put_be32(img + 64, sum_without(img, 512, 64));
    assert_int_equal(decode(img, l.total, 4096, &out, &size, &dec), -EINVAL);
    assert_non_null(strstr(storage_vhd_decoder_error(dec), "differencing"));
    storage_vhd_decoder_free(dec);

    free(out.data);
    free(img);
    storage_vhd_layout_free(&l);
    free(src.data);
}

static void test_write_error(void **state) {
    disk src = sample_disk(), out = {.data = calloc(1, src.size), .size = src.size, .fail_with = -ENOSPC};
    storage_vhd_layout l;
    uint64_t size;
    uint8_t *img;

    layout_of(&src, &l);
    img = render(&l, &src, 65536);
    assert_int_equal(decode(img, l.total, 4096, &out, &size, NULL), -ENOSPC);
    assert_int_equal(out.writes, 1); /* stopped at the first failure */
    free(out.data);
    free(img);
    storage_vhd_layout_free(&l);
    free(src.data);
}

static void test_limits(void **state) {
    storage_vhd_layout l;
    bool present[1] = {false};
    uint8_t id[16] = {0};

    assert_int_equal(storage_vhd_blocks(0), 0);
    assert_int_equal(storage_vhd_blocks(1), 1);
    assert_int_equal(storage_vhd_blocks(BS), 1);
    assert_int_equal(storage_vhd_blocks(BS + 1), 2);
    assert_int_equal(storage_vhd_blocks(STORAGE_VHD_MAX_SIZE + 1), 0);
    assert_int_equal(storage_vhd_layout_init(&l, STORAGE_VHD_MAX_SIZE + 1, present, id, 0), -EFBIG);
    /* an empty disk: metadata and footer only */
    assert_int_equal(storage_vhd_layout_init(&l, 0, present, id, 0), 0);
    assert_int_equal(l.total, 2048);
    storage_vhd_layout_free(&l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),         cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_absent_sectors), cmocka_unit_test(test_fixed),
        cmocka_unit_test(test_refusals),       cmocka_unit_test(test_write_error),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
