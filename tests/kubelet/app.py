"""An application on the node: a Deployment of one busybox Pod on a PVC of ours, which
writes a marker file the first time it starts and counts its starts, so a test can tell
that a rescheduled Pod found the data its predecessor wrote."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from kubernetes import client

from ccopy.ecommerce import FLOWING
from tests.e2e.objects import await_object
from tests.kubelet.site import NodeSite

BUSYBOX = "localhost/busybox:1.35"  # built by node-up.sh without a registry
SCRIPT = """[ -f /data/first ] || { echo "$MARK" > /data/first; sync; }
echo start >> /data/starts; sync
echo "first=$(cat /data/first) starts=$(wc -l < /data/starts) fs=$(df -T /data | tail -1 | awk '{print $2}')"
exec sleep 36000"""


@dataclass
class App:
    site: NodeSite
    namespace: str
    name: str = "shop"

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.site.api)

    def create(self) -> App:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace)))
        self.core.create_namespaced_persistent_volume_claim(self.namespace, client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="data"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"], storage_class_name="ccopy",
                resources=client.V1VolumeResourceRequirements(requests={"storage": "64Mi"})),
        ))  # fmt: skip
        labels = {"app": self.name}
        container = client.V1Container(
            name=self.name, image=BUSYBOX, image_pull_policy="Never", command=["sh", "-c", SCRIPT],
            env=[client.V1EnvVar(name="MARK", value=self.namespace)],
            volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data")],
        )  # fmt: skip
        volume = client.V1Volume(name="data", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
            claim_name="data"))  # fmt: skip
        client.AppsV1Api(self.site.api).create_namespaced_deployment(self.namespace, client.V1Deployment(
            metadata=client.V1ObjectMeta(name=self.name),
            spec=client.V1DeploymentSpec(
                replicas=1, selector=client.V1LabelSelector(match_labels=labels),
                strategy=client.V1DeploymentStrategy(type="Recreate"),  # one writer of an RWO volume at a time
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[container], volumes=[volume],
                                          termination_grace_period_seconds=1))),
        ))  # fmt: skip
        return self

    def running_pod(self, other_than: str = "") -> client.V1Pod:
        """The app's Pod once Running (a new one, when `other_than` names the one before)."""

        def pods() -> list[client.V1Pod]:
            return self.core.list_namespaced_pod(self.namespace, label_selector=f"app={self.name}").items

        found = await_object(pods, lambda items: any(
            p.status.phase == "Running" and p.metadata.name != other_than and not p.metadata.deletion_timestamp
            for p in items), f"a running Pod of {self.namespace}/{self.name}")  # fmt: skip
        return next(p for p in found if p.status.phase == "Running" and p.metadata.name != other_than)

    def said(self, pod: client.V1Pod) -> str:
        """What the Pod printed on start: the marker it found, how many starts, the file system."""
        return await_object(lambda: self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace),
                            lambda log: "first=" in log, f"{pod.metadata.name} started").strip()  # fmt: skip

    @property
    def volume(self) -> str:
        return self.core.read_namespaced_persistent_volume_claim("data", self.namespace).spec.volume_name

    def attachments(self) -> list[client.V1VolumeAttachment]:
        volume, storage = self.volume, client.StorageV1Api(self.site.api)
        return [a for a in storage.list_volume_attachment().items if a.spec.source.persistent_volume_name == volume]

    def delete(self) -> None:
        """The Deployment, then the PVC; waits until its PV is gone (the LDEV deleted)."""
        volume = self.volume
        client.AppsV1Api(self.site.api).delete_namespaced_deployment(self.name, self.namespace)
        await_object(lambda: self.core.list_namespaced_pod(self.namespace).items, lambda pods: not pods,
                     f"the Pods of {self.namespace} gone")  # fmt: skip
        self.core.delete_namespaced_persistent_volume_claim("data", self.namespace)
        await_object(lambda: [pv.metadata.name for pv in self.core.list_persistent_volume().items],
                     lambda names: volume not in names, f"{volume} deleted")  # fmt: skip
        self.core.delete_namespace(self.namespace)


def new_app(site: NodeSite) -> App:
    return App(site, f"app-{uuid.uuid4().hex[:6]}").create()


@dataclass
class Shop:
    """The paper's e-commerce process (ccopy.ecommerce: stock changes, then their sales, on two
    PVCs) as a Deployment from our image, at one site."""

    site: NodeSite
    namespace: str
    name: str = "shop"

    def claims(self) -> Shop:
        core = client.CoreV1Api(self.site.api)
        for claim in ("stock", "sales"):
            core.create_namespaced_persistent_volume_claim(self.namespace, client.V1PersistentVolumeClaim(
                metadata=client.V1ObjectMeta(name=claim),
                spec=client.V1PersistentVolumeClaimSpec(
                    access_modes=["ReadWriteOnce"], storage_class_name="ccopy",
                    resources=client.V1VolumeResourceRequirements(requests={"storage": "64Mi"})),
            ))  # fmt: skip
        return self

    def deploy(self) -> Shop:
        """The Deployment, on the PVCs of the namespace (made here, or the ones a failover took over)."""
        labels = {"app": self.name}
        container = client.V1Container(
            name=self.name, image=self.site.images.image, image_pull_policy="Never",
            command=["python3", "-m", "ccopy.ecommerce", "/stock", "/sales", "36000"],
            # the file systems' roots are root's, as mkfs made them
            security_context=client.V1SecurityContext(run_as_user=0, run_as_non_root=False),
            volume_mounts=[client.V1VolumeMount(name=claim, mount_path=f"/{claim}") for claim in ("stock", "sales")],
        )  # fmt: skip
        client.AppsV1Api(self.site.api).create_namespaced_deployment(self.namespace, client.V1Deployment(
            metadata=client.V1ObjectMeta(name=self.name),
            spec=client.V1DeploymentSpec(
                replicas=1, selector=client.V1LabelSelector(match_labels=labels),
                strategy=client.V1DeploymentStrategy(type="Recreate"),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[container], volumes=claim_volumes("stock", "sales"),
                                          termination_grace_period_seconds=10))),
        ))  # fmt: skip
        return self

    def scale(self, replicas: int) -> None:
        apps, core = client.AppsV1Api(self.site.api), client.CoreV1Api(self.site.api)
        apps.patch_namespaced_deployment_scale(self.name, self.namespace, {"spec": {"replicas": replicas}})
        if replicas == 0:
            await_object(lambda: core.list_namespaced_pod(self.namespace, label_selector=f"app={self.name}").items,
                         lambda pods: not pods, f"the shop's Pods gone at {self.site.name}")  # fmt: skip

    def flowing(self) -> client.V1Pod:
        """The running Pod once it printed that orders flow."""
        app = App(self.site, self.namespace, self.name)
        pod = app.running_pod()
        await_object(lambda: client.CoreV1Api(self.site.api).read_namespaced_pod_log(pod.metadata.name, self.namespace),
                     lambda log: FLOWING in log, f"orders flowing at {self.site.name}")  # fmt: skip
        return pod


def claim_volumes(*claims: str) -> list[client.V1Volume]:
    return [client.V1Volume(name=claim, persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
        claim_name=claim)) for claim in claims]  # fmt: skip


def check_copy(site: NodeSite, namespace: str) -> tuple[int, int]:
    """(stock changes, sales) of the stock and sales PVCs of `namespace`, read by a Pod of our
    image with ccopy.ecommerce.check, which fails when a sale lacks its stock change."""
    core = client.CoreV1Api(site.api)
    name = f"check-{uuid.uuid4().hex[:6]}"
    script = ("from pathlib import Path; from ccopy import ecommerce; "
              "print('checked %d %d' % ecommerce.check(Path('/stock'), Path('/sales')))")  # fmt: skip
    core.create_namespaced_pod(namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            restart_policy="Never", volumes=claim_volumes("stock", "sales"),
            containers=[client.V1Container(
                name="check", image=site.images.image, image_pull_policy="Never", command=["python3", "-c", script],
                security_context=client.V1SecurityContext(run_as_user=0, run_as_non_root=False),
                volume_mounts=[client.V1VolumeMount(name=c, mount_path=f"/{c}") for c in ("stock", "sales")])]),
    ))  # fmt: skip
    pod = await_object(lambda: core.read_namespaced_pod(name, namespace),
                       lambda pod: pod.status.phase in ("Succeeded", "Failed"), f"{name} ended")  # fmt: skip
    log = core.read_namespaced_pod_log(name, namespace)
    core.delete_namespaced_pod(name, namespace)
    await_object(lambda: core.list_namespaced_pod(namespace, field_selector=f"metadata.name={name}").items,
                 lambda pods: not pods, f"{name} gone")  # fmt: skip
    assert pod.status.phase == "Succeeded", log
    changes, sold = (int(word) for word in log.split("checked")[1].split())
    return changes, sold
