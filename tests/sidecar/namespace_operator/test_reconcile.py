"""The namespace operator's decisions over plain values: every case of the label, the PVCs
and the group, and what a person reads on the ConsistentCopy object."""

from __future__ import annotations

import dataclasses

import pytest

from replication_sidecar.namespace_operator.model import (
    MEMBER_LABEL,
    RPO_ANNOTATION,
    ApplyConsistentCopy,
    ArrayGroup,
    ArrayPair,
    CreateGroupReplication,
    DeleteConsistentCopy,
    DeleteGroupReplication,
    Event,
    GroupReplication,
    LabelPvc,
    Observed,
    OperatorConfig,
    Pvc,
)
from replication_sidecar.namespace_operator.reconcile import reconcile

CONFIG = OperatorConfig()
LABEL = {CONFIG.label_key: CONFIG.label_value}
CLASSES = {"ldev": CONFIG.driver, "local": "rancher.io/local-path"}
NOW = 1_800_000_000 * 10**9


def pvc(name: str, phase: str = "Bound", storage_class: str = "ldev", member: bool = False, **kw) -> Pvc:
    labels = {MEMBER_LABEL: "shop"} if member else {}
    return Pvc(name, storage_class, phase, f"1-{name}" if phase == "Bound" else "", labels, **kw)


def seen(*pvcs: Pvc, labels=LABEL, **kw) -> Observed:
    return Observed("shop", dict(labels), pvcs=pvcs, storage_classes=CLASSES, now_ns=NOW, **kw)


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def status_of(actions) -> dict:
    (applied,) = of(actions, ApplyConsistentCopy)
    return applied.status


def conditions(actions) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status_of(actions)["conditions"]}


def apply(observed: Observed, actions) -> Observed:
    """What the thin client would make of the actions, as the next observation."""
    pvcs = list(observed.pvcs)
    for label in of(actions, LabelPvc):
        pvcs = [
            dataclasses.replace(p, labels={**p.labels, MEMBER_LABEL: label.value} if label.value else {})
            if p.name == label.pvc
            else p
            for p in pvcs
        ]
    vgr = observed.vgr
    if of(actions, CreateGroupReplication):
        vgr = GroupReplication()
    if of(actions, DeleteGroupReplication):
        vgr = dataclasses.replace(vgr, deleting=True)
    copy = observed.consistent_copy
    for applied in of(actions, ApplyConsistentCopy):
        copy = {"spec": applied.spec, "status": applied.status}
    if of(actions, DeleteConsistentCopy):
        copy = None
    return dataclasses.replace(observed, pvcs=tuple(pvcs), vgr=vgr, consistent_copy=copy)


def paired(state: str = "PAIR", age: float = 0.5, **kw) -> ArrayGroup:
    pairs = {f"1-{name}": ArrayPair(f"00:00:0{i}", f"{i:06X}", state) for i, name in enumerate(("sales", "stock"), 1)}
    return ArrayGroup("vgrcontent-x", pairs, "HEALTHY", "2 volume(s) in PAIR", NOW - int(age * 1e9),
                      usage_bytes=1 << 20, capacity_bytes=64 << 20, **kw)  # fmt: skip


def test_labelling_a_namespace_labels_its_bound_pvcs_and_makes_one_group():
    actions = reconcile(seen(pvc("stock"), pvc("sales")), CONFIG)
    assert of(actions, LabelPvc) == [LabelPvc("sales", "shop"), LabelPvc("stock", "shop")]
    (create,) = of(actions, CreateGroupReplication)
    spec = create.body["spec"]
    assert spec["replicationState"] == "primary" and spec["source"]["selector"]["matchLabels"] == {MEMBER_LABEL: "shop"}
    assert spec["volumeGroupReplicationClassName"] == CONFIG.group_class
    assert status_of(actions)["volumeCount"] == 2
    assert conditions(actions)["Ready"] == ("False", "WaitingForGroup")
    assert {e.reason for e in of(actions, Event)} >= {"VolumeJoining", "WaitingForGroup"}


def test_a_repeated_pass_changes_nothing_and_says_nothing_new():
    first = seen(pvc("stock"), pvc("sales"))
    after = apply(first, reconcile(first, CONFIG))
    again = reconcile(after, CONFIG)
    assert of(again, LabelPvc) == [] and of(again, CreateGroupReplication) == [] and of(again, Event) == []


def test_a_pending_pvc_joins_only_once_bound():
    first = seen(pvc("stock", member=True), pvc("sales", phase="Pending"), vgr=GroupReplication("Primary"))
    actions = reconcile(first, CONFIG)
    assert of(actions, LabelPvc) == [] and of(actions, CreateGroupReplication) == []
    assert conditions(actions)["AllVolumesProtected"] == ("False", "WaitingForBinding")
    assert status_of(actions)["waiting"] == ["sales"]
    bound = dataclasses.replace(apply(first, actions), pvcs=(pvc("stock", member=True), pvc("sales")))
    later = reconcile(bound, CONFIG)
    assert of(later, LabelPvc) == [LabelPvc("sales", "shop")]  # a PVC made later joins the same group
    assert conditions(later)["AllVolumesProtected"] == ("True", "AllVolumesProtected")


def test_pvcs_of_other_drivers_cannot_join_and_are_named():
    actions = reconcile(seen(pvc("stock"), pvc("cache", storage_class="local"), pvc("tmp", storage_class="")), CONFIG)
    assert of(actions, LabelPvc) == [LabelPvc("stock", "shop")]
    status, reason = conditions(actions)["AllVolumesProtected"]
    assert (status, reason) == ("False", "ForeignVolumes")
    message = next(c for c in status_of(actions)["conditions"] if c["type"] == "AllVolumesProtected")["message"]
    assert "cache (storage class 'local' uses rancher.io/local-path)" in message and "tmp (no storage class)" in message
    assert any(e.type == "Warning" and e.reason == "ForeignVolumes" for e in of(actions, Event))


def test_more_pvcs_than_one_group_takes_is_a_condition_and_members_stay():
    small = dataclasses.replace(CONFIG, max_group_pvcs=2)
    actions = reconcile(seen(pvc("a", member=True), pvc("c"), pvc("b"), vgr=GroupReplication("Primary")), small)
    assert of(actions, LabelPvc) == [LabelPvc("b", "shop")]  # the room left, in name order
    assert conditions(actions)["AllVolumesProtected"] == ("False", "TooManyVolumes")
    assert status_of(actions)["leftOut"] == ["c"]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [({"group_class_exists": False}, "ClassMissing"), ({"csi_addons_installed": False}, "CsiAddonsMissing")],
)
def test_without_the_class_or_the_csi_addons_crds_no_group_is_made(kw, reason):
    actions = reconcile(seen(pvc("stock"), **kw), CONFIG)
    assert of(actions, CreateGroupReplication) == []
    assert conditions(actions)["Ready"] == ("False", reason)
    assert status_of(actions)["state"] == reason


def test_a_namespace_without_volumes_gets_no_group():
    actions = reconcile(seen(), CONFIG)
    assert of(actions, CreateGroupReplication) == [] and conditions(actions)["Ready"] == ("False", "NoVolumes")


def test_a_deleting_pvc_is_neither_labelled_nor_foreign():
    actions = reconcile(seen(pvc("gone", deleting=True), pvc("odd", storage_class="local", deleting=True)), CONFIG)
    assert of(actions, LabelPvc) == [] and conditions(actions)["AllVolumesProtected"][0] == "True"


def replicating(state: str = "PAIR", age: float = 0.5, **kw) -> Observed:
    members = (pvc("sales", member=True), pvc("stock", member=True))
    return seen(*members, vgr=GroupReplication("Primary", "volume is marked primary"), array=paired(state, age, **kw))


def test_in_pair_within_the_rpo_the_namespace_is_protected():
    actions = reconcile(replicating(), CONFIG)
    status = status_of(actions)
    assert status["state"] == "Protected" and status["recoveryPointAgeSeconds"] == 0.5
    assert [(v["pvc"], v["pvol"], v["svol"], v["pairState"]) for v in status["volumes"]] == [
        ("sales", "00:00:01", "000001", "PAIR"), ("stock", "00:00:02", "000002", "PAIR"),
    ]  # fmt: skip
    assert status["journal"] == {"usageBytes": 1 << 20, "capacityBytes": 64 << 20, "fillPercent": 1}
    assert [v["backupPvc"] for v in status["volumes"]] == ["shop/sales", "shop/stock"]
    assert conditions(actions) == {
        "Ready": ("True", "Replicating"), "RPOMet": ("True", "WithinRPO"),
        "JournalHealthy": ("True", "JournalHealthy"), "AllVolumesProtected": ("True", "AllVolumesProtected"),
    }  # fmt: skip


def test_a_recovery_point_older_than_the_rpo_puts_the_namespace_at_risk():
    actions = reconcile(replicating(age=90.0), CONFIG)
    assert conditions(actions)["RPOMet"] == ("False", "RecoveryPointTooOld")
    assert status_of(actions)["state"] == "AtRisk"
    annotated = dataclasses.replace(replicating(age=90.0), annotations={RPO_ANNOTATION: "300"})
    assert conditions(reconcile(annotated, CONFIG))["RPOMet"] == ("True", "WithinRPO")


@pytest.mark.parametrize(
    ("state", "kw", "ready", "journal"),
    [
        ("COPY", {}, ("False", "Copying"), ("True", "JournalHealthy")),
        ("PSUE", {}, ("False", "Suspended"), ("True", "JournalHealthy")),
        ("PFUS", {"journal_full": True}, ("False", "Suspended"), ("False", "JournalFull")),
        ("PAIR", {"journal_nearly_full": True}, ("True", "Replicating"), ("False", "JournalNearlyFull")),
    ],
)
def test_pair_states_and_the_journal_become_conditions(state, kw, ready, journal):
    got = conditions(reconcile(replicating(state, **kw), CONFIG))
    assert got["Ready"] == ready and got["JournalHealthy"] == journal


def test_a_suspended_group_has_no_moving_recovery_point():
    frozen = dataclasses.replace(replicating("PSUE"), array=dataclasses.replace(paired("PSUE"), recovery_point_ns=None))
    assert conditions(reconcile(frozen, CONFIG))["RPOMet"] == ("False", "NoRecoveryPoint")


def test_an_unreachable_array_is_a_reason_not_a_crash():
    observed = dataclasses.replace(replicating(), array=None, array_problem="array 10.0.0.5:50051: UNAVAILABLE")
    got = conditions(reconcile(observed, CONFIG))
    assert got["Ready"] == ("False", "ArrayUnreachable") and got["RPOMet"][0] == "Unknown"


def test_transitions_keep_their_time_and_only_changes_make_events():
    first = replicating()
    second = apply(first, reconcile(first, CONFIG))
    later = dataclasses.replace(second, now_ns=NOW + 10**9, array=paired(age=90.0))
    actions = reconcile(later, CONFIG)
    events = of(actions, Event)
    assert [(e.type, e.reason) for e in events] == [("Warning", "RecoveryPointTooOld")]
    times = {c["type"]: c["lastTransitionTime"] for c in status_of(actions)["conditions"]}
    assert times["Ready"] == "2027-01-15T08:00:00Z" and times["RPOMet"] == "2027-01-15T08:00:01Z"


def test_removing_the_label_deletes_the_group_first_then_the_labels_and_the_status():
    protected = apply(replicating(), reconcile(replicating(), CONFIG))
    unlabelled = dataclasses.replace(protected, labels={})
    first = reconcile(unlabelled, CONFIG)
    assert of(first, DeleteGroupReplication) and of(first, LabelPvc) == []  # members stay until the group is gone
    assert status_of(first)["state"] == "Stopping"
    stopping = apply(unlabelled, first)
    assert of(reconcile(stopping, CONFIG), DeleteGroupReplication) == []  # already on its way
    gone = dataclasses.replace(stopping, vgr=None)
    last = reconcile(gone, CONFIG)
    assert of(last, LabelPvc) == [LabelPvc("sales", None), LabelPvc("stock", None)]
    assert of(last, DeleteConsistentCopy) and [e.reason for e in of(last, Event)] == ["ReplicationStopped"]
    assert reconcile(apply(gone, last), CONFIG) == []  # nothing of ours is left


def test_another_label_value_stops_replication_and_says_why():
    protected = apply(replicating(), reconcile(replicating(), CONFIG))
    other = dataclasses.replace(protected, labels={CONFIG.label_key: "SomewhereElse"})
    actions = reconcile(other, CONFIG)
    assert of(actions, DeleteGroupReplication)
    status = status_of(actions)
    assert status["state"] == "NotProtected" and "SomewhereElse" in status["message"]
    assert conditions(actions)["Ready"] == ("False", "UnknownBackupTarget")


def test_an_unlabelled_namespace_the_operator_never_touched_gets_nothing():
    assert reconcile(seen(pvc("stock"), labels={}), CONFIG) == []


def test_the_way_to_protected_is_told_in_normal_events_and_problems_in_warnings():
    labelled = seen(pvc("sales"))
    onboarding = of(reconcile(labelled, CONFIG), Event)  # no group yet, no journal group known
    assert onboarding and {e.type for e in onboarding} == {"Normal"}
    assert "Unknown" not in {e.reason for e in onboarding}
    copying = apply(replicating("COPY"), reconcile(replicating("COPY"), CONFIG))
    suspended = dataclasses.replace(copying, array=paired("PSUE"))
    assert [(e.type, e.reason) for e in of(reconcile(suspended, CONFIG), Event)] == [("Warning", "Suspended")]
