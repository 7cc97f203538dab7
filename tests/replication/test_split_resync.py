"""Split a journal group, write on both sides, resync: equal again, and only the changed regions moved."""

from __future__ import annotations

import hashlib
import os

import grpc

from backend.diff_bitmap import REGION_BYTES
from ccopy_api import array_pb2 as pb
from tests.api.test_array_api import code_of
from tests.replication.conftest import export_of, read_all, when_linked
from tests.replication.test_remote_copy import write

MIB = 1 << 20
SIZE = 32 * MIB
R = REGION_BYTES


def digest(address: str, export: str) -> str:
    return hashlib.sha256(read_all(address, export, SIZE)).hexdigest()


def paired_shop(sites) -> dict[str, pb.Pair]:
    # LDEV numbers must not line up between the arrays, or a mix-up of the two would go unseen.
    sites.backup_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="unrelated", size_bytes=MIB))
    pairs = {}
    for name in ("stock", "sales"):
        ldev = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=name, size_bytes=SIZE))
        write(sites.main.nbd_address, name, 0, os.urandom(4 * MIB))
        request = pb.CreatePairRequest(group_name="shop", pvol_id=ldev.id, journal_capacity_bytes=64 * MIB)
        pairs[name] = sites.main_stub.CreatePair(request)
    sites.wait_in_sync("shop")
    return pairs


def test_split_writes_on_both_sides_and_resync(sites):
    pairs = paired_shop(sites)
    svol = {name: export_of(sites.backup_stub, p.remote_ldev_id) for name, p in pairs.items()}
    write(sites.main.nbd_address, "sales", MIB, b"journaled before the split" * 100)

    split = sites.main_stub.SplitPairs(pb.SplitPairsRequest(group_name="shop", svol_writable=True))
    assert split.split and split.split_seq == split.main_seq >= 1 and {p.state for p in split.pairs} == {pb.PSUS}
    again = sites.main_stub.SplitPairs(pb.SplitPairsRequest(group_name="shop", svol_writable=True))
    assert again.split_seq == split.split_seq  # idempotent
    backup = sites.wait_backup_states("shop", pb.PSUS)
    assert backup.applied_seq == split.split_seq
    for name in pairs:  # the S-VOLs hold the split point
        assert digest(sites.backup.nbd_address, svol[name]) == digest(sites.main.nbd_address, name)
        assert not sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pairs[name].remote_ldev_id)).read_only

    # After the split: 3 regions change on the stock P-VOL, 1 on the sales P-VOL, 2 on the sales S-VOL.
    for offset in (1 * MIB, 5 * MIB + 100, 20 * MIB):
        write(sites.main.nbd_address, "stock", offset, os.urandom(1000))
    write(sites.main.nbd_address, "sales", 10 * MIB, os.urandom(R))
    for offset in (12 * MIB, 30 * MIB + R):
        write(sites.backup.nbd_address, svol["sales"], offset, os.urandom(4096))
    status = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))
    assert status.main_seq == split.main_seq  # nothing journaled while split

    group = sites.main_stub.ResyncPairs(pb.ResyncPairsRequest(group_name="shop"))
    assert not group.split
    sites.wait_in_sync("shop")
    for name in pairs:
        assert digest(sites.backup.nbd_address, svol[name]) == digest(sites.main.nbd_address, name), name
        assert sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pairs[name].remote_ldev_id)).read_only
    moved = {
        p.local_ldev_id: p.copied_bytes
        for p in sites.backup_stub.ListPairs(pb.ListPairsRequest(group_name="shop")).pairs
    }
    assert moved == {pairs["stock"].remote_ldev_id: 3 * R, pairs["sales"].remote_ldev_id: 3 * R}
    groups = sites.backup_stub.ListSnapshotGroups(pb.ListSnapshotGroupsRequest()).groups
    assert [g.name for g in groups] == []  # the resync's snapshot group is gone once PAIR
    log = sites.backup.log_path.read_text()
    assert "snapshot_group=resync-shop" in log and "snapshot_group_dropped=resync-shop" in log

    write(sites.main.nbd_address, "stock", 7 * MIB, os.urandom(8192))  # journaled again
    sites.wait_in_sync("shop")
    assert digest(sites.backup.nbd_address, svol["stock"]) == digest(sites.main.nbd_address, "stock")


def test_unsafe_split_and_resync_are_refused_and_change_nothing(sites):
    pairs = paired_shop(sites)
    svol_id = pairs["sales"].remote_ldev_id
    resync = pb.ResyncPairsRequest(group_name="shop")
    assert not sites.main_stub.ResyncPairs(resync).split  # PAIR already: nothing to do
    assert code_of(sites.main_stub.SplitPairs, pb.SplitPairsRequest(group_name="nope")) == grpc.StatusCode.NOT_FOUND
    split = sites.main_stub.SplitPairs(pb.SplitPairsRequest(group_name="shop", svol_writable=True))
    assert split.split and split.split_seq == 0  # nothing was journaled yet: split at the initial copy
    sites.wait_backup_states("shop", pb.PSUS)

    # A host writing to the S-VOL must let go before a resync overwrites it.
    sites.backup_stub.PublishLdev(pb.PublishLdevRequest(ldev_id=svol_id, host_id="analytics"))
    assert code_of(sites.main_stub.ResyncPairs, resync) == grpc.StatusCode.FAILED_PRECONDITION
    status = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))
    assert status.split and {p.state for p in status.pairs} == {pb.PSUS}
    sites.backup_stub.UnpublishLdev(pb.UnpublishLdevRequest(ldev_id=svol_id, host_id="analytics"))

    # No resync while the backup does not answer.
    sites.backup.stop()
    assert code_of(sites.main_stub.ResyncPairs, resync) == grpc.StatusCode.UNAVAILABLE
    status = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))
    assert status.split and {p.state for p in status.pairs} == {pb.PSUS}
    sites.backup.start()
    sites.reconnect()
    when_linked(sites.main_stub.ResyncPairs, resync)
    sites.wait_in_sync("shop")


def test_deleting_one_pair_leaves_the_rest_of_the_group_replicating(sites):
    pairs = paired_shop(sites)
    sales = sites.main_stub.GetLdev(pb.GetLdevRequest(name="sales"))
    write(sites.main.nbd_address, "sales", 0, b"journaled before the delete" * 100)
    sites.main_stub.DeletePair(pb.DeletePairRequest(pvol_id=sales.id))
    assert code_of(sites.main_stub.DeletePair, pb.DeletePairRequest(pvol_id=sales.id)) == grpc.StatusCode.NOT_FOUND
    write(sites.main.nbd_address, "sales", MIB, b"after the delete: stays at the main site")
    write(sites.main.nbd_address, "stock", MIB, os.urandom(8192))
    sites.wait_in_sync("shop")
    for stub in (sites.main_stub, sites.backup_stub):
        assert [p.remote_ldev_id if stub is sites.main_stub else p.local_ldev_id
                for p in stub.ListPairs(pb.ListPairsRequest()).pairs] == [pairs["stock"].remote_ldev_id]  # fmt: skip
    svol = {n: sites.backup_stub.GetLdev(pb.GetLdevRequest(id=p.remote_ldev_id)) for n, p in pairs.items()}
    assert digest(sites.backup.nbd_address, svol["stock"].export_name) == digest(sites.main.nbd_address, "stock")
    assert not svol["sales"].read_only  # an ordinary LDEV again
    assert digest(sites.backup.nbd_address, svol["sales"].export_name) != digest(sites.main.nbd_address, "sales")
    write(sites.backup.nbd_address, svol["sales"].export_name, 0, b"free to use")
