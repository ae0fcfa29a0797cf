/* Loop devices through the loop ioctls (vmops/loopdev.c), as xenapid-hotplug
 * makes them for blkback: over a real file, read-only when asked, detached
 * only while still backed by the file given. Needs root and
 * /dev/loop-control (skipped with a line saying so otherwise). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmops/loopdev.h"

static char *sysfs_read(const char *dev, const char *what) {
    static char buf[4096];
    char path[256];
    FILE *f;

    snprintf(path, sizeof path, "/sys/block/%s/%s", dev + strlen("/dev/"), what);
    f = fopen(path, "r");
    if (!f)
        return NULL;
    if (!fgets(buf, sizeof buf, f))
        buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
    return buf;
}

static void test_attach_detach(void **state) {
    char dir[] = "/tmp/xenapid-loop-XXXXXX", file[128], other[128], name[32];
    struct stat st;
    dev_t dev;
    int fd, rc;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/disk.img", dir);
    snprintf(other, sizeof other, "%s/other.img", dir);
    fd = open(file, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 4 << 20), 0);
    close(fd);

    rc = vmops_loop_attach(file, false, name, sizeof name, &dev);
    if (rc == -ENOENT || rc == -EPERM || rc == -EACCES || rc == -ENXIO) {
        printf("SKIP: no loop devices here (%s)\n", strerror(-rc));
        unlink(file);
        rmdir(dir);
        skip();
    }
    assert_int_equal(rc, 0);
    assert_int_equal(strncmp(name, "/dev/loop", 9), 0);
    assert_int_equal(stat(name, &st), 0);
    assert_true(S_ISBLK(st.st_mode));
    assert_int_equal(st.st_rdev, dev);
    assert_string_equal(sysfs_read(name, "loop/backing_file"), file);
    assert_string_equal(sysfs_read(name, "ro"), "0");
    /* not ours to end while another file backs it */
    assert_int_equal(vmops_loop_detach(name, other), -ESTALE);
    assert_int_equal(vmops_loop_detach(name, file), 0);
    assert_int_equal(vmops_loop_detach(name, file), -ENXIO);

    assert_int_equal(vmops_loop_attach(file, true, name, sizeof name, &dev), 0);
    assert_string_equal(sysfs_read(name, "ro"), "1");
    assert_int_equal(vmops_loop_detach(name, NULL), 0);

    /* no file: nothing made */
    assert_int_equal(vmops_loop_attach(other, false, name, sizeof name, &dev), -ENOENT);
    assert_int_equal(vmops_loop_detach("/dev/sda", NULL), -EINVAL);
    unlink(file);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attach_detach),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
