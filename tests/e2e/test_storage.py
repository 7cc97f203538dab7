"""Storage flows through Kubernetes objects only, on a real API server with the real
kubernetes-csi sidecars in front of `ccopy csi` and a real array.

Each test works in its own namespace on the main site, checks the array itself for
what Kubernetes promised (LDEV labels, one snapshot group, QoS), and ends by deleting
what it made and checking that nothing of it is left on the array.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kubernetes import client

from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from csi_driver.volumes import LABEL_PREFIX
from tests.e2e import objects
from tests.e2e.conftest import GROUP_SNAPSHOT_GROUP, SC, SNAPSHOT_GROUP, SNAPSHOT_VERSION, ldev_of, of_namespace
from tests.e2e.site import Site

pytestmark = pytest.mark.timeout(900)
MIB = 1 << 20


def attach_and_mount(site: Site, pv: client.V1PersistentVolume) -> Path:
    """Attach (csi-attacher's ControllerPublish), then stage and publish with the publish context it
    stored. The node shows its certificate on the data path, so what csi-attacher stores in the
    VolumeAttachment (readable by anyone who may read VolumeAttachments) is the LDEV's name, not a
    secret, and the node's own publication on the array is what lets it in."""
    attachment = site.kubelet.attach(pv.metadata.name)
    metadata = attachment.status.attachment_metadata
    export = metadata.get("nbdExport")
    with site.array_channel() as channel:
        array = pb_grpc.ArrayStub(channel)
        ldev = ldev_of(array, pv)
        publications = array.ListPublications(pb.ListPublicationsRequest(ldev_id=ldev.id)).publications
    mine = [p for p in publications if p.host_id == site.node_name]
    assert len(mine) == 1 and export == mine[0].export_name == ldev.name, (attachment.status, publications)
    assert metadata.get("nbdTls") == "true" and not ldev.open_to_all
    return site.kubelet.mount(pv, attachment)


def write_block(device: Path, data: bytes, offset: int = 0) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_block(device: Path, length: int, offset: int = 0) -> bytes:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def test_filesystem_pvc_is_provisioned_attached_and_holds_data(site, ns, array):
    objects.pvc(site.api, ns, "sales", "64Mi", SC)
    pv = objects.bound(site.api, ns, "sales")
    assert pv.spec.csi.driver == site.driver and pv.spec.capacity["storage"] == "64Mi"
    ldev = ldev_of(array, pv)
    assert ldev.labels[LABEL_PREFIX + "k8s-pvc/name"] == "sales" and of_namespace(ldev, ns), ldev.labels
    assert ldev.labels[LABEL_PREFIX + "k8s-pv/name"] == pv.metadata.name

    target = attach_and_mount(site, pv)
    (target / "orders.txt").write_text("order 1\n")
    assert site.node_name in array.GetLdev(pb.GetLdevRequest(id=ldev.id)).published_hosts
    site.kubelet.unmount(pv.metadata.name)
    site.kubelet.detach(pv.metadata.name)
    assert not array.GetLdev(pb.GetLdevRequest(id=ldev.id)).published_hosts, "detach left the LDEV published"

    target = attach_and_mount(site, pv)  # the data survived a detach and a new attach
    assert (target / "orders.txt").read_text() == "order 1\n"


def test_block_pvc_is_provisioned_attached_and_holds_data(site, ns, array):
    objects.pvc(site.api, ns, "raw", "32Mi", SC, block=True)
    pv = objects.bound(site.api, ns, "raw")
    assert pv.spec.volume_mode == "Block"
    assert ldev_of(array, pv).labels[LABEL_PREFIX + "k8s-pvc/name"] == "raw"
    device = attach_and_mount(site, pv)
    payload = os.urandom(1 * MIB)
    write_block(device, payload, offset=3 * MIB)
    site.kubelet.unmount(pv.metadata.name)
    site.kubelet.detach(pv.metadata.name)
    device = attach_and_mount(site, pv)
    assert read_block(device, len(payload), offset=3 * MIB) == payload


def snapshot(site: Site, namespace: str, name: str, claim: str) -> dict:
    body = {
        "apiVersion": f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}", "kind": "VolumeSnapshot",
        "metadata": {"name": name},
        "spec": {"volumeSnapshotClassName": SC, "source": {"persistentVolumeClaimName": claim}},
    }  # fmt: skip
    objects.custom(site.api).create_namespaced_custom_object(
        SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots", body
    )
    return objects.ready_to_use(site.api, SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshots", namespace, name)


def write_and_release(site: Site, pv: client.V1PersistentVolume, text: str) -> None:
    """Write one file and unmount, so the data is on the LDEV before anything copies it."""
    target = attach_and_mount(site, pv)
    (target / "data.txt").write_text(text)
    site.kubelet.unmount(pv.metadata.name)
    site.kubelet.detach(pv.metadata.name)


def read_back(site: Site, namespace: str, claim: str) -> str:
    pv = objects.bound(site.api, namespace, claim)
    target = attach_and_mount(site, pv)
    text = (target / "data.txt").read_text()
    site.kubelet.unmount(pv.metadata.name)
    site.kubelet.detach(pv.metadata.name)
    return text


def test_snapshot_restores_and_clone_copies(site, ns, array):
    objects.pvc(site.api, ns, "stock", "64Mi", SC)
    pv = objects.bound(site.api, ns, "stock")
    write_and_release(site, pv, "stock at noon\n")
    taken = snapshot(site, ns, "noon", "stock")
    assert taken["status"]["restoreSize"] in ("64Mi", str(64 * MIB)), taken["status"]
    assert len(array.ListSnapshots(pb.ListSnapshotsRequest()).snapshots) == 1
    write_and_release(site, pv, "stock at one\n")  # the snapshot keeps noon's data

    objects.pvc(site.api, ns, "stock-noon", "64Mi", SC, source=(SNAPSHOT_GROUP, "VolumeSnapshot", "noon"))
    objects.pvc(site.api, ns, "stock-copy", "64Mi", SC, source=("", "PersistentVolumeClaim", "stock"))
    assert read_back(site, ns, "stock-noon") == "stock at noon\n"
    assert read_back(site, ns, "stock-copy") == "stock at one\n"
    assert read_back(site, ns, "stock") == "stock at one\n"


def test_group_snapshot_by_label_is_one_snapshot_group(site, ns, array):
    version = objects.newest_served(site.api, f"volumegroupsnapshots.{GROUP_SNAPSHOT_GROUP}")
    for claim in ("sales", "stock"):
        objects.pvc(site.api, ns, claim, "64Mi", SC, labels={"app": "shop"})
        write_and_release(site, objects.bound(site.api, ns, claim), f"{claim} db\n")
    objects.pvc(site.api, ns, "other", "64Mi", SC)  # not labelled: not in the group
    objects.bound(site.api, ns, "other")
    body = {
        "apiVersion": f"{GROUP_SNAPSHOT_GROUP}/{version}", "kind": "VolumeGroupSnapshot",
        "metadata": {"name": "shop-cut"},
        "spec": {"volumeGroupSnapshotClassName": SC, "source": {"selector": {"matchLabels": {"app": "shop"}}}},
    }  # fmt: skip
    objects.custom(site.api).create_namespaced_custom_object(
        GROUP_SNAPSHOT_GROUP, version, ns, "volumegroupsnapshots", body
    )
    objects.ready_to_use(site.api, GROUP_SNAPSHOT_GROUP, version, "volumegroupsnapshots", ns, "shop-cut")

    groups = array.ListSnapshotGroups(pb.ListSnapshotGroupsRequest()).groups
    assert len(groups) == 1 and len(groups[0].snapshots) == 2, groups
    # snapshot-controller makes the members' VolumeSnapshots for the group, not necessarily before it is ready.
    names = objects.await_object(
        lambda: members_of(site, ns, "shop-cut"), lambda found: len(found) == 2, "the group's two VolumeSnapshots"
    )
    for index, name in enumerate(names):
        objects.ready_to_use(site.api, SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshots", ns, name)
        objects.pvc(site.api, ns, f"restored-{index}", "64Mi", SC, source=(SNAPSHOT_GROUP, "VolumeSnapshot", name))
    restored = {read_back(site, ns, f"restored-{index}") for index in range(2)}
    assert restored == {"sales db\n", "stock db\n"}


def members_of(site: Site, namespace: str, group_snapshot: str) -> list[str]:
    listed = objects.custom(site.api).list_namespaced_custom_object(
        SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots"
    )
    return [
        item["metadata"]["name"]
        for item in listed["items"]
        if (item.get("status") or {}).get("volumeGroupSnapshotName") == group_snapshot
    ]


def test_expansion_grows_volume_and_file_system(site, ns, array):
    """On xfs: ext4's online resize needs CAP_SYS_RESOURCE, which root lacks on some
    machines (this one); tests/csi covers ext4 where the capability is there."""
    objects.storage_class(site.api, f"xfs-{ns}", site.driver, **{"csi.storage.k8s.io/fstype": "xfs"})
    objects.pvc(site.api, ns, "grow", "320Mi", f"xfs-{ns}")
    pv = objects.bound(site.api, ns, "grow")
    target = attach_and_mount(site, pv)
    before = os.statvfs(target)
    core = client.CoreV1Api(site.api)
    core.patch_namespaced_persistent_volume_claim(
        "grow", ns, {"spec": {"resources": {"requests": {"storage": "640Mi"}}}}
    )
    objects.await_object(
        lambda: core.read_persistent_volume(pv.metadata.name),
        lambda volume: volume.spec.capacity["storage"] == "640Mi", "PV grown to 640Mi",
    )  # fmt: skip
    assert site.kubelet.expand(ns, "grow") >= 640 * MIB
    after = os.statvfs(target)
    assert after.f_blocks * after.f_frsize > 1.8 * before.f_blocks * before.f_frsize, (before, after)
    assert ldev_of(array, pv).size_bytes == 640 * MIB
    client.StorageV1Api(site.api).delete_storage_class(f"xfs-{ns}")


def test_volume_attributes_class_change_sets_qos(site, ns, array):
    storage = client.StorageV1Api(site.api)
    name = f"gold-{ns}"
    storage.create_volume_attributes_class(
        client.V1VolumeAttributesClass(
            metadata=client.V1ObjectMeta(name=name), driver_name=site.driver,
            parameters={"maxIOPS": "500", "maxMBps": "40"},
        )
    )  # fmt: skip
    try:
        objects.pvc(site.api, ns, "tuned", "64Mi", SC)
        pv = objects.bound(site.api, ns, "tuned")
        core = client.CoreV1Api(site.api)
        core.patch_namespaced_persistent_volume_claim("tuned", ns, {"spec": {"volumeAttributesClassName": name}})
        objects.await_object(
            lambda: core.read_namespaced_persistent_volume_claim("tuned", ns),
            lambda c: c.status.current_volume_attributes_class_name == name, "ControllerModifyVolume done",
        )  # fmt: skip
        ldev = ldev_of(array, pv)
        assert (ldev.max_iops, ldev.max_mbps) == (500, 40)
    finally:
        storage.delete_volume_attributes_class(name)
