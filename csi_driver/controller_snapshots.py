"""Snapshot RPCs of the CSI Controller service, on array CoW snapshots.

A mixin of ControllerServicer (one gRPC service, two modules): it uses the
servicer's array client, configuration, locks and volume lookups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from ccopy_api import array_pb2 as pb
from ccopy_api import csi_pb2 as csi
from ccopy_common import ids
from ccopy_common.errors import Aborted, InvalidArgument, NotFound
from csi_driver.volumes import LABEL_PREFIX, check_name, ldev_name, parse_parameters

if TYPE_CHECKING:
    from ccopy_common.array_client import ArrayClient
    from csi_driver.config import CsiConfig

SNAPSHOT_NAME_LABEL = LABEL_PREFIX + "snapshot-name"


class SnapshotRpcs:
    array: ArrayClient
    config: CsiConfig

    # -- helpers ---------------------------------------------------------------
    def find_snapshot(self, snapshot_id: str) -> pb.Snapshot | None:
        parsed = ids.parse(snapshot_id, "snapshot", self.array.serial)
        if parsed is None:
            return None
        return self.array.maybe("GetSnapshot", pb.GetSnapshotRequest(id=parsed.number))

    def snapshot(self, snapshot_id: str) -> pb.Snapshot:
        snapshot = self.find_snapshot(snapshot_id)
        if snapshot is None:
            raise NotFound(f"snapshot {snapshot_id!r} does not exist")
        return snapshot

    def snapshot_message(self, snapshot: pb.Snapshot) -> csi.Snapshot:
        message = csi.Snapshot(
            size_bytes=snapshot.size_bytes,
            snapshot_id=ids.snapshot_id(self.array.serial, snapshot.id),
            source_volume_id=ids.volume_id(self.array.serial, snapshot.ldev_id),
            creation_time=snapshot.created_at,
            ready_to_use=snapshot.ready,
        )
        if snapshot.group_id:
            message.group_snapshot_id = ids.group_id(self.array.serial, snapshot.group_id)
        return message

    # -- RPCs --------------------------------------------------------------------
    def CreateSnapshot(
        self, request: csi.CreateSnapshotRequest, context: grpc.ServicerContext
    ) -> csi.CreateSnapshotResponse:
        check_name(request.name)
        if not request.source_volume_id:
            raise InvalidArgument("source_volume_id is required")
        labels = parse_parameters(request.parameters)  # csi-snapshotter's --extra-create-metadata keys
        with self.locks.hold(("snapshot", request.name)):  # type: ignore[attr-defined]
            ldev = self.volume(request.source_volume_id)  # type: ignore[attr-defined]
            snapshot = self.array.call(
                "CreateSnapshot",
                pb.CreateSnapshotRequest(
                    name=ldev_name(request.name), ldev_id=ldev.id, labels=labels | {SNAPSHOT_NAME_LABEL: request.name}
                ),
            )
        return csi.CreateSnapshotResponse(snapshot=self.snapshot_message(snapshot))

    def DeleteSnapshot(
        self, request: csi.DeleteSnapshotRequest, context: grpc.ServicerContext
    ) -> csi.DeleteSnapshotResponse:
        if not request.snapshot_id:
            raise InvalidArgument("snapshot_id is required")
        with self.locks.hold(("snapshot-id", request.snapshot_id)):  # type: ignore[attr-defined]
            snapshot = self.find_snapshot(request.snapshot_id)
            if snapshot is not None:  # deleting what is gone succeeds
                self.array.call("DeleteSnapshot", pb.DeleteSnapshotRequest(id=snapshot.id))
        return csi.DeleteSnapshotResponse()

    def GetSnapshot(self, request: csi.GetSnapshotRequest, context: grpc.ServicerContext) -> csi.GetSnapshotResponse:
        if not request.snapshot_id:
            raise InvalidArgument("snapshot_id is required")
        return csi.GetSnapshotResponse(snapshot=self.snapshot_message(self.snapshot(request.snapshot_id)))

    def ListSnapshots(
        self, request: csi.ListSnapshotsRequest, context: grpc.ServicerContext
    ) -> csi.ListSnapshotsResponse:
        if request.max_entries < 0:
            raise InvalidArgument("max_entries cannot be negative")
        if request.snapshot_id:
            snapshot = self.find_snapshot(request.snapshot_id)
            matches = snapshot is not None and (
                not request.source_volume_id
                or self.snapshot_message(snapshot).source_volume_id == request.source_volume_id
            )
            entries = [csi.ListSnapshotsResponse.Entry(snapshot=self.snapshot_message(snapshot))] if matches else []
            return csi.ListSnapshotsResponse(entries=entries)
        ldev_id = 0
        if request.source_volume_id:
            ldev = self.find_volume(request.source_volume_id)  # type: ignore[attr-defined]
            if ldev is None:
                return csi.ListSnapshotsResponse()
            ldev_id = ldev.id
        listing = pb.ListSnapshotsRequest(
            ldev_id=ldev_id, page_size=min(request.max_entries or 1000, 1000), page_token=request.starting_token
        )
        try:
            page = self.array.call("ListSnapshots", listing)
        except InvalidArgument as exc:
            raise Aborted(f"starting_token {request.starting_token!r} is not valid") from exc
        entries = [csi.ListSnapshotsResponse.Entry(snapshot=self.snapshot_message(s)) for s in page.snapshots]
        return csi.ListSnapshotsResponse(entries=entries, next_token=page.next_page_token)
