"""The journal of one journal group: append-only segment files, one sequence.

Every host write to a P-VOL of the group becomes a record with the group's
next sequence number, appended in the order the array acknowledges writes, so
one sequence orders all volumes of the group (the consistency group).

Files: `<group folder>/<first seq, 16 hex>.seg`, each preallocated to
SEGMENT_BYTES when it starts (appending into a preallocated file costs the host
write a memory copy; extending a file costs it a block allocation, about 15x
slower, measured in docs/benchmarks.md).

Durability: `append` writes (the page cache); `sync` makes every appended
record durable (fdatasync of every segment written since the last sync);
FUA and FLUSH on a P-VOL call it before the host is answered. Nothing else in
the write path waits for the disk.

Recovery (at open) follows the chain of records across segments from the
oldest: the journal ends at the first record that is torn, corrupt, or does
not carry the next sequence (preallocated zeros, a stale or missing record).
Everything after that point was never made durable by a sync (a sync covers
every earlier segment), so it was never acknowledged as durable: it is cut
off and never applied. Records the backup has confirmed are trimmed, whole
segments at a time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.journal_record import (
    HEADER_BYTES,
    Corrupt,
    JournalRecord,
    RecordKind,
    Torn,
    decode,
    decode_all,
    pack_header,
)
from backend.ldev_io import fsync_dir

log = logging.getLogger(__name__)

SEGMENT_BYTES = 64 << 20
SPARE_SEGMENTS = 2


@dataclass
class _Segment:
    first_seq: int
    path: Path
    size: int = 0
    last_seq: int = 0
    fd: int = -1
    sealed: bool = False  # written before a restart: read only
    readers: int = 0  # pulls reading it outside the journal's lock: it is not closed under them

    def open(self) -> int:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True)
class Unapplied:
    """What a main array holds past a backup's applied sequence: writes it acknowledged
    that the backup has not applied. Times are the main site's clock."""

    records: int = 0
    bytes: int = 0  # journal bytes: records as stored, headers included
    newest_seq: int = 0  # the newest sequence the main array gave a write
    oldest_write_ns: int = 0  # the oldest of them (0: none)
    newest_write_ns: int = 0  # the newest write the main array acknowledged (0: none since it started)
    as_of_ns: int = 0  # when the account was made: every write acknowledged before is in it

    @property
    def seconds(self) -> float:
        """From the oldest of them to the newest write."""
        return (self.newest_write_ns - self.oldest_write_ns) / 1e9 if self.records else 0.0


@dataclass(slots=True)
class _Entry:
    seq: int
    segment: _Segment
    offset: int
    size: int
    timestamp_ns: int
    through_bytes: int  # bytes of all records remembered up to and including this one


def _seq_at(raw: bytes) -> int | None:
    try:
        return decode(raw, 0)[0].seq
    except (Torn, Corrupt):
        return None


@dataclass
class Journal:
    folder: Path
    capacity: int
    confirmed_seq: int = 0
    segments: list[_Segment] = field(default_factory=list)
    entries: list[_Entry] = field(default_factory=list)  # unconfirmed, in sequence order
    next_seq: int = 1
    overflowed: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    # Segments written since the last sync, oldest first.
    _dirty: list[_Segment] = field(default_factory=list)
    _usage: int = 0  # bytes of records in the segments
    _remembered_bytes: int = 0  # bytes of every record remembered since the journal opened
    _trimmed_bytes: int = 0  # of those, bytes of the records trimmed
    _appended: threading.Condition = field(init=False)  # new records: the backup's long poll
    _pollers: int = 0  # long polls waiting on _appended
    _confirmed: threading.Condition = field(init=False)  # records confirmed: room, synchronous writers
    _read_done: threading.Condition = field(init=False)  # a pull finished reading segments
    segment_bytes: int = field(init=False)
    on_full: Callable[[int], None] | None = None
    # Synchronous group: writers wait in wait_confirmed for the backup to apply their record.
    synchronous: bool = False
    # Inflow control: a write that does not fit waits up to overflow_watch seconds for room
    # (the backup confirming records) before the journal overflows.
    inflow_control: bool = False
    overflow_watch: float = 60.0
    newest_write_ns: int = 0  # main-site time of the newest record (0: none since the journal opened)
    confirmed_write_ns: int = 0  # ... of the newest record the backup confirmed (0: none since then)
    # While set, records after this sequence are not handed to the backup (read_raw, wait_for):
    # a verify holds them until the backup has cut its snapshots exactly there (backend.replication.verify).
    held_after: int | None = None
    _spares: list[Path] = field(default_factory=list)  # trimmed segments kept for reuse
    _names_changed: bool = False  # segment files created, renamed or removed since the last sync

    def __post_init__(self) -> None:
        # A small journal gets small segments, so that trimming whole segments
        # gives space back long before the capacity is reached.
        self.segment_bytes = min(SEGMENT_BYTES, max(64 << 10, self.capacity // 8))
        self._appended = threading.Condition(self.lock)
        self._confirmed = threading.Condition(self.lock)
        self._read_done = threading.Condition(self.lock)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._recover()

    # -- recovery ---------------------------------------------------------------
    def _recover(self) -> None:
        self._spares = sorted(self.folder.glob("*.spare"))
        paths = sorted(self.folder.glob("*.seg"), key=lambda p: int(p.stem, 16))
        previous: int | None = None
        for index, path in enumerate(paths):
            segment = _Segment(int(path.stem, 16), path, sealed=True)  # appends go to a new segment
            raw = path.read_bytes()
            chain = self._chain(segment, raw, previous)
            if not chain:  # nothing of the chain here (never written back, or a recycled file under its old name)
                if previous is not None and _seq_at(raw) == segment.first_seq != previous + 1:
                    for dropped in paths[index:]:  # a gap: this and every later segment were never made durable
                        log.warning("journal_segment_dropped path=%s reason=gap_after_seq_%d", dropped, previous)
                        dropped.unlink()
                    break
                log.warning("journal_segment_dropped path=%s reason=holds_no_record_of_its_name", path)
                path.unlink()
                continue
            for pos, after, record in chain:
                if record.seq > self.confirmed_seq:
                    self._remember(record.seq, segment, pos, after - pos, record.timestamp_ns)
                previous = segment.last_seq = record.seq
            segment.size = chain[-1][1]
            self.segments.append(segment)
            self._usage += segment.size
        self.next_seq = max(self.confirmed_seq, previous or 0) + 1
        self._retire(self._take_confirmed_segments())  # confirmed_seq came from the store: durable
        log.info(
            "journal_recovered folder=%s records=%d next_seq=%d confirmed=%d",
            self.folder, len(self.entries), self.next_seq, self.confirmed_seq,
        )  # fmt: skip

    @staticmethod
    def _chain(segment: _Segment, raw: bytes, previous: int | None) -> list[tuple[int, int, JournalRecord]]:
        """The records of a segment file that continue the chain, as (start, end, record); [] when it does not go on.

        The first record must carry the segment's name (else the file is a spare
        whose rename never reached the disk) and follow `previous`; each next
        record follows the one before. Anything else (preallocated zeros, a torn
        or corrupt record, a record left from the file's earlier life) ends it.
        """
        chain: list[tuple[int, int, JournalRecord]] = []
        pos, expected = 0, segment.first_seq
        if previous is not None and previous + 1 != expected:
            return chain
        while pos < len(raw):
            try:
                record, after = decode(raw, pos)
            except (Torn, Corrupt) as exc:
                if pos and raw.count(0, pos) != len(raw) - pos:  # not the preallocated zeros after the last record
                    log.warning("journal_tail_cut path=%s at=%d reason=%s", segment.path, pos, exc)
                    os.truncate(segment.path, pos)
                break
            if record.seq != expected:
                break
            chain.append((pos, after, record))
            pos, expected = after, expected + 1
        return chain

    def _remember(self, seq: int, segment: _Segment, offset: int, size: int, timestamp_ns: int) -> None:
        self._remembered_bytes += size
        self.newest_write_ns = timestamp_ns
        self.entries.append(_Entry(seq, segment, offset, size, timestamp_ns, self._remembered_bytes))

    # -- appending ----------------------------------------------------------------
    def usage_bytes(self) -> int:
        return self._usage

    def append(
        self,
        kind: RecordKind,
        ldev_id: int,
        offset: int,
        length: int,
        data: bytes | memoryview = b"",
        keep_allocated: bool = False,
    ) -> int | None:
        """Give the write the group's next sequence and append it (not yet durable); its sequence.

        None when the journal is full, and for every write after that until
        `reopen` (a resync): the first such call runs `on_full(last journaled
        sequence)` so the group suspends before the write goes on.
        """
        with self.lock:
            size = HEADER_BYTES + len(data)
            if self.inflow_control and not self.overflowed and self._usage + size > self.capacity:
                # Throttle the host instead of suspending: wait for the backup to make room.
                self._confirmed.wait_for(lambda: self._usage + size <= self.capacity, self.overflow_watch)
            seq, stamp = self.next_seq, time.time_ns()
            if self.overflowed or self._usage + size > self.capacity:
                if not self.overflowed:
                    last = seq - 1
                    log.warning("journal_full folder=%s capacity=%d last_seq=%d", self.folder, self.capacity, last)
                    self.overflowed = True  # sticky: no later write may be journaled after one that was not
                    if self.on_full is not None:
                        self.on_full(last)
                return None
            head = pack_header(seq, kind, ldev_id, offset, length, stamp, keep_allocated, data)
            segment = self._active(size)
            written = os.pwritev(segment.open(), [head, data], segment.size)
            if written < size:  # a short write to a preallocated file: finish it
                rest = memoryview(head + bytes(data))[written:]
                while rest:
                    rest = rest[os.pwrite(segment.fd, rest, segment.size + size - len(rest)) :]
            self._remember(seq, segment, segment.size, size, stamp)
            segment.size += size
            segment.last_seq = seq
            self._usage += size
            self.next_seq += 1
            if not self._dirty or self._dirty[-1] is not segment:
                self._dirty.append(segment)
            if self._pollers:  # waking nobody still costs the host's write a Python call
                self._appended.notify_all()
            return seq

    def _active(self, need: int) -> _Segment:
        """The segment to append to; a new one when the last is full or was recovered.

        A new segment reuses a spare (a trimmed segment, renamed: its pages are
        likely still cached, so appending overwrites memory) or is preallocated.
        """
        last = self.segments[-1] if self.segments else None
        if last is not None and not last.sealed and last.size + need <= self.segment_bytes:
            return last
        segment = _Segment(self.next_seq, self.folder / f"{self.next_seq:016x}.seg")
        if self._spares and need <= self.segment_bytes:
            os.rename(self._spares.pop(), segment.path)
        else:
            os.posix_fallocate(segment.open(), 0, max(self.segment_bytes, need))
        self._names_changed = True
        self.segments.append(segment)
        return segment

    def reopen(self) -> None:
        """Journaling starts again after an overflow (the group is being resynced)."""
        with self.lock:
            self.overflowed = False

    def nearly_full(self) -> bool:
        """PFUL: above 80% of the capacity."""
        return self._usage > self.capacity * 0.8

    def sync(self) -> None:
        """Durability point: every record appended so far survives power loss."""
        with self.lock:
            for segment in self._dirty:
                os.fdatasync(segment.open())
            self._dirty.clear()
            if self._names_changed:  # new segment names must survive too
                fsync_dir(self.folder)
                self._names_changed = False

    # -- reading and trimming ------------------------------------------------------
    def wait_confirmed(self, seq: int, timeout: float) -> bool:
        """Wait until the backup applied record `seq` (a synchronous write's acknowledgement)."""
        with self._confirmed:
            return self._confirmed.wait_for(lambda: self.confirmed_seq >= seq, timeout)

    def hold_shipping(self, after_seq: int) -> None:
        """From now on records after `after_seq` are not handed out, until `release_shipping`."""
        with self.lock:
            self.held_after = after_seq

    def release_shipping(self) -> None:
        with self._appended:
            self.held_after = None
            self._appended.notify_all()

    def _shippable_next(self) -> int:
        """The first sequence not handed out now (under the lock)."""
        return self.next_seq if self.held_after is None else min(self.next_seq, self.held_after + 1)

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until record `seq` exists and may be handed out (the backup's long poll)."""
        with self._appended:
            self._pollers += 1
            try:
                return self._appended.wait_for(lambda: self._shippable_next() > seq, timeout)
            finally:
                self._pollers -= 1

    def read(self, from_seq: int, max_bytes: int) -> list[JournalRecord]:
        """Records from `from_seq` on, at least one, about `max_bytes` in all."""
        return decode_all(self.read_raw(from_seq, max_bytes))

    def read_raw(self, from_seq: int, max_bytes: int) -> bytes:
        """The stored bytes of the records from `from_seq` on (at least one, about `max_bytes`).

        Records of one segment lie back to back, so a batch is one pread per
        segment; the reader checks each record's CRC (end to end).
        """
        with self.lock:
            shippable = self._shippable_next()
            if not self.entries or from_seq >= shippable:
                return b""
            entries = self.entries
            runs: list[tuple[_Segment, int, int]] = []  # segment, offset, bytes
            total = 0
            for i in range(max(0, from_seq - entries[0].seq), len(entries)):
                entry = entries[i]
                if entry.seq >= shippable or (total and total + entry.size > max_bytes):
                    break
                if runs and runs[-1][0] is entry.segment:
                    segment, offset, size = runs[-1]
                    runs[-1] = (segment, offset, size + entry.size)
                else:
                    runs.append((entry.segment, entry.offset, entry.size))
                total += entry.size
            for segment, _, _ in runs:
                segment.open()
                segment.readers += 1
        # Read outside the lock: host writes append meanwhile (records are never rewritten
        # in place, and a segment is not closed while a pull reads it).
        try:
            return b"".join(os.pread(segment.fd, size, offset) for segment, offset, size in runs)
        finally:
            with self.lock:
                for segment, _, _ in runs:
                    segment.readers -= 1
                self._read_done.notify_all()

    def trim_through(self, seq: int, before_retiring: Callable[[int], None] | None = None) -> None:
        """The backup has applied (durably) every record up to `seq`: drop what it no longer needs.

        Whole segments are retired (kept as spares or removed) only after
        `before_retiring(confirmed_seq)` returned: the caller makes the
        confirmed sequence durable there, so that a restart never hands out a
        sequence number again. Both happen outside the journal lock, so host
        writes do not wait for them.
        """
        with self.lock:
            if seq <= self.confirmed_seq:
                return
            self.confirmed_seq = min(seq, self.next_seq - 1)
            keep = max(0, self.confirmed_seq + 1 - self.entries[0].seq) if self.entries else 0
            if keep:
                self._trimmed_bytes = self.entries[keep - 1].through_bytes
                self.confirmed_write_ns = self.entries[keep - 1].timestamp_ns
                del self.entries[:keep]
            retiring = self._take_confirmed_segments()
            confirmed = self.confirmed_seq
            self._confirmed.notify_all()  # synchronous writers, and writers held by inflow control (room)
        if retiring:
            if before_retiring is not None:
                before_retiring(confirmed)
            self._retire(retiring)

    def _take_confirmed_segments(self) -> list[_Segment]:
        """Segments whose records are all confirmed, out of the journal (under the lock)."""
        taken: list[_Segment] = []
        while self.segments and self.segments[0].last_seq <= self.confirmed_seq:
            first = self.segments[0]
            if len(self.segments) == 1 and (
                self.entries or (not first.sealed and first.size < self.segment_bytes // 2)
            ):
                break  # the active segment has room: appending on is cheaper than preallocating anew
            self.segments.pop(0)
            self._usage -= first.size
            if first in self._dirty:
                self._dirty.remove(first)
            taken.append(first)
        return taken

    def _retire(self, segments: list[_Segment]) -> None:
        for segment in segments:
            with self.lock:
                self._read_done.wait_for(lambda segment=segment: segment.readers == 0)
                segment.close()
                keep = len(self._spares) < SPARE_SEGMENTS and segment.path.stat().st_size == self.segment_bytes
            if keep:
                os.rename(segment.path, segment.path.with_suffix(".spare"))
            else:
                segment.path.unlink(missing_ok=True)
            with self.lock:
                if keep:
                    self._spares.append(segment.path.with_suffix(".spare"))
                self._names_changed = True

    def oldest_pending_ns(self) -> int | None:
        with self.lock:
            return self.entries[0].timestamp_ns if self.entries else None

    def unapplied(self, seq: int) -> Unapplied:
        """What this journal holds past `seq` (a backup's applied sequence): the writes the
        main site acknowledged that the backup had not applied."""
        with self.lock:  # appends stamp their time under this lock: none before as_of is missing
            as_of = time.time_ns()
            entries = self.entries
            start = max(0, seq + 1 - entries[0].seq) if entries else 0
            newest = self.next_seq - 1
            if start >= len(entries):
                return Unapplied(newest_seq=newest, newest_write_ns=self.newest_write_ns, as_of_ns=as_of)
            first, last = entries[start], entries[-1]  # no copy of the backlog under the lock
            nbytes = last.through_bytes - (first.through_bytes - first.size)
            return Unapplied(len(entries) - start, nbytes, newest, first.timestamp_ns, self.newest_write_ns, as_of)

    def pending(self) -> tuple[int, int]:
        """(records, bytes) appended but not yet confirmed by the backup."""
        with self.lock:
            return len(self.entries), self._remembered_bytes - self._trimmed_bytes

    def close(self) -> None:
        with self.lock:
            self.sync()
            for segment in self.segments:
                segment.close()
