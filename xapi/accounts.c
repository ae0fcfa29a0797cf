/* Local accounts: `name:hash` lines, like /etc/shadow (extra `:fields` after
 * the hash and `#` comment lines are kept as they are). Hashes are yescrypt
 * from libxcrypt. The file is only ever replaced whole (temporary file,
 * fsync, rename), so readers never see a partial file and need no lock;
 * writers serialise on flock(2) of the file's directory, which also works
 * between processes and between threads. */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <security/pam_appl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/log.h"
#include "xapi/accounts.h"

#define ROOT_USER "root"
#define GENERATED_PASSWORD_LEN 16
#define MAX_FILE_SIZE (1024 * 1024)

/* Checked against when the user does not exist, so that a failed login
 * costs the same whether or not the name is known. Its password is unknown. */
#define DUMMY_HASH "$y$j9T$2LFSGMm9mJ1qr8CaXFkha.$bpSO3Xq/Z2oN1D5LEjOJQoz.g40i.S3PGKsKBSYR9A/"

static inline void freep(void *p) {
    free(*(void **)p);
}
static inline void closep(int *fd) {
    if (*fd >= 0)
        close(*fd);
}
/* For buffers that held a password or a hash. */
static inline void erasep(char **p) {
    if (*p) {
        explicit_bzero(*p, strlen(*p));
        free(*p);
    }
}
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_erase_ _cleanup_(erasep)

/* In-process writers also take this: cheap, and keeps the order obvious. */
static pthread_mutex_t accounts_lock = PTHREAD_MUTEX_INITIALIZER;

static bool valid_user(const char *user) {
    return user && *user && !strpbrk(user, ":\n\r");
}

/* --- hashing ---------------------------------------------------------------- */

static int hash_password(const char *password, char **ret) {
    _cleanup_free_ char *salt = NULL;
    void *data = NULL;
    int size = 0;
    const char *h;
    char *copy = NULL;
    int rc;

    errno = 0;
    salt = crypt_gensalt_ra("$y$", 0, NULL, 0);
    if (!salt)
        return errno ? -errno : -EINVAL;
    errno = 0;
    h = crypt_ra(password, salt, &data, &size);
    if (!h || h[0] == '*') { /* "*0"/"*1": libxcrypt's failure tokens */
        rc = errno ? -errno : -EINVAL;
        goto out;
    }
    copy = strdup(h);
    if (!copy) {
        rc = -ENOMEM;
        goto out;
    }
    *ret = copy;
    rc = 0;
out:
    if (data) {
        explicit_bzero(data, (size_t)size);
        free(data);
    }
    return rc;
}

/* Compares every byte of the longer string, whatever differs where. */
static bool const_time_streq(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), n = la > lb ? la : lb;
    volatile unsigned char d = la != lb;

    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)((i < la ? a[i] : 0) ^ (i < lb ? b[i] : 0));
    return d == 0;
}

static int generate_password(char **ret) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char buf[64];
    char *pw = NULL;
    size_t n = 0;

    pw = malloc(GENERATED_PASSWORD_LEN + 1);
    if (!pw)
        return -ENOMEM;
    while (n < GENERATED_PASSWORD_LEN) {
        ssize_t got = getrandom(buf, sizeof buf, 0);

        if (got < 0) {
            int rc = -errno;

            if (rc == -EINTR)
                continue;
            explicit_bzero(pw, GENERATED_PASSWORD_LEN + 1);
            free(pw);
            return rc;
        }
        /* 248 = 4 * 62: rejecting the bytes above keeps every character equally likely. */
        for (ssize_t i = 0; i < got && n < GENERATED_PASSWORD_LEN; i++)
            if (buf[i] < 248)
                pw[n++] = alphabet[buf[i] % 62];
    }
    pw[n] = '\0';
    explicit_bzero(buf, sizeof buf);
    *ret = pw;
    return 0;
}

/* --- the file ----------------------------------------------------------------- */

/* The whole file, NUL-terminated. -ENOENT when missing. */
static int read_file(const char *path, char **ret, struct stat *ret_st) {
    _cleanup_close_ int fd = -1;
    char *buf = NULL;
    struct stat st;
    size_t len = 0;
    int rc;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    if (st.st_size > MAX_FILE_SIZE)
        return -EFBIG;
    buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return -ENOMEM;
    while (len < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto fail;
        }
        if (n == 0)
            break; /* shrank under us: cannot happen with rename-only writers */
        len += (size_t)n;
    }
    buf[len] = '\0';
    if (ret_st)
        *ret_st = st;
    *ret = buf;
    return 0;
fail:
    explicit_bzero(buf, (size_t)st.st_size + 1);
    free(buf);
    return rc;
}

/* The line of user in buf: its start and length (without the newline), or
 * false. Comment and blank lines never match. */
static bool find_user(const char *buf, const char *user, const char **ret_line, size_t *ret_len) {
    size_t ulen = strlen(user);

    for (const char *p = buf; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);

        if (*p != '#' && len > ulen && strncmp(p, user, ulen) == 0 && p[ulen] == ':') {
            *ret_line = p;
            *ret_len = len;
            return true;
        }
        p += len + (nl ? 1 : 0);
    }
    return false;
}

/* Writes content to path atomically: a temporary file in the same directory,
 * mode 0600, fsync'ed, renamed over path, then the directory fsync'ed. */
static int write_atomic(const char *path, const char *content) {
    _cleanup_free_ char *tmp = NULL, *dircopy = NULL;
    _cleanup_close_ int fd = -1, dfd = -1;
    size_t len = strlen(content), done = 0;
    int rc;

    if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0) {
        tmp = NULL;
        return -ENOMEM;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        free(tmp);
        tmp = NULL;
        return rc;
    }
    if (fchmod(fd, 0600) < 0) {
        rc = -errno;
        goto fail;
    }
    while (done < len) {
        ssize_t n = write(fd, content + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto fail;
        }
        done += (size_t)n;
    }
    if (fsync(fd) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = close(fd);
    fd = -1;
    if (rc < 0) {
        rc = -errno;
        goto fail;
    }
    if (rename(tmp, path) < 0) {
        rc = -errno;
        goto fail;
    }
    /* Make the rename itself durable. */
    dircopy = strdup(path);
    if (dircopy) {
        dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0)
            (void)fsync(dfd);
    }
    return 0;
fail:
    (void)unlink(tmp);
    return rc;
}

/* Serialises writers of path, in this process and others: an exclusive
 * flock(2) on its directory. Returns the fd to close, or -errno. */
static int lock_dir(const char *path) {
    _cleanup_free_ char *copy = strdup(path);
    int fd;

    if (!copy)
        return -ENOMEM;
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    while (flock(fd, LOCK_EX) < 0)
        if (errno != EINTR) {
            int rc = -errno;

            close(fd);
            return rc;
        }
    return fd;
}

/* The fields of an account line after the name: hash, then the roles (absent in
 * files from before roles), then anything else, kept as it is. */
typedef struct account_fields {
    const char *hash, *roles, *rest; /* rest: from its leading ':' to the end of the line, or "" */
    size_t hash_len, roles_len, rest_len;
    bool has_roles;
} account_fields;

static void split_line(const char *line, size_t len, size_t ulen, account_fields *ret) {
    const char *p = line + ulen + 1, *end = line + len, *c;

    memset(ret, 0, sizeof *ret);
    ret->hash = p;
    c = memchr(p, ':', (size_t)(end - p));
    ret->hash_len = (size_t)((c ? c : end) - p);
    ret->rest = "";
    if (!c)
        return;
    p = c + 1;
    ret->has_roles = true;
    ret->roles = p;
    c = memchr(p, ':', (size_t)(end - p));
    ret->roles_len = (size_t)((c ? c : end) - p);
    if (c) {
        ret->rest = c;
        ret->rest_len = (size_t)(end - c);
    }
}

/* Rewrites path with user's line replaced (in place) or appended; a NULL hash
 * or roles keeps the line's own. Called with the locks held; old is the
 * current content (NULL: no file). -ENOENT when a new line would have no hash. */
static int put_user(const char *path, const char *old, const char *user, const char *hash, const char *roles) {
    _cleanup_erase_ char *content = NULL;
    const char *line = NULL;
    size_t oldlen = old ? strlen(old) : 0, linelen = 0;
    account_fields f = {.hash = "", .rest = ""};
    bool found = old && find_user(old, user, &line, &linelen);
    bool need_nl = oldlen > 0 && old[oldlen - 1] != '\n';
    int n;

    if (found)
        split_line(line, linelen, strlen(user), &f);
    else if (!hash)
        return -ENOENT;
    if (hash) {
        f.hash = hash;
        f.hash_len = strlen(hash);
    }
    if (roles) {
        f.roles = roles;
        f.roles_len = strlen(roles);
        f.has_roles = true;
    }
    if (found)
        n = asprintf(&content, "%.*s%s:%.*s%s%.*s%.*s%s", (int)(line - old), old, user, (int)f.hash_len, f.hash,
                     f.has_roles ? ":" : "", (int)f.roles_len, f.has_roles ? f.roles : "", (int)f.rest_len, f.rest,
                     line + linelen);
    else
        n = asprintf(&content, "%s%s%s:%s%s%s\n", old ? old : "", need_nl ? "\n" : "", user, hash,
                     f.has_roles ? ":" : "", f.has_roles ? f.roles : "");
    if (n < 0) {
        content = NULL;
        return -ENOMEM;
    }
    return write_atomic(path, content);
}

/* Runs put_user under the locks on the current content. */
static int update_user(const char *path, const char *user, const char *password, const char *roles) {
    _cleanup_erase_ char *old = NULL, *hash = NULL;
    _cleanup_close_ int lock = -1;
    int rc;

    if (password) {
        rc = hash_password(password, &hash);
        if (rc < 0)
            return rc;
    }
    pthread_mutex_lock(&accounts_lock);
    lock = lock_dir(path);
    if (lock < 0) {
        rc = lock;
        goto out;
    }
    rc = read_file(path, &old, NULL);
    if (rc < 0 && rc != -ENOENT)
        goto out;
    rc = put_user(path, old, user, hash, roles);
out:
    pthread_mutex_unlock(&accounts_lock);
    return rc;
}

/* --- the API ------------------------------------------------------------------- */

static bool valid_roles(const char *roles) {
    return !strpbrk(roles, ":\n\r");
}

int xapi_accounts_set(const char *path, const char *user, const char *password) {
    if (!path || !valid_user(user) || !password || !*password)
        return -EINVAL;
    return update_user(path, user, password, NULL);
}

int xapi_accounts_add(const char *path, const char *user, const char *password, const char *roles) {
    if (!path || !valid_user(user) || !password || !*password || !roles || !valid_roles(roles))
        return -EINVAL;
    return update_user(path, user, password, roles);
}

int xapi_accounts_set_roles(const char *path, const char *user, const char *roles) {
    if (!path || !valid_user(user) || !roles || !valid_roles(roles))
        return -EINVAL;
    return update_user(path, user, NULL, roles);
}

int xapi_accounts_ensure(const char *path, const char *password, char **ret_generated) {
    _cleanup_erase_ char *old = NULL, *generated = NULL;
    _cleanup_close_ int lock = -1;
    const char *line;
    size_t linelen;
    struct stat st;
    int rc;

    if (!path)
        return -EINVAL;
    pthread_mutex_lock(&accounts_lock);
    lock = lock_dir(path);
    if (lock < 0) {
        rc = lock;
        goto out;
    }
    rc = read_file(path, &old, &st);
    if (rc < 0 && rc != -ENOENT)
        goto out;
    if (rc == 0 && (st.st_mode & 077)) {
        /* Hashes are secrets too: tighten what someone else loosened. */
        if (chmod(path, 0600) == 0)
            log_notice("accounts: %s was readable by others; its mode is now 0600", path);
        else
            log_warning("accounts: %s is readable by others and cannot be made 0600: %s", path,
                        strerror(errno));
    }
    if (old && find_user(old, ROOT_USER, &line, &linelen)) {
        if (ret_generated)
            *ret_generated = NULL;
        rc = 0;
        goto out;
    }

    if (!password || !*password) {
        if (!ret_generated) {
            rc = -EINVAL; /* a generated password nobody could see would lock root out */
            goto out;
        }
        rc = generate_password(&generated);
        if (rc < 0)
            goto out;
        password = generated;
    }
    {
        _cleanup_erase_ char *hash = NULL;

        rc = hash_password(password, &hash);
        if (rc == 0)
            rc = put_user(path, old, ROOT_USER, hash, NULL);
    }
    if (rc < 0)
        goto out;
    if (old)
        log_notice("accounts: added the account '" ROOT_USER "' to %s", path);
    if (ret_generated) {
        *ret_generated = generated;
        generated = NULL;
    }
out:
    pthread_mutex_unlock(&accounts_lock);
    return rc;
}

int xapi_accounts_authenticate(const char *path, const char *user, const char *password, char **ret_roles) {
    _cleanup_erase_ char *buf = NULL, *hash = NULL;
    const char *line = NULL, *stored = DUMMY_HASH;
    account_fields f = {0};
    void *data = NULL;
    int size = 0;
    const char *computed;
    bool found = false, match;

    if (!path || !password)
        return -EINVAL;
    if (valid_user(user) && read_file(path, &buf, NULL) == 0) {
        size_t linelen;

        if (find_user(buf, user, &line, &linelen)) {
            split_line(line, linelen, strlen(user), &f);
            hash = strndup(f.hash, f.hash_len);
            /* Empty, "!..." (locked) and "*" (no password) never match. */
            if (hash && hash[0] && hash[0] != '!' && hash[0] != '*') {
                stored = hash;
                found = true;
            }
        }
    }
    /* Always hash, so that unknown users cost as much as wrong passwords. */
    computed = crypt_ra(password, stored, &data, &size);
    match = found && computed && computed[0] != '*' && const_time_streq(computed, stored);
    if (data) {
        explicit_bzero(data, (size_t)size);
        free(data);
    }
    if (!match)
        return found ? -EACCES : -ENOENT;
    if (ret_roles) {
        *ret_roles = NULL;
        if (f.has_roles && !(*ret_roles = strndup(f.roles, f.roles_len)))
            return -ENOMEM;
    }
    return 0;
}

bool xapi_accounts_verify(const char *path, const char *user, const char *password) {
    return xapi_accounts_authenticate(path, user, password, NULL) == 0;
}

int xapi_accounts_list(const char *path, int (*fn)(void *ud, const char *user, const char *roles), void *ud) {
    _cleanup_erase_ char *buf = NULL;
    int rc = read_file(path, &buf, NULL);

    if (rc < 0)
        return rc;
    for (char *p = buf; *p;) {
        char *nl = strchr(p, '\n'), *colon;
        size_t len = nl ? (size_t)(nl - p) : strlen(p);

        if (nl)
            *nl = '\0';
        colon = strchr(p, ':');
        if (*p != '#' && colon && colon > p) {
            account_fields f;
            char *roles = NULL;

            *colon = '\0';
            split_line(p, len, strlen(p), &f);
            if (f.has_roles && !(roles = strndup(f.roles, f.roles_len)))
                return -ENOMEM;
            rc = fn(ud, p, roles);
            free(roles);
            if (rc < 0)
                return rc;
        }
        p += len + (nl ? 1 : 0);
    }
    return 0;
}

/* --- host users through PAM ---------------------------------------------------- */

/* Answers PAM's password prompts with the password; other prompts get nothing. */
static int pam_conversation(int n, const struct pam_message **msgs, struct pam_response **ret, void *password) {
    struct pam_response *r = calloc((size_t)n, sizeof *r);

    if (!r)
        return PAM_BUF_ERR;
    for (int i = 0; i < n; i++)
        if (msgs[i]->msg_style == PAM_PROMPT_ECHO_OFF && !(r[i].resp = strdup(password))) {
            for (int k = 0; k < i; k++)
                free(r[k].resp);
            free(r);
            return PAM_BUF_ERR;
        }
    *ret = r;
    return PAM_SUCCESS;
}

int xapi_accounts_pam_authenticate(const char *service, const char *user, const char *password) {
    struct pam_conv conv = {pam_conversation, (void *)password};
    pam_handle_t *pamh = NULL;
    int prc;

    if (!service || !*service || !valid_user(user) || !password)
        return -EINVAL;
    prc = pam_start(service, user, &conv, &pamh);
    if (prc != PAM_SUCCESS)
        return -EIO;
    prc = pam_authenticate(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    if (prc == PAM_SUCCESS)
        prc = pam_acct_mgmt(pamh, PAM_SILENT);
    pam_end(pamh, prc);
    return prc == PAM_SUCCESS ? 0 : -EACCES;
}
