"""nbdfuse connections: an LDEV's NBD export served as a file on a FUSE mount, the lower half
of an attachment (attach.py binds a loop device to the file).

Who holds a connection decides what it outlives. Held here, by the process that asks (the
demo, the tests, a node plugin run as a process), nbdfuse runs in a session of its own and
outlives a restart of that process. In a cluster the node plugin is a container, and a
container's processes end with it: there the node's volume keeper holds them (keeper.py),
answering the same two questions, connect and disconnect.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from csi_driver.mounts import is_mount_point
from csi_driver.nbd_commands import AttachError, nbdfuse_argv, run, run_while_busy

log = logging.getLogger(__name__)

FUSE_FILE = "nbd"


class Connector(Protocol):
    """Whoever holds a node's nbdfuse connections."""

    def connect(self, uri: str, fuse_dir: Path, read_only: bool, tls_certificates: Path | None) -> None:
        """Serve `uri` as `fuse_dir`/nbd; return once the file is there."""

    def disconnect(self, fuse_dir: Path, lazily: bool = False) -> None:
        """Unmount `fuse_dir` and end its nbdfuse (at once, `lazily`, after a failure)."""


@dataclass
class Held:
    uri: str
    fuse_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class LocalConnections:
    """Connections this process starts and holds, by FUSE mount point."""

    def __init__(self, timeout: float = 30.0, busy_for: float = 20.0) -> None:
        self.timeout = timeout  # for nbdfuse to connect, and to end after its unmount
        self.busy_for = busy_for  # for a FUSE mount the loop device lets go of a moment late
        self._held: dict[Path, Held] = {}
        self._lock = threading.Lock()

    def held(self) -> list[Held]:
        with self._lock:
            return list(self._held.values())

    def holding(self, fuse_dir: Path) -> Held | None:
        with self._lock:
            return self._held.get(fuse_dir)

    def connect(self, uri: str, fuse_dir: Path, read_only: bool, tls_certificates: Path | None) -> None:
        existing = self.holding(fuse_dir)
        if existing is not None and existing.uri == uri and existing.alive and is_mount_point(fuse_dir):
            return
        if existing is not None:  # ended, or another export: make way
            self.disconnect(fuse_dir, lazily=True)
        pidfile = fuse_dir.with_name(fuse_dir.name + ".pid")
        argv = nbdfuse_argv(uri, fuse_dir / FUSE_FILE, pidfile, read_only, tls_certificates)
        fuse_dir.mkdir(parents=True, exist_ok=True)
        pidfile.unlink(missing_ok=True)
        log_path = fuse_dir.with_name(fuse_dir.name + ".log")
        with open(log_path, "ab") as nbdfuse_log:
            # Its own session and a log file, not a pipe: nbdfuse must outlive a restart of
            # the process that started it.
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=nbdfuse_log, start_new_session=True)
        held = Held(uri, fuse_dir, process)
        with self._lock:
            self._held[fuse_dir] = held
        try:
            self._wait_ready(held, pidfile, log_path)
        except BaseException:
            self.disconnect(fuse_dir, lazily=True)
            raise
        log.info("connected uri=%s fuse_dir=%s pid=%d", uri, fuse_dir, process.pid)

    def _wait_ready(self, held: Held, pidfile: Path, log_path: Path) -> None:
        """nbdfuse writes its pid file once the export is served."""
        deadline = time.monotonic() + self.timeout
        while not pidfile.exists():
            if not held.alive:
                err = log_path.read_text(errors="replace")[-500:] if log_path.exists() else ""
                raise AttachError(f"nbdfuse exited ({held.process.returncode}) for {held.uri}: {err.strip()}")
            if time.monotonic() > deadline:
                raise AttachError(f"nbdfuse did not become ready in {self.timeout}s for {held.uri}")
            time.sleep(0.02)
        pidfile.unlink(missing_ok=True)

    def disconnect(self, fuse_dir: Path, lazily: bool = False) -> None:
        """Unmounting ends nbdfuse; one this process started is also reaped (killed when
        `lazily`, or when it outstays the unmount). A mount still busy after `busy_for`
        seconds raises AttachError, and the connection stays held."""
        if is_mount_point(fuse_dir):
            if lazily:
                run("fusermount3", "-u", "-z", str(fuse_dir))
            else:
                run_while_busy("fusermount3", "-u", str(fuse_dir), seconds=self.busy_for)
        with self._lock:
            held = self._held.pop(fuse_dir, None)
        if held is not None:
            if lazily:
                held.process.kill()
            try:
                held.process.wait(self.timeout)
            except subprocess.TimeoutExpired:
                held.process.kill()
                held.process.wait()
        log.info("disconnected fuse_dir=%s lazily=%s", fuse_dir, lazily)


# The connections of a process that holds its own (the library's default).
LOCAL = LocalConnections()
