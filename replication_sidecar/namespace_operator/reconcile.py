"""The operator's decisions, pure: from what was observed of one namespace to the actions
that bring it where its label asks.

- Label `<key>=<value>` (the configured pair): every PVC of our driver joins one
  VolumeGroupReplication once bound (an unbound PVC matching the selector would hold the
  whole group up, and the selector cannot change), up to the csi-addons limit for one
  group; PVCs of other drivers cannot join and are named.
- Label key with another value, or no label: replication stops. The VolumeGroupReplication
  is deleted first (the csi-addons manager disables the group: the pairs end, the backup
  keeps its S-VOLs); the member labels come off once it is gone, then our status object.

Every call is safe to repeat: the same observation gives the same actions.
"""

from __future__ import annotations

from replication_sidecar.group_replication import group_replication
from replication_sidecar.namespace_operator.model import (
    MEMBER_LABEL,
    OPERATOR_NAME,
    RPO_ANNOTATION,
    Action,
    ApplyConsistentCopy,
    CreateGroupReplication,
    DeleteConsistentCopy,
    DeleteGroupReplication,
    Event,
    LabelPvc,
    Observed,
    OperatorConfig,
    Pvc,
)
from replication_sidecar.namespace_operator.status import Membership, condition_events, consistent_copy_status


def reconcile(seen: Observed, config: OperatorConfig) -> list[Action]:
    value = seen.labels.get(config.label_key)
    if value == config.label_value:
        return protect(seen, config)
    return unprotect(seen, config, value)


def membership(seen: Observed, config: OperatorConfig) -> Membership:
    """Which PVCs are in, which join now, which wait, and which cannot join."""
    ours = [p for p in seen.pvcs if not p.deleting and seen.storage_classes.get(p.storage_class) == config.driver]
    foreign = [(p.name, why_foreign(p, seen.storage_classes)) for p in seen.pvcs if p not in ours and not p.deleting]
    members = [p for p in ours if p.labels.get(MEMBER_LABEL) == seen.namespace]
    candidates = sorted((p for p in ours if p not in members and p.phase == "Bound"), key=lambda p: p.name)
    room = max(config.max_group_pvcs - len(members), 0)
    waiting = sorted(p.name for p in ours if p not in members and p.phase != "Bound")
    return Membership(
        members=tuple(sorted(members, key=lambda p: p.name)),
        joining=tuple(candidates[:room]),
        left_out=tuple(p.name for p in candidates[room:]),
        waiting=tuple(waiting),
        foreign=tuple(sorted(foreign)),
    )


def why_foreign(pvc: Pvc, classes: dict[str, str]) -> str:
    if not pvc.storage_class:
        return "no storage class"
    if pvc.storage_class not in classes:
        return f"storage class {pvc.storage_class!r} does not exist"
    return f"storage class {pvc.storage_class!r} uses {classes[pvc.storage_class]}"


def protect(seen: Observed, config: OperatorConfig) -> list[Action]:
    plan = membership(seen, config)
    actions: list[Action] = [LabelPvc(p.name, seen.namespace) for p in plan.joining]
    actions += [Event("Normal", "VolumeJoining", f"PVC {p.name} joins the consistency group") for p in plan.joining]
    has_members = bool(plan.members or plan.joining)
    if seen.vgr is None and has_members and seen.csi_addons_installed and seen.group_class_exists:
        body = group_replication(seen.namespace, config.group_class, config.replication_class, "primary", OPERATOR_NAME)
        actions.append(CreateGroupReplication(body))
    actions += status_actions(seen, config, plan, stopping=False)
    return actions


def unprotect(seen: Observed, config: OperatorConfig, value: str | None) -> list[Action]:
    actions: list[Action] = []
    if seen.vgr is not None:
        if not seen.vgr.deleting:
            actions.append(DeleteGroupReplication())
    else:  # the group is gone: the member labels may come off without touching it
        actions += [LabelPvc(p.name, None) for p in seen.pvcs if MEMBER_LABEL in p.labels]
    if value is not None:  # labelled, but not for us: say so on the status object
        return actions + status_actions(seen, config, Membership(), stopping=seen.vgr is not None, unknown=value)
    if seen.consistent_copy is not None:
        if seen.vgr is None:
            actions.append(DeleteConsistentCopy())
            actions.append(Event("Normal", "ReplicationStopped", "replication stopped; the backup keeps its copies"))
        else:
            actions += status_actions(seen, config, Membership(), stopping=True)
    return actions


def status_actions(
    seen: Observed, config: OperatorConfig, plan: Membership, stopping: bool, unknown: str | None = None
) -> list[Action]:
    old = seen.consistent_copy or {}
    spec = dict(old.get("spec") or {"rpoSeconds": declared_rpo(seen, config)})
    status = consistent_copy_status(seen, config, plan, float(spec.get("rpoSeconds", 0)), stopping, unknown)
    events = condition_events((old.get("status") or {}).get("conditions", []), status["conditions"])
    if status == old.get("status"):
        return list(events)
    return [ApplyConsistentCopy(spec, status), *events]


def declared_rpo(seen: Observed, config: OperatorConfig) -> float:
    """The namespace's annotation, when it is a positive number; else the operator's default."""
    try:
        rpo = float(seen.annotations.get(RPO_ANNOTATION, ""))
    except ValueError:
        return config.rpo_seconds
    return rpo if rpo > 0 else config.rpo_seconds
