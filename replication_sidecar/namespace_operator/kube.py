"""The thin client: reads one namespace's state from the API server and the array into
plain values, and applies the reconcile's actions. No decisions here."""

from __future__ import annotations

import dataclasses
import logging
import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ccopy_api import array_pb2 as pb
from ccopy_common import ids
from ccopy_common.array_client import ArrayClient
from ccopy_common.errors import ServiceError
from ccopy_common.ldev_id import format_ldev_id
from replication_sidecar.consistent_copy import delete_consistent_copy, write_consistent_copy
from replication_sidecar.group_replication import REPLICATION, VGRS
from replication_sidecar.kube_events import namespace_event
from replication_sidecar.namespace_operator.model import (
    GROUP,
    MEMBER_LABEL,
    OBJECT_NAME,
    OPERATOR_NAME,
    PLURAL,
    VERSION,
    Action,
    ApplyConsistentCopy,
    ArrayGroup,
    ArrayPair,
    CreateGroupReplication,
    DeleteConsistentCopy,
    DeleteGroupReplication,
    Event,
    GroupReplication,
    LabelPvc,
    Observed,
    OperatorConfig,
    Pvc,
)
from replication_sidecar.namespace_operator.reconcile import declared_rpo
from replication_sidecar.status import replication_info

log = logging.getLogger(__name__)


def missing(exc: ApiException) -> bool:
    return exc.status == 404


class Cluster:
    """One API server and this site's array, seen through the operator's own credentials."""

    def __init__(self, api: client.ApiClient, array: ArrayClient, config: OperatorConfig) -> None:
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.array = array
        self.config = config
        self.handles: dict[str, str] = {}  # PV name -> CSI volume handle (fixed for a PV's life)

    # -- observing ----------------------------------------------------------------------------
    def observe(self, namespace: str) -> Observed | None:
        """The namespace as the reconcile needs it; None once the namespace is gone."""
        try:
            ns = self.core.read_namespace(namespace)
        except ApiException as exc:
            if missing(exc):
                return None
            raise
        labels = dict(ns.metadata.labels or {})
        seen = Observed(
            namespace,
            labels,
            annotations=dict(ns.metadata.annotations or {}),
            pvcs=tuple(self.pvcs(namespace)),
            storage_classes={sc.metadata.name: sc.provisioner for sc in self.storage.list_storage_class().items},
            now_ns=time.time_ns(),
        )
        csi_addons, vgr, content = self.group_replication(namespace)
        group_class = self.cluster_object("volumegroupreplicationclasses", self.config.group_class)
        seen = dataclasses.replace(
            seen, csi_addons_installed=csi_addons, group_class_exists=group_class is not None, vgr=vgr
        )
        seen = dataclasses.replace(
            seen, consistent_copy=self.namespaced(GROUP, VERSION, namespace, PLURAL, OBJECT_NAME)
        )
        if labels.get(self.config.label_key) == self.config.label_value and content is not None:
            seen = self.with_array(seen, content)
        return seen

    def pvcs(self, namespace: str) -> list[Pvc]:
        out = []
        for claim in self.core.list_namespaced_persistent_volume_claim(namespace).items:
            handle = ""
            if claim.status.phase == "Bound" and claim.spec.volume_name:
                handle = self.volume_handle(claim.spec.volume_name)
            out.append(
                Pvc(
                    claim.metadata.name,
                    claim.spec.storage_class_name or "",
                    claim.status.phase or "Pending",
                    handle,
                    dict(claim.metadata.labels or {}),
                    deleting=claim.metadata.deletion_timestamp is not None,
                )
            )
        return out

    def volume_handle(self, pv_name: str) -> str:
        """Read once per PV: a hundred PVCs must not cost a hundred reads every pass."""
        if pv_name not in self.handles:
            pv = self.core.read_persistent_volume(pv_name)
            self.handles[pv_name] = pv.spec.csi.volume_handle if pv.spec.csi else ""
        return self.handles[pv_name]

    def refresh(self, seen: Observed) -> Observed:
        """The last observation with the array read again: what a status pass needs (the
        Kubernetes objects are watched; a change to them makes a full pass)."""
        seen = dataclasses.replace(seen, now_ns=time.time_ns(), array_problem="")
        return self.array_group(seen, seen.array.name) if seen.array is not None else seen

    def group_replication(self, namespace: str) -> tuple[bool, GroupReplication | None, dict | None]:
        """(csi-addons CRDs installed, our VolumeGroupReplication, its VolumeGroupReplicationContent)."""
        try:
            self.custom.list_namespaced_custom_object(*REPLICATION, namespace, VGRS, limit=1)
        except ApiException as exc:
            if missing(exc):
                return False, None, None
            raise
        found = self.namespaced(*REPLICATION, namespace, VGRS, OBJECT_NAME)
        if found is None:
            return True, None, None
        status = found.get("status") or {}
        vgr = GroupReplication(
            state=status.get("state", ""),
            message=status.get("message", ""),
            members=tuple(ref.get("name", "") for ref in status.get("persistentVolumeClaimsRefList") or []),
            deleting=bool(found["metadata"].get("deletionTimestamp")),
        )
        content_name = (found.get("spec") or {}).get("volumeGroupReplicationContentName")
        content = self.cluster_object("volumegroupreplicationcontents", content_name) if content_name else None
        return True, vgr, content

    def with_array(self, seen: Observed, content: dict) -> Observed:
        """The journal group the sidecar made for the group (its name is in the content's
        volumeGroupAttributes), as this site's array reports it."""
        name = ((content.get("spec") or {}).get("volumeGroupAttributes") or {}).get("journalGroup")
        return self.array_group(seen, name) if name else seen

    def array_group(self, seen: Observed, name: str) -> Observed:
        try:
            group = self.array.call("GetJournalGroup", pb.GetJournalGroupRequest(name=name))
            serial = self.array.serial
        except ServiceError as exc:
            log.warning("array_unreachable namespace=%s group=%s reason=%r", seen.namespace, name, str(exc))
            return dataclasses.replace(seen, array_problem=f"array {self.array.address}: {exc}")
        info = replication_info(group, declared_rpo(seen, self.config), seen.now_ns)
        pairs = {ids.volume_id(serial, p.local_ldev_id): array_pair(p) for p in group.pairs}
        full = group.overflowed or any(p.state == pb.PFUS for p in group.pairs)
        array = ArrayGroup(
            group.name, pairs, info.status, info.message, info.recovery_point_ns, group.usage_bytes,
            group.capacity_bytes, journal_full=full, journal_nearly_full=group.journal_nearly_full,
        )  # fmt: skip
        return dataclasses.replace(seen, array=array)

    def namespaced(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict | None:
        try:
            return self.custom.get_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as exc:
            if missing(exc):
                return None
            raise

    def cluster_object(self, plural: str, name: str) -> dict | None:
        try:
            return self.custom.get_cluster_custom_object(*REPLICATION, plural, name)
        except ApiException as exc:
            if missing(exc):
                return None
            raise

    # -- applying -----------------------------------------------------------------------------
    def apply(self, namespace: str, actions: list[Action]) -> None:
        for action in actions:
            self._apply(namespace, action)

    def _apply(self, namespace: str, action: Action) -> None:
        match action:
            case LabelPvc(pvc, value):
                patch = {"metadata": {"labels": {MEMBER_LABEL: value}}}
                self.core.patch_namespaced_persistent_volume_claim(pvc, namespace, patch)
                log.info("pvc_labelled namespace=%s pvc=%s member=%s", namespace, pvc, value is not None)
            case CreateGroupReplication(body):
                try:
                    self.custom.create_namespaced_custom_object(*REPLICATION, namespace, VGRS, body)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                log.info("group_replication_created namespace=%s class=%s", namespace, self.config.group_class)
            case DeleteGroupReplication():
                self._delete(*REPLICATION, namespace, VGRS)
                log.info("group_replication_deleted namespace=%s", namespace)
            case ApplyConsistentCopy(spec, status):
                write_consistent_copy(self.custom, namespace, spec, status, OPERATOR_NAME)
            case DeleteConsistentCopy():
                delete_consistent_copy(self.custom, namespace)
            case Event(kind, reason, message):
                namespace_event(self.core, namespace, kind, reason, message, OPERATOR_NAME)

    def _delete(self, group: str, version: str, namespace: str, plural: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(group, version, namespace, plural, OBJECT_NAME)
        except ApiException as exc:
            if not missing(exc):
                raise


def array_pair(pair: pb.Pair) -> ArrayPair:
    state = pb.PairState.Name(pair.state)
    svol = format_ldev_id(pair.remote_ldev_id)
    return ArrayPair(pair.local_display_id, svol, state, pair.copied_bytes, pair.copy_total_bytes)
