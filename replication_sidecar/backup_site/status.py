"""What a person reads on the backup site's `ConsistentCopy`: how far behind the main site
this copy is, as this site alone can know it (the main site may be gone), and, after a
takeover, what it gave up. Three conditions, each with a reason:

- `Ready`: this site holds a consistent copy that keeps up (`Receiving`), or is the
  primary after a failback (`ReplicatingToMain`); else why not (`Registering`, `Copying`,
  `Suspended`, `MainSiteSilent`, `TakenOver`);
- `RPOMet`: the recovery point is no older than the RPO the class declared;
- `MainSiteInContact`: the main array was heard from within the last 30 s (the lag is
  then current; after that it is "as of last contact").

Pure: from this site's S-VOLs and journal group to the status and the Events of its
changes. A takeover's loss record is a Warning Event, once, in the words the CLI uses.
"""

from __future__ import annotations

from typing import Any

from replication_sidecar.backup_site.model import (
    Action,
    ApplyConsistentCopy,
    BackupGroup,
    Event,
    GivenUp,
    Observed,
    SVol,
)
from replication_sidecar.conditions import (
    condition,
    condition_events,
    kept_transition_times,
    old_conditions,
    rfc3339,
)
from replication_sidecar.status import STALE_CONTACT_SECONDS

SUSPENDED = {"PSUE", "PFUS", "PSUS"}
ON_THE_WAY = frozenset({"Registering", "Copying", "NoRecoveryPoint", "PrimaryHere"})
# Status fields that move by themselves while all is well (the clock, the main array's heartbeat,
# the records in flight): written every status interval, not every pass. A change of state or
# of a condition is written at once.
AGES = ("recoveryPoint", "recoveryPointAgeSeconds", "lastContact", "lastContactAgeSeconds", "behindAsOfLastContact")


def status_actions(namespace: str, svols: list[tuple[str, SVol]], seen: Observed) -> list[Action]:
    """The namespace's ConsistentCopy status and its Events, when it changed (or is due)."""
    names = {svol.group for _, svol in svols if svol.group}
    group = seen.journal_groups.get(sorted(names)[0]) if names else None
    old = seen.consistent_copies.get(namespace)
    status = backup_status(svols, group, old, seen.now_ns)
    old_status = (old or {}).get("status") or {}
    if without_ages(status) == without_ages(old_status) and not (seen.status_due and status != old_status):
        return []
    actions: list[Action] = [ApplyConsistentCopy(namespace, status)]
    changes = condition_events(old_conditions(old), status["conditions"], ON_THE_WAY)
    actions += [Event(namespace, kind, reason, message) for kind, reason, message in changes]
    if status["takeover"] and status["takeover"] != old_status.get("takeover"):
        actions.append(Event(namespace, "Warning", "TakeoverGaveUp", f"takeover: {status['takeover']['givenUp']}"))
    return actions


def without_ages(status: dict[str, Any]) -> dict[str, Any]:
    plain = {k: v for k, v in status.items() if k not in AGES}
    conditions = status.get("conditions", [])
    plain["conditions"] = [{**c, "message": ""} if c.get("type") == "RPOMet" else c for c in conditions]
    return plain


def backup_status(
    svols: list[tuple[str, SVol]], group: BackupGroup | None, old: dict[str, Any] | None, now_ns: int
) -> dict[str, Any]:
    age = (now_ns - group.recovery_point_ns) / 1e9 if group and group.recovery_point_ns is not None else None
    contact_age = (now_ns - group.last_contact_ns) / 1e9 if group and group.last_contact_ns else None
    conditions = [ready(svols, group, contact_age), rpo_met(group, age), in_contact(group, contact_age)]
    conditions = kept_transition_times(old_conditions(old), conditions, now_ns)
    behind = None
    if group is not None and group.role == "backup":
        behind = {"records": group.pending_records, "bytes": group.pending_bytes,
                  "seconds": round(group.lag_seconds, 3)}  # fmt: skip
    return {
        "site": "backup",
        "role": "Primary" if group and (group.role == "main" or "SSWS" in group.pair_states.values()) else "Secondary",
        "state": state_word(conditions),
        "volumeCount": len(svols),
        "journalGroup": group.name if group else "",
        "volumes": [volume_row(pvc, svol, group) for pvc, svol in svols],
        "recoveryPoint": rfc3339(group.recovery_point_ns) if group and group.recovery_point_ns else None,
        "recoveryPointAgeSeconds": None if age is None else round(max(age, 0.0), 1),
        "rpoSeconds": group.rpo_seconds if group and group.rpo_seconds else None,
        "lastContact": rfc3339(group.last_contact_ns) if group and group.last_contact_ns else None,
        "lastContactAgeSeconds": None if contact_age is None else round(max(contact_age, 0.0), 1),
        "behindAsOfLastContact": behind,
        "takeover": takeover(group.given_up) if group and group.given_up else None,
        "message": conditions[0]["message"],
        "conditions": conditions,
    }


def volume_row(pvc: str, svol: SVol, group: BackupGroup | None) -> dict[str, str]:
    return {
        "pvc": pvc,
        "volumeHandle": svol.volume_handle,
        "pairState": (group.pair_states.get(svol.volume_handle, "") if group else "") or "",
    }


def takeover(lost: GivenUp) -> dict[str, Any]:
    return {
        "givenUp": lost.words,
        "records": lost.records,
        "bytes": lost.bytes,
        "seconds": round(lost.seconds, 3),
        "exact": lost.exact,
        "lastContact": rfc3339(lost.last_contact_ns) if lost.last_contact_ns else None,
        "recoveryPoint": rfc3339(lost.recovery_point_ns) if lost.recovery_point_ns else None,
    }


def ready(svols: list[tuple[str, SVol]], group: BackupGroup | None, contact_age: float | None) -> dict[str, str]:
    if group is None:
        return condition("Ready", False, "Registering", f"{len(svols)} S-VOL(s) registered; their journal group is "
                         "not known yet")  # fmt: skip
    states = set(group.pair_states.values())
    if "SSWS" in states:
        return condition("Ready", False, "TakenOver", f"taken over here: these PVCs are the primary and are not "
                         f"replicated until the main site is back and fails back; {group.message}")  # fmt: skip
    if states & SUSPENDED:
        return condition("Ready", False, "Suspended", group.message)
    if "COPY" in states:
        return condition("Ready", False, "Copying", group.message)
    if group.role == "main":
        return condition("Ready", True, "ReplicatingToMain", f"this site is the primary; {group.message}")
    if contact_age is not None and contact_age > STALE_CONTACT_SECONDS and group.last_contact_ns:
        point = rfc3339(group.recovery_point_ns) if group.recovery_point_ns else "none"
        return condition("Ready", False, "MainSiteSilent", f"the main array has not answered since "
                         f"{rfc3339(group.last_contact_ns)}; this copy holds the main site's writes up to {point}; "
                         "if the main site is lost, take over here (ccopy dr failover)")  # fmt: skip
    if states != {"PAIR"}:
        return condition("Ready", False, "NotReplicating", group.message)
    return condition("Ready", True, "Receiving", f"{len(svols)} S-VOL(s) in PAIR receiving journal group "
                     f"{group.name}, one consistency group")  # fmt: skip


def rpo_met(group: BackupGroup | None, age: float | None) -> dict[str, str]:
    if group is None:
        return condition("RPOMet", None, "NoRecoveryPoint", "the journal group is not known yet")
    if group.role == "main" or "SSWS" in group.pair_states.values():
        return condition("RPOMet", None, "PrimaryHere", "this site is the primary: its own writes are current")
    if age is None:
        return condition("RPOMet", False, "NoRecoveryPoint", f"no moving recovery point: {group.message}")
    rpo = f", RPO {group.rpo_seconds:g} s" if group.rpo_seconds else ""
    words = f"recovery point {max(age, 0.0):.1f} s old{rpo}"
    if group.rpo_seconds and age > group.rpo_seconds:
        return condition("RPOMet", False, "RecoveryPointTooOld", words)
    return condition("RPOMet", True, "WithinRPO", words)


def in_contact(group: BackupGroup | None, contact_age: float | None) -> dict[str, str]:
    if group is None:
        return condition("MainSiteInContact", None, "Registering", "the journal group is not known yet")
    if group.role == "main":
        return condition("MainSiteInContact", None, "PrimaryHere", "this site is the primary: it receives nothing")
    if contact_age is None:
        return condition("MainSiteInContact", False, "NeverHeard", "this array has not heard from the main array")
    when = f"last heard from the main array {contact_age:.0f} s ago"
    if contact_age > STALE_CONTACT_SECONDS:
        return condition("MainSiteInContact", False, "MainSiteSilent", f"{when}: how far behind is as of then")
    return condition("MainSiteInContact", True, "InContact", "the main array answers")


def state_word(conditions: list[dict[str, str]]) -> str:
    """The printer column: Receiving, Behind (recovery point older than the RPO), Primary, or why not."""
    by_type = {c["type"]: c for c in conditions}
    ready_ = by_type["Ready"]
    if ready_["status"] != "True":
        return ready_["reason"]
    if ready_["reason"] == "ReplicatingToMain":
        return "Primary"
    return "Behind" if by_type["RPOMet"]["status"] == "False" else "Receiving"
