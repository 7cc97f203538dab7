"""A real Kubernetes node for a test site: containerd, runc, a CNI bridge and the kubelet,
started by ../shared/k8s/node-up.sh and stopped by its node-down.sh, with our images
imported into its containerd.

There is no kube-proxy: Pods reach the API server at the `kubernetes` Service's address
through one DNAT rule this adds (and removes) for the node's pod network, which is what
kube-proxy would program for that one Service. Everything else the chart's Pods dial is an
address, not a Service: the array (a host process, as an array outside the cluster is) at
the bridge's gateway, the pods at their IPs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.site import mounted_under

ROOT = Path(__file__).resolve().parents[2]
KIT = Path(os.environ.get("CCOPY_K8S_KIT", ROOT.parent / "shared" / "k8s"))
NODE_BINARIES = ("kubelet", "kube-scheduler", "csi-node-driver-registrar", "livenessprobe")
SERVICE_IP = "10.96.0.1"  # the kubernetes Service's cluster IP: the first of tests/e2e's SERVICE_RANGE


def missing_kit() -> str:
    """Why a real node cannot be had here, or ''."""
    for script in ("node-up.sh", "node-down.sh"):
        if not (KIT / script).is_file():
            return f"no {KIT / script} (the shared Kubernetes kit; set CCOPY_K8S_KIT)"
    return ""


@dataclass
class Node:
    """One node: `name` is its Node object's name; its state lives under `folder`."""

    folder: Path
    kubeconfig: Path
    api_port: int
    images: list[Path]
    logs: Path  # where the node's and its containers' logs are kept when it stops
    pod_cidr: str = "10.244.61.0/24"
    bridge: str = "ccopy0"
    kubelet_port: int = 62250
    healthz_port: int = 62248
    name: str = field(default_factory=lambda: socket.gethostname().lower())

    @property
    def gateway(self) -> str:
        """The host as the node's Pods reach it: the CNI bridge's address."""
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def kubelet_dir(self) -> Path:
        return self.folder / "kubelet"

    def start(self) -> Node:
        env = {**os.environ, "NODE_NAME": self.name, "POD_CIDR": self.pod_cidr, "CNI_BRIDGE": self.bridge,
               "CNI_NET": self.bridge, "KUBELET_PORT": str(self.kubelet_port),
               "KUBELET_HEALTHZ_PORT": str(self.healthz_port), "CGROUP_ROOT": f"/{self.bridge}",
               "EXTRA_IMAGES": " ".join(str(image) for image in self.images)}  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = self.folder / "node-up.log"
        with self.log.open("w") as out:
            done = subprocess.run([str(KIT / "node-up.sh"), str(self.folder), str(self.kubeconfig)], env=env,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=900)  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"node-up.sh failed ({done.returncode}):\n{self.log.read_text()[-4000:]}")
        self._route_api_service(add=True)
        return self

    def stop(self) -> None:
        """node-down.sh drains the node (the kubelet unmounts and detaches what its Pods used),
        stops everything, undoes its host changes and deletes the node's state."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._route_api_service(add=False)
        self.logs.mkdir(parents=True, exist_ok=True)
        # The tests delete their applications themselves; what is left is the chart's DaemonSet Pods,
        # which come back as fast as they are deleted: waiting the default 60 s for them is no use.
        env = {**os.environ, "DRAIN_TIMEOUT": "15"}
        with (self.logs / "node-down.log").open("w") as out:
            subprocess.run([str(KIT / "node-down.sh"), str(self.folder)], stdout=out, stderr=subprocess.STDOUT,
                           timeout=600, env=env)  # fmt: skip
            for logs in ("logs", "pod-logs"):  # what the node and its containers said, kept past the purge
                shutil.copytree(self.folder / logs, self.logs / logs, dirs_exist_ok=True, symlinks=True)
            subprocess.run([str(KIT / "node-down.sh"), str(self.folder), "--purge"], stdout=out,
                           stderr=subprocess.STDOUT, timeout=600)  # fmt: skip
        shutil.copy2(self.log, self.logs / "node-up.log")
        if not self.leftovers():
            shutil.rmtree(self.folder, ignore_errors=True)

    def _route_api_service(self, add: bool) -> None:
        rule = ["PREROUTING", "-s", self.pod_cidr, "-d", SERVICE_IP, "-p", "tcp", "--dport", "443",
                "-j", "DNAT", "--to-destination", f"{self.gateway}:{self.api_port}"]  # fmt: skip
        subprocess.run(["iptables", "-t", "nat", "-A" if add else "-D", *rule], check=True, capture_output=True)

    def kill_container(self, container_id: str) -> None:
        """SIGKILL to a container's processes, as its crash or an OOM kill would: the kubelet
        sees it exit and restarts it."""
        subprocess.run(["ctr", "-a", str(self.folder / "containerd" / "containerd.sock"), "-n", "k8s.io", "tasks",
                        "kill", "--all", "-s", "SIGKILL", container_id], check=True, capture_output=True)  # fmt: skip

    def mounts_of(self, volume: str) -> list[str]:
        """The kubelet's mounts of a PV on this node (its staging and its Pods' publish paths)."""
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        return [m for m in mounts if m.startswith(str(self.kubelet_dir)) and volume in m]

    def leftovers(self) -> list[str]:
        """What of the node outlived `stop()`: its processes, and mounts and loop devices under its folder."""
        shims = subprocess.run(["pgrep", "-f", str(self.folder)], capture_output=True, text=True).stdout.split()
        return [f"process {pid}" for pid in shims] + mounted_under(self.folder)
