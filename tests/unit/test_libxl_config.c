/* Golden tests of the libxl backend's domain translation (vmops/libxl_config.c):
 * each case is a vmops_domain_config as vmops/config.c builds it from VM, VBD
 * and VIF records; its libxl_domain_config, serialised by libxl's own
 * libxl_domain_config_to_json, must equal tests/golden/<case>.json (compared
 * as JSON values). No Xen needed: neither the translation nor the serialiser
 * uses a libxl context.
 *
 *   XENAPID_UPDATE_GOLDEN=1 build/test_libxl_config   rewrites the golden files
 *
 * Also: invalid input is refused with a reason, vmops_libxl_new (and the daemon with
 * --backend libxl) fails cleanly on a machine without Xen, and libxl's children start with no
 * signal blocked. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#ifdef XENAPID_HAVE_LIBXL

#include <json-c/json.h>
#include <libxl.h>
#include <libxl_utils.h>

#include "vmops/backend.h"
#include "vmops/libxl_config.h"
#include "vmops/libxl_events.h"
#include "vmops/libxl_log.h"

#define MiB (1024LL * 1024LL)

/* ---- building cases --------------------------------------------------------------- */

static char *sdup(const char *s) {
    char *r = s ? strdup(s) : NULL;

    if (s)
        assert_non_null(r);
    return r;
}

static void base(vmops_domain_config *c, vmops_domain_type type, const char *uuid, const char *name) {
    memset(c, 0, sizeof *c);
    snprintf(c->uuid, sizeof c->uuid, "%s", uuid);
    c->name = sdup(name);
    c->type = type;
    c->memory_static_max = 256 * MiB;
    c->memory_dynamic_max = c->memory_target = 256 * MiB;
    c->memory_dynamic_min = 128 * MiB;
    c->vcpus_max = c->vcpus_at_startup = 1;
    c->on_poweroff = VMOPS_ACTION_DESTROY;
    c->on_reboot = VMOPS_ACTION_RESTART;
    c->on_crash = VMOPS_ACTION_RESTART;
    c->disks = calloc(8, sizeof *c->disks);
    c->nics = calloc(8, sizeof *c->nics);
    assert_non_null(c->disks);
    assert_non_null(c->nics);
}

static void add_disk(vmops_domain_config *c, int devid, const char *vdev, const char *target, const char *format,
                     bool ro, bool cd) {
    vmops_disk *d = &c->disks[c->ndisks++];

    snprintf(d->vbd_uuid, sizeof d->vbd_uuid, "0000000%d-aaaa-4bbb-8ccc-dddddddddddd", devid);
    d->devid = devid;
    d->vdev = sdup(vdev);
    d->target = sdup(target);
    d->format = sdup(format);
    d->readonly = ro;
    d->cdrom = cd;
    d->bootable = devid == 0;
}

static void add_nic(vmops_domain_config *c, int devid, const char *mac, const char *bridge, int64_t mtu,
                    int64_t kbps) {
    vmops_nic *n = &c->nics[c->nnics++];

    snprintf(n->vif_uuid, sizeof n->vif_uuid, "1000000%d-aaaa-4bbb-8ccc-dddddddddddd", devid);
    n->devid = devid;
    snprintf(n->mac, sizeof n->mac, "%s", mac);
    n->bridge = sdup(bridge);
    n->mtu = mtu;
    n->rate_kbps = kbps;
}

static void platform(vmops_domain_config *c, const char *key, const char *value) {
    c->platform_keys = realloc(c->platform_keys, (c->nplatform + 1) * sizeof *c->platform_keys);
    c->platform_values = realloc(c->platform_values, (c->nplatform + 1) * sizeof *c->platform_values);
    assert_non_null(c->platform_keys);
    assert_non_null(c->platform_values);
    c->platform_keys[c->nplatform] = sdup(key);
    c->platform_values[c->nplatform] = sdup(value);
    c->nplatform++;
}

/* PV, direct kernel boot with an initrd, one raw disk, one NIC. */
static void case_pv_direct(vmops_domain_config *c) {
    base(c, VMOPS_PV, "3f1c2a8e-5b6d-4e7f-9a0b-1c2d3e4f5a6b", "pv-direct");
    c->memory_dynamic_max = c->memory_target = 192 * MiB;
    c->vcpus_max = 2;
    c->kernel = sdup("/var/lib/xen/boot/vmlinuz-6.1.0-amd64");
    c->ramdisk = sdup("/var/lib/xen/boot/initrd.img-6.1.0-amd64");
    c->cmdline = sdup("console=hvc0 root=/dev/xvda1 ro");
    add_disk(c, 0, "xvda", "/var/run/sr-mount/5f0e/8a1b.img", "raw", false, false);
    add_nic(c, 0, "00:16:3e:12:34:56", "xenbr0", 0, 0);
}

/* PV through pygrub: bootloader arguments, a qcow2 and a read-only disk, an
 * empty CD drive (left out: PV guests get none), jumbo frames. */
static void case_pv_pygrub(vmops_domain_config *c) {
    base(c, VMOPS_PV, "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d", "pv-pygrub");
    c->memory_static_max = c->memory_dynamic_max = c->memory_target = 512 * MiB;
    c->vcpus_max = c->vcpus_at_startup = 4;
    c->kernel = sdup("/ignored/with/a/bootloader");
    c->bootloader = sdup("pygrub");
    c->bootloader_args = sdup("--kernel=/boot/vmlinuz  --ramdisk=/boot/initrd.img");
    c->cmdline = sdup("console=hvc0 quiet");
    c->on_crash = VMOPS_ACTION_PRESERVE;
    add_disk(c, 0, "xvda", "/srv/sr/root.qcow2", "qcow2", false, false);
    add_disk(c, 1, "xvdb", "/srv/sr/data.img", "raw", true, false);
    add_disk(c, 3, "xvdd", NULL, NULL, true, true);
    add_nic(c, 0, "00:16:3E:0A:0B:0C", "xenbr1", 9000, 0);
}

/* PVH, direct kernel boot, ballooned below static max, 2 of 8 VCPUs online. */
static void case_pvh(vmops_domain_config *c) {
    base(c, VMOPS_PVH, "c3d4e5f6-0718-4293-a4b5-c6d7e8f90a1b", "pvh-guest");
    c->memory_static_max = 1024 * MiB;
    c->memory_dynamic_max = c->memory_target = 768 * MiB;
    c->memory_dynamic_min = 512 * MiB;
    c->vcpus_max = 8;
    c->vcpus_at_startup = 2;
    c->kernel = sdup("/srv/boot/vmlinuz");
    c->ramdisk = sdup("/srv/boot/initrd.img");
    c->cmdline = sdup("console=hvc0");
    c->on_crash = VMOPS_ACTION_COREDUMP_RESTART;
    platform(c, "acpi", "1");
    platform(c, "pae", "true"); /* HVM only: ignored */
    add_disk(c, 0, "xvda", "/srv/sr/pvh.img", "raw", false, false);
}

/* HVM from the "Other install media" template: boot from CD first, a disk, an
 * ISO in the CD drive, two NICs with rate limits (one with an MTU). */
static void case_hvm(vmops_domain_config *c) {
    base(c, VMOPS_HVM, "e5f60718-293a-4b4c-9d5e-6f708192a3b4", "hvm-install");
    c->memory_static_max = 2048 * MiB;
    c->memory_dynamic_max = c->memory_target = 1024 * MiB;
    c->memory_dynamic_min = 1024 * MiB;
    c->vcpus_max = c->vcpus_at_startup = 2;
    c->boot_order = sdup("dc");
    platform(c, "acpi", "1");
    platform(c, "apic", "true");
    platform(c, "pae", "true");
    platform(c, "nx", "true");
    platform(c, "viridian", "true");
    add_disk(c, 0, "hda", "/srv/sr/win.img", "raw", false, false);
    add_disk(c, 3, "hdd", "/srv/iso/install.iso", "raw", true, true);
    add_nic(c, 0, "00:16:3e:aa:bb:01", "xenbr0", 0, 1024);
    add_nic(c, 1, "00:16:3e:aa:bb:02", "xapi1", 1400, 100000);
}

/* HVM booted from a given kernel (QEMU's -kernel), as the e2e suite's HVM
 * guest is: the boot order stays, BIOS output on QEMU's serial port. */
static void case_hvm_kernel(vmops_domain_config *c) {
    base(c, VMOPS_HVM, "1a2b3c4d-5e6f-4a0b-9c1d-2e3f4a5b6c7d", "hvm-kernel");
    c->memory_static_max = c->memory_dynamic_max = c->memory_target = 256 * MiB;
    c->kernel = sdup("/srv/boot/vmlinuz");
    c->ramdisk = sdup("/srv/boot/initrd.img");
    c->cmdline = sdup("console=ttyS0 console=hvc0");
    c->bootloader = sdup("pygrub"); /* PV only: ignored */
    platform(c, "acpi", "1");
    platform(c, "hvm_serial", "file:/srv/work/hvm-serial.log");
    add_disk(c, 0, "hda", "/srv/sr/hvm.img", "raw", false, false);
}

/* HVM: every platform key libxl knows, some it does not (ignored), an empty
 * CD drive, a VHD disk, the default boot order. */
static void case_hvm_platform(vmops_domain_config *c) {
    base(c, VMOPS_HVM, "0718293a-4b5c-4d6e-8f70-8192a3b4c5d6", "hvm-platform");
    c->memory_static_max = c->memory_dynamic_max = c->memory_target = 4096 * MiB;
    c->vcpus_max = 4;
    c->vcpus_at_startup = 3;
    c->on_reboot = VMOPS_ACTION_SOFT_REBOOT;
    c->on_crash = VMOPS_ACTION_RENAME_RESTART;
    platform(c, "acpi", "0");
    platform(c, "apic", "false");
    platform(c, "pae", "1");
    platform(c, "nx", "0");
    platform(c, "viridian", "1");
    platform(c, "viridian_time_ref_count", "true");
    platform(c, "viridian_reference_tsc", "true");
    platform(c, "viridian_apic_assist", "false");
    platform(c, "hpet", "1");
    platform(c, "timeoffset", "-3600");
    platform(c, "videoram", "16");
    platform(c, "stdvga", "0"); /* "vga" wins */
    platform(c, "vga", "std");
    platform(c, "acpi_s3", "0");
    platform(c, "acpi_s4", "0");
    platform(c, "usb", "true");
    platform(c, "usb_tablet", "1");
    platform(c, "nomigrate", "1");
    platform(c, "tsc_mode", "2");
    platform(c, "exp-nested-hvm", "false");
    platform(c, "hvm_serial", "none");
    platform(c, "device_id", "0002");       /* the Xen platform device (libxl cannot give its id) */
    platform(c, "hdtype", "ahci");          /* xl's, not xapi's */
    platform(c, "cores-per-socket", "2");   /* not a libxl setting: ignored */
    platform(c, "secureboot", "false");     /* likewise */
    add_disk(c, 0, "hda", "/srv/sr/disk.vhd", "vhd", false, false);
    add_disk(c, 2, "hdc", "", NULL, true, true);
}

/* ---- golden files ------------------------------------------------------------------- */

static char *golden_path(const char *name) {
    const char *src = getenv("XENAPID_SOURCE_DIR");
    char *p = NULL, *file, *dir;

    if (src && *src)
        assert_true(asprintf(&p, "%s/tests/golden/%s.json", src, name) > 0);
    else {
        /* tests/unit/<this file> -> tests/golden */
        file = sdup(__FILE__);
        dir = strrchr(file, '/');
        if (dir)
            *dir = 0;
        assert_true(asprintf(&p, "%s/../golden/%s.json", dir ? file : ".", name) > 0);
        free(file);
    }
    return p;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t len = 0;

    if (!f)
        return NULL;
    {
        FILE *m = open_memstream(&buf, &len);
        char chunk[4096];
        size_t n;

        assert_non_null(m);
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
            fwrite(chunk, 1, n, m);
        fclose(m);
    }
    fclose(f);
    return buf;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "we");

    if (!f)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    if (text[0] && text[strlen(text) - 1] != '\n')
        fputc('\n', f);
    assert_int_equal(fclose(f), 0);
}

/* Translates c and compares libxl's JSON of the result with the golden file. */
static void check_golden(const char *name, vmops_domain_config *c, libxl_domain_config *d) {
    char *msg = NULL, *json, *path = golden_path(name), *want;
    const char *update = getenv("XENAPID_UPDATE_GOLDEN");
    json_object *got_o, *want_o;
    int rc;

    libxl_domain_config_init(d);
    rc = vmops_libxl_domain_config(c, d, &msg);
    if (rc != 0)
        fail_msg("%s: %s", name, msg ? msg : "failed");
    json = libxl_domain_config_to_json(NULL, d);
    assert_non_null(json);

    if (update && strcmp(update, "1") == 0) {
        write_file(path, json);
        print_message("updated %s\n", path);
    } else {
        want = read_file(path);
        if (!want)
            fail_msg("%s: no golden file %s (make it with XENAPID_UPDATE_GOLDEN=1)", name, path);
        got_o = json_tokener_parse(json);
        want_o = json_tokener_parse(want);
        assert_non_null(got_o);
        if (!want_o)
            fail_msg("%s is not JSON", path);
        if (!json_object_equal(got_o, want_o)) {
            char actual[PATH_MAX];
            snprintf(actual, sizeof actual, "%s.actual.json", name);
            write_file(actual, json);
            fail_msg("%s: libxl config differs from %s; got %s (diff them; XENAPID_UPDATE_GOLDEN=1 accepts it)",
                     name, path, actual);
        }
        json_object_put(got_o);
        json_object_put(want_o);
        free(want);
    }
    free(json);
    free(path);
    free(msg);
}

static bool bit(const libxl_bitmap *b, int n) {
    return libxl_bitmap_test(b, n);
}

/* ---- the cases ------------------------------------------------------------------------ */

static void test_pv_direct(void **state) {
    vmops_domain_config c;
    libxl_domain_config d;

    case_pv_direct(&c);
    check_golden("pv_direct", &c, &d);
    assert_int_equal(d.c_info.type, LIBXL_DOMAIN_TYPE_PV);
    assert_string_equal(d.c_info.name, "pv-direct");
    assert_int_equal(d.b_info.max_memkb, 256 * 1024);
    assert_int_equal(d.b_info.target_memkb, 192 * 1024);
    assert_int_equal(d.b_info.max_vcpus, 2);
    assert_true(bit(&d.b_info.avail_vcpus, 0));
    assert_false(bit(&d.b_info.avail_vcpus, 1));
    assert_string_equal(d.b_info.kernel, c.kernel);
    assert_string_equal(d.b_info.ramdisk, c.ramdisk);
    assert_string_equal(d.b_info.cmdline, c.cmdline);
    assert_null(d.b_info.bootloader);
    assert_int_equal(d.num_disks, 1);
    assert_string_equal(d.disks[0].vdev, "xvda");
    assert_string_equal(d.disks[0].pdev_path, "/var/run/sr-mount/5f0e/8a1b.img");
    assert_int_equal(d.disks[0].format, LIBXL_DISK_FORMAT_RAW);
    assert_int_equal(d.disks[0].backend, LIBXL_DISK_BACKEND_UNKNOWN);
    assert_int_equal(d.disks[0].readwrite, 1);
    assert_int_equal(d.num_nics, 1);
    assert_int_equal(d.nics[0].mac[5], 0x56);
    assert_string_equal(d.nics[0].bridge, "xenbr0");
    assert_string_equal(d.nics[0].script, "vif-bridge");
    assert_int_equal(d.on_poweroff, LIBXL_ACTION_ON_SHUTDOWN_DESTROY);
    assert_int_equal(d.on_reboot, LIBXL_ACTION_ON_SHUTDOWN_RESTART);
    {
        char uuid[37];
        snprintf(uuid, sizeof uuid, LIBXL_UUID_FMT, LIBXL_UUID_BYTES(d.c_info.uuid));
        assert_string_equal(uuid, c.uuid);
    }
    libxl_domain_config_dispose(&d);
    vmops_domain_config_free(&c);
}

static void test_pv_pygrub(void **state) {
    vmops_domain_config c;
    libxl_domain_config d;

    case_pv_pygrub(&c);
    check_golden("pv_pygrub", &c, &d);
    assert_string_equal(d.b_info.bootloader, "pygrub");
    assert_int_equal(libxl_string_list_length(&d.b_info.bootloader_args), 2);
    assert_string_equal(d.b_info.bootloader_args[1], "--ramdisk=/boot/initrd.img");
    assert_null(d.b_info.kernel); /* xapi: a bootloader means PV_kernel is not used */
    assert_string_equal(d.b_info.cmdline, "console=hvc0 quiet");
    assert_int_equal(d.num_disks, 2); /* no empty CD for PV */
    assert_int_equal(d.disks[0].format, LIBXL_DISK_FORMAT_QCOW2);
    assert_int_equal(d.disks[1].readwrite, 0);
    assert_int_equal(d.nics[0].mtu, 9000);
    assert_int_equal(d.nics[0].mac[0], 0x00);
    assert_int_equal(d.nics[0].mac[3], 0x0a);
    assert_int_equal(d.on_crash, LIBXL_ACTION_ON_SHUTDOWN_PRESERVE);
    for (int i = 0; i < 4; i++)
        assert_true(bit(&d.b_info.avail_vcpus, i));
    libxl_domain_config_dispose(&d);
    vmops_domain_config_free(&c);
}

static void test_pvh(void **state) {
    vmops_domain_config c;
    libxl_domain_config d;

    case_pvh(&c);
    check_golden("pvh", &c, &d);
    assert_int_equal(d.c_info.type, LIBXL_DOMAIN_TYPE_PVH);
    assert_int_equal(d.b_info.type, LIBXL_DOMAIN_TYPE_PVH);
    assert_int_equal(d.b_info.max_memkb, 1024 * 1024);
    assert_int_equal(d.b_info.target_memkb, 768 * 1024);
    assert_true(libxl_defbool_val(d.b_info.acpi));
    assert_int_equal(d.b_info.max_vcpus, 8);
    assert_true(bit(&d.b_info.avail_vcpus, 1));
    assert_false(bit(&d.b_info.avail_vcpus, 2));
    assert_string_equal(d.b_info.kernel, "/srv/boot/vmlinuz");
    assert_int_equal(d.num_nics, 0);
    libxl_domain_config_dispose(&d);
    vmops_domain_config_free(&c);
}

static void test_hvm(void **state) {
    vmops_domain_config c;
    libxl_domain_config d;

    case_hvm(&c);
    check_golden("hvm", &c, &d);
    assert_int_equal(d.b_info.type, LIBXL_DOMAIN_TYPE_HVM);
    assert_string_equal(d.b_info.u.hvm.boot, "dc");
    assert_true(libxl_defbool_val(d.b_info.acpi));
    assert_true(libxl_defbool_val(d.b_info.apic));
    assert_true(libxl_defbool_val(d.b_info.u.hvm.pae));
    assert_true(libxl_defbool_val(d.b_info.u.hvm.nx));
    assert_true(libxl_defbool_val(d.b_info.u.hvm.viridian));
    /* the graphical console: QEMU's VNC server on the VM's UNIX socket, no port range */
    assert_true(libxl_defbool_val(d.b_info.u.hvm.vnc.enable));
    assert_false(libxl_defbool_val(d.b_info.u.hvm.vnc.findunused));
    assert_string_equal(d.b_info.u.hvm.vnc.listen, "unix:/run/xen/vnc-e5f60718-293a-4b4c-9d5e-6f708192a3b4");
    assert_null(d.b_info.kernel);
    assert_int_equal(d.num_disks, 2);
    assert_int_equal(d.disks[1].is_cdrom, 1);
    assert_int_equal(d.disks[1].readwrite, 0);
    assert_string_equal(d.disks[1].vdev, "hdd");
    assert_int_equal(d.num_nics, 2);
    /* 1024 KiB/s credited every 50 ms: 52428 bytes per interval */
    assert_int_equal(d.nics[0].rate_interval_usecs, 50000);
    assert_int_equal(d.nics[0].rate_bytes_per_interval, 52428);
    assert_int_equal(d.nics[1].devid, 1);
    assert_int_equal(d.nics[1].mtu, 1400);
    assert_int_equal(d.nics[1].rate_bytes_per_interval, 100000ULL * 1024 * 50000 / 1000000);
    libxl_domain_config_dispose(&d);
    vmops_domain_config_free(&c);
}

static void test_hvm_kernel(void **state) {
    vmops_domain_config c;
    libxl_domain_config d;

    case_hvm_kernel(&c);
    check_golden("hvm_kernel", &c, &d);
    assert_int_equal(d.b_info.type, LIBXL_DOMAIN_TYPE_HVM);
    assert_string_equal(d.b_info.kernel, "/srv/boot/vmlinuz");
    assert_string_equal(d.b_info.ramdisk, "/srv/boot/initrd.img");
    assert_string_equal(d.b_info.cmdline, "console=ttyS0 console=hvc0");
    assert_null(d.b_info.bootloader);
    assert_string_equal(d.b_info.u.hvm.boot, "cd");
    assert_string_equal(d.b_info.u.hvm.serial, "file:/srv/work/hvm-serial.log");
    assert_true(libxl_defbool_val(d.b_info.u.hvm.vnc.enable));
    libxl_domain_config_dispose(&d);
    vmops_domain_config_free(&c);
}

static void test_hvm_platform(void **state) {
    vmops_domain_config c;
    libxl_domain_config d;

    case_hvm_platform(&c);
    check_golden("hvm_platform", &c, &d);
    assert_false(libxl_defbool_val(d.b_info.acpi));
    assert_false(libxl_defbool_val(d.b_info.apic));
    assert_true(libxl_defbool_val(d.b_info.u.hvm.pae));
    assert_false(libxl_defbool_val(d.b_info.u.hvm.nx));
    assert_true(libxl_defbool_val(d.b_info.u.hvm.hpet));
    assert_true(bit(&d.b_info.u.hvm.viridian_enable, LIBXL_VIRIDIAN_ENLIGHTENMENT_TIME_REF_COUNT));
    assert_true(bit(&d.b_info.u.hvm.viridian_disable, LIBXL_VIRIDIAN_ENLIGHTENMENT_APIC_ASSIST));
    assert_int_equal(d.b_info.rtc_timeoffset, (uint32_t)-3600);
    assert_int_equal(d.b_info.video_memkb, 16 * 1024);
    assert_int_equal(d.b_info.u.hvm.vga.kind, LIBXL_VGA_INTERFACE_TYPE_STD);
    assert_int_equal(d.b_info.tsc_mode, LIBXL_TSC_MODE_NATIVE);
    assert_true(libxl_defbool_val(d.b_info.disable_migrate));
    assert_string_equal(d.b_info.u.hvm.usbdevice_list[0], "tablet");
    assert_null(d.b_info.u.hvm.serial);
    assert_string_equal(d.b_info.u.hvm.boot, "cd");
    assert_int_equal(d.num_disks, 2);
    assert_int_equal(d.disks[0].format, LIBXL_DISK_FORMAT_RAW); /* a VHD: phy through the helper's NBD device */
    assert_int_equal(d.disks[0].backend, LIBXL_DISK_BACKEND_PHY);
    assert_int_equal(d.disks[1].format, LIBXL_DISK_FORMAT_EMPTY);
    assert_null(d.disks[1].pdev_path);
    assert_int_equal(d.on_reboot, LIBXL_ACTION_ON_SHUTDOWN_SOFT_RESET);
    assert_int_equal(d.on_crash, LIBXL_ACTION_ON_SHUTDOWN_RESTART_RENAME);
    assert_int_equal(d.on_watchdog, LIBXL_ACTION_ON_SHUTDOWN_RESTART_RENAME);
    libxl_domain_config_dispose(&d);
    vmops_domain_config_free(&c);
}

/* ---- refusals ---------------------------------------------------------------------------- */

static void expect_refusal(vmops_domain_config *c, const char *words) {
    libxl_domain_config d;
    char *msg = NULL;

    libxl_domain_config_init(&d);
    assert_int_equal(vmops_libxl_domain_config(c, &d, &msg), -EINVAL);
    assert_non_null(msg);
    if (!strstr(msg, words))
        fail_msg("message '%s' does not mention '%s'", msg, words);
    free(msg);
    libxl_domain_config_dispose(&d);
    vmops_domain_config_free(c);
}

static void test_refusals(void **state) {
    vmops_domain_config c;

    case_pv_direct(&c);
    snprintf(c.nics[0].mac, sizeof c.nics[0].mac, "00:16:3e:12:34");
    expect_refusal(&c, "MAC");

    case_pv_direct(&c);
    snprintf(c.nics[0].mac, sizeof c.nics[0].mac, "01:00:5e:00:00:01");
    expect_refusal(&c, "multicast");

    case_pv_direct(&c);
    free(c.kernel);
    c.kernel = NULL;
    expect_refusal(&c, "PV_kernel or PV_bootloader");

    case_pvh(&c);
    free(c.kernel);
    c.kernel = sdup("");
    expect_refusal(&c, "PVH");

    case_pv_direct(&c);
    snprintf(c.uuid, sizeof c.uuid, "not-a-uuid");
    expect_refusal(&c, "uuid");

    case_pv_direct(&c);
    c.vcpus_at_startup = 3;
    expect_refusal(&c, "VCPUs");

    case_pv_direct(&c);
    c.memory_target = 512 * MiB;
    expect_refusal(&c, "memory");

    case_hvm(&c);
    platform(&c, "hpet", "maybe");
    expect_refusal(&c, "hpet");

    case_hvm(&c);
    platform(&c, "videoram", "lots");
    expect_refusal(&c, "videoram");

    case_hvm(&c);
    platform(&c, "device_id", "2");
    expect_refusal(&c, "device_id");

    case_hvm(&c);
    platform(&c, "hdtype", "scsi");
    expect_refusal(&c, "hdtype");

    case_hvm(&c);
    free(c.boot_order);
    c.boot_order = sdup("cx");
    expect_refusal(&c, "boot order");

    case_pv_direct(&c);
    free(c.disks[0].format);
    c.disks[0].format = sdup("vmdk");
    expect_refusal(&c, "vmdk");

    case_hvm(&c);
    c.nics[1].devid = 0;
    expect_refusal(&c, "both are device 0");
}

/* xenapid's device script goes on every NIC and on the raw images blkback
 * serves through a loop device or (a VHD) an NBD device; a CD (medium changed in place) and the
 * images QEMU reads (qdisk refuses a script) keep none; without a helper
 * the NICs keep Xen's vif-bridge. */
static void test_device_scripts(void **state) {
    vmops_domain_config c;
    libxl_domain_config d;
    char *msg = NULL;

    (void)state;
    case_hvm(&c);
    add_disk(&c, 1, "hdb", "/srv/sr/data.vhd", "vhd", false, false);
    libxl_domain_config_init(&d);
    assert_int_equal(vmops_libxl_domain_config(&c, &d, &msg), 0);
    assert_int_equal(d.num_disks, 3);
    /* the VHDs (hda, hdb) need the helper */
    assert_int_equal(vmops_libxl_device_scripts(&d, NULL, &msg), -EMEDIUMTYPE);
    free(msg);
    msg = NULL;
    for (int i = 0; i < d.num_disks; i++)
        assert_null(d.disks[i].script);

    assert_int_equal(vmops_libxl_device_scripts(&d, "/usr/sbin/xenapid-hotplug", &msg), 0);
    for (int i = 0; i < d.num_disks; i++) {
        if (strcmp(d.disks[i].vdev, "hda") == 0 || strcmp(d.disks[i].vdev, "hdb") == 0)
            assert_string_equal(d.disks[i].script, "/usr/sbin/xenapid-hotplug");
        else
            assert_null(d.disks[i].script); /* hdd the CD */
    }
    assert_int_equal(d.num_nics, 2);
    assert_string_equal(d.nics[0].script, "/usr/sbin/xenapid-hotplug");
    assert_string_equal(d.nics[1].script, "/usr/sbin/xenapid-hotplug");
    libxl_domain_config_dispose(&d);
    vmops_domain_config_free(&c);
}

/* The hot-plug paths build single devices with the same functions. */
static void test_devices(void **state) {
    vmops_disk disk = {.devid = 1, .vdev = "xvdb", .target = "/dev/vg/lv", .format = "raw"};
    vmops_nic nic = {.devid = 2, .mac = "00-16-3E-01-02-03", .bridge = "xenbr0", .rate_kbps = 10};
    libxl_device_disk dd;
    libxl_device_nic nn;
    libxl_mac mac;
    char *msg = NULL;

    libxl_device_disk_init(&dd);
    assert_int_equal(vmops_libxl_disk(&disk, &dd, &msg), 0);
    assert_string_equal(dd.vdev, "xvdb");
    assert_string_equal(dd.pdev_path, "/dev/vg/lv");
    assert_int_equal(dd.readwrite, 1);
    /* A logical volume (an LVM SR's VDI) goes to blkback as phy. */
    assert_int_equal(dd.backend, LIBXL_DISK_BACKEND_PHY);
    libxl_device_disk_dispose(&dd);

    disk.target = NULL; /* an empty non-CD disk makes no sense */
    libxl_device_disk_init(&dd);
    assert_int_equal(vmops_libxl_disk(&disk, &dd, &msg), -EINVAL);
    libxl_device_disk_dispose(&dd);
    free(msg);
    msg = NULL;

    /* An ext SR's VHD, alone or over parents: phy over the file, which only
     * xenapid-hotplug attaches (nbdkit and an NBD device); without it, refused. */
    disk.target = "/sr/a.vhd";
    for (int i = 0; i < 2; i++) {
        disk.format = i ? "vhd-chain" : "vhd";
        libxl_device_disk_init(&dd);
        assert_int_equal(vmops_libxl_disk(&disk, &dd, &msg), 0);
        assert_int_equal(dd.format, LIBXL_DISK_FORMAT_RAW);
        assert_int_equal(dd.backend, LIBXL_DISK_BACKEND_PHY);
        assert_int_equal(dd.readwrite, 1);
        assert_int_equal(vmops_libxl_disk_script(&dd, NULL, &msg), -EMEDIUMTYPE);
        assert_non_null(strstr(msg, "only xenapid-hotplug"));
        assert_int_equal(vmops_libxl_disk_script(&dd, "/usr/sbin/xenapid-hotplug", &msg), 0);
        assert_string_equal(dd.script, "/usr/sbin/xenapid-hotplug");
        libxl_device_disk_dispose(&dd);
    }
    free(msg);
    msg = NULL;

    libxl_device_nic_init(&nn);
    assert_int_equal(vmops_libxl_nic(&nic, &nn, &msg), 0);
    assert_int_equal(nn.devid, 2);
    assert_int_equal(nn.mac[2], 0x3e);
    assert_int_equal(nn.rate_bytes_per_interval, 512);
    assert_int_equal(nn.rate_interval_usecs, 50000);
    libxl_device_nic_dispose(&nn);

    assert_int_equal(vmops_libxl_parse_mac("", &mac), 0);
    assert_int_equal(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5], 0);
    assert_int_equal(vmops_libxl_parse_mac("00:16:3e:12:34:5g", &mac), -EINVAL);
    assert_int_equal(vmops_libxl_parse_mac("00:16:3e:12:34:56:78", &mac), -EINVAL);
    assert_int_equal(vmops_libxl_parse_mac("0:16:3e:12:34:56", &mac), -EINVAL);
}

/* An HVM guest on a host without qemu-xen is refused before anything is
 * built, naming what is missing; PV and PVH guests need no device model. */
static void test_device_model_check(void **state) {
    static const char *const missing[] = {"/nonexistent/xen-qemu-system-i386", "/nonexistent/qemu-system-i386", NULL};
    static const char *const present[] = {"/nonexistent/xen-qemu-system-i386", "/bin/sh", NULL};
    vmops_domain_config c;
    libxl_domain_config d;
    char *msg = NULL;

    case_hvm(&c);
    libxl_domain_config_init(&d);
    assert_int_equal(vmops_libxl_domain_config(&c, &d, &msg), 0);
    assert_int_equal(vmops_libxl_device_model_check(&d, missing, &msg), -ENOEXEC);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "/nonexistent/xen-qemu-system-i386"));
    assert_non_null(strstr(msg, "qemu-system-xen"));
    free(msg);
    msg = NULL;
    assert_int_equal(vmops_libxl_device_model_check(&d, present, &msg), 0);
    assert_null(msg);
    /* a device model the domain names itself is the one looked for */
    d.b_info.device_model = strdup("/nonexistent/qemu-custom");
    assert_int_equal(vmops_libxl_device_model_check(&d, present, &msg), -ENOEXEC);
    assert_non_null(strstr(msg, "/nonexistent/qemu-custom"));
    free(msg);
    msg = NULL;
    libxl_domain_config_dispose(&d);
    vmops_domain_config_free(&c);

    for (int i = 0; i < 2; i++) {
        (i == 0 ? case_pv_direct : case_pvh)(&c);
        libxl_domain_config_init(&d);
        assert_int_equal(vmops_libxl_domain_config(&c, &d, &msg), 0);
        assert_int_equal(vmops_libxl_device_model_check(&d, missing, &msg), 0);
        assert_null(msg);
        libxl_domain_config_dispose(&d);
        vmops_domain_config_free(&c);
    }
}

/* ---- without Xen ------------------------------------------------------------------------------ */

static bool have_xen(void) {
    return access("/dev/xen/privcmd", F_OK) == 0 || access("/proc/xen/privcmd", F_OK) == 0;
}

static void test_new_without_xen(void **state) {
    vmops_backend *b = (vmops_backend *)0x1;

    if (have_xen())
        skip();
    assert_true(vmops_libxl_new("/tmp", "/tmp", "auto", &b) < 0);
    assert_ptr_equal(b, (vmops_backend *)0x1); /* untouched */
}

/* The daemon next to this test (build/xenapid) refuses to start with the
 * libxl backend here, quickly, saying why. */
static void test_daemon_without_xen(void **state) {
    char self[PATH_MAX], daemon[PATH_MAX + 16], dir[] = "/tmp/xenapid-libxl-test-XXXXXX", conf[PATH_MAX],
                                                  logp[PATH_MAX], *log;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char *slash;
    FILE *f;
    pid_t pid;
    int status = 0, waited = 0;

    if (have_xen())
        skip();
    assert_true(n > 0);
    self[n] = 0;
    slash = strrchr(self, '/');
    assert_non_null(slash);
    *slash = 0;
    snprintf(daemon, sizeof daemon, "%s/xenapid", self);
    if (access(daemon, X_OK) < 0)
        skip();
    assert_non_null(mkdtemp(dir));
    snprintf(conf, sizeof conf, "%s/xenapid.conf", dir);
    snprintf(logp, sizeof logp, "%s/log", dir);
    f = fopen(conf, "we");
    assert_non_null(f);
    /* (the daemon fails before it listens) */
    fprintf(f, "listen = 127.0.0.1:%d\nstate_dir = %s/var\nunix_socket =\naccounts_file = %s/accounts\n"
               "backend = libxl\nlog_target = stderr\n",
            20000 + getpid() % 20000, dir, dir);
    fclose(f);

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setenv("XENAPID_ROOT_PASSWORD", "test-password", 1);
        execl(daemon, daemon, "--config", conf, (char *)NULL);
        _exit(127);
    }
    /* bounded: 10 s */
    while (waitpid(pid, &status, WNOHANG) == 0) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        if (++waited > 200) {
            kill(pid, 9);
            waitpid(pid, &status, 0);
            fail_msg("xenapid --backend libxl still runs after 10 s on a machine without Xen");
        }
        nanosleep(&ts, NULL);
    }
    log = read_file(logp);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 0)
        fail_msg("xenapid exited with 0; log:\n%s", log ? log : "");
    assert_non_null(log);
    if (!strstr(log, "not running Xen"))
        fail_msg("xenapid's log does not say why:\n%s", log);
    free(log);
    {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            print_message("could not remove %s\n", dir);
    }
}

/* ---- build errors (vmops/libxl_log.c) ------------------------------------------------ */

static void xtl(xentoollog_logger *lg, xentoollog_level level, int errnoval, const char *context, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
static void xtl(xentoollog_logger *lg, xentoollog_level level, int errnoval, const char *context, const char *fmt,
                ...) {
    va_list ap;

    va_start(ap, fmt);
    lg->vmessage(lg, level, errnoval, context, fmt, ap);
    va_end(ap);
}

/* A PV guest whose memory cannot hold its kernel: libxc says so first, then libxl says only that the
 * build failed; the backend must still see the cause (VM.start's VM_MEMORY_SIZE_TOO_LOW, not
 * INTERNAL_ERROR). The lines are those Xen 4.17's libxc and libxl logged in the lab (e2e step
 * start-memory-too-small: 32 MiB for Debian's 6.1 vmlinux). */
static void test_build_errors(void **state) {
    xentoollog_logger *lg = vmops_libxl_logger_new();
    (void)state;

    vmops_libxl_error_clear();
    xtl(lg, XTL_ERROR, -1, "xc", "%s", "panic: xg_dom_core.c:536: xc_dom_chk_alloc_pages: segment kernel too large "
                                       "(0x3a00 > 0x2000 - 0x1000 pages): Out of memory");
    xtl(lg, XTL_ERROR, ENOENT, "libxl", "%s", "libxl_dom.c:594:libxl__build_dom: xc_dom_build_image failed");
    xtl(lg, XTL_ERROR, -1, "libxl", "%s", "libxl_create.c:1640:domcreate_rebuild_done: Domain 1:cannot (re-)build "
                                          "domain: -3");
    assert_non_null(vmops_libxl_error_memory_too_small());
    assert_non_null(strstr(vmops_libxl_error_memory_too_small(), "segment kernel too large"));
    assert_non_null(strstr(vmops_libxl_error_last(), "cannot (re-)build domain"));
    /* a ramdisk that does not fit either */
    vmops_libxl_error_clear();
    assert_null(vmops_libxl_error_memory_too_small());
    xtl(lg, XTL_ERROR, -1, "xc", "Out of memory: xc_dom_alloc_segment: segment ramdisk too large (0x900 > 0x800 - "
                                 "0x3a2f pages)");
    assert_non_null(vmops_libxl_error_memory_too_small());
    /* not the guest's memory: the host's, a kernel file over libxc's size limit, a mere warning */
    vmops_libxl_error_clear();
    xtl(lg, XTL_ERROR, -1, "xc", "panic: xc_dom_boot.c:120: xc_dom_boot_mem_init: can't allocate low memory for "
                                 "domain: Out of memory");
    xtl(lg, XTL_ERROR, -1, "xc", "%s", "kernel image too large");
    xtl(lg, XTL_ERROR, ENOMEM, "libxl", "%s", "libxl_dom.c:580:libxl__build_dom: xc_dom_boot_mem_init failed");
    xtl(lg, XTL_WARN, -1, "xc", "%s", "xc_dom_alloc_segment: segment kernel too large (0x3a2f > 0x2000 - 0x0 pages)");
    assert_null(vmops_libxl_error_memory_too_small());
    assert_non_null(vmops_libxl_error_last());
    assert_false(vmops_libxl_error_is_memory_too_small(NULL));
    assert_false(vmops_libxl_error_is_memory_too_small("segment kernel too large"));
    vmops_libxl_error_clear();
    vmops_libxl_logger_free(lg);
}

/* What libxl logs when QEMU does not come up (its words in Xen 4.17's
 * libxl_exec.c and libxl_create.c) is kept apart from the errors that follow
 * it (the destruction of the half-built domain), so that VM.start can say
 * FAILED_TO_START_EMULATOR and why; other errors leave it unset. */
static void test_device_model_error(void **state) {
    xentoollog_logger *lg = vmops_libxl_logger_new();

    vmops_libxl_error_clear();
    xtl(lg, XTL_ERROR, -1, "libxl", "Domain 7:disk vdev=xvda failed to attach");
    assert_null(vmops_libxl_dm_error());
    assert_non_null(vmops_libxl_error_last());
    /* a device model's messages below the error level are not a failure */
    xtl(lg, XTL_DEBUG, -1, "libxl", "Spawning device-model /usr/libexec/xen-qemu-system-i386 with arguments:");
    xtl(lg, XTL_WARN, -1, "libxl", "domain 7 device model: slow to answer");
    assert_null(vmops_libxl_dm_error());

    vmops_libxl_error_clear();
    assert_null(vmops_libxl_error_last());
    xtl(lg, XTL_ERROR, -1, "libxl", "domain 7 device model: startup timed out");
    xtl(lg, XTL_ERROR, -1, "libxl", "Domain 7:device model did not start: -9");
    xtl(lg, XTL_ERROR, ENOENT, "libxl", "Domain 7:Unable to destroy guest");
    assert_non_null(vmops_libxl_dm_error());
    assert_string_equal(vmops_libxl_dm_error(), "domain 7 device model: startup timed out");
    assert_non_null(strstr(vmops_libxl_error_last(), "Unable to destroy guest"));
    vmops_libxl_error_clear();
    assert_null(vmops_libxl_dm_error());
    vmops_libxl_logger_free(lg);
    (void)state;
}

/* vmops_libxl_fork (libxl's childproc fork_replacement): the child starts with no signal blocked,
 * whatever the forking thread blocks. The daemon blocks SIGTERM, SIGINT and SIGHUP on every
 * thread (agent/main.c); QEMU forked by libxl with that mask never took the SIGHUP of libxl's
 * domain destroy (seen in the Xen lab: every destroyed HVM domain's QEMU kept running).
 * The child exits 0 if its mask is empty and it can be ended by SIGHUP as QEMU is. */
static void test_child_unblocked(void **state) {
    sigset_t block, old;
    int status;
    pid_t pid;

    (void)state;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
    pid = vmops_libxl_fork(NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        sigset_t now;

        pthread_sigmask(SIG_SETMASK, NULL, &now);
        for (int sig = 1; sig < NSIG; sig++)
            if (sigismember(&now, sig) == 1)
                _exit(10 + sig);
        /* as libxl's exec would start QEMU: a SIGHUP ends it */
        execl("/bin/sh", "sh", "-c", "kill -HUP $$; sleep 5; exit 3", (char *)NULL);
        _exit(4);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    if (WIFEXITED(status))
        fail_msg("the child exited with %d (10 + n: signal n still blocked)", WEXITSTATUS(status));
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGHUP);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pv_direct),    cmocka_unit_test(test_pv_pygrub),
        cmocka_unit_test(test_pvh),          cmocka_unit_test(test_hvm),
        cmocka_unit_test(test_hvm_platform), cmocka_unit_test(test_hvm_kernel),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_devices),      cmocka_unit_test(test_new_without_xen),
        cmocka_unit_test(test_device_scripts),
        cmocka_unit_test(test_daemon_without_xen), cmocka_unit_test(test_device_model_check),
        cmocka_unit_test(test_build_errors),
        cmocka_unit_test(test_device_model_error),
        cmocka_unit_test(test_child_unblocked),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* !XENAPID_HAVE_LIBXL */

int main(void) {
    printf("xenapid built without the libxl backend: nothing to test\n");
    return 0;
}

#endif
