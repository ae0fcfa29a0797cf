/* lvm2 commands and their reports (see storage/lvm.h). */
#include <errno.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "storage/lvm.h"
#include "xapi/buf.h"
#include "xapi/value.h"


void storage_lvm_rows_free(storage_lvm_row *rows, size_t n, size_t nfields) {
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < nfields; k++)
            free(rows[i].values[k]);
        free(rows[i].values);
    }
    free(rows);
}

int storage_lvm_report_parse(const char *json, const char *kind, const char *const *fields, size_t nfields,
                             size_t max, storage_lvm_row **ret_rows, size_t *ret_n) {
    json_object *root = NULL, *report, *list = NULL;
    storage_lvm_row *rows = NULL;
    size_t n = 0, count;
    int rc = 0;

    root = json ? json_tokener_parse(json) : NULL;
    if (!root || !json_object_object_get_ex(root, "report", &report) ||
        !json_object_is_type(report, json_type_array)) {
        rc = -EBADMSG;
        goto out;
    }
    /* One section per command; a command on several VGs may print several. */
    for (size_t s = 0; s < json_object_array_length(report) && !list; s++) {
        json_object *sec = json_object_array_get_idx(report, s);
        if (!json_object_object_get_ex(sec, kind, &list))
            list = NULL;
    }
    if (!list || !json_object_is_type(list, json_type_array)) {
        rc = -EBADMSG;
        goto out;
    }
    count = json_object_array_length(list);
    if (count > max) {
        rc = -E2BIG;
        goto out;
    }
    rows = xapi_calloc(count ? count : 1, sizeof *rows);
    for (; n < count; n++) {
        json_object *row = json_object_array_get_idx(list, n);

        rows[n].values = xapi_calloc(nfields, sizeof *rows[n].values);
        for (size_t k = 0; k < nfields; k++) {
            json_object *v;
            if (!json_object_object_get_ex(row, fields[k], &v) || !json_object_is_type(v, json_type_string)) {
                n++;
                rc = -EBADMSG;
                goto out;
            }
            rows[n].values[k] = xapi_strdup(json_object_get_string(v));
        }
    }
    *ret_rows = rows;
    *ret_n = n;
    rows = NULL;
out:
    if (rows)
        storage_lvm_rows_free(rows, n, nfields);
    json_object_put(root);
    return rc;
}

int storage_lvm_parse_bytes(const char *s, int64_t *ret) {
    char *end;
    long long v;

    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || (*end && strcmp(end, "B") != 0))
        return -EINVAL;
    *ret = v;
    return 0;
}
