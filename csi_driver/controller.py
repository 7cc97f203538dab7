"""CSI Controller service: volumes are array LDEVs, publishing is array host access.

Each handler validates the request (csi_driver.volumes), translates it into
array calls and back; concurrent calls on one volume or name answer ABORTED.
CSI-made LDEVs require publication, so a node reaches a volume over NBD only
while ControllerPublishVolume has granted it, and unpublishing fences it.
"""

from __future__ import annotations

import grpc

from ccopy_api import array_pb2 as pb
from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from ccopy_common import ids
from ccopy_common.array_client import ArrayClient
from ccopy_common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
)
from ccopy_common.locks import KeyLocks
from csi_driver.config import CsiConfig
from csi_driver.controller_snapshots import SnapshotRpcs
from csi_driver.volumes import (
    LABEL_PREFIX,
    READ_ONLY_MODES,
    SINGLE_NODE_MODES,
    TOPOLOGY_KEY,
    capability_labels,
    capability_problem,
    check_capabilities,
    check_name,
    file_system_floor,
    fits,
    ldev_name,
    parse_mutable,
    parse_parameters,
    topology_allows,
    volume_size,
)

RPC = csi.ControllerServiceCapability.RPC
CLONE_WAIT = 120.0
# Nodes are told a volume's NBD export is at least this big, so they can grow
# it in place (NodeExpandVolume) after ControllerExpandVolume; see attach.grow.
GROWTH_HEADROOM = 16 << 40
NAME_LABEL = LABEL_PREFIX + "name"
DRIVER_LABEL = LABEL_PREFIX + "driver"
SOURCE_LABEL = LABEL_PREFIX + "source"
ALL_CAPABILITIES = [
    RPC.CREATE_DELETE_VOLUME,
    RPC.PUBLISH_UNPUBLISH_VOLUME,
    RPC.LIST_VOLUMES,
    RPC.GET_CAPACITY,
    RPC.CREATE_DELETE_SNAPSHOT,
    RPC.LIST_SNAPSHOTS,
    RPC.CLONE_VOLUME,
    RPC.PUBLISH_READONLY,
    RPC.EXPAND_VOLUME,
    RPC.LIST_VOLUMES_PUBLISHED_NODES,
    RPC.VOLUME_CONDITION,
    RPC.GET_VOLUME,
    RPC.SINGLE_NODE_MULTI_WRITER,
    RPC.MODIFY_VOLUME,
    RPC.GET_SNAPSHOT,
]


class ControllerServicer(SnapshotRpcs, csi_grpc.ControllerServicer):
    def __init__(self, config: CsiConfig, array: ArrayClient) -> None:
        self.config = config
        self.array = array
        self.locks = KeyLocks("volume", Aborted)

    # -- helpers -------------------------------------------------------------------
    def volume_id(self, ldev: pb.Ldev) -> str:
        return ids.volume_id(self.array.serial, ldev.id)

    def find_volume(self, volume_id: str) -> pb.Ldev | None:
        """The LDEV behind a volume id of ours, or None (unknown or not ours)."""
        parsed = ids.parse(volume_id, "volume", self.array.serial)
        if parsed is None or parsed.number > 0xFFFFFF:
            return None
        ldev = self.array.maybe("GetLdev", pb.GetLdevRequest(id=parsed.number))
        if ldev is None or ldev.labels.get(DRIVER_LABEL) != self.config.driver_name:
            return None
        return ldev

    def volume(self, volume_id: str) -> pb.Ldev:
        ldev = self.find_volume(volume_id)
        if ldev is None:
            raise NotFound(f"volume {volume_id!r} does not exist")
        return ldev

    def topology(self) -> list[csi.Topology]:
        return [csi.Topology(segments={TOPOLOGY_KEY: self.config.site})]

    def volume_message(self, ldev: pb.Ldev) -> csi.Volume:
        volume = csi.Volume(
            capacity_bytes=ldev.size_bytes,
            volume_id=self.volume_id(ldev),
            volume_context={"ldev": ldev.display_id},
            accessible_topology=self.topology(),
        )
        source = ldev.labels.get(SOURCE_LABEL, "")
        kind, _, source_id = source.partition(":")
        if kind == "snapshot":
            volume.content_source.snapshot.snapshot_id = source_id
        elif kind == "volume":
            volume.content_source.volume.volume_id = source_id
        return volume

    def condition(self, ldev: pb.Ldev) -> csi.VolumeCondition:
        if ldev.state != pb.LDEV_STATE_NORMAL:
            return csi.VolumeCondition(
                abnormal=True, message=f"LDEV {ldev.display_id} is {pb.LdevState.Name(ldev.state)}"
            )
        return csi.VolumeCondition(abnormal=False, message="LDEV is NORMAL")

    # -- CreateVolume / DeleteVolume -------------------------------------------------
    def CreateVolume(self, request: csi.CreateVolumeRequest, context: grpc.ServicerContext) -> csi.CreateVolumeResponse:
        check_name(request.name)
        check_capabilities(request.volume_capabilities)
        labels = parse_parameters(request.parameters)
        qos = parse_mutable(request.mutable_parameters)
        requirement = request.accessibility_requirements if request.HasField("accessibility_requirements") else None
        if not topology_allows(requirement, self.config.site):
            raise ResourceExhausted(f"this plugin provisions at site {self.config.site!r} only")
        capacity = request.capacity_range if request.HasField("capacity_range") else None
        source, source_label, floor = self.content_source(request)
        fs_floor = file_system_floor(request.volume_capabilities)
        size = volume_size(capacity, max(floor, fs_floor), "the file system" if fs_floor > floor else "the source")
        name = ldev_name(request.name)
        labels |= {NAME_LABEL: request.name, DRIVER_LABEL: self.config.driver_name, SOURCE_LABEL: source_label}
        labels |= capability_labels(request.volume_capabilities)
        with self.locks.hold(("name", name)):
            existing = self.array.maybe("GetLdev", pb.GetLdevRequest(name=name))
            if existing is not None:
                return csi.CreateVolumeResponse(volume=self.same_volume(existing, request, capacity, source_label))
            if source is None:
                ldev = self.array.call(
                    "CreateLdev",
                    pb.CreateLdevRequest(
                        name=name, size_bytes=size, labels=labels,
                        max_iops=qos.max_iops, max_mbps=qos.max_mbps,
                    ),
                )  # fmt: skip
            else:
                clone = pb.CloneLdevRequest(
                    name=name, size_bytes=size, labels=labels,
                    max_iops=qos.max_iops, max_mbps=qos.max_mbps, **source,
                )  # fmt: skip
                ldev = self.array.call("CloneLdev", clone)
                ldev = self.array.wait_normal(ldev.id, CLONE_WAIT)
        return csi.CreateVolumeResponse(volume=self.volume_message(ldev))

    def content_source(self, request: csi.CreateVolumeRequest) -> tuple[dict | None, str, int]:
        """(clone source for the array, label recording it, smallest size it needs)."""
        if not request.HasField("volume_content_source"):
            return None, "", 0
        source = request.volume_content_source
        kind = source.WhichOneof("type")
        if kind == "snapshot":
            snapshot = self.snapshot(source.snapshot.snapshot_id)
            return {"snapshot_id": snapshot.id}, f"snapshot:{source.snapshot.snapshot_id}", snapshot.size_bytes
        if kind == "volume":
            ldev = self.volume(source.volume.volume_id)
            return {"ldev_id": ldev.id}, f"volume:{source.volume.volume_id}", ldev.size_bytes
        raise InvalidArgument("volume_content_source needs a snapshot or a volume")

    def same_volume(
        self, ldev: pb.Ldev, request: csi.CreateVolumeRequest, capacity: csi.CapacityRange | None, source: str
    ) -> csi.Volume:
        """A repeated CreateVolume: the existing volume if compatible, else ALREADY_EXISTS."""
        if ldev.labels.get(NAME_LABEL) != request.name or ldev.labels.get(DRIVER_LABEL) != self.config.driver_name:
            raise AlreadyExists(f"LDEV {ldev.name!r} exists and is not volume {request.name!r}")
        if not fits(ldev.size_bytes, capacity):
            raise AlreadyExists(f"volume {request.name!r} exists with {ldev.size_bytes} bytes, outside the range asked")
        if ldev.labels.get(SOURCE_LABEL, "") != source:
            raise AlreadyExists(f"volume {request.name!r} exists with another content source")
        if ldev.state == pb.LDEV_STATE_COPYING:
            ldev = self.array.wait_normal(ldev.id, CLONE_WAIT)
        return self.volume_message(ldev)

    def DeleteVolume(self, request: csi.DeleteVolumeRequest, context: grpc.ServicerContext) -> csi.DeleteVolumeResponse:
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        with self.locks.hold(("volume", request.volume_id)):
            ldev = self.find_volume(request.volume_id)
            if ldev is not None:  # deleting what is gone succeeds
                self.array.call("DeleteLdev", pb.DeleteLdevRequest(id=ldev.id))
        return csi.DeleteVolumeResponse()

    # -- publishing ----------------------------------------------------------------------
    def ControllerPublishVolume(
        self, request: csi.ControllerPublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi.ControllerPublishVolumeResponse:
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        if not request.node_id:
            raise InvalidArgument("node_id is required")
        if not request.HasField("volume_capability"):
            raise InvalidArgument("volume_capability is required")
        problem = capability_problem(request.volume_capability)
        if problem:
            raise InvalidArgument(problem)
        mode = request.volume_capability.access_mode.mode
        read_only = request.readonly or mode in READ_ONLY_MODES
        with self.locks.hold(("volume", request.volume_id)):
            ldev = self.volume(request.volume_id)
            others = [h for h in ldev.published_hosts if h != request.node_id]
            if mode in SINGLE_NODE_MODES and others:
                raise FailedPrecondition(f"volume is published to node {others[0]!r} for a single-node access mode")
            if request.node_id not in ldev.published_hosts:  # a repeat of a done publish is not counted
                self.check_room(request.node_id)
            publication = self.array.call(
                "PublishLdev",
                pb.PublishLdevRequest(
                    ldev_id=ldev.id,
                    host_id=request.node_id,
                    read_only=read_only,
                    max_size_bytes=max(GROWTH_HEADROOM, 4 * ldev.size_bytes),
                ),
            )
        context_map = {
            "nbdAddress": self.array.nbd_address,
            "nbdExport": publication.export_name,
            "readOnly": "true" if read_only else "false",
        }
        # Asked each time: the array may have been restarted with client certificates required.
        if self.array.call("GetArrayInfo", pb.GetArrayInfoRequest()).nbd_hosts_by_certificate:
            context_map["nbdTls"] = "true"  # the node shows its certificate; the export is the LDEV's name
        return csi.ControllerPublishVolumeResponse(publish_context=context_map)

    def check_room(self, node_id: str) -> None:
        """The node must be one the array knows (its node plugin registered it) and below its limit."""
        host = self.array.maybe("GetHost", pb.GetHostRequest(host_id=node_id))
        if host is None:
            raise NotFound(f"node {node_id!r} is not known to the array: its node plugin registers it")
        if host.max_volumes and host.published_ldevs >= host.max_volumes:
            raise ResourceExhausted(f"node {node_id!r} holds {host.published_ldevs} volumes, its limit")

    def ControllerUnpublishVolume(
        self, request: csi.ControllerUnpublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi.ControllerUnpublishVolumeResponse:
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        with self.locks.hold(("volume", request.volume_id)):
            ldev = self.find_volume(request.volume_id)
            if ldev is not None:  # gone or never ours: already unpublished
                hosts = [request.node_id] if request.node_id else list(ldev.published_hosts)
                for host in hosts:
                    self.array.call("UnpublishLdev", pb.UnpublishLdevRequest(ldev_id=ldev.id, host_id=host))
        return csi.ControllerUnpublishVolumeResponse()

    # -- queries -------------------------------------------------------------------------------
    def ValidateVolumeCapabilities(
        self, request: csi.ValidateVolumeCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi.ValidateVolumeCapabilitiesResponse:
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        if not request.volume_capabilities:
            raise InvalidArgument("volume_capabilities is required")
        self.volume(request.volume_id)
        parse_parameters(request.parameters)
        parse_mutable(request.mutable_parameters)
        for capability in request.volume_capabilities:
            problem = capability_problem(capability)
            if problem:
                return csi.ValidateVolumeCapabilitiesResponse(message=problem)
        confirmed = csi.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=dict(request.volume_context),
            volume_capabilities=list(request.volume_capabilities),
            parameters=dict(request.parameters),
            mutable_parameters=dict(request.mutable_parameters),
        )
        return csi.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    def ListVolumes(self, request: csi.ListVolumesRequest, context: grpc.ServicerContext) -> csi.ListVolumesResponse:
        if request.max_entries < 0:
            raise InvalidArgument("max_entries cannot be negative")
        listing = pb.ListLdevsRequest(
            page_size=min(request.max_entries or 1000, 1000),
            page_token=request.starting_token,
            label_selector={DRIVER_LABEL: self.config.driver_name},
        )
        try:
            page = self.array.call("ListLdevs", listing)
        except InvalidArgument as exc:
            raise Aborted(f"starting_token {request.starting_token!r} is not valid") from exc
        entries = [
            csi.ListVolumesResponse.Entry(
                volume=self.volume_message(ldev),
                status=csi.ListVolumesResponse.VolumeStatus(
                    published_node_ids=list(ldev.published_hosts), volume_condition=self.condition(ldev)
                ),
            )
            for ldev in page.ldevs
        ]
        return csi.ListVolumesResponse(entries=entries, next_token=page.next_page_token)

    def GetCapacity(self, request: csi.GetCapacityRequest, context: grpc.ServicerContext) -> csi.GetCapacityResponse:
        if any(capability_problem(c) for c in request.volume_capabilities):
            return csi.GetCapacityResponse(available_capacity=0)
        parse_parameters(request.parameters)
        elsewhere = request.accessible_topology.segments.get(TOPOLOGY_KEY) != self.config.site
        if request.HasField("accessible_topology") and elsewhere:
            return csi.GetCapacityResponse(available_capacity=0)
        pool = self.array.call("GetPool", pb.GetPoolRequest())
        return csi.GetCapacityResponse(available_capacity=pool.free_bytes)

    def ControllerGetCapabilities(
        self, request: csi.ControllerGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi.ControllerGetCapabilitiesResponse:
        capabilities = [csi.ControllerServiceCapability(rpc=RPC(type=t)) for t in ALL_CAPABILITIES]
        return csi.ControllerGetCapabilitiesResponse(capabilities=capabilities)

    def ControllerGetVolume(
        self, request: csi.ControllerGetVolumeRequest, context: grpc.ServicerContext
    ) -> csi.ControllerGetVolumeResponse:
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        ldev = self.volume(request.volume_id)
        status = csi.ControllerGetVolumeResponse.VolumeStatus(
            published_node_ids=list(ldev.published_hosts), volume_condition=self.condition(ldev)
        )
        return csi.ControllerGetVolumeResponse(volume=self.volume_message(ldev), status=status)

    # -- changes ---------------------------------------------------------------------------------
    def ControllerExpandVolume(
        self, request: csi.ControllerExpandVolumeRequest, context: grpc.ServicerContext
    ) -> csi.ControllerExpandVolumeResponse:
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        if not request.HasField("capacity_range"):
            raise InvalidArgument("capacity_range is required")
        if request.HasField("volume_capability"):
            check_capabilities([request.volume_capability])
        with self.locks.hold(("volume", request.volume_id)):
            ldev = self.volume(request.volume_id)
            wanted = volume_size(request.capacity_range)
            limit = request.capacity_range.limit_bytes
            if wanted > ldev.size_bytes:
                ldev = self.array.call("ExpandLdev", pb.ExpandLdevRequest(id=ldev.id, new_size_bytes=wanted))
            elif limit and ldev.size_bytes > limit:
                raise OutOfRange(f"volume is already {ldev.size_bytes} bytes, more than limit_bytes {limit}")
        # The node must grow its view (device and file system) too.
        return csi.ControllerExpandVolumeResponse(capacity_bytes=ldev.size_bytes, node_expansion_required=True)

    def ControllerModifyVolume(
        self, request: csi.ControllerModifyVolumeRequest, context: grpc.ServicerContext
    ) -> csi.ControllerModifyVolumeResponse:
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        qos = parse_mutable(request.mutable_parameters)
        with self.locks.hold(("volume", request.volume_id)):
            ldev = self.volume(request.volume_id)
            current = {"maxIOPS": ldev.max_iops, "maxMBps": ldev.max_mbps}
            wanted = {"maxIOPS": qos.max_iops, "maxMBps": qos.max_mbps}
            # Keys not given keep their value.
            merged = {k: (wanted[k] if k in request.mutable_parameters else current[k]) for k in current}
            self.array.call(
                "SetLdevQos",
                pb.SetLdevQosRequest(ldev_id=ldev.id, max_iops=merged["maxIOPS"], max_mbps=merged["maxMBps"]),
            )
        return csi.ControllerModifyVolumeResponse()
