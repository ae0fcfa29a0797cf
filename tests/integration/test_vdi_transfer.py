"""PUT /import_raw_vdi and GET /export_raw_vdi against the real daemon, the
way Nova's XenAPI driver and curl scripts use them: raw and VHD (fixed and
dynamic) images in, raw and dynamic VHD out, tasks, authentication, the VDI
kept busy during a transfer, and the errors."""

import base64
import http.client
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from harness import PASSWORD, DaemonTest, fail, ok

KiB = 1 << 10
MiB = 1 << 20
SECTOR = 512
MAX_BODY = 300 * 1024


# ---- VHD images, built and read the way the VHD specification lays them out ----

def vhd_checksum(b, at):
    return ~(sum(b[:at]) + sum(b[at + 4:])) & 0xFFFFFFFF


def vhd_footer(size, disk_type, data_offset):
    f = bytearray(512)
    struct.pack_into(">8sIIQI4sI4sQQIII", f, 0, b"conectix", 2, 0x10000, data_offset, 0, b"test", 0x10000,
                     b"Wi2k", size, size, 0, disk_type, 0)
    f[68:84] = os.urandom(16)
    struct.pack_into(">I", f, 64, vhd_checksum(f, 64))
    return bytes(f)


def fixed_vhd(data):
    return data + vhd_footer(len(data), 2, 0xFFFFFFFFFFFFFFFF)


def dynamic_vhd(data, size=None, block_size=2 * MiB, reverse=False, absent_sectors=(), gap=0, disk_type=3):
    """A dynamic VHD of data (zero-padded to size): only blocks with data are
    stored (in reverse disk order if asked), sectors listed in absent_sectors
    are marked absent in their block's bitmap (and filled with junk, which
    must not be read), gap bytes of padding before the BAT."""
    size = size if size is not None else len(data)
    data = data + bytes(size - len(data))
    nblocks = -(-size // block_size)
    bitmap_len = -(-((block_size // SECTOR + 7) // 8) // SECTOR) * SECTOR
    bat_at = 512 + 1024 + gap
    data_start = -(-(bat_at + 4 * nblocks) // SECTOR) * SECTOR
    present = [i for i in range(nblocks) if any(data[i * block_size:(i + 1) * block_size])]
    if reverse:
        present.reverse()
    bat = [0xFFFFFFFF] * nblocks
    blocks = b""
    for k, i in enumerate(present):
        bat[i] = (data_start + k * (bitmap_len + block_size)) // SECTOR
        bitmap = bytearray(b"\xff" * bitmap_len)
        chunk = bytearray(data[i * block_size:(i + 1) * block_size].ljust(block_size, b"\0"))
        for s in absent_sectors:
            if i * block_size <= s * SECTOR < (i + 1) * block_size:
                j = s - i * block_size // SECTOR
                bitmap[j // 8] &= ~(0x80 >> (j % 8))
                chunk[j * SECTOR:(j + 1) * SECTOR] = b"\xa5" * SECTOR
        blocks += bytes(bitmap) + bytes(chunk)
    footer = vhd_footer(size, disk_type, 512)
    header = bytearray(1024)
    struct.pack_into(">8sQQIII", header, 0, b"cxsparse", 0xFFFFFFFFFFFFFFFF, bat_at, 0x10000, nblocks, block_size)
    struct.pack_into(">I", header, 36, vhd_checksum(header, 36))
    meta = footer + bytes(header) + bytes(gap) + struct.pack(">%dI" % nblocks, *bat)
    return meta.ljust(data_start, b"\0") + blocks + footer


def read_dynamic_vhd(img):
    """Reads a dynamic VHD as Nova's VHDDynDiskParser does (footer copy,
    header, BAT right after it, blocks of a 512-byte bitmap and data back to
    back) and returns (raw disk bytes, number of blocks stored)."""
    footer = img[:512]
    assert footer[:8] == b"conectix" and struct.unpack_from(">I", footer, 64)[0] == vhd_checksum(footer, 64)
    (data_offset,) = struct.unpack_from(">Q", footer, 16)
    (size,) = struct.unpack_from(">Q", footer, 48)
    (disk_type,) = struct.unpack_from(">I", footer, 60)
    assert disk_type == 3, disk_type
    header = img[data_offset:data_offset + 1024]
    assert header[:8] == b"cxsparse" and struct.unpack_from(">I", header, 36)[0] == vhd_checksum(header, 36)
    bat_at, _, entries, block_size = struct.unpack_from(">QIII", header, 16)
    bat = struct.unpack_from(">%dI" % entries, img, bat_at)
    stored = sum(1 for e in bat if e != 0xFFFFFFFF)
    # Nova's get_vhd_file_size: what it expects the stream to hold.
    data_start = -(-(bat_at + 4 * entries) // 512) * 512
    assert block_size == 2 * MiB
    assert len(img) == data_start + stored * (512 + block_size) + 512, len(img)
    assert img[-512:] == footer
    raw = bytearray(size)
    for i, e in enumerate(bat):
        if e == 0xFFFFFFFF:
            continue
        at = e * 512
        assert img[at:at + 512] == b"\xff" * 512
        chunk = img[at + 512:at + 512 + block_size][:size - i * block_size]
        raw[i * block_size:i * block_size + len(chunk)] = chunk
    return bytes(raw), stored


def zero_runs_image(size, edges):
    """size bytes alternating zeros and random data between the given edges (zeros first), and
    how many 4 KiB pages of it hold anything but zeros."""
    data = bytearray(size)
    points = [0] + sorted(edges) + [size]
    for i in range(1, len(points) - 1, 2):
        data[points[i]:points[i + 1]] = os.urandom(points[i + 1] - points[i]).replace(b"\0", b"\1")
    pages = sum(1 for at in range(0, size, 4 * KiB) if any(data[at:at + 4 * KiB]))
    return bytes(data), pages


def first_difference(got, want):
    """None if got == want, else where they first differ (a short message, not megabytes of bytes)."""
    if got == want:
        return None
    n = min(len(got), len(want))
    at = next((i for i in range(0, n, 4096) if got[i:i + 4096] != want[i:i + 4096]), n)
    at = next((i for i in range(at, min(at + 4096, n)) if got[i] != want[i]), n)
    return "lengths %d, %d; first difference at byte %d" % (len(got), len(want), at)


def odd_chunks(data, sizes=(1, 4095, 4097, 65535, 65537, 300001, 7, 262145, 511, 131072)):
    """data cut into pieces of the given sizes, in turn: the server sees its edges anywhere."""
    at, i = 0, 0
    while at < len(data):
        yield data[at:at + sizes[i % len(sizes)]]
        at += sizes[i % len(sizes)]
        i += 1


# Zero runs whose edges fall on a 4 KiB page, a byte either side of one, inside a sector, across the
# 64 KiB and 256 KiB edges where the import stops gathering and writes, and up to the disk's end.
ZERO_RUN_EDGES = (4096, 4096 * 2 + 1, 4096 * 5 - 1, 65533, 65541, 256 * KiB - 4096, 256 * KiB + 4103, MiB + 511,
                  3 * MiB - 513, 5 * MiB - 1, 5 * MiB, 5 * MiB + 300001, 8 * MiB + 4096, 8 * MiB + 3 * 4096,
                  12 * MiB - 4097, 12 * MiB - 1000)


class TransferBase(DaemonTest):
    def sr(self):
        """A file SR of the test's own: raw files of the exact virtual size, checked on disk (the
        local SR is ext, whose VHDs round sizes up to 2 MiB as sm's do: tests/integration/test_ext_sr.py)."""
        if not getattr(self, "_sr", None):
            host = ok(self.x.host.get_all(self.s))[0]
            path = tempfile.mkdtemp(dir=self.d.tmp)
            self._sr = ok(self.x.SR.create(self.s, host, {"location": path}, "0", "raw", "", "file", "user",
                                           False, {}))
        return self._sr

    def new_vdi(self, size=8 * MiB, **extra):
        rec = {"SR": self.sr(), "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
               "other_config": {}, "name_label": "transfer"}
        rec.update(extra)
        return ok(self.x.VDI.create(self.s, rec))

    def vdi_path(self, vdi):
        rec = ok(self.x.VDI.get_record(self.s, vdi))
        pbd = ok(self.x.SR.get_PBDs(self.s, rec["SR"]))[0]
        return os.path.join(ok(self.x.PBD.get_device_config(self.s, pbd))["location"], rec["location"] + ".raw")

    def query(self, vdi, session=None, **args):
        q = {"session_id": self.s if session is None else session, "vdi": vdi}
        q.update(args)
        return urllib.parse.urlencode({k: v for k, v in q.items() if v is not None})

    def put(self, vdi, body, headers=None, **args):
        return self.d.http("PUT", "/import_raw_vdi?" + self.query(vdi, **args), body,
                           dict({"Content-Type": "application/octet-stream"}, **(headers or {})), timeout=30)

    def get(self, vdi, headers=None, **args):
        return self.d.http("GET", "/export_raw_vdi?" + self.query(vdi, **args), headers=headers, timeout=30)

    def export_raw(self, vdi):
        status, headers, body = self.get(vdi)
        self.assertEqual(status, 200, body[:200])
        return body

    def task(self, ref):
        return ok(self.x.task.get_record(self.s, ref))

    def wait_task(self, ref, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = self.task(ref)
            if rec["status"] != "pending":
                return rec
            time.sleep(0.05)
        self.fail("task %s still pending" % ref)

    def read_reply_body(self, s):
        """The reply on socket s: status line and headers, then exactly Content-Length bytes (not
        waiting for the connection's end, as a client that has what it asked for does not)."""
        data = b""
        while b"\r\n\r\n" not in data:
            b = s.recv(65536)
            self.assertTrue(b, "the connection ended before the headers")
            data += b
        head, body = data.split(b"\r\n\r\n", 1)
        length = [int(l.split(b":", 1)[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
        while len(body) < length[0]:
            b = s.recv(65536)
            self.assertTrue(b, "the connection ended before the data")
            body += b
        return head, body

    def raw_request(self, head, body=b"", timeout=10):
        """Sends head (and body) on a raw socket; the reply up to the connection's end."""
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=timeout) as s:
            s.sendall(head + body)
            reply = b""
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    reply += b
            except (ConnectionResetError, socket.timeout):
                pass
            return reply


class TestRaw(TransferBase):
    def test_import_then_export(self):
        vdi = self.new_vdi(8 * MiB)
        data = os.urandom(MiB) + bytes(2 * MiB) + os.urandom(5000)
        status, headers, body = self.put(vdi, data)
        self.assertEqual(status, 200, body)
        task = headers["task-id"]
        rec = self.task(task)
        self.assertEqual(rec["status"], "success")
        self.assertIn(vdi, rec["result"])
        self.assertEqual(float(rec["progress"]), 1.0)

        status, headers, body = self.get(vdi)
        self.assertEqual(status, 200)
        uuid = ok(self.x.VDI.get_uuid(self.s, vdi))
        self.assertEqual(headers["Content-Type"], "application/octet-stream")
        self.assertEqual(headers["Content-Disposition"], 'attachment; filename="%s.raw"' % uuid)
        self.assertEqual(headers["Connection"], "close")
        self.assertEqual(self.task(headers["task-id"])["status"], "success")
        self.assertEqual(len(body), 8 * MiB)
        self.assertEqual(body, data + bytes(8 * MiB - len(data)))
        # the VDI is free again, its allocation refreshed
        rec = ok(self.x.VDI.get_record(self.s, vdi))
        self.assertEqual(rec["current_operations"], {})
        self.assertIn("destroy", rec["allowed_operations"])
        phys = int(rec["physical_utilisation"])
        self.assertGreaterEqual(phys, MiB + 5000)
        self.assertLess(phys, 2 * MiB)

    def test_by_uuid_and_overwrite(self):
        vdi = self.new_vdi(4 * MiB)
        uuid = ok(self.x.VDI.get_uuid(self.s, vdi))
        first = os.urandom(3 * MiB)
        self.assertEqual(self.put(uuid, first)[0], 200)
        second = b"\x01" * 4096 + bytes(MiB)  # overwrites the start; the rest stays
        self.assertEqual(self.put(uuid, second)[0], 200)
        got = self.export_raw(uuid)
        self.assertEqual(got, second + first[len(second):] + bytes(MiB))

    def test_sparse(self):
        size = 32 * MiB
        vdi = self.new_vdi(size)
        data = bytearray(size)
        data[5 * MiB:5 * MiB + 100] = b"x" * 100
        data[20 * MiB + 3:20 * MiB + 8000] = os.urandom(7997)
        self.assertEqual(self.put(vdi, bytes(data))[0], 200)
        st = os.stat(self.vdi_path(vdi))
        self.assertEqual(st.st_size, size)
        self.assertLessEqual(st.st_blocks * 512, 64 * KiB)  # only the data's pages are allocated
        self.assertEqual(int(ok(self.x.VDI.get_physical_utilisation(self.s, vdi))), st.st_blocks * 512)
        self.assertEqual(self.export_raw(vdi), bytes(data))
        # zeros written over data leave holes, not zero-filled blocks
        self.assertEqual(self.put(vdi, bytes(size))[0], 200)
        self.assertEqual(os.stat(self.vdi_path(vdi)).st_blocks, 0)
        self.assertEqual(self.export_raw(vdi), bytes(size))

    def test_zero_runs_at_unaligned_edges(self):
        """Zeros become holes only in whole 4 KiB pages, and are still zeros over old data: an
        image of zero runs with edges anywhere, sent in one piece and in pieces of odd sizes, reads
        back byte for byte, over a disk full of other bytes and into a fresh one, whose size ends
        inside a page."""
        size = 12 * MiB + 1234
        data, pages = zero_runs_image(size, ZERO_RUN_EDGES)
        for how in ("whole", "chunked"):
            for fresh in (False, True):
                vdi = self.new_vdi(size)
                if not fresh:
                    self.assertEqual(self.put(vdi, b"\xaa" * size)[0], 200)
                if how == "whole":
                    self.assertEqual(self.put(vdi, data)[0], 200)
                else:
                    c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=30)
                    c.request("PUT", "/import_raw_vdi?" + self.query(vdi), body=odd_chunks(data), encode_chunked=True)
                    r = c.getresponse()
                    self.assertEqual(r.status, 200, r.read())
                    c.close()
                self.assertIsNone(first_difference(self.export_raw(vdi), data),
                                  "%s, %s" % (how, "fresh" if fresh else "over data"))
                # every page of zeros is a hole (the file system's own blocks aside)
                self.assertLessEqual(os.stat(self.vdi_path(vdi)).st_blocks * 512, pages * 4 * KiB + 64 * KiB)
                ok(self.x.VDI.destroy(self.s, vdi))

    def test_export_follows_the_files_extents(self):
        """An export answers a file's holes with zeros without reading them: data and holes
        that begin and end inside one read, zeros that are written (data, not a hole), and a
        file shorter than the VDI, as raw and as VHD."""
        size = 3 * MiB
        vdi = self.new_vdi(size)
        data = bytearray(size)
        data[0:5000] = os.urandom(5000)
        data[300 * KiB + 7:300 * KiB + 9] = b"ab"          # alone in its read, amid holes
        data[2 * MiB - 100:2 * MiB + 100] = os.urandom(200)  # across a VHD block's edge
        path = self.vdi_path(vdi)
        fd = os.open(path, os.O_WRONLY)
        try:
            for start, end in ((0, 5000), (300 * KiB, 300 * KiB + 16), (2 * MiB - 100, 2 * MiB + 100)):
                os.pwrite(fd, bytes(data[start:end]), start)
            os.pwrite(fd, bytes(64 * KiB), MiB)  # written zeros: allocated, read as data
            os.ftruncate(fd, 2 * MiB + 4096)      # the rest of the VDI is past the file's end
        finally:
            os.close(fd)
        self.assertEqual(self.export_raw(vdi), bytes(data))
        status, headers, img = self.get(vdi, format="vhd")
        self.assertEqual(status, 200)
        raw, stored = read_dynamic_vhd(img)
        self.assertEqual(raw, bytes(data))
        self.assertEqual(stored, 2)  # both 2 MiB blocks have data; the third is past the file's end

    def test_chunked(self):
        vdi = self.new_vdi(4 * MiB)
        pieces = [os.urandom(100 * KiB + i) for i in range(7)]

        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=30)
        c.request("PUT", "/import_raw_vdi?" + self.query(vdi), body=iter(pieces), encode_chunked=True)
        r = c.getresponse()
        self.assertEqual(r.status, 200, r.read())
        c.close()
        data = b"".join(pieces)
        self.assertEqual(self.export_raw(vdi), data + bytes(4 * MiB - len(data)))

    def test_past_virtual_size_announced(self):
        vdi = self.new_vdi(MiB)
        before = os.urandom(MiB)
        self.assertEqual(self.put(vdi, before)[0], 200)
        task = ok(self.x.task.create(self.s, "import", ""))
        # as curl sends big bodies: refused before the body is sent
        reply = self.raw_request(
            b"PUT /import_raw_vdi?%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
            % (self.query(vdi, task_id=task).encode(), MiB + 1))
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply[:200])
        self.assertIn(b"VDI_TOO_SMALL", reply)
        rec = self.task(task)
        self.assertEqual(rec["status"], "failure")
        self.assertEqual(rec["error_info"], ["VDI_TOO_SMALL", vdi, str(MiB + 1)])
        self.assertEqual(self.export_raw(vdi), before)
        self.assertEqual(ok(self.x.VDI.get_virtual_size(self.s, vdi)), str(MiB))

    def test_past_virtual_size_chunked(self):
        vdi = self.new_vdi(MiB)
        task = ok(self.x.task.create(self.s, "import", ""))
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=30)
        c.request("PUT", "/import_raw_vdi?" + self.query(vdi, task_id=task),
                  body=iter([b"a" * (512 * KiB), b"b" * (512 * KiB), b"c"]), encode_chunked=True)
        r = c.getresponse()
        body = r.read()
        c.close()
        self.assertEqual(r.status, 413, body)
        rec = self.task(task)
        self.assertEqual(rec["status"], "failure")
        self.assertEqual(rec["error_info"][:2], ["VDI_TOO_SMALL", vdi])
        # the disk did not grow
        self.assertEqual(os.stat(self.vdi_path(vdi)).st_size, MiB)
        self.assertEqual(ok(self.x.VDI.get_virtual_size(self.s, vdi)), str(MiB))

    def test_body_in_pieces_past_the_first(self):
        """A body of known length whose first piece comes with the headers and the rest in odd
        pieces, paused: what MHD does not hand over is read from the socket (put_direct), every
        byte in place, and the reply (task-id, Connection: close) comes on the same connection."""
        vdi = self.new_vdi(4 * MiB)
        data = os.urandom(3 * MiB + 4097)
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=30) as s:
            s.sendall(b"PUT /import_raw_vdi?%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % (self.query(vdi).encode(), len(data)) + data[:1000])
            at = 1000
            for i, piece in enumerate(odd_chunks(data[1000:])):
                s.sendall(piece)
                at += len(piece)
                if i % 4 == 0:
                    time.sleep(0.01)
            self.assertEqual(at, len(data))
            head, body = self.read_reply_body(s)
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            self.assertIn(b"\r\nConnection: close", head)
            task = [l.split(b":", 1)[1].strip().decode() for l in head.split(b"\r\n")
                    if l.lower().startswith(b"task-id:")]
            self.assertEqual(self.task(task[0])["status"], "success")
            s.settimeout(10)
            self.assertEqual(s.recv(1), b"")  # closed after the reply
        self.assertEqual(self.export_raw(vdi), data + bytes(4 * MiB - len(data)))

    def test_body_cut_short(self):
        """A body of known length that ends early: the import fails, the VDI is free again."""
        vdi = self.new_vdi(4 * MiB)
        task = ok(self.x.task.create(self.s, "import", ""))
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=30) as s:
            s.sendall(b"PUT /import_raw_vdi?%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % (self.query(vdi, task_id=task).encode(), 3 * MiB) + os.urandom(2 * MiB))
            s.shutdown(socket.SHUT_WR)
            rec = self.wait_task(task, timeout=15)
        self.assertEqual(rec["status"], "failure")
        self.assertEqual(rec["error_info"][0], "INTERNAL_ERROR")
        self.assertEqual(ok(self.x.VDI.get_current_operations(self.s, vdi)), {})

    def test_curl(self):
        curl = shutil.which("curl")
        if not curl:
            self.skipTest("no curl")
        vdi = self.new_vdi(4 * MiB)
        tmp = tempfile.mkdtemp(dir=self.d.tmp)
        src, dst = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        with open(src, "wb") as f:
            f.write(os.urandom(3 * MiB))  # big enough for curl to send Expect: 100-continue
        base = "http://127.0.0.1:%d" % self.d.port
        out = subprocess.run([curl, "-sS", "-f", "-T", src, base + "/import_raw_vdi?" + self.query(vdi)],
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        # basic auth, as with `curl -u root:password`
        out = subprocess.run([curl, "-sS", "-f", "-u", "root:" + PASSWORD, "-o", dst,
                              base + "/export_raw_vdi?vdi=" + vdi], capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(src, "rb") as a, open(dst, "rb") as b:
            self.assertEqual(b.read(), a.read() + bytes(MiB))


class TestVHD(TransferBase):
    def test_dynamic_import(self):
        size = 6 * MiB
        vdi = self.new_vdi(size)
        data = bytearray(size)
        data[0:3000] = os.urandom(3000)
        data[4 * MiB + 512:5 * MiB] = os.urandom(MiB - 512)
        # blocks stored out of disk order; sectors 8 and 9 marked absent (junk in the image)
        img = dynamic_vhd(bytes(data), reverse=True, absent_sectors=(8, 9), gap=512)
        data[8 * 512:10 * 512] = bytes(1024)
        status, headers, body = self.put(vdi, img, format="vhd")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.task(headers["task-id"])["status"], "success")
        self.assertEqual(self.export_raw(vdi), bytes(data))
        # block 1 (2-4 MiB) is absent from the image: it stays a hole
        self.assertLess(int(ok(self.x.VDI.get_physical_utilisation(self.s, vdi))), 2 * MiB)

    def test_dynamic_small_blocks_and_rounded_size(self):
        # qemu-img rounds the virtual size up to a CHS geometry: past the VDI's end, only zeros
        vdi = self.new_vdi(2 * MiB)
        data = os.urandom(2 * MiB)
        img = dynamic_vhd(data, size=2 * MiB + 64 * KiB, block_size=512 * KiB)
        status, _, body = self.put(vdi, img, format="vhd")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.export_raw(vdi), data)
        # but data there is refused
        img = dynamic_vhd(data + b"\x01", size=2 * MiB + 64 * KiB, block_size=512 * KiB)
        task = ok(self.x.task.create(self.s, "import", ""))
        status, _, body = self.put(vdi, img, format="vhd", task_id=task)
        self.assertEqual(status, 413, body)
        self.assertEqual(self.task(task)["error_info"][:2], ["VDI_TOO_SMALL", vdi])

    def test_dynamic_replaces_old_content(self):
        vdi = self.new_vdi(4 * MiB)
        self.assertEqual(self.put(vdi, os.urandom(4 * MiB))[0], 200)
        data = bytes(3 * MiB) + os.urandom(MiB)
        self.assertEqual(self.put(vdi, dynamic_vhd(data), format="vhd")[0], 200)
        self.assertEqual(self.export_raw(vdi), data)

    def test_fixed_import(self):
        vdi = self.new_vdi(4 * MiB)
        data = os.urandom(MiB) + bytes(MiB) + os.urandom(1536)
        status, _, body = self.put(vdi, fixed_vhd(data), format="vhd")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.export_raw(vdi), data + bytes(4 * MiB - len(data)))

    def test_bad_images(self):
        vdi = self.new_vdi(4 * MiB)
        good = dynamic_vhd(os.urandom(MiB), size=4 * MiB)
        corrupt = bytearray(good)
        corrupt[600] ^= 0xFF  # inside the dynamic header: its checksum no longer matches
        cases = {
            "truncated": good[:len(good) // 2],
            "checksum": bytes(corrupt),
            "differencing": dynamic_vhd(os.urandom(MiB), size=4 * MiB, disk_type=4),
            "not a vhd": os.urandom(64 * KiB),
        }
        for name, img in cases.items():
            with self.subTest(name):
                task = ok(self.x.task.create(self.s, "import", ""))
                status, _, body = self.put(vdi, img, format="vhd", task_id=task)
                self.assertEqual(status, 500, body)
                rec = self.task(task)
                self.assertEqual(rec["status"], "failure")
                self.assertEqual(rec["error_info"][0], "INTERNAL_ERROR")
                self.assertIn("VHD", rec["error_info"][1])
                self.assertEqual(ok(self.x.VDI.get_current_operations(self.s, vdi)), {})

    def test_refused_in_the_body(self):
        """An image whose data lies past the VDI's size, found out well after MHD's first piece:
        the rest is read and dropped and the reply is the error."""
        vdi = self.new_vdi(4 * MiB)
        img = dynamic_vhd(os.urandom(8 * MiB), size=8 * MiB)
        task = ok(self.x.task.create(self.s, "import", ""))
        status, _, body = self.put(vdi, img, format="vhd", task_id=task)
        self.assertEqual(status, 413, body)
        self.assertIn(b"VDI_TOO_SMALL", body)
        rec = self.task(task)
        self.assertEqual(rec["status"], "failure")
        self.assertEqual(rec["error_info"][:2], ["VDI_TOO_SMALL", vdi])
        self.assertEqual(ok(self.x.VDI.get_current_operations(self.s, vdi)), {})

    def test_export_is_a_dynamic_vhd(self):
        size = 10 * MiB + 3 * 512  # not a whole number of blocks
        vdi = self.new_vdi(size)
        data = bytearray(size)
        data[100:200] = os.urandom(100)
        data[6 * MiB:6 * MiB + 10] = os.urandom(10)
        data[-512:] = os.urandom(512)
        self.assertEqual(self.put(vdi, bytes(data))[0], 200)
        status, headers, img = self.get(vdi, format="vhd")
        self.assertEqual(status, 200)
        uuid = ok(self.x.VDI.get_uuid(self.s, vdi))
        self.assertEqual(headers["Content-Disposition"], 'attachment; filename="%s.vhd"' % uuid)
        self.assertEqual(int(headers["Content-Length"]), len(img))
        raw, stored = read_dynamic_vhd(img)
        self.assertEqual(raw, bytes(data))
        self.assertEqual(stored, 3)  # blocks 0, 3 and 5; the all-zero ones are left out
        # and it imports back
        other = self.new_vdi(size)
        self.assertEqual(self.put(other, img, format="vhd")[0], 200)
        self.assertEqual(self.export_raw(other), bytes(data))

    def test_export_empty_disk(self):
        vdi = self.new_vdi(4 * MiB)
        status, _, img = self.get(vdi, format="vhd")
        self.assertEqual(status, 200)
        raw, stored = read_dynamic_vhd(img)
        self.assertEqual((raw, stored), (bytes(4 * MiB), 0))


@unittest.skipUnless(shutil.which("qemu-img"), "qemu-img not installed (scripts/install-deps.sh installs qemu-utils)")
class TestQemuImg(TransferBase):
    """Interoperability with qemu-img, which makes the VHDs Nova uploads (a config drive is
    `qemu-img convert -O vpc`) and reads VHDs as most tools do."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="xenapid-qemu-img-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def qemu_img(self, *args):
        return subprocess.run(["qemu-img"] + list(args), check=True, capture_output=True, timeout=60).stdout

    def disk(self, size):
        data = bytearray(size)
        data[:5000] = os.urandom(5000)
        data[size // 2:size // 2 + 70000] = os.urandom(70000)
        data[-1000:] = os.urandom(1000)
        path = os.path.join(self.tmp, "disk.raw")
        with open(path, "wb") as f:
            f.write(data)
        return bytes(data), path

    def test_qemu_made_vhds_import(self):
        size = 5 * MiB + 3 * 512  # not a CHS size: qemu-img rounds the image up
        data, raw = self.disk(size)
        for subformat in ("dynamic", "fixed"):
            with self.subTest(subformat):
                img = os.path.join(self.tmp, subformat + ".vhd")
                self.qemu_img("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=" + subformat, raw, img)
                with open(img, "rb") as f:
                    body = f.read()
                vdi = self.new_vdi(size)
                status, headers, reply = self.put(vdi, body, format="vhd")
                self.assertEqual(status, 200, reply)
                self.assertEqual(self.task(headers["task-id"])["status"], "success")
                self.assertEqual(self.export_raw(vdi), data)

    def test_export_reads_in_qemu_img(self):
        size = 5 * MiB + 3 * 512
        data, _ = self.disk(size)
        vdi = self.new_vdi(size)
        self.assertEqual(self.put(vdi, data)[0], 200)
        status, _, img = self.get(vdi, format="vhd")
        self.assertEqual(status, 200)
        path, back = os.path.join(self.tmp, "export.vhd"), os.path.join(self.tmp, "back.raw")
        with open(path, "wb") as f:
            f.write(img)
        info = self.qemu_img("info", "--output=json", "-f", "vpc", path)
        self.assertIn(b'"virtual-size": %d' % size, info)  # the exact size, not a CHS rounding
        self.qemu_img("convert", "-f", "vpc", "-O", "raw", path, back)
        with open(back, "rb") as f:
            self.assertEqual(f.read(), data)


class TestTasksAndErrors(TransferBase):
    def test_given_task(self):
        vdi = self.new_vdi(2 * MiB)
        task = ok(self.x.task.create(self.s, "nova import", ""))
        status, headers, body = self.put(vdi, os.urandom(MiB), task_id=task, format="raw")
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["task-id"], task)
        rec = self.task(task)
        self.assertEqual(rec["status"], "success")
        self.assertEqual(rec["name_label"], "nova import")
        self.assertEqual(float(rec["progress"]), 1.0)
        ok(self.x.task.destroy(self.s, task))

        task = ok(self.x.task.create(self.s, "nova export", ""))
        status, headers, _ = self.get(vdi, task_id=task, format="vhd")
        self.assertEqual(status, 200)
        self.assertEqual(headers["task-id"], task)
        self.assertEqual(self.wait_task(task)["status"], "success")

    def test_unknown_task(self):
        vdi = self.new_vdi(MiB)
        status, _, body = self.put(vdi, b"x", task_id="OpaqueRef:00000000-0000-0000-0000-000000000000")
        self.assertEqual(status, 404)
        self.assertIn(b"HANDLE_INVALID task", body)

    def test_bad_session(self):
        vdi = self.new_vdi(MiB)
        before = self.export_raw(vdi)
        for session in ("", "OpaqueRef:00000000-0000-0000-0000-000000000000", "junk"):
            with self.subTest(session=session):
                status, headers, _ = self.put(vdi, b"\x01" * 1000, session=session)
                self.assertEqual(status, 401)
                self.assertEqual(self.get(vdi, session=session)[0], 401)
        # no session at all, or a wrong password
        self.assertEqual(self.d.http("GET", "/export_raw_vdi?vdi=" + vdi)[0], 401)
        wrong = base64.b64encode(b"root:nope").decode()
        self.assertEqual(self.d.http("GET", "/export_raw_vdi?vdi=" + vdi,
                                     headers={"Authorization": "Basic " + wrong})[0], 401)
        self.assertEqual(self.export_raw(vdi), before)

    def test_cookie_and_basic_auth(self):
        vdi = self.new_vdi(MiB)
        data = os.urandom(MiB)
        status, _, _ = self.d.http("PUT", "/import_raw_vdi?vdi=" + vdi, data, {"Cookie": "session_id=" + self.s})
        self.assertEqual(status, 200)
        auth = base64.b64encode(("root:" + PASSWORD).encode()).decode()
        status, _, body = self.d.http("GET", "/export_raw_vdi?vdi=" + vdi, headers={"Authorization": "Basic " + auth})
        self.assertEqual(status, 200)
        self.assertEqual(body, data)

    def test_unknown_vdi(self):
        task = ok(self.x.task.create(self.s, "import", ""))
        for vdi in ("OpaqueRef:00000000-0000-0000-0000-000000000000", "no-such-vdi"):
            with self.subTest(vdi=vdi):
                status, _, body = self.put(vdi, b"x" * 100, task_id=task)
                self.assertEqual(status, 404, body)
                rec = self.task(task)
                self.assertEqual(rec["status"], "failure")
                self.assertEqual(rec["error_info"], ["HANDLE_INVALID", "VDI", vdi])
                self.assertEqual(self.get(vdi)[0], 404)
        self.assertEqual(self.d.http("GET", "/export_raw_vdi?session_id=" + self.s)[0], 404)

    def test_unknown_format(self):
        vdi = self.new_vdi(MiB)
        task = ok(self.x.task.create(self.s, "import", ""))
        status, _, _ = self.put(vdi, b"x" * 100, task_id=task, format="qcow9")
        self.assertEqual(status, 400)
        self.assertEqual(self.task(task)["error_info"], ["INTERNAL_ERROR", "Unknown format qcow9"])
        self.assertEqual(ok(self.x.VDI.get_current_operations(self.s, vdi)), {})
        self.assertEqual(self.get(vdi, format="tar")[0], 400)

    def test_read_only_vdi(self):
        vdi = self.new_vdi(MiB, read_only=True)
        status, _, body = self.put(vdi, b"x" * 100)
        self.assertEqual(status, 409)
        self.assertIn(b"VDI_READONLY", body)
        self.assertEqual(self.get(vdi)[0], 200)  # reading it is fine

    def test_rpc_limits_unchanged(self):
        # a PUT elsewhere is still refused, and RPC bodies keep their limit
        self.assertEqual(self.d.http("PUT", "/", b"x")[0], 405)
        status, _, _ = self.d.http("POST", "/", b" " * (MAX_BODY + 1), {"Content-Type": "text/xml"})
        self.assertEqual(status, 413)
        status, _, _ = self.d.http("POST", "/jsonrpc", b" " * (MAX_BODY + 1), {"Content-Type": "application/json"})
        self.assertEqual(status, 413)


class TestStalledImport(TransferBase):
    extra_config = "connection_timeout = 2\n"

    def test_destroy_during_stalled_import(self):
        vdi = self.new_vdi(8 * MiB)
        task = ok(self.x.task.create(self.s, "import", ""))
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=10)
        try:
            s.sendall(b"PUT /import_raw_vdi?%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % (self.query(vdi, task_id=task).encode(), 8 * MiB) + b"\x07" * (64 * KiB))
            deadline = time.monotonic() + 5
            while not ok(self.x.VDI.get_current_operations(self.s, vdi)) and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertEqual(ok(self.x.VDI.get_current_operations(self.s, vdi)), {task: "copy"})
            self.assertNotIn("destroy", ok(self.x.VDI.get_allowed_operations(self.s, vdi)))
            self.assertEqual(fail(self.x.VDI.destroy(self.s, vdi)), ["VDI_IN_USE", vdi, "destroy"])
            self.assertEqual(fail(self.x.VDI.resize(self.s, vdi, str(16 * MiB))), ["VDI_IN_USE", vdi, "resize"])
            # a second import waits for nobody: refused at once
            status, _, body = self.put(vdi, b"x" * 10)
            self.assertEqual(status, 409, body)
            self.assertIn(b"OTHER_OPERATION_IN_PROGRESS", body)
            # the client stalls: the connection times out and the VDI is released
            rec = self.wait_task(task, timeout=15)
            self.assertEqual(rec["status"], "failure")
            self.assertEqual(rec["error_info"][0], "INTERNAL_ERROR")
            self.assertEqual(ok(self.x.VDI.get_current_operations(self.s, vdi)), {})
        finally:
            s.close()
        ok(self.x.VDI.destroy(self.s, vdi))

    def test_destroy_right_after_export(self):
        """The VDI is free as soon as the client has the last byte: VDI.destroy then, on a connection
        already open, succeeds (never VDI_IN_USE), and the export's task has ended."""
        for i in range(24):
            fmt = "vhd" if i % 2 else "raw"
            vdi = self.new_vdi(MiB)
            self.assertEqual(self.put(vdi, os.urandom(64 * KiB))[0], 200)
            task = ok(self.x.task.create(self.s, "export", ""))
            with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as s:
                s.sendall(b"GET /export_raw_vdi?%s HTTP/1.1\r\nHost: x\r\n\r\n" %
                          self.query(vdi, task_id=task, format=fmt).encode())
                head, body = self.read_reply_body(s)
                self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
                r = self.x.VDI.destroy(self.s, vdi)
                self.assertEqual(r["Status"], "Success", (fmt, r))
                self.assertEqual(self.task(task)["status"], "success")

    def test_client_gone_during_export(self):
        vdi = self.new_vdi(64 * MiB)
        self.assertEqual(self.put(vdi, os.urandom(64 * MiB))[0], 200)
        task = ok(self.x.task.create(self.s, "export", ""))
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /export_raw_vdi?%s HTTP/1.1\r\nHost: x\r\n\r\n" % self.query(vdi, task_id=task).encode())
        self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
        s.close()
        rec = self.wait_task(task, timeout=15)
        self.assertEqual(rec["status"], "failure")
        self.assertEqual(ok(self.x.VDI.get_current_operations(self.s, vdi)), {})


if __name__ == "__main__":
    unittest.main()
