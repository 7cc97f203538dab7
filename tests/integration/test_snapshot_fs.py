"""A file system snapshotted while files are being written: the clone of the
snapshot is a state the file system could have crashed into, so it mounts
(replaying its journal) and fsck finds it clean."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ccopy_api import array_pb2 as pb
from csi_driver.attach import attached, mounted, nbd_uri
from tests.conftest import require_root, require_tools, wait_for

MIB = 1 << 20


def writer(root: Path, stop: threading.Event, count: list[int]) -> None:
    i = 0
    while not stop.is_set():
        path = root / f"f{i % 200}.bin"
        with open(path, "wb") as f:
            f.write(os.urandom(64 * 1024 + i % 4096))
            if i % 5 == 0:
                f.flush()
                os.fsync(f.fileno())
        if i % 7 == 0:
            (root / f"d{i % 13}").mkdir(exist_ok=True)
        i += 1
        count[0] = i


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_snapshot_during_writes_clones_to_a_clean_file_system(array_proc, make_ldev, stub, tmp_path: Path, fs: str):
    require_root()
    require_tools("nbdfuse", "losetup", f"mkfs.{fs}")
    ldev = make_ldev(f"live-{fs}", 512 * MIB)
    source_uri = nbd_uri(array_proc.nbd_address, ldev.name)
    snapshots = []
    with attached(source_uri, tmp_path / "fuse-src") as device:
        subprocess.run([f"mkfs.{fs}", "-q", device], check=True, capture_output=True)
        with mounted(device, tmp_path / "mnt-src") as root:
            stop, count = threading.Event(), [0]
            thread = threading.Thread(target=writer, args=(root, stop, count))
            thread.start()
            try:
                for n in range(3):
                    time.sleep(0.4)
                    snapshots.append(
                        stub.CreateSnapshot(pb.CreateSnapshotRequest(name=f"{fs}-hot-{n}", ldev_id=ldev.id))
                    )
            finally:
                stop.set()
                thread.join()
            assert count[0] > 20, "the writer barely ran"
    for snap in snapshots:
        clone = stub.CloneLdev(pb.CloneLdevRequest(open_to_all=True, name=f"{snap.name}-clone", snapshot_id=snap.id))
        assert wait_for(lambda c=clone: stub.GetLdev(pb.GetLdevRequest(id=c.id)).state == pb.LDEV_STATE_NORMAL, 60)
        with attached(nbd_uri(array_proc.nbd_address, clone.export_name), tmp_path / f"fuse-{snap.id}") as device:
            with mounted(device, tmp_path / f"mnt-{snap.id}") as root:  # replays the journal
                assert any(root.iterdir())
            fsck = ["e2fsck", "-f", "-n"] if fs == "ext4" else ["xfs_repair", "-n"]
            result = subprocess.run([*fsck, device], capture_output=True, text=True)
            assert result.returncode == 0, result.stdout + result.stderr
