"""Request framing, validation and reply encoding of the transmission phase."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.nbd.constants import (
    REQUEST_MAGIC,
    SIMPLE_REPLY_MAGIC,
    STRUCTURED_REPLY_MAGIC,
    Command,
    CommandFlag,
    Errno,
    ReplyType,
    TransmissionFlag,
)
from backend.nbd.handshake import ExportInfo, Negotiated
from backend.nbd.transmission import (
    OversizedWrite,
    ProtocolError,
    Request,
    RequestParser,
    allocation_descriptors,
    block_status_reply,
    check_request,
    simple_reply,
    structured_error,
    structured_read_header,
)

SIZE = 1 << 20


def header(command: int, offset: int = 0, length: int = 0, flags: int = 0, cookie: int = 7) -> bytes:
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, command, cookie, offset, length)


def session(read_only: bool = False, structured: bool = True, contexts: bool = True) -> Negotiated:
    return Negotiated(
        export=ExportInfo("vol", SIZE, read_only),
        structured_replies=structured,
        meta_contexts={1: "base:allocation"} if contexts else {},
        flags=TransmissionFlag.HAS_FLAGS,
    )


def test_parser_waits_for_whole_write_payload():
    parser = RequestParser()
    parser.feed(header(Command.WRITE, 0, 4) + b"ab")
    assert parser.next_request() is None
    parser.feed(b"cd" + header(Command.FLUSH))
    assert parser.next_request() == Request(0, Command.WRITE, 7, 0, 4, b"abcd")
    assert parser.next_request() == Request(0, Command.FLUSH, 7, 0, 0)
    assert parser.next_request() is None


def test_bad_magic_is_a_protocol_error():
    parser = RequestParser()
    parser.feed(b"\x00" * 28)
    with pytest.raises(ProtocolError):
        parser.next_request()


def test_oversized_write_is_refused_before_its_payload():
    parser = RequestParser()
    parser.feed(header(Command.WRITE, 0, (32 << 20) + 1, cookie=99))
    with pytest.raises(OversizedWrite) as err:
        parser.next_request()
    assert err.value.cookie == 99


@pytest.mark.parametrize(
    ("request_", "expected", "kwargs"),
    [
        (Request(0, Command.READ, 1, 0, 4096), None, {}),
        (Request(0, 99, 1, 0, 0), Errno.EINVAL, {}),  # unknown command
        (Request(0, Command.CACHE, 1, 0, 512), Errno.EINVAL, {}),  # never advertised
        (Request(CommandFlag.NO_HOLE, Command.WRITE, 1, 0, 0), Errno.EINVAL, {}),  # flag not for WRITE
        (Request(CommandFlag.FAST_ZERO, Command.WRITE_ZEROES, 1, 0, 512), Errno.EINVAL, {}),
        (Request(CommandFlag.DF, Command.READ, 1, 0, 512), Errno.EINVAL, {"structured": False}),
        (Request(CommandFlag.DF, Command.READ, 1, 0, 512), None, {}),
        (Request(0x8000, Command.READ, 1, 0, 512), Errno.EINVAL, {}),
        (Request(0, Command.READ, 1, SIZE - 512, 1024), Errno.EINVAL, {}),  # read past the end
        (Request(0, Command.TRIM, 1, SIZE, 1), Errno.EINVAL, {}),
        (Request(0, Command.WRITE, 1, SIZE - 1, 2), Errno.ENOSPC, {}),  # write past the end
        (Request(0, Command.WRITE_ZEROES, 1, SIZE, 512), Errno.ENOSPC, {}),
        (Request(0, Command.WRITE, 1, 0, 512), Errno.EPERM, {"read_only": True}),
        (Request(0, Command.TRIM, 1, 0, 512), Errno.EPERM, {"read_only": True}),
        (Request(0, Command.READ, 1, 0, 512), None, {"read_only": True}),
        (Request(0, Command.READ, 1, 0, (32 << 20) + 1), Errno.EINVAL, {}),
        (Request(0, Command.BLOCK_STATUS, 1, 0, 512), Errno.EINVAL, {"contexts": False}),
        (Request(0, Command.BLOCK_STATUS, 1, 0, 0), Errno.EINVAL, {}),
        (Request(CommandFlag.REQ_ONE, Command.BLOCK_STATUS, 1, 0, SIZE), None, {}),
        (Request(CommandFlag.FUA, Command.FLUSH, 1, 0, 0), None, {}),
        (Request(0, Command.READ, 1, (1 << 64) - 1, 1), Errno.EINVAL, {}),  # offset overflow
    ],
)
def test_check_request(request_, expected, kwargs):
    assert check_request(request_, session(**kwargs)) == expected


def test_reply_layouts():
    assert simple_reply(5, 22) == struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, 22, 5)
    magic, flags, kind, cookie, length, offset = struct.unpack(">IHHQIQ", structured_read_header(9, 4096, 512))
    assert (magic, flags, kind, cookie, length, offset) == (
        STRUCTURED_REPLY_MAGIC,
        1,
        ReplyType.OFFSET_DATA,
        9,
        520,
        4096,
    )
    err = structured_error(9, 28, "full")
    assert struct.unpack(">IHHQIIH", err[:26]) == (STRUCTURED_REPLY_MAGIC, 1, ReplyType.ERROR, 9, 10, 28, 4)
    assert err[26:] == b"full"
    bs = block_status_reply(3, 1, [(4096, 3), (512, 0)])
    assert struct.unpack(">IHHQI", bs[:20])[2:] == (ReplyType.BLOCK_STATUS, 3, 20)
    assert struct.unpack(">IIIII", bs[20:]) == (1, 4096, 3, 512, 0)


def test_allocation_descriptors_merge_and_req_one():
    runs = [(4096, True), (4096, True), (512, False), (0, True), (1024, False), (512, True)]
    assert allocation_descriptors(runs, req_one=False) == [(8192, 3), (1536, 0), (512, 3)]
    assert allocation_descriptors(runs, req_one=True) == [(8192, 3)]


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_parser_on_garbage_only_raises_protocol_errors(garbage):
    parser = RequestParser()
    parser.feed(garbage)
    try:
        while parser.next_request() is not None:
            pass
    except ProtocolError:
        pass


requests_strategy = st.lists(
    st.tuples(
        st.sampled_from([Command.READ, Command.WRITE, Command.FLUSH, Command.TRIM]),
        st.integers(min_value=0, max_value=1 << 20),
        st.integers(min_value=0, max_value=70_000),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150)
@given(requests_strategy, st.lists(st.integers(min_value=1, max_value=50_000), max_size=30))
def test_any_split_of_a_request_stream_frames_the_same_requests(specs, cut_sizes):
    stream = b""
    expected = []
    for i, (command, offset, length) in enumerate(specs):
        payload = bytes([i % 251]) * length if command == Command.WRITE else None
        stream += header(command, offset, length, cookie=i) + (payload or b"")
        expected.append(Request(0, command, i, offset, length, payload))
    parser = RequestParser()
    got, pos, cuts = [], 0, iter(cut_sizes)
    while pos < len(stream):
        step = next(cuts, len(stream))
        parser.feed(stream[pos : pos + step])
        pos += step
        while (request := parser.next_request()) is not None:
            got.append(request)
    assert [(r.command, r.cookie, r.offset, r.length, r.payload and bytes(r.payload)) for r in got] == [
        (r.command, r.cookie, r.offset, r.length, r.payload) for r in expected
    ]
