/* libFuzzer target: VHD files on disk (storage/vhd_file.c): the metadata
 * parser (footer, its copy, header, BAT, parent locators) over arbitrary
 * bytes, which must never read outside the file it is given, then the same
 * bytes as a file opened, read, checked and asked for its parent's name. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "storage/vhd_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct image {
    const uint8_t *data;
    size_t len;
} image;

static int mem_read(void *opaque, uint64_t off, void *buf, size_t len) {
    const image *im = opaque;

    if (off > im->len || len > im->len - off)
        abort(); /* the parser must bound every read by the file size first */
    memcpy(buf, im->data + off, len);
    return 0;
}

static void as_file(const uint8_t *data, size_t size) {
    storage_vhd_file *f = NULL;
    char path[64], err[256];
    uint8_t buf[4096];
    int fd = memfd_create("vhd", MFD_CLOEXEC);

    if (fd < 0)
        return;
    if (write(fd, data, size) != (ssize_t)size)
        goto out;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (storage_vhd_file_open(&f, path, false, err, sizeof err) < 0)
        goto out;
    /* the parent is never opened here: a differencing disk reads -ENOLINK where it would need it */
    for (uint64_t off = 0; off < storage_vhd_file_virtual_size(f) && off < 64 * 4096; off += 4096)
        (void)storage_vhd_file_read(f, off, buf, sizeof buf);
    (void)storage_vhd_file_check(f, false, err, sizeof err);
    free(storage_vhd_file_parent_name(f));
    storage_vhd_file_close(f);
out:
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    image im = {data, size};
    storage_vhd_info info;
    char err[256];

    if (storage_vhd_info_parse(&info, mem_read, &im, size, err, sizeof err) == 0) {
        for (unsigned k = 0; k < 8; k++) {
            char *path = NULL;
            if (storage_vhd_info_locator_path(&info, k, mem_read, &im, &path) == 0)
                free(path);
        }
        if (info.data_end > size)
            abort(); /* every structure lies inside the file */
        (void)storage_vhd_info_allocated(&info);
        storage_vhd_info_free(&info);
    }
    as_file(data, size);
    return 0;
}
