"""What applications see: data through mounts reaches snapshots and their
clones, and group snapshots of volumes written by two processes are
crash-consistent (every sale has its stock change)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from ccopy import ecommerce
from ccopy.ecommerce import check
from ccopy_api import csi_pb2 as csi
from tests.conftest import require_root, require_tools
from tests.csi.conftest import MIB, mount_cap

pytestmark = pytest.mark.usefixtures("node_tools")


@pytest.fixture
def node_tools():
    require_root()
    require_tools("nbdfuse", "losetup", "mkfs.ext4", "fusermount3")


class Mounted:
    """A volume published, staged and published again on this node, for the test's life."""

    def __init__(self, plugin, tmp_path: Path, name: str, source: csi.VolumeContentSource | None = None) -> None:
        self.plugin = plugin
        self.cap = mount_cap()
        request = csi.CreateVolumeRequest(
            name=name, capacity_range=csi.CapacityRange(required_bytes=128 * MIB), volume_capabilities=[self.cap]
        )
        if source is not None:
            request.volume_content_source.CopyFrom(source)
        self.volume = plugin.controller.CreateVolume(request).volume
        context = plugin.controller.ControllerPublishVolume(
            csi.ControllerPublishVolumeRequest(
                volume_id=self.volume.volume_id, node_id="node-1", volume_capability=self.cap
            )
        ).publish_context
        self.staging = tmp_path / f"{name}-staging"
        self.target = tmp_path / f"{name}-pod"
        plugin.node.NodeStageVolume(
            csi.NodeStageVolumeRequest(
                volume_id=self.volume.volume_id,
                publish_context=context,
                staging_target_path=str(self.staging),
                volume_capability=self.cap,
            )
        )
        plugin.node.NodePublishVolume(
            csi.NodePublishVolumeRequest(
                volume_id=self.volume.volume_id,
                publish_context=context,
                staging_target_path=str(self.staging),
                target_path=str(self.target),
                volume_capability=self.cap,
            )
        )

    def close(self) -> None:
        volume_id = self.volume.volume_id
        self.plugin.node.NodeUnpublishVolume(
            csi.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(self.target))
        )
        self.plugin.node.NodeUnstageVolume(
            csi.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=str(self.staging))
        )
        self.plugin.controller.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(volume_id=volume_id))


def from_snapshot(snapshot_id: str) -> csi.VolumeContentSource:
    return csi.VolumeContentSource(snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id))


def test_data_written_through_a_mount_is_what_the_snapshot_clone_shows(plugin, tmp_path):
    live = Mounted(plugin, tmp_path, "app-data")
    (live.target / "ledger.txt").write_text("entry 1\nentry 2\n")
    subprocess.run(["sync", "-f", str(live.target / "ledger.txt")], check=True)
    snapshot = plugin.controller.CreateSnapshot(
        csi.CreateSnapshotRequest(name="ledger-snap", source_volume_id=live.volume.volume_id)
    ).snapshot
    (live.target / "ledger.txt").write_text("entry 1\nentry 2\nentry 3 after the snapshot\n")
    clone = Mounted(plugin, tmp_path, "app-data-restored", from_snapshot(snapshot.snapshot_id))
    assert (clone.target / "ledger.txt").read_text() == "entry 1\nentry 2\n"
    assert "entry 3" in (live.target / "ledger.txt").read_text()
    clone.close()
    live.close()


def test_group_snapshot_of_two_volumes_written_by_two_processes_is_crash_consistent(plugin, tmp_path):
    stock = Mounted(plugin, tmp_path, "stock")
    sales = Mounted(plugin, tmp_path, "sales")
    workload = ecommerce.start(stock.target, sales.target, 3600, cwd=Path(__file__).resolve().parents[2])
    groups = []
    try:
        for n in range(5):
            groups.append(
                plugin.groups.CreateVolumeGroupSnapshot(
                    csi.CreateVolumeGroupSnapshotRequest(
                        name=f"shop-{n}", source_volume_ids=[stock.volume.volume_id, sales.volume.volume_id]
                    )
                ).group_snapshot
            )
            time.sleep(0.5)
    finally:
        assert ecommerce.stop(workload) == 0
    counts = []
    for group in groups:
        by_source = {s.source_volume_id: s.snapshot_id for s in group.snapshots}
        stock_copy = Mounted(
            plugin, tmp_path, f"{group.group_snapshot_id}-stock", from_snapshot(by_source[stock.volume.volume_id])
        )
        sales_copy = Mounted(
            plugin, tmp_path, f"{group.group_snapshot_id}-sales", from_snapshot(by_source[sales.volume.volume_id])
        )
        counts.append(check(stock_copy.target, sales_copy.target))  # mounting replayed each journal
        stock_copy.close()
        sales_copy.close()
    assert counts[-1][0] > counts[0][0] > 0, f"the workload did not run during the snapshots: {counts}"
    assert check(stock.target, sales.target)[1] >= counts[-1][1]
    stock.close()
    sales.close()
