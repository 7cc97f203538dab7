"""The volume keeper: a staged volume stays usable when the node plugin that staged it ends the
way a container does, and the restarted plugin unstages it.

A container's processes end with it, and so does its mount namespace. Here the node plugin
runs as the first process of a PID and a mount namespace of its own (unshare), so that
killing it ends everything it started and every mount it saw, as a container's end does. Its
work folder is a shared mount, as a Bidirectional hostPath is: what it mounts there reaches
the host, and the keeper's FUSE mounts reach it. With the keeper holding the NBD connections,
the file system on the volume goes on, and the restarted plugin knows the loop device it
bound through a mount that is now gone; the control, the plugin holding the connections
itself, shows the failure the keeper exists for: every write fails once the plugin's
namespaces are gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from ccopy_api import keeper_pb2 as kpb
from ccopy_api import keeper_pb2_grpc as kpb_grpc
from tests.conftest import orphan_loops, require_root, require_tools, wait_for
from tests.csi.conftest import mount_cap
from tests.csi.test_node import leftovers


class NodePlugin:
    """`ccopy csi --mode=node` as the first process of its own PID and mount namespaces. Its
    mounts are copies of the host's as they stand (--propagation unchanged), so that the shared
    work folder stays a peer of the host's, as a container with a Bidirectional mount has its
    root rshared: made a slave, the folder would keep the plugin's staging mount from the host.
    It pins nothing that a slave would not: the copy of a private mount is private either way,
    and a shared one stays a peer, so the host's unmounts reach it."""

    def __init__(self, tmp_path: Path, array: str, state_dir: Path, keeper: str, name: str) -> None:
        self.socket = tmp_path / f"{name}.sock"
        argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation=unchanged", "--",
                sys.executable, "-m", "ccopy", "csi",
                "--mode=node", "--node-id=node-1", f"--array={array}", f"--endpoint=unix://{self.socket}",
                f"--state-dir={state_dir}", *([f"--keeper={keeper}"] if keeper else [])]  # fmt: skip
        self.log = (tmp_path / f"{name}.log").open("ab")
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=self.log, start_new_session=True)
        assert wait_for(self.socket.exists, timeout=60), (tmp_path / f"{name}.log").read_text()
        self.channel = grpc.insecure_channel(f"unix:{self.socket}")
        self.node = csi_grpc.NodeStub(self.channel)

    def end_as_a_container_does(self) -> None:
        """SIGKILL to the namespace's first process: the kernel kills every process in it."""
        (child,) = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        os.kill(int(child), signal.SIGKILL)
        self.process.wait(30)
        self.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        self.close()

    def close(self) -> None:
        self.channel.close()
        self.log.close()


@pytest.fixture
def shared_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder that is a shared mount: what a namespace that copies it mounts there is
    mounted here too, and the other way round (a Bidirectional hostPath)."""
    folder = tmp_path / "node"
    folder.mkdir()
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    subprocess.run(["mount", "--make-shared", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=False)  # already down if the test got to its end


def take_down(folder: Path) -> None:
    """The shared folder's own mount; what is still mounted under it, leftovers() reports."""
    subprocess.run(["umount", str(folder)], check=False, capture_output=True)


@pytest.fixture
def keeper(tmp_path: Path) -> Iterator[str]:
    endpoint = f"unix://{tmp_path}/keeper.sock"
    with (tmp_path / "keeper.log").open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "ccopy", "volume-keeper", f"--endpoint={endpoint}"],
                                   stdout=log, stderr=log, start_new_session=True)  # fmt: skip
    assert wait_for((tmp_path / "keeper.sock").exists, timeout=60), (tmp_path / "keeper.log").read_text()
    yield endpoint
    process.terminate()
    process.wait(30)


def write_and_sync(path: Path, text: str) -> None:
    with path.open("w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


@pytest.mark.parametrize("holder", ["keeper", "plugin"])
def test_a_staged_volume_outlives_the_plugin_only_where_the_keeper_holds_it(
    holder, plugin, array_proc, keeper, shared_folder, tmp_path
):
    require_root()
    require_tools("nbdfuse", "unshare", "losetup")
    cap = mount_cap()
    volume = plugin.controller.CreateVolume(csi.CreateVolumeRequest(
        name=f"kept-{holder}", capacity_range=csi.CapacityRange(required_bytes=64 << 20), volume_capabilities=[cap]),
    ).volume  # fmt: skip
    context = plugin.controller.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(
        volume_id=volume.volume_id, node_id="node-1", volume_capability=cap)).publish_context  # fmt: skip
    staging, state_dir = shared_folder / "staging", shared_folder / "node-state"
    endpoint = keeper if holder == "keeper" else ""
    first = NodePlugin(tmp_path, array_proc.api_address, state_dir, endpoint, "first")
    try:
        first.node.NodeStageVolume(csi.NodeStageVolumeRequest(
            volume_id=volume.volume_id, publish_context=context, staging_target_path=str(staging),
            volume_capability=cap))  # fmt: skip
        write_and_sync(staging / "before", "written before the plugin ended")
    finally:
        first.end_as_a_container_does()
    # What the kernel does with the namespace's processes it has done by now, and what it had
    # cached about a dead nbdfuse's file (about a second) has expired.
    time.sleep(2)
    if holder == "keeper":
        write_and_sync(staging / "after", "written after the plugin ended")
        assert (staging / "before").read_text() == "written before the plugin ended"
    else:
        with pytest.raises(OSError):  # nbdfuse ended with the plugin: the file system lost its device
            write_and_sync(staging / "after", "x" * 65536)
    restarted = NodePlugin(tmp_path, array_proc.api_address, state_dir, endpoint, "restarted")
    try:
        restarted.node.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(
            volume_id=volume.volume_id, staging_target_path=str(staging)))  # fmt: skip
    finally:
        restarted.stop()
    take_down(shared_folder)
    assert leftovers(tmp_path) == []
    assert orphan_loops() == [], "a loop device the restarted plugin did not know as its own"
    if holder == "keeper":
        with grpc.insecure_channel(keeper.replace("unix://", "unix:")) as channel:
            held = kpb_grpc.KeeperStub(channel).ListConnections(kpb.ListConnectionsRequest()).connections
        assert list(held) == [], "the keeper let go of the connection at unstage"
    plugin.controller.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(
        volume_id=volume.volume_id, node_id="node-1"))  # fmt: skip
    plugin.controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume.volume_id))


def test_the_keeper_refuses_bad_requests_with_their_codes_and_changes_nothing(tmp_path):
    require_root()
    require_tools("nbdfuse")
    from csi_driver.keeper import create_server

    server, bound = create_server(f"unix://{tmp_path}/k.sock")
    try:
        with grpc.insecure_channel(bound) as channel:
            keeper = kpb_grpc.KeeperStub(channel)
            fuse_dir = str(tmp_path / "fuse")
            refused = {
                "relative path": (kpb.ConnectRequest(uri="nbd://127.0.0.1:1/x", fuse_dir="fuse"),
                                  grpc.StatusCode.INVALID_ARGUMENT),
                "not NBD": (kpb.ConnectRequest(uri="http://127.0.0.1:1/x", fuse_dir=fuse_dir),
                            grpc.StatusCode.INVALID_ARGUMENT),
                "TLS without certificates": (kpb.ConnectRequest(uri="nbds://127.0.0.1:1/x", fuse_dir=fuse_dir),
                                             grpc.StatusCode.FAILED_PRECONDITION),
                "nobody at the address": (kpb.ConnectRequest(uri="nbd://127.0.0.1:1/x", fuse_dir=fuse_dir),
                                          grpc.StatusCode.UNAVAILABLE),
            }  # fmt: skip
            for name, (request, code) in refused.items():
                with pytest.raises(grpc.RpcError) as error:
                    keeper.Connect(request, timeout=60)
                assert error.value.code() == code, (name, error.value.details())
            with pytest.raises(grpc.RpcError) as error:
                keeper.Disconnect(kpb.DisconnectRequest(fuse_dir="relative"))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            keeper.Disconnect(kpb.DisconnectRequest(fuse_dir=fuse_dir))  # nothing there: done already
            assert list(keeper.ListConnections(kpb.ListConnectionsRequest()).connections) == []
    finally:
        server.stop(grace=None)
    assert leftovers(tmp_path) == []
