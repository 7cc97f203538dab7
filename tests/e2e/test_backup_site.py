"""PVs appear at the backup site: the registrar, with only the backup cluster and its own
array, turns every S-VOL into a PV and a PVC of the main PVC's name, grouped by a secondary
VolumeGroupReplication; when the main site ends the pairs, the PVCs go and the PVs stay,
Released, with the data."""

from __future__ import annotations

import contextlib
import time

import pytest
from kubernetes import client

from ccopy import ecommerce
from ccopy.waiting import wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from replication_sidecar.dr.site import DrSite
from replication_sidecar.group_replication import REPLICATION, VGRS
from replication_sidecar.namespace_operator.model import MEMBER_LABEL, OBJECT_NAME
from tests.e2e import objects
from tests.e2e.conftest import GROUP_SNAPSHOT_GROUP, SC, SNAPSHOT_GROUP, SNAPSHOT_VERSION, Sites
from tests.e2e.namespace_operator import ensure_operator, ensure_registrar, kubectl
from tests.e2e.site import Site

pytestmark = pytest.mark.timeout(900)
LABEL = {"consistentcopy.io/backup": "ConsistentCopyToCloud"}


def backup_claims(site: Site, ns: str) -> dict[str, client.V1PersistentVolumeClaim]:
    try:
        return {
            c.metadata.name: c for c in client.CoreV1Api(site.api).list_namespaced_persistent_volume_claim(ns).items
        }
    except client.ApiException as exc:
        if exc.status == 404:
            return {}
        raise


def group_state(site: Site, ns: str) -> str | None:
    try:
        custom = client.CustomObjectsApi(site.api)
        vgr = custom.get_namespaced_custom_object(*REPLICATION, ns, VGRS, OBJECT_NAME)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return (vgr.get("status") or {}).get("state", "")


def test_s_vols_become_bound_pvcs_at_the_backup_and_stay_as_released_pvs(site: Site, sites: Sites, ns: str):
    main, backup = ensure_operator(site), ensure_registrar(sites.backup)
    for name in ("stock", "sales"):
        objects.pvc(main.api, ns, name, "64Mi", SC)
        objects.bound(main.api, ns, name)
    started = time.monotonic()
    client.CoreV1Api(main.api).patch_namespace(ns, {"metadata": {"labels": LABEL}})
    claims = wait_progressing(
        lambda: backup_claims(backup, ns),
        lambda found: set(found) == {"stock", "sales"} and all(c.status.phase == "Bound" for c in found.values()),
        "the backup PVCs bound", progress=lambda found: sorted((n, c.status.phase) for n, c in found.items()),
    )  # fmt: skip
    print(f"label -> both PVCs bound at the backup site: {time.monotonic() - started:.1f} s")
    core = client.CoreV1Api(backup.api)
    with backup.array_channel() as channel:
        array = pb_grpc.ArrayStub(channel)
        serial = array.GetArrayInfo(pb.GetArrayInfoRequest()).serial
        svols = {p.local_ldev_id for p in array.ListPairs(pb.ListPairsRequest()).pairs if p.role == "backup"}
        for claim in claims.values():
            pv = core.read_persistent_volume(claim.spec.volume_name)
            assert pv.spec.persistent_volume_reclaim_policy == "Retain" and pv.spec.csi.driver == backup.driver
            assert pv.spec.csi.volume_handle.startswith(f"ccv1-{serial}-")
            assert int(pv.spec.csi.volume_handle.rsplit("-", 1)[1], 16) in svols  # an S-VOL of this array
            assert pv.spec.capacity["storage"] == str(64 << 20) and pv.spec.volume_mode == "Filesystem"
            assert pv.spec.access_modes == ["ReadWriteOnce"] and claim.metadata.labels[MEMBER_LABEL] == ns
        state = wait_progressing(lambda: group_state(backup, ns), lambda s: s == "Secondary",
                                 "the backup VolumeGroupReplication secondary")  # fmt: skip
        assert state == "Secondary"
        # Both sites report the namespace: the main site protected, the backup receiving, as of its own view.
        status = wait_progressing(
            lambda: consistent_copy(backup, ns), lambda c: c.get("state") == "Receiving" and bool(c.get("lastContact")),
            "the backup ConsistentCopy Receiving, in contact", progress=lambda c: c.get("message"),
        )  # fmt: skip
        assert status["role"] == "Secondary" and status["volumeCount"] == 2
        assert {v["pvc"]: v["pairState"] for v in status["volumes"]} == {"stock": "PAIR", "sales": "PAIR"}
        assert status["behindAsOfLastContact"]["records"] >= 0 and status["lastContact"]
        for where in (main, backup):
            listed = kubectl(where, "get", "consistentcopy", "-A")
            print(f"{where.name}: kubectl get consistentcopy -A\n{listed}")
            assert [line.split()[:5] for line in listed.splitlines()[1:]] == [
                [ns, OBJECT_NAME, "main", "Protected", "2"] if where is main else [ns, OBJECT_NAME, "backup",
                                                                                    "Receiving", "2"]
            ]  # fmt: skip

        volumes = [c.spec.volume_name for c in claims.values()]
        client.CoreV1Api(main.api).patch_namespace(ns, {"metadata": {"labels": {key: None for key in LABEL}}})
        wait_progressing(lambda: backup_claims(backup, ns), lambda found: not found, "the backup PVCs released")
        assert group_state(backup, ns) is None
        wait_progressing(lambda: consistent_copy(backup, ns), lambda c: c == {}, "the backup ConsistentCopy gone")
        for volume in volumes:  # the data stays, Released
            pv = wait_progressing(lambda v=volume: core.read_persistent_volume(v),
                                  lambda pv: pv.status.phase == "Released", f"PV {volume} Released")  # fmt: skip
            core.delete_persistent_volume(pv.metadata.name)
            ldev = int(pv.spec.csi.volume_handle.rsplit("-", 1)[1], 16)
            array.DeleteLdev(pb.DeleteLdevRequest(id=ldev))
    core.delete_namespace(ns)


def members_by_claim(site: Site, namespace: str, group_snapshot: str) -> dict[str, str]:
    """The group's VolumeSnapshots, by the PVC each was taken of."""
    listed = objects.custom(site.api).list_namespaced_custom_object(
        SNAPSHOT_GROUP, SNAPSHOT_VERSION, namespace, "volumesnapshots"
    )
    return {
        item["spec"]["source"].get("persistentVolumeClaimName", ""): item["metadata"]["name"]
        for item in listed["items"]
        if (item.get("status") or {}).get("volumeGroupSnapshotName") == group_snapshot
    }


def test_a_group_snapshot_at_the_backup_gives_consistent_clones_while_orders_flow(site: Site, sites: Sites, ns: str):
    """The paper's analytics: while orders flow at the main site and copying goes on, a
    VolumeGroupSnapshot of the backup PVCs (cut at a journal sequence boundary of their
    group) restores into writable clones in which every sale has its stock change."""
    main, backup = ensure_operator(site), ensure_registrar(sites.backup)
    mounts = {}
    for name in ("stock", "sales"):
        objects.pvc(main.api, ns, name, "64Mi", SC)
        pv = objects.bound(main.api, ns, name)
        mounts[name] = main.kubelet.mount(pv, main.kubelet.attach(pv.metadata.name))
    orders = ecommerce.start(mounts["stock"], mounts["sales"], 600)
    version = objects.newest_served(backup.api, f"volumegroupsnapshots.{GROUP_SNAPSHOT_GROUP}")
    custom = objects.custom(backup.api)
    try:
        client.CoreV1Api(main.api).patch_namespace(ns, {"metadata": {"labels": LABEL}})
        wait_progressing(lambda: group_state(backup, ns), lambda s: s == "Secondary", "the backup group secondary")
        wait_progressing(lambda: consistent_copy_state(main, ns), lambda s: s == "Protected", "the main site Protected")
        started = time.monotonic()
        body = {
            "apiVersion": f"{GROUP_SNAPSHOT_GROUP}/{version}", "kind": "VolumeGroupSnapshot",
            "metadata": {"name": "analytics"},
            "spec": {"volumeGroupSnapshotClassName": SC, "source": {"selector": {"matchLabels": {MEMBER_LABEL: ns}}}},
        }  # fmt: skip
        custom.create_namespaced_custom_object(GROUP_SNAPSHOT_GROUP, version, ns, "volumegroupsnapshots", body)
        objects.ready_to_use(backup.api, GROUP_SNAPSHOT_GROUP, version, "volumegroupsnapshots", ns, "analytics")
        print(f"group snapshot at the backup -> ready: {time.monotonic() - started:.1f} s")
        snapshots = objects.await_object(
            lambda: members_by_claim(backup, ns, "analytics"),
            lambda found: set(found) == {"stock", "sales"},
            "the group's VolumeSnapshots",
        )
        clones = {}
        for claim, snapshot_name in snapshots.items():
            objects.ready_to_use(backup.api, SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshots", ns, snapshot_name)
            objects.pvc(backup.api, ns, f"analytics-{claim}", "64Mi", SC,
                        source=(SNAPSHOT_GROUP, "VolumeSnapshot", snapshot_name))  # fmt: skip
            pv = objects.bound(backup.api, ns, f"analytics-{claim}")
            clones[claim] = backup.kubelet.mount(pv, backup.kubelet.attach(pv.metadata.name))
        changes, sold = ecommerce.check(clones["stock"], clones["sales"])  # raises if a sale lacks its stock change
        assert sold > 0 and changes >= sold, (changes, sold)
        (clones["sales"] / "analytics-was-here").write_text("a writable clone\n")  # analytics may write
        assert orders.poll() is None  # the orders never stopped
        print(f"analytics on the backup's clones: {sold} sales, {changes} stock changes, consistent")
    finally:
        assert ecommerce.stop(orders) == 0
        backup.kubelet.release_all()
        for claim in ("stock", "sales"):
            with contextlib.suppress(client.ApiException):
                client.CoreV1Api(backup.api).delete_namespaced_persistent_volume_claim(f"analytics-{claim}", ns)
        with contextlib.suppress(client.ApiException):
            custom.delete_namespaced_custom_object(
                GROUP_SNAPSHOT_GROUP, version, ns, "volumegroupsnapshots", "analytics"
            )
        objects.await_object(lambda: custom.list_namespaced_custom_object(SNAPSHOT_GROUP, SNAPSHOT_VERSION, ns,
                                                                          "volumesnapshots")["items"],
                             lambda items: not items, "the backup's snapshots deleted")  # fmt: skip
        unlabel_and_clean_backup(main, backup, ns)


def consistent_copy(site: Site, ns: str) -> dict:
    """The namespace's ConsistentCopy status at `site` ({} while there is none)."""
    return DrSite(site.api, site.name).consistent_copy(ns)


def consistent_copy_state(site: Site, ns: str) -> str:
    return consistent_copy(site, ns).get("state", "")


def unlabel_and_clean_backup(main: Site, backup: Site, ns: str) -> None:
    """Stop replication at the main site; at the backup, delete the Released PVs, the S-VOLs and the namespace."""
    core = client.CoreV1Api(backup.api)
    client.CoreV1Api(main.api).patch_namespace(ns, {"metadata": {"labels": {key: None for key in LABEL}}})
    wait_progressing(lambda: [c for c in backup_claims(backup, ns) if not c.startswith("analytics-")],
                     lambda found: not found, "the backup PVCs released")  # fmt: skip
    with backup.array_channel() as channel:
        array = pb_grpc.ArrayStub(channel)
        for pv in core.list_persistent_volume(
            label_selector="app.kubernetes.io/managed-by=consistentcopy-backup-site"
        ).items:
            if (pv.spec.claim_ref and pv.spec.claim_ref.namespace) != ns:
                continue
            wait_progressing(lambda v=pv.metadata.name: core.read_persistent_volume(v).status.phase,
                             lambda phase: phase == "Released", f"PV {pv.metadata.name} Released")  # fmt: skip
            core.delete_persistent_volume(pv.metadata.name)
            array.DeleteLdev(pb.DeleteLdevRequest(id=int(pv.spec.csi.volume_handle.rsplit("-", 1)[1], 16)))
    core.delete_namespace(ns)
