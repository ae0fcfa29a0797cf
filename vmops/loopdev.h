/* Loop devices over image files, through the kernel's loop ioctls
 * (LOOP_CTL_GET_FREE, LOOP_CONFIGURE): what Xen's bash `block` script does
 * with losetup, for blkback, without forking. Used by xenapid-hotplug
 * (tools/hotplug.c), libxl's device script for xenapid's domains. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A free loop device backed by `path` (read-only when asked): its name
 * (/dev/loopN, into ret_name of size n) and device number. Not autoclear:
 * blkback opens the device by number after we close it, and
 * vmops_loop_detach ends it. -EBUSY: every try lost the race for a free device. */
int vmops_loop_attach(const char *path, bool readonly, char *ret_name, size_t n, dev_t *ret_dev);
/* Detaches `name` (/dev/loopN) if it is still backed by `path` (the file
 * given at attach, NULL: whatever backs it). -ENXIO: not attached
 * (already gone, nothing to do); -ESTALE: backed by another file now. */
int vmops_loop_detach(const char *name, const char *path);
