"""What a person reads on a `ConsistentCopy`: the state in one word, each PVC with its
P-VOL, S-VOL and pair state, the recovery point against the declared RPO, the journal
fill, and four conditions, each with a reason:

- `Ready`: the namespace's volumes replicate as one consistency group (every member PAIR);
- `RPOMet`: the recovery point is no older than the declared `rpoSeconds`;
- `JournalHealthy`: the journal is neither full (PFUS) nor nearly so (PFUL);
- `AllVolumesProtected`: no PVC is left out (another driver, over the group limit, unbound).

Pure; an Event goes with every change of a condition's status or reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replication_sidecar.conditions import condition, kept_transition_times, old_conditions, rfc3339
from replication_sidecar.conditions import condition_events as changes
from replication_sidecar.namespace_operator.model import Event, Observed, OperatorConfig, Pvc

SUSPENDED = {"PSUE", "PFUS", "PSUS"}


@dataclass(frozen=True)
class Membership:
    members: tuple[Pvc, ...] = ()  # labelled: in the group's selector
    joining: tuple[Pvc, ...] = ()  # labelled by this pass
    left_out: tuple[str, ...] = ()  # over the group limit
    waiting: tuple[str, ...] = ()  # not bound yet
    foreign: tuple[tuple[str, str], ...] = ()  # (PVC, why it cannot join)

    @property
    def volumes(self) -> tuple[Pvc, ...]:
        return tuple(sorted((*self.members, *self.joining), key=lambda p: p.name))


def consistent_copy_status(
    seen: Observed, config: OperatorConfig, plan: Membership, rpo_seconds: float, stopping: bool, unknown: str | None
) -> dict[str, Any]:
    array = seen.array
    age = (seen.now_ns - array.recovery_point_ns) / 1e9 if array and array.recovery_point_ns is not None else None
    if unknown is not None or stopping:
        why = (
            f"the namespace is labelled {config.label_key}={unknown}; this operator copies namespaces labelled "
            f"{config.label_key}={config.label_value}"
            if unknown is not None
            else "replication is stopping: the VolumeGroupReplication is being deleted"
        )
        reason = "UnknownBackupTarget" if unknown is not None else "Stopping"
        conditions = [condition(kind, False, reason, why) for kind in ("Ready", "AllVolumesProtected")]
        conditions += [condition(k, None, reason, why) for k in ("RPOMet", "JournalHealthy")]
    else:
        conditions = [
            ready(seen, config, plan),
            rpo_met(seen, age, rpo_seconds),
            journal_healthy(seen),
            all_volumes(plan, config),
        ]
    conditions = kept_transition_times(old_conditions(seen.consistent_copy), conditions, seen.now_ns)
    return {
        "site": "main",
        "role": (seen.vgr.state if seen.vgr else "") or "Primary",  # Secondary after a failback
        "state": state_word(conditions, stopping, unknown),
        "volumeCount": len(plan.volumes),
        "journalGroup": array.name if array else "",
        "volumes": [volume_row(pvc, seen) for pvc in plan.volumes],
        "waiting": list(plan.waiting),
        "leftOut": list(plan.left_out),
        "foreign": [{"pvc": pvc, "reason": why} for pvc, why in plan.foreign],
        "recoveryPoint": rfc3339(array.recovery_point_ns) if array and array.recovery_point_ns else None,
        "recoveryPointAgeSeconds": None if age is None else round(max(age, 0.0), 1),
        "rpoSeconds": rpo_seconds,
        "journal": journal_fill(seen),
        "message": conditions[0]["message"],
        "conditions": conditions,
    }


def volume_row(pvc: Pvc, seen: Observed) -> dict[str, str]:
    pair = seen.array.pairs.get(pvc.volume_handle) if seen.array else None
    return {
        "pvc": pvc.name,
        "volumeHandle": pvc.volume_handle,
        "pvol": pair.pvol if pair else "",
        "svol": pair.svol if pair else "",
        "pairState": pair.state if pair else "",
        # The backup-site registrar gives each S-VOL's PVC the main PVC's namespace and name.
        "backupPvc": f"{seen.namespace}/{pvc.name}" if pair else "",
    }


def journal_fill(seen: Observed) -> dict[str, int] | None:
    if seen.array is None or not seen.array.capacity_bytes:
        return None
    used, capacity = seen.array.usage_bytes, seen.array.capacity_bytes
    return {"usageBytes": used, "capacityBytes": capacity, "fillPercent": 100 * used // capacity}


def ready(seen: Observed, config: OperatorConfig, plan: Membership) -> dict[str, str]:
    if not seen.csi_addons_installed:
        return condition("Ready", False, "CsiAddonsMissing", "the csi-addons CRDs (replication.storage.openshift.io) "
                         "are not installed: install the csi-addons controller")  # fmt: skip
    if not seen.group_class_exists:
        return condition("Ready", False, "ClassMissing", f"VolumeGroupReplicationClass {config.group_class!r} does "
                         "not exist: create it (the chart does) or set the operator's --group-class")  # fmt: skip
    if not plan.volumes:
        return condition("Ready", False, "NoVolumes", f"no bound PVC of {config.driver} in the namespace yet")
    if seen.vgr is None or seen.vgr.state != "Primary":
        message = (seen.vgr.message if seen.vgr else "") or "the VolumeGroupReplication is being set up"
        return condition("Ready", False, "WaitingForGroup", message)
    if seen.array_problem:
        return condition("Ready", False, "ArrayUnreachable", seen.array_problem)
    if seen.array is None:
        return condition("Ready", False, "WaitingForGroup", "the journal group is not known yet")
    unpaired = [p.name for p in plan.volumes if p.volume_handle not in seen.array.pairs]
    if unpaired:
        return condition("Ready", False, "Joining", f"not paired yet: {', '.join(unpaired)}")
    states = {seen.array.pairs[p.volume_handle].state for p in plan.volumes}
    if states & SUSPENDED:
        return condition("Ready", False, "Suspended", seen.array.message)
    if "COPY" in states:
        return condition("Ready", False, "Copying", seen.array.message)
    if states != {"PAIR"}:
        return condition("Ready", False, "NotReplicating", seen.array.message)
    return condition("Ready", True, "Replicating", f"{len(plan.volumes)} volume(s) in PAIR in journal group "
                     f"{seen.array.name}, one consistency group")  # fmt: skip


def rpo_met(seen: Observed, age: float | None, rpo_seconds: float) -> dict[str, str]:
    if seen.array is None:
        return condition("RPOMet", None, "NoRecoveryPoint", "the journal group is not known yet")
    if age is None:
        return condition("RPOMet", False, "NoRecoveryPoint", f"no moving recovery point: {seen.array.message}")
    words = f"recovery point {max(age, 0.0):.1f} s old, RPO {rpo_seconds:g} s"
    if age > rpo_seconds:
        return condition("RPOMet", False, "RecoveryPointTooOld", words)
    return condition("RPOMet", True, "WithinRPO", words)


def journal_healthy(seen: Observed) -> dict[str, str]:
    array = seen.array
    if array is None:
        return condition("JournalHealthy", None, "WaitingForGroup", "the journal group is not known yet")
    fill = journal_fill(seen)
    used = f"{fill['fillPercent']}% of the journal in use" if fill else "journal in use"
    if array.journal_full:
        return condition("JournalHealthy", False, "JournalFull", f"journal full (PFUS): {array.message}")
    if array.journal_nearly_full:
        return condition("JournalHealthy", False, "JournalNearlyFull", f"{used} (PFUL): the link is not keeping up")
    return condition("JournalHealthy", True, "JournalHealthy", used)


def all_volumes(plan: Membership, config: OperatorConfig) -> dict[str, str]:
    if plan.foreign:
        names = "; ".join(f"{pvc} ({why})" for pvc, why in plan.foreign)
        return condition("AllVolumesProtected", False, "ForeignVolumes",
                         f"PVCs of other drivers cannot join the consistency group: {names}")  # fmt: skip
    if plan.left_out:
        return condition("AllVolumesProtected", False, "TooManyVolumes",
                         f"{len(plan.left_out)} PVC(s) over the limit of {config.max_group_pvcs} per group are not "
                         f"protected: {', '.join(plan.left_out)}")  # fmt: skip
    if plan.waiting:
        return condition("AllVolumesProtected", False, "WaitingForBinding",
                         f"PVCs join once bound: {', '.join(plan.waiting)}")  # fmt: skip
    return condition("AllVolumesProtected", True, "AllVolumesProtected", f"{len(plan.volumes)} PVC(s) of the "
                     "namespace in the consistency group")  # fmt: skip


def state_word(conditions: list[dict[str, str]], stopping: bool, unknown: str | None) -> str:
    """The printer column: Protected, AtRisk (replicating, recovery point too old), or why not."""
    if unknown is not None:
        return "NotProtected"
    if stopping:
        return "Stopping"
    by_type = {c["type"]: c for c in conditions}
    if by_type["Ready"]["status"] != "True":
        return by_type["Ready"]["reason"]
    return "Protected" if by_type["RPOMet"]["status"] == "True" else "AtRisk"


# Reasons a namespace passes through on its way to Protected: not a problem, so their Events
# are Normal (a Warning is for what a person may have to act on).
ON_THE_WAY = frozenset(
    {"NoVolumes", "WaitingForGroup", "Joining", "Copying", "NoRecoveryPoint", "WaitingForBinding", "Stopping"}
)


def condition_events(old: list[dict[str, Any]], new: list[dict[str, str]]) -> list[Event]:
    """An Event for each condition whose status or reason changed (all of them the first time)."""
    return [Event(kind, reason, message) for kind, reason, message in changes(old, new, ON_THE_WAY)]
