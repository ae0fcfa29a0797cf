/* libFuzzer target: what the iscsi SRs read from outside (storage/iscsi.c):
 * iscsiadm's discovery output, and a device's VPD page 0x83 and wwid (a
 * target chooses them). Parsed records must make well-formed probe XML, and
 * any SCSIid found must be one a location may be. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "storage/iscsi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_xml(const char *xml) {
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "probe.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR);

    if (!doc)
        abort(); /* the writer made a malformed document */
    xmlFreeDoc(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1), id[STORAGE_ISCSI_MAX_ID + 1], *xml = NULL;
    storage_iscsi_portal *p = NULL;
    size_t n = 0;

    memcpy(text, data, size);
    text[size] = '\0';
    if (storage_iscsi_parse_discovery(text, STORAGE_ISCSI_MAX_TARGETS, &p, &n) == 0) {
        storage_iscsi_targets_xml(p, n, "127.0.0.1", 3260, &xml);
        check_xml(xml);
        free(xml);
        storage_iscsi_portals_free(p, n);
    }
    if (storage_iscsi_scsi_id_from_vpd83(data, size, id) == 0 && !storage_iscsi_scsi_id_valid(id))
        abort();
    if (storage_iscsi_scsi_id_from_wwid(text, id) == 0 && !storage_iscsi_scsi_id_valid(id))
        abort();
    /* a target names its vendor and serial: the LUN XML carries them escaped */
    for (size_t i = 0; i < size; i++) /* as sysfs attributes are read: printable ASCII */
        if (text[i] && ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7e))
            text[i] = '?';
    {
        storage_iscsi_lun l = {.scsi_id = (char *)"3600", .dev = (char *)"sdb", .vendor = text,
                               .serial = text, .lun = 1, .size = 512};
        storage_iscsi_luns_xml(&l, 1, &xml);
        if (strlen(text) == size) /* with no NUL inside, the text is all there */
            check_xml(xml);
        free(xml);
    }
    free(text);
    return 0;
}
