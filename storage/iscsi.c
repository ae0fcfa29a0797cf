/* iSCSI outputs and sysfs, parsed (storage/iscsi.h). Nothing here runs a
 * program: the iscsi driver runs iscsiadm and hands its output over. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/iscsi.h"
#include "xapi/value.h"

#define ISCSI_MAX_ATTR 4096 /* bytes of a sysfs attribute read (a VPD page is at most 4 + 65535, ids fit in far less) */
#define ISCSI_MAX_SESSIONS 1024

char storage_iscsiadm[1024] = "iscsiadm";
char storage_iscsi_sysfs_root[1024] = "/sys";

static bool iqn_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
           c == ':' || c == '_';
}

bool storage_iscsi_iqn_valid(const char *iqn) {
    size_t n = iqn ? strlen(iqn) : 0;

    if (n < 5 || n > 223 || (strncmp(iqn, "iqn.", 4) && strncmp(iqn, "eui.", 4) && strncmp(iqn, "naa.", 4)))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!iqn_char(iqn[i]))
            return false;
    return true;
}

bool storage_iscsi_scsi_id_valid(const char *id) {
    size_t n = id ? strlen(id) : 0;

    if (n == 0 || n > STORAGE_ISCSI_MAX_ID || id[0] == '.' || id[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return false;
    }
    return true;
}

/* ---- discovery ----------------------------------------------------------------------------- */

void storage_iscsi_portals_free(storage_iscsi_portal *p, size_t n) {
    for (size_t i = 0; p && i < n; i++) {
        free(p[i].address);
        free(p[i].iqn);
    }
    free(p);
}

/* "<address>:<port>,<tpgt> <iqn>" (IPv6 addresses in brackets). */
static int parse_record(const char *line, size_t len, storage_iscsi_portal *ret) {
    const char *sp = memchr(line, ' ', len), *comma, *colon = NULL;
    char *end = NULL, iqn[256], portbuf[8];
    long port;

    if (!sp || sp == line)
        return -EBADMSG;
    comma = memchr(line, ',', (size_t)(sp - line));
    if (!comma)
        comma = sp;
    for (const char *p = line; p < comma; p++)
        if (*p == ':')
            colon = p;
    if (!colon || colon == line || comma - colon - 1 <= 0 || comma - colon - 1 >= (long)sizeof portbuf)
        return -EBADMSG;
    memcpy(portbuf, colon + 1, (size_t)(comma - colon - 1));
    portbuf[comma - colon - 1] = '\0';
    errno = 0;
    port = strtol(portbuf, &end, 10);
    if (errno || *end || port < 1 || port > 65535)
        return -EBADMSG;
    /* the IQN runs to the end of the line; flash node records add " (non-flash)" in session listings only */
    len -= (size_t)(sp + 1 - line);
    if (len == 0 || len >= sizeof iqn)
        return -EBADMSG;
    memcpy(iqn, sp + 1, len);
    iqn[len] = '\0';
    if (!storage_iscsi_iqn_valid(iqn))
        return -EBADMSG;
    /* an address or a host name (it goes into the probe XML and back to iscsiadm) */
    for (const char *a = line; a < colon; a++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]", *a))
            return -EBADMSG;
    ret->address = xapi_strndup(line, (size_t)(colon - line));
    ret->port = (int)port;
    ret->iqn = xapi_strdup(iqn);
    return 0;
}

int storage_iscsi_parse_discovery(const char *out, size_t max, storage_iscsi_portal **ret, size_t *ret_n) {
    storage_iscsi_portal *p = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;

    for (const char *line = out; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);

        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
            len--;
        if (len > 0) {
            if (n == max) {
                rc = -E2BIG;
                break;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 8;
                p = xapi_realloc(p, cap * sizeof *p);
            }
            rc = parse_record(line, len, &p[n]);
            if (rc < 0)
                break;
            n++;
        }
        line = nl ? nl + 1 : NULL;
    }
    if (rc < 0) {
        storage_iscsi_portals_free(p, n);
        return rc;
    }
    *ret = p;
    *ret_n = n;
    return 0;
}

/* ---- XML ------------------------------------------------------------------------------------- */

/* Text as minidom writes it: &, <, > and " escaped. */
static void put_text(FILE *f, const char *s) {
    for (; *s; s++)
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            /* control characters cannot be in an XML document */
            fputc((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n' ? '?' : *s, f);
        }
}

static void put_elem(FILE *f, const char *name, const char *text) {
    fprintf(f, "\t\t<%s>", name);
    put_text(f, text);
    fprintf(f, "</%s>\n", name);
}

static FILE *xml_open(char **buf, size_t *len) {
    FILE *f = open_memstream(buf, len);

    if (!f)
        xapi_oom();
    fputs("<?xml version=\"1.0\" ?>\n", f);
    return f;
}

static void xml_close(FILE *f) {
    if (fclose(f) != 0)
        xapi_oom();
}

static void put_tgt(FILE *f, size_t index, const char *address, int port, const char *iqn) {
    char num[32];

    fputs("\t<TGT>\n", f);
    snprintf(num, sizeof num, "%zu", index);
    put_elem(f, "Index", num);
    put_elem(f, "IPAddress", address);
    if (port != STORAGE_ISCSI_DEFAULT_PORT) {
        snprintf(num, sizeof num, "%d", port);
        put_elem(f, "Port", num);
    }
    put_elem(f, "TargetIQN", iqn);
    fputs("\t</TGT>\n", f);
}

int storage_iscsi_targets_xml(const storage_iscsi_portal *p, size_t n, const char *target, int port, char **ret_xml) {
    char *xml = NULL;
    size_t len = 0;
    FILE *f = xml_open(&xml, &len);

    fputs("<iscsi-target-iqns>\n", f);
    for (size_t i = 0; i < n; i++)
        put_tgt(f, i, p[i].address, p[i].port, p[i].iqn);
    put_tgt(f, n, target, port, "*");
    fputs("</iscsi-target-iqns>\n", f);
    xml_close(f);
    *ret_xml = xml;
    return 0;
}

int storage_iscsi_luns_xml(const storage_iscsi_lun *l, size_t n, char **ret_xml) {
    char *xml = NULL, num[32];
    size_t len = 0;
    FILE *f = xml_open(&xml, &len);

    if (n == 0)
        fputs("<iscsi-target/>\n", f);
    else
        fputs("<iscsi-target>\n", f);
    for (size_t i = 0; i < n; i++) {
        fputs("\t<LUN>\n", f);
        if (*l[i].vendor)
            put_elem(f, "vendor", l[i].vendor);
        if (*l[i].serial)
            put_elem(f, "serial", l[i].serial);
        snprintf(num, sizeof num, "%u", l[i].lun);
        put_elem(f, "LUNid", num);
        snprintf(num, sizeof num, "%lld", (long long)l[i].size);
        put_elem(f, "size", num);
        put_elem(f, "SCSIid", l[i].scsi_id);
        fputs("\t</LUN>\n", f);
    }
    if (n > 0)
        fputs("</iscsi-target>\n", f);
    xml_close(f);
    *ret_xml = xml;
    return 0;
}

/* ---- SCSI ids -------------------------------------------------------------------------------- */

static void hex_id(char type, const uint8_t *d, size_t n, char *ret) {
    static const char digits[] = "0123456789abcdef";
    size_t k = 0;

    ret[k++] = type;
    for (size_t i = 0; i < n && k + 2 <= STORAGE_ISCSI_MAX_ID; i++) {
        ret[k++] = digits[d[i] >> 4];
        ret[k++] = digits[d[i] & 15];
    }
    ret[k] = '\0';
}

/* Text with each run of blanks as one "_" and no blanks at either end (scsi_id --replace-whitespace). */
static void text_id(char type, const char *s, size_t n, char *ret) {
    size_t k = 0;
    bool blank = false;

    ret[k++] = type;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\0'))
        n--;
    for (size_t i = 0; i < n && k < STORAGE_ISCSI_MAX_ID; i++) {
        char c = s[i];
        if (c == ' ') {
            blank = k > 1;
            continue;
        }
        if (blank && k < STORAGE_ISCSI_MAX_ID)
            ret[k++] = '_';
        blank = false;
        if (k < STORAGE_ISCSI_MAX_ID)
            ret[k++] = (c >= '!' && c <= '~' && c != '/') ? c : '_';
    }
    ret[k] = '\0';
}

int storage_iscsi_scsi_id_from_vpd83(const uint8_t *page, size_t len, char *ret) {
    /* scsi_id's preference: NAA (by NAA type: 6 registered extended, 5
     * registered, 2 IEEE extended, 1 IEEE, 3 locally assigned), EUI-64, T10. */
    static const int naa_rank[16] = {[6] = 1, [5] = 2, [2] = 3, [1] = 4, [3] = 5};
    const uint8_t *best = NULL;
    int best_rank = 100;
    size_t end, off = 4;

    if (len < 4 || page[1] != 0x83)
        return -ENODATA;
    end = 4 + ((size_t)page[2] << 8 | page[3]);
    if (end > len)
        end = len;
    while (off + 4 <= end) {
        const uint8_t *d = page + off;
        size_t dlen = d[3];
        int assoc = (d[1] >> 4) & 3, type = d[1] & 15, codeset = d[0] & 15, rank = 100;

        if (off + 4 + dlen > end)
            break;
        if (assoc == 0 && dlen > 0) {
            if (type == 3 && codeset == 1 && naa_rank[d[4] >> 4])
                rank = naa_rank[d[4] >> 4];
            else if (type == 2 && codeset == 1)
                rank = 10;
            else if (type == 1 && dlen > 8)
                rank = 20;
        }
        if (rank < best_rank) {
            best_rank = rank;
            best = d;
        }
        off += 4 + dlen;
    }
    if (!best)
        return -ENODATA;
    if (best_rank < 10)
        hex_id('3', best + 4, best[3], ret);
    else if (best_rank == 10)
        hex_id('2', best + 4, best[3], ret);
    else
        text_id('1', (const char *)best + 4, best[3], ret);
    return storage_iscsi_scsi_id_valid(ret) ? 0 : -ENODATA;
}

int storage_iscsi_scsi_id_from_wwid(const char *wwid, char *ret) {
    size_t n = strlen(wwid);
    char type;

    while (n > 0 && (wwid[n - 1] == '\n' || wwid[n - 1] == ' '))
        n--;
    if (n <= 4)
        return -ENODATA;
    if (strncmp(wwid, "naa.", 4) == 0)
        type = '3';
    else if (strncmp(wwid, "eui.", 4) == 0)
        type = '2';
    else if (strncmp(wwid, "t10.", 4) == 0) {
        text_id('1', wwid + 4, n - 4, ret);
        return storage_iscsi_scsi_id_valid(ret) ? 0 : -ENODATA;
    } else
        return -ENODATA;
    if (n - 4 + 1 > STORAGE_ISCSI_MAX_ID)
        return -ENODATA;
    ret[0] = type;
    for (size_t i = 4; i < n; i++)
        ret[i - 3] = (wwid[i] >= 'A' && wwid[i] <= 'F') ? (char)(wwid[i] - 'A' + 'a') : wwid[i];
    ret[n - 3] = '\0';
    return storage_iscsi_scsi_id_valid(ret) ? 0 : -ENODATA;
}

/* ---- sysfs ----------------------------------------------------------------------------------- */

/* Reads a sysfs attribute (at most ISCSI_MAX_ATTR bytes): its length, or a negative errno. */
static ssize_t read_attr(const char *path, uint8_t *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = read(fd, buf, size);
    if (n < 0)
        n = -errno;
    close(fd);
    return n;
}

/* A text attribute, trimmed (malloc'd; "" when absent). */
static char *read_text(const char *dir, const char *name) {
    uint8_t buf[256];
    char *path = NULL;
    ssize_t n;

    if (asprintf(&path, "%s/%s", dir, name) < 0)
        xapi_oom();
    n = read_attr(path, buf, sizeof buf - 1);
    free(path);
    if (n < 0)
        n = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\0'))
        n--;
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            buf[i] = '?';
    return xapi_strndup((const char *)buf, (size_t)n);
}

static int scsi_id_of(const char *lun_dir, char *ret) {
    uint8_t *page = xapi_malloc(ISCSI_MAX_ATTR);
    char *path = NULL, *wwid;
    ssize_t n;
    int rc;

    if (asprintf(&path, "%s/vpd_pg83", lun_dir) < 0)
        xapi_oom();
    n = read_attr(path, page, ISCSI_MAX_ATTR);
    rc = n > 0 ? storage_iscsi_scsi_id_from_vpd83(page, (size_t)n, ret) : -ENODATA;
    free(path);
    free(page);
    if (rc == 0)
        return 0;
    wwid = read_text(lun_dir, "wwid");
    rc = storage_iscsi_scsi_id_from_wwid(wwid, ret);
    free(wwid);
    return rc;
}

/* VPD page 0x80: the unit serial number, "" if none. */
static char *serial_of(const char *lun_dir) {
    uint8_t page[260];
    char *path = NULL;
    size_t len;
    ssize_t n;

    if (asprintf(&path, "%s/vpd_pg80", lun_dir) < 0)
        xapi_oom();
    n = read_attr(path, page, sizeof page);
    free(path);
    if (n < 4 || page[1] != 0x80)
        return xapi_strdup("");
    len = page[3];
    if (len > (size_t)n - 4)
        len = (size_t)n - 4;
    while (len > 0 && (page[4 + len - 1] == ' ' || page[4 + len - 1] == '\0'))
        len--;
    for (size_t i = 0; i < len; i++)
        if (page[4 + i] < 0x20 || page[4 + i] > 0x7e)
            page[4 + i] = '?';
    return xapi_strndup((const char *)page + 4, len);
}

/* The block device under <lun_dir>/block (one entry, a kernel name). */
static char *block_of(const char *lun_dir) {
    char *path = NULL, *name = NULL;
    struct dirent *de;
    DIR *d;

    if (asprintf(&path, "%s/block", lun_dir) < 0)
        xapi_oom();
    d = opendir(path);
    free(path);
    if (!d)
        return NULL;
    while (!name && (de = readdir(d)))
        if (de->d_name[0] != '.' && strspn(de->d_name, "abcdefghijklmnopqrstuvwxyz0123456789") == strlen(de->d_name))
            name = xapi_strdup(de->d_name);
    closedir(d);
    return name;
}

void storage_iscsi_luns_free(storage_iscsi_lun *l, size_t n) {
    for (size_t i = 0; l && i < n; i++) {
        free(l[i].scsi_id);
        free(l[i].dev);
        free(l[i].vendor);
        free(l[i].serial);
    }
    free(l);
}

/* Adds the LUN at <lun_dir> (named h:c:t:l) unless it has no disk or its SCSIid is listed already. */
static int add_lun(const char *lun_dir, const char *hctl, storage_iscsi_lun *l, size_t *n) {
    char id[STORAGE_ISCSI_MAX_ID + 1], *dev, *size_text, *p = NULL;
    unsigned h, c, t, lun;
    long long sectors;
    char extra;

    if (sscanf(hctl, "%u:%u:%u:%u%c", &h, &c, &t, &lun, &extra) != 4)
        return 0;
    dev = block_of(lun_dir);
    if (!dev)
        return 0; /* LUN 0 of tgt and LIO: the controller, no disk */
    if (scsi_id_of(lun_dir, id) < 0) {
        free(dev);
        return 0;
    }
    for (size_t i = 0; i < *n; i++)
        if (strcmp(l[i].scsi_id, id) == 0) {
            free(dev);
            return 0;
        }
    if (*n == STORAGE_ISCSI_MAX_LUNS) {
        free(dev);
        return -E2BIG;
    }
    if (asprintf(&p, "%s/block/%s", lun_dir, dev) < 0)
        xapi_oom();
    size_text = read_text(p, "size");
    free(p);
    if (sscanf(size_text, "%lld", &sectors) != 1 || sectors < 0 || sectors > (INT64_MAX >> 9))
        sectors = 0;
    free(size_text);
    l[*n] = (storage_iscsi_lun){
        .scsi_id = xapi_strdup(id),
        .dev = dev,
        .vendor = read_text(lun_dir, "vendor"),
        .serial = serial_of(lun_dir),
        .lun = lun,
        .size = (int64_t)sectors << 9,
    };
    (*n)++;
    return 0;
}

/* The sessions' directories (<root>/class/iscsi_session/sessionN) logged in to iqn, through fn. */
static int each_session(const char *sysfs_root, const char *iqn, int (*fn)(const char *dir, void *arg), void *arg) {
    char *base = NULL;
    struct dirent *de;
    size_t seen = 0;
    int rc = 0;
    DIR *d;

    if (asprintf(&base, "%s/class/iscsi_session", sysfs_root) < 0)
        xapi_oom();
    d = opendir(base);
    if (!d) {
        free(base);
        return 0; /* no iSCSI transport loaded: no sessions */
    }
    while (rc == 0 && (de = readdir(d)) && seen++ < ISCSI_MAX_SESSIONS) {
        char *dir = NULL, *name;

        if (strncmp(de->d_name, "session", 7) != 0)
            continue;
        if (asprintf(&dir, "%s/%s", base, de->d_name) < 0)
            xapi_oom();
        name = read_text(dir, "targetname");
        if (strcmp(name, iqn) == 0)
            rc = fn(dir, arg);
        free(name);
        free(dir);
    }
    closedir(d);
    free(base);
    return rc;
}

static int found_session(const char *dir, void *arg) {
    (void)dir;
    *(bool *)arg = true;
    return 1;
}

bool storage_iscsi_session_exists(const char *sysfs_root, const char *target_iqn) {
    bool found = false;

    each_session(sysfs_root, target_iqn, found_session, &found);
    return found;
}

typedef struct lun_list {
    storage_iscsi_lun *l;
    size_t n;
} lun_list;

/* <session>/device/target<h:c:t>/<h:c:t:l> */
static int session_luns(const char *session_dir, void *arg) {
    lun_list *list = arg;
    char *dev_dir = NULL;
    struct dirent *t;
    int rc = 0;
    DIR *d;

    if (asprintf(&dev_dir, "%s/device", session_dir) < 0)
        xapi_oom();
    d = opendir(dev_dir);
    while (d && rc == 0 && (t = readdir(d))) {
        char *target_dir = NULL;
        struct dirent *u;
        DIR *td;

        if (strncmp(t->d_name, "target", 6) != 0)
            continue;
        if (asprintf(&target_dir, "%s/%s", dev_dir, t->d_name) < 0)
            xapi_oom();
        td = opendir(target_dir);
        while (td && rc == 0 && (u = readdir(td))) {
            char *lun_dir = NULL;

            if (u->d_name[0] < '0' || u->d_name[0] > '9')
                continue;
            if (asprintf(&lun_dir, "%s/%s", target_dir, u->d_name) < 0)
                xapi_oom();
            rc = add_lun(lun_dir, u->d_name, list->l, &list->n);
            free(lun_dir);
        }
        if (td)
            closedir(td);
        free(target_dir);
    }
    if (d)
        closedir(d);
    free(dev_dir);
    return rc;
}

static int lun_cmp(const void *a, const void *b) {
    const storage_iscsi_lun *x = a, *y = b;

    return x->lun != y->lun ? (x->lun < y->lun ? -1 : 1) : strcmp(x->scsi_id, y->scsi_id);
}

int storage_iscsi_find_luns(const char *sysfs_root, const char *target_iqn, storage_iscsi_lun **ret, size_t *ret_n) {
    lun_list list = {xapi_calloc(STORAGE_ISCSI_MAX_LUNS, sizeof *list.l), 0};
    int rc;

    rc = each_session(sysfs_root, target_iqn, session_luns, &list);
    if (rc < 0) {
        storage_iscsi_luns_free(list.l, list.n);
        return rc;
    }
    if (list.n > 1)
        qsort(list.l, list.n, sizeof *list.l, lun_cmp);
    *ret = list.l;
    *ret_n = list.n;
    return 0;
}
