"""The harness's process keeping: what it starts, it stops, children included, and it can
tell when something outlived the stop (runs without the Kubernetes binaries)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.e2e.processes import Processes

# A leader that starts a child in its own process group and waits: stopping the leader alone
# would leave the child running.
PARENT_AND_CHILD = "import subprocess, time; subprocess.Popen(['sleep', '600']); time.sleep(600)"


def test_stop_all_ends_the_whole_process_group_and_alive_sees_what_is_left(tmp_path: Path):
    processes = Processes(tmp_path / "logs")
    started = processes.start("family", [sys.executable, "-c", PARENT_AND_CHILD], ready=lambda: True)
    processes.wait_ready(started, lambda: len(processes.alive()) == 2, timeout=60)  # the leader and its child
    assert processes.alive()[0] == "family"
    processes.stop_all()
    assert processes.alive() == []
    processes.stop_all()  # a second stop signals nothing (the group id may belong to someone else by now)
    assert started.stopped and started.process.returncode is not None
