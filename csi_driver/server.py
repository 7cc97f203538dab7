"""Start the CSI plugin: the services its mode asks for, on a unix socket.

`create_server(config)` returns the started server and the address it is
bound to (tests use tcp://127.0.0.1:0 or a socket in a temp folder).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc

from ccopy_api import csi_pb2_grpc as csi_grpc
from ccopy_common.array_client import ArrayClient, ServerOverArray
from ccopy_common.errors import ERROR_TABLE
from ccopy_common.rpc import ErrorMappingInterceptor, bind, run_until_signalled
from csi_driver.config import CsiConfig
from csi_driver.controller import ControllerServicer
from csi_driver.group_controller import GroupControllerServicer
from csi_driver.identity import IdentityServicer
from csi_driver.snapshot_metadata import SnapshotMetadataServicer

log = logging.getLogger(__name__)


def create_server(config: CsiConfig) -> ServerOverArray:
    array = ArrayClient(config.array, config.tls, config.nbd_address)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=16, thread_name_prefix="csi"),
        interceptors=[ErrorMappingInterceptor(ERROR_TABLE, "csi")],
    )
    csi_grpc.add_IdentityServicer_to_server(IdentityServicer(config, array), server)
    if config.controller:
        controller = ControllerServicer(config, array)
        csi_grpc.add_ControllerServicer_to_server(controller, server)
        csi_grpc.add_GroupControllerServicer_to_server(GroupControllerServicer(config, array, controller), server)
        csi_grpc.add_SnapshotMetadataServicer_to_server(SnapshotMetadataServicer(array, controller), server)
    if config.node:
        from csi_driver.node import NodeServicer

        csi_grpc.add_NodeServicer_to_server(NodeServicer(config, array), server)
    bound = bind(server, config.endpoint, config.socket_group)
    server.start()
    log.info(
        "csi_started driver=%s mode=%s node=%s endpoint=%s array=%s",
        config.driver_name, config.mode, config.node_id, bound, config.array,
    )  # fmt: skip
    return ServerOverArray(server, bound, array)


def serve(config: CsiConfig) -> None:
    running = create_server(config)
    run_until_signalled(running.address, running.stop)
