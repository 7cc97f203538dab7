"""Fencing a main-side group (the demotion the csi-addons flows start a planned
relocation with): host writes refused from one barrier on, durably; replication goes on,
so the other site takes over losing nothing and fails back to the fenced array."""

from __future__ import annotations

import errno
import os

import grpc

from ccopy_api import array_pb2 as pb
from tests.api.test_array_api import code_of
from tests.integration.nbd_raw import RawClient
from tests.replication.conftest import export_of, read_all, when_linked
from tests.replication.test_split_resync import SIZE, paired_shop

MIB = 1 << 20


def fence(sites, fenced: bool) -> pb.JournalGroup:
    return sites.main_stub.FenceJournalGroup(pb.FenceJournalGroupRequest(name="shop", fenced=fenced))


def test_fenced_pvols_refuse_writes_from_open_sessions_and_new_ones_and_unfence_restores_them(sites):
    pairs = paired_shop(sites)
    client = RawClient(sites.main.nbd_address)
    client.go("stock")
    assert client.write(0, b"a" * 4096) == 0
    assert fence(sites, True).fenced
    assert client.write(0, b"b" * 4096) == errno.EPERM  # the session opened before the fence
    late = RawClient(sites.main.nbd_address)
    late.go("sales")
    assert late.write(0, b"c" * 4096) == errno.EPERM
    assert fence(sites, True).fenced  # idempotent
    sites.main.kill()  # durable: a restarted array keeps the fence
    sites.main.start()
    sites.reconnect()
    again = RawClient(sites.main.nbd_address)
    again.go("stock")
    assert again.write(0, b"d" * 4096) == errno.EPERM
    assert not fence(sites, False).fenced
    assert again.write(0, b"e" * 4096) == 0
    for c in (client, late, again):
        c.close()
    sites.wait_in_sync("shop")
    assert read_all(sites.backup.nbd_address, export_of(sites.backup_stub, pairs["stock"].remote_ldev_id), 4096) == (
        b"e" * 4096
    )


def test_planned_relocation_fence_takeover_failback_loses_nothing(sites):
    pairs = paired_shop(sites)
    data = os.urandom(2 * MIB)
    client = RawClient(sites.main.nbd_address)
    client.go("sales")
    assert client.write(MIB, data) == 0
    client.close()
    fence(sites, True)
    peer = sites.backup_stub.GetPeerJournalGroup(pb.GetJournalGroupRequest(name="shop"))
    assert peer.role == "main" and peer.fenced  # the backup sees the main side demoted
    taken = sites.backup_stub.Takeover(pb.TakeoverRequest(group_name="shop", force=True))
    assert taken.given_up.records == 0 and taken.given_up.exact  # the main array answered: nothing lost
    svol = pairs["sales"].remote_ldev_id
    assert read_all(sites.backup.nbd_address, export_of(sites.backup_stub, svol), 3 * MIB)[MIB:] == data

    old_main = sites.main_stub.RequestFailback(pb.FailbackRequest(group_name="shop"))
    assert old_main.role == "backup" and not old_main.fenced
    sites.wait_in_sync("shop", swapped=True)
    assert sites.main_stub.GetLdev(pb.GetLdevRequest(name="sales")).read_only  # an S-VOL now
    back = read_all(sites.main.nbd_address, "sales", SIZE)
    assert back == read_all(sites.backup.nbd_address, export_of(sites.backup_stub, svol), SIZE)


def test_refusals(sites):
    paired_shop(sites)
    failback = pb.FailbackRequest(group_name="shop")
    assert code_of(sites.main_stub.RequestFailback, failback) == grpc.StatusCode.FAILED_PRECONDITION  # not fenced
    fence(sites, True)
    ldev = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="late", size_bytes=MIB))
    join = pb.CreatePairRequest(group_name="shop", pvol_id=ldev.id)
    assert code_of(sites.main_stub.CreatePair, join) == grpc.StatusCode.FAILED_PRECONDITION
    at_backup = pb.FenceJournalGroupRequest(name="shop", fenced=True)
    assert code_of(sites.backup_stub.FenceJournalGroup, at_backup) == grpc.StatusCode.FAILED_PRECONDITION
    unknown = pb.FenceJournalGroupRequest(name="nope", fenced=True)
    assert code_of(sites.main_stub.FenceJournalGroup, unknown) == grpc.StatusCode.NOT_FOUND
    sites.main.stop()
    peer = pb.GetJournalGroupRequest(name="shop")
    assert code_of(sites.backup_stub.GetPeerJournalGroup, peer) == grpc.StatusCode.UNAVAILABLE
    sites.main.start()
    sites.reconnect()
    assert when_linked(sites.backup_stub.GetPeerJournalGroup, peer).fenced
