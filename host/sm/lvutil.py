"""xenapid's stand-in for sm's `lvutil`: only what host plugins reach for
(CloudStack's import it without calling it): LV paths and existence."""

import os

import lvhdutil

VG_LOCATION = lvhdutil.VG_LOCATION
VG_PREFIX = lvhdutil.VG_PREFIX


def _lvpath(vgname, lvname):
    return os.path.join(VG_LOCATION, vgname, lvname)


def exists(path):
    """True if the LV's device link exists (the LV is active)."""
    return os.path.exists(path)


def lvpath(vgname, lvname):
    return _lvpath(vgname, lvname)
