"""The native transmission phase (backend/native): the same protocol as the Python one,
served on a thread of its own against an LDEV's gate.

Differential: the native parser and request checks agree with the pure Python
ones (backend.nbd.transmission) on any header. Model: any stream of requests,
pipelined, leaves the file as a bytearray model says and answers each request as
the checks say, whether the gate is plain (data written natively) or not (every
write handed to the write path's batch callback, in order).
"""

from __future__ import annotations

import os
import struct
import threading
import time

import google_crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import _nbdcore
from backend.journal import Journal
from backend.journal_record import RecordKind
from backend.nbd.constants import TransmissionFlag
from backend.nbd.handshake import ExportInfo, Negotiated
from backend.nbd.transmission import Request, check_request
from tests.backend.nbd.native_client import (
    BLOCK_STATUS,
    CACHE,
    DF,
    DISC,
    FLUSH,
    FUA,
    NO_HOLE,
    READ,
    REQ_ONE,
    TRIM,
    WRITE,
    WRITE_ZEROES,
    NativeLdev,
    connect,
    request,
)

SIZE = 1 << 20


def negotiated(size: int, read_only: bool = False, structured: bool = True, contexts: bool = True) -> Negotiated:
    return Negotiated(
        export=ExportInfo("vol", size, read_only),
        structured_replies=structured,
        meta_contexts={1: "base:allocation"} if contexts else {},
        flags=TransmissionFlag.HAS_FLAGS,
    )


@pytest.fixture
def ldev(tmp_path):
    ldev = NativeLdev(tmp_path / "ldev", SIZE)
    yield ldev
    ldev.close()


# -- the wire, against the Python spec -------------------------------------------------------
@settings(max_examples=500)
@given(
    st.integers(0, 0xFFFF), st.integers(0, 12), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1),
    st.integers(0, 2**40), st.booleans(), st.booleans(), st.booleans(),
)  # fmt: skip
def test_native_checks_agree_with_the_python_ones(flags, command, offset, length, size, read_only, structured, ctx):
    python = check_request(Request(flags, command, 1, offset, length), negotiated(size, read_only, structured, ctx))
    native = _nbdcore.check_request(flags, command, offset, length, size, read_only, structured, int(ctx))
    assert native == (python or 0)


@settings(max_examples=500)
@given(st.binary(max_size=40))
def test_native_header_parsing_agrees_with_the_layout(raw):
    result, flags, command, cookie, offset, length = _nbdcore.parse_header(raw)
    if len(raw) < 28:
        assert result == 0
        return
    magic, *fields = struct.unpack(">IHHQQI", raw[:28])
    if magic != 0x25609513:
        assert result == -1
        return
    assert (flags, command, cookie, offset, length) == tuple(fields)
    assert result == (-2 if command == WRITE and length > _nbdcore.MAX_REQUEST_BYTES else 1)


# -- a request stream against a model --------------------------------------------------------
ALLOWED = {READ: FUA | DF, WRITE: FUA, FLUSH: FUA, TRIM: FUA, WRITE_ZEROES: FUA | NO_HOLE, BLOCK_STATUS: FUA | REQ_ONE}
requests_strategy = st.lists(
    st.tuples(
        st.sampled_from([READ, WRITE, TRIM, WRITE_ZEROES, FLUSH, BLOCK_STATUS, CACHE, 11]),
        st.integers(0, SIZE + 8192),
        st.integers(0, 70_000),
        st.integers(0, 31),
        st.booleans(),  # flags within the command's allowed ones
    ),
    min_size=1,
    max_size=25,
)


def apply_to_model(model: bytearray, command: int, offset: int, length: int, data: bytes) -> None:
    if command == WRITE:
        model[offset : offset + length] = data
    elif command in (TRIM, WRITE_ZEROES):
        model[offset : offset + length] = bytes(length)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests_strategy, st.booleans(), st.booleans())
def test_any_request_stream_matches_the_model(ldev, specs, plain, structured):
    os.ftruncate(ldev.fd, 0)
    os.ftruncate(ldev.fd, SIZE)
    model = bytearray(SIZE)
    handed: list[tuple[int, int, int, int]] = []

    def write_path(entries):  # what the write path would do, for a gate that is not plain
        for command, _flags, offset, length, payload in entries:
            handed.append((command, offset, length))
            if command == WRITE:
                os.pwrite(ldev.fd, payload, offset)
            elif command in (TRIM, WRITE_ZEROES):
                os.pwrite(ldev.fd, bytes(length), offset)
        return [0] * len(entries)

    ldev.gate.set_route(_nbdcore.ROUTE_PLAIN if plain else _nbdcore.ROUTE_PYTHON)
    client = connect(ldev, structured=structured, write_batch=write_path)
    stream, expected = [], []
    for cookie, (command, offset, length, flags, keep_allowed) in enumerate(specs):
        if keep_allowed:
            flags &= ALLOWED.get(command, 0)
        data = bytes([cookie % 251 + 1]) * length if command == WRITE else b""
        error = check_request(Request(flags, command, cookie, offset, length), negotiated(SIZE, structured=structured))
        stream.append(client.read_request(offset, length, cookie, flags) if command == READ
                      else request(command, offset, length, flags, cookie, data))  # fmt: skip
        expected.append((cookie, command, offset, length, flags, int(error or 0), data))
    client.send(*stream)
    expected_handed = []
    for cookie, command, offset, length, flags, error, data in expected:
        reply = client.reply()
        assert (reply.cookie, reply.error) == (cookie, error)
        if error:
            continue
        if command == READ:
            assert reply.data == model[offset : offset + length]
        if command == BLOCK_STATUS:
            assert sum(n for n, _ in reply.descriptors) == length or (flags & REQ_ONE and len(reply.descriptors) == 1)
            pos = offset
            for n, state in reply.descriptors:
                if state & 1:  # a hole reads as zeroes
                    assert model[pos : pos + n] == bytes(min(n, SIZE - pos))
                pos += n
        apply_to_model(model, command, offset, length, data)
        if command in (WRITE, TRIM, WRITE_ZEROES, FLUSH):
            expected_handed.append((command, offset, length))
    assert ldev.contents() == model
    assert handed == ([] if plain else expected_handed)
    client.close()


# -- the connection's life ---------------------------------------------------------------------
def test_the_handshake_answer_goes_first_and_requests_that_came_with_it_are_served(ldev):
    client = connect(ldev, initial_out=b"GO-ANSWER", initial_in=request(WRITE, 0, 3, cookie=5, data=b"abc"))
    assert client.sock.recv(9, 0) == b"GO-ANSWER"
    assert (client.reply().cookie, ldev.contents()[:3]) == (5, b"abc")
    client.send(request(DISC))
    assert client.wait_closed() == "client_disc"
    assert client.sock.recv(1) == b""  # no reply to DISC, then the close


@pytest.mark.parametrize(
    ("garbage", "reason", "answered"),
    [
        (b"\x00" * 28, "protocol_error reason=bad_request_magic", False),
        (request(WRITE, 0, (32 << 20) + 1, cookie=9), "protocol_error reason=oversized_write", True),
    ],
)
def test_untrustworthy_streams_end_the_connection(ldev, garbage, reason, answered):
    client = connect(ldev)
    client.send(request(WRITE, 0, 2, cookie=1, data=b"ok"), garbage)
    assert client.reply().error == 0
    if answered:
        refused = client.reply()
        assert (refused.cookie, refused.error) == (9, 22)
    assert client.wait_closed() == reason
    assert ldev.contents()[:2] == b"ok"


def test_abort_cuts_a_connection_waiting_for_requests(ldev):
    client = connect(ldev)
    client.connection.abort()
    assert client.wait_closed() == "aborted"
    assert client.sock.recv(1) == b""


def test_a_client_that_goes_away_ends_its_connection(ldev):
    client = connect(ldev)
    client.sock.close()
    assert client.wait_closed() == "client_eof"


def test_a_native_write_waits_for_the_ldev_lock(ldev):
    """The gate is the LDEV's write lock for Python too: while a snapshot barrier (here, the
    test) holds it, a native write does not touch the data."""
    client = connect(ldev)
    assert ldev.gate.acquire()
    try:
        client.send(request(WRITE, 0, 4, cookie=3, data=b"late"))
        client.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            client.reply()
        assert ldev.contents()[:4] == bytes(4)
    finally:
        ldev.gate.release()
    client.sock.settimeout(30)
    assert client.reply().cookie == 3
    assert ldev.contents()[:4] == b"late"
    client.close()


def test_writes_that_arrive_together_reach_the_write_path_as_one_batch_with_their_errors(ldev):
    batches: list[list[int]] = []

    def write_path(entries):
        batches.append([cookie_of(offset) for _, _, offset, _, _ in entries])
        return [28 if offset == 3 * 4096 else 0 for _, _, offset, _, _ in entries]

    def cookie_of(offset: int) -> int:
        return offset // 4096

    ldev.gate.set_route(_nbdcore.ROUTE_PYTHON)
    client = connect(ldev, write_batch=write_path)
    client.send(*(request(WRITE, i * 4096, 4096, cookie=i, data=b"x" * 4096) for i in range(8)))
    replies = [client.reply() for _ in range(8)]
    assert [(r.cookie, r.error) for r in replies] == [(i, 28 if i == 3 else 0) for i in range(8)]
    assert [c for batch in batches for c in batch] == list(range(8))
    assert max(len(batch) for batch in batches) > 1
    client.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the native side reports it so
def test_a_failing_write_path_answers_eio_and_the_connection_lives(ldev):
    def broken(entries):
        raise RuntimeError("the write path broke")

    ldev.gate.set_route(_nbdcore.ROUTE_PYTHON)
    client = connect(ldev, write_batch=broken)
    client.send(request(WRITE, 0, 1, cookie=1, data=b"x"))
    assert client.reply().error == 5
    client.send(client.read_request(0, 1, cookie=2))
    assert client.reply().data == b"\0"
    client.close()


def test_a_growable_session_writes_as_far_as_the_ldev_has_grown(ldev):
    ldev.gate.size = SIZE // 2
    client = connect(ldev, growable=True)
    client.send(request(WRITE, SIZE // 2, 1, cookie=1, data=b"x"))
    assert client.reply().error == 28  # past the LDEV's size now, within the size told
    ldev.gate.size = SIZE
    client.send(request(WRITE, SIZE // 2, 1, cookie=2, data=b"x"))
    assert client.reply().error == 0
    client.close()


def test_a_read_only_session_refuses_writes_and_serves_reads(ldev):
    client = connect(ldev, read_only=True)
    client.send(request(WRITE, 0, 1, cookie=1, data=b"x"), request(TRIM, 0, 1, cookie=2), client.read_request(0, 2, 3))
    assert [(r.cookie, r.error) for r in (client.reply(), client.reply(), client.reply())] == [(1, 1), (2, 1), (3, 0)]
    client.close()


def test_qos_holds_requests_in_order_and_counts_them(ldev):
    ldev.qos.update(20, 0)  # 20 IOPS: a burst of 2, then 50 ms apart
    client = connect(ldev)
    started = time.monotonic()
    client.send(*(request(WRITE, i, 1, cookie=i, data=b"q") for i in range(8)))
    assert [client.reply().cookie for _ in range(8)] == list(range(8))
    assert time.monotonic() - started >= 0.25  # at least 6 requests held 50 ms each
    counts, _seconds, count, errors = ldev.gate.stats()[WRITE]
    assert (count, errors, sum(counts)) == (8, 0, 8)
    client.close()


def test_the_gate_is_a_lock_python_can_use(ldev):
    gate = ldev.gate
    assert gate.acquire() and gate.locked()
    assert not gate.acquire(blocking=False)
    assert not gate.acquire(timeout=0.05)
    taken = threading.Event()
    waiter = threading.Thread(target=lambda: (gate.acquire(), taken.set(), gate.release()))
    waiter.start()
    assert not taken.wait(0.1)
    gate.release()
    waiter.join(30)
    assert taken.is_set() and not gate.locked()
    with gate:
        assert gate.locked()
    with pytest.raises(RuntimeError):
        gate.release()


# -- a P-VOL's writes: a record in the journal, then the data ------------------------------------
def test_a_p_vols_writes_are_journaled_in_order_by_the_connection_thread(ldev, tmp_path):
    """The first write finds no segment to append to and takes the write path (which makes
    one); the rest are journaled natively; a FUA write takes the write path (it syncs the
    journal). One sequence orders them all, each record carries its write."""
    journal = Journal(tmp_path / "journal", capacity=1 << 30)
    handed: list[int] = []

    def write_path(entries):  # the write path's steps 3 and 4, as WritePath.apply runs them
        for command, flags, offset, length, payload in entries:
            handed.append(offset)
            kind = {WRITE: RecordKind.WRITE, TRIM: RecordKind.TRIM, WRITE_ZEROES: RecordKind.ZEROES}[command]
            journal.append(kind, 1, offset, length, payload or b"", bool(flags & NO_HOLE))
            os.pwrite(ldev.fd, payload if command == WRITE else bytes(length), offset)
        return [0] * len(entries)

    ldev.gate.set_route(_nbdcore.ROUTE_JOURNAL, journal.core)
    client = connect(ldev, write_batch=write_path)
    writes = [(WRITE, i * 4096, 4096, FUA if i == 5 else 0, bytes([i + 1]) * 4096) for i in range(8)]
    writes += [(TRIM, 0, 4096, 0, b""), (WRITE_ZEROES, 8192, 4096, NO_HOLE, b"")]
    for cookie, (command, offset, length, flags, data) in enumerate(writes):
        client.send(request(command, offset, length, flags, cookie, data))
        assert client.reply().error == 0  # one at a time: each is journaled before the next arrives
    records = journal.read(1, 1 << 30)
    assert [r.seq for r in records] == list(range(1, len(writes) + 1))
    assert [(r.kind, r.offset, r.length, r.data, r.keep_allocated) for r in records] == [
        ({WRITE: RecordKind.WRITE, TRIM: RecordKind.TRIM, WRITE_ZEROES: RecordKind.ZEROES}[command], offset, length,
         data, bool(flags & NO_HOLE))
        for command, offset, length, flags, data in writes
    ]  # fmt: skip
    assert handed == [0, 5 * 4096]  # the first (no segment yet) and the FUA one
    expected = bytearray(SIZE)
    for _, offset, length, _, data in writes:
        expected[offset : offset + length] = data or bytes(length)
    assert ldev.contents() == expected
    client.close()
    journal.close()
    reopened = Journal(tmp_path / "journal", capacity=1 << 30)  # what was synced at close is recovered whole
    assert [r.seq for r in reopened.read(1, 1 << 30)] == list(range(1, len(writes) + 1))
    reopened.close()


def test_a_full_journal_leaves_the_write_to_the_write_path(ldev, tmp_path):
    journal = Journal(tmp_path / "journal", capacity=64 << 10)  # the record of a 64 KiB write does not fit
    handed: list[int] = []

    def write_path(entries):
        handed.extend(offset for _, _, offset, _, _ in entries)
        return [0] * len(entries)

    journal.append(RecordKind.WRITE, 1, 0, 1, b"x")  # a segment to append to
    ldev.gate.set_route(_nbdcore.ROUTE_JOURNAL, journal.core)
    client = connect(ldev, write_batch=write_path)
    client.send(request(WRITE, 0, 100, cookie=1, data=b"a" * 100), request(WRITE, 4096, 65536, cookie=2,
                                                                              data=b"b" * 65536))  # fmt: skip
    assert [client.reply().cookie for _ in range(2)] == [1, 2]
    assert handed == [4096]
    assert [r.seq for r in journal.read(1, 1 << 30)] == [1, 2]
    client.close()
    journal.close()


@settings(max_examples=200)
@given(st.binary(max_size=3000), st.integers(0, 2**32 - 1))
def test_the_native_crc32c_is_the_journal_records_one(data, start):
    assert _nbdcore.crc32c(data) == google_crc32c.value(data)
    assert _nbdcore.crc32c(data, start) == google_crc32c.extend(start, data)
