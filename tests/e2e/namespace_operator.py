"""The namespace operator and the backup-site registrar on a site, each running with a token
of the ServiceAccount the chart made for it (tests/e2e/chart.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e import chart
from tests.e2e.control_plane import K8S_BIN
from tests.e2e.site import Site

GROUP_CLASS, REPLICATION_CLASS = "consistentcopy-group", "consistentcopy"  # the chart's defaults


def kubectl(site: Site, *args: str) -> str:
    """Run the real kubectl against the site as its administrator."""
    kubeconfig = site.plane.admin
    result = subprocess.run([str(K8S_BIN / "kubectl"), f"--kubeconfig={kubeconfig}", *args], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def ensure_operator(site: Site, status_interval: float = 1.0) -> Site:
    """The main site with the operator running as the chart's ServiceAccount (started once)."""
    if "namespace-operator" in [s.name for s in site.processes.started]:
        return site
    kubeconfig = chart.token_kubeconfig(site, chart.account("namespace-operator"))
    argv = [sys.executable, "-m", "ccopy", "namespace-operator", "--kubeconfig", str(kubeconfig),
            "--array", site.array_api, "--driver-name", site.driver, "--group-class", GROUP_CLASS,
            "--replication-class", REPLICATION_CLASS, "--status-interval", str(status_interval)]  # fmt: skip
    site.processes.start("namespace-operator", argv, ready=lambda: "operator_started" in site.log("namespace-operator"))
    return site


def ensure_registrar(site: Site, interval: float = 1.0, status_interval: float = 1.0) -> Site:
    """The backup site with the registrar running as the chart's ServiceAccount (started once)."""
    if "backup-site" in [s.name for s in site.processes.started]:
        return site
    kubeconfig = chart.token_kubeconfig(site, chart.account("backup-site"))
    argv = [sys.executable, "-m", "ccopy", "backup-site", "--kubeconfig", str(kubeconfig), "--array", site.array_api,
            "--driver-name", site.driver, "--group-class", GROUP_CLASS, "--replication-class", REPLICATION_CLASS,
            "--interval", str(interval), "--status-interval", str(status_interval)]  # fmt: skip
    site.processes.start("backup-site", argv, ready=lambda: "registrar_started" in site.log("backup-site"))
    return site
