"""One site on a real node: a control plane with a scheduler and the controllers a kubelet
needs, a node (tests/kubelet/node.py) holding our images, the site's array outside the
cluster (a host process, as a production array is), and the chart installed with the real
helm: the kubelet runs every Pod of it from the built image.

The array is secured as in production: its API with mutual TLS (the chart's
array.tlsSecret) and its NBD data path with TLS and host access by client certificate
(the node's certificate in node.nbdCertificatesHostPath, its common name the node's
name). Both listen beyond loopback, at the address the node's Pods reach the host at.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from kubernetes import client

from ccopy.launch import ArrayProcessHandle, free_ports
from ccopy_common import DEFAULT_DRIVER_NAME
from ccopy_common.rpc import TlsFiles, client_channel
from csi_driver.fuse_connections import FUSE_FILE
from csi_driver.node_state import NodeState
from tests.conftest import bound_loops, orphan_loops
from tests.e2e import chart
from tests.e2e.control_plane import REAL_NODE_CONTROLLERS, ControlPlane
from tests.e2e.csi_addons import CONTROLLER_PORT, CsiAddons, addons_node, start_manager
from tests.e2e.objects import await_object
from tests.e2e.processes import Processes
from tests.e2e.site import mounted_under, start_snapshot_controller
from tests.kubelet.image import Images
from tests.kubelet.node import Node
from tests.kubelet.pod_kubelet import PodKubelet

ARRAY_SECRET = "ccopy-array-client"


@dataclass
class NodeSite:
    """`name` is the site (main, backup); its state lives under `folder`."""

    name: str
    folder: Path
    images: Images
    serial: int
    # Two sites on one machine: each node its own pod network, bridge and kubelet ports.
    network: int = 61  # the node's pods are 10.244.<network>.0/24
    driver: str = DEFAULT_DRIVER_NAME
    processes: Processes = field(init=False)

    # The kubelet runs the chart's Pods, the site controller's among them (tests/e2e's harness
    # starts those as processes when a flow needs them).
    kubelet_runs_the_chart = True

    def __post_init__(self) -> None:
        self.processes = Processes(self.folder / "logs")
        self.array: ArrayProcessHandle | None = None
        self.node: Node | None = None
        self.remote: NodeSite | None = None
        self.kubelet: PodKubelet | None = None

    def start_plane(self) -> NodeSite:
        """The control plane: first, so that each site's array can hold a client certificate
        of the other site's CA for the link."""
        self.plane = ControlPlane(self.name, self.folder / "k8s", self.processes,
                                  controllers=REAL_NODE_CONTROLLERS, bind_address="0.0.0.0").start()  # fmt: skip
        self.plane.start_scheduler()
        self.api = self.plane.api
        self.api_port, self.nbd_port = free_ports(2)
        return self

    def start(self, remote: NodeSite | None = None) -> NodeSite:
        """The node, the array (linked to `remote`'s, which may start later), the chart, and
        the csi-addons manager (a prerequisite the chart does not install)."""
        self.remote = remote
        try:
            if not hasattr(self, "plane"):
                self.start_plane()
            # A short folder: the kubelet dials the registrar's socket under it, and a Unix socket's
            # path has at most 107 bytes (a longer one fails with "connect: invalid argument").
            node_folder = Path(tempfile.mkdtemp(prefix="ccopy-node-"))
            self.node = Node(node_folder, self.plane.admin, self.plane.port, [self.images.archive],
                             logs=self.folder / "node-logs", pod_cidr=f"10.244.{self.network}.0/24",
                             bridge=f"ccopy{self.network}", kubelet_port=62250 + self.network,
                             healthz_port=62150 + self.network).start()  # fmt: skip
            self.node_name = self.node.name
            self.kubelet = PodKubelet(self.api, self.node, self.driver)
            self.array_api = f"{self.node.gateway}:{self.api_port}"
            self.array_nbd = f"{self.node.gateway}:{self.nbd_port}"
            self._start_array()
            self._array_secret()
            self.chart_notes = chart.install(self, *self._values())
            self.wait_chart_running()
            self._start_csi_addons_manager()
            start_snapshot_controller(self)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_csi_addons_manager(self) -> None:
        """The manager once the chart's csi-addons sidecar has registered its CSIAddonsNode and
        listens; then until the manager reaches it. Sooner loses a race of the upstream pair: the
        sidecar registers before it listens, the manager tries three times within milliseconds
        and deletes the CSIAddonsNode, and the sidecar, whose watcher starts after it listens,
        never makes it again. Seen here on a busy machine: the kubelet counted the container
        started (it has no readiness probe) 1.4 s before the sidecar had registered."""
        custom = client.CustomObjectsApi(self.api)
        pod = self._controller_pod()
        await_object(lambda: addons_node(custom, chart.NAMESPACE, pod.metadata.uid), lambda node: node is not None,
                     "the csi-addons sidecar's CSIAddonsNode")  # fmt: skip
        await_object(lambda: listening(pod.status.pod_ip, CONTROLLER_PORT), bool, "the csi-addons sidecar listening")
        self.manager_health = start_manager(self, chart.NAMESPACE)
        await_object(lambda: (addons_node(custom, chart.NAMESPACE, pod.metadata.uid) or {}).get("status") or {},
                     lambda status: status.get("state") == "Connected", "the csi-addons manager connected")  # fmt: skip

    def stop(self) -> None:
        """The node first (its kubelet unpublishes and unstages through the plugin, which needs
        the array), then the array, then the plane."""
        if self.kubelet is not None:
            self.kubelet.close()
        if self.node is not None:
            self.node.stop()
        if self.array is not None:
            self.array.stop()
        self.processes.stop_all()

    def _start_array(self) -> None:
        ca, gateway = self.plane.ca, self.node.gateway
        served = ca.issue("array", san=f"IP:{gateway},IP:127.0.0.1")
        flags = [f"--{kind}-{part}" for kind in ("tls", "nbd-tls") for part in ("cert", "key", "client-ca")]
        files = [served.cert, served.key, ca.cert] * 2
        if self.remote is not None:  # the link: a client of the other array's CA, dialled on loopback
            link = self.remote.plane.ca.issue(f"link-from-{self.name}")
            flags += ["--remote", "--remote-cert", "--remote-key", "--remote-ca"]
            files += [f"127.0.0.1:{self.remote.api_port}", link.cert, link.key, self.remote.plane.ca.cert]
        arguments = [str(arg) for pair in zip(flags, files, strict=True) for arg in pair]
        self.array = ArrayProcessHandle(
            pool=self.folder / "pool", serial=self.serial, log_path=self.folder / "logs" / "array.log",
            api=f"0.0.0.0:{self.api_port}", nbd=f"0.0.0.0:{self.nbd_port}", extra_args=arguments,
        ).start()  # fmt: skip

    def _array_secret(self) -> None:
        """The array's client certificate for the chart's Pods, as a user creates it (README)."""
        issued = self.plane.ca.issue("array-client")
        core = client.CoreV1Api(self.api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=chart.NAMESPACE)))
        data = {"ca.crt": self.plane.ca.cert, "tls.crt": issued.cert, "tls.key": issued.key}
        core.create_namespaced_secret(chart.NAMESPACE, client.V1Secret(
            metadata=client.V1ObjectMeta(name=ARRAY_SECRET),
            string_data={key: Path(path).read_text() for key, path in data.items()},
        ))  # fmt: skip

    def _values(self) -> list[str]:
        """The node's folders, its NBD client certificate in a host folder as an admin provisions
        it (common name = the node), the array's addresses and secret, and the built images."""
        certificates = self.folder / "nbd-certificates"
        certificates.mkdir(parents=True, exist_ok=True)
        issued = self.plane.ca.issue(self.node.name)
        for source, name in ((issued.cert, "tls.crt"), (issued.key, "tls.key"), (self.plane.ca.cert, "ca.crt")):
            shutil.copyfile(source, certificates / name)
        return [f"node.kubeletDir={self.node.kubelet_dir}", f"node.stateDir={self.folder / 'csi-state'}",
                f"node.nbdCertificatesHostPath={certificates}", f"array.nbdAddress={self.array_nbd}",
                f"array.tlsSecret={ARRAY_SECRET}", "siteController.statusInterval=1",
                *self.images.chart_values()]  # fmt: skip

    def array_channel(self) -> grpc.Channel:
        """A channel to the site's array API, with a client certificate of the site's CA."""
        if not hasattr(self, "_array_client"):
            self._array_client = self.plane.ca.issue("array-test-client")
        tls = TlsFiles(cert=self._array_client.cert, key=self._array_client.key, ca=self.plane.ca.cert)
        return client_channel(self.array_api, tls)

    @property
    def csi_addons(self) -> CsiAddons:
        """The chart's controller Pod's csi-addons sidecar, as the manager reaches it."""
        pod = self._controller_pod()
        endpoint = f"pod://{pod.metadata.name}.{chart.NAMESPACE}:{CONTROLLER_PORT}"
        return CsiAddons(chart.NAMESPACE, pod.metadata.name, pod.metadata.uid, endpoint, self.manager_health)

    def _controller_pod(self) -> client.V1Pod:
        selector = "app.kubernetes.io/component=controller"
        pods = client.CoreV1Api(self.api).list_namespaced_pod(chart.NAMESPACE, label_selector=selector).items
        (pod,) = [pod for pod in pods if not pod.metadata.deletion_timestamp]
        return pod

    def chart_pods(self) -> list[client.V1Pod]:
        return client.CoreV1Api(self.api).list_namespaced_pod(chart.NAMESPACE).items

    def wait_chart_running(self, other_than: str = "") -> list[client.V1Pod]:
        """Every Pod of the chart Running with all its containers ready: the controller, the node
        plugin, the volume keeper and the site controller (none of them `other_than`, a Pod
        deleted before)."""

        apps = client.AppsV1Api(self.api)
        wanted = sum(d.spec.replicas for d in apps.list_namespaced_deployment(chart.NAMESPACE).items)
        wanted += sum(1 for _ in apps.list_namespaced_daemon_set(chart.NAMESPACE).items)  # one node

        def ready(pods: list[client.V1Pod]) -> bool:
            return len(pods) == wanted and all(
                pod.status.phase == "Running" and all(c.ready for c in pod.status.container_statuses or [])
                and pod.metadata.name != other_than and not pod.metadata.deletion_timestamp
                for pod in pods
            )  # fmt: skip

        return await_object(self.chart_pods, ready, f"the chart's Pods running at {self.name}")

    def _plugin_status(self) -> client.V1ContainerStatus:
        (pod,) = client.CoreV1Api(self.api).list_namespaced_pod(
            chart.NAMESPACE, label_selector="app.kubernetes.io/component=node").items
        (status,) = [s for s in pod.status.container_statuses or [] if s.name == "ccopy-csi"]
        return status

    def plugin_restarts(self) -> int:
        return self._plugin_status().restart_count

    def plugin_container_id(self) -> str:
        """The node plugin container's id in the node's containerd."""
        return self._plugin_status().container_id.removeprefix("containerd://")

    def plugin_leftovers(self, volume: str) -> list[str]:
        """The node plugin's FUSE mount and loop device of the PV `volume`: its work folder in
        node.stateDir is named by the volume handle (csi_driver/node_state.py)."""
        handle = client.CoreV1Api(self.api).read_persistent_volume(volume).spec.csi.volume_handle
        work_dir = NodeState(self.folder / "csi-state").work_dir(handle)
        return mounted_under(work_dir) + [
            f"loop {device} ({name})" for device, name in bound_loops().items()
            # As the plugin's container names it (node.stateDir is mounted elsewhere in there), or
            # from the root of its FUSE mount: bound through a container that is gone.
            if (file := name.removesuffix(" (deleted)")).endswith(f"/{work_dir.name}/{FUSE_FILE}")
            or file == f"/{FUSE_FILE}"
        ]  # fmt: skip

    def leftovers(self) -> list[str]:
        """What is left once the site stopped: no container runs, so a loop device whose file
        cannot be reached is a leak too."""
        left = self.processes.alive() + (self.node.leftovers() if self.node else []) + mounted_under(self.folder)
        left += orphan_loops()
        if self.array is not None and self.array.process is not None:
            left.append("array")
        return left


def listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False
