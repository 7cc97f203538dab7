"""The replication sidecar served in-process on a unix socket, over a real array process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from ccopy_api.csiaddons import identity_pb2_grpc as identity_grpc
from ccopy_api.csiaddons import replication_pb2_grpc as replication_grpc
from ccopy_api.csiaddons import volumegroup_pb2_grpc as vg_grpc
from ccopy_common.array_client import ServerOverArray
from replication_sidecar.config import ReplicationConfig
from replication_sidecar.server import create_server
from tests.replication.conftest import sites  # noqa: F401 (a fixture: two linked arrays)


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


@dataclass
class SiteSidecar:
    groups: vg_grpc.ControllerStub
    replication: replication_grpc.ControllerStub
    running: ServerOverArray


@dataclass
class TwoSidecars:
    """The sidecar of each site, each over its own array only (as in two clusters)."""

    main: SiteSidecar
    backup: SiteSidecar


@pytest.fixture
def sidecars(sites, tmp_path: Path) -> Iterator[TwoSidecars]:  # noqa: F811 (the fixture imported above)
    made, channels = [], []
    for site, array in (("main", sites.main), ("backup", sites.backup)):
        running, channel = sidecar_for(array.api_address, tmp_path / f"{site}-csi-addons.sock")
        channels.append(channel)
        made.append(SiteSidecar(vg_grpc.ControllerStub(channel), replication_grpc.ControllerStub(channel), running))
    yield TwoSidecars(*made)
    for channel, side in zip(channels, made, strict=True):
        channel.close()
        side.running.stop()
