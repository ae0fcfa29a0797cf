/* The libxl backend's fork for libxl (vmops_libxl_fork, its childproc fork_replacement): the
 * child starts with no signal blocked, whatever the forking thread blocks. The daemon blocks
 * SIGTERM, SIGINT and SIGHUP on every thread (agent/main.c); QEMU forked by libxl with that
 * mask never took the SIGHUP of libxl's domain destroy (seen in the Xen lab: every destroyed
 * HVM domain's QEMU kept running). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#ifdef XENAPID_HAVE_LIBXL

#include "vmops/libxl_events.h"

/* The child exits 0 if its mask is empty and it can be ended by SIGHUP as QEMU is. */
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
