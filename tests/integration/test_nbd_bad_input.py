"""Bad input on the data path: each case gets the protocol's error or a clean
disconnect, the server keeps serving, and no other LDEV is touched."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct

import pytest

from tests.integration.nbd_raw import (
    BLOCK_STATUS,
    DISC,
    FLUSH,
    IHAVEOPT,
    READ,
    REQUEST_MAGIC,
    TRIM,
    WRITE,
    WRITE_ZEROES,
    RawClient,
    closed_by_server,
    recv_exact,
)

EPERM, EINVAL, ENOSPC = 1, 22, 28
SIZE = 8 << 20
ERR_UNKNOWN, ERR_INVALID = (1 << 31) + 6, (1 << 31) + 3


@pytest.fixture
def victim_and_bystander(make_ldev, array_proc):
    """Two LDEVs; the bystander holds data that no bad request may change."""
    make_ldev("victim", SIZE)
    make_ldev("bystander", SIZE)
    make_ldev("locked", SIZE, read_only=True)
    data = os.urandom(1 << 20)
    client = RawClient(array_proc.nbd_address)
    client.go("bystander")
    assert client.write(0, data) == 0
    client.request(FLUSH)
    assert client.simple_reply()[0] == 0
    client.close()
    yield array_proc
    check = RawClient(array_proc.nbd_address)
    check.go("bystander")
    error, back = check.read(0, 1 << 20)
    assert error == 0 and hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    check.close()


def connected(array_proc, name="victim", **kwargs) -> RawClient:
    client = RawClient(array_proc.nbd_address)
    client.go(name, **kwargs)
    return client


@pytest.mark.parametrize(
    ("command", "offset", "length", "expected"),
    [
        (READ, SIZE - 512, 1024, EINVAL),
        (READ, SIZE, 1, EINVAL),
        (READ, (1 << 64) - 512, 1024, EINVAL),
        (TRIM, SIZE - 512, 1024, EINVAL),
        (WRITE_ZEROES, SIZE, 4096, ENOSPC),
        (READ, 0, (32 << 20) + 1, EINVAL),
        (9, 0, 0, EINVAL),  # RESIZE: never advertised
        (42, 0, 0, EINVAL),  # no such command
        (BLOCK_STATUS, 0, 4096, EINVAL),  # no metadata context negotiated
    ],
)
def test_refused_requests_get_their_errno_and_the_connection_lives(
    victim_and_bystander, command, offset, length, expected
):
    client = connected(victim_and_bystander)
    client.request(command, offset, length, cookie=0xABCDEF)
    error, cookie, _ = client.simple_reply()
    assert (error, cookie) == (expected, 0xABCDEF)
    assert client.read(0, 512) == (0, bytes(512))  # still serving
    client.close()


def test_write_past_the_end_is_enospc(victim_and_bystander):
    client = connected(victim_and_bystander)
    assert client.write(SIZE - 512, b"x" * 1024) == ENOSPC
    assert client.write(SIZE - 512, b"y" * 512) == 0  # the last sector is fine
    assert client.read(SIZE - 512, 512) == (0, b"y" * 512)
    client.close()


def test_unknown_flag_is_einval(victim_and_bystander):
    client = connected(victim_and_bystander)
    client.request(READ, 0, 512, flags=0x4000)
    assert client.simple_reply()[0] == EINVAL
    client.request(WRITE_ZEROES, 0, 512, flags=1 << 4)  # FAST_ZERO: not advertised
    assert client.simple_reply()[0] == EINVAL
    client.close()


def test_read_only_ldev_refuses_writes_with_eperm(victim_and_bystander):
    client = connected(victim_and_bystander, "locked")
    assert client.transmission_flags & 2  # NBD_FLAG_READ_ONLY
    assert client.write(0, b"z" * 512) == EPERM
    for command in (TRIM, WRITE_ZEROES):
        client.request(command, 0, 512)
        assert client.simple_reply()[0] == EPERM
    assert client.read(0, 512) == (0, bytes(512))
    client.close()


def test_oversized_write_gets_einval_then_disconnect(victim_and_bystander):
    client = connected(victim_and_bystander)
    length = (32 << 20) + 512
    client.sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, WRITE, 5, 0, length) + b"\x00" * 4096)
    assert client.simple_reply()[:2] == (EINVAL, 5)
    assert closed_by_server(client.sock)
    client.close()
    assert connected(victim_and_bystander).read(0, 512) == (0, bytes(512))


def test_bad_request_magic_disconnects(victim_and_bystander):
    client = connected(victim_and_bystander)
    client.sock.sendall(b"\xde\xad\xbe\xef" + bytes(24))
    assert closed_by_server(client.sock)
    client.close()


def test_structured_read_error_is_an_error_chunk(victim_and_bystander):
    client = connected(victim_and_bystander, structured=True)
    client.request(READ, SIZE, 512, cookie=3)
    flags, kind, cookie, payload = client.structured_chunk()
    assert (flags & 1, kind, cookie) == (1, (1 << 15) + 1, 3)
    assert struct.unpack(">I", payload[:4])[0] == EINVAL
    client.close()


def test_block_status_past_the_end_is_einval(victim_and_bystander):
    client = connected(victim_and_bystander, structured=True, block_status=True)
    client.request(BLOCK_STATUS, SIZE - 512, 4096, cookie=4)
    _, kind, _, payload = client.structured_chunk()
    assert kind == (1 << 15) + 1 and struct.unpack(">I", payload[:4])[0] == EINVAL
    client.close()


def test_unknown_export_is_err_unknown_then_negotiation_goes_on(victim_and_bystander):
    client = RawClient(victim_and_bystander.nbd_address)
    replies = client.go("no-such-ldev")
    assert replies[-1][1] == ERR_UNKNOWN
    raw = b"victim"
    client.option(7, struct.pack(">I", len(raw)) + raw + struct.pack(">H", 0))
    assert client.replies_until_final()[-1][1] == 1  # ACK
    client.close()


def test_unknown_export_by_export_name_disconnects(victim_and_bystander):
    client = RawClient(victim_and_bystander.nbd_address)
    client.send_flags()
    client.option(1, b"no-such-ldev")
    assert closed_by_server(client.sock)


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack(">I", 0x40),  # unknown client flags
        struct.pack(">I", 3) + struct.pack(">QII", 0x1122334455667788, 7, 0),  # bad option magic
        struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 7, 1 << 31),  # absurd option length
    ],
)
def test_malformed_handshake_disconnects(victim_and_bystander, garbage):
    client = RawClient(victim_and_bystander.nbd_address)
    client.sock.sendall(garbage)
    assert closed_by_server(client.sock)


def test_truncated_handshake_and_vanishing_clients_leave_the_server_serving(victim_and_bystander):
    address = victim_and_bystander.nbd_address
    host, port = address.rsplit(":", 1)
    # Hang up in the middle of the client flags.
    s = socket.create_connection((host, int(port)))
    recv_exact(s, 18)
    s.sendall(b"\x00\x00")
    s.close()
    # Hang up in the middle of an option.
    s = socket.create_connection((host, int(port)))
    recv_exact(s, 18)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 7, 100) + b"abc")
    s.close()
    # Hang up in the middle of a write payload: nothing of it may land.
    client = connected(victim_and_bystander)
    client.sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, WRITE, 9, 0, 1 << 20) + b"\xff" * 1000)
    client.close()
    # Hang up with requests in flight and their replies unread.
    client = connected(victim_and_bystander)
    for i in range(32):
        client.request(READ, 0, 1 << 20, cookie=i)
    client.request(FLUSH, cookie=99)
    client.sock.shutdown(socket.SHUT_RDWR)
    client.close()
    after = connected(victim_and_bystander)
    assert after.read(0, 1000) == (0, bytes(1000))
    after.request(DISC)
    assert closed_by_server(after.sock)


def test_handshake_timeout_disconnects_idle_clients(tmp_path):
    from ccopy.launch import ArrayProcessHandle

    handle = ArrayProcessHandle(
        pool=tmp_path / "p", serial=3, log_path=tmp_path / "log", extra_args=["--handshake-timeout", "0.5"]
    ).start()
    try:
        client = RawClient(handle.nbd_address)
        assert closed_by_server(client.sock)
    finally:
        handle.stop()


def test_random_garbage_after_the_handshake_never_hurts_the_server(victim_and_bystander):
    """Fuzz the live server: each connection sends a valid handshake, then noise."""
    import random

    rng = random.Random(1234)
    for _ in range(60):
        client = connected(victim_and_bystander)
        noise = bytearray(rng.randbytes(rng.randrange(1, 600)))
        if rng.random() < 0.5:  # often start with a valid magic so the header parser goes deeper
            noise[:4] = struct.pack(">I", REQUEST_MAGIC)
            noise[6:8] = struct.pack(">H", rng.choice([READ, WRITE, TRIM, WRITE_ZEROES, BLOCK_STATUS, 5, 8, 99]))
        client.sock.sendall(bytes(noise))
        client.sock.settimeout(0.2)
        with contextlib.suppress(TimeoutError, ConnectionError):
            client.sock.recv(1 << 16)
        client.close()
    survivor = connected(victim_and_bystander)
    assert survivor.write(0, b"alive" * 100) == 0
    assert survivor.read(0, 500) == (0, b"alive" * 100)
    survivor.close()
