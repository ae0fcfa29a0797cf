/* xenapid-account: manages the local accounts file of xenapid (the one its
 * configuration names): adds accounts with roles, changes roles and
 * passwords. Passwords are read from the first line of standard input, never
 * from the command line (where ps would show them). The running daemon reads
 * the file at each login: no restart is needed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "xapi/accounts.h"
#include "xapi/rbac.h"

static int usage(FILE *f) {
    fprintf(f, "Usage: xenapid-account [--config FILE] add USER ROLE[,ROLE...]   (password on stdin)\n"
               "       xenapid-account [--config FILE] roles USER ROLE[,ROLE...]\n"
               "       xenapid-account [--config FILE] passwd USER              (password on stdin)\n"
               "Roles: pool-admin, pool-operator, vm-power-admin, vm-admin, vm-operator, read-only.\n");
    return f == stdout ? EXIT_SUCCESS : EXIT_FAILURE;
}

static int read_password(char **ret) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);

    if (n <= 0) {
        free(line);
        return -EINVAL;
    }
    line[strcspn(line, "\r\n")] = '\0';
    if (!*line) {
        free(line);
        return -EINVAL;
    }
    *ret = line;
    return 0;
}

int main(int argc, char **argv) {
    agent_config cfg = {0};
    char *cfg_argv[4] = {"xenapid", NULL, NULL, NULL};
    char *password = NULL;
    const char *cmd, *user, *roles = NULL;
    unsigned mask;
    int i = 1, rc;

    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
        return usage(stdout);
    if (argc > 2 && strcmp(argv[1], "--config") == 0) {
        cfg_argv[1] = "--config";
        cfg_argv[2] = argv[2];
        i = 3;
    }
    if (argc - i < 2)
        return usage(stderr);
    cmd = argv[i];
    user = argv[i + 1];
    if (strcmp(cmd, "passwd") != 0) {
        if (argc - i != 3 || (strcmp(cmd, "add") != 0 && strcmp(cmd, "roles") != 0))
            return usage(stderr);
        roles = argv[i + 2];
        if (xapi_roles_parse(roles, &mask) < 0) {
            fprintf(stderr, "xenapid-account: unknown role in '%s'\n", roles);
            return EXIT_FAILURE;
        }
    } else if (argc - i != 2)
        return usage(stderr);
    if (agent_config_load(cfg_argv[1] ? 3 : 1, cfg_argv, &cfg) != 0)
        return EXIT_FAILURE;
    if (strcmp(cmd, "roles") != 0 && read_password(&password) < 0) {
        fprintf(stderr, "xenapid-account: expected the password on the first line of standard input\n");
        agent_config_free(&cfg);
        return EXIT_FAILURE;
    }
    if (strcmp(cmd, "add") == 0)
        rc = xapi_accounts_add(cfg.accounts_file, user, password, roles);
    else if (strcmp(cmd, "roles") == 0)
        rc = xapi_accounts_set_roles(cfg.accounts_file, user, roles);
    else
        rc = xapi_accounts_set(cfg.accounts_file, user, password);
    if (password) {
        explicit_bzero(password, strlen(password));
        free(password);
    }
    if (rc < 0)
        fprintf(stderr, "xenapid-account: %s: %s\n", cfg.accounts_file,
                rc == -ENOENT ? "no such account" : rc == -EINVAL ? "invalid user name" : strerror(-rc));
    agent_config_free(&cfg);
    return rc < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
