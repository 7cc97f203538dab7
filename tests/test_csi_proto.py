"""Our csi.proto speaks CSI v1.12 on the wire: pin what clients depend on.

Each row was checked against the specification's published descriptor
(field number, label and type); a change here breaks every CO.
"""

import pytest
from google.protobuf.descriptor import FieldDescriptor as F

from ccopy_api import csi_pb2

REPEATED, SINGLE = True, False
WIRE = [
    ("CreateVolumeRequest", "name", 1, SINGLE, F.TYPE_STRING),
    ("CreateVolumeRequest", "volume_capabilities", 3, REPEATED, F.TYPE_MESSAGE),
    ("CreateVolumeRequest", "volume_content_source", 6, SINGLE, F.TYPE_MESSAGE),
    ("CreateVolumeRequest", "accessibility_requirements", 7, SINGLE, F.TYPE_MESSAGE),
    ("CreateVolumeRequest", "mutable_parameters", 8, REPEATED, F.TYPE_MESSAGE),
    ("CapacityRange", "required_bytes", 1, SINGLE, F.TYPE_INT64),
    ("Volume", "accessible_topology", 5, REPEATED, F.TYPE_MESSAGE),
    ("ControllerPublishVolumeRequest", "readonly", 4, SINGLE, F.TYPE_BOOL),
    ("ValidateVolumeCapabilitiesRequest", "mutable_parameters", 6, REPEATED, F.TYPE_MESSAGE),
    ("ListVolumesRequest", "max_entries", 1, SINGLE, F.TYPE_INT32),
    ("ListVolumesResponse", "next_token", 2, SINGLE, F.TYPE_STRING),
    ("ControllerModifyVolumeRequest", "mutable_parameters", 3, REPEATED, F.TYPE_MESSAGE),
    ("GetCapacityResponse", "maximum_volume_size", 2, SINGLE, F.TYPE_MESSAGE),
    ("Snapshot", "creation_time", 4, SINGLE, F.TYPE_MESSAGE),
    ("Snapshot", "group_snapshot_id", 6, SINGLE, F.TYPE_STRING),
    ("ListSnapshotsRequest", "snapshot_id", 4, SINGLE, F.TYPE_STRING),
    ("GetSnapshotRequest", "snapshot_id", 1, SINGLE, F.TYPE_STRING),
    ("ControllerExpandVolumeResponse", "node_expansion_required", 2, SINGLE, F.TYPE_BOOL),
    ("NodePublishVolumeRequest", "target_path", 4, SINGLE, F.TYPE_STRING),
    ("NodePublishVolumeRequest", "volume_context", 8, REPEATED, F.TYPE_MESSAGE),
    ("NodeGetVolumeStatsRequest", "staging_target_path", 3, SINGLE, F.TYPE_STRING),
    ("NodeExpandVolumeRequest", "secrets", 6, REPEATED, F.TYPE_MESSAGE),
    ("NodeGetInfoResponse", "max_volumes_per_node", 2, SINGLE, F.TYPE_INT64),
    ("VolumeGroupSnapshot", "ready_to_use", 4, SINGLE, F.TYPE_BOOL),
    ("DeleteVolumeGroupSnapshotRequest", "snapshot_ids", 2, REPEATED, F.TYPE_STRING),
    ("GetMetadataAllocatedRequest", "max_results", 3, SINGLE, F.TYPE_INT32),
    ("GetMetadataDeltaRequest", "secrets", 5, REPEATED, F.TYPE_MESSAGE),
    ("GetMetadataDeltaResponse", "block_metadata_type", 1, SINGLE, F.TYPE_ENUM),
    ("BlockMetadata", "size_bytes", 2, SINGLE, F.TYPE_INT64),
]


@pytest.mark.parametrize(("message", "field", "number", "repeated", "kind"), WIRE)
def test_field_wire_layout(message, field, number, repeated, kind):
    descriptor = csi_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[field]
    assert (descriptor.number, descriptor.is_repeated, descriptor.type) == (number, repeated, kind)


def test_services_and_methods():
    services = csi_pb2.DESCRIPTOR.services_by_name
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"
    assert [m.name for m in services["GroupController"].methods] == [
        "GroupControllerGetCapabilities",
        "CreateVolumeGroupSnapshot",
        "DeleteVolumeGroupSnapshot",
        "GetVolumeGroupSnapshot",
    ]
    metadata = services["SnapshotMetadata"].methods_by_name
    assert metadata["GetMetadataAllocated"].server_streaming and metadata["GetMetadataDelta"].server_streaming
    assert "GetSnapshot" in services["Controller"].methods_by_name
    assert len(services["Node"].methods) == 8


def test_capability_numbers():
    rpc = csi_pb2.ControllerServiceCapability.RPC
    assert (rpc.MODIFY_VOLUME, rpc.GET_SNAPSHOT, rpc.SINGLE_NODE_MULTI_WRITER) == (14, 15, 13)
    service = csi_pb2.PluginCapability.Service
    assert (service.GROUP_CONTROLLER_SERVICE, service.SNAPSHOT_METADATA_SERVICE) == (3, 4)
    assert csi_pb2.NodeServiceCapability.RPC.VOLUME_MOUNT_GROUP == 6
    assert csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_MULTI_WRITER == 7
