/* Unit tests: the names and modes network/ gives the host's devices. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/config.h"
#include "network/internal.h"
#include "network/netlink.h"

static void test_vlan_device_names(void **state) {
    char out[IF_NAMESIZE];

    (void)state;
    assert_int_equal(net_vlan_device_name("eth0", 100, out), 0);
    assert_string_equal(out, "eth0.100");
    assert_int_equal(net_vlan_device_name("bond0", 0, out), 0);
    assert_string_equal(out, "bond0.0");
    assert_int_equal(net_vlan_device_name("eth1", 4094, out), 0);
    assert_string_equal(out, "eth1.4094");
    assert_int_equal(net_vlan_device_name("eth1", 4095, out), -EINVAL);
    assert_int_equal(net_vlan_device_name("eth1", -1, out), -EINVAL);
    assert_int_equal(net_vlan_device_name("", 5, out), -EINVAL);
    /* 15 characters is the kernel's limit: a name that does not fit is refused, not cut */
    assert_int_equal(net_vlan_device_name("enp129s0f1np1", 7, out), 0);
    assert_string_equal(out, "enp129s0f1np1.7");
    assert_int_equal(net_vlan_device_name("enp129s0f1np1", 70, out), -ENAMETOOLONG);
}

static void test_bond_modes(void **state) {
    int m = -1;

    (void)state;
    assert_int_equal(net_bond_mode_linux("balance-slb", &m), 0);
    assert_int_equal(m, NETWORK_NL_BOND_TLB);
    assert_int_equal(m, 5); /* the kernel's BOND_MODE_TLB */
    assert_int_equal(net_bond_mode_linux("active-backup", &m), 0);
    assert_int_equal(m, 1);
    assert_int_equal(net_bond_mode_linux("lacp", &m), 0);
    assert_int_equal(m, 4); /* 802.3ad */
    m = -1;
    assert_int_equal(net_bond_mode_linux("balance-rr", &m), -EINVAL);
    assert_int_equal(net_bond_mode_linux("", &m), -EINVAL);
    assert_int_equal(m, -1);
}

static void test_host_networking_choice(void **state) {
    agent_config cfg = {0};
    xapi_server srv = {0};

    (void)state;
    srv.config = &cfg;
    cfg.backend = "sim";
    cfg.host_networking = "auto";
    assert_false(net_host_enabled(&srv));
    cfg.backend = "libxl";
    assert_true(net_host_enabled(&srv));
    cfg.host_networking = "off";
    assert_false(net_host_enabled(&srv));
    cfg.backend = "sim";
    cfg.host_networking = "on";
    assert_true(net_host_enabled(&srv));
}

static void test_netlink_refuses_bad_names(void **state) {
    (void)state;
    assert_int_equal(network_nl_bridge_ensure("", 1500, NULL), -EINVAL);
    assert_int_equal(network_nl_bridge_ensure("a-name-far-too-long", 1500, NULL), -EINVAL);
    assert_int_equal(network_nl_bridge_ensure("../x", 1500, NULL), -EINVAL);
    assert_int_equal(network_nl_vlan_ensure("eth0", 4095, "eth0.4095", NULL), -EINVAL);
    assert_int_equal(network_nl_link_delete("with space"), -EINVAL);
    assert_false(network_nl_link_exists("", NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vlan_device_names),
        cmocka_unit_test(test_bond_modes),
        cmocka_unit_test(test_host_networking_choice),
        cmocka_unit_test(test_netlink_refuses_bad_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
