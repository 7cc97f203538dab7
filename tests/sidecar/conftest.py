"""The replication sidecar served in-process on a unix socket, over a real array process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from ccopy.array_client import ServerOverArray
from ccopy_api.csiaddons import identity_pb2_grpc as identity_grpc
from replication_sidecar.config import ReplicationConfig
from replication_sidecar.server import create_server


@dataclass
class Sidecar:
    identity: identity_grpc.IdentityStub
    running: ServerOverArray


def sidecar_for(array_api: str, socket: Path) -> tuple[ServerOverArray, grpc.Channel]:
    running = create_server(ReplicationConfig(endpoint=f"unix://{socket}", array=array_api))
    return running, grpc.insecure_channel(running.address)


@pytest.fixture
def sidecar(array_proc, tmp_path: Path) -> Iterator[Sidecar]:
    running, channel = sidecar_for(array_proc.api_address, tmp_path / "csi-addons.sock")
    with channel:
        yield Sidecar(identity_grpc.IdentityStub(channel), running)
    running.stop()
