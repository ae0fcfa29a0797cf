/* The dispatcher: method table, argument checking, generic accessors, and the
 * reply envelope. See api.h. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/log.h"
#include "xapi/api.h"
#include "xapi/error.h"
#include "xapi/filter.h"
#include "xapi/rbac.h"
#include "xapi/session.h"
#include "xapi/task.h"
#include "xapi/types.h"

typedef enum method_kind {
    M_EXPLICIT,
    M_CUSTOM, /* a handler for a name the schema does not list: raw arguments */
    M_GET_FIELD,
    M_SET_FIELD,
    M_MAP_ADD,
    M_MAP_REMOVE,
    M_SET_ADD,
    M_SET_REMOVE,
    M_GET_RECORD,
    M_GET_BY_UUID,
    M_GET_BY_NAME_LABEL,
    M_GET_ALL,
    M_GET_ALL_RECORDS,
    M_GET_ALL_WHERE,
    M_GET_ALL_RECORDS_WHERE,
    M_CREATE,
    M_DESTROY,
} method_kind;

#define MAX_IMPLICIT_PARAMS 3
#define MAX_HOOKS_PER_CLASS 4

typedef struct method {
    char *name;
    method_kind kind;
    const xapi_class *cls;
    int field;
    const xapi_message *msg;
    xapi_handler_fn fn;
    const xapi_param *params;
    unsigned nparams, nrequired;
    xapi_param implicit_params[MAX_IMPLICIT_PARAMS];
    bool async_ok;
    bool no_session;
    bool removed;
    unsigned char role;      /* xapi_role a caller needs */
    const xapi_field *keyed; /* add_to_/remove_from_ of a map with protected keys */
    char *permission;        /* lowercase name: the RBAC permission */
} method;

static struct {
    method *methods;
    size_t n, cap;
    method **table; /* open addressing, power-of-two size */
    size_t table_size;
    xapi_type *ref_types;   /* one "<class> ref" per class */
    xapi_type *record_types;
    const xapi_handler *handler_sets[32];
    unsigned nhandler_sets;
    /* several modules may hook one class (storage checks a VBD, vmops guards its plugging) */
    const xapi_class_hooks *hooks[XAPI_NCLASSES][MAX_HOOKS_PER_CLASS];
} D;

static const xapi_type type_string = {XAPI_T_STRING, NULL, NULL, NULL, NULL, -1, "string"};

void xapi_register_handlers(const xapi_handler *handlers) {
    if (D.nhandler_sets < sizeof D.handler_sets / sizeof D.handler_sets[0])
        D.handler_sets[D.nhandler_sets++] = handlers;
    else
        abort();
}

void xapi_register_hooks(int class_id, const xapi_class_hooks *hooks) {
    for (unsigned i = 0; i < MAX_HOOKS_PER_CLASS; i++)
        if (!D.hooks[class_id][i]) {
            D.hooks[class_id][i] = hooks;
            return;
        }
    abort(); /* a fixed, small number of modules register hooks */
}

static size_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 31));
}

static method *lookup(const char *name) {
    size_t mask = D.table_size - 1;

    if (!D.table)
        return NULL;
    for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
        if (!D.table[i])
            return NULL;
        if (strcmp(D.table[i]->name, name) == 0)
            return D.table[i];
    }
}

static method *add_method(const xapi_class *cls, const char *msg, method_kind kind) {
    method *m;

    if (D.n == D.cap) {
        uintptr_t old = (uintptr_t)D.methods;

        D.cap = D.cap ? D.cap * 2 : 1024;
        D.methods = xapi_realloc(D.methods, D.cap * sizeof *D.methods);
        /* Implicit methods' params point into their own entry: follow the move
         * (addresses compared as numbers: the old block is gone). */
        for (size_t i = 0; i < D.n; i++)
            if ((uintptr_t)D.methods[i].params == old + i * sizeof(method) + offsetof(method, implicit_params))
                D.methods[i].params = D.methods[i].implicit_params;
    }
    m = &D.methods[D.n++];
    memset(m, 0, sizeof *m);
    if (asprintf(&m->name, "%s.%s", cls->name, msg) < 0)
        xapi_oom();
    m->kind = kind;
    m->cls = cls;
    m->field = -1;
    m->params = m->implicit_params;
    return m;
}

static void implicit_param(method *m, const char *name, const xapi_type *t) {
    m->implicit_params[m->nparams].name = name;
    m->implicit_params[m->nparams].type = t;
    m->implicit_params[m->nparams].def = NULL;
    m->nparams++;
    m->nrequired = m->nparams;
}

/* The generic accessor <prefix><field> of a field, its first parameter "self". */
static method *add_accessor(const xapi_class *cls, const char *prefix, unsigned field, method_kind kind) {
    char *name = NULL;
    method *m;

    if (asprintf(&name, "%s%s", prefix, cls->fields[field].name) < 0)
        xapi_oom();
    m = add_method(cls, name, kind);
    free(name);
    m->field = (int)field;
    implicit_param(m, "self", &D.ref_types[cls->id]);
    return m;
}

static void add_implicit(const xapi_class *cls) {
    const xapi_type *self = &D.ref_types[cls->id];
    method *m;

    if (cls->get_record) {
        m = add_method(cls, "get_record", M_GET_RECORD);
        implicit_param(m, "self", self);
    }
    if (cls->get_by_uuid) {
        m = add_method(cls, "get_by_uuid", M_GET_BY_UUID);
        implicit_param(m, "uuid", &type_string);
    }
    if (cls->get_by_name_label && cls->f_name_label >= 0) {
        m = add_method(cls, "get_by_name_label", M_GET_BY_NAME_LABEL);
        implicit_param(m, "label", &type_string);
    }
    if (cls->get_all)
        add_method(cls, "get_all", M_GET_ALL);
    if (cls->get_all_records)
        add_method(cls, "get_all_records", M_GET_ALL_RECORDS);
    if (cls->get_all_where) {
        m = add_method(cls, "get_all_where", M_GET_ALL_WHERE);
        implicit_param(m, "expr", &type_string);
        m = add_method(cls, "get_all_records_where", M_GET_ALL_RECORDS_WHERE);
        implicit_param(m, "expr", &type_string);
    }
    if (cls->create == XAPI_CTOR_IMPLICIT) {
        m = add_method(cls, "create", M_CREATE);
        implicit_param(m, "args", &D.record_types[cls->id]);
        m->async_ok = true;
    }
    if (cls->destroy == XAPI_CTOR_IMPLICIT) {
        m = add_method(cls, "destroy", M_DESTROY);
        implicit_param(m, "self", self);
        m->async_ok = true;
    }
    for (unsigned i = 0; i < cls->nfields; i++) {
        const xapi_type *t = cls->fields[i].type;

        if (t->kind == XAPI_T_ANY_RECORD)
            continue;
        add_accessor(cls, "get_", i, M_GET_FIELD);
        if (cls->fields[i].qualifier != XAPI_Q_RW)
            continue;
        m = add_accessor(cls, "set_", i, M_SET_FIELD);
        implicit_param(m, "value", t);
        if (t->kind == XAPI_T_MAP) {
            m = add_accessor(cls, "add_to_", i, M_MAP_ADD);
            implicit_param(m, "key", t->key);
            implicit_param(m, "value", t->elem);
            m = add_accessor(cls, "remove_from_", i, M_MAP_REMOVE);
            implicit_param(m, "key", t->key);
        } else if (t->kind == XAPI_T_SET) {
            m = add_accessor(cls, "add_", i, M_SET_ADD);
            implicit_param(m, "value", t->elem);
            m = add_accessor(cls, "remove_", i, M_SET_REMOVE);
            implicit_param(m, "value", t->elem);
        }
    }
}

/* Before the hash table is built. */
static method *find_in_list(const char *cls, const char *msg) {
    char *name = NULL;
    method *m = NULL;

    if (asprintf(&name, "%s.%s", cls, msg) < 0)
        xapi_oom();
    for (size_t i = 0; i < D.n && !m; i++)
        if (strcmp(D.methods[i].name, name) == 0)
            m = &D.methods[i];
    free(name);
    return m;
}

/* The method takes its parameters and flags from the schema's message. */
static void take_message(method *m, const xapi_message *msg) {
    m->msg = msg;
    m->params = msg->params;
    m->nparams = msg->nparams;
    m->nrequired = msg->nrequired;
    m->async_ok = msg->async;
    m->removed = msg->state == XAPI_MSG_REMOVED;
}

/* The datamodel declares some accessors of client-set fields as explicit messages
 * (VM.set_actions_after_crash, VM.add_to_other_config...: xapi adds checks to them). Until a
 * module registers a handler for one, it is served by the generic accessor, typed by the
 * message's own parameters. */
/* Fields the server maintains (DynamicRO) get no generic writer, except where
 * xapi's own message is a plain write of the field: a task's other_config is
 * the caller's notes on its task (CloudStack tags its snapshot tasks so). */
static bool plain_write_allowed(const xapi_class *cls, const xapi_field *f) {
    return f->qualifier != XAPI_Q_DYNAMIC_RO ||
           (cls->id == XAPI_C_task && strcmp(f->name, "other_config") == 0);
}

static void add_explicit_accessors(const xapi_class *cls) {
    static const struct {
        const char *prefix;
        method_kind kind;
        unsigned nparams;
    } forms[] = {
        {"set_", M_SET_FIELD, 2},      {"add_to_", M_MAP_ADD, 3}, {"remove_from_", M_MAP_REMOVE, 2},
        {"add_", M_SET_ADD, 2},        {"remove_", M_SET_REMOVE, 2},
    };

    for (unsigned k = 0; k < cls->nmessages; k++) {
        const xapi_message *msg = &cls->messages[k];

        for (unsigned i = 0; i < sizeof forms / sizeof forms[0]; i++) {
            size_t plen = strlen(forms[i].prefix);
            unsigned want;
            int f;
            method *m;

            if (strncmp(msg->name, forms[i].prefix, plen) != 0 || msg->nparams != forms[i].nparams)
                continue;
            f = xapi_field_index(cls, msg->name + plen);
            if (f < 0 || !plain_write_allowed(cls, &cls->fields[f]))
                continue;
            want = forms[i].kind == M_SET_FIELD ? XAPI_T_VOID
                   : forms[i].kind == M_MAP_ADD || forms[i].kind == M_MAP_REMOVE ? XAPI_T_MAP
                                                                                  : XAPI_T_SET;
            if ((want != XAPI_T_VOID && cls->fields[f].type->kind != want) ||
                msg->params[0].type->kind != XAPI_T_REF || msg->params[0].type->class_id != cls->id)
                continue;
            if (find_in_list(cls->name, msg->name))
                break; /* a handler (or the implicit accessor) already serves it */
            m = add_method(cls, msg->name, forms[i].kind);
            m->field = f;
            take_message(m, msg);
            break;
        }
    }
}

/* What each method needs: its message's role, else (implicit messages, and handlers serving an
 * implicit name) the class's role for it; getters are for everyone. */
static void assign_roles(void) {
    for (size_t i = 0; i < D.n; i++) {
        method *m = &D.methods[i];
        const char *msg = m->name + strlen(m->cls->name) + 1;
        const char *key_field = NULL;

        m->permission = xapi_strdup(m->name);
        for (char *p = m->permission; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (m->msg)
            m->role = m->msg->role;
        else
            m->role = xapi_implicit_role(m->cls, msg, strncmp(msg, "get_", 4) != 0);
        if (strncmp(msg, "add_to_", 7) == 0)
            key_field = msg + 7;
        else if (strncmp(msg, "remove_from_", 12) == 0)
            key_field = msg + 12;
        if (key_field && m->nparams >= 2) {
            int f = xapi_field_index(m->cls, key_field);
            if (f >= 0 && m->cls->fields[f].nkey_roles > 0)
                m->keyed = &m->cls->fields[f];
        }
    }
}

int xapi_dispatch_permissions(int (*fn)(void *ud, const char *name, unsigned role), void *ud) {
    for (size_t i = 0; i < D.n; i++) {
        const method *m = &D.methods[i];
        int rc = fn(ud, m->name, m->role);

        for (unsigned k = 0; rc == 0 && m->keyed && k < m->keyed->nkey_roles; k++) {
            char *name = NULL;
            if (asprintf(&name, "%s/key:%s", m->name, m->keyed->key_roles[k].key) < 0)
                xapi_oom();
            rc = fn(ud, name, m->keyed->key_roles[k].role);
            free(name);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int xapi_dispatch_init(xapi_server *srv) {
    D.ref_types = xapi_calloc(xapi_nclasses, sizeof *D.ref_types);
    D.record_types = xapi_calloc(xapi_nclasses, sizeof *D.record_types);
    for (unsigned c = 0; c < xapi_nclasses; c++) {
        D.ref_types[c] = (xapi_type){XAPI_T_REF, NULL, NULL, NULL, xapi_classes[c].name, (int)c, "ref"};
        D.record_types[c] = (xapi_type){XAPI_T_RECORD, NULL, NULL, NULL, xapi_classes[c].name, (int)c, "record"};
    }
    for (unsigned c = 0; c < xapi_nclasses; c++)
        if (xapi_classes[c].in_database)
            add_implicit(&xapi_classes[c]);

    /* Explicit messages with a C handler; a handler for an implicit name replaces the generic one. */
    for (unsigned s = 0; s < D.nhandler_sets; s++)
        for (const xapi_handler *h = D.handler_sets[s]; h->cls; h++) {
            const xapi_class *cls = xapi_class_by_name(h->cls);
            const xapi_message *msg;
            method *m;

            if (!cls) {
                log_error("dispatch: handler for unknown class %s", h->cls);
                return -EINVAL;
            }
            msg = xapi_message_find(cls, h->msg);
            m = find_in_list(h->cls, h->msg);
            if (msg) {
                if (!m)
                    m = add_method(cls, h->msg, M_EXPLICIT);
                m->kind = M_EXPLICIT;
                take_message(m, msg);
                m->no_session = msg->no_session;
            } else if (m) {
                m->kind = M_EXPLICIT; /* keeps the implicit parameters */
            } else
                m = add_method(cls, h->msg, M_CUSTOM);
            m->fn = h->fn;
        }
    for (unsigned c = 0; c < xapi_nclasses; c++)
        if (xapi_classes[c].in_database)
            add_explicit_accessors(&xapi_classes[c]);

    D.table_size = 1;
    while (D.table_size < D.n * 2)
        D.table_size <<= 1;
    D.table = xapi_calloc(D.table_size, sizeof *D.table);
    for (size_t i = 0; i < D.n; i++) {
        size_t mask = D.table_size - 1, j = hash_name(D.methods[i].name) & mask;
        while (D.table[j]) {
            if (strcmp(D.table[j]->name, D.methods[i].name) == 0)
                break;
            j = (j + 1) & mask;
        }
        D.table[j] = &D.methods[i];
    }
    assign_roles();
    log_debug("dispatch: %zu methods", D.n);
    return 0;
}

void xapi_dispatch_free(void) {
    for (size_t i = 0; i < D.n; i++) {
        free(D.methods[i].name);
        free(D.methods[i].permission);
    }
    free(D.methods);
    free(D.table);
    free(D.ref_types);
    free(D.record_types);
    memset(&D, 0, sizeof D);
}

/* ---- helpers for handlers ---------------------------------------------- */

int xapi_lookup(xapi_call *c, const xapi_class *cls, const char *ref, xapi_obj **ret) {
    xapi_obj *o = xapi_store_get_class(c->srv->store, cls, ref);

    if (!o)
        return xapi_call_fail(c, "HANDLE_INVALID", cls->name, ref);
    *ret = o;
    return 0;
}

void xapi_record_out(xapi_out *o, const xapi_obj *obj) {
    xapi_out_record(o, obj->cls, obj->fields);
}

int xapi_commit(xapi_call *c) {
    int rc = xapi_store_write_end_durable(c->srv->store);

    if (rc < 0)
        return xapi_store_fail(c->srv->store, rc, &c->err);
    return 0;
}

int xapi_finish(xapi_call *c, int rc) {
    if (rc < 0) {
        xapi_store_write_abort(c->srv->store); /* a failed call changes nothing */
        return rc;
    }
    return xapi_commit(c);
}

int xapi_finish_void(xapi_call *c, int rc) {
    rc = xapi_finish(c, rc);
    if (rc == 0)
        xapi_out_void(c->out);
    return rc;
}

int xapi_finish_ref(xapi_call *c, int rc, const char *ref) {
    rc = xapi_finish(c, rc);
    if (rc == 0)
        xapi_out_cstring(c->out, ref);
    return rc;
}

/* ---- generic handlers -------------------------------------------------- */

static int generic_read(xapi_call *c, const method *m) {
    xapi_store *st = c->srv->store;
    xapi_filter *filter = NULL;
    xapi_obj *o = NULL;
    int rc = 0;

    if (m->kind == M_GET_ALL_WHERE || m->kind == M_GET_ALL_RECORDS_WHERE) {
        if (xapi_filter_parse(m->cls, c->args[0].s, &filter) < 0)
            return xapi_call_fail(c, "INVALID_VALUE", "expr", c->args[0].s);
    }
    xapi_store_rdlock(st);
    switch (m->kind) {
    case M_GET_FIELD:
        rc = xapi_lookup(c, m->cls, c->args[0].s, &o);
        if (rc == 0)
            xapi_out_value(c->out, &o->fields[m->field]);
        break;
    case M_GET_RECORD:
        rc = xapi_lookup(c, m->cls, c->args[0].s, &o);
        if (rc == 0)
            xapi_record_out(c->out, o);
        break;
    case M_GET_BY_UUID:
        o = xapi_store_get_by_uuid(st, m->cls, c->args[0].s);
        if (!o)
            rc = xapi_call_fail(c, "UUID_INVALID", m->cls->name, c->args[0].s);
        else
            xapi_out_cstring(c->out, o->ref);
        break;
    case M_GET_BY_NAME_LABEL:
        xapi_out_array_begin(c->out);
        for (o = xapi_store_first(st, m->cls); o; o = xapi_store_next(o))
            if (strcmp(o->fields[m->cls->f_name_label].s, c->args[0].s) == 0)
                xapi_out_cstring(c->out, o->ref);
        xapi_out_array_end(c->out);
        break;
    case M_GET_ALL:
    case M_GET_ALL_WHERE:
        xapi_out_array_begin(c->out);
        for (o = xapi_store_first(st, m->cls); o; o = xapi_store_next(o))
            if (!filter || xapi_filter_match(filter, o))
                xapi_out_cstring(c->out, o->ref);
        xapi_out_array_end(c->out);
        break;
    case M_GET_ALL_RECORDS:
    case M_GET_ALL_RECORDS_WHERE:
        xapi_out_struct_begin(c->out);
        for (o = xapi_store_first(st, m->cls); o; o = xapi_store_next(o))
            if (!filter || xapi_filter_match(filter, o)) {
                xapi_out_member(c->out, o->ref, XAPI_REF_LEN);
                xapi_record_out(c->out, o);
            }
        xapi_out_struct_end(c->out);
        break;
    default:
        rc = -EINVAL;
    }
    xapi_store_rdunlock(st);
    xapi_filter_free(filter);
    return rc;
}

/* Refs set through the generic paths must name live objects of the right class. */
static int check_refs(xapi_call *c, const xapi_type *t, const xapi_value *v) {
    if (t->kind == XAPI_T_REF && t->class_id >= 0 && v->kind == XAPI_V_STRING && strcmp(v->s, XAPI_NULL_REF) != 0 &&
        v->n > 0) {
        if (!xapi_store_get_class(c->srv->store, &xapi_classes[t->class_id], v->s))
            return xapi_call_fail(c, "HANDLE_INVALID", xapi_classes[t->class_id].name, v->s);
    }
    if (t->kind == XAPI_T_SET && v->kind == XAPI_V_ARRAY)
        for (uint32_t i = 0; i < v->n; i++) {
            int rc = check_refs(c, t->elem, &v->items[i]);
            if (rc < 0)
                return rc;
        }
    return 0;
}

static int generic_write(xapi_call *c, const method *m) {
    xapi_store *st = c->srv->store;
    const xapi_class_hooks *const *hooks = D.hooks[m->cls->id];
    xapi_obj *o = NULL;
    xapi_value nv = {0};
    int rc;

    xapi_store_write_begin(st);
    rc = xapi_lookup(c, m->cls, c->args[0].s, &o);
    if (rc < 0)
        goto out;
    if (m->kind == M_DESTROY) {
        for (unsigned i = 0; i < MAX_HOOKS_PER_CLASS && hooks[i]; i++)
            if (hooks[i]->before_destroy && (rc = hooks[i]->before_destroy(c, o)) < 0)
                goto out;
        xapi_obj_destroy(st, o);
        goto out;
    }

    nv = xapi_value_copy(&o->fields[m->field]);
    switch (m->kind) {
    case M_SET_FIELD:
        xapi_value_free(&nv);
        nv = xapi_value_copy(&c->args[1]);
        break;
    case M_MAP_ADD:
        if (xapi_struct_get(&nv, c->args[1].s)) {
            rc = xapi_call_fail(c, "MAP_DUPLICATE_KEY", m->cls->name, m->cls->fields[m->field].name, o->uuid,
                                c->args[1].s);
            goto out;
        }
        xapi_struct_append(&nv, c->args[1].s, xapi_value_copy(&c->args[2]));
        break;
    case M_MAP_REMOVE:
        xapi_struct_remove(&nv, c->args[1].s);
        break;
    case M_SET_ADD: {
        bool present = false;
        for (uint32_t i = 0; i < nv.n && !present; i++)
            present = xapi_value_equal(&nv.items[i], &c->args[1]);
        if (!present)
            xapi_array_append(&nv, xapi_value_copy(&c->args[1]));
        break;
    }
    case M_SET_REMOVE:
        for (uint32_t i = 0; i < nv.n; i++)
            if (xapi_value_equal(&nv.items[i], &c->args[1])) {
                xapi_value_free(&nv.items[i]);
                memmove(&nv.items[i], &nv.items[i + 1], (nv.n - i - 1) * sizeof *nv.items);
                nv.n--;
                break;
            }
        break;
    default:
        rc = -EINVAL;
        goto out;
    }
    rc = check_refs(c, m->cls->fields[m->field].type, &nv);
    if (rc < 0)
        goto out;
    for (unsigned i = 0; i < MAX_HOOKS_PER_CLASS && hooks[i]; i++)
        if (hooks[i]->before_set && (rc = hooks[i]->before_set(c, o, m->field, &nv)) < 0)
            goto out;
    xapi_obj_set(st, o, m->field, nv);
    nv = (xapi_value){0};
    for (unsigned i = 0; i < MAX_HOOKS_PER_CLASS && hooks[i]; i++)
        if (hooks[i]->after_set)
            hooks[i]->after_set(c, o, m->field);
out:
    xapi_value_free(&nv);
    return xapi_finish_void(c, rc);
}

static int generic_create(xapi_call *c, const method *m) {
    xapi_store *st = c->srv->store;
    const xapi_class *cls = m->cls;
    const xapi_class_hooks *const *hooks = D.hooks[cls->id];
    const xapi_value *rec = &c->args[0];
    xapi_obj *o = NULL;
    char ref[XAPI_REF_LEN + 1] = "", uuid[XAPI_UUID_LEN + 1] = "";
    int rc = 0;

    for (unsigned i = 0; i < MAX_HOOKS_PER_CLASS && hooks[i]; i++)
        if (hooks[i]->before_create && (rc = hooks[i]->before_create(c, rec, uuid)) < 0)
            goto undo;
    xapi_store_write_begin(st);
    if (*uuid) {
        xapi_ref_generate(ref);
        o = xapi_obj_create_with(st, cls, ref, uuid);
        *ref = '\0';
    }
    if (!o)
        o = xapi_obj_create(st, cls);
    for (unsigned i = 0; i < cls->nfields; i++) {
        const xapi_field *f = &cls->fields[i];
        const xapi_value *in;
        xapi_value v = {0};

        if (f->qualifier == XAPI_Q_DYNAMIC_RO)
            continue;
        in = xapi_struct_get(rec, f->name);
        if (!in) {
            if (f->create_required) {
                rc = xapi_call_fail(c, "FIELD_TYPE_ERROR", f->name);
                goto out;
            }
            continue;
        }
        /* Java SDK clients send every field, with "UNRECOGNIZED" for enums they do not know. */
        if (f->type->kind == XAPI_T_ENUM && in->kind == XAPI_V_STRING && strcmp(in->s, "UNRECOGNIZED") == 0)
            continue;
        rc = xapi_coerce(f->type, in, f->name, &v, &c->err);
        if (rc < 0)
            goto out;
        rc = check_refs(c, f->type, &v);
        if (rc < 0) {
            xapi_value_free(&v);
            goto out;
        }
        xapi_obj_set(st, o, (int)i, v);
    }
    for (unsigned i = 0; i < MAX_HOOKS_PER_CLASS && hooks[i]; i++)
        if (hooks[i]->after_create && (rc = hooks[i]->after_create(c, o)) < 0)
            goto out;
    memcpy(ref, o->ref, sizeof ref);
out:
    if (rc < 0)
        xapi_obj_destroy(st, o);
    rc = xapi_finish_ref(c, rc, ref);
undo:
    for (unsigned i = 0; rc < 0 && i < MAX_HOOKS_PER_CLASS && hooks[i]; i++)
        if (hooks[i]->create_undo)
            hooks[i]->create_undo(c);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------ */

static method *resolve(const char *name) {
    method *m = lookup(name);
    char *alias = NULL;

    if (m || strchr(name, '.'))
        return m;
    /* "Class_message": try each underscore as the separator (class names contain underscores too). */
    alias = xapi_strdup(name);
    for (char *p = alias; (p = strchr(p, '_')); p++) {
        *p = '.';
        m = lookup(alias);
        *p = '_';
        if (m)
            break;
    }
    free(alias);
    return m;
}

static int run_method(xapi_call *c, const method *m) {
    switch (m->kind) {
    case M_EXPLICIT:
    case M_CUSTOM:
        return m->fn(c);
    case M_GET_FIELD:
    case M_GET_RECORD:
    case M_GET_BY_UUID:
    case M_GET_BY_NAME_LABEL:
    case M_GET_ALL:
    case M_GET_ALL_RECORDS:
    case M_GET_ALL_WHERE:
    case M_GET_ALL_RECORDS_WHERE:
        return generic_read(c, m);
    case M_SET_FIELD:
    case M_MAP_ADD:
    case M_MAP_REMOVE:
    case M_SET_ADD:
    case M_SET_REMOVE:
    case M_DESTROY:
        return generic_write(c, m);
    case M_CREATE:
        return generic_create(c, m);
    }
    return -EINVAL;
}

static int count_mismatch(xapi_value *err, const char *method_name, unsigned expected, unsigned received) {
    char e[16], r[16];

    snprintf(e, sizeof e, "%u", expected);
    snprintf(r, sizeof r, "%u", received);
    return xapi_fail(err, "MESSAGE_PARAMETER_COUNT_MISMATCH", method_name, e, r, NULL);
}

/* Counts and types the arguments; fills defaults. */
static int prepare_args(const method *m, const char *wire_name, const xapi_value *params, unsigned first,
                        xapi_value **ret_args, unsigned *ret_nargs, xapi_value *err) {
    unsigned given = params->n - first;
    xapi_value *args = NULL;
    int rc;

    if (m->kind == M_CUSTOM) {
        args = xapi_calloc(given + 1, sizeof *args);
        for (unsigned i = 0; i < given; i++)
            args[i] = xapi_value_copy(&params->items[first + i]);
        *ret_args = args;
        *ret_nargs = given;
        return 0;
    }
    if (given < m->nrequired || given > m->nparams)
        return count_mismatch(err, wire_name, m->nparams, given);
    args = xapi_calloc(m->nparams + 1, sizeof *args);
    for (unsigned i = 0; i < m->nparams; i++) {
        if (i >= given) {
            args[i] = xapi_value_copy(m->params[i].def);
            continue;
        }
        rc = xapi_coerce(m->params[i].type, &params->items[first + i], m->params[i].name, &args[i], err);
        if (rc < 0) {
            for (unsigned k = 0; k < i; k++)
                xapi_value_free(&args[k]);
            free(args);
            return rc;
        }
    }
    *ret_args = args;
    *ret_nargs = m->nparams;
    return 0;
}

static void free_args(xapi_value *args, unsigned n) {
    if (!args)
        return;
    for (unsigned i = 0; i < n; i++)
        xapi_value_free(&args[i]);
    free(args);
}

/* The call's role check: a protected map key has its own permission, "<message>/key:<key>". */
static int check_role(xapi_server *srv, const xapi_call *c, const method *m, xapi_value *err) {
    const xapi_key_role *k = NULL;
    char *keyed = NULL;
    int rc;

    if (m->keyed && c->nargs >= 2 && c->args[1].kind == XAPI_V_STRING)
        k = xapi_field_key_role(m->keyed, c->args[1].s);
    if (k) {
        if (asprintf(&keyed, "%s/key:%s", m->permission, k->key) < 0)
            xapi_oom();
        for (char *p = keyed; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    rc = xapi_rbac_check(srv, c->session, k ? k->role : m->role, keyed ? keyed : m->permission, err);
    free(keyed);
    return rc;
}

int xapi_invoke(xapi_server *srv, const xapi_peer *peer, const char *method_name, const xapi_value *params,
                xapi_out *out, xapi_value *err, const char *task) {
    xapi_call c = {0};
    xapi_value *args = NULL;
    unsigned nargs = 0, first = 0;
    bool async = false;
    const char *name = method_name;
    const method *m;
    int rc;

    if (strncmp(name, "Async.", 6) == 0) {
        async = true;
        name += 6;
    }
    if (!xapi_utf8_valid(name, strlen(name)))
        return xapi_fail(err, "MESSAGE_METHOD_UNKNOWN", "", NULL);
    m = async ? lookup(name) : resolve(name);
    if (!m)
        return xapi_fail(err, "MESSAGE_METHOD_UNKNOWN", method_name, NULL);
    if (async && !m->async_ok) {
        char *msg = NULL;
        if (asprintf(&msg, "No async mode for this operation (rpc: %s)", method_name) < 0)
            xapi_oom();
        rc = xapi_fail(err, "Fault", msg, NULL);
        free(msg);
        return rc;
    }
    if (params->kind != XAPI_V_ARRAY)
        return xapi_fail(err, "MESSAGE_PARAMETER_COUNT_MISMATCH", m->name, "?", "?", NULL);

    c.srv = srv;
    c.method = m->name;
    c.cls = m->cls;
    c.msg = m->msg;
    c.out = out;
    c.local_root = peer && peer->local_root;
    c.originator = peer ? peer->originator : NULL;
    c.peer_address = peer ? peer->address : NULL;
    c.task = task;

    if (!m->no_session) {
        const xapi_value *s = params->n > 0 ? &params->items[0] : NULL;
        if (!s)
            return count_mismatch(err, m->name, m->nparams, 0);
        /* As xapi's generated dispatcher: the argument count is checked before the session. */
        if (m->kind != M_CUSTOM && (params->n - 1 < m->nrequired || params->n - 1 > m->nparams))
            return count_mismatch(err, m->name, m->nparams, params->n - 1);
        if (s->kind != XAPI_V_STRING || xapi_session_check(srv, s->s) < 0)
            return xapi_fail(err, "SESSION_INVALID", s->kind == XAPI_V_STRING ? s->s : "", NULL);
        snprintf(c.session, sizeof c.session, "%s", s->s);
        first = 1;
    }
    if (m->removed)
        return xapi_fail(err, "MESSAGE_REMOVED", NULL);
    rc = prepare_args(m, m->name, params, first, &args, &nargs, err);
    if (rc < 0)
        return rc;
    c.args = args;
    c.nargs = nargs;

    /* Before anything runs, Async or not (a task is checked when it is submitted). */
    if (!m->no_session && (rc = check_role(srv, &c, m, err)) < 0) {
        free_args(args, nargs);
        return rc;
    }
    if (async) {
        char task_ref[XAPI_REF_LEN + 1];
        rc = xapi_task_spawn(srv, peer, method_name, c.session, params, task_ref, err);
        if (rc == 0)
            xapi_out_cstring(out, task_ref);
        free_args(args, nargs);
        return rc;
    }

    rc = run_method(&c, m);
    if (rc < 0) {
        if (c.err.kind != XAPI_V_ARRAY || c.err.n == 0) {
            char *msg = NULL;
            if (asprintf(&msg, "%s: %s", m->name, strerror(rc == -XAPI_EFAIL ? EIO : -rc)) < 0)
                xapi_oom();
            xapi_fail(&c.err, "INTERNAL_ERROR", msg, NULL);
            free(msg);
        }
        xapi_value_free(err);
        *err = c.err;
        c.err = (xapi_value){0};
        rc = -XAPI_EFAIL;
    }
    xapi_value_free(&c.err);
    free_args(args, nargs);
    return rc;
}

static void list_methods(xapi_out *o) {
    xapi_out_array_begin(o);
    for (size_t i = 0; i < D.n; i++)
        xapi_out_cstring(o, D.methods[i].name);
    xapi_out_array_end(o);
}

/* One call of a multicall: {Status, Value} or {Status, ErrorDescription}, inside a one-element array. */
static void multicall_one(xapi_server *srv, const xapi_peer *peer, const xapi_value *call, xapi_out *o) {
    const xapi_value *name = call->kind == XAPI_V_STRUCT ? xapi_struct_get(call, "methodName") : NULL;
    const xapi_value *params = call->kind == XAPI_V_STRUCT ? xapi_struct_get(call, "params") : NULL;
    xapi_value err = {0}, empty = xapi_value_array();
    xapi_out saved;
    size_t mark;
    int rc;

    xapi_out_array_begin(o);
    saved = *o;
    mark = o->buf->len;
    xapi_out_struct_begin(o);
    xapi_out_cmember(o, "Status");
    xapi_out_cstring(o, "Success");
    xapi_out_cmember(o, "Value");
    if (!name || name->kind != XAPI_V_STRING || strcmp(name->s, "system.multicall") == 0)
        rc = xapi_fail(&err, "MESSAGE_METHOD_UNKNOWN", name && name->kind == XAPI_V_STRING ? name->s : "", NULL);
    else
        rc = xapi_invoke(srv, peer, name->s, params ? params : &empty, o, &err, NULL);
    if (rc < 0) {
        xapi_buf_truncate(o->buf, mark);
        *o = saved;
        xapi_out_struct_begin(o);
        xapi_out_cmember(o, "Status");
        xapi_out_cstring(o, "Failure");
        xapi_out_cmember(o, "ErrorDescription");
        xapi_out_value(o, &err);
    }
    xapi_out_struct_end(o);
    xapi_out_array_end(o);
    xapi_value_free(&err);
    xapi_value_free(&empty);
}

void xapi_dispatch(xapi_server *srv, const xapi_peer *peer, const xapi_request *req, xapi_buf *reply) {
    xapi_rpc_reply r = {req->json_version ? XAPI_FMT_JSON : XAPI_FMT_XML, req->json_version, req->json_id};
    xapi_value err = {0};
    xapi_out o;
    size_t mark;
    int rc;

    xapi_out_init(&o, r.fmt, reply);
    if (r.fmt == XAPI_FMT_XML && (strcmp(req->method, "system.listMethods") == 0 ||
                                  strcmp(req->method, "system.multicall") == 0)) {
        /* These answer with a bare value, not xapi's Status/Value struct. */
        XAPI_BUF_LIT(reply, "<?xml version=\"1.0\"?><methodResponse><params><param>");
        if (strcmp(req->method, "system.listMethods") == 0)
            list_methods(&o);
        else {
            const xapi_value *calls = req->params.n > 0 ? &req->params.items[0] : NULL;
            xapi_out_array_begin(&o);
            for (uint32_t i = 0; calls && calls->kind == XAPI_V_ARRAY && i < calls->n; i++)
                multicall_one(srv, peer, &calls->items[i], &o);
            xapi_out_array_end(&o);
        }
        XAPI_BUF_LIT(reply, "</param></params></methodResponse>");
        return;
    }
    mark = xapi_reply_begin(&r, &o);
    if (strcmp(req->method, "system.listMethods") == 0) {
        list_methods(&o);
        rc = 0;
    } else
        rc = xapi_invoke(srv, peer, req->method, &req->params, &o, &err, NULL);
    if (rc == 0)
        xapi_reply_end_success(&r, &o);
    else
        xapi_reply_failure(&r, &o, mark, &err);
    xapi_value_free(&err);
}
