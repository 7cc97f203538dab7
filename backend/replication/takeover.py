"""Takeover: the backup's S-VOLs of a journal group become writable primaries (SSWS).

At the backup array, for the whole group, at the last consistent sequence:

- when the main array answers, it is fenced (its P-VOLs refuse host writes:
  never two primaries) and split (it journals nothing more), and the backup
  applies everything up to the split: nothing is given up unless draining
  takes longer than DRAIN_TIMEOUT;
- when it does not answer (force), the backup stops where it is.

Either way every takeover records what it gave up: journal records, bytes
and seconds of writes the main site acknowledged that the backup never
applied, and the recovery point (main-site time of the newest write the
S-VOLs hold). Exact when the main array answers (it counts its journal past
the applied sequence). Otherwise it is the backup's own account as of its
last contact with the main array (backend/replication/lag.py): a floor, since writes the
main site acknowledged after that contact cannot be known here; the report
says so and gives the time of that contact.

The S-VOLs then track their writes in differential bitmaps, so that failing
back copies only the differences.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

from backend.model import JournalGroupRecord, PairState
from backend.replication.lag import Heard, applied_of, backup_lag
from backend.replication.pair_ops import PairOperations
from backend.replication.pair_states import PairOp, next_state
from backend.replication.pairs import Pairs
from backend.replication.remote import LinkDown, RemoteLink
from backend.replication.replicator import Replicators
from backend.services import ArrayServices

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class DataGivenUp:
    records: int
    bytes: int
    seconds: float  # from the oldest write given up to the newest
    exact: bool  # False: as of last_contact_ns, and writes after it cannot be known
    last_contact_ns: int = 0  # when the backup last heard from the main array (0: never)
    recovery_point_ns: int = 0  # main-site time of the newest write the S-VOLs hold (0: none)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> DataGivenUp:
        return DataGivenUp(**json.loads(text))


class Takeovers:
    def __init__(
        self,
        services: ArrayServices,
        link: RemoteLink,
        pairs: Pairs,
        pair_ops: PairOperations,
        replicators: Replicators,
    ) -> None:
        self.store = services.store
        self.name_locks = services.name_locks
        self.link = link
        self.pairs = pairs
        self.pair_ops = pair_ops
        self.replicators = replicators

    def takeover(self, group_name: str, force: bool = False) -> tuple[JournalGroupRecord, DataGivenUp]:
        with self.name_locks.hold(f"journal-group:{group_name}"):
            group = self.pairs.group(group_name, "backup")
            pairs = self.store.list_pairs(group.id)
            for pair in pairs:
                next_state(pair.state, PairOp.TAKEOVER, force)  # refusals first: nothing changed
            if pairs and all(p.state is PairState.SSWS for p in pairs):
                assert group.given_up is not None
                return group, DataGivenUp.from_json(group.given_up)  # taken over already
            given_up = self._stop_replication(group)
            applied = self.store.get_journal_group(group.id).applied_seq
            pairs = self.store.list_pairs(group.id)
            for pair in pairs:
                self.pair_ops.route_svol_writes(pair, PairState.SSWS)
            # One transaction: every S-VOL writable and SSWS with what was given up, or none of it.
            with self.store.transaction():
                for pair in pairs:
                    self.store.set_ldev_access(pair.local_ldev, read_only=False)
                    self.store.update_pair(pair.id, state=next_state(pair.state, PairOp.TAKEOVER, force=True))
                self.store.set_given_up(group.id, given_up.to_json())
            log.warning(
                "takeover group=%s applied_seq=%d given_up_records=%d given_up_bytes=%d given_up_seconds=%.3f exact=%s",
                group_name, applied, given_up.records, given_up.bytes, given_up.seconds, given_up.exact,
            )  # fmt: skip
            return self.store.get_journal_group(group.id), given_up

    def _stop_replication(self, group: JournalGroupRecord) -> DataGivenUp:
        """Drain what the main array has (if it answers), then stop applying; what was given up."""
        remote = self.link.remote
        if remote is None:
            self.replicators.halt(group.id)
            return self._estimate(group)
        try:
            # Fenced first: the main side may not go on taking host writes once this side is
            # writable (two primaries), even when a person forced the takeover.
            remote.fence(group.name)
            split_seq = remote.split(group.name)
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while self.store.get_journal_group(group.id).applied_seq < split_seq and time.monotonic() < deadline:
                self.replicators.wake(group.id)
                time.sleep(0.02)
            self.replicators.halt(group.id)
            held = applied_of(self.store.get_journal_group(group.id))
            missing = remote.describe_unapplied(group.name, held.seq)
            return DataGivenUp(missing.records, missing.bytes, missing.seconds, True, time.time_ns(), held.write_ns)
        except LinkDown:
            self.replicators.halt(group.id)
            return self._estimate(group)

    def _estimate(self, group: JournalGroupRecord) -> DataGivenUp:
        """The main array is gone: what the backup last heard from it, less what it applied since."""
        current = self.store.get_journal_group(group.id)
        lag = backup_lag(Heard.from_json(current.heard), applied_of(current))
        return DataGivenUp(lag.records, lag.bytes, lag.seconds, False, lag.contact_ns, lag.recovery_point_ns)
