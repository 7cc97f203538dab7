"""Our VolumeGroupReplication (csi-addons): the one object per namespace that both the
namespace operator (primary, at the main site) and the backup-site registrar (secondary)
make, selecting the member PVCs by one label."""

from __future__ import annotations

GROUP, VERSION = "replication.storage.openshift.io", "v1alpha1"
REPLICATION = (GROUP, VERSION)
VGRS = "volumegroupreplications"
MANAGED_BY = "app.kubernetes.io/managed-by"
# One VolumeGroupReplication (and one ConsistentCopy) per protected namespace, both of this name.
OBJECT_NAME = "consistentcopy"
# The label on member PVCs the VolumeGroupReplication selects (value: the namespace).
MEMBER_LABEL = "consistentcopy.io/consistency-group"


def group_replication(namespace: str, group_class: str, replication_class: str, state: str, manager: str) -> dict:
    """The VolumeGroupReplication over the namespace's member PVCs, in `state` (primary, secondary)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VolumeGroupReplication",
        "metadata": {"name": OBJECT_NAME, "namespace": namespace, "labels": {MANAGED_BY: manager}},
        "spec": {
            "volumeGroupReplicationClassName": group_class,
            "volumeReplicationClassName": replication_class,
            "replicationState": state,
            "source": {"selector": {"matchLabels": {MEMBER_LABEL: namespace}}},
        },
    }
