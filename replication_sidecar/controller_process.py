"""How the operator and the registrar run as processes: print the ready line launchers wait
for, run the loop in a worker thread, and stop it on SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def run_until_signalled(
    run: Callable[[], None], stop: threading.Event, ready: str, name: str, wake: Callable[[], None] | None = None
) -> None:
    """Run `run` until a signal sets `stop`; `wake` interrupts a loop that waits on something else."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(ready, flush=True)
    worker = threading.Thread(target=run, name=name)
    worker.start()
    stop.wait()
    if wake is not None:
        wake()
    worker.join(timeout=30)
