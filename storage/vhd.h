/* VHD images (Microsoft Virtual Hard Disk format, version 1.0), as
 * /import_raw_vdi and /export_raw_vdi take and give them with format=vhd:
 * a streaming decoder from a fixed or dynamic image to the raw disk, and the
 * layout of a dynamic image of a raw disk, produced piece by piece.
 *
 * Structures (all big-endian): a 512-byte footer at the end of every image
 * (a copy of it first in a dynamic one), then in a dynamic image a 1024-byte
 * header, the block allocation table (BAT: one 32-bit sector offset per
 * block of the disk, 0xFFFFFFFF for a block of zeros) and the blocks, each a
 * sector bitmap (bit set: the sector is in the image) then the data. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define STORAGE_VHD_SECTOR 512u
#define STORAGE_VHD_FOOTER_SIZE 512u
#define STORAGE_VHD_HEADER_SIZE 1024u
#define STORAGE_VHD_BLOCK_SIZE (2u << 20)          /* the block size of the images written */
#define STORAGE_VHD_MAX_SIZE (UINT64_C(2) << 40)   /* 32-bit sector offsets: 2 TiB */

/* ---- decoding ------------------------------------------------------------ */

/* Receives the disk's content as the image reveals it: len bytes at offset
 * of the disk, data NULL for zeros. Offsets are below the image's virtual
 * size but come in no particular order. 0 or a negative errno (stops). */
typedef int (*storage_vhd_write_fn)(void *opaque, uint64_t offset, const void *data, size_t len);

typedef struct storage_vhd_decoder storage_vhd_decoder;

storage_vhd_decoder *storage_vhd_decoder_new(storage_vhd_write_fn write, void *opaque);
void storage_vhd_decoder_free(storage_vhd_decoder *d);
/* The next bytes of the image, front to back. 0; -EINVAL when it is no VHD
 * this reads (differencing disk, bad checksum, structures out of order), the
 * reason in storage_vhd_decoder_error; or the write function's error. A
 * dynamic image is recognised by its first sector; anything else is taken as
 * a fixed image (data then footer), checked at the end. */
int storage_vhd_decoder_feed(storage_vhd_decoder *d, const void *data, size_t len);
/* The image is over: -EINVAL if it was cut short or (fixed) ends without a
 * valid footer. *ret_size: the disk's virtual size. */
int storage_vhd_decoder_finish(storage_vhd_decoder *d, uint64_t *ret_size);
/* Why the last call failed with -EINVAL ("" otherwise). */
const char *storage_vhd_decoder_error(const storage_vhd_decoder *d);

/* ---- encoding: a dynamic image --------------------------------------------- */

typedef struct storage_vhd_layout {
    uint64_t size;          /* virtual size: the disk's, rounded up to a sector */
    uint32_t nblocks;       /* BAT entries: blocks of STORAGE_VHD_BLOCK_SIZE covering size */
    uint32_t nallocated;    /* blocks present, in disk order, ... */
    uint32_t *allocated;    /* ... their indexes */
    uint8_t *meta;          /* footer copy, header, BAT, padded to a sector: meta_len bytes */
    size_t meta_len;
    uint8_t footer[STORAGE_VHD_FOOTER_SIZE];
    uint64_t total;         /* bytes of the image */
} storage_vhd_layout;

/* The image of a disk of disk_size bytes whose blocks i with present[i]
 * (nblocks of them, see storage_vhd_blocks) hold data; the others are left
 * out of the image. id: 16 bytes for the footer's unique id; now: unix time. */
int storage_vhd_layout_init(storage_vhd_layout *l, uint64_t disk_size, const bool *present, const uint8_t id[16],
                            int64_t now);
void storage_vhd_layout_free(storage_vhd_layout *l);
/* Blocks of a disk of that size (0 if larger than STORAGE_VHD_MAX_SIZE). */
uint32_t storage_vhd_blocks(uint64_t disk_size);

/* Reads len bytes of the disk at offset into buf (zeros past its end): 0 or a negative errno. */
typedef int (*storage_vhd_read_fn)(void *opaque, uint64_t offset, void *buf, size_t len);
/* Produces the image bytes at pos (< l->total): up to max of them into buf,
 * disk data through read. The number of bytes (> 0), or read's error. */
ssize_t storage_vhd_layout_read(const storage_vhd_layout *l, uint64_t pos, void *buf, size_t max,
                                storage_vhd_read_fn read, void *opaque);
/* Whether the image's bytes at pos are disk data, as storage_vhd_layout_read
 * would read them: then the disk's offset, and *len cut to the block's end. */
bool storage_vhd_layout_data_at(const storage_vhd_layout *l, uint64_t pos, uint64_t *len, uint64_t *ret_disk_offset);
