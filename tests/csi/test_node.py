"""The CSI Node service on real devices: nbdfuse + loop, mkfs, mounts, binds.

The full lifecycle create -> publish -> stage -> publish -> unpublish ->
unstage -> unpublish -> delete, in mount mode and in block mode, with data
checks along the way, and nothing left mounted or attached afterwards.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import grpc
import pytest

from ccopy.waiting import wait_progressing
from ccopy_api import csi_pb2 as csi
from csi_driver.config import CsiConfig
from csi_driver.server import create_server
from tests.conftest import bound_loops, orphan_loops, require_root, require_tools
from tests.csi.conftest import MIB, Mode, block_cap, code, mount_cap

pytestmark = pytest.mark.usefixtures("node_tools")


@pytest.fixture
def node_tools():
    require_root()
    require_tools("nbdfuse", "losetup", "mkfs.ext4", "mkfs.xfs", "fusermount3", "blkid")


def leftovers(tmp_path: Path) -> list[str]:
    """Mounts and loop devices of the test's, and loop devices nobody can reach any more."""
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines() if str(tmp_path) in line]
    loops = [f"loop {device} ({name})" for device, name in bound_loops().items() if str(tmp_path) in name]
    return mounts + loops + orphan_loops()


def lifecycle_start(plugin, tmp_path, name, cap, size=256 * MIB):
    volume = plugin.controller.CreateVolume(
        csi.CreateVolumeRequest(
            name=name, capacity_range=csi.CapacityRange(required_bytes=size), volume_capabilities=[cap]
        )
    ).volume
    context = plugin.controller.ControllerPublishVolume(
        csi.ControllerPublishVolumeRequest(volume_id=volume.volume_id, node_id="node-1", volume_capability=cap)
    ).publish_context
    staging = tmp_path / f"{name}-staging"
    stage = csi.NodeStageVolumeRequest(
        volume_id=volume.volume_id, publish_context=context, staging_target_path=str(staging), volume_capability=cap
    )
    plugin.node.NodeStageVolume(stage)
    plugin.node.NodeStageVolume(stage)  # idempotent
    return volume, context, staging


def lifecycle_end(plugin, volume, staging, targets):
    for target in targets:
        for _ in range(2):  # idempotent
            plugin.node.NodeUnpublishVolume(
                csi.NodeUnpublishVolumeRequest(volume_id=volume.volume_id, target_path=str(target))
            )
        assert not target.exists()
    for _ in range(2):
        plugin.node.NodeUnstageVolume(
            csi.NodeUnstageVolumeRequest(volume_id=volume.volume_id, staging_target_path=str(staging))
        )
    plugin.controller.ControllerUnpublishVolume(
        csi.ControllerUnpublishVolumeRequest(volume_id=volume.volume_id, node_id="node-1")
    )
    plugin.controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume.volume_id))


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_mount_lifecycle_keeps_data(plugin, tmp_path, fs):
    cap = mount_cap(fs=fs)
    volume, context, staging = lifecycle_start(plugin, tmp_path, f"m-{fs}", cap, 512 * MIB)
    target = tmp_path / "pod" / "mount"
    publish = csi.NodePublishVolumeRequest(
        volume_id=volume.volume_id,
        publish_context=context,
        staging_target_path=str(staging),
        target_path=str(target),
        volume_capability=cap,
    )
    plugin.node.NodePublishVolume(publish)
    plugin.node.NodePublishVolume(publish)  # idempotent
    (target / "orders.txt").write_text("order 1: 2 widgets\n")
    reader = tmp_path / "pod2" / "ro"
    read_only = csi.NodePublishVolumeRequest(
        volume_id=volume.volume_id,
        publish_context=context,
        staging_target_path=str(staging),
        target_path=str(reader),
        volume_capability=cap,
        readonly=True,
    )
    plugin.node.NodePublishVolume(read_only)
    assert (reader / "orders.txt").read_text() == "order 1: 2 widgets\n"
    with pytest.raises(OSError):
        (reader / "nope").write_text("x")

    stats = plugin.node.NodeGetVolumeStats(
        csi.NodeGetVolumeStatsRequest(volume_id=volume.volume_id, volume_path=str(target))
    )
    by_unit = {u.unit: u for u in stats.usage}
    assert 400 * MIB < by_unit[csi.VolumeUsage.BYTES].total <= 512 * MIB
    assert by_unit[csi.VolumeUsage.INODES].used >= 1 and not stats.volume_condition.abnormal

    lifecycle_end(plugin, volume, staging, [target, reader])
    assert leftovers(tmp_path) == []


def test_data_survives_unstage_and_restage(plugin, tmp_path):
    cap = mount_cap()
    volume, context, staging = lifecycle_start(plugin, tmp_path, "keep", cap)
    (staging / "sale.db").write_bytes(os.urandom(MIB))
    data = (staging / "sale.db").read_bytes()
    plugin.node.NodeUnstageVolume(
        csi.NodeUnstageVolumeRequest(volume_id=volume.volume_id, staging_target_path=str(staging))
    )
    plugin.node.NodeStageVolume(
        csi.NodeStageVolumeRequest(
            volume_id=volume.volume_id, publish_context=context, staging_target_path=str(staging), volume_capability=cap
        )
    )
    assert (staging / "sale.db").read_bytes() == data  # not reformatted
    lifecycle_end(plugin, volume, staging, [])
    assert leftovers(tmp_path) == []


def test_block_lifecycle(plugin, tmp_path):
    cap = block_cap()
    volume, context, staging = lifecycle_start(plugin, tmp_path, "raw", cap, 64 * MIB)
    target = tmp_path / "pod" / "dev" / "xvda"
    plugin.node.NodePublishVolume(
        csi.NodePublishVolumeRequest(
            volume_id=volume.volume_id,
            publish_context=context,
            staging_target_path=str(staging),
            target_path=str(target),
            volume_capability=cap,
        )
    )
    payload = os.urandom(4096)
    with open(target, "r+b") as device:
        device.write(payload)
        device.flush()
        os.fsync(device.fileno())
    with open(target, "rb") as device:
        assert device.read(4096) == payload
    stats = plugin.node.NodeGetVolumeStats(
        csi.NodeGetVolumeStatsRequest(volume_id=volume.volume_id, volume_path=str(target))
    )
    assert stats.usage[0].total == 64 * MIB
    lifecycle_end(plugin, volume, staging, [target])
    assert leftovers(tmp_path) == []


def test_staged_volumes_outlive_a_plugin_restart(plugin, array_proc, tmp_path):
    cap = mount_cap()
    volume, _context, staging = lifecycle_start(plugin, tmp_path, "restart", cap)
    (staging / "before.txt").write_text("kept")
    # A second plugin process with the same state folder: the restarted node plugin.
    config = CsiConfig(
        endpoint="tcp://127.0.0.1:0",
        node_id="node-1",
        array=array_proc.api_address,
        mode="node",
        state_dir=plugin.config.state_dir,
    )
    restarted = create_server(config)
    try:
        from ccopy_api import csi_pb2_grpc as csi_grpc

        with grpc.insecure_channel(restarted.address) as channel:
            node = csi_grpc.NodeStub(channel)
            stats = node.NodeGetVolumeStats(
                csi.NodeGetVolumeStatsRequest(volume_id=volume.volume_id, volume_path=str(staging))
            )
            assert not stats.volume_condition.abnormal
            assert (staging / "before.txt").read_text() == "kept"
            node.NodeUnstageVolume(
                csi.NodeUnstageVolumeRequest(volume_id=volume.volume_id, staging_target_path=str(staging))
            )
    finally:
        restarted.stop()
    assert leftovers(tmp_path) == []


def test_volume_condition_turns_abnormal_when_the_connection_is_cut(plugin, tmp_path):
    cap = mount_cap()
    volume, _context, staging = lifecycle_start(plugin, tmp_path, "cut", cap)
    # Fencing from the controller side cuts the node's NBD connection.
    plugin.controller.ControllerUnpublishVolume(
        csi.ControllerUnpublishVolumeRequest(volume_id=volume.volume_id, node_id="node-1")
    )
    stats = plugin.node.NodeGetVolumeStats(
        csi.NodeGetVolumeStatsRequest(volume_id=volume.volume_id, volume_path=str(staging))
    )
    assert stats.volume_condition.abnormal
    subprocess.run(["umount", "-l", str(staging)], check=False)
    plugin.node.NodeUnstageVolume(
        csi.NodeUnstageVolumeRequest(volume_id=volume.volume_id, staging_target_path=str(staging))
    )
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("method", "request_", "expected"),
    [
        (
            "NodeStageVolume",
            csi.NodeStageVolumeRequest(staging_target_path="/x", volume_capability=mount_cap()),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "NodeStageVolume",
            csi.NodeStageVolumeRequest(volume_id="v", volume_capability=mount_cap()),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "NodeStageVolume",
            csi.NodeStageVolumeRequest(volume_id="v", staging_target_path="/x"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "NodeStageVolume",
            csi.NodeStageVolumeRequest(volume_id="v", staging_target_path="/x", volume_capability=mount_cap()),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "NodePublishVolume",
            csi.NodePublishVolumeRequest(
                volume_id="v", staging_target_path="/s", target_path="/t", volume_capability=mount_cap()
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (
            "NodePublishVolume",
            csi.NodePublishVolumeRequest(volume_id="v", staging_target_path="/s", volume_capability=mount_cap()),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        ("NodeUnpublishVolume", csi.NodeUnpublishVolumeRequest(volume_id="v"), grpc.StatusCode.INVALID_ARGUMENT),
        ("NodeUnstageVolume", csi.NodeUnstageVolumeRequest(volume_id="v"), grpc.StatusCode.INVALID_ARGUMENT),
        (
            "NodeGetVolumeStats",
            csi.NodeGetVolumeStatsRequest(volume_id="v", volume_path="/nonexistent"),
            grpc.StatusCode.NOT_FOUND,
        ),
        ("NodeGetVolumeStats", csi.NodeGetVolumeStatsRequest(volume_id="v"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_node_errors(plugin, method, request_, expected):
    assert code(getattr(plugin.node, method), request_) == expected


def test_node_info_and_capabilities(plugin):
    info = plugin.node.NodeGetInfo(csi.NodeGetInfoRequest())
    assert info.node_id == "node-1"
    assert info.accessible_topology.segments["topology.ldev.csi.consistentcopy.io/site"] == "main"
    caps = {c.rpc.type for c in plugin.node.NodeGetCapabilities(csi.NodeGetCapabilitiesRequest()).capabilities}
    rpc = csi.NodeServiceCapability.RPC
    assert {rpc.STAGE_UNSTAGE_VOLUME, rpc.GET_VOLUME_STATS, rpc.VOLUME_CONDITION} <= caps


def test_unknown_volume_unpublish_and_unstage_succeed(plugin, tmp_path):
    plugin.node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id="ghost", target_path=str(tmp_path / "t")))
    plugin.node.NodeUnstageVolume(
        csi.NodeUnstageVolumeRequest(volume_id="ghost", staging_target_path=str(tmp_path / "s"))
    )


def test_multi_node_reader_volume_mounts_read_only(plugin, tmp_path):
    writer_cap = mount_cap()
    volume, context, staging = lifecycle_start(plugin, tmp_path, "shared", writer_cap)
    (staging / "report.csv").write_text("a,b\n")
    lifecycle_end_keep = [csi.NodeUnstageVolumeRequest(volume_id=volume.volume_id, staging_target_path=str(staging))]
    plugin.node.NodeUnstageVolume(lifecycle_end_keep[0])
    plugin.controller.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(volume_id=volume.volume_id))
    reader_cap = mount_cap(Mode.MULTI_NODE_READER_ONLY)
    context = plugin.controller.ControllerPublishVolume(
        csi.ControllerPublishVolumeRequest(volume_id=volume.volume_id, node_id="node-1", volume_capability=reader_cap)
    ).publish_context
    assert context["readOnly"] == "true"
    ro_staging = tmp_path / "ro-staging"
    plugin.node.NodeStageVolume(
        csi.NodeStageVolumeRequest(
            volume_id=volume.volume_id,
            publish_context=context,
            staging_target_path=str(ro_staging),
            volume_capability=reader_cap,
        )
    )
    assert (ro_staging / "report.csv").read_text() == "a,b\n"
    with pytest.raises(OSError):
        (ro_staging / "x").write_text("no")
    lifecycle_end(plugin, volume, ro_staging, [])
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_online_expansion_grows_device_and_file_system_while_mounted(plugin, tmp_path, fs):
    if fs == "ext4" and not has_capability(24):
        pytest.skip("ext4 online resize needs CAP_SYS_RESOURCE, which this machine's root lacks (see CapEff)")
    cap = mount_cap(fs=fs)
    volume, context, staging = lifecycle_start(plugin, tmp_path, f"grow-{fs}", cap, 320 * MIB)
    target = tmp_path / "pod" / "grow"
    plugin.node.NodePublishVolume(
        csi.NodePublishVolumeRequest(
            volume_id=volume.volume_id,
            publish_context=context,
            staging_target_path=str(staging),
            target_path=str(target),
            volume_capability=cap,
        )
    )
    (target / "kept.txt").write_text("still here")
    before = os.statvfs(target).f_blocks * os.statvfs(target).f_frsize
    expanded = plugin.controller.ControllerExpandVolume(
        csi.ControllerExpandVolumeRequest(
            volume_id=volume.volume_id, capacity_range=csi.CapacityRange(required_bytes=1024 * MIB)
        )
    )
    assert expanded.node_expansion_required
    grown = plugin.node.NodeExpandVolume(
        csi.NodeExpandVolumeRequest(
            volume_id=volume.volume_id,
            volume_path=str(target),
            staging_target_path=str(staging),
            capacity_range=csi.CapacityRange(required_bytes=1024 * MIB),
        )
    )
    assert grown.capacity_bytes == 1024 * MIB
    after = os.statvfs(target).f_blocks * os.statvfs(target).f_frsize
    assert after > before * 2.5  # the mounted file system grew, online
    (target / "big.bin").write_bytes(os.urandom(400 * MIB // 8) * 8)  # more than fitted before
    assert (target / "kept.txt").read_text() == "still here"
    ahead = csi.NodeExpandVolumeRequest(
        volume_id=volume.volume_id, volume_path=str(target), capacity_range=csi.CapacityRange(required_bytes=4 << 30)
    )
    assert code(plugin.node.NodeExpandVolume, ahead) == grpc.StatusCode.OUT_OF_RANGE
    lifecycle_end(plugin, volume, staging, [target])
    assert leftovers(tmp_path) == []


def test_block_volume_grows_and_never_writes_past_the_ldev(plugin, tmp_path, array_proc):
    cap = block_cap()
    volume, context, staging = lifecycle_start(plugin, tmp_path, "grow-raw", cap, 64 * MIB)
    staged_device = next(iter(plugin_state_devices(plugin)))
    assert (
        int(subprocess.run(["blockdev", "--getsize64", staged_device], capture_output=True, text=True).stdout)
        == 64 * MIB
    )
    # The export advertises headroom, but the array still refuses writes past the LDEV.
    from tests.integration.nbd_raw import RawClient

    raw = RawClient(context["nbdAddress"])
    raw.go(context["nbdExport"])
    assert raw.size > 64 * MIB
    assert raw.write(64 * MIB, b"x" * 512) == 28  # ENOSPC
    assert raw.read(64 * MIB, 512) == (0, bytes(512))
    raw.close()
    plugin.controller.ControllerExpandVolume(
        csi.ControllerExpandVolumeRequest(
            volume_id=volume.volume_id, capacity_range=csi.CapacityRange(required_bytes=128 * MIB)
        )
    )
    target = tmp_path / "pod" / "dev" / "growing"
    plugin.node.NodePublishVolume(
        csi.NodePublishVolumeRequest(
            volume_id=volume.volume_id,
            publish_context=context,
            staging_target_path=str(staging),
            target_path=str(target),
            volume_capability=cap,
        )
    )
    grown = plugin.node.NodeExpandVolume(
        csi.NodeExpandVolumeRequest(
            volume_id=volume.volume_id, volume_path=str(target), staging_target_path=str(staging)
        )
    )
    assert grown.capacity_bytes == 128 * MIB
    with open(staged_device, "r+b") as device:
        device.seek(100 * MIB)
        device.write(b"beyond the old end" * 100)
        device.flush()
        os.fsync(device.fileno())
    lifecycle_end(plugin, volume, staging, [target])
    assert leftovers(tmp_path) == []


def plugin_state_devices(plugin) -> list[str]:
    from csi_driver.node_state import NodeState

    return [v.device for v in NodeState(plugin.config.state_dir).all()]


def has_capability(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def test_mount_flags_are_honoured(plugin, tmp_path):
    cap = mount_cap(flags=["noatime", "nodiratime"])
    volume, _context, staging = lifecycle_start(plugin, tmp_path, "flags", cap)
    options = next(line.split()[3] for line in Path("/proc/mounts").read_text().splitlines() if str(staging) in line)
    assert "noatime" in options.split(",")
    lifecycle_end(plugin, volume, staging, [])


def test_a_single_writer_volume_is_published_at_one_target_only(plugin, tmp_path):
    cap = mount_cap(mode=Mode.SINGLE_NODE_SINGLE_WRITER)
    volume, context, staging = lifecycle_start(plugin, tmp_path, "single", cap)

    def publish(target: Path) -> csi.NodePublishVolumeRequest:
        return csi.NodePublishVolumeRequest(
            volume_id=volume.volume_id, publish_context=context, staging_target_path=str(staging),
            target_path=str(target), volume_capability=cap,
        )  # fmt: skip

    first, second = tmp_path / "pod-a" / "data", tmp_path / "pod-b" / "data"
    plugin.node.NodePublishVolume(publish(first))
    plugin.node.NodePublishVolume(publish(first))  # the same target again: idempotent
    assert code(plugin.node.NodePublishVolume, publish(second)) == grpc.StatusCode.FAILED_PRECONDITION
    assert not os.path.ismount(second)  # refused before anything was mounted
    plugin.node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=volume.volume_id, target_path=str(first)))
    plugin.node.NodePublishVolume(publish(second))  # the one target moved
    lifecycle_end(plugin, volume, staging, [second])
    assert leftovers(tmp_path) == []


def test_a_stage_record_that_outlived_its_device_is_cleared_not_trusted(plugin, tmp_path):
    """The node lost its mounts, loop devices and FUSE (a reboot) but kept its state folder:
    staging the volume again attaches it afresh instead of answering from the stale record."""
    from csi_driver.node_state import NodeState

    cap = mount_cap()
    volume, context, staging = lifecycle_start(plugin, tmp_path, "stale", cap)
    (staging / "kept.txt").write_text("written before the reboot\n")
    record = NodeState(plugin.config.state_dir).get(volume.volume_id)
    subprocess.run(["umount", str(staging)], check=True)  # everything but the record goes
    subprocess.run(["losetup", "-d", record.device], check=True)
    subprocess.run(["fusermount3", "-u", record.fuse_dir], check=True)
    stage = csi.NodeStageVolumeRequest(
        volume_id=volume.volume_id, publish_context=context, staging_target_path=str(staging), volume_capability=cap
    )
    plugin.node.NodeStageVolume(stage)
    assert os.path.ismount(staging)
    assert (staging / "kept.txt").read_text() == "written before the reboot\n"
    lifecycle_end(plugin, volume, staging, [])
    assert leftovers(tmp_path) == []


def test_unstage_after_the_array_and_nbdfuse_died_cleans_up_and_a_later_stage_works(plugin, array_proc, tmp_path):
    """kill -9 of the array under a staged volume, and its nbdfuse gone too (it died, or the
    node plugin's container restarted under it): the FUSE mount answers ENOTCONN and the
    loop device's file reads `... (deleted)`. Unstage must still take out what is ours (it
    used to answer OK and leave both, and every later stage of the volume on the node then
    failed with ENOTCONN), and the volume stages again once the array is back, with what
    was written before."""
    cap = mount_cap()
    volume, context, staging = lifecycle_start(plugin, tmp_path, "orphaned", cap)
    (staging / "before.txt").write_text("kept")
    subprocess.run(["sync", "-f", str(staging / "before.txt")], check=True)
    array_proc.kill()
    subprocess.run(["pkill", "-KILL", "-f", f"nbdfuse .*{plugin.config.state_dir}"], check=True)
    fuse_dirs = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                 if line.startswith("/dev/fuse") and str(tmp_path) in line]  # fmt: skip
    wait_progressing(lambda: [_dead(Path(d)) for d in fuse_dirs], all, "the FUSE mount losing nbdfuse")
    unstage = csi.NodeUnstageVolumeRequest(volume_id=volume.volume_id, staging_target_path=str(staging))
    plugin.node.NodeUnstageVolume(unstage)
    assert leftovers(tmp_path) == []
    array_proc.start()
    stage = csi.NodeStageVolumeRequest(
        volume_id=volume.volume_id, publish_context=context, staging_target_path=str(staging), volume_capability=cap
    )
    plugin.node.NodeStageVolume(stage)
    assert (staging / "before.txt").read_text() == "kept"
    lifecycle_end(plugin, volume, staging, [])
    assert leftovers(tmp_path) == []


def _dead(path: Path) -> bool:
    try:
        path.lstat()
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def test_a_small_xfs_volume_is_made_big_enough_to_stage(plugin, tmp_path):
    """mkfs.xfs makes nothing under 300 MiB: a 64 MiB xfs claim used to be created as asked
    and fail at every NodeStage; it is created at 300 MiB and stages."""
    cap = mount_cap(fs="xfs")
    volume, _context, staging = lifecycle_start(plugin, tmp_path, "small-xfs", cap, 64 * MIB)
    assert volume.capacity_bytes == 300 * MIB
    (staging / "orders.txt").write_text("order 1\n")
    assert os.statvfs(staging).f_blocks * os.statvfs(staging).f_frsize > 200 * MIB
    lifecycle_end(plugin, volume, staging, [])
    assert leftovers(tmp_path) == []
