"""The CSI Controller, Identity, GroupController and SnapshotMetadata services,
RPC by RPC against the spec's MUSTs, on a real array."""

from __future__ import annotations

import grpc
import pytest

from ccopy_api import array_pb2 as pb
from ccopy_api import csi_pb2 as csi
from csi_driver.controller import ALL_CAPABILITIES
from tests.csi.conftest import GIB, MIB, Mode, block_cap, code, mount_cap
from tests.integration.nbd_raw import RawClient

TOPOLOGY_KEY = "topology.ldev.csi.consistentcopy.io/site"


def create(plugin, name="vol", size=64 * MIB, caps=None, **kwargs) -> csi.Volume:
    request = csi.CreateVolumeRequest(
        name=name,
        capacity_range=csi.CapacityRange(required_bytes=size),
        volume_capabilities=caps or [mount_cap()],
        **kwargs,
    )
    return plugin.controller.CreateVolume(request).volume


# -- Identity -----------------------------------------------------------------------------------
def test_identity(plugin):
    info = plugin.identity.GetPluginInfo(csi.GetPluginInfoRequest())
    assert info.name == "ldev.csi.consistentcopy.io" and info.vendor_version
    caps = plugin.identity.GetPluginCapabilities(csi.GetPluginCapabilitiesRequest()).capabilities
    services = {c.service.type for c in caps if c.HasField("service")}
    svc = csi.PluginCapability.Service
    assert services == {
        svc.CONTROLLER_SERVICE,
        svc.GROUP_CONTROLLER_SERVICE,
        svc.SNAPSHOT_METADATA_SERVICE,
        svc.VOLUME_ACCESSIBILITY_CONSTRAINTS,
    }
    assert plugin.identity.Probe(csi.ProbeRequest()).ready.value is True


def test_probe_fails_when_the_array_is_gone(plugin, array_proc):
    array_proc.stop()
    assert code(plugin.identity.Probe, csi.ProbeRequest()) == grpc.StatusCode.FAILED_PRECONDITION
    array_proc.start()


def test_controller_advertises_every_capability(plugin):
    caps = plugin.controller.ControllerGetCapabilities(csi.ControllerGetCapabilitiesRequest()).capabilities
    assert sorted(c.rpc.type for c in caps) == sorted(ALL_CAPABILITIES) and len(caps) == 15


# -- CreateVolume / DeleteVolume -------------------------------------------------------------------
def test_create_volume_is_idempotent_and_thin(plugin, stub):
    first = create(plugin, "pvc-1", GIB)
    again = create(plugin, "pvc-1", GIB)
    assert first == again and first.capacity_bytes == GIB
    assert first.accessible_topology[0].segments[TOPOLOGY_KEY] == "main"
    ldev = stub.GetLdev(pb.GetLdevRequest(name="pvc-1"))
    assert ldev.allocated_bytes == 0 and not ldev.open_to_all
    what = {k.removeprefix("csi.consistentcopy.io/"): v for k, v in ldev.labels.items()}
    assert what["volume-mode"] == "Filesystem" and what["access-modes"] == "ReadWriteOnce"  # for the backup's PV
    other_size = csi.CreateVolumeRequest(
        name="pvc-1", capacity_range=csi.CapacityRange(required_bytes=2 * GIB), volume_capabilities=[mount_cap()]
    )
    assert code(plugin.controller.CreateVolume, other_size) == grpc.StatusCode.ALREADY_EXISTS


def test_create_volume_capacity_rules(plugin):
    default = plugin.controller.CreateVolume(csi.CreateVolumeRequest(name="d", volume_capabilities=[block_cap()]))
    assert default.volume.capacity_bytes == GIB
    ranged = csi.CreateVolumeRequest(
        name="r",
        capacity_range=csi.CapacityRange(required_bytes=MIB + 1, limit_bytes=4 * MIB),
        volume_capabilities=[block_cap()],
    )
    assert plugin.controller.CreateVolume(ranged).volume.capacity_bytes == 2 * MIB


@pytest.mark.parametrize(
    "request_",
    [
        csi.CreateVolumeRequest(volume_capabilities=[mount_cap()]),  # no name
        csi.CreateVolumeRequest(name="x"),  # no capabilities
        csi.CreateVolumeRequest(name="x", volume_capabilities=[csi.VolumeCapability()]),
        csi.CreateVolumeRequest(name="x", volume_capabilities=[mount_cap(fs="ntfs")]),
        csi.CreateVolumeRequest(name="x", volume_capabilities=[mount_cap(Mode.MULTI_NODE_MULTI_WRITER)]),
        csi.CreateVolumeRequest(name="x", volume_capabilities=[mount_cap()], parameters={"colour": "red"}),
        csi.CreateVolumeRequest(name="x", volume_capabilities=[mount_cap()], mutable_parameters={"speed": "1"}),
        csi.CreateVolumeRequest(name="x", volume_capabilities=[mount_cap()], mutable_parameters={"maxIOPS": "x"}),
        csi.CreateVolumeRequest(
            name="x", volume_capabilities=[mount_cap()], capacity_range=csi.CapacityRange(required_bytes=-1)
        ),
        csi.CreateVolumeRequest(
            name="x",
            volume_capabilities=[mount_cap()],
            capacity_range=csi.CapacityRange(required_bytes=10 * MIB, limit_bytes=MIB),
        ),
    ],
)
def test_create_volume_invalid_arguments(plugin, request_):
    assert code(plugin.controller.CreateVolume, request_) == grpc.StatusCode.INVALID_ARGUMENT


def test_create_volume_topology_and_qos(plugin, stub):
    elsewhere = csi.TopologyRequirement(requisite=[csi.Topology(segments={TOPOLOGY_KEY: "backup"})])
    request = csi.CreateVolumeRequest(name="t", volume_capabilities=[mount_cap()], accessibility_requirements=elsewhere)
    assert code(plugin.controller.CreateVolume, request) == grpc.StatusCode.RESOURCE_EXHAUSTED
    create(plugin, "fast", mutable_parameters={"maxIOPS": "300", "maxMBps": "40"})
    ldev = stub.GetLdev(pb.GetLdevRequest(name="fast"))
    assert (ldev.max_iops, ldev.max_mbps) == (300, 40)


def test_names_the_array_cannot_use_are_mapped(plugin, stub):
    volume = create(plugin, "sanity volume/with slash")
    assert create(plugin, "sanity volume/with slash").volume_id == volume.volume_id
    ldevs = stub.ListLdevs(pb.ListLdevsRequest()).ldevs
    assert (
        ldevs[0].name.startswith("csi-") and ldevs[0].labels["csi.consistentcopy.io/name"] == "sanity volume/with slash"
    )


def test_delete_volume(plugin, stub):
    volume = create(plugin, "gone")
    plugin.controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume.volume_id))
    plugin.controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume.volume_id))  # idempotent
    plugin.controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id="not-a-volume-id"))
    assert code(plugin.controller.DeleteVolume, csi.DeleteVolumeRequest()) == grpc.StatusCode.INVALID_ARGUMENT
    assert stub.ListLdevs(pb.ListLdevsRequest()).ldevs == []


def test_volumes_not_made_by_this_driver_are_invisible(plugin, stub):
    ldev = stub.CreateLdev(pb.CreateLdevRequest(name="admin-made", size_bytes=MIB))
    volume_id = f"ccv1-{stub.GetArrayInfo(pb.GetArrayInfoRequest()).serial}-{ldev.id:06x}"
    request = csi.ControllerGetVolumeRequest(volume_id=volume_id)
    assert code(plugin.controller.ControllerGetVolume, request) == grpc.StatusCode.NOT_FOUND
    plugin.controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume_id))
    assert stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).name == "admin-made"  # untouched


# -- publishing ----------------------------------------------------------------------------------
def publish(plugin, volume, node="node-1", readonly=False, cap=None):
    request = csi.ControllerPublishVolumeRequest(
        volume_id=volume.volume_id, node_id=node, volume_capability=cap or mount_cap(), readonly=readonly
    )
    return plugin.controller.ControllerPublishVolume(request).publish_context


def test_publish_grants_nbd_access_and_unpublish_revokes_it(plugin, array_proc):
    volume = create(plugin, "pub")
    context = publish(plugin, volume)
    assert context == publish(plugin, volume)  # idempotent
    client = RawClient(context["nbdAddress"])
    client.go(context["nbdExport"])
    assert client.write(0, b"data" * 128) == 0
    client.close()
    assert (
        code(
            plugin.controller.ControllerPublishVolume,
            csi.ControllerPublishVolumeRequest(
                volume_id=volume.volume_id, node_id="node-2", volume_capability=mount_cap()
            ),
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    readonly = csi.ControllerPublishVolumeRequest(
        volume_id=volume.volume_id, node_id="node-1", volume_capability=mount_cap(), readonly=True
    )
    assert code(plugin.controller.ControllerPublishVolume, readonly) == grpc.StatusCode.ALREADY_EXISTS
    listed = plugin.controller.ListVolumes(csi.ListVolumesRequest()).entries
    assert list(listed[0].status.published_node_ids) == ["node-1"]
    plugin.controller.ControllerUnpublishVolume(
        csi.ControllerUnpublishVolumeRequest(volume_id=volume.volume_id, node_id="node-1")
    )
    plugin.controller.ControllerUnpublishVolume(
        csi.ControllerUnpublishVolumeRequest(volume_id=volume.volume_id, node_id="node-1")
    )
    late = RawClient(context["nbdAddress"])
    assert late.go(context["nbdExport"])[-1][1] == (1 << 31) + 6  # the export is gone
    late.close()


def test_read_only_many_nodes(plugin, stub):
    volume = create(plugin, "shared", caps=[mount_cap(Mode.MULTI_NODE_READER_ONLY)])
    for node in ("a", "b", "c"):
        stub.RegisterHost(pb.RegisterHostRequest(host_id=node))  # each node's plugin would
        assert publish(plugin, volume, node, cap=mount_cap(Mode.MULTI_NODE_READER_ONLY))["readOnly"] == "true"
    plugin.controller.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(volume_id=volume.volume_id))
    got = plugin.controller.ControllerGetVolume(csi.ControllerGetVolumeRequest(volume_id=volume.volume_id))
    assert list(got.status.published_node_ids) == [] and not got.status.volume_condition.abnormal


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            csi.ControllerPublishVolumeRequest(node_id="n", volume_capability=mount_cap()),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            csi.ControllerPublishVolumeRequest(volume_id="ccv1-1-01", volume_capability=mount_cap()),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (csi.ControllerPublishVolumeRequest(volume_id="ccv1-1-01", node_id="n"), grpc.StatusCode.INVALID_ARGUMENT),
        (
            csi.ControllerPublishVolumeRequest(volume_id="ccv1-999-01", node_id="n", volume_capability=mount_cap()),
            grpc.StatusCode.NOT_FOUND,
        ),
    ],
)
def test_publish_errors(plugin, request_, expected):
    assert code(plugin.controller.ControllerPublishVolume, request_) == expected


# -- queries -------------------------------------------------------------------------------------
def test_validate_capabilities(plugin):
    volume = create(plugin, "v")
    ok = plugin.controller.ValidateVolumeCapabilities(
        csi.ValidateVolumeCapabilitiesRequest(volume_id=volume.volume_id, volume_capabilities=[block_cap()])
    )
    assert ok.HasField("confirmed")
    nope = plugin.controller.ValidateVolumeCapabilities(
        csi.ValidateVolumeCapabilitiesRequest(
            volume_id=volume.volume_id, volume_capabilities=[mount_cap(Mode.MULTI_NODE_SINGLE_WRITER)]
        )
    )
    assert not nope.HasField("confirmed") and nope.message
    missing = csi.ValidateVolumeCapabilitiesRequest(volume_id="ccv1-1-0000ff", volume_capabilities=[block_cap()])
    assert code(plugin.controller.ValidateVolumeCapabilities, missing) == grpc.StatusCode.NOT_FOUND
    empty = csi.ValidateVolumeCapabilitiesRequest(volume_id=volume.volume_id)
    assert code(plugin.controller.ValidateVolumeCapabilities, empty) == grpc.StatusCode.INVALID_ARGUMENT


def test_list_volumes_pages(plugin):
    made = {create(plugin, f"l{i}").volume_id for i in range(5)}
    seen, token = [], ""
    while True:
        page = plugin.controller.ListVolumes(csi.ListVolumesRequest(max_entries=2, starting_token=token))
        assert len(page.entries) <= 2
        seen += [e.volume.volume_id for e in page.entries]
        token = page.next_token
        if not token:
            break
    assert sorted(seen) == sorted(made)
    bad = csi.ListVolumesRequest(starting_token="bogus")
    assert code(plugin.controller.ListVolumes, bad) == grpc.StatusCode.ABORTED
    assert (
        code(plugin.controller.ListVolumes, csi.ListVolumesRequest(max_entries=-1)) == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_get_capacity(plugin):
    free = plugin.controller.GetCapacity(csi.GetCapacityRequest()).available_capacity
    assert free > 0
    here = csi.Topology(segments={TOPOLOGY_KEY: "main"})
    there = csi.Topology(segments={TOPOLOGY_KEY: "backup"})
    assert plugin.controller.GetCapacity(csi.GetCapacityRequest(accessible_topology=here)).available_capacity > 0
    assert plugin.controller.GetCapacity(csi.GetCapacityRequest(accessible_topology=there)).available_capacity == 0


# -- expand and modify -------------------------------------------------------------------------------
def test_expand(plugin):
    volume = create(plugin, "grow", 64 * MIB)
    grown = plugin.controller.ControllerExpandVolume(
        csi.ControllerExpandVolumeRequest(
            volume_id=volume.volume_id, capacity_range=csi.CapacityRange(required_bytes=GIB)
        )
    )
    assert grown.capacity_bytes == GIB and grown.node_expansion_required
    same = plugin.controller.ControllerExpandVolume(
        csi.ControllerExpandVolumeRequest(
            volume_id=volume.volume_id, capacity_range=csi.CapacityRange(required_bytes=MIB)
        )
    )
    assert same.capacity_bytes == GIB  # never shrinks
    too_small = csi.ControllerExpandVolumeRequest(
        volume_id=volume.volume_id, capacity_range=csi.CapacityRange(required_bytes=MIB, limit_bytes=MIB)
    )
    assert code(plugin.controller.ControllerExpandVolume, too_small) == grpc.StatusCode.OUT_OF_RANGE
    missing = csi.ControllerExpandVolumeRequest(
        volume_id="ccv1-1-0000ff", capacity_range=csi.CapacityRange(required_bytes=1)
    )
    assert code(plugin.controller.ControllerExpandVolume, missing) == grpc.StatusCode.NOT_FOUND
    no_range = csi.ControllerExpandVolumeRequest(volume_id=volume.volume_id)
    assert code(plugin.controller.ControllerExpandVolume, no_range) == grpc.StatusCode.INVALID_ARGUMENT


def test_modify_sets_qos_the_array_enforces(plugin, stub):
    volume = create(plugin, "qos")
    plugin.controller.ControllerModifyVolume(
        csi.ControllerModifyVolumeRequest(volume_id=volume.volume_id, mutable_parameters={"maxIOPS": "250"})
    )
    plugin.controller.ControllerModifyVolume(
        csi.ControllerModifyVolumeRequest(volume_id=volume.volume_id, mutable_parameters={"maxMBps": "12"})
    )
    ldev = stub.GetLdev(pb.GetLdevRequest(name="qos"))
    assert (ldev.max_iops, ldev.max_mbps) == (250, 12)  # a key not given keeps its value
    bad = csi.ControllerModifyVolumeRequest(volume_id=volume.volume_id, mutable_parameters={"colour": "1"})
    assert code(plugin.controller.ControllerModifyVolume, bad) == grpc.StatusCode.INVALID_ARGUMENT
    missing = csi.ControllerModifyVolumeRequest(volume_id="ccv1-1-0000ff", mutable_parameters={"maxIOPS": "1"})
    assert code(plugin.controller.ControllerModifyVolume, missing) == grpc.StatusCode.NOT_FOUND


# -- snapshots, clones, groups, metadata ---------------------------------------------------------------
def snap(plugin, volume, name="snap") -> csi.Snapshot:
    return plugin.controller.CreateSnapshot(
        csi.CreateSnapshotRequest(name=name, source_volume_id=volume.volume_id)
    ).snapshot


def write(context_or_export, array_proc, stub, name, data, offset=0):
    publication = stub.PublishLdev(
        pb.PublishLdevRequest(ldev_id=stub.GetLdev(pb.GetLdevRequest(name=name)).id, host_id="writer")
    )
    client = RawClient(array_proc.nbd_address)
    client.go(publication.export_name)
    assert client.write(offset, data) == 0
    client.close()
    stub.UnpublishLdev(pb.UnpublishLdevRequest(ldev_id=publication.ldev_id, host_id="writer"))


def test_snapshot_lifecycle_and_restore_into_new_volume(plugin, array_proc, stub):
    volume = create(plugin, "src", 16 * MIB)
    write(None, array_proc, stub, "src", b"before" * 1000)
    snapshot = snap(plugin, volume)
    assert snapshot.ready_to_use and snapshot.source_volume_id == volume.volume_id and snapshot.size_bytes == 16 * MIB
    assert snap(plugin, volume) == snapshot  # idempotent
    other = create(plugin, "other")
    same_name = csi.CreateSnapshotRequest(name="snap", source_volume_id=other.volume_id)
    assert code(plugin.controller.CreateSnapshot, same_name) == grpc.StatusCode.ALREADY_EXISTS
    write(None, array_proc, stub, "src", b"after!" * 1000)

    restored = plugin.controller.CreateVolume(
        csi.CreateVolumeRequest(
            name="restored",
            volume_capabilities=[mount_cap()],
            volume_content_source=csi.VolumeContentSource(
                snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=snapshot.snapshot_id)
            ),
        )
    ).volume
    assert restored.capacity_bytes == 16 * MIB and restored.content_source.snapshot.snapshot_id == snapshot.snapshot_id
    context = publish(plugin, restored)
    client = RawClient(context["nbdAddress"])
    client.go(context["nbdExport"])
    assert client.read(0, 6000) == (0, b"before" * 1000)
    client.close()

    too_small = csi.CreateVolumeRequest(
        name="small",
        volume_capabilities=[mount_cap()],
        capacity_range=csi.CapacityRange(limit_bytes=MIB),
        volume_content_source=csi.VolumeContentSource(
            snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=snapshot.snapshot_id)
        ),
    )
    assert code(plugin.controller.CreateVolume, too_small) == grpc.StatusCode.OUT_OF_RANGE
    missing = csi.CreateVolumeRequest(
        name="m",
        volume_capabilities=[mount_cap()],
        volume_content_source=csi.VolumeContentSource(
            snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id="ccs1-1-99")
        ),
    )
    assert code(plugin.controller.CreateVolume, missing) == grpc.StatusCode.NOT_FOUND

    got = plugin.controller.GetSnapshot(csi.GetSnapshotRequest(snapshot_id=snapshot.snapshot_id)).snapshot
    assert got == snapshot
    by_source = plugin.controller.ListSnapshots(csi.ListSnapshotsRequest(source_volume_id=volume.volume_id)).entries
    assert [e.snapshot.snapshot_id for e in by_source] == [snapshot.snapshot_id]
    by_id = plugin.controller.ListSnapshots(csi.ListSnapshotsRequest(snapshot_id=snapshot.snapshot_id)).entries
    assert len(by_id) == 1
    assert plugin.controller.ListSnapshots(csi.ListSnapshotsRequest(snapshot_id="ccs1-1-999")).entries == []
    assert (
        code(plugin.controller.ListSnapshots, csi.ListSnapshotsRequest(starting_token="x")) == grpc.StatusCode.ABORTED
    )

    plugin.controller.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot_id))
    plugin.controller.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot_id))
    assert (
        code(plugin.controller.GetSnapshot, csi.GetSnapshotRequest(snapshot_id=snapshot.snapshot_id))
        == grpc.StatusCode.NOT_FOUND
    )
    assert code(plugin.controller.DeleteSnapshot, csi.DeleteSnapshotRequest()) == grpc.StatusCode.INVALID_ARGUMENT


def test_clone_volume(plugin, array_proc, stub):
    volume = create(plugin, "orig", 8 * MIB)
    write(None, array_proc, stub, "orig", b"clone-me" * 512)
    clone = plugin.controller.CreateVolume(
        csi.CreateVolumeRequest(
            name="copy",
            volume_capabilities=[block_cap()],
            capacity_range=csi.CapacityRange(required_bytes=16 * MIB),
            volume_content_source=csi.VolumeContentSource(
                volume=csi.VolumeContentSource.VolumeSource(volume_id=volume.volume_id)
            ),
        )
    ).volume
    assert clone.capacity_bytes == 16 * MIB and clone.content_source.volume.volume_id == volume.volume_id
    context = publish(plugin, clone, cap=block_cap())
    client = RawClient(context["nbdAddress"])
    client.go(context["nbdExport"])
    assert client.read(0, 4096) == (0, b"clone-me" * 512)
    client.close()


def test_group_snapshots_and_metadata(plugin, array_proc, stub):
    a, b = create(plugin, "ga", 8 * MIB), create(plugin, "gb", 8 * MIB)
    write(None, array_proc, stub, "ga", b"a" * (128 * 1024))
    request = csi.CreateVolumeGroupSnapshotRequest(name="vgs", source_volume_ids=[a.volume_id, b.volume_id])
    group = plugin.groups.CreateVolumeGroupSnapshot(request).group_snapshot
    assert group.ready_to_use and len(group.snapshots) == 2
    assert all(s.group_snapshot_id == group.group_snapshot_id for s in group.snapshots)
    assert plugin.groups.CreateVolumeGroupSnapshot(request).group_snapshot == group
    other = csi.CreateVolumeGroupSnapshotRequest(name="vgs", source_volume_ids=[a.volume_id])
    assert code(plugin.groups.CreateVolumeGroupSnapshot, other) == grpc.StatusCode.ALREADY_EXISTS
    got = plugin.groups.GetVolumeGroupSnapshot(
        csi.GetVolumeGroupSnapshotRequest(group_snapshot_id=group.group_snapshot_id)
    )
    assert got.group_snapshot == group
    member = next(s for s in group.snapshots if s.source_volume_id == a.volume_id)

    allocated = list(
        plugin.metadata.GetMetadataAllocated(csi.GetMetadataAllocatedRequest(snapshot_id=member.snapshot_id))
    )
    extents = [(m.byte_offset, m.size_bytes) for r in allocated for m in r.block_metadata]
    assert extents == [(0, 128 * 1024)] and allocated[0].volume_capacity_bytes == 8 * MIB
    assert allocated[0].block_metadata_type == csi.VARIABLE_LENGTH

    write(None, array_proc, stub, "ga", b"z" * 10, offset=4 * MIB)
    later = snap(plugin, a, "later")
    delta = list(
        plugin.metadata.GetMetadataDelta(
            csi.GetMetadataDeltaRequest(base_snapshot_id=member.snapshot_id, target_snapshot_id=later.snapshot_id)
        )
    )
    assert [(m.byte_offset, m.size_bytes) for r in delta for m in r.block_metadata] == [(4 * MIB, 64 * 1024)]
    bad = csi.GetMetadataAllocatedRequest(snapshot_id="ccs1-1-999")
    assert code(plugin.metadata.GetMetadataAllocated, bad) == grpc.StatusCode.NOT_FOUND
    negative = csi.GetMetadataAllocatedRequest(snapshot_id=member.snapshot_id, starting_offset=-1)
    assert code(plugin.metadata.GetMetadataAllocated, negative) == grpc.StatusCode.INVALID_ARGUMENT

    assert (
        code(plugin.controller.DeleteSnapshot, csi.DeleteSnapshotRequest(snapshot_id=member.snapshot_id))
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    wrong = csi.DeleteVolumeGroupSnapshotRequest(group_snapshot_id=group.group_snapshot_id, snapshot_ids=["ccs1-1-1"])
    assert code(plugin.groups.DeleteVolumeGroupSnapshot, wrong) == grpc.StatusCode.INVALID_ARGUMENT
    plugin.groups.DeleteVolumeGroupSnapshot(
        csi.DeleteVolumeGroupSnapshotRequest(group_snapshot_id=group.group_snapshot_id)
    )
    plugin.groups.DeleteVolumeGroupSnapshot(
        csi.DeleteVolumeGroupSnapshotRequest(group_snapshot_id=group.group_snapshot_id)
    )
    missing = csi.GetVolumeGroupSnapshotRequest(group_snapshot_id=group.group_snapshot_id)
    assert code(plugin.groups.GetVolumeGroupSnapshot, missing) == grpc.StatusCode.NOT_FOUND


def test_concurrent_operations_on_one_volume_answer_aborted(plugin):
    from concurrent.futures import ThreadPoolExecutor

    volume = create(plugin, "busy")
    request = csi.ControllerExpandVolumeRequest(
        volume_id=volume.volume_id, capacity_range=csi.CapacityRange(required_bytes=GIB)
    )

    def expand(_):
        try:
            plugin.controller.ControllerExpandVolume(request)
            return "ok"
        except grpc.RpcError as exc:
            return exc.code()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(expand, range(16)))
    assert "ok" in results and set(results) <= {"ok", grpc.StatusCode.ABORTED}


def test_snapshots_take_the_snapshotters_metadata_and_refuse_other_parameters(plugin, stub):
    volume = create(plugin, "meta-src")
    metadata = {
        "csi.storage.k8s.io/volumesnapshot/name": "nightly",
        "csi.storage.k8s.io/volumesnapshot/namespace": "shop",
        "csi.storage.k8s.io/volumesnapshotcontent/name": "snapcontent-1",
    }
    snapshot = plugin.controller.CreateSnapshot(
        csi.CreateSnapshotRequest(name="meta-snap", source_volume_id=volume.volume_id, parameters=metadata)
    ).snapshot
    number = int(snapshot.snapshot_id.rsplit("-", 1)[1], 16)
    labels = stub.GetSnapshot(pb.GetSnapshotRequest(id=number)).labels
    assert labels["csi.consistentcopy.io/k8s-volumesnapshot/namespace"] == "shop"  # kept as labels
    group = plugin.groups.CreateVolumeGroupSnapshot(
        csi.CreateVolumeGroupSnapshotRequest(
            name="meta-group", source_volume_ids=[volume.volume_id],
            parameters={"csi.storage.k8s.io/volumegroupsnapshot/name": "nightly-group"},
        )
    ).group_snapshot
    assert group.ready_to_use
    bad = csi.CreateSnapshotRequest(name="bad-snap", source_volume_id=volume.volume_id, parameters={"colour": "red"})
    assert code(plugin.controller.CreateSnapshot, bad) == grpc.StatusCode.INVALID_ARGUMENT
    bad_group = csi.CreateVolumeGroupSnapshotRequest(
        name="bad-group", source_volume_ids=[volume.volume_id], parameters={"colour": "red"}
    )
    assert code(plugin.groups.CreateVolumeGroupSnapshot, bad_group) == grpc.StatusCode.INVALID_ARGUMENT


def test_publish_needs_a_known_node_and_room_on_it(plugin, stub):
    volume = create(plugin, "limits")
    unknown = csi.ControllerPublishVolumeRequest(volume_id=volume.volume_id, node_id="no-such-node",
                                                 volume_capability=mount_cap())  # fmt: skip
    assert code(plugin.controller.ControllerPublishVolume, unknown) == grpc.StatusCode.NOT_FOUND
    stub.RegisterHost(pb.RegisterHostRequest(host_id="small-node", max_volumes=2))  # its node plugin would
    made = [create(plugin, f"limit-{n}") for n in range(3)]
    for vol in made[:2]:
        publish(plugin, vol, node="small-node")
    publish(plugin, made[0], node="small-node")  # a repeat takes no more room
    third = csi.ControllerPublishVolumeRequest(volume_id=made[2].volume_id, node_id="small-node",
                                               volume_capability=mount_cap())  # fmt: skip
    assert code(plugin.controller.ControllerPublishVolume, third) == grpc.StatusCode.RESOURCE_EXHAUSTED
    plugin.controller.ControllerUnpublishVolume(
        csi.ControllerUnpublishVolumeRequest(volume_id=made[0].volume_id, node_id="small-node")
    )
    plugin.controller.ControllerPublishVolume(third)  # room again
    assert stub.GetHost(pb.GetHostRequest(host_id="small-node")).published_ldevs == 2
    info = plugin.node.NodeGetInfo(csi.NodeGetInfoRequest())
    assert stub.GetHost(pb.GetHostRequest(host_id=info.node_id)).max_volumes == info.max_volumes_per_node
