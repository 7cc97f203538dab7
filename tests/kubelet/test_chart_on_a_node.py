"""`helm install` on a cluster with a real node: the kubelet runs every Pod of the chart from
the image built from the Dockerfile, node-driver-registrar registers the plugin with the
kubelet, and an application Pod writes to a PVC of ours and reads it back; deleting the Pod
and the PVC leaves nothing on the node or on the array."""

from __future__ import annotations

import json
import uuid

from kubernetes import client

from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from csi_driver.volumes import LABEL_PREFIX, TOPOLOGY_KEY
from tests.e2e.objects import await_object
from tests.kubelet.conftest import kubectl
from tests.kubelet.image import SIDECARS, sidecar_image
from tests.kubelet.site import NodeSite

BUSYBOX = "localhost/busybox:1.35"  # built by node-up.sh without a registry


def test_every_pod_of_the_chart_runs_on_the_node_from_the_built_image(node_site: NodeSite):
    pods = node_site.wait_chart_running()
    wide = kubectl(node_site, "get", "pods", "-A", "-o", "wide")
    (node_site.folder / "pods-wide.txt").write_text(wide)
    print(wide)
    ours = {node_site.images.image, *(sidecar_image(binary) for binary in SIDECARS.values())}
    running = {}
    for pod in pods:
        assert pod.spec.node_name == node_site.node.name, f"{pod.metadata.name} is not on the node"
        for status in pod.status.container_statuses:
            assert status.ready and status.state.running is not None, f"{pod.metadata.name}/{status.name}"
            running[f"{pod.metadata.labels.get('app.kubernetes.io/component')}/{status.name}"] = status.image
    assert set(running.values()) <= {f"{name}" for name in ours} | {f"docker.io/{name}" for name in ours}, running
    assert any(image == node_site.images.image for image in running.values())
    assert {name.split("/")[0] for name in running} == {"controller", "node", "volume-keeper", "namespace-operator"}


def test_the_kubelet_knows_the_driver_from_node_driver_registrar(node_site: NodeSite):
    storage = client.StorageV1Api(node_site.api)

    def drivers() -> dict[str, dict]:
        """Read raw: the client refuses a CSINode whose drivers are still null, as the kubelet first makes it."""
        raw = json.loads(storage.read_csi_node(node_site.node.name, _preload_content=False).data)
        return {driver["name"]: driver for driver in raw["spec"].get("drivers") or []}

    registered = await_object(drivers, lambda known: node_site.driver in known, "the CSINode naming our driver")
    assert registered[node_site.driver]["nodeID"], "the plugin's node id"
    node = client.CoreV1Api(node_site.api).read_node(node_site.node.name)
    assert node.metadata.labels.get(TOPOLOGY_KEY) == node_site.name, node.metadata.labels


def test_an_application_writes_to_a_pvc_and_nothing_is_left_after(node_site: NodeSite):
    core = client.CoreV1Api(node_site.api)
    namespace = f"app-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    core.create_namespaced_persistent_volume_claim(namespace, client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="data"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], storage_class_name="ccopy",
            resources=client.V1VolumeResourceRequirements(requests={"storage": "64Mi"})),
    ))  # fmt: skip
    text = f"written by {namespace}"
    script = f"echo '{text}' > /data/file && sync && cat /data/file && df -T /data | tail -1 && sleep 3600"
    core.create_namespaced_pod(namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name="writer"),
        spec=client.V1PodSpec(
            containers=[client.V1Container(
                name="writer", image=BUSYBOX, image_pull_policy="Never", command=["sh", "-c", script],
                volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data")])],
            volumes=[client.V1Volume(name="data", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                claim_name="data"))],
            termination_grace_period_seconds=1),
    ))  # fmt: skip
    await_object(lambda: core.read_namespaced_pod("writer", namespace), lambda pod: pod.status.phase == "Running",
                 "the writer Pod running")  # fmt: skip
    log = await_object(lambda: core.read_namespaced_pod_log("writer", namespace),
                       lambda log: text in log and "/data" in log, "the writer's file read back")  # fmt: skip
    assert "ext4" in log, log
    claim = core.read_namespaced_persistent_volume_claim("data", namespace)
    volume = claim.spec.volume_name
    assert node_site.node.mounts_of(volume), f"the kubelet mounted {volume} on the node"

    core.delete_namespaced_pod("writer", namespace)
    await_object(lambda: core.list_namespaced_pod(namespace).items, lambda pods: not pods, "the writer Pod deleted")
    await_object(lambda: node_site.node.mounts_of(volume), lambda mounts: not mounts, f"{volume} unmounted")
    storage = client.StorageV1Api(node_site.api)
    await_object(lambda: [a for a in storage.list_volume_attachment().items if a.spec.source.persistent_volume_name
                          == volume], lambda attachments: not attachments, f"{volume} detached")  # fmt: skip
    core.delete_namespaced_persistent_volume_claim("data", namespace)
    await_object(lambda: [pv.metadata.name for pv in core.list_persistent_volume().items],
                 lambda names: volume not in names, f"{volume} deleted")  # fmt: skip
    assert not [ldev.name for ldev in array_ldevs(node_site) if ldev.labels.get(f"{LABEL_PREFIX}k8s-pvc/namespace")
                == namespace], "the LDEV is gone from the array"  # fmt: skip
    core.delete_namespace(namespace)


def array_ldevs(site: NodeSite) -> list[pb.Ldev]:
    with site.array_channel() as channel:
        return list(pb_grpc.ArrayStub(channel).ListLdevs(pb.ListLdevsRequest()).ldevs)



