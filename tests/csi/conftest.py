"""A real array process plus the CSI plugin served in-process on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from csi_driver.config import CsiConfig
from csi_driver.server import create_server

Mode = csi.VolumeCapability.AccessMode
GIB = 1 << 30
MIB = 1 << 20


@dataclass
class Plugin:
    identity: csi_grpc.IdentityStub
    controller: csi_grpc.ControllerStub
    groups: csi_grpc.GroupControllerStub
    metadata: csi_grpc.SnapshotMetadataStub
    node: csi_grpc.NodeStub
    config: CsiConfig


def mount_cap(mode=Mode.SINGLE_NODE_WRITER, fs="ext4", flags=()):
    return csi.VolumeCapability(
        mount=csi.VolumeCapability.MountVolume(fs_type=fs, mount_flags=list(flags)), access_mode=Mode(mode=mode)
    )


def block_cap(mode=Mode.SINGLE_NODE_WRITER):
    return csi.VolumeCapability(block=csi.VolumeCapability.BlockVolume(), access_mode=Mode(mode=mode))


@pytest.fixture
def plugin(array_proc, tmp_path: Path) -> Iterator[Plugin]:
    config = CsiConfig(
        endpoint="tcp://127.0.0.1:0",
        node_id="node-1",
        array=array_proc.api_address,
        mode="all",
        state_dir=tmp_path / "csi-state",
    )
    running = create_server(config)
    with grpc.insecure_channel(running.address) as channel:
        plugin = Plugin(
            csi_grpc.IdentityStub(channel),
            csi_grpc.ControllerStub(channel),
            csi_grpc.GroupControllerStub(channel),
            csi_grpc.SnapshotMetadataStub(channel),
            csi_grpc.NodeStub(channel),
            config,
        )
        plugin.node.NodeGetInfo(csi.NodeGetInfoRequest())  # as kubelet does when the plugin registers
        yield plugin
    running.stop()
    clean_node(tmp_path, config.state_dir)


def clean_node(tmp_path: Path, state_dir: Path) -> None:
    """Undo whatever a failed test left: mounts under tmp_path, loop devices, nbdfuse."""
    import subprocess

    from csi_driver.attach import detach
    from csi_driver.node import attachment_of
    from csi_driver.node_state import NodeState

    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if str(tmp_path) in line]
    for mount_point in sorted(mounts, reverse=True):
        if "/volumes/" not in mount_point:  # the nbdfuse mounts go with detach below
            subprocess.run(["umount", "-l", mount_point], check=False, capture_output=True)
    if state_dir.exists():
        for staged in NodeState(state_dir).all():
            try:
                detach(attachment_of(staged))
            except Exception:
                subprocess.run(["fusermount3", "-uz", staged.fuse_dir], check=False, capture_output=True)


def code(call, request) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        result = call(request)
        if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR"):
            list(result)  # streams fail while iterating
    return err.value.code()
