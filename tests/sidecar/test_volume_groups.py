"""csi-addons volume groups over two real arrays, as the manager calls them: one volume
group is one journal group; membership is pairing at the main site and is checked,
never changed, at the backup site."""

from __future__ import annotations

import os
import threading

import grpc
import pytest

from ccopy_api import array_pb2 as pb
from ccopy_api.csiaddons import volumegroup_pb2 as vg
from ccopy_common import ids
from tests.api.test_array_api import code_of
from tests.integration.nbd_raw import RawClient
from tests.replication.conftest import export_of, read_all

MIB = 1 << 20
NAME = "vgrcontent-3f1c"  # the manager names a group after its VolumeGroupReplicationContent


def volumes(sites, *names: str, size: int = 8 * MIB) -> list[str]:
    serial = sites.main_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial
    made = [sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=n, size_bytes=size)) for n in names]
    return [ids.volume_id(serial, ldev.id) for ldev in made]


def test_create_then_modify_adds_a_volume_in_copy_while_the_others_stay_in_pair(sites, sidecars):
    stock, sales, returns = volumes(sites, "stock", "sales", "returns")
    created = sidecars.main.groups.CreateVolumeGroup(
        vg.CreateVolumeGroupRequest(name=NAME, volume_ids=[sales, stock], parameters={"journalCapacity": "64Mi"})
    ).volume_group
    assert sorted(v.volume_id for v in created.volumes) == sorted([stock, sales])
    assert created.volume_group_context["journalGroup"] == NAME
    again = sidecars.main.groups.CreateVolumeGroup(  # the manager may repeat it: same group
        vg.CreateVolumeGroupRequest(name=NAME, volume_ids=[sales, stock], parameters={"journalCapacity": "64Mi"})
    ).volume_group
    assert again.volume_group_id == created.volume_group_id
    sites.wait_in_sync(NAME)
    assert sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name=NAME)).capacity_bytes == 64 * MIB

    stop = threading.Event()

    def keep_writing() -> None:  # the application goes on while a volume joins
        client = RawClient(sites.main.nbd_address)
        client.go("stock")
        n = 0
        while not stop.is_set():
            assert client.write((n % 8) * MIB, os.urandom(MIB)) == 0
            n += 1
        client.disconnect()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        modified = sidecars.main.groups.ModifyVolumeGroupMembership(
            vg.ModifyVolumeGroupMembershipRequest(
                volume_group_id=created.volume_group_id, volume_ids=[returns, sales, stock]
            )
        ).volume_group
        assert len(modified.volumes) == 3
        states = sorted(p.state for p in sites.main_stub.ListPairs(pb.ListPairsRequest(group_name=NAME)).pairs)
        assert states in ([pb.COPY, pb.PAIR, pb.PAIR], [pb.PAIR, pb.PAIR, pb.PAIR])  # the others stay in PAIR
    finally:
        stop.set()
        writer.join(30)
    sites.wait_in_sync(NAME)
    for pair in sites.main_stub.ListPairs(pb.ListPairsRequest(group_name=NAME)).pairs:
        name = sites.main_stub.GetLdev(pb.GetLdevRequest(id=pair.local_ldev_id)).name
        backup = read_all(sites.backup.nbd_address, export_of(sites.backup_stub, pair.remote_ldev_id), 8 * MIB)
        assert backup == read_all(sites.main.nbd_address, name, 8 * MIB)


def test_leaving_deletes_the_pair_and_the_emptied_group_can_be_deleted(sites, sidecars):
    stock, sales = volumes(sites, "stock", "sales")
    group = sidecars.main.groups.CreateVolumeGroup(vg.CreateVolumeGroupRequest(name=NAME, volume_ids=[stock, sales]))
    group_id = group.volume_group.volume_group_id
    sites.wait_in_sync(NAME)
    delete = vg.DeleteVolumeGroupRequest(volume_group_id=group_id)
    assert code_of(sidecars.main.groups.DeleteVolumeGroup, delete) == grpc.StatusCode.FAILED_PRECONDITION
    left = sidecars.main.groups.ModifyVolumeGroupMembership(
        vg.ModifyVolumeGroupMembershipRequest(volume_group_id=group_id, volume_ids=[stock])
    ).volume_group
    assert [v.volume_id for v in left.volumes] == [stock]
    sales_ldev = ids.parse(sales, "volume", sites.main_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial)
    assert not sites.main_stub.GetLdev(pb.GetLdevRequest(id=sales_ldev.number)).read_only  # still a volume
    sidecars.main.groups.ModifyVolumeGroupMembership(
        vg.ModifyVolumeGroupMembershipRequest(volume_group_id=group_id, volume_ids=[])
    )
    sidecars.main.groups.DeleteVolumeGroup(delete)
    sidecars.main.groups.DeleteVolumeGroup(delete)  # gone: success
    get = vg.ControllerGetVolumeGroupRequest(volume_group_id=group_id)
    assert code_of(sidecars.main.groups.ControllerGetVolumeGroup, get) == grpc.StatusCode.NOT_FOUND


def test_at_the_backup_a_group_of_svols_is_the_main_sites_group_and_membership_is_only_checked(sites, sidecars):
    stock, sales = volumes(sites, "stock", "sales")
    main_group = sidecars.main.groups.CreateVolumeGroup(
        vg.CreateVolumeGroupRequest(name=NAME, volume_ids=[stock, sales])
    ).volume_group
    sites.wait_in_sync(NAME)
    backup_serial = sites.backup_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial
    svols = [ids.volume_id(backup_serial, p.local_ldev_id) for p in
             sites.backup_stub.ListPairs(pb.ListPairsRequest(group_name=NAME)).pairs]  # fmt: skip
    # The backup cluster names its VolumeGroupReplicationContent differently: the group is still the S-VOLs' one.
    backup_group = sidecars.backup.groups.CreateVolumeGroup(
        vg.CreateVolumeGroupRequest(name="vgrcontent-at-backup", volume_ids=svols)
    ).volume_group
    assert backup_group.volume_group_id == ids.journal_group_id(backup_serial, NAME)
    assert backup_group.volume_group_context["role"] == "backup"
    assert sorted(v.volume_id for v in backup_group.volumes) == sorted(svols)
    modify = vg.ModifyVolumeGroupMembershipRequest(volume_group_id=backup_group.volume_group_id, volume_ids=svols[:1])
    assert len(sidecars.backup.groups.ModifyVolumeGroupMembership(modify).volume_group.volumes) == 2  # unchanged
    stranger = sites.backup_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="scratch", size_bytes=MIB))
    modify.volume_ids.append(ids.volume_id(backup_serial, stranger.id))
    assert code_of(sidecars.backup.groups.ModifyVolumeGroupMembership, modify) == grpc.StatusCode.FAILED_PRECONDITION
    sidecars.backup.groups.DeleteVolumeGroup(vg.DeleteVolumeGroupRequest(volume_group_id=backup_group.volume_group_id))
    assert len(sites.backup_stub.ListPairs(pb.ListPairsRequest(group_name=NAME)).pairs) == 2  # the main site decides
    assert main_group.volume_group_id == ids.journal_group_id(
        sites.main_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial, NAME
    )


def test_list_pages_and_get(sites, sidecars):
    made = []
    for n in range(5):
        (volume,) = volumes(sites, f"v{n}")
        made.append(
            sidecars.main.groups.CreateVolumeGroup(
                vg.CreateVolumeGroupRequest(name=f"g{n}", volume_ids=[volume])
            ).volume_group.volume_group_id
        )
    seen, token = [], ""
    while True:
        page = sidecars.main.groups.ListVolumeGroups(vg.ListVolumeGroupsRequest(max_entries=2, starting_token=token))
        assert len(page.entries) <= 2
        seen += [e.volume_group.volume_group_id for e in page.entries]
        token = page.next_token
        if not token:
            break
    assert sorted(seen) == sorted(made)
    one = sidecars.main.groups.ControllerGetVolumeGroup(vg.ControllerGetVolumeGroupRequest(volume_group_id=made[3]))
    assert one.volume_group.volume_group_id == made[3] and len(one.volume_group.volumes) == 1


@pytest.mark.parametrize(
    ("method", "request_", "code"),
    [
        ("CreateVolumeGroup", vg.CreateVolumeGroupRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        ("CreateVolumeGroup", vg.CreateVolumeGroupRequest(name="g", volume_ids=["ccv1-1-000001"]),
         grpc.StatusCode.NOT_FOUND),
        ("CreateVolumeGroup", vg.CreateVolumeGroupRequest(name="g", volume_ids=["nonsense"]),
         grpc.StatusCode.NOT_FOUND),
        ("CreateVolumeGroup", vg.CreateVolumeGroupRequest(name="g", parameters={"mode": "eventually"}),
         grpc.StatusCode.INVALID_ARGUMENT),
        ("CreateVolumeGroup", vg.CreateVolumeGroupRequest(name="g", parameters={"color": "blue"}),
         grpc.StatusCode.INVALID_ARGUMENT),
        ("ModifyVolumeGroupMembership", vg.ModifyVolumeGroupMembershipRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        ("ModifyVolumeGroupMembership", vg.ModifyVolumeGroupMembershipRequest(volume_group_id="ccj1-1-6767"),
         grpc.StatusCode.NOT_FOUND),
        ("DeleteVolumeGroup", vg.DeleteVolumeGroupRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        ("DeleteVolumeGroup", vg.DeleteVolumeGroupRequest(volume_group_id="other-array-group"),
         grpc.StatusCode.NOT_FOUND),
        ("ControllerGetVolumeGroup", vg.ControllerGetVolumeGroupRequest(volume_group_id="ccj1-1-6767"),
         grpc.StatusCode.NOT_FOUND),
        ("ListVolumeGroups", vg.ListVolumeGroupsRequest(max_entries=-1), grpc.StatusCode.INVALID_ARGUMENT),
        ("ListVolumeGroups", vg.ListVolumeGroupsRequest(starting_token="zzz"), grpc.StatusCode.ABORTED),
    ],
)
def test_bad_requests(sidecars, method, request_, code):
    assert code_of(getattr(sidecars.main.groups, method), request_) == code


def test_a_volume_belongs_to_one_group_and_other_parameters_are_already_exists(sites, sidecars):
    (stock,) = volumes(sites, "stock")
    sidecars.main.groups.CreateVolumeGroup(vg.CreateVolumeGroupRequest(name="one", volume_ids=[stock]))
    second = vg.CreateVolumeGroupRequest(name="two", volume_ids=[stock])
    assert code_of(sidecars.main.groups.CreateVolumeGroup, second) == grpc.StatusCode.FAILED_PRECONDITION
    resized = vg.CreateVolumeGroupRequest(name="one", volume_ids=[stock], parameters={"journalCapacity": "2Gi"})
    assert code_of(sidecars.main.groups.CreateVolumeGroup, resized) == grpc.StatusCode.ALREADY_EXISTS
