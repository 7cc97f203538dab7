"""The registrar's loop. Kubernetes objects are watched; the array, which has no watch, is
read every interval, and this cluster is read only when a watch saw a change or the
array's S-VOLs changed: the API server's load follows the changes, not the clock.
A failed pass is logged and retried in full with backoff, on the namespace operator's
schedule (`work_queue.Passes`): one key, the whole site, since one pass registers every
S-VOL. A warning is said once, not every pass."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from kubernetes import client

from ccopy_common import request_ids
from replication_sidecar.backup_site.kube import OURS, BackupCluster
from replication_sidecar.backup_site.model import (
    Action,
    ApplyConsistentCopy,
    DeleteConsistentCopy,
    Event,
    Observed,
    RegistrarConfig,
    SVol,
    Warning,
)
from replication_sidecar.backup_site.reconcile import reconcile
from replication_sidecar.group_replication import REPLICATION, VGRS
from replication_sidecar.kube_watch import fields_digest, start_watch
from replication_sidecar.work_queue import Passes

log = logging.getLogger(__name__)


PVC_FIELDS = fields_digest(
    ("metadata", "labels"), ("metadata", "finalizers"), ("metadata", "deletionTimestamp"), ("spec", "volumeName"),
)  # fmt: skip
PV_FIELDS = fields_digest(("status", "phase"), ("spec", "csi", "volumeHandle"))
SITE = "backup"  # the one key of the registrar's passes (`reconcile_failed site=backup ...`)


class Registrar:
    def __init__(
        self, api: client.ApiClient, cluster: BackupCluster, config: RegistrarConfig, interval: float = 2.0,
        status_interval: float = 10.0,
    ) -> None:  # fmt: skip
        self.api, self.cluster, self.config = api, cluster, config
        self.interval, self.status_interval = interval, status_interval
        self.passes = Passes("site")
        self.stop = threading.Event()
        self.said: set[tuple[str, str]] = set()
        self.last_svols: tuple[SVol, ...] | None = None
        self.last_seen: Observed | None = None
        self.last_status_ns = 0

    def run(self) -> None:
        core, custom = client.CoreV1Api(self.api), client.CustomObjectsApi(self.api)

        def poke(_: object) -> None:
            self.passes.changed(SITE)

        # Only changes to what the reconcile reads wake it (the csi-addons manager's status
        # heartbeats on the groups do not).
        gone = fields_digest(("metadata", "deletionTimestamp"))
        start_watch("namespaces", core.list_namespace, (), poke, self.stop, gone)
        start_watch("pvcs", core.list_persistent_volume_claim_for_all_namespaces, (), poke, self.stop, PVC_FIELDS)
        start_watch("pvs", core.list_persistent_volume, (), poke, self.stop, PV_FIELDS, label_selector=OURS)
        start_watch(VGRS, custom.list_cluster_custom_object, (*REPLICATION, VGRS), poke, self.stop, gone,
                    label_selector=OURS)  # fmt: skip
        log.info("registrar_started array=%s interval=%.1fs status_interval=%.1fs", self.cluster.array.address,
                 self.interval, self.status_interval)  # fmt: skip
        self.passes.changed(SITE)  # the first pass lists everything
        while self.passes.take(self.stop) is not None:
            self.one_pass()

    def one_pass(self) -> None:
        """Read the array (no watch there); list this cluster only when something changed
        or the last pass failed. A pass with nothing new in the cluster still rewrites
        statuses that changed (a takeover, a pair state) and, every status interval, their
        ages. The next pass is due after the interval, sooner on a change. One request id
        for the pass, here and in the array's log."""
        with request_ids.use(request_ids.new_id()):
            self.passes.run(SITE, self._one_pass)

    def _one_pass(self, full: bool) -> float:
        """One pass; raises whatever failed (`Passes` retries it in full). Returns when the next
        is due: after the interval, as the array has no watch."""
        svols = self.cluster.svols()
        groups = self.cluster.journal_groups({s.group for s in svols if s.group})
        now_ns = time.time_ns()
        due = now_ns - self.last_status_ns >= self.status_interval * 1e9
        full = full or svols != self.last_svols or self.last_seen is None
        if full:
            seen = self.cluster.observe(svols)
        else:
            assert self.last_seen is not None
            seen = self.last_seen
        seen = dataclasses.replace(seen, journal_groups=groups, now_ns=now_ns, status_due=due)
        actions = reconcile(seen, self.config)
        made = warnings_of(actions)
        if not full:  # what the registry decided was applied last time; its objects are on their way
            actions = [a for a in actions if isinstance(a, STATUS_ACTIONS)]
        self.cluster.apply([a for a in actions if not isinstance(a, Warning) or warnings_of([a]) - self.said])
        # Said once applied (a failed pass says its warnings again on its retry). A quick pass
        # says none, and forgets none still made: else the next full pass says them again.
        # A warning no longer made may be said again later.
        self.said = made if full else made & self.said
        self.last_svols, self.last_seen = svols, written(seen, actions)
        if due:
            self.last_status_ns = now_ns
        return self.interval


STATUS_ACTIONS = (ApplyConsistentCopy, DeleteConsistentCopy, Event)


def warnings_of(actions: list[Action]) -> set[tuple[str, str]]:
    return {(a.reason, a.message) for a in actions if isinstance(a, Warning)}


def written(seen: Observed, actions: list[Action]) -> Observed:
    """The observation as it stands once the status actions are applied, for the next quick pass."""
    copies = dict(seen.consistent_copies)
    for action in actions:
        if isinstance(action, ApplyConsistentCopy):
            copies[action.namespace] = {**copies.get(action.namespace, {}), "status": action.status}
        elif isinstance(action, DeleteConsistentCopy):
            copies.pop(action.namespace, None)
    return dataclasses.replace(seen, consistent_copies=copies)
