"""The e2e flows' kubelet calls (tests/e2e/kubelet.py's), answered by a real kubelet.

Where the process harness makes the kubelet's CSI calls itself, a real node is asked the
way a user asks it: a Pod that uses the PVC. The attach-detach controller makes the
VolumeAttachment, csi-attacher has it published, and the kubelet stages and publishes
through the chart's node plugin; deleting the Pod has the kubelet unpublish and unstage,
and the controller detach. The flows read and write the volume at the path the kubelet
published it at on the host (its folder is the node's), as the Pod sees it.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from csi_driver.mounts import is_mount_point
from tests.e2e.kubelet import parse_quantity
from tests.e2e.objects import await_object
from tests.kubelet.node import Node

BUSYBOX = "localhost/busybox:1.35"  # built by node-up.sh without a registry
DEVICE = "/dev/xvda"


@dataclass
class PodKubelet:
    api: client.ApiClient
    node: Node
    driver: str
    pods: dict[str, client.V1Pod] = field(default_factory=dict)  # by PV name, the Pod using it

    def __post_init__(self) -> None:
        self.core, self.storage = client.CoreV1Api(self.api), client.StorageV1Api(self.api)
        self.root = self.node.kubelet_dir

    def attach(self, pv_name: str) -> client.V1VolumeAttachment:
        """A Pod on the node that uses the PV's claim; once the attach-detach controller's
        VolumeAttachment is attached."""
        pv = self.core.read_persistent_volume(pv_name)
        claim = pv.spec.claim_ref
        read_only = pv.spec.access_modes == ["ReadOnlyMany"]
        source = client.V1PersistentVolumeClaimVolumeSource(claim_name=claim.name, read_only=read_only or None)
        container = client.V1Container(
            name="user", image=BUSYBOX, image_pull_policy="Never", command=["sleep", "36000"],
            volume_devices=[client.V1VolumeDevice(name="volume", device_path=DEVICE)] if block(pv) else None,
            volume_mounts=None if block(pv) else [client.V1VolumeMount(name="volume", mount_path="/data")],
        )  # fmt: skip
        pod = self.core.create_namespaced_pod(claim.namespace, client.V1Pod(
            metadata=client.V1ObjectMeta(generate_name=f"uses-{claim.name[:40]}-"),
            spec=client.V1PodSpec(containers=[container], termination_grace_period_seconds=0,
                                  volumes=[client.V1Volume(name="volume", persistent_volume_claim=source)]),
        ))  # fmt: skip
        self.pods[pv_name] = pod
        return await_object(
            lambda: self._attachment(pv_name), lambda va: bool(va and va.status and va.status.attached),
            f"VolumeAttachment of {pv_name} attached for {pod.metadata.name}",
        )  # fmt: skip

    def mount(self, pv: client.V1PersistentVolume, attachment: client.V1VolumeAttachment) -> Path:
        """The published directory (or device file) on the host, once the Pod runs on it."""
        pod = self.pods[pv.metadata.name]
        running = await_object(
            lambda: self.core.read_namespaced_pod(pod.metadata.name, pod.metadata.namespace),
            lambda seen: seen.status.phase == "Running", f"{pod.metadata.name} running on {pv.metadata.name}",
        )  # fmt: skip
        uid = running.metadata.uid
        if block(pv):
            target = self.root / "plugins/kubernetes.io/csi/volumeDevices/publish" / pv.metadata.name / uid
        else:
            target = self.root / "pods" / uid / "volumes/kubernetes.io~csi" / pv.metadata.name / "mount"
        if not (target.exists() if block(pv) else is_mount_point(target)):
            raise AssertionError(f"the kubelet ran {pod.metadata.name} but {target} is not published")
        return target

    def unmount(self, pv_name: str) -> None:
        """Delete the Pod: the kubelet unpublishes, then unstages a file system (no other Pod uses
        the volume)."""
        pod = self.pods[pv_name]
        with contextlib.suppress(client.ApiException):  # gone already
            self.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
        await_object(
            lambda: [p.metadata.name for p in self.core.list_namespaced_pod(pod.metadata.namespace).items],
            lambda names: pod.metadata.name not in names, f"{pod.metadata.name} deleted",
        )  # fmt: skip
        handle = self.core.read_persistent_volume(pv_name).spec.csi.volume_handle
        await_object(lambda: self.mounts_of(pv_name, handle), lambda mounts: not mounts, f"{pv_name} unmounted")
        del self.pods[pv_name]

    def detach(self, pv_name: str) -> None:
        """The attach-detach controller detaches once no Pod uses the volume: its VolumeAttachment goes."""
        await_object(lambda: self._attachment(pv_name), lambda va: va is None, f"VolumeAttachment of {pv_name} gone")

    def expand(self, namespace: str, claim: str) -> int:
        """The kubelet finishes an expansion of a volume in use by itself: the claim's capacity,
        once its status reaches what it asks for."""
        def reached(pvc: client.V1PersistentVolumeClaim) -> bool:
            has = (pvc.status.capacity or {}).get("storage")
            return has is not None and parse_quantity(has) >= parse_quantity(pvc.spec.resources.requests["storage"])

        done = await_object(lambda: self.core.read_namespaced_persistent_volume_claim(claim, namespace), reached,
                            f"{namespace}/{claim} expanded by the kubelet")  # fmt: skip
        return parse_quantity(done.status.capacity["storage"])

    def release_all(self) -> None:
        """Delete the Pods a test left; wait until their volumes are unmounted and detached."""
        for pv_name in list(self.pods):
            self.unmount(pv_name)
            self.detach(pv_name)

    def close(self) -> None:
        with contextlib.suppress(client.ApiException, AssertionError, TimeoutError):
            self.release_all()

    def mounts_of(self, pv_name: str, handle: str) -> list[str]:
        """The kubelet's mounts of the PV on the host: its publications (named by the PV) and a
        file system's staging (named by the volume handle's digest; a block volume's staging
        mounts nothing, and is undone with the detach)."""
        return self.node.mounts_of(pv_name) + self.node.mounts_of(hashlib.sha256(handle.encode()).hexdigest())

    def _attachment(self, pv_name: str) -> client.V1VolumeAttachment | None:
        """The attach-detach controller's VolumeAttachment of the PV to this node, if any."""
        for attachment in self.storage.list_volume_attachment().items:
            spec = attachment.spec
            if spec.source.persistent_volume_name == pv_name and spec.node_name == self.node.name:
                return attachment
        return None


def block(pv: client.V1PersistentVolume) -> bool:
    return pv.spec.volume_mode == "Block"
