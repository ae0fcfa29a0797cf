/* xenapid-hotplug: libxl's device script for the disks and NICs of
 * xenapid's domains (vmops/libxl_config.c names it as the device's
 * `script`), in place of Xen's bash `block` and `vif-bridge`, which took
 * 60 to 80% of a VM start (issue 12). Domains of other toolstacks keep
 * their scripts: libxl runs the script their own configuration names.
 * (The file is tools/hotplug.c: CMake takes tools/xe*.c for xe.)
 *
 * libxl runs it as  SCRIPT ACTION [type_if=vif|tap]  with XENBUS_TYPE
 * (vbd, vif) and XENBUS_PATH (backend/<type>/<domid>/<devid>, under dom0's
 * xenstore home) in the environment, waits for it, and fails the device
 * when it exits non-zero, reading hotplug-error for the reason.
 *
 *   vbd add:     a loop device over the image file `params` (or the block
 *                device itself), then physical-device (major:minor, which
 *                blkback waits for), physical-device-path, hotplug-status;
 *                a VHD file (xenapid's VHD SRs name them <uuid>.vhd) is served
 *                by nbdkit with xenapid's plugin through an NBD device
 *                instead (vmops/vhd_nbd.h), which follows its parents
 *   vbd remove:  the loop device this helper made (xenapid-loop) detached,
 *                or the NBD device and nbdkit (xenapid-nbd) ended
 *   sweep DIR:   (run by xenapid at start, no XENBUS_*) ends the nbdkit
 *                servers and NBD devices in DIR whose backend is gone
 *   vif online:  the vif (or HVM tap) gets the backend's `mtu` and becomes a
 *                port of `bridge`, up; hotplug-status connected (netback waits for it)
 *   vif offline: out of the bridge (netback has usually removed it already)
 *
 * Each failure takes back what this run made (loop device, bridge port)
 * and says why in hotplug-error, which libxl logs and xenapid reports.
 * Unlike `block`, it does not refuse an image another domain has open for
 * writing: xenapid's VBD checks (one writer per VDI) come before. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <xenstore.h>

#include "network/netlink.h"
#include "vmops/loopdev.h"
#include "vmops/vhd_nbd.h"

/* Where the VHD disks' sockets and records live: xenapid sets it (its state
 * directory's nbd/) in the environment libxl passes on. */
#define NBD_DIR_DEFAULT "/run/xenapid/nbd"
#define PLUGIN_NAME "nbdkit-xenapid-vhd-plugin.so"

typedef struct hotplug {
    struct xs_handle *xs;
    char be[256]; /* the backend's absolute xenstore path */
    unsigned domid;
    int devid;
} hotplug;

static char *be_read(hotplug *h, const char *key) {
    char path[320];
    unsigned len;

    snprintf(path, sizeof path, "%s/%s", h->be, key);
    return xs_read(h->xs, XBT_NULL, path, &len);
}

/* The keys, written together (libxl and the backend driver see all or none). */
static int be_write(hotplug *h, const char *const *kv) {
    char path[320];

    for (int tries = 0; tries < 16; tries++) {
        xs_transaction_t t = xs_transaction_start(h->xs);

        if (t == XBT_NULL)
            return -errno;
        for (size_t i = 0; kv[i]; i += 2) {
            snprintf(path, sizeof path, "%s/%s", h->be, kv[i]);
            if (!xs_write(h->xs, t, path, kv[i + 1], (unsigned)strlen(kv[i + 1]))) {
                int rc = -errno;

                xs_transaction_end(h->xs, t, true);
                return rc;
            }
        }
        if (xs_transaction_end(h->xs, t, false))
            return 0;
        if (errno != EAGAIN)
            return -errno;
    }
    return -EAGAIN;
}

/* Says why in hotplug-error (libxl puts it in its log and the failure). */
static int fail(hotplug *h, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(hotplug *h, int err, const char *fmt, ...) {
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "xenapid-hotplug %s: %s: %s\n", h->be, msg, strerror(err));
    snprintf(msg + strlen(msg), sizeof msg - strlen(msg), ": %s", strerror(err));
    be_write(h, (const char *const[]){"hotplug-error", msg, "hotplug-status", "error", NULL});
    return 1;
}

static const char *nbd_dir(void) {
    const char *d = getenv("XENAPID_NBD_DIR");

    return d && d[0] == '/' ? d : NBD_DIR_DEFAULT;
}

static void nbd_key(unsigned domid, int devid, char *out, size_t n) {
    snprintf(out, n, "vbd-%u-%d", domid, devid);
}

/* XENAPID_NBDKIT_PLUGIN, else beside this program (a build tree), else
 * ../lib/xenapid/ from it (installed: sbin/ and lib/xenapid/). */
static int find_plugin(char *out, size_t n) {
    const char *env = getenv("XENAPID_NBDKIT_PLUGIN");
    char exe[PATH_MAX - 64], *slash; /* room for the plugin's name in out */
    ssize_t k;

    if (n < PATH_MAX)
        return -ENAMETOOLONG;
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return access(out, R_OK) == 0 ? 0 : -errno;
    }
    k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0)
        return -ENOENT;
    exe[k] = 0;
    slash = strrchr(exe, '/');
    if (!slash)
        return -ENOENT;
    *slash = 0;
    snprintf(out, n, "%s/" PLUGIN_NAME, exe);
    if (access(out, R_OK) == 0)
        return 0;
    snprintf(out, n, "%s/../lib/xenapid/" PLUGIN_NAME, exe);
    return access(out, R_OK) == 0 ? 0 : -ENOENT;
}

static bool is_vhd(const char *path) {
    size_t n = strlen(path);

    return n > 4 && strcmp(path + n - 4, ".vhd") == 0;
}

static int vbd_add_vhd(hotplug *h, const char *image, bool readonly) {
    char key[64], plugin[PATH_MAX], pdev[32], dev_path[32], err[512];
    const char *dir = nbd_dir();
    vmops_vhd_nbd nbd;
    int rc;

    rc = find_plugin(plugin, sizeof plugin);
    if (rc < 0)
        return fail(h, -rc, "no %s for the VHD %s", PLUGIN_NAME, image);
    nbd_key(h->domid, h->devid, key, sizeof key);
    rc = vmops_vhd_nbd_attach(&(vmops_vhd_nbd_params){.image = image, .readonly = readonly, .dir = dir,
                                                      .key = key, .nbdkit = getenv("XENAPID_NBDKIT"),
                                                      .plugin = plugin},
                              &nbd, err, sizeof err);
    if (rc < 0)
        return fail(h, -rc, "VHD %s: %s", image, err);
    snprintf(pdev, sizeof pdev, "%x:%x", major(nbd.dev), minor(nbd.dev));
    snprintf(dev_path, sizeof dev_path, "/dev/nbd%d", nbd.index);
    /* xenapid-nbd: the folder of this device's record, for remove */
    rc = be_write(h, (const char *const[]){"physical-device", pdev, "physical-device-path", dev_path,
                                           "xenapid-nbd", dir, "hotplug-status", "connected", NULL});
    if (rc < 0) {
        vmops_vhd_nbd_detach(dir, key);
        return fail(h, -rc, "cannot write physical-device");
    }
    return 0;
}

static int vbd_add(hotplug *h) {
    char *params = be_read(h, "params"), *mode = be_read(h, "mode");
    char loop[32] = "", pdev[32], *dev_path;
    bool readonly = mode && strcmp(mode, "r") == 0;
    struct stat st;
    dev_t dev;
    int rc;

    if (!params || !*params) {
        rc = fail(h, EINVAL, "no image (params)");
        goto out;
    }
    if (stat(params, &st) < 0) {
        rc = fail(h, errno, "image %s", params);
        goto out;
    }
    if (S_ISBLK(st.st_mode)) {
        dev = st.st_rdev;
        dev_path = params;
    } else if (S_ISREG(st.st_mode) && is_vhd(params)) {
        rc = vbd_add_vhd(h, params, readonly);
        goto out;
    } else if (S_ISREG(st.st_mode)) {
        rc = vmops_loop_attach(params, readonly, loop, sizeof loop, &dev);
        if (rc < 0) {
            rc = fail(h, -rc, "cannot make a loop device over %s", params);
            goto out;
        }
        dev_path = loop;
    } else {
        rc = fail(h, EINVAL, "image %s is neither a file nor a block device", params);
        goto out;
    }
    snprintf(pdev, sizeof pdev, "%x:%x", major(dev), minor(dev));
    /* xenapid-loop: which loop device is this helper's to end at remove */
    rc = be_write(h, (const char *const[]){"physical-device", pdev, "physical-device-path", dev_path, "hotplug-status",
                                           "connected", *loop ? "xenapid-loop" : NULL, loop, NULL});
    if (rc < 0) {
        if (*loop)
            vmops_loop_detach(loop, params);
        rc = fail(h, -rc, "cannot write physical-device");
        goto out;
    }
    rc = 0;
out:
    free(params);
    free(mode);
    return rc;
}

static int vbd_remove(hotplug *h) {
    char *loop = be_read(h, "xenapid-loop"), *params = be_read(h, "params"), *nbd = be_read(h, "xenapid-nbd");
    char key[64];
    int rc = 0;

    if (nbd && nbd[0] == '/') {
        nbd_key(h->domid, h->devid, key, sizeof key);
        rc = vmops_vhd_nbd_detach(nbd, key);
        if (rc == -ENOENT)
            rc = 0;
        if (rc < 0)
            fprintf(stderr, "xenapid-hotplug %s: cannot end the NBD device of %s: %s\n", h->be, params ? params : "?",
                    strerror(-rc));
    }

    if (loop) {
        rc = vmops_loop_detach(loop, params);
        if (rc == -ENXIO || rc == -ESTALE) /* gone already, or reused by someone else: not ours to end */
            rc = 0;
        if (rc < 0)
            fprintf(stderr, "xenapid-hotplug %s: cannot detach %s: %s\n", h->be, loop, strerror(-rc));
    }
    free(loop);
    free(params);
    free(nbd);
    return rc < 0 ? 1 : 0;
}

/* Records whose backend is gone from xenstore: the domain died while xenapid
 * (which runs libxl's remove) was down. What a live backend uses stays. */
static int sweep(const char *dir) {
    struct xs_handle *xs = NULL;
    struct dirent *e;
    DIR *d = NULL;
    int ended = 0, rc = 0;

    d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : 1;
    xs = xs_open(0);
    if (!xs) {
        fprintf(stderr, "xenapid-hotplug sweep: cannot open xenstore: %s\n", strerror(errno));
        rc = 1;
        goto out;
    }
    while ((e = readdir(d))) {
        char key[80], path[160];
        unsigned domid, len;
        int devid, r;
        size_t n = strlen(e->d_name);
        void *v;

        if (n < 5 || n >= sizeof key || strcmp(e->d_name + n - 4, ".nbd") != 0)
            continue;
        memcpy(key, e->d_name, n - 4);
        key[n - 4] = 0;
        if (!vmops_vhd_nbd_key_valid(key) || sscanf(key, "vbd-%u-%d", &domid, &devid) != 2)
            continue;
        snprintf(path, sizeof path, "/local/domain/0/backend/vbd/%u/%d/xenapid-nbd", domid, devid);
        v = xs_read(xs, XBT_NULL, path, &len);
        if (v) {
            free(v);
            continue;
        }
        if (errno != ENOENT)
            continue; /* cannot tell: leave it */
        r = vmops_vhd_nbd_detach(dir, key);
        fprintf(stderr, "xenapid-hotplug sweep: ended %s (no backend): %s\n", key, r < 0 ? strerror(-r) : "ok");
        ended++;
    }
    printf("%d\n", ended);
out:
    if (xs)
        xs_close(xs);
    closedir(d);
    return rc;
}

/* netback's device, or for an HVM guest's emulated NIC QEMU's tap (libxl
 * names it in INTERFACE, else <vif>-emu). */
static void vif_name(hotplug *h, bool tap, char *out, size_t n) {
    char *vifname = be_read(h, "vifname");
    const char *iface = getenv("INTERFACE");

    if (tap && iface && *iface)
        snprintf(out, n, "%s", iface);
    else if (vifname && *vifname)
        snprintf(out, n, "%s%s", vifname, tap ? "-emu" : "");
    else
        snprintf(out, n, "vif%u.%d%s", h->domid, h->devid, tap ? "-emu" : "");
    free(vifname);
}

static int vif_online(hotplug *h, bool tap) {
    char *bridge = be_read(h, "bridge"), *mtu = be_read(h, "mtu");
    char dev[64];
    int rc;

    vif_name(h, tap, dev, sizeof dev);
    if (!bridge || !*bridge) {
        rc = fail(h, EINVAL, "%s: no bridge", dev);
        goto out;
    }
    if (mtu && atoll(mtu) > 0 && (rc = network_nl_link_set_mtu(dev, atoll(mtu))) < 0) {
        rc = fail(h, -rc, "%s: cannot set MTU %s", dev, mtu);
        goto out;
    }
    rc = network_nl_link_set_master(dev, bridge);
    if (rc < 0) {
        rc = fail(h, -rc, "cannot add %s to the bridge %s", dev, bridge);
        goto out;
    }
    rc = be_write(h, (const char *const[]){"hotplug-status", "connected", NULL});
    if (rc < 0) {
        network_nl_link_set_master(dev, NULL);
        rc = fail(h, -rc, "%s: cannot write hotplug-status", dev);
        goto out;
    }
    rc = 0;
out:
    free(bridge);
    free(mtu);
    return rc;
}

static int vif_offline(hotplug *h, bool tap) {
    char dev[64];
    int rc;

    vif_name(h, tap, dev, sizeof dev);
    rc = network_nl_link_set_master(dev, NULL);
    if (rc < 0 && rc != -ENODEV)
        fprintf(stderr, "xenapid-hotplug %s: cannot take %s out of its bridge: %s\n", h->be, dev, strerror(-rc));
    return 0; /* the device goes with the domain anyway */
}

int main(int argc, char **argv) {
    const char *type = getenv("XENBUS_TYPE"), *path = getenv("XENBUS_PATH");
    const char *action = argc > 1 ? argv[1] : "";
    bool tap = argc > 2 && strcmp(argv[2], "type_if=tap") == 0;
    bool add = strcmp(action, "add") == 0 || strcmp(action, "online") == 0;
    bool remove = strcmp(action, "remove") == 0 || strcmp(action, "offline") == 0;
    hotplug h = {0};
    char t[8];
    int rc;

    if (strcmp(action, "sweep") == 0 && argc == 3 && argv[2][0] == '/')
        return sweep(argv[2]);
    if (!type || !path || (!add && !remove) ||
        sscanf(path, "backend/%7[^/]/%u/%d", t, &h.domid, &h.devid) != 3 || strcmp(t, type) != 0) {
        fprintf(stderr, "usage: XENBUS_TYPE=vbd|vif XENBUS_PATH=backend/TYPE/DOMID/DEVID %s "
                        "add|remove|online|offline [type_if=vif|tap]\n(libxl runs it as a device's script)\n"
                        "       %s sweep DIR  (xenapid at start: ends VHD disks' servers whose backend is gone)\n",
                argv[0], argv[0]);
        return 2;
    }
    snprintf(h.be, sizeof h.be, "/local/domain/0/%s", path);
    h.xs = xs_open(0);
    if (!h.xs) {
        fprintf(stderr, "xenapid-hotplug %s: cannot open xenstore: %s\n", h.be, strerror(errno));
        return 1;
    }
    if (strcmp(type, "vbd") == 0)
        rc = add ? vbd_add(&h) : vbd_remove(&h);
    else if (strcmp(type, "vif") == 0)
        rc = add ? vif_online(&h, tap) : vif_offline(&h, tap);
    else
        rc = fail(&h, EINVAL, "unknown device type %s", type);
    xs_close(h.xs);
    return rc;
}
