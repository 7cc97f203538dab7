"""Path watch (main side): a group whose backup has not pulled for too long is suspended (PSUE).

Universal Replicator's path watch time: when the link stays down, waiting
forever would let the journal fill and only then suspend (PFUS). After
`watch_seconds` without a pull the group is suspended by error at one
sequence, its P-VOLs mark their bitmaps, and a resync (once the link is back)
copies only what changed. Host writes never notice.
"""

from __future__ import annotations

import logging
import threading
import time

from backend.model import PairState
from backend.replication.pair_ops import PairOperations
from backend.replication.pair_states import PairOp
from backend.store import MetadataStore

log = logging.getLogger(__name__)

DEFAULT_WATCH_SECONDS = 60.0


class PathWatch(threading.Thread):
    def __init__(
        self, store: MetadataStore, pair_ops: PairOperations, watch_seconds: float = DEFAULT_WATCH_SECONDS
    ) -> None:
        super().__init__(name="path-watch", daemon=True)
        self.store = store
        self.pair_ops = pair_ops
        self.watch_seconds = watch_seconds
        self.stopping = threading.Event()
        # Group id -> when the backup last asked for anything of it (a pull, a piece of
        # the initial copy). A group the watch has not seen before (new, resynced, or
        # after a restart) starts with a full watch time.
        self.last_contact: dict[int, float] = {}

    def heard_from(self, group_id: int) -> None:
        self.last_contact[group_id] = time.monotonic()

    def run(self) -> None:
        while not self.stopping.wait(min(1.0, self.watch_seconds / 4)):
            try:
                self.check()
            except Exception as exc:  # a failed check is retried at the next tick
                log.warning("path_watch_failed error=%s", exc)

    def check(self) -> None:
        store = self.store
        now = time.monotonic()
        for group in store.list_journal_groups():
            pairs = store.list_pairs(group.id) if group.role == "main" and group.split_seq is None else []
            if not any(p.state in (PairState.COPY, PairState.PAIR) for p in pairs):
                self.last_contact.pop(group.id, None)  # not watched: its clock starts when it is again
                continue
            silent = now - self.last_contact.setdefault(group.id, now)
            if silent > self.watch_seconds:
                log.warning("path_watch_expired group=%s silent_seconds=%.1f: suspending", group.name, silent)
                self.pair_ops.split(group.name, why=PairOp.SUSPEND_ERROR)

    def stop(self) -> None:
        self.stopping.set()
