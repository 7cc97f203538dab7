"""The Kubernetes flows at 2 and at 100 PVCs (the csi-addons limit for one group), on the
two real control planes of the e2e harness, and the API-server load our controllers make.

For each size, a namespace with that many PVCs (8 MiB, never mounted: the control plane
is what is measured) at the main site:

    label -> PVs at the backup   the label put on, until every PVC is Bound at the backup
    -> Protected                 until the main site says Protected and the backup Receiving
    group snapshot -> ready      a VolumeGroupSnapshot over the backup PVCs, until readyToUse
    failover -> writable         planned (`ccopy dr failover` with both sites: the main site
                                 demoted first), until the backup's group is Primary (its
                                 S-VOLs take writes)
    failback                     `ccopy dr failback`, until main Protected, backup Receiving

and the requests of the namespace operator and of the registrar, from the API servers'
audit logs (their service accounts only): over the whole flow, and per minute in a quiet
minute while the namespace is protected (status interval 10 s, the default). A watch
counts once.

Run as root where ../shared/k8s is installed: `python -m bench.k8s_scale [--sizes 2,100]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from kubernetes import client

from bench.nbd_fio import machine
from ccopy.launch import free_ports
from ccopy.waiting import wait_progressing
from replication_sidecar.dr.drill import GROUP_SNAPSHOTS, group_snapshot
from tests.e2e import objects
from tests.e2e.conftest import SC, Sites, require_kubernetes
from tests.e2e.control_plane import CONTROLLER_ACCOUNTS
from tests.e2e.namespace_operator import ensure_operator, ensure_registrar
from tests.e2e.site import Site
from tests.e2e.test_backup_site import LABEL, backup_claims, consistent_copy, unlabel_and_clean_backup

QUIET_SECONDS = 60.0


def admin(site: Site) -> str:
    return str(site.plane.admin)


def requests_by_controller(main: Site, backup: Site, detail: bool = False) -> Counter[str]:
    """Requests per controller (with `detail`: per controller, verb and resource)."""
    counts: Counter[str] = Counter()
    for site in (main, backup):
        for event in site.plane.audit_requests():
            account = event["user"]["username"].rsplit(":", 1)[-1]
            component = next((name for name, acct in CONTROLLER_ACCOUNTS.items() if acct == account), None)
            if component is None:  # the controller Pod's sidecars: not ours to count here
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            counts[f"{component} {event['verb']} {resource}" if detail else component] += 1
    return counts


def since(now: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {name: now[name] - before[name] for name in CONTROLLER_ACCOUNTS}


def states(main: Site, backup: Site, ns: str) -> tuple[str, str]:
    return consistent_copy(main, ns).get("state", ""), consistent_copy(backup, ns).get("state", "")


def group_snapshot_progress(custom: client.CustomObjectsApi, version: str, ns: str, name: str) -> tuple[bool, int]:
    """(the group snapshot ready, how many member VolumeSnapshots are ready): the members move first."""
    group = custom.get_namespaced_custom_object(GROUP_SNAPSHOTS, version, ns, "volumegroupsnapshots", name)
    assert not (group.get("status") or {}).get("error"), group["status"]["error"]
    members = custom.list_namespaced_custom_object(*objects.SNAPSHOT, ns, "volumesnapshots")["items"]
    return bool((group.get("status") or {}).get("readyToUse")), sum(
        bool((m.get("status") or {}).get("readyToUse")) for m in members
    )


def dr(main: Site, backup: Site, *argv: str) -> None:
    command = [sys.executable, "-m", "ccopy", "dr", *argv, "--kubeconfig", admin(backup),
               "--main-kubeconfig", admin(main), "--timeout", "1800"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, text=True)


def one_size(sites: Sites, count: int) -> dict[str, float | dict[str, int]]:
    main, backup = sites.main, sites.backup
    ns = f"scale-{count}"
    objects.namespace(main.api, ns)
    for i in range(count):
        objects.pvc(main.api, ns, f"data-{i:03d}", "8Mi", SC)
    wait_progressing(lambda: sum(c.status.phase == "Bound" for c in
                                 client.CoreV1Api(main.api).list_namespaced_persistent_volume_claim(ns).items),
                     lambda bound: bound == count, f"{count} PVCs bound at the main site")  # fmt: skip
    result: dict[str, float | dict[str, int]] = {}
    before = requests_by_controller(main, backup)
    started = time.monotonic()
    client.CoreV1Api(main.api).patch_namespace(ns, {"metadata": {"labels": LABEL}})
    wait_progressing(lambda: backup_claims(backup, ns),
                     lambda found: len(found) == count and all(c.status.phase == "Bound" for c in found.values()),
                     "the backup PVCs bound", progress=lambda found: sorted((n, c.status.phase) for n, c in
                                                                            found.items()), stall=300)  # fmt: skip
    result["label -> PVs at the backup"] = time.monotonic() - started
    wait_progressing(lambda: states(main, backup, ns), lambda s: s == ("Protected", "Receiving"),
                     "main Protected, backup Receiving", stall=600)  # fmt: skip
    result["label -> Protected (main) and Receiving (backup)"] = time.monotonic() - started

    quiet, quiet_detail = requests_by_controller(main, backup), requests_by_controller(main, backup, detail=True)
    time.sleep(QUIET_SECONDS)
    result["requests per quiet minute"] = since(requests_by_controller(main, backup), quiet)
    detail = requests_by_controller(main, backup, detail=True) - quiet_detail
    print(f"{count} PVCs, requests in a quiet minute: {dict(detail.most_common())}", flush=True)

    version = objects.newest_served(backup.api, f"volumegroupsnapshots.{GROUP_SNAPSHOTS}")
    custom = objects.custom(backup.api)
    started = time.monotonic()
    custom.create_namespaced_custom_object(GROUP_SNAPSHOTS, version, ns, "volumegroupsnapshots",
                                           group_snapshot(ns, "scale", version, SC))  # fmt: skip
    wait_progressing(lambda: group_snapshot_progress(custom, version, ns, "scale"), lambda p: p[0],
                     "the group snapshot ready", progress=lambda p: p[1], stall=300)  # fmt: skip
    result["group snapshot at the backup -> ready"] = time.monotonic() - started
    custom.delete_namespaced_custom_object(GROUP_SNAPSHOTS, version, ns, "volumegroupsnapshots", "scale")
    objects.await_object(
        lambda: custom.list_namespaced_custom_object(*objects.SNAPSHOT, ns, "volumesnapshots")["items"],
        lambda items: not items, "the group's snapshots deleted",
    )  # fmt: skip

    started = time.monotonic()
    dr(main, backup, "failover", "-n", ns)
    result["failover (planned) -> backup PVCs writable"] = time.monotonic() - started
    started = time.monotonic()
    dr(main, backup, "failback", "-n", ns)
    result["failback -> Protected again"] = time.monotonic() - started
    result["requests over the whole flow"] = since(requests_by_controller(main, backup), before)
    unlabel_and_clean_backup(main, backup, ns)
    client.CoreV1Api(main.api).delete_namespace(ns)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2,100", help="PVC counts, comma-separated")
    args = parser.parse_args()
    require_kubernetes_or_exit()
    sizes = [int(n) for n in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="ccopy-k8s-scale-") as tmp:
        main_api, backup_api = (f"127.0.0.1:{port}" for port in free_ports(2))
        main_site = Site("main", Path(tmp) / "main", serial=31001, array_api=main_api, remote=backup_api)
        backup_site = Site("backup", Path(tmp) / "backup", serial=32002, array_api=backup_api, remote=main_api)
        try:
            sites = Sites(main_site.start(), backup_site.start())
            ensure_operator(sites.main, status_interval=10.0)
            ensure_registrar(sites.backup, interval=2.0, status_interval=10.0)  # the defaults
            results = {n: one_size(sites, n) for n in sizes}
        finally:
            backup_site.stop()
            main_site.stop()
    print(f"\nmachine: {machine()}\n")
    print("| what | " + " | ".join(f"{n} PVCs" for n in sizes) + " |")
    print("| --- | " + " | ".join("---" for _ in sizes) + " |")
    for what in results[sizes[0]]:
        cells = []
        for n in sizes:
            value = results[n][what]
            words = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else f"{value:.1f} s"
            cells.append(words)
        print(f"| {what} | " + " | ".join(cells) + " |")
    return 0


def require_kubernetes_or_exit() -> None:
    try:
        require_kubernetes()
    except BaseException as exc:  # pytest.skip raises its own exception type
        print(f"error: {exc}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    sys.exit(main())
