"""CSI Identity service: who we are, what we offer, whether the array answers."""

from __future__ import annotations

import grpc
from google.protobuf.wrappers_pb2 import BoolValue

from ccopy_api import array_pb2 as pb
from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from ccopy_common import __version__
from ccopy_common.array_client import ArrayClient
from ccopy_common.errors import FailedPrecondition, ServiceError
from csi_driver.config import CsiConfig

Service = csi.PluginCapability.Service


class IdentityServicer(csi_grpc.IdentityServicer):
    def __init__(self, config: CsiConfig, array: ArrayClient) -> None:
        self.config = config
        self.array = array

    def GetPluginInfo(
        self, request: csi.GetPluginInfoRequest, context: grpc.ServicerContext
    ) -> csi.GetPluginInfoResponse:
        return csi.GetPluginInfoResponse(
            name=self.config.driver_name,
            vendor_version=__version__,
            manifest={"array": self.config.array, "mode": self.config.mode, "site": self.config.site},
        )

    def GetPluginCapabilities(
        self, request: csi.GetPluginCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi.GetPluginCapabilitiesResponse:
        services = [Service.VOLUME_ACCESSIBILITY_CONSTRAINTS]
        if self.config.controller:
            services += [
                Service.CONTROLLER_SERVICE,
                Service.GROUP_CONTROLLER_SERVICE,
                Service.SNAPSHOT_METADATA_SERVICE,
            ]
        capabilities = [csi.PluginCapability(service=Service(type=t)) for t in services]
        online = csi.PluginCapability.VolumeExpansion(type=csi.PluginCapability.VolumeExpansion.ONLINE)
        capabilities.append(csi.PluginCapability(volume_expansion=online))
        return csi.GetPluginCapabilitiesResponse(capabilities=capabilities)

    def Probe(self, request: csi.ProbeRequest, context: grpc.ServicerContext) -> csi.ProbeResponse:
        try:
            self.array.call("GetArrayInfo", pb.GetArrayInfoRequest(), timeout=5)
        except ServiceError as exc:
            raise FailedPrecondition(f"the array at {self.config.array} does not answer: {exc}") from exc
        return csi.ProbeResponse(ready=BoolValue(value=True))
