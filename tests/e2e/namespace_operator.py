"""The namespace operator and the backup-site registrar on a site, each run as the chart's
Deployment's Pod: its arguments, environment and ServiceAccount token (tests/e2e/pods.py)."""

from __future__ import annotations

import subprocess

from tests.e2e import chart, pods
from tests.e2e.control_plane import K8S_BIN
from tests.e2e.site import Site


def kubectl(site: Site, *args: str) -> str:
    """Run the real kubectl against the site as its administrator."""
    kubeconfig = site.plane.admin
    result = subprocess.run([str(K8S_BIN / "kubectl"), f"--kubeconfig={kubeconfig}", *args], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def ensure_operator(site: Site, status_interval: float = 1.0) -> Site:
    """The main site with the operator running as the chart's Pod runs it (started once);
    the test only reads the array more often than the chart's 10 s. On a real node the
    kubelet runs it already."""
    if site.kubelet_runs_the_chart:
        return site
    if "namespace-operator" not in [s.name for s in site.processes.started]:
        pod = pods.bind_running(site, chart.account("namespace-operator"))
        pod.run("namespace-operator", ready=lambda: "operator_started" in site.log("namespace-operator"),
                extra=["--status-interval", str(status_interval)])  # fmt: skip
    return site


def ensure_registrar(site: Site, interval: float = 1.0, status_interval: float = 1.0) -> Site:
    """The backup site with the registrar running as the chart's Pod runs it (started once);
    the test only reads the array and rewrites ages more often than the chart does. On a real
    node the kubelet runs it already."""
    if site.kubelet_runs_the_chart:
        return site
    if "backup-site" not in [s.name for s in site.processes.started]:
        pod = pods.bind_running(site, chart.account("backup-site"))
        pod.run("backup-site", ready=lambda: "registrar_started" in site.log("backup-site"),
                extra=["--interval", str(interval), "--status-interval", str(status_interval)])  # fmt: skip
    return site
