/* VHD images as files (or block devices) on disk, as blktap's tapdisk and
 * vhd-util keep them in file and LVM SRs: reading the metadata of an image
 * with full validation (every field from disk is untrusted), creating dynamic
 * and differencing (snapshot) images, reading through a chain of parents,
 * writing, re-parenting, hiding, coalescing a child into its parent,
 * checking, resizing. tools/vhd-util.c is the command line over it.
 *
 * Images written here: footer copy at 0, dynamic header at 512, BAT at 1536
 * (padded to a sector), then for a differencing disk the parent locators
 * (MacX, W2ku, W2ru, each in its own sector-aligned area of at least 512
 * bytes holding the parent's path relative to the child), then the blocks in
 * allocation order, then the footer. Blocks are 2 MiB. No batmap: the
 * creator version is 1.0, for which tapdisk expects none. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/vhd.h"

#define STORAGE_VHD_MAX_CHAIN 64           /* parents followed at most (loops end there) */
#define STORAGE_VHD_MAX_BAT (UINT32_C(1) << 22) /* BAT entries accepted (16 MiB of table) */
#define STORAGE_VHD_MAX_LOCATOR 4096u      /* bytes of one parent locator's path accepted */

enum {
    STORAGE_VHD_TYPE_FIXED = 2,
    STORAGE_VHD_TYPE_DYNAMIC = 3,
    STORAGE_VHD_TYPE_DIFFERENCING = 4,
};

/* Parent locator platform codes. */
#define STORAGE_VHD_LOC_MACX 0x4D616358u /* "MacX": UTF-8 file:// URL */
#define STORAGE_VHD_LOC_W2KU 0x57326B75u /* "W2ku": UTF-16LE absolute or .\ relative path */
#define STORAGE_VHD_LOC_W2RU 0x57327275u /* "W2ru": UTF-16LE relative path */

typedef struct storage_vhd_locator {
    uint32_t code;       /* 0: unused entry */
    uint32_t space;      /* bytes reserved at offset */
    uint32_t len;        /* bytes used */
    uint64_t offset;
} storage_vhd_locator;

/* The metadata of one image, as read and validated. */
typedef struct storage_vhd_info {
    uint8_t footer[STORAGE_VHD_FOOTER_SIZE];
    uint64_t footer_offset;   /* where the primary footer is (the file's last sector) */
    bool footer_from_copy;    /* the primary footer was invalid, the copy at 0 is used */
    char primary_error[96];   /* why, when footer_from_copy */
    uint32_t type;
    uint64_t size;            /* virtual size, bytes */
    uint8_t uuid[16];
    bool hidden;
    /* dynamic and differencing disks */
    uint8_t header[STORAGE_VHD_HEADER_SIZE];
    uint64_t header_offset, bat_offset;
    uint32_t max_bat, nblocks, block_size, bitmap_len;
    uint32_t *bat;            /* max_bat entries, host order */
    /* differencing disks */
    uint8_t parent_uuid[16];  /* all zeros: a raw parent */
    uint32_t parent_time;     /* VHD epoch */
    char parent_name[772];    /* prt_name as UTF-8 */
    storage_vhd_locator loc[8];
    /* tapdisk's batmap (creator "tap" 1.2 and later), when the image has one:
     * a 512-byte header right after the padded BAT, then the map (1 bit per
     * block: its sector bitmap is full). Blocks written here leave their bit
     * clear, which only makes tapdisk read the bitmap. */
    uint64_t batmap_header, batmap_offset, batmap_bytes; /* batmap_bytes 0: none */
    uint64_t data_end;        /* end of the last structure before the footer */
} storage_vhd_info;

/* Reads and validates the metadata of an image of file_size bytes through
 * read (which must not be asked past file_size: every offset is checked
 * first). 0, or -EINVAL with the reason in err (vhd-util check's wording),
 * or read's error, or -ENOMEM. */
int storage_vhd_info_parse(storage_vhd_info *ret, storage_vhd_read_fn read, void *opaque, uint64_t file_size,
                           char *err, size_t errlen);
void storage_vhd_info_free(storage_vhd_info *i);
/* Locator k's path (UTF-8, '/' separators, file:// removed): 0, -ENOENT
 * (unused or not a path code), -EINVAL (undecodable) or read's error. */
int storage_vhd_info_locator_path(const storage_vhd_info *i, unsigned k, storage_vhd_read_fn read, void *opaque,
                                  char **ret_path);
/* Allocated blocks. */
uint32_t storage_vhd_info_allocated(const storage_vhd_info *i);

typedef struct storage_vhd_file storage_vhd_file;
struct storage_vhd_file {
    int fd;
    char *path;
    bool writable;
    bool raw;                 /* a raw parent: no VHD structures, data as is */
    bool device;              /* a block device (an LV): it never grows */
    uint64_t file_size;
    storage_vhd_info info;    /* unset for raw */
    storage_vhd_file *parent; /* after storage_vhd_file_open_chain */
    char error[256];          /* the reason of the last -EINVAL */
    /* after storage_vhd_file_cache_bitmaps: block i's sector bitmap as read,
     * max_bat slots; NULL until read, or one of two markers (all sectors
     * present, none present) */
    uint8_t **bitmaps;
    uint32_t nbitmaps;
};

/* Opens an image (writable: O_RDWR). 0 or a negative errno; on -EINVAL the
 * reason in err. */
int storage_vhd_file_open(storage_vhd_file **ret, const char *path, bool writable, char *err, size_t errlen);
/* The same over fd, already open on path (O_RDWR if writable), which f owns
 * from now on (closed on failure too): for callers that open the file
 * themselves, without following links (storage_open_file). */
int storage_vhd_file_open_fd(storage_vhd_file **ret, int fd, const char *path, bool writable, char *err,
                             size_t errlen);
/* Opens a file as a raw parent. */
int storage_vhd_file_open_raw(storage_vhd_file **ret, const char *path, bool writable);
/* Closes f and its opened parents. */
void storage_vhd_file_close(storage_vhd_file *f);
/* The absolute path of f's parent: the first locator naming an existing
 * file, else prt_name beside f. -EINVAL if f is no differencing disk,
 * -ENOENT if no candidate exists. The directory part is canonical; the last
 * component is kept as named (LVM device links stay /dev/VG/LV). */
int storage_vhd_file_parent_path(storage_vhd_file *f, char **ret_path);
/* Locator k's path, as storage_vhd_info_locator_path. */
int storage_vhd_file_locator_path(storage_vhd_file *f, unsigned k, char **ret_path);
/* The parent's name as recorded, without requiring it to exist: the first
 * decodable locator's basename, else prt_name. NULL if none. */
char *storage_vhd_file_parent_name(storage_vhd_file *f);
/* Opens the parents of f (the writable flag applies to the first one only,
 * for coalescing). -ELOOP past STORAGE_VHD_MAX_CHAIN. */
int storage_vhd_file_open_chain(storage_vhd_file *f, bool parent_writable);
/* Chain depth: 1 for an image without a parent. Needs the chain opened. */
unsigned storage_vhd_file_depth(const storage_vhd_file *f);
/* Bytes of the image as vhd-util counts them: end of the last structure plus the footer. */
uint64_t storage_vhd_file_phys_size(const storage_vhd_file *f);
uint64_t storage_vhd_file_virtual_size(const storage_vhd_file *f);

/* Keeps the sector bitmaps of f and of its opened parents in memory once
 * read, so that a read of a block costs one pread per run of sectors and no
 * bitmap read: for a long-lived reader (the nbdkit plugin), which alone
 * changes the image meanwhile (its parents never change). Memory: a pointer
 * per BAT entry, and bitmap_len bytes per block read whose bitmap is neither
 * full nor empty. Resizing or zeroing f turns f's cache off. */
void storage_vhd_file_cache_bitmaps(storage_vhd_file *f);

/* Reads the disk through the chain (opened first for a differencing disk:
 * -ENOLINK otherwise); zeros past the disk's end. Reads of one chain may run
 * in parallel threads with each other, not with anything that changes it. */
int storage_vhd_file_read(storage_vhd_file *f, uint64_t offset, void *buf, size_t len);
/* Whether [offset, offset + len) of the disk reads as zeros because no image
 * of the chain has a block there, known from the BATs alone (a raw or fixed
 * image has data wherever it has bytes; a parent not opened counts as data). */
bool storage_vhd_file_unallocated(const storage_vhd_file *f, uint64_t offset, uint64_t len);
/* Where the disk's bytes from offset are as they are in one file of the chain,
 * for a reader that sends them without reading them (sendfile): 1 with
 * *ret_fd (f's or a parent's), *ret_offset there and *len cut to what lies
 * there in one piece (a block whose sector bitmap is full, or a fixed or
 * raw image); 0 if not so (absent blocks, partial bitmaps, block devices,
 * past the disk's end: read them); or a negative errno. */
int storage_vhd_file_extent(storage_vhd_file *f, uint64_t offset, uint64_t *len, int *ret_fd, uint64_t *ret_offset);
/* Writes whole sectors into f itself, allocating blocks as needed. */
int storage_vhd_file_write(storage_vhd_file *f, uint64_t offset, const void *buf, size_t len);

typedef struct storage_vhd_create_params {
    const char *path;
    uint64_t size;            /* bytes; rounded up to a 2 MiB block */
    uint64_t reserve_size;    /* bytes the BAT is made for (fast resize), 0: size */
    bool fixed;
    const char *parent;       /* snapshot: the parent's path */
    bool parent_raw;          /* the parent is a raw file */
    bool keep_empty_parent;   /* do not skip empty differencing parents */
    int64_t now;              /* unix time */
} storage_vhd_create_params;

/* Creates a new image: a new file (an existing one: -EEXIST), or over an
 * existing block device (an LV made for it), the footer at its end. */
int storage_vhd_create(const storage_vhd_create_params *p, char *err, size_t errlen);
/* Makes f (differencing) point at a new parent. */
int storage_vhd_file_set_parent(storage_vhd_file *f, const char *parent, bool parent_raw);
int storage_vhd_file_set_hidden(storage_vhd_file *f, bool hidden);
/* tapdisk's marker byte (in the batmap header): -ENOENT without a batmap. */
int storage_vhd_file_marker(storage_vhd_file *f, uint8_t *ret_marker);
int storage_vhd_file_set_marker(storage_vhd_file *f, uint8_t marker);
/* Grows the virtual size (bytes, rounded up to a block); -EINVAL to shrink. */
int storage_vhd_file_resize(storage_vhd_file *f, uint64_t size);
/* Moves the primary footer so the image takes `bytes` (>= phys size). */
int storage_vhd_file_set_phys_size(storage_vhd_file *f, uint64_t bytes);
/* Drops every block (the disk reads as zeros, or as its parent). */
int storage_vhd_file_zero(storage_vhd_file *f);
/* Copies the sectors present in f (differencing) into its parent, opened
 * writable by storage_vhd_file_open_chain(f, true). f is left unchanged. */
int storage_vhd_file_coalesce(storage_vhd_file *f, uint64_t *ret_sectors);
/* Rewrites the primary footer from the copy at 0 (or, when valid, itself). */
int storage_vhd_file_repair(storage_vhd_file *f);
/* Checks what open does not: primary footer, footer copy, parent (check_parent). */
int storage_vhd_file_check(storage_vhd_file *f, bool check_parent, char *err, size_t errlen);
/* -EINVAL if the footer says the image was made after `now` (unix time): a
 * clock gone wrong on the host that wrote it (Nova's plugin refuses those). */
int storage_vhd_file_check_time(const storage_vhd_file *f, int64_t now, char *err, size_t errlen);
