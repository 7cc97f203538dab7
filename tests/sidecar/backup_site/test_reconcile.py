"""The backup-site registrar's decisions over plain values: every S-VOL becomes a PV and a
PVC of the main PVC's name, grouped per namespace; what it must not do, it says."""

from __future__ import annotations

import dataclasses

from replication_sidecar.backup_site.model import (
    MANAGED_BY,
    ApplyConsistentCopy,
    CreateGroupReplication,
    CreateNamespace,
    CreatePv,
    CreatePvc,
    DeleteConsistentCopy,
    DeleteGroupReplication,
    DeletePvc,
    Event,
    LabelPvc,
    Observed,
    RegistrarConfig,
    SeenPv,
    SeenPvc,
    SVol,
    Warning,
)
from replication_sidecar.backup_site.reconcile import GROUP_FINALIZER, reconcile
from replication_sidecar.namespace_operator.model import MEMBER_LABEL

CONFIG = RegistrarConfig()
PREFIX = "csi.consistentcopy.io/"


def svol(number: int, pvc: str, namespace: str = "shop", paired: bool = True, **more: str) -> SVol:
    labels = {PREFIX + "k8s-pvc/namespace": namespace, PREFIX + "k8s-pvc/name": pvc, "ccopy.svol-of": f"1:{number:06x}"}
    labels |= {PREFIX + key.replace("_", "-"): value for key, value in more.items()}
    return SVol(f"ccv1-2002-{number:06x}", 64 << 20, labels, paired)


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def apply(seen: Observed, actions) -> Observed:
    """What the thin client would make of the actions, as the next observation."""
    pvs = [*seen.pvs, *(SeenPv(a.body["metadata"]["name"], a.body["spec"]["csi"]["volumeHandle"], True)
                        for a in of(actions, CreatePv))]  # fmt: skip
    pvcs = {(c.namespace, c.name): c for c in seen.pvcs}
    for a in of(actions, CreatePvc):
        meta = a.body["metadata"]
        pvcs[(meta["namespace"], meta["name"])] = SeenPvc(
            meta["namespace"],
            meta["name"],
            a.body["spec"]["volumeName"],
            True,
            dict(meta["labels"]),
            (GROUP_FINALIZER,),
        )
    for a in of(actions, LabelPvc):
        old = pvcs[(a.namespace, a.name)]
        labels = {k: v for k, v in old.labels.items() if k != MEMBER_LABEL} | (
            {MEMBER_LABEL: a.value} if a.value else {}
        )
        pvcs[(a.namespace, a.name)] = dataclasses.replace(old, labels=labels)
    for a in of(actions, DeletePvc):
        del pvcs[(a.namespace, a.name)]
    groups = (seen.groups | {a.namespace for a in of(actions, CreateGroupReplication)}) - {
        a.namespace for a in of(actions, DeleteGroupReplication)
    }
    namespaces = seen.namespaces | {a.name for a in of(actions, CreateNamespace)}
    copies = {**seen.consistent_copies, **{a.namespace: {"status": a.status} for a in of(actions, ApplyConsistentCopy)}}
    for a in of(actions, DeleteConsistentCopy):
        del copies[a.namespace]
    return dataclasses.replace(seen, pvs=tuple(pvs), pvcs=tuple(pvcs.values()), namespaces=namespaces, groups=groups,
                               consistent_copies=copies)  # fmt: skip


def registry(actions):
    """The actions on PVs, PVCs, namespaces and groups (not the status and its Events)."""
    return [a for a in actions if not isinstance(a, ApplyConsistentCopy | DeleteConsistentCopy | Event)]


def test_a_new_s_vol_becomes_a_namespace_a_retained_pv_a_pvc_and_a_secondary_group():
    seen = Observed((svol(1, "stock", volume_mode="Filesystem", access_modes="ReadWriteOnce", fs_type="xfs"),))
    actions = reconcile(seen, CONFIG)
    assert of(actions, CreateNamespace) == [CreateNamespace("shop")]
    (pv,) = of(actions, CreatePv)
    spec = pv.body["spec"]
    assert spec["persistentVolumeReclaimPolicy"] == "Retain" and spec["capacity"] == {"storage": str(64 << 20)}
    assert spec["csi"] == {"driver": CONFIG.driver, "volumeHandle": "ccv1-2002-000001", "fsType": "xfs"}
    assert spec["claimRef"] == {"namespace": "shop", "name": "stock"} and spec["accessModes"] == ["ReadWriteOnce"]
    (pvc,) = of(actions, CreatePvc)
    assert pvc.body["metadata"]["name"] == "stock" and pvc.body["spec"]["volumeName"] == pv.body["metadata"]["name"]
    assert pvc.body["metadata"]["labels"] == {MANAGED_BY: "consistentcopy-backup-site", MEMBER_LABEL: "shop"}
    (group,) = of(actions, CreateGroupReplication)
    assert group.body["spec"]["replicationState"] == "secondary"
    assert group.body["spec"]["source"]["selector"]["matchLabels"] == {MEMBER_LABEL: "shop"}


def test_a_repeated_pass_does_nothing_more():
    seen = Observed((svol(1, "stock"), svol(2, "sales")), namespaces=frozenset({"shop"}))
    first = reconcile(seen, CONFIG)
    assert (
        of(first, CreateNamespace) == []
        and len(of(first, CreatePv)) == 2
        and len(of(first, CreateGroupReplication)) == 1
    )
    assert reconcile(apply(seen, first), CONFIG) == []


def test_block_volumes_and_volumes_made_before_the_labels_existed():
    block = svol(3, "raw", volume_mode="Block", access_modes="ReadWriteMany")
    old = svol(4, "legacy")  # no volume-mode or access-modes labels
    bodies = {
        a.body["spec"]["csi"]["volumeHandle"]: a.body["spec"]
        for a in of(reconcile(Observed((block, old)), CONFIG), CreatePv)
    }
    assert bodies["ccv1-2002-000003"]["volumeMode"] == "Block" and "fsType" not in bodies["ccv1-2002-000003"]["csi"]
    assert bodies["ccv1-2002-000003"]["accessModes"] == ["ReadWriteMany"]
    assert (
        bodies["ccv1-2002-000004"]["volumeMode"] == "Filesystem"
        and bodies["ccv1-2002-000004"]["csi"]["fsType"] == "ext4"
    )


def test_an_s_vol_without_the_pvcs_name_is_not_registered_and_says_so():
    bare = SVol("ccv1-2002-000009", 1 << 20, {"ccopy.svol-of": "1:000009"}, True)
    actions = reconcile(Observed((bare,)), CONFIG)
    assert [type(a) for a in actions] == [Warning] and actions[0].reason == "MissingLabels"


def test_a_pvc_the_user_made_under_that_name_is_left_alone_and_named():
    theirs = SeenPvc("shop", "stock", "pv-of-their-own", managed=False)
    actions = reconcile(Observed((svol(1, "stock"),), pvcs=(theirs,), namespaces=frozenset({"shop"})), CONFIG)
    assert of(actions, CreatePv) == [] and of(actions, CreatePvc) == [] and of(actions, CreateGroupReplication) == []
    (warning,) = of(actions, Warning)
    assert warning.reason == "NameClash" and "shop/stock" in warning.message


def test_a_pair_deleted_at_the_main_site_releases_its_pvc_and_keeps_the_pv():
    seen = Observed((svol(1, "stock"), svol(2, "sales")), namespaces=frozenset({"shop"}))
    registered = apply(seen, reconcile(seen, CONFIG))
    one_gone = dataclasses.replace(registered, svols=(svol(1, "stock"), svol(2, "sales", paired=False)))
    first = reconcile(one_gone, CONFIG)
    assert registry(first) == [LabelPvc("shop", "sales", None)]  # out of the group first
    left = apply(one_gone, first)
    assert registry(reconcile(left, CONFIG)) == []  # the group's finalizer still holds it
    let_go = dataclasses.replace(left, pvcs=tuple(dataclasses.replace(c, finalizers=()) if c.name == "sales" else c
                                                for c in left.pvcs))  # fmt: skip
    assert registry(reconcile(let_go, CONFIG)) == [DeletePvc("shop", "sales")]  # the PV stays: Retain, Released


def test_a_namespace_without_paired_s_vols_loses_its_group():
    seen = Observed((svol(1, "stock"),), namespaces=frozenset({"shop"}))
    registered = apply(seen, reconcile(seen, CONFIG))
    unpaired = dataclasses.replace(registered, svols=(svol(1, "stock", paired=False),))
    actions = reconcile(unpaired, CONFIG)
    assert DeleteGroupReplication("shop") in actions and LabelPvc("shop", "stock", None) in actions
    assert of(actions, CreatePv) == []


def test_namespaces_get_one_group_each():
    seen = Observed((svol(1, "stock"), svol(2, "ledger", namespace="bank")), namespaces=frozenset({"shop"}))
    actions = reconcile(seen, CONFIG)
    assert of(actions, CreateNamespace) == [CreateNamespace("bank")]
    assert sorted(a.namespace for a in of(actions, CreateGroupReplication)) == ["bank", "shop"]


def test_the_s_vol_of_a_single_volume_replication_is_left_alone():
    single = dataclasses.replace(svol(1, "stock"), group="vr-ccv1-1001-000001")
    assert reconcile(Observed((single,), namespaces=frozenset({"shop"})), CONFIG) == []
    grouped = dataclasses.replace(svol(2, "sales"), group="vgrcontent-x")
    assert of(reconcile(Observed((single, grouped), namespaces=frozenset({"shop"})), CONFIG), CreatePvc)[0].body[
        "metadata"]["name"] == "sales"
