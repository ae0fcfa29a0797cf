/* PUT /import_raw_vdi and GET /export_raw_vdi, as xapi serves them: a VDI's
 * data in and out over plain HTTP, as raw bytes or as a VHD image.
 *
 * Both take session_id (query, cookie) or basic auth, vdi (ref or uuid),
 * format (raw, the default, or vhd) and optionally task_id, the task that
 * reports the transfer (else one is made; its ref is in the task-id reply
 * header). Meanwhile the VDI carries the task in current_operations, so
 * VDI.destroy and VDI.resize answer VDI_IN_USE. An import streams the body
 * into the VDI's file as it arrives (zeros become holes); an export streams
 * the file (a VHD export is a dynamic image without its all-zero blocks). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/log.h"
#include "storage/internal.h"
#include "storage/vhd.h"
#include "storage/vhd_file.h"
#include "xapi/error.h"
#include "xapi/http.h"
#include "xapi/task.h"

#define STAGE_SIZE (256 * 1024) /* import bytes gathered before they are written */
#define GRAIN 4096              /* zero runs this aligned and long become holes */
#define PROGRESS_NS 200000000   /* at most one progress update per 200 ms: each is a commit */

static const xapi_class *task_cls(void) {
    return storage_cls(XAPI_C_task);
}

/* ---- tasks ------------------------------------------------------------------ */

/* The task given by task_id (HANDLE_INVALID if none such), or a new pending one. Write lock held. */
static int task_take(xapi_server *srv, const char *given, const char *label, char ret[XAPI_REF_LEN + 1],
                     xapi_value *err) {
    xapi_obj *t;

    if (given) {
        t = xapi_store_get_class(srv->store, task_cls(), given);
        if (!t)
            return xapi_fail(err, "HANDLE_INVALID", "task", given, NULL);
    } else
        t = xapi_task_new(srv, label, "");
    memcpy(ret, t->ref, XAPI_REF_LEN + 1);
    return 0;
}

/* ---- one transfer ------------------------------------------------------------- */

/* Import data goes through this: contiguous bytes gathered, then written, with
 * GRAIN-aligned zero runs (and the ranges a VHD leaves out) punched as holes. */
typedef struct writer {
    int fd;
    storage_vhd_file *vf; /* a VHD VDI (ext): written through the image's blocks, not the file */
    uint64_t limit;     /* the VDI's virtual size */
    bool strict;        /* raw: any byte past limit is an error; VHD: zeros past it are dropped */
    char *stage;
    uint64_t stage_off;
    size_t stage_len;
    uint64_t hole_off, hole_len;
} writer;

typedef struct transfer {
    xapi_server *srv;
    bool import, vhd;
    char task[XAPI_REF_LEN + 1], vdi[XAPI_REF_LEN + 1];
    char uuid[XAPI_UUID_LEN + 1];
    int fd;
    storage_vhd_file *vf; /* a VHD VDI, opened with its chain (then fd is -1) */
    int64_t size;       /* the VDI's virtual size */
    uint64_t expected;  /* import: Content-Length (0: unknown); export: bytes of the reply */
    uint64_t done;      /* bytes received / produced */
    int pct;            /* progress last reported */
    int64_t pct_ns;     /* when (xapi_now_ns) */
    xapi_value err;     /* the first failure */
    writer w;
    storage_vhd_decoder *dec;
    storage_vhd_layout layout;
    /* Export from a file: the extent around the last read, [ext_off, ext_end), data or a hole
     * (ext_end 0: none known yet), so that holes are answered with zeros rather than read. */
    uint64_t ext_off, ext_end;
    bool ext_data;
    uint64_t file_size; /* export from a regular file: its size (0: none, or a device) */
    bool ended; /* transfer_end done */
    /* Where the data is (vdi_take), opened without the lock (transfer_open_data). */
    storage_sr h;
    char sr[XAPI_REF_LEN + 1];
    char *path, *location;
} transfer;

static bool all_zero(const char *p, size_t n) {
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static int pwrite_all(int fd, const char *p, size_t n, uint64_t off) {
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* Into a VHD: whole sectors, so a partial one at either end is read first and merged. */
static int vhd_pwrite(storage_vhd_file *vf, const char *p, size_t n, uint64_t off) {
    uint64_t start = off / 512 * 512, end = (off + n + 511) / 512 * 512;
    char *buf;
    int rc = 0;

    if (start == off && end == off + n)
        return storage_vhd_file_write(vf, off, p, n);
    buf = xapi_malloc((size_t)(end - start));
    if (start < off)
        rc = storage_vhd_file_read(vf, start, buf, 512);
    if (rc == 0 && end > off + n)
        rc = storage_vhd_file_read(vf, end - 512, buf + (end - 512 - start), 512);
    if (rc == 0) {
        memcpy(buf + (off - start), p, n);
        rc = storage_vhd_file_write(vf, start, buf, (size_t)(end - start));
    }
    free(buf);
    return rc;
}

static int writer_pwrite(writer *w, const char *p, size_t n, uint64_t off) {
    return w->vf ? vhd_pwrite(w->vf, p, n, off) : pwrite_all(w->fd, p, n, off);
}

/* Zeros into a VHD: only where it does not read as zeros already (a fresh
 * image stays sparse; a leaf over a parent gets them written). */
static int vhd_zero(storage_vhd_file *vf, uint64_t off, uint64_t end) {
    char *buf = xapi_malloc(STAGE_SIZE);
    int rc = 0;

    for (; off < end && rc == 0; off += STAGE_SIZE) {
        size_t k = end - off < STAGE_SIZE ? (size_t)(end - off) : STAGE_SIZE;
        if (storage_vhd_file_unallocated(vf, off, k))
            continue; /* zeros already, known without reading them */
        rc = storage_vhd_file_read(vf, off, buf, k);
        if (rc == 0 && !all_zero(buf, k)) {
            memset(buf, 0, k);
            rc = vhd_pwrite(vf, buf, k, off);
        }
    }
    free(buf);
    return rc;
}

static int hole_flush(writer *w) {
    static const char zeros[65536];
    uint64_t off = w->hole_off, end = w->hole_off + w->hole_len;
    int rc = 0;

    w->hole_len = 0;
    if (w->vf)
        return vhd_zero(w->vf, off, end);
    if (off == end || fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)(end - off)) == 0)
        return 0;
    if (errno != EOPNOTSUPP)
        return -errno;
    for (; off < end && rc == 0; off += sizeof zeros) /* no holes here: write the zeros */
        rc = pwrite_all(w->fd, zeros, end - off < sizeof zeros ? (size_t)(end - off) : sizeof zeros, off);
    return rc;
}

static int hole_add(writer *w, uint64_t off, uint64_t len) {
    int rc = 0;

    if (w->hole_len && w->hole_off + w->hole_len == off) {
        w->hole_len += len;
        return 0;
    }
    if (w->hole_len)
        rc = hole_flush(w);
    w->hole_off = off;
    w->hole_len = len;
    return rc;
}

/* Writes the gathered bytes: GRAIN pieces of zeros become holes, the rest is written in runs. */
static int stage_flush(writer *w) {
    uint64_t off = w->stage_off, end = w->stage_off + w->stage_len, run = off;
    int rc = 0;

    while (off < end && rc == 0) {
        uint64_t next = (off / GRAIN + 1) * GRAIN < end ? (off / GRAIN + 1) * GRAIN : end;
        const char *p = w->stage + (off - w->stage_off);

        if ((next - off == GRAIN || next == w->limit) && all_zero(p, (size_t)(next - off))) {
            if (run < off)
                rc = writer_pwrite(w, w->stage + (run - w->stage_off), (size_t)(off - run), run);
            if (rc == 0)
                rc = hole_add(w, off, next - off);
            run = next;
        }
        off = next;
    }
    if (rc == 0 && run < end)
        rc = writer_pwrite(w, w->stage + (run - w->stage_off), (size_t)(end - run), run);
    w->stage_len = 0;
    return rc;
}

/* len bytes of the disk at off (data NULL: zeros). -EFBIG past the VDI's size (see strict). */
static int writer_put(writer *w, uint64_t off, const char *data, size_t len) {
    int rc = 0;

    if (off + len > w->limit) {
        uint64_t keep = off < w->limit ? w->limit - off : 0;
        if (w->strict || (data && !all_zero(data + keep, len - (size_t)keep)))
            return -EFBIG;
        len = (size_t)keep;
    }
    if (!data)
        return len ? hole_add(w, off, len) : 0;
    while (len > 0 && rc == 0) {
        size_t k;
        if (w->stage_len && (off != w->stage_off + w->stage_len || w->stage_len == STAGE_SIZE))
            rc = stage_flush(w);
        if (rc < 0)
            break;
        if (!w->stage_len)
            w->stage_off = off;
        k = STAGE_SIZE - w->stage_len < len ? STAGE_SIZE - w->stage_len : len;
        memcpy(w->stage + w->stage_len, data, k);
        w->stage_len += k;
        data += k;
        off += k;
        len -= k;
    }
    return rc;
}

static int writer_finish(writer *w) {
    int rc = w->stage_len ? stage_flush(w) : 0;

    if (rc == 0 && w->hole_len)
        rc = hole_flush(w);
    if (rc == 0 && fdatasync(w->vf ? w->vf->fd : w->fd) < 0)
        rc = -errno;
    return rc;
}

static int vhd_write(void *opaque, uint64_t offset, const void *data, size_t len) {
    return writer_put(opaque, offset, data, len);
}

static void transfer_free(transfer *t) {
    if (!t)
        return;
    if (t->fd >= 0)
        close(t->fd);
    storage_vhd_file_close(t->vf);
    free(t->w.stage);
    storage_vhd_decoder_free(t->dec);
    storage_vhd_layout_free(&t->layout);
    xapi_value_free(&t->err);
    storage_sr_handle_free(&t->h);
    free(t->path);
    free(t->location);
    free(t);
}

/* Records the first failure of the transfer. */
static void transfer_fail(transfer *t, const char *code, const char *param) {
    if (t->err.kind == XAPI_V_ARRAY)
        return;
    xapi_fail(&t->err, code, param, NULL);
}

static void progress(transfer *t) {
    xapi_store *st = t->srv->store;
    int pct;
    xapi_obj *o;

    if (!t->expected)
        return;
    pct = (int)(t->done * 100 / t->expected);
    if (pct <= t->pct || pct >= 100 || xapi_now_ns() - t->pct_ns < PROGRESS_NS)
        return;
    t->pct = pct;
    t->pct_ns = xapi_now_ns();
    xapi_store_write_begin(st);
    o = xapi_store_get_class(st, task_cls(), t->task);
    if (o)
        xapi_obj_set(st, o, XAPI_F_task_progress, xapi_value_float(pct / 100.0));
    xapi_store_write_end(st);
}

/* The HTTP status that goes with an API error. */
static unsigned error_status(const xapi_value *err) {
    const char *code = err->n ? xapi_value_str(&err->items[0]) : "";

    if (strcmp(code, "HANDLE_INVALID") == 0 || strcmp(code, "VDI_MISSING") == 0)
        return 404;
    if (strcmp(code, "VDI_TOO_SMALL") == 0)
        return 413;
    if (strcmp(code, "INTERNAL_ERROR") == 0 && err->n > 1 && strncmp(err->items[1].s, "Unknown format", 14) == 0)
        return 400;
    if (strcmp(code, "VDI_IN_USE") == 0 || strcmp(code, "OTHER_OPERATION_IN_PROGRESS") == 0 ||
        strcmp(code, "VDI_READONLY") == 0)
        return 409;
    return 500;
}

/* A reply naming the error as [CODE, params...]. */
static void reply_error(xapi_http_reply *rep, const char *task, const xapi_value *err) {
    xapi_buf b = XAPI_BUF_INIT;

    for (uint32_t i = 0; i < err->n; i++)
        xapi_buf_printf(&b, "%s%s", i ? " " : "", xapi_value_str(&err->items[i]));
    xapi_buf_putc(&b, '\n');
    xapi_http_reply_text(rep, error_status(err), b.data);
    xapi_buf_free(&b);
    if (task && *task)
        xapi_http_reply_header(rep, "task-id", "%s", task);
}

/* Checks (write lock held) and marks the VDI for the transfer; where its data
 * is, for transfer_open_data to open without the lock. */
static int vdi_take(transfer *t, xapi_obj *vdi) {
    xapi_server *srv = t->srv;
    xapi_obj *sr = xapi_store_get_class(srv->store, storage_cls(XAPI_C_SR), vdi->fields[XAPI_F_VDI_SR].s);
    const xapi_value *cur = &vdi->fields[XAPI_F_VDI_current_operations];
    const xapi_value *vbds = &vdi->fields[XAPI_F_VDI_VBDs];
    storage_sr h = {0};
    int rc;

    if (!sr)
        return xapi_fail(&t->err, "HANDLE_INVALID", "SR", vdi->fields[XAPI_F_VDI_SR].s, NULL);
    rc = storage_sr_plugged(srv, sr, &h, &t->err);
    /* What storage_vdi_attach_info refuses, but for the data's own checks (I/O: transfer_open_data). */
    if (rc == 0)
        rc = storage_vdi_check_no_writer(vdi, &t->err);
    if (rc == 0 && vdi->fields[XAPI_F_VDI_missing].b)
        rc = xapi_fail(&t->err, "VDI_MISSING", sr->ref, vdi->ref, NULL);
    if (rc < 0)
        goto out;
    if (t->import) {
        if (vdi->fields[XAPI_F_VDI_read_only].b) {
            rc = xapi_fail(&t->err, "VDI_READONLY", vdi->ref, NULL);
            goto out;
        }
        rc = storage_sr_cap(sr, h.drv, STORAGE_CAP_VDI_WRITE, &t->err);
        /* A writer excludes everything else: readers, and VMs using the disk. */
        if (rc == 0 && cur->n > 0)
            rc = xapi_fail(&t->err, "OTHER_OPERATION_IN_PROGRESS", "VDI", vdi->ref,
                           xapi_value_str(&cur->members[0].value), cur->members[0].name, NULL);
        for (uint32_t i = 0; i < vbds->n && rc == 0; i++) {
            xapi_obj *b = xapi_store_get_class(srv->store, storage_cls(XAPI_C_VBD), vbds->items[i].s);
            if (b && b->fields[XAPI_F_VBD_currently_attached].b)
                rc = xapi_fail(&t->err, "VDI_IN_USE", vdi->ref, "import", NULL);
        }
    }
    /* The mark is a read ("copy"): VDI.destroy/resize/forget meanwhile get VDI_IN_USE. */
    if (rc == 0)
        rc = storage_vdi_check_op(srv, vdi, "copy", &t->err);
    if (rc < 0)
        goto out;
    t->h = h;
    h = (storage_sr){0};
    t->location = xapi_strdup(vdi->fields[XAPI_F_VDI_location].s);
    memcpy(t->sr, sr->ref, sizeof t->sr);
    memcpy(t->vdi, vdi->ref, sizeof t->vdi);
    memcpy(t->uuid, vdi->uuid, sizeof t->uuid);
    t->size = vdi->fields[XAPI_F_VDI_virtual_size].i;
    storage_vdi_op_begin(srv, vdi, t->task, "copy");
out:
    storage_sr_handle_free(&h);
    return rc;
}

/* Finds and opens the data of the VDI vdi_take marked, without the store
 * lock (storage that does not answer stalls this transfer only): not
 * through a symlink or a hard link planted in the SR, which could be any
 * file on the host. */
static int transfer_open_data(transfer *t) {
    storage_err e = {0};

    t->path = t->h.drv->vdi_path(&t->h, t->location);
    if (!t->path)
        return xapi_fail(&t->err, "VDI_MISSING", t->sr, t->vdi, NULL);
    if (storage_path_is_vhd(t->h.drv, t->path)) {
        if (!t->h.drv->vdi_open_vhd)
            return xapi_fail(&t->err, "SR_OPERATION_NOT_SUPPORTED", t->sr, NULL);
        if (t->h.drv->vdi_open_vhd(&t->h, t->location, t->import, &t->vf, &e) < 0)
            return storage_backend_fail(&t->err, &e);
        return 0;
    }
    t->fd = storage_open_vdi(t->h.drv, t->path, t->import ? O_WRONLY : O_RDONLY);
    if (t->fd < 0)
        return xapi_fail(&t->err, "VDI_MISSING", t->sr, t->vdi, NULL);
    return 0;
}

static void transfer_close(transfer *t);

/* Authentication, arguments, task and VDI: a transfer ready to run, or the
 * reply that refuses it (the task, if any, failed with the error). */
static int transfer_open(xapi_server *srv, xapi_http_req *r, bool import, transfer **ret, xapi_http_reply *rep) {
    xapi_store *st = srv->store;
    const char *format = xapi_http_req_arg(r, "format"), *vdi_arg = xapi_http_req_arg(r, "vdi");
    transfer *t = NULL;
    xapi_obj *vdi = NULL;
    xapi_value denied = {0};
    char msg[160];
    int rc, stored;

    rc = xapi_http_req_authorize(r, import ? "put_import_raw_vdi" : "get_export_raw_vdi", XAPI_ROLE_VM_ADMIN, &denied);
    if (rc == -EPERM) {
        reply_error(rep, NULL, &denied);
        rep->status = 403;
        xapi_value_free(&denied);
        return rc;
    }
    if (rc < 0) {
        xapi_http_reply_text(rep, 401, "a valid session_id or basic authentication is needed\n");
        xapi_http_reply_header(rep, "WWW-Authenticate", "Basic realm=\"xapi\"");
        return -EACCES;
    }
    t = xapi_calloc(1, sizeof *t);
    t->srv = srv;
    t->import = import;
    t->fd = -1;
    t->vhd = format && strcmp(format, "vhd") == 0;

    xapi_store_write_begin(st);
    rc = task_take(srv, xapi_http_req_arg(r, "task_id"), import ? "import_raw_vdi" : "export_raw_vdi", t->task,
                   &t->err);
    if (rc < 0) {
        xapi_store_write_abort(st);
        reply_error(rep, NULL, &t->err);
        transfer_free(t);
        return rc;
    }
    if (format && strcmp(format, "raw") != 0 && strcmp(format, "vhd") != 0) {
        snprintf(msg, sizeof msg, "Unknown format %s", format);
        rc = xapi_fail(&t->err, "INTERNAL_ERROR", msg, NULL);
    } else {
        vdi = vdi_arg ? xapi_store_get_class(st, storage_cls(XAPI_C_VDI), vdi_arg) : NULL;
        if (!vdi && vdi_arg)
            vdi = xapi_store_get_by_uuid(st, storage_cls(XAPI_C_VDI), vdi_arg);
        rc = vdi ? vdi_take(t, vdi) : xapi_fail(&t->err, "HANDLE_INVALID", "VDI", vdi_arg ? vdi_arg : "", NULL);
    }
    if (rc < 0)
        xapi_task_end(srv, t->task, NULL, &t->err);
    if ((stored = xapi_store_write_end_durable(st)) < 0 && rc == 0) {
        xapi_store_write_begin(st);
        storage_vdi_op_end(srv, t->vdi, t->task);
        rc = xapi_store_fail(st, stored, &t->err);
        xapi_task_end(srv, t->task, NULL, &t->err);
        xapi_store_write_end(st);
    }
    if (rc < 0) {
        log_info("storage: %s of VDI %s refused: %s", import ? "import" : "export", vdi_arg ? vdi_arg : "(none)",
                 xapi_value_str(&t->err.items[0]));
        reply_error(rep, t->task, &t->err);
        transfer_free(t);
        return rc;
    }
    rc = transfer_open_data(t);
    if (rc < 0) { /* marked and stored: the mark goes, the task fails */
        reply_error(rep, t->task, &t->err);
        transfer_close(t);
        return rc;
    }
    *ret = t;
    return 0;
}

/* The transfer is over: the VDI's data closed, the VDI free again, its sizes
 * refreshed (an import's, read without the store lock), the task ended. Once
 * only: an export ends when its last byte has been read, before it is sent,
 * so that a client that has it all finds the VDI free (a VDI.destroy right
 * after does not get VDI_IN_USE), and the reply's end finds nothing to do. */
static void transfer_end_keep(transfer *t, bool keep_data);

static void transfer_end(transfer *t) {
    transfer_end_keep(t, false);
}

/* keep_data: the export's files stay open (until transfer_free) for the last
 * bytes, which are sent from them after this (export_extent). */
static void transfer_end_keep(transfer *t, bool keep_data) {
    xapi_server *srv = t->srv;
    xapi_store *st = srv->store;
    bool ok = t->err.kind != XAPI_V_ARRAY, have_info = false;
    storage_vdi_info info = {0};
    storage_sr h = {0};
    xapi_value ignored = {0};
    char result[XAPI_REF_LEN + 32], sr_ref[XAPI_REF_LEN + 1] = "";
    char *location = NULL;
    xapi_obj *vdi, *sr;

    if (t->ended)
        return;
    t->ended = true;
    if (!keep_data) {
        if (t->fd >= 0)
            close(t->fd);
        t->fd = -1;
        t->w.fd = -1;
        storage_vhd_file_close(t->vf);
        t->vf = NULL;
        t->w.vf = NULL;
    }
    if (t->import) {
        xapi_store_rdlock(st);
        vdi = xapi_store_get_class(st, storage_cls(XAPI_C_VDI), t->vdi);
        sr = vdi ? xapi_store_get_class(st, storage_cls(XAPI_C_SR), vdi->fields[XAPI_F_VDI_SR].s) : NULL;
        if (sr && storage_sr_plugged(srv, sr, &h, &ignored) == 0) {
            location = xapi_strdup(vdi->fields[XAPI_F_VDI_location].s);
            memcpy(sr_ref, sr->ref, sizeof sr_ref);
        }
        xapi_store_rdunlock(st);
        if (location && h.drv->vdi_stat)
            have_info = storage_io_vdi_stat(&h, "import_raw_vdi", location, &info, &(storage_err){0}) == 0;
    }

    xapi_store_write_begin(st);
    storage_vdi_op_end(srv, t->vdi, t->task);
    vdi = xapi_store_get_class(st, storage_cls(XAPI_C_VDI), t->vdi);
    sr = vdi && *sr_ref ? xapi_store_get_class(st, storage_cls(XAPI_C_SR), sr_ref) : NULL;
    if (vdi && have_info)
        xapi_obj_set_int(st, vdi, XAPI_F_VDI_physical_utilisation, info.physical_utilisation);
    if (sr)
        storage_sr_refresh(srv, sr, NULL);
    result[0] = '\0';
    if (t->import) /* as xapi: the VDI is the import's result */
        snprintf(result, sizeof result, "<value>%s</value>", t->vdi);
    xapi_task_end(srv, t->task, result, ok ? NULL : &t->err);
    xapi_store_write_end_durable(st);
    if (*sr_ref)
        storage_sr_sizes_refresh(srv, sr_ref);
    log_info("storage: %s of VDI %s (%" PRIu64 " bytes%s) %s%s%s", t->import ? "import" : "export", t->uuid, t->done,
             t->vhd ? ", vhd" : "", ok ? "done" : "failed: ", ok ? "" : xapi_value_str(&t->err.items[0]),
             ok ? "" : (t->err.n > 1 ? " ..." : ""));
    storage_vdi_info_free(&info);
    storage_sr_handle_free(&h);
    xapi_value_free(&ignored);
    free(location);
}

/* transfer_end if not done yet, and t freed. */
static void transfer_close(transfer *t) {
    transfer_end(t);
    transfer_free(t);
}

/* ---- import ----------------------------------------------------------------------- */

static int import_begin(xapi_server *srv, xapi_http_req *r, void **ret_state, xapi_http_reply *rep) {
    const char *clen = xapi_http_req_header(r, "Content-Length");
    transfer *t = NULL;
    char size[32];
    int rc;

    rc = transfer_open(srv, r, true, &t, rep);
    if (rc < 0)
        return rc;
    t->expected = clen ? strtoull(clen, NULL, 10) : 0;
    /* Raw bytes past the VDI's end: refused before any is read. */
    if (!t->vhd && t->expected > (uint64_t)t->size) {
        snprintf(size, sizeof size, "%" PRIu64, t->expected);
        transfer_fail(t, "VDI_TOO_SMALL", t->vdi);
        xapi_array_append(&t->err, xapi_value_string(size));
        reply_error(rep, t->task, &t->err);
        transfer_close(t);
        return -EFBIG;
    }
    t->w = (writer){.fd = t->fd, .vf = t->vf, .limit = (uint64_t)t->size, .strict = !t->vhd, .stage = xapi_malloc(STAGE_SIZE)};
    if (t->vhd)
        t->dec = storage_vhd_decoder_new(vhd_write, &t->w);
    if (t->vhd && !t->dec)
        xapi_oom();
    *ret_state = t;
    return 0;
}

/* A failure of the data: the error the task reports. */
static void import_error(transfer *t, int rc) {
    char msg[256], size[32];

    if (rc == -EFBIG) {
        snprintf(size, sizeof size, "%" PRId64, t->size);
        transfer_fail(t, "VDI_TOO_SMALL", t->vdi);
        xapi_array_append(&t->err, xapi_value_string(size));
        return;
    }
    if (rc == -EINVAL && t->dec)
        snprintf(msg, sizeof msg, "invalid VHD: %s", storage_vhd_decoder_error(t->dec));
    else
        snprintf(msg, sizeof msg, "writing the VDI: %s", strerror(-rc));
    transfer_fail(t, "INTERNAL_ERROR", msg);
}

static int import_data(void *state, const char *buf, size_t len) {
    transfer *t = state;
    int rc;

    rc = t->dec ? storage_vhd_decoder_feed(t->dec, buf, len) : writer_put(&t->w, t->done, buf, len);
    t->done += len;
    if (rc < 0) {
        import_error(t, rc);
        return rc;
    }
    progress(t);
    return 0;
}

static void import_end(void *state, xapi_http_reply *rep) {
    transfer *t = state;
    uint64_t vsize;
    int rc = 0;

    if (t->err.kind != XAPI_V_ARRAY) {
        if (t->dec)
            rc = storage_vhd_decoder_finish(t->dec, &vsize);
        if (rc == 0)
            rc = writer_finish(&t->w);
        if (rc < 0)
            import_error(t, rc);
    }
    if (t->err.kind == XAPI_V_ARRAY)
        reply_error(rep, t->task, &t->err);
    else {
        xapi_http_reply_text(rep, 200, "");
        xapi_http_reply_header(rep, "task-id", "%s", t->task);
    }
    transfer_close(t);
}

static void import_abort(void *state) {
    transfer *t = state;

    transfer_fail(t, "INTERNAL_ERROR", "the connection ended before the data did");
    transfer_close(t);
}

static const xapi_http_put_ops import_ops = {
    .begin = import_begin,
    .data = import_data,
    .end = import_end,
    .abort = import_abort,
};

/* ---- export ------------------------------------------------------------------------- */

/* Finds the extent of the file around off: data or a hole, and where it ends. Without
 * SEEK_DATA (or past the end, where pread finds nothing) all of it counts as data. */
static void find_extent(transfer *t, uint64_t off) {
    off_t data = lseek(t->fd, (off_t)off, SEEK_DATA), hole;

    t->ext_off = off;
    if (data < 0) {
        t->ext_data = errno != ENXIO; /* ENXIO: only a hole from off to the end */
        t->ext_end = UINT64_MAX;
    } else if ((uint64_t)data > off) {
        t->ext_data = false;
        t->ext_end = (uint64_t)data;
    } else {
        hole = lseek(t->fd, (off_t)off, SEEK_HOLE);
        t->ext_data = true;
        t->ext_end = hole > (off_t)off ? (uint64_t)hole : UINT64_MAX;
    }
}

/* The disk's bytes at off (zeros past the end of the file). A hole of the file is not read:
 * reading one makes the kernel allocate and clear page cache for it, which costs a sparse
 * VDI's export as much as its data does. */
static int disk_read(void *opaque, uint64_t off, void *buf, size_t len) {
    transfer *t = opaque;
    char *p = buf;

    if (t->vf) /* through the chain */
        return storage_vhd_file_read(t->vf, off, buf, len);
    while (len > 0) {
        size_t n;
        ssize_t k;

        if (!t->ext_end || off < t->ext_off || off >= t->ext_end)
            find_extent(t, off);
        n = t->ext_end - off < len ? (size_t)(t->ext_end - off) : len;
        if (!t->ext_data) {
            memset(p, 0, n);
            k = (ssize_t)n;
        } else if ((k = pread(t->fd, p, n, (off_t)off)) < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0) {
            memset(p, 0, len);
            break;
        }
        p += k;
        len -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* Whether [off, off + len) of the file holds anything but zeros. */
static int range_has_data(transfer *t, uint64_t off, uint64_t len, char *buf, size_t buf_len, bool *ret) {
    off_t data = t->vf ? -1 : lseek(t->fd, (off_t)off, SEEK_DATA);
    uint64_t end = off + len;
    int rc;

    if (t->vf && storage_vhd_file_unallocated(t->vf, off, len)) {
        *ret = false; /* no block in the chain: zeros, known from the BATs */
        return 0;
    }
    if (!t->vf && data < 0 && errno == ENXIO) { /* (through a chain, errno is not lseek's) */
        *ret = false; /* only holes from here */
        return 0;
    }
    if (data >= 0)
        off = (uint64_t)data; /* else no SEEK_DATA: read it all */
    for (; off < end; off += buf_len) {
        size_t k = end - off < buf_len ? (size_t)(end - off) : buf_len;
        rc = disk_read(t, off, buf, k);
        if (rc < 0)
            return rc;
        if (!all_zero(buf, k)) {
            *ret = true;
            return 0;
        }
    }
    *ret = false;
    return 0;
}

/* The dynamic VHD layout of the VDI: which blocks have data. */
static int export_layout(transfer *t) {
    uint32_t n = storage_vhd_blocks((uint64_t)t->size);
    bool *present = NULL;
    char *buf = NULL;
    uint8_t id[16];
    int rc = 0;

    if (n == 0 && t->size > 0)
        return -EFBIG;
    present = xapi_calloc(n + 1, sizeof *present);
    buf = xapi_malloc(STAGE_SIZE);
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        uint64_t off = (uint64_t)i * STORAGE_VHD_BLOCK_SIZE;
        uint64_t len = (uint64_t)t->size - off < STORAGE_VHD_BLOCK_SIZE ? (uint64_t)t->size - off
                                                                          : STORAGE_VHD_BLOCK_SIZE;
        rc = range_has_data(t, off, len, buf, STAGE_SIZE, &present[i]);
    }
    for (size_t i = 0; i < 16; i++) /* the VDI's uuid as the image's unique id */
        sscanf(t->uuid + i * 2 + (i >= 4) + (i >= 6) + (i >= 8) + (i >= 10), "%2hhx", &id[i]);
    if (rc == 0)
        rc = storage_vhd_layout_init(&t->layout, (uint64_t)t->size, present, id, xapi_wall_seconds());
    free(present);
    free(buf);
    return rc;
}

static ssize_t export_read(void *state, uint64_t pos, char *buf, size_t max) {
    transfer *t = state;
    ssize_t n;
    int rc;

    if (t->vhd)
        n = storage_vhd_layout_read(&t->layout, pos, buf, max, disk_read, t);
    else {
        rc = disk_read(t, pos, buf, max);
        n = rc < 0 ? rc : (ssize_t)max;
    }
    if (n < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "reading the VDI: %s", strerror((int)-n));
        transfer_fail(t, "INTERNAL_ERROR", msg);
        return n;
    }
    t->done = pos + (uint64_t)n;
    progress(t);
    if (t->done >= t->expected)
        transfer_end(t); /* the last byte read: the VDI is free before the client has it all */
    return n;
}

/* Where the disk's bytes from off lie as they are in a file, for sendfile: a
 * raw file's data (not its holes, which read answers with zeros without
 * touching the page cache), or a VHD chain's full blocks. 1, 0 or an errno. */
static int disk_extent(transfer *t, uint64_t off, uint64_t *len, int *ret_fd, uint64_t *ret_off) {
    if (t->vf)
        return storage_vhd_file_extent(t->vf, off, len, ret_fd, ret_off);
    if (off >= t->file_size)
        return 0;
    if (!t->ext_end || off < t->ext_off || off >= t->ext_end)
        find_extent(t, off);
    if (!t->ext_data)
        return 0;
    *len = *len < t->ext_end - off ? *len : t->ext_end - off;
    *len = *len < t->file_size - off ? *len : t->file_size - off;
    *ret_fd = t->fd;
    *ret_off = off;
    return 1;
}

static int export_extent(void *state, uint64_t pos, uint64_t *len, int *ret_fd, uint64_t *ret_off) {
    transfer *t = state;
    uint64_t off = pos;
    int rc;

    if (t->ended || (t->vhd && !storage_vhd_layout_data_at(&t->layout, pos, len, &off)))
        return 0;
    rc = disk_extent(t, off, len, ret_fd, ret_off);
    if (rc < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "reading the VDI: %s", strerror(-rc));
        transfer_fail(t, "INTERNAL_ERROR", msg);
        return rc;
    }
    if (rc == 0)
        return 0;
    t->done = pos + *len;
    progress(t);
    if (t->done >= t->expected)
        transfer_end_keep(t, true); /* as export_read: the VDI is free before the client has it all */
    return 1;
}

static void export_done(void *state, bool complete) {
    transfer *t = state;

    if (!complete)
        transfer_fail(t, "INTERNAL_ERROR", "the connection ended before the data did");
    transfer_close(t);
}

static void export_get(xapi_server *srv, xapi_http_req *r, xapi_http_reply *rep) {
    transfer *t = NULL;
    int rc;

    if (transfer_open(srv, r, false, &t, rep) < 0)
        return;
    /* Read front to back: a larger readahead for a disk not in the page cache. */
    if (t->fd >= 0) {
        struct stat st;
        posix_fadvise(t->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        if (fstat(t->fd, &st) == 0 && S_ISREG(st.st_mode))
            t->file_size = (uint64_t)st.st_size; /* (an LV is only read: see storage_vhd_file_extent) */
    }
    for (storage_vhd_file *f = t->vf; f; f = f->parent)
        posix_fadvise(f->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    rc = t->vhd ? export_layout(t) : 0;
    if (rc < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "reading the VDI: %s", strerror(-rc));
        transfer_fail(t, "INTERNAL_ERROR", msg);
        reply_error(rep, t->task, &t->err);
        transfer_close(t);
        return;
    }
    t->expected = t->vhd ? t->layout.total : (uint64_t)t->size;
    rep->status = 200;
    rep->type = "application/octet-stream";
    rep->close = true;
    rep->read = export_read;
    rep->extent = export_extent;
    rep->done = export_done;
    rep->state = t;
    rep->stream_len = t->expected;
    xapi_http_reply_header(rep, "Content-Disposition", "attachment; filename=\"%s.%s\"", t->uuid,
                           t->vhd ? "vhd" : "raw");
    xapi_http_reply_header(rep, "task-id", "%s", t->task);
}

void storage_transfer_register(void) {
    xapi_http_register_put("/import_raw_vdi", &import_ops);
    xapi_http_register_stream_get("/export_raw_vdi", export_get);
}
