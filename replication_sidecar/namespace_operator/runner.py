"""Watches and one work queue: any change to a Namespace, a PVC, a StorageClass, our
VolumeGroupReplications or ConsistentCopies queues its namespace; one worker reconciles
namespaces one at a time. A protected namespace is looked at again every status
interval (its recovery point ages on the array, which has no watch). Failures are logged
and retried with backoff, per namespace and per watch; nothing here ends the process.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import client

from replication_sidecar.group_replication import REPLICATION, VGRS
from replication_sidecar.kube_watch import backoff, describe, start_watch
from replication_sidecar.namespace_operator.kube import Cluster
from replication_sidecar.namespace_operator.model import GROUP, PLURAL, VERSION, OperatorConfig
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
        self.stop = threading.Event()

    def run(self) -> None:
        core, storage = client.CoreV1Api(self.api), client.StorageV1Api(self.api)
        custom = client.CustomObjectsApi(self.api)

        def of_custom(o: dict) -> list[str]:
            return [o["metadata"]["namespace"]]

        watches: list[tuple[str, Callable[..., Any], tuple, Callable[[Any], Iterable[str]]]] = [
            ("namespaces", core.list_namespace, (), lambda o: [o.metadata.name]),
            ("pvcs", core.list_persistent_volume_claim_for_all_namespaces, (), lambda o: [o.metadata.namespace]),
            ("storageclasses", storage.list_storage_class, (), lambda o: list(self.tracked)),
            (VGRS, custom.list_cluster_custom_object, (*REPLICATION, VGRS), of_custom),
            (PLURAL, custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL), of_custom),
        ]
        for name, lister, args, namespaces in watches:
            start_watch(name, lister, args, lambda o, of=namespaces: self._queue(of(o)), self.stop)
        log.info("operator_started array=%s label=%s=%s group_class=%s status_interval=%.1fs",
                 self.cluster.array.address, self.config.label_key, self.config.label_value, self.config.group_class,
                 self.status_interval)  # fmt: skip
        while (namespace := self.queue.take(self.stop)) is not None:
            self.reconcile(namespace)

    def reconcile(self, namespace: str) -> None:
        try:
            seen = self.cluster.observe(namespace)
            if seen is None:
                self.tracked.discard(namespace)
                return
            actions = reconcile(seen, self.config)
            self.cluster.apply(namespace, actions)
        except Exception as exc:  # the API server or the array: retried, never fatal
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
                self.queue.add(namespace)
