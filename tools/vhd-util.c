/* vhd-util: blktap's VHD command line, for the host-side plugins (Nova's
 * glance plugin, CloudStack's vmops*, the sm modules in host/sm) and for
 * people, over storage/vhd_file.c. Same commands, flags, output lines and
 * exit statuses (|negative errno|) as blktap's: see host-tools.md §5.1.
 *
 *   vhd-util <command> [--debug] <options>
 *
 * scan -l VG looks at the LVs' device links under $XENAPID_LVM_DEV_DIR/VG
 * (default /dev): only active LVs are seen, unlike blktap's, which asks lvs.
 */
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage/vhd_file.h"
#include "storage/vhd_format.h"

#define MiB (UINT64_C(1) << 20)

typedef int (*command_fn)(int argc, char **argv);

static int status(int rc) {
    return rc < 0 ? -rc : rc;
}

static bool parse_u64(const char *s, uint64_t *ret) {
    char *end;
    unsigned long long v;

    if (!s || !*s || *s == '-')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *ret = v;
    return true;
}

/* MiB from the command line into bytes, refusing what would overflow. */
static bool parse_mib(const char *s, uint64_t *ret) {
    uint64_t v;

    if (!parse_u64(s, &v) || v > UINT64_MAX / MiB)
        return false;
    *ret = v * MiB;
    return true;
}

static int open_or_report(storage_vhd_file **ret, const char *name, bool writable) {
    char err[256] = "";
    int rc = storage_vhd_file_open(ret, name, writable, err, sizeof err);

    if (rc < 0)
        printf("error opening %s: %d\n", name, rc);
    return rc;
}

/* ---- query ------------------------------------------------------------------------ */

static int usage_query(void) {
    printf("options: <-n name> [-v print virtual size (in MB)] [-s print physical utilization (bytes)] "
           "[-p print parent] [-f print fields] [-m print marker] [-d print chain depth] "
           "[-a print allocated block count] [-S print max virtual size (MB) for fast resize] "
           "[-u don't resolve parent path] [-h help]\n");
    return EINVAL;
}

static int cmd_query(int argc, char **argv) {
    storage_vhd_file *f = NULL;
    const char *name = NULL;
    bool v = false, s = false, p = false, fields = false, marker = false, depth = false, alloc = false,
         max = false, unresolved = false;
    int c, rc = 0;

    optind = 0;
    while ((c = getopt(argc, argv, "n:vspfmdaSuh")) != -1)
        switch (c) {
        case 'n': name = optarg; break;
        case 'v': v = true; break;
        case 's': s = true; break;
        case 'p': p = true; break;
        case 'f': fields = true; break;
        case 'm': marker = true; break;
        case 'd': depth = true; break;
        case 'a': alloc = true; break;
        case 'S': max = true; break;
        case 'u': unresolved = true; break;
        default: return usage_query();
        }
    if (!name || optind != argc)
        return usage_query();
    if ((rc = open_or_report(&f, name, false)) < 0)
        return status(rc);
    if (v)
        printf("%" PRIu64 "\n", storage_vhd_file_virtual_size(f) >> 20);
    if (s)
        printf("%" PRIu64 "\n", storage_vhd_file_phys_size(f));
    if (p) {
        char *parent = NULL;
        if (f->info.type != STORAGE_VHD_TYPE_DIFFERENCING)
            printf("%s has no parent\n", name);
        else if (unresolved) {
            parent = storage_vhd_file_parent_name(f);
            if (!parent) {
                printf("query failed\n");
                rc = -EINVAL;
                goto out;
            }
            printf("%s\n", parent);
        } else if ((rc = storage_vhd_file_parent_path(f, &parent)) < 0) {
            printf("query failed\n");
            goto out;
        } else
            printf("%s\n", parent);
        free(parent);
    }
    if (fields)
        printf("hidden: %d\n", f->info.footer[VHD_F_HIDDEN]);
    if (marker) {
        uint8_t m = 0;
        (void)storage_vhd_file_marker(f, &m); /* no batmap (images made here): never marked */
        printf("marker: %u\n", m);
    }
    if (depth) {
        if ((rc = storage_vhd_file_open_chain(f, false)) < 0) {
            printf("error checking chain depth: %d\n", rc);
            goto out;
        }
        printf("chain depth: %u\n", storage_vhd_file_depth(f));
    }
    if (alloc)
        printf("%u\n", storage_vhd_info_allocated(&f->info));
    if (max)
        printf("%" PRIu64 "\n", f->info.type == STORAGE_VHD_TYPE_FIXED
                                    ? storage_vhd_file_virtual_size(f) >> 20
                                    : ((uint64_t)f->info.max_bat * f->info.block_size) >> 20);
out:
    storage_vhd_file_close(f);
    return status(rc);
}

/* ---- create, snapshot --------------------------------------------------------------- */

static int usage_create(void) {
    printf("options: <-n name> <-s size (MB)> [-r reserve] [-S size (MB) for metadata preallocation "
           "(see vhd-util resize)] [-h help]\n");
    return EINVAL;
}

static int cmd_create(int argc, char **argv) {
    storage_vhd_create_params p = {.now = time(NULL)};
    char err[256] = "";
    int c, rc;

    optind = 0;
    while ((c = getopt(argc, argv, "n:s:rS:h")) != -1)
        switch (c) {
        case 'n': p.path = optarg; break;
        case 's':
            if (!parse_mib(optarg, &p.size))
                return usage_create();
            break;
        case 'r': p.fixed = true; break;
        case 'S':
            if (!parse_mib(optarg, &p.reserve_size))
                return usage_create();
            break;
        default: return usage_create();
        }
    if (!p.path || !p.size || optind != argc)
        return usage_create();
    if (p.reserve_size && p.reserve_size < p.size) {
        printf("Error: <-S size> must be greater than <-s size>\n");
        return EINVAL;
    }
    rc = storage_vhd_create(&p, err, sizeof err);
    if (rc < 0)
        printf("error creating %s: %d%s%s\n", p.path, rc, err[0] ? ": " : "", err);
    return status(rc);
}

static int usage_snapshot(void) {
    printf("options: <-n name> <-p parent name> [-l snapshot depth limit] [-m parent_is_raw] "
           "[-S size (MB) for metadata preallocation (see vhd-util resize)] [-e link to supplied parent name "
           "even if it's empty] [-h help]\n");
    return EINVAL;
}

static int cmd_snapshot(int argc, char **argv) {
    storage_vhd_create_params p = {.now = time(NULL)};
    uint64_t limit = 0;
    char err[256] = "";
    int c, rc;

    optind = 0;
    while ((c = getopt(argc, argv, "n:p:l:mS:eh")) != -1)
        switch (c) {
        case 'n': p.path = optarg; break;
        case 'p': p.parent = optarg; break;
        case 'l':
            if (!parse_u64(optarg, &limit))
                return usage_snapshot();
            break;
        case 'm': p.parent_raw = true; break;
        case 'S':
            if (!parse_mib(optarg, &p.reserve_size))
                return usage_snapshot();
            break;
        case 'e': p.keep_empty_parent = true; break;
        default: return usage_snapshot();
        }
    if (!p.path || !p.parent || optind != argc)
        return usage_snapshot();
    if (limit && !p.parent_raw) {
        storage_vhd_file *parent = NULL;
        unsigned depth;
        if ((rc = open_or_report(&parent, p.parent, false)) < 0)
            return status(rc);
        rc = storage_vhd_file_open_chain(parent, false);
        depth = storage_vhd_file_depth(parent);
        storage_vhd_file_close(parent);
        if (rc < 0) {
            printf("error checking snapshot depth: %d\n", rc);
            return status(rc);
        }
        if (depth + 1 > limit) {
            printf("snapshot depth exceeded: current depth: %u, limit: %" PRIu64 "\n", depth, limit);
            return ENOSPC;
        }
    }
    rc = storage_vhd_create(&p, err, sizeof err);
    if (rc < 0)
        printf("snapshot failed: %d%s%s\n", rc, err[0] ? ": " : "", err);
    return status(rc);
}

/* ---- modify, set ---------------------------------------------------------------------- */

static int usage_modify(void) {
    printf("options: <-n name> [-p NEW_PARENT set parent [-m raw]] [-s NEW_SIZE set size (bytes)] "
           "[-z zero (kill data)] [-h help]\n");
    return EINVAL;
}

static int cmd_modify(int argc, char **argv) {
    storage_vhd_file *f = NULL;
    const char *name = NULL, *parent = NULL;
    uint64_t size = 0;
    bool raw = false, zero = false, set_size = false;
    int c, rc;

    optind = 0;
    while ((c = getopt(argc, argv, "n:p:ms:zh")) != -1)
        switch (c) {
        case 'n': name = optarg; break;
        case 'p': parent = optarg; break;
        case 'm': raw = true; break;
        case 's':
            if (!parse_u64(optarg, &size))
                return usage_modify();
            set_size = true;
            break;
        case 'z': zero = true; break;
        default: return usage_modify();
        }
    if (!name || optind != argc || (!parent && !set_size && !zero))
        return usage_modify();
    if ((rc = open_or_report(&f, name, true)) < 0)
        return status(rc);
    if (zero && (rc = storage_vhd_file_zero(f)) < 0)
        printf("failed to zero VHD: %d\n", rc);
    if (rc == 0 && parent && (rc = storage_vhd_file_set_parent(f, parent, raw)) < 0)
        printf("failed to set parent to '%s': %d\n", parent, rc);
    if (rc == 0 && set_size && (rc = storage_vhd_file_set_phys_size(f, size)) < 0)
        printf("failed to set physical size to %" PRIu64 ": %d\n", size, rc);
    storage_vhd_file_close(f);
    return status(rc);
}

static int usage_set(void) {
    printf("options: <-n name> <-f field> <-v value> [-h help]\n");
    return EINVAL;
}

static int cmd_set(int argc, char **argv) {
    storage_vhd_file *f = NULL;
    const char *name = NULL, *field = NULL;
    uint64_t value = 0;
    bool have_value = false;
    int c, rc;

    optind = 0;
    while ((c = getopt(argc, argv, "n:f:v:h")) != -1)
        switch (c) {
        case 'n': name = optarg; break;
        case 'f': field = optarg; break;
        case 'v':
            if (!parse_u64(optarg, &value) || value > 255)
                return usage_set();
            have_value = true;
            break;
        default: return usage_set();
        }
    if (!name || !field || !have_value || optind != argc)
        return usage_set();
    if (strcmp(field, "hidden") != 0 && strcmp(field, "marker") != 0) {
        printf("invalid field %s\n", field);
        return EINVAL;
    }
    if ((rc = open_or_report(&f, name, true)) < 0)
        return status(rc);
    if (field[0] == 'h')
        rc = storage_vhd_file_set_hidden(f, value != 0);
    else if ((rc = storage_vhd_file_set_marker(f, (uint8_t)value)) == -ENOENT)
        rc = -EINVAL; /* the marker lives in a batmap, which images made here have none of */
    if (rc < 0)
        printf("failed to set %s: %d\n", field, rc);
    storage_vhd_file_close(f);
    return status(rc);
}

/* ---- coalesce, check, resize, repair ----------------------------------------------- */

static int usage_coalesce(void) {
    printf("options: <-n name> [-s sparse] [-p progress] [-h help]\n");
    return EINVAL;
}

static int cmd_coalesce(int argc, char **argv) {
    storage_vhd_file *f = NULL;
    const char *name = NULL;
    uint64_t sectors = 0;
    int c, rc;

    optind = 0;
    while ((c = getopt(argc, argv, "n:o:a:xspbh")) != -1)
        switch (c) {
        case 'n': name = optarg; break;
        case 's': case 'p': case 'x': case 'b': case 'o': case 'a': break;
        default: return usage_coalesce();
        }
    if (!name || optind != argc)
        return usage_coalesce();
    if ((rc = open_or_report(&f, name, false)) < 0)
        return status(rc);
    if (f->info.type != STORAGE_VHD_TYPE_DIFFERENCING) {
        printf("coalescing of non-differencing disks is not supported\n");
        rc = -EINVAL;
    } else if ((rc = storage_vhd_file_open_chain(f, true)) < 0)
        printf("error opening parent of %s: %d\n", name, rc);
    else if ((rc = storage_vhd_file_coalesce(f, &sectors)) < 0)
        printf("error coalescing %s: %d\n", name, rc);
    else
        printf("Coalesced %" PRIu64 " sectors", sectors);
    storage_vhd_file_close(f);
    return status(rc);
}

static int usage_check(void) {
    printf("options: <-n name> [-i ignore missing primary footers] [-I ignore parent uuids] "
           "[-t ignore timestamps] [-p check parents] [-b check bitmaps] [-B don't check BAT] "
           "[-s stats] [-h help]\n");
    return EINVAL;
}

static int cmd_check(int argc, char **argv) {
    storage_vhd_file *f = NULL;
    const char *name = NULL;
    bool parents = false, times = true;
    char err[256] = "";
    int c, rc;

    optind = 0;
    while ((c = getopt(argc, argv, "n:iItpbBsh")) != -1)
        switch (c) {
        case 'n': name = optarg; break;
        case 'p': parents = true; break;
        case 't': times = false; break;
        case 'i': case 'I': case 'b': case 'B': case 's': break;
        default: return usage_check();
        }
    if (!name || optind != argc)
        return usage_check();
    rc = storage_vhd_file_open(&f, name, false, err, sizeof err);
    if (rc == -EINVAL) {
        printf("%s\n%s appears invalid; dumping metadata\n", err, name);
        return EINVAL;
    }
    if (rc < 0) {
        printf("error opening %s: %d\n", name, rc);
        return status(rc);
    }
    rc = storage_vhd_file_check(f, parents, err, sizeof err);
    if (rc == 0 && times)
        rc = storage_vhd_file_check_time(f, time(NULL), err, sizeof err);
    if (rc == 0)
        printf("%s is valid\n", name);
    else if (rc == -EINVAL)
        printf("%s\n%s appears invalid; dumping metadata\n", err, name);
    else
        printf("error checking %s: %d\n", name, rc);
    storage_vhd_file_close(f);
    return status(rc);
}

static int usage_resize(void) {
    printf("options: <-n name> <-s size (MB)> <-j journal> | <-f fast> [-h help]\n");
    return EINVAL;
}

static int cmd_resize(int argc, char **argv) {
    storage_vhd_file *f = NULL;
    const char *name = NULL, *journal = NULL;
    uint64_t size = 0;
    bool fast = false;
    int c, rc;

    optind = 0;
    while ((c = getopt(argc, argv, "n:s:j:fch")) != -1)
        switch (c) {
        case 'n': name = optarg; break;
        case 's':
            if (!parse_mib(optarg, &size))
                return usage_resize();
            break;
        case 'j': journal = optarg; break; /* the BAT moves only after it is written: no journal needed */
        case 'f': fast = true; break;
        case 'c': break;
        default: return usage_resize();
        }
    if (!name || !size || (!journal && !fast) || optind != argc)
        return usage_resize();
    if ((rc = open_or_report(&f, name, true)) < 0)
        return status(rc);
    if (fast && !journal && (size + f->info.block_size - 1) / f->info.block_size > f->info.max_bat) {
        printf("fast resize: new size %" PRIu64 " MB beyond the preallocated %" PRIu64 " MB\n", size >> 20,
               ((uint64_t)f->info.max_bat * f->info.block_size) >> 20);
        rc = -EINVAL;
    } else if ((rc = storage_vhd_file_resize(f, size)) < 0)
        printf("%s\n", rc == -EINVAL ? f->error : strerror(-rc));
    storage_vhd_file_close(f);
    return status(rc);
}

static int cmd_repair(int argc, char **argv) {
    storage_vhd_file *f = NULL;
    const char *name = NULL;
    int c, rc;

    optind = 0;
    while ((c = getopt(argc, argv, "n:bh")) != -1)
        switch (c) {
        case 'n': name = optarg; break;
        case 'b': break; /* the copy at 0 is what a bad primary is replaced from either way */
        default:
            printf("options: <-n name> [-b use the back-up footer] [-h help]\n");
            return EINVAL;
        }
    if (!name || optind != argc) {
        printf("options: <-n name> [-b use the back-up footer] [-h help]\n");
        return EINVAL;
    }
    if ((rc = open_or_report(&f, name, true)) < 0)
        return status(rc);
    if ((rc = storage_vhd_file_repair(f)) < 0)
        printf("error repairing %s: %d\n", name, rc);
    storage_vhd_file_close(f);
    return status(rc);
}

/* ---- read -p ------------------------------------------------------------------------- */

static void print_uuid(const uint8_t *u) {
    for (int i = 0; i < 16; i++)
        printf("%02x%s", u[i], i == 3 || i == 5 || i == 7 || i == 9 ? "-" : "");
}

static const char *disk_type_name(uint32_t type) {
    switch (type) {
    case STORAGE_VHD_TYPE_FIXED: return "Fixed hard disk";
    case STORAGE_VHD_TYPE_DYNAMIC: return "Dynamic hard disk";
    case STORAGE_VHD_TYPE_DIFFERENCING: return "Differencing hard disk";
    default: return "Unknown type!";
    }
}

/* A number in decimal, or in hex with -x. */
static const char *num(bool hex, uint64_t v) {
    static char buf[4][24];
    static int next;
    char *b = buf[next++ % 4];

    snprintf(b, sizeof buf[0], hex ? "%#" PRIx64 : "%" PRIu64, v);
    return b;
}

static const char *vhd_time(uint32_t t) {
    static char buf[32];
    time_t when = (time_t)(946684800 + (int64_t)t);
    struct tm tm;

    if (!gmtime_r(&when, &tm) || !strftime(buf, sizeof buf, "%a %b %e %H:%M:%S %Y", &tm))
        snprintf(buf, sizeof buf, "%u", t);
    return buf;
}

static const char *locator_code_name(uint32_t code) {
    switch (code) {
    case 0x57693272u: return "PLAT_CODE_WI2R";
    case 0x5769326Bu: return "PLAT_CODE_WI2K";
    case STORAGE_VHD_LOC_W2RU: return "PLAT_CODE_W2RU";
    case STORAGE_VHD_LOC_W2KU: return "PLAT_CODE_W2KU";
    case 0x4D616320u: return "PLAT_CODE_MAC";
    case STORAGE_VHD_LOC_MACX: return "PLAT_CODE_MACX";
    default: return "UNKOWN";
    }
}

/* The layout of blktap's `read -p`: sm and plugins grep its lines ("Disk type", "Block size", "decoded name :"). */
static void print_headers(storage_vhd_file *f, bool hex) {
    const uint8_t *ft = f->info.footer, *h = f->info.header;
    uint32_t geo = vhd_get32(ft + 56), ver = vhd_get32(ft + 32), features = vhd_get32(ft + 8);
    uint64_t cyl = geo >> 16, heads = (geo >> 8) & 0xFF, spt = geo & 0xFF;

    printf("VHD Footer Summary:\n-------------------\n");
    printf("Cookie              : %.8s\n", (const char *)ft);
    printf("Features            : (0x%08x) %s%s\n", features, features & 1 ? "<TEMP>" : "", features & 2 ? "<RESV>" : "");
    printf("File format version : Major: %u, Minor: %u\n", vhd_get32(ft + 12) >> 16, vhd_get32(ft + 12) & 0xFFFF);
    printf("Data offset         : %s\n", num(hex, vhd_get64(ft + 16)));
    printf("Timestamp           : %s\n", vhd_time(vhd_get32(ft + 24)));
    printf("Creator Application : '%.4s'\n", (const char *)ft + 28);
    printf("Creator version     : Major: %u, Minor: %u\n", ver >> 16, ver & 0xFFFF);
    printf("Creator OS          : %s\n", memcmp(ft + 36, "Wi2k", 4) == 0   ? "Windows"
                                         : memcmp(ft + 36, "Mac ", 4) == 0 ? "Macintosh"
                                                                           : "Unknown!");
    printf("Original disk size  : %s MB (%s Bytes)\n", num(hex, vhd_get64(ft + 40) >> 20), num(hex, vhd_get64(ft + 40)));
    printf("Current disk size   : %s MB (%s Bytes)\n", num(hex, vhd_get64(ft + 48) >> 20), num(hex, vhd_get64(ft + 48)));
    printf("Geometry            : Cyl: %s, Hds: %s, Sctrs: %s\n", num(hex, cyl), num(hex, heads), num(hex, spt));
    printf("                    : = %s MB (%s Bytes)\n", num(hex, (cyl * heads * spt) >> 11),
           num(hex, (cyl * heads * spt) << 9));
    printf("Disk type           : %s\n", disk_type_name(f->info.type));
    printf("Checksum            : 0x%x|0x%x (Good!)\n", vhd_get32(ft + 64), vhd_get32(ft + 64));
    printf("UUID                : ");
    print_uuid(f->info.uuid);
    printf("\nSaved state         : %s\n", ft[84] ? "Yes" : "No");
    printf("Hidden              : %d\n\n", ft[VHD_F_HIDDEN]);
    if (f->info.type == STORAGE_VHD_TYPE_FIXED)
        return;
    printf("VHD Header Summary:\n-------------------\n");
    printf("Cookie              : %.8s\n", (const char *)h);
    printf("Data offset (unusd) : %s\n", num(hex, vhd_get64(h + 8)));
    printf("Table offset        : %s\n", num(hex, f->info.bat_offset));
    printf("Header version      : 0x%08x\n", vhd_get32(h + 24));
    printf("Max BAT size        : %s\n", num(hex, f->info.max_bat));
    printf("Block size          : %s (%s MB)\n", num(hex, f->info.block_size), num(hex, f->info.block_size >> 20));
    printf("Parent name         : %s\n", f->info.parent_name);
    printf("Parent UUID         : ");
    print_uuid(f->info.parent_uuid);
    printf("\nParent timestamp    : %s\n", vhd_time(f->info.parent_time));
    printf("Checksum            : 0x%x|0x%x (Good!)\n\n", vhd_get32(h + 36), vhd_get32(h + 36));
    if (f->info.type == STORAGE_VHD_TYPE_DIFFERENCING) {
        printf("VHD Parent Locators:\n--------------------\n");
        for (unsigned k = 0; k < 8; k++) {
            char *path = NULL;
            if (!f->info.loc[k].code)
                continue;
            printf("locator:            : %u\n", k);
            printf("       code         : %s\n", locator_code_name(f->info.loc[k].code));
            printf("       data_space   : %s\n", num(hex, f->info.loc[k].space));
            printf("       data_length  : %s\n", num(hex, f->info.loc[k].len));
            printf("       data_offset  : %s\n", num(hex, f->info.loc[k].offset));
            if (storage_vhd_file_locator_path(f, k, &path) == 0)
                printf("       decoded name : %s\n", path);
            else
                printf("failed to read parent name\n");
            free(path);
            printf("\n");
        }
    }
    if (f->info.batmap_bytes) {
        uint8_t bh[512];
        if (pread(f->fd, bh, sizeof bh, (off_t)f->info.batmap_header) == (ssize_t)sizeof bh) {
            printf("VHD Batmap Summary:\n-------------------\n");
            printf("Batmap offset       : %s\n", num(hex, f->info.batmap_offset));
            printf("Batmap size (secs)  : %s\n", num(hex, f->info.batmap_bytes / 512));
            printf("Batmap version      : 0x%08x\n", vhd_get32(bh + VHD_B_VERSION));
            printf("Checksum            : 0x%x\n\n", vhd_get32(bh + VHD_B_CHECKSUM));
        }
    }
}

static int usage_read(void) {
    printf("options:\n-h          help\n-n          name\n-p          print VHD headers\n"
           "-t sec      translate logical sector to VHD location\n-b blk      print bat entry\n"
           "-m blk      print bitmap\n-i sec      test bitmap for logical sector\n-a          print batmap\n"
           "-d blk      print data\n-c num      num units\n-r sec      read num sectors at sec\n"
           "-x          print in hex\n");
    return EINVAL;
}

static bool block_in_range(storage_vhd_file *f, uint64_t first, uint64_t count, bool hex) {
    if (f->info.type == STORAGE_VHD_TYPE_FIXED || first + count > f->info.max_bat) {
        fprintf(stderr, "block %s past end of file\n", num(hex, first + count));
        return false;
    }
    return true;
}

/* Raw bytes to stdout: bitmaps, data, sectors read through the chain. */
static int write_out(const void *buf, size_t len) {
    return fwrite(buf, 1, len, stdout) == len ? 0 : -EIO;
}

static int read_sectors(storage_vhd_file *f, uint64_t sector, uint64_t count) {
    uint8_t *buf = malloc(1 << 20);
    int rc = 0;

    if (!buf)
        return -ENOMEM;
    if (sector > UINT64_MAX / 512 - count || (sector + count) * 512 > storage_vhd_file_virtual_size(f))
        rc = -ERANGE;
    else if (f->info.type == STORAGE_VHD_TYPE_DIFFERENCING)
        rc = storage_vhd_file_open_chain(f, false);
    while (rc == 0 && count > 0) {
        uint64_t n = count < 2048 ? count : 2048;
        if ((rc = storage_vhd_file_read(f, sector * 512, buf, (size_t)n * 512)) == 0)
            rc = write_out(buf, (size_t)n * 512);
        sector += n;
        count -= n;
    }
    free(buf);
    return rc;
}

static int read_blocks(storage_vhd_file *f, uint64_t first, uint64_t count, bool data) {
    size_t len = data ? f->info.block_size : f->info.bitmap_len;
    uint8_t *buf = malloc(len);
    int rc = 0;

    if (!buf)
        return -ENOMEM;
    for (uint64_t b = first; b < first + count && rc == 0; b++) {
        uint32_t e = f->info.bat[b];
        if (e == 0xFFFFFFFFu) {
            printf("block %" PRIu64 " not allocated\n", b);
            continue;
        }
        /* as stored in this file: a differencing disk's absent sectors are not looked up */
        if (pread(f->fd, buf, len, (off_t)((uint64_t)e * 512 + (data ? f->info.bitmap_len : 0))) != (ssize_t)len)
            rc = -EIO;
        if (rc == 0)
            rc = write_out(buf, len);
    }
    free(buf);
    return rc;
}

static int cmd_read(int argc, char **argv) {
    storage_vhd_file *f = NULL;
    const char *name = NULL;
    bool headers = false, hex = false, batmap = false;
    uint64_t count = 1, none = UINT64_MAX, lsec = none, bat = none, bitmap = none, tbitmap = none, data = none,
             rsec = none;
    int c, rc = 0;

    optind = 0;
    while ((c = getopt(argc, argv, "n:pt:b:m:i:ad:c:r:xh")) != -1) {
        uint64_t *into = NULL;
        switch (c) {
        case 'n': name = optarg; break;
        case 'p': headers = true; break;
        case 'a': batmap = true; break;
        case 'x': hex = true; break;
        case 't': into = &lsec; break;
        case 'b': into = &bat; break;
        case 'm': into = &bitmap; break;
        case 'i': into = &tbitmap; break;
        case 'd': into = &data; break;
        case 'c': into = &count; break;
        case 'r': into = &rsec; break;
        default: return usage_read();
        }
        if (into && (!parse_u64(optarg, into) || *into == none))
            return usage_read();
    }
    if (!name || optind != argc || count == 0 || count > (UINT64_C(1) << 32))
        return usage_read();
    {
        char err[256] = "";
        rc = storage_vhd_file_open(&f, name, false, err, sizeof err);
        if (rc < 0) {
            printf("Failed to open %s: %d\n", name, rc);
            if (rc == -EINVAL)
                printf("\n%s appears invalid; dumping headers\n\n%s\n", name, err);
            return status(rc);
        }
    }
    if (headers)
        print_headers(f, hex);
    if (lsec != none || tbitmap != none) {
        uint64_t first = lsec != none ? lsec : tbitmap;
        if (first > UINT64_MAX / 512 - count || (first + count) * 512 > storage_vhd_file_virtual_size(f) ||
            f->info.type == STORAGE_VHD_TYPE_FIXED) {
            fprintf(stderr, "sector %s past end of file\n", num(hex, first + count));
            rc = -ERANGE;
            goto out;
        }
        for (uint64_t s = first; s < first + count; s++) {
            uint32_t spb = f->info.block_size / 512, blk = (uint32_t)(s / spb), in = (uint32_t)(s % spb);
            uint32_t e = f->info.bat[blk];
            if (lsec != none) {
                printf("logical sector %s: block number: %s, sector offset: %s, file offset: %s\n", num(hex, s),
                       num(hex, blk), num(hex, in),
                       e == 0xFFFFFFFFu ? "not allocated" : num(hex, ((uint64_t)e + f->info.bitmap_len / 512 + in) * 512));
            } else {
                uint8_t byte = 0;
                if (e != 0xFFFFFFFFu && pread(f->fd, &byte, 1, (off_t)((uint64_t)e * 512 + in / 8)) != 1)
                    byte = 0;
                printf("block %s: sec: %s: %d\n", num(hex, blk), num(hex, in), (byte >> (7 - in % 8)) & 1);
            }
        }
    }
    if (bat != none) {
        if (!block_in_range(f, bat, count, hex)) {
            rc = -ERANGE;
            goto out;
        }
        for (uint64_t b = bat; b < bat + count; b++)
            printf("block: %s: offset: %s\n", num(hex, b),
                   f->info.bat[b] == 0xFFFFFFFFu ? "not allocated" : num(hex, (uint64_t)f->info.bat[b] * 512));
    }
    if (bitmap != none || data != none) {
        uint64_t first = bitmap != none ? bitmap : data;
        if (!block_in_range(f, first, count, hex)) {
            rc = -ERANGE;
            goto out;
        }
        if (bitmap != none && (rc = read_blocks(f, bitmap, count, false)) < 0)
            goto out;
        if (data != none && (rc = read_blocks(f, data, count, true)) < 0)
            goto out;
    }
    if (batmap) {
        uint8_t *map = f->info.batmap_bytes ? malloc(f->info.batmap_bytes) : NULL;
        if (!map) {
            printf("failed to read batmap: %d\n", -EINVAL);
            rc = -EINVAL;
            goto out;
        }
        rc = pread(f->fd, map, f->info.batmap_bytes, (off_t)f->info.batmap_offset) == (ssize_t)f->info.batmap_bytes
                 ? write_out(map, f->info.batmap_bytes)
                 : -EIO;
        free(map);
        if (rc < 0)
            goto out;
    }
    if (rsec != none && (rc = read_sectors(f, rsec, count)) < 0)
        goto out;
out:
    storage_vhd_file_close(f);
    fflush(stdout);
    return status(rc);
}

/* ---- scan ---------------------------------------------------------------------------- */

typedef struct scanned {
    char *path, *name;        /* name: basename unless -v */
    char *parent;             /* parent's name as printed, NULL: none */
    uint64_t capacity, size;
    int hidden, error;
    char message[256];
    bool printed;
} scanned;

typedef struct scan_list {
    scanned *v;
    size_t n, cap;
} scan_list;

static const char *base_of(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static bool scan_has(const scan_list *l, const char *path) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].path, path) == 0)
            return true;
    return false;
}

static int scan_one(scan_list *l, const char *path, bool verbose, bool with_parents, unsigned depth) {
    storage_vhd_file *f = NULL;
    scanned s = {0};
    char err[256] = "", *parent_path = NULL;
    struct stat st;
    int rc;

    if (scan_has(l, path) || depth > STORAGE_VHD_MAX_CHAIN)
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        scanned *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    s.path = strdup(path);
    s.name = strdup(verbose ? path : base_of(path));
    if (!s.path || !s.name) {
        free(s.path);
        free(s.name);
        return -ENOMEM;
    }
    rc = storage_vhd_file_open(&f, path, false, err, sizeof err);
    if (rc < 0) {
        s.error = rc;
        snprintf(s.message, sizeof s.message, "%s", rc == -EINVAL && err[0] ? err : strerror(-rc));
        l->v[l->n++] = s;
        return 0;
    }
    s.capacity = storage_vhd_file_virtual_size(f);
    s.size = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : f->file_size;
    s.hidden = f->info.footer[VHD_F_HIDDEN];
    if (f->info.type == STORAGE_VHD_TYPE_DIFFERENCING) {
        if (storage_vhd_file_parent_path(f, &parent_path) == 0)
            s.parent = strdup(verbose ? parent_path : base_of(parent_path));
        else
            s.parent = storage_vhd_file_parent_name(f);
    }
    storage_vhd_file_close(f);
    l->v[l->n++] = s;
    if (with_parents && parent_path)
        rc = scan_one(l, parent_path, verbose, true, depth + 1);
    free(parent_path);
    return rc;
}

static void print_scanned(const scanned *s, unsigned indent, bool missing_parent) {
    printf("%*s", (int)indent * 3, "");
    if (s->error)
        printf("vhd=%s scan-error=%d error-message='%s'\n", s->name, s->error, s->message);
    else
        printf("vhd=%s capacity=%" PRIu64 " size=%" PRIu64 " hidden=%d parent=%s%s\n", s->name, s->capacity, s->size,
               s->hidden, s->parent ? s->parent : "none", missing_parent ? " (not found in scan)" : "");
}

static const scanned *scan_find_name(const scan_list *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            return &l->v[i];
    return NULL;
}

static void print_tree(scan_list *l, scanned *s, unsigned depth) {
    s->printed = true;
    print_scanned(s, depth, false);
    for (size_t i = 0; i < l->n; i++)
        if (!l->v[i].printed && l->v[i].parent && strcmp(l->v[i].parent, s->name) == 0 && depth < STORAGE_VHD_MAX_CHAIN)
            print_tree(l, &l->v[i], depth + 1);
}

static int usage_scan(void) {
    printf("usage: [OPTIONS] FILES\noptions: [-m match filter] [-f fast] [-c continue on failure] "
           "[-l LVM volume] [-p pretty print] [-a scan parents] [-v verbose] [-M show markers] [-h help]\n");
    return EINVAL;
}

static int scan_pattern(scan_list *l, const char *pattern, const char *vg, bool verbose, bool parents) {
    glob_t g = {0};
    char *full = NULL;
    int rc = 0, grc;

    if (vg) { /* LVs of the volume group, through their device links (/dev/VG/LV) */
        const char *dev = getenv("XENAPID_LVM_DEV_DIR");
        if (asprintf(&full, "%s/%s/%s", dev && *dev ? dev : "/dev", vg, pattern) < 0)
            return -ENOMEM;
    }
    grc = glob(full ? full : pattern, 0, NULL, &g);
    free(full);
    if (grc == GLOB_NOMATCH)
        return 0;
    if (grc != 0)
        return -EIO;
    for (size_t i = 0; i < g.gl_pathc && rc == 0; i++)
        rc = scan_one(l, g.gl_pathv[i], verbose, parents, 0);
    globfree(&g);
    return rc;
}

static int cmd_scan(int argc, char **argv) {
    const char *pattern = NULL, *vg = NULL;
    bool pretty = false, parents = false, verbose = false, keep_going = false;
    scan_list l = {0};
    int c, rc = 0, first_error = 0;

    optind = 0;
    while ((c = getopt(argc, argv, "m:fcl:pavMh")) != -1)
        switch (c) {
        case 'm': pattern = optarg; break;
        case 'f': case 'M': break;
        case 'c': keep_going = true; break;
        case 'l': vg = optarg; break;
        case 'p': pretty = true; break;
        case 'a': parents = true; break;
        case 'v': verbose = true; break;
        default: return usage_scan();
        }
    if (!pattern && optind == argc)
        return usage_scan();
    if (pattern)
        rc = scan_pattern(&l, pattern, vg, verbose, parents);
    for (int i = optind; i < argc && rc == 0; i++)
        rc = vg ? scan_pattern(&l, argv[i], vg, verbose, parents) : scan_one(&l, argv[i], verbose, parents, 0);
    if (rc < 0) {
        fprintf(stderr, "scan failed: %d\n", rc);
        goto out;
    }
    if (pretty) {
        for (size_t i = 0; i < l.n; i++)
            if (!l.v[i].printed && (!l.v[i].parent || !scan_find_name(&l, l.v[i].parent))) {
                bool missing = l.v[i].parent != NULL;
                l.v[i].printed = true;
                print_scanned(&l.v[i], 0, missing);
                for (size_t k = 0; k < l.n; k++)
                    if (!l.v[k].printed && l.v[k].parent && strcmp(l.v[k].parent, l.v[i].name) == 0)
                        print_tree(&l, &l.v[k], 1);
            }
        for (size_t i = 0; i < l.n; i++) /* in a loop of parents: printed flat */
            if (!l.v[i].printed)
                print_scanned(&l.v[i], 0, false);
    } else
        for (size_t i = 0; i < l.n; i++)
            print_scanned(&l.v[i], 0, false);
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].error && !first_error)
            first_error = l.v[i].error;
    rc = keep_going ? 0 : first_error;
out:
    for (size_t i = 0; i < l.n; i++) {
        free(l.v[i].path);
        free(l.v[i].name);
        free(l.v[i].parent);
    }
    free(l.v);
    return status(rc);
}

/* ---- main ------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    command_fn fn;
} commands[] = {
    {"create", cmd_create}, {"snapshot", cmd_snapshot}, {"query", cmd_query},     {"read", cmd_read},
    {"set", cmd_set},       {"repair", cmd_repair},     {"resize", cmd_resize},   {"coalesce", cmd_coalesce},
    {"modify", cmd_modify}, {"scan", cmd_scan},         {"check", cmd_check},
};

static int usage(void) {
    printf("usage: vhd-util COMMAND [OPTIONS]\nCOMMAND := {");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf(" %s%s", commands[i].name, i + 1 < sizeof commands / sizeof commands[0] ? " |" : " }\n");
    return EINVAL;
}

int main(int argc, char **argv) {
    int n = 0;

    if (argc < 2)
        return usage();
    /* --debug (sm passes it) only makes blktap's library log to syslog */
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--debug") != 0)
            argv[n++] = argv[i];
    argv[n] = NULL;
    argc = n;
    if (argc < 2)
        return usage();
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            int rc = commands[i].fn(argc - 1, argv + 1);
            fflush(stdout);
            return rc;
        }
    fprintf(stderr, "invalid COMMAND %s\n", argv[1]);
    usage();
    return EINVAL;
}
