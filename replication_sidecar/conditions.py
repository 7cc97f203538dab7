"""Kubernetes-style conditions on our `ConsistentCopy` status, shared by the namespace
operator (main site) and the backup-site registrar: each has a status, a reason and a
message, keeps its lastTransitionTime while its status stays, and an Event goes with
every change of status or reason. Pure."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any


def rfc3339(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def condition(kind: str, status: bool | None, reason: str, message: str) -> dict[str, str]:
    word = "Unknown" if status is None else str(status)
    return {"type": kind, "status": word, "reason": reason, "message": message}


def old_conditions(old_object: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The conditions of our object as last read (none when it is absent)."""
    return ((old_object or {}).get("status") or {}).get("conditions", [])


def kept_transition_times(
    old: list[dict[str, Any]], conditions: list[dict[str, str]], now_ns: int
) -> list[dict[str, str]]:
    """A condition keeps its lastTransitionTime while its status stays."""
    before_by_type = {c.get("type"): c for c in old}
    now = rfc3339(now_ns)
    out = []
    for new in conditions:
        before = before_by_type.get(new["type"])
        same = before is not None and before.get("status") == new["status"]
        out.append({**new, "lastTransitionTime": before.get("lastTransitionTime", now) if same else now})
    return out


def condition_events(
    old: list[dict[str, Any]], new: list[dict[str, str]], on_the_way: Iterable[str]
) -> list[tuple[str, str, str]]:
    """(type, reason, message) of an Event for each condition whose status or reason changed
    (all of them the first time). Reasons `on_the_way` to the good state are Normal: a
    Warning is for what a person may have to act on."""
    expected = frozenset(on_the_way)
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in old}
    changed = [c for c in new if before.get(c["type"]) != (c["status"], c["reason"])]
    return [
        (
            "Normal" if c["status"] == "True" or c["reason"] in expected else "Warning",
            c["reason"],
            f"{c['type']}={c['status']}: {c['message']}",
        )
        for c in changed
    ]
