/* libvirt-physinfo.so: an LD_PRELOAD shim for libvirtd in the Xen lab only (tests/e2e/steps_libvirt.py).
 *
 * libvirt's libxl driver turns the host CPU features Xen reports (libxl_physinfo.hw_cap) into a CPU model
 * from its cpu_map, and refuses to load when none fits ("Cannot find suitable CPU model for given
 * data"): under QEMU's TCG with -cpu qemu64,+svm,+npt the feature words Xen reports match no model. The
 * driver skips that decoding when hw_cap[0] is zero (as on ARM), and a PV guest's build does not use the
 * host CPU model, so this wrapper zeroes hw_cap on the way to libvirt and changes nothing else. */
#include <dlfcn.h>
#include <string.h>

#include <libxl.h>

typedef int (*physinfo_fn)(libxl_ctx *ctx, libxl_physinfo *physinfo);


int libxl_get_physinfo(libxl_ctx *ctx, libxl_physinfo *physinfo) {
    physinfo_fn real;
    int rc;

    /* dlsym returns a void *; POSIX guarantees it converts to a function pointer */
    *(void **) &real = dlsym(RTLD_NEXT, "libxl_get_physinfo");
    if (!real)
        return ERROR_FAIL;
    rc = real(ctx, physinfo);
    if (rc == 0)
        memset(physinfo->hw_cap, 0, sizeof(physinfo->hw_cap));
    return rc;
}
