"""`helm install` of charts/consistent-copy on each site's real API server: the harness
installs it when a site starts and every component of ours runs as the ServiceAccount
it made (the other e2e tests are the proof that its RBAC suffices); here, what the
install made at each site, and that `helm uninstall` leaves nothing of a release."""

from __future__ import annotations

import re

import pytest
from kubernetes import client

from ccopy.waiting import wait_progressing
from tests.e2e import chart
from tests.e2e.conftest import Sites
from tests.e2e.site import Site

pytestmark = pytest.mark.timeout(600)


def of_release(site: Site, release: str) -> list[str]:
    """Every object the chart makes, found by its release label, as kind/name."""
    selector = f"app.kubernetes.io/instance={release}"
    rbac, core = client.RbacAuthorizationV1Api(site.api), client.CoreV1Api(site.api)
    storage, apps = client.StorageV1Api(site.api), client.AppsV1Api(site.api)
    listers = {
        "CSIDriver": storage.list_csi_driver,
        "StorageClass": storage.list_storage_class,
        "ClusterRole": rbac.list_cluster_role,
        "ClusterRoleBinding": rbac.list_cluster_role_binding,
        "Role": lambda **kw: rbac.list_namespaced_role(chart.NAMESPACE, **kw),
        "RoleBinding": lambda **kw: rbac.list_namespaced_role_binding(chart.NAMESPACE, **kw),
        "ServiceAccount": lambda **kw: core.list_namespaced_service_account(chart.NAMESPACE, **kw),
        "Secret": lambda **kw: core.list_namespaced_secret(chart.NAMESPACE, **kw),
        "Service": lambda **kw: core.list_namespaced_service(chart.NAMESPACE, **kw),
        "Deployment": lambda **kw: apps.list_namespaced_deployment(chart.NAMESPACE, **kw),
        "DaemonSet": lambda **kw: apps.list_namespaced_daemon_set(chart.NAMESPACE, **kw),
        "Pod": lambda **kw: core.list_namespaced_pod(chart.NAMESPACE, **kw),  # the Deployments' and DaemonSet's
    }
    return sorted(f"{kind}/{o.metadata.name}" for kind, lister in listers.items()
                  for o in lister(label_selector=selector).items)  # fmt: skip


def test_each_site_has_its_release_with_the_controller_of_its_site(sites: Sites):
    for site, ours, other in ((sites.main, "namespace-operator", "backup-site"),
                              (sites.backup, "backup-site", "namespace-operator")):  # fmt: skip
        made = of_release(site, chart.RELEASE)
        assert f"CSIDriver/{site.driver}" in made
        assert f"ServiceAccount/{chart.account(ours)}" in made and f"ServiceAccount/{chart.account(other)}" not in made
        assert f"ClusterRole/{chart.RELEASE}-{ours}" in made and f"ClusterRole/{chart.RELEASE}-{other}" not in made
        assert f"Role/{chart.RELEASE}-csi-addons-sidecar-leases" in made
        assert "StorageClass/ccopy" in made
        assert {f"Deployment/{chart.RELEASE}-controller", f"Deployment/{chart.account(ours)}",
                f"DaemonSet/{chart.RELEASE}-node", f"Service/{chart.RELEASE}-replication-metrics"} <= set(made)
        assert f'site "{site.name}"' in site.chart_notes  # NOTES.txt speaks of this site
        found = re.findall(r"^  found +(.+)$", site.chart_notes, flags=re.MULTILINE)  # NOTES: each prerequisite
        assert len(found) == 3 and "MISSING" not in site.chart_notes, site.chart_notes
        driver = client.StorageV1Api(site.api).read_csi_driver(site.driver).spec
        assert (driver.attach_required, driver.fs_group_policy, driver.volume_lifecycle_modes) == (
            True, "File", ["Persistent"])  # fmt: skip


def test_uninstall_leaves_nothing_of_the_release(sites: Sites):
    site = sites.backup
    release = "trial"
    classes_off = [f"classes.{c}.enabled=false" for c in
                   ("storageClass", "volumeSnapshotClass", "volumeGroupSnapshotClass", "replication")]  # fmt: skip
    chart.install(site, "driverName=trial.csi.consistentcopy.io", *classes_off, release=release)
    made = of_release(site, release)
    assert "CSIDriver/trial.csi.consistentcopy.io" in made and "ServiceAccount/trial-backup-site" in made
    assert len(made) > 10, made
    chart.uninstall(site, release=release)
    # the Pods go last: the garbage collector removes them once their owners are gone
    wait_progressing(lambda: of_release(site, release), lambda left: left == [], "nothing of the release left",
                     progress=tuple)  # fmt: skip
    assert of_release(site, chart.RELEASE), "the site's own release is untouched"
