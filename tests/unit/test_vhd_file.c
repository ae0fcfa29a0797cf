/* Unit tests: VHD images on disk (storage/vhd_file.c): creating, chains,
 * writing, coalescing, re-parenting, resizing, and refusing hostile files. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/vhd_file.h"
#include "storage/vhd_format.h"

#define MiB (UINT64_C(1) << 20)
#define BS STORAGE_VHD_BLOCK_SIZE

static char dir[64];
static char err[256];

static char *path_of(const char *name) {
    static char buf[4][128];
    static int next;
    char *p = buf[next++ % 4];

    snprintf(p, 128, "%s/%s", dir, name);
    return p;
}

static int setup(void **state) {
    strcpy(dir, "/tmp/test_vhd_file.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state) {
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void reseal(uint8_t *p, size_t len, size_t field) {
    vhd_put32(p + field, vhd_checksum(p, len, field));
}

static void make(const char *name, uint64_t size, const char *parent) {
    storage_vhd_create_params p = {.path = path_of(name), .size = size, .now = 946684800 + 5};
    char pp[128];

    if (parent) {
        snprintf(pp, sizeof pp, "%s", path_of(parent));
        p.parent = pp;
        p.keep_empty_parent = true;
    }
    assert_int_equal(storage_vhd_create(&p, err, sizeof err), 0);
}

static storage_vhd_file *open_file(const char *name, bool writable) {
    storage_vhd_file *f = NULL;

    assert_int_equal(storage_vhd_file_open(&f, path_of(name), writable, err, sizeof err), 0);
    return f;
}

static void fill(uint8_t *buf, size_t len, uint8_t seed) {
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed + i * 13);
}

static void write_at(const char *name, uint64_t off, size_t len, uint8_t seed) {
    storage_vhd_file *f = open_file(name, true);
    uint8_t *buf = malloc(len);

    fill(buf, len, seed);
    assert_int_equal(storage_vhd_file_write(f, off, buf, len), 0);
    free(buf);
    storage_vhd_file_close(f);
}

/* Reads len bytes at off through the chain and compares them with seed's pattern (or zeros when seed < 0). */
static void expect(storage_vhd_file *f, uint64_t off, size_t len, int seed) {
    uint8_t *got = malloc(len), *want = calloc(1, len);

    if (seed >= 0)
        fill(want, len, (uint8_t)seed);
    assert_int_equal(storage_vhd_file_read(f, off, got, len), 0);
    assert_memory_equal(got, want, len);
    free(got);
    free(want);
}

static void test_create_dynamic(void **state) {
    storage_vhd_file *f;
    struct stat st;

    make("a.vhd", 5 * MiB, NULL); /* rounded up to 3 blocks */
    f = open_file("a.vhd", false);
    assert_int_equal(f->info.type, STORAGE_VHD_TYPE_DYNAMIC);
    assert_int_equal(storage_vhd_file_virtual_size(f), 6 * MiB);
    assert_int_equal(f->info.max_bat, 3);
    assert_int_equal(f->info.bat_offset, 1536);
    assert_int_equal(storage_vhd_info_allocated(&f->info), 0);
    assert_int_equal(stat(path_of("a.vhd"), &st), 0);
    assert_int_equal(storage_vhd_file_phys_size(f), (uint64_t)st.st_size);
    assert_int_equal(storage_vhd_file_phys_size(f), 2048 + 512);
    assert_memory_equal(f->info.footer + 28, "tap", 3);
    assert_int_equal(storage_vhd_file_check(f, true, err, sizeof err), 0);
    expect(f, 0, 4096, -1);
    storage_vhd_file_close(f);
    /* never over an existing file */
    {
        storage_vhd_create_params p = {.path = path_of("a.vhd"), .size = MiB};
        assert_int_equal(storage_vhd_create(&p, err, sizeof err), -EEXIST);
    }
}

static void test_write_read(void **state) {
    storage_vhd_file *f;

    make("w.vhd", 8 * MiB, NULL);
    write_at("w.vhd", 512, 1024, 7);              /* part of block 0 */
    write_at("w.vhd", BS - 512, 1024, 9);          /* across blocks 0 and 1 */
    f = open_file("w.vhd", false);
    assert_int_equal(storage_vhd_info_allocated(&f->info), 2);
    expect(f, 0, 512, -1);
    expect(f, 512, 1024, 7);
    expect(f, 1536, 1024, -1);
    expect(f, BS - 512, 1024, 9);
    expect(f, 3 * BS, BS, -1);
    assert_int_equal(storage_vhd_file_check(f, false, err, sizeof err), 0);
    /* past the end: zeros, and writes refused */
    expect(f, 8 * MiB - 512, 1024, -1);
    storage_vhd_file_close(f);
    f = open_file("w.vhd", true);
    {
        uint8_t b[512] = {0};
        assert_int_equal(storage_vhd_file_write(f, 8 * MiB, b, 512), -EINVAL);
        assert_int_equal(storage_vhd_file_write(f, 100, b, 512), -EINVAL);
    }
    storage_vhd_file_close(f);
}

/* Write syscalls of this process so far (/proc/self/io), or -1 where the kernel does not count them. */
static long long writes_so_far(void) {
    char line[128];
    long long n = -1;
    FILE *io = fopen("/proc/self/io", "r");

    if (!io)
        return -1;
    while (fgets(line, sizeof line, io))
        if (sscanf(line, "syscw: %lld", &n) == 1)
            break;
    fclose(io);
    return n;
}

/* A write over blocks that have no BAT entry yet: its blocks are allocated
 * together and written with their bitmaps in one pwritev, their BAT entries
 * in one write (an import pays per block otherwise: a footer move, a BAT
 * entry, a data and a bitmap write). Over a parent, the sectors it leaves
 * out of its first and last block still read from the parent. */
static void test_write_new_blocks(void **state) {
    size_t len = 3 * BS;
    uint8_t *pat = malloc(len), *child = malloc(2 * BS), *got = malloc(len), *want = malloc(len);
    storage_vhd_file *f;
    long long before, after;

    make("nb.vhd", 8 * MiB, NULL);
    f = open_file("nb.vhd", true);
    fill(pat, 2 * BS, 11);
    before = writes_so_far();
    assert_int_equal(storage_vhd_file_write(f, 0, pat, 2 * BS), 0);
    after = writes_so_far();
    if (before >= 0 && after >= 0) /* the old footer zeroed, the two footers, one pwritev, one BAT write */
        assert_true(after - before <= 5);
    storage_vhd_file_close(f);
    f = open_file("nb.vhd", false);
    assert_int_equal(storage_vhd_info_allocated(&f->info), 2);
    expect(f, 0, 2 * BS, 11);
    expect(f, 2 * BS, 2 * BS, -1);
    assert_int_equal(storage_vhd_file_check(f, false, err, sizeof err), 0);
    storage_vhd_file_close(f);

    make("nbp.vhd", 8 * MiB, NULL);
    fill(pat, len, 3);
    f = open_file("nbp.vhd", true);
    assert_int_equal(storage_vhd_file_write(f, 0, pat, len), 0);
    storage_vhd_file_close(f);
    make("nbc.vhd", 0, "nbp.vhd");
    fill(child, 2 * BS, 5);
    f = open_file("nbc.vhd", true);
    assert_int_equal(storage_vhd_file_write(f, BS / 2, child, 2 * BS), 0); /* blocks 0 to 2, in none whole */
    storage_vhd_file_close(f);
    f = open_file("nbc.vhd", false);
    assert_int_equal(storage_vhd_file_open_chain(f, false), 0);
    assert_int_equal(storage_vhd_info_allocated(&f->info), 3);
    memcpy(want, pat, len);
    memcpy(want + BS / 2, child, 2 * BS);
    assert_int_equal(storage_vhd_file_read(f, 0, got, len), 0);
    assert_memory_equal(got, want, len);
    assert_int_equal(storage_vhd_file_check(f, true, err, sizeof err), 0);
    storage_vhd_file_close(f);
    free(pat);
    free(child);
    free(got);
    free(want);
}

static void test_snapshot_chain(void **state) {
    storage_vhd_file *f;
    char *p = NULL, *loc = NULL;

    make("base.vhd", 4 * MiB, NULL);
    write_at("base.vhd", 0, 8192, 1);
    write_at("base.vhd", BS, 4096, 2);
    make("child.vhd", 0, "base.vhd");
    write_at("child.vhd", 4096, 1024, 3); /* over part of the parent's data */
    f = open_file("child.vhd", false);
    assert_int_equal(f->info.type, STORAGE_VHD_TYPE_DIFFERENCING);
    assert_int_equal(storage_vhd_file_virtual_size(f), 4 * MiB);
    assert_string_equal(f->info.parent_name, "base.vhd");
    assert_int_equal(f->info.loc[0].code, STORAGE_VHD_LOC_MACX);
    assert_int_equal(f->info.loc[1].code, STORAGE_VHD_LOC_W2KU);
    assert_int_equal(f->info.loc[2].code, STORAGE_VHD_LOC_W2RU);
    assert_int_equal(storage_vhd_file_locator_path(f, 0, &loc), 0);
    assert_string_equal(loc, "./base.vhd");
    free(loc);
    assert_int_equal(storage_vhd_file_parent_path(f, &p), 0);
    assert_non_null(strstr(p, "/base.vhd"));
    assert_true(p[0] == '/');
    free(p);
    /* without the chain, no read of the parent's part */
    {
        uint8_t b[512];
        assert_int_equal(storage_vhd_file_read(f, 0, b, 512), -ENOLINK);
    }
    assert_int_equal(storage_vhd_file_open_chain(f, false), 0);
    assert_int_equal(storage_vhd_file_depth(f), 2);
    assert_int_equal(storage_vhd_file_check(f, true, err, sizeof err), 0);
    expect(f, 0, 4096, 1);
    expect(f, 4096, 1024, 3);
    {
        uint8_t got[3072], want[8192];
        fill(want, sizeof want, 1);
        assert_int_equal(storage_vhd_file_read(f, 5120, got, sizeof got), 0);
        assert_memory_equal(got, want + 5120, sizeof got);
    }
    expect(f, BS, 4096, 2);
    expect(f, 3 * MiB, 4096, -1);
    storage_vhd_file_close(f);
    /* the parent is untouched */
    f = open_file("base.vhd", false);
    expect(f, 0, 8192, 1);
    storage_vhd_file_close(f);
}

static void test_coalesce(void **state) {
    storage_vhd_file *f;
    uint64_t n = 0;

    make("cb.vhd", 4 * MiB, NULL);
    write_at("cb.vhd", 0, 4096, 1);
    make("cc.vhd", 0, "cb.vhd");
    write_at("cc.vhd", 1024, 1024, 5);
    write_at("cc.vhd", BS + 512, 512, 6); /* a block the parent lacks */
    f = open_file("cc.vhd", false);
    assert_int_equal(storage_vhd_file_coalesce(f, &n), -ENOLINK);
    assert_int_equal(storage_vhd_file_open_chain(f, true), 0);
    assert_int_equal(storage_vhd_file_coalesce(f, &n), 0);
    assert_int_equal(n, 3);
    storage_vhd_file_close(f);
    f = open_file("cb.vhd", false);
    expect(f, 0, 1024, 1);
    expect(f, 1024, 1024, 5);
    {
        uint8_t want[4096], got[1024];
        fill(want, sizeof want, 1);
        assert_int_equal(storage_vhd_file_read(f, 2048, got, sizeof got), 0);
        assert_memory_equal(got, want + 2048, sizeof got);
    }
    expect(f, BS + 512, 512, 6);
    expect(f, BS, 512, -1);
    assert_int_equal(storage_vhd_file_check(f, false, err, sizeof err), 0);
    storage_vhd_file_close(f);
    /* a parent that is not the one the child was made over is never written */
    make("cx.vhd", 4 * MiB, NULL);
    make("cy.vhd", 0, "cx.vhd");
    write_at("cy.vhd", 0, 512, 4);
    {
        /* cx.vhd replaced by another image of the same name */
        char from[128];
        snprintf(from, sizeof from, "%s", path_of("cx.vhd"));
        assert_int_equal(unlink(from), 0);
        make("cx.vhd", 4 * MiB, NULL);
    }
    f = open_file("cy.vhd", false);
    assert_int_equal(storage_vhd_file_open_chain(f, true), -EINVAL);
    assert_non_null(strstr(f->error, "uuid"));
    storage_vhd_file_close(f);
    f = open_file("cx.vhd", false);
    assert_int_equal(storage_vhd_info_allocated(&f->info), 0);
    storage_vhd_file_close(f);
    /* a dynamic disk has nothing to coalesce into */
    f = open_file("cb.vhd", false);
    assert_int_equal(storage_vhd_file_coalesce(f, &n), -EINVAL);
    storage_vhd_file_close(f);
}

static void test_set_parent_hidden(void **state) {
    storage_vhd_file *f, *p2;
    char *p = NULL;

    make("p1.vhd", 4 * MiB, NULL);
    make("p2.vhd", 4 * MiB, NULL);
    write_at("p2.vhd", 0, 512, 8);
    make("kid.vhd", 0, "p1.vhd");
    f = open_file("kid.vhd", true);
    assert_int_equal(storage_vhd_file_set_parent(f, path_of("p2.vhd"), false), 0);
    storage_vhd_file_close(f);
    f = open_file("kid.vhd", false);
    assert_string_equal(f->info.parent_name, "p2.vhd");
    assert_int_equal(storage_vhd_file_parent_path(f, &p), 0);
    assert_non_null(strstr(p, "/p2.vhd"));
    free(p);
    p2 = open_file("p2.vhd", false);
    assert_memory_equal(f->info.parent_uuid, p2->info.uuid, 16);
    storage_vhd_file_close(p2);
    assert_int_equal(storage_vhd_file_check(f, true, err, sizeof err), 0);
    assert_int_equal(storage_vhd_file_open_chain(f, false), 0);
    expect(f, 0, 512, 8);
    storage_vhd_file_close(f);
    /* a dynamic disk has no parent to set */
    f = open_file("p1.vhd", true);
    assert_int_equal(storage_vhd_file_set_parent(f, path_of("p2.vhd"), false), -EINVAL);
    assert_false(f->info.hidden);
    assert_int_equal(storage_vhd_file_set_hidden(f, true), 0);
    storage_vhd_file_close(f);
    f = open_file("p1.vhd", false);
    assert_true(f->info.hidden);
    assert_int_equal(storage_vhd_file_check(f, false, err, sizeof err), 0); /* the copy at 0 follows */
    storage_vhd_file_close(f);
}

static void test_skip_empty_parent(void **state) {
    storage_vhd_create_params p = {.now = 946684800};
    storage_vhd_file *f;
    char parent[128], child[128];

    make("e0.vhd", 4 * MiB, NULL);
    write_at("e0.vhd", 0, 512, 4);
    make("e1.vhd", 0, "e0.vhd"); /* empty */
    snprintf(parent, sizeof parent, "%s", path_of("e1.vhd"));
    snprintf(child, sizeof child, "%s", path_of("e2.vhd"));
    p.path = child;
    p.parent = parent;
    assert_int_equal(storage_vhd_create(&p, err, sizeof err), 0);
    f = open_file("e2.vhd", false);
    assert_string_equal(f->info.parent_name, "e0.vhd");
    storage_vhd_file_close(f);
}

static void test_raw_parent(void **state) {
    storage_vhd_create_params p = {.now = 946684800, .parent_raw = true};
    storage_vhd_file *f;
    char parent[128], child[128];
    uint8_t data[4096];
    int fd;

    snprintf(parent, sizeof parent, "%s", path_of("disk.raw"));
    snprintf(child, sizeof child, "%s", path_of("over.vhd"));
    fd = open(parent, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    fill(data, sizeof data, 11);
    assert_int_equal(pwrite(fd, data, sizeof data, 0), (ssize_t)sizeof data);
    assert_int_equal(ftruncate(fd, 2 * MiB), 0);
    close(fd);
    p.path = child;
    p.parent = parent;
    assert_int_equal(storage_vhd_create(&p, err, sizeof err), 0);
    f = open_file("over.vhd", false);
    assert_int_equal(storage_vhd_file_virtual_size(f), 2 * MiB);
    assert_int_equal(storage_vhd_file_open_chain(f, false), 0);
    assert_true(f->parent->raw);
    expect(f, 0, 4096, 11);
    expect(f, 4096, 4096, -1);
    storage_vhd_file_close(f);
    f = open_file("over.vhd", false); /* beside it: may be coalesced into */
    assert_int_equal(storage_vhd_file_open_chain(f, true), 0);
    storage_vhd_file_close(f);
    /* a raw parent elsewhere is read, never written */
    assert_int_equal(mkdir(path_of("elsewhere"), 0755), 0);
    assert_int_equal(rename(parent, path_of("elsewhere/disk.raw")), 0);
    snprintf(parent, sizeof parent, "%s", path_of("elsewhere/disk.raw"));
    f = open_file("over.vhd", true);
    assert_int_equal(storage_vhd_file_set_parent(f, parent, true), 0);
    storage_vhd_file_close(f);
    f = open_file("over.vhd", false);
    assert_int_equal(storage_vhd_file_open_chain(f, false), 0);
    expect(f, 0, 4096, 11);
    storage_vhd_file_close(f);
    f = open_file("over.vhd", false);
    assert_int_equal(storage_vhd_file_open_chain(f, true), -EINVAL);
    assert_non_null(strstr(f->error, "not beside"));
    storage_vhd_file_close(f);
}

static void test_resize(void **state) {
    storage_vhd_file *f;

    make("r.vhd", 4 * MiB, NULL);
    write_at("r.vhd", 0, 1024, 3);
    f = open_file("r.vhd", true);
    assert_int_equal(storage_vhd_file_resize(f, 2 * MiB), -EINVAL); /* no shrinking */
    assert_int_equal(storage_vhd_file_resize(f, 300 * MiB), 0);
    storage_vhd_file_close(f);
    write_at("r.vhd", 299 * MiB, 512, 4);
    f = open_file("r.vhd", false);
    assert_int_equal(storage_vhd_file_virtual_size(f), 300 * MiB);
    assert_true(f->info.max_bat >= 150);
    assert_true(f->info.bat_offset > 1536); /* moved after the data */
    expect(f, 0, 1024, 3);
    expect(f, 299 * MiB, 512, 4);
    expect(f, 100 * MiB, 512, -1);
    assert_int_equal(storage_vhd_file_check(f, false, err, sizeof err), 0);
    storage_vhd_file_close(f);
}

static void test_fixed(void **state) {
    storage_vhd_create_params p = {.path = path_of("fx.vhd"), .size = 3 * MiB, .fixed = true};
    storage_vhd_file *f;
    struct stat st;

    assert_int_equal(storage_vhd_create(&p, err, sizeof err), 0);
    assert_int_equal(stat(path_of("fx.vhd"), &st), 0);
    assert_int_equal(st.st_size, 4 * MiB + 512);
    write_at("fx.vhd", 512, 512, 9);
    f = open_file("fx.vhd", false);
    assert_int_equal(f->info.type, STORAGE_VHD_TYPE_FIXED);
    expect(f, 512, 512, 9);
    assert_int_equal(storage_vhd_file_phys_size(f), 4 * MiB + 512);
    storage_vhd_file_close(f);
}

/* An empty dynamic image as tapdisk 1.3 lays it out: BAT, then a batmap
 * header and its map (one bit set), then the footer. */
static void make_tapdisk_image(const char *name, uint8_t map_first_byte) {
    uint8_t img[3584] = {0}, id[16] = {9, 9, 9};
    int fd;

    storage_vhd_footer_init(img, 6 * MiB, STORAGE_VHD_TYPE_DYNAMIC, id, 946684800);
    vhd_put32(img + VHD_F_CREATOR_VERSION, 0x00010003);
    reseal(img, 512, VHD_F_CHECKSUM);
    storage_vhd_header_init(img + 512, 1536, 3);
    reseal(img + 512, 1024, VHD_H_CHECKSUM);
    memset(img + 1536, 0xFF, 12);
    memcpy(img + 2048, VHD_BATMAP_COOKIE, 8);
    vhd_put64(img + 2048 + VHD_B_OFFSET, 2560);
    vhd_put32(img + 2048 + VHD_B_SIZE, 1);
    img[2560] = map_first_byte;
    memcpy(img + 3072, img, 512);
    fd = open(path_of(name), O_CREAT | O_EXCL | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, img, sizeof img), (ssize_t)sizeof img);
    close(fd);
}

static void test_batmap_kept(void **state) {
    storage_vhd_file *f;
    uint8_t bh[512], map[512];

    make_tapdisk_image("tap.vhd", 0x20);
    f = open_file("tap.vhd", false);
    assert_int_equal(f->info.batmap_header, 2048);
    assert_int_equal(f->info.batmap_offset, 2560);
    assert_int_equal(f->info.batmap_bytes, 512);
    assert_int_equal(storage_vhd_file_phys_size(f), 3584);
    storage_vhd_file_close(f);
    /* a new block goes after the map, not over it */
    write_at("tap.vhd", 0, 512, 5);
    f = open_file("tap.vhd", false);
    assert_int_equal(f->info.bat[0], 3072 / 512);
    assert_int_equal(f->info.batmap_offset, 2560);
    expect(f, 0, 512, 5);
    assert_int_equal(storage_vhd_file_check(f, false, err, sizeof err), 0);
    storage_vhd_file_close(f);
    /* a BAT that must grow moves with the batmap after it, bits kept */
    f = open_file("tap.vhd", true);
    assert_int_equal(storage_vhd_file_resize(f, 40 * MiB), 0);
    storage_vhd_file_close(f);
    f = open_file("tap.vhd", false);
    assert_int_equal(f->info.batmap_header, f->info.bat_offset + vhd_round_up((uint64_t)f->info.max_bat * 4, 512));
    assert_int_equal(pread(f->fd, bh, 512, (off_t)f->info.batmap_header), 512);
    assert_memory_equal(bh, VHD_BATMAP_COOKIE, 8);
    assert_int_equal(pread(f->fd, map, 512, (off_t)f->info.batmap_offset), 512);
    assert_int_equal(map[0], 0x20);
    expect(f, 0, 512, 5);
    assert_int_equal(storage_vhd_file_check(f, false, err, sizeof err), 0);
    storage_vhd_file_close(f);
    /* a map said to lie outside the file */
    make_tapdisk_image("tapbad.vhd", 0);
    {
        int fd = open(path_of("tapbad.vhd"), O_WRONLY);
        uint8_t off[8];
        vhd_put64(off, 1u << 30);
        assert_int_equal(pwrite(fd, off, 8, 2048 + VHD_B_OFFSET), 8);
        close(fd);
        f = NULL;
        assert_int_equal(storage_vhd_file_open(&f, path_of("tapbad.vhd"), false, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "batmap invalid"));
    }
}

/* ---- hostile files ------------------------------------------------------------------------ */

typedef struct image {
    uint8_t *data;
    size_t len;
} image;

static int mem_read(void *opaque, uint64_t off, void *buf, size_t len) {
    image *im = opaque;

    assert_true(off <= im->len && len <= im->len - off); /* the parser checks before it reads */
    memcpy(buf, im->data + off, len);
    return 0;
}

static image load(const char *name) {
    image im = {0};
    FILE *fp = fopen(path_of(name), "rb");

    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    im.len = (size_t)ftell(fp);
    rewind(fp);
    im.data = malloc(im.len);
    assert_int_equal(fread(im.data, 1, im.len, fp), im.len);
    fclose(fp);
    return im;
}

static int parse(image *im) {
    storage_vhd_info info;
    int rc;

    err[0] = '\0';
    rc = storage_vhd_info_parse(&info, mem_read, im, im->len, err, sizeof err);
    if (rc == 0)
        storage_vhd_info_free(&info);
    return rc;
}

static void test_hostile(void **state) {
    image im, t;
    uint8_t *h;
    size_t footer;

    make("h0.vhd", 4 * MiB, NULL);
    make("h.vhd", 0, "h0.vhd");
    write_at("h.vhd", 0, 512, 1);
    im = load("h.vhd");
    footer = im.len - 512;
    t.data = malloc(im.len);
    t.len = im.len;
#define FRESH() memcpy(t.data, im.data, im.len)
    h = t.data + 512;
    FRESH();
    assert_int_equal(parse(&t), 0);

    /* a bad primary footer: the copy at 0 stands in */
    FRESH();
    t.data[footer + 70] ^= 1;
    assert_int_equal(parse(&t), 0);
    /* both bad */
    t.data[70] ^= 1;
    assert_int_equal(parse(&t), -EINVAL);
    assert_string_equal(err, "primary footer invalid: invalid checksum");
    /* size beyond the limit */
    FRESH();
    for (size_t at = 0; at <= footer; at += footer) {
        t.data[at + 48] = 0x7F;
        reseal(t.data + at, 512, 64);
    }
    assert_int_equal(parse(&t), -EINVAL);
    /* header checksum */
    FRESH();
    h[100] ^= 1;
    assert_int_equal(parse(&t), -EINVAL);
    assert_string_equal(err, "header invalid: invalid checksum");
    /* a BAT larger than the file */
    FRESH();
    vhd_put32(h + 28, 1u << 21);
    reseal(h, 1024, 36);
    assert_int_equal(parse(&t), -EINVAL);
    vhd_put32(h + 28, 0xFFFFFFFFu);
    reseal(h, 1024, 36);
    assert_int_equal(parse(&t), -EINVAL);
    /* block size not a power of two, zero */
    FRESH();
    vhd_put32(h + 32, 3 * 512);
    reseal(h, 1024, 36);
    assert_int_equal(parse(&t), -EINVAL);
    vhd_put32(h + 32, 0);
    reseal(h, 1024, 36);
    assert_int_equal(parse(&t), -EINVAL);
    /* 2 TiB in 512-byte blocks: 2^32 blocks, which must not wrap to 0 against a small BAT */
    FRESH();
    memset(t.data + footer + 48, 0, 8);
    t.data[footer + 48 + 2] = 0x02; /* current size 2^41 */
    reseal(t.data + footer, 512, 64);
    vhd_put32(h + 32, 512);
    reseal(h, 1024, 36);
    assert_int_equal(parse(&t), -EINVAL);
    assert_non_null(strstr(err, "4294967296 blocks"));
    /* a block past the end, into the metadata, overlapping another */
    FRESH();
    vhd_put32(t.data + 1536, (uint32_t)(footer / 512));
    assert_int_equal(parse(&t), -EINVAL);
    assert_non_null(strstr(err, "beyond the end of the file"));
    FRESH();
    vhd_put32(t.data + 1536, 3);
    assert_int_equal(parse(&t), -EINVAL);
    assert_non_null(strstr(err, "overlaps"));
    FRESH();
    vhd_put32(t.data + 1536 + 4, vhd_get32(t.data + 1536) + 1);
    assert_int_equal(parse(&t), -EINVAL);
    /* a block beyond the disk's size */
    FRESH();
    vhd_put32(t.data + 1536 + 4 * 3, 0xFFFFFFFFu); /* still fine */
    assert_int_equal(parse(&t), 0);
    /* locator out of the file */
    FRESH();
    vhd_put32(h + 576 + 20, 0x7FFFFFFF);
    reseal(h, 1024, 36);
    assert_int_equal(parse(&t), -EINVAL);
    assert_non_null(strstr(err, "locator"));
    FRESH();
    vhd_put32(h + 576 + 8, 100000); /* length over its space */
    reseal(h, 1024, 36);
    assert_int_equal(parse(&t), -EINVAL);
    /* an unpaired surrogate in the parent name */
    FRESH();
    h[64] = 0xD8;
    h[65] = 0x00;
    h[66] = 0x00;
    h[67] = 0x41;
    reseal(h, 1024, 36);
    assert_int_equal(parse(&t), -EINVAL);
    /* header offset beyond the file */
    FRESH();
    t.data[16 + 6] = 0x7F;
    reseal(t.data, 512, 64);
    memcpy(t.data + footer, t.data, 512);
    assert_int_equal(parse(&t), -EINVAL);
    /* every truncation of the image is refused or parsed, never read past */
    for (size_t cut = 0; cut < im.len; cut += cut < 4096 ? 1 : 4093) {
        image s = {im.data, cut};
        (void)parse(&s);
    }
    free(t.data);
    free(im.data);
}

/* The extent at off must be there (at its own offset in the file of the chain that
 * holds it, len bytes) and read as the chain reads. */
static void expect_extent(storage_vhd_file *f, uint64_t off, uint64_t len, uint64_t want_len, int want_fd) {
    uint64_t n = len, at = 0;
    int fd = -1;
    uint8_t *got, *via;

    assert_int_equal(storage_vhd_file_extent(f, off, &n, &fd, &at), 1);
    assert_int_equal(n, want_len);
    assert_int_equal(fd, want_fd);
    got = malloc(n);
    via = malloc(n);
    assert_int_equal(pread(fd, got, n, (off_t)at), (ssize_t)n);
    assert_int_equal(storage_vhd_file_read(f, off, via, n), 0);
    assert_memory_equal(got, via, n);
    free(got);
    free(via);
}

static void test_extents(void **state) {
    storage_vhd_file *f;
    uint64_t n;
    int fd;
    uint64_t at;

    make("ebase.vhd", 8 * MiB, NULL);
    write_at("ebase.vhd", 0, BS, 1);          /* block 0: full in the parent */
    write_at("ebase.vhd", 2 * BS, BS, 2);     /* block 2: full in the parent, partly over in the leaf */
    make("eleaf.vhd", 0, "ebase.vhd");
    write_at("eleaf.vhd", BS, BS, 3);         /* block 1: full in the leaf */
    write_at("eleaf.vhd", 2 * BS + 4096, 512, 4);
    f = open_file("eleaf.vhd", false);
    assert_int_equal(storage_vhd_file_open_chain(f, false), 0);
    expect_extent(f, 4096, 8 * MiB, BS - 4096, f->parent->fd); /* the leaf has no block: the parent's */
    expect_extent(f, BS + 512, 100, 100, f->fd);
    expect_extent(f, BS, 8 * MiB, BS, f->fd);                  /* cut at the block's end */
    n = BS;
    assert_int_equal(storage_vhd_file_extent(f, 2 * BS, &n, &fd, &at), 0); /* a partial bitmap: read it */
    n = BS;
    assert_int_equal(storage_vhd_file_extent(f, 3 * BS, &n, &fd, &at), 0); /* nowhere: zeros */
    n = BS;
    assert_int_equal(storage_vhd_file_extent(f, 8 * MiB, &n, &fd, &at), 0); /* past the end */
    storage_vhd_file_close(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_dynamic),   cmocka_unit_test(test_write_read),
        cmocka_unit_test(test_snapshot_chain),   cmocka_unit_test(test_coalesce),
        cmocka_unit_test(test_set_parent_hidden), cmocka_unit_test(test_skip_empty_parent),
        cmocka_unit_test(test_raw_parent),       cmocka_unit_test(test_resize),
        cmocka_unit_test(test_fixed),            cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_batmap_kept),      cmocka_unit_test(test_extents),
        cmocka_unit_test(test_write_new_blocks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
