"""NBD transmission phase as pure functions: request framing, validation, replies.

`RequestParser` turns bytes into `Request`s; `check_request` decides which
protocol error (if any) a request earns before it reaches the array; the
`*_reply` functions build the bytes of simple and structured replies.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from backend.nbd.constants import (
    MAX_REQUEST_BYTES,
    REPLY_FLAG_DONE,
    REQUEST_HEADER_SIZE,
    REQUEST_MAGIC,
    SIMPLE_REPLY_MAGIC,
    STATE_HOLE,
    STATE_ZERO,
    STRUCTURED_REPLY_MAGIC,
    Command,
    CommandFlag,
    Errno,
    ReplyType,
)
from backend.nbd.handshake import Negotiated

_HEADER = struct.Struct(">IHHQQI")
_SIMPLE = struct.Struct(">IIQ")
_CHUNK = struct.Struct(">IHHQI")

# Command flags each command may carry. FUA is accepted everywhere because
# existing clients set it on commands that do not write (proto.md).
_ALLOWED_FLAGS = {
    Command.READ: CommandFlag.FUA | CommandFlag.DF,
    Command.WRITE: CommandFlag.FUA,
    Command.DISC: CommandFlag.FUA,
    Command.FLUSH: CommandFlag.FUA,
    Command.TRIM: CommandFlag.FUA,
    Command.WRITE_ZEROES: CommandFlag.FUA | CommandFlag.NO_HOLE,
    Command.BLOCK_STATUS: CommandFlag.FUA | CommandFlag.REQ_ONE,
}
_WRITES = (Command.WRITE, Command.TRIM, Command.WRITE_ZEROES)


class ProtocolError(Exception):
    """The byte stream cannot be trusted any more: hard disconnect."""


class OversizedWrite(ProtocolError):
    """A WRITE whose payload we will not read: answer EINVAL, then disconnect."""

    def __init__(self, cookie: int, length: int) -> None:
        super().__init__(f"WRITE of {length} bytes exceeds the {MAX_REQUEST_BYTES}-byte maximum")
        self.cookie = cookie


@dataclass(frozen=True)
class Request:
    flags: int
    command: int
    cookie: int
    offset: int
    length: int
    payload: bytes | bytearray | None = None

    @property
    def fua(self) -> bool:
        return bool(self.flags & CommandFlag.FUA)


class RequestParser:
    """Frames requests from a byte stream without copying large payloads twice.

    The transport asks `get_buffer()` for memory to receive into and reports
    with `buffer_updated(n)`. Headers and small requests share a ring buffer;
    once a WRITE header is seen, its payload gets a buffer of its own and the
    transport receives straight into it (no intermediate copy of megabytes).
    `feed(data)` does the same for callers that already hold bytes.
    """

    RING_BYTES = 256 * 1024

    def __init__(self, max_payload: int = MAX_REQUEST_BYTES) -> None:
        self._ring = bytearray(self.RING_BYTES)
        self._view = memoryview(self._ring)
        self._start = 0
        self._end = 0
        self._max_payload = max_payload
        self._pending: tuple[int, int, int, int, int] | None = None  # header of a WRITE awaiting payload
        self._payload: bytearray | None = None
        self._filled = 0
        self._into_payload = False

    def get_buffer(self) -> memoryview:
        self._into_payload = self._payload is not None and self._filled < len(self._payload)
        if self._into_payload:
            assert self._payload is not None
            return memoryview(self._payload)[self._filled :]
        if self._end == len(self._ring):  # compact: move the partial request to the front
            remaining = self._end - self._start
            self._ring[:remaining] = self._ring[self._start : self._end]
            self._start, self._end = 0, remaining
        return self._view[self._end :]

    def buffer_updated(self, n: int) -> None:
        if self._into_payload:
            self._filled += n
        else:
            self._end += n

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            target = self.get_buffer()
            n = min(len(target), len(view))
            target[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]
            if not len(target):
                raise ProtocolError("receive buffer full without a complete request")

    def next_request(self) -> Request | None:
        """The next complete request, or None until more bytes arrive."""
        if self._payload is not None:
            return self._finish_payload()
        if self._end - self._start < REQUEST_HEADER_SIZE:
            return None
        magic, flags, command, cookie, offset, length = _HEADER.unpack_from(self._ring, self._start)
        if magic != REQUEST_MAGIC:
            raise ProtocolError(f"bad request magic {magic:#x}")
        self._start += REQUEST_HEADER_SIZE
        if command != Command.WRITE:
            self._rewind_if_empty()
            return Request(flags, command, cookie, offset, length)
        if length > self._max_payload:
            raise OversizedWrite(cookie, length)
        # Move what already arrived of the payload into its own buffer.
        have = min(length, self._end - self._start)
        self._payload = bytearray(length)
        self._payload[:have] = self._view[self._start : self._start + have]
        self._filled = have
        self._start += have
        self._pending = (flags, command, cookie, offset, length)
        return self._finish_payload()

    def _rewind_if_empty(self) -> None:
        if self._start == self._end:
            self._start = self._end = 0

    def _finish_payload(self) -> Request | None:
        assert self._payload is not None and self._pending is not None
        if self._filled < len(self._payload):
            return None
        flags, command, cookie, offset, length = self._pending
        payload, self._payload, self._pending = self._payload, None, None
        self._rewind_if_empty()
        return Request(flags, command, cookie, offset, length, payload)


def check_request(request: Request, session: Negotiated) -> Errno | None:
    """The NBD error a request earns before any data is touched, or None."""
    try:
        command = Command(request.command)
    except ValueError:
        return Errno.EINVAL
    allowed = _ALLOWED_FLAGS.get(command)
    if allowed is None:  # CACHE: never advertised
        return Errno.EINVAL
    if command is Command.READ and not session.structured_replies:
        allowed &= ~CommandFlag.DF
    if request.flags & ~int(allowed):
        return Errno.EINVAL
    if command in _WRITES and session.export.read_only:
        return Errno.EPERM
    if command in (Command.READ, Command.WRITE) and request.length > MAX_REQUEST_BYTES:
        return Errno.EINVAL
    if command is Command.BLOCK_STATUS and (not session.meta_contexts or request.length == 0):
        return Errno.EINVAL
    if command in (Command.DISC, Command.FLUSH):
        return None
    if request.offset + request.length > session.export.size:
        return Errno.ENOSPC if command in (Command.WRITE, Command.WRITE_ZEROES) else Errno.EINVAL
    return None


def simple_reply(cookie: int, error: int = 0) -> bytes:
    return _SIMPLE.pack(SIMPLE_REPLY_MAGIC, error, cookie)


def chunk_header(cookie: int, reply_type: int, length: int, done: bool = True) -> bytes:
    return _CHUNK.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE if done else 0, reply_type, cookie, length)


def structured_read_header(cookie: int, offset: int, length: int) -> bytes:
    """Header of one OFFSET_DATA chunk that ends the reply; the data follows."""
    return chunk_header(cookie, ReplyType.OFFSET_DATA, 8 + length) + struct.pack(">Q", offset)


def structured_none(cookie: int) -> bytes:
    return chunk_header(cookie, ReplyType.NONE, 0)


def structured_error(cookie: int, error: int, message: str = "") -> bytes:
    text = message.encode()[:4096]
    return chunk_header(cookie, ReplyType.ERROR, 6 + len(text)) + struct.pack(">IH", error, len(text)) + text


def error_reply(cookie: int, error: int, structured: bool, message: str = "") -> bytes:
    """Structured when negotiated (READ errors must be), simple otherwise."""
    return structured_error(cookie, error, message) if structured else simple_reply(cookie, error)


def block_status_reply(cookie: int, context_id: int, descriptors: list[tuple[int, int]]) -> bytes:
    body = struct.pack(">I", context_id) + b"".join(struct.pack(">II", n, s) for n, s in descriptors)
    return chunk_header(cookie, ReplyType.BLOCK_STATUS, len(body)) + body


def allocation_descriptors(extents: Iterable[tuple[int, bool]], req_one: bool) -> list[tuple[int, int]]:
    """(length, is_hole) runs -> base:allocation descriptors, merging equal neighbours."""
    out: list[tuple[int, int]] = []
    for length, is_hole in extents:
        if length == 0:
            continue
        status = STATE_HOLE | STATE_ZERO if is_hole else 0
        if out and out[-1][1] == status:
            out[-1] = (out[-1][0] + length, status)
        else:
            out.append((length, status))
    return out[:1] if req_one else out
