"""The registrar's thin client: reads this array's S-VOLs and this cluster's objects into
plain values, and applies the reconcile's actions. No decisions here."""

from __future__ import annotations

import logging
import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ccopy_api import array_pb2 as pb
from ccopy_common import SVOL_OF_LABEL, ids
from ccopy_common.array_client import ArrayClient
from ccopy_common.loss_words import given_up_words
from replication_sidecar.backup_site.model import (
    MANAGED_BY,
    REGISTRAR,
    Action,
    ApplyConsistentCopy,
    BackupGroup,
    CreateGroupReplication,
    CreateNamespace,
    CreatePv,
    CreatePvc,
    DeleteConsistentCopy,
    DeleteGroupReplication,
    DeletePvc,
    Event,
    GivenUp,
    LabelPvc,
    Observed,
    SeenPv,
    SeenPvc,
    SVol,
    Warning,
)
from replication_sidecar.consistent_copy import GROUP as CC_GROUP
from replication_sidecar.consistent_copy import PLURAL as CC_PLURAL
from replication_sidecar.consistent_copy import VERSION as CC_VERSION
from replication_sidecar.consistent_copy import delete_consistent_copy, write_consistent_copy
from replication_sidecar.group_replication import MEMBER_LABEL, OBJECT_NAME, REPLICATION, VGRS
from replication_sidecar.kube_events import namespace_event
from replication_sidecar.status import replication_info

log = logging.getLogger(__name__)
OURS = f"{MANAGED_BY}={REGISTRAR}"


class BackupCluster:
    """This site's API server and its array, nothing of the main site."""

    def __init__(self, api: client.ApiClient, array: ArrayClient) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.array = array

    def observe(self, svols: tuple[SVol, ...]) -> Observed:
        return Observed(
            svols=svols,
            pvs=tuple(
                SeenPv(pv.metadata.name, pv.spec.csi.volume_handle if pv.spec.csi else "", True, pv.status.phase or "")
                for pv in self.core.list_persistent_volume(label_selector=OURS).items
            ),
            pvcs=tuple(self.pvcs()),
            namespaces=frozenset(ns.metadata.name for ns in self.core.list_namespace().items),
            groups=frozenset(
                vgr["metadata"]["namespace"]
                for vgr in self.custom.list_cluster_custom_object(*REPLICATION, VGRS, label_selector=OURS)["items"]
            ),
            consistent_copies=self.consistent_copies(),
        )

    def svols(self) -> tuple[SVol, ...]:
        """Every LDEV this array made as an S-VOL, paired or not any more."""
        serial = self.array.serial
        # In a pair either way: after a takeover and a failback the S-VOL is the primary of a reversed pair.
        paired = {p.local_ldev_id: p.group_name for p in self.array.call("ListPairs", pb.ListPairsRequest()).pairs}
        out, token = [], ""
        while True:
            page = self.array.call("ListLdevs", pb.ListLdevsRequest(page_token=token))
            for ldev in page.ldevs:
                if SVOL_OF_LABEL in ldev.labels:
                    handle, group = ids.volume_id(serial, ldev.id), paired.get(ldev.id, "")
                    out.append(SVol(handle, ldev.size_bytes, dict(ldev.labels), ldev.id in paired, group))
            token = page.next_page_token
            if not token:
                return tuple(out)

    def journal_groups(self, names: set[str]) -> dict[str, BackupGroup]:
        """The S-VOLs' journal groups as this array sees them (the only view left in a disaster)."""
        now_ns = time.time_ns()
        out = {}
        for name in sorted(names):
            group = self.array.maybe("GetJournalGroup", pb.GetJournalGroupRequest(name=name))
            if group is not None:  # else ended meanwhile
                out[name] = backup_group(group, self.array.serial, now_ns)
        return out

    def consistent_copies(self) -> dict[str, dict]:
        try:
            found = self.custom.list_cluster_custom_object(CC_GROUP, CC_VERSION, CC_PLURAL, label_selector=OURS)
        except ApiException as exc:
            if exc.status == 404:  # our CRD is not installed: said when a status is written
                return {}
            raise
        return {item["metadata"]["namespace"]: item for item in found["items"]}

    def pvcs(self) -> list[SeenPvc]:
        return [
            SeenPvc(
                c.metadata.namespace,
                c.metadata.name,
                c.spec.volume_name or "",
                (c.metadata.labels or {}).get(MANAGED_BY) == REGISTRAR,
                dict(c.metadata.labels or {}),
                tuple(c.metadata.finalizers or ()),
                deleting=c.metadata.deletion_timestamp is not None,
            )
            for c in self.core.list_persistent_volume_claim_for_all_namespaces().items
        ]

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                self._apply(action)
            except ApiException as exc:
                if exc.status != 409:  # made meanwhile: the next pass sees it
                    raise

    def _apply(self, action: Action) -> None:
        match action:
            case CreateNamespace(name):
                body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={MANAGED_BY: REGISTRAR}))
                self.core.create_namespace(body)
                log.info("namespace_created namespace=%s", name)
            case CreatePv(body):
                self.core.create_persistent_volume(body)
                log.info("pv_created pv=%s volume=%s", body["metadata"]["name"], body["spec"]["csi"]["volumeHandle"])
            case CreatePvc(body):
                meta = body["metadata"]
                self.core.create_namespaced_persistent_volume_claim(meta["namespace"], body)
                log.info("pvc_created namespace=%s pvc=%s pv=%s", meta["namespace"], meta["name"],
                         body["spec"]["volumeName"])  # fmt: skip
            case LabelPvc(namespace, name, value):
                patch = {"metadata": {"labels": {MEMBER_LABEL: value}}}
                self.core.patch_namespaced_persistent_volume_claim(name, namespace, patch)
                log.info("pvc_labelled namespace=%s pvc=%s member=%s", namespace, name, value is not None)
            case DeletePvc(namespace, name):
                self.core.delete_namespaced_persistent_volume_claim(name, namespace)
                log.info("pvc_released namespace=%s pvc=%s (its PV is kept)", namespace, name)
            case CreateGroupReplication(namespace, body):
                self.custom.create_namespaced_custom_object(*REPLICATION, namespace, VGRS, body)
                log.info("group_replication_created namespace=%s state=secondary", namespace)
            case DeleteGroupReplication(namespace):
                self.custom.delete_namespaced_custom_object(*REPLICATION, namespace, VGRS, OBJECT_NAME)
                log.info("group_replication_deleted namespace=%s", namespace)
            case ApplyConsistentCopy(namespace, status):
                try:
                    write_consistent_copy(self.custom, namespace, {}, status, REGISTRAR)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    log.warning("consistent_copy_not_written namespace=%s reason=%r", namespace,
                                "the ConsistentCopy CRD is not installed (charts/consistent-copy/crds)")  # fmt: skip
            case DeleteConsistentCopy(namespace):
                delete_consistent_copy(self.custom, namespace)
            case Event(namespace, kind, reason, message):
                namespace_event(self.core, namespace, kind, reason, message, REGISTRAR)
            case Warning(namespace, reason, message):
                self._warn(namespace, reason, message)

    def _warn(self, namespace: str, reason: str, message: str) -> None:
        log.warning("not_registered reason=%s message=%r", reason, message)
        if namespace:
            namespace_event(self.core, namespace, "Warning", reason, message, REGISTRAR)


def backup_group(group: pb.JournalGroup, serial: int, now_ns: int) -> BackupGroup:
    info = replication_info(group, group.rpo_seconds, now_ns)
    lost = None
    if group.HasField("given_up"):
        g = group.given_up
        lost = GivenUp(
            g.records, g.bytes, g.seconds, g.exact,
            g.last_contact.ToNanoseconds() if g.HasField("last_contact") else None,
            g.recovery_point.ToNanoseconds() if g.HasField("recovery_point") else None,
            given_up_words(g),
        )  # fmt: skip
    return BackupGroup(
        name=group.name,
        role=group.role,
        pair_states={ids.volume_id(serial, p.local_ldev_id): pb.PairState.Name(p.state) for p in group.pairs},
        status=info.status,
        message=info.message,
        recovery_point_ns=info.recovery_point_ns,
        rpo_seconds=group.rpo_seconds,
        last_contact_ns=group.last_contact.ToNanoseconds() if group.HasField("last_contact") else None,
        pending_records=group.pending_records,
        pending_bytes=group.pending_bytes,
        lag_seconds=group.lag_seconds,
        given_up=lost,
    )
