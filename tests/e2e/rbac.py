"""What each storage component may do on the API server, as its own repository's
manifest asks (../shared/sidecar-flags.md lists them with their sources).

The harness runs RBAC on and gives every component only these rules, so a call the
rules do not allow fails here the way it would in a cluster.
"""

from __future__ import annotations

from kubernetes import client

Rule = tuple[str, tuple[str, ...], tuple[str, ...]]  # API group, resources, verbs

READ = ("get", "list", "watch")
EVENTS: Rule = ("", ("events",), ("list", "watch", "create", "update", "patch"))
LEASES: Rule = ("coordination.k8s.io", ("leases",), ("get", "watch", "list", "delete", "update", "create"))

RULES: dict[str, list[Rule]] = {
    "csi-provisioner": [
        ("", ("persistentvolumes",), (*READ, "create", "patch", "delete")),
        ("", ("persistentvolumeclaims",), (*READ, "update")),
        ("storage.k8s.io", ("storageclasses", "csinodes", "volumeattachments"), READ),
        ("", ("nodes",), READ),
        EVENTS,
        ("snapshot.storage.k8s.io", ("volumesnapshots",), (*READ, "update")),
        ("snapshot.storage.k8s.io", ("volumesnapshotcontents",), ("get", "list")),
        ("storage.k8s.io", ("volumeattributesclasses",), READ),
    ],
    "csi-attacher": [
        ("", ("persistentvolumes",), (*READ, "patch")),
        ("storage.k8s.io", ("csinodes",), READ),
        ("storage.k8s.io", ("volumeattachments",), (*READ, "patch")),
        ("storage.k8s.io", ("volumeattachments/status",), ("patch",)),
    ],
    "csi-resizer": [
        ("", ("persistentvolumes",), (*READ, "patch")),
        ("", ("persistentvolumeclaims",), READ),
        ("", ("persistentvolumeclaims/status",), ("patch",)),
        ("", ("pods",), READ),
        EVENTS,
        ("storage.k8s.io", ("volumeattributesclasses",), READ),
    ],
    "csi-snapshotter": [
        EVENTS,
        ("snapshot.storage.k8s.io", ("volumesnapshotclasses",), READ),
        ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshotclasses",), READ),
        ("snapshot.storage.k8s.io", ("volumesnapshotcontents",), (*READ, "update", "patch")),
        ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshotcontents",), (*READ, "update", "patch")),
        ("snapshot.storage.k8s.io", ("volumesnapshotcontents/status",), ("update", "patch")),
        ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshotcontents/status",), ("update", "patch")),
    ],
    "snapshot-controller": [
        ("", ("persistentvolumes",), READ),
        ("", ("persistentvolumeclaims",), (*READ, "update")),
        EVENTS,
        ("snapshot.storage.k8s.io", ("volumesnapshotclasses",), READ),
        ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshotclasses",), READ),
        ("snapshot.storage.k8s.io", ("volumesnapshotcontents",), (*READ, "create", "update", "delete", "patch")),
        (
            "groupsnapshot.storage.k8s.io",
            ("volumegroupsnapshotcontents",),
            (*READ, "create", "update", "delete", "patch"),
        ),
        ("snapshot.storage.k8s.io", ("volumesnapshotcontents/status",), ("patch",)),
        ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshotcontents/status",), ("patch",)),
        ("snapshot.storage.k8s.io", ("volumesnapshots",), (*READ, "create", "update", "patch", "delete")),
        ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshots",), (*READ, "update", "patch")),
        ("snapshot.storage.k8s.io", ("volumesnapshots/status",), ("update", "patch")),
        ("groupsnapshot.storage.k8s.io", ("volumegroupsnapshots/status",), ("update", "patch")),
    ],
    # Derived from its code (its repository ships no RBAC for it): the CSIAddonsNode it keeps,
    # the Pod and owners it names, the Secrets replication classes point at, its leader lease.
    "csi-addons-sidecar": [
        ("csiaddons.openshift.io", ("csiaddonsnodes",), (*READ, "create", "update", "delete")),
        ("", ("pods",), ("get",)),
        ("apps", ("replicasets", "deployments"), ("get",)),
        ("", ("secrets",), ("get",)),
        ("", ("persistentvolumes",), ("get",)),
        LEASES,
        EVENTS,
    ],
    # The namespace operator, as the chart gives it (charts/consistent-copy): it reads namespaces,
    # PVCs and classes, labels member PVCs, keeps one VolumeGroupReplication and one ConsistentCopy
    # per protected namespace, and reports with Events.
    "namespace-operator": [
        ("", ("namespaces",), READ),
        ("", ("persistentvolumeclaims",), (*READ, "patch")),
        ("", ("persistentvolumes",), ("get",)),
        ("", ("events",), ("create",)),
        ("storage.k8s.io", ("storageclasses",), READ),
        ("replication.storage.openshift.io", ("volumegroupreplications",), (*READ, "create", "delete")),
        ("replication.storage.openshift.io", ("volumegroupreplicationcontents",), ("get",)),
        ("replication.storage.openshift.io", ("volumegroupreplicationclasses",), ("get",)),
        ("consistentcopy.io", ("consistentcopies",), (*READ, "create", "delete")),
        ("consistentcopy.io", ("consistentcopies/status",), ("patch",)),
    ],
    # The backup-site registrar, as the chart gives it: namespaces, PVs and PVCs for the S-VOLs,
    # one secondary VolumeGroupReplication and one ConsistentCopy per namespace, Events.
    "backup-site": [
        ("", ("namespaces",), (*READ, "create")),
        ("", ("persistentvolumes",), (*READ, "create")),
        ("", ("persistentvolumeclaims",), (*READ, "create", "patch", "delete")),
        ("", ("events",), ("create",)),
        ("replication.storage.openshift.io", ("volumegroupreplications",), (*READ, "create", "delete")),
        ("consistentcopy.io", ("consistentcopies",), (*READ, "create", "delete")),
        ("consistentcopy.io", ("consistentcopies/status",), ("patch",)),
    ],
}


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


def grant_service_account(api: client.ApiClient, component: str, namespace: str, account: str) -> None:
    grant(api, component, f"system:serviceaccount:{namespace}:{account}")
