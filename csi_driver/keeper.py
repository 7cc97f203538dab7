"""The node's volume keeper (proto/keeper.proto): it holds the nbdfuse connections of the
volumes the node plugin staged, in a container the plugin's restarts do not reach, and the
plugin's client of it.

The servicer validates and translates; the connections themselves are
fuse_connections.LocalConnections, the same code a plugin run as a process holds them with.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from ccopy_api import keeper_pb2 as pb
from ccopy_api import keeper_pb2_grpc as pb_grpc
from ccopy_common.rpc import bind, client_channel, run_until_signalled
from csi_driver.fuse_connections import Held, LocalConnections
from csi_driver.nbd_commands import AttachError

log = logging.getLogger(__name__)

# Connecting waits for nbdfuse (its own limit is LocalConnections.timeout); the call allows more.
CALL_SECONDS = 90.0


class KeeperServicer(pb_grpc.KeeperServicer):
    def __init__(self, connections: LocalConnections) -> None:
        self.connections = connections

    def Connect(self, request: pb.ConnectRequest, context: grpc.ServicerContext) -> pb.Connection:
        fuse_dir = _absolute(request.fuse_dir, context)
        if not request.uri.startswith(("nbd://", "nbds://")):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"uri {request.uri!r} is not nbd:// or nbds://")
        certificates = Path(request.tls_certificates) if request.tls_certificates else None
        if request.uri.startswith("nbds://") and certificates is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{request.uri} needs the node's certificates")
        try:
            self.connections.connect(request.uri, fuse_dir, request.read_only, certificates)
        except AttachError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return self._connection(fuse_dir)

    def Disconnect(self, request: pb.DisconnectRequest, context: grpc.ServicerContext) -> pb.DisconnectReply:
        fuse_dir = _absolute(request.fuse_dir, context)
        try:
            self.connections.disconnect(fuse_dir, lazily=request.lazily)
        except AttachError as exc:
            context.abort(grpc.StatusCode.ABORTED, str(exc))
        return pb.DisconnectReply()

    def ListConnections(self, request: pb.ListConnectionsRequest, context: grpc.ServicerContext
                        ) -> pb.ListConnectionsReply:  # fmt: skip
        return pb.ListConnectionsReply(connections=[_message(held) for held in self.connections.held()])

    def _connection(self, fuse_dir: Path) -> pb.Connection:
        held = self.connections.holding(fuse_dir)
        return _message(held) if held is not None else pb.Connection(fuse_dir=str(fuse_dir))


def _message(held: Held) -> pb.Connection:
    return pb.Connection(uri=held.uri, fuse_dir=str(held.fuse_dir), pid=held.process.pid, alive=held.alive)


def _absolute(path: str, context: grpc.ServicerContext) -> Path:
    if not path.startswith("/"):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"fuse_dir {path!r} is not an absolute path")
    return Path(path)


class KeeperClient:
    """The node plugin's side: a fuse_connections.Connector whose connections the keeper holds."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.stub = pb_grpc.KeeperStub(client_channel(endpoint))

    def connect(self, uri: str, fuse_dir: Path, read_only: bool, tls_certificates: Path | None) -> None:
        request = pb.ConnectRequest(uri=uri, fuse_dir=str(fuse_dir), read_only=read_only,
                                    tls_certificates=str(tls_certificates or ""))  # fmt: skip
        self._call("connect", lambda: self.stub.Connect(request, timeout=CALL_SECONDS))

    def disconnect(self, fuse_dir: Path, lazily: bool = False) -> None:
        request = pb.DisconnectRequest(fuse_dir=str(fuse_dir), lazily=lazily)
        self._call("disconnect", lambda: self.stub.Disconnect(request, timeout=CALL_SECONDS))

    def _call(self, what: str, call) -> None:
        try:
            call()
        except grpc.RpcError as exc:
            raise AttachError(f"the volume keeper at {self.endpoint} could not {what}: {exc.details()}") from exc


def create_server(endpoint: str, connections: LocalConnections | None = None) -> tuple[grpc.Server, str]:
    server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="keeper"))
    pb_grpc.add_KeeperServicer_to_server(KeeperServicer(connections or LocalConnections()), server)
    bound = bind(server, endpoint)
    server.start()
    log.info("keeper_started endpoint=%s", bound)
    return server, bound


def serve(endpoint: str) -> None:
    """Until a signal. Stopping leaves the connections as they are: nbdfuse runs in sessions
    of its own, and ends only with its unmount or with the keeper's container."""
    server, bound = create_server(endpoint)
    run_until_signalled(bound, lambda: server.stop(grace=5).wait())
