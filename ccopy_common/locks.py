"""Per-key try-locks: a second operation on the same LDEV or name is refused
(-> ABORTED) instead of queueing behind the first, so callers such as the CSI
external-provisioner retry instead of piling up threads.

Each layer raises its own error for "busy" (the array its domain `Busy`, the
driver and the sidecar `Aborted`), so the lock knows none of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager


class KeyLocks:
    def __init__(self, what: str, busy: Callable[[str], Exception]) -> None:
        self._what = what
        self._busy = busy
        self._held: set[Hashable] = set()
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            if key in self._held:
                raise self._busy(f"an operation on {self._what} {key} is already in progress")
            self._held.add(key)
        try:
            yield
        finally:
            with self._guard:
                self._held.discard(key)
