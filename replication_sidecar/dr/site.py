"""One site's API server as `ccopy dr` sees it: our VolumeGroupReplication and
ConsistentCopy of a namespace, the snapshot objects a drill makes. Thin: reads into
plain values, creates and patches what the commands decided."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from replication_sidecar.consistent_copy import GROUP, PLURAL, VERSION
from replication_sidecar.dr.drill import GROUP_SNAPSHOTS, SNAPSHOTS
from replication_sidecar.group_replication import OBJECT_NAME, REPLICATION, VGRS
from replication_sidecar.kube_client import not_an_api_server
from replication_sidecar.kube_watch import describe

T = TypeVar("T")


class DrError(Exception):
    """What stops a command, in one line for the person who ran it."""


class SiteUnreachable(DrError):
    """The site's API server did not answer (or its TLS failed)."""


class ServerChecked:
    """Whether a site's server was found to be a Kubernetes API server: asked once, before the
    site's first call, so that a web page is never read as an object or as a 404 (absence)."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api, self._done = api, False

    def ensure(self, site: str, where: str) -> None:
        if not self._done:
            if problem := not_an_api_server(self._api):
                raise DrError(f"{site} site ({where}): {problem}")
            self._done = True


class NamedCalls:
    """An API client whose failures say which site and which credentials they came from: with
    two clusters in one command, "the API server does not answer" alone does not say which.
    Not found stays an ApiException, which DrSite.maybe reads as absence."""

    def __init__(self, api: object, site: str, where: str, checked: ServerChecked) -> None:
        self._api, self._site, self._where, self._checked = api, site, where, checked

    def __getattr__(self, name: str) -> Callable[..., object]:
        method = getattr(self._api, name)

        def call(*args: object, **kwargs: object) -> object:
            try:
                self._checked.ensure(self._site, self._where)
                return method(*args, **kwargs)
            except ApiException as exc:
                if exc.status == 404:
                    raise
                raise DrError(f"{self._site} site ({self._where}): {describe(exc)}") from exc
            except HTTPError as exc:
                raise SiteUnreachable(f"{self._site} site ({self._where}): {describe(exc)}") from exc

        return call


class DrSite:
    def __init__(self, api: client.ApiClient, name: str, where: str = "") -> None:
        self.name = name  # main or backup: how messages name this site
        self.where = where or "its kubeconfig"  # the flags that named its cluster, for messages
        checked = ServerChecked(api)
        self.core = cast(client.CoreV1Api, NamedCalls(client.CoreV1Api(api), name, self.where, checked))
        self.custom = cast(client.CustomObjectsApi, NamedCalls(client.CustomObjectsApi(api), name, self.where, checked))
        self.apis = cast(client.ApisApi, NamedCalls(client.ApisApi(api), name, self.where, checked))

    def require_own(self, namespace: str) -> dict:
        """The namespace's ConsistentCopy status here, once it says this cluster is the site the
        command was told it is: credentials of the other cluster would otherwise make a failover
        report success without touching the backup."""
        status = self.consistent_copy(namespace)
        says = status.get("site")
        if says and says != self.name:
            raise DrError(f"{self.name} site ({self.where}): this cluster is the {says} site of namespace "
                          f"{namespace}, not the {self.name} site: check the kubeconfig and context")  # fmt: skip
        return status

    # -- our objects ------------------------------------------------------------------------
    def group_replication(self, namespace: str) -> dict | None:
        return self.maybe(lambda: self.custom.get_namespaced_custom_object(*REPLICATION, namespace, VGRS, OBJECT_NAME))

    def group_state(self, namespace: str) -> tuple[str, str]:
        """(status.state, status.message) of the namespace's VolumeGroupReplication."""
        found = self.group_replication(namespace)
        if found is None:
            raise DrError(f"{self.name} site: namespace {namespace} has no VolumeGroupReplication {OBJECT_NAME}")
        status = found.get("status") or {}
        return status.get("state", ""), status.get("message", "")

    def set_state(self, namespace: str, state: str) -> None:
        patch = {"spec": {"replicationState": state}}
        self.custom.patch_namespaced_custom_object(*REPLICATION, namespace, VGRS, OBJECT_NAME, patch)

    def consistent_copy(self, namespace: str) -> dict:
        """The namespace's ConsistentCopy status at this site ({} when there is none)."""
        found = self.maybe(lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                                            OBJECT_NAME))  # fmt: skip
        return (found or {}).get("status") or ({} if found is None else {"state": ""})

    # -- snapshots and restores ---------------------------------------------------------------
    def group_snapshot_version(self) -> str:
        """The version of the VolumeGroupSnapshot API the server prefers (discovery: no special rights)."""
        for group in self.apis.get_api_versions().groups:
            if group.name == GROUP_SNAPSHOTS:
                return group.preferred_version.version
        raise DrError(f"{self.name} site: the VolumeGroupSnapshot API ({GROUP_SNAPSHOTS}) is not installed")

    def group_snapshot_class(self, version: str, driver: str) -> str:
        """The VolumeGroupSnapshotClass of our driver (the one marked default when there are several)."""
        items = self.custom.list_cluster_custom_object(GROUP_SNAPSHOTS, version, "volumegroupsnapshotclasses")["items"]
        ours = [c for c in items if c.get("driver") == driver]
        if not ours:
            raise DrError(f"{self.name} site: no VolumeGroupSnapshotClass of driver {driver}; make one or pass "
                          "--group-snapshot-class")  # fmt: skip
        default = "groupsnapshot.storage.kubernetes.io/is-default-class"
        ours.sort(key=lambda c: ((c["metadata"].get("annotations") or {}).get(default) != "true",
                                 c["metadata"]["name"]))  # fmt: skip
        return ours[0]["metadata"]["name"]

    def group_snapshot(self, namespace: str, version: str, name: str) -> dict | None:
        return self.maybe(lambda: self.custom.get_namespaced_custom_object(
            GROUP_SNAPSHOTS, version, namespace, "volumegroupsnapshots", name))  # fmt: skip

    def snapshots_of_group(self, namespace: str, group_snapshot: str) -> list[dict]:
        listed = self.custom.list_namespaced_custom_object(*SNAPSHOTS, namespace, "volumesnapshots")["items"]
        return [s for s in listed if (s.get("status") or {}).get("volumeGroupSnapshotName") == group_snapshot]

    def snapshot_content(self, name: str) -> dict:
        return self.custom.get_cluster_custom_object(*SNAPSHOTS, "volumesnapshotcontents", name)

    def create(self, body: dict) -> None:
        """Create a Namespace, PVC, VolumeSnapshot(Content) or VolumeGroupSnapshot from its body."""
        kind, namespace = body["kind"], body["metadata"].get("namespace", "")
        group, _, version = body["apiVersion"].rpartition("/")
        match kind:
            case "Namespace":
                self.core.create_namespace(body)
            case "PersistentVolumeClaim":
                self.core.create_namespaced_persistent_volume_claim(namespace, body)
            case "VolumeSnapshotContent":
                self.custom.create_cluster_custom_object(group, version, "volumesnapshotcontents", body)
            case _:
                plural = {"VolumeSnapshot": "volumesnapshots", "VolumeGroupSnapshot": "volumegroupsnapshots"}[kind]
                self.custom.create_namespaced_custom_object(group, version, namespace, plural, body)

    def delete_pvcs(self, namespace: str) -> None:
        self.core.delete_collection_namespaced_persistent_volume_claim(namespace)

    def delete_namespace(self, name: str) -> None:
        self.maybe(lambda: self.core.delete_namespace(name))

    def delete_snapshot_contents(self, label_selector: str) -> None:
        self.custom.delete_collection_cluster_custom_object(*SNAPSHOTS, "volumesnapshotcontents",
                                                            label_selector=label_selector)  # fmt: skip

    def delete_group_snapshot(self, namespace: str, version: str, name: str) -> None:
        self.maybe(lambda: self.custom.delete_namespaced_custom_object(
            GROUP_SNAPSHOTS, version, namespace, "volumegroupsnapshots", name))  # fmt: skip

    def pvc_phases(self, namespace: str) -> dict[str, str]:
        return {c.metadata.name: c.status.phase or "" for c in
                self.core.list_namespaced_persistent_volume_claim(namespace).items}  # fmt: skip

    def pvc(self, namespace: str, name: str) -> client.V1PersistentVolumeClaim:
        return self.core.read_namespaced_persistent_volume_claim(name, namespace)

    def namespace(self, name: str) -> client.V1Namespace | None:
        return self.maybe(lambda: self.core.read_namespace(name))

    @staticmethod
    def maybe(read: Callable[[], T]) -> T | None:
        try:
            return read()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def until(read: Callable[[], T], done: Callable[[T], bool], what: str, timeout: float, every: float = 0.2) -> T:
    """Poll until `done`; a DrError naming `what` and the last state after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        state = read()
        if done(state):
            return state
        if time.monotonic() > deadline:
            raise DrError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {state}")
        time.sleep(every)
