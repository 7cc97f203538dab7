"""The node-side calls a kubelet makes, made by the harness (there is no kubelet here).

It makes the Node as a kubelet does when it starts, registers the plugin the way kubelet's
plugin watcher does (NodeGetInfo, then the Node's topology labels and its CSINode entry
with the node id, attach limit and topology keys the plugin reports), attaches through a
VolumeAttachment that csi-attacher serves, stages and publishes with the PV's publish
context at kubelet's own paths, and finishes a file system expansion. It remembers what it
mounted so the end of a test can undo it.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from kubernetes import client

from ccopy.waiting import wait_progressing
from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from tests.e2e.objects import await_object

Mode = csi.VolumeCapability.AccessMode
ACCESS = {
    "ReadWriteOnce": Mode.SINGLE_NODE_WRITER,
    "ReadWriteOncePod": Mode.SINGLE_NODE_SINGLE_WRITER,
    "ReadOnlyMany": Mode.MULTI_NODE_READER_ONLY,
    "ReadWriteMany": Mode.MULTI_NODE_MULTI_WRITER,
}


@dataclass
class Mounted:
    volume_id: str
    staging: Path
    target: Path
    block: bool


@dataclass
class Kubelet:
    api: client.ApiClient
    socket: Path
    node_name: str
    driver: str
    root: Path
    mounted: dict[str, Mounted] = field(default_factory=dict)  # by PV name
    attached: set[str] = field(default_factory=set)  # PV names

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(f"unix:{self.socket}")
        self.node = csi_grpc.NodeStub(self.channel)
        self.core, self.storage = client.CoreV1Api(self.api), client.StorageV1Api(self.api)

    def register_node(self) -> None:
        """The Node, as a kubelet makes it when it starts: before any plugin, whose DaemonSet
        Pod needs a Node to be made for."""
        self.core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=self.node_name)))

    def register_plugin(self) -> csi.NodeGetInfoResponse:
        """What kubelet's plugin watcher does once the node plugin answers: NodeGetInfo, the
        Node labelled with the plugin's topology, and the Node's CSINode entry."""
        info = self.node.NodeGetInfo(csi.NodeGetInfoRequest())
        segments = dict(info.accessible_topology.segments)
        node = self.core.patch_node(self.node_name, {"metadata": {"labels": segments}})
        owner = client.V1OwnerReference(api_version="v1", kind="Node", name=node.metadata.name, uid=node.metadata.uid)
        driver = client.V1CSINodeDriver(
            name=self.driver, node_id=info.node_id, topology_keys=sorted(segments),
            allocatable=client.V1VolumeNodeResources(count=info.max_volumes_per_node or None),
        )  # fmt: skip
        self.storage.create_csi_node(
            client.V1CSINode(
                metadata=client.V1ObjectMeta(name=self.node_name, owner_references=[owner]),
                spec=client.V1CSINodeSpec(drivers=[driver]),
            )
        )
        return info

    def attach(self, pv_name: str) -> client.V1VolumeAttachment:
        """A VolumeAttachment as the attach-detach controller makes it, once csi-attacher marks it attached."""
        name = self._attachment_name(pv_name)
        self.attached.add(pv_name)
        self.storage.create_volume_attachment(
            client.V1VolumeAttachment(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1VolumeAttachmentSpec(
                    attacher=self.driver, node_name=self.node_name,
                    source=client.V1VolumeAttachmentSource(persistent_volume_name=pv_name),
                ),
            )
        )  # fmt: skip
        return wait_progressing(
            lambda: self.storage.read_volume_attachment(name),
            lambda va: bool(va.status and va.status.attached),
            f"VolumeAttachment of {pv_name} attached",
            progress=lambda va: str(va.status),
        )

    def detach(self, pv_name: str) -> None:
        """Delete the VolumeAttachment; csi-attacher unpublishes, then lets it go."""
        name = self._attachment_name(pv_name)
        self.attached.discard(pv_name)
        self.storage.delete_volume_attachment(name)
        wait_progressing(
            lambda: [va.metadata.name for va in self.storage.list_volume_attachment().items],
            lambda names: name not in names,
            f"VolumeAttachment of {pv_name} gone",
        )

    def mount(self, pv: client.V1PersistentVolume, attachment: client.V1VolumeAttachment) -> Path:
        """NodeStage then NodePublish at kubelet's paths; the published directory (or device file)."""
        source = pv.spec.csi
        block = pv.spec.volume_mode == "Block"
        capability = csi.VolumeCapability(access_mode=Mode(mode=ACCESS[pv.spec.access_modes[0]]))
        if block:
            capability.block.SetInParent()
            staging = self.root / "plugins/kubernetes.io/csi/volumeDevices/staging" / pv.metadata.name
            target = self.root / "plugins/kubernetes.io/csi/volumeDevices/publish" / pv.metadata.name / "pod-1"
        else:
            capability.mount.fs_type = source.fs_type or "ext4"
            digest = hashlib.sha256(source.volume_handle.encode()).hexdigest()
            staging = self.root / "plugins/kubernetes.io/csi" / self.driver / digest / "globalmount"
            target = self.root / "pods/pod-1/volumes/kubernetes.io~csi" / pv.metadata.name / "mount"
        staging.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        context = dict(source.volume_attributes or {})
        publish_context = dict(attachment.status.attachment_metadata or {})
        self.node.NodeStageVolume(
            csi.NodeStageVolumeRequest(
                volume_id=source.volume_handle, publish_context=publish_context,
                staging_target_path=str(staging), volume_capability=capability, volume_context=context,
            )
        )  # fmt: skip
        self.mounted[pv.metadata.name] = Mounted(source.volume_handle, staging, target, block)
        self.node.NodePublishVolume(
            csi.NodePublishVolumeRequest(
                volume_id=source.volume_handle, publish_context=publish_context, staging_target_path=str(staging),
                target_path=str(target), volume_capability=capability, volume_context=context,
            )
        )  # fmt: skip
        return target

    def unmount(self, pv_name: str) -> None:
        mounted = self.mounted.pop(pv_name)
        self.node.NodeUnpublishVolume(
            csi.NodeUnpublishVolumeRequest(volume_id=mounted.volume_id, target_path=str(mounted.target))
        )
        self.node.NodeUnstageVolume(
            csi.NodeUnstageVolumeRequest(volume_id=mounted.volume_id, staging_target_path=str(mounted.staging))
        )

    def expand(self, namespace: str, claim: str) -> int:
        """Finish an expansion the way kubelet does once csi-resizer asks for it (FileSystemResizePending):
        NodeExpandVolume on the published path, then the PVC's status gets the new capacity."""
        pvc = await_object(
            lambda: self.core.read_namespaced_persistent_volume_claim(claim, namespace),
            lambda c: any(cond.type == "FileSystemResizePending" for cond in c.status.conditions or []),
            "csi-resizer asks the node to finish (FileSystemResizePending)",
        )  # fmt: skip
        pv = self.core.read_persistent_volume(pvc.spec.volume_name)
        mounted = self.mounted[pv.metadata.name]
        size = pv.spec.capacity["storage"]
        answer = self.node.NodeExpandVolume(
            csi.NodeExpandVolumeRequest(
                volume_id=mounted.volume_id, volume_path=str(mounted.target), staging_target_path=str(mounted.staging),
                capacity_range=csi.CapacityRange(required_bytes=parse_quantity(size)),
            )
        )  # fmt: skip
        status = {"capacity": {"storage": size}, "conditions": None, "allocatedResourceStatuses": None}
        self.core.patch_namespaced_persistent_volume_claim_status(
            pvc.metadata.name, pvc.metadata.namespace, {"status": status}
        )
        return answer.capacity_bytes

    def release_all(self) -> None:
        """Unmount and detach whatever a test left (a failed one, or one that keeps its volumes)."""
        for pv_name in list(self.mounted):
            self.unmount(pv_name)
        for pv_name in list(self.attached):
            self.detach(pv_name)

    def close(self) -> None:
        """Release what is left, as far as the plugin still answers, then hang up."""
        with contextlib.suppress(grpc.RpcError, client.ApiException):
            self.release_all()
        self.channel.close()

    def _attachment_name(self, pv_name: str) -> str:
        return "csi-" + hashlib.sha256(f"{pv_name}{self.driver}{self.node_name}".encode()).hexdigest()


def parse_quantity(text: str) -> int:
    from kubernetes.utils import parse_quantity as parse

    return int(parse(text))
