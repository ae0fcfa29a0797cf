"""xenapid's stand-in for sm's `cleanup` (the GC): the VDI classes whose
extractUuid plugins use to turn a VHD path into a VDI uuid. xenapid runs no
storage GC from here."""

import os

import lvhdutil
import vhdutil


class VDI:
    """A VDI of a VHD chain."""

    @staticmethod
    def extractUuid(path):
        raise NotImplementedError("extractUuid of a generic VDI")


class FileVDI(VDI):
    """A VDI of a file SR (ext, nfs): <uuid>.vhd or <uuid>.raw."""

    FILE_SUFFIX = vhdutil.FILE_EXTN_VHD

    @staticmethod
    def extractUuid(path):
        name = os.path.basename(path.strip())
        for suffix in (vhdutil.FILE_EXTN_VHD, vhdutil.FILE_EXTN_RAW):
            if name.endswith(suffix):
                return name[:-len(suffix)]
        return None


class LVHDVDI(VDI):
    """A VDI of an LVM SR: VHD-<uuid> or LV-<uuid>."""

    @staticmethod
    def extractUuid(path):
        return lvhdutil.extractUuid(path)
