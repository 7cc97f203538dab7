"""Domain records -> ccopy.array.v1 messages, and opaque page tokens."""

from __future__ import annotations

import base64

from google.protobuf.timestamp_pb2 import Timestamp

from backend import errors
from backend.array import Array
from backend.model import (
    HostRecord,
    LdevRecord,
    LdevState,
    Publication,
    SnapshotGroupRecord,
    SnapshotRecord,
    SnapshotState,
)
from backend.sessions import SNAPSHOT_EXPORT_PREFIX
from ccopy_api import array_pb2 as pb
from ccopy_common.ldev_id import format_ldev_id

_STATES = {
    LdevState.CREATING: pb.LDEV_STATE_CREATING,
    LdevState.NORMAL: pb.LDEV_STATE_NORMAL,
    LdevState.DELETING: pb.LDEV_STATE_DELETING,
    LdevState.COPYING: pb.LDEV_STATE_COPYING,
}


def timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def encode_page_token(kind: str, last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{last_id}".encode()).decode()


def decode_page_token(kind: str, token: str) -> int:
    """The last id of the previous page (-1 for the first page)."""
    if not token:
        return -1
    try:
        got, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if got == kind and value.isdigit():
            return int(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise errors.InvalidArgument(f"page_token {token!r} was not issued for this listing")


def ldev_message(array: Array, record: LdevRecord) -> pb.Ldev:
    message = pb.Ldev(
        id=record.id,
        display_id=format_ldev_id(record.id),
        name=record.name,
        size_bytes=record.size,
        allocated_bytes=array.allocated_bytes(record.id),
        state=_STATES[record.state],
        labels=dict(record.labels),
        read_only=record.read_only,
        export_name=array.export_by_name(record),
        open_sessions=array.runtimes.open_sessions(record.id),
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
        chunk_size_bytes=record.chunk_size,
        snapshot_count=len(array.store.list_snapshots(ldev_id=record.id)),
        snapshot_bytes=array.snapshot_bytes(record.id),
        open_to_all=record.open_to_all,
        max_iops=record.max_iops,
        max_mbps=record.max_mbps,
        published_hosts=[p.host_id for p in array.publications(record.id)],
    )
    progress = array.cloner.progress(record.id)
    if record.state is LdevState.COPYING and progress is not None:
        message.copy_progress.CopyFrom(
            pb.CopyProgress(total_bytes=progress.total_bytes, copied_bytes=progress.copied_bytes)
        )
    return message


def host_message(host: HostRecord) -> pb.Host:
    return pb.Host(host_id=host.host_id, max_volumes=host.max_volumes, published_ldevs=host.published_ldevs)


def publication_message(array: Array, publication: Publication) -> pb.Publication:
    return pb.Publication(
        ldev_id=publication.ldev_id,
        host_id=publication.host_id,
        read_only=publication.read_only,
        export_name=array.publication_export(publication),
        created_at=timestamp(publication.created_at),
        max_size_bytes=publication.max_size,
    )


def snapshot_message(snapshot: SnapshotRecord) -> pb.Snapshot:
    return pb.Snapshot(
        id=snapshot.id,
        name=snapshot.name,
        ldev_id=snapshot.ldev_id,
        ldev_display_id=format_ldev_id(snapshot.ldev_id),
        group_id=snapshot.group_id or 0,
        size_bytes=snapshot.size,
        ready=snapshot.state is SnapshotState.NORMAL,
        export_name=SNAPSHOT_EXPORT_PREFIX + snapshot.name,
        labels=dict(snapshot.labels),
        created_at=timestamp(snapshot.created_at),
    )


def group_message(group: SnapshotGroupRecord, members: list[SnapshotRecord]) -> pb.SnapshotGroup:
    return pb.SnapshotGroup(
        id=group.id,
        name=group.name,
        snapshots=[snapshot_message(s) for s in members],
        stall_micros=group.stall_micros,
        labels=dict(group.labels),
        created_at=timestamp(group.created_at),
    )
