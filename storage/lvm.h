/* LVM volume groups and logical volumes through lvm2's commands (the lvm
 * SR, storage/drv_lvm.c): every command is run from an argv (never a
 * shell), with a time limit and bounded output, and its JSON report
 * (--reportformat json) parsed here, apart from the running, so that
 * recorded outputs can be tested without device-mapper. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "storage/command.h"


/* One row of a report: the values of the requested fields, in their order. */
typedef struct storage_lvm_row {
    char **values;
} storage_lvm_row;

/* Parses lvm2's `--reportformat json` output: the rows of the report
 * section `kind` ("vg", "lv", "pv"), each with the fields named by
 * `fields` (nfields of them; a missing field is an error: -EBADMSG).
 * At most max rows (-E2BIG beyond). */
int storage_lvm_report_parse(const char *json, const char *kind, const char *const *fields, size_t nfields,
                             size_t max, storage_lvm_row **ret_rows, size_t *ret_n);
void storage_lvm_rows_free(storage_lvm_row *rows, size_t n, size_t nfields);

/* A decimal byte count as lvm2 prints it with --units b --nosuffix ("62914560", or "62914560B"). */
int storage_lvm_parse_bytes(const char *s, int64_t *ret);

/* SR.probe's answer from `pvs -o pv_name,vg_name,vg_size` rows: one SR per
 * VG_XenStorage-<uuid>, with its devices (Devlist) and size, as sm's
 * lvutil.srlist_toxml (minidom's pretty print). Always 0. */
int storage_lvm_probe_xml(const storage_lvm_row *pvs, size_t n, char **ret_xml);
