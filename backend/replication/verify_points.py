"""The consistent points of a verify (backend.replication.verify), on either array: hidden
snapshots of a group's volumes cut at one barrier, with each volume's differential bitmap
as it was at that barrier, and their end.

The snapshots have no snapshot group to show and a name of their own (`verify-…`): a
verify drops them when it ends, and start-up drops those a crash left.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from backend.errors import ArrayError
from backend.model import SnapshotRecord
from backend.runtimes import Runtimes
from backend.snapshots import Snapshots
from backend.store import MetadataStore

log = logging.getLogger(__name__)

SNAPSHOT_PREFIX = "verify-"


@dataclass
class Cut:
    """One side's consistent point: the journal sequence, its snapshots by LDEV, and at a split
    point the bitmaps (regions written since the split) taken at the same barrier."""

    seq: int
    snapshots: dict[int, SnapshotRecord] = field(default_factory=dict)
    changed: dict[int, bytes] = field(default_factory=dict)


class VerifyPoints:
    def __init__(self, store: MetadataStore, runtimes: Runtimes, snapshots: Snapshots) -> None:
        self.store = store
        self.runtimes = runtimes
        self.snapshots = snapshots

    def recover(self) -> None:
        """Drop the snapshots of verifies a crash interrupted."""
        stale = [s for s in self.store.list_snapshots(include_hidden=True) if s.name.startswith(SNAPSHOT_PREFIX)]
        if stale:
            self.snapshots.drop(stale, None)
            log.info("recovered event=verify_snapshots_dropped count=%d", len(stale))

    def take(self, cut: Cut, ldev_ids: list[int], at_barrier: Callable[[], None], bitmaps: bool) -> None:
        """Cut hidden snapshots of the LDEVs at one barrier into `cut`; `at_barrier` runs at that
        instant (after the bitmaps are copied, when asked) and may refuse it by raising."""

        def during() -> None:
            if bitmaps:
                cut.changed = self._bitmaps(ldev_ids)
            at_barrier()

        prefix = f"{SNAPSHOT_PREFIX}{uuid.uuid4().hex[:16]}"
        cut.snapshots = {s.ldev_id: s for s in self.snapshots.create_hidden_set(prefix, ldev_ids, during)}

    def _bitmaps(self, ldev_ids: Iterable[int]) -> dict[int, bytes]:
        """The LDEVs' differential bitmaps as they are (at a barrier, no write marks one meanwhile)."""
        bits = {}
        for ldev_id in ldev_ids:
            bitmap = self.runtimes.get(ldev_id).diff
            if bitmap is not None:
                bits[ldev_id] = bitmap.snapshot_bits()
        return bits

    def drop(self, cut: Cut) -> None:
        """The verify's snapshots go; any that cannot is left for the next start-up (logged)."""
        try:
            self.snapshots.drop(list(cut.snapshots.values()), None)
        except (ArrayError, OSError) as exc:
            log.warning("verify_snapshots_kept snapshots=%s error=%s", ",".join(map(str, cut.snapshots)), exc)
