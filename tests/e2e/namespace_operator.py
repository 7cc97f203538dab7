"""The namespace operator on a site: our CRD from charts/, the replication classes it names,
and `ccopy namespace-operator` running as a ServiceAccount with the chart's rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from kubernetes import client

from ccopy import DEFAULT_DRIVER_NAME
from tests.e2e import rbac
from tests.e2e.control_plane import CONTROLLER_ACCOUNTS, K8S_BIN
from tests.e2e.csi_addons import DRIVER_NAMESPACE, TOKEN_SECONDS
from tests.e2e.site import Site

TOP = Path(__file__).resolve().parents[2]
CHART_CRDS = TOP / "charts" / "consistent-copy" / "crds"
CLASSES_MANIFEST = TOP / "docs" / "examples" / "replication-classes.yaml"
GROUP_CLASS, REPLICATION_CLASS = "consistentcopy-group", "consistentcopy"


def apply_chart_crds(site: Site) -> None:
    extensions = client.ApiextensionsV1Api(site.api)
    names = []
    for path in sorted(CHART_CRDS.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        extensions.create_custom_resource_definition(document)
        names.append(document["metadata"]["name"])
    site.plane.wait_established(names)


def replication_classes(site: Site) -> None:
    """The VolumeReplicationClass and VolumeGroupReplicationClass the operator's groups use,
    with their Secret: `kubectl apply` of the manifest the docs give users."""
    assert site.driver == DEFAULT_DRIVER_NAME, "the manifest names the default driver"
    kubectl(site, "apply", "-f", str(CLASSES_MANIFEST))


def kubectl(site: Site, *args: str) -> str:
    """Run the real kubectl against the site as its administrator."""
    kubeconfig = site.plane.admin
    result = subprocess.run([str(K8S_BIN / "kubectl"), f"--kubeconfig={kubeconfig}", *args], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def service_account_kubeconfig(site: Site, component: str, account: str) -> Path:
    """A kubeconfig holding a token of `account`, given `component`'s rules, as its Pod would have."""
    core = client.CoreV1Api(site.api)
    core.create_namespaced_service_account(
        DRIVER_NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=account))
    )
    rbac.grant_service_account(site.api, component, DRIVER_NAMESPACE, account)
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[],
                                                  expiration_seconds=TOKEN_SECONDS))  # fmt: skip
    token = core.create_namespaced_service_account_token(account, DRIVER_NAMESPACE, request).status.token
    path = site.folder / f"{component}.kubeconfig"
    user = f"system:serviceaccount:{DRIVER_NAMESPACE}:{account}"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": site.name, "cluster": {"server": site.plane.url,
                                                     "certificate-authority": str(site.plane.ca.cert)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": site.name, "user": user}}],
        "current-context": user,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(document))
    return path


def ensure_operator(site: Site, status_interval: float = 1.0) -> Site:
    """The main site with our CRD, the classes and the operator running (started once)."""
    if "namespace-operator" in [s.name for s in site.processes.started]:
        return site
    apply_chart_crds(site)
    replication_classes(site)
    kubeconfig = service_account_kubeconfig(site, "namespace-operator", CONTROLLER_ACCOUNTS["namespace-operator"])
    argv = [sys.executable, "-m", "ccopy", "namespace-operator", "--kubeconfig", str(kubeconfig),
            "--array", site.array_api, "--driver-name", site.driver, "--group-class", GROUP_CLASS,
            "--replication-class", REPLICATION_CLASS, "--status-interval", str(status_interval)]  # fmt: skip
    site.processes.start("namespace-operator", argv, ready=lambda: "operator_started" in site.log("namespace-operator"))
    return site


def ensure_registrar(site: Site, interval: float = 1.0, status_interval: float = 1.0) -> Site:
    """The backup site with the classes and the registrar running (started once)."""
    if "backup-site" in [s.name for s in site.processes.started]:
        return site
    apply_chart_crds(site)
    replication_classes(site)
    kubeconfig = service_account_kubeconfig(site, "backup-site", CONTROLLER_ACCOUNTS["backup-site"])
    argv = [sys.executable, "-m", "ccopy", "backup-site", "--kubeconfig", str(kubeconfig), "--array", site.array_api,
            "--driver-name", site.driver, "--group-class", GROUP_CLASS, "--replication-class", REPLICATION_CLASS,
            "--interval", str(interval), "--status-interval", str(status_interval)]  # fmt: skip
    site.processes.start("backup-site", argv, ready=lambda: "registrar_started" in site.log("backup-site"))
    return site
