"""The csi-addons sidecar and manager for one site, without a kubelet.

In a cluster the sidecar runs beside the plugin in the controller Pod: it learns its
Pod from the downward API, reads its credentials from the Pod's service-account
volume, registers a CSIAddonsNode whose endpoint is `pod://POD.NAMESPACE:PORT`, and
the manager dials that endpoint at the Pod's `status.podIP` and asks our replication
server (`ccopy replication`, through the sidecar) for its capabilities. Here:

- the Deployment is real and kube-controller-manager's own deployment and replicaset
  controllers make its ReplicaSet and Pod, so the owner chain the sidecar follows
  (Pod <- ReplicaSet <- Deployment, or it exits with "pod has no owner") has no
  hand-made UIDs that a controller could race or the garbage collector reap;
- the harness then does what the scheduler and the kubelet would: binds the Pod to
  the site's Node and reports it Running at 127.0.0.1, the only address the sidecar
  listens on that the manager can reach;
- the sidecar runs on the host in a private mount namespace (`in_pod.py`) holding a
  token the TokenRequest API issued for its ServiceAccount, bound to that Pod;
- the manager runs with a client certificate of its own.

Auth between the two is off (`--enable-auth=false` on both): with it on they speak TLS
and the sidecar needs TokenReview rights, which belongs to the Helm chart's RBAC work.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client

from ccopy.launch import free_ports
from ccopy.waiting import wait_progressing
from tests.e2e import chart
from tests.e2e.control_plane import K8S_BIN
from tests.e2e.processes import http_ok

if TYPE_CHECKING:
    from tests.e2e.site import Site

ADDONS_BINARIES = ("csi-addons-sidecar", "csi-addons-manager")
DRIVER_NAMESPACE = chart.NAMESPACE  # where the driver's controller Pod and its lease live
GROUP, VERSION, PLURAL = "csiaddons.openshift.io", "v1alpha1", "csiaddonsnodes"
CREATED_BY = "sidecar.csiaddons.openshift.io/createdByPodUID"  # the annotation the sidecar stamps on its node
DEPLOYMENT = "ccopy-controller"
SERVICE_ACCOUNT = chart.account("controller")
CONTAINER = "csi-addons"
IMAGE = "quay.io/csiaddons/k8s-sidecar:latest"  # never pulled: names what the Pod stands for
LABELS = {"app.kubernetes.io/name": "ccopy", "app.kubernetes.io/component": "controller"}
POD_IP = "127.0.0.1"
IN_POD = Path(__file__).with_name("in_pod.py")


@dataclass(frozen=True)
class CsiAddons:
    """What a test needs to find the running pair again."""

    namespace: str
    pod: str
    pod_uid: str
    endpoint: str  # pod://POD.NAMESPACE:PORT, as the sidecar advertises it
    manager_health: str  # base URL of the manager's health probes


def start_csi_addons(site: Site) -> CsiAddons:
    """Start the manager, then the sidecar, for a started site whose Node and
    `ccopy replication` exist. Returns once the manager answers /readyz and the
    sidecar has registered its CSIAddonsNode; the connection between them is
    `wait_connected`'s to wait for. Everything started is in `site.processes`."""
    pod = run_pod(site, DRIVER_NAMESPACE)  # as the chart's controller ServiceAccount, with the chart's RBAC
    manager_health = start_manager(site, DRIVER_NAMESPACE)
    endpoint = start_sidecar(site, pod)
    return CsiAddons(DRIVER_NAMESPACE, pod.metadata.name, pod.metadata.uid, endpoint, manager_health)


def run_pod(site: Site, namespace: str) -> client.V1Pod:
    """The controller Deployment, and its Pod (made by kube-controller-manager) bound to
    the site's Node and reported Running at POD_IP, as a scheduler and kubelet would."""
    template = {
        "metadata": {"labels": LABELS},
        "spec": {"serviceAccountName": SERVICE_ACCOUNT, "containers": [{"name": CONTAINER, "image": IMAGE}]},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "labels": LABELS},
        "spec": {"replicas": 1, "selector": {"matchLabels": LABELS}, "template": template},
    }
    client.AppsV1Api(site.api).create_namespaced_deployment(namespace, deployment)
    core = client.CoreV1Api(site.api)
    selector = ",".join(f"{key}={value}" for key, value in LABELS.items())
    pods = wait_progressing(
        lambda: core.list_namespaced_pod(namespace, label_selector=selector).items,
        lambda pods: len(pods) == 1 and bool(pods[0].metadata.owner_references),
        f"the {DEPLOYMENT} Deployment's Pod",
        progress=lambda pods: tuple(p.metadata.name for p in pods),
    )
    name = pods[0].metadata.name
    binding = client.V1Binding(
        metadata=client.V1ObjectMeta(name=name),
        target=client.V1ObjectReference(api_version="v1", kind="Node", name=site.node_name),
    )
    # The answer is a Status, which the generated client cannot read as a Binding.
    core.create_namespaced_pod_binding(name, namespace, binding, _preload_content=False)
    core.patch_namespaced_pod_status(name, namespace, {"status": running_status()})
    return core.read_namespaced_pod(name, namespace)


def running_status() -> dict[str, Any]:
    """The status a kubelet reports for a Pod whose one container started and is ready."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    container = {
        "name": CONTAINER, "image": IMAGE, "imageID": "", "ready": True, "started": True, "restartCount": 0,
        "state": {"running": {"startedAt": now}},
    }  # fmt: skip
    return {
        "phase": "Running", "podIP": POD_IP, "podIPs": [{"ip": POD_IP}], "hostIP": POD_IP,
        "hostIPs": [{"ip": POD_IP}], "startTime": now, "conditions": conditions, "containerStatuses": [container],
    }  # fmt: skip


def start_manager(site: Site, namespace: str) -> str:
    """The manager with its probes and metrics on loopback and no leader election;
    ready once /readyz answers. Returns the probes' base URL."""
    # cluster-admin equivalent: the manager's own ClusterRole (it reads and writes every
    # csiaddons and replication.storage resource, PVCs, PVs, Pods, Secrets...) is the
    # Helm chart issue's to write; here it only has to be allowed.
    kubeconfig = site.plane.kubeconfig("system:ccopy:csi-addons-manager", groups=("system:masters",))
    probe_port, metrics_port = free_ports(2)
    argv = [
        str(K8S_BIN / "csi-addons-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--namespace={namespace}",  # where it looks for its csi-addons-config ConfigMap
        "--enable-auth=false",
        "--leader-elect=false",
        f"--health-probe-bind-address=127.0.0.1:{probe_port}",
        f"--metrics-bind-address=127.0.0.1:{metrics_port}",
        "--metrics-secure=false",
    ]
    health = f"http://127.0.0.1:{probe_port}"
    site.processes.start("csi-addons-manager", argv, ready=http_ok(f"{health}/readyz"))
    return health


def start_sidecar(site: Site, pod: client.V1Pod) -> str:
    """The sidecar as `pod`'s container: in-cluster credentials in its own mount
    namespace, the flags a downward API would fill. Ready once it has registered its
    CSIAddonsNode. Returns the endpoint it advertises."""
    namespace, name, uid = pod.metadata.namespace, pod.metadata.name, pod.metadata.uid
    credentials = write_service_account(site, pod)
    # Listens on every interface: the manager only accepts pod:// endpoints, and
    # --controller-ip would make an IP:port one (../shared/csi-addons-flows.md, section 1).
    (port,) = free_ports(1)
    argv = [
        shutil.which("unshare") or "unshare", "-m", "--propagation", "private",
        sys.executable, str(IN_POD), "--serviceaccount", str(credentials), "--",
        str(K8S_BIN / "csi-addons-sidecar"), f"--csi-addons-address={site.addons_socket}",
        f"--controller-port={port}", f"--pod={name}", f"--namespace={namespace}", f"--pod-uid={uid}",
        f"--node-id={site.node_name}", "--enable-auth=false",
    ]  # fmt: skip
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(site.plane.port)}
    custom = client.CustomObjectsApi(site.api)
    site.processes.start(
        "csi-addons-sidecar", argv, env=env, ready=lambda: addons_node(custom, namespace, uid) is not None
    )
    return f"pod://{name}.{namespace}:{port}"


def write_service_account(site: Site, pod: client.V1Pod) -> Path:
    """What a projected service-account volume would hold for `pod`: a token bound to
    the Pod, the cluster's CA and the namespace. Returns their folder."""
    namespace = pod.metadata.namespace
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[],  # the API server's own
            expiration_seconds=chart.TOKEN_SECONDS,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid
            ),
        )
    )
    answer = client.CoreV1Api(site.api).create_namespaced_service_account_token(SERVICE_ACCOUNT, namespace, request)
    folder = site.folder / "csi-addons" / "serviceaccount"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text(answer.status.token)
    shutil.copyfile(site.plane.ca.cert, folder / "ca.crt")
    (folder / "namespace").write_text(namespace)
    return folder


def addons_node(custom: client.CustomObjectsApi, namespace: str, pod_uid: str) -> dict[str, Any] | None:
    """The CSIAddonsNode the sidecar of Pod `pod_uid` registered, if any."""
    nodes = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    mine = [n for n in nodes if n["metadata"].get("annotations", {}).get(CREATED_BY) == pod_uid]
    return mine[0] if mine else None


def wait_connected(site: Site, addons: CsiAddons) -> dict[str, Any]:
    """Wait until the manager has reached our replication server through the sidecar
    (state Connected, capabilities listed); returns the CSIAddonsNode."""
    custom = client.CustomObjectsApi(site.api)

    def status() -> dict[str, Any]:
        node = addons_node(custom, addons.namespace, addons.pod_uid)
        return (node or {}).get("status") or {}

    def progress(seen: dict[str, Any]) -> tuple[Any, ...]:
        return seen.get("state"), seen.get("reason"), seen.get("message")

    wait_progressing(
        status,
        lambda seen: seen.get("state") == "Connected" and bool(seen.get("capabilities")),
        f"CSIAddonsNode of {addons.pod} Connected",
        progress=progress,
    )
    node = addons_node(custom, addons.namespace, addons.pod_uid)
    assert node is not None
    return node
