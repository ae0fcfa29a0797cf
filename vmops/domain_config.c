#include <stdlib.h>

#include "vmops/backend.h"

void vmops_domain_config_free(vmops_domain_config *c) {
    if (!c)
        return;
    free(c->name);
    free(c->kernel);
    free(c->ramdisk);
    free(c->cmdline);
    free(c->bootloader);
    free(c->bootloader_args);
    free(c->boot_order);
    for (size_t i = 0; i < c->nplatform; i++) {
        free(c->platform_keys[i]);
        free(c->platform_values[i]);
    }
    free(c->platform_keys);
    free(c->platform_values);
    for (size_t i = 0; i < c->ndisks; i++) {
        free(c->disks[i].vdev);
        free(c->disks[i].target);
        free(c->disks[i].format);
    }
    free(c->disks);
    for (size_t i = 0; i < c->nnics; i++)
        free(c->nics[i].bridge);
    free(c->nics);
    *c = (vmops_domain_config){0};
}
