"""What each storage component may do on the API server. Ours and the kubernetes-csi
sidecars' are the chart's own rules (charts/consistent-copy/files/rbac.yaml, which its
templates install); the snapshot-controller, a prerequisite the chart does not own, has
the rules its repository's manifest asks (../shared/sidecar-flags.md).

The harness runs RBAC on and gives every component only these rules, so a call the
rules do not allow fails here the way it would in a cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from kubernetes import client

Rule = tuple[str, tuple[str, ...], tuple[str, ...]]  # API group, resources, verbs

CHART_RULES = Path(__file__).resolve().parents[2] / "charts" / "consistent-copy" / "files" / "rbac.yaml"
READ = ("get", "list", "watch")
EVENTS: Rule = ("", ("events",), ("list", "watch", "create", "update", "patch"))
# The chart grants these in the release's namespace only; the harness's components share one.
LEASES: Rule = ("coordination.k8s.io", ("leases",), ("get", "watch", "list", "delete", "update", "create"))

SNAPSHOT_CONTROLLER: list[Rule] = [
    ("", ("persistentvolumes",), READ),
    ("", ("persistentvolumeclaims",), (*READ, "update")),
    EVENTS,
    ("snapshot.storage.k8s.io", ("volumesnapshotclasses",), READ),
    ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshotclasses",), READ),
    ("snapshot.storage.k8s.io", ("volumesnapshotcontents",), (*READ, "create", "update", "delete", "patch")),
    ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshotcontents",), (*READ, "create", "update", "delete", "patch")),
    ("snapshot.storage.k8s.io", ("volumesnapshotcontents/status",), ("patch",)),
    ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshotcontents/status",), ("patch",)),
    ("snapshot.storage.k8s.io", ("volumesnapshots",), (*READ, "create", "update", "patch", "delete")),
    ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshots",), (*READ, "update", "patch")),
    ("snapshot.storage.k8s.io", ("volumesnapshots/status",), ("update", "patch")),
    ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshots/status",), ("update", "patch")),
]


def chart_rules() -> dict[str, list[Rule]]:
    """Each component's rules as the chart installs them (its Lease rule included)."""
    components = yaml.safe_load(CHART_RULES.read_text())["components"]
    rules: dict[str, list[Rule]] = {}
    for name, component in components.items():
        rules[name] = [
            (group, tuple(rule["resources"]), tuple(rule["verbs"]))
            for rule in component["rules"]
            for group in rule["apiGroups"]
        ]
        if component.get("leaderElection"):
            rules[name].append(LEASES)
    return rules


RULES: dict[str, list[Rule]] = {**chart_rules(), "snapshot-controller": SNAPSHOT_CONTROLLER}


def grant(api: client.ApiClient, component: str, user: str) -> None:
    """A ClusterRole with `component`'s rules, bound to the user its certificate names."""
    name = f"ccopy-e2e:{component}"
    rules = [
        client.V1PolicyRule(api_groups=[group], resources=list(res), verbs=list(verbs))
        for group, res, verbs in RULES[component]
    ]
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_cluster_role(client.V1ClusterRole(metadata=client.V1ObjectMeta(name=name), rules=rules))
    subject = client.RbacV1Subject(kind="User", name=user, api_group="rbac.authorization.k8s.io")
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name),
            subjects=[subject],
        )
    )


Use = tuple[str, str, str]  # API group, resource (with its subresource), verb: one audited request's


def audit_events(text: str) -> list[dict]:
    """The events of an audit log as read while kube-apiserver appends to it, one per
    requested call (a call's later stages share its auditID). A last line without its
    newline is still being written: it is left for the next read."""
    seen: dict[str, dict] = {}
    for line in text[: text.rfind("\n") + 1].splitlines():
        event = json.loads(line)
        seen.setdefault(event["auditID"], event)
    return list(seen.values())


def used(events: list[dict], user: str, agent: str = "") -> set[Use]:
    """What `user` asked the API server for (with `agent`: only requests whose user agent names
    that program, as each kubernetes-csi sidecar's does), from audit events."""
    asked = set()
    for event in events:
        if event["user"]["username"] != user or not event.get("userAgent", "").startswith(agent):
            continue
        ref = event.get("objectRef") or {}
        if ref.get("resource"):  # not discovery (/api, /version), which every user may ask for
            resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            asked.add((ref.get("apiGroup", ""), resource, event["verb"]))
    return asked


def unused(rules: list[Rule], asked: set[Use]) -> list[Use]:
    """Each (group, resource, verb) the rules grant that no request needed."""
    return [(group, resource, verb) for group, resources, verbs in rules for resource in resources for verb in verbs
            if (group, resource, verb) not in asked]  # fmt: skip


def forbidden(events: list[dict]) -> list[str]:
    """Requests the API server refused for want of a rule, said as user agent, verb and resource."""
    return sorted({f"{e.get('userAgent', '').split(' ')[0]} {e['verb']} {(e.get('objectRef') or {}).get('resource')}"
                   for e in events if (e.get("responseStatus") or {}).get("code") == 403})  # fmt: skip
