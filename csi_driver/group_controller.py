"""CSI GroupController service: VolumeGroupSnapshots are array snapshot groups,
taken at one instant behind the array's write barrier (crash-consistent)."""

from __future__ import annotations

import grpc

from ccopy_api import array_pb2 as pb
from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from ccopy_common import ids
from ccopy_common.array_client import ArrayClient
from ccopy_common.errors import Aborted, InvalidArgument, NotFound
from ccopy_common.locks import KeyLocks
from csi_driver.config import CsiConfig
from csi_driver.controller import ControllerServicer
from csi_driver.volumes import check_name, ldev_name, parse_parameters

RPC = csi.GroupControllerServiceCapability.RPC


class GroupControllerServicer(csi_grpc.GroupControllerServicer):
    def __init__(self, config: CsiConfig, array: ArrayClient, controller: ControllerServicer) -> None:
        self.config = config
        self.array = array
        self.controller = controller
        self.locks = KeyLocks("group snapshot", Aborted)

    def group_message(self, group: pb.SnapshotGroup) -> csi.VolumeGroupSnapshot:
        return csi.VolumeGroupSnapshot(
            group_snapshot_id=ids.group_id(self.array.serial, group.id),
            snapshots=[self.controller.snapshot_message(s) for s in group.snapshots],
            creation_time=group.created_at,
            ready_to_use=all(s.ready for s in group.snapshots),
        )

    def find_group(self, group_snapshot_id: str) -> pb.SnapshotGroup | None:
        parsed = ids.parse(group_snapshot_id, "group", self.array.serial)
        if parsed is None:
            return None
        return self.array.maybe("GetSnapshotGroup", pb.GetSnapshotGroupRequest(id=parsed.number))

    def check_members(self, group: pb.SnapshotGroup, snapshot_ids: list[str]) -> None:
        if snapshot_ids:
            members = {self.controller.snapshot_message(s).snapshot_id for s in group.snapshots}
            if set(snapshot_ids) != members:
                raise InvalidArgument("snapshot_ids do not match the members of the group snapshot")

    def GroupControllerGetCapabilities(
        self, request: csi.GroupControllerGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi.GroupControllerGetCapabilitiesResponse:
        capability = csi.GroupControllerServiceCapability(rpc=RPC(type=RPC.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT))
        return csi.GroupControllerGetCapabilitiesResponse(capabilities=[capability])

    def CreateVolumeGroupSnapshot(
        self, request: csi.CreateVolumeGroupSnapshotRequest, context: grpc.ServicerContext
    ) -> csi.CreateVolumeGroupSnapshotResponse:
        check_name(request.name)
        if not request.source_volume_ids:
            raise InvalidArgument("source_volume_ids is required")
        labels = parse_parameters(request.parameters)  # csi-snapshotter's --extra-create-metadata keys
        with self.locks.hold(request.name):
            ldev_ids = [self.controller.volume(v).id for v in request.source_volume_ids]
            group = self.array.call(
                "CreateSnapshotGroup",
                pb.CreateSnapshotGroupRequest(name=ldev_name(request.name), ldev_ids=ldev_ids, labels=labels),
            )
        return csi.CreateVolumeGroupSnapshotResponse(group_snapshot=self.group_message(group))

    def DeleteVolumeGroupSnapshot(
        self, request: csi.DeleteVolumeGroupSnapshotRequest, context: grpc.ServicerContext
    ) -> csi.DeleteVolumeGroupSnapshotResponse:
        if not request.group_snapshot_id:
            raise InvalidArgument("group_snapshot_id is required")
        with self.locks.hold(request.group_snapshot_id):
            group = self.find_group(request.group_snapshot_id)
            if group is not None:  # deleting what is gone succeeds
                self.check_members(group, list(request.snapshot_ids))
                self.array.call("DeleteSnapshotGroup", pb.DeleteSnapshotGroupRequest(id=group.id))
        return csi.DeleteVolumeGroupSnapshotResponse()

    def GetVolumeGroupSnapshot(
        self, request: csi.GetVolumeGroupSnapshotRequest, context: grpc.ServicerContext
    ) -> csi.GetVolumeGroupSnapshotResponse:
        if not request.group_snapshot_id:
            raise InvalidArgument("group_snapshot_id is required")
        group = self.find_group(request.group_snapshot_id)
        if group is None:
            raise NotFound(f"group snapshot {request.group_snapshot_id!r} does not exist")
        self.check_members(group, list(request.snapshot_ids))
        return csi.GetVolumeGroupSnapshotResponse(group_snapshot=self.group_message(group))
