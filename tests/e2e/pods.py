"""The chart's Pods, run without a kubelet.

kube-controller-manager makes each Pod from the Deployment `helm install` made; the harness
binds it to the site's Node and reports it Running, as a scheduler and a kubelet would,
then runs the containers it has programs for as processes, each with the arguments and
environment the API server holds for that container: `$(VAR)` and the downward API are
resolved from the Pod itself. A Pod with a service-account token runs each container in a
private mount namespace whose /run holds that token, bound to the Pod (`in_pod.py`), so it
reaches the API server with in-cluster configuration, as the chart's ServiceAccount,
exactly as in a cluster. A Pod without one (the node plugin's: its mounts must reach the
host, as Bidirectional propagation makes them) runs in the host's.

What a node would do differently, and is rewritten here in the arguments and the
environment: a container's volume mounts are the host paths they stand for (a hostPath
volume's own path, an emptyDir a folder of the site), since the process sees the host's
files; and the Pod's ports, which both sites share on one host, are free ports.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client

from ccopy.launch import free_ports
from ccopy.waiting import wait_progressing
from tests.e2e import chart
from tests.e2e.control_plane import K8S_BIN
from tests.e2e.processes import Started

if TYPE_CHECKING:
    from tests.e2e.site import Site

IN_POD = Path(__file__).with_name("in_pod.py")
POD_IP = "127.0.0.1"  # the only address the manager can reach a Pod's port at here
CCOPY = [sys.executable, "-m", "ccopy"]  # the chart's own image: `ccopy ARGS`
BINARIES = {  # the sidecars' containers, by name, as built in ../shared/k8s
    "csi-provisioner": "csi-provisioner",
    "csi-attacher": "csi-attacher",
    "csi-resizer": "csi-resizer",
    "csi-snapshotter": "csi-snapshotter",
    "csi-addons": "csi-addons-sidecar",
}
FIELDS: dict[str, Callable[[client.V1Pod], str]] = {  # the downward API's fieldRefs the chart uses
    "metadata.name": lambda pod: pod.metadata.name,
    "metadata.namespace": lambda pod: pod.metadata.namespace,
    "metadata.uid": lambda pod: pod.metadata.uid,
    "spec.nodeName": lambda pod: pod.spec.node_name,
}


@dataclass
class RunningPod:
    """A Pod of the chart, bound to the site's Node, and what stands in for its volumes and ports."""

    site: Site
    pod: client.V1Pod
    ports: dict[int, int] = field(init=False)  # containerPort -> the free port used instead

    def __post_init__(self) -> None:
        declared = sorted({p.container_port for c in self.pod.spec.containers for p in c.ports or ()})
        self.ports = dict(zip(declared, free_ports(len(declared)), strict=True))
        with_token = self.pod.spec.automount_service_account_token is not False
        self.credentials = service_account_volume(self.site, self.pod) if with_token else None
        self.volumes = {volume.name: self.host_path(volume) for volume in self.pod.spec.volumes or ()}

    def host_path(self, volume: client.V1Volume) -> Path | None:
        """Where a volume's files are on this host, as the kubelet would put them."""
        if volume.host_path is not None:
            Path(volume.host_path.path).mkdir(parents=True, exist_ok=True)  # DirectoryOrCreate, and here Directory
            return Path(volume.host_path.path)
        if volume.empty_dir is not None:  # short: a socket's path must fit in 108 bytes
            folder = self.site.folder / "emptydir" / volume.name
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        return None  # the service-account token (in_pod.py), Secrets the harness does not use

    @property
    def name(self) -> str:
        return self.pod.metadata.name

    def container(self, name: str) -> client.V1Container:
        (found,) = [c for c in self.pod.spec.containers if c.name == name]
        return found

    def mounts(self, name: str) -> dict[str, Path]:
        """Container `name`'s mount paths -> the host paths they stand for."""
        found = {m.mount_path: self.volumes.get(m.name) for m in self.container(name).volume_mounts or ()}
        return {mount: path for mount, path in found.items() if path is not None}

    def environment(self, name: str) -> dict[str, str]:
        """The container's environment as the kubelet would give it, volumes and ports rewritten."""
        env: dict[str, str] = {}
        mounts = self.mounts(name)
        for var in self.container(name).env or ():
            if var.value_from is not None:
                env[var.name] = FIELDS[var.value_from.field_ref.field_path](self.pod)
            else:
                env[var.name] = self.rewrite(expand(var.value or "", env), mounts)
        return env

    def arguments(self, name: str) -> list[str]:
        env, mounts = self.environment(name), self.mounts(name)
        return [self.rewrite(expand(arg, env), mounts) for arg in self.container(name).args or ()]

    def rewrite(self, text: str, mounts: dict[str, Path]) -> str:
        for mount, folder in sorted(mounts.items(), key=lambda item: -len(item[0])):  # the deepest mount first
            text = re.sub(rf"{re.escape(mount)}(?=/|$)", str(folder), text)
        port = re.search(r"[:=](\d+)$", text)
        if port and int(port.group(1)) in self.ports:
            text = text[: port.start(1)] + str(self.ports[int(port.group(1))])
        return text

    def port(self, declared: int) -> int:
        return self.ports[declared]

    def run(self, name: str, ready: Callable[[], bool], extra: Iterable[str] = (), process: str = "") -> Started:
        """Run container `name` as the Pod's process (`process`: its name in the site's processes and
        logs; the container's by default); `extra`: flags a test adds after the chart's."""
        program = [str(K8S_BIN / BINARIES[name])] if name in BINARIES else CCOPY
        in_pod = [
            shutil.which("unshare") or "unshare", "-m", "--propagation", "private",
            sys.executable, str(IN_POD), "--serviceaccount", str(self.credentials), "--",
        ] if self.credentials is not None else []  # fmt: skip
        argv = [*in_pod, *program, *self.arguments(name), *extra]
        # A container's environment is the Pod's, not the harness's: no kubeconfig of whoever runs the tests.
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.site.plane.port),
               "KUBECONFIG": "", "CCOPY_KUBECONFIG": "", **self.environment(name)}  # fmt: skip
        return self.site.processes.start(process or name, argv, env=env, ready=ready)


def expand(text: str, env: dict[str, str]) -> str:
    """`$(VAR)` as the kubelet expands it in args and env values: known names only."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def bind_running(site: Site, workload: str, kind: str = "Deployment") -> RunningPod:
    """The Pod kube-controller-manager made for the chart's Deployment (or DaemonSet) `workload`,
    bound to the site's Node and reported Running, as a scheduler and a kubelet would."""
    apps, core = client.AppsV1Api(site.api), client.CoreV1Api(site.api)
    read = apps.read_namespaced_daemon_set if kind == "DaemonSet" else apps.read_namespaced_deployment
    labels = read(workload, chart.NAMESPACE).spec.selector.match_labels
    selector = ",".join(f"{key}={value}" for key, value in labels.items())
    pods = wait_progressing(
        lambda: core.list_namespaced_pod(chart.NAMESPACE, label_selector=selector).items,
        lambda pods: len(pods) == 1 and bool(pods[0].metadata.owner_references),
        f"the {workload} {kind}'s Pod",
        progress=lambda pods: tuple(p.metadata.name for p in pods),
    )
    pod = pods[0]
    if pod.spec.node_name is None:
        binding = client.V1Binding(
            metadata=client.V1ObjectMeta(name=pod.metadata.name),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=site.node_name),
        )
        # The answer is a Status, which the generated client cannot read as a Binding.
        core.create_namespaced_pod_binding(pod.metadata.name, chart.NAMESPACE, binding, _preload_content=False)
    core.patch_namespaced_pod_status(pod.metadata.name, chart.NAMESPACE, {"status": running_status(pod)})
    return RunningPod(site, core.read_namespaced_pod(pod.metadata.name, chart.NAMESPACE))


def running_status(pod: client.V1Pod) -> dict[str, Any]:
    """The status a kubelet reports for a Pod whose containers all started and are ready."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    containers = [
        {"name": c.name, "image": c.image, "imageID": "", "ready": True, "started": True, "restartCount": 0,
         "state": {"running": {"startedAt": now}}}
        for c in pod.spec.containers
    ]  # fmt: skip
    return {
        "phase": "Running", "podIP": POD_IP, "podIPs": [{"ip": POD_IP}], "hostIP": POD_IP,
        "hostIPs": [{"ip": POD_IP}], "startTime": now, "conditions": conditions, "containerStatuses": containers,
    }  # fmt: skip


def service_account_volume(site: Site, pod: client.V1Pod) -> Path:
    """What a projected service-account volume holds for `pod`: a token bound to the Pod, the
    cluster's CA and the namespace. Returns their folder."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[],  # the API server's own
            expiration_seconds=chart.TOKEN_SECONDS,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid
            ),
        )
    )
    core = client.CoreV1Api(site.api)
    account = pod.spec.service_account_name
    answer = core.create_namespaced_service_account_token(account, pod.metadata.namespace, request)
    folder = site.folder / "pods" / pod.metadata.name / "serviceaccount"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text(answer.status.token)
    shutil.copyfile(site.plane.ca.cert, folder / "ca.crt")
    (folder / "namespace").write_text(pod.metadata.namespace)
    return folder
