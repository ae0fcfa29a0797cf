/* "nfs": xapi's NFS SR (sm's NFSSR). The SR is the directory <sr uuid> of
 * the export device_config server:serverpath, mounted (soft, so I/O to a
 * server that stopped answering ends with an error instead of hanging for
 * ever) at <sr_mount_root>/<sr uuid> while its PBD is plugged; inside, it is
 * a VHD directory exactly as an ext SR (storage/vhd_dir.h). SR.create
 * mounts the export itself there for a moment to make the <sr uuid>
 * directory, as NFSSR does (unless its sm_config says nosubdir=true: then
 * the SR is the export itself). mount(8), umount(8) and showmount(8) (config
 * nfs_mount, nfs_umount, nfs_showmount) run as argv with the
 * storage_io_timeout time limit (storage/command.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/command.h"
#include "storage/internal.h"
#include "storage/vhd_dir.h"

#define NFS_MAX_PATH 1024
#define NFS_MAX_EXPORTS 256 /* exports listed by a probe */

char storage_nfs_mount[1024] = "mount";
char storage_nfs_umount[1024] = "umount";
char storage_nfs_showmount[1024] = "showmount";

/* Characters of a host name, an IPv4 or a bracketed IPv6 address. */
static bool server_valid(const char *s) {
    size_t n = strlen(s);

    if (n == 0 || n > 255 || s[0] == '-')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]") == n;
}

static bool serverpath_valid(const char *p) {
    size_t n = strlen(p);

    if (p[0] != '/' || n >= NFS_MAX_PATH - 40 || strstr(p, "/../") || (n >= 3 && !strcmp(p + n - 3, "/..")))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == ',' || p[i] == ':' || p[i] == 0x7f)
            return false;
    return true;
}

/* Extra mount options: a comma list of plain words (no space, nothing a mount helper could read as a flag). */
static bool options_valid(const char *o) {
    size_t n = strlen(o);

    return n < 256 && o[0] != '-' &&
           strspn(o, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=,._-:/") == n;
}

static int nfs_config_at(const xapi_value *dc, const xapi_value *sm_config, const char *sr_uuid,
                         const char *mount_root, storage_sr *ret, storage_err *e) {
    const char *server = storage_map_get(dc, "server"), *path = storage_map_get(dc, "serverpath");
    const char *vers = storage_map_get(dc, "nfsversion"), *extra = storage_map_get(dc, "options");
    const char *udp = storage_map_get(dc, "useUDP"), *nosubdir = storage_map_get(sm_config, "nosubdir");
    char *p = NULL, *dev = NULL, *opts = NULL;
    size_t n;

    if (!server || !*server)
        return storage_err_set(e, SM_ERR_CONFIG_SERVER_MISSING, EINVAL,
                               "The request is missing the server parameter", NULL);
    if (!server_valid(server))
        return storage_err_set(e, SM_ERR_INVALID_ARG, EINVAL, "Invalid argument", "server is not a host name");
    if (!path || !*path)
        return storage_err_set(e, SM_ERR_CONFIG_SERVER_PATH_MISSING, EINVAL,
                               "The request is missing the serverpath parameter", NULL);
    if (!serverpath_valid(path))
        return storage_err_set(e, SM_ERR_CONFIG_SERVER_PATH_BAD, EINVAL, "The serverpath argument is not valid",
                               "serverpath must be an absolute path without '..', spaces, ',' or ':'");
    if (vers && *vers && strcmp(vers, "3") && strcmp(vers, "4") && strcmp(vers, "4.0") && strcmp(vers, "4.1"))
        return storage_err_set(e, SM_ERR_NFS_VERSION, EINVAL, "Required NFS server version unsupported", vers);
    if (extra && *extra && !options_valid(extra))
        return storage_err_set(e, SM_ERR_INVALID_ARG, EINVAL, "Invalid argument",
                               "options must be a comma list of mount options");
    if (!sr_uuid || !storage_uuid_valid(sr_uuid) || !mount_root || mount_root[0] != '/')
        return storage_err_set(e, SM_ERR_CONFIG_SERVER_PATH_MISSING, EINVAL,
                               "The request is missing the serverpath parameter", NULL);
    n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    ret->nosubdir = nosubdir && strcmp(nosubdir, "true") == 0;
    /* sm's defaults: soft, 20 s timeo (deciseconds), 4 retransmissions, no directory attribute cache. */
    if (asprintf(&p, "%s/%s", mount_root, sr_uuid) < 0 ||
        (ret->nosubdir ? asprintf(&dev, "%s:%.*s", server, (int)n, path)
                       : asprintf(&dev, "%s:%.*s/%s", server, n == 1 ? 0 : (int)n, path, sr_uuid)) < 0 ||
        asprintf(&opts, "soft,proto=%s,vers=%s,acdirmin=0,acdirmax=0,timeo=200,retrans=4%s%s",
                 udp && !strcmp(udp, "true") ? "udp" : "tcp", vers && *vers ? vers : "3",
                 extra && *extra ? "," : "", extra && *extra ? extra : "") < 0)
        xapi_oom();
    ret->path = p;
    ret->device = dev;
    ret->options = opts;
    return 0;
}

/* The export itself (server:serverpath): the SR's device without its /<sr uuid>. */
static char *export_of(const storage_sr *sr) {
    size_t n = strlen(sr->device) - 37;
    char *x;

    if (sr->nosubdir)
        return xapi_strdup(sr->device);
    x = xapi_strndup(sr->device, n);

    if (n > 0 && x[n - 1] == ':') {
        free(x);
        if (asprintf(&x, "%.*s/", (int)n, sr->device) < 0)
            xapi_oom();
    }
    return x;
}

static int nfs_mount(const char *src, const char *at, const char *opts, storage_err *e) {
    const char *argv[] = {storage_nfs_mount, "-t", "nfs", "-o", opts, src, at, NULL};
    char out[400], *err = NULL;
    int rc = storage_mkdirs(at);

    if (rc < 0)
        return storage_err_set(e, SM_ERR_NFS_MOUNT, rc, "NFS mount error", strerror(-rc));
    if (storage_is_mountpoint(at))
        return 0;
    rc = storage_run(argv, (int)storage_io_timeout * 1000, NULL, &err);
    if (rc == -ETIME)
        snprintf(out, sizeof out, "mount of %s timed out after %u s", src, storage_io_timeout);
    else if (rc == -EIO)
        snprintf(out, sizeof out, "%s", *err ? err : "mount exited with an error");
    else if (rc < 0)
        snprintf(out, sizeof out, "mount: %s", strerror(-rc));
    free(err);
    if (rc < 0) {
        rmdir(at);
        return storage_err_set(e, SM_ERR_NFS_MOUNT, rc, "NFS mount error", out);
    }
    return 0;
}

/* Unmounts at (if mounted); a server that does not answer gets a lazy unmount at the time limit. */
static int nfs_umount(const char *at, storage_err *e) {
    const char *argv[] = {storage_nfs_umount, at, NULL}, *lazy[] = {storage_nfs_umount, "-l", at, NULL};
    char out[400], *err = NULL;
    int rc;

    if (!storage_is_mountpoint(at)) {
        rmdir(at);
        return 0;
    }
    rc = storage_run(argv, (int)storage_io_timeout * 1000, NULL, &err);
    if (rc == -ETIME) {
        free(err);
        rc = storage_run(lazy, (int)storage_io_timeout * 1000, NULL, &err);
    }
    snprintf(out, sizeof out, "%s", rc == -EIO ? err : rc < 0 ? strerror(-rc) : "");
    free(err);
    if (rc < 0)
        return storage_err_set(e, SM_ERR_NFS_UNMOUNT, rc, "NFS unmount error", out);
    rmdir(at);
    return 0;
}

/* The SR's directory in the export mounted at sr->path: made, or there and empty. */
static int make_sr_dir(const storage_sr *sr, storage_err *e) {
    char *dir = NULL;
    struct stat st;
    int rc = 0;

    if (asprintf(&dir, "%s/%s", sr->path, sr->uuid) < 0)
        xapi_oom();
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        rc = storage_err_set(e, SM_ERR_NFS_CREATE, errno, "NFS SR creation error", strerror(errno));
    else if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        rc = storage_err_set(e, SM_ERR_NFS_CREATE, ENOTDIR, "NFS SR creation error", "not a directory");
    else if (rmdir(dir) == 0 ? mkdir(dir, 0755) < 0 : errno == ENOTEMPTY || errno == EEXIST)
        rc = storage_err_set(e, SM_ERR_SR_EXISTS, EEXIST, "The SR already exists", "the directory is not empty");
    free(dir);
    return rc;
}

static int nfs_sr_create(const storage_sr *sr, storage_err *e) {
    char *x = export_of(sr);
    int rc = nfs_mount(x, sr->path, sr->options, e);

    if (rc == 0) {
        /* nosubdir: the SR is the export itself, which the mount found (sm checks no more). */
        if (!sr->nosubdir)
            rc = make_sr_dir(sr, e);
        nfs_umount(sr->path, &(storage_err){0});
    }
    free(x);
    return rc;
}

static int nfs_sr_attach(const storage_sr *sr, storage_err *e) {
    int rc = nfs_mount(sr->device, sr->path, sr->options, e);

    if (rc == 0 && access(sr->path, R_OK | W_OK | X_OK) < 0) {
        rc = storage_err_set(e, SM_ERR_SR_UNAVAILABLE, errno, "The SR is not available", strerror(errno));
        nfs_umount(sr->path, &(storage_err){0});
    }
    return rc;
}

static int nfs_sr_detach(const storage_sr *sr, storage_err *e) {
    return nfs_umount(sr->path, e);
}

/* The SR is unplugged: its directory is mounted again to remove the VDIs, then the export to remove it. */
static int nfs_sr_delete(const storage_sr *sr, char *const *locations, size_t n, storage_err *e) {
    char *x = export_of(sr), *dir = NULL;
    int rc = nfs_mount(sr->device, sr->path, sr->options, e);

    if (rc == 0) {
        rc = storage_unlink_vdis(sr, locations, n, e);
        if (rc == 0)
            storage_remove_parts(sr);
        if (nfs_umount(sr->path, rc < 0 ? &(storage_err){0} : e) < 0 && rc == 0)
            rc = -EIO;
    }
    /* nosubdir: the export itself stays, as sm leaves it. */
    if (rc == 0 && !sr->nosubdir)
        rc = nfs_mount(x, sr->path, sr->options, e);
    if (rc == 0 && !sr->nosubdir) {
        if (asprintf(&dir, "%s/%s", sr->path, sr->uuid) < 0)
            xapi_oom();
        if (rmdir(dir) < 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST)
            rc = storage_err_set(e, SM_ERR_NFS_DELETE, errno, "Failed to remove NFS mount point", strerror(errno));
        if (nfs_umount(sr->path, rc < 0 ? &(storage_err){0} : e) < 0 && rc == 0)
            rc = -EIO;
    }
    free(dir);
    free(x);
    return rc;
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else
            fputc(*s, f);
    }
}

/* Without serverpath sm fails ConfigServerPathMissing with the server's
 * exports (showmount -e) as its stderr, the third error parameter. */
static int probe_exports(const char *server, storage_err *e) {
    const char *argv[] = {storage_nfs_showmount, "--no-headers", "-e", server, NULL};
    char out[sizeof e->out], *save = NULL, *xml = NULL, *listing = NULL, *err = NULL;
    size_t len = 0, count = 0;
    int rc = storage_run(argv, (int)storage_io_timeout * 1000, &listing, &err);
    FILE *f;

    if (rc == -ETIME)
        snprintf(out, sizeof out, "showmount -e %s timed out after %u s", server, storage_io_timeout);
    else
        snprintf(out, sizeof out, "%s", rc == -EIO ? err : rc < 0 ? strerror(-rc) : listing);
    free(listing);
    free(err);
    if (rc < 0)
        return storage_err_set(e, SM_ERR_NFS_TARGET, rc, "Unable to detect an NFS service on this target.", out);
    f = open_memstream(&xml, &len);
    if (!f)
        xapi_oom();
    fputs("<?xml version=\"1.0\" ?>\n<nfs-exports>\n", f);
    for (char *line = strtok_r(out, "\n", &save); line && count < NFS_MAX_EXPORTS;
         line = strtok_r(NULL, "\n", &save), count++) {
        char *clients = line + strcspn(line, " \t");

        if (*clients)
            *clients++ = '\0';
        clients += strspn(clients, " \t");
        if (line[0] != '/')
            continue;
        fputs("\t<Export>\n\t\t<Target>", f);
        xml_text(f, server);
        fputs("</Target>\n\t\t<Path>", f);
        xml_text(f, line);
        fputs("</Path>\n\t\t<Accesslist>", f);
        xml_text(f, *clients ? clients : "*");
        fputs("</Accesslist>\n\t</Export>\n", f);
    }
    fputs("</nfs-exports>\n", f);
    if (fclose(f) != 0)
        xapi_oom();
    snprintf(e->out, sizeof e->out, "%s", xml);
    free(xml);
    return storage_err_set(e, SM_ERR_CONFIG_SERVER_PATH_MISSING, EINVAL,
                           "The request is missing the serverpath parameter", NULL);
}

/* With serverpath: the export mounted at <sr_mount_root>/probe, its uuid-named directories. */
static int nfs_sr_probe(const xapi_value *dc, const xapi_value *sm_config, char **ret_xml, storage_err *e) {
    const char *server = storage_map_get(dc, "server"), *path = storage_map_get(dc, "serverpath");
    char probe_uuid[37];
    storage_sr h = {0};
    char *x = NULL;
    int rc;

    if (server && *server && server_valid(server) && (!path || !*path))
        return probe_exports(server, e);
    /* Any uuid checks device_config as an SR of it would. */
    xapi_uuid_generate(probe_uuid);
    rc = nfs_config_at(dc, sm_config, probe_uuid, storage_mount_root, &h, e);
    if (rc < 0)
        return rc;
    free(h.path);
    if (asprintf(&h.path, "%s/probe", storage_mount_root) < 0)
        xapi_oom();
    x = export_of(&h);
    rc = nfs_mount(x, h.path, h.options, e);
    if (rc == 0) {
        rc = storage_dir_srlist_xml(h.path, ret_xml, e);
        nfs_umount(h.path, &(storage_err){0});
    }
    free(x);
    storage_sr_handle_free(&h);
    return rc;
}

const storage_driver storage_nfs_driver = {
    .type = "nfs",
    .description = "NFS SR: VHD files in a directory of an NFS export",
    .content_type = "user",
    STORAGE_VHD_DIR_OPS,
    .sr_config_at = nfs_config_at,
    .sr_create = nfs_sr_create,
    .sr_attach = nfs_sr_attach,
    .sr_detach = nfs_sr_detach,
    .sr_delete = nfs_sr_delete,
    .sr_probe = nfs_sr_probe,
};
