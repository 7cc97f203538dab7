"""A real Kubernetes control plane for one site: etcd, kube-apiserver with RBAC on,
kube-controller-manager, and the upstream CRDs the storage sidecars need.

There is no kubelet and no scheduler: PVC binding needs only the controller manager,
and the harness makes the node's calls itself (`kubelet.py`); a plane for a real node
(tests/kubelet) adds the scheduler and the controllers a kubelet needs. Every component gets
its own client certificate, so RBAC judges each one as the user it is.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client, config

from ccopy.launch import free_port
from ccopy_common.pki import CertificateAuthority, openssl
from tests.e2e import rbac
from tests.e2e.processes import Processes, http_ok

K8S_BIN = Path(os.environ.get("CCOPY_K8S_BIN", Path.home() / ".cache" / "ccopy-k8s" / "bin"))
K8S_CRDS = Path(os.environ.get("CCOPY_K8S_CRDS", Path.home() / ".cache" / "ccopy-k8s" / "crds"))
CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
SERVICE_RANGE = "10.96.0.0/24"
# The service accounts our controllers run as (in the driver's namespace), whose requests are audited.
# The ServiceAccounts the chart makes for our controllers (tests/e2e/chart.py, account()).
CONTROLLER_ACCOUNTS = {
    "namespace-operator": "consistentcopy-namespace-operator",
    "backup-site": "consistentcopy-backup-site",
}
# Our controllers and the chart's controller Pod (its sidecars tell themselves apart by user agent).
AUDITED = tuple(f"system:serviceaccount:ccopy-system:{account}"
                for account in (*CONTROLLER_ACCOUNTS.values(), "consistentcopy-controller"))  # fmt: skip
# The attach-detach controller would detach the VolumeAttachments the tests make by hand (no Pod wants
# them); the rest are controllers a storage flow does not touch.
CONTROLLERS = "*,-attachdetach,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-route"
# With a real kubelet (tests/kubelet) the attach-detach controller attaches what Pods use, and the
# node lifecycle controller watches the node; there is still no cloud.
REAL_NODE_CONTROLLERS = "*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route"


def missing_binaries(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not (K8S_BIN / name).exists()]


@dataclass
class ControlPlane:
    """One site's API server and what it needs, started into `folder`."""

    name: str
    folder: Path
    processes: Processes
    port: int = 0
    controllers: str = CONTROLLERS
    # Pods reach the API server at the kubernetes Service, routed to the host (tests/kubelet/node.py):
    # a real node's plane listens beyond loopback.
    bind_address: str = "127.0.0.1"

    def start(self) -> ControlPlane:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ca = CertificateAuthority(self.folder / "pki", f"{self.name}-ca", algorithm="ec")
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        etcd_url = self._start_etcd()
        self._start_apiserver(etcd_url)
        self.admin = self.kubeconfig("admin", groups=("system:masters",))
        self.api = config.new_client_from_config(config_file=str(self.admin))
        self._start_controller_manager()
        self.apply_crds()
        return self

    def kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig for `user` (a client certificate of its own, in `groups`)."""
        path = self.folder / f"{user.replace(':', '-')}.kubeconfig"
        if not path.exists():
            issued = self.ca.issue(user.replace(":", "-"), cn=user, groups=groups)
            document = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": self.name, "cluster": {"server": self.url, "certificate-authority": str(self.ca.cert)}}
                ],
                "users": [
                    {"name": user, "user": {"client-certificate": str(issued.cert), "client-key": str(issued.key)}}
                ],
                "contexts": [{"name": user, "context": {"cluster": self.name, "user": user}}],
                "current-context": user,
            }
            path.write_text(yaml.safe_dump(document))
        return path

    def _start_etcd(self) -> str:
        client_port, peer_port = free_port(), free_port()
        url, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        argv = [str(K8S_BIN / "etcd"), "--name", self.name, "--data-dir", str(self.folder / "etcd"),
                "--listen-client-urls", url, "--advertise-client-urls", url, "--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer, "--initial-cluster", f"{self.name}={peer}",
                "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
                "--unsafe-no-fsync", "--log-level", "warn"]  # fmt: skip
        self.processes.start(f"{self.name}-etcd", argv, ready=http_ok(f"{url}/health"))
        return url

    def _start_apiserver(self, etcd_url: str) -> None:
        pki = self.folder / "pki"
        serving = self.ca.issue("apiserver", san="IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes.default.svc")
        probe = self.ca.issue("probe", groups=("system:masters",))
        sa_key, sa_pub = pki / "sa.key", pki / "sa.pub"
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(sa_key))
        openssl("ec", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
        self.service_account_key = sa_key
        argv = [str(K8S_BIN / "kube-apiserver"), "--etcd-servers", etcd_url, "--bind-address", self.bind_address,
                "--advertise-address", "127.0.0.1", "--secure-port", str(self.port), "--cert-dir", str(pki),
                "--tls-cert-file", str(serving.cert), "--tls-private-key-file", str(serving.key),
                "--client-ca-file", str(self.ca.cert), "--authorization-mode", "RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--service-account-key-file", str(sa_pub), "--service-account-signing-key-file", str(sa_key),
                "--service-cluster-ip-range", SERVICE_RANGE, "--profiling=false", "--v=1",
                # as every cluster that runs a CSI node plugin (kubeadm's default): its DaemonSet is privileged
                "--allow-privileged=true",
                *self._audit_flags()]  # fmt: skip
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        context.load_cert_chain(str(probe.cert), str(probe.key))
        self.processes.start(f"{self.name}-kube-apiserver", argv, ready=http_ok(f"{self.url}/readyz", context))

    def _audit_flags(self) -> list[str]:
        """Every request of our controllers (their service accounts) in the audit log, nothing else:
        how a benchmark counts the API server load they make (`audit_requests`)."""
        policy = self.folder / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata", "users": list(AUDITED)}, {"level": "None"}],
        }))  # fmt: skip
        self.audit_log = self.folder / "audit.log"
        return ["--audit-policy-file", str(policy), "--audit-log-path", str(self.audit_log),
                "--audit-log-format", "json", "--audit-log-maxsize", "0"]  # fmt: skip

    def audit_requests(self) -> list[dict]:
        """Our controllers' requests so far, one entry each (a watch counts once, when it starts)."""
        if not self.audit_log.exists():
            return []
        return rbac.audit_events(self.audit_log.read_text())

    def _start_controller_manager(self) -> None:
        kubeconfig = self.kubeconfig("system:kube-controller-manager", groups=("system:masters",))
        argv = [str(K8S_BIN / "kube-controller-manager"), "--kubeconfig", str(kubeconfig),
                "--bind-address", "127.0.0.1", "--secure-port", str(free_port()), "--leader-elect=false",
                "--use-service-account-credentials=false", "--controllers", self.controllers,
                "--service-account-private-key-file", str(self.service_account_key),
                "--root-ca-file", str(self.ca.cert), "--cluster-name", self.name, "--v=1"]  # fmt: skip
        core = client.CoreV1Api(self.api)
        # Ready when its service-account controller has made the default namespace's account.
        self.processes.start(
            f"{self.name}-kube-controller-manager", argv,
            ready=lambda: bool(core.list_namespaced_service_account("default").items),
        )  # fmt: skip

    def start_scheduler(self) -> None:
        """kube-scheduler, for a plane with real nodes: Pods are placed as in any cluster."""
        kubeconfig = self.kubeconfig("system:kube-scheduler", groups=("system:masters",))
        port = free_port()
        argv = [str(K8S_BIN / "kube-scheduler"), "--kubeconfig", str(kubeconfig), "--leader-elect=false",
                "--bind-address", "127.0.0.1", "--secure-port", str(port), "--v=1"]  # fmt: skip
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # its own self-signed serving certificate
        healthy = http_ok(f"https://127.0.0.1:{port}/healthz", context)
        self.processes.start(f"{self.name}-kube-scheduler", argv, ready=healthy)

    def apply_crds(self) -> None:
        """Every upstream CRD from the installer's folder, waited for until Established."""
        extensions = client.ApiextensionsV1Api(self.api)
        names = []
        for path in sorted(K8S_CRDS.glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text()):
                if document and document.get("kind") == "CustomResourceDefinition":
                    extensions.create_custom_resource_definition(document)
                    names.append(document["metadata"]["name"])
        self.wait_established(names)

    def wait_established(self, names: list[str]) -> None:
        from ccopy.waiting import wait_progressing

        extensions = client.ApiextensionsV1Api(self.api)

        def established() -> set[str]:
            done = set()
            for crd in extensions.list_custom_resource_definition().items:
                if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
                    done.add(crd.metadata.name)
            return done

        wait_progressing(established, lambda done: set(names) <= done, "CRDs established", progress=len)
