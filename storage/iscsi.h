/* iSCSI for the iscsi and lvmoiscsi SRs (storage/drv_iscsi.c): what
 * open-iscsi's iscsiadm prints, the LUNs a session shows in sysfs and the
 * probe XML sm's BaseISCSI answers, parsed and written here apart from
 * running anything, so that recorded outputs and a made-up sysfs tree can be
 * tested on a machine without an iSCSI initiator. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORAGE_ISCSI_DEFAULT_PORT 3260
#define STORAGE_ISCSI_MAX_TARGETS 256 /* portals one discovery may list */
#define STORAGE_ISCSI_MAX_LUNS 256    /* LUNs of one target */
#define STORAGE_ISCSI_MAX_ID 128      /* characters of a SCSIid */

/* iscsiadm's program (config iscsiadm) and the sysfs root LUNs are looked up under (config iscsi_sysfs_root). */
extern char storage_iscsiadm[1024];
extern char storage_iscsi_sysfs_root[1024];

/* One record of `iscsiadm -m discovery -t sendtargets`: "<address>:<port>,<tpgt> <iqn>". */
typedef struct storage_iscsi_portal {
    char *address; /* an IPv4 address, or an IPv6 one in brackets as iscsiadm prints it */
    int port;
    char *iqn;
} storage_iscsi_portal;

/* Parses discovery output: at most max records (-E2BIG beyond), -EBADMSG for a line that is no record. */
int storage_iscsi_parse_discovery(const char *out, size_t max, storage_iscsi_portal **ret, size_t *ret_n);
void storage_iscsi_portals_free(storage_iscsi_portal *p, size_t n);

/* sm's iscsi-target-iqns XML (BaseISCSI print_entries): a TGT (Index,
 * IPAddress, Port when not 3260, TargetIQN) per record, then the target
 * asked about with the IQN "*" (any). */
int storage_iscsi_targets_xml(const storage_iscsi_portal *p, size_t n, const char *target, int port, char **ret_xml);

/* A LUN as sysfs shows it. */
typedef struct storage_iscsi_lun {
    char *scsi_id; /* as udev's scsi_id --whitelisted --replace-whitespace prints it */
    char *dev;     /* its kernel name (sdb): /dev/<dev> */
    char *vendor;  /* trimmed, "" if unknown */
    char *serial;  /* VPD page 0x80, "" if none */
    unsigned lun;
    int64_t size;  /* bytes */
} storage_iscsi_lun;

/* The SCSIid of a device from its VPD page 0x83 (device identification) as
 * udev's scsi_id picks it: a logical unit's NAA designator ("3" + hex), else
 * its EUI-64 ("2" + hex), else its T10 vendor id ("1" + text, blanks as "_").
 * 0 and the id in ret (size STORAGE_ISCSI_MAX_ID + 1), or -ENODATA. */
int storage_iscsi_scsi_id_from_vpd83(const uint8_t *page, size_t len, char *ret);
/* The same from sysfs's "wwid" attribute (naa.<hex>, eui.<hex>, t10.<text>). */
int storage_iscsi_scsi_id_from_wwid(const char *wwid, char *ret);

/* The LUNs (disks with a block device) of every session logged in to
 * target_iqn, from <sysfs root>/class/iscsi_session/session* (targetname,
 * device/target<h:c:t>/<h:c:t:l>/{block/<dev>/size,vendor,vpd_pg80,vpd_pg83,wwid}),
 * each SCSIid once, by LUN number. At most STORAGE_ISCSI_MAX_LUNS (-E2BIG).
 * 0 with *ret_n = 0 when no session is logged in. */
int storage_iscsi_find_luns(const char *sysfs_root, const char *target_iqn, storage_iscsi_lun **ret, size_t *ret_n);
/* Whether a session to target_iqn is logged in. */
bool storage_iscsi_session_exists(const char *sysfs_root, const char *target_iqn);
void storage_iscsi_luns_free(storage_iscsi_lun *l, size_t n);

/* sm's iscsi-target XML of LUNs (print_LUNs_XML): a LUN (vendor, serial,
 * LUNid, size, SCSIid; empty ones left out) each. */
int storage_iscsi_luns_xml(const storage_iscsi_lun *l, size_t n, char **ret_xml);

/* An IQN as RFC 3720 names nodes (iqn./eui./naa. and characters iscsiadm takes as one argument). */
bool storage_iscsi_iqn_valid(const char *iqn);
/* A SCSIid as used in a location and a /dev/disk/by-id name. */
bool storage_iscsi_scsi_id_valid(const char *id);
