"""NBD fixed-newstyle handshake as a pure state machine (no sockets).

Feed client bytes to `ServerHandshake.receive`; it returns the bytes to send.
`HandshakeError` means the peer broke a MUST of the protocol (or is abusive):
the server hard-disconnects. The export catalogue is a pair of callbacks so
the machine stays testable without an array.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from backend.nbd.constants import (
    BASE_ALLOCATION,
    BASE_ALLOCATION_ID,
    IHAVEOPT,
    MAX_REQUEST_BYTES,
    MAX_STRING_BYTES,
    NBDMAGIC,
    OPTION_REPLY_MAGIC,
    PREFERRED_BLOCK_SIZE,
    ClientFlag,
    HandshakeFlag,
    InfoType,
    Option,
    OptionReply,
    TransmissionFlag,
)

MAX_OPTION_BYTES = 64 * 1024  # names and queries are at most 4 KiB each
MAX_OPTIONS = 512  # options in one handshake before we call it abuse
META_CONTEXTS = {BASE_ALLOCATION: BASE_ALLOCATION_ID}


class HandshakeError(Exception):
    """The client broke the protocol; the session ends with a hard disconnect."""


class ExportRefused(Exception):
    """`lookup` found the export but it is not this client's (host access): the option is
    answered NBD_REP_ERR_POLICY with the reason."""


class _OptionInvalid(Exception):
    """A syntactically invalid option: answered with NBD_REP_ERR_INVALID."""


@dataclass(frozen=True)
class ExportInfo:
    name: str
    size: int
    read_only: bool
    description: str = ""


@dataclass
class Negotiated:
    """What transmission needs to know once the handshake is done."""

    export: ExportInfo
    structured_replies: bool
    meta_contexts: dict[int, str]
    flags: TransmissionFlag


class Phase(Enum):
    CLIENT_FLAGS = "client_flags"
    OPTIONS = "options"
    # NBD_OPT_STARTTLS acknowledged: the next bytes are the TLS handshake, which the
    # server runs; it calls `tls_started` and options go on inside TLS.
    STARTING_TLS = "starting_tls"
    TRANSMISSION = "transmission"
    ABORTED = "aborted"


class TlsMode(Enum):
    """NBD over TLS (proto.md, "TLS support"): off (STARTTLS unsupported), optional
    (plaintext clients served too), required (every option but STARTTLS and ABORT
    answered NBD_REP_ERR_TLS_REQD until TLS is on)."""

    OFF = "off"
    OPTIONAL = "optional"
    REQUIRED = "required"


def transmission_flags(export: ExportInfo, structured_replies: bool) -> TransmissionFlag:
    flags = TransmissionFlag.HAS_FLAGS | TransmissionFlag.SEND_FLUSH | TransmissionFlag.CAN_MULTI_CONN
    if export.read_only:
        flags |= TransmissionFlag.READ_ONLY
    else:
        flags |= TransmissionFlag.SEND_FUA | TransmissionFlag.SEND_TRIM | TransmissionFlag.SEND_WRITE_ZEROES
    if structured_replies:
        flags |= TransmissionFlag.SEND_DF
    return flags


def option_reply(option: int, reply: int, data: bytes = b"") -> bytes:
    return struct.pack(">QIII", OPTION_REPLY_MAGIC, option, reply, len(data)) + data


def _decode_string(raw: bytes) -> str:
    if len(raw) > MAX_STRING_BYTES:
        raise _OptionInvalid("string longer than 4096 bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _OptionInvalid("string is not UTF-8") from exc
    if "\x00" in text:
        raise _OptionInvalid("string contains NUL")
    return text


class _Reader:
    """Bounds-checked reads from one option's data."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _OptionInvalid("option data shorter than its fields say")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def string32(self) -> str:
        return _decode_string(self.take(self.u32()))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise _OptionInvalid("option data longer than its fields say")


@dataclass
class ServerHandshake:
    lookup: Callable[[str], ExportInfo | None]
    list_exports: Callable[[], list[str]]
    phase: Phase = Phase.CLIENT_FLAGS
    no_zeroes: bool = False
    fixed_newstyle: bool = False
    structured_replies: bool = False
    result: Negotiated | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _meta_export: str | None = None
    _meta_contexts: dict[int, str] = field(default_factory=dict)
    _options_seen: int = 0
    tls: TlsMode = TlsMode.OFF
    tls_active: bool = False

    @staticmethod
    def greeting() -> bytes:
        flags = HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES
        return struct.pack(">QQH", NBDMAGIC, IHAVEOPT, flags)

    @property
    def done(self) -> bool:
        return self.phase in (Phase.TRANSMISSION, Phase.ABORTED)

    @property
    def starting_tls(self) -> bool:
        """STARTTLS was acknowledged: the server must now run the TLS handshake."""
        return self.phase is Phase.STARTING_TLS

    def tls_started(self) -> None:
        """The TLS handshake succeeded: options go on, encrypted."""
        if self.phase is not Phase.STARTING_TLS:
            raise HandshakeError("TLS started without NBD_OPT_STARTTLS")
        self.tls_active = True
        self.phase = Phase.OPTIONS
        # What was negotiated in plaintext does not carry over into TLS (proto.md).
        self.structured_replies = False
        self._meta_export, self._meta_contexts = None, {}

    def leftover(self) -> bytes:
        """Bytes received after the handshake ended: the first transmission requests."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def receive(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while not self.done and self.phase is not Phase.STARTING_TLS:
            reply = self._step()
            if reply is None:
                break
            out += reply
        return bytes(out)

    def _step(self) -> bytes | None:
        if self.phase is Phase.CLIENT_FLAGS:
            if len(self._buffer) < 4:
                return None
            (flags,) = struct.unpack_from(">I", self._buffer)
            del self._buffer[:4]
            if flags & ~int(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES):
                raise HandshakeError(f"unknown client flags {flags:#x}")
            self.fixed_newstyle = bool(flags & ClientFlag.FIXED_NEWSTYLE)
            self.no_zeroes = bool(flags & ClientFlag.NO_ZEROES)
            self.phase = Phase.OPTIONS
            return b""
        if len(self._buffer) < 16:
            return None
        magic, option, length = struct.unpack_from(">QII", self._buffer)
        if magic != IHAVEOPT:
            raise HandshakeError(f"bad option magic {magic:#x}")
        if length > MAX_OPTION_BYTES:
            raise HandshakeError(f"option {option} carries {length} bytes, more than {MAX_OPTION_BYTES}")
        if len(self._buffer) < 16 + length:
            return None
        data = bytes(self._buffer[16 : 16 + length])
        del self._buffer[: 16 + length]
        self._options_seen += 1
        if self._options_seen > MAX_OPTIONS:
            raise HandshakeError(f"more than {MAX_OPTIONS} options")
        return self._option(option, data)

    def _option(self, option: int, data: bytes) -> bytes:
        tls_missing = self.tls is TlsMode.REQUIRED and not self.tls_active
        if option == Option.EXPORT_NAME:
            if tls_missing:  # no way to refuse this option but to hang up (proto.md)
                raise HandshakeError("NBD_OPT_EXPORT_NAME before TLS, which this server requires")
            return self._export_name(data)
        if not self.fixed_newstyle:
            raise HandshakeError(f"option {option} needs fixed newstyle negotiation")
        if tls_missing and option not in (Option.STARTTLS, Option.ABORT):
            return option_reply(option, OptionReply.ERR_TLS_REQD, b"this server requires TLS: NBD_OPT_STARTTLS")
        handlers = {
            Option.STARTTLS: self._starttls,
            Option.ABORT: self._abort,
            Option.LIST: self._list,
            Option.INFO: self._info_or_go,
            Option.GO: self._info_or_go,
            Option.STRUCTURED_REPLY: self._structured_reply,
            Option.LIST_META_CONTEXT: self._meta_context,
            Option.SET_META_CONTEXT: self._meta_context,
        }
        handler = handlers.get(option)  # type: ignore[call-overload]
        if handler is None:
            return option_reply(option, OptionReply.ERR_UNSUP, f"option {option} is not supported".encode())
        try:
            return handler(option, data)
        except _OptionInvalid as exc:
            return option_reply(option, OptionReply.ERR_INVALID, str(exc).encode())
        except ExportRefused as exc:
            return option_reply(option, OptionReply.ERR_POLICY, str(exc).encode())

    def _export_name(self, data: bytes) -> bytes:
        try:
            name = _decode_string(data)
        except _OptionInvalid as exc:
            raise HandshakeError(f"NBD_OPT_EXPORT_NAME: {exc}") from exc
        try:
            export = self.lookup(name)
        except ExportRefused as exc:  # the protocol gives no way to refuse but to hang up
            raise HandshakeError(f"NBD_OPT_EXPORT_NAME: {exc}") from exc
        if export is None:
            raise HandshakeError(f"NBD_OPT_EXPORT_NAME: no export named {name!r}")
        self._enter_transmission(export)
        assert self.result is not None
        reply = struct.pack(">QH", export.size, self.result.flags)
        return reply if self.no_zeroes else reply + bytes(124)

    def _starttls(self, option: int, data: bytes) -> bytes:
        if data:
            raise _OptionInvalid("NBD_OPT_STARTTLS takes no data")
        if self.tls is TlsMode.OFF:
            return option_reply(option, OptionReply.ERR_UNSUP, b"this server has no TLS configured")
        if self.tls_active:
            raise _OptionInvalid("TLS is already on")
        if self._buffer:  # proto.md: nothing may follow STARTTLS before its reply
            raise HandshakeError("data after NBD_OPT_STARTTLS before its reply")
        self.phase = Phase.STARTING_TLS
        return option_reply(option, OptionReply.ACK)

    def _abort(self, option: int, data: bytes) -> bytes:
        self.phase = Phase.ABORTED
        return option_reply(option, OptionReply.ACK)

    def _list(self, option: int, data: bytes) -> bytes:
        if data:
            raise _OptionInvalid("NBD_OPT_LIST takes no data")
        out = bytearray()
        for name in self.list_exports():
            raw = name.encode()
            out += option_reply(option, OptionReply.SERVER, struct.pack(">I", len(raw)) + raw)
        return bytes(out + option_reply(option, OptionReply.ACK))

    def _structured_reply(self, option: int, data: bytes) -> bytes:
        if data:
            raise _OptionInvalid("NBD_OPT_STRUCTURED_REPLY takes no data")
        self.structured_replies = True
        return option_reply(option, OptionReply.ACK)

    def _info_or_go(self, option: int, data: bytes) -> bytes:
        reader = _Reader(data)
        name = reader.string32()
        requests = [reader.u16() for _ in range(reader.u16())]
        reader.end()
        export = self.lookup(name)
        if export is None:
            return option_reply(option, OptionReply.ERR_UNKNOWN, f"no export named {name!r}".encode())
        flags = transmission_flags(export, self.structured_replies)
        out = bytearray(
            option_reply(option, OptionReply.INFO, struct.pack(">HQH", InfoType.EXPORT, export.size, flags))
        )
        if InfoType.NAME in requests:
            out += option_reply(option, OptionReply.INFO, struct.pack(">H", InfoType.NAME) + name.encode())
        if InfoType.DESCRIPTION in requests and export.description:
            desc = export.description.encode()
            out += option_reply(option, OptionReply.INFO, struct.pack(">H", InfoType.DESCRIPTION) + desc)
        sizes = struct.pack(">HIII", InfoType.BLOCK_SIZE, 1, PREFERRED_BLOCK_SIZE, MAX_REQUEST_BYTES)
        out += option_reply(option, OptionReply.INFO, sizes)
        out += option_reply(option, OptionReply.ACK)
        if option == Option.GO:
            self._enter_transmission(export)
        return bytes(out)

    def _meta_context(self, option: int, data: bytes) -> bytes:
        if not self.structured_replies:
            raise _OptionInvalid("metadata contexts need NBD_OPT_STRUCTURED_REPLY first")
        reader = _Reader(data)
        name = reader.string32()
        queries = [reader.string32() for _ in range(reader.u32())]
        reader.end()
        if self.lookup(name) is None:
            return option_reply(option, OptionReply.ERR_UNKNOWN, f"no export named {name!r}".encode())
        listing = option == Option.LIST_META_CONTEXT
        chosen = {
            context: cid
            for context, cid in META_CONTEXTS.items()
            if any(q == context or (listing and q in ("base:", "")) for q in queries) or (listing and not queries)
        }
        if not listing:
            self._meta_export = name
            self._meta_contexts = {cid: context for context, cid in chosen.items()}
        out = bytearray()
        for context, cid in chosen.items():
            out += option_reply(option, OptionReply.META_CONTEXT, struct.pack(">I", cid) + context.encode())
        return bytes(out + option_reply(option, OptionReply.ACK))

    def _enter_transmission(self, export: ExportInfo) -> None:
        # Contexts chosen for another export do not carry over (proto.md, SET_META_CONTEXT).
        contexts = self._meta_contexts if self._meta_export == export.name else {}
        self.result = Negotiated(
            export=export,
            structured_replies=self.structured_replies,
            meta_contexts=dict(contexts),
            flags=transmission_flags(export, self.structured_replies),
        )
        self.phase = Phase.TRANSMISSION
