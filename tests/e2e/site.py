"""One site of the two-site end-to-end harness: its control plane, its array, the
ccopy CSI plugin and replication service, and the real kubernetes-csi sidecars
(csi-provisioner, csi-attacher, csi-resizer, csi-snapshotter, snapshot-controller),
each a process with its own kubeconfig and log.

The sidecars run with the flags a real deployment uses (`--extra-create-metadata`,
volume group snapshots on); the plugin is what a Helm install would run.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from ccopy import DEFAULT_DRIVER_NAME
from ccopy.launch import ArrayProcessHandle, free_port
from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from tests.e2e import chart, rbac
from tests.e2e.control_plane import K8S_BIN, ControlPlane
from tests.e2e.csi_addons import CsiAddons, start_csi_addons
from tests.e2e.kubelet import Kubelet
from tests.e2e.processes import Processes, http_ok

SIDECAR_BINARIES = ("csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "snapshot-controller")
GROUP_SNAPSHOTS_ON = "--feature-gates=CSIVolumeGroupSnapshot=true"  # off by default in released v8.6


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

    def __post_init__(self) -> None:
        self.processes = Processes(self.folder / "logs")
        self.array_api = self.array_api or f"127.0.0.1:{free_port()}"
        self.node_name = f"{self.name}-node-1"
        self.socket = self.folder / "plugin" / "csi.sock"
        self.addons_socket = self.folder / "plugin" / "csi-addons.sock"
        self.array: ArrayProcessHandle | None = None
        self.kubelet: Kubelet | None = None
        self.csi_addons: CsiAddons | None = None

    def start(self) -> Site:
        try:
            self.plane = ControlPlane(self.name, self.folder / "k8s", self.processes).start()
            self.api = self.plane.api
            self.chart_notes = chart.install(self)  # the CSIDriver, our CRD, classes, accounts, RBAC
            self._start_array()
            self._start_plugin()
            self.kubelet = Kubelet(self.api, self.socket, self.node_name, self.driver, self.folder / "kubelet")
            self.kubelet.register()
            self._start_sidecars()
            self.csi_addons = start_csi_addons(self)
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

    def _start_plugin(self) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        ccopy = [sys.executable, "-m", "ccopy"]
        node = self.plane.ca.issue(self.node_name)
        self.processes.start(
            "ccopy-csi",
            [*ccopy, "csi", "--endpoint", f"unix://{self.socket}", "--node-id", self.node_name, "--mode", "all",
             "--site", self.name, "--array", self.array_api, "--driver-name", self.driver,
             "--state-dir", str(self.folder / "csi-state"), "--max-volumes", "64",
             "--nbd-cert", str(node.cert), "--nbd-key", str(node.key), "--nbd-ca", str(self.plane.ca.cert)],
            ready=lambda: probe_ready(self.socket),
        )  # fmt: skip
        self.processes.start(
            "ccopy-replication",
            [*ccopy, "replication", "--endpoint", f"unix://{self.addons_socket}", "--array", self.array_api,
             "--driver-name", self.driver],
            ready=self.addons_socket.exists,
        )  # fmt: skip

    def _start_sidecars(self) -> None:
        """Each sidecar as its own user with its own rules; ready once its HTTP endpoint answers."""
        common = {
            "csi-provisioner": ["--extra-create-metadata", "--timeout=60s"],
            "csi-attacher": ["--timeout=60s"],
            "csi-resizer": ["--timeout=60s"],
            "csi-snapshotter": ["--extra-create-metadata", "--timeout=120s", GROUP_SNAPSHOTS_ON],
            # At its default client rate (5 requests/s, burst 10) a group snapshot of 100 PVCs took
            # minutes: the controller makes several requests per member and retries the members
            # whose content it has not made yet. The chart gives it the same.
            "snapshot-controller": [GROUP_SNAPSHOTS_ON, "--kube-api-qps=50", "--kube-api-burst=100"],
        }
        for component, flags in common.items():
            user = f"system:ccopy:{component}"
            rbac.grant(self.api, component, user)
            kubeconfig = self.plane.kubeconfig(user)
            endpoint = f"127.0.0.1:{free_port()}"
            argv = [
                str(K8S_BIN / component),
                f"--kubeconfig={kubeconfig}",
                f"--http-endpoint={endpoint}",
                "--v=4",
                *flags,
            ]
            if component != "snapshot-controller":
                argv.append(f"--csi-address={self.socket}")
            self.processes.start(component, argv, ready=http_ok(f"http://{endpoint}/metrics"))

    def leftovers(self) -> list[str]:
        """What of this site outlived `stop()`: processes, mounts and loop devices under its folder."""
        left = self.processes.alive()
        if self.array is not None and self.array.process is not None:
            left.append("array")
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        left += [f"mount {m}" for m in mounts if m.startswith(str(self.folder))]
        loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout.splitlines()
        left += [f"loop {line}" for line in loops if str(self.folder) in line]
        return left

    def log(self, name: str) -> str:
        return (self.processes.log_dir / f"{name}.log").read_text(errors="replace")
