"""xenapid's stand-in for sm's `lvhdutil`: names of LVM-based SRs (VGs
/dev/VG_XenStorage-<sr>, LVs VHD-<vdi> or LV-<vdi>) and the sizes of VHDs on
LVs."""

import os

import util
import vhdutil

VG_LOCATION = "/dev"
VG_PREFIX = "VG_XenStorage-"
LVM_SIZE_INCREMENT = 4 * 1024 * 1024
MSIZE_MB = 2 * 1024 * 1024  # MiB of virtual size the metadata is made for (fast resize)
MSIZE = int(MSIZE_MB * 1024 * 1024)
LV_PREFIX = {vhdutil.VDI_TYPE_VHD: "VHD-", vhdutil.VDI_TYPE_RAW: "LV-"}
VDI_TYPES = [vhdutil.VDI_TYPE_VHD, vhdutil.VDI_TYPE_RAW]
NS_PREFIX_LVM = "lvm-"
JRN_INFLATE = "inflate"
JVHD_TAG = "jvhd"


def matchLV(lvName):
    """(vdi type, uuid) of an LV name, or (None, None)."""
    for vdiType in VDI_TYPES:
        if lvName.startswith(LV_PREFIX[vdiType]):
            return vdiType, lvName[len(LV_PREFIX[vdiType]):]
    return None, None


def extractUuid(path):
    """The VDI uuid in an LV path or name (…/VHD-<uuid>, LV-<uuid>, or the
    device-mapper name with doubled dashes); None if there is none."""
    name = os.path.basename(path.strip())
    if name.startswith(VG_PREFIX):  # /dev/mapper/VG_XenStorage--sr-VHD--uuid
        name = name.replace("--", "-")
    for t in VDI_TYPES:
        if LV_PREFIX[t] in name:
            return name.split(LV_PREFIX[t])[-1].strip()
    return None


def calcSizeLV(sizeVHD):
    return util.roundup(LVM_SIZE_INCREMENT, sizeVHD)


def calcSizeVHDLV(sizeVirt):
    """LV bytes for a fully allocated VHD of sizeVirt (metadata for MSIZE)."""
    return calcSizeLV(sizeVirt + vhdutil.calcOverheadEmpty(MSIZE) + vhdutil.calcOverheadBitmap(sizeVirt))
