/* Messages of the classes this host has no objects of, and of the pool-wide
 * operations it cannot carry out: see unsupported.h.
 * Each reference argument is checked first, as xapi does, so a client asking
 * about an object learns HANDLE_INVALID (there is none); a call that would
 * make or change one answers NOT_IMPLEMENTED [method], never
 * MESSAGE_METHOD_UNKNOWN: the method exists, this host cannot carry it out. */
#include <stdlib.h>
#include <string.h>

#include "xapi/api.h"
#include "xapi/error.h"
#include "xapi/store.h"
#include "xapi/unsupported.h"

static const int unsupported_classes[] = {
    XAPI_C_Bond, XAPI_C_pool_patch, XAPI_C_host_patch, XAPI_C_pool_update,
    XAPI_C_GPU_group, XAPI_C_PGPU, XAPI_C_VGPU_type, XAPI_C_VGPU,
};

/* Operations with a second host (a migration target, a pool to join). */
static const char *const single_host_messages[][2] = {
    {"VM", "pool_migrate"}, {"VM", "migrate_send"}, {"VM", "assert_can_migrate"}, {"host", "migrate_receive"},
    {"VDI", "pool_migrate"}, {"pool", "join"}, {"pool", "join_force"}, {"pool", "eject"},
};

/* A reference argument: it must name an object of its class, unless it is an
 * optional parameter left at the null ref (VGPU.create's type). */
static int check_ref(xapi_call *c, const xapi_param *p, const xapi_type *t, const char *ref) {
    xapi_obj *o;

    if (p->def && strcmp(ref, XAPI_NULL_REF) == 0)
        return 0;
    if (t->class_id < 0)
        return xapi_call_fail(c, "HANDLE_INVALID", t->class_name, ref);
    return xapi_lookup(c, &xapi_classes[t->class_id], ref, &o);
}

static int unsupported_call(xapi_call *c) {
    int rc = 0;

    xapi_store_rdlock(c->srv->store);
    for (unsigned i = 0; rc == 0 && c->msg && i < c->nargs && i < c->msg->nparams; i++) {
        const xapi_param *p = &c->msg->params[i];
        const xapi_value *v = &c->args[i];

        if (p->type->kind == XAPI_T_REF)
            rc = check_ref(c, p, p->type, v->s);
        else if (p->type->kind == XAPI_T_SET && p->type->elem->kind == XAPI_T_REF)
            for (uint32_t k = 0; rc == 0 && k < v->n; k++)
                rc = check_ref(c, p, p->type->elem, v->items[k].s);
    }
    xapi_store_rdunlock(c->srv->store);
    if (rc < 0)
        return rc;
    return xapi_call_fail(c, "NOT_IMPLEMENTED", c->method);
}

void xapi_unsupported_register(void) {
    static xapi_handler *handlers;
    const size_t nclasses = sizeof unsupported_classes / sizeof unsupported_classes[0];
    const size_t nsingle = sizeof single_host_messages / sizeof single_host_messages[0];
    size_t n = nsingle;

    if (handlers)
        return;
    for (size_t i = 0; i < nclasses; i++)
        n += xapi_classes[unsupported_classes[i]].nmessages;
    handlers = xapi_calloc(n + 1, sizeof *handlers); /* lives as long as the dispatcher */
    n = 0;
    for (size_t i = 0; i < nclasses; i++) {
        const xapi_class *cls = &xapi_classes[unsupported_classes[i]];

        for (unsigned k = 0; k < cls->nmessages; k++)
            handlers[n++] = (xapi_handler){cls->name, cls->messages[k].name, unsupported_call};
    }
    for (size_t i = 0; i < nsingle; i++)
        handlers[n++] = (xapi_handler){single_host_messages[i][0], single_host_messages[i][1], unsupported_call};
    xapi_register_handlers(handlers);
}
