/* The VHD datapath's pieces off-lab (vmops/nbd.c, vmops/vhd_nbd.c): the NBD
 * handshake against a real nbdkit serving xenapid's plugin, a refusal of a
 * non-NBD peer, and that a failed attach (nbdkit refusing the image, or no
 * kernel NBD client here) leaves nothing: no nbdkit, socket or record. With
 * an NBD-capable kernel and root, the attach succeeds and its detach is
 * checked instead. Needs nbdkit and the plugin beside this program (skipped
 * with a line saying so otherwise). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <linux/nbd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/vhd_file.h"
#include "vmops/nbd.h"
#include "vmops/vhd_nbd.h"

#define MiB (1024u * 1024u)

static char plugin[PATH_MAX];
static char dir[64];

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

/* The plugin beside this program is built like it: a sanitized one loads only
 * into an nbdkit with the runtime preloaded, whose exit then hangs after a
 * refusal (tests/integration/test_nbdkit_vhd.py covers the plugin so). */
static bool have_nbdkit(void) {
    char exe[PATH_MAX - 64], *slash;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

#ifdef SANITIZED
    return false;
#endif
    if (n <= 0)
        return false;
    exe[n] = 0;
    slash = strrchr(exe, '/');
    *slash = 0;
    snprintf(plugin, sizeof plugin, "%s/nbdkit-xenapid-vhd-plugin.so", exe);
    return access(plugin, R_OK) == 0 && system("nbdkit --version >/dev/null 2>&1") == 0;
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/xenapid-nbd-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state) {
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static char *path_in(const char *name) {
    static char p[2][PATH_MAX];
    static int k;

    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* A 4 MiB VHD; hidden: made the read-only parent of a chain. */
static void make_vhd(const char *name, bool hidden) {
    storage_vhd_create_params p = {.path = path_in(name), .size = 4 * MiB, .now = 946684800};
    storage_vhd_file *f = NULL;
    char err[256];
    uint8_t sec[512];

    assert_int_equal(storage_vhd_create(&p, err, sizeof err), 0);
    assert_int_equal(storage_vhd_file_open(&f, p.path, true, err, sizeof err), 0);
    memset(sec, 'A', sizeof sec);
    assert_int_equal(storage_vhd_file_write(f, 0, sec, sizeof sec), 0);
    if (hidden)
        assert_int_equal(storage_vhd_file_set_hidden(f, true), 0);
    storage_vhd_file_close(f);
}

static size_t entries(const char *d) {
    DIR *dd = opendir(d);
    struct dirent *e;
    size_t n = 0;

    if (!dd)
        return 0;
    while ((e = readdir(dd)))
        n += e->d_name[0] != '.';
    closedir(dd);
    return n;
}

/* Whether any process runs with `needle` in its command line. */
static bool process_with(const char *needle) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    bool found = false;

    assert_non_null(d);
    while (!found && (e = readdir(d))) {
        char path[300], buf[4096];
        FILE *f;
        size_t n;

        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++)
            if (!buf[i])
                buf[i] = ' ';
        buf[n] = 0;
        found = strstr(buf, needle) != NULL;
    }
    closedir(d);
    return found;
}

static int connect_to(const char *sock) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    for (int i = 0; i < 100; i++) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return fd;
        usleep(50000);
    }
    close(fd);
    return -1;
}

/* nbdkit with the plugin, read-only, in the foreground: the handshake reads
 * the VHD's virtual size and the read-only flag. */
static void test_handshake(void **state) {
    char file_arg[PATH_MAX + 8];
    uint64_t size = 0;
    uint16_t flags = 0;
    pid_t pid;
    int fd, status;

    (void)state;
    if (!have_nbdkit()) {
        printf("skipped: nbdkit or the plugin missing, or a sanitized build\n");
        return;
    }
    make_vhd("a.vhd", false);
    snprintf(file_arg, sizeof file_arg, "file=%s", path_in("a.vhd"));
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execlp("nbdkit", "nbdkit", "-f", "-r", "--unix", path_in("s.sock"), plugin, file_arg, "readonly=true",
               (char *)NULL);
        _exit(127);
    }
    fd = connect_to(path_in("s.sock"));
    assert_true(fd >= 0);
    assert_int_equal(vmops_nbd_handshake(fd, &size, &flags), 0);
    assert_int_equal(size, 4 * MiB);
    assert_true(flags & NBD_FLAG_HAS_FLAGS);
    assert_true(flags & NBD_FLAG_READ_ONLY);
    close(fd);
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
}

/* A peer that is no NBD server, or hangs up: -EPROTO, not a hang. */
static void test_handshake_not_nbd(void **state) {
    uint64_t size;
    uint16_t flags;
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(write(sv[1], "HTTP/1.1 200 OK\r\n\r\n", 19), 19);
    assert_int_equal(vmops_nbd_handshake(sv[0], &size, &flags), -EPROTO);
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(write(sv[1], "NBDMAGIC", 8), 8);
    close(sv[1]);
    assert_int_equal(vmops_nbd_handshake(sv[0], &size, &flags), -EPROTO);
    close(sv[0]);
}

/* A hidden parent asked writable: nbdkit refuses, its reason comes back, and
 * nothing is left in the folder nor running. */
static void test_attach_refused(void **state) {
    char err[512], sub[PATH_MAX];
    vmops_vhd_nbd nbd;
    int rc;

    (void)state;
    if (!have_nbdkit()) {
        printf("skipped: nbdkit or the plugin missing, or a sanitized build\n");
        return;
    }
    make_vhd("base.vhd", true);
    snprintf(sub, sizeof sub, "%s", path_in("nbd"));
    rc = vmops_vhd_nbd_attach(&(vmops_vhd_nbd_params){.image = path_in("base.vhd"), .dir = sub, .key = "vbd-7-51712",
                                                      .plugin = plugin},
                              &nbd, err, sizeof err);
    assert_true(rc < 0);
    assert_non_null(strstr(err, "hidden"));
    assert_int_equal(entries(sub), 0);
    assert_false(process_with(sub));
    /* a key that could name a path elsewhere is refused before anything runs */
    rc = vmops_vhd_nbd_attach(&(vmops_vhd_nbd_params){.image = path_in("base.vhd"), .readonly = true, .dir = sub,
                                                      .key = "../x", .plugin = plugin},
                              &nbd, err, sizeof err);
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(vmops_vhd_nbd_detach(sub, "vbd-7-51712"), -ENOENT);
}

/* A good image: attached and detached where the kernel has an NBD client
 * (root), else the failure at the connect rolls back nbdkit and the socket. */
static void test_attach_detach_or_rollback(void **state) {
    char err[512], sub[PATH_MAX], dev[64];
    vmops_vhd_nbd nbd;
    struct stat st;
    int rc;

    (void)state;
    if (!have_nbdkit()) {
        printf("skipped: nbdkit or the plugin missing, or a sanitized build\n");
        return;
    }
    make_vhd("leaf.vhd", false);
    snprintf(sub, sizeof sub, "%s", path_in("nbd"));
    rc = vmops_vhd_nbd_attach(&(vmops_vhd_nbd_params){.image = path_in("leaf.vhd"), .readonly = true, .dir = sub,
                                                      .key = "vbd-7-51712", .plugin = plugin},
                              &nbd, err, sizeof err);
    if (rc < 0) {
        printf("no NBD device here (%s: %s): checking the rollback\n", err, strerror(-rc));
        assert_int_equal(entries(sub), 0);
        assert_false(process_with(sub));
        return;
    }
    snprintf(dev, sizeof dev, "/dev/nbd%d", nbd.index);
    assert_int_equal(stat(dev, &st), 0);
    assert_int_equal(st.st_rdev, nbd.dev);
    assert_true(process_with(sub));
    assert_int_equal(vmops_vhd_nbd_detach(sub, "vbd-7-51712"), 0);
    assert_int_equal(entries(sub), 0);
    assert_false(process_with(sub));
}

/* A record whose nbdkit is gone with its pidfile names a group number that
 * a new process may have taken (here a child leading a session of its own):
 * the detach ends the record and leaves that process alone (before, it was
 * sent SIGTERM and SIGKILL as a group). */
static void test_detach_spares_a_group_not_ours(void **state) {
    pid_t child;
    FILE *f;
    int status;

    (void)state;
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        setsid();
        pause();
        _exit(0);
    }
    for (int i = 0; i < 200 && getpgid(child) != child; i++)
        usleep(10000);
    assert_int_equal(getpgid(child), child);
    f = fopen(path_in("vbd-9-768.nbd"), "w");
    assert_non_null(f);
    fprintf(f, "-1 %d\n", (int)child);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(vmops_vhd_nbd_detach(dir, "vbd-9-768"), 0);
    assert_int_equal(entries(dir), 0);
    usleep(100000);
    assert_int_equal(waitpid(child, &status, WNOHANG), 0); /* still running */
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake, setup, teardown),
        cmocka_unit_test(test_handshake_not_nbd),
        cmocka_unit_test_setup_teardown(test_attach_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_detach_or_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach_spares_a_group_not_ours, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
