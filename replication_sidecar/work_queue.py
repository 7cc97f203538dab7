"""How the site controllers (the namespace operator and the backup-site registrar) schedule
their passes, after controller-runtime's work queue: keys due at a time, a key queued twice
done once, and a failed pass retried in full with backoff.

A pass is full (it lists the cluster again) when a watch saw its key change. A pass that
fails is retried in full, whatever it was: it may have applied part of its actions, and its
first failed write makes no watch event to say so; a retry that reused the observation of
the failed pass would decide from objects that were never made. The retry waits 2 s,
doubling to a minute (`kube_watch.backoff`), unless a watch sees a change first; a pass
that succeeds resets the count. Nothing here ends the process.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

from replication_sidecar.kube_watch import backoff, describe

log = logging.getLogger(__name__)


class WorkQueue:
    """Keys due at a time; a key queued twice is done once, at the earlier time."""

    def __init__(self) -> None:
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._ready = threading.Condition()

    def add(self, key: str, delay: float = 0.0) -> None:
        at = time.monotonic() + delay
        with self._ready:
            if key in self._due and self._due[key] <= at:
                return
            self._due[key] = at
            heapq.heappush(self._heap, (at, key))
            self._ready.notify()

    def take(self, stop: threading.Event) -> str | None:
        """The next due key, waiting for it; None once `stop` is set (seen within a second)."""
        with self._ready:
            while not stop.is_set():
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded by an earlier time
                wait = self._heap[0][0] - time.monotonic() if self._heap else 1.0
                if self._heap and wait <= 0:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                self._ready.wait(min(max(wait, 0.0), 1.0))
        return None


class Passes:
    """The passes of one controller: which keys are due, which must be full, and the retries
    of failed ones. `changed` is called from the watch threads, `run` from the one worker.

    `key_name` names a key in the log (`reconcile_failed namespace=shop ...`)."""

    def __init__(self, key_name: str) -> None:
        self.key_name = key_name
        self.queue = WorkQueue()
        self._changed: set[str] = set()  # keys a watch saw change (or whose pass failed) since their last full pass
        self._failures: dict[str, int] = {}  # consecutive failed passes, by key
        self._lock = threading.Lock()

    def changed(self, key: str) -> None:
        """A watch saw the key's objects change: a full pass, now."""
        with self._lock:
            self._changed.add(key)
        self.queue.add(key)

    def take(self, stop: threading.Event) -> str | None:
        return self.queue.take(stop)

    def run(self, key: str, one_pass: Callable[[bool], float | None]) -> None:
        """Run `one_pass(full)` for `key`; it returns when the key is due again (None: only on
        a change). `full` is taken before the pass reads anything, so a change seen from then
        on makes another pass. A pass that raises is logged with the server's words and
        queued again after the backoff, full."""
        with self._lock:
            full = key in self._changed
            self._changed.discard(key)
        try:
            again = one_pass(full)
        except Exception as exc:  # the API server or the array: retried, never fatal
            with self._lock:
                self._changed.add(key)
                attempt = self._failures[key] = self._failures.get(key, 0) + 1
            delay = backoff(attempt)
            log.warning("reconcile_failed %s=%s attempt=%d retry_in=%.0fs reason=%r", self.key_name, key, attempt,
                        delay, describe(exc))  # fmt: skip
            self.queue.add(key, delay)
            return
        with self._lock:
            self._failures.pop(key, None)
        if again is not None:
            self.queue.add(key, again)
