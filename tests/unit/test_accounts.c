/* Unit tests: the local accounts file (creation of root, verification,
 * generated passwords, file mode, replacing accounts, malformed input). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/log.h"
#include "xapi/accounts.h"

typedef struct fixture {
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);

    assert_non_null(f);
    strcpy(f->dir, "/tmp/xenapid-test-accounts-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/accounts", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0;

    if (!f)
        return NULL;
    buf = calloc(1, 65536);
    assert_non_null(buf);
    len = fread(buf, 1, 65535, f);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

static void write_file(const char *path, const char *content, mode_t mode) {
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(content, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static mode_t file_mode(const char *path) {
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

/* Only the accounts file: no temporary file left behind. */
static void assert_dir_holds_only_accounts(const fixture *f) {
    DIR *d = opendir(f->dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            assert_string_equal(e->d_name, "accounts");
            n++;
        }
    closedir(d);
    assert_int_equal(n, 1);
}

static int count_lines_starting(const char *text, const char *prefix) {
    int n = 0;
    size_t len = strlen(prefix);

    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, len) == 0)
            n++;
    return n;
}

/* --- ensure ------------------------------------------------------------------ */

static void test_ensure_creates_root_with_password(void **state) {
    fixture *f = *state;
    char *generated = (char *)"sentinel";
    char *content;

    assert_int_equal(xapi_accounts_ensure(f->path, "s3cret-Pass", &generated), 0);
    assert_null(generated);
    assert_int_equal(file_mode(f->path), 0600);
    content = slurp(f->path);
    assert_non_null(content);
    assert_int_equal(strncmp(content, "root:$y$", 8), 0);
    assert_non_null(strchr(content, '\n'));
    assert_null(strstr(content, "s3cret-Pass")); /* never in clear */
    free(content);
    assert_dir_holds_only_accounts(f);

    assert_true(xapi_accounts_verify(f->path, "root", "s3cret-Pass"));
    assert_false(xapi_accounts_verify(f->path, "root", "s3cret-pass"));
    assert_false(xapi_accounts_verify(f->path, "root", "s3cret-Pass "));
    assert_false(xapi_accounts_verify(f->path, "root", ""));
    assert_false(xapi_accounts_verify(f->path, "root", NULL));
    assert_false(xapi_accounts_verify(f->path, "Root", "s3cret-Pass"));
    assert_false(xapi_accounts_verify(f->path, "nobody", "s3cret-Pass"));
}

static void test_ensure_generates_password(void **state) {
    fixture *f = *state;
    char *generated = NULL, *again = (char *)"sentinel", *before, *after;

    assert_int_equal(xapi_accounts_ensure(f->path, NULL, &generated), 0);
    assert_non_null(generated);
    assert_int_equal(strlen(generated), 16);
    for (const char *p = generated; *p; p++)
        assert_true(isalnum((unsigned char)*p));
    assert_int_equal(file_mode(f->path), 0600);
    assert_true(xapi_accounts_verify(f->path, "root", generated));
    assert_false(xapi_accounts_verify(f->path, "root", "wrong"));

    /* Already there: nothing generated, nothing rewritten. */
    before = slurp(f->path);
    assert_int_equal(xapi_accounts_ensure(f->path, "other", &again), 0);
    assert_null(again);
    after = slurp(f->path);
    assert_string_equal(before, after);
    assert_true(xapi_accounts_verify(f->path, "root", generated));
    assert_false(xapi_accounts_verify(f->path, "root", "other"));
    free(before);
    free(after);
    free(generated);
}

static void test_ensure_empty_password_generates(void **state) {
    fixture *f = *state;
    char *generated = NULL;

    assert_int_equal(xapi_accounts_ensure(f->path, "", &generated), 0);
    assert_non_null(generated);
    assert_true(xapi_accounts_verify(f->path, "root", generated));
    assert_false(xapi_accounts_verify(f->path, "root", ""));
    free(generated);
}

static void test_generated_passwords_differ(void **state) {
    fixture *f = *state;
    char path2[160];
    char *a = NULL, *b = NULL;

    snprintf(path2, sizeof path2, "%s/accounts2", f->dir);
    assert_int_equal(xapi_accounts_ensure(f->path, NULL, &a), 0);
    assert_int_equal(xapi_accounts_ensure(path2, NULL, &b), 0);
    assert_string_not_equal(a, b);
    assert_false(xapi_accounts_verify(f->path, "root", b));
    assert_false(xapi_accounts_verify(path2, "root", a));
    free(a);
    free(b);
}

static void test_ensure_needs_somewhere_to_put_a_generated_password(void **state) {
    fixture *f = *state;

    assert_int_equal(xapi_accounts_ensure(f->path, NULL, NULL), -EINVAL);
    assert_int_equal(access(f->path, F_OK), -1);
    /* With a password, ret_generated is not needed. */
    assert_int_equal(xapi_accounts_ensure(f->path, "pw", NULL), 0);
    assert_true(xapi_accounts_verify(f->path, "root", "pw"));
}

static void test_ensure_adds_root_to_existing_file(void **state) {
    fixture *f = *state;
    char *generated = NULL, *content;

    assert_int_equal(xapi_accounts_set(f->path, "alice", "alice-pw"), 0);
    assert_int_equal(chmod(f->path, 0644), 0); /* loosened by someone */
    assert_int_equal(xapi_accounts_ensure(f->path, "root-pw", &generated), 0);
    assert_null(generated);
    assert_int_equal(file_mode(f->path), 0600);
    assert_true(xapi_accounts_verify(f->path, "root", "root-pw"));
    assert_true(xapi_accounts_verify(f->path, "alice", "alice-pw"));
    content = slurp(f->path);
    assert_int_equal(count_lines_starting(content, "alice:"), 1);
    assert_int_equal(count_lines_starting(content, "root:"), 1);
    free(content);
}

static void test_ensure_missing_directory_fails(void **state) {
    fixture *f = *state;
    char path[200];
    char *generated = NULL;

    snprintf(path, sizeof path, "%s/no/such/dir/accounts", f->dir);
    assert_int_equal(xapi_accounts_ensure(path, "pw", &generated), -ENOENT);
    assert_null(generated);
}

/* --- set ------------------------------------------------------------------------ */

static void test_set_adds_and_replaces(void **state) {
    fixture *f = *state;
    char *generated = NULL, *content;

    assert_int_equal(xapi_accounts_ensure(f->path, "root-pw", &generated), 0);
    assert_int_equal(xapi_accounts_set(f->path, "alice", "first"), 0);
    assert_true(xapi_accounts_verify(f->path, "alice", "first"));
    assert_int_equal(xapi_accounts_set(f->path, "alice", "second"), 0);
    assert_false(xapi_accounts_verify(f->path, "alice", "first"));
    assert_true(xapi_accounts_verify(f->path, "alice", "second"));
    assert_true(xapi_accounts_verify(f->path, "root", "root-pw"));

    /* Replacing root's password (session.change_password). */
    assert_int_equal(xapi_accounts_set(f->path, "root", "new-root-pw"), 0);
    assert_false(xapi_accounts_verify(f->path, "root", "root-pw"));
    assert_true(xapi_accounts_verify(f->path, "root", "new-root-pw"));
    assert_true(xapi_accounts_verify(f->path, "alice", "second"));

    content = slurp(f->path);
    assert_int_equal(count_lines_starting(content, "root:"), 1);
    assert_int_equal(count_lines_starting(content, "alice:"), 1);
    assert_int_equal(strncmp(content, "root:", 5), 0); /* replaced in place */
    free(content);
    assert_int_equal(file_mode(f->path), 0600);
    assert_dir_holds_only_accounts(f);
}

static void test_set_keeps_other_lines(void **state) {
    fixture *f = *state;
    char *content;

    /* A hand-edited file: comments, a locked account, extra fields, no final newline. */
    write_file(f->path,
               "# accounts\n"
               "bob:!:19000::\n"
               "carol:$y$j9T$2LFSGMm9mJ1qr8CaXFkha.$bpSO3Xq/Z2oN1D5LEjOJQoz.g40i.S3PGKsKBSYR9A/:19000:0\n"
               "dave:*",
               0600);
    assert_int_equal(xapi_accounts_set(f->path, "carol", "carol-pw"), 0);
    assert_int_equal(xapi_accounts_set(f->path, "erin", "erin-pw"), 0);
    content = slurp(f->path);
    assert_int_equal(strncmp(content, "# accounts\nbob:!:19000::\ncarol:$y$", 34), 0);
    assert_non_null(strstr(content, ":19000:0\ndave:*\nerin:$y$"));
    free(content);
    assert_true(xapi_accounts_verify(f->path, "carol", "carol-pw"));
    assert_true(xapi_accounts_verify(f->path, "erin", "erin-pw"));
    /* Locked and password-less entries never match. */
    assert_false(xapi_accounts_verify(f->path, "bob", "!"));
    assert_false(xapi_accounts_verify(f->path, "bob", ""));
    assert_false(xapi_accounts_verify(f->path, "dave", "*"));
    assert_false(xapi_accounts_verify(f->path, "# accounts", ""));
}

static void test_invalid_names_and_passwords(void **state) {
    fixture *f = *state;

    assert_int_equal(xapi_accounts_set(f->path, "", "pw"), -EINVAL);
    assert_int_equal(xapi_accounts_set(f->path, "a:b", "pw"), -EINVAL);
    assert_int_equal(xapi_accounts_set(f->path, "a\nb", "pw"), -EINVAL);
    assert_int_equal(xapi_accounts_set(f->path, "a\rb", "pw"), -EINVAL);
    assert_int_equal(xapi_accounts_set(f->path, NULL, "pw"), -EINVAL);
    assert_int_equal(xapi_accounts_set(f->path, "alice", NULL), -EINVAL);
    assert_int_equal(xapi_accounts_set(f->path, "alice", ""), -EINVAL);
    assert_int_equal(xapi_accounts_set(NULL, "alice", "pw"), -EINVAL);
    assert_int_equal(access(f->path, F_OK), -1);

    assert_int_equal(xapi_accounts_set(f->path, "alice", "pw"), 0);
    assert_false(xapi_accounts_verify(f->path, "alice:pw", "pw"));
    assert_false(xapi_accounts_verify(f->path, "", "pw"));
    assert_false(xapi_accounts_verify(f->path, NULL, "pw"));
    assert_false(xapi_accounts_verify(NULL, "alice", "pw"));
    /* A prefix of a name is not the name. */
    assert_false(xapi_accounts_verify(f->path, "alic", "pw"));
    assert_true(xapi_accounts_verify(f->path, "alice", "pw"));
}

static void test_verify_missing_file(void **state) {
    fixture *f = *state;

    assert_false(xapi_accounts_verify(f->path, "root", "anything"));
    assert_false(xapi_accounts_verify("/nonexistent/dir/accounts", "root", ""));
}

static void test_passwords_with_odd_characters(void **state) {
    fixture *f = *state;
    const char *pw = "p\xc3\xa4ss: word\twith\nnewline and $y$ and a very long tail "
                     "0123456789012345678901234567890123456789012345678901234567890123456789";

    assert_int_equal(xapi_accounts_set(f->path, "root", pw), 0);
    assert_true(xapi_accounts_verify(f->path, "root", pw));
    assert_false(xapi_accounts_verify(f->path, "root", "p\xc3\xa4ss: word"));
}

/* --- concurrent writers ---------------------------------------------------------- */

typedef struct writer {
    const char *path;
    int id;
    int rc;
} writer;

static void *write_accounts(void *p) {
    writer *w = p;

    for (int i = 0; i < 3 && w->rc == 0; i++) {
        char user[32], pw[32];

        snprintf(user, sizeof user, "user%d", w->id);
        snprintf(pw, sizeof pw, "pw%d-%d", w->id, i);
        w->rc = xapi_accounts_set(w->path, user, pw);
    }
    return NULL;
}

static void test_concurrent_writers_lose_nothing(void **state) {
    fixture *f = *state;
    pthread_t threads[6];
    writer w[6];
    char *content;

    for (int i = 0; i < 6; i++) {
        w[i] = (writer){f->path, i, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, write_accounts, &w[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(w[i].rc, 0);
    }
    content = slurp(f->path);
    for (int i = 0; i < 6; i++) {
        char user[32], pw[32];

        snprintf(user, sizeof user, "user%d:", i);
        assert_int_equal(count_lines_starting(content, user), 1);
        user[strlen(user) - 1] = '\0';
        snprintf(pw, sizeof pw, "pw%d-2", i);
        assert_true(xapi_accounts_verify(f->path, user, pw));
    }
    free(content);
    assert_dir_holds_only_accounts(f);
}

/* Two processes (the daemon and a setup tool, say) serialise on the file lock. */
static void test_concurrent_processes_lose_nothing(void **state) {
    fixture *f = *state;
    pid_t pid;
    int status;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        writer w = {f->path, 100, 0};

        for (int i = 0; i < 4; i++) {
            w.id = 100 + i;
            write_accounts(&w);
        }
        _exit(w.rc == 0 ? 0 : 1);
    }
    for (int i = 0; i < 4; i++) {
        writer w = {f->path, 200 + i, 0};

        write_accounts(&w);
        assert_int_equal(w.rc, 0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    for (int base = 100; base <= 200; base += 100)
        for (int i = 0; i < 4; i++) {
            char user[32], pw[32];

            snprintf(user, sizeof user, "user%d", base + i);
            snprintf(pw, sizeof pw, "pw%d-2", base + i);
            assert_true(xapi_accounts_verify(f->path, user, pw));
        }
    assert_dir_holds_only_accounts(f);
}

/* --- roles ------------------------------------------------------------------ */

static void test_add_writes_roles_and_authenticate_returns_them(void **state) {
    fixture *f = *state;
    char *roles = (char *)"sentinel", *content;

    assert_int_equal(xapi_accounts_add(f->path, "ops", "pw-1", "vm-operator"), 0);
    assert_int_equal(xapi_accounts_authenticate(f->path, "ops", "pw-1", &roles), 0);
    assert_string_equal(roles, "vm-operator");
    free(roles);
    assert_int_equal(xapi_accounts_authenticate(f->path, "ops", "wrong", &roles), -EACCES);
    assert_int_equal(xapi_accounts_authenticate(f->path, "nobody", "pw-1", &roles), -ENOENT);
    content = slurp(f->path);
    assert_int_equal(strncmp(content, "ops:$y$", 7), 0);
    assert_non_null(strstr(content, ":vm-operator\n"));
    free(content);
}

static void test_line_without_roles_reads_as_none_given(void **state) {
    fixture *f = *state;
    char *roles = (char *)"sentinel", *content, *line;

    /* A file from before roles: name:hash only. */
    assert_int_equal(xapi_accounts_set(f->path, "old", "pw-2"), 0);
    assert_int_equal(xapi_accounts_authenticate(f->path, "old", "pw-2", &roles), 0);
    assert_null(roles);
    /* Changing the password keeps the line as it was otherwise. */
    assert_int_equal(xapi_accounts_set(f->path, "old", "pw-3"), 0);
    assert_int_equal(xapi_accounts_authenticate(f->path, "old", "pw-3", &roles), 0);
    assert_null(roles);
    content = slurp(f->path);
    line = strstr(content, "old:");
    assert_non_null(line);
    assert_null(strchr(line + 4, ':'));
    free(content);
}

static void test_set_roles_keeps_hash_and_later_fields(void **state) {
    fixture *f = *state;
    char *roles = NULL, *content;

    write_file(f->path, "# comment\n", 0600);
    assert_int_equal(xapi_accounts_add(f->path, "u", "pw-4", "read-only"), 0);
    assert_int_equal(xapi_accounts_set_roles(f->path, "u", "vm-admin,read-only"), 0);
    assert_int_equal(xapi_accounts_authenticate(f->path, "u", "pw-4", &roles), 0);
    assert_string_equal(roles, "vm-admin,read-only");
    free(roles);
    /* Changing the password keeps the roles. */
    assert_int_equal(xapi_accounts_set(f->path, "u", "pw-5"), 0);
    assert_int_equal(xapi_accounts_authenticate(f->path, "u", "pw-5", &roles), 0);
    assert_string_equal(roles, "vm-admin,read-only");
    free(roles);
    /* Fields after the roles stay as they are. */
    content = slurp(f->path);
    content[strlen(content) - 1] = '\0';
    strcat(content, ":extra\n");
    write_file(f->path, content, 0600);
    free(content);
    assert_int_equal(xapi_accounts_set_roles(f->path, "u", ""), 0);
    assert_int_equal(xapi_accounts_authenticate(f->path, "u", "pw-5", &roles), 0);
    assert_string_equal(roles, "");
    free(roles);
    content = slurp(f->path);
    assert_int_equal(strncmp(content, "# comment\nu:$y$", 15), 0);
    assert_non_null(strstr(content, "::extra\n"));
    free(content);
    assert_int_equal(xapi_accounts_set_roles(f->path, "missing", "read-only"), -ENOENT);
    assert_int_equal(xapi_accounts_set_roles(f->path, "u", "a:b"), -EINVAL);
    assert_int_equal(xapi_accounts_add(f->path, "v", "pw", "x\ny"), -EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ensure_creates_root_with_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ensure_generates_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ensure_empty_password_generates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generated_passwords_differ, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ensure_needs_somewhere_to_put_a_generated_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ensure_adds_root_to_existing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ensure_missing_directory_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_adds_and_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_keeps_other_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_names_and_passwords, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passwords_with_odd_characters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers_lose_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_processes_lose_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_writes_roles_and_authenticate_returns_them, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_without_roles_reads_as_none_given, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_roles_keeps_hash_and_later_fields, setup, teardown),
    };

    agent_log_open("stderr", LOG_WARNING);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
