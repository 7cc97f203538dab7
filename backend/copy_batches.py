"""Host writes that must first preserve chunks for snapshots, applied in batches.

A write to a chunk that a live snapshot still sees in the LDEV waits until the
chunk's copy is durable (backend.cow_store). Handed one by one to a pool of
threads, each such write waits for a sync of the CoW store that covers only
the few copies the pool's other threads staged meanwhile, and each hops
threads twice. Here one thread per LDEV drains a queue instead: every write
that arrived while the previous batch was synced is staged together
(`WritePath.copy_ahead`, one fdatasync for the batch), then each goes through
the one write path, which finds its copies durable and writes at once. The
host's queue depth becomes the batch size.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from backend.write_path import WritePath, WriteTarget
from ccopy_common.ldev_id import format_ldev_id

log = logging.getLogger(__name__)

Done = Callable[[BaseException | None], None]
IDLE_SECONDS = 1.0  # how long the drain thread waits for more writes before it ends


@dataclass(frozen=True)
class _Queued:
    offset: int
    length: int
    apply: Callable[[], object]  # the write through the one write path
    done: Done  # told the outcome, from the drain thread


class CopyBatches:
    """The batch queue of one LDEV."""

    def __init__(self, write_path: WritePath, target: WriteTarget) -> None:
        self.write_path = write_path
        self.target = target
        self._changed = threading.Condition()
        self._queue: list[_Queued] = []
        self._draining = False
        self.batches = 0  # since the LDEV was opened: writes / batches is the mean batch size
        self.writes = 0

    def submit(self, offset: int, length: int, apply: Callable[[], object], done: Done) -> None:
        """Queue a write of [offset, offset+length); `done` is called once it was applied or failed."""
        with self._changed:
            self._queue.append(_Queued(offset, length, apply, done))
            if self._draining:
                self._changed.notify()
                return
            self._draining = True
        name = f"copies-{format_ldev_id(self.target.ldev_id)}"
        threading.Thread(target=self._drain, name=name, daemon=True).start()

    def _drain(self) -> None:
        while True:
            with self._changed:
                if not self._queue:
                    self._changed.wait(IDLE_SECONDS)
                if not self._queue:
                    self._draining = False
                    return
                batch, self._queue = self._queue, []
            self._apply(batch)

    def _apply(self, batch: list[_Queued]) -> None:
        try:
            self.write_path.copy_ahead(self.target, [(q.offset, q.length) for q in batch])
        except OSError as exc:
            # The CoW store is full, say: each write below stages its own copies again and
            # fails alone with its error, and the writes that need no copy still land.
            log.warning("copy_ahead_failed ldev=%s writes=%d error=%s", format_ldev_id(self.target.ldev_id),
                        len(batch), exc)  # fmt: skip
        self.batches += 1
        self.writes += len(batch)
        for queued in batch:
            try:
                queued.apply()
            except Exception as exc:
                queued.done(exc)
            else:
                queued.done(None)
