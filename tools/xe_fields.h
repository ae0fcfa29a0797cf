/* xe's view of a class: its printed fields (xe names, markers, order), derived from the
 * generated datamodel tables plus the few places where xapi's records.ml differs from a
 * mechanical `_` -> `-` rewrite (see xe_fields.c). */
#pragma once

#include "xapi/schema.h"

typedef enum xe_synth {
    XE_REAL = 0,       /* a field of the record */
    XE_NAME_OF_REF,    /* name_label of the object a ref field (ref_field) points at */
    XE_SR_HOST,        /* SR `host`: its one PBD's host name, `<shared>` if several */
    XE_HOST_MEMORY,    /* host memory-total, -free (its host_metrics), -free-computed */
} xe_synth;

typedef struct xe_field {
    char name[64];
    char marker[4]; /* RO RW SRO SRW MRO MRW */
    const xapi_field *f;
    int field_index;
    xe_synth synth;
    int ref_field; /* XE_NAME_OF_REF: the index (in the xe_class) of the ref field */
    bool settable, map_addable;
} xe_field;

typedef struct xe_class {
    const char *prefix; /* command prefix: "vm" */
    const xapi_class *cls;
    const char *defaults;       /* default *-list columns, comma separated */
    const char *default_filter; /* key=value or NULL */
    xe_field *fields;
    unsigned nfields;
} xe_class;

extern xe_class xe_classes[];
extern const unsigned xe_nclasses;

/* Builds the field tables of every class (once). */
void xe_fields_init(void);
xe_class *xe_class_by_prefix(const char *prefix, size_t len);
xe_class *xe_class_of(const xapi_class *cls);
const xe_field *xe_field_by_name(const xe_class *c, const char *name);
