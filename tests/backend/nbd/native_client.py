"""A native connection on one end of a socketpair, and a client for the other end.

The native thread serves an LDEV that is a plain temporary file, through a real
Gate, so tests can hold its lock, change its route and read the file directly.
Replies are decoded from the protocol document (simple and structured), not
from our encoders.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend import _nbdcore

REQUEST_MAGIC = 0x25609513
SIMPLE = 0x67446698
STRUCTURED = 0x668E33EF
READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS = range(8)
FUA, NO_HOLE, DF, REQ_ONE = 1, 2, 4, 8
OFFSET_DATA, BLOCK_STATUS_CHUNK, ERROR_CHUNK = 1, 5, (1 << 15) + 1


def request(command: int, offset: int = 0, length: int = 0, flags: int = 0, cookie: int = 1, data: bytes = b"") -> bytes:  # noqa: E501
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, command, cookie, offset, length) + data


@dataclass
class Reply:
    cookie: int
    error: int
    data: bytes = b""  # a READ's bytes
    descriptors: list[tuple[int, int]] = field(default_factory=list)  # BLOCK_STATUS (length, flags)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


@dataclass
class NativeLdev:
    """A temporary file as an LDEV, its gate, and connections served on it."""

    path: Path
    size: int
    qos: _nbdcore.Qos = field(default_factory=_nbdcore.Qos)
    fd: int = -1
    gate: _nbdcore.Gate = field(init=False)

    def __post_init__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self.fd, self.size)
        self.gate = _nbdcore.Gate(self.fd, self.size, self.qos)

    def contents(self) -> bytes:
        return os.pread(self.fd, self.size, 0).ljust(self.size, b"\0")

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class NativeClient:
    sock: socket.socket
    connection: object
    structured: bool
    closed: threading.Event
    reasons: list[str]
    lengths: dict[int, int] = field(default_factory=dict)  # cookie -> READ length (simple replies carry none)

    def send(self, *requests: bytes) -> None:
        self.sock.sendall(b"".join(requests))

    def read_request(self, offset: int, length: int, cookie: int, flags: int = 0) -> bytes:
        self.lengths[cookie] = length
        return request(READ, offset, length, flags, cookie)

    def reply(self) -> Reply:
        magic = struct.unpack(">I", recv_exact(self.sock, 4))[0]
        if magic == SIMPLE:
            error, cookie = struct.unpack(">IQ", recv_exact(self.sock, 12))
            length = self.lengths.pop(cookie, 0)
            return Reply(cookie, error, recv_exact(self.sock, length) if length and not error else b"")
        assert magic == STRUCTURED, hex(magic)
        flags, kind, cookie, length = struct.unpack(">HHQI", recv_exact(self.sock, 16))
        body = recv_exact(self.sock, length)
        assert flags & 1, "every reply of ours is one chunk with the DONE flag"
        self.lengths.pop(cookie, None)
        if kind == ERROR_CHUNK:
            error, message_length = struct.unpack(">IH", body[:6])
            assert len(body) == 6 + message_length
            return Reply(cookie, error)
        if kind == OFFSET_DATA:
            return Reply(cookie, 0, body[8:])
        if kind == BLOCK_STATUS_CHUNK:
            assert struct.unpack(">I", body[:4])[0] == 1  # base:allocation's id
            pairs = [struct.unpack(">II", body[i : i + 8]) for i in range(4, len(body), 8)]
            return Reply(cookie, 0, descriptors=pairs)
        assert kind == 0, kind
        return Reply(cookie, 0)

    def wait_closed(self, timeout: float = 30.0) -> str:
        assert self.closed.wait(timeout), "the native connection did not end"
        return self.reasons[0]

    def close(self) -> None:
        self.connection.abort()  # type: ignore[attr-defined]
        self.wait_closed()
        self.sock.close()


WriteBatch = Callable[[list[tuple[int, int, int, int, bytes | None]]], list[int]]


def connect(
    ldev: NativeLdev,
    *,
    structured: bool = True,
    read_only: bool = False,
    contexts: int = 1,
    growable: bool = False,
    export_size: int | None = None,
    initial_out: bytes = b"",
    initial_in: bytes = b"",
    write_batch: WriteBatch | None = None,
) -> NativeClient:
    ours, theirs = socket.socketpair()
    closed, reasons = threading.Event(), []

    def on_closed(reason: str) -> None:
        reasons.append(reason)
        closed.set()

    def refuse(entries: list) -> list[int]:
        raise AssertionError(f"a plain gate handed {entries} to the write path")

    connection = _nbdcore.serve(
        fd=ours.detach(), gate=ldev.gate, export_size=ldev.size if export_size is None else export_size,
        read_only=read_only, structured_replies=structured, meta_contexts=contexts, growable=growable,
        initial_out=initial_out, initial_in=initial_in, write_batch=write_batch or refuse, closed=on_closed,
    )  # fmt: skip
    theirs.settimeout(30)
    return NativeClient(theirs, connection, structured, closed, reasons)
