"""PVs appear at the backup site: the registrar, with only the backup cluster and its own
array, turns every S-VOL into a PV and a PVC of the main PVC's name, grouped by a secondary
VolumeGroupReplication; when the main site ends the pairs, the PVCs go and the PVs stay,
Released, with the data."""

from __future__ import annotations

import time

import grpc
import pytest
from kubernetes import client

from ccopy.waiting import wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from replication_sidecar.namespace_operator.model import MEMBER_LABEL, OBJECT_NAME
from tests.e2e import objects
from tests.e2e.conftest import SC, Sites
from tests.e2e.namespace_operator import REPLICATION, ensure_operator, ensure_registrar
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
        vgr = custom.get_namespaced_custom_object(*REPLICATION, ns, "volumegroupreplications", OBJECT_NAME)
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
    with grpc.insecure_channel(backup.array_api) as channel:
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

        volumes = [c.spec.volume_name for c in claims.values()]
        client.CoreV1Api(main.api).patch_namespace(ns, {"metadata": {"labels": {key: None for key in LABEL}}})
        wait_progressing(lambda: backup_claims(backup, ns), lambda found: not found, "the backup PVCs released")
        assert group_state(backup, ns) is None
        for volume in volumes:  # the data stays, Released
            pv = wait_progressing(lambda v=volume: core.read_persistent_volume(v),
                                  lambda pv: pv.status.phase == "Released", f"PV {volume} Released")  # fmt: skip
            core.delete_persistent_volume(pv.metadata.name)
            ldev = int(pv.spec.csi.volume_handle.rsplit("-", 1)[1], 16)
            array.DeleteLdev(pb.DeleteLdevRequest(id=ldev))
    core.delete_namespace(ns)
