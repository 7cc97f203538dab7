"""The journal of one journal group: append-only segment files, one sequence.

Every host write to a P-VOL of the group becomes a record with the group's
next sequence number, appended in the order the array acknowledges writes, so
one sequence orders all volumes of the group (the consistency group).

Files: `<group folder>/<first seq, 16 hex>.seg`, each preallocated to
SEGMENT_BYTES when it starts (appending into a preallocated file costs the host
write a memory copy; extending a file costs it a block allocation, about 15x
slower, measured in docs/benchmarks.md).

Native part (backend/native/journal_core.c): the journal's lock, the group's
sequence, the space used, the segment being appended to and the writing of
every record are native, so a native connection thread journals a P-VOL's
write without the interpreter (`JournalCore.append`), and `append` here writes
through the same function after applying the rules that need Python (inflow
control, overflow, a new segment). Each append files its record in the native
index of unconfirmed records (backend/native/journal_index.h), so pulls,
trimming and the account of unapplied writes never walk records in Python
while host writes wait for the journal's lock.

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

from backend._nbdcore import JournalCore
from backend.journal_record import (
    HEADER_BYTES,
    Corrupt,
    JournalRecord,
    RecordKind,
    Torn,
    decode,
    decode_all,
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


@dataclass(frozen=True, slots=True)
class _Entry:
    seq: int
    segment: int  # the segment's first sequence (its name)
    offset: int
    size: int
    timestamp_ns: int


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
    _segments: list[_Segment] = field(default_factory=list)
    # Segments written since the last sync, oldest first.
    _dirty_segments: list[_Segment] = field(default_factory=list)
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
    confirmed_write_ns: int = 0  # ... of the newest record the backup confirmed (0: none since then)
    _spares: list[Path] = field(default_factory=list)  # trimmed segments kept for reuse
    _names_changed: bool = False  # segment files created, renamed or removed since the last sync
    # The lock, the sequence, the space and the active segment (backend/native/journal_core.c).
    core: JournalCore = field(init=False)

    def __post_init__(self) -> None:
        # A small journal gets small segments, so that trimming whole segments
        # gives space back long before the capacity is reached.
        self.segment_bytes = min(SEGMENT_BYTES, max(64 << 10, self.capacity // 8))
        self.core = JournalCore(self.capacity)
        self.core.python_only = self.synchronous or self.inflow_control
        self._confirmed = threading.Condition(self.lock)  # type: ignore[arg-type]
        self._read_done = threading.Condition(self.lock)  # type: ignore[arg-type]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._recover()

    def __setattr__(self, name: str, value: object) -> None:
        """A synchronous or inflow-controlled group's appends wait on Python's conditions:
        the core leaves them to `append` while either is set."""
        super().__setattr__(name, value)
        if name in ("synchronous", "inflow_control") and "core" in self.__dict__:
            self.core.python_only = self.synchronous or self.inflow_control

    # What the core holds, by the names the rest of the array reads.
    @property
    def lock(self) -> JournalCore:
        """The journal's lock (reentrant): native writers take it too."""
        return self.core

    @property
    def next_seq(self) -> int:
        return self.core.next_seq

    @next_seq.setter
    def next_seq(self, value: int) -> None:
        self.core.next_seq = value

    @property
    def overflowed(self) -> bool:
        return self.core.overflowed

    @overflowed.setter
    def overflowed(self, value: bool) -> None:
        self.core.overflowed = value

    @property
    def newest_write_ns(self) -> int:
        """Main-site time of the newest record (0: none since the journal opened)."""
        return self.core.newest_write_ns

    @property
    def held_after(self) -> int | None:
        """While set, records after this sequence are not handed to the backup (read_raw,
        wait_for): a verify holds them until the backup has cut its snapshots exactly there
        (backend.replication.verify)."""
        return self.core.held_after

    @property
    def _usage(self) -> int:
        return self.core.usage

    @_usage.setter
    def _usage(self, value: int) -> None:
        self.core.usage = value

    @property
    def _dirty(self) -> list[_Segment]:
        """Segments written since the last sync, oldest first."""
        with self.lock:
            self._catch_up_active_segment()
            return self._dirty_segments

    @property
    def _pollers(self) -> int:
        """Long polls waiting now."""
        return self.core.pollers

    @property
    def entries(self) -> list[_Entry]:
        """The unconfirmed records, in sequence order (a copy of the native index)."""
        return [_Entry(*entry) for entry in self.core.entries()]

    @property
    def segments(self) -> list[_Segment]:
        with self.lock:
            self._catch_up_active_segment()
            return self._segments

    def _catch_up_active_segment(self) -> None:
        """Bring the active segment's size and last record up to what was appended to it (by
        native writers and by `append`), and count it as written since the last sync (under
        the lock; constant time, whatever was appended)."""
        segment = self._segments[-1] if self._segments else None
        if segment is None or segment.sealed or segment.last_seq == self.core.active_last_seq:
            return
        segment.size = self.core.active_size
        segment.last_seq = self.core.active_last_seq
        if not self._dirty_segments or self._dirty_segments[-1] is not segment:
            self._dirty_segments.append(segment)

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
                    self.core.file(record.seq, segment.first_seq, pos, after - pos, record.timestamp_ns)
                    self.core.newest_write_ns = record.timestamp_ns
                previous = segment.last_seq = record.seq
            segment.size = chain[-1][1]
            self._segments.append(segment)
            self._usage += segment.size
        self.next_seq = max(self.confirmed_seq, previous or 0) + 1
        self._retire(self._take_confirmed_segments())  # confirmed_seq came from the store: durable
        log.info(
            "journal_recovered folder=%s records=%d next_seq=%d confirmed=%d",
            self.folder, self.core.pending, self.next_seq, self.confirmed_seq,
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
        if kind is RecordKind.WRITE and len(data) != length:
            raise ValueError("a WRITE record carries exactly `length` bytes")
        if kind is not RecordKind.WRITE and len(data):
            raise ValueError("only WRITE records carry a payload")
        with self.lock:
            size = HEADER_BYTES + len(data)
            if self.inflow_control and not self.overflowed and self._usage + size > self.capacity:
                # Throttle the host instead of suspending: wait for the backup to make room.
                self._confirmed.wait_for(lambda: self._usage + size <= self.capacity, self.overflow_watch)
            if self.overflowed or self._usage + size > self.capacity:
                if not self.overflowed:
                    last = self.next_seq - 1
                    log.warning("journal_full folder=%s capacity=%d last_seq=%d", self.folder, self.capacity, last)
                    self.overflowed = True  # sticky: no later write may be journaled after one that was not
                    if self.on_full is not None:
                        self.on_full(last)
                return None
            self._active(size)
            seq = self.core.append(kind, ldev_id, offset, length, data, keep_allocated, True)
            assert seq, "the active segment has room and the journal takes the record"
            return seq

    def _active(self, need: int) -> None:
        """Make sure the active segment has room for `need` bytes: a new one when the last is
        full or was recovered, handed to the core.

        A new segment reuses a spare (a trimmed segment, renamed: its pages are
        likely still cached, so appending overwrites memory) or is preallocated.
        """
        last = self._segments[-1] if self._segments else None
        if last is not None and not last.sealed and self.core.active_size + need <= self.segment_bytes:
            return
        self._catch_up_active_segment()  # the segment being left: its final size and last record
        segment = _Segment(self.next_seq, self.folder / f"{self.next_seq:016x}.seg")
        limit = max(self.segment_bytes, need)
        if self._spares and need <= self.segment_bytes:
            os.rename(self._spares.pop(), segment.path)
        else:
            os.posix_fallocate(segment.open(), 0, limit)
        self._names_changed = True
        self._segments.append(segment)
        self.core.set_active(segment.open(), 0, limit, segment.first_seq)

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
            self._catch_up_active_segment()
            for segment in self._dirty_segments:
                os.fdatasync(segment.open())
            self._dirty_segments.clear()
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
            self.core.held_after = after_seq

    def release_shipping(self) -> None:
        self.core.held_after = None  # wakes the long polls

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until record `seq` exists and may be handed out (the backup's long poll): in the
        core, without the lock, woken by every append wherever it comes from."""
        return self.core.wait_shippable(seq, timeout)

    def read(self, from_seq: int, max_bytes: int) -> list[JournalRecord]:
        """Records from `from_seq` on, at least one, about `max_bytes` in all."""
        return decode_all(self.read_raw(from_seq, max_bytes))

    def read_raw(self, from_seq: int, max_bytes: int) -> bytes:
        """The stored bytes of the records from `from_seq` on (at least one, about `max_bytes`).

        Records of one segment lie back to back, so a batch is one pread per
        segment; the reader checks each record's CRC (end to end).
        """
        with self.lock:
            by_name = {segment.first_seq: segment for segment in self._segments}
            runs = [(by_name[name], offset, size) for name, offset, size in self.core.runs(from_seq, max_bytes)]
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
            self._catch_up_active_segment()
            self.confirmed_seq = min(seq, self.next_seq - 1)
            trimmed_write_ns = self.core.trim(self.confirmed_seq)
            if trimmed_write_ns is not None:
                self.confirmed_write_ns = trimmed_write_ns
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
        while self._segments and self._segments[0].last_seq <= self.confirmed_seq:
            first = self._segments[0]
            if len(self._segments) == 1 and (
                self.core.pending or (not first.sealed and first.size < self.segment_bytes // 2)
            ):
                break  # the active segment has room: appending on is cheaper than preallocating anew
            self._segments.pop(0)
            if not self._segments and not first.sealed:  # the active one: appends go to a new segment
                self.core.set_active(-1, 0, 0)
            self._usage -= first.size
            if first in self._dirty_segments:
                self._dirty_segments.remove(first)
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
        return self.core.after(0)[2] or None

    def unapplied(self, seq: int) -> Unapplied:
        """What this journal holds past `seq` (a backup's applied sequence): the writes the
        main site acknowledged that the backup had not applied."""
        with self.lock:  # appends stamp their time under this lock: none before as_of is missing
            as_of = time.time_ns()
            records, nbytes, oldest_ns = self.core.after(seq)
            newest = self.next_seq - 1
            if not records:
                return Unapplied(newest_seq=newest, newest_write_ns=self.newest_write_ns, as_of_ns=as_of)
            return Unapplied(records, nbytes, newest, oldest_ns, self.newest_write_ns, as_of)

    def pending(self) -> tuple[int, int]:
        """(records, bytes) appended but not yet confirmed by the backup."""
        records, nbytes, _ = self.core.after(0)
        return records, nbytes

    def close(self) -> None:
        with self.lock:
            self.sync()
            self.core.set_active(-1, 0, 0)
            for segment in self._segments:
                segment.close()
