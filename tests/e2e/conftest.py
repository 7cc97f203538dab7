"""Two sites, each a real control plane with the storage sidecars, their arrays linked.

Started once for the e2e tests (about 25 s) and stopped by PID at the end. Where the
Kubernetes binaries cannot be had (a clone without ../shared/k8s), the tests skip and
say how to get them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from kubernetes import client

from ccopy.launch import free_ports
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common import ids
from csi_driver.volumes import LABEL_PREFIX
from replication_sidecar.dr.drill import GROUP_SNAPSHOTS
from tests.conftest import require_root, require_tools
from tests.e2e import objects
from tests.e2e.control_plane import CONTROL_PLANE_BINARIES, K8S_BIN, K8S_CRDS, missing_binaries
from tests.e2e.csi_addons import ADDONS_BINARIES
from tests.e2e.site import SIDECAR_BINARIES, Site

SC = "ccopy"  # the name of every class the flows use: StorageClass, snapshot classes
SNAPSHOT_GROUP, SNAPSHOT_VERSION = objects.SNAPSHOT
GROUP_SNAPSHOT_GROUP = GROUP_SNAPSHOTS


@dataclass
class Sites:
    main: Site
    backup: Site

    def backup_array(self) -> pb_grpc.ArrayStub:
        """A client of the backup site's array (its channel lives as long as the sites)."""
        if not hasattr(self, "_backup_channel"):
            self._backup_channel = grpc.insecure_channel(self.backup.array_api)
        return pb_grpc.ArrayStub(self._backup_channel)


@pytest.hookimpl(trylast=True)  # after any reordering plugin (pytest-randomly shuffles)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read what the whole e2e session did run after all the others."""
    last = [item for item in items if item.get_closest_marker("after_all_e2e")]
    items[:] = [item for item in items if item not in last] + last


def require_kubernetes() -> None:
    missing = missing_binaries(CONTROL_PLANE_BINARIES + SIDECAR_BINARIES + ADDONS_BINARIES + ("helm", "kubectl"))
    if missing or not any(K8S_CRDS.glob("*.yaml")):
        pytest.skip(
            f"Kubernetes binaries or CRDs not found ({', '.join(missing) or 'CRDs'} under {K8S_BIN}, {K8S_CRDS}): "
            "run ../shared/k8s/install.sh (make test does) or set CCOPY_K8S_BIN and CCOPY_K8S_CRDS"
        )


@pytest.fixture(scope="session")
def sites(tmp_path_factory) -> Iterator[Sites]:
    require_root()
    require_tools("nbdfuse", "losetup", "mkfs.ext4", "fusermount3", "openssl")
    require_kubernetes()
    main_api, backup_api = (f"127.0.0.1:{port}" for port in free_ports(2))
    folder = tmp_path_factory.mktemp("e2e")
    main = Site("main", folder / "main", serial=31001, array_api=main_api, remote=backup_api)
    backup = Site("backup", folder / "backup", serial=32002, array_api=backup_api, remote=main_api)
    try:
        yield Sites(main.start(), backup.start())
    finally:
        backup.stop()
        main.stop()
        left = main.leftovers() + backup.leftovers()
        assert not left, f"left after the sites stopped: {left}"


@pytest.fixture(scope="session")
def site(sites: Sites) -> Site:
    """The main site (the chart made the classes every flow uses when the site started)."""
    return sites.main


@pytest.fixture
def array(site: Site) -> Iterator[pb_grpc.ArrayStub]:
    with grpc.insecure_channel(site.array_api) as channel:
        yield pb_grpc.ArrayStub(channel)


@pytest.fixture
def ns(site: Site, array: pb_grpc.ArrayStub) -> Iterator[str]:
    """A namespace of this test's own; at the end its objects are deleted and the array
    must hold nothing of it: no LDEV, no snapshot, no snapshot group."""
    name = f"flow-{uuid.uuid4().hex[:8]}"
    objects.namespace(site.api, name)
    yield name
    site.kubelet.release_all()
    delete_everything(site, name)
    ldevs = [ldev.name for ldev in array.ListLdevs(pb.ListLdevsRequest()).ldevs if of_namespace(ldev, name)]
    assert not ldevs, f"LDEVs of {name} left on the array: {ldevs}"
    assert not array.ListSnapshots(pb.ListSnapshotsRequest()).snapshots, "snapshots left on the array"
    assert not array.ListSnapshotGroups(pb.ListSnapshotGroupsRequest()).groups, "snapshot groups left on the array"


def ldev_of(array: pb_grpc.ArrayStub, pv: client.V1PersistentVolume) -> pb.Ldev:
    """The LDEV behind a PV (of this array: its volume handle names the array's serial)."""
    serial = array.GetArrayInfo(pb.GetArrayInfoRequest()).serial
    parsed = ids.parse(pv.spec.csi.volume_handle, "volume", serial)
    assert parsed is not None, f"{pv.spec.csi.volume_handle} is not a volume of array {serial}"
    return array.GetLdev(pb.GetLdevRequest(id=parsed.number))


def of_namespace(ldev: pb.Ldev, namespace: str) -> bool:
    return ldev.labels.get(LABEL_PREFIX + "k8s-pvc/namespace") == namespace


def delete_everything(site: Site, namespace: str) -> None:
    """Group snapshots, snapshots, then PVCs; waits until their PVs and contents are gone."""
    custom, core = objects.custom(site.api), client.CoreV1Api(site.api)
    version = objects.newest_served(site.api, f"volumegroupsnapshots.{GROUP_SNAPSHOT_GROUP}")
    kinds = (
        (GROUP_SNAPSHOT_GROUP, version, "volumegroupsnapshots"),
        (SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshots"),
    )
    for group, kind_version, plural in kinds:
        for item in custom.list_namespaced_custom_object(group, kind_version, namespace, plural)["items"]:
            custom.delete_namespaced_custom_object(group, kind_version, namespace, plural, item["metadata"]["name"])
    for group, kind_version, plural in ((GROUP_SNAPSHOT_GROUP, version, "volumegroupsnapshotcontents"),
                                        (SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents")):  # fmt: skip
        objects.await_object(
            lambda g=group, v=kind_version, p=plural: custom.list_cluster_custom_object(g, v, p)["items"],
            lambda items: not items, f"{plural} deleted",
        )  # fmt: skip
    claims = core.list_namespaced_persistent_volume_claim(namespace).items
    for claim in claims:
        core.delete_namespaced_persistent_volume_claim(claim.metadata.name, namespace)
    volumes = {claim.spec.volume_name for claim in claims if claim.spec.volume_name}
    objects.await_object(
        lambda: {pv.metadata.name for pv in core.list_persistent_volume().items},
        lambda names: not names & volumes, f"PVs of {namespace} deleted",
    )  # fmt: skip
