"""The array: the pool's LDEVs, their snapshots and the host sessions open on them.

This is the object both servers share. The gRPC API calls the lifecycle
methods; the NBD server opens a `Session` per connection. Every LDEV in use has
one `LdevRuntime`: one open backing file (so a FLUSH on any connection makes
the writes of every connection durable and NBD_FLAG_CAN_MULTI_CONN is honest),
one write lock (snapshot barriers take it) and, once it has snapshots, its
copy-on-write store.

Snapshot exports are named `snapshots/<snapshot name>`; LDEV names cannot
contain '/', so the two never collide.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from backend.cow_store import CowStore
from backend.diff_bitmap import DiffBitmap
from backend.errors import AlreadyExists, Busy, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from backend.host_access import ANONYMOUS, refusal_by_name, refusal_by_publication
from backend.journal import Journal
from backend.ldev_id import format_ldev_id
from backend.ldev_io import Extent, LdevFile
from backend.locks import KeyLocks
from backend.metadata import (
    HostRecord,
    LdevRecord,
    LdevState,
    PairState,
    Publication,
    SnapshotRecord,
    SnapshotState,
)
from backend.pool import Pool, PoolCapacity, validate_labels
from backend.qos import QosLimiter
from backend.write_path import HostWrite, WritePath, WriteRefused, WriteTarget

log = logging.getLogger(__name__)

# How long a barrier waits for in-flight writes to an LDEV to finish.
BARRIER_TIMEOUT = 5.0

SNAPSHOT_EXPORT_PREFIX = "snapshots/"
PUBLICATION_EXPORT_PREFIX = "pub/"


def check_host_id(host_id: str) -> None:
    """Hosts are named by the node plugin (CSI node id) or a certificate: 1 to 256 bytes."""
    if not host_id or len(host_id.encode()) > 256:
        raise InvalidArgument("host id must be 1 to 256 bytes")


@dataclass
class LdevRuntime:
    """An LDEV open in this process."""

    ldev_id: int
    file: LdevFile
    lock: threading.Lock = field(default_factory=threading.Lock)
    cow: CowStore | None = None
    sessions: int = 0
    # Sessions per snapshot id: a snapshot in use cannot be deleted.
    snapshot_sessions: dict[int, int] = field(default_factory=dict)
    # Set while an operation (restore) needs the LDEV to itself.
    busy: str | None = None
    qos: QosLimiter = field(default_factory=QosLimiter)
    # The LDEV's current size; expansion updates it for sessions that may grow.
    size: int = 0
    # A P-VOL of a fenced (demoted) journal group: host writes are refused (backend.pair_ops.fence).
    fenced: bool = False
    # Set while the LDEV is a P-VOL of a journal group: its writes are journaled.
    journal: Journal | None = None
    # Set while its pair is suspended or its S-VOL took over: writes mark regions for resync.
    diff: DiffBitmap | None = None
    # Sessions opened through each publication token, revoked on unpublish.
    by_token: dict[str, list[Session]] = field(default_factory=dict)

    @property
    def has_snapshots(self) -> bool:
        return self.cow is not None and bool(self.cow.live_gens)


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

    def __init__(self, array: Array, runtime: LdevRuntime, record: LdevRecord, read_only: bool = False) -> None:
        self.array = array
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

    def must_wait(self, op: HostWrite) -> bool:
        """True when the write may block: on stable storage (FUA, a copy-on-write) or on the backup
        (synchronous, or inflow control holding writes while the journal is full)."""
        journal = self.runtime.journal
        waits = journal is not None and (journal.synchronous or journal.inflow_control)
        return op.fua or self.runtime.has_snapshots or waits

    def read(self, offset: int, length: int) -> bytes:
        return self.runtime.file.read(offset, length)

    def write(self, op: HostWrite) -> None:
        size = self.runtime.size if self.growable else self.size
        journal = self.runtime.journal
        seq = self.array.write_path.apply(self.runtime, op, size, self.read_only)
        if seq is not None and journal is not None and journal.synchronous:
            self.array.pair_ops.await_backup(journal, seq, self.runtime.ldev_id)

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
            self.array._close_session(self.runtime, None, self)


class SnapshotSession(Session):
    """A read-only view of an LDEV at a snapshot's instant."""

    def __init__(self, array: Array, runtime: LdevRuntime, record: LdevRecord, snapshot: SnapshotRecord) -> None:
        super().__init__(array, runtime, record)
        self.snapshot_id = snapshot.id
        self.name = SNAPSHOT_EXPORT_PREFIX + snapshot.name
        self.size = snapshot.size
        self.read_only = True

    def must_wait(self, op: HostWrite) -> bool:
        return False

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
            self.array._close_session(self.runtime, self.snapshot_id, self)


class Array:
    def __init__(self, pool: Pool, chunk_size: int = 64 * 1024, hosts_by_certificate: bool = False) -> None:
        from backend.clone import Cloner
        from backend.failback import Failbacks
        from backend.journal_groups import JournalGroups
        from backend.pair_ops import PairOperations
        from backend.pairs import Pairs
        from backend.path_watch import PathWatch
        from backend.replicator import Replicators
        from backend.snapshots import Snapshots
        from backend.takeover import Takeovers

        if chunk_size & (chunk_size - 1) or not 4096 <= chunk_size <= 1 << 20:
            raise InvalidArgument(f"snapshot chunk size must be a power of two from 4 KiB to 1 MiB, not {chunk_size}")
        self.pool = pool
        self.store = pool.store
        self.serial = pool.serial
        self.chunk_size = chunk_size
        # The data path requires client certificates: a host opens its publications by name.
        self.hosts_by_certificate = hosts_by_certificate
        self.write_path = WritePath(self.track_changes)
        self._runtimes: dict[int, LdevRuntime] = {}
        self._runtimes_lock = threading.RLock()
        self.name_locks = KeyLocks("name")
        self.id_locks = KeyLocks("LDEV")
        self.snapshots = Snapshots(self)
        self.cloner = Cloner(self)
        self.journal_groups = JournalGroups(self)
        self.pairs = Pairs(self)
        self.pair_ops = PairOperations(self)
        self.takeovers = Takeovers(self)
        self.failbacks = Failbacks(self)
        self.path_watch = PathWatch(self)
        self.replicators = Replicators(self)
        self.snapshots.recover()
        self.cloner.resume()

    def close(self) -> None:
        self.path_watch.stop()
        self.replicators.stop()
        self.cloner.stop()
        self.journal_groups.close()
        with self._runtimes_lock:
            for runtime in self._runtimes.values():
                runtime.file.sync()
                runtime.file.close()
                if runtime.cow is not None:
                    runtime.cow.close()
                if runtime.diff is not None:
                    runtime.diff.close()
            self._runtimes.clear()
        self.pool.close()

    # -- runtimes --------------------------------------------------------------
    def runtime(self, ldev_id: int) -> LdevRuntime:
        """The open runtime of an LDEV, opening its file and CoW store if needed."""
        with self._runtimes_lock:
            runtime = self._runtimes.get(ldev_id)
            if runtime is None:
                record = self.store.get_ldev(ldev_id)
                runtime = LdevRuntime(ldev_id, LdevFile(self.pool.ldev_path(ldev_id), writable=True))
                runtime.qos.update(record.max_iops, record.max_mbps)  # clones get theirs at creation
                runtime.size = record.size
                group = self.store.journal_group_of(ldev_id)
                pair = self.store.find_pair_by_ldev(ldev_id)
                copying = pair is None or pair.state in (PairState.COPY, PairState.PAIR)  # else: split
                runtime.journal = self.journal_groups.journals.get(group) if group is not None and copying else None
                if pair is not None and pair.role == "main":
                    runtime.fenced = self.store.get_journal_group(pair.group_id).fenced
                live = [
                    s.id
                    for s in self.store.list_snapshots(ldev_id=ldev_id, include_hidden=True)
                    if s.state is SnapshotState.NORMAL  # CREATING ones join at their barrier
                ]
                if live or self.cow_path(ldev_id).exists():
                    runtime.cow = CowStore(self.cow_path(ldev_id), record.chunk_size, live)
                if self.bitmap_path(ldev_id).exists():
                    runtime.diff = DiffBitmap(self.bitmap_path(ldev_id), record.size)
                self._runtimes[ldev_id] = runtime
            return runtime

    @contextmanager
    def hold_writes(self, ldev_ids: Iterable[int]) -> Iterator[list[LdevRuntime]]:
        """A write barrier: new writes to every LDEV wait while in-flight ones finish.

        The write locks are taken in LDEV id order (no deadlock between two
        barriers); inside, nothing is written to any of them: one instant.
        """
        runtimes = [self.runtime(i) for i in sorted(set(ldev_ids))]
        with ExitStack() as held:
            for runtime in runtimes:
                if not runtime.lock.acquire(timeout=BARRIER_TIMEOUT):
                    raise Busy(f"writes to LDEV {runtime.ldev_id:06x} did not drain in {BARRIER_TIMEOUT}s")
                held.callback(runtime.lock.release)
            yield runtimes

    def cow_path(self, ldev_id: int):
        return self.pool.ldev_dir / f"{ldev_id:06x}.cow"

    def bitmap_path(self, ldev_id: int):
        return self.pool.ldev_dir / f"{ldev_id:06x}.bits"

    def resync_path(self, ldev_id: int):
        """The regions a running resync copies (a bitmap set aside when it started)."""
        return self.pool.ldev_dir / f"{ldev_id:06x}.resync"

    def track_changes(self, runtime: WriteTarget) -> DiffBitmap:
        """From now on writes to the LDEV mark its differential bitmap (call under its write lock)."""
        if runtime.diff is None:
            runtime.diff = DiffBitmap(self.bitmap_path(runtime.ldev_id), self.get_ldev(runtime.ldev_id).size)
        return runtime.diff

    def set_aside_for_resync(self, runtime: LdevRuntime) -> None:
        """The bitmap becomes the set of regions a resync copies; writes stop marking it (under the write lock)."""
        os.replace(self.bitmap_path(runtime.ldev_id), self.resync_path(runtime.ldev_id))
        if runtime.diff is not None:
            runtime.diff.close()
            runtime.diff = None

    def stop_tracking_changes(self, runtime: LdevRuntime) -> None:
        if runtime.diff is not None:
            runtime.diff.discard()
            runtime.diff = None

    def ensure_cow(self, runtime: LdevRuntime, chunk_size: int) -> CowStore:
        if runtime.cow is None:
            runtime.cow = CowStore(self.cow_path(runtime.ldev_id), chunk_size, [])
        return runtime.cow

    def _forget_runtime(self, ldev_id: int) -> None:
        with self._runtimes_lock:
            runtime = self._runtimes.pop(ldev_id, None)
        if runtime is not None:
            runtime.file.close()
            if runtime.cow is not None:
                runtime.cow.close()
            if runtime.diff is not None:
                runtime.diff.close()

    # -- LDEV lifecycle (control path) -----------------------------------------
    def create_ldev(
        self,
        name: str,
        size: int,
        labels: Mapping[str, str] | None = None,
        read_only: bool = False,
        open_to_all: bool = False,
        qos: tuple[int, int] = (0, 0),
    ) -> LdevRecord:
        if qos[0] < 0 or qos[1] < 0:
            raise InvalidArgument("QoS limits cannot be negative")
        with self.name_locks.hold(name):
            record = self.pool.create_ldev(
                name, size, dict(labels or {}), read_only, self.chunk_size,
                open_to_all=open_to_all, qos=qos,
            )  # fmt: skip
        log.info("ldev_created ldev=%s name=%s size=%d", record.display_id, record.name, record.size)
        return record

    def set_qos(self, ldev_id: int, max_iops: int, max_mbps: int) -> LdevRecord:
        """New limits apply to the very next request of every session."""
        if max_iops < 0 or max_mbps < 0:
            raise InvalidArgument("QoS limits cannot be negative")
        with self.id_locks.hold(ldev_id):
            self.get_ldev(ldev_id)
            record = self.store.set_ldev_access(ldev_id, qos=(max_iops, max_mbps))
            self.runtime(ldev_id).qos.update(max_iops, max_mbps)
        log.info("ldev_qos ldev=%s max_iops=%d max_mbps=%d", record.display_id, max_iops, max_mbps)
        return record

    # -- publications (host access control) -------------------------------------
    def set_open_to_all(self, ldev_id: int, open_to_all: bool) -> LdevRecord:
        """Open the LDEV to every host, or close it to the hosts it is published to. Closing
        does not cut sessions already open: unpublish a host to cut its sessions."""
        with self.id_locks.hold(ldev_id):
            self.get_ldev(ldev_id)
            record = self.store.set_ldev_access(ldev_id, open_to_all=open_to_all)
        log.info("ldev_access ldev=%s open_to_all=%s", record.display_id, open_to_all)
        return record

    def publish(self, ldev_id: int, host_id: str, read_only: bool, max_size: int = 0) -> Publication:
        """Let `host_id` open the LDEV over NBD: by name with its client certificate, or
        through the publication's secret export name.

        Idempotent for the same host and mode; the same host asking for the
        other mode is ALREADY_EXISTS (unpublish first).
        """
        check_host_id(host_id)
        with self.id_locks.hold(ldev_id):
            record = self.get_ldev(ldev_id)
            if record.state is not LdevState.NORMAL:
                raise FailedPrecondition(f"LDEV {record.display_id} is {record.state.value}")
            if max_size % 512 or max_size < 0:
                raise InvalidArgument("max_size must be a multiple of 512")
            token = secrets.token_hex(16)
            publication = self.store.upsert_publication(token, ldev_id, host_id, read_only, max_size)
            if publication.read_only != read_only:
                raise AlreadyExists(
                    f"LDEV {record.display_id} is published to {host_id!r} "
                    f"{'read-only' if publication.read_only else 'read-write'}"
                )
        log.info("ldev_published ldev=%s host=%s read_only=%s", record.display_id, host_id, read_only)
        return publication

    def export_by_name(self, record: LdevRecord) -> str:
        """The LDEV's name when some host may open it by name here; "" when hosts reach it
        only through their publications' secret export names."""
        return record.name if record.open_to_all or self.hosts_by_certificate else ""

    def publication_export(self, publication: Publication) -> str:
        """The export name a host asks for: no secret once hosts show certificates."""
        if self.hosts_by_certificate:
            return self.store.get_ldev(publication.ldev_id).name
        return PUBLICATION_EXPORT_PREFIX + publication.token

    def register_host(self, host_id: str, max_volumes: int) -> HostRecord:
        """A node joins (its CSI node plugin says so): the host it is, and its attach limit."""
        check_host_id(host_id)
        self.store.upsert_host(host_id, max_volumes)
        log.info("host_registered host=%s max_volumes=%d", host_id, max_volumes)
        return self.get_host(host_id)

    def get_host(self, host_id: str) -> HostRecord:
        found = self.store.find_host(host_id)
        if found is None:
            raise NotFound(f"host {host_id!r} is not registered")
        return found

    def unpublish(self, ldev_id: int, host_id: str) -> None:
        """Revoke the host's access and cut its open sessions (fencing). Idempotent."""
        with self.id_locks.hold(ldev_id):
            self.get_ldev(ldev_id)
            publication = self.store.delete_publication(ldev_id, host_id)
            if publication is None:
                return
            with self._runtimes_lock:
                runtime = self._runtimes.get(ldev_id)
                sessions = runtime.by_token.pop(publication.token, []) if runtime else []
            for session in sessions:
                session.revoke()
            self._await_closed(sessions)
        log.info("ldev_unpublished ldev=%06x host=%s sessions_cut=%d", ldev_id, host_id, len(sessions))

    def _await_closed(self, sessions: list[Session], seconds: float = 30.0) -> None:
        """The data path closes cut sessions on its own loop: wait for them, so that whoever
        unpublished may delete the LDEV at once (a request still in flight finishes first)."""
        deadline = time.monotonic() + seconds
        while any(not s.closed for s in sessions):
            if time.monotonic() > deadline:
                raise Busy(f"sessions cut by the unpublish did not close in {seconds:g} s")
            time.sleep(0.005)

    def publications(self, ldev_id: int | None = None) -> list[Publication]:
        return self.store.list_publications(ldev_id)

    def delete_ldev(self, ldev_id: int, cascade: bool = False) -> None:
        with self.id_locks.hold(ldev_id):
            record = self.get_ldev(ldev_id)
            snapshots = self.store.list_snapshots(ldev_id=ldev_id, include_hidden=True)
            if snapshots and not cascade:
                raise FailedPrecondition(
                    f"LDEV {record.display_id} has {len(snapshots)} snapshot(s); delete them or ask to cascade"
                )
            for snapshot in snapshots:
                if snapshot.group_id is not None:
                    raise FailedPrecondition(
                        f"snapshot {snapshot.id} of LDEV {record.display_id} belongs to snapshot group "
                        f"{snapshot.group_id}; delete the group first"
                    )
                self.snapshots.check_unused(snapshot)
            with self._runtimes_lock:
                runtime = self._runtimes.get(ldev_id)
                if runtime is not None and (runtime.sessions or any(runtime.snapshot_sessions.values())):
                    raise FailedPrecondition(f"LDEV {record.display_id} has open NBD sessions")
                if record.state is LdevState.COPYING:
                    self.cloner.cancel(ldev_id)
                # From here new sessions are refused: the state is no longer NORMAL.
                self.store.update_ldev(ldev_id, state=LdevState.DELETING)
            for snapshot in snapshots:
                self.snapshots.delete_for_cascade(snapshot)
            self._forget_runtime(ldev_id)
            self.cow_path(ldev_id).unlink(missing_ok=True)
            self.bitmap_path(ldev_id).unlink(missing_ok=True)
            self.resync_path(ldev_id).unlink(missing_ok=True)
            self.pool.delete_ldev(record)
        log.info("ldev_deleted ldev=%s name=%s snapshots=%d", record.display_id, record.name, len(snapshots))

    def expand_ldev(self, ldev_id: int, new_size: int) -> LdevRecord:
        with self.id_locks.hold(ldev_id):
            record = self.get_ldev(ldev_id)
            if record.state is not LdevState.NORMAL:
                raise FailedPrecondition(f"LDEV {record.display_id} is {record.state.value}")
            record = self.pool.expand_ldev(record, new_size)
            with self._runtimes_lock:
                if ldev_id in self._runtimes:
                    self._runtimes[ldev_id].size = record.size
        log.info("ldev_expanded ldev=%s size=%d", record.display_id, record.size)
        return record

    def update_labels(self, ldev_id: int, set_labels: Mapping[str, str], remove: list[str]) -> LdevRecord:
        with self.id_locks.hold(ldev_id):
            record = self.get_ldev(ldev_id)
            merged = {k: v for k, v in record.labels.items() if k not in remove} | dict(set_labels)
            validate_labels(merged)
            return self.store.update_labels(ldev_id, set_labels, remove)

    def get_ldev(self, ldev_id: int) -> LdevRecord:
        return self.store.get_ldev(ldev_id)

    def get_ldev_by_name(self, name: str) -> LdevRecord:
        record = self.store.find_ldev_by_name(name)
        if record is None:
            raise NotFound(f"LDEV named {name!r} not found")
        return record

    def list_ldevs(
        self, after_id: int = -1, limit: int | None = None, label_selector: Mapping[str, str] | None = None
    ) -> list[LdevRecord]:
        return self.store.list_ldevs(after_id, limit, label_selector)

    def open_runtimes(self) -> list[LdevRuntime]:
        """The LDEVs with open files (in use since the array started): what metrics read."""
        with self._runtimes_lock:
            return list(self._runtimes.values())

    def capacity(self) -> PoolCapacity:
        return self.pool.capacity()

    def allocated_bytes(self, ldev_id: int) -> int:
        return self.pool.allocated_bytes(ldev_id)

    def snapshot_bytes(self, ldev_id: int) -> int:
        """Pool space the LDEV's snapshots hold (its copy-on-write store)."""
        try:
            return self.cow_path(ldev_id).stat().st_blocks * 512
        except FileNotFoundError:
            return 0

    def open_sessions(self, ldev_id: int) -> int:
        with self._runtimes_lock:
            runtime = self._runtimes.get(ldev_id)
            return 0 if runtime is None else runtime.sessions

    # -- sessions (data path) --------------------------------------------------
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

    def describe_export(self, name: str, host: str = ANONYMOUS) -> ExportView:
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

    def open_session(self, name: str, host: str = ANONYMOUS) -> Session:
        with self._runtimes_lock:
            grant = self._grant(name, host)
            runtime = self.runtime(grant.ldev.id)
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

    def _close_session(self, runtime: LdevRuntime, snapshot_id: int | None, session: Session) -> None:
        with self._runtimes_lock:
            if snapshot_id is None:
                runtime.sessions -= 1
            else:
                runtime.snapshot_sessions[snapshot_id] -= 1
            if session.token and session in runtime.by_token.get(session.token, []):
                runtime.by_token[session.token].remove(session)
        # Closing must not lose acknowledged writes, whoever flushes next.
        runtime.file.sync()
        log.info("session_closed ldev=%06x snapshot=%s sessions=%d", runtime.ldev_id, snapshot_id, runtime.sessions)
