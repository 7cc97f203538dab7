"""How the operator and the registrar run as processes: print the ready line launchers wait
for, run the loop in a worker thread, and stop it on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

from ccopy_common.signals import StopSignals


def run_until_signalled(run: Callable[[], None], stop: threading.Event, ready: str, name: str) -> None:
    """Run `run` in a worker until SIGTERM or SIGINT (or until it ends), then set `stop`, which
    the worker's loop watches. The signal only wakes this thread (ccopy_common.signals): a
    handler that sets `stop` itself deadlocked on two signals."""
    signals = StopSignals()
    print(ready, flush=True)

    def work() -> None:
        try:
            run()
        finally:
            signals.wake()

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    signals.wait()
    stop.set()
    worker.join(timeout=30)


def exit_now() -> None:
    """End the process with status 0 once the work is stopped and said so. The watch threads
    may sit in a blocking HTTP call that nothing interrupts; the interpreter's finalization
    with them still running aborted the process (SIGABRT, 1 stop in 16), so it is skipped."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
