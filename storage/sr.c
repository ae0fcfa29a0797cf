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
        if (storage_sr_config(drv, &p->fields[XAPI_F_PBD_device_config], sr->uuid, &other, &e) < 0)
            continue;
        same = strcmp(other.path, path) == 0;
        storage_sr_handle_free(&other);
        if (same)
            return sr;
    }
    return NULL;
}

/* Attaches with the driver, marks the PBD plugged, scans. */
static int plug_pbd(xapi_server *srv, xapi_obj *pbd, xapi_obj *sr, xapi_value *err) {
    storage_sr h = {0};
    storage_err e = {0};
    xapi_value scan_err = {0};
    int rc;

    rc = storage_sr_handle(srv, sr, pbd, &h, err);
    if (rc < 0)
        return rc;
    if (h.drv->sr_attach && h.drv->sr_attach(&h, &e) < 0) {
        storage_sr_handle_free(&h);
        return storage_backend_fail(err, &e);
    }
    xapi_obj_set_bool(srv->store, pbd, XAPI_F_PBD_currently_attached, true);
    if (h.drv->caps & STORAGE_CAP_SR_SCAN && storage_sr_scan_locked(srv, sr, &h, &scan_err) < 0)
        log_warning("storage: SR %s: scan after plug failed: %s", sr->uuid,
                    scan_err.n > 1 ? xapi_value_str(&scan_err.items[1]) : "?");
    xapi_value_free(&scan_err);
    storage_sr_refresh(srv, sr, &h, NULL);
    storage_sr_update_allowed_all(srv, sr);
    storage_sr_handle_free(&h);
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

int storage_sr_create_locked(xapi_server *srv, const char *host_ref, const xapi_value *device_config,
                             const char *name_label, const char *name_description, const char *type_arg,
                             const char *content_type, bool shared, const xapi_value *sm_config,
                             const xapi_value *other_config, const char *uuid_in, char ret_ref[XAPI_REF_LEN + 1],
                             xapi_value *err) {
    xapi_store *st = srv->store;
    const storage_driver *drv;
    storage_sr h = {0};
    storage_err e = {0};
    xapi_obj *sr, *pbd, *other;
    char type[64], uuid[XAPI_UUID_LEN + 1];
    int rc;

    drv = find_driver(type_arg, type, sizeof type);
    if (!drv)
        return xapi_fail(err, "SR_UNKNOWN_DRIVER", type_arg, NULL);
    if (!(drv->caps & STORAGE_CAP_SR_CREATE))
        return xapi_fail(err, "SR_OPERATION_NOT_SUPPORTED", XAPI_NULL_REF, NULL);
    if (uuid_in)
        snprintf(uuid, sizeof uuid, "%s", uuid_in);
    else
        xapi_uuid_generate(uuid);
    if (storage_sr_config(drv, device_config, uuid, &h, &e) < 0)
        return storage_backend_fail(err, &e);
    if ((drv->caps & STORAGE_CAP_VDI_CREATE) && (other = sr_at_path(srv, drv, h.path))) {
        char detail[200];
        snprintf(detail, sizeof detail, "SR %s already uses %s", other->uuid, h.path);
        storage_err_set(&e, SM_ERR_SR_EXISTS, EEXIST, "The SR already exists", detail);
        storage_sr_handle_free(&h);
        return storage_backend_fail(err, &e);
    }
    snprintf(h.uuid, sizeof h.uuid, "%s", uuid);
    if (drv->sr_create && drv->sr_create(&h, &e) < 0) {
        storage_sr_handle_free(&h);
        return storage_backend_fail(err, &e);
    }
    sr = new_sr(srv, uuid, name_label, name_description, type, *content_type ? content_type : drv->content_type,
                shared, sm_config);
    if (!sr) {
        storage_sr_handle_free(&h);
        return xapi_fail(err, "SR_UUID_EXISTS", uuid, NULL);
    }
    if (other_config)
        xapi_obj_set(st, sr, XAPI_F_SR_other_config, xapi_value_copy(other_config));
    pbd = xapi_obj_create(st, storage_cls(XAPI_C_PBD));
    xapi_obj_set_string(st, pbd, XAPI_F_PBD_host, host_ref);
    xapi_obj_set_string(st, pbd, XAPI_F_PBD_SR, sr->ref);
    xapi_obj_set(st, pbd, XAPI_F_PBD_device_config, xapi_value_copy(device_config));
    xapi_obj_set(st, pbd, XAPI_F_PBD_other_config, xapi_value_struct());
    xapi_obj_set_bool(st, pbd, XAPI_F_PBD_currently_attached, false);
    rc = plug_pbd(srv, pbd, sr, err);
    if (rc < 0) {
        storage_sr_handle_free(&h);
        xapi_obj_destroy(st, pbd);
        xapi_obj_destroy(st, sr);
        return rc;
    }
    memcpy(ret_ref, sr->ref, XAPI_REF_LEN + 1);
    /* where the driver put it: a directory, a volume group, an iSCSI target's path */
    log_info("storage: SR %s (%s) created at %s", sr->uuid, type, h.path);
    storage_sr_handle_free(&h);
    return 0;
}

static int sr_create(xapi_call *c) {
    char ref[XAPI_REF_LEN + 1];
    xapi_obj *host;
    int rc;

    rc = check_device_config(c, &c->args[1]);
    if (rc < 0)
        return rc;
    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, storage_cls(XAPI_C_host), c->args[0].s, &host);
    if (rc == 0)
        rc = storage_sr_create_locked(c->srv, host->ref, &c->args[1], c->args[3].s, c->args[4].s, c->args[5].s,
                                      c->args[6].s, c->args[7].b, &c->args[8], NULL, NULL, ref, &c->err);
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
    if (drv->sr_probe(&c->args[1], sm_config, &xml, &e) < 0)
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
    if (rc == 0 && any_pbd_attached(c->srv, sr))
        rc = xapi_call_fail(c, "SR_HAS_PBD", sr->ref);
    if (rc == 0) {
        log_info("storage: SR %s forgotten", sr->uuid);
        really_forget(c->srv, sr);
    }
    return xapi_finish_void(c, rc);
}

static int sr_destroy(xapi_call *c) {
    xapi_store *st = c->srv->store;
    const storage_driver *drv;
    storage_sr h = {0};
    storage_err e = {0};
    xapi_obj *sr, *pbd;
    const xapi_value *vdis;
    char **locations = NULL;
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
            locations[nloc++] = v->fields[XAPI_F_VDI_location].s;
    }
    if (h.drv->sr_delete && h.drv->sr_delete(&h, locations, nloc, &e) < 0)
        rc = storage_backend_fail(&c->err, &e);
    free(locations);
    storage_sr_handle_free(&h);
    if (rc == 0) {
        log_info("storage: SR %s destroyed", sr->uuid);
        really_forget(c->srv, sr);
    }
    return xapi_finish_void(c, rc);
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

static int sr_scan(xapi_call *c) {
    storage_sr h = {0};
    xapi_obj *sr = NULL;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = lookup_sr_attached(c, &sr, &h);
    if (rc == 0)
        rc = storage_sr_cap(sr, h.drv, STORAGE_CAP_SR_SCAN, &c->err);
    if (rc == 0)
        rc = storage_sr_scan_locked(c->srv, sr, &h, &c->err);
    storage_sr_handle_free(&h);
    return xapi_finish_void(c, rc);
}

static int sr_update(xapi_call *c) {
    storage_sr h = {0};
    xapi_obj *sr = NULL;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = lookup_sr_attached(c, &sr, &h);
    if (rc == 0)
        storage_sr_refresh(c->srv, sr, &h, NULL);
    storage_sr_handle_free(&h);
    return xapi_finish_void(c, rc);
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
    if (o->fields[XAPI_F_PBD_currently_attached].b)
        return xapi_call_fail(c, "OPERATION_NOT_ALLOWED", "PBD is currently attached");
    return 0;
}

const xapi_class_hooks storage_pbd_hooks = {
    .after_create = pbd_after_create,
    .before_destroy = pbd_before_destroy,
};

static int pbd_plug(xapi_call *c) {
    xapi_obj *pbd;
    int rc;

    xapi_store_write_begin(c->srv->store);
    rc = xapi_lookup(c, storage_cls(XAPI_C_PBD), c->args[0].s, &pbd);
    if (rc == 0)
        rc = storage_pbd_plug_locked(c->srv, pbd, &c->err);
    return xapi_finish_void(c, rc);
}

static int pbd_unplug(xapi_call *c) {
    xapi_store *st = c->srv->store;
    const storage_driver *drv;
    xapi_obj *pbd, *sr;
    xapi_value in_use = xapi_value_array();
    int rc;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, storage_cls(XAPI_C_PBD), c->args[0].s, &pbd);
    if (rc < 0 || !pbd->fields[XAPI_F_PBD_currently_attached].b)
        goto out;
    sr = xapi_store_get_class(st, storage_cls(XAPI_C_SR), pbd->fields[XAPI_F_PBD_SR].s);
    if (sr) {
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
        storage_sr h = {0};
        storage_err e = {0};
        /* The store lock is held: sr_detach is one bounded command (storage/lvm.h). */
        rc = storage_sr_handle(c->srv, sr, pbd, &h, &c->err);
        if (rc == 0 && h.drv->sr_detach(&h, &e) < 0)
            rc = storage_backend_fail(&c->err, &e);
        storage_sr_handle_free(&h);
    }
    if (rc == 0) {
        xapi_obj_set_bool(st, pbd, XAPI_F_PBD_currently_attached, false);
        if (sr)
            storage_sr_update_allowed_all(c->srv, sr);
    }
out:
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
