/* The libxl backend: real Xen. */
#include <errno.h>

#include "agent/log.h"
#include "vmops/backend.h"

int vmops_libxl_new(const char *state_dir, vmops_backend **ret) {
    log_error("libxl backend: not implemented yet");
    return -ENOTSUP;
}
