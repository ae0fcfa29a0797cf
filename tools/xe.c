/* xe: xapi's command-line client for xenapid. The commands run here, over XML-RPC (xapi's own
 * xe forwards the words to the server's /cli instead); the output, markers, --minimal,
 * filters, error text and exit codes are xe's (see README "xe"). */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/xe_fields.h"
#include "tools/xe_rpc.h"

#define XE_DEFAULT_SOCKET "/var/lib/xcp/xapi"
#define MAX_ARGS 256

/* ---- output buffer ------------------------------------------------------------------- */

typedef struct sb {
    char *p;
    size_t len, cap;
} sb;

static void sb_grow(sb *b, size_t n) {
    if (b->len + n + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
        cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p)
        abort();
    b->cap = cap;
}

static void sb_addn(sb *b, const char *s, size_t n) {
    sb_grow(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_add(sb *b, const char *s) {
    sb_addn(b, s, strlen(s));
}

static void sb_printf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb *b, const char *fmt, ...) {
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    sb_grow(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void sb_reset(sb *b) {
    b->len = 0;
    if (b->p)
        b->p[0] = 0;
}

/* ---- arguments ----------------------------------------------------------------------- */

typedef struct arg {
    char *key, *value;
    bool used;
} arg;

typedef struct xe_cmd_ctx {
    const char *command;
    arg args[MAX_ARGS];
    unsigned nargs;
    xe_conn *conn;
    sb out;
} xe_ctx;

static const char *const std_params[] = {"server", "port", "username", "password", "minimal", "force",
                                         "multiple", "all", "nossl", "debug", "passwordfile", "params",
                                         "message-priority", "trace", "cafile", NULL};

static bool is_std(const char *k) {
    for (unsigned i = 0; std_params[i]; i++)
        if (strcmp(std_params[i], k) == 0)
            return true;
    return strncmp(k, "database:", 9) == 0;
}

static arg *find_arg(xe_ctx *x, const char *key) {
    for (unsigned i = 0; i < x->nargs; i++)
        if (strcmp(x->args[i].key, key) == 0)
            return &x->args[i];
    return NULL;
}

static const char *get(xe_ctx *x, const char *key) {
    arg *a = find_arg(x, key);

    if (!a)
        return NULL;
    a->used = true;
    return a->value;
}

static bool flag(xe_ctx *x, const char *key) {
    const char *v = get(x, key);

    return v && strcmp(v, "false") != 0;
}

static int add_arg(xe_ctx *x, const char *key, size_t klen, const char *value) {
    if (x->nargs == MAX_ARGS)
        return -E2BIG;
    x->args[x->nargs].key = strndup(key, klen);
    x->args[x->nargs].value = strdup(value);
    x->nargs++;
    return 0;
}

/* ---- errors -------------------------------------------------------------------------- */

enum { EXIT_OK = 0, EXIT_ERR = 1 };

static int usage_error(const char *what, const char *detail) {
    fprintf(stderr, "%s%s\nFor usage run: 'xe help'\n", what, detail);
    return EXIT_ERR;
}

/* The datamodel's sentence and parameter names for the errors xe users meet most; others are
 * printed as xe prints codes it does not know. */
static const struct {
    const char *code, *doc, *params[4];
} error_docs[] = {
    {"UUID_INVALID", "The uuid you supplied was invalid.", {"type", "uuid"}},
    {"HANDLE_INVALID",
     "You gave an invalid object reference.  The object may have recently been deleted.  The class parameter "
     "gives the type of reference given, and the handle parameter echoes the bad value given.",
     {"class", "handle"}},
    {"VM_BAD_POWER_STATE",
     "You attempted an operation on a VM that was not in an appropriate power state at the time; for example, "
     "you attempted to start a VM that was already running.  The parameters returned are the VM's handle, and "
     "the expected and actual VM state at the time of the call.",
     {"vm:VM", "expected", "actual"}},
    {"VM_IS_TEMPLATE", "The operation attempted is not valid for a template VM", {"vm:VM"}},
    {"OPERATION_NOT_ALLOWED", "You attempted an operation that was not allowed.", {"reason"}},
    {"FIELD_TYPE_ERROR", "The value specified is of the wrong type", {"field"}},
    {"INVALID_VALUE", "The value given is invalid", {"field", "value"}},
    {"MAP_DUPLICATE_KEY",
     "You tried to add a key-value pair to a map, but that key is already there.", {"type", "param_name", "uuid", "key"}},
    {"VDI_IN_USE", "This operation cannot be performed because this VDI is in use by some other operation", {"vdi:VDI", "operation"}},
    {"SR_FULL", "The SR is full. Requested new size exceeds the maximum size", {"requested", "maximum"}},
    {"INTERNAL_ERROR", "The server failed to handle your request, due to an internal error. The given message may give details useful for debugging the problem.", {"message"}},
};

typedef struct ref_entry ref_entry;
static const ref_entry *lookup_ref(xe_ctx *x, const xapi_class *cls, const char *ref);
static void print_error_param(xe_ctx *x, const char *spec, const char *value);

static int api_error(xe_ctx *x) {
    const xv *err = xe_conn_error(x->conn), *p;
    const char *code = xv_str(err->first);

    if (strcmp(code, "SESSION_AUTHENTICATION_FAILED") == 0)
        return usage_error("Authentication failed", "");
    for (unsigned i = 0; i < sizeof error_docs / sizeof error_docs[0]; i++) {
        unsigned k = 0;

        if (strcmp(error_docs[i].code, code) != 0)
            continue;
        fprintf(stderr, "%s\n", error_docs[i].doc);
        for (p = err->first->next; p; p = p->next, k++)
            print_error_param(x, k < 4 && error_docs[i].params[k] ? error_docs[i].params[k] : "<extra>", xv_str(p));
        for (; k < 4 && error_docs[i].params[k]; k++)
            fprintf(stderr, "%.*s: <unknown>\n", (int)strcspn(error_docs[i].params[k], ":"), error_docs[i].params[k]);
        return EXIT_ERR;
    }
    fprintf(stderr, "Error code: %s\nError parameters: ", code);
    for (p = err->first->next; p; p = p->next)
        fprintf(stderr, "%s%s", p == err->first->next ? "" : ", ", xv_str(p));
    fputc('\n', stderr);
    return EXIT_ERR;
}

static int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int cli_error(const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_ERR;
}

static int rpc_error(xe_ctx *x, int rc) {
    if (rc == XE_RPC_FAILURE)
        return api_error(x);
    return cli_error("Lost connection to the server.");
}

/* ---- values -------------------------------------------------------------------------- */

static xmlrpc_env *E(xe_ctx *x) {
    return xe_env(x->conn);
}

static const xv *member(xe_ctx *x, const xv *rec, const char *name) {
    return xv_member(rec, name);
}

static char *string_of(xe_ctx *x, const xv *v) {
    char *s = strdup(xv_str(v));

    if (!s)
        abort();
    return s;
}

/* Objects named by reference: uuid and name_label, fetched a class at a time. */
struct ref_entry {
    char *ref, *uuid, *name;
};

/* A hash of ref -> entry: a params=all list of hundreds of VMs looks up thousands of refs. */
static struct {
    ref_entry *v;
    size_t n, cap;
    size_t *slots; /* index + 1 into v, 0 = free; nslots a power of two */
    size_t nslots;
    bool fetched[64];
} refs;

static size_t ref_hash(const char *s) {
    size_t h = 1469598103934665603ull;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void slot_insert(size_t index) {
    size_t i = ref_hash(refs.v[index].ref) & (refs.nslots - 1);

    while (refs.slots[i])
        i = (i + 1) & (refs.nslots - 1);
    refs.slots[i] = index + 1;
}

static const ref_entry *find_ref(const char *ref) {
    if (!refs.nslots)
        return NULL;
    for (size_t i = ref_hash(ref) & (refs.nslots - 1); refs.slots[i]; i = (i + 1) & (refs.nslots - 1))
        if (strcmp(refs.v[refs.slots[i] - 1].ref, ref) == 0)
            return &refs.v[refs.slots[i] - 1];
    return NULL;
}

static void remember(const char *ref, const char *uuid, const char *name) {
    if (find_ref(ref))
        return;
    if (refs.n == refs.cap) {
        refs.cap = refs.cap ? refs.cap * 2 : 256;
        refs.v = realloc(refs.v, refs.cap * sizeof *refs.v);
        if (!refs.v)
            abort();
    }
    refs.v[refs.n++] = (ref_entry){strdup(ref), strdup(uuid), strdup(name)};
    if (refs.n * 2 > refs.nslots) {
        free(refs.slots);
        refs.nslots = refs.nslots ? refs.nslots * 2 : 512;
        refs.slots = calloc(refs.nslots, sizeof *refs.slots);
        if (!refs.slots)
            abort();
        for (size_t i = 0; i < refs.n; i++)
            slot_insert(i);
    } else {
        slot_insert(refs.n - 1);
    }
}

static void remember_records(xe_ctx *x, const xv *all) {
    for (const xv *rec = all->kind == XV_STRUCT ? all->first : NULL; rec; rec = rec->next)
        remember(rec->key, xv_str(xv_member(rec, "uuid")), xv_str(xv_member(rec, "name_label")));
}

static const ref_entry *lookup_ref(xe_ctx *x, const xapi_class *cls, const char *ref) {
    char method[96];
    const xv *v = NULL;

    for (int pass = 0; pass < 2; pass++) {
        const ref_entry *e = find_ref(ref);

        if (e)
            return e;
        if (pass || !cls || cls->id < 0 || cls->id >= 64 || refs.fetched[cls->id])
            return NULL;
        refs.fetched[cls->id] = true;
        snprintf(method, sizeof method, "%s.get_all_records", cls->name);
        if (xe_callf(x->conn, &v, method, "()") != XE_RPC_OK)
            return NULL;
        remember_records(x, v);
    }
    return NULL;
}

/* An error parameter "name[:Class]": a ref of Class is shown as xe shows it, "uuid (name)". */
static void print_error_param(xe_ctx *x, const char *spec, const char *value) {
    const char *colon = strchr(spec, ':');
    const ref_entry *e = NULL;

    if (colon && strncmp(value, "OpaqueRef:", 10) == 0)
        e = lookup_ref(x, xapi_class_by_name(colon + 1), value);
    if (e)
        fprintf(stderr, "%.*s: %s (%s)\n", (int)(colon - spec), spec, e->uuid, e->name);
    else
        fprintf(stderr, "%.*s: %s\n", colon ? (int)(colon - spec) : (int)strlen(spec), spec, value);
}

static void render(xe_ctx *x, const xapi_type *t, const xv *v, sb *out, const char *sep);

static void render_ref(xe_ctx *x, const xapi_type *t, const char *ref, sb *out) {
    const ref_entry *e;

    if (strcmp(ref, "OpaqueRef:NULL") == 0 || !*ref)
        sb_add(out, "OpaqueRef:NULL");
    else if ((e = lookup_ref(x, t->class_id >= 0 ? &xapi_classes[t->class_id] : NULL, ref)))
        sb_add(out, e->uuid);
    else
        sb_add(out, "<not in database>");
}

static void render(xe_ctx *x, const xapi_type *t, const xv *v, sb *out, const char *sep) {
    switch (v->kind) {
    case XV_BOOL:
        sb_add(out, strcmp(v->s, "1") == 0 || strcasecmp(v->s, "true") == 0 ? "true" : "false");
        return;
    case XV_DOUBLE:
        sb_printf(out, "%.3f", strtod(v->s, NULL));
        return;
    case XV_DATETIME:
        sb_add(out, v->s);
        if (*v->s && !strchr(v->s, 'Z'))
            sb_add(out, "Z");
        return;
    case XV_ARRAY:
        for (const xv *e = v->first; e; e = e->next) {
            if (e != v->first)
                sb_add(out, sep);
            render(x, t && t->kind == XAPI_T_SET ? t->elem : NULL, e, out, sep);
        }
        return;
    case XV_STRUCT:
        for (const xv *e = v->first; e; e = e->next) {
            if (e != v->first)
                sb_add(out, "; ");
            sb_add(out, e->key);
            sb_add(out, ": ");
            render(x, t && t->kind == XAPI_T_MAP ? t->elem : NULL, e, out, sep);
        }
        return;
    case XV_NIL:
        return;
    default:
        if (t && t->kind == XAPI_T_OPTION)
            t = t->elem;
        if (t && t->kind == XAPI_T_REF) {
            render_ref(x, t, v->s, out);
        } else if (t && t->kind == XAPI_T_ENUM && t->enumv && strcmp(t->enumv->name, "vm_power_state") == 0) {
            /* records.ml prints power states in lower case; other enums as on the wire. */
            for (const char *p = v->s; *p; p++) {
                char c = (char)tolower((unsigned char)*p);
                sb_addn(out, &c, 1);
            }
        } else {
            sb_add(out, v->s);
        }
        return;
    }
}

/* One column of a record, rendered. */
static void render_field(xe_ctx *x, const xe_class *c, const xe_field *f, const xv *rec, sb *out) {
    const xv *v = NULL;

    switch (f->synth) {
    case XE_REAL:
        v = member(x, rec, f->f->name);
        if (v)
            render(x, f->f->type, v, out, "; ");
        break;
    case XE_NAME_OF_REF: {
        const xe_field *rf = &c->fields[f->ref_field];
        const xapi_type *t = rf->f->type;
        const ref_entry *e;

        v = member(x, rec, rf->f->name);
        if ((e = lookup_ref(x, t->class_id >= 0 ? &xapi_classes[t->class_id] : NULL, xv_str(v))))
            sb_add(out, e->name);
        else
            sb_add(out, "<not in database>");
        break;
    }
    case XE_HOST_MEMORY: {
        const xv *host = NULL, *n = NULL;

        if (strcmp(f->name, "memory-free-computed") == 0) {
            if (xe_callf(x->conn, &host, "host.get_by_uuid", "(s)", xv_str(member(x, rec, "uuid"))) == XE_RPC_OK &&
                xe_callf(x->conn, &n, "host.compute_free_memory", "(s)", xv_str(host)) == XE_RPC_OK)
                sb_add(out, xv_str(n));
        } else if (xe_callf(x->conn, &n, strcmp(f->name, "memory-total") == 0 ? "host_metrics.get_memory_total"
                                                                                : "host_metrics.get_memory_free",
                            "(s)", xv_str(member(x, rec, "metrics"))) == XE_RPC_OK) {
            sb_add(out, xv_str(n));
        }
        break;
    }
    case XE_SR_HOST: {
        const xv *host = NULL;

        v = member(x, rec, "PBDs");
        if (v && v->n > 1) {
            sb_add(out, "<shared>");
        } else if (v && v->n == 1 && xe_callf(x->conn, &host, "PBD.get_host", "(s)", xv_str(v->first)) == XE_RPC_OK) {
            const ref_entry *e = lookup_ref(x, xapi_class_by_name("host"), xv_str(host));

            sb_add(out, e ? e->name : "<not in database>");
        }
        break;
    }
    }
}

/* ---- selection and printing ---------------------------------------------------------- */

typedef struct columns {
    const xe_field *f[512];
    unsigned n;
} columns;

static int choose_columns(xe_ctx *x, const xe_class *c, const char *params, columns *cols) {
    cols->n = 0;
    for (unsigned i = 0; i < c->nfields && cols->n < 512; i++) {
        const xe_field *f = &c->fields[i];
        bool want = strcmp(params, "all") == 0;

        for (const char *p = params; !want && *p;) {
            size_t n = strcspn(p, ",");

            want = strlen(f->name) == n && strncmp(p, f->name, n) == 0;
            p += n + (p[n] == ',');
        }
        if (want)
            cols->f[cols->n++] = f;
    }
    return 0;
}

static void print_record(xe_ctx *x, const xe_class *c, const columns *cols, const xv *rec) {
    sb v = {0};
    unsigned width = 0;

    for (unsigned i = 0; i < cols->n; i++) {
        unsigned w = strlen(cols->f[i]->name) + 3 + strlen(cols->f[i]->marker); /* "name (RO)" */
        if (w > width)
            width = w;
    }
    width += 4;
    for (unsigned i = 0; i < cols->n; i++) {
        char label[128];

        snprintf(label, sizeof label, "%s (%s)", cols->f[i]->name, cols->f[i]->marker);
        sb_reset(&v);
        render_field(x, c, cols->f[i], rec, &v);
        sb_printf(&x->out, i == 0 ? "%-*s: %s\n" : "%*s: %s\n", (int)width, label, v.p ? v.p : "");
    }
    sb_add(&x->out, "\n\n");
    free(v.p);
}

static void minimal_item(sb *out, const char *s, bool first) {
    if (!first)
        sb_add(out, ",");
    for (; *s; s++) {
        if (*s == ',' || *s == '\\')
            sb_add(out, "\\");
        sb_addn(out, s, 1);
    }
}

/* A filter key=value: a column, `map:key`, or legacy `map-key`. */
static bool matches(xe_ctx *x, const xe_class *c, const xv *rec, const char *key, const char *want) {
    const xe_field *f = xe_field_by_name(c, key);
    sb v = {0};
    bool ok = false;

    if (f) {
        render_field(x, c, f, rec, &v);
        ok = strcmp(v.p ? v.p : "", want) == 0;
    } else {
        const char *colon = strchr(key, ':');
        const xe_field *best = NULL;
        size_t blen = 0;
        const char *mkey = NULL;

        if (colon) {
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(colon - key), key);
            best = xe_field_by_name(c, name);
            mkey = colon + 1;
        } else {
            for (unsigned i = 0; i < c->nfields; i++) {
                size_t n = strlen(c->fields[i].name);
                if (c->fields[i].f && c->fields[i].f->type->kind == XAPI_T_MAP && n > blen &&
                    strncmp(key, c->fields[i].name, n) == 0 && key[n] == '-') {
                    best = &c->fields[i];
                    blen = n;
                    mkey = key + n + 1;
                }
            }
        }
        if (best && best->f && best->f->type->kind == XAPI_T_MAP) {
            const xv *e = xv_member(member(x, rec, best->f->name), mkey);

            if (e) {
                render(x, best->f->type->elem, e, &v, "; ");
                ok = strcmp(v.p ? v.p : "", want) == 0;
            }
        } else if (best && best->f && best->f->type->kind == XAPI_T_SET && strcmp(mkey, "contains") == 0) {
            sb_reset(&v);
            render_field(x, c, best, rec, &v);
            for (char *tok = strtok(v.p ? v.p : (char *)"", ";"); tok && !ok; tok = strtok(NULL, ";")) {
                while (*tok == ' ')
                    tok++;
                ok = strcmp(tok, want) == 0;
            }
        }
    }
    free(v.p);
    return ok;
}

static bool record_selected(xe_ctx *x, const xe_class *c, const xv *rec, bool all) {
    bool user_overrides_default = false;

    if (all)
        return true;
    for (unsigned i = 0; i < x->nargs; i++) {
        if (is_std(x->args[i].key))
            continue;
        x->args[i].used = true;
        if (c->default_filter && strncmp(c->default_filter, x->args[i].key, strlen(x->args[i].key)) == 0 &&
            c->default_filter[strlen(x->args[i].key)] == '=')
            user_overrides_default = true;
        if (!matches(x, c, rec, x->args[i].key, x->args[i].value))
            return false;
    }
    if (c->default_filter && !user_overrides_default) {
        const char *eq = strchr(c->default_filter, '=');
        char key[64];

        snprintf(key, sizeof key, "%.*s", (int)(eq - c->default_filter), c->default_filter);
        return matches(x, c, rec, key, eq + 1);
    }
    return true;
}

static int fetch_all(xe_ctx *x, const xe_class *c, const xv **ret) {
    char method[96];
    int rc;

    snprintf(method, sizeof method, "%s.get_all_records", c->cls->name);
    rc = xe_callf(x->conn, ret, method, "()");
    return rc == XE_RPC_OK ? 0 : rpc_error(x, rc);
}

static int cmd_list(xe_ctx *x, xe_class *c) {
    const xv *all = NULL;
    const char *params = get(x, "params");
    bool minimal = flag(x, "minimal"), every = flag(x, "all");
    columns cols;
    int rc, printed = 0;

    choose_columns(x, c, params ? params : c->defaults, &cols);
    if ((rc = fetch_all(x, c, &all)))
        return rc;
    remember_records(x, all);
    for (const xv *rec = all->kind == XV_STRUCT ? all->first : NULL; rec; rec = rec->next) {
        if (record_selected(x, c, rec, every)) {
            if (minimal) {
                sb v = {0};
                if (cols.n)
                    render_field(x, c, cols.f[0], rec, &v);
                minimal_item(&x->out, v.p ? v.p : "", printed == 0);
                free(v.p);
            } else {
                print_record(x, c, &cols, rec);
            }
            printed++;
        }
    }
    if (minimal)
        sb_add(&x->out, "\n");
    return EXIT_OK;
}

/* The record named by uuid=, or (for VM commands) vm= name or uuid. */
static int find_one(xe_ctx *x, const xe_class *c, const char *uuid_key, char **ret_ref, const xv **ret_rec) {
    const char *uuid = get(x, uuid_key);
    char method[96];
    const xv *ref = NULL, *rec = NULL;
    int rc;

    if (!uuid)
        return usage_error("Required parameter not found: ", uuid_key);
    snprintf(method, sizeof method, "%s.get_by_uuid", c->cls->name);
    if ((rc = xe_callf(x->conn, &ref, method, "(s)", uuid)) != XE_RPC_OK)
        return rpc_error(x, rc);
    if (ret_rec) {
        snprintf(method, sizeof method, "%s.get_record", c->cls->name);
        if ((rc = xe_callf(x->conn, &rec, method, "(s)", xv_str(ref))) != XE_RPC_OK)
            return rpc_error(x, rc);
        *ret_rec = rec;
    }
    *ret_ref = string_of(x, ref);
    return 0;
}

static int cmd_param_list(xe_ctx *x, xe_class *c) {
    const xv *rec = NULL;
    char *ref = NULL;
    columns cols;
    int rc;

    if ((rc = find_one(x, c, "uuid", &ref, &rec)))
        return rc;
    choose_columns(x, c, "all", &cols);
    print_record(x, c, &cols, rec);
    free(ref);
    return EXIT_OK;
}

static int cmd_param_get(xe_ctx *x, xe_class *c) {
    const char *name = get(x, "param-name"), *key = get(x, "param-key");
    const xe_field *f;
    const xv *rec = NULL;
    char *ref = NULL;
    sb v = {0};
    int rc;

    if (!name)
        return usage_error("Required parameter not found: ", "param-name");
    if ((rc = find_one(x, c, "uuid", &ref, &rec)))
        return rc;
    f = xe_field_by_name(c, name);
    if (!f) {
        rc = cli_error("Error: Unknown field '%s'", name);
    } else if (key) {
        const xv *e = f->f ? xv_member(member(x, rec, f->f->name), key) : NULL;

        if (e) {
            render(x, f->f->type->elem, e, &v, "; ");
            sb_printf(&x->out, "%s\n", v.p ? v.p : "");
        } else {
            rc = cli_error("Error: Key %s not found in map", key);
        }
    } else {
        render_field(x, c, f, rec, &v);
        sb_printf(&x->out, "%s\n", v.p ? v.p : "");
    }
    free(v.p);
    free(ref);
    return rc;
}

/* A command-line string as the wire value of type t (refs given as uuids). */
static int wire_value(xe_ctx *x, const xapi_type *t, const char *s, xmlrpc_value **ret) {
    xmlrpc_env *env = E(x);

    switch (t->kind) {
    case XAPI_T_BOOL:
        if (strcasecmp(s, "true") && strcasecmp(s, "false") && strcmp(s, "1") && strcmp(s, "0"))
            return -EINVAL;
        *ret = xmlrpc_bool_new(env, strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0);
        return 0;
    case XAPI_T_FLOAT: {
        char *end;
        double d = strtod(s, &end);
        if (!*s || *end)
            return -EINVAL;
        *ret = xmlrpc_double_new(env, d);
        return 0;
    }
    case XAPI_T_REF: {
        char method[96];
        const xv *r = NULL;

        if (strcmp(s, "OpaqueRef:NULL") == 0 || !*s || t->class_id < 0) {
            *ret = xmlrpc_string_new(env, "OpaqueRef:NULL");
            return 0;
        }
        snprintf(method, sizeof method, "%s.get_by_uuid", xapi_classes[t->class_id].name);
        if (xe_callf(x->conn, &r, method, "(s)", s) != XE_RPC_OK)
            return -ENOENT;
        *ret = xmlrpc_string_new(env, xv_str(r));
        return 0;
    }
    default:
        *ret = xmlrpc_string_new(env, s);
        return 0;
    }
}

static int call_on(xe_ctx *x, const xapi_class *cls, const char *msg, const char *ref, xmlrpc_value *extra1,
                   xmlrpc_value *extra2) {
    char method[128];
    xmlrpc_value *params = xmlrpc_array_new(E(x)), *s = xmlrpc_string_new(E(x), ref);
    const xv *ignored = NULL;
    int rc;

    xmlrpc_array_append_item(E(x), params, s);
    xmlrpc_DECREF(s);
    if (extra1) {
        xmlrpc_array_append_item(E(x), params, extra1);
        xmlrpc_DECREF(extra1);
    }
    if (extra2) {
        xmlrpc_array_append_item(E(x), params, extra2);
        xmlrpc_DECREF(extra2);
    }
    snprintf(method, sizeof method, "%s.%s", cls->name, msg);
    rc = xe_call(x->conn, method, params, &ignored);
    return rc == XE_RPC_OK ? 0 : rpc_error(x, rc);
}

static int cmd_param_set(xe_ctx *x, xe_class *c) {
    char *ref = NULL, msg[128];
    int rc;

    if ((rc = find_one(x, c, "uuid", &ref, NULL)))
        return rc;
    for (unsigned i = 0; i < x->nargs && !rc; i++) {
        arg *a = &x->args[i];
        const char *colon = strchr(a->key, ':');
        char name[64];
        const xe_field *f;
        xmlrpc_value *v = NULL;

        if (a->used || is_std(a->key))
            continue;
        a->used = true;
        snprintf(name, sizeof name, "%.*s", colon ? (int)(colon - a->key) : (int)strlen(a->key), a->key);
        f = xe_field_by_name(c, name);
        if (!f || !f->f) {
            rc = cli_error("Error: Unknown field '%s'", name);
        } else if (colon) {
            if (f->f->type->kind != XAPI_T_MAP || !f->settable) {
                rc = cli_error("Error: Field '%s' is read-only.", name);
                continue;
            }
            snprintf(msg, sizeof msg, "remove_from_%s", f->f->name);
            if (f->map_addable) {
                char method[160];

                snprintf(method, sizeof method, "%s.%s", c->cls->name, msg);
                (void)xe_callf(x->conn, NULL, method, "(ss)", ref, colon + 1); /* absent is fine */
                snprintf(msg, sizeof msg, "add_to_%s", f->f->name);
                rc = call_on(x, c->cls, msg, ref, xmlrpc_string_new(E(x), colon + 1), xmlrpc_string_new(E(x), a->value));
            } else {
                rc = cli_error("Error: Field '%s' is read-only.", name);
            }
        } else if (f->f->type->kind == XAPI_T_MAP || f->f->type->kind == XAPI_T_SET) {
            rc = cli_error("Error: Field '%s' is a map or set. use the 'name:key=value' syntax.", name);
        } else if (!f->settable) {
            rc = cli_error("Error: Field '%s' is read-only.", name);
        } else if (wire_value(x, f->f->type, a->value, &v) < 0) {
            rc = cli_error("Error: Invalid value '%s' for field '%s'", a->value, name);
        } else {
            snprintf(msg, sizeof msg, "set_%s", f->f->name);
            rc = call_on(x, c->cls, msg, ref, v, NULL);
        }
    }
    free(ref);
    return rc;
}

/* ---- VM commands --------------------------------------------------------------------- */

static bool looks_like_uuid(const char *s) {
    return strlen(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-';
}

/* The VM of a lifecycle command: uuid=, vm= (name or uuid) or name-label=; exactly one. */
static int select_vm(xe_ctx *x, bool templates, char **ret_ref) {
    const char *uuid = get(x, "uuid"), *vm = get(x, templates ? "template" : "vm");
    const char *name = get(x, templates ? "template-name-label" : "name-label");
    const xv *v = NULL;
    int rc;

    if (!uuid && vm && looks_like_uuid(vm))
        uuid = vm, vm = NULL;
    if (uuid) {
        if ((rc = xe_callf(x->conn, &v, "VM.get_by_uuid", "(s)", uuid)) != XE_RPC_OK)
            return rpc_error(x, rc);
        *ret_ref = string_of(x, v);
        return 0;
    }
    if (!vm)
        vm = name;
    if (!vm)
        return usage_error("Required parameter not found: ", templates ? "template" : "vm");
    if ((rc = xe_callf(x->conn, &v, "VM.get_by_name_label", "(s)", vm)) != XE_RPC_OK)
        return rpc_error(x, rc);
    if (v->kind != XV_ARRAY || v->n == 0)
        return cli_error(templates ? "Error: Template '%s' not found." : "Error: No matching VMs found", vm);
    if (v->n > 1)
        return cli_error("Error: Multiple matches VMs found. --multiple required to complete the operation");
    *ret_ref = string_of(x, v->first);
    return 0;
}

static int vm_op(xe_ctx *x, const char *clean, const char *hard) {
    char *ref = NULL;
    bool force = flag(x, "force");
    int rc;

    if ((rc = select_vm(x, false, &ref)))
        return rc;
    if (strcmp(clean, "start") == 0) {
        if ((rc = xe_callf(x->conn, NULL, "VM.start", "(sbb)", ref, (xmlrpc_bool)flag(x, "paused"),
                           (xmlrpc_bool)force)) != XE_RPC_OK)
            rc = rpc_error(x, rc);
    } else {
        rc = call_on(x, xapi_class_by_name("VM"), force ? hard : clean, ref, NULL, NULL);
    }
    free(ref);
    return rc;
}

static int cmd_vm_start(xe_ctx *x) {
    return vm_op(x, "start", "start");
}

static int cmd_vm_shutdown(xe_ctx *x) {
    return vm_op(x, "clean_shutdown", "hard_shutdown");
}

static int cmd_vm_reboot(xe_ctx *x) {
    return vm_op(x, "clean_reboot", "hard_reboot");
}

static int print_uuid_of(xe_ctx *x, const char *cls, const char *ref) {
    char method[96];
    const xv *v = NULL;
    int rc;

    snprintf(method, sizeof method, "%s.get_uuid", cls);
    if ((rc = xe_callf(x->conn, &v, method, "(s)", ref)) != XE_RPC_OK)
        return rpc_error(x, rc);
    sb_printf(&x->out, "%s\n", xv_str(v));
    return EXIT_OK;
}

/* other-config:disks with every <disk> on SR sr_uuid, as xe's vm-install sr-uuid= does; NULL if
 * there is nothing to rewrite. */
static char *disks_on_sr(const char *disks, const char *sr_uuid) {
    sb out = {0};
    const char *p = disks;

    for (const char *d; (d = strstr(p, "<disk")); ) {
        const char *end = strchr(d, '>'), *sr;

        if (!end)
            break;
        sb_addn(&out, p, (size_t)(d - p));
        sb_printf(&out, "<disk sr=\"%s\"", sr_uuid);
        p = d + 5;
        while ((sr = strstr(p, " sr=\"")) && sr < end) { /* drop the old attribute */
            const char *q = strchr(sr + 5, '"');

            if (!q || q > end)
                break;
            sb_addn(&out, p, (size_t)(sr - p));
            p = q + 1;
        }
        sb_addn(&out, p, (size_t)(end + 1 - p));
        p = end + 1;
    }
    if (!out.p)
        return NULL;
    sb_add(&out, p);
    return out.p;
}

static int cmd_vm_install(xe_ctx *x) {
    const char *name = get(x, "new-name-label"), *sr = get(x, "sr-uuid");
    char *tref = NULL, *vm = NULL;
    const xv *v = NULL, *srref = NULL;
    int rc;

    if (!name)
        return usage_error("Required parameter not found: ", "new-name-label");
    if ((rc = select_vm(x, true, &tref)))
        return rc;
    if (sr && (rc = xe_callf(x->conn, &srref, "SR.get_by_uuid", "(s)", sr)) != XE_RPC_OK) {
        rc = rpc_error(x, rc);
        goto out;
    }
    if ((rc = xe_callf(x->conn, &v, "VM.clone", "(ss)", tref, name)) != XE_RPC_OK) {
        rc = rpc_error(x, rc);
        goto out;
    }
    vm = string_of(x, v);
    if (sr) { /* the disks the template describes go to that SR */
        const xv *oc = NULL;
        char *disks = NULL;

        if ((rc = xe_callf(x->conn, &oc, "VM.get_other_config", "(s)", vm)) != XE_RPC_OK) {
            rc = rpc_error(x, rc);
            goto out;
        }
        disks = disks_on_sr(xv_str(xv_member(oc, "disks")), sr);
        if (disks) {
            (void)xe_callf(x->conn, NULL, "VM.remove_from_other_config", "(ss)", vm, "disks");
            rc = call_on(x, xapi_class_by_name("VM"), "add_to_other_config", vm, xmlrpc_string_new(E(x), "disks"),
                         xmlrpc_string_new(E(x), disks));
            free(disks);
            if (rc)
                goto out;
        }
    }
    if ((rc = call_on(x, xapi_class_by_name("VM"), "provision", vm, NULL, NULL)) ||
        (rc = call_on(x, xapi_class_by_name("VM"), "set_is_a_template", vm, xmlrpc_bool_new(E(x), 0), NULL)))
        goto out;
    rc = print_uuid_of(x, "VM", vm);
out:
    free(tref);
    free(vm);
    return rc;
}

/* Destroys the VM and the disks only it uses, as xe: after a confirmation unless --force. */
static int cmd_vm_uninstall(xe_ctx *x) {
    char *ref = NULL, **vdis = NULL;
    unsigned nvdis = 0;
    const xv *vbds = NULL;
    int rc;

    if ((rc = select_vm(x, false, &ref)))
        return rc;
    if ((rc = xe_callf(x->conn, &vbds, "VM.get_VBDs", "(s)", ref)) != XE_RPC_OK) {
        rc = rpc_error(x, rc);
        goto out;
    }
    vdis = calloc(vbds->n + 1, sizeof *vdis);
    if (!vdis)
        abort();
    for (const xv *b = vbds->kind == XV_ARRAY ? vbds->first : NULL; b; b = b->next) {
        const xv *rec = NULL, *users = NULL;
        const char *vdi;

        if (xe_callf(x->conn, &rec, "VBD.get_record", "(s)", xv_str(b)) != XE_RPC_OK)
            continue;
        vdi = xv_str(xv_member(rec, "VDI"));
        if (strcmp(xv_str(xv_member(rec, "type")), "Disk") == 0 && strcmp(vdi, "OpaqueRef:NULL") != 0 &&
            xe_callf(x->conn, &users, "VDI.get_VBDs", "(s)", vdi) == XE_RPC_OK && users->n == 1)
            vdis[nvdis++] = strdup(vdi);
    }
    if (!flag(x, "force")) {
        char line[16] = "";

        fprintf(stderr, "The following items are about to be destroyed\nVM : %s\n", ref);
        for (unsigned i = 0; i < nvdis; i++)
            fprintf(stderr, "VDI: %s\n", vdis[i]);
        fprintf(stderr, "Type 'yes' to continue\n");
        if (!fgets(line, sizeof line, stdin) || strncmp(line, "yes", 3) != 0) {
            rc = cli_error("Aborted");
            goto out;
        }
    }
    if ((rc = call_on(x, xapi_class_by_name("VM"), "destroy", ref, NULL, NULL)))
        goto out;
    for (unsigned i = 0; i < nvdis && !rc; i++)
        rc = call_on(x, xapi_class_by_name("VDI"), "destroy", vdis[i], NULL, NULL);
    if (!rc)
        sb_add(&x->out, "All objects destroyed\n");
out:
    for (unsigned i = 0; i < nvdis; i++)
        free(vdis[i]);
    free(vdis);
    free(ref);
    return rc;
}

/* ---- create commands: a constructor record from the schema, then the given parameters ---- */

static xmlrpc_value *zero_of(xe_ctx *x, const xapi_type *t) {
    xmlrpc_env *env = E(x);

    switch (t->kind) {
    case XAPI_T_BOOL:
        return xmlrpc_bool_new(env, 0);
    case XAPI_T_INT:
        return xmlrpc_string_new(env, "0");
    case XAPI_T_FLOAT:
        return xmlrpc_double_new(env, 0);
    case XAPI_T_DATETIME:
        return xmlrpc_datetime_new_str(env, "19700101T00:00:00");
    case XAPI_T_REF:
        return xmlrpc_string_new(env, "OpaqueRef:NULL");
    case XAPI_T_SET:
        return xmlrpc_array_new(env);
    case XAPI_T_MAP:
        return xmlrpc_struct_new(env);
    case XAPI_T_ENUM:
        return xmlrpc_string_new(env, t->enumv && t->enumv->n ? t->enumv->values[0] : "");
    default:
        return xmlrpc_string_new(env, "");
    }
}

static int size_value(const char *s, char *out, size_t n) {
    static const struct {
        const char *suffix;
        unsigned long long mul;
    } units[] = {{"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
                 {"KB", 1000ull}, {"MB", 1000000ull}, {"GB", 1000000000ull}, {"TB", 1000000000000ull}, {"", 1}};
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || errno)
        return -EINVAL;
    for (unsigned i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].suffix) == 0) {
            snprintf(out, n, "%llu", v * units[i].mul);
            return 0;
        }
    return -EINVAL;
}

static void set_member(xe_ctx *x, xmlrpc_value *rec, const char *name, xmlrpc_value *v) {
    xmlrpc_struct_set_value(E(x), rec, name, v);
    xmlrpc_DECREF(v);
}

/* Builds the create record of class c from every create-required field, `fixed` defaults
 * (field=value pairs), and the parameters given (xe names, `map:key=value`). */
static int create_record(xe_ctx *x, const xe_class *c, const char *const *fixed, xmlrpc_value **ret) {
    xmlrpc_value *rec = xmlrpc_struct_new(E(x));
    int rc = 0;

    for (unsigned i = 0; i < c->cls->nfields; i++)
        if (c->cls->fields[i].create_required) /* the server fills in the fields with defaults */
            set_member(x, rec, c->cls->fields[i].name, zero_of(x, c->cls->fields[i].type));
    for (unsigned pass = 0; pass < 2 && !rc; pass++) {
        unsigned n = pass == 0 ? 0 : x->nargs;

        for (unsigned i = 0; pass == 0 ? fixed && fixed[i] : i < n; i++) {
            const char *key = pass == 0 ? fixed[i] : x->args[i].key;
            const char *value = pass == 0 ? fixed[i + 1] : x->args[i].value;
            const char *colon = strchr(key, ':');
            char name[64], num[32];
            const xe_field *f;
            xmlrpc_value *v = NULL;

            if (pass == 0)
                i++;
            else if (x->args[i].used || is_std(key))
                continue;
            else
                x->args[i].used = true;
            snprintf(name, sizeof name, "%.*s", colon ? (int)(colon - key) : (int)strlen(key), key);
            f = xe_field_by_name(c, name);
            if (!f || !f->f) {
                rc = usage_error("Unknown parameter: ", key);
                break;
            }
            if (colon && f->f->type->kind == XAPI_T_MAP) {
                xmlrpc_value *m = NULL;

                xmlrpc_struct_find_value(E(x), rec, f->f->name, &m);
                if (!m)
                    m = xmlrpc_struct_new(E(x));
                set_member(x, m, colon + 1, xmlrpc_string_new(E(x), value));
                set_member(x, rec, f->f->name, m);
                continue;
            }
            if (f->f->type->kind == XAPI_T_INT) {
                if (size_value(value, num, sizeof num) < 0) {
                    rc = cli_error("Error: Invalid value '%s' for parameter '%s'", value, key);
                    break;
                }
                value = num;
            }
            if (wire_value(x, f->f->type, value, &v) < 0) {
                rc = cli_error("Error: Invalid value '%s' for parameter '%s'", value, key);
                break;
            }
            set_member(x, rec, f->f->name, v);
        }
    }
    if (rc) {
        xmlrpc_DECREF(rec);
        return rc;
    }
    *ret = rec;
    return 0;
}

static int create_and_print(xe_ctx *x, const char *prefix, const char *const *fixed, const char *const *required) {
    xe_class *c = xe_class_by_prefix(prefix, strlen(prefix));
    xmlrpc_value *rec = NULL;
    const xv *ref = NULL;
    char method[96];
    int rc;

    for (unsigned i = 0; required[i]; i++)
        if (!find_arg(x, required[i]))
            return usage_error("Required parameter not found: ", required[i]);
    if ((rc = create_record(x, c, fixed, &rec)))
        return rc;
    snprintf(method, sizeof method, "%s.create", c->cls->name);
    rc = xe_callf(x->conn, &ref, method, "(V)", rec);
    xmlrpc_DECREF(rec);
    if (rc != XE_RPC_OK)
        return rpc_error(x, rc);
    return print_uuid_of(x, c->cls->name, xv_str(ref));
}

static int cmd_vdi_create(xe_ctx *x) {
    static const char *const fixed[] = {"type", "user", NULL};
    static const char *const required[] = {"sr-uuid", "name-label", "virtual-size", NULL};

    return create_and_print(x, "vdi", fixed, required);
}

static int cmd_vbd_create(xe_ctx *x) {
    static const char *const fixed[] = {"type", "Disk", "mode", "RW", "unpluggable", "true", NULL};
    static const char *const required[] = {"vm-uuid", "device", NULL};
    arg *vdi = find_arg(x, "vdi-uuid");

    if (!vdi || !*vdi->value) {
        static const char *const empty[] = {"type", "CD", "mode", "RO", "empty", "true", "unpluggable", "true", NULL};
        return create_and_print(x, "vbd", empty, required);
    }
    /* xe calls the device position `device`; the record's `device` is the guest's name for it. */
    for (unsigned i = 0; i < x->nargs; i++)
        if (strcmp(x->args[i].key, "device") == 0) {
            free(x->args[i].key);
            x->args[i].key = strdup("userdevice");
        }
    return create_and_print(x, "vbd", fixed, (const char *const[]){"vm-uuid", "userdevice", NULL});
}

static int cmd_vif_create(xe_ctx *x) {
    static const char *const required[] = {"vm-uuid", "network-uuid", "device", NULL};

    for (unsigned i = 0; i < x->nargs; i++)
        if (strcmp(x->args[i].key, "mac") == 0) {
            free(x->args[i].key);
            x->args[i].key = strdup("MAC");
        }
    return create_and_print(x, "vif", NULL, required);
}

static int cmd_vdi_destroy(xe_ctx *x) {
    xe_class *c = xe_class_by_prefix("vdi", 3);
    char *ref = NULL;
    int rc;

    if ((rc = find_one(x, c, "uuid", &ref, NULL)))
        return rc;
    rc = call_on(x, c->cls, "destroy", ref, NULL, NULL);
    free(ref);
    return rc;
}

/* ---- command table ------------------------------------------------------------------- */

typedef struct command {
    const char *name;
    int (*fn)(xe_ctx *x);
    const char *reqd, *optional;
} command;

static int cmd_help(xe_ctx *x);

static const command commands[] = {
    {"vm-install", cmd_vm_install, "new-name-label", "template, template-name-label, sr-uuid"},
    {"vm-start", cmd_vm_start, "", "vm, uuid, name-label, paused, force"},
    {"vm-shutdown", cmd_vm_shutdown, "", "vm, uuid, name-label, force"},
    {"vm-reboot", cmd_vm_reboot, "", "vm, uuid, name-label, force"},
    {"vm-uninstall", cmd_vm_uninstall, "", "vm, uuid, name-label, force"},
    {"vdi-create", cmd_vdi_create, "sr-uuid, name-label, virtual-size", "type, sharable, read-only, other-config:, sm-config:"},
    {"vdi-destroy", cmd_vdi_destroy, "uuid", ""},
    {"vbd-create", cmd_vbd_create, "vm-uuid, device", "vdi-uuid, bootable, type, mode, unpluggable, other-config:"},
    {"vif-create", cmd_vif_create, "vm-uuid, network-uuid, device", "mac, mtu, other-config:"},
    {"help", cmd_help, "", "command"},
};

static const char *const generic_ops[] = {"list", "param-list", "param-get", "param-set", NULL};

static void list_commands(sb *out, const char *sep) {
    bool first = true;

    for (unsigned i = 0; i < sizeof commands / sizeof commands[0]; i++, first = false)
        sb_printf(out, "%s%s", first ? "" : sep, commands[i].name);
    for (unsigned i = 0; i < xe_nclasses; i++)
        for (unsigned k = 0; generic_ops[k]; k++)
            sb_printf(out, "%s%s-%s", sep, xe_classes[i].prefix, generic_ops[k]);
}

static int cmd_help(xe_ctx *x) {
    const char *cmd = get(x, "command");

    for (unsigned i = 0; !cmd && i < x->nargs; i++)
        if (!is_std(x->args[i].key) && strcmp(x->args[i].value, "true") == 0)
            cmd = x->args[i].key;
    if (cmd) {
        for (unsigned i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (strcmp(commands[i].name, cmd) == 0) {
                sb_printf(&x->out, "command name            : %s\n        reqd params     : %s\n        optional params : %s\n",
                          cmd, commands[i].reqd, commands[i].optional);
                return EXIT_OK;
            }
        const char *dash = strchr(cmd, '-');
        xe_class *c = dash ? xe_class_by_prefix(cmd, (size_t)(dash - cmd)) : NULL;
        if (c) {
            sb_printf(&x->out, "command name            : %s\n        reqd params     : %s\n        optional params : ",
                      cmd, strcmp(dash + 1, "list") == 0 ? "" : strcmp(dash + 1, "param-get") == 0 ? "uuid, param-name" : "uuid");
            if (strcmp(dash + 1, "param-get") == 0)
                sb_add(&x->out, "param-key");
            else if (strcmp(dash + 1, "param-set") == 0) {
                bool first = true;
                for (unsigned i = 0; i < c->nfields; i++) {
                    const xe_field *f = &c->fields[i];
                    bool map = f->f && f->f->type->kind == XAPI_T_MAP;

                    if (!f->settable || (f->f && f->f->type->kind == XAPI_T_SET))
                        continue;
                    sb_printf(&x->out, "%s%s%s", first ? "" : ", ", f->name, map ? ":" : "");
                    first = false;
                }
            } else if (strcmp(dash + 1, "param-list") != 0)
                for (unsigned i = 0; i < c->nfields; i++)
                    sb_printf(&x->out, "%s%s", i ? ", " : "", c->fields[i].name);
            sb_add(&x->out, "\n");
            return EXIT_OK;
        }
        return usage_error("Unknown command: ", cmd);
    }
    if (flag(x, "minimal")) {
        list_commands(&x->out, ",");
        sb_add(&x->out, "\n");
    } else {
        sb_add(&x->out, "Usage: xe <command> [-s server] [-p port] [-u user] [-pw password] [--nossl] [args]\n\nCommands:\n  ");
        list_commands(&x->out, "\n  ");
        sb_add(&x->out, "\n");
    }
    return EXIT_OK;
}

static bool needs_connection(const char *cmd) {
    return strcmp(cmd, "help") != 0;
}

static int run_command(xe_ctx *x) {
    const char *dash;
    xe_class *c;

    for (unsigned i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, x->command) == 0)
            return commands[i].fn(x);
    dash = strchr(x->command, '-');
    c = dash ? xe_class_by_prefix(x->command, (size_t)(dash - x->command)) : NULL;
    if (c && strcmp(dash + 1, "list") == 0)
        return cmd_list(x, c);
    if (c && strcmp(dash + 1, "param-list") == 0)
        return cmd_param_list(x, c);
    if (c && strcmp(dash + 1, "param-get") == 0)
        return cmd_param_get(x, c);
    if (c && strcmp(dash + 1, "param-set") == 0)
        return cmd_param_set(x, c);
    return usage_error("Unknown command: ", x->command);
}

static bool is_known_command(const char *cmd) {
    sb all = {0};
    bool found;
    size_t n = strlen(cmd);

    list_commands(&all, ",");
    found = false;
    for (const char *p = all.p; p && *p && !found;) {
        size_t len = strcspn(p, ",");
        found = len == n && strncmp(p, cmd, n) == 0;
        p += len + (p[len] == ',');
    }
    free(all.p);
    return found;
}

/* ---- main ---------------------------------------------------------------------------- */

static int parse(xe_ctx *x, int argc, char **argv) {
    static const struct {
        const char *sw, *key;
    } switches[] = {{"-u", "username"}, {"-pw", "password"}, {"-s", "server"}, {"-h", "server"},
                    {"-p", "port"},     {"-pwf", "passwordfile"}};

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq;
        bool sw = false;

        for (unsigned k = 0; k < sizeof switches / sizeof switches[0]; k++)
            if (strcmp(a, switches[k].sw) == 0) {
                if (i + 1 >= argc)
                    return usage_error("Syntax error: ", "");
                if (add_arg(x, switches[k].key, strlen(switches[k].key), argv[++i]) < 0)
                    return usage_error("Syntax error: ", "too many arguments");
                sw = true;
            }
        if (sw)
            continue;
        if (strncmp(a, "--", 2) == 0 && a[2]) {
            if (add_arg(x, a + 2, strlen(a + 2), "true") < 0)
                return usage_error("Syntax error: ", "too many arguments");
        } else if ((eq = strchr(a, '='))) {
            if (eq == a || add_arg(x, a, (size_t)(eq - a), eq + 1) < 0)
                return usage_error("Syntax error: ", eq == a ? a : "too many arguments");
        } else if (!x->command) {
            x->command = a;
        } else if (strcmp(x->command, "help") == 0) {
            if (add_arg(x, "command", 7, a) < 0)
                return usage_error("Syntax error: ", "too many arguments");
        } else {
            return usage_error("Syntax error: ", a);
        }
    }
    return 0;
}

/* XE_EXTRA_ARGS: comma-separated key=value (`\,` a comma), then ~/.xe's key=value lines. Both
 * come after the command line, so the command line wins (get() takes the first). */
static int add_extra_arg(xe_ctx *x, const char *kv) {
    const char *eq = strchr(kv, '=');

    if (!eq || eq == kv)
        return 0;
    return add_arg(x, kv, (size_t)(eq - kv), eq + 1) < 0 ? usage_error("Syntax error: ", "too many arguments") : 0;
}

static int read_defaults(xe_ctx *x) {
    const char *extra = getenv("XE_EXTRA_ARGS"), *home = getenv("HOME");
    char line[1024];
    int rc = 0;

    if (extra && *extra) {
        char *item = malloc(strlen(extra) + 1);
        size_t n = 0;

        if (!item)
            abort();
        for (const char *p = extra;; p++) {
            if (*p == '\\' && p[1] == ',') {
                item[n++] = *++p;
                continue;
            }
            if (*p == ',' || !*p) {
                item[n] = 0;
                if ((rc = add_extra_arg(x, item)))
                    break;
                n = 0;
                if (!*p)
                    break;
                continue;
            }
            item[n++] = *p;
        }
        free(item);
        if (rc)
            return rc;
    }
    if (home && *home) {
        FILE *f;

        snprintf(line, sizeof line, "%s/.xe", home);
        f = fopen(line, "r");
        while (f && !rc && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (line[0] && line[0] != '#')
                rc = add_extra_arg(x, line);
        }
        if (f)
            fclose(f);
    }
    return rc;
}

static int read_password_file(xe_ctx *x, const char *path, char **user, char **pw) {
    FILE *f = fopen(path, "r");
    char line[512];

    if (!f)
        return cli_error("Error: cannot read the password file %s: %s", path, strerror(errno));
    for (int i = 0; i < 2 && fgets(line, sizeof line, f); i++) {
        line[strcspn(line, "\r\n")] = 0;
        *(i == 0 ? user : pw) = strdup(line);
    }
    fclose(f);
    return 0;
}

static int connect_and_login(xe_ctx *x) {
    const char *server = get(x, "server"), *port = get(x, "port");
    const char *user = get(x, "username"), *pw = get(x, "password"), *pwf = get(x, "passwordfile");
    const char *sock = getenv("XE_LOCAL_SOCKET");
    bool nossl = flag(x, "nossl");
    char *fuser = NULL, *fpw = NULL;
    bool local = !server || strcmp(server, "127.0.0.1") == 0; /* as xe: only this is never TLS */
    xe_target t = {0};
    int rc;

    if (pwf && (rc = read_password_file(x, pwf, &fuser, &fpw)))
        return rc;
    if (!user)
        user = fuser ? fuser : "root";
    if (!pw)
        pw = fpw ? fpw : "";
    if (!sock)
        sock = getenv("XENAPID_LOCAL_SOCKET");
    if (!sock)
        sock = XE_DEFAULT_SOCKET;
    t.server = server ? server : "127.0.0.1";
    t.tls = !nossl && !local;
    t.port = port ? atoi(port) : t.tls ? 443 : 80;
    t.cafile = get(x, "cafile");
    /* OpenSSL's start-up (its configuration, engines) is a good part of a local command's time. */
    curl_global_init(t.tls ? CURL_GLOBAL_DEFAULT : CURL_GLOBAL_NOTHING);
    rc = XE_RPC_TRANSPORT;
    /* Locally the UNIX socket first, then TCP, as xe. A port given means TCP. */
    if (local && !port && access(sock, F_OK) == 0) {
        xe_target u = t;
        u.unix_socket = sock;
        if (xe_conn_open(&u, &x->conn) < 0)
            abort();
        rc = xe_conn_login(x->conn, user, pw);
        if (rc == XE_RPC_TRANSPORT) {
            xe_conn_close(x->conn);
            x->conn = NULL;
        }
    }
    if (rc == XE_RPC_TRANSPORT) {
        if (t.port <= 0 || t.port > 65535) {
            rc = usage_error("Syntax error: ", "port");
            goto out;
        }
        if (xe_conn_open(&t, &x->conn) < 0)
            abort();
        rc = xe_conn_login(x->conn, user, pw);
    }
    if (rc == XE_RPC_TRANSPORT)
        rc = cli_error("Unable to contact server. Please check server and port settings.");
    else if (rc == XE_RPC_FAILURE)
        rc = api_error(x);
out:
    free(fuser);
    free(fpw);
    return rc;
}

int main(int argc, char **argv) {
    xe_ctx *x = calloc(1, sizeof *x);
    int rc;

    if (!x)
        return EXIT_ERR;
    xe_fields_init();
    if ((rc = parse(x, argc, argv)) || (rc = read_defaults(x)))
        goto out;
    if (!x->command) {
        x->command = "help";
    }
    if (!is_known_command(x->command)) {
        rc = usage_error("Unknown command: ", x->command);
        goto out;
    }
    if (needs_connection(x->command)) {
        if ((rc = connect_and_login(x)))
            goto out;
    }
    rc = run_command(x);
    if (x->conn)
        xe_conn_logout(x->conn);
    if (x->out.len)
        fwrite(x->out.p, 1, x->out.len, stdout);
out:
    if (x->conn)
        xe_conn_close(x->conn);
    for (unsigned i = 0; i < x->nargs; i++) {
        free(x->args[i].key);
        free(x->args[i].value);
    }
    free(x->out.p);
    free(x);
    return rc;
}
