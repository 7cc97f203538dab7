"""Pairs of asynchronous remote copy, on both sides of the link.

Main side (P-VOL): `create_pair` asks the backup to prepare an S-VOL of the
same size, then, in one write barrier, cuts a hidden base snapshot of the
P-VOL and makes it a member of the journal group: every write after the cut
is journaled, every write before it is in the base. The backup copies the
base (initial copy, pair COPY), then applies the journal from the group's
sequence; `complete_initial_copy` drops the base and the pair is PAIR.

Backup side (S-VOL): `prepare_secondary` creates the S-VOL (read-only to
hosts while paired) and the backup's journal group; the replicator
(backend.replication.replicator) does the copying and applying.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator

from backend.diff_bitmap import DiffBitmap
from backend.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from backend.journal import Unapplied
from backend.model import JournalGroupRecord, LdevRecord, LdevState, PairRecord, PairState, SnapshotRecord
from backend.replication.journal_groups import JournalGroups
from backend.replication.lag import Heard, applied_of, backup_lag
from backend.replication.pair_states import SUSPENDED, PairOp, next_state
from backend.replication.ports import Contact, LdevMaker, ReplicatorControl
from backend.replication.remote import BaseChunk, JournalBatch, PVolFacts, RemoteLink
from backend.runtimes import LdevRuntime
from backend.services import ArrayServices
from backend.snapshots import Snapshots
from ccopy_common import SVOL_OF_LABEL

log = logging.getLogger(__name__)

MAX_PULL_BYTES = 8 << 20
# The hidden snapshots an initial copy (pair-base) or a differential copy (diff-base) copies from.
BASE_PREFIXES = ("pair-base-", "diff-base-")
# How much of a base snapshot's address space one look at its extents covers.
BASE_WINDOW = 64 << 20


class Pairs:
    def __init__(
        self,
        services: ArrayServices,
        link: RemoteLink,
        journal_groups: JournalGroups,
        snapshots: Snapshots,
        ldevs: LdevMaker,
    ) -> None:
        self.store = services.store
        self.pool = services.pool
        self.runtimes = services.runtimes
        self.link = link
        self.journal_groups = journal_groups
        self.snapshots = snapshots
        self.ldevs = ldevs
        # Above this module, wired by the array once they exist.
        self.replicators: ReplicatorControl | None = None
        self.contact: Contact | None = None

    def group(self, name: str, role: str) -> JournalGroupRecord:
        group = self.store.find_journal_group_by_name(name)
        if group is None:
            raise NotFound(f"journal group {name!r} not found")
        if group.role != role:
            raise FailedPrecondition(f"journal group {name!r} is the {group.role} side here")
        return group

    # -- main side -------------------------------------------------------------------
    def create_pair(
        self, group_name: str, pvol_id: int, capacity: int, svol_id: int = 0, synchronous: bool = False
    ) -> PairRecord:
        """Pair a P-VOL into `group_name` (created here and at the backup if new).

        Refused before anything changes when the backup array does not answer
        (LinkDown), or when a given S-VOL differs in size or is in use.
        """
        remote = self.link.get()
        pvol = self.store.get_ldev(pvol_id)
        if pvol.state is not LdevState.NORMAL:
            raise FailedPrecondition(f"LDEV {pvol.display_id} is {pvol.state.value}")
        existing = self.store.find_pair_by_ldev(pvol_id)
        if existing is not None:
            if self.store.get_journal_group(existing.group_id).name != group_name:
                raise AlreadyExists(f"LDEV {pvol.display_id} is paired in another journal group")
            return existing
        group = self.store.find_journal_group_by_name(group_name)
        if group is not None and group.role != "main":
            raise FailedPrecondition(f"journal group {group_name!r} is the backup side here")
        if group is not None and group.fenced:
            raise FailedPrecondition(f"journal group {group_name!r} is fenced (demoted): no volume joins it")
        # The backup first: if it is unreachable or refuses the S-VOL, nothing changed here.
        facts = PVolFacts(pvol.id, pvol.name, pvol.size, pvol.open_to_all, dict(pvol.labels))
        svol_id = remote.prepare_secondary(group_name, capacity, self.pool.serial, facts, svol_id)
        group = group or self.journal_groups.create(
            group_name, capacity, role="main", remote_serial=remote.serial, synchronous=synchronous
        )
        journal_groups = self.journal_groups

        def join_journal() -> None:  # at the instant of the base snapshot
            self.store.add_journal_member(group.id, pvol.id)
            journal_groups.start_journaling(self.runtimes.get(pvol.id), group.id)

        base = self.snapshots.create_snapshot(
            f"{BASE_PREFIXES[0]}{uuid.uuid4().hex}", pvol.id, hidden=True, during_barrier=join_journal
        )
        created = next_state(PairState.SMPL, PairOp.CREATE)
        pair = self.store.insert_pair(group.id, "main", pvol.id, svol_id, remote.serial, created, base.id)
        remote.start_copy(group_name, pvol.id, base.id)
        log.info(
            "pair_created pair=%d group=%s pvol=%s svol=%06x remote=%d base=%d",
            pair.id, group_name, pvol.display_id, svol_id, remote.serial, base.id,
        )  # fmt: skip
        return pair

    def complete_initial_copy(self, group_name: str, pvol_id: int) -> None:
        """The backup holds the base: drop it; the pair is PAIR from now on."""
        group = self.group(group_name, "main")
        pair = self.store.find_pair_by_ldev(pvol_id)
        if pair is None or pair.group_id != group.id:
            raise NotFound(f"no pair of LDEV {pvol_id:06x} in {group_name!r}")
        self.drop_base(pair)
        with self.store.transaction():  # read and written at once: a suspension meanwhile (journal full) stays
            pair = self.store.find_pair_by_ldev(pvol_id) or pair
            state = pair.state if pair.state in SUSPENDED else next_state(pair.state, PairOp.COPY_DONE)
            self.store.update_pair(pair.id, state=state, clear_base=True)
        self.runtimes.resync_path(pvol_id).unlink(missing_ok=True)
        log.info("pair_copied pair=%d pvol=%06x state=%s", pair.id, pvol_id, state.value)

    def drop_orphan_bases(self) -> None:
        """At start: drop the base snapshots no pair names. A crash between a base's cut and the
        pair naming it leaves one; kept, it would make every write to its P-VOL copy old
        chunks for nothing, for good. (A retried create or resync cuts a new base.)"""
        named = {p.base_snapshot for p in self.store.list_pairs() if p.role == "main" and p.base_snapshot is not None}
        orphans = [s for s in self.store.list_snapshots(include_hidden=True)
                   if s.name.startswith(BASE_PREFIXES) and s.id not in named]  # fmt: skip
        if orphans:
            self.snapshots.drop(orphans, None)
            log.warning("recovered event=orphan_base_snapshots_dropped snapshots=%s",
                        ",".join(str(s.id) for s in orphans))  # fmt: skip

    def drop_base(self, pair: PairRecord) -> None:
        """The hidden snapshot an initial copy or resync copied from is no longer needed."""
        if pair.base_snapshot is not None and (base := self.store.find_snapshot(pair.base_snapshot)):
            self.snapshots.drop([base], None)

    def pull_journal(
        self, group_name: str, from_seq: int, applied_seq: int, max_bytes: int, wait: float
    ) -> JournalBatch:
        group = self.group(group_name, "main")
        self.contact.heard_from(group.id)
        journal = self.journal_groups.journals[group.id]
        if applied_seq > journal.confirmed_seq:
            self.journal_groups.confirm(group.id, applied_seq)
        if from_seq <= journal.confirmed_seq:
            from_seq = journal.confirmed_seq + 1  # already trimmed: the backup has it
        if wait > 0:  # nothing to hand out yet (none written, or held for a verify's cut): a long poll
            journal.wait_for(from_seq, min(wait, 5.0))
        records = journal.read_raw(from_seq, min(max_bytes, MAX_PULL_BYTES))
        # A split during the wait shows on the next pull: these records are all before it.
        how, split_seq = PairState.PSUS, group.split_seq
        if split_seq is not None:
            states = {p.state for p in self.store.list_pairs(group.id)}
            how = next((s for s in (PairState.PFUS, PairState.PSUE) if s in states), PairState.PSUS)
            # A resync restarts the pairs one by one and clears the split point after the last:
            # once none is suspended the group is not split, whatever the row still says (else a
            # backup done copying would split again on this answer, while the main side is PAIR).
            if not states & {PairState.PSUS, PairState.PSUE, PairState.PFUS}:
                split_seq = None
        return JournalBatch(
            records, split_seq, group.svol_writable, how.value, group.synchronous, journal.unapplied(applied_seq)
        )

    def describe_unapplied(self, group_name: str, applied_seq: int) -> Unapplied:
        """What a takeover at `applied_seq` gives up: the writes acknowledged here and not applied there."""
        group = self.group(group_name, "main")
        return self.journal_groups.journals[group.id].unapplied(applied_seq)

    def read_base(self, pvol_id: int, snapshot_id: int, offset: int, max_bytes: int, end: int = 0) -> BaseChunk:
        """Allocated data of the base snapshot from `offset` up to `end` (0: its end), about
        `max_bytes` of it. The total to copy comes with the answer for offset 0."""
        pair = self.store.find_pair_by_ldev(pvol_id)
        if pair is not None:
            self.contact.heard_from(pair.group_id)  # an initial copy is contact too
        snapshot = self.store.get_snapshot(snapshot_id)
        if snapshot.ldev_id != pvol_id:
            raise InvalidArgument(f"snapshot {snapshot_id} is not of LDEV {pvol_id:06x}")
        runtime = self.runtimes.get(pvol_id)
        assert runtime.cow is not None
        end = min(end or snapshot.size, snapshot.size)
        extents, total = self._base_extents(runtime, snapshot, offset, end)
        pieces: list[tuple[int, bytes]] = []
        size = 0
        for start, length in extents:
            end = start + length
            while start < end:
                if size >= max_bytes:
                    return BaseChunk(pieces, start, total)
                step = min(end - start, 1 << 20, max_bytes - size)
                with runtime.lock:
                    data = runtime.cow.read(runtime.file, snapshot_id, start, step)
                pieces.append((start, data))
                size += step
                start += step
        return BaseChunk(pieces, 0, total)

    def _base_extents(
        self, runtime: LdevRuntime, snapshot: SnapshotRecord, offset: int, end: int
    ) -> tuple[Iterable[tuple[int, int]], int]:
        """What the backup copies in [offset, end): (extents, total bytes in all when offset is 0).

        The initial copy takes the base's allocated extents; a resync only the
        regions set aside when it started (backend.replication.pair_ops), holes included.
        """
        resync = self.runtimes.resync_path(runtime.ldev_id)
        if resync.exists():
            bitmap = DiffBitmap(resync, snapshot.size)
            regions = bitmap.extents()
            bitmap.close()
            clipped = ((max(s, offset), min(s + n, end)) for s, n in regions)
            return [(s, e - s) for s, e in clipped if e > s], sum(n for _, n in regions) if not offset else 0
        total = sum(n for _, n in _allocated_in(runtime, snapshot, 0, snapshot.size)) if not offset else 0
        return _allocated_in(runtime, snapshot, offset, end), total

    # -- backup side ---------------------------------------------------------------
    def prepare_secondary(
        self,
        group_name: str,
        capacity: int,
        main_serial: int,
        pvol: PVolFacts,
        svol_id: int = 0,
    ) -> int:
        """Create (or take the given) S-VOL of a P-VOL and the backup side of its group. A new
        S-VOL gets its P-VOL's host access (open to every host only if the P-VOL is) and its
        labels (the backup site registers PVs and PVCs from them), plus where it came from."""
        pvol_id, size = pvol.id, pvol.size
        group = self.store.find_journal_group_by_name(group_name)
        if group is not None and (group.role != "backup" or group.remote_serial != main_serial):
            raise FailedPrecondition(f"journal group {group_name!r} here does not belong to array {main_serial}")
        existing = [p for p in self.store.list_pairs(group.id) if p.remote_ldev == pvol_id] if group else []
        if existing:
            return existing[0].local_ldev
        svol = self._given_svol(svol_id, size) if svol_id else None
        group = group or self.journal_groups.create(
            group_name, capacity, role="backup", remote_serial=main_serial
        )
        if svol is None:
            name = f"svol-{main_serial}-{pvol_id:06x}-{pvol.name}"[:128]
            taken = self.store.find_ldev_by_name(name)
            if taken is not None and (self.store.find_pair_by_ldev(taken.id) or self.runtimes.open_sessions(taken.id)):
                raise FailedPrecondition(f"S-VOL {name!r} is in use")
            labels = {**pvol.labels, SVOL_OF_LABEL: f"{main_serial}:{pvol_id:06x}"}
            svol = self.ldevs.create_ldev(name, size, labels, read_only=True, open_to_all=pvol.open_to_all)
            if svol.size != size:
                raise FailedPrecondition(f"S-VOL {svol.display_id} has {svol.size} bytes, the P-VOL {size}")
        created = next_state(PairState.SMPL, PairOp.CREATE)
        self.store.insert_pair(group.id, "backup", svol.id, pvol_id, main_serial, created)
        log.info("svol_prepared group=%s svol=%s pvol=%06x main=%d", group_name, svol.display_id, pvol_id, main_serial)
        return svol.id

    def _given_svol(self, svol_id: int, size: int) -> LdevRecord:
        svol = self.store.get_ldev(svol_id)
        if svol.size != size:
            raise FailedPrecondition(f"S-VOL {svol.display_id} has {svol.size} bytes, the P-VOL {size}")
        if self.store.find_pair_by_ldev(svol.id) is not None:
            raise FailedPrecondition(f"S-VOL {svol.display_id} is already in a pair")
        if self.runtimes.open_sessions(svol.id) or self.store.list_publications(svol.id):
            raise FailedPrecondition(f"S-VOL {svol.display_id} is in use by hosts")
        if self.store.list_snapshots(ldev_id=svol.id, include_hidden=True):
            raise FailedPrecondition(f"S-VOL {svol.display_id} has snapshots")
        # Hosts may only read an S-VOL while it is paired.
        return self.store.set_ldev_access(svol.id, read_only=True)

    def start_copy(self, group_name: str, pvol_id: int, base_snapshot: int) -> None:
        group = self.group(group_name, "backup")
        for pair in self.store.list_pairs(group.id):
            if pair.remote_ldev == pvol_id:
                self.store.update_pair(pair.id, base=base_snapshot)
                self.replicators.wake(group.id)
                return
        raise NotFound(f"no S-VOL prepared for P-VOL {pvol_id:06x} in {group_name!r}")

    # -- status -----------------------------------------------------------------------
    def group_status(self, group: JournalGroupRecord) -> dict[str, float]:
        """Sequence numbers, pending work and lag of a journal group, as this side sees it."""
        journal = self.journal_groups.journals[group.id]
        if group.role == "main":
            records, nbytes = journal.pending()
            oldest = journal.oldest_pending_ns()
            return {
                "main_seq": journal.next_seq - 1,
                "confirmed_seq": journal.confirmed_seq,
                "pending_records": records,
                "pending_bytes": nbytes,
                "lag_seconds": (time.time_ns() - oldest) / 1e9 if oldest else 0.0,
                "recovery_point_ns": journal.confirmed_write_ns,
            }
        lag = backup_lag(Heard.from_json(group.heard), applied_of(group))
        replicator = self.replicators.get(group.id)
        return {
            "applied_seq": group.applied_seq,
            "main_seq": group.applied_seq + lag.records,
            "pending_records": lag.records,
            "pending_bytes": lag.bytes,
            "lag_seconds": lag.age(time.time_ns()),
            "last_contact_ns": lag.contact_ns,
            "recovery_point_ns": lag.recovery_point_ns,
            **(replicator.status() if replicator else {}),
        }


def _allocated_in(runtime: LdevRuntime, snapshot: SnapshotRecord, offset: int, end: int) -> Iterator[tuple[int, int]]:
    """The snapshot's data extents in [offset, end), found a window at a time as the copy goes:
    a call that sends 4 MiB looks at the extents near them, not at the whole LDEV."""
    assert runtime.cow is not None
    position = offset
    while position < end:
        length = min(BASE_WINDOW, end - position)
        with runtime.lock:
            runs = list(runtime.cow.extents(runtime.file, snapshot.id, position, length))
        for run in runs:
            if not run.is_hole:
                yield run.offset, run.length
        position += length
