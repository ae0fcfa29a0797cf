/* Unit tests: iscsiadm's discovery records, SCSIids from VPD pages and
 * wwids, LUNs from a made-up sysfs tree, and the probe XML against
 * minidom's (tests/golden/iscsi, storage/iscsi.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/iscsi.h"

static char *golden(const char *name, size_t *ret_len) {
    const char *src = getenv("XENAPID_SOURCE_DIR");
    char *p = NULL, *data = NULL;
    ssize_t n;
    FILE *f;

    if (src)
        assert_true(asprintf(&p, "%s/tests/golden/iscsi/%s", src, name) > 0);
    else {
        char *file = strdup(__FILE__), *dir = strrchr(file, '/');
        if (dir)
            *dir = '\0';
        assert_true(asprintf(&p, "%s/../golden/iscsi/%s", dir ? file : ".", name) > 0);
        free(file);
    }
    f = fopen(p, "rb");
    assert_non_null(f);
    /* whole, NUL bytes and all (a VPD page) */
    data = calloc(1, 65536);
    n = (ssize_t)fread(data, 1, 65535, f);
    assert_true(n > 0);
    fclose(f);
    free(p);
    if (ret_len)
        *ret_len = (size_t)n;
    return data;
}

static void test_discovery(void **state) {
    char *out = golden("discovery.txt", NULL), *xml = NULL, *want = golden("targets.xml", NULL);
    storage_iscsi_portal *p = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(storage_iscsi_parse_discovery(out, 16, &p, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(p[0].address, "10.0.0.5");
    assert_int_equal(p[0].port, 3260);
    assert_string_equal(p[0].iqn, "iqn.2026-12.test.xenapid:lun1");
    assert_string_equal(p[1].iqn, "iqn.2026-12.test.xenapid:vol-2");
    assert_string_equal(p[2].address, "[fd00::5]");
    assert_int_equal(p[2].port, 3261);
    assert_int_equal(storage_iscsi_targets_xml(p, n, "10.0.0.5", 3260, &xml), 0);
    assert_string_equal(xml, want);
    storage_iscsi_portals_free(p, n);
    /* a limit on the records one discovery may give */
    assert_int_equal(storage_iscsi_parse_discovery(out, 2, &p, &n), -E2BIG);
    /* nothing found: no records */
    assert_int_equal(storage_iscsi_parse_discovery("", 16, &p, &n), 0);
    assert_int_equal(n, 0);
    storage_iscsi_portals_free(p, n);
    free(xml);
    free(want);
    free(out);
}

static void test_bad_discovery(void **state) {
    static const char *const bad[] = {
        "10.0.0.5:3260,1\n",                          /* no IQN */
        "10.0.0.5,1 iqn.2026-12.a:b\n",               /* no port */
        "10.0.0.5:99999,1 iqn.2026-12.a:b\n",         /* port out of range */
        "10.0.0.5:3260,1 iqn.2026-12.a:b c\n",        /* a space in the IQN */
        "10.0.0.5:3260,1 -o\n",                       /* not an IQN */
        "iscsiadm: No portals found\n",
    };
    storage_iscsi_portal *p = NULL;
    size_t n = 0;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(storage_iscsi_parse_discovery(bad[i], 16, &p, &n), -EBADMSG);
}

static void test_scsi_id(void **state) {
    size_t len = 0;
    uint8_t *page = (uint8_t *)golden("vpd_pg83_tgt.bin", &len);
    char id[STORAGE_ISCSI_MAX_ID + 1];
    /* only a T10 vendor id: "1" + the text, blanks as one "_" */
    static const uint8_t t10[] = {0, 0x83, 0, 20, 0x02, 0x01, 0, 16, 'I', 'E', 'T', ' ', ' ', ' ', ' ', ' ',
                                  'd', 'i', 's', 'k', ' ', ' ', '1', ' '};
    /* an EUI-64 of the target port (association 1) is not the LU's: only the LU's counts */
    static const uint8_t port_only[] = {0, 0x83, 0, 12, 0x01, 0x12, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
    static const uint8_t eui[] = {0, 0x83, 0, 12, 0x01, 0x02, 0, 8, 0xab, 2, 3, 4, 5, 6, 7, 8};
    /* a descriptor longer than the page: nothing read past it */
    static const uint8_t truncated[] = {0, 0x83, 0, 40, 0x01, 0x03, 0, 200, 0x60, 0, 0};

    (void)state;
    assert_int_equal(storage_iscsi_scsi_id_from_vpd83(page, len, id), 0);
    assert_string_equal(id, "360000000000000000e00000000010001");
    assert_int_equal(storage_iscsi_scsi_id_from_vpd83(t10, sizeof t10, id), 0);
    assert_string_equal(id, "1IET_disk_1");
    assert_int_equal(storage_iscsi_scsi_id_from_vpd83(port_only, sizeof port_only, id), -ENODATA);
    assert_int_equal(storage_iscsi_scsi_id_from_vpd83(eui, sizeof eui, id), 0);
    assert_string_equal(id, "2ab02030405060708");
    assert_int_equal(storage_iscsi_scsi_id_from_vpd83(truncated, sizeof truncated, id), -ENODATA);
    assert_int_equal(storage_iscsi_scsi_id_from_vpd83(page, 3, id), -ENODATA);
    assert_int_equal(storage_iscsi_scsi_id_from_wwid("naa.60000000000000000E00000000010001\n", id), 0);
    assert_string_equal(id, "360000000000000000e00000000010001");
    assert_int_equal(storage_iscsi_scsi_id_from_wwid("t10.IET     VIRTUAL-DISK    \n", id), 0);
    assert_string_equal(id, "1IET_VIRTUAL-DISK");
    assert_int_equal(storage_iscsi_scsi_id_from_wwid("naa.60/../x", id), -ENODATA);
    assert_int_equal(storage_iscsi_scsi_id_from_wwid("", id), -ENODATA);
    free(page);
}

static void test_names(void **state) {
    (void)state;
    assert_true(storage_iscsi_iqn_valid("iqn.2010-10.org.openstack:volume-1"));
    assert_true(storage_iscsi_iqn_valid("eui.02004567A425678D"));
    assert_false(storage_iscsi_iqn_valid("-ofoo"));
    assert_false(storage_iscsi_iqn_valid("iqn.a b"));
    assert_false(storage_iscsi_iqn_valid("*"));
    assert_true(storage_iscsi_scsi_id_valid("360000000000000000e00000000010001"));
    assert_false(storage_iscsi_scsi_id_valid("../../etc"));
    assert_false(storage_iscsi_scsi_id_valid("a/b"));
    assert_false(storage_iscsi_scsi_id_valid(""));
}

static void put(const char *dir, const char *name, const void *data, size_t len) {
    char *p = NULL;
    FILE *f;

    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    free(p);
}

static char *mkdirs(const char *root, const char *rel) {
    char *p = NULL, *cmd = NULL;

    assert_true(asprintf(&p, "%s/%s", root, rel) > 0);
    assert_true(asprintf(&cmd, "mkdir -p '%s'", p) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    return p;
}

/* A session to iqn with LUN 0 (tgt's controller: no disk), LUN 1 (sdb, from the VPD page) and LUN 2 (sdc, wwid only). */
static void test_sysfs_luns(void **state) {
    char root[] = "/tmp/xenapid-iscsi-XXXXXX", *s, *lun0, *lun1, *lun2, *b1, *b2, *xml = NULL, *cmd = NULL;
    size_t len = 0, n = 0;
    uint8_t *page = (uint8_t *)golden("vpd_pg83_tgt.bin", &len);
    static const uint8_t pg80[] = {0, 0x80, 0, 6, 'b', 'e', 'a', 'f', '1', '1'};
    storage_iscsi_lun *l = NULL;

    (void)state;
    assert_non_null(mkdtemp(root));
    s = mkdirs(root, "class/iscsi_session/session3");
    put(s, "targetname", "iqn.2026-12.test.xenapid:lun1\n", 30);
    lun0 = mkdirs(root, "class/iscsi_session/session3/device/target2:0:0/2:0:0:0");
    put(lun0, "vendor", "IET     \n", 9);
    lun1 = mkdirs(root, "class/iscsi_session/session3/device/target2:0:0/2:0:0:1");
    put(lun1, "vendor", "IET     \n", 9);
    put(lun1, "vpd_pg83", page, len);
    put(lun1, "vpd_pg80", pg80, sizeof pg80);
    b1 = mkdirs(root, "class/iscsi_session/session3/device/target2:0:0/2:0:0:1/block/sdb");
    put(b1, "size", "131072\n", 7);
    lun2 = mkdirs(root, "class/iscsi_session/session3/device/target2:0:0/2:0:0:2");
    put(lun2, "wwid", "naa.60000000000000000e00000000010002\n", 37);
    b2 = mkdirs(root, "class/iscsi_session/session3/device/target2:0:0/2:0:0:2/block/sdc");
    put(b2, "size", "2048\n", 5);
    /* another target's session is not this SR's */
    free(mkdirs(root, "class/iscsi_session/session4/device/target3:0:0/3:0:0:1/block/sdd"));
    put(root, "class/iscsi_session/session4/targetname", "iqn.2026-12.other:x\n", 20);

    assert_true(storage_iscsi_session_exists(root, "iqn.2026-12.test.xenapid:lun1"));
    assert_false(storage_iscsi_session_exists(root, "iqn.2026-12.test.xenapid:none"));
    assert_int_equal(storage_iscsi_find_luns(root, "iqn.2026-12.test.xenapid:lun1", &l, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(l[0].scsi_id, "360000000000000000e00000000010001");
    assert_string_equal(l[0].dev, "sdb");
    assert_string_equal(l[0].vendor, "IET");
    assert_string_equal(l[0].serial, "beaf11");
    assert_int_equal(l[0].lun, 1);
    assert_int_equal(l[0].size, 64 << 20);
    assert_string_equal(l[1].scsi_id, "360000000000000000e00000000010002");
    assert_string_equal(l[1].vendor, "");
    assert_int_equal(l[1].size, 1 << 20);
    /* the XML writer escapes what a target may name itself */
    free(l[1].vendor);
    l[1].vendor = strdup("A&B");
    {
        char *want = golden("luns.xml", NULL), *empty = golden("luns_empty.xml", NULL);
        assert_int_equal(storage_iscsi_luns_xml(l, n, &xml), 0);
        assert_string_equal(xml, want);
        free(xml);
        assert_int_equal(storage_iscsi_luns_xml(NULL, 0, &xml), 0);
        assert_string_equal(xml, empty);
        free(want);
        free(empty);
    }
    storage_iscsi_luns_free(l, n);
    /* no session: no LUNs, no error */
    assert_int_equal(storage_iscsi_find_luns(root, "iqn.2026-12.test.xenapid:none", &l, &n), 0);
    assert_int_equal(n, 0);
    storage_iscsi_luns_free(l, n);
    assert_int_equal(storage_iscsi_find_luns("/nonexistent", "iqn.2026-12.test.xenapid:lun1", &l, &n), 0);
    assert_int_equal(n, 0);
    storage_iscsi_luns_free(l, n);

    assert_true(asprintf(&cmd, "rm -rf '%s'", root) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(xml);
    free(s);
    free(lun0);
    free(lun1);
    free(lun2);
    free(b1);
    free(b2);
    free(page);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_discovery), cmocka_unit_test(test_bad_discovery), cmocka_unit_test(test_scsi_id),
        cmocka_unit_test(test_names),     cmocka_unit_test(test_sysfs_luns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
