"""The view of the array that the CSI plugin and the replication sidecar share: its
management API, with the array's errors made theirs (`ccopy_common.errors`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc

from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.errors import Aborted, from_array
from ccopy_common.rpc import TlsFiles, client_channel, stop_metrics

CALL_TIMEOUT = 30.0


class ArrayClient:
    def __init__(self, address: str, tls: TlsFiles | None = None, nbd_override: str = "") -> None:
        self.address = address
        self.channel = client_channel(address, tls)
        self.stub = pb_grpc.ArrayStub(self.channel)
        self._nbd_override = nbd_override

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, request: Any, timeout: float = CALL_TIMEOUT) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise from_array(exc) from exc

    def maybe(self, method: str, request: Any) -> Any | None:
        """The answer, or None when the array says NOT_FOUND."""
        try:
            return getattr(self.stub, method)(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                return None
            raise from_array(exc) from exc

    @cached_property
    def info(self) -> pb.ArrayInfo:
        return self.call("GetArrayInfo", pb.GetArrayInfoRequest())

    @property
    def serial(self) -> int:
        return self.info.serial

    @property
    def nbd_address(self) -> str:
        """Where nodes dial NBD: the override, or the array's address (its API host
        when the array listens on every interface)."""
        if self._nbd_override:
            return self._nbd_override
        host, _, port = self.info.nbd_address.rpartition(":")
        if host in ("0.0.0.0", "::", ""):
            host = self.address.rpartition(":")[0]
        return f"{host}:{port}"

    def wait_normal(self, ldev_id: int, timeout: float) -> pb.Ldev:
        """Wait for a clone to finish copying; ABORTED (so the CO retries) on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            ldev = self.call("GetLdev", pb.GetLdevRequest(id=ldev_id))
            if ldev.state == pb.LDEV_STATE_NORMAL:
                return ldev
            if time.monotonic() > deadline:
                progress = ldev.copy_progress
                raise Aborted(f"volume still copying ({progress.copied_bytes}/{progress.total_bytes} bytes)")
            time.sleep(0.05)


@dataclass
class ServerOverArray:
    """A started gRPC server in front of the array (the CSI plugin, the replication
    sidecar): where it listens, and the array client it closes when it stops."""

    server: grpc.Server
    address: str
    array: ArrayClient
    metrics_address: str = ""
    metrics_http: WSGIServer | None = None

    def stop(self, grace: float = 5.0) -> None:
        self.server.stop(grace).wait()
        stop_metrics(self.metrics_http)
        self.array.close()
