"""Making and awaiting the Kubernetes objects of the storage flows, through the
`kubernetes` client only: StorageClasses, PVCs, snapshots and group snapshots.

Waits end when the object reaches the state asked for, and fail only when the object
stopped changing for `STALL` seconds (a busy machine is slow, not stuck).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client

from ccopy.waiting import wait_progressing
from replication_sidecar.dr.drill import GroupSnapshotWatch

STALL = 180.0
SNAPSHOT = ("snapshot.storage.k8s.io", "v1")


def newest_served(api: client.ApiClient, crd_name: str) -> str:
    """The newest version a CRD serves (GA before beta before alpha, higher before lower)."""
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(crd_name)

    def rank(version: str) -> tuple[int, int, int]:
        head, _, tail = version[1:].partition("beta") if "beta" in version else version[1:].partition("alpha")
        maturity = 2 if not tail else (1 if "beta" in version else 0)
        return int(head), maturity, int(tail or 0)

    return max((v.name for v in crd.spec.versions if v.served), key=rank)


def await_object(read: Callable[[], Any], done: Callable[[Any], bool], what: str) -> Any:
    """Wait for `done(read())`; what counts as progress is any change of the object's status."""
    return wait_progressing(read, done, what, progress=lambda obj: str(_status(obj)), stall=STALL, interval=0.2)


def _status(obj: Any) -> Any:
    return obj.get("status") if isinstance(obj, dict) else getattr(obj, "status", obj)


def storage_class(api: client.ApiClient, name: str, driver: str, **parameters: str) -> None:
    client.StorageV1Api(api).create_storage_class(
        client.V1StorageClass(
            metadata=client.V1ObjectMeta(name=name), provisioner=driver, parameters=parameters or None,
            volume_binding_mode="Immediate", allow_volume_expansion=True, reclaim_policy="Delete",
        )
    )  # fmt: skip


def namespace(api: client.ApiClient, name: str) -> None:
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


def pvc(
    api: client.ApiClient,
    namespace: str,
    name: str,
    size: str,
    storage_class: str,
    block: bool = False,
    labels: dict[str, str] | None = None,
    source: tuple[str, str, str] | None = None,  # (apiGroup or "", kind, name)
) -> client.V1PersistentVolumeClaim:
    data_source = None
    if source is not None:
        group, kind, source_name = source
        data_source = client.V1TypedLocalObjectReference(api_group=group or None, kind=kind, name=source_name)
    spec = client.V1PersistentVolumeClaimSpec(
        access_modes=["ReadWriteOnce"], storage_class_name=storage_class,
        volume_mode="Block" if block else "Filesystem",
        resources=client.V1VolumeResourceRequirements(requests={"storage": size}), data_source=data_source,
    )  # fmt: skip
    body = client.V1PersistentVolumeClaim(metadata=client.V1ObjectMeta(name=name, labels=labels), spec=spec)
    return client.CoreV1Api(api).create_namespaced_persistent_volume_claim(namespace, body)


def bound(api: client.ApiClient, namespace: str, name: str) -> client.V1PersistentVolume:
    """Wait until the PVC is Bound; its PV."""
    core = client.CoreV1Api(api)
    claim = await_object(
        lambda: core.read_namespaced_persistent_volume_claim(name, namespace),
        lambda c: c.status.phase == "Bound",
        f"PVC {namespace}/{name} Bound",
    )
    return core.read_persistent_volume(claim.spec.volume_name)


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def ready_to_use(api: client.ApiClient, group: str, version: str, plural: str, namespace: str, name: str) -> dict:
    """Wait until a (group) snapshot reports readyToUse, through errors the snapshot controller clears on its
    retry; fail on one it keeps (`ccopy dr drill` reads the status the same way)."""
    watch = GroupSnapshotWatch(print)
    return await_object(lambda: custom(api).get_namespaced_custom_object(group, version, namespace, plural, name),
                        watch.ready, f"{plural} {namespace}/{name} ready")  # fmt: skip


def gone(list_names: Callable[[], list[str]], name: str, what: str) -> None:
    wait_progressing(list_names, lambda names: name not in names, f"{what} {name} deleted", stall=STALL, interval=0.2)
