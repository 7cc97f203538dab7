"""Start an array as a real child process and learn its addresses.

The demo, the tests and the benchmarks all run arrays this way: `ccopy array
serve` on port 0, then the "ready api=... nbd=..." line it prints tells where
it listens. `kill()` can send SIGKILL to prove durability; `start()` again
reopens the same pool.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ArrayProcessHandle:
    pool: Path
    serial: int
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    api: str = "127.0.0.1:0"
    nbd: str = "127.0.0.1:0"
    process: subprocess.Popen[str] | None = None
    api_address: str = ""
    nbd_address: str = ""
    metrics_address: str = ""  # with --metrics

    def start(self, timeout: float = 120.0) -> ArrayProcessHandle:
        argv = [sys.executable, "-m", "ccopy", "array", "serve", "--pool", str(self.pool)]
        argv += ["--serial", str(self.serial), "--api", self.api, "--nbd", self.nbd, *self.extra_args]
        log = self.log_path.open("a")
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        line = _read_line(self.process, timeout)
        if not line.startswith("ready "):
            self.kill()
            tail = self.log_path.read_text(errors="replace").splitlines()[-5:]
            raise RuntimeError(f"array did not start: {line!r}; {self.log_path} ends: {tail}")
        fields = dict(part.split("=", 1) for part in line.split()[1:])
        self.api_address, self.nbd_address = fields["api"], fields["nbd"]
        self.metrics_address = fields.get("metrics", "")
        # Restarts keep the same ports so clients' addresses stay valid.
        self.api, self.nbd = self.api_address, self.nbd_address
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM: the graceful path (flush, close). Returns the exit status."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL: the crash path; nothing gets to flush."""
        return self._signal(signal.SIGKILL, 30.0)

    def _signal(self, sig: int, timeout: float) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            # Bounded too: a process a tracer still holds cannot be reaped; better an error than a hang.
            code = self.process.wait(timeout)
        if self.process.stdout:
            self.process.stdout.close()
        self.process = None
        return code

    @property
    def port(self) -> int:
        return int(self.nbd_address.rsplit(":", 1)[1])


def free_port() -> int:
    """A TCP port free right now on loopback (for processes that must know each other's)."""
    return free_ports(1)[0]


_HANDED_OUT: set[int] = set()
_FIXED_PORTS_FLOOR = 20000  # below the ephemeral range, above the well-known services


def free_ports(count: int) -> list[int]:
    """`count` ports free right now, none handed out before by this process, and all below
    the kernel's ephemeral range: a port picked from that range can be taken, before the
    process meant for it binds, by any bind to port 0 or by an outgoing connection's local
    port - even a peer's retried connect to the very port, which on loopback connects to
    itself (TCP simultaneous open) and holds it. Ports below the range are only ever taken
    by someone naming them."""
    import random
    import socket

    ceiling = _ephemeral_range_start()
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(_FIXED_PORTS_FLOOR, ceiling)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        ports.append(port)
    return ports


def _ephemeral_range_start() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return max(low, _FIXED_PORTS_FLOOR + 1000)


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=0.1):
            line = process.stdout.readline()
            if line:
                return line.strip()
            return f"exited with status {process.wait()}"  # end of output: it is gone
        if process.poll() is not None:
            return f"exited with status {process.returncode}"
    return "timed out"
