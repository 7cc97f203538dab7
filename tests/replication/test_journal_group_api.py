"""Journal groups as objects of their own: created empty (a consistency group before
its first volume), listed, deleted once they hold no pairs."""

from __future__ import annotations

import os

import grpc

from ccopy_api import array_pb2 as pb
from tests.api.test_array_api import code_of
from tests.replication.conftest import export_of, read_all
from tests.replication.test_remote_copy import write

MIB = 1 << 20


def test_an_empty_group_takes_pairs_later_and_keeps_its_capacity_and_mode(sites):
    created = sites.main_stub.CreateJournalGroup(
        pb.CreateJournalGroupRequest(name="shop", capacity_bytes=64 * MIB, synchronous=True)
    )
    assert (created.role, created.capacity_bytes, created.synchronous) == ("main", 64 * MIB, True)
    assert not created.pairs
    again = sites.main_stub.CreateJournalGroup(
        pb.CreateJournalGroupRequest(name="shop", capacity_bytes=64 * MIB, synchronous=True)
    )
    assert again.id == created.id  # idempotent
    listed = sites.main_stub.ListJournalGroups(pb.ListJournalGroupsRequest()).groups
    assert [g.name for g in listed] == ["shop"]

    ldev = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="stock", size_bytes=8 * MIB))
    pair = sites.main_stub.CreatePair(
        pb.CreatePairRequest(group_name="shop", pvol_id=ldev.id, journal_capacity_bytes=64 * MIB)
    )
    sites.wait_in_sync("shop")
    data = os.urandom(MIB)
    write(sites.main.nbd_address, "stock", 0, data)  # synchronous: applied at the backup when acknowledged
    assert read_all(sites.backup.nbd_address, export_of(sites.backup_stub, pair.remote_ldev_id), MIB) == data
    backup_side = sites.backup_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))
    assert (backup_side.role, backup_side.capacity_bytes) == ("backup", 64 * MIB)


def test_a_group_with_pairs_is_not_deleted_and_an_empty_one_is(sites):
    sites.main_stub.CreateJournalGroup(pb.CreateJournalGroupRequest(name="crm"))
    ldev = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="contacts", size_bytes=8 * MIB))
    sites.main_stub.CreatePair(pb.CreatePairRequest(group_name="crm", pvol_id=ldev.id))
    request = pb.DeleteJournalGroupRequest(name="crm")
    assert code_of(sites.main_stub.DeleteJournalGroup, request) == grpc.StatusCode.FAILED_PRECONDITION
    assert sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="crm")).pairs  # nothing changed
    sites.wait_in_sync("crm")
    sites.main_stub.DeletePair(pb.DeletePairRequest(pvol_id=ldev.id))
    sites.main_stub.DeleteJournalGroup(request)
    assert code_of(sites.main_stub.GetJournalGroup, pb.GetJournalGroupRequest(name="crm")) == grpc.StatusCode.NOT_FOUND
    # The backup's side went with it (its S-VOL stays, an ordinary LDEV holding the copy).
    backup_side = code_of(sites.backup_stub.GetJournalGroup, pb.GetJournalGroupRequest(name="crm"))
    assert backup_side == grpc.StatusCode.NOT_FOUND
    sites.main_stub.DeleteJournalGroup(request)  # gone: still success


def test_bad_journal_groups_are_refused(sites):
    create = sites.main_stub.CreateJournalGroup
    assert code_of(create, pb.CreateJournalGroupRequest(name="")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(create, pb.CreateJournalGroupRequest(name="x" * 200)) == grpc.StatusCode.INVALID_ARGUMENT
    tiny = pb.CreateJournalGroupRequest(name="tiny", capacity_bytes=4096)
    assert code_of(create, tiny) == grpc.StatusCode.INVALID_ARGUMENT
    create(pb.CreateJournalGroupRequest(name="shop", capacity_bytes=64 * MIB))
    other_size = pb.CreateJournalGroupRequest(name="shop", capacity_bytes=32 * MIB)
    assert code_of(create, other_size) == grpc.StatusCode.ALREADY_EXISTS
    other_mode = pb.CreateJournalGroupRequest(name="shop", capacity_bytes=64 * MIB, synchronous=True)
    assert code_of(create, other_mode) == grpc.StatusCode.ALREADY_EXISTS


def test_the_declared_rpo_is_kept_changed_alone_and_checked(sites):
    stub = sites.main_stub
    group = stub.CreateJournalGroup(pb.CreateJournalGroupRequest(name="shop", rpo_seconds=30))
    assert group.rpo_seconds == 30
    stub.UpdateJournalGroup(pb.UpdateJournalGroupRequest(name="shop", inflow_control=True))
    group = stub.UpdateJournalGroup(pb.UpdateJournalGroupRequest(name="shop", rpo_seconds=10))
    assert (group.rpo_seconds, group.inflow_control) == (10, True)  # one setting changes, the others stay
    group = stub.UpdateJournalGroup(pb.UpdateJournalGroupRequest(name="shop", inflow_control=False))
    assert (group.rpo_seconds, group.inflow_control) == (10, False)
    assert stub.CreateJournalGroup(pb.CreateJournalGroupRequest(name="shop", rpo_seconds=5)).rpo_seconds == 5
    negative = pb.UpdateJournalGroupRequest(name="shop", rpo_seconds=-1)
    assert code_of(stub.UpdateJournalGroup, negative) == grpc.StatusCode.INVALID_ARGUMENT
    assert stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop")).rpo_seconds == 5
