/* The backend's domain description (vmops_domain_config) as libxl's
 * (libxl_domain_config). Pure functions: no libxl context, no I/O, so the
 * golden tests run them on machines without Xen.
 *
 * Every function takes an out-parameter the caller has _init'ed (and disposes
 * of, whatever the result, with the matching libxl _dispose). They return 0
 * or -EINVAL with a malloc'd explanation in *ret_msg. */
#pragma once

#include <libxl.h>

#include "vmops/backend.h"

/* The whole domain: create_info, build_info, disks, nics, actions. */
int vmops_libxl_domain_config(const vmops_domain_config *in, libxl_domain_config *out, char **ret_msg);
/* One disk, for the domain config and for hot-plug. An empty CD drive gets
 * format "empty" (only HVM guests can have one: vmops_libxl_domain_config
 * leaves it out of PV and PVH domains). */
int vmops_libxl_disk(const vmops_disk *in, libxl_device_disk *out, char **ret_msg);
/* One NIC, for the domain config and for hot-plug. */
int vmops_libxl_nic(const vmops_nic *in, libxl_device_nic *out, char **ret_msg);
/* xenapid's own device script (`helper`, NULL: leave Xen's): every NIC's,
 * and a raw image's (blkback over a loop device; with a script set libxl
 * takes the phy backend). Not a CD (libxl changes its medium in place) nor
 * an image QEMU reads (qdisk runs no script and refuses one).
 * -EMEDIUMTYPE (reason in *ret_msg): a VHD disk, which only xenapid-hotplug
 * can attach (through nbdkit), and no helper. */
int vmops_libxl_disk_script(libxl_device_disk *disk, const char *helper, char **ret_msg);
void vmops_libxl_nic_script(libxl_device_nic *nic, const char *helper);
int vmops_libxl_device_scripts(libxl_domain_config *d, const char *helper, char **ret_msg);
/* "00:16:3e:12:34:56" (or '-' separated); "" leaves all zeros, which libxl
 * replaces by a random 00:16:3e MAC. */
int vmops_libxl_parse_mac(const char *s, libxl_mac *out);

/* Where an HVM guest's VNC server listens: "unix:<VMOPS_LIBXL_VNC_DIR>/vnc-<VM uuid>"
 * (malloc'd; the form QEMU's -vnc takes). The backend makes the folder. */
#define VMOPS_LIBXL_VNC_DIR "/run/xen"
char *vmops_libxl_vnc_address(const char *uuid);

/* Where libxl's builds look for qemu-xen, the device model of HVM guests
 * (Debian's qemu-system-xen package first, then upstream Xen's default). */
extern const char *const vmops_libxl_device_models[];
/* Whether the device model the domain needs is installed: 0 when it needs
 * none (PV, PVH) or has one (its b_info.device_model if set, else one of
 * candidates, a NULL-terminated list); else -ENOEXEC with *ret_msg naming
 * what is missing. Looks at the file system only (access(2)). */
int vmops_libxl_device_model_check(const libxl_domain_config *d, const char *const *candidates, char **ret_msg);
