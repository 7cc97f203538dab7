"""Start the CSI plugin: the services its mode asks for, on a unix socket.

`create_server(config)` returns the started server and the address it is
bound to (tests use tcp://127.0.0.1:0 or a socket in a temp folder).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

from ccopy.array_client import ArrayClient
from ccopy.errors import ERROR_TABLE
from ccopy.rpc import ErrorMappingInterceptor, listen_address
from ccopy_api import csi_pb2_grpc as csi_grpc
from csi_driver.config import CsiConfig
from csi_driver.controller import ControllerServicer
from csi_driver.group_controller import GroupControllerServicer
from csi_driver.identity import IdentityServicer
from csi_driver.snapshot_metadata import SnapshotMetadataServicer

log = logging.getLogger(__name__)


@dataclass
class CsiServer:
    server: grpc.Server
    address: str
    array: ArrayClient

    def stop(self, grace: float = 5.0) -> None:
        self.server.stop(grace).wait()
        self.array.close()


def create_server(config: CsiConfig) -> CsiServer:
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
    address = listen_address(config.endpoint)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {config.endpoint}")
    server.start()
    bound = address if address.startswith("unix:") else f"{address.rpartition(':')[0]}:{port}"
    log.info(
        "csi_started driver=%s mode=%s node=%s endpoint=%s array=%s",
        config.driver_name, config.mode, config.node_id, bound, config.array,
    )  # fmt: skip
    return CsiServer(server, bound, array)


def serve(config: CsiConfig) -> None:
    running = create_server(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"ready endpoint={running.address}", flush=True)
    stop.wait()
    running.stop()
    if running.address.startswith("unix:"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(running.address.removeprefix("unix:"))
