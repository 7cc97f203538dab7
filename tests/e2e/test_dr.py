"""The paper's demo end to end on two real control planes, driven the way an operator
would with `ccopy dr`: the e-commerce process runs at the main site; one label, and the
PVs appear at the backup; a drill there (a group snapshot restored into another
namespace) holds every sale with its stock change while the orders keep flowing; then
the main array is killed with writes it never sent, `ccopy dr failover` takes over and
says what was given up (checked against the main array's journal), the backup's copy is
consistent, and `ccopy dr failback` brings the namespace home; a planned relocation
round trip gives up nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client

from ccopy import ecommerce
from ccopy.waiting import wait_progressing
from replication_sidecar.dr.drill import GROUP_SNAPSHOTS
from tests.e2e import objects
from tests.e2e.conftest import SC, Sites
from tests.e2e.namespace_operator import ensure_operator, ensure_registrar, kubectl
from tests.e2e.site import Site
from tests.e2e.test_backup_site import LABEL, backup_claims, consistent_copy, unlabel_and_clean_backup
from tests.e2e.test_failover import journal_group, write_file
from tests.e2e.test_namespace_operator import cut_link, restore_link
from tests.test_cli import DEAD_SERVER

pytestmark = pytest.mark.timeout(1200)


def admin(site: Site) -> str:
    return str(site.plane.admin)


def ccopy_dr(main: Site, backup: Site, *argv: str, both: bool = False) -> str:
    """Run `ccopy dr` as a person would, with the backup cluster's (and the main's) kubeconfig."""
    done = run_dr(admin(backup), *argv, main_kubeconfig=admin(main) if both else "")
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_dr(kubeconfig: str, *argv: str, main_kubeconfig: str = "") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ccopy", "dr", *argv, "--kubeconfig", kubeconfig]
    if argv[0] != "status":  # status waits for nothing
        command += ["--timeout", "600"]
    if main_kubeconfig:
        command += ["--main-kubeconfig", main_kubeconfig]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    print(f"$ ccopy dr {' '.join(argv)}{' --main-kubeconfig ...' if main_kubeconfig else ''}\n{done.stdout}"
          f"{done.stderr}")  # fmt: skip
    return done


def mistakes_change_nothing(main: Site, backup: Site, ns: str, tmp_path: Path) -> None:
    """A person's likely mistakes, each refused with the site and flags named, nothing changed:
    the main cluster's credentials given as the backup's (which once reported a failover that
    never happened), and a main site that does not answer, for status and for a planned move."""
    wrong = run_dr(admin(main), "failover", "-n", ns)
    assert wrong.returncode == 1 and "this cluster is the main site of namespace" in wrong.stderr, wrong.stderr
    dead = tmp_path / "dead-main.kubeconfig"
    dead.write_text(DEAD_SERVER)
    seen = run_dr(admin(backup), "status", "-n", ns, main_kubeconfig=str(dead))
    assert seen.returncode == 1 and "backup: Receiving (role Secondary)" in seen.stdout  # the backup still said
    assert f"main site (--main-kubeconfig {dead}): the API server at 127.0.0.1:1 does not answer" in seen.stderr
    planned = run_dr(admin(backup), "failover", "-n", ns, main_kubeconfig=str(dead))
    assert planned.returncode == 1 and "leave out --main-kubeconfig" in planned.stderr, planned.stderr
    assert states(main, backup, ns) == ("Protected", "Receiving")


def mount_claims(site: Site, ns: str, names: tuple[str, ...]) -> dict:
    mounts = {}
    for name in names:
        pv = objects.bound(site.api, ns, name)
        mounts[name] = site.kubelet.mount(pv, site.kubelet.attach(pv.metadata.name))
    return mounts


def states(main: Site, backup: Site, ns: str) -> tuple[str, str]:
    return consistent_copy(main, ns).get("state", ""), consistent_copy(backup, ns).get("state", "")


def test_the_papers_demo_with_ccopy_dr_drill_failover_and_failback(site: Site, sites: Sites, ns: str, tmp_path):
    main, backup = ensure_operator(site), ensure_registrar(sites.backup)
    for name in ("stock", "sales"):
        objects.pvc(main.api, ns, name, "64Mi", SC)
    mounts = mount_claims(main, ns, ("stock", "sales"))
    orders = ecommerce.start(mounts["stock"], mounts["sales"], 900)
    drill_ns = f"{ns}-drill"
    try:
        started = time.monotonic()
        client.CoreV1Api(main.api).patch_namespace(ns, {"metadata": {"labels": LABEL}})
        wait_progressing(lambda: backup_claims(backup, ns),
                         lambda found: set(found) == {"stock", "sales"} and
                         all(c.status.phase == "Bound" for c in found.values()), "the backup PVCs bound",
                         progress=lambda found: sorted((n, c.status.phase) for n, c in found.items()))  # fmt: skip
        print(f"label -> both PVs and PVCs at the backup site: {time.monotonic() - started:.1f} s")
        wait_progressing(lambda: states(main, backup, ns), lambda s: s == ("Protected", "Receiving"),
                         "main Protected, backup Receiving")  # fmt: skip
        for where in (main, backup):
            print(f"{where.name}: kubectl get consistentcopy -A\n{kubectl(where, 'get', 'consistentcopy', '-A')}")

        # A drill at the backup while the orders flow and copying goes on.
        out = ccopy_dr(main, backup, "drill", "-n", ns, "--into", drill_ns, "--storage-class", SC)
        assert "drill ready" in out and "the copy goes on (backup state Receiving)" in out
        clones = mount_claims(backup, drill_ns, ("stock", "sales"))
        changes, sold = ecommerce.check(clones["stock"], clones["sales"])  # raises if a sale lacks its stock change
        assert sold > 0 and changes >= sold and orders.poll() is None
        print(f"drill clones: {sold} sales, {changes} stock changes, consistent; the orders never stopped")
        backup.kubelet.release_all()
        ccopy_dr(main, backup, "drill", "-n", ns, "--into", drill_ns, "--cleanup")
        assert client.CoreV1Api(backup.api).list_namespace(field_selector=f"metadata.name={drill_ns}").items == []
        version = objects.newest_served(backup.api, f"volumegroupsnapshots.{GROUP_SNAPSHOTS}")
        left = objects.custom(backup.api).list_namespaced_custom_object(GROUP_SNAPSHOTS, version, ns,
                                                                        "volumegroupsnapshots")["items"]  # fmt: skip
        assert left == []
    finally:
        assert ecommerce.stop(orders) == 0
        main.kubelet.release_all()
        backup.kubelet.release_all()
    wait_progressing(lambda: states(main, backup, ns), lambda s: s == ("Protected", "Receiving"), "caught up")
    assert "backup: Receiving (role Secondary)" in ccopy_dr(main, backup, "status", "-n", ns, both=True)
    mistakes_change_nothing(main, backup, ns, tmp_path)

    # The disaster: the main site acknowledges a write the backup never hears of, then its array dies.
    group = consistent_copy(backup, ns)["journalGroup"]
    assert main.array is not None
    cut_link(sites)
    try:
        write_file(main, ns, "stock", "lost.txt", "acknowledged, never sent\n")
        main.array.kill()
    finally:
        restore_link(sites)
    try:
        out = ccopy_dr(main, backup, "failover", "-n", ns)
        assert "failover done" in out and "as of last contact" in out and "cannot be known" in out
        assert "given up: at least " in out or "given up: unknown: " in out  # a floor, never "nothing"
        copy = mount_claims(backup, ns, ("stock", "sales"))
        changes, sold = ecommerce.check(copy["stock"], copy["sales"])  # the copy taken over is consistent
        assert not (copy["stock"] / "lost.txt").exists()
        print(f"taken over: {sold} sales, {changes} stock changes, consistent")
        backup.kubelet.release_all()
        applied = journal_group(backup, group).applied_seq
        taken = consistent_copy(backup, ns)["takeover"]
    finally:
        main.array.start()
    truth = journal_group(main, group).main_seq - applied
    print(f"given up: {taken['givenUp']}\nthe main array's journal held {truth} more records")
    assert truth > 0 and taken["records"] <= truth

    out = ccopy_dr(main, backup, "failback", "-n", ns, both=True)
    assert "failback done" in out
    home = mount_claims(main, ns, ("stock", "sales"))
    assert ecommerce.check(home["stock"], home["sales"]) == (changes, sold)  # what the backup held, no more
    assert not (home["stock"] / "lost.txt").exists()  # given up for good
    main.kubelet.release_all()

    # A planned relocation and back: the main site is demoted first, nothing is given up.
    out = ccopy_dr(main, backup, "failover", "-n", ns, both=True)
    assert "given up: 0 records, 0B, 0.000 s of writes (counted by the main array)" in out
    moved = mount_claims(backup, ns, ("stock", "sales"))
    assert ecommerce.check(moved["stock"], moved["sales"]) == (changes, sold)  # everything moved
    backup.kubelet.release_all()
    ccopy_dr(main, backup, "failback", "-n", ns, both=True)
    unlabel_and_clean_backup(main, backup, ns)
