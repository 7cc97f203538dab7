"""Waiting for a long operation by its progress, not by the clock.

An initial copy, a catch-up after a fault or a clone takes as long as the
machine makes it take: seconds when idle, minutes on a loaded CI machine. A
fixed deadline measures the machine; what shows a real hang is a state that
stops changing. So a wait here ends in failure only once what it watches
(copied bytes, applied sequence, pair states) has not moved for `stall`
seconds. The demo, the tests and the benchmarks all wait this way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import TypeVar

from ccopy_api import array_pb2 as pb

State = TypeVar("State")


class Stalled(AssertionError):
    """What was awaited stopped moving before it got there."""


def wait_progressing(
    observe: Callable[[], State],
    done: Callable[[State], bool],
    what: str,
    progress: Callable[[State], Hashable] | None = None,
    stall: float = 60.0,
    interval: float = 0.05,
) -> State:
    """Poll `observe()` until `done(state)`; return that state.

    Raises Stalled when `progress(state)` (the state itself by default) stayed
    equal for `stall` seconds: it must include whatever moves while the
    operation is on its way (bytes copied, sequences) and nothing that moves by
    itself (a lag in seconds), or a stalled operation looks alive.
    """
    last: Hashable = None
    since = time.monotonic()
    while True:
        state = observe()
        if done(state):
            return state
        now = time.monotonic()
        mark = progress(state) if progress else state
        if mark != last:
            last, since = mark, now
        elif now - since > stall:
            raise Stalled(f"{what}: nothing moved for {stall:.0f} s; last seen {state}")
        time.sleep(interval)


def replication_progress(*groups: pb.JournalGroup) -> tuple:
    """What moves while a journal group copies or catches up, on either array's view of
    it: pair states and copied bytes, sequences, pending records (not the lag, which
    grows by itself)."""
    return tuple(
        (
            tuple((p.local_ldev_id, p.state, p.copied_bytes) for p in group.pairs),
            (group.main_seq, group.confirmed_seq, group.applied_seq, group.pending_records, group.split),
        )
        for group in groups
    )
