"""The processes one end-to-end site runs: each with its own log, waited for until ready,
stopped at the end by PID in the reverse order of their start.

Readiness is a question asked of the process (an HTTP endpoint answering, an object
it creates appearing), never a sleep; a process that exits while being waited for
fails the wait at once with the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ccopy.waiting import Stalled


class NotReady(AssertionError):
    """A process exited, or never became ready."""


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stopped: bool = False

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(text[-lines:])


@dataclass
class Processes:
    """Every process a site started, in order, by PID."""

    log_dir: Path
    started: list[Started] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        ready: Callable[[], bool] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 180.0,
    ) -> Started:
        """Start `argv` with stdout and stderr in `<log_dir>/<name>.log`; wait for `ready()`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            # Its own process group: stopping it reaches whatever it started (nbdfuse, unshare's child).
            process = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )  # fmt: skip
        started = Started(name, process, log)
        self.started.append(started)
        if ready is not None:
            self.wait_ready(started, ready, timeout)
        return started

    @staticmethod
    def wait_ready(started: Started, ready: Callable[[], bool], timeout: float) -> None:
        """Poll `ready()`; the timeout is a ceiling for a hung start, not a measure of speed."""
        deadline = time.monotonic() + timeout
        while not _safely(ready):
            if started.process.poll() is not None:
                raise NotReady(f"{started.name} exited with {started.process.returncode}:\n{started.tail()}")
            if time.monotonic() > deadline:
                raise Stalled(f"{started.name} not ready after {timeout:.0f} s:\n{started.tail()}")
            time.sleep(0.1)

    def stop_all(self, timeout: float = 30.0) -> None:
        """SIGTERM each process group, newest first, then SIGKILL what is left. Each group
        is signalled once: a group id freed at exit may be given to someone else's process."""
        for started in reversed(self.started):
            if not started.stopped:
                _stop(started.process, timeout)
                started.stopped = True

    def alive(self) -> list[str]:
        """Processes started here that still run, and members of their groups that outlived them."""
        left = [s.name for s in self.started if s.process.poll() is None]
        return left + [f"{s.name} (pid {pid})" for s in self.started for pid in _group_members(s.process.pid)]


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
    _signal_group(process.pid, signal.SIGKILL)  # children that outlived their leader
    # A signal is delivered, not obeyed at once: wait until the group has really gone.
    deadline = time.monotonic() + timeout
    while _group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _group_members(group: int) -> list[int]:
    """PIDs of the live processes in process group `group` (from /proc; the dead awaiting
    their parent's wait, zombies, are not counted)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while listed
        if int(fields[2]) == group and fields[0] != "Z":  # pgrp, after state and ppid
            members.append(int(stat.parent.name))
    return members


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _safely(ready: Callable[[], bool]) -> bool:
    try:
        return bool(ready())
    except Exception:
        return False


def http_ok(url: str, context: ssl.SSLContext | None = None) -> Callable[[], bool]:
    """A readiness check: `url` answers 200."""

    def check() -> bool:
        with urllib.request.urlopen(url, timeout=5, context=context) as answer:
            return answer.status == 200

    return check
