"""A fixed VHD (raw data then the 512-byte footer), as the tests' stand-in for
the images Glance and CloudStack's secondary storage hand over."""

import struct
import time
import uuid

VHD_EPOCH = 946684800  # 2000-01-01


def footer(size, disk_uuid):
    cylinders, heads, sectors = min(size // 512 // (16 * 255), 65535), 16, 255
    data = bytearray(struct.pack(">8sIIQI4sIIQQHBBII16sB427x", b"conectix", 2, 0x00010000, 0xFFFFFFFFFFFFFFFF,
                                 int(time.time()) - VHD_EPOCH, b"tst ", 0x00010000, 0x5769326B, size, size,
                                 cylinders, heads, sectors, 2, 0, uuid.UUID(disk_uuid).bytes, 0))
    data[64:68] = struct.pack(">I", ~sum(data) & 0xFFFFFFFF)
    return bytes(data)


def write_fixed(path, size, disk_uuid):
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(size)
        f.write(footer(size, disk_uuid))
