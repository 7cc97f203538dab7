"""The drill's objects: a group snapshot over the namespace's consistency group, and in the
drill namespace a retained content, a snapshot and a restored PVC for each member."""

from __future__ import annotations

import pytest

from replication_sidecar.dr.drill import (
    DRILL_OF,
    DRILL_SNAPSHOT,
    GroupSnapshotWatch,
    MemberSnapshot,
    SnapshotFailed,
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


CONFLICT = {"message": "snapshot controller failed to update groupsnapcontent-1 on API server: Operation cannot be "
                       "fulfilled ...: the object has been modified", "time": "2026-12-03T13:16:20Z"}  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_error_the_snapshot_controller_clears_on_its_retry_is_said_and_waited_through():
    said: list[str] = []
    clock = Clock()
    watch = GroupSnapshotWatch(said.append, patience=30, clock=clock)
    assert not watch.ready({})  # not yet seen by the controller
    assert not watch.ready({"status": {"error": CONFLICT, "readyToUse": False}})
    clock.now = 29
    assert not watch.ready({"status": {"error": CONFLICT, "readyToUse": False}})
    clock.now = 31  # cleared before the patience ran out: the retry worked
    assert not watch.ready({"status": {"readyToUse": False}})
    assert watch.ready({"status": {"readyToUse": True, "creationTime": "2026-12-03T13:16:21Z"}})
    assert said == [f"backup: the snapshot controller reports, and retries: {CONFLICT['message']}"]


def test_an_error_kept_unchanged_for_the_patience_fails_the_wait_with_its_message():
    clock = Clock()
    watch = GroupSnapshotWatch(lambda _: None, patience=30, clock=clock)
    failing = {"status": {"error": {"message": "CreateVolumeGroupSnapshot: InvalidArgument: no such volume"}}}
    assert not watch.ready(failing)
    clock.now = 20
    assert not watch.ready({"status": {"error": {"message": "another attempt, another error"}}})  # changed: restart
    clock.now = 45
    assert not watch.ready({"status": {"error": {"message": "another attempt, another error"}}})
    clock.now = 51
    with pytest.raises(SnapshotFailed, match="another attempt, another error"):
        watch.ready({"status": {"error": {"message": "another attempt, another error"}}})
