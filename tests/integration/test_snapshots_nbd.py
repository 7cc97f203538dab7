"""Snapshots through the data path, with real NBD clients and real processes."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import grpc
import pytest

from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from csi_driver.attach import nbd_uri
from tests.conftest import require_tools, wait_for
from tests.integration.clients import data_runs, qemu_io
from tests.integration.nbd_raw import RawClient

MIB = 1 << 20


def snapshot(stub, name: str, ldev_id: int) -> pb.Snapshot:
    return stub.CreateSnapshot(pb.CreateSnapshotRequest(name=name, ldev_id=ldev_id))


def export_bytes(address: str, export: str, length: int) -> bytes:
    client = RawClient(address)
    client.go(export)
    out = bytearray()
    while len(out) < length:
        step = min(8 * MIB, length - len(out))
        error, data = client.read(len(out), step)
        assert error == 0
        out += data
    client.disconnect()
    return bytes(out)


def test_snapshot_export_reads_the_old_pattern(array_proc, make_ldev, stub):
    ldev = make_ldev("pat", 32 * MIB)
    uri = nbd_uri(array_proc.nbd_address, "pat")
    qemu_io(uri, "write -P 0xaa 0 8M", "write -P 0xcc 20M 1M")
    snap = snapshot(stub, "before", ldev.id)
    qemu_io(uri, "write -P 0xbb 0 4M", "discard 20M 1M", "write -P 0xdd 30M 1M")
    snap_uri = nbd_uri(array_proc.nbd_address, snap.export_name)
    qemu_io(
        snap_uri, "read -P 0xaa 0 8M", "read -P 0 8M 12M", "read -P 0xcc 20M 1M", "read -P 0 30M 1M", read_only=True
    )
    qemu_io(uri, "read -P 0xbb 0 4M", "read -P 0xaa 4M 4M", "read -P 0 20M 1M", "read -P 0xdd 30M 1M")
    assert data_runs(snap_uri) == [(0, 8 * MIB), (20 * MIB, MIB)]
    out = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 1 0 4k", snap_uri], capture_output=True, text=True)
    assert out.returncode != 0 or "failed" in out.stdout + out.stderr  # read-only export


def test_many_snapshots_interleaved_with_writes_match_a_model(array_proc, make_ldev, stub, tmp_path: Path):
    require_tools("nbdcopy")
    size = 8 * MIB
    ldev = make_ldev("model", size)
    rng = random.Random(42)
    live = bytearray(size)
    expected: dict[str, bytes] = {}
    client = RawClient(array_proc.nbd_address)
    client.go("model")
    for n in range(24):
        for _ in range(rng.randrange(1, 6)):
            offset = rng.randrange(0, size - 1)
            length = min(rng.randrange(1, 300_000), size - offset)
            data = bytes([rng.randrange(1, 256)]) * length
            assert client.write(offset, data) == 0
            live[offset : offset + length] = data
        name = f"m{n}"
        snapshot(stub, name, ldev.id)
        expected[name] = bytes(live)
    client.close()
    for name, content in expected.items():
        out = tmp_path / f"{name}.raw"
        subprocess.run(["nbdcopy", nbd_uri(array_proc.nbd_address, f"snapshots/{name}"), str(out)], check=True)
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(content).digest(), name
        out.unlink()


def test_kill_9_during_copy_on_write_keeps_every_snapshot(array_proc, make_ldev, stub):
    size = 16 * MIB
    ldev = make_ldev("crashy", size)
    rng = random.Random(9)
    base = bytes(rng.randrange(256) for _ in range(4096)) * (size // 4096)
    client = RawClient(array_proc.nbd_address)
    client.go("crashy")
    for offset in range(0, size, 4 * MIB):
        assert client.write(offset, base[offset : offset + 4 * MIB]) == 0
    client.close()
    snapshot(stub, "k0", ldev.id)
    expected = {"k0": base}
    for round_ in range(1, 6):
        client = RawClient(array_proc.nbd_address)
        client.go("crashy")
        # Pipeline many overwrites without reading replies, then kill mid-stream.
        for _ in range(200):
            offset = rng.randrange(0, size // 4096) * 4096
            payload = bytes([round_]) * 4096
            client.sock.sendall(
                b"\x25\x60\x95\x13" + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + (7).to_bytes(8, "big")
                + offset.to_bytes(8, "big") + (4096).to_bytes(4, "big") + payload
            )  # fmt: skip
        array_proc.kill()
        client.close()
        array_proc.start()
        with grpc.insecure_channel(array_proc.api_address) as channel:
            after = pb_grpc.ArrayStub(channel)
            current = export_bytes(array_proc.nbd_address, "crashy", size)
            after.CreateSnapshot(pb.CreateSnapshotRequest(name=f"k{round_}", ldev_id=ldev.id))
            expected[f"k{round_}"] = current
        for name, content in expected.items():
            assert export_bytes(array_proc.nbd_address, f"snapshots/{name}", size) == content, name


def test_pool_full_fails_the_host_write_and_keeps_snapshots(tmp_path: Path):
    from tests.conftest import require_root

    require_root()
    from ccopy.launch import ArrayProcessHandle

    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], check=True)
    handle = ArrayProcessHandle(pool=mount / "pool", serial=6, log_path=tmp_path / "array.log").start()
    try:
        with grpc.insecure_channel(handle.api_address) as channel:
            stub = pb_grpc.ArrayStub(channel)
            ldev = stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="full", size_bytes=64 * MIB))
            original = bytes(range(256)) * (16 * MIB // 256)
            client = RawClient(handle.nbd_address)
            client.go("full")
            assert client.write(0, original) == 0
            stub.CreateSnapshot(pb.CreateSnapshotRequest(name="keep", ldev_id=ldev.id))
            # Overwriting needs room for the new data and for the preserved old chunks.
            errors = [client.write(i * MIB, b"\xee" * MIB) for i in range(64)]
            client.close()
            assert 28 in errors, errors
            assert export_bytes(handle.nbd_address, "snapshots/keep", 16 * MIB) == original
    finally:
        handle.stop()
        subprocess.run(["umount", str(mount)], check=True)


def test_snapshot_with_open_session_refuses_delete_then_deletes(array_proc, make_ldev, stub):
    ldev = make_ldev("busy", MIB)
    snap = snapshot(stub, "busy-snap", ldev.id)
    client = RawClient(array_proc.nbd_address)
    client.go(snap.export_name)
    with pytest.raises(grpc.RpcError) as err:
        stub.DeleteSnapshot(pb.DeleteSnapshotRequest(id=snap.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    client.disconnect()
    stub.DeleteSnapshot(pb.DeleteSnapshotRequest(id=snap.id))  # at once: DISC's close comes after the release


def test_after_disc_and_close_the_export_is_free_at_once(array_proc, make_ldev, stub):
    """A client that saw the server close after NBD_CMD_DISC may delete what it read, without retrying."""
    ldev = make_ldev("reader", MIB)
    for n in range(30):
        snap = snapshot(stub, f"read-{n}", ldev.id)
        client = RawClient(array_proc.nbd_address)
        client.go(snap.export_name)
        assert client.read(0, 4096)[0] == 0
        client.disconnect()
        stub.DeleteSnapshot(pb.DeleteSnapshotRequest(id=snap.id))


def _deleted(stub, snapshot_id: int) -> bool:
    try:
        stub.DeleteSnapshot(pb.DeleteSnapshotRequest(id=snapshot_id))
        return True
    except grpc.RpcError as exc:
        return exc.code() == grpc.StatusCode.NOT_FOUND


def test_clone_interrupted_by_kill_9_resumes_and_completes(array_proc, make_ldev, stub):
    ldev = make_ldev("big-src", 1 << 30)
    client = RawClient(array_proc.nbd_address)
    client.go("big-src")
    chunk = bytes(range(256)) * (4 * MIB // 256)
    for i in range(128):  # 512 MiB spread over the LDEV
        assert client.write(i * 8 * MIB, chunk) == 0
    client.close()
    clone = stub.CloneLdev(pb.CloneLdevRequest(open_to_all=True, name="big-clone", ldev_id=ldev.id))
    array_proc.kill()
    array_proc.start()
    with grpc.insecure_channel(array_proc.api_address) as channel:
        after = pb_grpc.ArrayStub(channel)
        assert wait_for(lambda: after.GetLdev(pb.GetLdevRequest(id=clone.id)).state == pb.LDEV_STATE_NORMAL, 120)
        assert after.ListSnapshots(pb.ListSnapshotsRequest()).snapshots == []
    log = array_proc.log_path.read_text()
    assert "clone_resumed" in log, "the clone finished before the kill: nothing was resumed"
    check = RawClient(array_proc.nbd_address)
    check.go("big-clone")
    for i in (0, 1, 63, 127):
        assert check.read(i * 8 * MIB, 4 * MIB) == (0, chunk)
        assert check.read(i * 8 * MIB + 4 * MIB, 4096) == (0, bytes(4096))
    check.close()
