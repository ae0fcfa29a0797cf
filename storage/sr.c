/* SR.* and PBD.*: creating, introducing, plugging, scanning and removing SRs. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "storage/internal.h"
#include "xapi/error.h"

static int check_device_config(xapi_call *c, const xapi_value *dc) {
    const char *master = storage_map_get(dc, "SRmaster");

    if (dc->n > STORAGE_MAX_DEVICE_CONFIG)
        return xapi_call_fail(c, "INVALID_VALUE", "device_config", "too many keys");
    if (master)
        return xapi_call_fail(c, "VALUE_NOT_SUPPORTED", "SRmaster", master, "This key is for internal use only");
    return 0;
}

/* Removes the SR's records: PBDs, VDIs, the SR (xapi's really_forget). */
static void really_forget(xapi_server *srv, xapi_obj *sr) {
    xapi_store *st = srv->store;
    xapi_value pbds = xapi_value_copy(&sr->fields[XAPI_F_SR_PBDs]);
    xapi_value vdis = xapi_value_copy(&sr->fields[XAPI_F_SR_VDIs]);

    for (uint32_t i = 0; i < pbds.n; i++) {
        xapi_obj *o = xapi_store_get_class(st, storage_cls(XAPI_C_PBD), pbds.items[i].s);
        if (o)
            xapi_obj_destroy(st, o);
    }
    for (uint32_t i = 0; i < vdis.n; i++) {
        xapi_obj *o = xapi_store_get_class(st, storage_cls(XAPI_C_VDI), vdis.items[i].s);
        if (o)
            xapi_obj_destroy(st, o);
    }
    xapi_obj_destroy(st, sr);
    xapi_value_free(&pbds);
    xapi_value_free(&vdis);
}

static bool any_pbd_attached(xapi_server *srv, const xapi_obj *sr) {
    return storage_any_set(srv, &sr->fields[XAPI_F_SR_PBDs], XAPI_C_PBD, XAPI_F_PBD_currently_attached);
}

/* Another SR of the same driver already lives at path. */
static xapi_obj *sr_at_path(xapi_server *srv, const storage_driver *drv, const char *path) {
    for (xapi_obj *p = xapi_store_first(srv->store, storage_cls(XAPI_C_PBD)); p; p = xapi_store_next(p)) {
        xapi_obj *sr = xapi_store_get_class(srv->store, storage_cls(XAPI_C_SR), p->fields[XAPI_F_PBD_SR].s);
        storage_err e = {0};
        storage_sr other = {0};
        bool same;

        if (!sr || strcmp(sr->fields[XAPI_F_SR_type].s, drv->type) != 0)
            continue;
        if (storage_sr_config(drv, &p->fields[XAPI_F_PBD_device_config], &sr->fields[XAPI_F_SR_sm_config], sr->uuid,
                              &other, &e) < 0)
            continue;
        same = strcmp(other.path, path) == 0;
        storage_sr_handle_free(&other);
        if (same)
            return sr;
    }
    return NULL;
}

/* Ends a call whose I/O ran without the lock: the end of its operation is
 * stored whatever the result (an aborted write would leave the SR busy). */
static int finish_after_io(xapi_call *c, int rc, const char *ref) {
    if (rc < 0) {
        xapi_store_write_end_durable(c->srv->store);
        return rc;
    }
    return ref ? xapi_finish_ref(c, 0, ref) : xapi_finish_void(c, 0);
}

/* The driver I/O of an SR operation, without the lock: the SR marked busy
 * with op (OTHER_OPERATION_IN_PROGRESS if it already is), the lock
 * dropped for the job (storage_sr_io_run), taken again, the mark removed.
 * known, if not NULL, gets the SR's VDIs as they were before. The lock is
 * held on return either way; sr_ref gets the SR's ref (it may be gone by
 * then); a failure is in c->err. */
static int sr_unlocked_io(xapi_call *c, xapi_obj *sr, const char *op, const storage_sr *h, unsigned steps,
                          char *const *locations, size_t nloc, storage_scan_known *known, storage_sr_io **ret,
                          char sr_ref[XAPI_REF_LEN + 1]) {
    xapi_store *st = c->srv->store;
    char opid[XAPI_REF_LEN + 1], what[64];
    storage_err e = {0};
    int rc;

    storage_op_id(c, opid);
    snprintf(sr_ref, XAPI_REF_LEN + 1, "%s", sr->ref);
    rc = storage_sr_op_begin(c->srv, sr, opid, op, &c->err);
    if (rc < 0)
        return rc;
    if (known)
        storage_scan_known_take(c->srv, sr, known);
    xapi_store_write_end(st);

    snprintf(what, sizeof what, "%s%s", strcmp(op, "plug") == 0 || strcmp(op, "unplug") == 0 ? "PBD." : "SR.", op);
    rc = storage_sr_io_run(h, steps, locations, nloc, what, ret, &e);

    xapi_store_write_begin(st);
    storage_sr_op_end(c->srv, sr_ref, opid);
    return rc < 0 ? storage_backend_fail(&c->err, &e) : 0;
}

/* What an attach job learnt, published: the PBD plugged, the scan, the sizes. */
static void publish_plug(xapi_server *srv, xapi_obj *pbd, xapi_obj *sr, const storage_sr_io *io,
                         const storage_scan_known *known) {
    xapi_obj_set_bool(srv->store, pbd, XAPI_F_PBD_currently_attached, true);
    if (io->scanned)
        storage_sr_apply_scan(srv, sr, io, known);
    else if (io->h.drv->caps & STORAGE_CAP_SR_SCAN)
        log_warning("storage: SR %s: scan after plug failed: %s", sr->uuid, io->scan_e.text);
    storage_sr_set_sizes(srv, sr, io);
    storage_sr_update_allowed_all(srv, sr);
}

#define PLUG_STEPS (STORAGE_SR_IO_ATTACH | STORAGE_SR_IO_SCAN | STORAGE_SR_IO_STAT)

/* Attaches with the driver, marks the PBD plugged, scans (lock held: at start). */
static int plug_pbd(xapi_server *srv, xapi_obj *pbd, xapi_obj *sr, xapi_value *err) {
    storage_sr h = {0};
    storage_sr_io *io = NULL;
    storage_err e = {0};
    int rc;

    rc = storage_sr_handle(srv, sr, pbd, &h, err);
    if (rc < 0)
        return rc;
    rc = storage_sr_io_run(&h, PLUG_STEPS, NULL, 0, "PBD.plug", &io, &e);
    storage_sr_handle_free(&h);
    if (rc < 0)
        return storage_backend_fail(err, &e);
    publish_plug(srv, pbd, sr, io, NULL);
    storage_sr_io_free(io);
    return 0;
}

int storage_pbd_plug_locked(xapi_server *srv, xapi_obj *pbd, xapi_value *err) {
    xapi_obj *sr = xapi_store_get_class(srv->store, storage_cls(XAPI_C_SR), pbd->fields[XAPI_F_PBD_SR].s);

    if (!sr)
        return xapi_fail(err, "HANDLE_INVALID", "SR", pbd->fields[XAPI_F_PBD_SR].s, NULL);
    if (pbd->fields[XAPI_F_PBD_currently_attached].b)
        return 0;
    return plug_pbd(srv, pbd, sr, err);
}

/* ---- SR.create / introduce ------------------------------------------------------- */

static xapi_obj *new_sr(xapi_server *srv, const char *uuid, const char *name_label, const char *name_description,
                        const char *type, const char *content_type, bool shared, const xapi_value *sm_config) {
    xapi_store *st = srv->store;
    char ref[XAPI_REF_LEN + 1];
    xapi_obj *sr;

    xapi_ref_generate(ref);
    sr = xapi_obj_create_with(st, storage_cls(XAPI_C_SR), ref, uuid);
    if (!sr)
        return NULL;
    xapi_obj_set_string(st, sr, XAPI_F_SR_name_label, name_label);
    xapi_obj_set_string(st, sr, XAPI_F_SR_name_description, name_description);
    xapi_obj_set_string(st, sr, XAPI_F_SR_type, type);
    xapi_obj_set_string(st, sr, XAPI_F_SR_content_type, content_type);
    xapi_obj_set_bool(st, sr, XAPI_F_SR_shared, shared);
    xapi_obj_set(st, sr, XAPI_F_SR_sm_config, xapi_value_copy(sm_config));
    xapi_obj_set(st, sr, XAPI_F_SR_other_config, xapi_value_struct());
    return sr;
}

static void lower_copy(const char *s, char *out, size_t size) {
    size_t i = 0;

    for (; s[i] && i + 1 < size; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[i] = '\0';
}

/* The driver of an SR type as a client spells it (xapi lowercases it), and the type lowercased in type. */
static const storage_driver *find_driver(const char *type_arg, char *type, size_t size) {
    lower_copy(type_arg, type, size);
    return strlen(type_arg) < size ? storage_driver_find(type) : NULL;
}

/* Paths of SRs being created without the lock (store lock held to use it):
 * a second SR.create at the same place fails as if the first were done. */
typedef struct creating {
    char *path;
    struct creating *next;
} creating;
static creating *creating_list;

static bool path_being_created(const char *path) {
    for (const creating *p = creating_list; p; p = p->next)
        if (strcmp(p->path, path) == 0)
            return true;
    return false;
}

static void creating_remove(const char *path) {
    for (creating **p = &creating_list; *p; p = &(*p)->next)
        if (strcmp((*p)->path, path) == 0) {
            creating *gone = *p;
            *p = gone->next;
            free(gone->path);
            free(gone);
            return;
        }
}

/* An SR about to be made: its driver, type, uuid and handle (checked, no I/O). */
typedef struct sr_new {
    const storage_driver *drv;
    char type[64], uuid[XAPI_UUID_LEN + 1];
    storage_sr h;
} sr_new;

static int sr_exists_fail(xapi_value *err, const char *other_uuid, const char *path) {
    storage_err e = {0};
    char detail[200];

    snprintf(detail, sizeof detail, "SR %s already uses %s", other_uuid, path);
    storage_err_set(&e, SM_ERR_SR_EXISTS, EEXIST, "The SR already exists", detail);
    return storage_backend_fail(err, &e);
}

static int sr_new_check(xapi_server *srv, const xapi_value *device_config, const xapi_value *sm_config,
                        const char *type_arg, const char *uuid_in, sr_new *ret, xapi_value *err) {
    storage_err e = {0};
    xapi_obj *other;

    ret->drv = find_driver(type_arg, ret->type, sizeof ret->type);
    if (!ret->drv)
        return xapi_fail(err, "SR_UNKNOWN_DRIVER", type_arg, NULL);
    if (!(ret->drv->caps & STORAGE_CAP_SR_CREATE))
        return xapi_fail(err, "SR_OPERATION_NOT_SUPPORTED", XAPI_NULL_REF, NULL);
    if (uuid_in)
        snprintf(ret->uuid, sizeof ret->uuid, "%s", uuid_in);
    else
        xapi_uuid_generate(ret->uuid);
    if (storage_sr_config(ret->drv, device_config, sm_config, ret->uuid, &ret->h, &e) < 0)
        return storage_backend_fail(err, &e);
    snprintf(ret->h.uuid, sizeof ret->h.uuid, "%s", ret->uuid);
    if ((ret->drv->caps & STORAGE_CAP_VDI_CREATE) && (other = sr_at_path(srv, ret->drv, ret->h.path))) {
        sr_exists_fail(err, other->uuid, ret->h.path);
        storage_sr_handle_free(&ret->h);
        return -XAPI_EFAIL;
    }
    if (path_being_created(ret->h.path)) {
        sr_exists_fail(err, "being created", ret->h.path);
        storage_sr_handle_free(&ret->h);
        return -XAPI_EFAIL;
    }
    return 0;
}

/* The records of a new SR whose storage the job io made and attached. */
static int sr_new_publish(xapi_server *srv, const sr_new *n, const storage_sr_io *io, const char *host_ref,
                          const xapi_value *device_config, const char *name_label, const char *name_description,
                          const char *content_type, bool shared, const xapi_value *sm_config,
                          const xapi_value *other_config, char ret_ref[XAPI_REF_LEN + 1], xapi_value *err) {
    xapi_store *st = srv->store;
    xapi_obj *sr, *pbd, *other;

    if ((n->drv->caps & STORAGE_CAP_VDI_CREATE) && (other = sr_at_path(srv, n->drv, n->h.path)))
        return sr_exists_fail(err, other->uuid, n->h.path);
    sr = new_sr(srv, n->uuid, name_label, name_description, n->type, *content_type ? content_type : n->drv->content_type,
                shared, sm_config);
    if (!sr)
        return xapi_fail(err, "SR_UUID_EXISTS", n->uuid, NULL);
    if (other_config)
        xapi_obj_set(st, sr, XAPI_F_SR_other_config, xapi_value_copy(other_config));
    pbd = xapi_obj_create(st, storage_cls(XAPI_C_PBD));
    xapi_obj_set_string(st, pbd, XAPI_F_PBD_host, host_ref);
    xapi_obj_set_string(st, pbd, XAPI_F_PBD_SR, sr->ref);
    xapi_obj_set(st, pbd, XAPI_F_PBD_device_config, xapi_value_copy(device_config));
    xapi_obj_set(st, pbd, XAPI_F_PBD_other_config, xapi_value_struct());
    publish_plug(srv, pbd, sr, io, NULL);
    memcpy(ret_ref, sr->ref, XAPI_REF_LEN + 1);
    log_info("storage: SR %s (%s) created at %s", sr->uuid, n->type, n->h.path ? n->h.path : "?");
    return 0;
}

#define CREATE_STEPS (STORAGE_SR_IO_CREATE | PLUG_STEPS)

int storage_sr_create_locked(xapi_server *srv, const char *host_ref, const xapi_value *device_config,
                             const char *name_label, const char *name_description, const char *type_arg,
                             const char *content_type, bool shared, const xapi_value *sm_config,
                             const xapi_value *other_config, const char *uuid_in, char ret_ref[XAPI_REF_LEN + 1],
                             xapi_value *err) {
    storage_sr_io *io = NULL;
    storage_err e = {0};
    sr_new n = {0};
    int rc;

    rc = sr_new_check(srv, device_config, sm_config, type_arg, uuid_in, &n, err);
    if (rc < 0)
        return rc;
    rc = storage_sr_io_run(&n.h, CREATE_STEPS, NULL, 0, "SR.create", &io, &e);
    if (rc < 0)
        rc = storage_backend_fail(err, &e);
    else
        rc = sr_new_publish(srv, &n, io, host_ref, device_config, name_label, name_description, content_type, shared,
                            sm_config, other_config, ret_ref, err);
    storage_sr_io_free(io);
    storage_sr_handle_free(&n.h);
    return rc;
}

/* SR.create: checked under the lock, the storage made and mounted without
 * it (an NFS server may take long or not answer), the records made after. */
static int sr_create(xapi_call *c) {
    xapi_store *st = c->srv->store;
    char ref[XAPI_REF_LEN + 1], host_ref[XAPI_REF_LEN + 1];
    storage_sr_io *io = NULL;
    storage_err e = {0};
    sr_new n = {0};
    creating *mine;
    xapi_obj *host;
    int rc;

    rc = check_device_config(c, &c->args[1]);
    if (rc < 0)
        return rc;
    xapi_store_write_begin(st);
    rc = xapi_lookup(c, storage_cls(XAPI_C_host), c->args[0].s, &host);
    if (rc == 0)
        rc = sr_new_check(c->srv, &c->args[1], &c->args[8], c->args[5].s, NULL, &n, &c->err);
    if (rc < 0)
        return xapi_finish_ref(c, rc, NULL);
    snprintf(host_ref, sizeof host_ref, "%s", host->ref);
    mine = xapi_calloc(1, sizeof *mine);
    mine->path = xapi_strdup(n.h.path);
    mine->next = creating_list;
    creating_list = mine;
    xapi_store_write_abort(st);

    rc = storage_sr_io_run(&n.h, CREATE_STEPS, NULL, 0, "SR.create", &io, &e);

    xapi_store_write_begin(st);
    creating_remove(n.h.path);
    if (rc < 0)
        rc = storage_backend_fail(&c->err, &e);
    else if (!xapi_store_get_class(st, storage_cls(XAPI_C_host), host_ref))
        rc = xapi_call_fail(c, "HANDLE_INVALID", "host", host_ref);
    else
        rc = sr_new_publish(c->srv, &n, io, host_ref, &c->args[1], c->args[3].s, c->args[4].s, c->args[6].s,
                            c->args[7].b, &c->args[8], NULL, ref, &c->err);
    if (rc < 0 && io && n.drv->sr_detach) {
        /* Made and attached, but not ours to keep: released without the lock. */
        xapi_store_write_abort(st);
        storage_sr_io_free(io);
        io = NULL;
        if (storage_sr_io_run(&n.h, STORAGE_SR_IO_DETACH, NULL, 0, "SR.create undo", &io, &e) < 0)
            log_warning("storage: SR %s: not detached after a failed create: %s", n.uuid, e.text);
        storage_sr_io_free(io);
        storage_sr_handle_free(&n.h);
        return rc;
    }
    storage_sr_io_free(io);
    storage_sr_handle_free(&n.h);
    return xapi_finish_ref(c, rc, ref);
}

static int sr_introduce(xapi_call *c) {
    char uuid[XAPI_UUID_LEN + 1], type[64], ref[XAPI_REF_LEN + 1];
    const char *want = c->args[0].s;
    xapi_obj *sr;

    if (*want && !storage_uuid_valid(want))
        return xapi_call_fail(c, "UUID_INVALID", "SR", want);
    if (strlen(c->args[3].s) >= sizeof type)
        return xapi_call_fail(c, "SR_UNKNOWN_DRIVER", c->args[3].s);
    lower_copy(c->args[3].s, type, sizeof type);
    if (*want)
        lower_copy(want, uuid, sizeof uuid);
    else
        xapi_uuid_generate(uuid);
    xapi_store_write_begin(c->srv->store);
    sr = new_sr(c->srv, uuid, c->args[1].s, c->args[2].s, type, c->args[4].s, c->args[5].b, &c->args[6]);
    if (!sr) {
        xapi_store_write_abort(c->srv->store);
        return xapi_call_fail(c, "SR_UUID_EXISTS", uuid);
    }
    storage_sr_update_allowed(c->srv, sr);
    memcpy(ref, sr->ref, sizeof ref);
    return xapi_finish_ref(c, 0, ref);
}

/* ---- SR.probe ------------------------------------------------------------------- */

/* SR.probe(host, device_config, type, sm_config): the driver looks at the
 * storage (no store lock held: it may be slow) and answers sm's probe XML. */
static int sr_probe(xapi_call *c) {
    const xapi_value *sm_config = c->nargs > 3 ? &c->args[3] : NULL;
    const storage_driver *drv;
    storage_err e = {0};
    char type[64], *xml = NULL;
    xapi_obj *host;
    int rc;

    rc = check_device_config(c, &c->args[1]);
    if (rc < 0)
        return rc;
    xapi_store_rdlock(c->srv->store);
    rc = xapi_lookup(c, storage_cls(XAPI_C_host), c->args[0].s, &host);
    xapi_store_rdunlock(c->srv->store);
    if (rc < 0)
        return rc;
    drv = find_driver(c->args[2].s, type, sizeof type);
    if (!drv)
        return xapi_call_fail(c, "SR_UNKNOWN_DRIVER", c->args[2].s);
    /* As the layer refuses what a driver cannot do (sm's drivers without SR_PROBE). */
    if (!drv->sr_probe)
        return xapi_call_fail(c, "SR_OPERATION_NOT_SUPPORTED", XAPI_NULL_REF);
    if (storage_sr_probe_io(drv, &c->args[1], sm_config, &xml, &e) < 0)
        return storage_backend_fail(&c->err, &e);
    xapi_out_cstring(c->out, xml);
    free(xml);
    return 0;
}

/* ---- SR.forget / destroy ---------------------------------------------------------- */

static int sr_forget(xapi_call *c) {
    xapi_obj *sr;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, storage_cls(XAPI_C_SR), c->args[0].s, &sr);
    if (rc == 0)
        rc = storage_sr_check_idle(sr, &c->err);
    if (rc == 0 && any_pbd_attached(c->srv, sr))
        rc = xapi_call_fail(c, "SR_HAS_PBD", sr->ref);
    if (rc == 0) {
        log_info("storage: SR %s forgotten", sr->uuid);
        really_forget(c->srv, sr);
    }
    return xapi_finish_void(c, rc);
}

/* SR.destroy: checked and marked under the lock, the storage removed
 * without it, the records forgotten after. */
static int sr_destroy(xapi_call *c) {
    xapi_store *st = c->srv->store;
    const storage_driver *drv;
    storage_sr h = {0};
    storage_sr_io *io = NULL;
    xapi_obj *sr, *pbd;
    const xapi_value *vdis;
    char **locations = NULL, sr_ref[XAPI_REF_LEN + 1];
    size_t nloc = 0;
    int rc;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, storage_cls(XAPI_C_SR), c->args[0].s, &sr);
    if (rc < 0)
        return xapi_finish_void(c, rc);
    drv = storage_driver_find(sr->fields[XAPI_F_SR_type].s);
    vdis = &sr->fields[XAPI_F_SR_VDIs];
    /* xapi's order: driver features, attached PBDs, no PBDs, managed VDIs. */
    rc = storage_sr_cap(sr, drv, STORAGE_CAP_SR_DELETE, &c->err);
    if (rc == 0)
        rc = storage_sr_check_idle(sr, &c->err);
    if (rc == 0 && any_pbd_attached(c->srv, sr))
        rc = xapi_call_fail(c, "SR_HAS_PBD", sr->ref);
    if (rc == 0 && sr->fields[XAPI_F_SR_PBDs].n == 0)
        rc = xapi_call_fail(c, "SR_HAS_NO_PBDS", sr->ref);
    for (uint32_t i = 0; rc == 0 && i < vdis->n; i++) {
        xapi_obj *v = xapi_store_get_class(st, storage_cls(XAPI_C_VDI), vdis->items[i].s);
        if (v && v->fields[XAPI_F_VDI_managed].b && strcmp(v->fields[XAPI_F_VDI_type].s, "rrd") != 0)
            rc = xapi_call_fail(c, "SR_NOT_EMPTY", NULL);
    }
    if (rc < 0)
        return xapi_finish_void(c, rc);
    pbd = storage_my_pbd(c->srv, sr);
    if (!pbd)
        pbd = xapi_store_get_class(st, storage_cls(XAPI_C_PBD), sr->fields[XAPI_F_SR_PBDs].items[0].s);
    rc = storage_sr_handle(c->srv, sr, pbd, &h, &c->err);
    if (rc < 0)
        return xapi_finish_void(c, rc);
    locations = xapi_calloc(vdis->n + 1, sizeof *locations);
    for (uint32_t i = 0; i < vdis->n; i++) {
        xapi_obj *v = xapi_store_get_class(st, storage_cls(XAPI_C_VDI), vdis->items[i].s);
        if (v && *v->fields[XAPI_F_VDI_location].s)
            locations[nloc++] = xapi_strdup(v->fields[XAPI_F_VDI_location].s);
    }
    rc = sr_unlocked_io(c, sr, "destroy", &h, STORAGE_SR_IO_DELETE, locations, nloc, NULL, &io, sr_ref);
    sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), sr_ref);
    if (rc == 0 && sr) {
        log_info("storage: SR %s destroyed", sr->uuid);
        really_forget(c->srv, sr);
    }
    for (size_t i = 0; i < nloc; i++)
        free(locations[i]);
    free(locations);
    storage_sr_io_free(io);
    storage_sr_handle_free(&h);
    return finish_after_io(c, rc, NULL);
}

/* ---- SR.scan / update / getters and setters --------------------------------------- */

/* The call's SR (its first argument) and a handle on it (write lock held; the
 * handle is the caller's to free, even on failure). xapi's storage layer
 * answers SR_NOT_ATTACHED for SR operations on an unplugged SR. */
static int lookup_sr_attached(xapi_call *c, xapi_obj **ret_sr, storage_sr *h) {
    xapi_obj *sr, *pbd;
    int rc;

    rc = xapi_lookup(c, storage_cls(XAPI_C_SR), c->args[0].s, &sr);
    if (rc < 0)
        return rc;
    pbd = storage_my_pbd(c->srv, sr);
    if (!pbd || !pbd->fields[XAPI_F_PBD_currently_attached].b)
        return xapi_call_fail(c, "SR_NOT_ATTACHED", sr->ref);
    rc = storage_sr_handle(c->srv, sr, pbd, h, &c->err);
    if (rc < 0)
        return rc;
    *ret_sr = sr;
    return 0;
}

/* SR.scan and SR.update: the SR marked busy under the lock, the driver's
 * I/O (a directory listing, statvfs) without it, the result published
 * under it again if the SR is still there and plugged. */
static int sr_io_call(xapi_call *c, const char *op, unsigned steps) {
    xapi_store *st = c->srv->store;
    storage_sr h = {0};
    storage_sr_io *io = NULL;
    storage_scan_known known = {0};
    char sr_ref[XAPI_REF_LEN + 1];
    xapi_obj *sr = NULL;
    int rc;

    xapi_store_write_begin(st);
    rc = lookup_sr_attached(c, &sr, &h);
    if (rc == 0 && (steps & STORAGE_SR_IO_SCAN))
        rc = storage_sr_cap(sr, h.drv, STORAGE_CAP_SR_SCAN, &c->err);
    if (rc == 0 && (steps & STORAGE_SR_IO_SCAN) && !h.drv->sr_scan)
        rc = xapi_call_fail(c, "SR_OPERATION_NOT_SUPPORTED", sr->ref);
    if (rc < 0) {
        storage_sr_handle_free(&h);
        return xapi_finish_void(c, rc);
    }
    rc = sr_unlocked_io(c, sr, op, &h, steps, NULL, 0, &known, &io, sr_ref);
    sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), sr_ref);
    if (rc == 0 && !sr)
        rc = xapi_call_fail(c, "HANDLE_INVALID", "SR", sr_ref);
    else if (rc == 0 && !storage_sr_attached(c->srv, sr))
        rc = xapi_call_fail(c, "SR_NOT_ATTACHED", sr_ref);
    else if (rc == 0 && (steps & STORAGE_SR_IO_SCAN) && !io->scanned)
        rc = storage_backend_fail(&c->err, &io->scan_e);
    else if (rc == 0 && (steps & STORAGE_SR_IO_SCAN))
        storage_sr_apply_scan(c->srv, sr, io, &known);
    else if (rc == 0)
        storage_sr_set_sizes(c->srv, sr, io);
    storage_scan_known_free(&known);
    storage_sr_io_free(io);
    storage_sr_handle_free(&h);
    return finish_after_io(c, rc, NULL);
}

static int sr_scan(xapi_call *c) {
    return sr_io_call(c, "scan", STORAGE_SR_IO_SCAN | STORAGE_SR_IO_STAT);
}

static int sr_update(xapi_call *c) {
    return sr_io_call(c, "update", STORAGE_SR_IO_STAT);
}

static int sr_get_supported_types(xapi_call *c) {
    xapi_out_array_begin(c->out);
    for (size_t i = 0; storage_drivers[i]; i++)
        xapi_out_cstring(c->out, storage_drivers[i]->type);
    xapi_out_array_end(c->out);
    return 0;
}

static int sr_set(xapi_call *c, int field) {
    xapi_obj *sr;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, storage_cls(XAPI_C_SR), c->args[0].s, &sr);
    if (rc == 0)
        xapi_obj_set(c->srv->store, sr, field, xapi_value_copy(&c->args[1]));
    return xapi_finish_void(c, rc);
}

static int sr_set_name_label(xapi_call *c) {
    return sr_set(c, XAPI_F_SR_name_label);
}

static int sr_set_name_description(xapi_call *c) {
    return sr_set(c, XAPI_F_SR_name_description);
}

static int sr_set_physical_size(xapi_call *c) {
    if (c->args[1].i < 0)
        return xapi_call_fail(c, "INVALID_VALUE", "value", "negative size");
    return sr_set(c, XAPI_F_SR_physical_size);
}

static int sr_set_shared(xapi_call *c) {
    xapi_obj *sr;
    unsigned attached = 0;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, storage_cls(XAPI_C_SR), c->args[0].s, &sr);
    if (rc == 0 && !c->args[1].b) {
        const xapi_value *pbds = &sr->fields[XAPI_F_SR_PBDs];
        for (uint32_t i = 0; i < pbds->n; i++) {
            xapi_obj *p = xapi_store_get_class(c->srv->store, storage_cls(XAPI_C_PBD), pbds->items[i].s);
            if (p && p->fields[XAPI_F_PBD_currently_attached].b && ++attached > 1)
                rc = xapi_call_fail(c, "SR_HAS_MULTIPLE_PBDS", p->ref);
        }
    }
    if (rc == 0)
        xapi_obj_set_bool(c->srv->store, sr, XAPI_F_SR_shared, c->args[1].b);
    return xapi_finish_void(c, rc);
}

/* ---- PBD ------------------------------------------------------------------------ */

static int pbd_after_create(xapi_call *c, xapi_obj *o) {
    xapi_store *st = c->srv->store;
    const char *sr_ref = o->fields[XAPI_F_PBD_SR].s, *host_ref = o->fields[XAPI_F_PBD_host].s;
    xapi_obj *sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), sr_ref);
    const xapi_value *pbds;
    int rc;

    /* The generic constructor already refused refs to objects that do not
     * exist; a NULL SR or host makes an inert record that can never be plugged. */
    if (!sr || !xapi_store_get_class(st, storage_cls(XAPI_C_host), host_ref))
        return check_device_config(c, &o->fields[XAPI_F_PBD_device_config]);
    pbds = &sr->fields[XAPI_F_SR_PBDs];
    for (uint32_t i = 0; i < pbds->n; i++) {
        xapi_obj *p = xapi_store_get_class(st, storage_cls(XAPI_C_PBD), pbds->items[i].s);
        if (p && p != o && strcmp(p->fields[XAPI_F_PBD_host].s, host_ref) == 0)
            return xapi_call_fail(c, "PBD_EXISTS", sr->ref, host_ref, p->ref);
    }
    rc = check_device_config(c, &o->fields[XAPI_F_PBD_device_config]);
    if (rc < 0)
        return rc;
    xapi_obj_set_bool(st, o, XAPI_F_PBD_currently_attached, false);
    storage_sr_update_allowed(c->srv, sr);
    return 0;
}

static int pbd_before_destroy(xapi_call *c, xapi_obj *o) {
    xapi_obj *sr = xapi_store_get_class(c->srv->store, storage_cls(XAPI_C_SR), o->fields[XAPI_F_PBD_SR].s);

    if (o->fields[XAPI_F_PBD_currently_attached].b)
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "PBD is currently attached");
    return sr ? storage_sr_check_idle(sr, &c->err) : 0;
}

const xapi_class_hooks storage_pbd_hooks = {
    .after_create = pbd_after_create,
    .before_destroy = pbd_before_destroy,
};

/* PBD.plug: marked under the lock, attached (mounted) and scanned without it, published after. */
static int pbd_plug(xapi_call *c) {
    xapi_store *st = c->srv->store;
    storage_sr h = {0};
    storage_sr_io *io = NULL;
    storage_scan_known known = {0};
    char sr_ref[XAPI_REF_LEN + 1], pbd_ref[XAPI_REF_LEN + 1];
    xapi_obj *pbd, *sr = NULL;
    int rc;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, storage_cls(XAPI_C_PBD), c->args[0].s, &pbd);
    if (rc == 0 && pbd->fields[XAPI_F_PBD_currently_attached].b)
        return xapi_finish_void(c, 0);
    if (rc == 0 && !(sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), pbd->fields[XAPI_F_PBD_SR].s)))
        rc = xapi_call_fail(c, "HANDLE_INVALID", "SR", pbd->fields[XAPI_F_PBD_SR].s);
    if (rc == 0)
        rc = storage_sr_handle(c->srv, sr, pbd, &h, &c->err);
    if (rc < 0) {
        storage_sr_handle_free(&h);
        return xapi_finish_void(c, rc);
    }
    snprintf(pbd_ref, sizeof pbd_ref, "%s", pbd->ref);
    rc = sr_unlocked_io(c, sr, "plug", &h, PLUG_STEPS, NULL, 0, &known, &io, sr_ref);
    sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), sr_ref);
    pbd = xapi_store_get_class(st, storage_cls(XAPI_C_PBD), pbd_ref);
    if (rc == 0 && (!sr || !pbd))
        rc = xapi_call_fail(c, "HANDLE_INVALID", "PBD", pbd_ref);
    else if (rc == 0)
        publish_plug(c->srv, pbd, sr, io, &known);
    storage_scan_known_free(&known);
    storage_sr_io_free(io);
    storage_sr_handle_free(&h);
    return finish_after_io(c, rc, NULL);
}

/* PBD.unplug: checked and marked under the lock, detached (unmounted) without it. */
static int pbd_unplug(xapi_call *c) {
    xapi_store *st = c->srv->store;
    const storage_driver *drv;
    xapi_obj *pbd, *sr;
    xapi_value in_use = xapi_value_array();
    storage_sr h = {0};
    storage_sr_io *io = NULL;
    char sr_ref[XAPI_REF_LEN + 1], pbd_ref[XAPI_REF_LEN + 1];
    int rc;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, storage_cls(XAPI_C_PBD), c->args[0].s, &pbd);
    if (rc < 0 || !pbd->fields[XAPI_F_PBD_currently_attached].b)
        goto out;
    sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), pbd->fields[XAPI_F_PBD_SR].s);
    if (sr)
        rc = storage_sr_check_idle(sr, &c->err);
    if (sr && rc == 0) {
        const xapi_value *vdis = &sr->fields[XAPI_F_SR_VDIs];
        for (uint32_t i = 0; i < vdis->n && rc == 0; i++) {
            xapi_obj *v = xapi_store_get_class(st, storage_cls(XAPI_C_VDI), vdis->items[i].s);
            const xapi_value *cur = v ? &v->fields[XAPI_F_VDI_current_operations] : NULL;
            const xapi_value *vbds = v ? &v->fields[XAPI_F_VDI_VBDs] : NULL;
            if (!v)
                continue;
            if (cur->n > 0) {
                rc = xapi_call_fail(c, "OTHER_OPERATION_IN_PROGRESS", "VDI", v->ref,
                                    xapi_value_str(&cur->members[0].value), cur->members[0].name);
                break;
            }
            for (uint32_t k = 0; k < vbds->n; k++) {
                xapi_obj *b = xapi_store_get_class(st, storage_cls(XAPI_C_VBD), vbds->items[k].s);
                if (b && b->fields[XAPI_F_VBD_currently_attached].b && !b->fields[XAPI_F_VBD_empty].b &&
                    strcmp(v->fields[XAPI_F_VDI_type].s, "metadata") != 0) {
                    xapi_array_append(&in_use, xapi_value_string(v->ref));
                    break;
                }
            }
        }
    }
    if (rc == 0 && in_use.n > 0) {
        const char **params = xapi_calloc(in_use.n, sizeof *params);
        for (uint32_t i = 0; i < in_use.n; i++)
            params[i] = in_use.items[i].s;
        rc = xapi_failv(&c->err, "VDI_IN_USE", params, in_use.n);
        free(params);
    }
    drv = sr ? storage_driver_find(sr->fields[XAPI_F_SR_type].s) : NULL;
    if (rc == 0 && drv && drv->sr_detach) {
        rc = storage_sr_handle(c->srv, sr, pbd, &h, &c->err);
        if (rc < 0)
            goto out;
        snprintf(pbd_ref, sizeof pbd_ref, "%s", pbd->ref);
        rc = sr_unlocked_io(c, sr, "unplug", &h, STORAGE_SR_IO_DETACH, NULL, 0, NULL, &io, sr_ref);
        sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), sr_ref);
        pbd = xapi_store_get_class(st, storage_cls(XAPI_C_PBD), pbd_ref);
        if (rc == 0 && pbd) {
            xapi_obj_set_bool(st, pbd, XAPI_F_PBD_currently_attached, false);
            if (sr)
                storage_sr_update_allowed_all(c->srv, sr);
        }
        xapi_value_free(&in_use);
        storage_sr_io_free(io);
        storage_sr_handle_free(&h);
        return finish_after_io(c, rc, NULL);
    }
    if (rc == 0) {
        xapi_obj_set_bool(st, pbd, XAPI_F_PBD_currently_attached, false);
        if (sr)
            storage_sr_update_allowed_all(c->srv, sr);
    }
out:
    storage_sr_handle_free(&h);
    xapi_value_free(&in_use);
    return xapi_finish_void(c, rc);
}

static int pbd_set_device_config(xapi_call *c) {
    xapi_obj *pbd;
    int rc;

    rc = check_device_config(c, &c->args[1]);
    if (rc < 0)
        return rc;
    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, storage_cls(XAPI_C_PBD), c->args[0].s, &pbd);
    if (rc == 0)
        xapi_obj_set(c->srv->store, pbd, XAPI_F_PBD_device_config, xapi_value_copy(&c->args[1]));
    return xapi_finish_void(c, rc);
}

const xapi_handler storage_sr_handlers[] = {
    {"SR", "create", sr_create},
    {"SR", "introduce", sr_introduce},
    {"SR", "probe", sr_probe},
    {"SR", "forget", sr_forget},
    {"SR", "destroy", sr_destroy},
    {"SR", "scan", sr_scan},
    {"SR", "update", sr_update},
    {"SR", "get_supported_types", sr_get_supported_types},
    {"SR", "set_name_label", sr_set_name_label},
    {"SR", "set_name_description", sr_set_name_description},
    {"SR", "set_physical_size", sr_set_physical_size},
    {"SR", "set_shared", sr_set_shared},
    {"PBD", "plug", pbd_plug},
    {"PBD", "unplug", pbd_unplug},
    {"PBD", "set_device_config", pbd_set_device_config},
    {NULL, NULL, NULL},
};
