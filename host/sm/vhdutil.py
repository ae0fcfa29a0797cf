"""xenapid's stand-in for sm's `vhdutil`: VHD facts and changes through the
vhd-util command (xenapid's tools/vhd-util, blktap's on XenServer). Same
functions, arguments and results as sm's module."""

import errno
import os
import re
import zlib

import util
import xs_errors

MIN_VHD_SIZE = 2 * 1024 * 1024
MAX_VHD_SIZE = 2040 * 1024 * 1024 * 1024
MAX_VHD_JOURNAL_SIZE = 6 * 1024 * 1024
MAX_CHAIN_SIZE = 30
DEFAULT_VHD_BLOCK_SIZE = 2 * 1024 * 1024
VHD_FOOTER_SIZE = 512
OPT_LOG_ERR = "--debug"
LOCK_TYPE_SR = "sr"

VDI_TYPE_VHD = "vhd"
VDI_TYPE_RAW = "aio"
FILE_EXTN_VHD = ".vhd"
FILE_EXTN_RAW = ".raw"
FILE_EXTN = {VDI_TYPE_VHD: FILE_EXTN_VHD, VDI_TYPE_RAW: FILE_EXTN_RAW}

# The vhd-util program: $XENAPID_VHD_UTIL, else the first of the host paths that exists.
VHD_UTIL_ENV = "XENAPID_VHD_UTIL"
VHD_UTIL_PATHS = ("/usr/bin/vhd-util", "/usr/sbin/vhd-util")


def _find_vhd_util():
    if os.environ.get(VHD_UTIL_ENV):
        return os.environ[VHD_UTIL_ENV]
    for path in VHD_UTIL_PATHS:
        if os.access(path, os.X_OK):
            return path
    return VHD_UTIL_PATHS[0]


VHD_UTIL = _find_vhd_util()


class VHDInfo:
    """What a query or a scan line says about one image."""
    uuid = ""
    path = ""
    sizeVirt = -1
    sizePhys = -1
    sizeAllocated = -1
    hidden = False
    parentUuid = ""
    parentPath = ""
    error = 0

    def __init__(self, uuid):
        self.uuid = uuid


def calcOverheadEmpty(virtual_size):
    """Metadata bytes of an empty VHD of virtual_size: footers, header,
    locators, BAT (sector-rounded), batmap, rounded to 4 KiB."""
    blocks = virtual_size // (1024 * 1024) // 2
    overhead = util.roundup(512, 3 * 1024 + blocks * 4)
    return util.roundup(4096, overhead + blocks // 8)


def calcOverheadBitmap(virtual_size, block_size=DEFAULT_VHD_BLOCK_SIZE):
    """Sector-bitmap bytes of a fully allocated VHD (4 KiB accounted per block)."""
    return -(-virtual_size // block_size) * 4096


def ioretry(cmd, text=True):
    """vhd-util's output, retried while it fails with EIO or EAGAIN."""
    return util.ioretry(lambda: util.pread2(cmd, text=text), errlist=[errno.EIO, errno.EAGAIN])


def _query(path, opts):
    return ioretry([VHD_UTIL, "query", OPT_LOG_ERR, opts, "-n", path])


def getBlockSize(path):
    for line in ioretry([VHD_UTIL, "read", "-pn", path]).split("\n"):
        line = line.lstrip()
        if line.startswith("Block size"):
            return int(line.split(":")[1].split()[0])
    raise util.SMException("Unable to find block size in VHD with path: {}".format(path))


def convertAllocatedSizeToBytes(size, block_size):
    return size * block_size


def getVHDInfo(path, extractUuidFunction, includeParent=True):
    """VHDInfo of path from one query (-vsaf[p]); includeParent=False skips
    resolving the parent (which must otherwise exist)."""
    fields = _query(path, "-vsafp" if includeParent else "-vsaf").strip().split("\n")
    info = VHDInfo(extractUuidFunction(path))
    info.sizeVirt = int(fields[0]) * 1024 * 1024
    info.sizePhys = int(fields[1])
    i = 2
    if includeParent:
        if "no parent" not in fields[i]:
            info.parentPath = fields[i]
            info.parentUuid = extractUuidFunction(fields[i])
        i += 1
    info.hidden = int(fields[i].replace("hidden: ", ""))
    info.sizeAllocated = convertAllocatedSizeToBytes(int(fields[i + 1]), getBlockSize(path))
    info.path = path
    return info


def _parseVHDInfo(line, extractUuidFunction):
    """VHDInfo of one `vhd-util scan` line; None if it is not one."""
    words = line.split()
    if not words or not words[0].startswith("vhd="):
        return None
    info = None
    for word in words:
        key, _, val = word.partition("=")
        if key == "vhd":
            uuid = extractUuidFunction(val)
            if not uuid:
                util.SMlog("***** malformed output, no UUID: %s" % words)
                return None
            info = VHDInfo(uuid)
            info.path = val
        elif key == "scan-error":
            info.error = line
            util.SMlog("***** VHD scan error: %s" % line)
            break
        elif key == "capacity":
            info.sizeVirt = int(val)
        elif key == "size":
            info.sizePhys = int(val)
        elif key == "hidden":
            info.hidden = int(val)
        elif key == "parent" and val != "none":
            info.parentPath = val
            info.parentUuid = extractUuidFunction(val)
    return info


def getVHDInfoLVM(lvName, extractUuidFunction, vgName):
    """VHDInfo of LV lvName of volume group vgName, from a scan (the LV need
    not be active for blktap's vhd-util; xenapid's reads /dev/VG/LV)."""
    return _parseVHDInfo(ioretry([VHD_UTIL, "scan", "-f", "-l", vgName, "-m", lvName]), extractUuidFunction)


def getAllVHDs(pattern, extractUuidFunction, vgName=None, parentsOnly=False, exitOnError=False):
    """{uuid: VHDInfo} of the images matching pattern (a glob; LV names with vgName)."""
    cmd = [VHD_UTIL, "scan", "-f", "-m", pattern]
    if vgName:
        cmd += ["-l", vgName]
    if parentsOnly:
        cmd.append("-a")
    try:
        text = ioretry(cmd)
    except Exception as e:
        util.SMlog("WARN: vhd scan failed: output: %s" % e)
        text = ioretry(cmd + ["-c"])
    vhds = {}
    for line in text.split("\n"):
        if not line.strip():
            continue
        info = _parseVHDInfo(line, extractUuidFunction)
        if not info:
            util.SMlog("WARN: vhdinfo line doesn't parse correctly: %s" % line)
            continue
        if info.error and exitOnError:
            return {}
        vhds[info.uuid] = info
    return vhds


def getParentChain(lvName, extractUuidFunction, vgName):
    """{uuid: path} of an LV's image and all its parents."""
    return {uuid: info.path for uuid, info in getAllVHDs(lvName, extractUuidFunction, vgName, True, True).items()}


def getParent(path, extractUuidFunction):
    """The parent's uuid (extractUuidFunction of its path), or None for an
    image without a parent. util.CommandException if vhd-util fails (the
    parent cannot be found), util.SMException on an unexpected answer."""
    text = _query(path, "-p")
    if "query failed" in text or "Failed opening" in text:
        raise util.SMException("VHD query returned %s" % text)
    if "no parent" in text:
        return None
    return extractUuidFunction(text)


def hasParent(path):
    """True for a differencing image, whether or not its parent is reachable."""
    text = ioretry([VHD_UTIL, "read", OPT_LOG_ERR, "-p", "-n", path])
    m = re.search(r"Disk type\s+: (\S+) hard disk", text)
    if not m:
        raise util.SMException("no disk type in the headers of %s" % path)
    return m.group(1) == "Differencing"


def setParent(path, parentPath, parentRaw):
    cmd = [VHD_UTIL, "modify", OPT_LOG_ERR, "-p", os.path.normpath(parentPath), "-n", path]
    if parentRaw:
        cmd.append("-m")
    ioretry(cmd)


def getHidden(path):
    return int(_query(path, "-f").split(":")[-1].strip())


def setHidden(path, hidden=True):
    """Sets (or clears) the footer's hidden flag, which marks base copies."""
    ioretry([VHD_UTIL, "set", OPT_LOG_ERR, "-n", path, "-f", "hidden", "-v", "1" if hidden else "0"])


def getSizeVirt(path):
    """Virtual size in bytes (vhd-util counts whole MiB)."""
    return int(_query(path, "-v")) * 1024 * 1024


def setSizeVirt(path, size, jFile):
    """Resizes offline (journaled in jFile)."""
    ioretry([VHD_UTIL, "resize", OPT_LOG_ERR, "-s", str(size // (1024 * 1024)), "-n", path, "-j", jFile])


def setSizeVirtFast(path, size):
    """Resizes within the preallocated metadata (online)."""
    ioretry([VHD_UTIL, "resize", OPT_LOG_ERR, "-s", str(size // (1024 * 1024)), "-n", path, "-f"])


def getMaxResizeSize(path):
    """The virtual size (MiB) a fast resize can reach."""
    return int(_query(path, "-S"))


def getSizePhys(path):
    """Bytes the image takes: the end of its data plus the footer."""
    return int(_query(path, "-s"))


def setSizePhys(path, size, debug=True):
    """Places the footer at the end of `size` bytes (VHDs on LVs)."""
    cmd = [VHD_UTIL, "modify"] + ([OPT_LOG_ERR] if debug else []) + ["-s", str(size), "-n", path]
    ioretry(cmd)


def getAllocatedSize(path):
    return convertAllocatedSizeToBytes(int(_query(path, "-a")), getBlockSize(path))


def killData(path):
    """Drops every block: the disk reads as zeros (or as its parent)."""
    ioretry([VHD_UTIL, "modify", OPT_LOG_ERR, "-z", "-n", path])


def getDepth(path):
    """Chain depth (1: no parent), -1 if vhd-util answers otherwise."""
    text = _query(path, "-d")
    if text.startswith("chain depth:"):
        return int(text.split(":")[1].strip())
    return -1


def getBlockBitmap(path):
    return zlib.compress(ioretry([VHD_UTIL, "read", OPT_LOG_ERR, "-B", "-n", path], text=False))


def coalesce(path):
    """Merges path's data into its parent; the number of sectors copied."""
    m = re.match(r"^Coalesced (\d+) sectors", ioretry([VHD_UTIL, "coalesce", OPT_LOG_ERR, "-n", path]))
    return int(m.group(1)) if m else 0


def create(path, size, static, msize=0):
    """A new image of `size` bytes (fixed when static; metadata for msize MiB with msize)."""
    cmd = [VHD_UTIL, "create", OPT_LOG_ERR, "-n", path, "-s", str(size // (1024 * 1024))]
    if static:
        cmd.append("-r")
    if msize:
        cmd += ["-S", str(msize)]
    ioretry(cmd)


def snapshot(path, parent, parentRaw, msize=0, checkEmpty=True):
    """A new differencing image at path over parent (checkEmpty: link past empty parents)."""
    cmd = [VHD_UTIL, "snapshot", OPT_LOG_ERR, "-n", path, "-p", parent]
    if parentRaw:
        cmd.append("-m")
    if msize:
        cmd += ["-S", str(msize)]
    if not checkEmpty:
        cmd.append("-e")
    ioretry(cmd)


def check(path, ignoreMissingFooter=False, fast=False):
    """True if vhd-util check finds the image valid."""
    cmd = [VHD_UTIL, "check", OPT_LOG_ERR, "-n", path]
    if ignoreMissingFooter:
        cmd.append("-i")
    if fast:
        cmd.append("-B")
    try:
        ioretry(cmd)
        return True
    except util.CommandException:
        return False


def revert(path, jFile):
    ioretry([VHD_UTIL, "revert", OPT_LOG_ERR, "-n", path, "-j", jFile])


def repair(path):
    """Rewrites the primary footer from the copy at the start."""
    ioretry([VHD_UTIL, "repair", "-n", path])


def validate_and_round_vhd_size(size, block_size=DEFAULT_VHD_BLOCK_SIZE):
    """size checked against MAX_VHD_SIZE (XenError VDISize), at least
    MIN_VHD_SIZE, rounded up to block_size."""
    if size < 0 or size > MAX_VHD_SIZE:
        raise xs_errors.XenError("VDISize", opterr="VDI size must be between 1 MB and %d MB"
                                 % (MAX_VHD_SIZE // (1024 * 1024)))
    return util.roundup(block_size, max(size, MIN_VHD_SIZE))
