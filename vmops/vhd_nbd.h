/* A VHD disk (and the chain of parents under it) as a block device for
 * blkback: nbdkit with xenapid's plugin (nbdkit/xenapid_vhd.c) on a private
 * UNIX socket, in a process group of its own, and the kernel's NBD client
 * connected to it (vmops/nbd.h). blktap is not packaged for Debian 12 and
 * QEMU's vpc driver ignores parents, so this is the datapath of VHD files.
 *
 * Each attachment has a key (xenapid-hotplug uses "vbd-<domid>-<devid>")
 * naming its files in dir: KEY.sock (nbdkit's socket), KEY.pid (nbdkit's
 * pidfile) and KEY.nbd ("<nbd index> <process group>", the record that
 * detach and the start-up sweep go by). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct vmops_vhd_nbd_params {
    const char *image;  /* the leaf VHD */
    bool readonly;      /* nbdkit opens even the leaf read-only; the device is read-only */
    const char *dir;    /* where the socket and records live (made 0700 if missing) */
    const char *key;    /* names the files: letters, digits, '-' and '_' only */
    const char *nbdkit; /* the program (NULL: nbdkit from PATH) */
    const char *plugin; /* nbdkit-xenapid-vhd-plugin.so */
    unsigned connections;     /* NBD connections (0: one per online CPU, at most VMOPS_VHD_NBD_CONNECTIONS) */
    unsigned max_request_kib; /* the device's max_sectors_kb (0: VMOPS_VHD_NBD_MAX_REQUEST_KIB) */
} vmops_vhd_nbd_params;

/* The kernel's NBD client spreads requests over its connections, one
 * receiving thread each; nbdkit serves each connection with
 * VMOPS_VHD_NBD_THREADS threads (its default, 16, doubled the context
 * switches per request without making a sequential read faster:
 * bench/vhd_chain_read.py). Requests as large as a loop device takes
 * (BLK_DEF_MAX_SECTORS), which the raw file disks go through. */
#define VMOPS_VHD_NBD_CONNECTIONS 4
#define VMOPS_VHD_NBD_THREADS "2"
#define VMOPS_VHD_NBD_MAX_REQUEST_KIB 1280

typedef struct vmops_vhd_nbd {
    int index;  /* /dev/nbd<index> */
    dev_t dev;  /* its device number (blkback's physical-device) */
    pid_t pgid; /* nbdkit's process group */
} vmops_vhd_nbd;

/* Serves p->image and connects an NBD device to it. On failure nothing is
 * left (no nbdkit, device, socket or record) and err says why (nbdkit's own
 * message when it refused the image). */
int vmops_vhd_nbd_attach(const vmops_vhd_nbd_params *p, vmops_vhd_nbd *ret, char *err, size_t errlen);
/* Ends what the record dir/KEY.nbd names: the NBD device (if it still serves
 * this socket), nbdkit's process group, the files. -ENOENT: no record. */
int vmops_vhd_nbd_detach(const char *dir, const char *key);
/* Whether key is one this module names files by (for a sweep of dir). */
bool vmops_vhd_nbd_key_valid(const char *key);
