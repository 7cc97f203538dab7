"""The paper's demo with every Pod run by a kubelet, at two sites: the e-commerce process runs
as a Deployment of our image on a stock PVC and a sales PVC; one label, and the PVCs appear at
the backup; a drill there restores a group snapshot, and a Pod of our image finds every sale
with its stock change while the orders keep flowing; the main array is killed (-9); `ccopy dr
failover` takes over and the shop's Deployment runs at the backup on the PVCs taken over; the
main array comes back, `ccopy dr failback` brings the namespace home, and the shop runs there
again, every sale with its stock change. `make demo-kubernetes` runs it."""

from __future__ import annotations

import time
import uuid

import pytest
from kubernetes import client

from ccopy.waiting import wait_progressing
from tests.e2e.site import Sites
from tests.e2e.test_backup_site import LABEL, backup_claims, consistent_copy
from tests.e2e.test_dr import ccopy_dr
from tests.kubelet.app import Shop, check_copy
from tests.kubelet.conftest import kubectl

pytestmark = pytest.mark.timeout(1800)


def test_the_papers_demo_on_real_nodes(node_sites: Sites):
    main, backup = node_sites.main, node_sites.backup
    ns = f"shop-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(main.api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    home = Shop(main, ns).claims().deploy()
    try:
        run_the_demo(node_sites, ns, home)
    finally:  # a failed step leaves no shop running for the tests after
        for site in (main, backup):
            for deployment in client.AppsV1Api(site.api).list_namespaced_deployment(ns).items:
                client.AppsV1Api(site.api).delete_namespaced_deployment(deployment.metadata.name, ns)


def run_the_demo(node_sites: Sites, ns: str, home: Shop) -> None:
    main, backup = node_sites.main, node_sites.backup
    home.flowing()
    print(f"main: the shop runs\n{kubectl(main, 'get', 'pods', '-A', '-o', 'wide')}")

    started = time.monotonic()
    client.CoreV1Api(main.api).patch_namespace(ns, {"metadata": {"labels": LABEL}})
    wait_progressing(lambda: backup_claims(backup, ns),
                     lambda found: set(found) == {"stock", "sales"} and
                     all(c.status.phase == "Bound" for c in found.values()), "the backup PVCs bound",
                     progress=lambda found: sorted((n, c.status.phase) for n, c in found.items()))  # fmt: skip
    print(f"label -> both PVCs at the backup site: {time.monotonic() - started:.1f} s")
    states = lambda: (consistent_copy(main, ns).get("state"), consistent_copy(backup, ns).get("state"))  # noqa: E731
    wait_progressing(states, lambda seen: seen == ("Protected", "Receiving"), "main Protected, backup Receiving")

    drill = f"{ns}-drill"
    out = ccopy_dr(main, backup, "drill", "-n", ns, "--into", drill, "--storage-class", "ccopy")
    assert "drill ready" in out
    changes, sold = check_copy(backup, drill)
    assert sold > 0 and changes >= sold
    print(f"drill: {sold} sales, {changes} stock changes, consistent, read by a Pod at the backup site")
    ccopy_dr(main, backup, "drill", "-n", ns, "--into", drill, "--cleanup")
    home.flowing()  # the orders never stopped

    assert main.array is not None
    main.array.kill()
    home.scale(0)  # the main site's shop is down with its array; the kubelet unstages without it
    away = Shop(backup, ns)
    try:
        out = ccopy_dr(main, backup, "failover", "-n", ns)
        assert "failover done" in out
        taken = check_copy(backup, ns)
        print(f"taken over: {taken[1]} sales, {taken[0]} stock changes, consistent")
        away.deploy().flowing()
        print(f"backup: the shop runs on the PVCs taken over\n{kubectl(backup, 'get', 'pods', '-A', '-o', 'wide')}")
        away.scale(0)
    finally:
        main.array.start()
    out = ccopy_dr(main, backup, "failback", "-n", ns, both=True)
    assert "failback done" in out
    back = check_copy(main, ns)
    assert back[0] >= taken[0] and back[1] >= taken[1]  # what the shop did at the backup came home
    home.scale(1)
    home.flowing()
    print(f"home again: {back[1]} sales, {back[0]} stock changes before the shop started there again")
