"""csi-addons Identity: who we are, what this endpoint offers, whether the array answers.

The csi-addons sidecar registers the endpoint under GetIdentity's name, which
must be the CSI driver's; it elects a leader only if CONTROLLER_SERVICE is
offered (without it no replication call ever reaches us); and it waits on
Probe, retrying while `ready` is false but exiting on any other error. So an
array that does not answer is `ready=false`, never an error.
"""

from __future__ import annotations

import grpc
from google.protobuf.wrappers_pb2 import BoolValue

from ccopy_api import array_pb2 as pb
from ccopy_api.csiaddons import identity_pb2 as identity
from ccopy_api.csiaddons import identity_pb2_grpc as identity_grpc
from ccopy_common import __version__
from ccopy_common.array_client import ArrayClient
from ccopy_common.errors import ServiceError
from replication_sidecar.config import ReplicationConfig

Capability = identity.Capability
PROBE_TIMEOUT = 5.0

# What is true of this endpoint: one endpoint per site serves the controller
# side; a P-VOL belongs to one journal group at most; deleting a group never
# deletes its volumes (it refuses while they are in it).
CAPABILITIES = [
    Capability(service=Capability.Service(type=Capability.Service.CONTROLLER_SERVICE)),
    Capability(volume_replication=Capability.VolumeReplication(type=Capability.VolumeReplication.VOLUME_REPLICATION)),
    Capability(
        volume_replication=Capability.VolumeReplication(
            type=Capability.VolumeReplication.GET_REPLICATION_DESTINATION_INFO
        )
    ),
    *(
        Capability(volume_group=Capability.VolumeGroup(type=kind))
        for kind in (
            Capability.VolumeGroup.VOLUME_GROUP,
            Capability.VolumeGroup.LIMIT_VOLUME_TO_ONE_VOLUME_GROUP,
            Capability.VolumeGroup.DO_NOT_ALLOW_VG_TO_DELETE_VOLUMES,
            Capability.VolumeGroup.MODIFY_VOLUME_GROUP,
            Capability.VolumeGroup.GET_VOLUME_GROUP,
            Capability.VolumeGroup.LIST_VOLUME_GROUPS,
        )
    ),
]


class IdentityServicer(identity_grpc.IdentityServicer):
    def __init__(self, config: ReplicationConfig, array: ArrayClient) -> None:
        self.config = config
        self.array = array

    def GetIdentity(
        self, request: identity.GetIdentityRequest, context: grpc.ServicerContext
    ) -> identity.GetIdentityResponse:
        return identity.GetIdentityResponse(
            name=self.config.driver_name, vendor_version=__version__, manifest={"array": self.config.array}
        )

    def GetCapabilities(
        self, request: identity.GetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> identity.GetCapabilitiesResponse:
        return identity.GetCapabilitiesResponse(capabilities=CAPABILITIES)

    def Probe(self, request: identity.ProbeRequest, context: grpc.ServicerContext) -> identity.ProbeResponse:
        try:
            self.array.call("GetArrayInfo", pb.GetArrayInfoRequest(), timeout=PROBE_TIMEOUT)
        except ServiceError:
            return identity.ProbeResponse(ready=BoolValue(value=False))
        return identity.ProbeResponse(ready=BoolValue(value=True))
