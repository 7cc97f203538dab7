"""The Helm chart on a site's real API server: `helm install` makes the CSIDriver, our CRD,
the classes, the ServiceAccounts and their RBAC, and the Deployments whose Pods the harness
then runs (pods.py) as the chart wrote them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

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
    site_values = (f"site={site.name}", f"driverName={site.driver}", f"array.address={site.array_api}",
                   "controller.csiAddonsAuth=false")  # as the harness runs the csi-addons manager  # fmt: skip
    sets = [arg for value in (*site_values, *values) for arg in ("--set", value)]
    return helm(site, "install", str(CHART), "--create-namespace", *sets, release=release)


def uninstall(site: Site, release: str = RELEASE) -> None:
    helm(site, "uninstall", "--wait", release=release)
