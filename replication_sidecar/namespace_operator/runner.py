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

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from replication_sidecar.namespace_operator.kube import REPLICATION, VGRS, Cluster, api_message
from replication_sidecar.namespace_operator.model import GROUP, PLURAL, VERSION, OperatorConfig
from replication_sidecar.namespace_operator.reconcile import reconcile

log = logging.getLogger(__name__)
MAX_BACKOFF = 60.0
WATCH_SECONDS = 300


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
            thread = threading.Thread(target=self.watch, args=(name, lister, args, namespaces), daemon=True, name=name)
            thread.start()
        log.info("operator_started label=%s=%s group_class=%s", self.config.label_key, self.config.label_value,
                 self.config.group_class)  # fmt: skip
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
            delay = min(2.0**attempt, MAX_BACKOFF)
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

    def watch(self, name: str, lister: Callable[..., Any], args: tuple, namespaces: Callable[[Any], Iterable[str]]):
        """List, then watch from that version; on any failure list again after a backoff."""
        attempt = 0
        while not self.stop.is_set():
            try:
                listed = lister(*args)
                items, version = _items(listed)
                for item in items:
                    self._queue(namespaces(item))
                attempt = 0
                stream = watch.Watch().stream(lister, *args, resource_version=version, timeout_seconds=WATCH_SECONDS)
                for event in stream:
                    if self.stop.is_set():
                        return
                    self._queue(namespaces(event["object"]))
            except ApiException as exc:
                if exc.status == 410:  # the version is too old: list afresh at once
                    continue
                attempt += 1
                why = "the CRD is not installed" if exc.status == 404 else describe(exc)
                self._wait(name, attempt, why)
            except Exception as exc:  # connection refused, reset, timeouts
                attempt += 1
                self._wait(name, attempt, describe(exc))

    def _queue(self, namespaces: Iterable[str]) -> None:
        for namespace in namespaces:
            if namespace:
                self.queue.add(namespace)

    def _wait(self, name: str, attempt: int, why: str) -> None:
        delay = min(2.0**attempt, MAX_BACKOFF)
        log.warning("watch_failed kind=%s attempt=%d retry_in=%.0fs reason=%r", name, attempt, delay, why)
        self.stop.wait(delay)


def _items(listed: Any) -> tuple[list[Any], str]:
    if isinstance(listed, dict):
        return listed.get("items", []), listed["metadata"]["resourceVersion"]
    return listed.items, listed.metadata.resource_version


def describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return api_message(exc)
    return f"{type(exc).__name__}: {exc}"
