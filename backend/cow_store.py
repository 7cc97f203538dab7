"""Copy-on-write store: the original data of chunks overwritten after snapshots.

Thin Image style. Taking a snapshot copies nothing; the first host write to a
chunk after a snapshot first preserves the chunk's old content here, once, for
every snapshot that still sees it.

Versions. A preserved copy of chunk c serves the snapshots whose generation g
lies in (from_gen, to_gen]: those taken after the previous preservation of c and
up to the newest live snapshot when it was made. A snapshot reads chunk c from
the version covering its generation, or from the live LDEV when none does (c
was not written since the snapshot). A write needs a copy iff the newest live
snapshot is newer than every preserved version of c.

Slots. One file per LDEV (`<ldev>.cow`) holds fixed-size slots: a 4 KiB header
(magic, chunk, from/to generation, CRC32 of the data, header CRC) followed by
one chunk of data. A chunk that was a hole when preserved keeps its data region
unwritten, so it costs no space. Freeing a slot rewrites its header and punches
its data. Recovery scans the headers: a slot with a bad CRC was torn by a crash
before its LDEV write could happen (the slot is synced first) and is freed, as
is every version that no live snapshot needs any more.

Durability order, the reason this module exists: slot data and header are
written and fdatasync'ed before the write path overwrites the LDEV. The write
path stages its copies under the LDEV's lock (`stage`), then makes them
durable outside it (`make_durable`): one fdatasync covers the copies of every
write staged before it began (group commit), so writers queued on one LDEV
share a sync instead of taking one each. Each copy gets an epoch, the store
remembers the newest epoch it made durable, and a write may touch a chunk
only once the epoch of the chunk's newest copy is durable; the write path
checks that under the lock, right before it writes.
"""

from __future__ import annotations

import bisect
import errno
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from backend.ldev_io import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, Extent, LdevFile, _fallocate, read_range

HEADER_BYTES = 4096
MAGIC = b"CCOW"
FORMAT_VERSION = 1
FLAG_USED = 1
FLAG_HOLE = 2
_HEADER = struct.Struct(">4sHHQQQI")  # magic, version, flags, chunk, from_gen, to_gen, data crc
_HEADER_CRC = struct.Struct(">I")


@dataclass(frozen=True)
class Version:
    """A preserved copy of one chunk, serving generations in (from_gen, to_gen]."""

    chunk: int
    from_gen: int
    to_gen: int
    slot: int
    hole: bool

    def covers(self, gen: int) -> bool:
        return self.from_gen < gen <= self.to_gen


def encode_header(version: Version, data_crc: int) -> bytes:
    flags = FLAG_USED | (FLAG_HOLE if version.hole else 0)
    body = _HEADER.pack(MAGIC, FORMAT_VERSION, flags, version.chunk, version.from_gen, version.to_gen, data_crc)
    body += _HEADER_CRC.pack(zlib.crc32(body))
    return body + bytes(HEADER_BYTES - len(body))


def decode_header(raw: bytes, slot: int) -> tuple[Version, int] | None:
    """The version a slot header describes and its data CRC, or None if free or damaged."""
    size = _HEADER.size
    if len(raw) < size + 4 or raw[:4] != MAGIC:
        return None
    (crc,) = _HEADER_CRC.unpack_from(raw, size)
    if zlib.crc32(raw[:size]) != crc:
        return None
    _, version, flags, chunk, from_gen, to_gen, data_crc = _HEADER.unpack_from(raw)
    if version != FORMAT_VERSION or not flags & FLAG_USED or from_gen >= to_gen:
        return None
    return Version(chunk, from_gen, to_gen, slot, bool(flags & FLAG_HOLE)), data_crc


def free_header() -> bytes:
    return bytes(HEADER_BYTES)


class CowStore:
    """Preserved chunks of one LDEV. Callers hold the LDEV's write lock."""

    def __init__(self, path: Path, chunk_size: int, live_gens: Iterable[int]) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.slot_bytes = HEADER_BYTES + chunk_size
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.live_gens: list[int] = sorted(live_gens)
        self.versions: dict[int, list[Version]] = {}
        self.free_slots: list[int] = []
        self.slot_count = 0
        self.chunks_copied = 0
        # Group commit: epochs of copies written (under the LDEV lock) and made durable;
        # the epoch of each chunk's newest copy; one syncing writer at a time.
        self._staged_epoch = 0
        self._durable_epoch = 0
        self._copy_epoch: dict[int, int] = {}
        self._sync_lock = threading.Lock()
        self.syncs = 0
        # Told when the live generations change (under the LDEV's lock): the LDEV's route
        # follows whether any snapshot needs copies (backend.runtimes).
        self.on_generations: Callable[[], None] | None = None
        self._scan()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- generations ---------------------------------------------------------
    @property
    def latest_gen(self) -> int:
        return self.live_gens[-1] if self.live_gens else 0

    def add_gen(self, gen: int) -> None:
        """A snapshot of this LDEV now exists at `gen` (newer than every other)."""
        if self.live_gens and gen <= self.live_gens[-1]:
            raise ValueError(f"generation {gen} is not newer than {self.live_gens[-1]}")
        self.live_gens.append(gen)
        if self.on_generations is not None:
            self.on_generations()

    def drop_gen(self, gen: int) -> int:
        """Forget a deleted snapshot and free what only it needed; returns slots freed."""
        if gen in self.live_gens:
            self.live_gens.remove(gen)
            if self.on_generations is not None:
                self.on_generations()
        freed = 0
        for chunk in list(self.versions):
            kept = [v for v in self.versions[chunk] if not (v.covers(gen) and not self._needed(v))]
            for version in self.versions[chunk]:
                if version not in kept:
                    self._free(version.slot)
                    freed += 1
            if kept:
                self.versions[chunk] = kept
            else:
                del self.versions[chunk]
                self._copy_epoch.pop(chunk, None)
        return freed

    def _needed(self, version: Version) -> bool:
        i = bisect.bisect_right(self.live_gens, version.from_gen)
        return i < len(self.live_gens) and self.live_gens[i] <= version.to_gen

    # -- the copy-on-write step ----------------------------------------------
    def needs_copy(self, chunk: int) -> bool:
        latest = self.latest_gen
        if not latest:
            return False
        versions = self.versions.get(chunk)
        return not versions or versions[-1].to_gen < latest

    def preserve(self, ldev: LdevFile, offset: int, length: int) -> int:
        """Preserve every chunk of [offset, offset+length) that a snapshot still sees
        in the live LDEV. Durable when it returns. Returns the number of chunks copied."""
        before = self.chunks_copied
        self.make_durable(self.stage(ldev, offset, length))
        return self.chunks_copied - before

    def stage(self, ldev: LdevFile, offset: int, length: int) -> int:
        """Copy every chunk of the range a snapshot still sees in the live LDEV, without
        syncing. The epoch `make_durable` must reach before the range may be overwritten
        (copies by other writers included), or 0 when every copy it needs is durable."""
        if not self.live_gens or length <= 0:
            return 0
        first, last = offset // self.chunk_size, (offset + length - 1) // self.chunk_size
        copied = ticket = 0
        for chunk in range(first, last + 1):
            if self.needs_copy(chunk):
                self._copy(ldev, chunk)
                copied += 1
            ticket = max(ticket, self._copy_epoch.get(chunk, 0))
        self.chunks_copied += copied  # since the array started (metrics)
        return ticket if ticket > self._durable_epoch else 0

    def must_stage(self, offset: int, length: int) -> bool:
        """Whether a write of the range would copy or wait for a copy's sync. Read without
        the LDEV's lock, so only a hint: the NBD server keeps writes that need no copy on
        its event loop; `stage` under the lock decides."""
        if not self.live_gens or length <= 0:
            return False
        first, last = offset // self.chunk_size, (offset + length - 1) // self.chunk_size
        durable = self._durable_epoch
        return any(
            self.needs_copy(chunk) or self._copy_epoch.get(chunk, 0) > durable for chunk in range(first, last + 1)
        )

    def make_durable(self, ticket: int) -> None:
        """Sync the store until `ticket` is durable. Called without the LDEV's lock: the
        writer that gets here first syncs for every copy staged so far, and those queued
        behind it find their copies durable or sync once for all of them."""
        while self._durable_epoch < ticket:
            with self._sync_lock:
                if self._durable_epoch >= ticket:
                    return
                covered = self._staged_epoch  # every copy up to here finished its pwrite
                os.fdatasync(self.fd)
                self.syncs += 1
                self._durable_epoch = covered

    def _copy(self, ldev: LdevFile, chunk: int) -> None:
        versions = self.versions.setdefault(chunk, [])
        start = chunk * self.chunk_size
        hole = ldev.is_hole(start, self.chunk_size)
        data = b"" if hole else ldev.read(start, self.chunk_size)
        slot = self.free_slots.pop() if self.free_slots else self._new_slot()
        version = Version(chunk, versions[-1].to_gen if versions else 0, self.latest_gen, slot, hole)
        record = encode_header(version, zlib.crc32(data)) + data
        try:
            # One pwrite for header and data: a crash leaves the slot whole or detectably torn.
            if os.pwrite(self.fd, record, slot * self.slot_bytes) != len(record):
                raise OSError(errno.ENOSPC, "snapshot store is full")
        except OSError:
            # A torn slot fails its CRC on restart; until then it is simply reused.
            self.free_slots.append(slot)
            if not versions:
                del self.versions[chunk]
            raise
        versions.append(version)
        self._staged_epoch += 1
        self._copy_epoch[chunk] = self._staged_epoch

    def _new_slot(self) -> int:
        slot = self.slot_count
        self.slot_count += 1
        return slot

    def _free(self, slot: int) -> None:
        os.pwrite(self.fd, free_header(), slot * self.slot_bytes)
        _fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, slot * self.slot_bytes, self.slot_bytes)
        self.free_slots.append(slot)

    # -- reading a snapshot --------------------------------------------------
    def version_for(self, chunk: int, gen: int) -> Version | None:
        for version in self.versions.get(chunk, ()):
            if version.covers(gen):
                return version
        return None

    def read(self, ldev: LdevFile, gen: int, offset: int, length: int) -> bytes:
        """Snapshot `gen`'s view of [offset, offset+length); a range served by one place is
        returned as read."""
        parts = [
            bytes(step) if where is None else read_range(where[0], where[1], step)
            for _, step, where in self.located_runs(ldev, gen, offset, length)
        ]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _slot_data(self, slot: int, within: int, length: int) -> bytes:
        return read_range(self.fd, slot * self.slot_bytes + HEADER_BYTES + within, length)

    def located_runs(
        self, ldev: LdevFile, gen: int, offset: int, length: int
    ) -> Iterator[tuple[int, int, tuple[int, int] | None]]:
        """Snapshot `gen`'s view of the range as runs (offset, length, where its bytes are:
        an open file and an offset, or None for zeroes): the live LDEV, a preserved copy or
        a preserved hole. Chunks the live LDEV serves side by side make one run, so a
        reader reads them in one go and a clone copies them in one call. Valid while the
        LDEV's lock is held."""
        pos, end = offset, offset + length
        while pos < end:
            chunk = pos // self.chunk_size
            within = pos - chunk * self.chunk_size
            step = min(self.chunk_size - within, end - pos)
            version = self.version_for(chunk, gen)
            if version is None:
                while pos + step < end and self.version_for((pos + step) // self.chunk_size, gen) is None:
                    step = min(step + self.chunk_size, end - pos)
                yield pos, step, (ldev.fd, pos)
            elif version.hole:
                yield pos, step, None
            else:
                yield pos, step, (self.fd, version.slot * self.slot_bytes + HEADER_BYTES + within)
            pos += step

    def extents(self, ldev: LdevFile, gen: int, offset: int, length: int) -> Iterator[Extent]:
        """Data and hole runs of snapshot `gen`'s view, for NBD block status."""
        end = offset + length
        first, last = offset // self.chunk_size, (end - 1) // self.chunk_size
        preserved = sorted(c for c in self.versions if first <= c <= last and self.version_for(c, gen))
        pos = offset
        for chunk in [*preserved, None]:
            stop = end if chunk is None else max(pos, chunk * self.chunk_size)
            if stop > pos:  # chunks without a version: the live LDEV's allocation
                yield from ldev.extents(pos, stop - pos)
                pos = stop
            if chunk is None:
                break
            chunk_end = min(end, (chunk + 1) * self.chunk_size)
            version = self.version_for(chunk, gen)
            assert version is not None
            yield Extent(pos, chunk_end - pos, version.hole)
            pos = chunk_end

    def chunk_states(self, ldev: LdevFile, gen: int, size: int) -> Iterator[tuple[int, object]]:
        """(chunk, identity) for every chunk of the snapshot that may hold data.

        identity is the Version serving the chunk, or the string "live" for a
        chunk read from the LDEV; hole chunks are left out.
        """
        preserved = {c for c, vs in self.versions.items() if any(v.covers(gen) for v in vs)}
        last = (size + self.chunk_size - 1) // self.chunk_size
        live = set()
        for extent in ldev.extents(0, size):
            if not extent.is_hole:
                first = extent.offset // self.chunk_size
                live.update(range(first, (extent.offset + extent.length - 1) // self.chunk_size + 1))
        for chunk in sorted((live - preserved) | preserved):
            if chunk >= last:
                continue
            version = self.version_for(chunk, gen)
            if version is None:
                yield chunk, "live"
            elif not version.hole:
                yield chunk, version

    # -- recovery ------------------------------------------------------------
    def _scan(self) -> None:
        self.slot_count = (os.fstat(self.fd).st_size + self.slot_bytes - 1) // self.slot_bytes
        found: list[Version] = []
        for slot in range(self.slot_count):
            raw = os.pread(self.fd, HEADER_BYTES, slot * self.slot_bytes)
            decoded = decode_header(raw, slot)
            if decoded is None:
                if raw.strip(b"\x00"):
                    self._free(slot)  # damaged header: never trusted
                else:
                    self.free_slots.append(slot)
                continue
            version, data_crc = decoded
            data = b"" if version.hole else self._slot_data(slot, 0, self.chunk_size)
            if zlib.crc32(data) != data_crc or not self._needed(version):
                self._free(slot)
                continue
            found.append(version)
        for version in sorted(found, key=lambda v: (v.chunk, v.to_gen)):
            self.versions.setdefault(version.chunk, []).append(version)
        if found or self.free_slots:
            os.fdatasync(self.fd)

    def allocated_bytes(self) -> int:
        return os.fstat(self.fd).st_blocks * 512
