"""Two stop signals at once end the CSI plugin and the replication sidecar cleanly, as the
controllers' own test asks of them (tests/sidecar/namespace_operator/test_runner.py): a
signal only wakes the main thread (ccopy_common.signals), it does no work in the handler."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccopy.launch import free_port

ROUNDS = 8
PAIRS = [(signal.SIGTERM, signal.SIGINT), (signal.SIGTERM, signal.SIGTERM)]


def argv(command: str, folder: Path) -> list[str]:
    array = ["--array", f"127.0.0.1:{free_port()}"]  # nothing listens there: neither needs it to start
    if command == "csi":
        return [sys.executable, "-m", "ccopy", "csi", "--endpoint", f"unix://{folder}/csi.sock", "--node-id", "n1",
                "--mode", "controller", "--state-dir", str(folder / "state"), *array]  # fmt: skip
    return [sys.executable, "-m", "ccopy", "replication", "--endpoint", f"unix://{folder}/csi-addons.sock", *array]


def spin(seconds: float) -> None:
    """Busy-wait: sleep's granularity is coarser than the stop's first milliseconds."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.parametrize("command", ["csi", "replication"])
def test_two_signals_at_once_stop_the_plugin_and_the_sidecar_cleanly(tmp_path: Path, command: str):
    """`timeout` and service managers send two signals. Back to back, and with the second
    behind the first by up to 1.4 ms, so that it lands at different points of the stop: in
    the handler, in the wait, in the server's stop, at the interpreter's exit. Each round must
    end with status 0; 60 s is only a hang detector."""
    for round_ in range(ROUNDS):
        first, second = PAIRS[round_ % len(PAIRS)]
        folder = tmp_path / str(round_)
        process = subprocess.Popen(argv(command, folder), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert process.stdout is not None and process.stdout.readline().startswith("ready endpoint=")
            process.send_signal(first)
            spin(round_ * 0.0002)
            process.send_signal(second)
            assert process.wait(60) == 0, f"round {round_}: {first.name} then {second.name}"
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        assert not any(folder.glob("*.sock"))  # the socket is removed on the way out
