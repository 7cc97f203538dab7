"""Journal records: the unit of asynchronous remote copy, as pure encode/decode.

One record per host write to a P-VOL, in the order the array acknowledged
them (the sequence number). Layout, big-endian, after LevelDB's log and
etcd's WAL in spirit (typed, checksummed, a torn tail is detectable):

    magic "CCJ1" | kind u8 | flags u8 | reserved u16 | seq u64 | ldev u32 |
    offset u64 | length u32 | timestamp_ns u64 | crc32c u32 | payload

The CRC32C covers the header before it and the payload. TRIM and
WRITE_ZEROES records carry no payload. `decode` tells a record cut short
(Torn: wait for or discard the tail) from one that is damaged (Corrupt).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import google_crc32c

MAGIC = b"CCJ1"
_HEAD = struct.Struct(">4sBBHQIQIQ")
_CRC = struct.Struct(">I")
HEADER_BYTES = _HEAD.size + _CRC.size
FLAG_KEEP_ALLOCATED = 1


class RecordKind(IntEnum):
    WRITE = 1
    TRIM = 2
    ZEROES = 3


@dataclass(frozen=True)
class JournalRecord:
    seq: int
    kind: RecordKind
    ldev_id: int
    offset: int
    length: int
    timestamp_ns: int
    data: bytes = b""
    keep_allocated: bool = False

    @property
    def encoded_size(self) -> int:
        return HEADER_BYTES + len(self.data)


class Torn(Exception):
    """The buffer ends inside a record."""


class Corrupt(Exception):
    """The bytes are not a valid record (bad magic, kind, length or checksum)."""


def encode(record: JournalRecord) -> bytes:
    header = pack_header(
        record.seq, record.kind, record.ldev_id, record.offset, record.length, record.timestamp_ns,
        record.keep_allocated, record.data,
    )  # fmt: skip
    return header + record.data


def pack_header(
    seq: int,
    kind: RecordKind,
    ldev_id: int,
    offset: int,
    length: int,
    timestamp_ns: int,
    keep_allocated: bool,
    data: bytes | memoryview,
) -> bytes:
    """The header (with the CRC over it and `data`) of a record whose payload is `data`.

    Separate from the payload so the journal writes both with one pwritev,
    without copying a host write's payload into a new buffer first; from the
    fields, so a journaled host write makes no JournalRecord first (a frozen
    dataclass costs the write path microseconds).
    """
    if kind is RecordKind.WRITE and len(data) != length:
        raise ValueError("a WRITE record carries exactly `length` bytes")
    if kind is not RecordKind.WRITE and len(data):
        raise ValueError("only WRITE records carry a payload")
    flags = FLAG_KEEP_ALLOCATED if keep_allocated else 0
    head = _HEAD.pack(MAGIC, kind, flags, 0, seq, ldev_id, offset, length, timestamp_ns)
    readonly = data if isinstance(data, bytes) else bytes(data)  # google_crc32c takes read-only buffers only
    return head + _CRC.pack(google_crc32c.extend(google_crc32c.value(head), readonly))


def decode(buffer: bytes | memoryview, pos: int = 0) -> tuple[JournalRecord, int]:
    """The record at `pos` and the position after it."""
    view = memoryview(buffer)
    if len(view) - pos < HEADER_BYTES:
        raise Torn(f"{len(view) - pos} bytes left, a header needs {HEADER_BYTES}")
    magic, kind, flags, _, seq, ldev_id, offset, length, stamp = _HEAD.unpack_from(view, pos)
    if magic != MAGIC:
        raise Corrupt(f"bad magic {bytes(magic)!r} at {pos}")
    try:
        record_kind = RecordKind(kind)
    except ValueError as exc:
        raise Corrupt(f"unknown record kind {kind} at {pos}") from exc
    payload = length if record_kind is RecordKind.WRITE else 0
    end = pos + HEADER_BYTES + payload
    if end > len(view):
        raise Torn(f"record {seq} needs {end - pos} bytes, {len(view) - pos} present")
    (crc,) = _CRC.unpack_from(view, pos + _HEAD.size)
    data = bytes(view[pos + HEADER_BYTES : end])
    if google_crc32c.extend(google_crc32c.value(bytes(view[pos : pos + _HEAD.size])), data) != crc:
        raise Corrupt(f"checksum mismatch in record {seq} at {pos}")
    record = JournalRecord(
        seq, record_kind, ldev_id, offset, length, stamp, data, keep_allocated=bool(flags & FLAG_KEEP_ALLOCATED)
    )
    return record, end


def decode_all(buffer: bytes | memoryview) -> list[JournalRecord]:
    """Every record of a buffer of whole records (a journal batch); raises Torn or Corrupt."""
    records, pos = [], 0
    while pos < len(buffer):
        record, pos = decode(buffer, pos)
        records.append(record)
    return records
