"""Failback: after a takeover, the old main array returns as the backup, and only the differences move.

Run at the array that took over (its group is SSWS). The old main array is
demoted first: its P-VOLs close to hosts and become S-VOLs, and it hands
over what differs on its side: the regions its volumes changed while split or
suspended (differential bitmaps) and the regions of the journal records the
takeover gave up (written there, never applied here). The group and its
pairs change sides on both arrays. Then, as in a resync, each new P-VOL
merges those regions into its own bitmap (its writes since the takeover),
cuts a base snapshot, starts journaling, and the new backup copies exactly
those regions and applies the journal: PAIR in the reverse direction.

Swapping back is the same two steps from the other side: a takeover with
force while both arrays answer (lossless, it drains first), then a failback.
"""

from __future__ import annotations

import logging

from backend.errors import FailedPrecondition
from backend.journal import Journal
from backend.model import JournalGroupRecord
from backend.replication.journal_groups import JournalGroups
from backend.replication.pair_ops import PairOperations
from backend.replication.pair_states import PairOp, next_state
from backend.replication.pairs import Pairs
from backend.replication.remote import RemoteLink
from backend.replication.replicator import Replicators
from backend.services import ArrayServices

log = logging.getLogger(__name__)


class Failbacks:
    def __init__(
        self,
        services: ArrayServices,
        link: RemoteLink,
        pairs: Pairs,
        pair_ops: PairOperations,
        journal_groups: JournalGroups,
        replicators: Replicators,
    ) -> None:
        self.store = services.store
        self.runtimes = services.runtimes
        self.name_locks = services.name_locks
        self.link = link
        self.pairs = pairs
        self.pair_ops = pair_ops
        self.journal_groups = journal_groups
        self.replicators = replicators

    def failback(self, group_name: str) -> JournalGroupRecord:
        """At the array that took over: demote the old main array and copy the differences to it."""
        with self.name_locks.hold(f"journal-group:{group_name}"):
            group = self.pairs.group(group_name, "backup")
            pairs = self.store.list_pairs(group.id)
            if not pairs:
                raise FailedPrecondition(f"journal group {group_name!r} has no pairs")
            targets = {p.id: next_state(p.state, PairOp.FAILBACK) for p in pairs}  # only SSWS
            remote = self.link.get()
            journal = self.journal_groups.journals[group.id]
            # The old main array first: unreachable or still used by its hosts, and nothing changed here.
            their_bits = remote.demote(group_name, group.applied_seq, journal.next_seq - 1)
            with self.store.transaction():  # the main side now, with every P-VOL a member, at once
                self.store.reverse_roles(group.id, "main", 0)
                for pair in pairs:
                    self.store.add_journal_member(group.id, pair.local_ldev)
            pair_ops = self.pair_ops
            for pair in pairs:
                pair_ops.start_differential_copy(group_name, pair, their_bits.get(pair.local_ldev), targets[pair.id])
            return self.store.get_journal_group(group.id)

    def request(self, group_name: str) -> JournalGroupRecord:
        """At the old main array, once the other site took over: ask it to fail back to us.

        The other array runs `failback`, which calls `demote` here; no lock of ours is
        held meanwhile. Afterwards this array holds the backup side.
        """
        group = self.pairs.group(group_name, "main")
        if not group.fenced:
            raise FailedPrecondition(
                f"journal group {group_name!r} is not fenced here: demote it before the other site fails back to it"
            )
        self.link.get().failback(group_name)
        return self.store.get_journal_group(group.id)

    def demote(self, group_name: str, their_applied: int, their_last_seq: int) -> dict[int, bytes]:
        """At the old main array: become the backup; what differs here, by the other array's LDEV id.

        `their_applied` is the last record of ours the other array applied
        before it took over: the regions of every later record differ.
        `their_last_seq` is its journal's last sequence: ours apply from the next.
        """
        with self.name_locks.hold(f"journal-group:{group_name}"):
            group = self.pairs.group(group_name, "main")
            pairs = self.store.list_pairs(group.id)
            targets = {p.id: next_state(p.state, PairOp.DEMOTE) for p in pairs}  # refused before anything changes
            for pair in pairs:
                if self.runtimes.open_sessions(pair.local_ldev) or self.store.list_publications(pair.local_ldev):
                    raise FailedPrecondition(f"P-VOL {pair.local_ldev:06x} is still used by hosts here")
            journal = self.journal_groups.journals[group.id]
            by_ldev = {p.local_ldev: p for p in pairs}
            bits: dict[int, bytes] = {}
            with self.runtimes.hold_writes(by_ldev) as runtimes:
                for runtime in runtimes:
                    self.runtimes.track_changes(runtime)
                    self.journal_groups.stop_journaling(runtime)
                self._mark_given_up(journal, their_applied)
                for runtime in runtimes:
                    diff = runtime.diff
                    assert diff is not None
                    bits[by_ldev[runtime.ldev_id].remote_ldev] = diff.snapshot_bits()
                    self.runtimes.stop_tracking_changes(runtime)
                # One transaction: a crash leaves the group the fenced main side, whole, and the
                # other array's retry finds the same differences in the journal, still untrimmed.
                with self.store.transaction():
                    for runtime in runtimes:
                        self.store.remove_journal_member(runtime.ldev_id)
                        self.store.set_ldev_access(runtime.ldev_id, read_only=True)
                    self.store.reverse_roles(group.id, "backup", their_last_seq)
                    for pair in pairs:
                        self.store.update_pair(pair.id, state=targets[pair.id], clear_base=True)
                for runtime in runtimes:
                    runtime.fenced = False  # an S-VOL now: read-only to hosts, written by the replicator
            journal.trim_through(journal.next_seq - 1)  # nothing of it will ever be sent
            journal.reopen()
            self.replicators.ensure(group.id)
            regions = sum(bin(b).count("1") for v in bits.values() for b in v)
            log.warning("demoted group=%s regions_handed_over=%d", group_name, regions)
            return bits

    def _mark_given_up(self, journal: Journal, their_applied: int) -> None:
        """The regions of the records the other array never applied differ: mark them."""
        seq = their_applied + 1
        while seq < journal.next_seq:
            records = journal.read(seq, 8 << 20)
            if not records:
                return
            for record in records:
                diff = self.runtimes.get(record.ldev_id).diff
                if diff is not None:
                    diff.mark(record.offset, record.length)
            seq = records[-1].seq + 1
