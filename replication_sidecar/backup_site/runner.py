"""The registrar's loop. Kubernetes objects are watched; the array, which has no watch, is
read every interval, and this cluster is read only when a watch saw a change or the
array's S-VOLs changed: the API server's load follows the changes, not the clock.
Failures are logged and retried with backoff; a warning is said once, not every pass."""

from __future__ import annotations

import logging
import threading

from kubernetes import client

from replication_sidecar.backup_site.kube import OURS, BackupCluster
from replication_sidecar.backup_site.model import Action, RegistrarConfig, SVol, Warning
from replication_sidecar.backup_site.reconcile import reconcile
from replication_sidecar.group_replication import REPLICATION, VGRS
from replication_sidecar.kube_watch import backoff, describe, start_watch

log = logging.getLogger(__name__)


class Registrar:
    def __init__(self, api: client.ApiClient, cluster: BackupCluster, config: RegistrarConfig, interval: float = 2.0):
        self.api, self.cluster, self.config, self.interval = api, cluster, config, interval
        self.changed = threading.Event()
        self.stop = threading.Event()
        self.said: set[tuple[str, str]] = set()
        self.last_svols: tuple[SVol, ...] | None = None

    def run(self) -> None:
        core, custom = client.CoreV1Api(self.api), client.CustomObjectsApi(self.api)

        def poke(_: object) -> None:
            self.changed.set()

        start_watch("namespaces", core.list_namespace, (), poke, self.stop)
        start_watch("pvcs", core.list_persistent_volume_claim_for_all_namespaces, (), poke, self.stop)
        start_watch("pvs", core.list_persistent_volume, (), poke, self.stop, label_selector=OURS)
        start_watch(VGRS, custom.list_cluster_custom_object, (*REPLICATION, VGRS), poke, self.stop, label_selector=OURS)
        log.info("registrar_started array=%s interval=%.1fs", self.cluster.array.address, self.interval)
        attempt = 0
        while not self.stop.is_set():
            woke = self.changed.wait(self.interval)
            try:
                svols = self.cluster.svols()
                if not woke and svols == self.last_svols:
                    continue
                self.changed.clear()
                actions = reconcile(self.cluster.observe(svols), self.config)
                self.cluster.apply(self.once(actions))
                self.last_svols = svols
                attempt = 0
            except Exception as exc:  # the API server or the array: retried, never fatal
                attempt += 1
                delay = backoff(attempt)
                log.warning("reconcile_failed attempt=%d retry_in=%.0fs reason=%r", attempt, delay, describe(exc))
                self.stop.wait(delay)

    def once(self, actions: list[Action]) -> list[Action]:
        """Drop warnings already said; a warning no longer made may be said again later."""
        warnings = {(a.reason, a.message) for a in actions if isinstance(a, Warning)}
        fresh = [a for a in actions if not isinstance(a, Warning) or (a.reason, a.message) not in self.said]
        self.said = warnings
        return fresh
