"""A deliberately small, hand-rolled NBD client for sending what real clients never
send. It encodes from the protocol document directly (not from our server's
code), so a mistake on one side is not mirrored on the other."""

from __future__ import annotations

import socket
import struct

IHAVEOPT = 0x49484156454F5054
NBDMAGIC = 0x4E42444D41474943
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE = 0x67446698
STRUCTURED = 0x668E33EF
OPT_GO, OPT_STRUCTURED, OPT_SET_META = 7, 8, 10
REP_ACK, REP_INFO, REP_META = 1, 3, 4
READ, WRITE, DISC, FLUSH, TRIM, WRITE_ZEROES, BLOCK_STATUS = 0, 1, 2, 3, 4, 6, 7


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"server closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def closed_by_server(sock: socket.socket, timeout: float = 30.0) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class RawClient:
    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        magic, opt, flags = struct.unpack(">QQH", recv_exact(self.sock, 18))
        assert (magic, opt) == (NBDMAGIC, IHAVEOPT)
        self.handshake_flags = flags
        self.size = 0
        self.transmission_flags = 0
        self.context_id: int | None = None

    def close(self) -> None:
        self.sock.close()

    def disconnect(self) -> None:
        """NBD_CMD_DISC, then wait for the server's close: the export is released by then."""
        self.request(DISC)
        assert closed_by_server(self.sock), "the server did not close after NBD_CMD_DISC"
        self.sock.close()

    def send_flags(self, flags: int = 3) -> None:
        self.sock.sendall(struct.pack(">I", flags))

    def option(self, opt: int, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def option_reply(self) -> tuple[int, int, bytes]:
        magic, opt, kind, length = struct.unpack(">QIII", recv_exact(self.sock, 20))
        assert magic == REPLY_MAGIC
        return opt, kind, recv_exact(self.sock, length)

    def replies_until_final(self) -> list[tuple[int, int, bytes]]:
        out = []
        while True:
            reply = self.option_reply()
            out.append(reply)
            if reply[1] == REP_ACK or reply[1] & 0x80000000:
                return out

    def go(self, name: str, structured: bool = False, block_status: bool = False) -> list[tuple[int, int, bytes]]:
        self.send_flags()
        if structured:
            self.option(OPT_STRUCTURED)
            assert self.option_reply()[1] == REP_ACK
        if block_status:
            query = b"base:allocation"
            raw = name.encode()
            self.option(
                OPT_SET_META,
                struct.pack(">I", len(raw)) + raw + struct.pack(">II", 1, len(query)) + query,
            )
            for _, kind, data in self.replies_until_final():
                if kind == REP_META:
                    self.context_id = struct.unpack(">I", data[:4])[0]
        raw = name.encode()
        self.option(OPT_GO, struct.pack(">I", len(raw)) + raw + struct.pack(">H", 0))
        replies = self.replies_until_final()
        for _, kind, data in replies:
            if kind == REP_INFO and struct.unpack(">H", data[:2])[0] == 0:
                _, self.size, self.transmission_flags = struct.unpack(">HQH", data)
        return replies

    def request(self, command: int, offset: int = 0, length: int = 0, flags: int = 0, cookie: int = 1) -> None:
        self.sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, command, cookie, offset, length))

    def simple_reply(self, expect_data: int = 0) -> tuple[int, int, bytes]:
        magic, error, cookie = struct.unpack(">IIQ", recv_exact(self.sock, 16))
        assert magic == SIMPLE, hex(magic)
        data = recv_exact(self.sock, expect_data) if expect_data and error == 0 else b""
        return error, cookie, data

    def structured_chunk(self) -> tuple[int, int, int, bytes]:
        magic, flags, kind, cookie, length = struct.unpack(">IHHQI", recv_exact(self.sock, 20))
        assert magic == STRUCTURED, hex(magic)
        return flags, kind, cookie, recv_exact(self.sock, length)

    def write(self, offset: int, data: bytes, flags: int = 0, cookie: int = 1) -> int:
        self.sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, WRITE, cookie, offset, len(data)) + data)
        return self.simple_reply()[0]

    def read(self, offset: int, length: int, cookie: int = 1) -> tuple[int, bytes]:
        self.request(READ, offset, length, cookie=cookie)
        error, _, data = self.simple_reply(length)
        return error, data
