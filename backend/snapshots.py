"""Snapshots and snapshot groups of LDEVs, restore, and changed-block queries.

A snapshot is one generation number (its id) added to its LDEV's CoW store;
taking it copies nothing. A snapshot group takes the snapshots of N LDEVs at
one instant with a barrier:

1. reserve the group and its snapshots (state CREATING, durable);
2. barrier: take the write lock of every member LDEV (in LDEV id order), so
   new writes wait and in-flight writes finish; add each snapshot's generation
   to its CoW store; release. Nothing slow happens while the locks are held,
   so the stall is the time to drain in-flight writes plus microseconds;
3. mark everything NORMAL (durable) and answer.

A crash before step 3 leaves CREATING rows that `recover` deletes: the caller
never got an answer, and the CoW store frees what only they needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass

from backend.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from backend.model import LdevRecord, LdevState, SnapshotGroupRecord, SnapshotRecord, SnapshotState
from backend.pool import validate_labels, validate_name
from backend.services import ArrayServices
from backend.write_path import HostWrite, WriteKind
from ccopy_common.ldev_id import format_ldev_id

log = logging.getLogger(__name__)

MAX_SNAPSHOTS_PER_LDEV = 1024
PROGRESS_EVERY = 2.0


@dataclass(frozen=True)
class TakenGroup:
    group: SnapshotGroupRecord | None
    snapshots: list[SnapshotRecord]
    stall_seconds: float


@dataclass(frozen=True)
class ExtentPage:
    extents: list[tuple[int, int]]
    next_offset: int  # 0 when this is the last page
    chunk_size: int
    size: int


def group_member_name(group_name: str, ldev: LdevRecord) -> str:
    return f"{group_name}-{ldev.id:06x}"


def chunks_to_extents(chunks: Iterable[int], chunk_size: int, size: int) -> list[tuple[int, int]]:
    """Sorted chunk numbers -> merged (offset, length) byte runs, clipped to `size`."""
    extents: list[tuple[int, int]] = []
    for chunk in chunks:
        start = chunk * chunk_size
        if start >= size:
            break
        end = min(size, start + chunk_size)
        if extents and extents[-1][0] + extents[-1][1] == start:
            extents[-1] = (extents[-1][0], end - extents[-1][0])
        else:
            extents.append((start, end - start))
    return extents


def page_of(extents: list[tuple[int, int]], start: int, max_results: int) -> tuple[list[tuple[int, int]], int]:
    """Extents from byte offset `start` on (the first one clipped), at most `max_results`."""
    out: list[tuple[int, int]] = []
    for offset, length in extents:
        end = offset + length
        if end <= start:
            continue
        if offset < start:
            offset, length = start, end - start
        if len(out) == max_results:
            return out, offset
        out.append((offset, length))
    return out, 0


class Snapshots:
    def __init__(self, services: ArrayServices) -> None:
        self.store = services.store
        self.runtimes = services.runtimes
        self.write_path = services.write_path
        self.name_locks = services.name_locks
        self.id_locks = services.id_locks

    def recover(self) -> None:
        """Drop snapshots and groups a crash left CREATING: nobody was told they exist."""
        stale = [s for s in self.store.list_snapshots(include_hidden=True) if s.state is SnapshotState.CREATING]
        groups = [g for g in self.store.list_snapshot_groups() if g.state is SnapshotState.CREATING]
        for group in groups:
            self.store.delete_snapshots([], group.id)
        if stale:
            self.store.delete_snapshots([s.id for s in stale])
            log.info("recovered event=creating_snapshots_dropped count=%d", len(stale))

    # -- taking snapshots ------------------------------------------------------
    def create_snapshot(
        self,
        name: str,
        ldev_id: int,
        labels: Mapping[str, str] | None = None,
        hidden: bool = False,
        during_barrier: Callable[[], None] | None = None,
    ) -> SnapshotRecord:
        """Idempotent by name: the same name on the same LDEV returns the existing snapshot."""
        validate_name(name)
        validate_labels(labels or {})
        existing = self.store.find_snapshot_by_name(name)
        if existing is not None:
            if existing.ldev_id != ldev_id or existing.group_id is not None:
                raise AlreadyExists(f"snapshot {name!r} exists for another source")
            return existing
        ldev = self.store.get_ldev(ldev_id)
        return self._take("", [(name, ldev)], labels or {}, hidden, during_barrier).snapshots[0]

    def create_group(self, name: str, ldev_ids: list[int], labels: Mapping[str, str] | None = None) -> TakenGroup:
        """Snapshots of every LDEV at one instant. Idempotent by name and member set."""
        validate_name(name)
        validate_labels(labels or {})
        if not ldev_ids:
            raise InvalidArgument("a snapshot group needs at least one LDEV")
        if len(set(ldev_ids)) != len(ldev_ids):
            raise InvalidArgument("an LDEV appears twice in the snapshot group")
        existing = self.store.find_snapshot_group_by_name(name)
        if existing is not None:
            members = self.store.list_snapshots(group_id=existing.id)
            if sorted(s.ldev_id for s in members) != sorted(ldev_ids):
                raise AlreadyExists(f"snapshot group {name!r} exists with other LDEVs")
            return TakenGroup(existing, members, 0.0)
        ldevs = [self.store.get_ldev(i) for i in ldev_ids]
        return self._take(name, [(group_member_name(name, ldev), ldev) for ldev in ldevs], labels or {}, False)

    def create_hidden_set(
        self, prefix: str, ldev_ids: list[int], during_barrier: Callable[[], None] | None = None
    ) -> list[SnapshotRecord]:
        """Hidden snapshots of several LDEVs at one instant (one barrier, as a group's), named
        `<prefix>-<LDEV>`, with no snapshot group to show: an array's own consistent point
        (a verify's), which its maker drops. `during_barrier` runs at that instant."""
        ldevs = [self.store.get_ldev(i) for i in ldev_ids]
        members = [(group_member_name(prefix, ldev), ldev) for ldev in ldevs]
        return self._take("", members, {}, True, during_barrier).snapshots

    def _take(
        self,
        group_name: str,
        members: list[tuple[str, LdevRecord]],
        labels: Mapping[str, str],
        hidden: bool,
        during_barrier: Callable[[], None] | None = None,
    ) -> TakenGroup:
        with ExitStack() as held:
            held.enter_context(self.name_locks.hold(f"snapshot:{group_name or members[0][0]}"))
            for _, ldev in sorted(members, key=lambda m: m[1].id):
                held.enter_context(self.id_locks.hold(ldev.id))
            ldevs = [self.store.get_ldev(ldev.id) for _, ldev in members]  # fresh, under the locks
            for ldev in ldevs:
                self._check_can_snapshot(ldev)
            group, snapshots = self.store.insert_snapshot_group(
                group_name,
                [(n, ldev.id, ldev.size) for (n, _), ldev in zip(members, ldevs, strict=True)],
                labels,
                hidden,
            )
            try:
                stall = self._barrier(snapshots, ldevs, during_barrier)
            except BaseException:
                self.store.delete_snapshots([s.id for s in snapshots], group.id if group else None)
                raise
            self.store.mark_snapshots_normal([s.id for s in snapshots], group.id if group else None, int(stall * 1e6))
        log.info(
            "snapshots_taken group=%s snapshots=%s ldevs=%s stall_us=%d",
            group_name or "-",
            ",".join(str(s.id) for s in snapshots),
            ",".join(format_ldev_id(ldev.id) for ldev in ldevs),
            stall * 1e6,
        )
        final_group = self.store.get_snapshot_group(group.id) if group else None
        return TakenGroup(final_group, [self.store.get_snapshot(s.id) for s in snapshots], stall)

    def _check_can_snapshot(self, ldev: LdevRecord) -> None:
        if ldev.state is not LdevState.NORMAL:
            raise FailedPrecondition(f"LDEV {ldev.display_id} is {ldev.state.value}, not NORMAL")
        count = len(self.store.list_snapshots(ldev_id=ldev.id, include_hidden=True))
        if count >= MAX_SNAPSHOTS_PER_LDEV:
            raise ResourceExhausted(f"LDEV {ldev.display_id} has {count} snapshots, the most it may have")

    def _barrier(
        self,
        snapshots: list[SnapshotRecord],
        ldevs: list[LdevRecord],
        during_barrier: Callable[[], None] | None = None,
    ) -> float:
        """Add every snapshot's generation while all member LDEVs' writes are held.

        `during_barrier` runs at that same instant (pairing uses it to start
        journaling exactly where the base snapshot of the initial copy is cut).
        """
        for ldev in ldevs:
            self.runtimes.ensure_cow(self.runtimes.get(ldev.id), ldev.chunk_size)
        start = time.perf_counter()
        with self.runtimes.hold_writes(ldev.id for ldev in ldevs):
            for ldev, snap in zip(ldevs, snapshots, strict=True):
                cow = self.runtimes.get(ldev.id).cow
                assert cow is not None
                cow.add_gen(snap.id)
            if during_barrier is not None:
                during_barrier()
        return time.perf_counter() - start

    # -- deleting ----------------------------------------------------------------
    def delete_snapshot(self, snapshot_id: int) -> None:
        snapshot = self.store.get_snapshot(snapshot_id)
        if snapshot.group_id is not None:
            raise FailedPrecondition(f"snapshot {snapshot_id} belongs to snapshot group {snapshot.group_id}")
        with self.id_locks.hold(snapshot.ldev_id):
            self.drop([snapshot], None)

    def delete_group(self, group_id: int) -> None:
        group = self.store.get_snapshot_group(group_id)
        members = self.store.list_snapshots(group_id=group_id)
        with ExitStack() as held:
            for ldev_id in sorted({s.ldev_id for s in members}):
                held.enter_context(self.id_locks.hold(ldev_id))
            self.drop(members, group.id)

    def delete_for_cascade(self, snapshot: SnapshotRecord) -> None:
        """Forget a snapshot of an LDEV that is being deleted (its CoW file goes too)."""
        self.store.delete_snapshots([snapshot.id], None)

    def drop(self, snapshots: list[SnapshotRecord], group_id: int | None) -> None:
        for snapshot in snapshots:
            self.check_unused(snapshot)
        # Rows first: a crash after this frees the CoW space on restart.
        self.store.delete_snapshots([s.id for s in snapshots], group_id)
        for snapshot in snapshots:
            runtime = self.runtimes.get(snapshot.ldev_id)
            with runtime.lock:
                freed = runtime.cow.drop_gen(snapshot.id) if runtime.cow else 0
            log.info("snapshot_deleted snapshot=%d ldev=%06x slots_freed=%d", snapshot.id, snapshot.ldev_id, freed)

    def check_unused(self, snapshot: SnapshotRecord) -> None:
        runtime = self.runtimes.get(snapshot.ldev_id)
        if runtime.snapshot_sessions.get(snapshot.id):
            raise FailedPrecondition(f"snapshot {snapshot.id} has open NBD sessions")
        for ldev in self.store.list_ldevs():
            if ldev.clone_source == snapshot.id and ldev.state is LdevState.COPYING:
                raise FailedPrecondition(f"snapshot {snapshot.id} is being cloned into LDEV {ldev.display_id}")

    # -- restore -------------------------------------------------------------------
    def restore(self, ldev_id: int, snapshot_id: int) -> LdevRecord:
        """Roll the LDEV back to the snapshot. Needs the LDEV free of host sessions.

        Every chunk written since the snapshot is written back through the write
        path, so newer snapshots of the LDEV keep their own contents.
        """
        with self.id_locks.hold(ldev_id):
            snapshot = self.store.get_snapshot(snapshot_id)
            if snapshot.ldev_id != ldev_id:
                raise InvalidArgument(f"snapshot {snapshot_id} is of LDEV {format_ldev_id(snapshot.ldev_id)}")
            record = self.store.get_ldev(ldev_id)
            if record.state is not LdevState.NORMAL or record.read_only:
                raise FailedPrecondition(f"LDEV {record.display_id} is {record.state.value}/read-only")
            runtime = self.runtimes.get(ldev_id)
            with self.runtimes.guard:
                if runtime.sessions:
                    raise FailedPrecondition(f"LDEV {record.display_id} has {runtime.sessions} open NBD session(s)")
                runtime.busy = f"restoring snapshot {snapshot_id}"
            try:
                self._write_back(runtime, record, snapshot)
            finally:
                runtime.busy = None
        log.info("ldev_restored ldev=%s snapshot=%d", record.display_id, snapshot_id)
        return self.store.get_ldev(ldev_id)

    def _write_back(self, runtime, record: LdevRecord, snapshot: SnapshotRecord) -> None:
        cow = runtime.cow
        assert cow is not None
        with runtime.lock:
            chunks = sorted(c for c, vs in cow.versions.items() if any(v.covers(snapshot.id) for v in vs))
        started = last_report = time.monotonic()
        for done, chunk in enumerate(chunks, 1):
            start = chunk * cow.chunk_size
            length = min(cow.chunk_size, snapshot.size - start)
            if length <= 0:
                continue
            with runtime.lock:
                version = cow.version_for(chunk, snapshot.id)
                data = cow.read(runtime.file, snapshot.id, start, length)
            op = (
                HostWrite(WriteKind.TRIM, start, length)
                if version is not None and version.hole
                else HostWrite(WriteKind.DATA, start, length, data)
            )
            self.write_path.apply(runtime, op, record.size, False)
            if time.monotonic() - last_report > PROGRESS_EVERY:
                last_report = time.monotonic()
                log.info("restore_progress ldev=%s chunks=%d/%d", record.display_id, done, len(chunks))
        if record.size > snapshot.size:  # grown since the snapshot: the new space reads as zeroes
            self.write_path.apply(
                runtime, HostWrite(WriteKind.TRIM, snapshot.size, record.size - snapshot.size), record.size, False
            )
        runtime.file.sync()
        log.info(
            "restore_copied ldev=%s chunks=%d seconds=%.3f", record.display_id, len(chunks), time.monotonic() - started
        )

    # -- changed blocks ------------------------------------------------------------
    def allocated(self, snapshot_id: int, start: int, max_results: int) -> ExtentPage:
        """Extents of the snapshot that may hold data (chunk granular), from `start`."""
        snapshot = self._normal(snapshot_id)
        runtime = self.runtimes.get(snapshot.ldev_id)
        assert runtime.cow is not None
        with runtime.lock:
            chunks = [c for c, _ in runtime.cow.chunk_states(runtime.file, snapshot.id, snapshot.size)]
        extents = chunks_to_extents(chunks, runtime.cow.chunk_size, snapshot.size)
        page, next_offset = page_of(extents, start, max_results)
        return ExtentPage(page, next_offset, runtime.cow.chunk_size, snapshot.size)

    def changed(self, base_id: int, target_id: int, start: int, max_results: int) -> ExtentPage:
        """Extents whose content may differ between two snapshots of the same LDEV."""
        base, target = self._normal(base_id), self._normal(target_id)
        if base.ldev_id != target.ldev_id:
            raise InvalidArgument(f"snapshots {base_id} and {target_id} are of different LDEVs")
        runtime = self.runtimes.get(base.ldev_id)
        cow = runtime.cow
        assert cow is not None
        with runtime.lock:
            changed = []
            for chunk in sorted(cow.versions):
                old, new = cow.version_for(chunk, base.id), cow.version_for(chunk, target.id)
                if old is new:
                    continue
                start_byte = chunk * cow.chunk_size
                old_hole = old.hole if old else runtime.file.is_hole(start_byte, cow.chunk_size)
                new_hole = new.hole if new else runtime.file.is_hole(start_byte, cow.chunk_size)
                if not (old_hole and new_hole):
                    changed.append(chunk)
            if target.size > base.size:  # grown between the two: what the newer one holds there
                first_new = base.size // cow.chunk_size
                grown = [c for c, _ in cow.chunk_states(runtime.file, target.id, target.size) if c >= first_new]
                changed = sorted(set(changed) | set(grown))
        extents = chunks_to_extents(changed, cow.chunk_size, max(base.size, target.size))
        page, next_offset = page_of(extents, start, max_results)
        return ExtentPage(page, next_offset, cow.chunk_size, target.size)

    def _normal(self, snapshot_id: int) -> SnapshotRecord:
        snapshot = self.store.get_snapshot(snapshot_id)
        if snapshot.state is not SnapshotState.NORMAL:
            raise NotFound(f"snapshot {snapshot_id} not found")
        return snapshot
