/* libFuzzer target: the VHD decoder (storage/vhd.c) over arbitrary images,
 * fed in two pieces split where the first byte says. Every write must lie
 * within the virtual size the image declares, zero ranges included. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "storage/vhd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct sink {
    uint64_t end; /* the furthest byte written */
    uint64_t sum; /* touches every byte passed, for the sanitizers */
} sink;

static int sink_write(void *opaque, uint64_t offset, const void *data, size_t len) {
    sink *s = opaque;
    const uint8_t *p = data;

    if (offset + len < offset)
        abort();
    if (offset + len > s->end)
        s->end = offset + len;
    for (size_t i = 0; p && i < len; i++)
        s->sum += p[i];
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sink s = {0};
    storage_vhd_decoder *d = storage_vhd_decoder_new(sink_write, &s);
    size_t split = size ? (size_t)data[0] * 64 % (size + 1) : 0;
    uint64_t vsize = 0;

    if (!d)
        return 0;
    if (storage_vhd_decoder_feed(d, data, split) == 0 && storage_vhd_decoder_feed(d, data + split, size - split) == 0 &&
        storage_vhd_decoder_finish(d, &vsize) == 0 && s.end > vsize)
        abort(); /* wrote past the disk's end */
    storage_vhd_decoder_free(d);
    return 0;
}
