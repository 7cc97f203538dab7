"""How the operator and the registrar run as processes: print the ready line launchers wait
for, run the loop in a worker thread, and stop it on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable


def run_until_signalled(
    run: Callable[[], None], stop: threading.Event, ready: str, name: str, wake: Callable[[], None] | None = None
) -> None:
    """Run `run` until a signal sets `stop`; `wake` interrupts a loop that waits on something else.

    The handler only notes the signal: taking a lock in it (Event.set does) can deadlock when
    a second signal arrives while the main thread holds that lock, as `timeout` sends two."""
    signalled: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: signalled.append(number))
    print(ready, flush=True)
    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    while not signalled and worker.is_alive():
        time.sleep(0.2)
    stop.set()
    if wake is not None:
        wake()
    worker.join(timeout=30)


def exit_now() -> None:
    """End the process with status 0 once the work is stopped and said so. The watch threads
    may sit in a blocking HTTP call that nothing interrupts; the interpreter's finalization
    with them still running aborted the process (SIGABRT, 1 stop in 16), so it is skipped."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
