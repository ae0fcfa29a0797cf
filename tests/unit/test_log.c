/* agent/log.c on stderr: "xenapid[PID]: LEVEL: message" lines, the pid
 * right in the process and in a forked child, asked of the kernel once per
 * process (the test's getpid counts the calls; its definition comes before
 * glibc's for the static core it links), and messages above the level
 * dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/log.h"

static int getpid_calls;

pid_t getpid(void) {
    __atomic_fetch_add(&getpid_calls, 1, __ATOMIC_RELAXED);
    return (pid_t)syscall(SYS_getpid);
}

/* What the calls in between wrote on stderr (a temporary file for the time). */
static FILE *capture;
static int saved_stderr = -1;

static void capture_begin(void) {
    capture = tmpfile();
    assert_non_null(capture);
    fflush(stderr);
    saved_stderr = dup(2);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(capture), 2) == 2);
}

static char *capture_end(void) {
    static char text[8192];
    size_t n;

    fflush(stderr);
    assert_true(dup2(saved_stderr, 2) == 2);
    close(saved_stderr);
    rewind(capture);
    n = fread(text, 1, sizeof text - 1, capture);
    text[n] = '\0';
    fclose(capture);
    return text;
}

static void test_lines_carry_the_pid_asked_once(void **state) {
    char want[64], *out;
    int calls;

    (void)state;
    agent_log_open("stderr", LOG_INFO);
    capture_begin();
    log_info("first %d", 1);
    calls = getpid_calls;
    for (int i = 0; i < 10; i++)
        log_notice("more %d", i);
    out = capture_end();
    assert_int_equal(getpid_calls, calls); /* ten lines, no more getpid */
    snprintf(want, sizeof want, "xenapid[%ld]: info: first 1\n", (long)syscall(SYS_getpid));
    assert_int_equal(strncmp(out, want, strlen(want)), 0);
    snprintf(want, sizeof want, "xenapid[%ld]: notice: more 9\n", (long)syscall(SYS_getpid));
    assert_non_null(strstr(out, want));
}

static void test_a_forked_child_logs_its_own_pid(void **state) {
    char want[64], *out;
    pid_t child;
    int status;

    (void)state;
    agent_log_open("stderr", LOG_INFO);
    log_info("the parent's pid asked"); /* before the fork: the child must not reuse it */
    capture_begin();
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        log_info("from the child");
        fflush(stderr);
        _exit(0);
    }
    assert_int_equal(waitpid(child, &status, 0), child);
    out = capture_end();
    snprintf(want, sizeof want, "xenapid[%ld]: info: from the child\n", (long)child);
    assert_string_equal(out, want);
}

static void test_lines_above_the_level_are_dropped(void **state) {
    char *out;

    (void)state;
    agent_log_open("stderr", LOG_INFO);
    capture_begin();
    log_debug("not shown");
    agent_log_set_level(LOG_DEBUG);
    log_debug("shown");
    agent_log_set_level(LOG_INFO);
    out = capture_end();
    assert_null(strstr(out, "not shown"));
    assert_non_null(strstr(out, ": debug: shown\n"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_carry_the_pid_asked_once),
        cmocka_unit_test(test_a_forked_child_logs_its_own_pid),
        cmocka_unit_test(test_lines_above_the_level_are_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
