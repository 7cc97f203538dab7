"""Differential bitmap: which regions of an LDEV changed while its pair was not copying.

While a pair is suspended (split, error, journal full) or its S-VOL took
over, writes are not journaled; each marks its regions here instead, so a
resync copies only the regions marked on either side. The bitmap is the
only record of those writes, so a region's bit is durable (fdatasync) before
the write that sets it touches the data, as copy-on-write does with old
chunks: a crash can leave a bit without its write (one region copied for
nothing), never a write without its bit. Only the first write to a region
pays for that.

File: a 16-byte header (magic, region size, LDEV size), then one bit per
region, lowest offset first. The file exists exactly while changes are
tracked.
"""

from __future__ import annotations

import os
import re
import struct
import threading
from pathlib import Path

from backend.ldev_io import fsync_dir

REGION_BYTES = 64 << 10
_MAGIC = b"CCDB"
_HEADER = struct.Struct(">4sIQ")
_NONZERO = re.compile(rb"[^\x00]")


class BitmapMismatch(Exception):
    """A bitmap file (or one from the other array) does not describe this LDEV."""


class DiffBitmap:
    def __init__(self, path: Path, size: int, region_bytes: int = REGION_BYTES) -> None:
        self.path = path
        self.size = size
        self.region_bytes = region_bytes
        self.regions = -(-size // region_bytes)
        self.lock = threading.Lock()
        self.bits = bytearray(-(-self.regions // 8))
        existed = path.exists()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if existed:
            self._load()
        else:
            os.pwrite(self.fd, _HEADER.pack(_MAGIC, region_bytes, size) + self.bits, 0)
            os.fdatasync(self.fd)
            fsync_dir(path.parent)

    def _load(self) -> None:
        raw = os.pread(self.fd, _HEADER.size + len(self.bits), 0)
        magic, region_bytes, size = _HEADER.unpack_from(raw)
        if magic != _MAGIC or region_bytes != self.region_bytes or size > self.size:
            raise BitmapMismatch(f"{self.path}: region {region_bytes}, size {size}")
        self.bits[: len(raw) - _HEADER.size] = raw[_HEADER.size :]

    def mark(self, offset: int, length: int) -> None:
        """Record a write of [offset, offset+length); returns once the record is durable."""
        if length <= 0:
            return
        first, last = offset // self.region_bytes, (offset + length - 1) // self.region_bytes
        with self.lock:
            if all(self.bits[r >> 3] & (1 << (r & 7)) for r in range(first, last + 1)):
                return  # every region already marked: nothing to wait for
            for region in range(first, last + 1):
                self.bits[region >> 3] |= 1 << (region & 7)
            low, high = first >> 3, (last >> 3) + 1
            os.pwrite(self.fd, self.bits[low:high], _HEADER.size + low)
            os.fdatasync(self.fd)

    def merge(self, other: bytes) -> None:
        """Add the other side's marks (same LDEV size and region): resync copies both."""
        if len(other) != len(self.bits):
            raise BitmapMismatch(f"{len(other)} bytes of bitmap for an LDEV that needs {len(self.bits)}")
        with self.lock:
            for i, byte in enumerate(other):
                self.bits[i] |= byte
            os.pwrite(self.fd, self.bits, _HEADER.size)
            os.fdatasync(self.fd)

    def marked(self) -> int:
        with self.lock:
            return sum(bin(b).count("1") for b in self.bits)

    def extents(self) -> list[tuple[int, int]]:
        """Marked byte ranges, adjacent regions merged, clipped to the LDEV's size."""
        out: list[tuple[int, int]] = []
        with self.lock:
            for region in self._marked_regions():
                start = region * self.region_bytes
                end = min(start + self.region_bytes, self.size)
                if out and out[-1][0] + out[-1][1] == start:
                    out[-1] = (out[-1][0], end - out[-1][0])
                else:
                    out.append((start, end - start))
        return out

    def _marked_regions(self) -> list[int]:
        """The marked regions in order. A resync asks for them once per part of the LDEV and
        a bitmap is mostly zeroes, so the zero bytes are skipped by the regex engine, in C."""
        regions: list[int] = []
        for match in _NONZERO.finditer(self.bits):
            byte, first = match.group()[0], match.start() << 3
            regions += [first + bit for bit in range(8) if byte >> bit & 1 and first + bit < self.regions]
        return regions

    def snapshot_bits(self) -> bytes:
        with self.lock:
            return bytes(self.bits)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Tracking ends (the pair is PAIR again, or deleted): the file goes."""
        self.close()
        self.path.unlink(missing_ok=True)
        fsync_dir(self.path.parent)
