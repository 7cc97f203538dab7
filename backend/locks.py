"""Per-key try-locks: a second operation on the same LDEV or name is refused
(Busy -> ABORTED) instead of queueing behind the first, so callers such as the
CSI external-provisioner retry instead of piling up threads."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from backend.errors import Busy


class KeyLocks:
    def __init__(self, what: str) -> None:
        self._what = what
        self._held: set[Hashable] = set()
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            if key in self._held:
                raise Busy(f"an operation on {self._what} {key} is already in progress")
            self._held.add(key)
        try:
            yield
        finally:
            with self._guard:
                self._held.discard(key)
