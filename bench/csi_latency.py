"""CSI call latencies against a real array, the plugin served in-process.

    CreateVolume                 empty 1 GiB volume
    CreateSnapshot               of a volume holding 256 MiB, next to a
                                 hostpath-style snapshot: csi-driver-host-path
                                 snapshots a volume by archiving its data
                                 (tar), so its cost grows with the data; we
                                 time `tar -cf` of the same 256 MiB here
    CreateVolumeGroupSnapshot    of 8 volumes
    NodeStageVolume              attach + mkfs.ext4 + mount of a blank 1 GiB volume
    full lifecycle               create, publish, stage, publish, unpublish,
                                 unstage, unpublish, delete

Run as root: `python -m bench.csi_latency [--rounds 20]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from bench.nbd_fio import machine
from ccopy.launch import ArrayProcessHandle
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from csi_driver.config import CsiConfig
from csi_driver.server import create_server
from tests.integration.nbd_raw import RawClient

GIB = 1 << 30
MIB = 1 << 20
CAP = csi.VolumeCapability(
    mount=csi.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi.VolumeCapability.AccessMode(mode=csi.VolumeCapability.AccessMode.SINGLE_NODE_WRITER),
)


def timed(action: Callable[[int], object], rounds: int) -> list[float]:
    samples = []
    for n in range(rounds):
        start = time.perf_counter()
        action(n)
        samples.append((time.perf_counter() - start) * 1000)
    return sorted(samples)


def row(name: str, samples: list[float], note: str = "") -> str:
    p99 = samples[max(0, int(len(samples) * 0.99) - 1)]
    return f"| {name} | {samples[len(samples) // 2]:.1f} ms | {p99:.1f} ms | {len(samples)} | {note} |"


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.array = ArrayProcessHandle(pool=work / "pool", serial=7, log_path=work / "array.log").start()
        config = CsiConfig(
            endpoint="tcp://127.0.0.1:0", node_id="bench-node", array=self.array.api_address, state_dir=work / "state"
        )
        self.plugin = create_server(config)
        self.channel = grpc.insecure_channel(self.plugin.address)
        self.controller = csi_grpc.ControllerStub(self.channel)
        self.groups = csi_grpc.GroupControllerStub(self.channel)
        self.node = csi_grpc.NodeStub(self.channel)
        self.node.NodeGetInfo(csi.NodeGetInfoRequest())  # the node joins, as at kubelet's registration
        self.array_channel = grpc.insecure_channel(self.array.api_address)
        self.stub = pb_grpc.ArrayStub(self.array_channel)

    def close(self) -> None:
        self.channel.close()
        self.array_channel.close()
        self.plugin.stop()
        self.array.stop()

    def volume(self, name: str, size: int = GIB) -> csi.Volume:
        request = csi.CreateVolumeRequest(
            name=name, capacity_range=csi.CapacityRange(required_bytes=size), volume_capabilities=[CAP]
        )
        return self.controller.CreateVolume(request).volume

    def fill(self, name: str, nbytes: int) -> None:
        ldev = self.stub.GetLdev(pb.GetLdevRequest(name=name))
        publication = self.stub.PublishLdev(pb.PublishLdevRequest(ldev_id=ldev.id, host_id="filler"))
        client = RawClient(self.array.nbd_address)
        client.go(publication.export_name)
        block = os.urandom(4 * MIB)
        for offset in range(0, nbytes, len(block)):
            assert client.write(offset, block) == 0
        client.close()
        self.stub.UnpublishLdev(pb.UnpublishLdevRequest(ldev_id=ldev.id, host_id="filler"))

    def lifecycle(self, n: int, stage_only: bool = False) -> None:
        volume = self.volume(f"life-{n}" if not stage_only else f"stage-{n}")
        volume_id = volume.volume_id
        context = self.controller.ControllerPublishVolume(
            csi.ControllerPublishVolumeRequest(volume_id=volume_id, node_id="bench-node", volume_capability=CAP)
        ).publish_context
        staging = self.work / f"staging-{volume_id}"
        target = self.work / f"target-{volume_id}"
        stage = csi.NodeStageVolumeRequest(
            volume_id=volume_id, publish_context=context, staging_target_path=str(staging), volume_capability=CAP
        )
        start = time.perf_counter()
        self.node.NodeStageVolume(stage)
        self.stage_ms.append((time.perf_counter() - start) * 1000)
        self.node.NodePublishVolume(
            csi.NodePublishVolumeRequest(
                volume_id=volume_id, publish_context=context, staging_target_path=str(staging),
                target_path=str(target), volume_capability=CAP,
            )
        )  # fmt: skip
        self.node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target)))
        self.node.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=str(staging)))
        self.controller.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(volume_id=volume_id))
        self.controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume_id))

    def run(self, rounds: int) -> list[str]:
        lines = ["| call | p50 | p99 | samples | notes |", "| --- | --- | --- | --- | --- |"]
        lines.append(row("CreateVolume (1 GiB, empty)", timed(lambda n: self.volume(f"cv-{n}"), rounds)))

        source = self.volume("snap-source")
        self.fill("snap-source", 256 * MIB)
        snaps = timed(
            lambda n: self.controller.CreateSnapshot(
                csi.CreateSnapshotRequest(name=f"s-{n}", source_volume_id=source.volume_id)
            ),
            rounds,
        )
        lines.append(row("CreateSnapshot (256 MiB of data)", snaps, "copy-on-write: nothing copied"))
        data = self.work / "hostpath-volume"
        data.mkdir()
        (data / "data.bin").write_bytes(os.urandom(256 * MIB))
        tars = timed(
            lambda n: subprocess.run(
                ["tar", "-cf", str(self.work / f"snap-{n}.tar"), "-C", str(data), "."], check=True
            ),
            max(3, rounds // 5),
        )
        lines.append(row("hostpath-style snapshot: tar of the same 256 MiB", tars, "grows with the data"))

        members = [self.volume(f"g-{i}").volume_id for i in range(8)]
        groups = timed(
            lambda n: self.groups.CreateVolumeGroupSnapshot(
                csi.CreateVolumeGroupSnapshotRequest(name=f"vgs-{n}", source_volume_ids=members)
            ),
            rounds,
        )
        lines.append(row("CreateVolumeGroupSnapshot (8 volumes)", groups, "one write barrier for all 8"))

        self.stage_ms: list[float] = []
        life = timed(self.lifecycle, max(5, rounds // 2))
        lines.append(row("NodeStageVolume (attach, mkfs.ext4, mount; 1 GiB)", sorted(self.stage_ms)))
        lines.append(row("full lifecycle (create ... delete)", life))
        return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: NodeStage mounts file systems", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ccopy-csibench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            lines = bench.run(args.rounds)
        finally:
            bench.close()
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
