"""Planned relocation and failover through the csi-addons calls, in the manager's order,
with a writer committing record i to one volume, then to the other (as in the ordering
proof): the backup holds a prefix of the write order at every step, a planned relocation
loses no acknowledged record, and after a disaster the old main site comes back as the
secondary with only the differences copied."""

from __future__ import annotations

import grpc

from ccopy.waiting import replication_progress, wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api.csiaddons import replication_pb2 as rp
from ccopy_api.csiaddons import volumegroup_pb2 as vg
from ccopy_common import ids
from tests.api.test_array_api import code_of
from tests.replication.conftest import export_of, read_all
from tests.replication.test_ordering_under_faults import Writer, prefix
from tests.sidecar.test_replication import Status, healthy, info, of_group

MIB = 1 << 20
SIZE = 32 * MIB
NAME = "vgrcontent-shop"


def group_with_writer(sites, sidecars) -> tuple[str, str, Writer]:
    serial = sites.main_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial
    volumes = [ids.volume_id(serial, sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=f"vol{n}",
                                                                                         size_bytes=SIZE)).id)
               for n in (1, 2)]  # fmt: skip
    group_id = sidecars.main.groups.CreateVolumeGroup(
        vg.CreateVolumeGroupRequest(name=NAME, volume_ids=volumes, parameters={"journalCapacity": "256Mi"})
    ).volume_group.volume_group_id
    enable = rp.EnableVolumeReplicationRequest(replication_source=of_group(group_id))
    sidecars.main.replication.EnableVolumeReplication(enable)  # then Promote: primary already
    sidecars.main.replication.PromoteVolume(rp.PromoteVolumeRequest(replication_source=of_group(group_id)))
    healthy(sidecars.main, of_group(group_id))
    writer = Writer(sites.main.nbd_address)
    writer.start()
    wait_progressing(lambda: writer.acked, lambda n: n >= 100, "the writer")
    backup_id = ids.journal_group_id(sites.backup_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial, NAME)
    return group_id, backup_id, writer


def prefixes(array, stub) -> tuple[int, int]:
    """(volume 1's, volume 2's) record prefix on this array's side of the group."""
    ldevs = sorted(p.local_ldev_id for p in stub.ListPairs(pb.ListPairsRequest(group_name=NAME)).pairs)
    one, two = (read_all(array.nbd_address, export_of(stub, ldev), SIZE // 2) for ldev in ldevs)
    return prefix(one, 1), prefix(two, 2)


def promote_as_the_manager_does(sidecars, source: rp.ReplicationSource) -> None:
    """PromoteVolume without force, asked again after UNAVAILABLE (the manager's backoff) while the
    backup drains; FAILED_PRECONDITION (which the manager would force) fails the test."""

    def attempt() -> bool:
        try:
            sidecars.backup.replication.PromoteVolume(rp.PromoteVolumeRequest(replication_source=source))
            return True
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
            return False

    wait_progressing(attempt, bool, "the promotion", progress=lambda _: None, stall=120)


def secondary_until_ready(sites, sidecars, source: rp.ReplicationSource, group: str = NAME) -> None:
    """What the manager does for a VolumeReplication set secondary: Demote, then Demote and
    Resync again until Resync answers ready (here without its 15-30 s pauses)."""
    resync = rp.ResyncVolumeRequest(replication_source=source)
    wait_progressing(
        lambda: (sidecars.main.replication.DemoteVolume(rp.DemoteVolumeRequest(replication_source=source)),
                 sidecars.main.replication.ResyncVolume(resync))[1],
        lambda answer: answer.ready, "the secondary becoming ready",
        progress=lambda _: replication_progress(*sites.group_views(group)),
    )  # fmt: skip


def test_planned_relocation_in_the_managers_order_loses_no_acknowledged_record(sites, sidecars):
    group_id, backup_id, writer = group_with_writer(sites, sidecars)
    at_main, at_backup = of_group(group_id), of_group(backup_id)

    # The main site's VolumeReplication goes secondary: Demote (the application was stopped first;
    # here the writer meets the fence), then Demote and Resync every 15-30 s until ready.
    sidecars.main.replication.DemoteVolume(rp.DemoteVolumeRequest(replication_source=at_main))
    writer.stop.set()
    writer.join(30)
    acked = writer.acked
    assert info(sidecars.main, at_main).status == Status.DEGRADED  # demoted, waiting for the takeover
    assert not sidecars.main.replication.ResyncVolume(rp.ResyncVolumeRequest(replication_source=at_main)).ready

    # The backup site's goes primary: Enable then Promote without force: lossless, the main site answers.
    sidecars.backup.replication.EnableVolumeReplication(rp.EnableVolumeReplicationRequest(replication_source=at_backup))
    promote_as_the_manager_does(sidecars, at_backup)
    taken = sites.backup_stub.GetJournalGroup(pb.GetJournalGroupRequest(name=NAME))
    assert {p.state for p in taken.pairs} == {pb.SSWS}
    one, two = prefixes(sites.backup, sites.backup_stub)
    assert one >= acked and two >= acked and two <= one  # every acknowledged record, in write order

    # The main site keeps asking Demote + Resync: the first Resync asks for the failback.
    secondary_until_ready(sites, sidecars, at_main)
    healthy(sidecars.backup, at_backup)  # the backup array is the main side now
    assert sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name=NAME)).role == "backup"
    sites.wait_in_sync(NAME, swapped=True)
    for pair in sites.backup_stub.ListPairs(pb.ListPairsRequest(group_name=NAME)).pairs:
        here = read_all(sites.backup.nbd_address, export_of(sites.backup_stub, pair.local_ldev_id), SIZE)
        assert here == read_all(sites.main.nbd_address, export_of(sites.main_stub, pair.remote_ldev_id), SIZE)


def test_failover_after_a_disaster_then_the_old_main_site_returns_as_the_secondary(sites, sidecars):
    group_id, backup_id, writer = group_with_writer(sites, sidecars)
    at_main, at_backup = of_group(group_id), of_group(backup_id)
    sites.main.kill()  # the main site is gone, mid-write
    writer.stop.set()
    writer.join(30)

    promote = rp.PromoteVolumeRequest(replication_source=at_backup)
    assert code_of(sidecars.backup.replication.PromoteVolume, promote) == grpc.StatusCode.FAILED_PRECONDITION
    sidecars.backup.replication.PromoteVolume(rp.PromoteVolumeRequest(replication_source=at_backup, force=True))
    one, two = prefixes(sites.backup, sites.backup_stub)
    assert two <= one and one > 0  # consistent: a prefix of the write order, never a sale without its stock

    sites.main.start()  # the old main array returns; its VolumeReplication is set secondary
    sites.reconnect()
    assert info(sidecars.main, at_main).status in (Status.HEALTHY, Status.ERROR, Status.DEGRADED)
    secondary_until_ready(sites, sidecars, at_main)
    sites.wait_in_sync(NAME, swapped=True)
    assert prefixes(sites.main, sites.main_stub) == (one, two)  # the old main holds what the new main has


def test_a_volume_replicated_alone_relocates_and_is_disabled_at_its_new_primary(sites, sidecars):
    serial = sites.main_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial
    ldev = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="ledger", size_bytes=4 * MIB))
    volume = ids.volume_id(serial, ldev.id)
    at_main = rp.ReplicationSource(volume=rp.ReplicationSource.VolumeSource(volume_id=volume))
    sidecars.main.replication.EnableVolumeReplication(rp.EnableVolumeReplicationRequest(replication_source=at_main))
    healthy(sidecars.main, at_main)
    svol = sidecars.main.replication.GetReplicationDestinationInfo(
        rp.GetReplicationDestinationInfoRequest(replication_source=at_main)
    ).replication_destination.volume.volume_id
    at_backup = rp.ReplicationSource(volume=rp.ReplicationSource.VolumeSource(volume_id=svol))
    group = f"vr-{volume}"

    sidecars.main.replication.DemoteVolume(rp.DemoteVolumeRequest(replication_source=at_main))
    sidecars.backup.replication.EnableVolumeReplication(rp.EnableVolumeReplicationRequest(replication_source=at_backup))
    promote_as_the_manager_does(sidecars, at_backup)
    secondary_until_ready(sites, sidecars, at_main, group)
    assert sites.backup_stub.GetJournalGroup(pb.GetJournalGroupRequest(name=group)).role == "main"

    # The VolumeReplication is deleted at its new primary: Disable with the volume's id there.
    disable = rp.DisableVolumeReplicationRequest(replication_source=at_backup)
    sidecars.backup.replication.DisableVolumeReplication(disable)
    assert code_of(sites.backup_stub.GetJournalGroup, pb.GetJournalGroupRequest(name=group)) == (
        grpc.StatusCode.NOT_FOUND
    )
    svol_ldev = ids.parse(svol, "volume", sites.backup_stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial)
    assert not sites.backup_stub.GetLdev(pb.GetLdevRequest(id=svol_ldev.number)).read_only  # a plain volume now
