"""kill -9 the array: what was flushed (data) or reported (metadata) is still there."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import grpc

from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from csi_driver.attach import nbd_uri
from tests.conftest import require_tools
from tests.integration.clients import data_runs, qemu_io
from tests.integration.nbd_raw import FLUSH, RawClient

MIB = 1 << 20


def test_flushed_data_and_metadata_survive_kill_9(array_proc, make_ldev, stub):
    a = make_ldev("durable-a", 32 * MIB, app="shop", pvc="shop/sales")
    make_ldev("durable-b", 16 * MIB, read_only=False)
    uri_a = nbd_uri(array_proc.nbd_address, "durable-a")
    uri_b = nbd_uri(array_proc.nbd_address, "durable-b")
    qemu_io(uri_a, "write -P 0x61 0 8M", "write -P 0x62 20M 1M", "flush")
    qemu_io(uri_b, "write -f -P 0x63 1M 1M")  # FUA instead of FLUSH
    qemu_io(uri_a, "discard 2M 1M", "flush")
    stub.ExpandLdev(pb.ExpandLdevRequest(id=a.id, new_size_bytes=48 * MIB))
    stub.UpdateLdevLabels(pb.UpdateLdevLabelsRequest(id=a.id, set={"tier": "gold"}, remove=["app"]))

    assert array_proc.kill() == -9
    array_proc.start()

    with grpc.insecure_channel(array_proc.api_address) as channel:
        after = pb_grpc.ArrayStub(channel).GetLdev(pb.GetLdevRequest(name="durable-a"))
    assert after.id == a.id and after.size_bytes == 48 * MIB
    assert dict(after.labels) == {"pvc": "shop/sales", "tier": "gold"}
    qemu_io(uri_a, "read -P 0x61 0 2M", "read -P 0 2M 1M", "read -P 0x61 3M 5M", "read -P 0x62 20M 1M")
    qemu_io(uri_b, "read -P 0x63 1M 1M", "read -P 0 0 1M")
    assert data_runs(uri_a) == [(0, 2 * MIB), (3 * MIB, 5 * MIB), (20 * MIB, MIB)]


def test_kill_9_with_a_client_mid_write_loses_nothing_acknowledged_by_flush(array_proc, make_ldev):
    make_ldev("midwrite", 16 * MIB)
    client = RawClient(array_proc.nbd_address)
    client.go("midwrite")
    for i in range(8):
        assert client.write(i * MIB, bytes([i + 1]) * MIB) == 0
    client.request(FLUSH)
    assert client.simple_reply()[0] == 0
    # An unflushed, partly sent write when the array dies:
    client.sock.sendall(b"\x25\x60\x95\x13" + bytes(24)[:4])
    array_proc.kill()
    client.close()
    array_proc.start()
    uri = nbd_uri(array_proc.nbd_address, "midwrite")
    qemu_io(uri, *[f"read -P {i + 1} {i}M 1M" for i in range(8)])


class SyscallTrace:
    """strace attached to the array process, counting fdatasync calls."""

    def __init__(self, pid: int, out: Path) -> None:
        require_tools("strace")
        self.out = out
        self.proc = subprocess.Popen(
            ["strace", "-f", "-qq", "-e", "trace=fdatasync,fsync", "-o", str(out), "-p", str(pid)],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # strace needs a moment to attach to every thread

    def syncs(self) -> int:
        time.sleep(0.2)
        return sum(1 for line in self.out.read_text().splitlines() if "sync(" in line and "= 0" in line)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_flush_and_fua_reach_stable_storage_and_plain_writes_do_not_wait(array_proc, make_ldev, tmp_path: Path):
    """Page cache survives kill -9, so only the syscalls prove power-loss durability."""
    make_ldev("synced", 8 * MIB)
    client = RawClient(array_proc.nbd_address)
    client.go("synced")
    assert array_proc.process is not None
    trace = SyscallTrace(array_proc.process.pid, tmp_path / "strace.out")
    try:
        for i in range(16):
            assert client.write(i * 4096, b"p" * 4096) == 0
        plain = trace.syncs()
        client.request(FLUSH)
        assert client.simple_reply()[0] == 0
        after_flush = trace.syncs()
        assert client.write(0, b"f" * 4096, flags=1) == 0  # NBD_CMD_FLAG_FUA
        after_fua = trace.syncs()
    finally:
        trace.stop()
        client.close()
    assert plain == 0  # the control: plain writes are not synced (so the count can move)
    assert after_flush == 1
    assert after_fua == 2


def test_graceful_stop_syncs_open_ldevs(array_proc, make_ldev, tmp_path: Path):
    make_ldev("graceful", 8 * MIB)
    client = RawClient(array_proc.nbd_address)
    client.go("graceful")
    assert client.write(0, b"g" * 4096) == 0
    assert array_proc.process is not None
    trace = SyscallTrace(array_proc.process.pid, tmp_path / "strace.out")
    assert array_proc.stop() == 0
    trace.proc.wait(10)
    client.close()
    assert trace.syncs() >= 1
    # The open session closed before the array closed its files, not after.
    assert "level=error" not in array_proc.log_path.read_text()
    array_proc.start()
    qemu_io(nbd_uri(array_proc.nbd_address, "graceful"), "read -P 0x67 0 4k")
