"""Watches and one work queue: any change to a Namespace, a PVC, a StorageClass, our
VolumeGroupReplications or (someone else's change to) our ConsistentCopies queues its
namespace for a full pass; one worker reconciles namespaces one at a time. A protected
namespace gets a status pass every status interval (its recovery point ages on the
array, which has no watch): the array is read again and the status written, the
Kubernetes objects are not listed again, so a quiet namespace costs the API server one
request per interval however many PVCs it has. A failed pass is logged and retried in
full with backoff, per namespace (`work_queue.Passes`, shared with the registrar), and so
is a failed watch; nothing here ends the process.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from kubernetes import client

from ccopy_common import request_ids
from replication_sidecar.group_replication import REPLICATION, VGRS
from replication_sidecar.kube_watch import fields_digest, start_watch
from replication_sidecar.namespace_operator.kube import Cluster
from replication_sidecar.namespace_operator.model import (
    GROUP,
    PLURAL,
    VERSION,
    ApplyConsistentCopy,
    DeleteConsistentCopy,
    Event,
    Observed,
    OperatorConfig,
)
from replication_sidecar.namespace_operator.reconcile import reconcile
from replication_sidecar.work_queue import Passes

log = logging.getLogger(__name__)


NAMESPACE_FIELDS = fields_digest(("metadata", "labels"), ("metadata", "annotations"), ("metadata", "deletionTimestamp"))
PVC_FIELDS = fields_digest(
    ("metadata", "labels"), ("metadata", "deletionTimestamp"), ("spec", "volumeName"), ("spec", "storageClassName"),
    ("status", "phase"),
)  # fmt: skip
GROUP_FIELDS_BUT_MEMBERS = fields_digest(
    ("spec",), ("metadata", "deletionTimestamp"), ("status", "state"), ("status", "message")
)


def group_digest(vgr: dict) -> Hashable:
    """The members as a set: the csi-addons manager rewrites their list in a new order (a Go
    map's) on every pass, which made a full pass of ours every status update at 100 PVCs."""
    members = (vgr.get("status") or {}).get("persistentVolumeClaimsRefList") or []
    return GROUP_FIELDS_BUT_MEMBERS(vgr), tuple(sorted(ref.get("name", "") for ref in members))


STATUS_OBJECT_FIELDS = fields_digest(("spec",), ("metadata", "labels"), ("metadata", "deletionTimestamp"))


class Runner:
    def __init__(
        self, api: client.ApiClient, cluster: Cluster, config: OperatorConfig, status_interval: float = 10.0
    ) -> None:
        self.api = api
        self.cluster = cluster
        self.config = config
        self.status_interval = status_interval
        self.passes = Passes("namespace")
        self.tracked: set[str] = set()  # namespaces with our label key or our objects
        self.last_seen: dict[str, Observed] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        core, storage = client.CoreV1Api(self.api), client.StorageV1Api(self.api)
        custom = client.CustomObjectsApi(self.api)

        def of_custom(o: dict) -> list[str]:
            return [o["metadata"]["namespace"]]

        # Each watch passes on only changes to what the reconcile reads (`fields_digest`): the
        # csi-addons manager's status heartbeats on the groups and our own status writes do not
        # make full passes.
        watches: list[tuple[str, Callable[..., Any], tuple, Callable[[Any], Iterable[str]], Any]] = [
            ("namespaces", core.list_namespace, (), lambda o: [o.metadata.name], NAMESPACE_FIELDS),
            ("pvcs", core.list_persistent_volume_claim_for_all_namespaces, (), lambda o: [o.metadata.namespace],
             PVC_FIELDS),
            ("storageclasses", storage.list_storage_class, (), lambda o: list(self.tracked),
             fields_digest(("provisioner",))),
            (VGRS, custom.list_cluster_custom_object, (*REPLICATION, VGRS), of_custom, group_digest),
            (PLURAL, custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL), of_custom, STATUS_OBJECT_FIELDS),
        ]  # fmt: skip
        for name, lister, args, namespaces, digest in watches:
            start_watch(name, lister, args, lambda o, of=namespaces: self._queue(of(o)), self.stop, digest)
        log.info("operator_started array=%s label=%s=%s group_class=%s status_interval=%.1fs",
                 self.cluster.array.address, self.config.label_key, self.config.label_value, self.config.group_class,
                 self.status_interval)  # fmt: skip
        while (namespace := self.passes.take(self.stop)) is not None:
            self.reconcile(namespace)

    def reconcile(self, namespace: str) -> None:
        """A full pass when a watch saw the namespace change, its last pass failed or it is
        new here; else a status pass: the array read again, the status written if it changed.
        One request id for the pass: on its log lines here and the array's for its calls."""
        with request_ids.use(request_ids.new_id()):
            self.passes.run(namespace, lambda full: self._reconcile(namespace, full))

    def _reconcile(self, namespace: str, full: bool) -> float | None:
        """One pass; returns when the namespace is due again (None: only when a watch sees it change)."""
        full = full or namespace not in self.last_seen
        seen = self.cluster.observe(namespace) if full else self.cluster.refresh(self.last_seen[namespace])
        if seen is None:
            self.tracked.discard(namespace)
            self.last_seen.pop(namespace, None)
            return None
        actions = reconcile(seen, self.config)
        if not full:  # the rest was decided and done at the last full pass
            actions = [a for a in actions if isinstance(a, ApplyConsistentCopy | Event)]
        self.cluster.apply(namespace, actions)
        self.last_seen[namespace] = as_written(seen, actions)
        if self.config.label_key in seen.labels or seen.vgr is not None or seen.consistent_copy is not None:
            self.tracked.add(namespace)
            return self.status_interval
        self.tracked.discard(namespace)
        return None

    def _queue(self, namespaces: Iterable[str]) -> None:
        for namespace in namespaces:
            if namespace:
                self.passes.changed(namespace)


def as_written(seen: Observed, actions: list) -> Observed:
    """The observation with our status write in it, as the next status pass compares against."""
    for action in actions:
        if isinstance(action, ApplyConsistentCopy):
            seen = dataclasses.replace(seen, consistent_copy={**(seen.consistent_copy or {}), "spec": action.spec,
                                                              "status": action.status})  # fmt: skip
        elif isinstance(action, DeleteConsistentCopy):
            seen = dataclasses.replace(seen, consistent_copy=None)
    return seen
