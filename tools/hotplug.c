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
 *                blkback waits for), physical-device-path, hotplug-status
 *   vbd remove:  the loop device this helper made (xenapid-loop) detached
 *   vif online:  the vif (or HVM tap) gets the backend's `mtu` and becomes a
 *                port of `bridge`, up; hotplug-status connected (netback waits for it)
 *   vif offline: out of the bridge (netback has usually removed it already)
 *
 * Each failure takes back what this run made (loop device, bridge port)
 * and says why in hotplug-error, which libxl logs and xenapid reports.
 * Unlike `block`, it does not refuse an image another domain has open for
 * writing: xenapid's VBD checks (one writer per VDI) come before. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <xenstore.h>

#include "network/netlink.h"
#include "vmops/loopdev.h"

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
    char *loop = be_read(h, "xenapid-loop"), *params = be_read(h, "params");
    int rc = 0;

    if (loop) {
        rc = vmops_loop_detach(loop, params);
        if (rc == -ENXIO || rc == -ESTALE) /* gone already, or reused by someone else: not ours to end */
            rc = 0;
        if (rc < 0)
            fprintf(stderr, "xenapid-hotplug %s: cannot detach %s: %s\n", h->be, loop, strerror(-rc));
    }
    free(loop);
    free(params);
    return rc < 0 ? 1 : 0;
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

    if (!type || !path || (!add && !remove) ||
        sscanf(path, "backend/%7[^/]/%u/%d", t, &h.domid, &h.devid) != 3 || strcmp(t, type) != 0) {
        fprintf(stderr, "usage: XENBUS_TYPE=vbd|vif XENBUS_PATH=backend/TYPE/DOMID/DEVID %s "
                        "add|remove|online|offline [type_if=vif|tap]\n(libxl runs it as a device's script)\n",
                argv[0]);
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
