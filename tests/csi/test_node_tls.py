"""The CSI node plugin on an array whose data path requires TLS client certificates: the
node shows its certificate (common name = node id), opens its volumes by name, and no
secret travels in the publish context."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from ccopy_common.rpc import TlsFiles
from csi_driver.config import CsiConfig
from csi_driver.nbd_commands import AttachError, nbdfuse_argv
from csi_driver.server import create_server
from tests.conftest import require_root, require_tools
from tests.csi.conftest import MIB, clean_node, code, mount_cap
from tests.integration.tls_array import TlsArray


def folder_files(folder: Path) -> TlsFiles:
    return TlsFiles(cert=folder / "client-cert.pem", key=folder / "client-key.pem", ca=folder / "ca-cert.pem")


def start_plugin(tls_array: TlsArray, tmp_path: Path, certificates: Path | None):
    config = CsiConfig(
        endpoint="tcp://127.0.0.1:0",
        node_id="node-1",
        array=tls_array.array.api_address,
        state_dir=tmp_path / "csi-state",
        nbd_tls=folder_files(certificates) if certificates else TlsFiles(),
    )
    return config, create_server(config)


@pytest.fixture
def node(tls_array: TlsArray, tmp_path: Path) -> Iterator[tuple[csi_grpc.ControllerStub, csi_grpc.NodeStub]]:
    require_root()
    require_tools("nbdfuse", "nbdkit", "losetup", "mkfs.ext4", "fusermount3")
    config, running = start_plugin(tls_array, tmp_path, tls_array.good)
    with grpc.insecure_channel(running.address) as channel:
        node = csi_grpc.NodeStub(channel)
        node.NodeGetInfo(csi.NodeGetInfoRequest())
        yield csi_grpc.ControllerStub(channel), node
    running.stop()
    clean_node(tmp_path, config.state_dir)


def test_a_volume_is_staged_over_tls_by_its_name_and_keeps_its_data(node, tls_array: TlsArray, tmp_path: Path):
    controller, plugin = node
    cap = mount_cap()
    volume = controller.CreateVolume(
        csi.CreateVolumeRequest(
            name="pvc-tls", capacity_range=csi.CapacityRange(required_bytes=64 * MIB), volume_capabilities=[cap]
        )
    ).volume
    context = controller.ControllerPublishVolume(
        csi.ControllerPublishVolumeRequest(volume_id=volume.volume_id, node_id="node-1", volume_capability=cap)
    ).publish_context
    assert context["nbdTls"] == "true" and context["nbdExport"] == "pvc-tls"  # nothing secret to leak
    staging = tmp_path / "staging"
    stage = csi.NodeStageVolumeRequest(
        volume_id=volume.volume_id, publish_context=context, staging_target_path=str(staging), volume_capability=cap
    )
    unstage = csi.NodeUnstageVolumeRequest(volume_id=volume.volume_id, staging_target_path=str(staging))
    plugin.NodeStageVolume(stage)
    (staging / "orders.txt").write_text("order 1 over tls\n")
    plugin.NodeUnstageVolume(unstage)
    plugin.NodeStageVolume(stage)
    assert (staging / "orders.txt").read_text() == "order 1 over tls\n"
    plugin.NodeUnstageVolume(unstage)
    controller.ControllerUnpublishVolume(
        csi.ControllerUnpublishVolumeRequest(volume_id=volume.volume_id, node_id="node-1")
    )
    controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume.volume_id))
    log = (tmp_path / "array.log").read_text()
    assert "certificate=node-1" in log and "export=pvc-tls host=node-1" in log
    assert "PRIVATE KEY" not in log


def test_a_node_without_a_certificate_is_told_what_it_lacks(tls_array: TlsArray, tmp_path: Path):
    _, running = start_plugin(tls_array, tmp_path, None)
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = csi_grpc.NodeStub(channel)
            stub.NodeGetInfo(csi.NodeGetInfoRequest())
            stage = csi.NodeStageVolumeRequest(
                volume_id="1-000001",
                publish_context={"nbdAddress": tls_array.array.nbd_address, "nbdExport": "vol", "nbdTls": "true"},
                staging_target_path=str(tmp_path / "staging"),
                volume_capability=mount_cap(),
            )
            assert code(stub.NodeStageVolume, stage) == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        running.stop()


def test_over_tls_nbdfuse_reaches_the_array_through_nbdkit(tmp_path: Path):
    argv = nbdfuse_argv("nbds://10.0.0.5:10809/pvc%2F1", tmp_path / "nbd", tmp_path / "pid", True, tmp_path / "tls")
    assert argv[argv.index("[") :] == [
        "[", "nbdkit", "-r", "nbd", "hostname=10.0.0.5", "port=10809", "export=pvc/1", "tls=require",
        f"tls-certificates={tmp_path / 'tls'}", "]",
    ]  # fmt: skip
    assert nbdfuse_argv("nbd://h:1/v", tmp_path / "nbd", tmp_path / "pid", False, None)[-1] == "nbd://h:1/v"
    with pytest.raises(AttachError, match="needs TLS"):
        nbdfuse_argv("nbds://h:1/v", tmp_path / "nbd", tmp_path / "pid", False, None)


def test_the_nbd_certificate_flags_go_together():
    argv = [sys.executable, "-m", "ccopy", "csi", "--node-id", "n", "--nbd-cert", "/etc/hostname"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "--nbd-cert, --nbd-key and --nbd-ca go together" in result.stderr
