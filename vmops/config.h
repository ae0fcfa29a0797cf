/* Turning API records into the backend's domain description (store lock held). */
#pragma once

#include "vmops/backend.h"
#include "xapi/api.h"

vmops_domain_type vmops_domain_type_of(const xapi_obj *vm);
/* A userdevice / VIF device number, or -1 when it is not one. */
int vmops_parse_device_number(const char *s);
/* "xvda", "hdc"...: malloc'd. */
char *vmops_vdev_name(vmops_domain_type type, int devid);
int vmops_disk_from_vbd(xapi_server *srv, const xapi_obj *vm, const xapi_obj *vbd, vmops_disk *ret, xapi_value *err);
int vmops_nic_from_vif(xapi_server *srv, const xapi_obj *vif, vmops_nic *ret, xapi_value *err);
/* The whole domain: VM fields, its VBDs (VM_DUPLICATE_VBD_DEVICE on a clash) and VIFs. */
int vmops_build_config(xapi_server *srv, const xapi_obj *vm, vmops_domain_config *ret, xapi_value *err);
