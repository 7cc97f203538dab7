"""The drill's objects: a group snapshot over the namespace's consistency group, and in the
drill namespace a retained content, a snapshot and a restored PVC for each member."""

from __future__ import annotations

from replication_sidecar.dr.drill import (
    DRILL_OF,
    DRILL_SNAPSHOT,
    MemberSnapshot,
    content_name,
    drill_namespace,
    group_snapshot,
    restored,
)
from replication_sidecar.group_replication import MEMBER_LABEL

MEMBER = MemberSnapshot("sales", "ccs1-2002-000007", 64 << 20, "Block", ("ReadWriteMany",))


def test_the_group_snapshot_selects_the_consistency_group_by_its_label():
    body = group_snapshot("shop", "drill-shop-drill", "v1beta2", "ccopy")
    assert body["apiVersion"] == "groupsnapshot.storage.k8s.io/v1beta2" and body["kind"] == "VolumeGroupSnapshot"
    assert body["spec"] == {"volumeGroupSnapshotClassName": "ccopy",
                            "source": {"selector": {"matchLabels": {MEMBER_LABEL: "shop"}}}}  # fmt: skip


def test_each_member_is_restored_through_a_retained_content_so_the_drill_never_deletes_the_backup_snapshots():
    content, snapshot, claim = restored(MEMBER, "shop-drill", "ldev.csi.consistentcopy.io", "ccopy")
    assert content["spec"]["deletionPolicy"] == "Retain"
    assert content["spec"]["source"] == {"snapshotHandle": "ccs1-2002-000007"}
    assert content["spec"]["volumeSnapshotRef"] == {"namespace": "shop-drill", "name": "sales"}
    assert content["metadata"]["labels"] == {DRILL_OF: "shop-drill"}  # how --cleanup finds it
    assert snapshot["metadata"] == {"name": "sales", "namespace": "shop-drill"}
    assert snapshot["spec"]["source"] == {"volumeSnapshotContentName": content_name("shop-drill", "sales")}
    spec = claim["spec"]
    assert spec["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "sales"}
    assert spec["volumeMode"] == "Block" and spec["accessModes"] == ["ReadWriteMany"]
    assert spec["resources"] == {"requests": {"storage": str(64 << 20)}} and spec["storageClassName"] == "ccopy"


def test_without_a_storage_class_the_cluster_default_is_used_and_the_namespace_says_what_it_drills():
    *_, claim = restored(MEMBER, "shop-drill", "ldev.csi.consistentcopy.io", "")
    assert "storageClassName" not in claim["spec"]
    namespace = drill_namespace("shop-drill", "shop", "drill-shop-drill")
    assert namespace["metadata"]["labels"] == {DRILL_OF: "shop"}
    assert namespace["metadata"]["annotations"] == {DRILL_SNAPSHOT: "drill-shop-drill"}
