"""Asynchronous remote copy between two real arrays: initial copy, journal, apply."""

from __future__ import annotations

import hashlib
import os

from ccopy_api import array_pb2 as pb
from tests.integration.nbd_raw import RawClient
from tests.replication.conftest import export_of, read_all

MIB = 1 << 20


def write(address: str, export: str, offset: int, data: bytes) -> None:
    client = RawClient(address)
    client.go(export)
    assert client.write(offset, data) == 0
    client.close()


def test_pair_copies_then_replicates_and_the_svols_equal_the_pvols(sites):
    stock = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="stock", size_bytes=16 * MIB))
    sales = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="sales", size_bytes=16 * MIB))
    before = os.urandom(3 * MIB)
    write(sites.main.nbd_address, "stock", MIB, before)  # written before pairing: initial copy
    pairs = [
        sites.main_stub.CreatePair(
            pb.CreatePairRequest(group_name="shop", pvol_id=ldev.id, journal_capacity_bytes=64 * MIB)
        )
        for ldev in (stock, sales)
    ]
    assert all(p.role == "main" and p.remote_serial == 2002 for p in pairs)
    for i in range(20):  # written after: journal
        write(sites.main.nbd_address, "sales", i * 4096, os.urandom(4096))
        write(sites.main.nbd_address, "stock", 8 * MIB + i * 512, bytes([i]) * 512)
    client = RawClient(sites.main.nbd_address)
    client.go("stock")
    client.request(4, 2 * MIB, MIB)  # TRIM travels too
    assert client.simple_reply()[0] == 0
    client.close()
    status = sites.wait_in_sync("shop")
    assert status.role == "backup" and status.applied_seq >= 41 and status.lag_seconds == 0
    for pvol, pair in zip((stock, sales), pairs, strict=True):
        main_bytes = read_all(sites.main.nbd_address, pvol.name, 16 * MIB)
        svol_export = export_of(sites.backup_stub, pair.remote_ldev_id)
        backup_bytes = read_all(sites.backup.nbd_address, svol_export, 16 * MIB)
        assert hashlib.sha256(main_bytes).digest() == hashlib.sha256(backup_bytes).digest(), pvol.name
    svol = sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pairs[0].remote_ldev_id))
    assert svol.read_only  # hosts only read an S-VOL while it is paired
    assert svol.open_to_all  # host access follows the P-VOL: opened by name here, so there
    pvc = {"csi.consistentcopy.io/k8s-pvc/name": "orders", "csi.consistentcopy.io/volume-mode": "Block"}
    closed = sites.main_stub.CreateLdev(pb.CreateLdevRequest(name="closed", size_bytes=MIB, labels=pvc))
    closed_pair = sites.main_stub.CreatePair(pb.CreatePairRequest(group_name="shop", pvol_id=closed.id))
    closed_svol = sites.backup_stub.GetLdev(pb.GetLdevRequest(id=closed_pair.remote_ldev_id))
    assert not closed_svol.open_to_all
    assert dict(closed_svol.labels) == {**pvc, "ccopy.svol-of": f"1001:{closed.id:06x}"}  # the PVC's metadata travels
    main_group = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))
    assert main_group.confirmed_seq == main_group.main_seq and main_group.pending_bytes == 0  # trimmed


def test_pair_and_journal_status_from_the_cli(sites):
    import json
    import subprocess
    import sys

    def ctl(address, *args):
        result = subprocess.run(
            [sys.executable, "-m", "ccopy", "ctl", "--array", address, *args], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="orders", size_bytes=8 * MIB))
    created = json.loads(ctl(sites.main.api_address, "-o", "json", "pair", "create", "orders", "--group", "crm",
                             "--journal-size", "32MiB"))  # fmt: skip
    assert created["role"] == "main" and created["state"] in ("COPY", "PAIR")
    write(sites.main.nbd_address, "orders", 0, b"order" * 100)
    sites.wait_in_sync("crm")
    listed = ctl(sites.main.api_address, "pair", "list")
    assert "PAIR" in listed and "orders" in listed.splitlines()[1]  # the LDEV's name and export, not ids alone
    shown = ctl(sites.backup.api_address, "journal", "show", "crm")
    assert "backup side" in shown and "lag" in shown and "last contact" in shown and "pairs of crm:" in shown
    point = next(line for line in shown.splitlines() if line.startswith("recovery point"))
    assert not point.rstrip().endswith("none"), point  # the backup holds writes up to a known main-site time
    status = json.loads(ctl(sites.backup.api_address, "-o", "json", "journal", "show", "crm"))
    assert status["applied_seq"] == status["main_seq"]
    split = ctl(sites.main.api_address, "pair", "split", "crm", "--svol-writable")
    assert "after sequence" in split and "PSUS" in split
    resynced = json.loads(ctl(sites.main.api_address, "-o", "json", "pair", "resync", "crm"))
    assert not resynced.get("split") and resynced["pairs"][0]["state"] in ("COPY", "PAIR")
    sites.wait_in_sync("crm")
    taken = ctl(sites.backup.api_address, "pair", "takeover", "crm", "--force")
    assert "SSWS" in taken and "lost by this takeover (given up): 0 records" in taken
    assert "counted by the main array" in taken


def test_pairing_refusals_leave_nothing_behind(sites, tmp_path):
    import grpc

    from ccopy.launch import ArrayProcessHandle, free_port
    from tests.api.test_array_api import code_of

    pvol = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="p", size_bytes=8 * MIB))
    wrong_size = sites.backup_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="small", size_bytes=4 * MIB))
    busy = sites.backup_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="busy", size_bytes=8 * MIB))
    sites.backup_stub.PublishLdev(pb.PublishLdevRequest(ldev_id=busy.id, host_id="analytics-node"))
    refusals = [
        (wrong_size.id, grpc.StatusCode.FAILED_PRECONDITION),
        (busy.id, grpc.StatusCode.FAILED_PRECONDITION),
        (999, grpc.StatusCode.NOT_FOUND),
    ]
    for svol, expected in refusals:
        request = pb.CreatePairRequest(group_name="g", pvol_id=pvol.id, svol_id=svol)
        assert code_of(sites.main_stub.CreatePair, request) == expected
    assert sites.main_stub.ListPairs(pb.ListPairsRequest()).pairs == []
    assert code_of(sites.main_stub.GetJournalGroup, pb.GetJournalGroupRequest(name="g")) == grpc.StatusCode.NOT_FOUND
    # A given S-VOL that fits is taken, and becomes read-only to hosts.
    good = sites.backup_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="good", size_bytes=8 * MIB))
    pair = sites.main_stub.CreatePair(pb.CreatePairRequest(group_name="g", pvol_id=pvol.id, svol_id=good.id))
    assert pair.remote_ldev_id == good.id
    assert sites.backup_stub.GetLdev(pb.GetLdevRequest(id=good.id)).read_only

    lonely = ArrayProcessHandle(
        pool=tmp_path / "lonely", serial=3003, log_path=tmp_path / "lonely.log",
        extra_args=["--remote", f"127.0.0.1:{free_port()}"],
    ).start()  # fmt: skip
    try:
        with grpc.insecure_channel(lonely.api_address) as channel:
            from ccopy_api import array_pb2_grpc as pb_grpc

            stub = pb_grpc.ArrayStub(channel)
            ldev = stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="p", size_bytes=MIB))
            request = pb.CreatePairRequest(group_name="g", pvol_id=ldev.id)
            assert code_of(stub.CreatePair, request) == grpc.StatusCode.UNAVAILABLE  # the backup does not answer
            assert stub.ListPairs(pb.ListPairsRequest()).pairs == []
            assert stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).snapshot_count == 0
    finally:
        lonely.stop()
