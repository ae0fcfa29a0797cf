/* Unit tests: the "file" and "iso" SR drivers and the sparse copy, on a
 * temporary directory. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/driver.h"

#define MiB (1 << 20)
#define UUID_A "11111111-2222-4333-8444-555555555555"
#define UUID_B "66666666-7777-4888-9999-aaaaaaaaaaaa"

typedef struct fixture {
    char dir[64];
    storage_sr sr;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    xapi_value dc = xapi_value_struct();
    char *loc = NULL;
    storage_err e = {0};

    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/test_filesr.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(asprintf(&loc, "%s/sr/", f->dir) > 0, 1);
    xapi_struct_set(&dc, "location", xapi_value_string(loc));
    f->sr.drv = storage_driver_find("file");
    assert_non_null(f->sr.drv);
    assert_int_equal(f->sr.drv->sr_config(&dc, &f->sr.path, &e), 0);
    /* trailing slashes go */
    assert_int_equal(f->sr.path[strlen(f->sr.path) - 1] != '/', 1);
    assert_int_equal(f->sr.drv->sr_create(&f->sr, &e), 0);
    assert_int_equal(f->sr.drv->sr_attach(&f->sr, &e), 0);
    free(loc);
    xapi_value_free(&dc);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    char *cmd = NULL;

    assert_int_equal(asprintf(&cmd, "rm -rf '%s'", f->dir) > 0, 1);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(f->sr.path);
    free(f);
    return 0;
}

static char *vdi_file(fixture *f, const char *loc) {
    char *p = f->sr.drv->vdi_path(&f->sr, loc);
    assert_non_null(p);
    return p;
}

static void put(const char *path, off_t off, const char *data) {
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, strlen(data), off), (ssize_t)strlen(data));
    close(fd);
}

static void expect(const char *path, off_t off, const char *data, size_t n) {
    char buf[64] = {0};
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0 && n <= sizeof buf);
    assert_int_equal(pread(fd, buf, n, off), (ssize_t)n);
    assert_memory_equal(buf, data, n);
    close(fd);
}

static void test_config_errors(void **state) {
    const storage_driver *file = storage_driver_find("file"), *iso = storage_driver_find("iso");
    xapi_value dc = xapi_value_struct();
    storage_err e = {0};
    char *path = NULL;

    (void)state;
    assert_int_equal(file->sr_config(&dc, &path, &e) < 0, 1);
    assert_int_equal(e.code, SM_ERR_CONFIG_LOCATION_MISSING);
    assert_int_equal(iso->sr_config(&dc, &path, &e) < 0, 1);
    assert_int_equal(e.code, SM_ERR_ISO_LOCATION_MISSING);
    xapi_struct_set(&dc, "location", xapi_value_string("/a/../b"));
    assert_int_equal(file->sr_config(&dc, &path, &e) < 0, 1);
    assert_int_equal(e.code, SM_ERR_INVALID_ARG);
    xapi_struct_set(&dc, "location", xapi_value_string("host:/export"));
    assert_int_equal(iso->sr_config(&dc, &path, &e) < 0, 1);
    assert_int_equal(e.code, SM_ERR_ISO_LOCAL_PATH);
    assert_non_null(storage_driver_find("nfs"));
    xapi_value_free(&dc);
}

static void test_create_resize_delete(void **state) {
    fixture *f = *state;
    storage_vdi_info info = {0};
    storage_err e = {0};
    char *p = vdi_file(f, UUID_A);
    struct stat st;

    assert_int_equal(f->sr.drv->vdi_create(&f->sr, UUID_A, 10 * MiB, &info, &e), 0);
    assert_string_equal(info.location, UUID_A);
    assert_int_equal(info.virtual_size, 10 * MiB);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 10 * MiB);
    assert_true(st.st_blocks * 512 < 10 * MiB);
    storage_vdi_info_free(&info);
    /* twice: refused */
    assert_true(f->sr.drv->vdi_create(&f->sr, UUID_A, MiB, &info, &e) < 0);
    assert_int_equal(e.code, SM_ERR_VDI_CREATE);
    /* grow, not shrink */
    assert_int_equal(f->sr.drv->vdi_resize(&f->sr, UUID_A, 20 * MiB, &info, &e), 0);
    assert_int_equal(info.virtual_size, 20 * MiB);
    storage_vdi_info_free(&info);
    assert_true(f->sr.drv->vdi_resize(&f->sr, UUID_A, MiB, &info, &e) < 0);
    assert_int_equal(e.code, SM_ERR_VDI_SIZE);
    assert_non_null(strstr(e.text, "shrinking not allowed"));
    assert_int_equal(f->sr.drv->vdi_delete(&f->sr, UUID_A, &e), 0);
    assert_int_equal(access(p, F_OK), -1);
    /* deleting what is gone is fine; stat says unavailable */
    assert_int_equal(f->sr.drv->vdi_delete(&f->sr, UUID_A, &e), 0);
    assert_true(f->sr.drv->vdi_stat(&f->sr, UUID_A, &info, &e) < 0);
    assert_int_equal(e.code, SM_ERR_VDI_UNAVAILABLE);
    /* names that would leave the directory */
    assert_null(f->sr.drv->vdi_path(&f->sr, "../x"));
    assert_null(f->sr.drv->vdi_path(&f->sr, ".hidden"));
    assert_true(f->sr.drv->vdi_create(&f->sr, "a/b", MiB, &info, &e) < 0);
    free(p);
}

static void test_import_is_staged_and_sparse(void **state) {
    fixture *f = *state;
    storage_vdi_info info = {0}, *scan = NULL;
    storage_err e = {0};
    char *a = vdi_file(f, UUID_A), *b = vdi_file(f, UUID_B);
    size_t n = 0;
    struct stat st;

    assert_int_equal(f->sr.drv->vdi_create(&f->sr, UUID_A, 16 * MiB, &info, &e), 0);
    storage_vdi_info_free(&info);
    put(a, 0, "head");
    put(a, 9 * MiB, "middle");
    assert_int_equal(f->sr.drv->vdi_import(&f->sr, UUID_B, a, 16 * MiB, &e), 0);
    /* staged: not a VDI yet */
    assert_int_equal(access(b, F_OK), -1);
    assert_int_equal(f->sr.drv->sr_scan(&f->sr, 100, &scan, &n, &e), 0);
    assert_int_equal(n, 1);
    storage_vdi_infos_free(scan, n);
    assert_int_equal(f->sr.drv->vdi_publish(&f->sr, UUID_B, &info, &e), 0);
    storage_vdi_info_free(&info);
    expect(b, 0, "head", 4);
    expect(b, 9 * MiB, "middle", 6);
    expect(b, 4 * MiB, "\0\0\0\0", 4);
    assert_int_equal(stat(b, &st), 0);
    assert_int_equal(st.st_size, 16 * MiB);
    assert_true(st.st_blocks * 512 < 16 * MiB);
    /* publishing over an existing VDI is refused */
    assert_int_equal(f->sr.drv->vdi_import(&f->sr, UUID_B, a, 16 * MiB, &e), 0);
    assert_true(f->sr.drv->vdi_publish(&f->sr, UUID_B, &info, &e) < 0);
    assert_int_equal(f->sr.drv->sr_scan(&f->sr, 100, &scan, &n, &e), 0);
    assert_int_equal(n, 2);
    storage_vdi_infos_free(scan, n);
    /* the scan bound */
    assert_true(f->sr.drv->sr_scan(&f->sr, 1, &scan, &n, &e) < 0);
    assert_int_equal(e.code, SM_ERR_SR_SCAN);
    free(a);
    free(b);
}

static void test_overwrite_punches_holes(void **state) {
    fixture *f = *state;
    storage_vdi_info info = {0};
    storage_err e = {0};
    char *a = vdi_file(f, UUID_A), *b = vdi_file(f, UUID_B);

    assert_int_equal(f->sr.drv->vdi_create(&f->sr, UUID_A, 4 * MiB, &info, &e), 0);
    storage_vdi_info_free(&info);
    assert_int_equal(f->sr.drv->vdi_create(&f->sr, UUID_B, 8 * MiB, &info, &e), 0);
    storage_vdi_info_free(&info);
    put(b, 0, "stale stale");
    put(b, 2 * MiB, "stale");
    put(b, 6 * MiB, "kept");
    put(a, 1 * MiB, "fresh");
    assert_int_equal(f->sr.drv->vdi_write(&f->sr, UUID_B, a, 4 * MiB, &e), 0);
    expect(b, 0, "\0\0\0\0\0\0\0\0\0\0\0", 11);
    expect(b, 1 * MiB, "fresh", 5);
    expect(b, 2 * MiB, "\0\0\0\0\0", 5);
    expect(b, 6 * MiB, "kept", 4); /* beyond the source: untouched */
    free(a);
    free(b);
}

static void test_sr_delete_and_cleanup(void **state) {
    fixture *f = *state;
    storage_vdi_info info = {0};
    storage_err e = {0};
    char *loc[] = {(char *)UUID_A};
    char *part = NULL;
    int fd;

    assert_int_equal(f->sr.drv->vdi_create(&f->sr, UUID_A, MiB, &info, &e), 0);
    storage_vdi_info_free(&info);
    assert_int_equal(asprintf(&part, "%s/.%s.part", f->sr.path, UUID_B) > 0, 1);
    fd = open(part, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    /* a non-empty directory cannot be made an SR */
    assert_true(f->sr.drv->sr_create(&f->sr, &e) < 0);
    assert_int_equal(e.code, SM_ERR_SR_EXISTS);
    assert_int_equal(f->sr.drv->sr_delete(&f->sr, loc, 1, &e), 0);
    assert_int_equal(access(part, F_OK), -1);
    assert_int_equal(access(f->sr.path, F_OK), -1);
    assert_true(f->sr.drv->sr_attach(&f->sr, &e) < 0);
    assert_int_equal(e.code, SM_ERR_SR_UNAVAILABLE);
    free(part);
}

static void test_iso_scan(void **state) {
    fixture *f = *state;
    storage_sr iso = {.drv = storage_driver_find("iso"), .path = f->sr.path};
    storage_vdi_info *v = NULL;
    storage_err e = {0};
    const char *names[] = {"b.iso", "a.IMG", "c.txt", ".d.iso"};
    size_t n = 0;

    for (size_t i = 0; i < 4; i++) {
        char *p = NULL;
        assert_int_equal(asprintf(&p, "%s/%s", f->sr.path, names[i]) > 0, 1);
        close(open(p, O_CREAT | O_WRONLY, 0600));
        free(p);
    }
    assert_int_equal(iso.drv->sr_attach(&iso, &e), 0);
    assert_int_equal(iso.drv->sr_scan(&iso, 100, &v, &n, &e), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_true(v[i].read_only);
        assert_string_equal(v[i].location, v[i].name);
        assert_true(strcmp(v[i].location, "b.iso") == 0 || strcmp(v[i].location, "a.IMG") == 0);
    }
    storage_vdi_infos_free(v, n);
    assert_null(iso.drv->vdi_path(&iso, "c.txt")); /* only images can be attached */
    assert_non_null(v = (void *)iso.drv->vdi_path(&iso, "b.iso"));
    free(v);
    assert_null(iso.drv->vdi_create);
    assert_false(iso.drv->caps & STORAGE_CAP_VDI_DELETE);
}

/* Only a regular file of the directory's own opens: no symlink, hard link or FIFO. */
static void test_open_file_refuses_links(void **state) {
    fixture *f = *state;
    char plain[128], sym[128], hard[128], fifo[128], outside[128];
    int fd;

    snprintf(plain, sizeof plain, "%s/plain", f->sr.path);
    snprintf(sym, sizeof sym, "%s/sym", f->sr.path);
    snprintf(hard, sizeof hard, "%s/hard", f->sr.path);
    snprintf(fifo, sizeof fifo, "%s/fifo", f->sr.path);
    snprintf(outside, sizeof outside, "%s/outside", f->dir);
    fd = open(outside, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(symlink(outside, sym), 0);
    assert_int_equal(link(outside, hard), 0);
    assert_int_equal(mkfifo(fifo, 0600), 0);

    fd = storage_open_file(plain, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    close(fd);
    fd = storage_open_file(plain, O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(storage_check_file(plain, NULL), 0);

    assert_int_equal(storage_open_file(sym, O_WRONLY, 0), -ELOOP);
    assert_int_equal(storage_open_file(sym, O_WRONLY | O_CREAT | O_EXCL, 0600), -EEXIST);
    assert_int_equal(storage_check_file(sym, NULL), -ELOOP);
    assert_int_equal(storage_open_file(hard, O_RDONLY, 0), -EMLINK);
    assert_int_equal(storage_check_file(hard, NULL), -EMLINK);
    assert_int_equal(storage_open_file(fifo, O_RDONLY, 0), -EINVAL); /* and without waiting for a writer */
    assert_int_equal(storage_check_file(fifo, NULL), -EINVAL);
    assert_int_equal(storage_check_file(f->sr.path, NULL), -EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test_setup_teardown(test_create_resize_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_import_is_staged_and_sparse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overwrite_punches_holes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sr_delete_and_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iso_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_file_refuses_links, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
