"""Host sessions: what a host may open over NBD, and each open view of an LDEV.

The NBD server asks here which exports a host may list and open (deny by
default: an LDEV is a host's through its publication, or open to all; see
backend/host_access.py) and opens a `Session` per connection. A session's
size and protection are fixed at open; its writes take the one write path.
Snapshot exports are named `snapshots/<snapshot name>`; LDEV names cannot
contain '/', so the two never collide.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

from backend.copy_batches import CopyBatches, Done
from backend.errors import ArrayError, Busy, FailedPrecondition, NotFound, PermissionDenied
from backend.host_access import ANONYMOUS, refusal_by_name, refusal_by_publication
from backend.journal import Journal
from backend.ldev_io import Extent
from backend.model import LdevRecord, LdevState, Publication, SnapshotRecord, SnapshotState
from backend.runtimes import LdevRuntime, Runtimes
from backend.store import MetadataStore
from backend.write_path import HostWrite, WritePath, WriteRefused
from ccopy_common.ldev_id import format_ldev_id

log = logging.getLogger(__name__)


SNAPSHOT_EXPORT_PREFIX = "snapshots/"

PUBLICATION_EXPORT_PREFIX = "pub/"


class WriteMode(Enum):
    """Where a host write runs (`Session.write_mode`)."""

    NOW = "now"  # nothing to wait for: on the caller's thread (the NBD event loop)
    AFTER_COPIES = "after-copies"  # copies for snapshots first: the LDEV's copy batches
    BLOCKING = "blocking"  # waits on stable storage or on the backup: a thread that may block


@dataclass(frozen=True)
class ExportView:
    """What a host is told about an export at handshake time."""

    name: str
    size: int
    read_only: bool
    description: str


@dataclass(frozen=True)
class ExportGrant:
    """An export a host may open: the LDEV, and the snapshot or the publication it goes through."""

    ldev: LdevRecord
    snapshot: SnapshotRecord | None = None
    publication: Publication | None = None

    @property
    def read_only(self) -> bool:
        return self.snapshot is not None or self.ldev.read_only or bool(self.publication and self.publication.read_only)

    @property
    def size(self) -> int:
        if self.snapshot is not None:
            return self.snapshot.size
        return max(self.ldev.size, self.publication.max_size if self.publication else 0)


class Session:
    """One host's view of one LDEV, fixed at open: size and protection do not
    change under a connected host (an expanded LDEV shows on the next open)."""

    def __init__(self, sessions: Sessions, runtime: LdevRuntime, record: LdevRecord, read_only: bool = False) -> None:
        self.sessions = sessions
        self.runtime = runtime
        self.ldev_id = record.id
        self.name = record.name
        self.size = record.size
        self.read_only = record.read_only or read_only
        self.closed = False
        self.token: str | None = None
        # Publications with headroom: the host was told a larger size and
        # writes reach as far as the LDEV has grown by now.
        self.growable = False
        # Set by the transport: ends the host's connection when access is revoked.
        self.on_revoke: Callable[[], None] | None = None

    def throttle(self, nbytes: int, now: float) -> float:
        """Seconds to hold a request so the LDEV stays within its QoS limits."""
        return self.runtime.qos.reserve(nbytes, now)

    def revoke(self) -> None:
        if self.on_revoke is not None:
            self.on_revoke()

    def write_mode(self, op: HostWrite) -> WriteMode:
        """Where the write may run: it blocks on stable storage when FUA is asked, or on the
        backup (synchronous, or inflow control holding writes while the journal is full); it
        waits for copies when it overwrites chunks a snapshot still sees and their copies are
        not durable yet (a write to chunks already copied does not wait)."""
        journal, cow = self.runtime.journal, self.runtime.cow
        if op.fua or (journal is not None and (journal.synchronous or journal.inflow_control)):
            return WriteMode.BLOCKING
        if not self.read_only and cow is not None and cow.must_stage(op.offset, op.length):
            # A small write's copy is quick and its sync is the cost: batched. A write over
            # several chunks copies much: pool threads copy several such writes side by side.
            return WriteMode.AFTER_COPIES if op.length <= cow.chunk_size else WriteMode.BLOCKING
        return WriteMode.NOW

    def prepare_copies(self, op: HostWrite, done: Done) -> None:
        """Have the LDEV's copier make the write's copies durable with those of other writes
        (backend.copy_batches); `done` is called from its thread with None or the copy's error."""
        runtime = self.runtime
        with self.sessions.copiers_lock:
            if runtime.copy_batches is None:
                runtime.copy_batches = CopyBatches(self.sessions.write_path, runtime)
            copier = runtime.copy_batches
        copier.submit(op.offset, op.length, done)

    def copy_ahead(self, ops: list[HostWrite]) -> None:
        """Writes that arrived together (a native connection's batch): the copies for snapshots
        they will need, made durable with one sync before the first of them is applied, so
        each finds its copies durable instead of syncing alone. A copy that fails here (the
        CoW store is full) is left to the write that needs it, which fails with its own error."""
        if self.read_only or self.runtime.cow is None or not ops:
            return
        try:
            self.sessions.write_path.copy_ahead(self.runtime, [(op.offset, op.length) for op in ops])
        except (OSError, ArrayError) as exc:
            log.warning("copy_ahead_failed ldev=%s writes=%d error=%s", format_ldev_id(self.ldev_id), len(ops), exc)

    def read(self, offset: int, length: int) -> bytes:
        return self.runtime.file.read(offset, length)

    def write(self, op: HostWrite) -> None:
        size = self.runtime.size if self.growable else self.size
        journal = self.runtime.journal
        seq = self.sessions.write_path.apply(self.runtime, op, size, self.read_only)
        if seq is not None and journal is not None and journal.synchronous:
            self.sessions.await_backup(journal, seq, self.runtime.ldev_id)

    def flush(self) -> None:
        self.runtime.file.sync()
        journal = self.runtime.journal
        if journal is not None:  # FLUSH covers the journal records of the writes too
            journal.sync()

    def extents(self, offset: int, length: int) -> Iterator[Extent]:
        end = offset
        for extent in self.runtime.file.extents(offset, length):
            end = extent.offset + extent.length
            yield extent
        if end < offset + length:  # headroom past the LDEV reads as zeroes
            yield Extent(end, offset + length - end, True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sessions.close(self.runtime, None, self)


class SnapshotSession(Session):
    """A read-only view of an LDEV at a snapshot's instant."""

    def __init__(self, sessions: Sessions, runtime: LdevRuntime, record: LdevRecord, snapshot: SnapshotRecord) -> None:
        super().__init__(sessions, runtime, record)
        self.snapshot_id = snapshot.id
        self.name = SNAPSHOT_EXPORT_PREFIX + snapshot.name
        self.size = snapshot.size
        self.read_only = True

    def write_mode(self, op: HostWrite) -> WriteMode:
        return WriteMode.NOW  # refused at once: read-only

    def read(self, offset: int, length: int) -> bytes:
        with self.runtime.lock:
            assert self.runtime.cow is not None
            return self.runtime.cow.read(self.runtime.file, self.snapshot_id, offset, length)

    def write(self, op: HostWrite) -> None:
        raise WriteRefused(1, f"snapshot {self.snapshot_id} is read-only")

    def flush(self) -> None:
        return None

    def extents(self, offset: int, length: int) -> Iterator[Extent]:
        with self.runtime.lock:
            assert self.runtime.cow is not None
            return iter(list(self.runtime.cow.extents(self.runtime.file, self.snapshot_id, offset, length)))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sessions.close(self.runtime, self.snapshot_id, self)


class Sessions:
    """The hosts' open sessions, over the runtimes' registry. `await_backup` holds a
    synchronous group's write until the backup applied it (the pair operations')."""

    def __init__(
        self,
        store: MetadataStore,
        runtimes: Runtimes,
        write_path: WritePath,
        await_backup: Callable[[Journal, int, int], None],
    ) -> None:
        self.store = store
        self.runtimes = runtimes
        self.write_path = write_path
        self.copiers_lock = threading.Lock()  # makes each LDEV's copier once (Session.prepare_copies)
        self.await_backup = await_backup

    def export_names(self, host: str = ANONYMOUS) -> list[str]:
        """The exports `host` may open by name (NBD_OPT_LIST): others' LDEVs are not shown."""
        published: dict[int, list[str]] = {}
        for publication in self.store.list_publications():
            published.setdefault(publication.ldev_id, []).append(publication.host_id)
        open_ldevs = {
            r.id: r.name
            for r in self.store.list_ldevs()
            if r.state is LdevState.NORMAL and refusal_by_name("", r.open_to_all, published.get(r.id, ()), host) is None
        }
        snapshots = [
            SNAPSHOT_EXPORT_PREFIX + s.name
            for s in self.store.list_snapshots()
            if s.state is SnapshotState.NORMAL and not s.hidden and s.ldev_id in open_ldevs
        ]
        return [*open_ldevs.values(), *snapshots]

    def describe(self, name: str, host: str = ANONYMOUS) -> ExportView:
        """What `host` (its client certificate's name, or ANONYMOUS) would get for an export
        name, without opening it: NotFound for no such export, PermissionDenied for one that
        is not the host's (backend/host_access.py)."""
        grant = self._grant(name, host)
        if grant.snapshot is not None:
            description = f"snapshot {grant.snapshot.id} of LDEV {grant.ldev.display_id}"
        elif grant.publication is not None:
            description = f"LDEV {grant.ldev.display_id} for {grant.publication.host_id}"
        else:
            description = f"LDEV {grant.ldev.display_id}"
        return ExportView(name, grant.size, grant.read_only, description)

    def _grant(self, name: str, host: str) -> ExportGrant:
        if name.startswith(PUBLICATION_EXPORT_PREFIX):
            publication = self.store.find_publication(name.removeprefix(PUBLICATION_EXPORT_PREFIX))
            if publication is None:
                raise NotFound(f"no export named {name!r}")
            grant = ExportGrant(self.store.get_ldev(publication.ldev_id), publication=publication)
            refusal = refusal_by_publication(publication.host_id, host)
        elif name.startswith(SNAPSHOT_EXPORT_PREFIX):
            snapshot = self.store.find_snapshot_by_name(name.removeprefix(SNAPSHOT_EXPORT_PREFIX))
            if snapshot is None or snapshot.state is not SnapshotState.NORMAL or snapshot.hidden:
                raise NotFound(f"no export named {name!r}")
            grant = ExportGrant(self.store.get_ldev(snapshot.ldev_id), snapshot=snapshot)
            hosts = [p.host_id for p in self.store.list_publications(snapshot.ldev_id)]
            refusal = refusal_by_name(f"the LDEV of snapshot {snapshot.name!r}", grant.ldev.open_to_all, hosts, host)
        else:
            record = self.store.find_ldev_by_name(name)
            if record is None:
                raise NotFound(f"no export named {name!r}")
            publications = self.store.list_publications(record.id)
            mine = next((p for p in publications if host != ANONYMOUS and p.host_id == host), None)
            grant = ExportGrant(record, publication=mine)
            hosts = [p.host_id for p in publications]
            refusal = refusal_by_name(f"LDEV {record.display_id}", record.open_to_all, hosts, host)
        if grant.ldev.state is not LdevState.NORMAL:
            raise NotFound(f"no export named {name!r}")
        if refusal is not None:
            raise PermissionDenied(refusal)
        return grant

    def open(self, name: str, host: str = ANONYMOUS) -> Session:
        with self.runtimes.guard:
            grant = self._grant(name, host)
            runtime = self.runtimes.get(grant.ldev.id)
            if grant.snapshot is not None:
                runtime.snapshot_sessions[grant.snapshot.id] = runtime.snapshot_sessions.get(grant.snapshot.id, 0) + 1
                session: Session = SnapshotSession(self, runtime, grant.ldev, grant.snapshot)
            else:
                if runtime.busy:
                    raise FailedPrecondition(f"LDEV {grant.ldev.display_id} is busy: {runtime.busy}")
                runtime.sessions += 1
                publication = grant.publication
                session = Session(self, runtime, grant.ldev, read_only=grant.read_only)
                if publication is not None:  # unpublishing cuts the session, however it was opened
                    session.token = publication.token
                    session.growable = publication.max_size > grant.ldev.size
                    session.size = grant.size
                    runtime.by_token.setdefault(publication.token, []).append(session)
        log.info("session_opened ldev=%s export=%s host=%s", format_ldev_id(runtime.ldev_id), name, host or "-")
        return session

    def close(self, runtime: LdevRuntime, snapshot_id: int | None, session: Session) -> None:
        with self.runtimes.guard:
            if snapshot_id is None:
                runtime.sessions -= 1
            else:
                runtime.snapshot_sessions[snapshot_id] -= 1
            if session.token and session in runtime.by_token.get(session.token, []):
                runtime.by_token[session.token].remove(session)
        # Closing must not lose acknowledged writes, whoever flushes next.
        runtime.file.sync()
        log.info("session_closed ldev=%06x snapshot=%s sessions=%d", runtime.ldev_id, snapshot_id, runtime.sessions)

    def cut(self, ldev_id: int, token: str) -> int:
        """Revoke the sessions opened through a publication (it was withdrawn) and wait until
        the data path closed them; how many there were."""
        with self.runtimes.guard:
            runtime = self.runtimes.find(ldev_id)
            sessions = runtime.by_token.pop(token, []) if runtime else []
        for session in sessions:
            session.revoke()
        self._await_closed(sessions)
        return len(sessions)

    def _await_closed(self, sessions: list[Session], seconds: float = 30.0) -> None:
        """The data path closes cut sessions on its own loop: wait for them, so that whoever
        unpublished may delete the LDEV at once (a request still in flight finishes first)."""
        deadline = time.monotonic() + seconds
        while any(not s.closed for s in sessions):
            if time.monotonic() > deadline:
                raise Busy(f"sessions cut by the unpublish did not close in {seconds:g} s")
            time.sleep(0.005)
