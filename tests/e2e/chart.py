"""The Helm chart on a site's real API server: `helm install` makes the CSIDriver, our CRD,
the classes, the ServiceAccounts and their RBAC; each component of ours then runs with a
token of the ServiceAccount the chart made for it, as its Pod would."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from kubernetes import client

from tests.e2e.control_plane import K8S_BIN

if TYPE_CHECKING:
    from tests.e2e.site import Site

CHART = Path(__file__).resolve().parents[2] / "charts" / "consistent-copy"
RELEASE = "consistentcopy"
NAMESPACE = "ccopy-system"  # the release's: the controller Pod, its Leases, the classes' Secret
TOKEN_SECONDS = 24 * 3600  # longer than any run; client-go rereads the file, nothing refreshes it


def account(component: str) -> str:
    """The ServiceAccount the chart makes for `component`'s pod (charts/.../files/rbac.yaml)."""
    return f"{RELEASE}-{component}"


def helm(site: Site, *argv: str, release: str = RELEASE) -> str:
    done = subprocess.run(
        [str(K8S_BIN / "helm"), *argv[:1], release, *argv[1:], "--kubeconfig", str(site.plane.admin),
         "--namespace", NAMESPACE],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"helm {argv[0]}: {done.stderr}"
    return done.stdout


def install(site: Site, *values: str, release: str = RELEASE) -> str:
    """`helm install` of the chart for this site; returns what helm printed (NOTES.txt)."""
    sets = [arg for value in (f"site={site.name}", f"driverName={site.driver}", *values) for arg in ("--set", value)]
    return helm(site, "install", str(CHART), "--create-namespace", *sets, release=release)


def uninstall(site: Site, release: str = RELEASE) -> None:
    helm(site, "uninstall", "--wait", release=release)


def token_kubeconfig(site: Site, service_account: str) -> Path:
    """A kubeconfig holding a token of the ServiceAccount, as its Pod would have it."""
    core = client.CoreV1Api(site.api)
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[],
                                                  expiration_seconds=TOKEN_SECONDS))  # fmt: skip
    token = core.create_namespaced_service_account_token(service_account, NAMESPACE, request).status.token
    user = f"system:serviceaccount:{NAMESPACE}:{service_account}"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": site.name, "cluster": {"server": site.plane.url,
                                                     "certificate-authority": str(site.plane.ca.cert)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": site.name, "user": user}}],
        "current-context": user,
    }  # fmt: skip
    path = site.folder / f"{service_account}.kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path
