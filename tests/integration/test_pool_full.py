"""A full pool: the host write gets ENOSPC, nothing already written is damaged."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest

from ccopy.launch import ArrayProcessHandle
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from csi_driver.attach import nbd_uri
from tests.conftest import require_root
from tests.integration.clients import qemu_io
from tests.integration.nbd_raw import RawClient

MIB = 1 << 20
ENOSPC = 28


@pytest.fixture
def small_pool(tmp_path: Path):
    require_root()
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    handle = ArrayProcessHandle(pool=mount / "pool", serial=5, log_path=tmp_path / "array.log").start()
    yield handle
    handle.stop()
    subprocess.run(["umount", str(mount)], check=True)


def test_writes_past_pool_capacity_get_enospc_and_earlier_data_survives(small_pool):
    with grpc.insecure_channel(small_pool.api_address) as channel:
        stub = pb_grpc.ArrayStub(channel)
        # Thin provisioning lets us promise far more than the pool has.
        stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="keep", size_bytes=64 * MIB))
        stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="fill", size_bytes=64 * MIB))
        qemu_io(nbd_uri(small_pool.nbd_address, "keep"), "write -P 0x4b 0 4M", "flush")
        client = RawClient(small_pool.nbd_address)
        client.go("fill")
        errors = [client.write(i * MIB, b"\xff" * MIB) for i in range(40)]
        assert ENOSPC in errors, errors
        assert set(errors) <= {0, ENOSPC}
        client.close()
        pool = stub.GetPool(pb.GetPoolRequest())
        assert pool.provisioned_bytes == 128 * MIB > pool.total_bytes
    qemu_io(nbd_uri(small_pool.nbd_address, "keep"), "read -P 0x4b 0 4M")


def test_with_a_snapshot_a_write_whose_copy_finds_no_room_gets_enospc_and_the_snapshot_keeps_its_data(small_pool):
    """The copy for a snapshot comes first: when the pool cannot take it the host write is
    refused with ENOSPC and the LDEV keeps its old data, so the snapshot still reads it."""
    with grpc.insecure_channel(small_pool.api_address) as channel:
        stub = pb_grpc.ArrayStub(channel)
        keep = stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="keep", size_bytes=8 * MIB))
        stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="fill", size_bytes=64 * MIB))
        qemu_io(nbd_uri(small_pool.nbd_address, "keep"), "write -P 0x4b 0 8M", "flush")
        stub.CreateSnapshot(pb.CreateSnapshotRequest(name="before", ldev_id=keep.id))
        client = RawClient(small_pool.nbd_address)
        client.go("fill")
        assert ENOSPC in [client.write(i * MIB, b"\xff" * MIB) for i in range(40)]  # the pool is full now
        client.close()
        client = RawClient(small_pool.nbd_address)
        client.go("keep")
        results = [client.write(i * MIB, b"\xee" * MIB) for i in range(8)]
        client.close()
    assert ENOSPC in results and set(results) <= {0, ENOSPC}, results
    qemu_io(nbd_uri(small_pool.nbd_address, "snapshots/before"), "read -P 0x4b 0 8M", read_only=True)
    for i, result in enumerate(results):  # a refused write left its MiB as it was
        qemu_io(nbd_uri(small_pool.nbd_address, "keep"), f"read -P {0xEE if result == 0 else 0x4B} {i}M 1M")
