"""The lag figures on the wire: Unapplied (a pull answer, DescribeUnapplied) and the
times a takeover or a group status reports, nanoseconds <-> Timestamp."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from backend.journal import Unapplied
from ccopy_api import array_pb2 as pb


def stamp(ns: int) -> Timestamp | None:
    """A Timestamp, or None (the field stays unset) for 0: "never" or "none"."""
    if not ns:
        return None
    value = Timestamp()
    value.FromNanoseconds(ns)
    return value


def nanoseconds(message: pb.Unapplied | pb.DataGivenUp, field: str) -> int:
    return getattr(message, field).ToNanoseconds() if message.HasField(field) else 0


def unapplied_message(unapplied: Unapplied) -> pb.Unapplied:
    return pb.Unapplied(
        records=unapplied.records, bytes=unapplied.bytes, newest_seq=unapplied.newest_seq,
        oldest_write=stamp(unapplied.oldest_write_ns), newest_write=stamp(unapplied.newest_write_ns),
        as_of=stamp(unapplied.as_of_ns),
    )  # fmt: skip


def unapplied_from(message: pb.Unapplied) -> Unapplied:
    return Unapplied(
        message.records, message.bytes, message.newest_seq,
        nanoseconds(message, "oldest_write"), nanoseconds(message, "newest_write"), nanoseconds(message, "as_of"),
    )  # fmt: skip
