/* The start-up sweep: what a directory SR holds that no VDI owns. An
 * interrupted operation's staging files (.<name>.part) are the drivers' own
 * and go before (sr_cleanup); everything else, a file a scan left out (not a
 * VHD, a link, a .raw beside the .vhd of the same uuid) or anything dropped
 * there, may be someone's data: it is reported, never deleted. Each one is a
 * log line, and the SR's other_config key xenapid-leftovers lists them
 * (bounded; removed when there are none) where clients and xe can see it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "storage/internal.h"
#include "xapi/buf.h"

#define SWEEP_KEY "xenapid-leftovers"
#define SWEEP_LISTED 16 /* names in the key; the rest counted */

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entry names (in sr's directory) of the SR's VDIs, sorted. */
static char **owned_names(xapi_server *srv, const xapi_obj *sr, const storage_sr *h, size_t *ret_n) {
    const xapi_value *vdis = &sr->fields[XAPI_F_SR_VDIs];
    char **names = xapi_calloc(vdis->n + 1, sizeof *names);
    size_t n = 0, len = strlen(h->path);

    for (uint32_t i = 0; i < vdis->n; i++) {
        xapi_obj *v = xapi_store_get_class(srv->store, storage_cls(XAPI_C_VDI), vdis->items[i].s);
        char *p = v ? h->drv->vdi_path(h, v->fields[XAPI_F_VDI_location].s) : NULL;

        if (p && strncmp(p, h->path, len) == 0 && p[len] == '/' && !strchr(p + len + 1, '/'))
            names[n++] = xapi_strdup(p + len + 1);
        free(p);
    }
    if (n > 1)
        qsort(names, n, sizeof *names, name_cmp);
    *ret_n = n;
    return names;
}

static bool reportable(const storage_driver *drv) {
    /* An ISO library is a share of the user's files; a block SR's VDIs are no directory entries. */
    return !drv->block && drv->sr_scan && (drv->caps & STORAGE_CAP_VDI_CREATE);
}

void storage_sr_sweep(xapi_server *srv, xapi_obj *sr, const storage_sr *h) {
    xapi_buf listed = XAPI_BUF_INIT;
    xapi_value oc;
    size_t n_owned = 0, found = 0;
    char **owned;
    struct dirent *de;
    DIR *d;

    if (!reportable(h->drv) || !(d = opendir(h->path)))
        return;
    owned = owned_names(srv, sr, h, &n_owned);
    while ((de = readdir(d)) && found < STORAGE_MAX_SCAN) {
        const char *name = de->d_name;

        if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "lost+found") ||
            (n_owned && bsearch(&name, owned, n_owned, sizeof *owned, name_cmp)))
            continue;
        log_warning("storage: SR %s: %s/%s is no VDI's: left as it is", sr->uuid, h->path, name);
        if (found < SWEEP_LISTED)
            xapi_buf_printf(&listed, "%s%s", found ? " " : "", name);
        found++;
    }
    closedir(d);
    if (found > SWEEP_LISTED)
        xapi_buf_printf(&listed, " (+%zu more)", found - SWEEP_LISTED);
    oc = xapi_value_copy(&sr->fields[XAPI_F_SR_other_config]);
    if (oc.kind != XAPI_V_STRUCT) {
        xapi_value_free(&oc);
        oc = xapi_value_struct();
    }
    if (found)
        xapi_struct_set(&oc, SWEEP_KEY, xapi_value_string(listed.data));
    else
        xapi_struct_remove(&oc, SWEEP_KEY);
    xapi_obj_set(srv->store, sr, XAPI_F_SR_other_config, oc);
    if (found)
        log_notice("storage: SR %s: %zu entr%s no VDI owns (other_config %s)", sr->uuid, found,
                   found == 1 ? "y" : "ies", SWEEP_KEY);
    for (size_t i = 0; i < n_owned; i++)
        free(owned[i]);
    free(owned);
    xapi_buf_free(&listed);
}
