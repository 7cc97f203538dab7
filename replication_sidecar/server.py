"""Start the replication sidecar: the csi-addons services for one array, on a unix socket.

`create_server(config)` returns the started server and the address it is
bound to (tests use a socket in a temp folder or tcp://127.0.0.1:0).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
from prometheus_client import CollectorRegistry

from ccopy_api.csiaddons import identity_pb2_grpc as identity_grpc
from ccopy_api.csiaddons import replication_pb2_grpc as replication_grpc
from ccopy_api.csiaddons import volumegroup_pb2_grpc as vg_grpc
from ccopy_common.array_client import ArrayClient, ServerOverArray
from ccopy_common.errors import ERROR_TABLE
from ccopy_common.rpc import ErrorMappingInterceptor, RpcMetrics, bind, run_until_signalled, serve_metrics
from replication_sidecar.config import ReplicationConfig
from replication_sidecar.identity import IdentityServicer
from replication_sidecar.journal_groups import JournalGroups
from replication_sidecar.replication import ReplicationServicer
from replication_sidecar.volume_groups import VolumeGroupServicer

log = logging.getLogger(__name__)


def create_server(config: ReplicationConfig) -> ServerOverArray:
    array = ArrayClient(config.array, config.tls)
    registry = CollectorRegistry()
    server = grpc.server(
        ThreadPoolExecutor(max_workers=16, thread_name_prefix="replication"),
        interceptors=[ErrorMappingInterceptor(ERROR_TABLE, "replication", RpcMetrics(registry, "replication"))],
    )
    identity_grpc.add_IdentityServicer_to_server(IdentityServicer(config, array), server)
    groups = JournalGroups(array)
    vg_grpc.add_ControllerServicer_to_server(VolumeGroupServicer(groups), server)
    replication_grpc.add_ControllerServicer_to_server(ReplicationServicer(groups), server)
    bound = bind(server, config.endpoint)
    server.start()
    http, metrics = serve_metrics(registry, config.metrics) if config.metrics else (None, "")
    log.info(
        "replication_started driver=%s endpoint=%s array=%s metrics=%s",
        config.driver_name, bound, config.array, metrics,
    )  # fmt: skip
    return ServerOverArray(server, bound, array, metrics, http)


def serve(config: ReplicationConfig) -> None:
    running = create_server(config)
    run_until_signalled(running.address, running.stop)
