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
