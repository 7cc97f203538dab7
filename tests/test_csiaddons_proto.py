"""Our csi-addons protos speak the csi-addons spec on the wire: pin what the
csi-addons sidecar and manager depend on.

Each row was checked against descriptors compiled from csi-addons/spec (main of
2026-07-10): every message, field (number, label, type, options), enum value,
reserved range and method matched; a change here breaks the csi-addons
sidecar, the manager and every DR orchestrator on top of them.
"""

import pytest
from google.protobuf.descriptor import FieldDescriptor as F

from ccopy_api import csi_pb2
from ccopy_api.csiaddons import identity_pb2, replication_pb2, volumegroup_pb2

REPEATED, SINGLE = True, False
SOURCE_REQUESTS = {  # request -> number of replication_source (the field that replaced volume_id = 1)
    "EnableVolumeReplicationRequest": 5,
    "DisableVolumeReplicationRequest": 5,
    "PromoteVolumeRequest": 6,
    "DemoteVolumeRequest": 6,
    "ResyncVolumeRequest": 6,
    "GetVolumeReplicationInfoRequest": 4,
    "GetReplicationDestinationInfoRequest": 2,
}
WIRE = [
    (identity_pb2, "GetIdentityResponse", "name", 1, SINGLE, F.TYPE_STRING),
    (identity_pb2, "GetIdentityResponse", "manifest", 3, REPEATED, F.TYPE_MESSAGE),
    (identity_pb2, "GetCapabilitiesResponse", "capabilities", 1, REPEATED, F.TYPE_MESSAGE),
    (identity_pb2, "Capability", "service", 1, SINGLE, F.TYPE_MESSAGE),
    (identity_pb2, "Capability", "volume_replication", 4, SINGLE, F.TYPE_MESSAGE),
    (identity_pb2, "Capability", "volume_group", 5, SINGLE, F.TYPE_MESSAGE),
    (identity_pb2, "Capability", "encryption_key_rotation", 6, SINGLE, F.TYPE_MESSAGE),
    (identity_pb2, "ProbeResponse", "ready", 1, SINGLE, F.TYPE_MESSAGE),
    (replication_pb2, "EnableVolumeReplicationRequest", "parameters", 2, REPEATED, F.TYPE_MESSAGE),
    (replication_pb2, "EnableVolumeReplicationRequest", "secrets", 3, REPEATED, F.TYPE_MESSAGE),
    (replication_pb2, "EnableVolumeReplicationRequest", "replication_id", 4, SINGLE, F.TYPE_STRING),
    (replication_pb2, "PromoteVolumeRequest", "force", 2, SINGLE, F.TYPE_BOOL),
    (replication_pb2, "PromoteVolumeRequest", "parameters", 3, REPEATED, F.TYPE_MESSAGE),
    (replication_pb2, "DemoteVolumeRequest", "secrets", 4, REPEATED, F.TYPE_MESSAGE),
    (replication_pb2, "ResyncVolumeRequest", "replication_id", 5, SINGLE, F.TYPE_STRING),
    (replication_pb2, "ResyncVolumeResponse", "ready", 1, SINGLE, F.TYPE_BOOL),
    (replication_pb2, "GetVolumeReplicationInfoRequest", "secrets", 2, REPEATED, F.TYPE_MESSAGE),
    (replication_pb2, "GetVolumeReplicationInfoResponse", "last_sync_time", 1, SINGLE, F.TYPE_MESSAGE),
    (replication_pb2, "GetVolumeReplicationInfoResponse", "last_sync_duration", 2, SINGLE, F.TYPE_MESSAGE),
    (replication_pb2, "GetVolumeReplicationInfoResponse", "last_sync_bytes", 3, SINGLE, F.TYPE_INT64),
    (replication_pb2, "GetVolumeReplicationInfoResponse", "status", 4, SINGLE, F.TYPE_ENUM),
    (replication_pb2, "GetVolumeReplicationInfoResponse", "status_message", 5, SINGLE, F.TYPE_STRING),
    (replication_pb2, "GetReplicationDestinationInfoRequest", "secrets", 1, REPEATED, F.TYPE_MESSAGE),
    (replication_pb2, "GetReplicationDestinationInfoResponse", "replication_destination", 1, SINGLE, F.TYPE_MESSAGE),
    (replication_pb2, "ReplicationSource", "volume", 1, SINGLE, F.TYPE_MESSAGE),
    (replication_pb2, "ReplicationSource", "volumegroup", 2, SINGLE, F.TYPE_MESSAGE),
    (replication_pb2, "ReplicationDestination", "volume", 1, SINGLE, F.TYPE_MESSAGE),
    (replication_pb2, "ReplicationDestination", "volumegroup", 2, SINGLE, F.TYPE_MESSAGE),
    (volumegroup_pb2, "CreateVolumeGroupRequest", "name", 1, SINGLE, F.TYPE_STRING),
    (volumegroup_pb2, "CreateVolumeGroupRequest", "volume_ids", 4, REPEATED, F.TYPE_STRING),
    (volumegroup_pb2, "VolumeGroup", "volume_group_context", 2, REPEATED, F.TYPE_MESSAGE),
    (volumegroup_pb2, "VolumeGroup", "volumes", 3, REPEATED, F.TYPE_MESSAGE),
    (volumegroup_pb2, "ModifyVolumeGroupMembershipRequest", "volume_ids", 2, REPEATED, F.TYPE_STRING),
    (volumegroup_pb2, "ModifyVolumeGroupMembershipRequest", "parameters", 4, REPEATED, F.TYPE_MESSAGE),
    (volumegroup_pb2, "ListVolumeGroupsRequest", "max_entries", 1, SINGLE, F.TYPE_INT32),
    (volumegroup_pb2, "ListVolumeGroupsRequest", "starting_token", 2, SINGLE, F.TYPE_STRING),
    (volumegroup_pb2, "ListVolumeGroupsResponse", "next_token", 2, SINGLE, F.TYPE_STRING),
    (volumegroup_pb2, "ControllerGetVolumeGroupRequest", "volume_group_id", 1, SINGLE, F.TYPE_STRING),
]


@pytest.mark.parametrize(("module", "message", "field", "number", "repeated", "kind"), WIRE)
def test_field_wire_layout(module, message, field, number, repeated, kind):
    descriptor = module.DESCRIPTOR.message_types_by_name[message].fields_by_name[field]
    assert (descriptor.number, descriptor.is_repeated, descriptor.type) == (number, repeated, kind)


@pytest.mark.parametrize(("message", "number"), SOURCE_REQUESTS.items())
def test_every_replication_call_names_its_source_and_keeps_volume_id_reserved(message, number):
    descriptor = replication_pb2.DESCRIPTOR.message_types_by_name[message]
    source = descriptor.fields_by_name["replication_source"]
    assert (source.number, source.message_type.full_name) == (number, "replication.ReplicationSource")
    assert 1 not in descriptor.fields_by_number or message == "GetReplicationDestinationInfoRequest"
    secrets = descriptor.fields_by_name["secrets"]
    assert secrets.GetOptions().Extensions[csi_pb2.csi_secret], "secrets must carry csi.v1.csi_secret"


def test_packages_services_and_methods():
    packages = [m.DESCRIPTOR.package for m in (identity_pb2, replication_pb2, volumegroup_pb2)]
    assert packages == ["identity", "replication", "volumegroup"]
    assert [m.name for m in identity_pb2.DESCRIPTOR.services_by_name["Identity"].methods] == [
        "GetIdentity",
        "GetCapabilities",
        "Probe",
    ]
    assert [m.name for m in replication_pb2.DESCRIPTOR.services_by_name["Controller"].methods] == [
        "EnableVolumeReplication",
        "DisableVolumeReplication",
        "PromoteVolume",
        "DemoteVolume",
        "ResyncVolume",
        "GetVolumeReplicationInfo",
        "GetReplicationDestinationInfo",
    ]
    assert [m.name for m in volumegroup_pb2.DESCRIPTOR.services_by_name["Controller"].methods] == [
        "CreateVolumeGroup",
        "ModifyVolumeGroupMembership",
        "DeleteVolumeGroup",
        "ListVolumeGroups",
        "ControllerGetVolumeGroup",
    ]
    volume = volumegroup_pb2.DESCRIPTOR.message_types_by_name["VolumeGroup"].fields_by_name["volumes"]
    assert volume.message_type.full_name == "csi.v1.Volume"


def test_enum_numbers_and_options():
    capability = identity_pb2.Capability
    assert capability.Service.CONTROLLER_SERVICE == 1 and capability.Service.NODE_SERVICE == 2
    assert capability.VolumeReplication.GET_REPLICATION_DESTINATION_INFO == 2
    group = capability.VolumeGroup
    assert (group.LIMIT_VOLUME_TO_ONE_VOLUME_GROUP, group.MODIFY_VOLUME_GROUP, group.LIST_VOLUME_GROUPS) == (2, 4, 6)
    status = replication_pb2.GetVolumeReplicationInfoResponse
    assert (status.HEALTHY, status.DEGRADED, status.ERROR) == (1, 2, 3)
    assert replication_pb2.alpha_field.number == 1100
    replication_id = replication_pb2.PromoteVolumeRequest.DESCRIPTOR.fields_by_name["replication_id"]
    assert replication_id.GetOptions().Extensions[replication_pb2.alpha_field]
