"""xenapid's stand-in for sm's `xs_errors`: the SR exceptions and XenError,
which turns an error name into an SROSError(code, description [opterr=...]).
Names come from XE_SR_ERRORCODES.xml when the host has it, else from the
table below (host-tools.md §4.5, and VDISize which vhdutil raises)."""

import errno
import os
import xml.dom.minidom
import xmlrpc.client

XML_DEFS = "/usr/share/sm/XE_SR_ERRORCODES.xml"

# name: (code, description)
BUILTIN = {
    "SRInUse": (16, "The SR device is currently in use"),
    "VDIInUse": (24, "The VDI is currently in use"),
    "SRNoSpace": (44, "There is insufficient space"),
    "VDIUnavailable": (46, "The VDI is not available"),
    "SRUnavailable": (47, "The SR is not available"),
    "VDISize": (79, "VDI Invalid size"),
    "LVMMount": (52, "Logical Volume mount/activate error"),
    "NFSVersion": (72, "Required NFS server version unsupported"),
    "NFSMount": (73, "NFS mount error"),
    "ConfigDeviceMissing": (90, "The request is missing the device parameter"),
    "ConfigServerPathMissing": (101, "The request is missing the serverpath parameter"),
    "NFSTarget": (108, "Unable to detect an NFS service on this target."),
    "SnapshotChainTooLong": (109, "The snapshot chain is too long"),
    "VDIMissing": (144, "VDI could not be found"),
}


class SRException(Exception):
    """Raised by SR operations; errno is the SM fault code."""
    errno = errno.EINVAL

    def __init__(self, reason):
        super().__init__(reason)

    def toxml(self):
        return xmlrpc.client.dumps(xmlrpc.client.Fault(int(self.errno), str(self)), "", True)


class SROSError(SRException):
    """An SR error with its code (errno) and text (reason)."""

    def __init__(self, errno, reason):
        self.errno = errno
        self.reason = reason
        super().__init__(reason)

    def message(self):
        return self.reason


def _table():
    table = dict(BUILTIN)
    if os.path.exists(XML_DEFS):
        try:
            dom = xml.dom.minidom.parse(XML_DEFS)
            for node in dom.getElementsByTagName("code"):
                fields = {}
                for child in node.childNodes:
                    if child.nodeType == child.ELEMENT_NODE:
                        fields[child.nodeName] = "".join(t.data for t in child.childNodes
                                                         if t.nodeType == t.TEXT_NODE)
                if "name" in fields and "value" in fields:
                    table[fields["name"]] = (int(fields["value"]), fields.get("description", ""))
        except Exception:
            pass  # a broken host file: the built-in names still work
    return table


class XenError(Exception):
    """XenError(name, opterr=None) makes (and `raise` raises) an SROSError:
    the name's code and description, plus " [opterr=...]"; an unknown name
    gives code 1, "Error reporting error, unknown key <name>"."""

    def __new__(cls, key, opterr=None):
        entry = _table().get(key)
        if entry is None:
            return SROSError(1, "Error reporting error, unknown key %s" % key)
        message = entry[1]
        if opterr is not None:
            message += " [opterr=%s]" % opterr
        return SROSError(entry[0], message)
