"""One site of the two-site end-to-end harness: its control plane with the chart installed,
its array, the ccopy CSI plugin, and the chart's controller Pod: `ccopy replication`, the
real kubernetes-csi sidecars (csi-provisioner, csi-attacher, csi-resizer, csi-snapshotter)
and the csi-addons sidecar, each run with the arguments, environment and ServiceAccount
the chart gave its container (`pods.py`); and the snapshot-controller, a prerequisite the
chart does not own, with its own user and rules. Each is a process with its own log.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from ccopy.launch import ArrayProcessHandle, free_port
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from ccopy_common import DEFAULT_DRIVER_NAME
from tests.conftest import bound_loops
from tests.e2e import chart, pods, rbac
from tests.e2e.control_plane import CONTROL_PLANE_BINARIES, K8S_BIN, K8S_CRDS, ControlPlane, missing_binaries
from tests.e2e.csi_addons import ADDONS_BINARIES, CsiAddons, start_csi_addons
from tests.e2e.kubelet import Kubelet
from tests.e2e.processes import Processes, http_ok

if TYPE_CHECKING:
    from tests.kubelet.site import NodeSite

SIDECAR_BINARIES = ("csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "snapshot-controller")
CONTROLLER_SIDECARS = ("csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter")  # the chart's
GROUP_SNAPSHOTS_ON = "--feature-gates=CSIVolumeGroupSnapshot=true"  # off by default in released v8.6


def kubernetes_missing() -> str:
    """Why the Kubernetes binaries a site runs cannot be had here, or ''."""
    missing = missing_binaries(CONTROL_PLANE_BINARIES + SIDECAR_BINARIES + ADDONS_BINARIES + ("helm", "kubectl"))
    if missing or not any(K8S_CRDS.glob("*.yaml")):
        return (f"Kubernetes binaries or CRDs not found ({', '.join(missing) or 'CRDs'} under {K8S_BIN}, {K8S_CRDS}): "
                "run ../shared/k8s/install.sh (make test does) or set CCOPY_K8S_BIN and CCOPY_K8S_CRDS")  # fmt: skip
    return ""


def probe_ready(socket: Path) -> bool:
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        return csi_grpc.IdentityStub(channel).Probe(csi.ProbeRequest(), timeout=5).ready.value


@dataclass
class Site:
    """`name` is the site (main, backup), also its topology segment and its node's prefix."""

    name: str
    folder: Path
    serial: int
    array_api: str = ""  # HOST:PORT; fixed before start so two sites can name each other
    remote: str = ""  # the other site's array API
    driver: str = DEFAULT_DRIVER_NAME
    processes: Processes = field(init=False)
    # No kubelet runs the chart's Pods here: the harness starts their containers as processes.
    kubelet_runs_the_chart = False

    def __post_init__(self) -> None:
        self.processes = Processes(self.folder / "logs")
        self.array_api = self.array_api or f"127.0.0.1:{free_port()}"
        self.node_name = f"{self.name}-node-1"
        self.kubelet_dir = self.folder / "kubelet"
        self.socket = self.kubelet_dir / "plugins" / self.driver / "csi.sock"  # the node plugin's, as the chart puts it
        self.array: ArrayProcessHandle | None = None
        self.kubelet: Kubelet | None = None
        self.csi_addons: CsiAddons | None = None
        self.controller: pods.RunningPod | None = None  # the chart's Pods, once bound
        self.node: pods.RunningPod | None = None

    def start(self) -> Site:
        try:
            self.plane = ControlPlane(self.name, self.folder / "k8s", self.processes).start()
            self.api = self.plane.api
            self.chart_notes = chart.install(self, *self._node_values())
            self._start_array()
            self.kubelet = Kubelet(self.api, self.socket, self.node_name, self.driver, self.kubelet_dir)
            self.kubelet.register_node()
            self.controller = pods.bind_running(self, f"{chart.RELEASE}-controller")
            self._start_controller_pod(self.controller)
            keeper = pods.bind_running(self, f"{chart.RELEASE}-volume-keeper", kind="DaemonSet")
            socket = keeper.mounts("volume-keeper")["/var/lib/ccopy-csi"] / "keeper.sock"
            keeper.run("volume-keeper", ready=socket.exists, process="ccopy-volume-keeper")
            self.node = pods.bind_running(self, f"{chart.RELEASE}-node", kind="DaemonSet")
            self.node.run("ccopy-csi", ready=lambda: probe_ready(self.socket), process="ccopy-csi-node")
            self.kubelet.register_plugin()
            start_snapshot_controller(self)
            self.csi_addons = start_csi_addons(self, self.controller)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Undo mounts first (they need the plugin), then every process, then the array."""
        if self.kubelet is not None:
            self.kubelet.close()
        self.processes.stop_all()
        if self.array is not None:
            self.array.stop()

    def _start_array(self) -> None:
        """The data path as a secured site runs it: NBD over TLS, client certificates of the
        site's CA whose common name is the node (host access by certificate)."""
        served = self.plane.ca.issue("array-nbd", san="IP:127.0.0.1,DNS:localhost")
        extra = ["--nbd-tls-cert", str(served.cert), "--nbd-tls-key", str(served.key),
                 "--nbd-tls-client-ca", str(self.plane.ca.cert)]  # fmt: skip
        extra += ["--remote", self.remote] if self.remote else []
        self.array = ArrayProcessHandle(
            pool=self.folder / "pool", serial=self.serial, log_path=self.folder / "logs" / "array.log",
            api=self.array_api, extra_args=extra,
        ).start()  # fmt: skip

    def _node_values(self) -> list[str]:
        """The chart's node values for this site's one node: the kubelet's and the plugin's folders
        under the site's, and the node's NBD client certificate (common name = node) in a folder
        as an admin would provision it on the host."""
        certificates = self.folder / "nbd-certificates"
        certificates.mkdir(parents=True, exist_ok=True)
        issued = self.plane.ca.issue(self.node_name)
        for source, name in ((issued.cert, "tls.crt"), (issued.key, "tls.key"), (self.plane.ca.cert, "ca.crt")):
            shutil.copyfile(source, certificates / name)
        return [f"node.kubeletDir={self.kubelet_dir}", f"node.stateDir={self.folder / 'csi-state'}",
                f"node.nbdCertificatesHostPath={certificates}", "node.maxVolumes=64"]  # fmt: skip

    def _start_controller_pod(self, pod: pods.RunningPod) -> None:
        """The chart's controller containers we have programs for (all but livenessprobe)."""
        sockets = pod.mounts("ccopy-csi")["/csi"]
        pod.run("ccopy-csi", ready=lambda: probe_ready(sockets / "csi.sock"))
        pod.run("ccopy-replication", ready=(sockets / "csi-addons.sock").exists)
        for sidecar in CONTROLLER_SIDECARS:
            (port,) = [p.container_port for p in pod.container(sidecar).ports]
            pod.run(sidecar, ready=http_ok(f"http://127.0.0.1:{pod.port(port)}/metrics"),
                    extra=["--v=4"])  # the harness's logs say more  # fmt: skip

    def leftovers(self) -> list[str]:
        """What of this site outlived `stop()`: processes, mounts and loop devices under its folder."""
        left = self.processes.alive()
        if self.array is not None and self.array.process is not None:
            left.append("array")
        return left + mounted_under(self.folder)

    def log(self, name: str) -> str:
        return (self.processes.log_dir / f"{name}.log").read_text(errors="replace")

    def array_channel(self) -> grpc.Channel:
        """A channel to the site's array API (plain, on loopback here)."""
        return grpc.insecure_channel(self.array_api)


@dataclass
class Sites:
    """The main and the backup site, on processes (Site) or on real nodes (NodeSite)."""

    main: Site | NodeSite
    backup: Site | NodeSite

    def backup_array(self) -> pb_grpc.ArrayStub:
        """A client of the backup site's array (its channel lives as long as the sites)."""
        if not hasattr(self, "_backup_channel"):
            self._backup_channel = self.backup.array_channel()
        return pb_grpc.ArrayStub(self._backup_channel)


def start_snapshot_controller(site: Site | NodeSite) -> None:
    """A prerequisite the chart does not own, with its own user and its repository's rules. At
    its default client rate (5 requests/s, burst 10) a group snapshot of 100 PVCs took minutes:
    the controller makes several requests per member and retries the members whose content it
    has not made yet."""
    component = "snapshot-controller"
    user = f"system:ccopy:{component}"
    rbac.grant(site.api, component, user)
    endpoint = f"127.0.0.1:{free_port()}"
    argv = [str(K8S_BIN / component), f"--kubeconfig={site.plane.kubeconfig(user)}",
            f"--http-endpoint={endpoint}", "--v=4", GROUP_SNAPSHOTS_ON, "--kube-api-qps=50",
            "--kube-api-burst=100"]  # fmt: skip
    site.processes.start(component, argv, ready=http_ok(f"http://{endpoint}/metrics"))


def mounted_under(folder: Path) -> list[str]:
    """Mounts and loop devices whose path or backing file is under `folder`."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    left = [f"mount {m}" for m in mounts if m.startswith(str(folder))]
    return left + [f"loop {device} ({name})" for device, name in bound_loops().items() if str(folder) in name]
