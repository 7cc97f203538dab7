"""csi-addons volume group service: one volume group = one journal group.

The manager calls CreateVolumeGroup once per VolumeGroupReplication (again with
the same name if it could not store the answer), then
ModifyVolumeGroupMembership with the whole sorted membership on every
reconcile, and at the end ModifyVolumeGroupMembership([]) and
DeleteVolumeGroup. All of them are idempotent here. What membership means on
each side is in `journal_groups`.
"""

from __future__ import annotations

import grpc

from ccopy_api import array_pb2 as pb
from ccopy_api import csi_pb2 as csi
from ccopy_api.csiaddons import volumegroup_pb2 as vg
from ccopy_api.csiaddons import volumegroup_pb2_grpc as vg_grpc
from ccopy_common.errors import Aborted, InvalidArgument
from replication_sidecar.decisions import BACKUP
from replication_sidecar.journal_groups import JournalGroups
from replication_sidecar.parameters import parse_parameters
from replication_sidecar.replication import SINGLE_PREFIX


class VolumeGroupServicer(vg_grpc.ControllerServicer):
    def __init__(self, groups: JournalGroups) -> None:
        self.groups = groups

    def CreateVolumeGroup(
        self, request: vg.CreateVolumeGroupRequest, context: grpc.ServicerContext
    ) -> vg.CreateVolumeGroupResponse:
        if not request.name:
            raise InvalidArgument("name is required")
        if request.name.startswith(SINGLE_PREFIX):
            raise InvalidArgument(f"names starting with {SINGLE_PREFIX!r} are kept for volumes replicated alone")
        parameters = parse_parameters(request.parameters)
        ldevs = [self.groups.volume(v) for v in request.volume_ids]
        with self.groups.locks.hold(request.name):
            group = self.groups.backup_group_of(ldevs)
            if group is None:  # the main side: the group is ours to make, its volumes ours to pair
                group = self.groups.create_with(request.name, parameters, ldevs)
        return vg.CreateVolumeGroupResponse(volume_group=self.message(group))

    def ModifyVolumeGroupMembership(
        self, request: vg.ModifyVolumeGroupMembershipRequest, context: grpc.ServicerContext
    ) -> vg.ModifyVolumeGroupMembershipResponse:
        parse_parameters(request.parameters)
        name = self.groups.get(request.volume_group_id).name
        ldevs = [self.groups.volume(v) for v in request.volume_ids]
        with self.groups.locks.hold(name):
            group = self.groups.must(name)  # as it is now, under the lock
            if group.role == BACKUP:
                self.groups.check_backup_members(group, ldevs)
            else:
                group = self.groups.set_members(group, ldevs)
        return vg.ModifyVolumeGroupMembershipResponse(volume_group=self.message(group))

    def DeleteVolumeGroup(
        self, request: vg.DeleteVolumeGroupRequest, context: grpc.ServicerContext
    ) -> vg.DeleteVolumeGroupResponse:
        name = self.groups.name_of(request.volume_group_id)
        with self.groups.locks.hold(name):
            group = self.groups.find(name)
            if group is not None:  # gone already: success
                self.groups.delete(group)
        return vg.DeleteVolumeGroupResponse()

    def ListVolumeGroups(
        self, request: vg.ListVolumeGroupsRequest, context: grpc.ServicerContext
    ) -> vg.ListVolumeGroupsResponse:
        if request.max_entries < 0:
            raise InvalidArgument("max_entries must not be negative")
        groups = self.groups.all()
        start = 0
        if request.starting_token:
            if not request.starting_token.isdigit() or int(request.starting_token) > len(groups):
                raise Aborted(f"starting_token {request.starting_token!r} is not valid (the list changed?)")
            start = int(request.starting_token)
        end = len(groups) if request.max_entries == 0 else min(len(groups), start + request.max_entries)
        entries = [vg.ListVolumeGroupsResponse.Entry(volume_group=self.message(g)) for g in groups[start:end]]
        return vg.ListVolumeGroupsResponse(entries=entries, next_token=str(end) if end < len(groups) else "")

    def ControllerGetVolumeGroup(
        self, request: vg.ControllerGetVolumeGroupRequest, context: grpc.ServicerContext
    ) -> vg.ControllerGetVolumeGroupResponse:
        return vg.ControllerGetVolumeGroupResponse(volume_group=self.message(self.groups.get(request.volume_group_id)))

    def message(self, group: pb.JournalGroup) -> vg.VolumeGroup:
        volumes = []
        for pair in sorted(group.pairs, key=lambda p: p.local_ldev_id):
            ldev = self.groups.array.call("GetLdev", pb.GetLdevRequest(id=pair.local_ldev_id))
            volumes.append(csi.Volume(volume_id=self.groups.volume_id(ldev.id), capacity_bytes=ldev.size_bytes))
        return vg.VolumeGroup(
            volume_group_id=self.groups.group_id(group),
            volume_group_context={"journalGroup": group.name, "role": group.role},
            volumes=volumes,
        )
