"""The csi-addons sidecar and manager for one site, without a kubelet.

In a cluster the sidecar runs beside the plugin in the controller Pod: it learns its
Pod from the downward API, reads its credentials from the Pod's service-account
volume, registers a CSIAddonsNode whose endpoint is `pod://POD.NAMESPACE:PORT`, and
the manager dials that endpoint at the Pod's `status.podIP` and asks our replication
server (`ccopy replication`, through the sidecar) for its capabilities. Here the
sidecar is the csi-addons container of the chart's controller Pod, run by `pods.py`
(the Pod is real: kube-controller-manager made it from the chart's Deployment, so the
owner chain the sidecar follows, Pod <- ReplicaSet <- Deployment, has no hand-made
UIDs; it is reported Running at 127.0.0.1, the only address of the sidecar's port the
manager can reach); the manager runs with a client certificate of its own.

Auth between the two is off (`--enable-auth=false` on both, the chart's
`controller.csiAddonsAuth=false`): with it on they speak TLS, which the harness's
manager is not set up for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubernetes import client

from ccopy.launch import free_ports
from ccopy.waiting import wait_progressing
from tests.e2e import chart
from tests.e2e.control_plane import K8S_BIN
from tests.e2e.processes import http_ok

if TYPE_CHECKING:
    from tests.e2e.pods import RunningPod
    from tests.e2e.site import Site

ADDONS_BINARIES = ("csi-addons-sidecar", "csi-addons-manager")
DRIVER_NAMESPACE = chart.NAMESPACE  # where the driver's controller Pod and its lease live
GROUP, VERSION, PLURAL = "csiaddons.openshift.io", "v1alpha1", "csiaddonsnodes"
CREATED_BY = "sidecar.csiaddons.openshift.io/createdByPodUID"  # the annotation the sidecar stamps on its node
CONTAINER, CONTROLLER_PORT = "csi-addons", 9070  # the chart's container and its --controller-port


@dataclass(frozen=True)
class CsiAddons:
    """What a test needs to find the running pair again."""

    namespace: str
    pod: str
    pod_uid: str
    endpoint: str  # pod://POD.NAMESPACE:PORT, as the sidecar advertises it
    manager_health: str  # base URL of the manager's health probes


def start_csi_addons(site: Site, controller: RunningPod) -> CsiAddons:
    """Start the manager, then the csi-addons container of the chart's controller Pod, for a
    started site whose `ccopy replication` runs. Returns once the manager answers /readyz and
    the sidecar has registered its CSIAddonsNode; the connection between them is
    `wait_connected`'s to wait for. Everything started is in `site.processes`."""
    manager_health = start_manager(site, DRIVER_NAMESPACE)
    custom = client.CustomObjectsApi(site.api)
    uid = controller.pod.metadata.uid
    controller.run(CONTAINER, ready=lambda: addons_node(custom, DRIVER_NAMESPACE, uid) is not None)
    endpoint = f"pod://{controller.name}.{DRIVER_NAMESPACE}:{controller.port(CONTROLLER_PORT)}"
    return CsiAddons(DRIVER_NAMESPACE, controller.name, uid, endpoint, manager_health)


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
