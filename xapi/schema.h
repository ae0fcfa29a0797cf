/* The datamodel as C tables, generated from xapi/schema/classes.json by
 * xapi/schema/gen_schema.py. Everything generic (getters, setters, records,
 * create, destroy, type checking) is driven from here, never written per class. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "value.h"

typedef enum xapi_tkind {
    XAPI_T_VOID = 0,
    XAPI_T_STRING,
    XAPI_T_INT,
    XAPI_T_FLOAT,
    XAPI_T_BOOL,
    XAPI_T_DATETIME,
    XAPI_T_ENUM,
    XAPI_T_REF,
    XAPI_T_SET,
    XAPI_T_MAP,
    XAPI_T_RECORD,      /* <Class> record */
    XAPI_T_OPTION,
    XAPI_T_EVENT_BATCH, /* event.from's result */
    XAPI_T_ANY_RECORD,  /* event snapshot: "<class> record" */
} xapi_tkind;

typedef struct xapi_enum {
    const char *name;
    unsigned n;
    const char *const *values; /* canonical spelling */
} xapi_enum;

typedef struct xapi_type {
    unsigned char kind;          /* xapi_tkind */
    const struct xapi_type *elem; /* SET element, MAP value, OPTION content */
    const struct xapi_type *key;  /* MAP key */
    const xapi_enum *enumv;       /* ENUM */
    const char *class_name;       /* REF, RECORD */
    int class_id;                 /* REF, RECORD: index in xapi_classes or -1 if not served */
    const char *text;             /* as written in the datamodel */
} xapi_type;

typedef enum xapi_qualifier {
    XAPI_Q_RW = 0,
    XAPI_Q_STATIC_RO,
    XAPI_Q_DYNAMIC_RO,
} xapi_qualifier;

/* xapi's roles as ranks: a session may call what needs a rank at most its own.
 * xapi orders them totally (pool-admin > pool-operator > ... > read-only); a
 * message with no role at all is for the local superuser only. */
typedef enum xapi_role {
    XAPI_ROLE_READ_ONLY = 0,
    XAPI_ROLE_VM_OPERATOR,
    XAPI_ROLE_VM_ADMIN,
    XAPI_ROLE_VM_POWER_ADMIN,
    XAPI_ROLE_POOL_OPERATOR,
    XAPI_ROLE_POOL_ADMIN,
    XAPI_ROLE_LOCAL_ROOT,
} xapi_role;
#define XAPI_NROLES XAPI_ROLE_LOCAL_ROOT /* the roles a subject can hold */

/* A map key whose add_to_/remove_from_ needs its own role (xapi's map_keys_roles). */
typedef struct xapi_key_role {
    const char *key;     /* as xapi writes it: "XenCenter.CustomFields.*" */
    bool prefix;         /* a trailing "*": any key starting with what precedes it */
    unsigned char role;  /* xapi_role */
} xapi_key_role;

/* An implicit message whose role is not its class's default. */
typedef struct xapi_msg_role {
    const char *name;
    unsigned char role;
} xapi_msg_role;

typedef struct xapi_field {
    const char *name;
    unsigned name_len;
    const xapi_type *type;
    unsigned char qualifier;   /* xapi_qualifier */
    bool has_default;          /* may be omitted from a create record */
    bool create_required;      /* in the constructor record without a default */
    bool derived;              /* many side of a relation: computed, never stored */
    const xapi_value *def;     /* default value (a zero of the type when has_default is false) */
    /* Relations. For a ref field whose target keeps a set of back-references:
     * the class and field of that set (-1 otherwise). For a derived set: the
     * class and ref field it is derived from. */
    int rel_class;
    int rel_field;
    const xapi_key_role *key_roles;
    unsigned nkey_roles;
} xapi_field;

typedef enum xapi_msg_state {
    XAPI_MSG_PUBLISHED = 0,
    XAPI_MSG_DEPRECATED,
    XAPI_MSG_PROTOTYPED,
    XAPI_MSG_REMOVED,
} xapi_msg_state;

typedef struct xapi_param {
    const char *name;
    const xapi_type *type;
    const xapi_value *def; /* NULL: required */
} xapi_param;

typedef struct xapi_message {
    const char *name;
    const xapi_param *params; /* excluding the session */
    unsigned nparams;
    unsigned nrequired;       /* leading params without a default */
    const xapi_type *result;
    bool async;
    bool no_session;
    unsigned char state;      /* xapi_msg_state */
    const char *min_role;     /* as in the schema; "" for the local superuser only */
    unsigned char role;       /* xapi_role of min_role */
} xapi_message;

typedef enum xapi_ctor {
    XAPI_CTOR_NONE = 0,
    XAPI_CTOR_IMPLICIT,
    XAPI_CTOR_CUSTOM,
} xapi_ctor;

typedef struct xapi_class {
    const char *name;  /* as on the wire: "VM" */
    const char *lname; /* lowercase: event class names, "vm" */
    int id;
    bool in_database;
    bool gen_events;
    bool get_record, get_by_uuid, get_by_name_label, get_all, get_all_records, get_all_where;
    unsigned char create, destroy; /* xapi_ctor */
    const xapi_field *fields;
    unsigned nfields;
    const xapi_message *messages;
    unsigned nmessages;
    int f_uuid;       /* field index of uuid, -1 if none */
    int f_name_label; /* field index of name_label, -1 if none */
    unsigned char write_role; /* xapi_role of create, destroy and field writers unless listed */
    const xapi_msg_role *implicit_roles; /* implicit messages with another role */
    unsigned nimplicit_roles;
} xapi_class;

extern const xapi_class xapi_classes[];
extern const unsigned xapi_nclasses;
extern const xapi_enum xapi_enums[];
extern const unsigned xapi_nenums;
extern const int xapi_api_version_major, xapi_api_version_minor;

/* Lookups; NULL / -1 when absent. Class names are case-sensitive, as xapi's. */
const xapi_class *xapi_class_by_name(const char *name);
const xapi_class *xapi_class_by_name_ci(const char *name); /* event subscriptions */
int xapi_field_index(const xapi_class *c, const char *name);
const xapi_message *xapi_message_find(const xapi_class *c, const char *name);
/* The role an implicit message of c needs: listed, else read-only for reads, the class's
 * write role for writes. */
unsigned char xapi_implicit_role(const xapi_class *c, const char *msg, bool write);
/* The entry of f's protected map keys that key falls under, or NULL. */
const xapi_key_role *xapi_field_key_role(const xapi_field *f, const char *key);
/* Canonical spelling of an enum value matched case-insensitively, NULL if none. */
const char *xapi_enum_canonical(const xapi_enum *e, const char *s);

#include "schema_ids.h" /* XAPI_C_<class>, XAPI_F_<class>_<field> */
