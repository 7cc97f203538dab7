"""The registrar's loop against a real API server (the e2e harness's control plane: etcd,
kube-apiserver, kube-controller-manager) and two linked array processes: a pass that fails
is retried in full, with nothing new from the array or the cluster to prompt it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ccopy.waiting import wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_common.array_client import ArrayClient
from replication_sidecar.backup_site.kube import BackupCluster
from replication_sidecar.backup_site.model import PVC_NAME, PVC_NAMESPACE, RegistrarConfig, SVol
from replication_sidecar.backup_site.reconcile import pv_name
from replication_sidecar.backup_site.runner import Registrar
from replication_sidecar.group_replication import OBJECT_NAME, REPLICATION, VGRS
from tests.e2e.control_plane import CONTROL_PLANE_BINARIES, K8S_BIN, K8S_CRDS, ControlPlane, missing_binaries
from tests.e2e.processes import Processes
from tests.replication.conftest import Sites, start_sites, stop_sites

CRD = Path(__file__).parents[3] / "charts" / "consistent-copy" / "crds" / "consistentcopy.io_consistentcopies.yaml"
NS, PVC = "shop", "stock"
HOLD = "test.consistentcopy.io/hold"  # keeps the user's PVC Terminating until the test lets it go


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """The backup site's control plane, with the csi-addons CRDs and our ConsistentCopy."""
    missing = missing_binaries(CONTROL_PLANE_BINARIES)
    if missing or not any(K8S_CRDS.glob("*.yaml")):
        pytest.skip(f"{', '.join(missing) or 'CRDs'} not under {K8S_BIN}, {K8S_CRDS}: run ../shared/k8s/install.sh")
    processes = Processes(tmp_path / "logs")
    try:
        started = ControlPlane("backup", tmp_path / "k8s", processes).start()
        crd = yaml.safe_load(CRD.read_text())
        client.ApiextensionsV1Api(started.api).create_custom_resource_definition(crd)
        started.wait_established([crd["metadata"]["name"]])
        yield started
    finally:
        # The stopped registrar's watch threads (in this process) still hold their streams, and
        # the API server waits for them after SIGTERM: it is killed after 5 s, not the default 30.
        processes.stop_all(timeout=5)


@pytest.fixture
def arrays(tmp_path: Path) -> Iterator[Sites]:
    pair = start_sites(tmp_path)  # main/, backup/, their logs: apart from the plane's k8s/ and logs/
    yield pair
    stop_sites(pair)


class CreatePvFailsOnce(client.CoreV1Api):
    """The registrar's core client: its first create of a PV answers as an API server in
    trouble does (500); it counts the full passes (each lists the registrar's PVs once)."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(api)
        self.pv_creates = 0
        self.full_passes = 0

    def create_persistent_volume(self, body: Any, **kwargs: Any) -> Any:
        self.pv_creates += 1
        if self.pv_creates == 1:
            raise ApiException(status=500, reason="Internal Server Error")
        return super().create_persistent_volume(body, **kwargs)

    def list_persistent_volume(self, **kwargs: Any) -> Any:
        self.full_passes += 1
        return super().list_persistent_volume(**kwargs)


class CountedCluster(BackupCluster):
    """Counts every pass, full or not: each reads the array's S-VOLs once."""

    passes = 0

    def svols(self) -> tuple[SVol, ...]:
        self.passes += 1
        return super().svols()


def registered(api: client.ApiClient, handle: str) -> dict[str, Any]:
    """What the registrar made of the S-VOL: its PV, the PVC's phase and volume, its group."""
    core, found = client.CoreV1Api(api), {}
    names = {pv.metadata.name for pv in core.list_persistent_volume().items}
    found["pv"] = pv_name_of(handle) in names
    claims = {c.metadata.name: c for c in core.list_namespaced_persistent_volume_claim(NS).items}
    claim = claims.get(PVC)
    found["pvc"] = (claim.status.phase, claim.spec.volume_name) if claim is not None else None
    groups = client.CustomObjectsApi(api).list_namespaced_custom_object(*REPLICATION, NS, VGRS)["items"]
    found["group"] = [g["metadata"]["name"] for g in groups]
    return found


def pv_name_of(handle: str) -> str:
    return pv_name(SVol(handle, 0, {}, True))


def user_pvc(core: client.CoreV1Api) -> None:
    """The user's PVC of the backup PVC's name, held by the test's finalizer once deleted."""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    spec = client.V1PersistentVolumeClaimSpec(
        access_modes=["ReadWriteOnce"], storage_class_name="none",
        resources=client.V1VolumeResourceRequirements(requests={"storage": "8Mi"}),
    )  # fmt: skip
    claim = client.V1PersistentVolumeClaim(metadata=client.V1ObjectMeta(name=PVC, finalizers=[HOLD]), spec=spec)
    core.create_namespaced_persistent_volume_claim(NS, claim)


def pair(arrays: Sites) -> None:
    """A P-VOL with the main PVC's labels, paired: its S-VOL at the backup array, in sync."""
    labels = {PVC_NAMESPACE: NS, PVC_NAME: PVC}
    pvol = arrays.main_stub.CreateLdev(pb.CreateLdevRequest(name=PVC, size_bytes=8 << 20, labels=labels))
    arrays.main_stub.CreatePair(pb.CreatePairRequest(group_name=NS, pvol_id=pvol.id, journal_capacity_bytes=8 << 20))
    arrays.wait_in_sync(NS)


def wait_settled(faulty: CreatePvFailsOnce, cluster: CountedCluster) -> None:
    """Until the registrar made five passes in a row without listing the cluster: every watch
    event so far has had its full pass."""
    quiet_from: dict[int, int] = {}  # full passes so far -> the pass count when that number was first seen

    def settled(mark: tuple[int, int]) -> bool:
        full, passes = mark
        return passes - quiet_from.setdefault(full, passes) >= 5

    wait_progressing(lambda: (faulty.full_passes, cluster.passes), settled, "the registrar settled")


def test_a_pass_whose_first_write_fails_is_retried_in_full(plane: ControlPlane, arrays: Sites, caplog):
    """A user's PVC holds the name of a backup PVC (NameClash). The user deletes it; once the
    registrar has settled, its last finalizer goes: one watch event (DELETED). The full pass
    it makes fails at its first write (the PV: 500), so nothing it did makes another event,
    and the array has nothing new either. The registrar must retry that pass in full (the
    old loop applied only status actions from the failed pass's observation, the PV never
    came, and this test stalled)."""
    core = client.CoreV1Api(plane.api)
    user_pvc(core)
    pair(arrays)
    array = ArrayClient(arrays.backup.api_address)
    cluster = CountedCluster(plane.api, array)
    cluster.core = faulty = CreatePvFailsOnce(plane.api)
    registrar = Registrar(plane.api, cluster, RegistrarConfig(), interval=0.2, status_interval=1.0)
    worker = threading.Thread(target=registrar.run, name="register", daemon=True)
    (svol,) = BackupCluster.svols(cluster)  # not counted as a pass
    caplog.set_level(logging.INFO)
    worker.start()
    try:
        wait_progressing(lambda: [e.reason for e in core.list_namespaced_event(NS).items],
                         lambda reasons: "NameClash" in reasons, "the NameClash warning")  # fmt: skip
        core.delete_namespaced_persistent_volume_claim(PVC, NS)
        wait_progressing(lambda: core.read_namespaced_persistent_volume_claim(PVC, NS).metadata.finalizers,
                         lambda held: held == [HOLD], "the user's PVC Terminating, held by the test alone")  # fmt: skip
        wait_settled(faulty, cluster)
        assert faulty.pv_creates == 0  # nothing made while the name was taken

        core.patch_namespaced_persistent_volume_claim(PVC, NS, {"metadata": {"finalizers": None}})  # now gone
        found = wait_progressing(
            lambda: registered(plane.api, svol.volume_handle),
            lambda f: f["pv"] and f["pvc"] == ("Bound", pv_name_of(svol.volume_handle)) and f["group"] == [OBJECT_NAME],
            "the S-VOL registered after the failed pass",
        )  # fmt: skip
        assert BackupCluster.svols(cluster) == (svol,)  # the array had nothing new: the retry came from the failure
    finally:
        registrar.stop.set()
        worker.join(60)
        array.close()
    assert found["pv"] and faulty.pv_creates == 2  # the failed create, then the retried one
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reconcile_failed")]
    assert failed and "site=backup attempt=1 retry_in=2s" in failed[0] and "API server 500" in failed[0], failed
