"""Stop signals as a wake-up, never as work: the one way every process ends on SIGTERM/SIGINT.

A Python signal handler runs on the main thread between two bytecodes, wherever that thread
happens to be, possibly inside `Event.set`, `Event.wait` or a logging call and holding their
lock. A handler that takes a lock itself (`Event.set` does) deadlocks when a second signal
lands while the first handler or the main thread holds that lock, and `timeout` and service
managers send two. That deadlocked the site controllers once.

So the handlers here do nothing. The interpreter's own C-level handler writes the signal's
number to a socket (`signal.set_wakeup_fd`), and the thread waiting on that socket does the
stopping, outside any handler. The array gets the same from asyncio's `add_signal_handler`,
which is built the same way.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WOKEN = 0  # what `StopSignals.wait` answers for `wake`, a number no signal has


def _wake_only(_number: int, _frame: FrameType | None) -> None:
    """The wake-up is the C handler's write to the socket. A Python handler must still be
    installed (the default action ends the process at once), and it must do nothing."""


class StopSignals:
    """SIGTERM and SIGINT as bytes on a socket pair, from the moment this is made.

    Made on the main thread (Python installs handlers only there); `wait` there too, since it
    puts the handlers back; `wake` from any thread.
    """

    def __init__(self) -> None:
        self._receive, self._send = socket.socketpair()
        self._send.setblocking(False)  # set_wakeup_fd's rule: a handler must never block
        for number in STOP_SIGNALS:
            signal.signal(number, _wake_only)
        signal.set_wakeup_fd(self._send.fileno(), warn_on_full_buffer=False)

    def wake(self) -> None:
        """End `wait` without a signal (say, the work it guards has ended on its own)."""
        with contextlib.suppress(BlockingIOError):  # a full buffer already holds a wake-up
            self._send.send(bytes([WOKEN]))

    def wait(self) -> int:
        """Block until a stop signal or `wake`; the signal's number, or WOKEN.

        From then on further stop signals are ignored: the stop is under way, and left to the
        interpreter, its finalization puts back the default actions, so a second signal would
        kill the process half way through its exit (seen: exit -15 instead of 0)."""
        while (number := self._receive.recv(1)[0]) not in (WOKEN, *STOP_SIGNALS):
            continue  # another signal that has a Python handler: not ours to act on
        for stop in STOP_SIGNALS:
            signal.signal(stop, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)
        return number
