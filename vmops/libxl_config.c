/* vmops_domain_config -> libxl_domain_config: what xl's config parser would
 * produce for the same domain, leaving to libxl's own defaults whatever the
 * XenAPI records do not say. Pure: no context, no I/O (golden-tested without
 * Xen by tests/unit/test_libxl_config.c), but for the device model check,
 * which looks for a file. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libxl_utils.h>

#include "vmops/libxl_config.h"
#include "xapi/value.h"

/* The vif's rate limit: xapi's "ratelimit" kbps are KiB/s, credited to
 * netback every 50 ms (xenopsd's choice, kept so guests see the same rate). */
#define RATE_INTERVAL_USECS 50000ULL
#define VIF_SCRIPT "vif-bridge"
#define HVM_DEFAULT_BOOT "cd"
#define HVM_DEFAULT_SERIAL "pty"
#define VNC_SOCKET_PREFIX "vnc-"
#define VIRIDIAN_BITS 32

static int fail(char **ret_msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char **ret_msg, const char *fmt, ...) {
    va_list ap;

    if (ret_msg) {
        free(*ret_msg);
        *ret_msg = NULL;
        va_start(ap, fmt);
        if (vasprintf(ret_msg, fmt, ap) < 0)
            xapi_oom();
        va_end(ap);
    }
    return -EINVAL;
}

static char *dup_nonempty(const char *s) {
    return s && *s ? xapi_strdup(s) : NULL;
}

/* libxl_bitmap_alloc wants a context; this is the same allocation without one
 * (libxl_bitmap_dispose frees it). */
static void bitmap_alloc(libxl_bitmap *b, unsigned nbits) {
    if (b->map)
        return;
    b->size = (nbits + 7) / 8;
    b->map = xapi_calloc(b->size ? b->size : 1, 1);
}

static int parse_bool(const char *s, bool *ret) {
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = false;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_int(const char *s, long long min, long long max, long long *ret) {
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -EINVAL;
    *ret = v;
    return 0;
}

int vmops_libxl_parse_mac(const char *s, libxl_mac *out) {
    uint8_t mac[6];

    memset(*out, 0, sizeof *out);
    if (!s || !*s)
        return 0;
    for (int i = 0; i < 6; i++) {
        char hex[3];

        if (!isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1]))
            return -EINVAL;
        hex[0] = s[0];
        hex[1] = s[1];
        hex[2] = 0;
        mac[i] = (uint8_t)strtoul(hex, NULL, 16);
        s += 2;
        if (i < 5) {
            if (*s != ':' && *s != '-')
                return -EINVAL;
            s++;
        }
    }
    if (*s)
        return -EINVAL;
    memcpy(*out, mac, sizeof mac);
    return 0;
}

static libxl_action_on_shutdown action_of(vmops_action a) {
    switch (a) {
    case VMOPS_ACTION_DESTROY:
        return LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
    case VMOPS_ACTION_RESTART:
        return LIBXL_ACTION_ON_SHUTDOWN_RESTART;
    case VMOPS_ACTION_PRESERVE:
        return LIBXL_ACTION_ON_SHUTDOWN_PRESERVE;
    case VMOPS_ACTION_RENAME_RESTART:
        return LIBXL_ACTION_ON_SHUTDOWN_RESTART_RENAME;
    case VMOPS_ACTION_COREDUMP_DESTROY:
        return LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_DESTROY;
    case VMOPS_ACTION_COREDUMP_RESTART:
        return LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_RESTART;
    case VMOPS_ACTION_SOFT_REBOOT:
        return LIBXL_ACTION_ON_SHUTDOWN_SOFT_RESET;
    }
    return LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
}

static libxl_domain_type type_of(vmops_domain_type t) {
    switch (t) {
    case VMOPS_HVM:
        return LIBXL_DOMAIN_TYPE_HVM;
    case VMOPS_PVH:
        return LIBXL_DOMAIN_TYPE_PVH;
    case VMOPS_PV:
        break;
    }
    return LIBXL_DOMAIN_TYPE_PV;
}

/* "a b  c" -> {"a", "b", "c", NULL}; NULL for nothing. */
static libxl_string_list split_args(const char *s) {
    libxl_string_list l = NULL;
    size_t n = 0;

    while (s && *s) {
        size_t len;

        while (isspace((unsigned char)*s))
            s++;
        len = strcspn(s, " \t\n\r\f\v");
        if (!len)
            break;
        l = realloc(l, (n + 2) * sizeof *l);
        if (!l)
            xapi_oom();
        l[n] = strndup(s, len);
        if (!l[n])
            xapi_oom();
        l[++n] = NULL;
        s += len;
    }
    return l;
}

/* ---- devices ------------------------------------------------------------------ */

static libxl_disk_format format_of(const char *f) {
    if (!f || !*f || strcasecmp(f, "raw") == 0 || strcasecmp(f, "aio") == 0)
        return LIBXL_DISK_FORMAT_RAW;
    if (strcasecmp(f, "qcow2") == 0)
        return LIBXL_DISK_FORMAT_QCOW2;
    if (strcasecmp(f, "qcow") == 0)
        return LIBXL_DISK_FORMAT_QCOW;
    if (strcasecmp(f, "vhd") == 0)
        return LIBXL_DISK_FORMAT_VHD;
    if (strcasecmp(f, "qed") == 0)
        return LIBXL_DISK_FORMAT_QED;
    return LIBXL_DISK_FORMAT_UNKNOWN;
}

int vmops_libxl_disk(const vmops_disk *in, libxl_device_disk *out, char **ret_msg) {
    bool empty = !in->target || !*in->target;

    if (!in->vdev || !*in->vdev)
        return fail(ret_msg, "disk %s has no device name", in->vbd_uuid);
    if (empty && !in->cdrom)
        return fail(ret_msg, "disk %s (%s) has no image", in->vbd_uuid, in->vdev);
    out->vdev = xapi_strdup(in->vdev);
    out->pdev_path = dup_nonempty(in->target);
    if (empty)
        out->format = LIBXL_DISK_FORMAT_EMPTY;
    else if (in->format && (strcmp(in->format, "vhd") == 0 || strcmp(in->format, "vhd-chain") == 0)) {
        /* An ext/nfs SR's VHD, with parents or not: neither blkback nor QEMU's
         * vpc driver (which ignores parents) reads a chain, and blktap is not
         * in Debian 12. xenapid-hotplug serves it through nbdkit and an NBD
         * device that blkback takes as phy (vmops/vhd_nbd.h): a raw disk for
         * libxl, which only our device script can attach. */
        out->format = LIBXL_DISK_FORMAT_RAW;
        out->backend = LIBXL_DISK_BACKEND_PHY;
        out->readwrite = !in->readonly && !in->cdrom;
        out->is_cdrom = in->cdrom;
        out->removable = in->cdrom;
        if (in->cdrom)
            return fail(ret_msg, "disk %s (%s): a VHD cannot be a CD", in->vbd_uuid, in->vdev);
        return 0;
    } else {
        out->format = format_of(in->format);
        if (out->format == LIBXL_DISK_FORMAT_UNKNOWN)
            return fail(ret_msg, "disk %s (%s): unknown image format '%s'", in->vbd_uuid, in->vdev, in->format);
    }
    /* libxl picks the backend: blkback (through a loop device for a raw
     * file) when it can, else QEMU's qdisk (qcow2, an empty CD). */
    out->backend = LIBXL_DISK_BACKEND_UNKNOWN;
    /* A block device (an LVM SR's logical volume, an iSCSI LUN) goes to blkback as phy. */
    if (!empty && out->format == LIBXL_DISK_FORMAT_RAW && strncmp(in->target, "/dev/", 5) == 0)
        out->backend = LIBXL_DISK_BACKEND_PHY;
    out->readwrite = !in->readonly && !in->cdrom;
    out->is_cdrom = in->cdrom;
    out->removable = in->cdrom;
    return 0;
}

int vmops_libxl_nic(const vmops_nic *in, libxl_device_nic *out, char **ret_msg) {
    if (in->devid < 0)
        return fail(ret_msg, "VIF %s: bad device number %d", in->vif_uuid, in->devid);
    if (vmops_libxl_parse_mac(in->mac, &out->mac) < 0)
        return fail(ret_msg, "VIF %s: invalid MAC address '%s'", in->vif_uuid, in->mac);
    if (in->mac[0] && (out->mac[0] & 1))
        return fail(ret_msg, "VIF %s: MAC address %s is a multicast address", in->vif_uuid, in->mac);
    if (in->mtu < 0 || in->mtu > 65535)
        return fail(ret_msg, "VIF %s: MTU %lld out of range", in->vif_uuid, (long long)in->mtu);
    out->devid = in->devid;
    out->bridge = dup_nonempty(in->bridge);
    out->mtu = (int)in->mtu;
    out->script = xapi_strdup(VIF_SCRIPT);
    if (in->rate_kbps > 0) {
        unsigned long long bytes = (unsigned long long)in->rate_kbps * 1024ULL * RATE_INTERVAL_USECS / 1000000ULL;

        if (bytes == 0 || bytes >= 0xffffffffULL)
            return fail(ret_msg, "VIF %s: rate limit %lld kbps out of range", in->vif_uuid,
                        (long long)in->rate_kbps);
        out->rate_bytes_per_interval = bytes;
        out->rate_interval_usecs = (uint32_t)RATE_INTERVAL_USECS;
    }
    return 0;
}

int vmops_libxl_disk_script(libxl_device_disk *disk, const char *helper, char **ret_msg) {
    /* phy over a file, not a device: a VHD (vmops_libxl_disk), for the helper only */
    bool vhd = disk->backend == LIBXL_DISK_BACKEND_PHY && disk->pdev_path && strncmp(disk->pdev_path, "/dev/", 5) != 0;

    if (!helper && vhd) {
        fail(ret_msg, "disk %s: %s is a VHD, which only xenapid-hotplug can attach (hotplug_helper is off)",
             disk->vdev, disk->pdev_path);
        return -EMEDIUMTYPE;
    }
    if (!helper || disk->is_cdrom || disk->format != LIBXL_DISK_FORMAT_RAW || !disk->pdev_path)
        return 0;
    free(disk->script);
    disk->script = xapi_strdup(helper);
    return 0;
}

void vmops_libxl_nic_script(libxl_device_nic *nic, const char *helper) {
    if (!helper)
        return;
    free(nic->script);
    nic->script = xapi_strdup(helper);
}

int vmops_libxl_device_scripts(libxl_domain_config *d, const char *helper, char **ret_msg) {
    int rc;

    for (int i = 0; i < d->num_disks; i++)
        if ((rc = vmops_libxl_disk_script(&d->disks[i], helper, ret_msg)) < 0)
            return rc;
    for (int i = 0; i < d->num_nics; i++)
        vmops_libxl_nic_script(&d->nics[i], helper);
    return 0;
}

/* ---- platform keys -------------------------------------------------------------- */

static const struct viridian_key {
    const char *key;
    libxl_viridian_enlightenment bit;
} viridian_keys[] = {
    {"viridian_time_ref_count", LIBXL_VIRIDIAN_ENLIGHTENMENT_TIME_REF_COUNT},
    {"viridian_reference_tsc", LIBXL_VIRIDIAN_ENLIGHTENMENT_REFERENCE_TSC},
    {"viridian_apic_assist", LIBXL_VIRIDIAN_ENLIGHTENMENT_APIC_ASSIST},
    {"viridian_crash_ctl", LIBXL_VIRIDIAN_ENLIGHTENMENT_CRASH_CTL},
    {"viridian_stimer", LIBXL_VIRIDIAN_ENLIGHTENMENT_STIMER},
    {"viridian_synic", LIBXL_VIRIDIAN_ENLIGHTENMENT_SYNIC},
};

static const char *platform_get(const vmops_domain_config *c, const char *key) {
    for (size_t i = 0; i < c->nplatform; i++)
        if (c->platform_keys[i] && strcmp(c->platform_keys[i], key) == 0)
            return c->platform_values[i] ? c->platform_values[i] : "";
    return NULL;
}

/* One VM.platform key, if libxl knows it and it applies to this domain type;
 * others (cores-per-socket, secureboot...) are ignored, as a value libxl
 * cannot take. Values that do not parse are errors: a VM that
 * asks for something must not silently get something else. */
static int apply_platform(const vmops_domain_config *c, libxl_domain_build_info *b, const char *key,
                          const char *value, char **ret_msg) {
    bool hvm = c->type == VMOPS_HVM, pvh = c->type == VMOPS_PVH;
    bool flag = false;
    long long n = 0;

#define BOOL_KEY(name, field, applies)                                                            \
    if (strcmp(key, name) == 0) {                                                                 \
        if (!(applies))                                                                           \
            return 0;                                                                             \
        if (parse_bool(value, &flag) < 0)                                                         \
            return fail(ret_msg, "platform:%s: '%s' is not a boolean", key, value);              \
        libxl_defbool_set(&(field), flag);                                                        \
        return 0;                                                                                 \
    }
    BOOL_KEY("acpi", b->acpi, hvm || pvh)
    BOOL_KEY("apic", b->apic, hvm)
    BOOL_KEY("pae", b->u.hvm.pae, hvm)
    BOOL_KEY("nx", b->u.hvm.nx, hvm)
    BOOL_KEY("viridian", b->u.hvm.viridian, hvm)
    BOOL_KEY("hpet", b->u.hvm.hpet, hvm)
    BOOL_KEY("acpi_s3", b->u.hvm.acpi_s3, hvm)
    BOOL_KEY("acpi_s4", b->u.hvm.acpi_s4, hvm)
    BOOL_KEY("usb", b->u.hvm.usb, hvm)
    BOOL_KEY("nested-hvm", b->nested_hvm, hvm)
    BOOL_KEY("exp-nested-hvm", b->nested_hvm, hvm)
    BOOL_KEY("nomigrate", b->disable_migrate, true)
#undef BOOL_KEY

    for (size_t i = 0; i < sizeof viridian_keys / sizeof viridian_keys[0]; i++) {
        if (strcmp(key, viridian_keys[i].key) != 0)
            continue;
        if (!hvm)
            return 0;
        if (parse_bool(value, &flag) < 0)
            return fail(ret_msg, "platform:%s: '%s' is not a boolean", key, value);
        bitmap_alloc(&b->u.hvm.viridian_enable, VIRIDIAN_BITS);
        bitmap_alloc(&b->u.hvm.viridian_disable, VIRIDIAN_BITS);
        libxl_bitmap_set(flag ? &b->u.hvm.viridian_enable : &b->u.hvm.viridian_disable, viridian_keys[i].bit);
        return 0;
    }
    if (strcmp(key, "usb_tablet") == 0) {
        if (!hvm)
            return 0;
        if (parse_bool(value, &flag) < 0)
            return fail(ret_msg, "platform:%s: '%s' is not a boolean", key, value);
        if (flag && !b->u.hvm.usbdevice_list) {
            libxl_defbool_set(&b->u.hvm.usb, true);
            b->u.hvm.usbdevice_list = split_args("tablet");
        }
        return 0;
    }
    if (strcmp(key, "device_id") == 0) {
        /* xapi's PCI device id of the Xen platform device (0001, or 0002 for
         * Windows Update's drivers): the device exists then, whatever libxl's
         * default. Debian's QEMU has no property for the id itself (its
         * xen-platform device is always 5853:0001), so only a well-formed
         * value is asked for, as Nova writes it (four hex digits). */
        if (!hvm)
            return 0;
        if (strlen(value) != 4 || strspn(value, "0123456789abcdefABCDEF") != 4)
            return fail(ret_msg, "platform:device_id: '%s' is not four hex digits", value);
        libxl_defbool_set(&b->u.hvm.xen_platform_pci, true);
        return 0;
    }
    if (strcmp(key, "hdtype") == 0) {
        /* Not xapi's: xl.cfg's hdtype, the emulated disks' controller (CD drives stay
         * on IDE). AHCI moves the BIOS's disk reads to DMA, one command for many
         * sectors, where IDE's programmed I/O is a trap to the device model for
         * every sector. */
        if (!hvm)
            return 0;
        if (strcmp(value, "ide") == 0)
            b->u.hvm.hdtype = LIBXL_HDTYPE_IDE;
        else if (strcmp(value, "ahci") == 0)
            b->u.hvm.hdtype = LIBXL_HDTYPE_AHCI;
        else
            return fail(ret_msg, "platform:hdtype: '%s' is not ide or ahci", value);
        return 0;
    }
    if (strcmp(key, "videoram") == 0) { /* MiB */
        if (!hvm)
            return 0;
        if (parse_int(value, 1, 1024, &n) < 0)
            return fail(ret_msg, "platform:videoram: '%s' is not a size in MiB (1..1024)", value);
        b->video_memkb = (uint64_t)n * 1024;
        return 0;
    }
    if (strcmp(key, "vga") == 0 || strcmp(key, "stdvga") == 0) {
        if (!hvm)
            return 0;
        if (strcmp(key, "stdvga") == 0) {
            if (platform_get(c, "vga"))
                return 0; /* "vga" says it better */
            if (parse_bool(value, &flag) < 0)
                return fail(ret_msg, "platform:stdvga: '%s' is not a boolean", value);
            b->u.hvm.vga.kind = flag ? LIBXL_VGA_INTERFACE_TYPE_STD : LIBXL_VGA_INTERFACE_TYPE_CIRRUS;
        } else if (strcmp(value, "std") == 0)
            b->u.hvm.vga.kind = LIBXL_VGA_INTERFACE_TYPE_STD;
        else if (strcmp(value, "cirrus") == 0)
            b->u.hvm.vga.kind = LIBXL_VGA_INTERFACE_TYPE_CIRRUS;
        else if (strcmp(value, "none") == 0)
            b->u.hvm.vga.kind = LIBXL_VGA_INTERFACE_TYPE_NONE;
        else
            return fail(ret_msg, "platform:vga: '%s' is not std, cirrus or none", value);
        return 0;
    }
    if (strcmp(key, "timeoffset") == 0) { /* seconds from UTC, signed */
        if (!hvm)
            return 0;
        if (parse_int(value, INT32_MIN, INT32_MAX, &n) < 0)
            return fail(ret_msg, "platform:timeoffset: '%s' is not a number of seconds", value);
        b->rtc_timeoffset = (uint32_t)(int32_t)n; /* libxl passes it on as Xen's signed offset */
        return 0;
    }
    if (strcmp(key, "tsc_mode") == 0) {
        if (parse_int(value, LIBXL_TSC_MODE_DEFAULT, LIBXL_TSC_MODE_NATIVE_PARAVIRT, &n) < 0)
            return fail(ret_msg, "platform:tsc_mode: '%s' is not 0..3", value);
        b->tsc_mode = (libxl_tsc_mode)n;
        return 0;
    }
    if (strcmp(key, "hvm_serial") == 0) {
        if (!hvm)
            return 0;
        free(b->u.hvm.serial);
        b->u.hvm.serial = strcmp(value, "none") == 0 ? NULL : dup_nonempty(value);
        return 0;
    }
    return 0;
}

/* ---- the domain ------------------------------------------------------------------ */

static int build_boot(const vmops_domain_config *in, libxl_domain_build_info *b, char **ret_msg) {
    if (in->type == VMOPS_HVM) {
        const char *order = in->boot_order && *in->boot_order ? in->boot_order : HVM_DEFAULT_BOOT;

        for (const char *p = order; *p; p++)
            if (!strchr("acdn", *p))
                return fail(ret_msg, "HVM boot order '%s': devices are a, c, d, n", order);
        b->u.hvm.boot = xapi_strdup(order);
        b->u.hvm.serial = xapi_strdup(HVM_DEFAULT_SERIAL);
        /* The graphical console: QEMU's VNC server on a UNIX socket named
         * after the VM (known before the domain exists; only root reaches
         * it), which CONNECT /console proxies. A port range makes no sense
         * for a socket, and QEMU refuses one. */
        libxl_defbool_set(&b->u.hvm.vnc.enable, true);
        libxl_defbool_set(&b->u.hvm.vnc.findunused, false);
        b->u.hvm.vnc.listen = vmops_libxl_vnc_address(in->uuid);
        /* A given kernel is booted directly (QEMU's -kernel; BIOS and
         * boot order do not matter then), as xl does for HVM. */
        b->kernel = dup_nonempty(in->kernel);
        b->ramdisk = b->kernel ? dup_nonempty(in->ramdisk) : NULL;
        b->cmdline = b->kernel ? dup_nonempty(in->cmdline) : NULL;
        return 0;
    }
    /* PV and PVH: as xapi, a bootloader when PV_bootloader is set, else the given kernel. */
    if (in->bootloader && *in->bootloader) {
        b->bootloader = xapi_strdup(in->bootloader);
        b->bootloader_args = split_args(in->bootloader_args);
        b->cmdline = dup_nonempty(in->cmdline); /* passed to the bootloader as --args */
        return 0;
    }
    if (!in->kernel || !*in->kernel)
        return fail(ret_msg, "a %s guest needs PV_kernel or PV_bootloader", in->type == VMOPS_PVH ? "PVH" : "PV");
    b->kernel = xapi_strdup(in->kernel);
    b->ramdisk = dup_nonempty(in->ramdisk);
    b->cmdline = dup_nonempty(in->cmdline);
    return 0;
}

int vmops_libxl_domain_config(const vmops_domain_config *in, libxl_domain_config *out, char **ret_msg) {
    libxl_domain_create_info *ci = &out->c_info;
    libxl_domain_build_info *b = &out->b_info;
    libxl_domain_type type = type_of(in->type);
    int64_t target = in->memory_target > 0 ? in->memory_target : in->memory_dynamic_max;
    int rc;

    /* identity: the VM's uuid is the domain's handle */
    ci->type = type;
    if (libxl_uuid_from_string(&ci->uuid, in->uuid) != 0)
        return fail(ret_msg, "'%s' is not a uuid", in->uuid);
    ci->name = xapi_strdup(in->name && *in->name ? in->name : in->uuid);

    libxl_domain_build_info_init_type(b, type);

    /* memory, KiB */
    if (in->memory_static_max <= 0 || target <= 0 || target > in->memory_static_max)
        return fail(ret_msg, "memory: need 0 < target (%lld) <= static_max (%lld)", (long long)target,
                    (long long)in->memory_static_max);
    b->max_memkb = (uint64_t)in->memory_static_max / 1024;
    b->target_memkb = (uint64_t)target / 1024;

    /* VCPUs: max_vcpus exist, the first VCPUs_at_startup are online */
    if (in->vcpus_max < 1 || in->vcpus_max > 4096 || in->vcpus_at_startup < 1 ||
        in->vcpus_at_startup > in->vcpus_max)
        return fail(ret_msg, "VCPUs: need 1 <= VCPUs_at_startup (%lld) <= VCPUs_max (%lld)",
                    (long long)in->vcpus_at_startup, (long long)in->vcpus_max);
    b->max_vcpus = (int)in->vcpus_max;
    bitmap_alloc(&b->avail_vcpus, (unsigned)in->vcpus_max);
    for (int64_t i = 0; i < in->vcpus_at_startup; i++)
        libxl_bitmap_set(&b->avail_vcpus, (int)i);

    rc = build_boot(in, b, ret_msg);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < in->nplatform; i++) {
        rc = apply_platform(in, b, in->platform_keys[i], in->platform_values[i] ? in->platform_values[i] : "",
                            ret_msg);
        if (rc < 0)
            return rc;
    }

    out->on_poweroff = action_of(in->on_poweroff);
    out->on_reboot = action_of(in->on_reboot);
    out->on_crash = action_of(in->on_crash);
    out->on_watchdog = action_of(in->on_crash);

    out->disks = xapi_calloc(in->ndisks + 1, sizeof *out->disks);
    for (size_t i = 0; i < in->ndisks; i++) {
        const vmops_disk *d = &in->disks[i];

        /* libxl gives PV and PVH guests no empty CD drive (no device model to emulate one). */
        if (in->type != VMOPS_HVM && d->cdrom && (!d->target || !*d->target))
            continue;
        libxl_device_disk_init(&out->disks[out->num_disks]);
        out->num_disks++;
        rc = vmops_libxl_disk(d, &out->disks[out->num_disks - 1], ret_msg);
        if (rc < 0)
            return rc;
    }
    out->nics = xapi_calloc(in->nnics + 1, sizeof *out->nics);
    for (size_t i = 0; i < in->nnics; i++) {
        for (size_t k = 0; k < i; k++)
            if (in->nics[k].devid == in->nics[i].devid)
                return fail(ret_msg, "VIFs %s and %s both are device %d", in->nics[k].vif_uuid, in->nics[i].vif_uuid,
                            in->nics[i].devid);
        libxl_device_nic_init(&out->nics[out->num_nics]);
        out->num_nics++;
        rc = vmops_libxl_nic(&in->nics[i], &out->nics[out->num_nics - 1], ret_msg);
        if (rc < 0)
            return rc;
    }
    return 0;
}

char *vmops_libxl_vnc_address(const char *uuid) {
    char *s = NULL;

    if (asprintf(&s, "unix:%s/" VNC_SOCKET_PREFIX "%s", VMOPS_LIBXL_VNC_DIR, uuid) < 0)
        xapi_oom();
    return s;
}

const char *const vmops_libxl_device_models[] = {
    "/usr/libexec/xen-qemu-system-i386",
    "/usr/lib/xen/bin/qemu-system-i386",
    NULL,
};

/* libxl only notices a missing qemu once the domain is built, and reports a
 * device model that "did not start": checked first, so the caller can say
 * what is missing. */
int vmops_libxl_device_model_check(const libxl_domain_config *d, const char *const *candidates, char **ret_msg) {
    const libxl_domain_build_info *b = &d->b_info;

    if (b->type != LIBXL_DOMAIN_TYPE_HVM)
        return 0;
    if (b->device_model) {
        if (access(b->device_model, X_OK) == 0)
            return 0;
        fail(ret_msg, "the device model %s is not installed", b->device_model);
        return -ENOEXEC;
    }
    for (const char *const *p = candidates; *p; p++)
        if (access(*p, X_OK) == 0)
            return 0;
    fail(ret_msg, "no device model for HVM guests (%s): install the package qemu-system-xen",
         candidates[0] ? candidates[0] : "qemu");
    return -ENOEXEC;
}
