/* VHD images on disk: see vhd_file.h. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include "storage/vhd_file.h"
#include "storage/vhd_format.h"

#define SECTOR STORAGE_VHD_SECTOR
#define FOOTER STORAGE_VHD_FOOTER_SIZE
#define HEADER STORAGE_VHD_HEADER_SIZE
#define MIN_BLOCK_SIZE SECTOR
#define MAX_BLOCK_SIZE (64u << 20)
#define NAME_BYTES 512u /* prt_name */
#define IO_CHUNK (1u << 20)

static int failf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int failf(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static uint32_t bitmap_bytes(uint32_t block_size) {
    return (uint32_t)vhd_round_up((block_size / SECTOR + 7) / 8, SECTOR);
}

static bool is_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* ---- UTF-16 <-> UTF-8 ------------------------------------------------------------ */

/* Decodes n bytes of UTF-16 (big or little endian) up to the first NUL into
 * out (cap bytes with its NUL). -EINVAL on unpaired surrogates or overflow. */
static int utf16_to_utf8(const uint8_t *in, size_t n, bool big, char *out, size_t cap) {
    size_t o = 0;

    for (size_t i = 0; i + 1 < n; i += 2) {
        uint32_t c = big ? (uint32_t)in[i] << 8 | in[i + 1] : (uint32_t)in[i + 1] << 8 | in[i];
        if (c == 0)
            break;
        if (c >= 0xD800 && c < 0xDC00) {
            uint32_t lo;
            if (i + 3 >= n)
                return -EINVAL;
            lo = big ? (uint32_t)in[i + 2] << 8 | in[i + 3] : (uint32_t)in[i + 3] << 8 | in[i + 2];
            if (lo < 0xDC00 || lo >= 0xE000)
                return -EINVAL;
            c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
            i += 2;
        } else if (c >= 0xDC00 && c < 0xE000)
            return -EINVAL;
        if (o + 5 > cap)
            return -EINVAL;
        if (c < 0x80)
            out[o++] = (char)c;
        else if (c < 0x800) {
            out[o++] = (char)(0xC0 | c >> 6);
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out[o++] = (char)(0xE0 | c >> 12);
            out[o++] = (char)(0x80 | (c >> 6 & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | c >> 18);
            out[o++] = (char)(0x80 | (c >> 12 & 0x3F));
            out[o++] = (char)(0x80 | (c >> 6 & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    if (o >= cap)
        return -EINVAL;
    out[o] = '\0';
    return 0;
}

/* Encodes UTF-8 s into UTF-16 at out (cap bytes); the byte count, or -EINVAL. */
static ssize_t utf8_to_utf16(const char *s, bool big, uint8_t *out, size_t cap) {
    const uint8_t *p = (const uint8_t *)s;
    size_t o = 0;

    while (*p) {
        uint32_t c;
        int extra;
        if (*p < 0x80) {
            c = *p;
            extra = 0;
        } else if ((*p & 0xE0) == 0xC0) {
            c = *p & 0x1F;
            extra = 1;
        } else if ((*p & 0xF0) == 0xE0) {
            c = *p & 0x0F;
            extra = 2;
        } else if ((*p & 0xF8) == 0xF0) {
            c = *p & 0x07;
            extra = 3;
        } else
            return -EINVAL;
        p++;
        for (int k = 0; k < extra; k++, p++) {
            if ((*p & 0xC0) != 0x80)
                return -EINVAL;
            c = c << 6 | (*p & 0x3F);
        }
        if (c > 0x10FFFF || (c >= 0xD800 && c < 0xE000))
            return -EINVAL;
        uint32_t units[2], nu = 1;
        if (c >= 0x10000) {
            units[0] = 0xD800 + ((c - 0x10000) >> 10);
            units[1] = 0xDC00 + ((c - 0x10000) & 0x3FF);
            nu = 2;
        } else
            units[0] = c;
        for (uint32_t k = 0; k < nu; k++) {
            if (o + 2 > cap)
                return -EINVAL;
            out[o + (big ? 0 : 1)] = (uint8_t)(units[k] >> 8);
            out[o + (big ? 1 : 0)] = (uint8_t)units[k];
            o += 2;
        }
    }
    return (ssize_t)o;
}

/* ---- parsing ------------------------------------------------------------------------ */

typedef struct extent {
    uint64_t start, end;
    const char *what;
    uint32_t index;
} extent;

static int by_start(const void *a, const void *b) {
    const extent *x = a, *y = b;

    return x->start < y->start ? -1 : x->start > y->start;
}

/* Why a footer is not one ("" when it is). */
static const char *footer_problem(const uint8_t *f) {
    uint32_t type;

    if (memcmp(f, VHD_FOOTER_COOKIE, 8) != 0)
        return "invalid cookie";
    if (vhd_get32(f + VHD_F_CHECKSUM) != vhd_checksum(f, FOOTER, VHD_F_CHECKSUM))
        return "invalid checksum";
    if ((vhd_get32(f + VHD_F_VERSION) >> 16) != 1)
        return "invalid version";
    type = vhd_get32(f + VHD_F_DISK_TYPE);
    if (type != VHD_DISK_FIXED && type != VHD_DISK_DYNAMIC && type != VHD_DISK_DIFFERENCING)
        return "invalid type";
    if (vhd_get64(f + VHD_F_CURRENT_SIZE) > STORAGE_VHD_MAX_SIZE)
        return "invalid size";
    if (type != VHD_DISK_FIXED) {
        uint64_t off = vhd_get64(f + VHD_F_DATA_OFFSET);
        if (off < FOOTER || off % SECTOR)
            return "invalid data offset";
    }
    return "";
}

static bool has_batmap_version(const uint8_t *footer) {
    return memcmp(footer + VHD_F_CREATOR_APP, "tap", 3) == 0 && vhd_get32(footer + VHD_F_CREATOR_VERSION) >= 0x00010002;
}

/* The batmap's place, so that nothing is ever written over it. */
static int parse_batmap(storage_vhd_info *t, storage_vhd_read_fn read, void *opaque, char *err, size_t errlen) {
    uint8_t bh[SECTOR];
    uint64_t at = t->bat_offset + vhd_round_up((uint64_t)t->max_bat * 4, SECTOR), off, bytes;
    int rc;

    if (!has_batmap_version(t->footer) || at > t->footer_offset || t->footer_offset - at < SECTOR)
        return 0;
    if ((rc = read(opaque, at, bh, SECTOR)) < 0)
        return rc;
    if (memcmp(bh, VHD_BATMAP_COOKIE, 8) != 0)
        return 0;
    off = vhd_get64(bh + VHD_B_OFFSET);
    bytes = (uint64_t)vhd_get32(bh + VHD_B_SIZE) * SECTOR;
    if (off % SECTOR || off > t->footer_offset || t->footer_offset - off < bytes || bytes > STORAGE_VHD_MAX_BAT)
        return failf(err, errlen, "batmap invalid: map at %llu beyond the end of the file", (unsigned long long)off);
    t->batmap_header = at;
    t->batmap_offset = off;
    t->batmap_bytes = bytes;
    return 0;
}

static int parse_header(storage_vhd_info *t, storage_vhd_read_fn read, void *opaque, uint64_t file_size, char *err,
                        size_t errlen) {
    const uint8_t *h = t->header;
    uint64_t bat_bytes, nblocks;
    int rc;

    t->header_offset = vhd_get64(t->footer + VHD_F_DATA_OFFSET);
    if (t->header_offset > t->footer_offset || t->footer_offset - t->header_offset < HEADER)
        return failf(err, errlen, "header invalid: header offset %llu beyond the end of the file",
                     (unsigned long long)t->header_offset);
    if ((rc = read(opaque, t->header_offset, t->header, HEADER)) < 0)
        return rc;
    if (memcmp(h, VHD_HEADER_COOKIE, 8) != 0)
        return failf(err, errlen, "header invalid: invalid cookie");
    if (vhd_get32(h + VHD_H_CHECKSUM) != vhd_checksum(h, HEADER, VHD_H_CHECKSUM))
        return failf(err, errlen, "header invalid: invalid checksum");
    if ((vhd_get32(h + VHD_H_VERSION) >> 16) != 1)
        return failf(err, errlen, "header invalid: invalid header version");
    t->block_size = vhd_get32(h + VHD_H_BLOCK_SIZE);
    if (t->block_size < MIN_BLOCK_SIZE || t->block_size > MAX_BLOCK_SIZE || (t->block_size & (t->block_size - 1)))
        return failf(err, errlen, "header invalid: invalid block size %u", t->block_size);
    t->bitmap_len = bitmap_bytes(t->block_size);
    t->max_bat = vhd_get32(h + VHD_H_MAX_ENTRIES);
    nblocks = (t->size + t->block_size - 1) / t->block_size; /* up to 2^32: not a uint32_t yet */
    if (t->max_bat > STORAGE_VHD_MAX_BAT)
        return failf(err, errlen, "header invalid: BAT of %u entries is too large", t->max_bat);
    if (t->max_bat < nblocks)
        return failf(err, errlen, "header invalid: BAT of %u entries for %llu blocks", t->max_bat,
                     (unsigned long long)nblocks);
    t->nblocks = (uint32_t)nblocks;
    t->bat_offset = vhd_get64(h + VHD_H_TABLE_OFFSET);
    bat_bytes = (uint64_t)t->max_bat * 4;
    if (t->bat_offset % SECTOR || t->bat_offset > t->footer_offset || t->footer_offset - t->bat_offset < bat_bytes)
        return failf(err, errlen, "header invalid: BAT at %llu beyond the end of the file",
                     (unsigned long long)t->bat_offset);
    t->bat = malloc(bat_bytes ? (size_t)bat_bytes : 1);
    if (!t->bat)
        return -ENOMEM;
    if (bat_bytes && (rc = read(opaque, t->bat_offset, t->bat, (size_t)bat_bytes)) < 0)
        return rc;
    for (uint32_t i = 0; i < t->max_bat; i++)
        t->bat[i] = vhd_get32((const uint8_t *)&t->bat[i]);
    if ((rc = parse_batmap(t, read, opaque, err, errlen)) < 0)
        return rc;
    if (t->type == VHD_DISK_DIFFERENCING) {
        memcpy(t->parent_uuid, h + VHD_H_PARENT_UUID, 16);
        t->parent_time = vhd_get32(h + VHD_H_PARENT_TIMESTAMP);
        if (utf16_to_utf8(h + VHD_H_PARENT_NAME, NAME_BYTES, true, t->parent_name, sizeof t->parent_name) < 0)
            return failf(err, errlen, "header invalid: invalid parent name");
        for (unsigned k = 0; k < VHD_H_LOCATOR_COUNT; k++) {
            const uint8_t *l = h + VHD_H_LOCATORS + k * VHD_H_LOCATOR_SIZE;
            storage_vhd_locator *loc = &t->loc[k];
            loc->code = vhd_get32(l);
            if (!loc->code)
                continue;
            loc->space = vhd_get32(l + 4);
            if (loc->space < SECTOR) /* some writers count sectors */
                loc->space *= SECTOR;
            loc->len = vhd_get32(l + 8);
            loc->offset = vhd_get64(l + 16);
            if (loc->len > loc->space || loc->len > STORAGE_VHD_MAX_LOCATOR || loc->offset % SECTOR ||
                loc->offset > t->footer_offset || t->footer_offset - loc->offset < loc->space)
                return failf(err, errlen, "header invalid: parent locator %u out of bounds", k);
        }
    }
    (void)file_size;
    return 0;
}

/* Every structure inside [0, footer_offset), none overlapping another; sets data_end. */
static int check_extents(storage_vhd_info *t, char *err, size_t errlen) {
    size_t n = 0, cap = (size_t)t->max_bat + VHD_H_LOCATOR_COUNT + 5;
    extent *e = malloc(cap * sizeof *e);
    uint64_t per_block = (uint64_t)t->bitmap_len + t->block_size, end = 0;
    int rc = 0;

    if (!e)
        return -ENOMEM;
    e[n++] = (extent){0, FOOTER, "footer copy", 0};
    e[n++] = (extent){t->header_offset, t->header_offset + HEADER, "header", 0};
    e[n++] = (extent){t->bat_offset, t->bat_offset + (uint64_t)t->max_bat * 4, "BAT", 0};
    if (t->batmap_bytes) {
        e[n++] = (extent){t->batmap_header, t->batmap_header + SECTOR, "batmap header", 0};
        e[n++] = (extent){t->batmap_offset, t->batmap_offset + t->batmap_bytes, "batmap", 0};
    }
    for (unsigned k = 0; k < VHD_H_LOCATOR_COUNT; k++)
        if (t->loc[k].code && t->loc[k].space)
            e[n++] = (extent){t->loc[k].offset, t->loc[k].offset + t->loc[k].space, "parent locator", k};
    for (uint32_t i = 0; i < t->max_bat; i++) {
        uint64_t at;
        if (t->bat[i] == VHD_BAT_UNUSED)
            continue;
        if (i >= t->nblocks) {
            rc = failf(err, errlen, "BAT invalid: block %u allocated beyond the disk's size", i);
            goto out;
        }
        at = (uint64_t)t->bat[i] * SECTOR;
        if (at > t->footer_offset || t->footer_offset - at < per_block) {
            rc = failf(err, errlen, "BAT invalid: block %u at sector %u beyond the end of the file", i, t->bat[i]);
            goto out;
        }
        e[n++] = (extent){at, at + per_block, "block", i};
    }
    qsort(e, n, sizeof *e, by_start);
    for (size_t k = 0; k < n; k++) {
        if (k && e[k].start < e[k - 1].end) {
            rc = failf(err, errlen, "metadata invalid: %s %u overlaps %s %u", e[k].what, e[k].index, e[k - 1].what, e[k - 1].index);
            goto out;
        }
        if (vhd_round_up(e[k].end, SECTOR) > end) /* tables count padded to a sector, as tapdisk does */
            end = vhd_round_up(e[k].end, SECTOR);
    }
    t->data_end = end;
out:
    free(e);
    return rc;
}

int storage_vhd_info_parse(storage_vhd_info *ret, storage_vhd_read_fn read, void *opaque, uint64_t file_size,
                           char *err, size_t errlen) {
    storage_vhd_info t = {0};
    uint8_t copy[FOOTER];
    const char *why;
    int rc;

    if (file_size < FOOTER) {
        rc = failf(err, errlen, "primary footer invalid: file too small");
        goto out;
    }
    t.footer_offset = (file_size - FOOTER) / SECTOR * SECTOR;
    if ((rc = read(opaque, t.footer_offset, t.footer, FOOTER)) < 0)
        goto out;
    why = footer_problem(t.footer);
    if (*why) {
        /* dynamic images keep a copy first: vhd-util reads that one then */
        snprintf(t.primary_error, sizeof t.primary_error, "%s", why);
        if (file_size < 2 * FOOTER || (rc = read(opaque, 0, copy, FOOTER)) < 0 || *footer_problem(copy) ||
            vhd_get32(copy + VHD_F_DISK_TYPE) == VHD_DISK_FIXED) {
            rc = rc < 0 ? rc : failf(err, errlen, "primary footer invalid: %s", why);
            goto out;
        }
        memcpy(t.footer, copy, FOOTER);
        t.footer_from_copy = true;
    }
    t.type = vhd_get32(t.footer + VHD_F_DISK_TYPE);
    t.size = vhd_get64(t.footer + VHD_F_CURRENT_SIZE);
    memcpy(t.uuid, t.footer + VHD_F_UNIQUE_ID, 16);
    t.hidden = t.footer[VHD_F_HIDDEN] != 0;
    if (t.type == VHD_DISK_FIXED) {
        if (t.size > t.footer_offset) {
            rc = failf(err, errlen, "footer invalid: fixed disk of %llu bytes in a file of %llu",
                       (unsigned long long)t.size, (unsigned long long)file_size);
            goto out;
        }
        t.data_end = t.size;
    } else if ((rc = parse_header(&t, read, opaque, file_size, err, errlen)) < 0 ||
               (rc = check_extents(&t, err, errlen)) < 0)
        goto out;
    *ret = t;
    t.bat = NULL;
out:
    free(t.bat);
    return rc;
}

void storage_vhd_info_free(storage_vhd_info *i) {
    free(i->bat);
    i->bat = NULL;
}

uint32_t storage_vhd_info_allocated(const storage_vhd_info *i) {
    uint32_t n = 0;

    if (i->type == VHD_DISK_FIXED)
        return 0;
    for (uint32_t k = 0; k < i->nblocks; k++)
        n += i->bat[k] != VHD_BAT_UNUSED;
    return n;
}

int storage_vhd_info_locator_path(const storage_vhd_info *i, unsigned k, storage_vhd_read_fn read, void *opaque,
                                  char **ret_path) {
    const storage_vhd_locator *l;
    uint8_t raw[STORAGE_VHD_MAX_LOCATOR];
    char *out = NULL, *p;
    size_t cap = STORAGE_VHD_MAX_LOCATOR * 2 + 1;
    int rc;

    if (k >= VHD_H_LOCATOR_COUNT || i->type != VHD_DISK_DIFFERENCING)
        return -ENOENT;
    l = &i->loc[k];
    if (l->code != STORAGE_VHD_LOC_MACX && l->code != STORAGE_VHD_LOC_W2KU && l->code != STORAGE_VHD_LOC_W2RU)
        return -ENOENT;
    if (l->len == 0)
        return -EINVAL;
    if ((rc = read(opaque, l->offset, raw, l->len)) < 0)
        return rc;
    out = malloc(cap);
    if (!out)
        return -ENOMEM;
    if (l->code == STORAGE_VHD_LOC_MACX) {
        size_t n = l->len;
        while (n > 0 && raw[n - 1] == '\0') /* some writers count padding */
            n--;
        if (n < 7 || memcmp(raw, "file://", 7) != 0 || memchr(raw, '\0', n)) {
            free(out);
            return -EINVAL;
        }
        memcpy(out, raw + 7, n - 7);
        out[n - 7] = '\0';
    } else {
        if (utf16_to_utf8(raw, l->len, false, out, cap) < 0) {
            free(out);
            return -EINVAL;
        }
        for (p = out; *p; p++)
            if (*p == '\\')
                *p = '/';
    }
    if (!out[0]) {
        free(out);
        return -EINVAL;
    }
    *ret_path = out;
    return 0;
}

/* ---- files ---------------------------------------------------------------------- */

/* Markers in f->bitmaps (never dereferenced): every sector of the block is
 * in the image, or none is. Most blocks are one or the other, and a marker
 * costs no memory and no scan of the bits. */
static uint8_t bitmap_full, bitmap_empty;
#define BM_FULL (&bitmap_full)
#define BM_EMPTY (&bitmap_empty)

static bool is_marker(const uint8_t *bm) {
    return bm == BM_FULL || bm == BM_EMPTY;
}

static void drop_bitmaps(storage_vhd_file *f) {
    for (uint32_t i = 0; f->bitmaps && i < f->nbitmaps; i++)
        if (!is_marker(f->bitmaps[i]))
            free(f->bitmaps[i]);
    free(f->bitmaps);
    f->bitmaps = NULL;
    f->nbitmaps = 0;
}

static int fd_read(void *opaque, uint64_t offset, void *buf, size_t len) {
    storage_vhd_file *f = opaque;
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = pread(f->fd, p, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0) { /* past the end: zeros */
            memset(p, 0, len);
            return 0;
        }
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

/* The pieces iov[0..n) laid end to end from offset, in as few pwritev calls
 * as the kernel takes (iov is consumed). */
static int fd_writev(storage_vhd_file *f, uint64_t offset, struct iovec *iov, int n) {
    while (n > 0) {
        ssize_t k = pwritev(f->fd, iov, n, (off_t)offset);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        offset += (uint64_t)k;
        while (n > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    if (offset > f->file_size)
        f->file_size = offset;
    return 0;
}

static int fd_write(storage_vhd_file *f, uint64_t offset, const void *buf, size_t len) {
    struct iovec v = {(void *)buf, len};

    return fd_writev(f, offset, &v, 1);
}

static int file_size_of(int fd, uint64_t *ret) {
    struct stat st;

    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISBLK(st.st_mode)) {
        uint64_t n;
        if (ioctl(fd, BLKGETSIZE64, &n) < 0)
            return -errno;
        *ret = n;
    } else if (S_ISREG(st.st_mode))
        *ret = (uint64_t)st.st_size;
    else
        return -EINVAL;
    return 0;
}

static int open_common(storage_vhd_file **ret, const char *path, bool writable) {
    storage_vhd_file *f = calloc(1, sizeof *f);
    int rc;

    if (!f)
        return -ENOMEM;
    f->fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    f->path = strdup(path);
    f->writable = writable;
    if (f->fd < 0 || !f->path) {
        rc = f->fd < 0 ? -errno : -ENOMEM;
        storage_vhd_file_close(f);
        return rc;
    }
    if ((rc = file_size_of(f->fd, &f->file_size)) < 0) {
        storage_vhd_file_close(f);
        return rc;
    }
    {
        struct stat st;
        f->device = fstat(f->fd, &st) == 0 && S_ISBLK(st.st_mode);
    }
    *ret = f;
    return 0;
}

int storage_vhd_file_open(storage_vhd_file **ret, const char *path, bool writable, char *err, size_t errlen) {
    storage_vhd_file *f = NULL;
    int rc = open_common(&f, path, writable);

    if (rc < 0)
        return rc;
    rc = storage_vhd_info_parse(&f->info, fd_read, f, f->file_size, err, errlen);
    if (rc < 0) {
        storage_vhd_file_close(f);
        return rc;
    }
    *ret = f;
    return 0;
}

int storage_vhd_file_open_fd(storage_vhd_file **ret, int fd, const char *path, bool writable, char *err,
                             size_t errlen) {
    storage_vhd_file *f = calloc(1, sizeof *f);
    int rc;

    if (!f) {
        close(fd);
        return -ENOMEM;
    }
    f->fd = fd;
    f->path = strdup(path);
    f->writable = writable;
    if (!f->path) {
        storage_vhd_file_close(f);
        return -ENOMEM;
    }
    rc = file_size_of(f->fd, &f->file_size);
    if (rc == 0)
        rc = storage_vhd_info_parse(&f->info, fd_read, f, f->file_size, err, errlen);
    if (rc < 0) {
        storage_vhd_file_close(f);
        return rc;
    }
    *ret = f;
    return 0;
}

int storage_vhd_file_open_raw(storage_vhd_file **ret, const char *path, bool writable) {
    storage_vhd_file *f = NULL;
    int rc = open_common(&f, path, writable);

    if (rc < 0)
        return rc;
    f->raw = true;
    f->info.size = f->file_size;
    f->info.data_end = f->file_size;
    *ret = f;
    return 0;
}

void storage_vhd_file_close(storage_vhd_file *f) {
    while (f) {
        storage_vhd_file *parent = f->parent;
        if (f->fd >= 0)
            close(f->fd);
        drop_bitmaps(f);
        storage_vhd_info_free(&f->info);
        free(f->path);
        free(f);
        f = parent;
    }
}

uint64_t storage_vhd_file_virtual_size(const storage_vhd_file *f) {
    return f->info.size;
}

uint64_t storage_vhd_file_phys_size(const storage_vhd_file *f) {
    return f->raw ? f->file_size : f->info.data_end + FOOTER;
}

/* dir of path joined with name (name absolute: name). */
static char *join_beside(const char *path, const char *name) {
    char *copy, *dir, *out = NULL;

    if (name[0] == '/')
        return strdup(name);
    copy = strdup(path);
    if (!copy)
        return NULL;
    dir = dirname(copy);
    if (asprintf(&out, "%s/%s", dir, name) < 0)
        out = NULL;
    free(copy);
    return out;
}

/* Absolute path with a canonical directory and the last component as named; NULL if it does not exist. */
static char *canonical_existing(const char *path) {
    char *a = strdup(path), *b = strdup(path), *dir = NULL, *out = NULL;
    struct stat st;

    if (!a || !b || stat(path, &st) < 0)
        goto out;
    dir = realpath(dirname(a), NULL);
    if (!dir)
        goto out;
    if (asprintf(&out, "%s/%s", strcmp(dir, "/") ? dir : "", basename(b)) < 0)
        out = NULL;
out:
    free(a);
    free(b);
    free(dir);
    return out;
}

int storage_vhd_file_parent_path(storage_vhd_file *f, char **ret_path) {
    if (f->raw || f->info.type != VHD_DISK_DIFFERENCING)
        return -EINVAL;
    for (unsigned k = 0; k < VHD_H_LOCATOR_COUNT; k++) {
        char *loc = NULL, *joined, *found;
        if (storage_vhd_info_locator_path(&f->info, k, fd_read, f, &loc) < 0)
            continue;
        joined = join_beside(f->path, loc);
        free(loc);
        found = joined ? canonical_existing(joined) : NULL;
        free(joined);
        if (found) {
            *ret_path = found;
            return 0;
        }
    }
    if (f->info.parent_name[0] && !strchr(f->info.parent_name, '/')) {
        char *joined = join_beside(f->path, f->info.parent_name), *found = joined ? canonical_existing(joined) : NULL;
        free(joined);
        if (found) {
            *ret_path = found;
            return 0;
        }
    }
    return -ENOENT;
}

int storage_vhd_file_locator_path(storage_vhd_file *f, unsigned k, char **ret_path) {
    return f->raw ? -ENOENT : storage_vhd_info_locator_path(&f->info, k, fd_read, f, ret_path);
}

char *storage_vhd_file_parent_name(storage_vhd_file *f) {
    if (f->raw || f->info.type != VHD_DISK_DIFFERENCING)
        return NULL;
    for (unsigned k = 0; k < VHD_H_LOCATOR_COUNT; k++) {
        char *loc = NULL, *slash, *out;
        if (storage_vhd_info_locator_path(&f->info, k, fd_read, f, &loc) < 0)
            continue;
        slash = strrchr(loc, '/');
        out = strdup(slash ? slash + 1 : loc);
        free(loc);
        if (out && out[0])
            return out;
        free(out);
    }
    return f->info.parent_name[0] ? strdup(f->info.parent_name) : NULL;
}

/* Before data is written into a parent the locators name: a VHD parent
 * must be the one the child was made over (its uuid), a raw one must sit
 * beside the child, so that a crafted child cannot aim a coalesce at an
 * arbitrary file. */
static int writable_parent_ok(storage_vhd_file *f, const char *parent_path) {
    char *a = NULL, *b = NULL, *child_dir = NULL, *parent_dir = NULL;
    int rc = 0;

    if (!f->parent->raw) {
        if (memcmp(f->parent->info.uuid, f->info.parent_uuid, 16) != 0)
            rc = failf(f->error, sizeof f->error, "parent %s is not the one %s was made over (uuid)", parent_path,
                       f->path);
        return rc;
    }
    a = strdup(f->path);
    b = strdup(parent_path);
    child_dir = a ? realpath(dirname(a), NULL) : NULL;
    parent_dir = b ? realpath(dirname(b), NULL) : NULL;
    if (!child_dir || !parent_dir || strcmp(child_dir, parent_dir) != 0)
        rc = failf(f->error, sizeof f->error, "raw parent %s is not beside %s", parent_path, f->path);
    free(a);
    free(b);
    free(child_dir);
    free(parent_dir);
    return rc;
}

int storage_vhd_file_open_chain(storage_vhd_file *f, bool parent_writable) {
    storage_vhd_file *cur = f;
    unsigned depth = 1;
    int rc;

    while (!cur->raw && cur->info.type == VHD_DISK_DIFFERENCING && !cur->parent) {
        char *path = NULL;
        bool raw = is_zero(cur->info.parent_uuid, 16);
        if (++depth > STORAGE_VHD_MAX_CHAIN)
            return -ELOOP;
        if ((rc = storage_vhd_file_parent_path(cur, &path)) < 0) {
            snprintf(f->error, sizeof f->error, "parent of %s not found", cur->path);
            return rc;
        }
        if (raw)
            rc = storage_vhd_file_open_raw(&cur->parent, path, parent_writable && cur == f);
        else
            rc = storage_vhd_file_open(&cur->parent, path, parent_writable && cur == f, f->error, sizeof f->error);
        if (rc == 0 && parent_writable && cur == f && (rc = writable_parent_ok(f, path)) < 0) {
            storage_vhd_file_close(f->parent);
            f->parent = NULL;
        }
        free(path);
        if (rc < 0)
            return rc;
        cur = cur->parent;
    }
    return 0;
}

unsigned storage_vhd_file_depth(const storage_vhd_file *f) {
    unsigned n = 0;

    for (; f; f = f->parent)
        n++;
    return n;
}

/* ---- reading and writing ---------------------------------------------------------- */

static bool bit(const uint8_t *bm, uint32_t s) {
    return bm[s / 8] & (0x80u >> (s % 8));
}

/* The first sector from s on (below lim) whose bit is not `present`, or
 * lim: a byte at a time where the bits of a byte are all alike. */
static uint32_t run_end(const uint8_t *bm, uint32_t s, uint32_t lim, bool present) {
    uint8_t same = present ? 0xFF : 0x00;

    while (s < lim) {
        if (s % 8 == 0 && lim - s >= 8 && bm[s / 8] == same) {
            s += 8;
            continue;
        }
        if (bit(bm, s) != present)
            break;
        s++;
    }
    return s;
}

/* The marker for a bitmap of `per` sectors, or bm itself (some present, some not). */
static const uint8_t *classify(const uint8_t *bm, uint32_t per) {
    uint32_t ones = run_end(bm, 0, per, true);

    if (ones == per)
        return BM_FULL;
    if (ones == 0 && run_end(bm, 0, per, false) == per)
        return BM_EMPTY;
    return bm;
}

/* What the cache keeps for bm: a marker or a copy (NULL, uncached, if out of memory). */
static uint8_t *cache_entry(const storage_vhd_file *f, const uint8_t *bm) {
    const uint8_t *c = classify(bm, f->info.block_size / SECTOR);
    uint8_t *copy;

    if (is_marker(c))
        return (uint8_t *)c;
    copy = malloc(f->info.bitmap_len);
    if (copy)
        memcpy(copy, bm, f->info.bitmap_len);
    return copy;
}

void storage_vhd_file_cache_bitmaps(storage_vhd_file *f) {
    for (; f; f = f->parent) {
        if (f->bitmaps || f->raw || f->info.type == VHD_DISK_FIXED)
            continue;
        f->bitmaps = calloc(f->info.max_bat ? f->info.max_bat : 1, sizeof *f->bitmaps);
        f->nbitmaps = f->bitmaps ? f->info.max_bat : 0; /* out of memory: uncached, as before */
    }
}

/* The sector bitmap of f's allocated block blk: from the cache, else read
 * into *buf (bitmap_len bytes, allocated if NULL) and, the cache on, kept
 * there. Readers in parallel may read it twice: the first to publish it wins. */
static int block_bitmap(storage_vhd_file *f, uint32_t blk, uint8_t **bufp, const uint8_t **ret) {
    uint8_t *have = NULL, *mine, *buf;
    int rc;

    if (f->bitmaps && (have = __atomic_load_n(&f->bitmaps[blk], __ATOMIC_ACQUIRE))) {
        *ret = have;
        return 0;
    }
    if (!*bufp && !(*bufp = malloc(f->info.bitmap_len)))
        return -ENOMEM;
    buf = *bufp;
    rc = fd_read(f, (uint64_t)f->info.bat[blk] * SECTOR, buf, f->info.bitmap_len);
    if (rc < 0)
        return rc;
    *ret = buf;
    if (!f->bitmaps || !(mine = cache_entry(f, buf)))
        return 0;
    if (__atomic_compare_exchange_n(&f->bitmaps[blk], &have, mine, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        have = mine;
    else if (!is_marker(mine))
        free(mine);
    *ret = have;
    return 0;
}

static int read_parent(storage_vhd_file *f, uint64_t offset, uint8_t *buf, size_t len) {
    if (f->info.type != VHD_DISK_DIFFERENCING) {
        memset(buf, 0, len);
        return 0;
    }
    if (!f->parent)
        return -ENOLINK;
    return storage_vhd_file_read(f->parent, offset, buf, len);
}

/* Bytes [in, in + k) of allocated block blk into p: each run of present
 * sectors in one pread from f, each run of absent ones from the parent. */
static int read_block(storage_vhd_file *f, uint32_t blk, uint64_t in, uint64_t k, uint8_t *p, uint8_t **bmbuf) {
    uint64_t base = (uint64_t)f->info.bat[blk] * SECTOR + f->info.bitmap_len;
    uint64_t start = (uint64_t)blk * f->info.block_size, at = in;
    uint32_t lim = (uint32_t)((in + k - 1) / SECTOR) + 1;
    const uint8_t *bm;
    int rc = 0;

    if ((rc = block_bitmap(f, blk, bmbuf, &bm)) < 0)
        return rc;
    if (bm == BM_FULL)
        return fd_read(f, base + in, p, (size_t)k);
    if (bm == BM_EMPTY)
        return read_parent(f, start + in, p, (size_t)k);
    while (at < in + k && rc == 0) {
        uint32_t s = (uint32_t)(at / SECTOR);
        bool present = bit(bm, s);
        uint64_t end = (uint64_t)run_end(bm, s + 1, lim, present) * SECTOR;

        if (end > in + k)
            end = in + k;
        rc = present ? fd_read(f, base + at, p + (at - in), (size_t)(end - at))
                     : read_parent(f, start + at, p + (at - in), (size_t)(end - at));
        at = end;
    }
    return rc;
}

int storage_vhd_file_read(storage_vhd_file *f, uint64_t offset, void *buf, size_t len) {
    uint8_t *p = buf, *bm = NULL;
    int rc = 0;

    if (offset >= f->info.size || len > f->info.size - offset) {
        size_t in = offset >= f->info.size ? 0 : (size_t)(f->info.size - offset);
        memset(p + in, 0, len - in);
        len = in;
    }
    if (f->raw || f->info.type == VHD_DISK_FIXED)
        return fd_read(f, offset, p, len);
    while (len > 0 && rc == 0) {
        uint32_t blk = (uint32_t)(offset / f->info.block_size);
        uint64_t in = offset % f->info.block_size, k = f->info.block_size - in < len ? f->info.block_size - in : len;

        rc = f->info.bat[blk] == VHD_BAT_UNUSED ? read_parent(f, offset, p, (size_t)k)
                                                : read_block(f, blk, in, k, p, &bm);
        p += k;
        offset += k;
        len -= (size_t)k;
    }
    free(bm);
    return rc;
}

bool storage_vhd_file_unallocated(const storage_vhd_file *f, uint64_t offset, uint64_t len) {
    for (; f; f = f->parent) {
        uint64_t end = offset + len > f->info.size ? f->info.size : offset + len;

        if (f->raw || f->info.type == VHD_DISK_FIXED)
            return offset >= end; /* data everywhere it has bytes */
        for (uint64_t at = offset; at < end; at = (at / f->info.block_size + 1) * f->info.block_size)
            if (f->info.bat[at / f->info.block_size] != VHD_BAT_UNUSED)
                return false;
        if (f->info.type != VHD_DISK_DIFFERENCING)
            return true;
    }
    return false; /* a parent not opened: unknown */
}

int storage_vhd_file_extent(storage_vhd_file *f, uint64_t offset, uint64_t *len, int *ret_fd, uint64_t *ret_offset) {
    uint8_t *buf = NULL;
    int rc = 0;

    for (; f && rc == 0; f = f->parent) {
        uint64_t n = *len, in, at;
        uint32_t blk;
        const uint8_t *bm;

        if (f->device || offset >= f->info.size)
            break; /* (an LV stays open only while read: its removal must not find it busy) */
        if (n > f->info.size - offset)
            n = f->info.size - offset;
        if (f->raw || f->info.type == VHD_DISK_FIXED) {
            if (offset >= f->file_size - (f->raw ? 0 : FOOTER))
                break;
            if (n > f->file_size - (f->raw ? 0 : FOOTER) - offset)
                n = f->file_size - (f->raw ? 0 : FOOTER) - offset;
            *ret_fd = f->fd;
            *ret_offset = offset;
            *len = n;
            rc = 1;
            break;
        }
        blk = (uint32_t)(offset / f->info.block_size);
        in = offset % f->info.block_size;
        if (f->info.bat[blk] == VHD_BAT_UNUSED) {
            if (f->info.type != VHD_DISK_DIFFERENCING)
                break; /* zeros: the caller's to produce */
            continue;
        }
        if ((rc = block_bitmap(f, blk, &buf, &bm)) < 0)
            break;
        if (!is_marker(bm)) /* read now, not cached */
            bm = classify(bm, f->info.block_size / SECTOR);
        if (bm == BM_EMPTY && f->info.type == VHD_DISK_DIFFERENCING)
            continue;
        if (bm != BM_FULL)
            break;
        at = (uint64_t)f->info.bat[blk] * SECTOR + f->info.bitmap_len;
        *ret_fd = f->fd;
        *ret_offset = at + in;
        *len = n < f->info.block_size - in ? n : f->info.block_size - in;
        rc = 1;
    }
    free(buf);
    return rc;
}

static int write_zeros(storage_vhd_file *f, uint64_t offset, uint64_t len) {
    uint8_t *z;
    int rc = 0;

    if (offset + len > f->file_size) { /* past the end: a hole reads as zeros */
        if (ftruncate(f->fd, (off_t)(offset + len)) < 0)
            return -errno;
        len = offset < f->file_size ? f->file_size - offset : 0;
        f->file_size = offset + len > f->file_size ? offset + len : f->file_size;
    }
    if (len == 0)
        return 0;
    z = calloc(1, len < IO_CHUNK ? (size_t)len : IO_CHUNK); /* often just the old footer's sector */
    if (!z)
        return -ENOMEM;
    while (len > 0 && rc == 0) {
        size_t k = len < IO_CHUNK ? (size_t)len : IO_CHUNK;
        rc = fd_write(f, offset, z, k);
        offset += k;
        len -= k;
    }
    free(z);
    return rc;
}

static void seal_footer(storage_vhd_info *i) {
    vhd_put32(i->footer + VHD_F_CHECKSUM, vhd_checksum(i->footer, FOOTER, VHD_F_CHECKSUM));
}

static void seal_header(storage_vhd_info *i) {
    vhd_put32(i->header + VHD_H_CHECKSUM, vhd_checksum(i->header, HEADER, VHD_H_CHECKSUM));
}

/* Writes the footer at the end of the data (and, dynamic, its copy at 0). */
static int write_footers(storage_vhd_file *f) {
    int rc;

    seal_footer(&f->info);
    if (f->info.type != VHD_DISK_FIXED && (rc = fd_write(f, 0, f->info.footer, FOOTER)) < 0)
        return rc;
    if ((rc = fd_write(f, f->info.footer_offset, f->info.footer, FOOTER)) < 0)
        return rc;
    f->info.footer_from_copy = false;
    return 0;
}

/* Reserves len bytes (sector aligned) after the data: the footer moves past them. */
static int grow_data(storage_vhd_file *f, uint64_t len, uint64_t *ret_at) {
    uint64_t at = vhd_round_up(f->info.data_end, SECTOR), old_footer = f->info.footer_offset;
    int rc;

    if (at + len + FOOTER > STORAGE_VHD_MAX_SIZE * 2)
        return -EFBIG;
    if (f->device && (at > f->info.footer_offset || f->info.footer_offset - at < len))
        return -ENOSPC; /* the LV is full: sm inflates it first */
    if ((rc = write_zeros(f, at, len)) < 0)
        return rc;
    f->info.data_end = at + len;
    if (f->info.data_end > old_footer || f->file_size < f->info.data_end + FOOTER)
        f->info.footer_offset = f->info.data_end;
    if ((rc = write_footers(f)) < 0)
        return rc;
    *ret_at = at;
    return 0;
}

static int write_header(storage_vhd_file *f) {
    seal_header(&f->info);
    return fd_write(f, f->info.header_offset, f->info.header, HEADER);
}

/* The cache's entry for block blk is now bm (writers run alone: no reader holds the old one). */
static void cache_replace(storage_vhd_file *f, uint32_t blk, const uint8_t *bm) {
    if (!f->bitmaps)
        return;
    if (!is_marker(f->bitmaps[blk]))
        free(f->bitmaps[blk]);
    f->bitmaps[blk] = cache_entry(f, bm);
}

static void set_bits(uint8_t *bm, uint64_t in, uint64_t k) {
    for (uint64_t s = in / SECTOR; s < (in + k) / SECTOR; s++)
        bm[s / 8] |= (uint8_t)(0x80u >> (s % 8));
}

#define RUN_MAX 64u /* new blocks written by one pwritev (two pieces each, far below IOV_MAX) */

/* The bytes [offset, offset + len) of the disk (offset in block blk) that lie
 * in blocks blk, blk + 1... that no BAT entry has yet (at most RUN_MAX):
 * allocated together after the data, then written with their sector bitmaps
 * in one pwritev, then given their BAT entries in one write. The order keeps
 * the image whole if the writer dies at any point: space first (the footer
 * moved past it), bitmaps and data next, in space that nothing refers to
 * yet (a pwritev cut short leaves bits set over data not written there, but
 * in a block no BAT entry names), the BAT entries last; before them the
 * blocks are only lost space. *ret_done: the bytes written. */
static int write_new_blocks(storage_vhd_file *f, uint32_t blk, uint64_t offset, const uint8_t *p, size_t len,
                            size_t *ret_done) {
    uint64_t per = (uint64_t)f->info.bitmap_len + f->info.block_size, in = offset % f->info.block_size, at;
    struct iovec iov[2 * RUN_MAX + 1];
    uint8_t *bms = NULL, e[RUN_MAX * 4];
    uint32_t n = 0;
    size_t done = 0;
    int niov = 0, rc;

    for (uint64_t o = offset; o < offset + len && n < RUN_MAX && blk + n < f->info.nblocks &&
                              f->info.bat[blk + n] == VHD_BAT_UNUSED;
         o = (uint64_t)(blk + n) * f->info.block_size)
        n++;
    bms = calloc(n, f->info.bitmap_len);
    if (!bms)
        return -ENOMEM;
    if ((rc = grow_data(f, n * per, &at)) < 0)
        goto out;
    if ((at + (n - 1) * per) / SECTOR >= VHD_BAT_UNUSED) { /* the last one's sector must fit a BAT entry */
        rc = -EFBIG;
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t first = i ? 0 : in, k = f->info.block_size - first < len - done ? f->info.block_size - first : len - done;
        uint8_t *bm = bms + (size_t)i * f->info.bitmap_len;

        set_bits(bm, first, k);
        iov[niov++] = (struct iovec){bm, f->info.bitmap_len};
        if (first) { /* the block's first sectors are not written: its data starts apart from its bitmap */
            if ((rc = fd_writev(f, at, iov, niov)) < 0)
                goto out;
            niov = 0;
            if ((rc = fd_write(f, at + f->info.bitmap_len + first, p, (size_t)k)) < 0)
                goto out;
        } else
            iov[niov++] = (struct iovec){(void *)(p + done), (size_t)k};
        done += (size_t)k;
    }
    if (niov && (rc = fd_writev(f, at + (in ? per : 0), iov, niov)) < 0)
        goto out;
    for (uint32_t i = 0; i < n; i++)
        vhd_put32(e + i * 4, (uint32_t)((at + i * per) / SECTOR));
    if ((rc = fd_write(f, f->info.bat_offset + (uint64_t)blk * 4, e, (size_t)n * 4)) < 0)
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        f->info.bat[blk + i] = (uint32_t)((at + i * per) / SECTOR);
        cache_replace(f, blk + i, bms + (size_t)i * f->info.bitmap_len);
    }
    *ret_done = done;
out:
    free(bms);
    return rc;
}

int storage_vhd_file_write(storage_vhd_file *f, uint64_t offset, const void *buf, size_t len) {
    const uint8_t *p = buf, *cur;
    uint8_t *bm = NULL;
    int rc = 0;

    if (!f->writable)
        return -EBADF;
    if (offset % SECTOR || len % SECTOR || offset > f->info.size || len > f->info.size - offset)
        return -EINVAL;
    if (f->raw || f->info.type == VHD_DISK_FIXED)
        return fd_write(f, offset, p, len);
    bm = malloc(f->info.bitmap_len);
    if (!bm)
        return -ENOMEM;
    while (len > 0 && rc == 0) {
        uint32_t blk = (uint32_t)(offset / f->info.block_size);
        uint64_t in = offset % f->info.block_size, k = f->info.block_size - in < len ? f->info.block_size - in : len;
        uint64_t at;

        if (f->info.bat[blk] == VHD_BAT_UNUSED) {
            size_t done;
            if ((rc = write_new_blocks(f, blk, offset, p, len, &done)) < 0)
                break;
            p += done;
            offset += done;
            len -= done;
            continue;
        }
        at = (uint64_t)f->info.bat[blk] * SECTOR;
        if ((rc = fd_write(f, at + f->info.bitmap_len + in, p, (size_t)k)) < 0 ||
            (rc = block_bitmap(f, blk, &bm, &cur)) < 0)
            break;
        if (cur != BM_FULL) { /* a full block's bitmap stays as it is */
            if (cur == BM_EMPTY)
                memset(bm, 0, f->info.bitmap_len);
            else if (cur != bm)
                memcpy(bm, cur, f->info.bitmap_len);
            set_bits(bm, in, k);
            if ((rc = fd_write(f, at, bm, f->info.bitmap_len)) < 0)
                break;
            cache_replace(f, blk, bm);
        }
        p += k;
        offset += k;
        len -= (size_t)k;
    }
    free(bm);
    return rc;
}

/* ---- creating ----------------------------------------------------------------------- */

static void random_uuid(uint8_t id[16]) {
    if (getrandom(id, 16, 0) != 16)
        for (int i = 0; i < 16; i++)
            id[i] = (uint8_t)rand();
    id[6] = (uint8_t)((id[6] & 0x0F) | 0x40);
    id[8] = (uint8_t)((id[8] & 0x3F) | 0x80);
}

/* The parent's path relative to the child's directory (both absolute). */
static char *relative_path(const char *child, const char *parent) {
    char *c = strdup(child), *cdir, *out = NULL;
    size_t common = 0, ups = 0, len;
    const char *rest;

    if (!c)
        return NULL;
    cdir = dirname(c);
    len = strlen(cdir);
    if (strcmp(cdir, "/") == 0)
        len = 0;
    /* the longest common directory prefix */
    for (size_t i = 0; i <= len && parent[i]; i++) {
        if ((i == len || cdir[i] == '/') && parent[i] == '/' && strncmp(cdir, parent, i) == 0)
            common = i;
        if (i < len && cdir[i] != parent[i])
            break;
    }
    for (size_t i = common; i < len; i++)
        if (cdir[i] == '/')
            ups++;
    rest = parent + common + 1;
    {
        size_t cap = ups * 3 + strlen(rest) + 3;
        char *o = malloc(cap), *w = o;
        if (o) {
            if (!ups) {
                memcpy(w, "./", 2);
                w += 2;
            }
            for (size_t i = 0; i < ups; i++, w += 3)
                memcpy(w, "../", 3);
            strcpy(w, rest);
        }
        out = o;
    }
    free(c);
    return out;
}

typedef struct locator_data {
    uint32_t code;
    uint8_t bytes[STORAGE_VHD_MAX_LOCATOR];
    size_t len;
} locator_data;

/* The three locators tapdisk writes for a parent at rel (relative, '/' separators). */
static int make_locators(const char *rel, locator_data out[3]) {
    char *win = NULL;
    ssize_t n;
    int rc = 0;

    n = snprintf((char *)out[0].bytes, sizeof out[0].bytes, "file://%s", rel);
    if (n < 0 || (size_t)n >= sizeof out[0].bytes)
        return -ENAMETOOLONG;
    out[0].code = STORAGE_VHD_LOC_MACX;
    out[0].len = (size_t)n;
    win = strdup(rel);
    if (!win)
        return -ENOMEM;
    for (char *p = win; *p; p++)
        if (*p == '/')
            *p = '\\';
    for (int k = 1; k < 3; k++) {
        out[k].code = k == 1 ? STORAGE_VHD_LOC_W2KU : STORAGE_VHD_LOC_W2RU;
        n = utf8_to_utf16(win, false, out[k].bytes, sizeof out[k].bytes);
        if (n < 0) {
            rc = n == -EINVAL ? -ENAMETOOLONG : (int)n;
            break;
        }
        out[k].len = (size_t)n;
    }
    free(win);
    return rc;
}

/* What a child of `parent` records about it: uuid, time, name, locators. */
typedef struct parent_facts {
    uint64_t size;
    uint8_t uuid[16];
    uint32_t time;
    uint8_t name16[NAME_BYTES];
    locator_data loc[3];
} parent_facts;

static int gather_parent(const char *child_path, const char *parent_path, bool raw, bool keep_empty, bool use_size,
                         parent_facts *pf, char *err, size_t errlen) {
    storage_vhd_file *p = NULL;
    char *abs_child = NULL, *abs_parent = NULL, *rel = NULL, *cdir = NULL, *tmp = NULL;
    const char *base;
    struct stat st;
    int rc;

    rc = raw ? storage_vhd_file_open_raw(&p, parent_path, false)
             : storage_vhd_file_open(&p, parent_path, false, err, errlen);
    if (rc < 0) {
        if (rc != -EINVAL)
            failf(err, errlen, "error opening %s: %d", parent_path, rc);
        goto out;
    }
    if (use_size)
        pf->size = raw ? vhd_round_up(p->file_size, STORAGE_VHD_BLOCK_SIZE) : p->info.size;
    abs_parent = canonical_existing(parent_path);
    /* skip empty differencing parents: the child links to the first ancestor holding data */
    while (!raw && !keep_empty && p->info.type == VHD_DISK_DIFFERENCING && storage_vhd_info_allocated(&p->info) == 0 &&
           !is_zero(p->info.parent_uuid, 16)) {
        char *next = NULL;
        storage_vhd_file *q = NULL;
        if (storage_vhd_file_parent_path(p, &next) < 0 || storage_vhd_file_open(&q, next, false, NULL, 0) < 0) {
            free(next);
            break;
        }
        storage_vhd_file_close(p);
        p = q;
        free(abs_parent);
        abs_parent = next;
    }
    if (!raw)
        memcpy(pf->uuid, p->info.uuid, 16);
    if (fstat(p->fd, &st) == 0)
        pf->time = st.st_mtime > VHD_EPOCH ? (uint32_t)(st.st_mtime - VHD_EPOCH) : 0;
    tmp = strdup(child_path);
    cdir = tmp ? realpath(dirname(tmp), NULL) : NULL;
    free(tmp);
    tmp = strdup(child_path);
    if (!abs_parent || !cdir || !tmp ||
        asprintf(&abs_child, "%s/%s", strcmp(cdir, "/") ? cdir : "", basename(tmp)) < 0) {
        abs_child = NULL;
        rc = failf(err, errlen, "cannot resolve the paths of %s and %s", child_path, parent_path);
        goto out;
    }
    base = strrchr(abs_parent, '/') + 1;
    memset(pf->name16, 0, sizeof pf->name16);
    if (utf8_to_utf16(base, true, pf->name16, sizeof pf->name16 - 2) < 0) {
        rc = failf(err, errlen, "parent name %s too long", base);
        goto out;
    }
    rel = relative_path(abs_child, abs_parent);
    if (!rel) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = make_locators(rel, pf->loc)) < 0)
        failf(err, errlen, "parent path %s too long", rel);
out:
    storage_vhd_file_close(p);
    free(abs_child);
    free(abs_parent);
    free(rel);
    free(cdir);
    free(tmp);
    return rc;
}

static uint32_t locator_space(size_t len) {
    return (uint32_t)(len < SECTOR ? SECTOR : vhd_round_up(len, SECTOR));
}

static void put_locator(uint8_t *h, unsigned k, const locator_data *d, uint32_t space, uint64_t offset) {
    uint8_t *l = h + VHD_H_LOCATORS + k * VHD_H_LOCATOR_SIZE;

    memset(l, 0, VHD_H_LOCATOR_SIZE);
    vhd_put32(l, d->code);
    vhd_put32(l + 4, space);
    vhd_put32(l + 8, (uint32_t)d->len);
    vhd_put64(l + 16, offset);
}

static int write_all_at(int fd, uint64_t off, const void *buf, size_t len) {
    storage_vhd_file tmp = {.fd = fd};

    return fd_write(&tmp, off, buf, len);
}

/* An existing block device (an LV made for the image) opened for writing. */
static int open_device(const char *path, int *ret_fd, uint64_t *ret_size) {
    struct stat st;
    int fd, rc;

    if (stat(path, &st) < 0)
        return -errno;
    if (!S_ISBLK(st.st_mode))
        return -EEXIST;
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if ((rc = file_size_of(fd, ret_size)) < 0) {
        close(fd);
        return rc;
    }
    *ret_fd = fd;
    return 0;
}

int storage_vhd_create(const storage_vhd_create_params *p, char *err, size_t errlen) {
    uint64_t size = vhd_round_up(p->size, STORAGE_VHD_BLOCK_SIZE), reserve, bat_at = FOOTER + HEADER, at;
    uint32_t type = p->parent ? VHD_DISK_DIFFERENCING : p->fixed ? VHD_DISK_FIXED : VHD_DISK_DYNAMIC, max_bat;
    uint8_t footer[FOOTER], *meta = NULL, *h, id[16];
    parent_facts pf = {0};
    size_t meta_len;
    uint64_t device_size = 0;
    int fd = -1, rc;
    bool created = false;

    if (p->parent) {
        if ((rc = gather_parent(p->path, p->parent, p->parent_raw, p->keep_empty_parent, p->size == 0, &pf, err,
                                errlen)) < 0)
            return rc;
        if (!p->size)
            size = pf.size;
    }
    if (size == 0 || size > STORAGE_VHD_MAX_SIZE)
        return failf(err, errlen, "invalid size %llu", (unsigned long long)size);
    reserve = p->reserve_size > size ? vhd_round_up(p->reserve_size, STORAGE_VHD_BLOCK_SIZE) : size;
    if (reserve > STORAGE_VHD_MAX_SIZE)
        return failf(err, errlen, "invalid size %llu", (unsigned long long)reserve);
    max_bat = (uint32_t)((reserve + STORAGE_VHD_BLOCK_SIZE - 1) / STORAGE_VHD_BLOCK_SIZE);
    random_uuid(id);
    storage_vhd_footer_init(footer, size, type, id, p->now);
    fd = open(p->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    created = fd >= 0;
    if (fd < 0 && errno == EEXIST && (rc = open_device(p->path, &fd, &device_size)) < 0)
        goto out; /* an existing file is never overwritten; an LV is made to be */
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if (type == VHD_DISK_FIXED) {
        if (!created)
            rc = device_size < size + FOOTER ? -ENOSPC : write_all_at(fd, size, footer, FOOTER);
        else
            rc = ftruncate(fd, (off_t)size) < 0 ? -errno : write_all_at(fd, size, footer, FOOTER);
        goto out;
    }
    at = vhd_round_up(bat_at + (uint64_t)max_bat * 4, SECTOR);
    meta_len = (size_t)at;
    if (p->parent)
        for (int k = 0; k < 3; k++)
            meta_len += locator_space(pf.loc[k].len);
    meta = calloc(1, meta_len);
    if (!meta) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(meta, footer, FOOTER);
    h = meta + FOOTER;
    storage_vhd_header_init(h, bat_at, max_bat);
    memset(meta + bat_at, 0xFF, (size_t)max_bat * 4);
    if (p->parent) {
        memcpy(h + VHD_H_PARENT_UUID, pf.uuid, 16);
        vhd_put32(h + VHD_H_PARENT_TIMESTAMP, pf.time);
        memcpy(h + VHD_H_PARENT_NAME, pf.name16, NAME_BYTES);
        for (int k = 0; k < 3; k++) {
            uint32_t space = locator_space(pf.loc[k].len);
            put_locator(h, (unsigned)k, &pf.loc[k], space, at);
            memcpy(meta + at, pf.loc[k].bytes, pf.loc[k].len);
            at += space;
        }
    }
    vhd_put32(h + VHD_H_CHECKSUM, vhd_checksum(h, HEADER, VHD_H_CHECKSUM));
    /* on a device the footer goes to its end, where readers look first (as vhd-util modify -s puts it) */
    if (!created && device_size < meta_len + FOOTER)
        rc = -ENOSPC;
    else if ((rc = write_all_at(fd, 0, meta, meta_len)) == 0)
        rc = write_all_at(fd, created ? meta_len : (device_size - FOOTER) / SECTOR * SECTOR, footer, FOOTER);
out:
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    if (rc < 0 && created)
        unlink(p->path);
    free(meta);
    return rc;
}

/* ---- changing an image -------------------------------------------------------------- */

int storage_vhd_file_set_hidden(storage_vhd_file *f, bool hidden) {
    if (!f->writable || f->raw)
        return -EBADF;
    f->info.footer[VHD_F_HIDDEN] = hidden;
    f->info.hidden = hidden;
    return write_footers(f);
}

int storage_vhd_file_marker(storage_vhd_file *f, uint8_t *ret_marker) {
    if (f->raw || !f->info.batmap_bytes)
        return -ENOENT;
    return fd_read(f, f->info.batmap_header + VHD_B_MARKER, ret_marker, 1);
}

int storage_vhd_file_set_marker(storage_vhd_file *f, uint8_t marker) {
    int rc;

    if (!f->writable || f->raw)
        return -EBADF;
    if (!f->info.batmap_bytes)
        return -ENOENT;
    if ((rc = fd_write(f, f->info.batmap_header + VHD_B_MARKER, &marker, 1)) < 0)
        return rc;
    return fsync(f->fd) < 0 ? -errno : 0;
}

int storage_vhd_file_set_parent(storage_vhd_file *f, const char *parent, bool parent_raw) {
    parent_facts pf = {0};
    uint8_t *h = f->info.header;
    int rc;

    if (!f->writable || f->raw)
        return -EBADF;
    if (f->info.type != VHD_DISK_DIFFERENCING)
        return failf(f->error, sizeof f->error, "not a differencing disk");
    if ((rc = gather_parent(f->path, parent, parent_raw, true, false, &pf, f->error, sizeof f->error)) < 0)
        return rc;
    memcpy(h + VHD_H_PARENT_UUID, pf.uuid, 16);
    vhd_put32(h + VHD_H_PARENT_TIMESTAMP, pf.time);
    memcpy(h + VHD_H_PARENT_NAME, pf.name16, NAME_BYTES);
    for (unsigned k = 0; k < VHD_H_LOCATOR_COUNT; k++) {
        storage_vhd_locator *old = &f->info.loc[k];
        uint8_t *buf = NULL;
        uint32_t space;
        uint64_t at;

        if (k >= 3) {
            memset(h + VHD_H_LOCATORS + k * VHD_H_LOCATOR_SIZE, 0, VHD_H_LOCATOR_SIZE);
            *old = (storage_vhd_locator){0};
            continue;
        }
        if (old->code && old->space >= pf.loc[k].len) { /* rewritten in place */
            space = old->space;
            at = old->offset;
        } else { /* a new area after the data */
            space = locator_space(pf.loc[k].len);
            if ((rc = grow_data(f, space, &at)) < 0)
                return rc;
        }
        buf = calloc(1, space);
        if (!buf)
            return -ENOMEM;
        memcpy(buf, pf.loc[k].bytes, pf.loc[k].len);
        rc = fd_write(f, at, buf, space);
        free(buf);
        if (rc < 0)
            return rc;
        put_locator(h, k, &pf.loc[k], space, at);
        *old = (storage_vhd_locator){pf.loc[k].code, space, (uint32_t)pf.loc[k].len, at};
    }
    memcpy(f->info.parent_uuid, pf.uuid, 16);
    if ((rc = write_header(f)) < 0)
        return rc;
    return fsync(f->fd) < 0 ? -errno : 0;
}

/* A BAT of `need` entries written after the data, the old one left unused.
 * A batmap moves along (tapdisk looks for it right after the BAT), grown
 * with clear bits; its checksum covers the map only, which keeps its sum. */
static int move_bat(storage_vhd_file *f, uint32_t need) {
    uint64_t bytes = vhd_round_up((uint64_t)need * 4, SECTOR), map_bytes = 0, total, at;
    uint8_t *disk = NULL;
    uint32_t *bat;
    int rc;

    if (f->info.batmap_bytes) {
        map_bytes = vhd_round_up((bytes / 4 + 7) / 8, SECTOR);
        if (map_bytes < f->info.batmap_bytes)
            map_bytes = f->info.batmap_bytes;
    }
    total = bytes + (map_bytes ? SECTOR + map_bytes : 0);
    bat = realloc(f->info.bat, bytes);
    if (!bat)
        return -ENOMEM;
    f->info.bat = bat;
    for (uint32_t i = f->info.max_bat; i < bytes / 4; i++)
        bat[i] = VHD_BAT_UNUSED;
    disk = calloc(1, total);
    if (!disk)
        return -ENOMEM;
    for (uint64_t i = 0; i < bytes / 4; i++)
        vhd_put32(disk + i * 4, bat[i]);
    if (map_bytes && ((rc = fd_read(f, f->info.batmap_header, disk + bytes, SECTOR)) < 0 ||
                      (rc = fd_read(f, f->info.batmap_offset, disk + bytes + SECTOR, f->info.batmap_bytes)) < 0))
        goto out;
    if ((rc = grow_data(f, total, &at)) < 0)
        goto out;
    if (map_bytes) {
        vhd_put64(disk + bytes + VHD_B_OFFSET, at + bytes + SECTOR);
        vhd_put32(disk + bytes + VHD_B_SIZE, (uint32_t)(map_bytes / SECTOR));
    }
    if ((rc = fd_write(f, at, disk, (size_t)total)) < 0)
        goto out;
    f->info.bat_offset = at;
    f->info.max_bat = (uint32_t)(bytes / 4);
    if (map_bytes) {
        f->info.batmap_header = at + bytes;
        f->info.batmap_offset = at + bytes + SECTOR;
        f->info.batmap_bytes = map_bytes;
    }
    vhd_put64(f->info.header + VHD_H_TABLE_OFFSET, at);
    vhd_put32(f->info.header + VHD_H_MAX_ENTRIES, f->info.max_bat);
    rc = write_header(f);
out:
    free(disk);
    return rc;
}

int storage_vhd_file_resize(storage_vhd_file *f, uint64_t size) {
    uint64_t want = vhd_round_up(size, STORAGE_VHD_BLOCK_SIZE);
    uint32_t need;
    int rc;

    if (!f->writable || f->raw)
        return -EBADF;
    if (f->info.type == VHD_DISK_FIXED)
        return failf(f->error, sizeof f->error, "resizing fixed disks is not supported");
    if (want < f->info.size)
        return failf(f->error, sizeof f->error, "size %llu < curr size %llu", (unsigned long long)want,
                     (unsigned long long)f->info.size);
    if (want > STORAGE_VHD_MAX_SIZE)
        return failf(f->error, sizeof f->error, "size %llu too large", (unsigned long long)want);
    need = (uint32_t)((want + f->info.block_size - 1) / f->info.block_size);
    drop_bitmaps(f);
    if (need > f->info.max_bat && (rc = move_bat(f, need)) < 0)
        return rc;
    f->info.size = want;
    f->info.nblocks = need;
    vhd_put64(f->info.footer + VHD_F_CURRENT_SIZE, want);
    vhd_put32(f->info.footer + VHD_F_GEOMETRY, storage_vhd_geometry(want));
    if ((rc = write_footers(f)) < 0)
        return rc;
    return fsync(f->fd) < 0 ? -errno : 0;
}

int storage_vhd_file_set_phys_size(storage_vhd_file *f, uint64_t bytes) {
    uint64_t at;
    int rc;

    if (!f->writable || f->raw)
        return -EBADF;
    if (bytes % SECTOR || bytes < storage_vhd_file_phys_size(f))
        return failf(f->error, sizeof f->error, "new size %llu below the data's end %llu",
                     (unsigned long long)bytes, (unsigned long long)storage_vhd_file_phys_size(f));
    at = bytes - FOOTER;
    if ((rc = fd_write(f, at, f->info.footer, FOOTER)) < 0)
        return rc;
    if (at < f->info.footer_offset && (rc = write_zeros(f, f->info.footer_offset, FOOTER)) < 0)
        return rc;
    f->info.footer_offset = at;
    if (f->file_size > bytes) {
        struct stat st;
        if (fstat(f->fd, &st) == 0 && S_ISREG(st.st_mode) && ftruncate(f->fd, (off_t)bytes) < 0)
            return -errno;
        f->file_size = bytes;
    }
    return write_footers(f);
}

int storage_vhd_file_zero(storage_vhd_file *f) {
    uint8_t *disk;
    int rc;

    if (!f->writable || f->raw)
        return -EBADF;
    if (f->info.type == VHD_DISK_FIXED)
        return write_zeros(f, 0, f->info.size);
    disk = malloc((size_t)f->info.max_bat * 4 + 1);
    if (!disk)
        return -ENOMEM;
    drop_bitmaps(f);
    memset(disk, 0xFF, (size_t)f->info.max_bat * 4);
    for (uint32_t i = 0; i < f->info.max_bat; i++)
        f->info.bat[i] = VHD_BAT_UNUSED;
    rc = fd_write(f, f->info.bat_offset, disk, (size_t)f->info.max_bat * 4);
    free(disk);
    return rc;
}

int storage_vhd_file_coalesce(storage_vhd_file *f, uint64_t *ret_sectors) {
    storage_vhd_file *p = f->parent;
    uint8_t *bm = NULL, *buf = NULL;
    uint64_t sectors = 0;
    int rc = 0;

    if (f->raw || f->info.type != VHD_DISK_DIFFERENCING)
        return failf(f->error, sizeof f->error, "coalescing of non-differencing disks is not supported");
    if (!p || !p->writable)
        return -ENOLINK;
    if (f->info.size > p->info.size) {
        if (p->raw || p->info.type == VHD_DISK_FIXED)
            return failf(f->error, sizeof f->error, "parent smaller than the child");
        if ((rc = storage_vhd_file_resize(p, f->info.size)) < 0)
            return rc;
    }
    bm = malloc(f->info.bitmap_len);
    buf = malloc(f->info.block_size);
    if (!bm || !buf) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t blk = 0; blk < f->info.nblocks && rc == 0; blk++) {
        uint64_t at = (uint64_t)f->info.bat[blk] * SECTOR, base = (uint64_t)blk * f->info.block_size;
        uint32_t per = f->info.block_size / SECTOR, s = 0;

        if (f->info.bat[blk] == VHD_BAT_UNUSED)
            continue;
        if ((rc = fd_read(f, at, bm, f->info.bitmap_len)) < 0)
            break;
        while (s < per && rc == 0) {
            uint32_t e = s;
            if (!bit(bm, s)) {
                s++;
                continue;
            }
            while (e < per && bit(bm, e))
                e++;
            if (base + (uint64_t)e * SECTOR > f->info.size)
                e = (uint32_t)((f->info.size - base) / SECTOR);
            if (e <= s)
                break;
            if ((rc = fd_read(f, at + f->info.bitmap_len + (uint64_t)s * SECTOR, buf, (size_t)(e - s) * SECTOR)) ==
                0)
                rc = storage_vhd_file_write(p, base + (uint64_t)s * SECTOR, buf, (size_t)(e - s) * SECTOR);
            sectors += e - s;
            s = e;
        }
    }
    if (rc == 0 && fsync(p->fd) < 0)
        rc = -errno;
    if (rc == 0)
        *ret_sectors = sectors;
out:
    free(bm);
    free(buf);
    return rc;
}

int storage_vhd_file_repair(storage_vhd_file *f) {
    if (!f->writable || f->raw)
        return -EBADF;
    if (is_zero(f->info.uuid, 16)) {
        random_uuid(f->info.uuid);
        memcpy(f->info.footer + VHD_F_UNIQUE_ID, f->info.uuid, 16);
    }
    if (f->info.footer_offset < f->info.data_end)
        f->info.footer_offset = f->info.data_end;
    return write_footers(f);
}

int storage_vhd_file_check(storage_vhd_file *f, bool check_parent, char *err, size_t errlen) {
    uint8_t copy[FOOTER];
    int rc;

    if (f->raw)
        return failf(err, errlen, "not a VHD");
    if (f->info.footer_from_copy)
        return failf(err, errlen, "primary footer invalid: %s", f->info.primary_error);
    if (f->info.type != VHD_DISK_FIXED) {
        if ((rc = fd_read(f, 0, copy, FOOTER)) < 0)
            return rc;
        if (memcmp(copy, f->info.footer, FOOTER) != 0)
            return failf(err, errlen, "backup footer invalid: %s",
                         *footer_problem(copy) ? footer_problem(copy) : "differs from the primary footer");
        if (f->info.footer_offset < f->info.data_end)
            return failf(err, errlen, "footer invalid: inside the data");
    }
    if (check_parent && f->info.type == VHD_DISK_DIFFERENCING) {
        storage_vhd_file *p;
        if ((rc = storage_vhd_file_open_chain(f, false)) < 0)
            return failf(err, errlen, "parent invalid: %s", rc == -ENOENT ? "not found" : f->error);
        p = f->parent;
        if (!p->raw && memcmp(p->info.uuid, f->info.parent_uuid, 16) != 0)
            return failf(err, errlen, "parent invalid: uuid mismatch (%s)", p->path);
        if (p->raw != is_zero(f->info.parent_uuid, 16))
            return failf(err, errlen, "parent invalid: raw parent mismatch");
    }
    return 0;
}

int storage_vhd_file_check_time(const storage_vhd_file *f, int64_t now, char *err, size_t errlen) {
    int64_t created = VHD_EPOCH + vhd_get32(f->info.footer + VHD_F_TIMESTAMP);

    if (!f->raw && created > now)
        return failf(err, errlen, "primary footer invalid: creation time in future");
    return 0;
}
