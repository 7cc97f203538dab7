"""A suspended journal group keeps tracking its P-VOLs' writes across a restart of the main array.

The black-box steps of issue 29, with two array processes and qemu-io writing over NBD:
`sales` and `stock` paired into one journal group with a 1 MiB journal; the backup
stopped; `sales` written until the group suspends (PFUS) while `stock` is not written;
the main array restarted (SIGTERM, and kill -9); then `stock` written; the backup back
and the group resynced. Before the fix `stock`'s S-VOL kept zeroes where its P-VOL had
the write, and every status said PAIR. Here every S-VOL equals its P-VOL, `ccopy ctl pair
verify` says so, and it reports the region of an S-VOL damaged behind the array's back.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from ccopy.launch import ArrayProcessHandle
from ccopy_api import array_pb2 as pb
from tests.replication.conftest import Sites, read_all, start_sites, stop_sites

MIB = 1 << 20
SIZE = 8 * MIB
CHUNK = 64 << 10
VERIFY_DIFFERS = 3  # `pair verify`'s exit status when regions differ


def qemu_write(address: str, export: str, offset: int, length: int, pattern: int) -> None:
    """A host write through a real NBD client we did not write."""
    host, port = address.rsplit(":", 1)
    url = f"nbd://{host}:{port}/{export}"
    subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P {pattern} {offset} {length}", url],
                   check=True, capture_output=True, timeout=60)  # fmt: skip


def ctl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ccopy", "ctl", "--array", address, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def states(sites: Sites, stub_of: str = "main") -> set[int]:
    stub = sites.main_stub if stub_of == "main" else sites.backup_stub
    return {p.state for p in stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop")).pairs}


def restart(handle: ArrayProcessHandle, how: str) -> None:
    handle.stop() if how == "SIGTERM" else handle.kill()
    handle.start()


@pytest.fixture
def sites(tmp_path):
    pair = start_sites(tmp_path)
    yield pair
    stop_sites(pair)


@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
def test_a_volume_written_only_after_a_restart_is_resynced(sites, how, tmp_path):
    ldevs = {name: sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=name, size_bytes=SIZE))
             for name in ("sales", "stock")}  # fmt: skip
    pairs = {name: sites.main_stub.CreatePair(pb.CreatePairRequest(
        group_name="shop", pvol_id=ldev.id, journal_capacity_bytes=MIB)) for name, ldev in ldevs.items()}  # fmt: skip
    sites.wait_in_sync("shop")

    sites.backup.stop()
    for offset in range(0, 4 * MIB, CHUNK):  # `sales` only, until the journal is full
        qemu_write(sites.main.nbd_address, "sales", offset, CHUNK, 0x11 + offset // CHUNK % 200)
        if states(sites) == {pb.PFUS}:
            break
    assert states(sites) == {pb.PFUS}

    restart(sites.main, how)
    sites.reconnect()
    group = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))
    assert group.overflowed and group.split  # remembered across the restart
    qemu_write(sites.main.nbd_address, "stock", 0, CHUNK, 0xAB)  # its first write since the suspension

    sites.backup.start()
    sites.reconnect()
    resync = ctl(sites.main.api_address, "pair", "resync", "shop")
    assert resync.returncode == 0, resync.stderr
    sites.wait_in_sync("shop")
    for name, pair in pairs.items():
        svol = sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pair.remote_ldev_id)).export_name
        main_bytes = read_all(sites.main.nbd_address, name, SIZE)
        assert hashlib.sha256(read_all(sites.backup.nbd_address, svol, SIZE)).digest() == hashlib.sha256(
            main_bytes).digest(), f"{name}'s S-VOL differs from its P-VOL"  # fmt: skip
    assert read_all(sites.main.nbd_address, "stock", CHUNK) == b"\xab" * CHUNK

    verified = ctl(sites.main.api_address, "pair", "verify", "shop")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # Damage one S-VOL behind its array's back: verify finds exactly that region.
    svol_file = tmp_path / "backup" / "ldevs" / f"{pairs['stock'].remote_ldev_id:06x}.ldev"
    fd = os.open(svol_file, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\x5a" * 512, 5 * MIB + 4096)
    finally:
        os.close(fd)
    damaged = ctl(sites.main.api_address, "-o", "json", "pair", "verify", "shop")
    assert damaged.returncode == VERIFY_DIFFERS, damaged.stdout + damaged.stderr
    assert str(5 * MIB) in damaged.stdout and "stock" in damaged.stdout, damaged.stdout
