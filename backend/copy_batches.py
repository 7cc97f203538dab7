"""Copies for snapshots made durable in batches, for host writes that wait for them.

A write to a chunk that a live snapshot still sees in the LDEV waits until the
chunk's copy is durable (backend.cow_store). Handed one by one to a pool of
threads, each such write waited for a sync that covered only the few copies
the pool's other threads had staged meanwhile, and hopped threads twice. Here
one thread per LDEV, the copier, drains a queue instead: it stages the copies
of every write that arrived while it synced the previous batch
(`WritePath.copy_ahead`, one fdatasync for the batch) and tells each write its
copies are durable. The writes themselves go on where they came from (the NBD
event loop) through the one write path, which checks again under the LDEV's
lock, so the copier's critical path is copies and syncs only and the host's
queue depth becomes the batch size.
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
    done: Done  # told None (copies durable) or the copy's error, from the copier's thread


class CopyBatches:
    """The copier of one LDEV."""

    def __init__(self, write_path: WritePath, target: WriteTarget) -> None:
        self.write_path = write_path
        self.target = target
        self._changed = threading.Condition()
        self._queue: list[_Queued] = []
        self._draining = False
        self.batches = 0  # since the LDEV was opened: writes / batches is the mean batch size
        self.writes = 0

    def submit(self, offset: int, length: int, done: Done) -> None:
        """Make the copies a write of [offset, offset+length) needs durable; `done(None)` then.

        `done(error)` when a copy of its batch failed (the CoW store is full, say): the
        write should take the write path's blocking way, which copies for itself and
        fails with its own error only if its own copy fails.
        """
        with self._changed:
            self._queue.append(_Queued(offset, length, done))
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
            self._copy(batch)

    def _copy(self, batch: list[_Queued]) -> None:
        error: Exception | None = None
        try:
            self.write_path.copy_ahead(self.target, [(q.offset, q.length) for q in batch])
        except Exception as exc:  # the store is full, say; whatever it is, the copier goes on
            error = exc
            log.warning("copy_ahead_failed ldev=%s writes=%d error=%s", format_ldev_id(self.target.ldev_id),
                        len(batch), exc)  # fmt: skip
        self.batches += 1
        self.writes += len(batch)
        for queued in batch:
            try:
                queued.done(error)
            except Exception:  # a caller gone meanwhile (its event loop closed): the others still hear
                log.exception("copies_done_failed ldev=%s", format_ldev_id(self.target.ldev_id))
