"""Split and resync of a journal group: the consistency group moves as a unit.

Split (main array): at one write barrier over every P-VOL of the group,
journaling stops and each P-VOL starts marking a differential bitmap; the
last journaled sequence is the split point. The backup learns it on its next
pull, applies through it, and splits its side: its S-VOLs then hold the main
site's state at the split point, consistent across the group, and become
writable if asked (their writes mark their own bitmaps).

Resync (main array, link up): the backup first keeps a snapshot group of its
S-VOLs (a resync is not consistent until it ends; the snapshot group is),
makes them read-only again and hands over its bitmaps; the main array merges
them into its own, then, per P-VOL, at one barrier, cuts a hidden base
snapshot, rejoins the journal and sets the merged bitmap aside as the resync
set. The backup copies exactly those regions from the base (the initial copy
path, backend.replication.replicator), then applies the journal: PAIR, and the backup
drops its snapshot group.
"""

from __future__ import annotations

import logging
import time
import uuid

from backend.errors import Busy, FailedPrecondition, NotFound
from backend.journal import Journal
from backend.model import JournalGroupRecord, PairRecord, PairState
from backend.replication.journal_groups import JournalGroups
from backend.replication.pair_states import PairOp, next_state
from backend.replication.pairs import BASE_PREFIXES, Pairs
from backend.replication.remote import RemoteLink
from backend.services import ArrayServices
from backend.snapshots import Snapshots

log = logging.getLogger(__name__)

SYNC_TIMEOUT = 10.0  # seconds a synchronous write waits for the backup before the group suspends
# A resync waits for the backup to apply through the split point while it keeps applying;
# this long without a record confirmed, it gives up (retryable).
DRAIN_STALL = 30.0


def resync_snapshot_group(group_name: str) -> str:
    return f"resync-{group_name}"[:128]


class PairOperations:
    def __init__(
        self,
        services: ArrayServices,
        link: RemoteLink,
        pairs: Pairs,
        journal_groups: JournalGroups,
        snapshots: Snapshots,
    ) -> None:
        self.store = services.store
        self.runtimes = services.runtimes
        self.name_locks = services.name_locks
        self.link = link
        self.pairs = pairs
        self.journal_groups = journal_groups
        self.snapshots = snapshots

    # -- main side ---------------------------------------------------------------------
    def split(self, group_name: str, svol_writable: bool = False, why: PairOp = PairOp.SPLIT) -> JournalGroupRecord:
        """Split (PSUS) or, when `why` is SUSPEND_ERROR, suspend (PSUE) every pair of the group at one sequence."""
        with self.name_locks.hold(f"journal-group:{group_name}"):
            group = self.pairs.group(group_name, "main")
            pairs = self.store.list_pairs(group.id)
            if not pairs:
                raise FailedPrecondition(f"journal group {group_name!r} has no pairs")
            targets = {p.id: next_state(p.state, why) for p in pairs}  # SPLIT refuses COPY
            if group.split_seq is not None:
                return group  # split already
            journal = self.journal_groups.journals[group.id]
            by_ldev = {p.local_ldev: p for p in pairs}
            with self.runtimes.hold_writes(by_ldev) as runtimes:
                for runtime in runtimes:
                    pair = by_ldev[runtime.ldev_id]
                    self.journal_groups.route_writes(runtime, "main", targets[pair.id], group.id)
                    if pair.state is PairState.COPY and runtime.diff is not None:
                        runtime.diff.mark(0, runtime.diff.size)  # the S-VOL never got all of it: copy everything
                split_seq = journal.next_seq - 1
                with self.store.transaction():  # the split point and every pair's state, at once
                    self.store.set_split(group.id, split_seq, svol_writable)
                    for pair in pairs:
                        self.store.update_pair(
                            pair.id, state=targets[pair.id], clear_base=pair.base_snapshot is not None
                        )
            for pair in pairs:  # an unfinished copy's base goes; the resync cuts a new one
                self.pairs.drop_base(pair)
            log.info("group_split group=%s split_seq=%d svol_writable=%s", group_name, split_seq, svol_writable)
            return self.store.get_journal_group(group.id)

    def fence(self, group_name: str, fenced: bool) -> JournalGroupRecord:
        """Demote (fence) or promote again (unfence) the main side of a group. Fenced, its
        P-VOLs refuse host writes (EPERM) from one barrier on, durably, while replication
        goes on: the backup gets every write ever acknowledged, so the other site can take
        over losing nothing. Idempotent."""
        with self.name_locks.hold(f"journal-group:{group_name}"):
            group = self.pairs.group(group_name, "main")
            pvols = [p.local_ldev for p in self.store.list_pairs(group.id)]
            with self.runtimes.hold_writes(pvols) as runtimes:
                self.store.set_fenced(group.id, fenced)
                for runtime in runtimes:
                    runtime.fenced = fenced
            log.warning("group_fenced group=%s fenced=%s pvols=%d", group_name, fenced, len(pvols))
            return self.store.get_journal_group(group.id)

    def await_backup(self, journal: Journal, seq: int, ldev_id: int) -> None:
        """A synchronous write returns once the backup applied it. If the backup does not within
        SYNC_TIMEOUT, the group is suspended (PSUE) and the write acknowledged: TrueCopy's fence
        level "never" (the host keeps running; the resync later copies what the backup missed)."""
        if journal.wait_confirmed(seq, SYNC_TIMEOUT):
            return
        group_id = self.store.journal_group_of(ldev_id)
        if group_id is not None:
            group = self.store.get_journal_group(group_id)
            log.warning("sync_write_timed_out group=%s seq=%d: suspending", group.name, seq)
            self.split(group.name, why=PairOp.SUSPEND_ERROR)

    def resync(self, group_name: str) -> JournalGroupRecord:
        with self.name_locks.hold(f"journal-group:{group_name}"):
            group = self.pairs.group(group_name, "main")
            pairs = self.store.list_pairs(group.id)
            targets = {p.id: next_state(p.state, PairOp.RESYNC) for p in pairs}
            if group.split_seq is None:
                return group  # copying or PAIR already
            journal = self.journal_groups.journals[group.id]
            # The backup first: unreachable, or its S-VOLs still used by hosts, and nothing changed here.
            their_bits = self._prepare_backup(group_name, journal)
            journal.reopen()  # after a journal-full suspension
            for pair in pairs:
                self.start_differential_copy(group_name, pair, their_bits.get(pair.local_ldev), targets[pair.id])
            self.store.set_split(group.id, None)
            return self.store.get_journal_group(group.id)

    def _prepare_backup(self, group_name: str, journal: Journal) -> dict[int, bytes]:
        """The backup's side of a resync, once it has applied everything up to the split point.

        A record journaled before the split and applied after the differential copy
        would put older bytes over the copied regions, and one skipped would leave its
        region stale: so the backup refuses (Busy) until it followed the split, and this
        waits as long as it is applying (its confirmed sequence moves)."""
        confirmed, since = journal.confirmed_seq, time.monotonic()
        while True:
            try:
                return self.link.get().prepare_resync(group_name)
            except Busy:
                if journal.confirmed_seq != confirmed:
                    confirmed, since = journal.confirmed_seq, time.monotonic()
                elif time.monotonic() - since > DRAIN_STALL:
                    raise
                time.sleep(0.05)

    def start_differential_copy(
        self, group_name: str, pair: PairRecord, their_bits: bytes | None, state: PairState
    ) -> None:
        """Copy to the other array only what differs on either side (resync, failback).

        The P-VOL's bitmap takes the other side's marks; then, at one barrier,
        a hidden base snapshot is cut, the bitmap is set aside as the regions
        to copy and the P-VOL journals again. The other array copies those
        regions from the base (the initial-copy path), then applies the journal.
        """
        runtime = self.runtimes.get(pair.local_ldev)
        with runtime.lock:
            diff = self.runtimes.track_changes(runtime)
        if their_bits is not None:
            diff.merge(their_bits)
        regions = diff.marked()

        def rejoin() -> None:  # at the instant of the base snapshot
            self.runtimes.set_aside_for_resync(runtime)
            self.journal_groups.start_journaling(runtime, pair.group_id)

        base = self.snapshots.create_snapshot(
            f"{BASE_PREFIXES[1]}{uuid.uuid4().hex}", pair.local_ldev, hidden=True, during_barrier=rejoin
        )
        self.store.update_pair(pair.id, state=state, base=base.id)
        self.link.get().start_copy(group_name, pair.local_ldev, base.id)
        log.info("differential_copy_started pair=%d pvol=%06x regions=%d", pair.id, pair.local_ldev, regions)

    def delete_pair(self, pvol_id: int) -> None:
        """One pair back to SMPL on both arrays: safe for a single pair, the rest of the group goes on.

        (Split, resync and takeover act on whole groups: doing them to one
        volume would break the consistency group.) The backup first; its
        S-VOL becomes an ordinary writable LDEV holding the last applied state.
        """
        pair = self.store.find_pair_by_ldev(pvol_id)
        if pair is None or pair.role != "main":
            raise NotFound(f"LDEV {pvol_id:06x} is not a P-VOL here")
        group = self.store.get_journal_group(pair.group_id)
        with self.name_locks.hold(f"journal-group:{group.name}"):
            next_state(pair.state, PairOp.DELETE)
            self.link.get().delete_secondary(group.name, pvol_id)
            with self.runtimes.hold_writes([pvol_id]) as (runtime,):
                self.journal_groups.stop_journaling(runtime)  # records journaled before are skipped at the backup
                runtime.fenced = False  # out of the group, out of its fence
                self.runtimes.stop_tracking_changes(runtime)
                with self.store.transaction():
                    self.store.remove_journal_member(pvol_id)
                    self.store.delete_pair(pair.id)
            self.runtimes.resync_path(pvol_id).unlink(missing_ok=True)
            self.pairs.drop_base(pair)
            log.info("pair_deleted pair=%d group=%s pvol=%06x", pair.id, group.name, pvol_id)

    # -- backup side -------------------------------------------------------------------
    def delete_secondary(self, group_name: str, pvol_id: int) -> None:
        group = self.pairs.group(group_name, "backup")
        for pair in self.store.list_pairs(group.id):
            if pair.remote_ldev == pvol_id:
                with self.store.transaction():  # out of the pair and open to hosts again, at once
                    self.store.delete_pair(pair.id)
                    self.store.set_ldev_access(pair.local_ldev, read_only=False)
                runtime = self.runtimes.get(pair.local_ldev)
                with runtime.lock:
                    self.runtimes.stop_tracking_changes(runtime)
                log.info("svol_released pair=%d svol=%06x", pair.id, pair.local_ldev)

    def split_secondary(self, group_id: int, svol_writable: bool, why: PairOp = PairOp.SPLIT) -> None:
        """The backup applied through the split point: its pairs are split (PSUS) or suspended (PFUS).

        A pair still in its initial copy is suspended too (its S-VOL is not consistent,
        so it never opens to writes); its resync copies it whole.
        """
        pairs = [p for p in self.store.list_pairs(group_id) if p.state in (PairState.PAIR, PairState.COPY)]
        opened = [p.local_ldev for p in pairs if svol_writable and p.state is PairState.PAIR]
        for pair in pairs:
            self.route_svol_writes(pair, next_state(pair.state, why))
        with self.store.transaction():  # every pair split, and its S-VOL writable, at once
            for svol_id in opened:
                self.store.set_ldev_access(svol_id, read_only=False)
            for pair in pairs:
                self.store.update_pair(pair.id, state=next_state(pair.state, why))
        for pair in pairs:
            log.info("svol_split pair=%d svol=%06x writable=%s", pair.id, pair.local_ldev, svol_writable)

    def route_svol_writes(self, pair: PairRecord, state: PairState) -> None:
        """Before the S-VOL's pair is stored in `state` (and hosts may write it): its writes
        go where that state sends them (a bitmap, for a resync or failback)."""
        runtime = self.runtimes.get(pair.local_ldev)
        with runtime.lock:
            self.journal_groups.route_writes(runtime, "backup", state, pair.group_id)

    def prepare_resync(self, group_name: str) -> dict[int, bytes]:
        """Keep a consistent copy, close the S-VOLs to hosts, hand over their bitmaps (by P-VOL id)."""
        group = self.pairs.group(group_name, "backup")
        pairs = self.store.list_pairs(group.id)
        targets = {p.id: next_state(p.state, PairOp.RESYNC_TARGET) for p in pairs}  # refused before anything changes
        if any(p.state is PairState.PAIR for p in pairs):
            raise Busy(f"journal group {group_name!r} has not applied through the main array's split point yet "
                       f"(applied {group.applied_seq}): it is still applying")  # fmt: skip
        for pair in pairs:
            in_use = self.runtimes.open_sessions(pair.local_ldev) or self.store.list_publications(pair.local_ldev)
            if in_use and not self.store.get_ldev(pair.local_ldev).read_only:
                raise FailedPrecondition(f"S-VOL {pair.local_ldev:06x} is written by hosts: unpublish it first")
        name = resync_snapshot_group(group_name)
        if self.store.find_snapshot_group_by_name(name) is None:
            self.snapshots.create_group(name, [p.local_ldev for p in pairs])
        bits: dict[int, bytes] = {}
        with self.store.transaction():  # closed to hosts and copying, every S-VOL at once
            for pair in pairs:
                self.store.set_ldev_access(pair.local_ldev, read_only=True)
                self.store.update_pair(pair.id, state=targets[pair.id], clear_base=True)
        for pair in pairs:
            runtime = self.runtimes.get(pair.local_ldev)
            with runtime.lock:
                # Kept until the resync ends (resync_finished): if this answer is lost, the main
                # array's retry gets the same regions again, not none.
                if runtime.diff is not None:
                    bits[pair.remote_ldev] = runtime.diff.snapshot_bits()
        log.info("resync_prepared group=%s snapshot_group=%s bitmaps=%d", group_name, name, len(bits))
        return bits

    def resync_finished(self, group_id: int) -> None:
        """Every pair is PAIR again: the S-VOLs' bitmaps and the snapshot group kept during the resync go."""
        group = self.store.get_journal_group(group_id)
        for pair in self.store.list_pairs(group_id):  # the regions handed over are copied now
            runtime = self.runtimes.get(pair.local_ldev)
            with runtime.lock:
                self.runtimes.stop_tracking_changes(runtime)
        kept = self.store.find_snapshot_group_by_name(resync_snapshot_group(group.name))
        if kept is not None:
            self.snapshots.delete_group(kept.id)
            log.info("resync_finished group=%s snapshot_group_dropped=%s", group.name, kept.name)
