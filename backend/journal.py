"""The journal of one journal group: append-only segment files, one sequence.

Every host write to a P-VOL of the group becomes a record with the group's
next sequence number, appended in the order the array acknowledges writes, so
one sequence orders all volumes of the group (the consistency group).

Files: `<group folder>/<first seq, 16 hex>.seg`, rolled over at SEGMENT_BYTES.
Durability: `append` writes (the page cache); `sync` makes every appended
record durable (fdatasync); FUA and FLUSH on a P-VOL call it before the host
is answered. Recovery (at open) reads every segment: a torn or corrupt tail
of the newest segment is cut off (those writes were never acknowledged as
durable), damage anywhere else is refused (JournalDamaged). Records the
backup has confirmed are trimmed, whole segments at a time.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import ArrayError
from backend.journal_record import Corrupt, JournalRecord, RecordKind, Torn, decode, encode
from backend.ldev_io import fsync_dir

log = logging.getLogger(__name__)

SEGMENT_BYTES = 64 << 20


class JournalDamaged(ArrayError):
    """A journal segment other than the newest is damaged: replication cannot go on."""


@dataclass
class _Segment:
    first_seq: int
    path: Path
    size: int = 0
    last_seq: int = 0
    fd: int = -1

    def open(self) -> int:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class _Entry:
    seq: int
    segment: _Segment
    offset: int
    size: int
    timestamp_ns: int


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
    _dirty: bool = False
    _appended: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._appended = threading.Condition(self.lock)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._recover()

    # -- recovery ---------------------------------------------------------------
    def _recover(self) -> None:
        paths = sorted(self.folder.glob("*.seg"), key=lambda p: int(p.stem, 16))
        previous: int | None = None
        for index, path in enumerate(paths):
            segment = _Segment(int(path.stem, 16), path)
            raw = path.read_bytes()
            pos = 0
            while pos < len(raw):
                try:
                    record, end = decode(raw, pos)
                except (Torn, Corrupt) as exc:
                    if index != len(paths) - 1:
                        raise JournalDamaged(f"{path}: {exc}") from exc
                    self._cut(path, pos, exc)
                    break
                if previous is not None and record.seq != previous + 1:
                    raise JournalDamaged(f"{path}: sequence jumps from {previous} to {record.seq}")
                previous = record.seq
                if record.seq > self.confirmed_seq:
                    self.entries.append(_Entry(record.seq, segment, pos, end - pos, record.timestamp_ns))
                segment.last_seq = record.seq
                pos = end
            segment.size = pos
            self.segments.append(segment)
        self.next_seq = max(self.confirmed_seq, previous or 0) + 1
        self._drop_confirmed_segments()
        log.info(
            "journal_recovered folder=%s records=%d next_seq=%d confirmed=%d",
            self.folder, len(self.entries), self.next_seq, self.confirmed_seq,
        )  # fmt: skip

    def _cut(self, path: Path, pos: int, why: Exception) -> None:
        """Cut a torn tail: those records were never acknowledged as durable."""
        with open(path, "r+b") as f:
            f.truncate(pos)
            f.flush()
            os.fsync(f.fileno())
        log.warning("journal_tail_cut path=%s at=%d reason=%s", path, pos, why)

    # -- appending ----------------------------------------------------------------
    def usage_bytes(self) -> int:
        with self.lock:
            return sum(s.size for s in self.segments)

    def append(
        self,
        kind: RecordKind,
        ldev_id: int,
        offset: int,
        length: int,
        data: bytes | memoryview = b"",
        keep_allocated: bool = False,
    ) -> JournalRecord | None:
        """Give the write the group's next sequence and append it (not yet durable).

        Returns None, and marks the journal overflowed, when the journal is full.
        """  # fmt: skip
        with self.lock:
            record = JournalRecord(
                self.next_seq, kind, ldev_id, offset, length, time.time_ns(), bytes(data), keep_allocated
            )
            if self.usage_bytes() + record.encoded_size > self.capacity:
                if not self.overflowed:
                    log.warning("journal_full folder=%s capacity=%d seq=%d", self.folder, self.capacity, record.seq)
                self.overflowed = True
                return None
            raw = encode(record)
            segment = self._active(len(raw))
            view, position = memoryview(raw), segment.size
            while view:
                written = os.pwrite(segment.open(), view, position)
                view, position = view[written:], position + written
            self.entries.append(_Entry(record.seq, segment, segment.size, len(raw), record.timestamp_ns))
            segment.size += len(raw)
            segment.last_seq = record.seq
            self.next_seq += 1
            self._dirty = True
            self._appended.notify_all()
            return record

    def _active(self, need: int) -> _Segment:
        if self.segments and self.segments[-1].size + need <= SEGMENT_BYTES:
            return self.segments[-1]
        if self.segments:  # roll over: the full segment must be durable before the next one starts
            previous = self.segments[-1]
            if self._dirty:
                os.fdatasync(previous.open())
            previous.close()
        segment = _Segment(self.next_seq, self.folder / f"{self.next_seq:016x}.seg")
        segment.open()
        fsync_dir(self.folder)
        self.segments.append(segment)
        return segment

    def sync(self) -> None:
        """Durability point: every record appended so far survives power loss."""
        with self.lock:
            if self._dirty and self.segments:
                os.fdatasync(self.segments[-1].open())
                self._dirty = False

    # -- reading and trimming ------------------------------------------------------
    def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until record `seq` exists (the backup's long poll)."""
        with self._appended:
            return self._appended.wait_for(lambda: self.next_seq > seq, timeout)

    def read(self, from_seq: int, max_bytes: int) -> list[JournalRecord]:
        """Records from `from_seq` on, at least one, about `max_bytes` in all."""
        with self.lock:
            start = bisect.bisect_left([e.seq for e in self.entries], from_seq)
            chosen, total = [], 0
            for entry in self.entries[start:]:
                if chosen and total + entry.size > max_bytes:
                    break
                chosen.append(entry)
                total += entry.size
            out = []
            for entry in chosen:
                raw = os.pread(entry.segment.open(), entry.size, entry.offset)
                out.append(decode(raw)[0])
            return out

    def trim_through(self, seq: int) -> None:
        """The backup has applied (durably) every record up to `seq`."""
        with self.lock:
            if seq <= self.confirmed_seq:
                return
            self.confirmed_seq = min(seq, self.next_seq - 1)
            keep = bisect.bisect_right([e.seq for e in self.entries], self.confirmed_seq)
            del self.entries[:keep]
            self._drop_confirmed_segments()

    def _drop_confirmed_segments(self) -> None:
        while len(self.segments) > 1 and self.segments[0].last_seq <= self.confirmed_seq:
            old = self.segments.pop(0)
            old.close()
            old.path.unlink(missing_ok=True)
        if self.segments and not self.entries and self.segments[-1].last_seq <= self.confirmed_seq:
            # Everything confirmed: start afresh so the space is given back.
            last = self.segments.pop()
            last.close()
            last.path.unlink(missing_ok=True)
            fsync_dir(self.folder)

    def oldest_pending_ns(self) -> int | None:
        with self.lock:
            return self.entries[0].timestamp_ns if self.entries else None

    def pending(self) -> tuple[int, int]:
        """(records, bytes) appended but not yet confirmed by the backup."""
        with self.lock:
            return len(self.entries), sum(e.size for e in self.entries)

    def close(self) -> None:
        with self.lock:
            self.sync()
            for segment in self.segments:
                segment.close()
