"""Online verify of a journal group (DRBD's `verify`): every P-VOL compared with its S-VOL
at one consistent point, by region digests each array computes of its own volumes
(backend.replication.digests); no data moves, only 16 bytes a region cross the link.

The consistent point, by the group's state at the main array:

- PAIR: at one write barrier over the P-VOLs the main array cuts hidden snapshots of
  them and takes S, the last journaled sequence; from that instant until the backup
  has cut its own, records after S are not handed to it (the journal holds them,
  host writes go on). The backup waits until it applied exactly through S (it cannot
  go further), cuts hidden snapshots of its S-VOLs at one barrier and says so; the
  main array lets the journal flow again. Both snapshot sets are the group's state
  at S, so every region must be equal.
- split or suspended (PSUS, PSUE, PFUS): S is the split point, which the backup
  holds once it applied it. Both sides cut snapshots now, with a copy of each
  volume's differential bitmap taken at the same barrier. Since the split the P-VOL
  may have moved on and a writable S-VOL too, each marking its bitmap; a region
  marked on either side is not compared (the next resync copies it). Every other
  region must be equal.

`repair` (split groups only) marks the differing regions in the P-VOLs' bitmaps, so
the next resync copies them. A PAIR group is refused: its P-VOLs keep no bitmap, and
a region marked there would be copied by no resync; split it first.

The hidden snapshots are always dropped when the verify ends, also on errors
(backend.replication.verify_points). The result is kept in the store as the group's
last verify.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from backend.errors import ArrayError, Busy, FailedPrecondition, NotFound
from backend.model import JournalGroupRecord, PairRecord, PairState, VerifyRecord
from backend.replication import digests
from backend.replication.digests import DIGEST_BYTES, Progress
from backend.replication.journal_groups import JournalGroups
from backend.replication.pair_states import SUSPENDED
from backend.replication.remote import DigestPart, RemoteLink
from backend.replication.verify_points import Cut, VerifyPoints
from backend.services import ArrayServices

log = logging.getLogger(__name__)

CATCH_UP_STALL = 30.0  # seconds the backup's applied sequence may stand still below the verify point
CATCH_UP_POLL = 0.01


@dataclass(frozen=True)
class DifferingRegion:
    pvol_id: int
    svol_id: int
    offset: int
    length: int


@dataclass(frozen=True)
class VerifyReport:
    group_name: str
    record: VerifyRecord
    differing: list[DifferingRegion]


@dataclass
class Theirs:
    """What the backup sent of one S-VOL."""

    svol_id: int
    size: int
    digests: bytearray
    changed: bytes


class Verifier:
    def __init__(
        self, services: ArrayServices, link: RemoteLink, journal_groups: JournalGroups, points: VerifyPoints
    ) -> None:
        self.store = services.store
        self.runtimes = services.runtimes
        self.name_locks = services.name_locks
        self.link = link
        self.journal_groups = journal_groups
        self.points = points

    def _group(self, group_name: str, role: str, other_side: str) -> tuple[JournalGroupRecord, list[PairRecord]]:
        group = self.store.find_journal_group_by_name(group_name)
        if group is None:
            raise NotFound(f"journal group {group_name!r} not found")
        if group.role != role:
            raise FailedPrecondition(f"journal group {group_name!r} is {other_side}")
        return group, self.store.list_pairs(group.id)

    # -- main side ----------------------------------------------------------------------
    def verify(self, group_name: str, repair: bool = False) -> VerifyReport:
        """Compare the group's P-VOLs with their S-VOLs; the report is kept as its last verify."""
        started = time.monotonic()
        with self.name_locks.hold(f"verify:{group_name}"):
            with self.name_locks.hold(f"journal-group:{group_name}"):  # no split or resync while it is cut
                group, pairs, at_split = self._check(group_name, repair)
                cut = self._cut_main(group, pairs, at_split)
            log.info("verify_started group=%s seq=%d at_split=%s pairs=%d", group_name, cut.seq, at_split, len(pairs))
            try:
                ours, theirs = self._digests(group, cut, at_split)
            finally:
                self.points.drop(cut)
            report = self._compare(group, pairs, cut, at_split, ours, theirs, started)
            if repair and report.differing:
                self._repair(group, cut, report.differing)
                report = replace(report, record=replace(report.record, repaired=True))
            self.store.set_last_verify(report.record)
        record = report.record
        log.log(
            logging.WARNING if record.regions_differing else logging.INFO,
            "verify_finished group=%s seq=%d at_split=%s regions=%d differing=%d skipped=%d repaired=%s seconds=%.3f",
            group_name, record.seq, at_split, record.regions_compared, record.regions_differing,
            record.regions_skipped, record.repaired, record.seconds,
        )  # fmt: skip
        return report

    def _check(self, group_name: str, repair: bool) -> tuple[JournalGroupRecord, list[PairRecord], bool]:
        """The group, its pairs, and whether it is compared at its split point."""
        group, pairs = self._group(group_name, "main", "the backup side here: verify at the main array")
        states = {p.state for p in pairs}
        if not pairs:
            raise FailedPrecondition(f"journal group {group_name!r} has no pairs")
        if states == {PairState.PAIR} and group.split_seq is None:
            if repair:
                raise FailedPrecondition(
                    f"journal group {group_name!r} is PAIR: repair marks regions for the next resync, so split "
                    "it first (pair split), then verify --repair, then resync"
                )
            return group, pairs, False
        if states <= set(SUSPENDED) and group.split_seq is not None:
            return group, pairs, True
        shown = ",".join(sorted(s.value for s in states))
        raise FailedPrecondition(f"journal group {group_name!r} is {shown}: verify once every pair is PAIR or split")

    def _cut_main(self, group: JournalGroupRecord, pairs: list[PairRecord], at_split: bool) -> Cut:
        journal = self.journal_groups.journals[group.id]
        cut = Cut(group.split_seq or 0)

        def at_barrier() -> None:
            if not at_split:  # the last journaled write is the point: none after it reaches the backup before its cut
                cut.seq = journal.next_seq - 1
                journal.hold_shipping(cut.seq)

        try:
            self.points.take(cut, [p.local_ldev for p in pairs], at_barrier, bitmaps=at_split)
        except BaseException:
            journal.release_shipping()
            raise
        return cut

    def _digests(
        self, group: JournalGroupRecord, cut: Cut, at_split: bool
    ) -> tuple[dict[int, bytes], dict[int, Theirs]]:
        """Ours and the backup's, side by side: ours in a thread while its answers come in."""
        journal = self.journal_groups.journals[group.id]
        try:
            answers = self.link.get().secondary_digests(group.name, cut.seq, digests.REGION_BYTES, at_split)
            with contextlib.closing(answers):  # ends the backup's side too, whatever happens here
                first = next(answers, None)
                if first is None or not first.cut:
                    raise ArrayError(f"verify {group.name}: the backup did not cut its snapshots")
                journal.release_shipping()  # the backup holds the point: it may apply on
                progress = Progress(f"group={group.name} side=main", sum(s.size for s in cut.snapshots.values()))
                with ThreadPoolExecutor(1, thread_name_prefix=f"verify-{group.id}") as pool:
                    mine = pool.submit(self._our_digests, cut, progress)
                    try:
                        theirs = _collect(answers)
                    except BaseException:
                        progress.cancelled.set()
                        raise
                    return mine.result(), theirs
        finally:
            journal.release_shipping()

    def _our_digests(self, cut: Cut, progress: Progress) -> dict[int, bytes]:
        step = digests.REGION_BYTES
        return {
            ldev: digests.snapshot_digests(
                self.runtimes.get(ldev), s.id, s.size, step, 0, digests.region_count(s.size, step), progress
            )
            for ldev, s in cut.snapshots.items()
        }

    def _compare(
        self, group: JournalGroupRecord, pairs: list[PairRecord], cut: Cut, at_split: bool,
        ours: dict[int, bytes], theirs: dict[int, Theirs], started: float,
    ) -> VerifyReport:  # fmt: skip
        found: list[DifferingRegion] = []
        compared = skipped = compared_bytes = 0
        for pair in pairs:
            other = theirs.get(pair.local_ldev)
            if other is None:
                raise ArrayError(f"verify {group.name}: the backup sent no digests for P-VOL {pair.local_ldev:06x}")
            outcome = digests.compare(
                ours[pair.local_ldev], cut.snapshots[pair.local_ldev].size, cut.changed.get(pair.local_ldev, b""),
                bytes(other.digests), other.size, other.changed, digests.REGION_BYTES,
            )  # fmt: skip
            found += [DifferingRegion(pair.local_ldev, pair.remote_ldev, o, n) for o, n in outcome.differing]
            compared, skipped = compared + outcome.compared, skipped + outcome.skipped
            compared_bytes += outcome.compared_bytes
        record = VerifyRecord(
            group.id, time.time(), cut.seq, at_split, digests.REGION_BYTES, compared, len(found), skipped,
            compared_bytes, False, time.monotonic() - started,
        )  # fmt: skip
        return VerifyReport(group.name, record, found)

    def _repair(self, group: JournalGroupRecord, cut: Cut, found: list[DifferingRegion]) -> None:
        """Mark the differing regions in the P-VOLs' bitmaps (durably), if the group is still
        split where it was compared: the next resync copies them."""
        with self.name_locks.hold(f"journal-group:{group.name}"):
            now = self.store.get_journal_group(group.id)
            states = {p.state for p in self.store.list_pairs(group.id)}
            if now.split_seq != cut.seq or not states <= set(SUSPENDED):
                raise FailedPrecondition(f"journal group {group.name!r} was resynced during the verify: verify again")
            for region in found:
                runtime = self.runtimes.get(region.pvol_id)
                with runtime.lock:
                    bitmap = self.runtimes.track_changes(runtime)
                bitmap.mark(region.offset, region.length)
        log.info("verify_repair group=%s regions_marked=%d", group.name, len(found))

    # -- backup side --------------------------------------------------------------------
    def secondary_digests(
        self, group_name: str, seq: int, region_bytes: int, at_split: bool
    ) -> Generator[DigestPart, None, None]:
        """Once this side applied exactly through `seq`: cut hidden snapshots of the S-VOLs at one
        barrier (with their bitmaps at a split point) and say so, then send their digests.
        The snapshots go when the generator ends, is closed or fails."""
        digests.check_region_bytes(region_bytes)
        group, pairs = self._group(group_name, "backup", "not the backup side here")
        wanted = {*SUSPENDED, PairState.PAIR} if at_split else {PairState.PAIR}
        if not pairs or not {p.state for p in pairs} <= wanted:
            shown = ",".join(sorted({p.state.value for p in pairs})) or "without pairs"
            raise FailedPrecondition(f"journal group {group_name!r} is {shown} at the backup")
        self._await_applied(group.id, seq)

        def at_barrier() -> None:  # nothing is applied meanwhile: the S-VOLs are at seq exactly
            applied = self.store.get_journal_group(group.id).applied_seq
            if applied != seq:
                raise FailedPrecondition(f"the backup applied through {applied}, not the verify point {seq}")

        cut = Cut(seq)
        self.points.take(cut, [p.local_ldev for p in pairs], at_barrier, bitmaps=at_split)
        try:
            yield DigestPart(cut=True)
            progress = Progress(f"group={group_name} side=backup", sum(s.size for s in cut.snapshots.values()))
            for pair in pairs:
                yield from self._parts(pair, cut, region_bytes, progress)
        finally:
            self.points.drop(cut)

    def _parts(
        self, pair: PairRecord, cut: Cut, region_bytes: int, progress: Progress
    ) -> Generator[DigestPart, None, None]:
        snapshot = cut.snapshots[pair.local_ldev]
        runtime = self.runtimes.get(pair.local_ldev)
        count = digests.region_count(snapshot.size, region_bytes)
        for first in range(0, max(count, 1), digests.PART_REGIONS):
            found = digests.snapshot_digests(
                runtime, snapshot.id, snapshot.size, region_bytes, first, digests.PART_REGIONS, progress
            )
            changed = cut.changed.get(pair.local_ldev, b"") if first == 0 else b""
            yield DigestPart(False, pair.remote_ldev, pair.local_ldev, snapshot.size, first, found, changed)

    def _await_applied(self, group_id: int, seq: int) -> None:
        """Until this side applied through `seq`; Busy once its applied sequence stood still
        for CATCH_UP_STALL seconds below it (wait for progress, not for time)."""
        last, since = -1, time.monotonic()
        while (applied := self.store.get_journal_group(group_id).applied_seq) != seq:
            if applied > seq:
                raise FailedPrecondition(f"the backup applied through {applied}, past the verify point {seq}")
            if applied != last:
                last, since = applied, time.monotonic()
            elif time.monotonic() - since > CATCH_UP_STALL:
                raise Busy(f"the backup stayed at sequence {applied} for {CATCH_UP_STALL:.0f} s; verify point {seq}")
            time.sleep(CATCH_UP_POLL)


def _collect(answers: Iterable[DigestPart]) -> dict[int, Theirs]:
    """The backup's digests by P-VOL, its parts put end to end (each must follow the last)."""
    found: dict[int, Theirs] = {}
    for part in answers:
        other = found.setdefault(part.pvol_id, Theirs(part.svol_id, part.size, bytearray(), part.changed))
        if part.first_region * DIGEST_BYTES != len(other.digests):
            raise ArrayError(f"the backup's digests of P-VOL {part.pvol_id:06x} came out of order")
        other.digests += part.digests
    return found
