/* VDI.*: creation (the implicit constructor's hook), destruction, clone,
 * snapshot, copy, resize, introduce/forget, and the entry points the VM layer
 * uses (storage.h). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agent/log.h"
#include "storage/internal.h"
#include "vmops/backend.h"
#include "xapi/error.h"

/* Ends a transaction that failed after its slow part: what it did undo (the
 * operation's marks on its VDIs) is stored, not aborted, or they would stay
 * busy for good. A store that cannot take even that has logged why. */
static void end_ops_stored(xapi_store *st) {
    xapi_store_write_end_durable(st);
}

static int finish_ref(xapi_server *srv, int rc, const char *ref, char ret[XAPI_REF_LEN + 1], xapi_value *err) {
    if (rc < 0) {
        xapi_store_write_abort(srv->store);
        return rc;
    }
    if ((rc = xapi_store_write_end_durable(srv->store)) < 0)
        return xapi_store_fail(srv->store, rc, err);
    memcpy(ret, ref, XAPI_REF_LEN + 1);
    return 0;
}

static int size_check(int64_t size, xapi_value *err) {
    storage_err e = {0};

    if (size < 0 || size > STORAGE_MAX_VDI_SIZE) {
        storage_err_set(&e, SM_ERR_VDI_SIZE, EINVAL, "VDI Invalid size",
                        size < 0 ? "negative size" : "larger than 16 TiB");
        return storage_backend_fail(err, &e);
    }
    return 0;
}

static xapi_obj *get_vdi(xapi_server *srv, const char *ref) {
    return xapi_store_get_class(srv->store, storage_cls(XAPI_C_VDI), ref);
}

static xapi_obj *sr_of(xapi_server *srv, const xapi_obj *vdi) {
    return xapi_store_get_class(srv->store, storage_cls(XAPI_C_SR), vdi->fields[XAPI_F_VDI_SR].s);
}

/* ---- create ---------------------------------------------------------------- */

typedef int (*vdi_create_fn)(const storage_sr *h, const char *location, int64_t size, storage_vdi_info *ret,
                             storage_err *e);

/* How a new VDI is made: in its driver's format, or in the other one a
 * driver holding both takes when asked (sm_config type=raw or vhd, as sm's
 * FileSR takes it), and raw for a suspend image, which the backends write
 * as plain bytes. sm_type and vdi_type may be NULL. */
static vdi_create_fn create_call(const storage_driver *drv, const char *sm_type, const char *vdi_type) {
    if (drv->vdi_create_raw &&
        ((sm_type && strcmp(sm_type, "raw") == 0) || (vdi_type && strcmp(vdi_type, "suspend") == 0)))
        return storage_io_vdi_create_raw;
    if (drv->vdi_create_vhd && sm_type && strcmp(sm_type, "vhd") == 0)
        return storage_io_vdi_create_vhd;
    return storage_io_vdi_create;
}

static vdi_create_fn create_call_obj(const storage_driver *drv, const xapi_obj *o) {
    return create_call(drv, storage_map_get(&o->fields[XAPI_F_VDI_sm_config], "type"), o->fields[XAPI_F_VDI_type].s);
}

/* create_call for a VDI.create record not made yet (vdi_before_create). */
static vdi_create_fn create_call_rec(const storage_driver *drv, const xapi_value *rec) {
    const xapi_value *type = xapi_struct_get(rec, "type");

    return create_call(drv, storage_map_get(xapi_struct_get(rec, "sm_config"), "type"),
                       type && type->kind == XAPI_V_STRING ? type->s : NULL);
}

/* The data of a new VDI record whose fields are set (SR, virtual_size, type...). */
static int vdi_make_data(xapi_server *srv, xapi_obj *o, xapi_value *err) {
    xapi_obj *sr = sr_of(srv, o);
    storage_sr h = {0};
    storage_vdi_info info = {0};
    storage_err e = {0};
    int rc;

    if (!sr)
        return xapi_fail(err, "HANDLE_INVALID", "SR", o->fields[XAPI_F_VDI_SR].s, NULL);
    if (strcmp(o->fields[XAPI_F_VDI_type].s, "cbt_metadata") == 0)
        return xapi_fail(err, "VDI_INCOMPATIBLE_TYPE", "", "cbt_metadata", NULL);
    rc = storage_sr_plugged(srv, sr, &h, err);
    if (rc < 0)
        return rc;
    rc = storage_sr_cap(sr, h.drv, STORAGE_CAP_VDI_CREATE, err);
    if (rc == 0)
        rc = size_check(o->fields[XAPI_F_VDI_virtual_size].i, err);
    if (rc == 0 && create_call_obj(h.drv, o)(&h, o->uuid, o->fields[XAPI_F_VDI_virtual_size].i, &info, &e) < 0)
        rc = storage_backend_fail(err, &e);
    if (rc == 0) {
        storage_vdi_set_info(srv, o, &info);
        xapi_obj_set_bool(srv->store, o, XAPI_F_VDI_managed, true);
        xapi_obj_set_bool(srv->store, o, XAPI_F_VDI_storage_lock, false);
        storage_vdi_update_allowed_operations(srv, o);
        storage_sr_refresh(srv, sr, NULL);
        storage_sr_update_allowed(srv, sr);
        log_debug("storage: VDI %s created on SR %s (%" PRId64 " bytes)", o->uuid, sr->uuid, info.virtual_size);
    }
    storage_vdi_info_free(&info);
    storage_sr_handle_free(&h);
    return rc;
}

/* VDI.create's data made before the record, without the store lock (vdi_before_create). */
typedef struct vdi_made {
    storage_sr h;
    char sr_ref[XAPI_REF_LEN + 1];
    char location[XAPI_UUID_LEN + 1];
    storage_vdi_info info;
    storage_sr_io *sizes; /* the SR's sizes after it, or NULL */
} vdi_made;

static void vdi_made_free(vdi_made *m) {
    if (!m)
        return;
    storage_sr_handle_free(&m->h);
    storage_vdi_info_free(&m->info);
    storage_sr_io_free(m->sizes);
    free(m);
}

/* An int64 field of a record as a client sent it (XML-RPC: a decimal string). */
static bool rec_int(const xapi_value *rec, const char *key, int64_t *ret) {
    const xapi_value *v = xapi_struct_get(rec, key);
    char *end;

    if (v && v->kind == XAPI_V_INT) {
        *ret = v->i;
        return true;
    }
    if (!v || v->kind != XAPI_V_STRING || !*v->s)
        return false;
    errno = 0;
    *ret = strtoll(v->s, &end, 10);
    return errno == 0 && *end == '\0';
}

/* The generic VDI.create: the data is made first, with no lock held (a
 * mount whose server stopped answering stalls only this call, for at most
 * storage_io_timeout), when the record names a plugged SR that can. What
 * does not fit (a bad record, an SR that cannot) is left to after_create,
 * which refuses it under the lock as before. */
static int vdi_before_create(xapi_call *c, const xapi_value *rec, char uuid[XAPI_UUID_LEN + 1]) {
    xapi_server *srv = c->srv;
    const xapi_value *sr_v, *type;
    storage_sr h = {0};
    storage_err e = {0};
    xapi_value ignored = {0};
    vdi_made *m = NULL;
    xapi_obj *sr;
    int64_t size;
    int rc;

    if (rec->kind != XAPI_V_STRUCT)
        return 0;
    sr_v = xapi_struct_get(rec, "SR");
    type = xapi_struct_get(rec, "type");
    if (!sr_v || sr_v->kind != XAPI_V_STRING || !rec_int(rec, "virtual_size", &size) ||
        (type && type->kind == XAPI_V_STRING && strcmp(type->s, "cbt_metadata") == 0))
        return 0;
    xapi_store_rdlock(srv->store);
    sr = xapi_store_get_class(srv->store, storage_cls(XAPI_C_SR), sr_v->s);
    rc = sr ? storage_sr_plugged(srv, sr, &h, &ignored) : -ENOENT;
    if (rc == 0 && (storage_sr_cap(sr, h.drv, STORAGE_CAP_VDI_CREATE, &ignored) < 0 || size_check(size, &ignored) < 0))
        rc = -EINVAL;
    xapi_store_rdunlock(srv->store);
    xapi_value_free(&ignored);
    if (rc < 0) {
        storage_sr_handle_free(&h);
        return 0;
    }
    m = xapi_calloc(1, sizeof *m);
    m->h = h;
    snprintf(m->sr_ref, sizeof m->sr_ref, "%s", sr_v->s);
    xapi_uuid_generate(m->location);
    rc = create_call_rec(m->h.drv, rec)(&m->h, m->location, size, &m->info, &e);
    if (rc < 0) {
        vdi_made_free(m);
        return storage_backend_fail(&c->err, &e);
    }
    if (storage_sr_io_run(&m->h, STORAGE_SR_IO_STAT, NULL, 0, "SR sizes", &m->sizes, &e) < 0)
        m->sizes = NULL;
    snprintf(uuid, XAPI_UUID_LEN + 1, "%s", m->location);
    c->create_state = m;
    return 0;
}

/* The constructor failed after vdi_before_create made the data: it goes (no lock held). */
static void vdi_create_undo(xapi_call *c) {
    vdi_made *m = c->create_state;
    storage_err e = {0};

    if (!m)
        return;
    c->create_state = NULL;
    if (storage_io_vdi_delete(&m->h, m->location, &e) < 0)
        log_warning("storage: SR %s: VDI data %s of a failed VDI.create left: %s", m->h.uuid, m->location, e.text);
    vdi_made_free(m);
}

static int vdi_after_create(xapi_call *c, xapi_obj *o) {
    xapi_server *srv = c->srv;
    vdi_made *m = c->create_state;
    xapi_obj *sr = sr_of(srv, o);
    storage_sr h = {0};
    int rc;

    if (!m)
        return vdi_make_data(srv, o, &c->err);
    /* Made for this SR, which must still be plugged; else create_undo removes it. */
    if (!sr || strcmp(sr->ref, m->sr_ref) != 0 || strcmp(o->uuid, m->location) != 0)
        return xapi_call_fail(c, "HANDLE_INVALID", "SR", o->fields[XAPI_F_VDI_SR].s);
    rc = storage_sr_plugged(srv, sr, &h, &c->err);
    storage_sr_handle_free(&h);
    if (rc < 0)
        return rc;
    if (strcmp(o->fields[XAPI_F_VDI_type].s, "cbt_metadata") == 0)
        return xapi_call_fail(c, "VDI_INCOMPATIBLE_TYPE", "", "cbt_metadata");
    storage_vdi_set_info(srv, o, &m->info);
    xapi_obj_set_bool(srv->store, o, XAPI_F_VDI_managed, true);
    xapi_obj_set_bool(srv->store, o, XAPI_F_VDI_storage_lock, false);
    storage_vdi_update_allowed_operations(srv, o);
    storage_sr_set_sizes(srv, sr, m->sizes);
    storage_sr_update_allowed(srv, sr);
    log_debug("storage: VDI %s created on SR %s (%" PRId64 " bytes)", o->uuid, sr->uuid, m->info.virtual_size);
    c->create_state = NULL;
    vdi_made_free(m);
    return 0;
}

int storage_vdi_create(xapi_server *srv, const char *sr_ref, const char *name, int64_t size, const char *type,
                       char ret_ref[XAPI_REF_LEN + 1], xapi_value *err) {
    const xapi_enum *types = storage_cls(XAPI_C_VDI)->fields[XAPI_F_VDI_type].type->enumv;
    const char *canon = types ? xapi_enum_canonical(types, type && *type ? type : "user") : NULL;
    char ref[XAPI_REF_LEN + 1];
    xapi_obj *o;
    int rc;

    if (!canon)
        return xapi_fail(err, "INVALID_VALUE", "type", type ? type : "", NULL);
    xapi_store_write_begin(srv->store);
    if (!xapi_store_get_class(srv->store, storage_cls(XAPI_C_SR), sr_ref)) {
        xapi_store_write_abort(srv->store);
        return xapi_fail(err, "HANDLE_INVALID", "SR", sr_ref, NULL);
    }
    o = xapi_obj_create(srv->store, storage_cls(XAPI_C_VDI));
    xapi_obj_set_string(srv->store, o, XAPI_F_VDI_SR, sr_ref);
    xapi_obj_set_string(srv->store, o, XAPI_F_VDI_name_label, name ? name : "");
    xapi_obj_set_string(srv->store, o, XAPI_F_VDI_type, canon);
    xapi_obj_set_int(srv->store, o, XAPI_F_VDI_virtual_size, size);
    xapi_obj_set_bool(srv->store, o, XAPI_F_VDI_sharable, false);
    xapi_obj_set_bool(srv->store, o, XAPI_F_VDI_read_only, false);
    memcpy(ref, o->ref, sizeof ref);
    rc = vdi_make_data(srv, o, err);
    if (rc < 0)
        xapi_obj_destroy(srv->store, o);
    rc = finish_ref(srv, rc, ref, ret_ref, err);
    if (rc == 0)
        storage_sr_sizes_refresh(srv, sr_ref);
    return rc;
}

/* ---- destroy ---------------------------------------------------------------- */

/* The VDI of the SR at location, or NULL. */
static xapi_obj *vdi_at(xapi_server *srv, const xapi_obj *sr, const char *location) {
    const xapi_value *vdis = &sr->fields[XAPI_F_SR_VDIs];

    for (uint32_t i = 0; i < vdis->n; i++) {
        xapi_obj *v = get_vdi(srv, vdis->items[i].s);
        if (v && !v->deleted && strcmp(v->fields[XAPI_F_VDI_location].s, location) == 0)
            return v;
    }
    return NULL;
}

/* Whether a VDI of the SR other than `except` is a VHD over location. */
static bool has_children(xapi_server *srv, const xapi_obj *sr, const char *location, const xapi_obj *except) {
    const xapi_value *vdis = &sr->fields[XAPI_F_SR_VDIs];

    for (uint32_t i = 0; i < vdis->n; i++) {
        xapi_obj *v = get_vdi(srv, vdis->items[i].s);
        const char *p = v && v != except && !v->deleted ? storage_map_get(&v->fields[XAPI_F_VDI_sm_config], "vhd-parent")
                                                        : NULL;
        if (p && strcmp(p, location) == 0)
            return true;
    }
    return false;
}

/* The only VDI of the SR other than `except` over location, or NULL (none, or several). */
static xapi_obj *only_child(xapi_server *srv, const xapi_obj *sr, const char *location, const xapi_obj *except) {
    const xapi_value *vdis = &sr->fields[XAPI_F_SR_VDIs];
    xapi_obj *found = NULL;

    for (uint32_t i = 0; i < vdis->n; i++) {
        xapi_obj *v = get_vdi(srv, vdis->items[i].s);
        const char *p = v && v != except && !v->deleted ? storage_map_get(&v->fields[XAPI_F_VDI_sm_config], "vhd-parent")
                                                        : NULL;
        if (!p || strcmp(p, location) != 0)
            continue;
        if (found)
            return NULL;
        found = v;
    }
    return found;
}

#define LEAF_COALESCE_MAX (INT64_C(20) << 20) /* sm's live leaf-coalesce limit: a quick copy */

/* A base copy's record, once its image is gone (p_ref "": it had none). Write lock held. */
static void drop_base_record(xapi_server *srv, const char *sr_ref, const char *p_ref) {
    xapi_obj *sr = xapi_store_get_class(srv->store, storage_cls(XAPI_C_SR), sr_ref);
    xapi_obj *p = *p_ref ? get_vdi(srv, p_ref) : NULL;

    if (!p)
        return;
    if (sr)
        storage_sr_refresh(srv, sr, p);
    xapi_obj_destroy(srv->store, p);
}

/* A hidden parent left with one child that is a leaf no guest, no operation
 * uses and holds little data: the leaf is folded into it (sm's leaf
 * coalesce), so snapshot-and-delete cycles (Nova's image upload) do not
 * grow the chain. A bigger leaf stays a leaf. Entered with the write lock
 * held, which it releases: both VDIs are marked "blocked" while the data
 * moves without the lock (a guest cannot attach the leaf meanwhile). */
static void coalesce_leaf(xapi_server *srv, xapi_obj *sr, const storage_sr *h, const char *parent, const char *opid) {
    xapi_store *st = srv->store;
    xapi_obj *child = only_child(srv, sr, parent, NULL), *p;
    storage_vdi_info info = {0};
    storage_err e = {0};
    char child_ref[XAPI_REF_LEN + 1], p_ref[XAPI_REF_LEN + 1] = "", sr_ref[XAPI_REF_LEN + 1];
    char *loc = NULL;
    int rc;

    if (!h->drv->vdi_coalesce_leaf || !child || !child->fields[XAPI_F_VDI_managed].b ||
        child->fields[XAPI_F_VDI_current_operations].n > 0 ||
        storage_any_set(srv, &child->fields[XAPI_F_VDI_VBDs], XAPI_C_VBD, XAPI_F_VBD_currently_attached) ||
        has_children(srv, sr, child->fields[XAPI_F_VDI_location].s, NULL)) {
        xapi_store_write_end(st);
        return;
    }
    p = vdi_at(srv, sr, parent);
    if (p && (p->fields[XAPI_F_VDI_managed].b || p->fields[XAPI_F_VDI_current_operations].n > 0)) {
        xapi_store_write_end(st);
        return;
    }
    loc = xapi_strdup(child->fields[XAPI_F_VDI_location].s);
    memcpy(child_ref, child->ref, sizeof child_ref);
    memcpy(sr_ref, sr->ref, sizeof sr_ref);
    storage_vdi_op_begin(srv, child, opid, "blocked");
    if (p) {
        memcpy(p_ref, p->ref, sizeof p_ref);
        storage_vdi_op_begin(srv, p, opid, "blocked");
    }
    xapi_store_write_end(st);

    rc = storage_io_vdi_coalesce_leaf(h, loc, LEAF_COALESCE_MAX, &info, &e);

    xapi_store_write_begin(st);
    storage_vdi_op_end(srv, child_ref, opid);
    if (*p_ref)
        storage_vdi_op_end(srv, p_ref, opid);
    if (rc == 0) {
        log_info("storage: SR %s: VDI %s coalesced into its base copy %s", h->uuid, loc, parent);
        drop_base_record(srv, sr_ref, p_ref);
        child = get_vdi(srv, child_ref);
        if (child && info.location)
            storage_vdi_set_info(srv, child, &info);
    } else if (rc != -E2BIG)
        log_warning("storage: SR %s: VDI %s not coalesced into %s: %s", h->uuid, loc, parent, e.text);
    end_ops_stored(st);
    storage_vdi_info_free(&info);
    free(loc);
}

/* After a VHD over parent was destroyed: the hidden parents no VDI needs
 * any more go, up the chain (sm's GC of garbage base copies); a visible
 * parent is a VDI of its own and stays. Each step is decided under the
 * lock and its I/O done without it (called without the lock). */
static void gc_parents(xapi_server *srv, const char *sr_ref, const storage_sr *h, const char *parent,
                       const char *opid) {
    xapi_store *st = srv->store;
    char *loc = parent && *parent ? xapi_strdup(parent) : NULL;

    for (unsigned depth = 0; loc && depth < 64; depth++) {
        storage_vdi_info info = {0};
        storage_err e = {0};
        char p_ref[XAPI_REF_LEN + 1] = "";
        xapi_obj *sr, *p;
        int rc;

        if (storage_io_vdi_stat(h, "base copy clean-up", loc, &info, &e) < 0 || !info.hidden) {
            storage_vdi_info_free(&info);
            break;
        }
        xapi_store_write_begin(st);
        sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), sr_ref);
        p = sr ? vdi_at(srv, sr, loc) : NULL;
        if (sr && storage_sr_attached(srv, sr) && has_children(srv, sr, loc, NULL)) {
            coalesce_leaf(srv, sr, h, loc, opid); /* releases the lock */
            storage_vdi_info_free(&info);
            break;
        }
        if (!sr || !storage_sr_attached(srv, sr) || (p && p->fields[XAPI_F_VDI_current_operations].n > 0)) {
            xapi_store_write_end(st);
            storage_vdi_info_free(&info);
            break;
        }
        if (p) {
            memcpy(p_ref, p->ref, sizeof p_ref);
            storage_vdi_op_begin(srv, p, opid, "destroy");
        }
        xapi_store_write_end(st);

        rc = storage_io_vdi_delete(h, loc, &e);

        xapi_store_write_begin(st);
        if (*p_ref)
            storage_vdi_op_end(srv, p_ref, opid);
        if (rc == 0) {
            log_info("storage: SR %s: base copy %s no longer needed, deleted", h->uuid, loc);
            drop_base_record(srv, sr_ref, p_ref);
        } else
            log_warning("storage: SR %s: base copy %s left: %s", h->uuid, loc, e.text);
        end_ops_stored(st);
        free(loc);
        loc = rc == 0 && info.parent ? xapi_strdup(info.parent) : NULL;
        storage_vdi_info_free(&info);
    }
    free(loc);
}

/* The VDI's record goes, and what refers to it: as xapi, its VBDs, and VMs
 * forget it as their suspend image. Write lock held. */
static void vdi_drop_record(xapi_server *srv, xapi_obj *o) {
    xapi_store *st = srv->store;
    xapi_obj *sr = sr_of(srv, o);
    xapi_value vbds = xapi_value_copy(&o->fields[XAPI_F_VDI_VBDs]);

    for (uint32_t i = 0; i < vbds.n; i++) {
        xapi_obj *b = xapi_store_get_class(st, storage_cls(XAPI_C_VBD), vbds.items[i].s);
        if (b)
            xapi_obj_destroy(st, b);
    }
    xapi_value_free(&vbds);
    for (xapi_obj *vm = xapi_store_first(st, storage_cls(XAPI_C_VM)); vm; vm = xapi_store_next(vm))
        if (strcmp(vm->fields[XAPI_F_VM_suspend_VDI].s, o->ref) == 0)
            xapi_obj_set_string(st, vm, XAPI_F_VM_suspend_VDI, XAPI_NULL_REF);
    if (sr)
        storage_sr_refresh(srv, sr, o);
    log_debug("storage: VDI %s destroyed", o->uuid);
    xapi_obj_destroy(st, o);
}

/* A VDI.destroy whose deletion was abandoned at the time limit (the call
 * failed with SR_BACKEND_FAILURE_47) and which then went through after all:
 * the data is gone, so the record goes too, as the destroy would have done
 * (and as the next SR.scan would), unless an operation has the VDI now or
 * its location is another's: then it is only marked missing. */
typedef struct destroy_late {
    xapi_server *srv;
    char vdi[XAPI_REF_LEN + 1], sr[XAPI_REF_LEN + 1];
    char location[];
} destroy_late;

static void vdi_destroy_late(void *arg, int rc) {
    destroy_late *d = arg;
    xapi_store *st = d->srv->store;
    xapi_obj *o;

    if (rc < 0)
        return;
    xapi_store_write_begin(st);
    o = get_vdi(d->srv, d->vdi);
    if (o && strcmp(o->fields[XAPI_F_VDI_location].s, d->location) == 0) {
        if (o->fields[XAPI_F_VDI_current_operations].n == 0) {
            log_notice("storage: VDI %s: its abandoned VDI.destroy went through late: the record goes too", o->uuid);
            vdi_drop_record(d->srv, o);
        } else
            xapi_obj_set_bool(st, o, XAPI_F_VDI_missing, true);
    }
    xapi_store_write_end_durable(st);
    storage_sr_sizes_refresh(d->srv, d->sr);
}

/* VDI.destroy: checked and marked ("destroy") under the lock, the data
 * deleted without it (a VHD that other VDIs are made over stays for them,
 * hidden, as sm's FileSR does), the record removed under the lock again if
 * the deletion worked; then the base copies nothing needs any more, and the
 * SR's sizes. Called without the lock. */
static int vdi_destroy_common(xapi_server *srv, const char *opid, const char *vdi_ref, xapi_value *err) {
    xapi_store *st = srv->store;
    storage_sr h = {0};
    storage_err e = {0};
    xapi_obj *o, *sr;
    char sr_ref[XAPI_REF_LEN + 1];
    char *location = NULL, *parent = NULL;
    destroy_late *late;
    bool hide;
    int rc;

    xapi_store_write_begin(st);
    o = get_vdi(srv, vdi_ref);
    if (!o) {
        xapi_store_write_abort(st);
        return xapi_fail(err, "HANDLE_INVALID", "VDI", vdi_ref, NULL);
    }
    sr = sr_of(srv, o);
    if (!sr) { /* an orphan record: nothing to delete but itself */
        vdi_drop_record(srv, o);
        rc = xapi_store_write_end_durable(st);
        return rc < 0 ? xapi_store_fail(st, rc, err) : 0;
    }
    rc = storage_sr_plugged(srv, sr, &h, err);
    if (rc == 0)
        rc = storage_vdi_check_op(srv, o, "destroy", err);
    if (rc < 0) {
        xapi_store_write_abort(st);
        goto out;
    }
    memcpy(sr_ref, sr->ref, sizeof sr_ref);
    location = xapi_strdup(o->fields[XAPI_F_VDI_location].s);
    parent = xapi_strdup(storage_map_get(&o->fields[XAPI_F_VDI_sm_config], "vhd-parent") ?: "");
    hide = h.drv->vdi_set_hidden && has_children(srv, sr, location, o);
    storage_vdi_op_begin(srv, o, opid, "destroy");
    xapi_store_write_end(st);

    late = xapi_calloc(1, sizeof *late + strlen(location) + 1);
    late->srv = srv;
    snprintf(late->vdi, sizeof late->vdi, "%s", vdi_ref);
    memcpy(late->sr, sr_ref, sizeof late->sr);
    strcpy(late->location, location);
    rc = storage_io_vdi_delete_late(&h, location, hide, vdi_destroy_late, late, &e);

    xapi_store_write_begin(st);
    storage_vdi_op_end(srv, vdi_ref, opid);
    if (rc < 0) {
        rc = storage_backend_fail(err, &e);
        end_ops_stored(st);
        goto out;
    }
    o = get_vdi(srv, vdi_ref);
    if (o)
        vdi_drop_record(srv, o);
    if ((rc = xapi_store_write_end_durable(st)) < 0) {
        rc = xapi_store_fail(st, rc, err);
        goto out;
    }
    if (!hide)
        gc_parents(srv, sr_ref, &h, parent, opid);
    storage_sr_sizes_refresh(srv, sr_ref);
out:
    free(location);
    free(parent);
    storage_sr_handle_free(&h);
    return rc;
}

static int vdi_destroy_call(xapi_call *c) {
    char opid[XAPI_REF_LEN + 1];
    int rc;

    storage_op_id(c, opid);
    rc = vdi_destroy_common(c->srv, opid, c->args[0].s, &c->err);
    if (rc == 0)
        xapi_out_void(c->out);
    return rc;
}

int storage_vdi_destroy(xapi_server *srv, const char *vdi_ref, xapi_value *err) {
    char opid[XAPI_REF_LEN + 1];

    storage_op_id(NULL, opid);
    return vdi_destroy_common(srv, opid, vdi_ref, err);
}

const xapi_class_hooks storage_vdi_hooks = {
    .before_create = vdi_before_create,
    .create_undo = vdi_create_undo,
    .after_create = vdi_after_create,
};

/* ---- clone / snapshot / copy ------------------------------------------------------ */

static const char *mode_op(storage_clone_mode mode) {
    return mode == STORAGE_CLONE ? "clone" : mode == STORAGE_SNAPSHOT ? "snapshot" : "copy";
}

/* The metadata a new VDI takes from its source (xapi's snapshot_and_clone / copy). */
typedef struct vdi_meta {
    xapi_value name_label, name_description, type, other_config, xenstore_data, on_boot, tags;
    bool sharable, read_only, allow_caching;
} vdi_meta;

static void meta_take(vdi_meta *m, const xapi_obj *v) {
    m->name_label = xapi_value_copy(&v->fields[XAPI_F_VDI_name_label]);
    m->name_description = xapi_value_copy(&v->fields[XAPI_F_VDI_name_description]);
    m->type = xapi_value_copy(&v->fields[XAPI_F_VDI_type]);
    m->other_config = xapi_value_copy(&v->fields[XAPI_F_VDI_other_config]);
    m->xenstore_data = xapi_value_copy(&v->fields[XAPI_F_VDI_xenstore_data]);
    m->on_boot = xapi_value_copy(&v->fields[XAPI_F_VDI_on_boot]);
    m->tags = xapi_value_copy(&v->fields[XAPI_F_VDI_tags]);
    m->sharable = v->fields[XAPI_F_VDI_sharable].b;
    m->read_only = v->fields[XAPI_F_VDI_read_only].b;
    m->allow_caching = v->fields[XAPI_F_VDI_allow_caching].b;
}

static void meta_free(vdi_meta *m) {
    xapi_value_free(&m->name_label);
    xapi_value_free(&m->name_description);
    xapi_value_free(&m->type);
    xapi_value_free(&m->other_config);
    xapi_value_free(&m->xenstore_data);
    xapi_value_free(&m->on_boot);
    xapi_value_free(&m->tags);
}

/* Moves the metadata into the new record (m is emptied). */
static void meta_apply(xapi_server *srv, xapi_obj *v, vdi_meta *m, storage_clone_mode mode) {
    xapi_store *st = srv->store;

    xapi_obj_set(st, v, XAPI_F_VDI_name_label, m->name_label);
    xapi_obj_set(st, v, XAPI_F_VDI_name_description, m->name_description);
    xapi_obj_set(st, v, XAPI_F_VDI_type, m->type);
    xapi_obj_set(st, v, XAPI_F_VDI_other_config, m->other_config);
    xapi_obj_set(st, v, XAPI_F_VDI_xenstore_data, m->xenstore_data);
    xapi_obj_set(st, v, XAPI_F_VDI_on_boot, m->on_boot);
    xapi_obj_set(st, v, XAPI_F_VDI_tags, m->tags);
    xapi_obj_set_bool(st, v, XAPI_F_VDI_sharable, m->sharable);
    /* CA-64962: copies are always writable; clones and snapshots keep the source's mode. */
    xapi_obj_set_bool(st, v, XAPI_F_VDI_read_only, mode == STORAGE_COPY ? false : m->read_only);
    xapi_obj_set_bool(st, v, XAPI_F_VDI_allow_caching, m->allow_caching);
    memset(m, 0, sizeof *m);
}

static int clone_fail(storage_clone_mode mode, xapi_value *err, storage_err *e) {
    if (mode == STORAGE_SNAPSHOT && e->code == SM_ERR_VDI_CLONE) {
        const char *rest = strstr(e->text, " [opterr=");
        char text[sizeof e->text];
        snprintf(text, sizeof text, "Failed to snapshot VDI%s", rest ? rest : "");
        e->code = SM_ERR_VDI_SNAPSHOT;
        snprintf(e->text, sizeof e->text, "%s", text);
    }
    return storage_backend_fail(err, e);
}

/* After a chain was made: the base copy's record (hidden, not managed), and
 * the source VDI's record refreshed (now a leaf over the base), from what
 * the driver said of them without the lock (empty infos: it could not). */
static void chain_records(xapi_server *srv, xapi_obj *sr, const char *src_ref, const char *base_uuid,
                          const storage_vdi_info *base_info, const storage_vdi_info *src_info) {
    xapi_obj *src = get_vdi(srv, src_ref), *base;
    char ref[XAPI_REF_LEN + 1];

    xapi_ref_generate(ref);
    if (base_info->location) {
        base = storage_vdi_new(srv, sr, ref, base_uuid, base_info);
        if (base)
            storage_vdi_update_allowed_operations(srv, base);
    } else
        log_warning("storage: SR %s: base copy %s has no record: its image could not be read", sr->uuid, base_uuid);
    if (src && src_info->location)
        storage_vdi_set_info(srv, src, src_info);
}

static int clone_common(xapi_server *srv, const char *opid, const char *vdi_ref, storage_clone_mode mode,
                        const char *sr_ref, char ret_ref[XAPI_REF_LEN + 1], xapi_value *err) {
    xapi_store *st = srv->store;
    const char *op = mode_op(mode);
    const char *what = mode == STORAGE_CLONE ? "VDI.clone" : mode == STORAGE_SNAPSHOT ? "VDI.snapshot" : "VDI.copy";
    storage_sr src = {0}, dst = {0};
    storage_vdi_info info = {0}, base_info = {0}, src_info = {0};
    storage_err e = {0}, pe = {0};
    bool undo = false;
    int published = -ECANCELED; /* storage_io_vdi_publish's result, once called */
    vdi_meta meta;
    xapi_obj *vdi, *src_sr, *dst_sr, *nv;
    char uuid[XAPI_UUID_LEN + 1], ref[XAPI_REF_LEN + 1], dst_sr_ref[XAPI_REF_LEN + 1], src_ref[XAPI_REF_LEN + 1];
    char base_uuid[XAPI_UUID_LEN + 1];
    char *src_path = NULL, *src_loc = NULL;
    bool chain = false, src_vhd, raw_copy;
    int64_t size;
    int rc;

    memset(&meta, 0, sizeof meta);
    xapi_store_write_begin(st);
    vdi = get_vdi(srv, vdi_ref);
    if (!vdi) {
        rc = xapi_fail(err, "HANDLE_INVALID", "VDI", vdi_ref, NULL);
        goto fail_locked;
    }
    src_sr = sr_of(srv, vdi);
    if (!src_sr) {
        rc = xapi_fail(err, "HANDLE_INVALID", "SR", vdi->fields[XAPI_F_VDI_SR].s, NULL);
        goto fail_locked;
    }
    rc = storage_sr_plugged(srv, src_sr, &src, err);
    if (rc == 0)
        rc = storage_vdi_check_op(srv, vdi, op, err);
    if (rc < 0)
        goto fail_locked;
    dst_sr = src_sr;
    if (mode == STORAGE_COPY && !storage_is_null_ref(sr_ref)) {
        dst_sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), sr_ref);
        if (!dst_sr) {
            rc = xapi_fail(err, "HANDLE_INVALID", "SR", sr_ref, NULL);
            goto fail_locked;
        }
    }
    rc = storage_sr_plugged(srv, dst_sr, &dst, err);
    if (rc == 0 && (!dst.drv->vdi_import || !dst.drv->vdi_publish))
        rc = xapi_fail(err, "SR_OPERATION_NOT_SUPPORTED", dst_sr->ref, NULL);
    if (rc == 0)
        rc = storage_sr_cap(dst_sr, dst.drv, STORAGE_CAP_VDI_CREATE, err);
    if (rc < 0)
        goto fail_locked;
    src_loc = xapi_strdup(vdi->fields[XAPI_F_VDI_location].s);
    xapi_uuid_generate(base_uuid);
    memcpy(dst_sr_ref, dst_sr->ref, sizeof dst_sr_ref);
    memcpy(src_ref, vdi->ref, sizeof src_ref);
    meta_take(&meta, vdi);
    xapi_uuid_generate(uuid);
    xapi_ref_generate(ref);
    storage_vdi_op_begin(srv, vdi, opid, op);
    if ((rc = xapi_store_write_end_durable(st)) < 0) {
        rc = xapi_store_fail(st, rc, err);
        xapi_store_write_begin(st);
        storage_vdi_op_end(srv, src_ref, opid);
        goto fail_locked;
    }

    /* The source's data found and checked without the lock (storage that does
     * not answer stalls this call only, until storage_io_timeout). */
    rc = storage_io_vdi_find(&src, what, src_loc, &src_path, &e);
    xapi_store_write_begin(st);
    vdi = get_vdi(srv, src_ref);
    if (rc < 0 || !vdi) {
        storage_vdi_op_end(srv, src_ref, opid);
        rc = !vdi ? xapi_fail(err, "HANDLE_INVALID", "VDI", src_ref, NULL)
             : e.code ? storage_backend_fail(err, &e)
                      : xapi_fail(err, "VDI_MISSING", vdi->fields[XAPI_F_VDI_SR].s, vdi->ref, NULL);
        goto fail_after_io;
    }
    /* A VHD's bytes are not its disk: only a driver that reads VHD chains can copy one. */
    src_vhd = storage_path_is_vhd(src.drv, src_path);
    if (src_vhd && !dst.drv->vdi_open_vhd)
        rc = xapi_fail(err, "SR_OPERATION_NOT_SUPPORTED", dst_sr_ref, NULL);
    /* A raw VDI of a VHD SR (a suspend image) stays raw in one: no chain over it. */
    raw_copy = !src_vhd && strcmp(src.drv->format, "vhd") == 0 && dst.drv->vdi_import_raw;
    size = vdi->fields[XAPI_F_VDI_virtual_size].i;
    chain = mode != STORAGE_COPY && src.drv->vdi_chain && strcmp(dst_sr_ref, vdi->fields[XAPI_F_VDI_SR].s) == 0 &&
            src_vhd;
    /* A chain moves the VDI's name to a new leaf: a guest's QEMU would go on
     * writing the old file, now the base. Only the simulator has no such writer. */
    /* ... and it moves the VDI's file under whatever has it open: nothing else may run on it meanwhile. */
    for (uint32_t i = 0; chain && rc == 0 && i < vdi->fields[XAPI_F_VDI_current_operations].n; i++) {
        const xapi_member *m = &vdi->fields[XAPI_F_VDI_current_operations].members[i];
        if (strcmp(m->name, opid) != 0)
            rc = xapi_fail(err, "OTHER_OPERATION_IN_PROGRESS", "VDI", vdi->ref, xapi_value_str(&m->value), m->name,
                           NULL);
    }
    if (rc == 0 && chain &&
        storage_any_set(srv, &vdi->fields[XAPI_F_VDI_VBDs], XAPI_C_VBD, XAPI_F_VBD_currently_attached) &&
        !(srv->backend && strcmp(srv->backend->ops->name, "sim") == 0))
        rc = xapi_fail(err, "VDI_IN_USE", vdi->ref, op, NULL);
    if (rc < 0) {
        storage_vdi_op_end(srv, src_ref, opid);
        goto fail_after_io;
    }
    xapi_store_write_end(st);

    /* The data, without the lock: this is the slow part (a VHD chain: quick, still unlocked). */
    if (chain) {
        rc = src.drv->vdi_chain(&src, src_loc, base_uuid, uuid, &e);
        if (rc == 0) { /* what the records say of the chain, read now, not under the lock */
            storage_io_vdi_stat(&src, what, base_uuid, &base_info, &(storage_err){0});
            storage_io_vdi_stat(&src, what, src_loc, &src_info, &(storage_err){0});
        }
    } else
        rc = (raw_copy ? dst.drv->vdi_import_raw : dst.drv->vdi_import)(&dst, uuid, src_path, size, &e);
    /* The new VDI's data under its name, still without the lock. */
    if (rc == 0)
        published = storage_io_vdi_publish(&dst, what, uuid, &info, &pe);

    xapi_store_write_begin(st);
    storage_vdi_op_end(srv, src_ref, opid);
    if (rc < 0) {
        rc = clone_fail(mode, err, &e);
        goto fail_after_io;
    }
    dst_sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), dst_sr_ref);
    if (!dst_sr || !storage_sr_attached(srv, dst_sr)) {
        undo = published == 0; /* the published data goes once the lock is dropped */
        if (published < 0 && published != -ETIME)
            dst.drv->vdi_discard(&dst, uuid);
        rc = xapi_fail(err, "SR_HAS_NO_PBDS", dst_sr_ref, NULL);
        goto fail_after_io;
    }
    if (chain) /* whatever follows, the chain is made: its records too */
        chain_records(srv, dst_sr, src_ref, base_uuid, &base_info, &src_info);
    if (published < 0) {
        rc = clone_fail(mode, err, &pe);
        goto fail_after_io;
    }
    nv = storage_vdi_new(srv, dst_sr, ref, uuid, &info);
    if (!nv) { /* cannot happen: fresh ref and uuid */
        storage_err d = {0};
        dst.drv->vdi_delete(&dst, uuid, &d);
        rc = xapi_fail(err, "INTERNAL_ERROR", "cannot create the VDI record", NULL);
        goto fail_locked;
    }
    meta_apply(srv, nv, &meta, mode);
    if (mode == STORAGE_SNAPSHOT) {
        xapi_obj_set_bool(st, nv, XAPI_F_VDI_is_a_snapshot, true);
        xapi_obj_set_string(st, nv, XAPI_F_VDI_snapshot_of, get_vdi(srv, src_ref) ? src_ref : XAPI_NULL_REF);
        xapi_obj_set(st, nv, XAPI_F_VDI_snapshot_time, xapi_value_datetime(xapi_wall_seconds()));
    }
    storage_vdi_update_allowed_operations(srv, nv);
    storage_sr_refresh(srv, dst_sr, NULL);
    log_debug("storage: VDI %s: %s -> %s", src_ref, op, uuid);
    rc = finish_ref(srv, 0, ref, ret_ref, err);
    if (rc == 0)
        storage_sr_sizes_refresh(srv, dst_sr_ref);
    goto out;
fail_after_io:
    end_ops_stored(st);
    if (undo && storage_io_vdi_delete(&dst, uuid, &pe) < 0)
        log_warning("storage: SR %s: data %s of a failed %s left: %s", dst.uuid, uuid, what, pe.text);
    goto out;
fail_locked:
    xapi_store_write_abort(st);
out:
    meta_free(&meta);
    storage_vdi_info_free(&info);
    storage_vdi_info_free(&base_info);
    storage_vdi_info_free(&src_info);
    storage_sr_handle_free(&src);
    storage_sr_handle_free(&dst);
    free(src_path);
    free(src_loc);
    return rc;
}

int storage_vdi_clone(xapi_server *srv, const char *vdi_ref, storage_clone_mode mode, const char *sr_ref,
                      char ret_ref[XAPI_REF_LEN + 1], xapi_value *err) {
    char opid[XAPI_REF_LEN + 1];

    storage_op_id(NULL, opid);
    return clone_common(srv, opid, vdi_ref, mode, sr_ref, ret_ref, err);
}

static int vdi_clone_call(xapi_call *c, storage_clone_mode mode, const char *sr_ref) {
    char opid[XAPI_REF_LEN + 1], ref[XAPI_REF_LEN + 1];
    int rc;

    storage_op_id(c, opid);
    rc = clone_common(c->srv, opid, c->args[0].s, mode, sr_ref, ref, &c->err);
    if (rc == 0)
        xapi_out_cstring(c->out, ref);
    return rc;
}

static int vdi_clone(xapi_call *c) {
    return vdi_clone_call(c, STORAGE_CLONE, NULL);
}

static int vdi_snapshot(xapi_call *c) {
    return vdi_clone_call(c, STORAGE_SNAPSHOT, NULL);
}

/* VDI.copy(vdi, sr, base_vdi, into_vdi) into an existing VDI: its data overwritten. */
static int copy_into(xapi_call *c, const char *opid) {
    xapi_server *srv = c->srv;
    xapi_store *st = srv->store;
    storage_sr src = {0}, dst = {0};
    storage_vdi_info info = {0};
    storage_err e = {0};
    xapi_obj *vdi, *into, *src_sr, *dst_sr;
    char src_ref[XAPI_REF_LEN + 1], dst_ref[XAPI_REF_LEN + 1], dst_sr_ref[XAPI_REF_LEN + 1], size_text[32];
    char *src_path = NULL, *dst_loc = NULL;
    bool have_info;
    int64_t size;
    int rc;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, storage_cls(XAPI_C_VDI), c->args[0].s, &vdi);
    if (rc == 0)
        rc = xapi_lookup(c, storage_cls(XAPI_C_VDI), c->args[3].s, &into);
    if (rc < 0)
        goto fail_locked;
    src_sr = sr_of(srv, vdi);
    dst_sr = sr_of(srv, into);
    if (!src_sr || !dst_sr) {
        rc = xapi_call_fail(c, "HANDLE_INVALID", "SR", src_sr ? into->fields[XAPI_F_VDI_SR].s : vdi->fields[XAPI_F_VDI_SR].s);
        goto fail_locked;
    }
    size = vdi->fields[XAPI_F_VDI_virtual_size].i;
    snprintf(size_text, sizeof size_text, "%" PRId64, size);
    rc = storage_sr_plugged(srv, src_sr, &src, &c->err);
    if (rc == 0)
        rc = storage_vdi_check_op(srv, vdi, "copy", &c->err);
    if (rc == 0 && into->fields[XAPI_F_VDI_read_only].b)
        rc = xapi_call_fail(c, "VDI_READONLY", into->ref);
    if (rc == 0 && into->fields[XAPI_F_VDI_virtual_size].i < size)
        rc = xapi_call_fail(c, "VDI_TOO_SMALL", into->ref, size_text);
    if (rc == 0)
        rc = storage_sr_plugged(srv, dst_sr, &dst, &c->err);
    if (rc == 0)
        rc = storage_sr_cap(dst_sr, dst.drv, STORAGE_CAP_VDI_WRITE, &c->err);
    if (rc == 0 && into != vdi)
        rc = storage_vdi_check_op(srv, into, "copy", &c->err);
    if (rc < 0)
        goto fail_locked;
    if (into == vdi) {
        rc = xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "cannot copy a VDI into itself");
        goto fail_locked;
    }
    src_path = src.drv->vdi_path(&src, vdi->fields[XAPI_F_VDI_location].s);
    if (!src_path || storage_check_vdi(src.drv, src_path) < 0) {
        rc = xapi_call_fail(c, "VDI_MISSING", src_sr->ref, vdi->ref);
        goto fail_locked;
    }
    if (storage_path_is_vhd(src.drv, src_path) && !dst.drv->vdi_open_vhd) {
        rc = xapi_call_fail(c, "SR_OPERATION_NOT_SUPPORTED", dst_sr->ref);
        goto fail_locked;
    }
    dst_loc = xapi_strdup(into->fields[XAPI_F_VDI_location].s);
    memcpy(src_ref, vdi->ref, sizeof src_ref);
    memcpy(dst_ref, into->ref, sizeof dst_ref);
    storage_vdi_op_begin(srv, vdi, opid, "copy");
    storage_vdi_op_begin(srv, into, opid, "copy");
    if ((rc = xapi_store_write_end_durable(st)) < 0) {
        rc = xapi_store_fail(st, rc, &c->err);
        xapi_store_write_begin(st);
        storage_vdi_op_end(srv, src_ref, opid);
        storage_vdi_op_end(srv, dst_ref, opid);
        goto fail_locked;
    }

    rc = dst.drv->vdi_write(&dst, dst_loc, src_path, size, &e);
    have_info = rc == 0 && dst.drv->vdi_stat && storage_io_vdi_stat(&dst, "VDI.copy", dst_loc, &info, &(storage_err){0}) == 0;

    xapi_store_write_begin(st);
    storage_vdi_op_end(srv, src_ref, opid);
    storage_vdi_op_end(srv, dst_ref, opid);
    if (rc < 0) {
        rc = storage_backend_fail(&c->err, &e);
        goto fail_after_io;
    }
    into = get_vdi(srv, dst_ref);
    if (into && have_info)
        xapi_obj_set_int(st, into, XAPI_F_VDI_physical_utilisation, info.physical_utilisation);
    dst_sr = into ? sr_of(srv, into) : NULL;
    if (dst_sr) {
        memcpy(dst_sr_ref, dst_sr->ref, sizeof dst_sr_ref);
        storage_sr_refresh(srv, dst_sr, NULL);
    }
    rc = xapi_finish_ref(c, 0, dst_ref);
    if (rc == 0 && dst_sr)
        storage_sr_sizes_refresh(srv, dst_sr_ref);
    goto out;
fail_after_io:
    end_ops_stored(st);
    goto out;
fail_locked:
    xapi_store_write_abort(st);
out:
    storage_vdi_info_free(&info);
    storage_sr_handle_free(&src);
    storage_sr_handle_free(&dst);
    free(src_path);
    free(dst_loc);
    return rc;
}

static int vdi_copy(xapi_call *c) {
    char opid[XAPI_REF_LEN + 1];
    const char *base = c->args[2].s, *into = c->args[3].s;

    /* base_vdi only makes the copy incremental; a full copy gives the same data. */
    if (!storage_is_null_ref(base)) {
        xapi_obj *b;
        int rc;
        xapi_store_rdlock(c->srv->store);
        rc = xapi_lookup(c, storage_cls(XAPI_C_VDI), base, &b);
        xapi_store_rdunlock(c->srv->store);
        if (rc < 0)
            return rc;
    }
    storage_op_id(c, opid);
    if (!storage_is_null_ref(into))
        return copy_into(c, opid);
    return vdi_clone_call(c, STORAGE_COPY, c->args[1].s);
}

/* ---- resize, update, introduce, forget --------------------------------------------- */

/* The call's VDI (its first argument), its SR and a handle on that SR, which
 * must be plugged here (write lock held). The handle is the caller's to free,
 * even on failure. */
static int lookup_vdi_plugged(xapi_call *c, xapi_obj **ret_vdi, xapi_obj **ret_sr, storage_sr *h) {
    xapi_obj *vdi, *sr;
    int rc;

    rc = xapi_lookup(c, storage_cls(XAPI_C_VDI), c->args[0].s, &vdi);
    if (rc < 0)
        return rc;
    sr = sr_of(c->srv, vdi);
    if (!sr)
        return xapi_call_fail(c, "HANDLE_INVALID", "SR", vdi->fields[XAPI_F_VDI_SR].s);
    rc = storage_sr_plugged(c->srv, sr, h, &c->err);
    if (rc < 0)
        return rc;
    *ret_vdi = vdi;
    *ret_sr = sr;
    return 0;
}

/* A VDI operation whose driver call runs without the lock (resize, update):
 * the VDI checked and marked with op under it, the call in a time-limited
 * job, the result published under the lock again if the VDI is still there. */
typedef struct vdi_unlocked {
    xapi_call *c;
    const char *op;
    storage_sr h;
    char opid[XAPI_REF_LEN + 1], vdi_ref[XAPI_REF_LEN + 1], sr_ref[XAPI_REF_LEN + 1];
    char *location;
    storage_vdi_info info; /* the job's result */
    storage_err e;
} vdi_unlocked;

/* Finds and marks the call's VDI (its first argument) on a plugged SR, with
 * check(u, vdi) deciding under the lock whether op may start; releases the lock. */
static int vdi_unlocked_begin(vdi_unlocked *u, int (*check)(vdi_unlocked *u, xapi_obj *vdi)) {
    xapi_server *srv = u->c->srv;
    xapi_obj *vdi = NULL, *sr = NULL;
    int rc;

    xapi_store_write_begin(srv->store);
    rc = lookup_vdi_plugged(u->c, &vdi, &sr, &u->h);
    if (rc == 0)
        rc = check(u, vdi);
    if (rc < 0) {
        xapi_store_write_abort(srv->store);
        return rc;
    }
    storage_op_id(u->c, u->opid);
    memcpy(u->vdi_ref, vdi->ref, sizeof u->vdi_ref);
    memcpy(u->sr_ref, sr->ref, sizeof u->sr_ref);
    u->location = xapi_strdup(vdi->fields[XAPI_F_VDI_location].s);
    storage_vdi_op_begin(srv, vdi, u->opid, u->op);
    xapi_store_write_end(srv->store);
    return 0;
}

/* After the job (rc its result): the lock taken again, the mark removed; the
 * VDI, or NULL if it went meanwhile (lock held either way). */
static xapi_obj *vdi_unlocked_end(vdi_unlocked *u) {
    xapi_server *srv = u->c->srv;

    xapi_store_write_begin(srv->store);
    storage_vdi_op_end(srv, u->vdi_ref, u->opid);
    return get_vdi(srv, u->vdi_ref);
}

/* Stores what was published (or, rc < 0, just the mark's removal), then the SR's sizes. */
static int vdi_unlocked_finish(vdi_unlocked *u, int rc) {
    xapi_call *c = u->c;
    xapi_obj *sr = xapi_store_get_class(c->srv->store, storage_cls(XAPI_C_SR), u->sr_ref);

    if (rc < 0) {
        end_ops_stored(c->srv->store);
        return rc;
    }
    if (sr)
        storage_sr_refresh(c->srv, sr, NULL);
    rc = xapi_commit(c);
    if (rc < 0)
        return rc;
    storage_sr_sizes_refresh(c->srv, u->sr_ref);
    xapi_out_void(c->out);
    return 0;
}

static void vdi_unlocked_free(vdi_unlocked *u) {
    storage_sr_handle_free(&u->h);
    storage_vdi_info_free(&u->info);
    free(u->location);
}

static int resize_check(vdi_unlocked *u, xapi_obj *vdi) {
    int rc = storage_vdi_check_op(u->c->srv, vdi, u->op, &u->c->err);

    return rc < 0 ? rc : size_check(u->c->args[1].i, &u->c->err);
}

static int vdi_resize_common(xapi_call *c, const char *op) {
    vdi_unlocked u = {.c = c, .op = op};
    xapi_obj *vdi;
    int rc;

    rc = vdi_unlocked_begin(&u, resize_check);
    if (rc < 0)
        goto out;
    rc = storage_io_vdi_resize(&u.h, u.location, c->args[1].i, &u.info, &u.e);
    vdi = vdi_unlocked_end(&u);
    if (rc < 0)
        rc = storage_backend_fail(&c->err, &u.e);
    else if (vdi)
        storage_vdi_set_info(c->srv, vdi, &u.info);
    rc = vdi_unlocked_finish(&u, rc);
out:
    vdi_unlocked_free(&u);
    return rc;
}

static int vdi_resize(xapi_call *c) {
    return vdi_resize_common(c, "resize");
}

static int vdi_resize_online(xapi_call *c) {
    return vdi_resize_common(c, "resize_online");
}

/* VDI.update only reads: it waits for no reader, but for nothing that changes the VDI either. */
static int update_check(vdi_unlocked *u, xapi_obj *vdi) {
    int rc = storage_vdi_check_no_writer(vdi, &u->c->err);

    if (rc < 0)
        return rc;
    if (!u->h.drv->vdi_stat)
        return xapi_call_fail(u->c, "VDI_MISSING", vdi->fields[XAPI_F_VDI_SR].s, vdi->ref);
    return 0;
}

static int vdi_update(xapi_call *c) {
    vdi_unlocked u = {.c = c, .op = "update"};
    xapi_server *srv = c->srv;
    xapi_obj *vdi;
    int rc;

    rc = vdi_unlocked_begin(&u, update_check);
    if (rc < 0)
        goto out;
    rc = storage_io_vdi_stat(&u.h, "VDI.update", u.location, &u.info, &u.e);
    vdi = vdi_unlocked_end(&u);
    /* A storage that does not answer is the SR's failure; anything else, the VDI's. */
    if (rc < 0 && u.e.code == SM_ERR_SR_UNAVAILABLE)
        rc = storage_backend_fail(&c->err, &u.e);
    else if (rc < 0)
        rc = xapi_call_fail(c, "VDI_MISSING", u.sr_ref, u.vdi_ref);
    else if (vdi) {
        xapi_obj_set_int(srv->store, vdi, XAPI_F_VDI_virtual_size, u.info.virtual_size);
        xapi_obj_set_int(srv->store, vdi, XAPI_F_VDI_physical_utilisation, u.info.physical_utilisation);
        xapi_obj_set_bool(srv->store, vdi, XAPI_F_VDI_missing, false);
    }
    rc = vdi_unlocked_finish(&u, rc);
out:
    vdi_unlocked_free(&u);
    return rc;
}

/* VDI.introduce(uuid, name_label, name_description, SR, type, sharable, read_only, other_config,
 *               location, xenstore_data, sm_config, managed, virtual_size, physical_utilisation,
 *               metadata_of_pool, is_a_snapshot, snapshot_time, snapshot_of) */
static int vdi_introduce(xapi_call *c) {
    xapi_server *srv = c->srv;
    xapi_store *st = srv->store;
    const char *want = c->args[0].s, *location = c->args[8].s;
    storage_sr h = {0};
    storage_vdi_info info = {0};
    storage_err e = {0};
    xapi_obj *sr, *v = NULL;
    const xapi_value *vdis;
    char uuid[XAPI_UUID_LEN + 1], ref[XAPI_REF_LEN + 1], sr_ref[XAPI_REF_LEN + 1];
    bool have_info;
    int rc;

    if (*want && !storage_uuid_valid(want))
        return xapi_call_fail(c, "UUID_INVALID", "VDI", want);
    /* What the driver sees there, read without the lock (its storage may not answer). */
    xapi_store_rdlock(st);
    rc = xapi_lookup(c, storage_cls(XAPI_C_SR), c->args[3].s, &sr);
    if (rc == 0)
        rc = storage_sr_plugged(srv, sr, &h, &c->err);
    if (rc == 0)
        rc = storage_sr_cap(sr, h.drv, STORAGE_CAP_VDI_INTRODUCE, &c->err);
    if (rc == 0)
        memcpy(sr_ref, sr->ref, sizeof sr_ref);
    xapi_store_rdunlock(st);
    if (rc < 0) {
        storage_sr_handle_free(&h);
        return rc;
    }
    if (h.drv->vdi_stat && storage_io_vdi_stat(&h, "VDI.introduce", location, &info, &e) < 0 && e.code == SM_ERR_SR_UNAVAILABLE) {
        rc = storage_backend_fail(&c->err, &e);
        storage_sr_handle_free(&h);
        return rc;
    }
    have_info = info.location != NULL;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, storage_cls(XAPI_C_SR), sr_ref, &sr);
    if (rc == 0 && !storage_sr_attached(srv, sr))
        rc = xapi_call_fail(c, "SR_HAS_NO_PBDS", sr->ref);
    if (rc < 0)
        goto out;
    vdis = &sr->fields[XAPI_F_SR_VDIs];
    for (uint32_t i = 0; i < vdis->n; i++) {
        xapi_obj *o = get_vdi(srv, vdis->items[i].s);
        if (!o || strcmp(o->fields[XAPI_F_VDI_location].s, location) != 0)
            continue;
        if (*want && strcasecmp(o->uuid, want) == 0) {
            v = o; /* introduced again: refreshed below */
            continue;
        }
        rc = xapi_call_fail(c, "LOCATION_NOT_UNIQUE", sr->ref, location);
        goto out;
    }
    if (!have_info) {
        rc = xapi_call_fail(c, "VDI_LOCATION_MISSING", sr->ref, location);
        goto out;
    }
    if (!v) {
        if (*want) {
            for (size_t i = 0; i < sizeof uuid - 1; i++)
                uuid[i] = (char)tolower((unsigned char)want[i]);
            uuid[sizeof uuid - 1] = '\0';
        } else
            xapi_uuid_generate(uuid);
        if (xapi_store_get_by_uuid(st, storage_cls(XAPI_C_VDI), uuid)) {
            char msg[160];
            snprintf(msg, sizeof msg, "Db_exn.Uniqueness_constraint_violation(\"VDI\", \"uuid\", \"%s\")", uuid);
            rc = xapi_call_fail(c, "INTERNAL_ERROR", msg);
            goto out;
        }
        xapi_ref_generate(ref);
        v = storage_vdi_new(srv, sr, ref, uuid, &info);
    } else
        storage_vdi_set_info(srv, v, &info);
    if (*c->args[1].s)
        xapi_obj_set_string(st, v, XAPI_F_VDI_name_label, c->args[1].s);
    if (*c->args[2].s)
        xapi_obj_set_string(st, v, XAPI_F_VDI_name_description, c->args[2].s);
    xapi_obj_set(st, v, XAPI_F_VDI_type, xapi_value_copy(&c->args[4]));
    xapi_obj_set_bool(st, v, XAPI_F_VDI_sharable, c->args[5].b);
    xapi_obj_set(st, v, XAPI_F_VDI_other_config, xapi_value_copy(&c->args[7]));
    xapi_obj_set(st, v, XAPI_F_VDI_xenstore_data, xapi_value_copy(&c->args[9]));
    xapi_obj_set(st, v, XAPI_F_VDI_sm_config, xapi_value_copy(&c->args[10]));
    storage_vdi_update_allowed_operations(srv, v);
    storage_sr_refresh(srv, sr, NULL);
    memcpy(ref, v->ref, sizeof ref);
out:
    storage_vdi_info_free(&info);
    storage_sr_handle_free(&h);
    rc = xapi_finish_ref(c, rc, ref);
    if (rc == 0)
        storage_sr_sizes_refresh(srv, sr_ref);
    return rc;
}

static int vdi_forget(xapi_call *c) {
    xapi_obj *vdi, *sr;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, storage_cls(XAPI_C_VDI), c->args[0].s, &vdi);
    if (rc == 0)
        rc = storage_vdi_check_op(c->srv, vdi, "forget", &c->err);
    if (rc == 0) {
        sr = sr_of(c->srv, vdi);
        if (sr)
            storage_sr_refresh(c->srv, sr, vdi);
        xapi_obj_destroy(c->srv->store, vdi);
    }
    return xapi_finish_void(c, rc);
}

/* ---- setters ------------------------------------------------------------------ */

static int vdi_set(xapi_call *c, int field) {
    xapi_obj *vdi;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, storage_cls(XAPI_C_VDI), c->args[0].s, &vdi);
    if (rc == 0) {
        xapi_obj_set(c->srv->store, vdi, field, xapi_value_copy(&c->args[1]));
        storage_vdi_update_allowed_operations(c->srv, vdi);
    }
    return xapi_finish_void(c, rc);
}

static int vdi_set_name_label(xapi_call *c) {
    return vdi_set(c, XAPI_F_VDI_name_label);
}

static int vdi_set_name_description(xapi_call *c) {
    return vdi_set(c, XAPI_F_VDI_name_description);
}

static int vdi_set_read_only(xapi_call *c) {
    return vdi_set(c, XAPI_F_VDI_read_only);
}

static int vdi_set_sharable(xapi_call *c) {
    return vdi_set(c, XAPI_F_VDI_sharable);
}

static int vdi_set_on_boot(xapi_call *c) {
    return vdi_set(c, XAPI_F_VDI_on_boot);
}

static int vdi_set_allow_caching(xapi_call *c) {
    return vdi_set(c, XAPI_F_VDI_allow_caching);
}

/* ---- for the VM layer --------------------------------------------------------------- */

int storage_vdi_attach_info(xapi_server *srv, const xapi_obj *vdi, char **ret_path, char **ret_format,
                            xapi_value *err) {
    xapi_obj *sr = sr_of(srv, vdi), *pbd;
    storage_sr h = {0};
    storage_err e = {0};
    char *path = NULL;
    int rc;

    if (!sr)
        return xapi_fail(err, "HANDLE_INVALID", "SR", vdi->fields[XAPI_F_VDI_SR].s, NULL);
    /* Its data may be going or changing without the lock (destroy, resize, a
     * leaf coalesce): no guest gets it meanwhile. Reads (copies) may overlap. */
    rc = storage_vdi_check_no_writer(vdi, err);
    if (rc < 0)
        return rc;
    pbd = storage_my_pbd(srv, sr);
    if (!pbd || !pbd->fields[XAPI_F_PBD_currently_attached].b)
        return xapi_fail(err, "SR_NOT_ATTACHED", sr->ref, NULL);
    rc = storage_sr_handle(srv, sr, pbd, &h, err);
    if (rc < 0)
        return rc;
    /* In a time-limited job: the caller holds the lock, which a storage that
     * stopped answering holds at most storage_io_timeout (then not at all). */
    if (vdi->fields[XAPI_F_VDI_missing].b ||
        storage_io_vdi_path(&h, vdi->fields[XAPI_F_VDI_location].s, &path, &e) < 0) {
        storage_sr_handle_free(&h);
        if (e.code == SM_ERR_SR_UNAVAILABLE)
            return storage_backend_fail(err, &e);
        return xapi_fail(err, "VDI_MISSING", sr->ref, vdi->ref, NULL);
    }
    *ret_path = path;
    /* A VHD over a parent is a chain: backends that cannot read one refuse "vhd-chain". */
    *ret_format = xapi_strdup(!storage_path_is_vhd(h.drv, path) ? "raw"
                              : storage_map_get(&vdi->fields[XAPI_F_VDI_sm_config], "vhd-parent") ? "vhd-chain"
                                                                                                    : "vhd");
    storage_sr_handle_free(&h);
    return 0;
}

const xapi_handler storage_vdi_handlers[] = {
    {"VDI", "destroy", vdi_destroy_call},
    {"VDI", "clone", vdi_clone},
    {"VDI", "snapshot", vdi_snapshot},
    {"VDI", "copy", vdi_copy},
    {"VDI", "resize", vdi_resize},
    {"VDI", "resize_online", vdi_resize_online},
    {"VDI", "update", vdi_update},
    {"VDI", "introduce", vdi_introduce},
    {"VDI", "forget", vdi_forget},
    {"VDI", "set_name_label", vdi_set_name_label},
    {"VDI", "set_name_description", vdi_set_name_description},
    {"VDI", "set_read_only", vdi_set_read_only},
    {"VDI", "set_sharable", vdi_set_sharable},
    {"VDI", "set_on_boot", vdi_set_on_boot},
    {"VDI", "set_allow_caching", vdi_set_allow_caching},
    {NULL, NULL, NULL},
};
