/* Lookups over the generated datamodel tables. */
#include <string.h>
#include <strings.h>

#include "xapi/schema.h"

const xapi_class *xapi_class_by_name(const char *name) {
    for (unsigned i = 0; i < xapi_nclasses; i++)
        if (strcmp(xapi_classes[i].name, name) == 0)
            return &xapi_classes[i];
    return NULL;
}

const xapi_class *xapi_class_by_name_ci(const char *name) {
    for (unsigned i = 0; i < xapi_nclasses; i++)
        if (strcasecmp(xapi_classes[i].name, name) == 0)
            return &xapi_classes[i];
    return NULL;
}

int xapi_field_index(const xapi_class *c, const char *name) {
    for (unsigned i = 0; i < c->nfields; i++)
        if (strcmp(c->fields[i].name, name) == 0)
            return (int)i;
    return -1;
}

const xapi_message *xapi_message_find(const xapi_class *c, const char *name) {
    for (unsigned i = 0; i < c->nmessages; i++)
        if (strcmp(c->messages[i].name, name) == 0)
            return &c->messages[i];
    return NULL;
}

unsigned char xapi_implicit_role(const xapi_class *c, const char *msg, bool write) {
    for (unsigned i = 0; i < c->nimplicit_roles; i++)
        if (strcmp(c->implicit_roles[i].name, msg) == 0)
            return c->implicit_roles[i].role;
    return write ? c->write_role : XAPI_ROLE_READ_ONLY;
}

const xapi_key_role *xapi_field_key_role(const xapi_field *f, const char *key) {
    for (unsigned i = 0; i < f->nkey_roles; i++) {
        const xapi_key_role *k = &f->key_roles[i];

        if (k->prefix ? strncmp(key, k->key, strlen(k->key) - 1) == 0 : strcmp(key, k->key) == 0)
            return k;
    }
    return NULL;
}

const char *xapi_enum_canonical(const xapi_enum *e, const char *s) {
    for (unsigned i = 0; i < e->n; i++)
        if (strcasecmp(e->values[i], s) == 0)
            return e->values[i];
    return NULL;
}
