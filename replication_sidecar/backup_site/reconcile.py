"""The registrar's decisions, pure: from this array's S-VOLs and this cluster's objects to
the actions that make each S-VOL a PV and a PVC of the main PVC's name, grouped per
namespace by one secondary VolumeGroupReplication.

- A paired S-VOL: its namespace (made if missing), a PV (`Retain`, the S-VOL's volume
  handle, the size, volume mode and access modes the P-VOL's labels carry) pre-bound to
  a PVC of the main PVC's name, labelled for the group's selector.
- An S-VOL whose pair the main site deleted: its PVC leaves the group (label off, then
  deleted once the group let go of it); the PV stays, Released, with the data. A
  namespace without paired S-VOLs loses its VolumeGroupReplication.
- Each namespace with paired S-VOLs has a ConsistentCopy saying how far behind the main
  site this copy is and, after a takeover, what it gave up (`status.py`).
- An S-VOL of a single VolumeReplication (journal group `vr-...`) is left alone: grouping it
  under a secondary VolumeGroupReplication made the csi-addons manager resync it back to the
  main site once its pair ended.
- A PVC of that name the user made, or an S-VOL without the PVC's name in its labels
  (paired outside Kubernetes): nothing is made, and a warning says why.

Same observation, same actions: every pass is safe to repeat.
"""

from __future__ import annotations

from collections import defaultdict

from replication_sidecar.backup_site.model import (
    ACCESS_MODES,
    FS_TYPE,
    MANAGED_BY,
    PVC_NAME,
    PVC_NAMESPACE,
    REGISTRAR,
    VOLUME_MODE,
    Action,
    CreateGroupReplication,
    CreateNamespace,
    CreatePv,
    CreatePvc,
    DeleteConsistentCopy,
    DeleteGroupReplication,
    DeletePvc,
    LabelPvc,
    Observed,
    RegistrarConfig,
    SeenPvc,
    SVol,
    Warning,
)
from replication_sidecar.backup_site.status import status_actions
from replication_sidecar.group_replication import MEMBER_LABEL, group_replication
from replication_sidecar.replication import SINGLE_PREFIX

# The csi-addons manager's finalizer on a member PVC (deleting it waits for the group to let go).
GROUP_FINALIZER = "replication.storage.openshift.io/vgr-protection"


def reconcile(seen: Observed, config: RegistrarConfig) -> list[Action]:
    actions: list[Action] = []
    pvs = {pv.volume_handle for pv in seen.pvs}
    pvcs = {(c.namespace, c.name): c for c in seen.pvcs}
    members: defaultdict[str, list[tuple[str, SVol]]] = defaultdict(list)
    new_namespaces: set[str] = set()
    for svol in sorted(seen.svols, key=lambda s: s.volume_handle):
        namespace, name = svol.labels.get(PVC_NAMESPACE, ""), svol.labels.get(PVC_NAME, "")
        if not namespace or not name:
            if svol.paired:
                actions.append(Warning("", "MissingLabels", f"S-VOL {svol.volume_handle} carries no PVC namespace "
                                       "and name (paired outside Kubernetes?): no PV is made for it"))  # fmt: skip
            continue
        if svol.paired and svol.group.startswith(SINGLE_PREFIX):
            continue  # a PVC's own VolumeReplication, not a namespace's consistency group: not ours to group
        pvc = pvcs.get((namespace, name))
        if not svol.paired:
            actions += release(pvc, svol)
            continue
        if pvc is not None and not ours(pvc, svol):
            why = f"PVC {namespace}/{name} exists and is not the backup of S-VOL {svol.volume_handle}"
            actions.append(Warning(namespace, "NameClash", f"{why}: rename or delete it to have the backup registered"))
            continue
        if namespace not in seen.namespaces and namespace not in new_namespaces:
            new_namespaces.add(namespace)
            actions.append(CreateNamespace(namespace))
        if svol.volume_handle not in pvs:
            actions.append(CreatePv(pv_body(svol, namespace, name, config)))
        if pvc is None:
            actions.append(CreatePvc(pvc_body(svol, namespace, name, config)))
        elif pvc.labels.get(MEMBER_LABEL) != namespace and not pvc.deleting:
            actions.append(LabelPvc(namespace, name, namespace))
        members[namespace].append((name, svol))
    actions += [
        CreateGroupReplication(
            ns, group_replication(ns, config.group_class, config.replication_class, "secondary", REGISTRAR)
        )
        for ns in sorted(members)
        if ns not in seen.groups
    ]
    actions += [DeleteGroupReplication(ns) for ns in sorted(seen.groups - members.keys())]
    for ns in sorted(members):
        actions += status_actions(ns, members[ns], seen)
    actions += [DeleteConsistentCopy(ns) for ns in sorted(seen.consistent_copies.keys() - members.keys())]
    return actions


def release(pvc: SeenPvc | None, svol: SVol) -> list[Action]:
    """The pair is gone: the PVC leaves the group, then goes; its PV stays Released."""
    if pvc is None or not ours(pvc, svol) or pvc.deleting:
        return []
    if MEMBER_LABEL in pvc.labels:
        return [LabelPvc(pvc.namespace, pvc.name, None)]
    if GROUP_FINALIZER in pvc.finalizers:
        return []  # the group has not let go of it yet
    return [DeletePvc(pvc.namespace, pvc.name)]


def ours(pvc: SeenPvc, svol: SVol) -> bool:
    return pvc.managed and pvc.volume_name == pv_name(svol)


def pv_name(svol: SVol) -> str:
    return f"ccopy-backup-{svol.volume_handle}".lower()


def volume_mode(svol: SVol) -> str:
    """What the P-VOL was made with; volumes made before these labels existed were file systems."""
    return svol.labels.get(VOLUME_MODE) or "Filesystem"


def access_modes(svol: SVol) -> list[str]:
    return [mode for mode in svol.labels.get(ACCESS_MODES, "").split(",") if mode] or ["ReadWriteOnce"]


def pv_body(svol: SVol, namespace: str, name: str, config: RegistrarConfig) -> dict:
    csi = {"driver": config.driver, "volumeHandle": svol.volume_handle}
    if volume_mode(svol) == "Filesystem":
        csi["fsType"] = svol.labels.get(FS_TYPE) or "ext4"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name(svol), "labels": {MANAGED_BY: REGISTRAR}},
        "spec": {
            "capacity": {"storage": str(svol.size)},
            "accessModes": access_modes(svol),
            "volumeMode": volume_mode(svol),
            "persistentVolumeReclaimPolicy": "Retain",  # the backup's data outlives its PVC
            "storageClassName": config.storage_class,
            "claimRef": {"namespace": namespace, "name": name},
            "csi": csi,
        },
    }


def pvc_body(svol: SVol, namespace: str, name: str, config: RegistrarConfig) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY: REGISTRAR, MEMBER_LABEL: namespace}},
        "spec": {
            "accessModes": access_modes(svol),
            "volumeMode": volume_mode(svol),
            "storageClassName": config.storage_class,
            "volumeName": pv_name(svol),
            "resources": {"requests": {"storage": str(svol.size)}},
        },
    }
