"""The NBD handshake state machine, byte for byte, with no sockets."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.nbd.constants import (
    IHAVEOPT,
    NBDMAGIC,
    OPTION_REPLY_MAGIC,
    InfoType,
    Option,
    OptionReply,
    TransmissionFlag,
)
from backend.nbd.handshake import ExportInfo, HandshakeError, Phase, ServerHandshake, TlsMode

EXPORTS = {"vol": ExportInfo("vol", 1 << 20, False), "ro": ExportInfo("ro", 4096, True)}


def machine() -> ServerHandshake:
    return ServerHandshake(lookup=EXPORTS.get, list_exports=lambda: sorted(EXPORTS))


def option(opt: int, data: bytes = b"") -> bytes:
    return struct.pack(">QII", IHAVEOPT, opt, len(data)) + data


def go_data(name: str, infos: tuple[int, ...] = ()) -> bytes:
    raw = name.encode()
    return (
        struct.pack(">I", len(raw))
        + raw
        + struct.pack(">H", len(infos))
        + b"".join(struct.pack(">H", i) for i in infos)
    )


def meta_data(name: str, *queries: str) -> bytes:
    raw = name.encode()
    out = struct.pack(">I", len(raw)) + raw + struct.pack(">I", len(queries))
    for q in queries:
        out += struct.pack(">I", len(q)) + q.encode()
    return out


def replies(data: bytes) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        magic, opt, kind, length = struct.unpack_from(">QIII", data, pos)
        assert magic == OPTION_REPLY_MAGIC
        out.append((opt, kind, data[pos + 20 : pos + 20 + length]))
        pos += 20 + length
    return out


def started(flags: int = 3) -> ServerHandshake:
    hs = machine()
    assert hs.receive(struct.pack(">I", flags)) == b""
    return hs


def test_greeting_offers_fixed_newstyle_and_no_zeroes():
    magic, opt_magic, flags = struct.unpack(">QQH", ServerHandshake.greeting())
    assert (magic, opt_magic, flags) == (NBDMAGIC, IHAVEOPT, 3)


def test_unknown_client_flags_hang_up():
    with pytest.raises(HandshakeError):
        machine().receive(struct.pack(">I", 0x80))


def test_bad_option_magic_hangs_up():
    hs = started()
    with pytest.raises(HandshakeError):
        hs.receive(struct.pack(">QII", 0x1234, Option.GO, 0))


def test_oversized_option_hangs_up_before_reading_it():
    hs = started()
    with pytest.raises(HandshakeError):
        hs.receive(struct.pack(">QII", IHAVEOPT, Option.GO, 1 << 30))


def test_go_reports_size_flags_block_sizes_and_enters_transmission():
    hs = started()
    got = replies(hs.receive(option(Option.GO, go_data("vol", (InfoType.NAME,)))))
    kinds = [k for _, k, _ in got]
    assert kinds[-1] == OptionReply.ACK and kinds[:-1] == [OptionReply.INFO] * 3
    info_type, size, flags = struct.unpack(">HQH", got[0][2])
    assert (info_type, size) == (InfoType.EXPORT, 1 << 20)
    assert flags & TransmissionFlag.SEND_FLUSH and flags & TransmissionFlag.SEND_FUA
    assert not flags & TransmissionFlag.READ_ONLY
    assert got[1][2] == struct.pack(">H", InfoType.NAME) + b"vol"
    assert struct.unpack(">HIII", got[2][2]) == (InfoType.BLOCK_SIZE, 1, 4096, 32 << 20)
    assert hs.phase is Phase.TRANSMISSION and hs.result is not None


def test_read_only_export_says_so():
    hs = started()
    got = replies(hs.receive(option(Option.GO, go_data("ro"))))
    flags = struct.unpack(">HQH", got[0][2])[2]
    assert flags & TransmissionFlag.READ_ONLY and not flags & TransmissionFlag.SEND_TRIM


def test_info_stays_in_negotiation():
    hs = started()
    hs.receive(option(Option.INFO, go_data("vol")))
    assert hs.phase is Phase.OPTIONS


def test_unknown_export_on_go_is_err_unknown_and_negotiation_continues():
    hs = started()
    (reply,) = replies(hs.receive(option(Option.GO, go_data("nope"))))
    assert reply[1] == OptionReply.ERR_UNKNOWN
    assert hs.phase is Phase.OPTIONS


def test_unknown_export_on_export_name_hangs_up():
    hs = started()
    with pytest.raises(HandshakeError):
        hs.receive(option(Option.EXPORT_NAME, b"nope"))


def test_export_name_reply_honours_no_zeroes():
    hs = started(flags=1)  # fixed newstyle, zeroes wanted
    out = hs.receive(option(Option.EXPORT_NAME, b"vol"))
    assert len(out) == 8 + 2 + 124 and struct.unpack(">Q", out[:8])[0] == 1 << 20
    hs = started(flags=3)
    assert len(hs.receive(option(Option.EXPORT_NAME, b"vol"))) == 10


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00",  # shorter than the name length field
        struct.pack(">I", 99) + b"vol",  # name length beyond the data
        go_data("vol") + b"junk",  # trailing bytes
        struct.pack(">I", 2) + b"\xff\xfe" + struct.pack(">H", 0),  # not UTF-8
    ],
)
def test_malformed_go_is_err_invalid(data):
    hs = started()
    (reply,) = replies(hs.receive(option(Option.GO, data)))
    assert reply[1] == OptionReply.ERR_INVALID
    assert hs.phase is Phase.OPTIONS


def test_list_names_every_export():
    got = replies(started().receive(option(Option.LIST)))
    names = [d[4:].decode() for _, k, d in got if k == OptionReply.SERVER]
    assert names == ["ro", "vol"] and got[-1][1] == OptionReply.ACK


def test_list_with_data_is_invalid():
    (reply,) = replies(started().receive(option(Option.LIST, b"x")))
    assert reply[1] == OptionReply.ERR_INVALID


def test_abort_acks_and_ends():
    hs = started()
    (reply,) = replies(hs.receive(option(Option.ABORT)))
    assert reply[1] == OptionReply.ACK and hs.phase is Phase.ABORTED and hs.result is None


@pytest.mark.parametrize("opt", [Option.STARTTLS, Option.EXTENDED_HEADERS, Option.PEEK_EXPORT, 77])
def test_unsupported_options_are_err_unsup(opt):
    (reply,) = replies(started().receive(option(opt)))
    assert reply[1] == OptionReply.ERR_UNSUP


def test_meta_context_needs_structured_replies():
    (reply,) = replies(started().receive(option(Option.SET_META_CONTEXT, meta_data("vol", "base:allocation"))))
    assert reply[1] == OptionReply.ERR_INVALID


def test_set_meta_context_then_go_carries_base_allocation():
    hs = started()
    hs.receive(option(Option.STRUCTURED_REPLY))
    got = replies(hs.receive(option(Option.SET_META_CONTEXT, meta_data("vol", "base:allocation", "qemu:dirty"))))
    assert [k for _, k, _ in got] == [OptionReply.META_CONTEXT, OptionReply.ACK]
    context_id = struct.unpack(">I", got[0][2][:4])[0]
    assert got[0][2][4:] == b"base:allocation"
    hs.receive(option(Option.GO, go_data("vol")))
    assert hs.result is not None and hs.result.meta_contexts == {context_id: "base:allocation"}
    assert hs.result.structured_replies and hs.result.flags & TransmissionFlag.SEND_DF


def test_meta_contexts_for_another_export_do_not_carry_over():
    hs = started()
    hs.receive(option(Option.STRUCTURED_REPLY))
    hs.receive(option(Option.SET_META_CONTEXT, meta_data("ro", "base:allocation")))
    hs.receive(option(Option.GO, go_data("vol")))
    assert hs.result is not None and hs.result.meta_contexts == {}


def test_list_meta_context_with_no_query_lists_all():
    hs = started()
    hs.receive(option(Option.STRUCTURED_REPLY))
    got = replies(hs.receive(option(Option.LIST_META_CONTEXT, meta_data("vol"))))
    assert got[0][2][4:] == b"base:allocation" and got[-1][1] == OptionReply.ACK


def test_too_many_options_hang_up():
    hs = started()
    with pytest.raises(HandshakeError):
        hs.receive(option(Option.STRUCTURED_REPLY) * 600)


def test_leftover_bytes_after_go_are_kept_for_transmission():
    hs = started()
    hs.receive(option(Option.GO, go_data("vol")) + b"REQUEST")
    assert hs.leftover() == b"REQUEST"


SESSION = (
    struct.pack(">I", 3)
    + option(Option.STRUCTURED_REPLY)
    + option(Option.LIST)
    + option(Option.SET_META_CONTEXT, meta_data("vol", "base:allocation"))
    + option(Option.GO, go_data("vol", (InfoType.NAME, InfoType.DESCRIPTION)))
)


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=1, max_value=len(SESSION) - 1), unique=True, max_size=20))
def test_any_fragmentation_gives_the_same_bytes(cuts):
    whole = machine()
    expected = whole.receive(SESSION)
    pieces, last = [], 0
    for cut in [*sorted(cuts), len(SESSION)]:
        pieces.append(SESSION[last:cut])
        last = cut
    hs = machine()
    assert b"".join(hs.receive(p) for p in pieces) == expected
    assert hs.result == whole.result


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_garbage_never_escapes_as_anything_but_handshake_error(garbage):
    hs = machine()
    with contextlib.suppress(HandshakeError):
        hs.receive(struct.pack(">I", 3) + garbage)


# -- NBD_OPT_STARTTLS (proto.md, "TLS support") ------------------------------------
def tls_machine(mode: TlsMode) -> ServerHandshake:
    hs = ServerHandshake(lookup=EXPORTS.get, list_exports=lambda: sorted(EXPORTS), tls=mode)
    hs.receive(struct.pack(">I", 3))
    return hs


def test_without_tls_starttls_is_unsupported_and_negotiation_goes_on():
    hs = tls_machine(TlsMode.OFF)
    assert replies(hs.receive(option(Option.STARTTLS)))[-1][1] == OptionReply.ERR_UNSUP
    hs.receive(option(Option.GO, go_data("vol")))
    assert hs.phase is Phase.TRANSMISSION


def test_tls_required_refuses_every_option_but_starttls_and_abort_in_plaintext():
    hs = tls_machine(TlsMode.REQUIRED)
    for opt, data in ((Option.LIST, b""), (Option.INFO, go_data("vol")), (Option.GO, go_data("vol")),
                      (Option.STRUCTURED_REPLY, b"")):  # fmt: skip
        assert replies(hs.receive(option(opt, data)))[-1][1] == OptionReply.ERR_TLS_REQD
    assert hs.phase is Phase.OPTIONS and hs.result is None
    with pytest.raises(HandshakeError):
        hs.receive(option(Option.EXPORT_NAME, b"vol"))  # no way to refuse it but to hang up


def test_starttls_waits_for_the_tls_handshake_then_options_go_on_inside_it():
    hs = tls_machine(TlsMode.REQUIRED)
    hs.receive(option(Option.STRUCTURED_REPLY))  # refused in plaintext: nothing negotiated
    assert replies(hs.receive(option(Option.STARTTLS)))[-1][1] == OptionReply.ACK
    assert hs.starting_tls
    assert hs.receive(option(Option.GO, go_data("vol"))) == b""  # behind the TLS handshake: kept
    hs.tls_started()
    assert replies(hs.receive(b""))[-1][1] == OptionReply.ACK and hs.phase is Phase.TRANSMISSION
    assert hs.result is not None and not hs.result.structured_replies
    with pytest.raises(HandshakeError):
        tls_machine(TlsMode.OPTIONAL).tls_started()  # TLS without STARTTLS


def test_plaintext_negotiation_does_not_carry_into_tls_and_starttls_twice_is_invalid():
    hs = tls_machine(TlsMode.OPTIONAL)
    assert replies(hs.receive(option(Option.STRUCTURED_REPLY)))[-1][1] == OptionReply.ACK
    hs.receive(option(Option.STARTTLS))
    hs.tls_started()
    assert not hs.structured_replies
    assert replies(hs.receive(option(Option.STARTTLS)))[-1][1] == OptionReply.ERR_INVALID
    assert replies(hs.receive(option(Option.STARTTLS, b"x")))[-1][1] == OptionReply.ERR_INVALID


def test_tls_optional_still_serves_plaintext_clients():
    hs = tls_machine(TlsMode.OPTIONAL)
    hs.receive(option(Option.GO, go_data("vol")))
    assert hs.phase is Phase.TRANSMISSION
