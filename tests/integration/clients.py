"""Thin wrappers over NBD clients we did not write (qemu-utils, libnbd-bin)."""

from __future__ import annotations

import subprocess

from tests.conftest import require_tools


def qemu_io(uri: str, *commands: str, read_only: bool = False) -> str:
    """Run qemu-io commands; fail the test on any command error or pattern mismatch."""
    require_tools("qemu-io")
    argv = ["qemu-io", "-f", "raw"] + (["-r"] if read_only else [])
    for command in commands:
        argv += ["-c", command]
    result = subprocess.run([*argv, uri], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "failed" not in output, output
    return output


def qemu_io_fails(uri: str, *commands: str, read_only: bool = False) -> str:
    argv = ["qemu-io", "-f", "raw"] + (["-r"] if read_only else [])
    for command in commands:
        argv += ["-c", command]
    result = subprocess.run([*argv, uri], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0 or "failed" in output, output
    return output


def nbdinfo_map(uri: str) -> list[tuple[int, int, str]]:
    """(offset, length, 'data' | 'hole,zero') runs as nbdinfo --map prints them."""
    require_tools("nbdinfo")
    out = subprocess.run(["nbdinfo", "--map", uri], capture_output=True, text=True, check=True, timeout=60).stdout
    runs = []
    for line in out.splitlines():
        offset, length, _, description = line.split(None, 3)
        runs.append((int(offset), int(length), description.strip()))
    return runs


def data_runs(uri: str) -> list[tuple[int, int]]:
    return [(o, n) for o, n, d in nbdinfo_map(uri) if d == "data"]
