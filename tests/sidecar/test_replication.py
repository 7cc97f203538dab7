"""csi-addons replication calls over two real arrays, in the order the manager makes them:
Enable then GetVolumeReplicationInfo for one volume and for a volume group, the
destination ids, a split group reported as ERROR and resynced, a forced promotion at
the backup after the main array died, and the refusals."""

from __future__ import annotations

import os
import time

import grpc
import pytest

from ccopy.waiting import wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api.csiaddons import replication_pb2 as rp
from ccopy_api.csiaddons import volumegroup_pb2 as vg
from ccopy_common import ids
from tests.api.test_array_api import code_of
from tests.replication.test_remote_copy import write
from tests.sidecar.test_volume_groups import NAME, volumes

MIB = 1 << 20
Status = rp.GetVolumeReplicationInfoResponse.Status


def of_volume(volume_id: str) -> rp.ReplicationSource:
    return rp.ReplicationSource(volume=rp.ReplicationSource.VolumeSource(volume_id=volume_id))


def of_group(group_id: str) -> rp.ReplicationSource:
    return rp.ReplicationSource(volumegroup=rp.ReplicationSource.VolumeGroupSource(volume_group_id=group_id))


def info(side, source: rp.ReplicationSource) -> rp.GetVolumeReplicationInfoResponse:
    return side.replication.GetVolumeReplicationInfo(rp.GetVolumeReplicationInfoRequest(replication_source=source))


def healthy(side, source) -> rp.GetVolumeReplicationInfoResponse:
    """GetVolumeReplicationInfo until HEALTHY, as the manager polls it; fails if the copy stops moving."""
    return wait_progressing(
        lambda: info(side, source), lambda i: i.status == Status.HEALTHY, "replication becoming healthy",
        progress=lambda i: i.status_message,
    )  # fmt: skip


def test_one_volume_enable_is_idempotent_then_healthy_with_a_recovery_point(sites, sidecars):
    (stock,) = volumes(sites, "stock")
    enable = rp.EnableVolumeReplicationRequest(replication_source=of_volume(stock), parameters={"rpoSeconds": "30"})
    sidecars.main.replication.EnableVolumeReplication(enable)
    sidecars.main.replication.EnableVolumeReplication(enable)  # sent on every transition into primary
    before = time.time()
    answer = healthy(sidecars.main, of_volume(stock))
    assert answer.last_sync_time.seconds >= int(before) - 1 and "PAIR" in answer.status_message
    group = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name=f"vr-{stock}"))  # its own journal group
    assert group.rpo_seconds == 30 and len(group.pairs) == 1
    destination = sidecars.main.replication.GetReplicationDestinationInfo(
        rp.GetReplicationDestinationInfoRequest(replication_source=of_volume(stock))
    ).replication_destination
    backup_serial = sites.backup_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial
    assert destination.volume.volume_id == ids.volume_id(backup_serial, group.pairs[0].remote_ldev_id)
    # The manager never enables a secondary: the class's RPO reaches the backup with the demote it sends.
    svol = of_volume(destination.volume.volume_id)
    sidecars.backup.replication.DemoteVolume(rp.DemoteVolumeRequest(replication_source=svol,
                                                                    parameters={"rpoSeconds": "45"}))  # fmt: skip
    at_backup = sites.backup_stub.GetJournalGroup(pb.GetJournalGroupRequest(name=f"vr-{stock}"))
    assert at_backup.rpo_seconds == 45 and at_backup.role == "backup" and group.rpo_seconds == 30

    disable = rp.DisableVolumeReplicationRequest(replication_source=of_volume(stock))
    sidecars.main.replication.DisableVolumeReplication(disable)
    sidecars.main.replication.DisableVolumeReplication(disable)  # gone: success
    gone = pb.GetJournalGroupRequest(name=f"vr-{stock}")
    assert code_of(sites.main_stub.GetJournalGroup, gone) == grpc.StatusCode.NOT_FOUND
    assert code_of(sidecars.main.replication.GetVolumeReplicationInfo,
                   rp.GetVolumeReplicationInfoRequest(replication_source=of_volume(stock))) == grpc.StatusCode.NOT_FOUND


def test_group_enable_info_destination_and_a_split_resynced(sites, sidecars):
    stock, sales = volumes(sites, "stock", "sales")
    group_id = sidecars.main.groups.CreateVolumeGroup(
        vg.CreateVolumeGroupRequest(name=NAME, volume_ids=[stock, sales])
    ).volume_group.volume_group_id
    sidecars.main.replication.EnableVolumeReplication(
        rp.EnableVolumeReplicationRequest(replication_source=of_group(group_id), parameters={"rpoSeconds": "60"})
    )
    healthy(sidecars.main, of_group(group_id))
    destination = sidecars.main.replication.GetReplicationDestinationInfo(
        rp.GetReplicationDestinationInfoRequest(replication_source=of_group(group_id))
    ).replication_destination.volumegroup
    backup_serial = sites.backup_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial
    assert destination.volume_group_id == ids.journal_group_id(backup_serial, NAME)
    assert set(destination.volume_ids) == {stock, sales}
    svols = {ids.volume_id(backup_serial, p.local_ldev_id)
             for p in sites.backup_stub.ListPairs(pb.ListPairsRequest(group_name=NAME)).pairs}  # fmt: skip
    assert set(destination.volume_ids.values()) == svols
    healthy(sidecars.backup, of_group(destination.volume_group_id))  # the backup reports the same group
    back = sidecars.backup.replication.GetReplicationDestinationInfo(  # asked at the backup: the other copies
        rp.GetReplicationDestinationInfoRequest(replication_source=of_group(destination.volume_group_id))
    ).replication_destination.volumegroup
    assert back.volume_group_id == group_id
    assert dict(back.volume_ids) == {svol: pvol for pvol, svol in destination.volume_ids.items()}

    sites.main_stub.SplitPairs(pb.SplitPairsRequest(group_name=NAME))
    split = info(sidecars.main, of_group(group_id))
    assert split.status == Status.ERROR and "PSUS" in split.status_message and not split.HasField("last_sync_time")
    write(sites.main.nbd_address, "sales", 0, os.urandom(MIB))  # changes while split: in the bitmap
    resync = rp.ResyncVolumeRequest(replication_source=of_group(group_id), force=True)
    assert not sidecars.main.replication.ResyncVolume(resync).ready
    wait_progressing(
        lambda: sidecars.main.replication.ResyncVolume(resync), lambda r: r.ready, "the resync",
        progress=lambda _: sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name=NAME)).SerializeToString(),
    )  # fmt: skip
    healthy(sidecars.main, of_group(group_id))


def test_promotion_at_the_backup_waits_while_the_main_site_is_primary_and_is_forced_once_it_died(sites, sidecars):
    stock, sales = volumes(sites, "stock", "sales")
    group_id = sidecars.main.groups.CreateVolumeGroup(
        vg.CreateVolumeGroupRequest(name=NAME, volume_ids=[stock, sales])
    ).volume_group.volume_group_id
    sidecars.main.replication.EnableVolumeReplication(rp.EnableVolumeReplicationRequest(replication_source=of_group(group_id)))
    healthy(sidecars.main, of_group(group_id))
    backup_group = ids.journal_group_id(sites.backup_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial, NAME)
    at_backup = of_group(backup_group)
    demote = rp.DemoteVolumeRequest(replication_source=at_backup)
    sidecars.backup.replication.DemoteVolume(demote)  # the backup is the secondary already
    assert sidecars.backup.replication.ResyncVolume(rp.ResyncVolumeRequest(replication_source=at_backup)).ready

    promote = rp.PromoteVolumeRequest(replication_source=at_backup)
    assert code_of(sidecars.backup.replication.PromoteVolume, promote) == grpc.StatusCode.UNAVAILABLE  # main primary
    assert {p.state for p in sites.backup_stub.ListPairs(pb.ListPairsRequest(group_name=NAME)).pairs} == {pb.PAIR}
    sites.main.kill()
    assert code_of(sidecars.backup.replication.PromoteVolume, promote) == grpc.StatusCode.FAILED_PRECONDITION
    sidecars.backup.replication.PromoteVolume(rp.PromoteVolumeRequest(replication_source=at_backup, force=True))
    pairs = sites.backup_stub.ListPairs(pb.ListPairsRequest(group_name=NAME)).pairs
    assert {p.state for p in pairs} == {pb.SSWS}
    assert all(not sites.backup_stub.GetLdev(pb.GetLdevRequest(id=p.local_ldev_id)).read_only for p in pairs)
    sidecars.backup.replication.PromoteVolume(promote)  # primary now: a repeat succeeds
    taken = info(sidecars.backup, at_backup)
    assert taken.status == Status.DEGRADED and "taken over" in taken.status_message
    # The loss is on record, as a floor as of the last contact, or unknown when the main array died
    # before its first answer after the pairing: never as a bare "nothing lost".
    assert "gave up at least" in taken.status_message or "gave up unknown" in taken.status_message


def test_a_second_call_on_a_busy_group_is_aborted_and_changes_nothing(sites):
    from ccopy_common.array_client import ArrayClient
    from ccopy_common.errors import ERROR_TABLE, Aborted
    from ccopy_common.rpc import status_for
    from replication_sidecar.journal_groups import JournalGroups
    from replication_sidecar.volume_groups import VolumeGroupServicer

    (stock,) = volumes(sites, "stock")
    array = ArrayClient(sites.main.api_address)
    groups = JournalGroups(array)
    servicer = VolumeGroupServicer(groups)
    try:
        with groups.locks.hold(NAME), pytest.raises(Aborted) as busy:  # another call holds the group
            servicer.CreateVolumeGroup(vg.CreateVolumeGroupRequest(name=NAME, volume_ids=[stock]), None)
        assert status_for(busy.value, ERROR_TABLE) == grpc.StatusCode.ABORTED
        assert not sites.main_stub.ListJournalGroups(pb.ListJournalGroupsRequest()).groups
    finally:
        array.close()


@pytest.mark.parametrize(
    ("method", "request_", "code"),
    [
        ("EnableVolumeReplication", rp.EnableVolumeReplicationRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        ("EnableVolumeReplication", rp.EnableVolumeReplicationRequest(replication_source=of_volume("ccv1-1-000009")),
         grpc.StatusCode.NOT_FOUND),
        ("EnableVolumeReplication", rp.EnableVolumeReplicationRequest(replication_source=of_volume("")),
         grpc.StatusCode.INVALID_ARGUMENT),
        ("EnableVolumeReplication", rp.EnableVolumeReplicationRequest(replication_source=of_group("ccj1-9-6767")),
         grpc.StatusCode.NOT_FOUND),
        ("DisableVolumeReplication", rp.DisableVolumeReplicationRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        ("PromoteVolume", rp.PromoteVolumeRequest(replication_source=of_volume("nonsense")), grpc.StatusCode.NOT_FOUND),
        ("DemoteVolume", rp.DemoteVolumeRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        ("ResyncVolume", rp.ResyncVolumeRequest(replication_source=of_group("")), grpc.StatusCode.INVALID_ARGUMENT),
        ("GetVolumeReplicationInfo", rp.GetVolumeReplicationInfoRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        ("GetReplicationDestinationInfo", rp.GetReplicationDestinationInfoRequest(), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_sources(sidecars, method, request_, code):
    assert code_of(getattr(sidecars.main.replication, method), request_) == code


def test_bad_parameters_and_a_grouped_volume_alone_are_refused_with_nothing_changed(sites, sidecars):
    stock, sales = volumes(sites, "stock", "sales")
    bad = rp.EnableVolumeReplicationRequest(replication_source=of_volume(stock), parameters={"mode": "later"})
    assert code_of(sidecars.main.replication.EnableVolumeReplication, bad) == grpc.StatusCode.INVALID_ARGUMENT
    assert not sites.main_stub.ListPairs(pb.ListPairsRequest()).pairs
    sidecars.main.groups.CreateVolumeGroup(vg.CreateVolumeGroupRequest(name=NAME, volume_ids=[stock, sales]))
    for call, request in (
        (sidecars.main.replication.EnableVolumeReplication,
         rp.EnableVolumeReplicationRequest(replication_source=of_volume(stock))),
        (sidecars.main.replication.DisableVolumeReplication,
         rp.DisableVolumeReplicationRequest(replication_source=of_volume(stock))),
    ):  # fmt: skip
        assert code_of(call, request) == grpc.StatusCode.FAILED_PRECONDITION
    assert len(sites.main_stub.ListPairs(pb.ListPairsRequest(group_name=NAME)).pairs) == 2


def test_a_secondary_group_whose_pairs_the_main_site_ended_copies_nothing_back(sites, sidecars):
    """The csi-addons manager keeps reconciling a secondary VolumeGroupReplication at the
    backup after the main site ended its pairs (the registrar removes it a moment later).
    The S-VOLs are ordinary volumes then: pairing them from the backup would copy the
    backup's data back over the link to the main array as a new group."""
    (stock,) = volumes(sites, "stock")
    group_id = sidecars.main.groups.CreateVolumeGroup(
        vg.CreateVolumeGroupRequest(name=NAME, volume_ids=[stock])
    ).volume_group.volume_group_id
    sidecars.main.replication.EnableVolumeReplication(rp.EnableVolumeReplicationRequest(replication_source=of_group(group_id)))
    healthy(sidecars.main, of_group(group_id))
    backup_serial = sites.backup_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial
    svols = [ids.volume_id(backup_serial, p.local_ldev_id) for p in
             sites.backup_stub.ListPairs(pb.ListPairsRequest(group_name=NAME)).pairs]  # fmt: skip
    create_at_backup = vg.CreateVolumeGroupRequest(name="vgrcontent-at-backup", volume_ids=svols)
    sidecars.backup.groups.CreateVolumeGroup(create_at_backup)

    sidecars.main.groups.ModifyVolumeGroupMembership(vg.ModifyVolumeGroupMembershipRequest(volume_group_id=group_id))
    sidecars.main.groups.DeleteVolumeGroup(vg.DeleteVolumeGroupRequest(volume_group_id=group_id))
    main_ldevs = len(sites.main_stub.ListLdevs(pb.ListLdevsRequest()).ldevs)

    # The manager's calls for a secondary group, as it makes them again: each is refused
    # (the group it names is gone, or the volumes are the kept copies of ended pairs).
    with pytest.raises(grpc.RpcError) as refused:
        sidecars.backup.groups.CreateVolumeGroup(create_at_backup)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "would copy it back" in refused.value.details() and "clone" in refused.value.details()
    for volume_id in svols:
        enable_alone = rp.EnableVolumeReplicationRequest(replication_source=of_volume(volume_id))
        assert code_of(sidecars.backup.replication.EnableVolumeReplication, enable_alone) == refused.value.code()
    at_backup = of_group(ids.journal_group_id(backup_serial, NAME))
    calls = sidecars.backup.replication
    for call, request in (
        (calls.EnableVolumeReplication, rp.EnableVolumeReplicationRequest(replication_source=at_backup)),
        (calls.DemoteVolume, rp.DemoteVolumeRequest(replication_source=at_backup)),
        (calls.ResyncVolume, rp.ResyncVolumeRequest(replication_source=at_backup)),
    ):
        assert code_of(call, request) == grpc.StatusCode.NOT_FOUND  # the group went with its pairs
    assert not sites.backup_stub.ListJournalGroups(pb.ListJournalGroupsRequest()).groups
    assert not sites.main_stub.ListPairs(pb.ListPairsRequest()).pairs
    assert len(sites.main_stub.ListLdevs(pb.ListLdevsRequest()).ldevs) == main_ldevs  # nothing copied back
