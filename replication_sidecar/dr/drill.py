"""The objects of a DR drill, pure: a VolumeGroupSnapshot over the backup PVCs of a
namespace (one snapshot group, cut at a journal sequence boundary of their group while
copying goes on), then, in the drill namespace, a pre-provisioned VolumeSnapshotContent
and VolumeSnapshot for each of its snapshots and a PVC restored from each.

VolumeSnapshots are namespaced and a PVC restores only from one in its own namespace, so
the drill namespace gets its own VolumeSnapshot of the same array snapshot (a content
with `deletionPolicy: Retain`: deleting the drill never deletes the group's snapshots;
deleting the VolumeGroupSnapshot does)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from replication_sidecar.group_replication import MEMBER_LABEL

SNAPSHOTS = ("snapshot.storage.k8s.io", "v1")
GROUP_SNAPSHOTS = "groupsnapshot.storage.k8s.io"
DRILL_OF = "consistentcopy.io/drill-of"  # on the drill namespace: the namespace it copies
DRILL_SNAPSHOT = "consistentcopy.io/drill-group-snapshot"  # on the drill namespace: the group snapshot's name
# The snapshot controller retries a failed step (with backoff from 1 s) and clears the error once the
# group snapshot is ready: an error it has kept this long is its answer, not a passing conflict.
ERROR_PATIENCE = 30.0


@dataclass(frozen=True)
class MemberSnapshot:
    """One VolumeSnapshot of the group snapshot, with what a restore needs of it."""

    pvc: str  # the backup PVC it was taken of
    handle: str  # the CSI snapshot id (its content's status.snapshotHandle)
    restore_size: int
    volume_mode: str = "Filesystem"
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)


class SnapshotFailed(Exception):
    """The group snapshot kept the same error for ERROR_PATIENCE seconds."""


@dataclass
class GroupSnapshotWatch:
    """Reads a VolumeGroupSnapshot's status as the snapshot controller means it.

    `status.error` is the last error of a step the controller retries, not a verdict: an
    update that loses a race with another writer ("the object has been modified") sets it
    and the next try clears it. So ready means readyToUse, and an error fails the wait only
    when it stays, unchanged, for `patience` seconds.
    """

    say: Callable[[str], None]
    patience: float = ERROR_PATIENCE
    clock: Callable[[], float] = field(default=time.monotonic)
    _error: str = ""
    _since: float = 0.0

    def ready(self, found: dict) -> bool:
        status = found.get("status") or {}
        if status.get("readyToUse"):
            return True
        error = status.get("error") or {}
        message = str(error.get("message") or error) if error else ""
        now = self.clock()
        if message != self._error:
            self._error, self._since = message, now
            if message:
                self.say(f"backup: the snapshot controller reports, and retries: {message}")
        elif message and now - self._since > self.patience:
            raise SnapshotFailed(message)
        return False


def group_snapshot(namespace: str, name: str, version: str, snapshot_class: str) -> dict:
    """Over every backup PVC of the namespace's consistency group, by the group's label."""
    return {
        "apiVersion": f"{GROUP_SNAPSHOTS}/{version}",
        "kind": "VolumeGroupSnapshot",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "volumeGroupSnapshotClassName": snapshot_class,
            "source": {"selector": {"matchLabels": {MEMBER_LABEL: namespace}}},
        },
    }


def drill_namespace(into: str, source: str, group_snapshot_name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": into, "labels": {DRILL_OF: source}, "annotations": {DRILL_SNAPSHOT: group_snapshot_name}},
    }


def content_name(into: str, pvc: str) -> str:
    """Cluster-scoped: the drill namespace in it keeps two drills' contents apart."""
    return f"ccopy-drill-{into}-{pvc}"[:253]


def restored(member: MemberSnapshot, into: str, driver: str, storage_class: str) -> list[dict]:
    """The VolumeSnapshotContent, the VolumeSnapshot and the PVC of one member in the drill namespace."""
    group, version = SNAPSHOTS
    content = {
        "apiVersion": f"{group}/{version}",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": content_name(into, member.pvc), "labels": {DRILL_OF: into}},
        "spec": {
            "driver": driver,
            "deletionPolicy": "Retain",  # the array snapshot belongs to the VolumeGroupSnapshot
            "source": {"snapshotHandle": member.handle},
            "volumeSnapshotRef": {"namespace": into, "name": member.pvc},
        },
    }
    snapshot = {
        "apiVersion": f"{group}/{version}",
        "kind": "VolumeSnapshot",
        "metadata": {"name": member.pvc, "namespace": into},
        "spec": {"source": {"volumeSnapshotContentName": content["metadata"]["name"]}},
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": member.pvc, "namespace": into},
        "spec": {
            "accessModes": list(member.access_modes),
            "volumeMode": member.volume_mode,
            "resources": {"requests": {"storage": str(member.restore_size)}},
            "dataSource": {"apiGroup": group, "kind": "VolumeSnapshot", "name": member.pvc},
        },
    }
    if storage_class:  # else the cluster's default StorageClass
        claim["spec"]["storageClassName"] = storage_class
    return [content, snapshot, claim]
