/* Field tables for xe, from the generated datamodel. xapi's records.ml writes them by hand per
 * class; most names are the field name with `_` -> `-`, and the exceptions below are the ones
 * that are not (kept underscores, ref fields shown as `<x>-uuid`, computed columns, order). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/xe_fields.h"

xe_class xe_classes[] = {
    {"host", NULL, "uuid,name-label,name-description", NULL, NULL, 0},
    {"vm", NULL, "uuid,name-label,power-state", "is-a-template=false", NULL, 0},
    {"template", NULL, "uuid,name-label,name-description", "is-a-template=true", NULL, 0},
    {"vdi", NULL, "uuid,name-label,name-description,sr-uuid,virtual-size,sharable,read-only", NULL, NULL, 0},
    {"vbd", NULL, "uuid,vm-uuid,vm-name-label,vdi-uuid,empty,device", NULL, NULL, 0},
    {"vif", NULL, "uuid,vm-uuid,device,network-uuid", NULL, NULL, 0},
    {"sr", NULL, "uuid,name-label,name-description,host,type,content-type", NULL, NULL, 0},
    {"pbd", NULL, "uuid,host-uuid,sr-uuid,device-config,currently-attached", NULL, NULL, 0},
    {"network", NULL, "uuid,name-label,name-description,bridge", NULL, NULL, 0},
    {"pif", NULL, "uuid,device,MAC,currently-attached,VLAN,network-uuid,host-uuid", NULL, NULL, 0},
    {"task", NULL, "uuid,name-label,name-description,status,progress", NULL, NULL, 0},
    {"pool", NULL, "uuid,name-label,name-description,master,default-SR", NULL, NULL, 0},
};
const unsigned xe_nclasses = sizeof xe_classes / sizeof xe_classes[0];

static const char *const class_names[] = {"host", "VM", "VM", "VDI", "VBD", "VIF", "SR",
                                          "PBD", "network", "PIF", "task", "pool"};

/* Fields whose xe name is not the mechanical rewrite. */
static const struct {
    const char *cls, *field, *xe;
} renames[] = {
    {"host", "cpu_info", "cpu_info"},
    {"host", "guest_VCPUs_params", "guest_VCPUs_params"},
    {"host", "iscsi_iqn", "iscsi_iqn"},
    {"VDI", "SR", "sr-uuid"},
    {"VBD", "VM", "vm-uuid"},
    {"VBD", "VDI", "vdi-uuid"},
    {"VBD", "qos_algorithm_type", "qos_algorithm_type"},
    {"VBD", "qos_algorithm_params", "qos_algorithm_params"},
    {"VBD", "qos_supported_algorithms", "qos_supported_algorithms"},
    {"VIF", "VM", "vm-uuid"},
    {"VIF", "network", "network-uuid"},
    {"VIF", "qos_algorithm_type", "qos_algorithm_type"},
    {"VIF", "qos_algorithm_params", "qos_algorithm_params"},
    {"VIF", "qos_supported_algorithms", "qos_supported_algorithms"},
    {"PBD", "host", "host-uuid"},
    {"PBD", "SR", "sr-uuid"},
    {"PIF", "network", "network-uuid"},
    {"PIF", "host", "host-uuid"},
    {"task", "subtask_of", "subtask_of"},
    {"task", "subtasks", "subtasks"},
    {"task", "error_info", "error_info"},
    {"task", "allowed_operations", "allowed_operations"},
};

/* Computed columns, inserted after the column `after`. */
static const struct {
    const char *cls, *after, *xe;
    xe_synth synth;
} computed[] = {
    {"VBD", "vm-uuid", "vm-name-label", XE_NAME_OF_REF},
    {"VIF", "vm-uuid", "vm-name-label", XE_NAME_OF_REF},
    {"VDI", "sr-uuid", "sr-name-label", XE_NAME_OF_REF},
    {"PIF", "network-uuid", "network-name-label", XE_NAME_OF_REF},
    {"PIF", "host-uuid", "host-name-label", XE_NAME_OF_REF},
    {"SR", "name-description", "host", XE_SR_HOST},
    /* records.ml's, read by os-xenapi's xenhost.host_data from `xe host-param-list` */
    {"host", "name-description", "memory-total", XE_HOST_MEMORY},
    {"host", "memory-total", "memory-free", XE_HOST_MEMORY},
    {"host", "memory-free", "memory-free-computed", XE_HOST_MEMORY},
};

/* Columns records.ml prints later than the schema has them: moved (with the computed column
 * that follows them) after `after`. */
static const struct {
    const char *cls, *xe, *after;
} moves[] = {
    {"PIF", "MTU", "currently-attached"},
    {"PIF", "VLAN", "MTU"},
    {"PIF", "network-uuid", "management"},
    {"PIF", "host-uuid", "network-name-label"},
};

/* Explicit setters in the API that records.ml does not offer to xe (the field prints RO). */
static const struct {
    const char *cls, *field;
} api_only_setters[] = {
    {"VDI", "sharable"}, {"VDI", "read_only"}, {"task", "status"},
    {"task", "progress"}, {"task", "result"}, {"task", "error_info"},
};

static bool api_only_setter(const xapi_class *cls, const char *field) {
    for (size_t i = 0; i < sizeof api_only_setters / sizeof api_only_setters[0]; i++)
        if (strcmp(api_only_setters[i].cls, cls->name) == 0 && strcmp(api_only_setters[i].field, field) == 0)
            return true;
    return false;
}

static void xe_name(const xapi_class *cls, const char *field, char *out, size_t size) {
    size_t i;

    for (i = 0; i < sizeof renames / sizeof renames[0]; i++)
        if (strcmp(renames[i].cls, cls->name) == 0 && strcmp(renames[i].field, field) == 0) {
            snprintf(out, size, "%s", renames[i].xe);
            return;
        }
    for (i = 0; field[i] && i + 1 < size; i++)
        out[i] = field[i] == '_' ? '-' : field[i];
    out[i] = 0;
}

static bool has_message(const xapi_class *cls, const char *prefix, const char *field) {
    char name[160];

    snprintf(name, sizeof name, "%s%s", prefix, field);
    return xapi_message_find(cls, name) != NULL;
}

static int index_of(const xe_class *c, const char *name) {
    for (unsigned i = 0; i < c->nfields; i++)
        if (strcmp(c->fields[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void insert_at(xe_class *c, unsigned pos, const xe_field *f) {
    memmove(&c->fields[pos + 1], &c->fields[pos], (c->nfields - pos) * sizeof *f);
    c->fields[pos] = *f;
    c->nfields++;
}

static void fix_ref_indexes(xe_class *c) {
    for (unsigned i = 0; i < c->nfields; i++)
        if (c->fields[i].synth == XE_NAME_OF_REF)
            c->fields[i].ref_field = i - 1; /* always right after its ref column */
}

static void build(xe_class *c) {
    const xapi_class *cls = c->cls;
    unsigned i;

    c->fields = calloc(cls->nfields + sizeof computed / sizeof computed[0], sizeof *c->fields);
    if (!c->fields)
        abort();
    for (i = 0; i < cls->nfields; i++) {
        const xapi_field *f = &cls->fields[i];
        xe_field *x = &c->fields[c->nfields];
        unsigned kind = f->type->kind;
        bool rw = f->qualifier == XAPI_Q_RW;

        if (kind == XAPI_T_ANY_RECORD || kind == XAPI_T_RECORD)
            continue;
        xe_name(cls, f->name, x->name, sizeof x->name);
        x->f = f;
        x->field_index = (int)i;
        x->settable = rw || (has_message(cls, "set_", f->name) && !api_only_setter(cls, f->name));
        if (kind == XAPI_T_MAP) {
            x->map_addable = rw || has_message(cls, "add_to_", f->name);
            snprintf(x->marker, sizeof x->marker, "%s", x->map_addable ? "MRW" : "MRO");
        } else if (kind == XAPI_T_SET) {
            snprintf(x->marker, sizeof x->marker, "%s", rw || has_message(cls, "add_", f->name) ? "SRW" : "SRO");
        } else {
            snprintf(x->marker, sizeof x->marker, "%s", x->settable ? " RW" : " RO");
        }
        c->nfields++;
    }
    for (i = 0; i < sizeof computed / sizeof computed[0]; i++) {
        xe_field x = {.synth = computed[i].synth, .field_index = -1};
        int at;

        if (strcmp(computed[i].cls, cls->name) != 0 || (at = index_of(c, computed[i].after)) < 0)
            continue;
        snprintf(x.name, sizeof x.name, "%s", computed[i].xe);
        snprintf(x.marker, sizeof x.marker, " RO");
        insert_at(c, (unsigned)at + 1, &x);
    }
    for (i = 0; i < sizeof moves / sizeof moves[0]; i++) {
        int from, to, n;
        xe_field tmp[2];

        if (strcmp(moves[i].cls, cls->name) != 0 || (from = index_of(c, moves[i].xe)) < 0)
            continue;
        n = from + 1 < (int)c->nfields && c->fields[from + 1].synth == XE_NAME_OF_REF ? 2 : 1;
        memcpy(tmp, &c->fields[from], n * sizeof *tmp);
        memmove(&c->fields[from], &c->fields[from + n], (c->nfields - from - n) * sizeof *tmp);
        c->nfields -= n;
        to = index_of(c, moves[i].after);
        to = to < 0 ? (int)c->nfields : to + 1;
        for (int k = 0; k < n; k++)
            insert_at(c, (unsigned)(to + k), &tmp[k]);
    }
    fix_ref_indexes(c);
}

void xe_fields_init(void) {
    for (unsigned i = 0; i < xe_nclasses; i++) {
        xe_classes[i].cls = xapi_class_by_name(class_names[i]);
        if (!xe_classes[i].cls)
            abort();
        build(&xe_classes[i]);
    }
}

xe_class *xe_class_by_prefix(const char *prefix, size_t len) {
    for (unsigned i = 0; i < xe_nclasses; i++)
        if (strlen(xe_classes[i].prefix) == len && strncmp(xe_classes[i].prefix, prefix, len) == 0)
            return &xe_classes[i];
    return NULL;
}

xe_class *xe_class_of(const xapi_class *cls) {
    for (unsigned i = 0; i < xe_nclasses; i++)
        if (xe_classes[i].cls == cls)
            return &xe_classes[i];
    return NULL;
}

const xe_field *xe_field_by_name(const xe_class *c, const char *name) {
    int i = index_of(c, name);

    return i < 0 ? NULL : &c->fields[i];
}
