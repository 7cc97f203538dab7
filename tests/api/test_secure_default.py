"""Secure by default: an array refuses to serve its API without TLS, or NBD, beyond this
machine unless told --insecure, and then says so loudly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backend.api.exposure import is_loopback, unprotected
from ccopy.launch import ArrayProcessHandle, free_ports


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("", False), ("::", False), ("10.1.2.3", False), ("array.example", False)],
)  # fmt: skip
def test_what_counts_as_this_machine_only(host, loopback):
    assert is_loopback(host) is loopback


def test_each_open_listener_is_named():
    assert list(unprotected("127.0.0.1", False, "127.0.0.1")) == []
    assert list(unprotected("0.0.0.0", True, "127.0.0.1")) == []  # the API with TLS may face the network
    assert list(unprotected("127.0.0.1", False, "0.0.0.0", nbd_tls_required=True)) == []  # NBD with TLS too
    problems = list(unprotected("0.0.0.0", False, "10.0.0.5"))
    assert "management API on 0.0.0.0 without TLS" in problems[0] and "NBD data path on 10.0.0.5" in problems[1]


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    api, nbd = free_ports(2)
    argv = [sys.executable, "-m", "ccopy", "array", "serve", "--pool", str(tmp_path / "pool"), "--serial", "5",
            "--api", f"0.0.0.0:{api}", "--nbd", f"0.0.0.0:{nbd}", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_the_array_refuses_to_face_the_network_without_tls(tmp_path):
    refused = serve(tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "refusing to serve the management API on 0.0.0.0 without TLS" in refused.stderr
    assert "NBD data path on 0.0.0.0" in refused.stderr and "--insecure" in refused.stderr
    assert not (tmp_path / "pool").exists(), "nothing is made before the refusal"


def test_insecure_serves_and_says_so_loudly(tmp_path):
    handle = ArrayProcessHandle(
        pool=tmp_path / "pool", serial=6, log_path=tmp_path / "array.log", api="0.0.0.0:0", nbd="0.0.0.0:0",
        extra_args=["--insecure"],
    ).start()  # fmt: skip
    try:
        log = (tmp_path / "array.log").read_text()
        assert "WARNING: --insecure: serving the management API on 0.0.0.0 without TLS" in log
        assert "WARNING: --insecure: serving the NBD data path on 0.0.0.0 without TLS" in log
    finally:
        handle.stop()
