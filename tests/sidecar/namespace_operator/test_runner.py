"""The operator's loop: a real `ccopy namespace-operator` process whose API server cannot
be reached (it says so and keeps trying; it never crash-loops). Its work queue, shared with
the registrar, is tested in tests/sidecar/test_work_queue.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ccopy.launch import free_port
from ccopy.waiting import wait_progressing


def unreachable_kubeconfig(tmp_path: Path) -> Path:
    kubeconfig = tmp_path / "kubeconfig"
    nowhere = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": nowhere, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))  # fmt: skip
    return kubeconfig


@pytest.mark.parametrize("command", ["namespace-operator", "backup-site"])
def test_two_signals_at_once_stop_a_controller_too(tmp_path: Path, command: str):
    """`timeout` and service managers send SIGTERM twice; a handler taking a lock the main
    thread held deadlocked the process (seen 2 times in 16)."""
    argv = [sys.executable, "-m", "ccopy", command, "--kubeconfig", str(unreachable_kubeconfig(tmp_path)),
            "--array", f"127.0.0.1:{free_port()}"]  # fmt: skip
    for _ in range(8):
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert process.stdout is not None and process.stdout.readline().startswith("ready ")
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0


def test_an_unreachable_api_server_is_logged_and_retried_and_sigterm_stops_it(tmp_path: Path):
    kubeconfig = unreachable_kubeconfig(tmp_path)
    log = tmp_path / "operator.log"
    argv = [sys.executable, "-m", "ccopy", "namespace-operator", "--kubeconfig", str(kubeconfig), "--array",
            f"127.0.0.1:{free_port()}"]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_progressing(
            log.read_text, lambda text: text.count("watch_failed kind=namespaces") >= 2, "two logged retries"
        )
        text = log.read_text()
        assert "attempt=2 retry_in=4s" in text and "Connection refused" in text  # backoff, with the reason
        assert process.poll() is None  # still running, still trying
    finally:
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = process.wait(60)
    assert code == 0 and time.monotonic() - started < 60
    assert "operator_stopped" in log.read_text()
