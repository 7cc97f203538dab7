"""Takeover: the backup's S-VOLs of a journal group become writable primaries (SSWS).

At the backup array, for the whole group, at the last consistent sequence:

- when the main array answers, it is fenced (its P-VOLs refuse host writes:
  never two primaries) and split (it journals nothing more), and the backup
  applies everything up to the split: nothing is given up unless draining
  takes longer than DRAIN_TIMEOUT;
- when it does not answer (force), the backup stops where it is.

Either way every takeover records what it gave up: journal records, bytes
and seconds of writes the main site acknowledged that the backup never
applied. Exact when the main array answers (it counts its journal past the
applied sequence); otherwise estimated from the last transfer (the sequence
the main array last reported, the average record applied, the age of the
oldest write known to be pending).

The S-VOLs then track their writes in differential bitmaps, so that failing
back copies only the differences.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from backend.metadata import JournalGroupRecord, PairState
from backend.pair_states import PairOp, next_state
from backend.remote import LinkDown

if TYPE_CHECKING:
    from backend.array import Array

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class DataGivenUp:
    records: int
    bytes: int
    seconds: float  # from the oldest write given up to the newest (exact), or the oldest's age (estimate)
    exact: bool


class Takeovers:
    def __init__(self, array: Array) -> None:
        self.array = array
        self.store = array.store

    def takeover(self, group_name: str, force: bool = False) -> tuple[JournalGroupRecord, DataGivenUp]:
        with self.array.name_locks.hold(f"journal-group:{group_name}"):
            group = self.array.pairs.group(group_name, "backup")
            pairs = self.store.list_pairs(group.id)
            for pair in pairs:
                next_state(pair.state, PairOp.TAKEOVER, force)  # refusals first: nothing changed
            if pairs and all(p.state is PairState.SSWS for p in pairs):
                return group, DataGivenUp(**json.loads(group.given_up or "{}"))  # taken over already
            given_up = self._stop_replication(group)
            applied = self.store.get_journal_group(group.id).applied_seq
            for pair in self.store.list_pairs(group.id):
                self.array.pair_ops.open_svol_to_writes(pair.local_ldev)
                self.store.update_pair(pair.id, state=next_state(pair.state, PairOp.TAKEOVER, force=True))
            self.store.set_given_up(group.id, json.dumps(asdict(given_up)))
            log.warning(
                "takeover group=%s applied_seq=%d given_up_records=%d given_up_bytes=%d given_up_seconds=%.3f exact=%s",
                group_name, applied, given_up.records, given_up.bytes, given_up.seconds, given_up.exact,
            )  # fmt: skip
            return self.store.get_journal_group(group.id), given_up

    def _stop_replication(self, group: JournalGroupRecord) -> DataGivenUp:
        """Drain what the main array has (if it answers), then stop applying; what was given up."""
        remote = self.array.pairs.remote
        if remote is None:
            self.array.replicators.halt(group.id)
            return self._estimate(group)
        try:
            # Fenced first: the main side may not go on taking host writes once this side is
            # writable (two primaries), even when a person forced the takeover.
            remote.fence(group.name)
            split_seq = remote.split(group.name)
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while self.store.get_journal_group(group.id).applied_seq < split_seq and time.monotonic() < deadline:
                self.array.replicators.wake(group.id)
                time.sleep(0.02)
            self.array.replicators.halt(group.id)
            applied = self.store.get_journal_group(group.id).applied_seq
            records, nbytes, seconds = remote.describe_unapplied(group.name, applied)
            return DataGivenUp(records, nbytes, seconds, exact=True)
        except LinkDown:
            self.array.replicators.halt(group.id)
            return self._estimate(group)

    def _estimate(self, group: JournalGroupRecord) -> DataGivenUp:
        replicator = self.array.replicators.get(group.id)
        applied = self.store.get_journal_group(group.id).applied_seq
        if replicator is None or not replicator.last_contact_ns:
            return DataGivenUp(0, 0, 0.0, exact=False)  # never heard of the main array since the start
        records = max(0, replicator.main_next_seq - 1 - applied)
        average = replicator.applied_bytes / replicator.applied_records if replicator.applied_records else 0
        seconds = (time.time_ns() - replicator.main_oldest_ns) / 1e9 if records and replicator.main_oldest_ns else 0.0
        return DataGivenUp(records, int(records * average), seconds, exact=False)
