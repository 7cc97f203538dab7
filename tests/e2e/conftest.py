"""Two sites, each a real control plane with the chart installed, their arrays linked: on
real nodes (tests/kubelet/sites.py) where the kit is there, else on processes.

Started once for the e2e tests and stopped at the end. Where the Kubernetes binaries
cannot be had (a clone without ../shared/k8s), the tests skip and say how to get them.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

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
from tests.e2e.site import Site, Sites, kubernetes_missing
from tests.kubelet.site import NodeSite
from tests.kubelet.sites import node_sites, real_nodes_missing

SC = "ccopy"  # the name of every class the flows use: StorageClass, snapshot classes
SNAPSHOT_GROUP, SNAPSHOT_VERSION = objects.SNAPSHOT
GROUP_SNAPSHOT_GROUP = GROUP_SNAPSHOTS


@pytest.hookimpl(trylast=True)  # after any reordering plugin (pytest-randomly shuffles)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read what the whole e2e session did run after every other e2e test, before
    any test of another package: the sites live as long as this package's tests."""
    here = Path(__file__).parent
    last = [item for item in items if item.get_closest_marker("after_all_e2e")]
    rest = [item for item in items if item not in last]
    ours = [i for i, item in enumerate(rest) if here in Path(item.path).parents]
    at = ours[-1] + 1 if ours else len(rest)
    items[:] = rest[:at] + last + rest[at:]


def require_kubernetes() -> None:
    if why := kubernetes_missing():
        pytest.skip(why)


@pytest.fixture(scope="package")
def sites(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Sites]:
    """Two sites on real nodes, where they can be had: a kubelet runs the chart's Pods and the
    flows' Pods. Elsewhere on processes (the harness runs each container of the chart's Pods,
    and makes the kubelet's calls itself), saying why."""
    require_root()
    require_tools("nbdfuse", "losetup", "mkfs.ext4", "fusermount3", "openssl")
    require_kubernetes()
    folder = tmp_path_factory.mktemp("e2e")
    if why := real_nodes_missing():
        warnings.warn(pytest.PytestWarning(f"e2e flows run on processes, not on real nodes: {why}"), stacklevel=1)
        yield from process_sites(folder)
    else:
        with node_sites(request.getfixturevalue("images"), folder) as both:
            yield both


def process_sites(folder: Path) -> Iterator[Sites]:
    main_api, backup_api = (f"127.0.0.1:{port}" for port in free_ports(2))
    main = Site("main", folder / "main", serial=31001, array_api=main_api, remote=backup_api)
    backup = Site("backup", folder / "backup", serial=32002, array_api=backup_api, remote=main_api)
    try:
        yield Sites(main.start(), backup.start())
    finally:
        backup.stop()
        main.stop()
        left = main.leftovers() + backup.leftovers()
        assert not left, f"left after the sites stopped: {left}"


@pytest.fixture(scope="package")
def site(sites: Sites) -> Site | NodeSite:
    """The main site (the chart made the classes every flow uses when the site started)."""
    return sites.main


@pytest.fixture
def array(site: Site) -> Iterator[pb_grpc.ArrayStub]:
    with site.array_channel() as channel:
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
