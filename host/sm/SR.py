"""xenapid's stand-in for sm's `SR`: the constants plugins build paths from.
xenapid's SR drivers are in the daemon (storage/), not here."""

import xs_errors

MOUNT_BASE = "/run/sr-mount"  # /var/run/sr-mount through the /var/run link
DEFAULT_TAP = "vhd"
TAPDISK_UTIL = "/usr/sbin/td-util"
SRException = xs_errors.SRException


class SR:
    """A storage repository as an SM driver sees it: its uuid and path."""

    def __init__(self, srcmd=None, sr_uuid=None):
        self.srcmd = srcmd
        self.uuid = sr_uuid
        self.path = "%s/%s" % (MOUNT_BASE, sr_uuid) if sr_uuid else None
        self.vdis = {}
