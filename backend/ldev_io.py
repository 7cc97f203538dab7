"""Byte-level access to one LDEV's sparse backing file.

Holes are the thin-provisioning unit: a hole reads as zeroes and costs no pool
space. TRIM punches holes, WRITE_ZEROES punches or zero-fills, and the extent
map comes from SEEK_DATA/SEEK_HOLE so hosts (and later clones, the initial copy
and changed-block tracking) see exactly what is allocated.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
_ZERO_CHUNK = bytes(1 << 20)


@dataclass(frozen=True)
class Extent:
    """A run of the LDEV that is either all data or all hole."""

    offset: int
    length: int
    is_hole: bool


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class LdevFile:
    """An open backing file. Thread-safe: every call is a positioned syscall."""

    def __init__(self, path: Path, writable: bool = True) -> None:
        self.path = path
        self.fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def allocated_bytes(self) -> int:
        return os.fstat(self.fd).st_blocks * 512

    def read(self, offset: int, length: int) -> bytes:
        return read_range(self.fd, offset, length)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            if written == 0:
                raise OSError(errno.ENOSPC, "no progress writing to the LDEV file")
            view = view[written:]
            offset += written

    def copy_from(self, source_fd: int, source_offset: int, offset: int, length: int) -> None:
        """Copy a range of another open file here, inside the kernel (copy_file_range: a
        reflink or an in-kernel copy; Python never touches the bytes). Past the source's
        end it reads as zeroes, like `read`."""
        end = offset + length
        while offset < end:
            try:
                copied = os.copy_file_range(source_fd, self.fd, end - offset, source_offset, offset)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self.write(offset, read_range(source_fd, source_offset, end - offset))
                return
            if copied == 0:  # the source ends here
                self.write(offset, bytes(end - offset))
                return
            offset += copied
            source_offset += copied

    def is_hole(self, offset: int, length: int) -> bool:
        """True when [offset, offset+length) holds no allocated data at all."""
        try:
            return os.lseek(self.fd, offset, os.SEEK_DATA) >= offset + length
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data at or after offset
                return True
            raise

    def punch_hole(self, offset: int, length: int) -> None:
        if length:
            _fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)

    def zero_allocated(self, offset: int, length: int) -> None:
        """Zero a range and keep it allocated (WRITE_ZEROES with NO_HOLE)."""
        if not length:
            return
        try:
            _fallocate(self.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            end = offset + length
            while offset < end:
                step = min(len(_ZERO_CHUNK), end - offset)
                self.write(offset, memoryview(_ZERO_CHUNK)[:step])
                offset += step

    def sync(self) -> None:
        """Durability point: everything written before this call is on stable storage."""
        os.fdatasync(self.fd)

    def extents(self, offset: int, length: int) -> Iterator[Extent]:
        """Data and hole runs covering [offset, offset+length), in order."""
        end = min(offset + length, self.size())
        pos = offset
        while pos < end:
            try:
                data_start = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no data after pos
                    raise
                data_start = end
            if data_start > pos:
                hole_end = min(data_start, end)
                yield Extent(pos, hole_end - pos, True)
                pos = hole_end
                continue
            data_end = min(os.lseek(self.fd, pos, os.SEEK_HOLE), end)
            yield Extent(pos, data_end - pos, False)
            pos = data_end


def read_range(fd: int, offset: int, length: int) -> bytes:
    """`length` bytes of an open file from `offset`; past its end, zeroes."""
    data = os.pread(fd, length, offset)
    if len(data) < length:
        data += bytes(length - len(data))
    return data


def create_sparse(path: Path, size: int) -> None:
    """Create (or finish creating) a sparse file of `size` bytes, durably."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def resize(path: Path, size: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
