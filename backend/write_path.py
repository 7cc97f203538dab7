"""The one write path: every host write to an LDEV goes through `WritePath.apply`.

NBD WRITE, TRIM and WRITE_ZEROES, and later clone, restore and the S-VOL
apply loop, all arrive here, so the order of steps is decided in one place:

1. validate: protection (read-only LDEV) and bounds; nothing is touched on error;
2. snapshot copy-on-write: preserve old chunks for live snapshots (backend.cow_store),
   durably, before step 4 may overwrite them;
3. journal append when the LDEV is a P-VOL of a journal group (backend.journal):
   the group's next sequence, in the order writes land; or, while its pair is
   suspended (or its S-VOL took over), mark the written regions in its
   differential bitmap (backend.diff_bitmap), durably, before step 4;
4. data: write, punch or zero the range of the LDEV's backing file;
5. durability when FUA is asked: fdatasync of the data (and journal) before
   returning, so the caller may acknowledge to the host right after.

A host write is acknowledged only after `apply` returns.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from backend.cow_store import CowStore
from backend.diff_bitmap import DiffBitmap
from backend.errors import ArrayError
from backend.journal import Journal
from backend.journal_record import RecordKind
from backend.ldev_io import LdevFile, read_range


class WriteKind(Enum):
    DATA = "write"
    TRIM = "trim"
    ZEROES = "write_zeroes"
    # Data taken from another open file (a clone's or a restore's source): the
    # kernel copies it, and Python never holds the bytes unless a journal needs them.
    COPY = "copy"


_RECORD_KINDS = {
    WriteKind.DATA: RecordKind.WRITE,
    WriteKind.COPY: RecordKind.WRITE,
    WriteKind.TRIM: RecordKind.TRIM,
    WriteKind.ZEROES: RecordKind.ZEROES,
}


@dataclass(frozen=True)
class CopySource:
    """Where a COPY write's bytes are: an open file and the offset of the first byte."""

    fd: int
    offset: int


@dataclass(frozen=True)
class HostWrite:
    kind: WriteKind
    offset: int
    length: int
    data: bytes | memoryview | None = None
    fua: bool = False
    # WRITE_ZEROES with NBD_CMD_FLAG_NO_HOLE: the range stays allocated.
    keep_allocated: bool = False
    # COPY: the file range the bytes come from.
    source: CopySource | None = None


class WriteRefused(ArrayError):
    """A host write that the array refuses before touching any data.

    `errno` is the POSIX error a block protocol should report (EPERM for a
    read-only LDEV, ENOSPC past its end, EINVAL for an inconsistent request).
    """

    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err


class WriteTarget(Protocol):
    """What the write path needs of the LDEV it writes to (an `LdevRuntime`)."""

    ldev_id: int
    file: LdevFile
    lock: threading.Lock
    cow: CowStore | None
    journal: Journal | None
    diff: DiffBitmap | None
    fenced: bool


class WritePath:
    def __init__(self, journal_full: Callable[[WriteTarget], None]) -> None:
        # When an LDEV's journal takes no more: it stops journaling and starts its
        # differential bitmap (the journal groups decide, backend.replication.journal_groups).
        self.journal_full = journal_full

    def copy_ahead(self, target: WriteTarget, ranges: Iterable[tuple[int, int]]) -> None:
        """Make durable, with one sync, the copies a run of writes to the LDEV is about to need
        (a copy loop's answer, a batch of journal records, written one after the other): each
        write's step 2 then finds its copies durable instead of syncing alone."""
        cow = target.cow
        if cow is None or not cow.live_gens:
            return
        ticket, end = 0, target.file.size()  # an LDEV only grows: writes past `end` are refused by `apply`
        for offset, length in ranges:  # the lock range by range: host writes slip in between
            with target.lock:
                ticket = max(ticket, cow.stage(target.file, offset, min(length, end - offset)))
        cow.make_durable(ticket)

    def _lock_with_copies_durable(self, target: WriteTarget, op: HostWrite) -> None:
        """Take the LDEV's lock with every copy the write needs durable; the caller releases it.

        The copies are written under the lock and synced outside it, where one
        fdatasync serves every writer waiting (group commit, backend.cow_store);
        then the lock is taken again and the check repeated, so the write goes on
        under the very lock that saw its copies durable (a snapshot taken in
        between only means one more round).
        """
        while True:
            target.lock.acquire()
            try:
                # A fenced P-VOL (its group demoted, being handed to the other site) takes no host
                # write: checked under the lock, so a write either finished before the fence or is refused.
                if target.fenced:
                    raise WriteRefused(errno.EPERM, f"LDEV {target.ldev_id} is fenced: its journal group was demoted")
                cow = target.cow
                ticket = cow.stage(target.file, op.offset, op.length) if cow is not None else 0
            except BaseException:
                target.lock.release()
                raise
            if not ticket:
                return
            target.lock.release()
            assert cow is not None
            cow.make_durable(ticket)

    def apply(self, target: WriteTarget, op: HostWrite, size: int, read_only: bool) -> int | None:
        """Run the steps above; the write's journal sequence (None: not journaled).

        Raises WriteRefused or OSError (pool full, I/O error).

        `size` and `read_only` are what the writer was promised (an NBD session's
        view), so a host never writes past the size it was told.
        """
        # 1. validate
        if read_only:
            raise WriteRefused(errno.EPERM, f"LDEV {target.ldev_id} is read-only")
        if op.offset + op.length > size:
            raise WriteRefused(errno.ENOSPC, f"{op.kind.value} past the end of LDEV {target.ldev_id}")
        if op.kind is WriteKind.DATA and (op.data is None or len(op.data) != op.length):
            raise WriteRefused(errno.EINVAL, "write payload length differs from the request length")
        if (op.kind is WriteKind.COPY) != (op.source is not None):
            raise WriteRefused(errno.EINVAL, "a copy names its source, and only a copy does")
        # 2. snapshot copy-on-write: old chunks are durable in the CoW store
        #    before step 4 may overwrite them. The LDEV's write lock, held from
        #    here to step 4, orders this write against snapshot barriers and
        #    against other writes' copy-on-write of the same chunks.
        self._lock_with_copies_durable(target, op)
        try:
            # 3. journal append: a P-VOL's write gets its group's next sequence,
            #    in the order writes land (under the LDEV lock, so overlapping
            #    writes are journaled in the order they reach the data). A full
            #    journal takes no more: the group is suspended (PFUS) and from
            #    this write on the LDEV's writes mark its differential bitmap.
            journal, seq = target.journal, None
            if journal is not None:
                payload = _payload(op)
                kind = _RECORD_KINDS[op.kind]
                seq = journal.append(kind, target.ldev_id, op.offset, op.length, payload, op.keep_allocated)
                if seq is None:
                    self.journal_full(target)
                    journal = None
            if target.diff is not None:
                target.diff.mark(op.offset, op.length)
            # 4. data
            if op.kind is WriteKind.DATA:
                assert op.data is not None
                target.file.write(op.offset, op.data)
            elif op.source is not None:
                target.file.copy_from(op.source.fd, op.source.offset, op.offset, op.length)
            elif op.kind is WriteKind.TRIM or not op.keep_allocated:
                target.file.punch_hole(op.offset, op.length)
            else:
                target.file.zero_allocated(op.offset, op.length)
        finally:
            target.lock.release()
        # 5. durability
        if op.fua:
            target.file.sync()
            if journal is not None:
                journal.sync()
        return seq


def _payload(op: HostWrite) -> bytes | memoryview:
    """The bytes a journal record of the write carries (none for TRIM and WRITE_ZEROES)."""
    if op.source is not None:
        return read_range(op.source.fd, op.source.offset, op.length)
    return op.data if op.kind is WriteKind.DATA and op.data is not None else b""
