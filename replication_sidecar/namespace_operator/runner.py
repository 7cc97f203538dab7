"""Watches and one work queue: any change to a Namespace, a PVC, a StorageClass, our
VolumeGroupReplications or (someone else's change to) our ConsistentCopies queues its
namespace for a full pass; one worker reconciles namespaces one at a time. A protected
namespace gets a status pass every status interval (its recovery point ages on the
array, which has no watch): the array is read again and the status written, the
Kubernetes objects are not listed again, so a quiet namespace costs the API server one
request per interval however many PVCs it has. Failures are logged and retried with
backoff, per namespace and per watch; nothing here ends the process.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from kubernetes import client

from ccopy_common import request_ids
from replication_sidecar.group_replication import REPLICATION, VGRS
from replication_sidecar.kube_watch import backoff, describe, fields_digest, start_watch
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

log = logging.getLogger(__name__)


class WorkQueue:
    """Namespaces due at a time; a namespace queued twice is done once, at the earlier time."""

    def __init__(self) -> None:
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._ready = threading.Condition()

    def add(self, namespace: str, delay: float = 0.0) -> None:
        at = time.monotonic() + delay
        with self._ready:
            if namespace in self._due and self._due[namespace] <= at:
                return
            self._due[namespace] = at
            heapq.heappush(self._heap, (at, namespace))
            self._ready.notify()

    def take(self, stop: threading.Event) -> str | None:
        with self._ready:
            while not stop.is_set():
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded by an earlier time
                wait = self._heap[0][0] - time.monotonic() if self._heap else 1.0
                if self._heap and wait <= 0:
                    _, namespace = heapq.heappop(self._heap)
                    del self._due[namespace]
                    return namespace
                self._ready.wait(min(max(wait, 0.0), 1.0))
        return None


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
        self.queue = WorkQueue()
        self.failures: dict[str, int] = {}
        self.tracked: set[str] = set()  # namespaces with our label key or our objects
        self.changed: set[str] = set()  # namespaces a watch saw change since their last full pass
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
        while (namespace := self.queue.take(self.stop)) is not None:
            self.reconcile(namespace)

    def reconcile(self, namespace: str) -> None:
        """A full pass when a watch saw the namespace change (or it is new here); else a
        status pass: the array read again, the status written if it changed. One request
        id for the pass: on its log lines here and the array's for its calls."""
        with request_ids.use(request_ids.new_id()):
            self._reconcile(namespace)

    def _reconcile(self, namespace: str) -> None:
        full = namespace in self.changed or namespace not in self.last_seen
        try:
            if full:
                self.changed.discard(namespace)  # before reading: a change from now on makes another pass
                seen = self.cluster.observe(namespace)
            else:
                seen = self.cluster.refresh(self.last_seen[namespace])
            if seen is None:
                self.tracked.discard(namespace)
                self.last_seen.pop(namespace, None)
                return
            actions = reconcile(seen, self.config)
            if not full:  # the rest was decided and done at the last full pass
                actions = [a for a in actions if isinstance(a, ApplyConsistentCopy | Event)]
            self.cluster.apply(namespace, actions)
            self.last_seen[namespace] = as_written(seen, actions)
        except Exception as exc:  # the API server or the array: retried, never fatal
            self.changed.add(namespace)
            attempt = self.failures[namespace] = self.failures.get(namespace, 0) + 1
            delay = backoff(attempt)
            log.warning("reconcile_failed namespace=%s attempt=%d retry_in=%.0fs reason=%r", namespace, attempt, delay,
                        describe(exc))  # fmt: skip
            self.queue.add(namespace, delay)
            return
        self.failures.pop(namespace, None)
        if self.config.label_key in seen.labels or seen.vgr is not None or seen.consistent_copy is not None:
            self.tracked.add(namespace)
            self.queue.add(namespace, self.status_interval)
        else:
            self.tracked.discard(namespace)

    def _queue(self, namespaces: Iterable[str]) -> None:
        for namespace in namespaces:
            if namespace:
                self.changed.add(namespace)
                self.queue.add(namespace)


def as_written(seen: Observed, actions: list) -> Observed:
    """The observation with our status write in it, as the next status pass compares against."""
    for action in actions:
        if isinstance(action, ApplyConsistentCopy):
            seen = dataclasses.replace(seen, consistent_copy={**(seen.consistent_copy or {}), "spec": action.spec,
                                                              "status": action.status})  # fmt: skip
        elif isinstance(action, DeleteConsistentCopy):
            seen = dataclasses.replace(seen, consistent_copy=None)
    return seen
