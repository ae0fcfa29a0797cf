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

const char *xapi_enum_canonical(const xapi_enum *e, const char *s) {
    for (unsigned i = 0; i < e->n; i++)
        if (strcasecmp(e->values[i], s) == 0)
            return e->values[i];
    return NULL;
}
