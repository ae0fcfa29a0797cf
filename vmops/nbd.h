/* The kernel's NBD client, driven from C: the NBD handshake with a server on
 * a connected socket (fixed newstyle, the export's size and flags), then the
 * socket handed to a /dev/nbdN through the NBD generic netlink family (the
 * device stays connected after we exit: the ioctl interface would need a
 * process blocked in NBD_DO_IT for the device's life). Used by
 * xenapid-hotplug (tools/hotplug.c) for VHD disks (see vhd_nbd.h). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The export's size in bytes and its transmission flags (NBD_FLAG_*), after
 * negotiating the default export on fd; -EPROTO: not an NBD server. */
int vmops_nbd_handshake(int fd, uint64_t *ret_size, uint16_t *ret_flags);

#define VMOPS_NBD_MAX_CONNECTIONS 8

typedef struct vmops_nbd_connect_params {
    /* each after vmops_nbd_handshake with the same server (which must allow
     * several: NBD_FLAG_CAN_MULTI_CONN); the kernel keeps its own references
     * and spreads the requests over them */
    int sock_fds[VMOPS_NBD_MAX_CONNECTIONS];
    unsigned nsocks;
    uint64_t size;          /* bytes */
    uint16_t flags;         /* the server's transmission flags (NBD_FLAG_READ_ONLY makes the device read-only) */
    const char *identifier; /* /sys/block/nbdN/backend, so that a detach ends only its own device */
} vmops_nbd_connect_params;

/* A free (or new) NBD device connected to the socket: its index N (/dev/nbdN).
 * Loads the nbd module when the family is missing. -ENOENT: no nbd module. */
int vmops_nbd_connect(const vmops_nbd_connect_params *p, int *ret_index);
/* Lets /dev/nbd<index> send requests of up to kib KiB (at most what the
 * driver takes, max_hw_sectors_kb): the NBD driver caps them at 128 KiB,
 * where a loop device takes 1280, so a guest's 1 MiB reads through blkback
 * cost eight round trips to the server instead of one. */
int vmops_nbd_set_max_request(int index, unsigned kib);
/* Disconnects /dev/nbd<index> if its backend is still `identifier` (NULL:
 * whatever). -ESTALE: the device serves someone else now; -ENXIO: no device. */
int vmops_nbd_disconnect(int index, const char *identifier);
