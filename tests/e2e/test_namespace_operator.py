"""The paper's flow on a real API server: one label on a namespace, and every volume of it
is copied to the backup array as one consistency group while the e-commerce load runs.

The operator runs as its ServiceAccount with the chart's rules; the real csi-addons
manager and sidecar drive our replication server; the arrays are real and linked.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from ccopy import ecommerce
from ccopy.waiting import wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from replication_sidecar.namespace_operator.model import (
    GROUP,
    MEMBER_LABEL,
    OBJECT_NAME,
    PLURAL,
    RPO_ANNOTATION,
    VERSION,
)
from tests.e2e import objects
from tests.e2e.conftest import SC, Sites, ldev_of
from tests.e2e.namespace_operator import ensure_operator, kubectl
from tests.e2e.site import Site

pytestmark = pytest.mark.timeout(900)
LABEL = {"consistentcopy.io/backup": "ConsistentCopyToCloud"}


@pytest.fixture(scope="module")
def operator(site: Site) -> Site:
    return ensure_operator(site)


def consistent_copy(site: Site, ns: str) -> dict:
    try:
        return objects.custom(site.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, OBJECT_NAME)
    except client.ApiException as exc:
        if exc.status == 404:
            return {}
        raise


def status_of(copy: dict) -> dict:
    return copy.get("status") or {}


def conditions(copy: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (copy.get("status") or {}).get("conditions", [])}


def wait_copy(site: Site, ns: str, done, what: str) -> dict:
    return wait_progressing(
        lambda: consistent_copy(site, ns), done, what,
        progress=lambda c: ((c.get("status") or {}).get("state"), (c.get("status") or {}).get("volumeCount"),
                            (c.get("status") or {}).get("message")),
    )  # fmt: skip


def group_pairs(array: pb_grpc.ArrayStub, handles: set[int]) -> list[pb.Pair]:
    return [p for p in array.ListPairs(pb.ListPairsRequest()).pairs if p.local_ldev_id in handles]


def label(site: Site, ns: str, labels: dict[str, str | None]) -> None:
    client.CoreV1Api(site.api).patch_namespace(ns, {"metadata": {"labels": labels}})


@pytest.fixture
def shop(operator: Site, ns: str) -> Iterator[dict]:
    """The namespace with a stock and a sales PVC, mounted by the node plugin, with orders flowing."""
    site = operator
    client.CoreV1Api(site.api).patch_namespace(ns, {"metadata": {"annotations": {RPO_ANNOTATION: "5"}}})
    mounts = {}
    for name in ("stock", "sales"):
        objects.pvc(site.api, ns, name, "64Mi", SC)
        pv = objects.bound(site.api, ns, name)
        mounts[name] = site.kubelet.mount(pv, site.kubelet.attach(pv.metadata.name))
    orders = ecommerce.start(mounts["stock"], mounts["sales"], 600)
    try:
        yield mounts
    finally:
        ecommerce.stop(orders)
        label(site, ns, {key: None for key in LABEL})
        wait_copy(site, ns, lambda c: not c, "the ConsistentCopy removed")


def test_one_label_makes_the_namespace_one_consistency_group_and_unlabelling_ends_it(operator, sites: Sites, ns, shop):
    site, backup = operator, sites.backup_array()
    with site.array_channel() as channel:
        array = pb_grpc.ArrayStub(channel)
        handles = {ldev_of(array, objects.bound(site.api, ns, name)).id for name in ("stock", "sales")}
        started = time.monotonic()
        label(site, ns, LABEL)
        protected = wait_copy(site, ns, lambda c: (c.get("status") or {}).get("state") == "Protected",
                              "the namespace Protected")  # fmt: skip
        label_to_pair = time.monotonic() - started
        pairs = group_pairs(array, handles)
        assert len(pairs) == 2 and {p.state for p in pairs} == {pb.PAIR}
        assert len({p.group_name for p in pairs}) == 1  # one journal group: one consistency group
        status = protected["status"]
        assert status["journalGroup"] == pairs[0].group_name and status["volumeCount"] == 2
        assert {(v["pvc"], v["pairState"]) for v in status["volumes"]} == {("stock", "PAIR"), ("sales", "PAIR")}
        assert conditions(protected) == {"Ready": "True", "RPOMet": "True", "JournalHealthy": "True",
                                         "AllVolumesProtected": "True"}  # fmt: skip
        members = client.CoreV1Api(site.api).list_namespaced_persistent_volume_claim(ns).items
        assert all(c.metadata.labels.get(MEMBER_LABEL) == ns for c in members)
        listed = kubectl(site, "get", "consistentcopy", "-A")
        assert listed.splitlines()[0].split() == ["NAMESPACE", "NAME", "SITE", "STATE", "VOLUMES",
                                                  "RECOVERY-POINT-AGE", "RPO", "AGE"]  # fmt: skip
        rows = [line.split()[:5] for line in listed.splitlines()[1:]]
        assert [row for row in rows if row[0] == ns] == [[ns, OBJECT_NAME, "main", "Protected", "2"]]
        print(f"label -> Protected (2 PVCs in PAIR): {label_to_pair:.1f} s\n{listed}")
        print(kubectl(site, "get", "consistentcopy", "-n", ns, OBJECT_NAME, "-o", "yaml"))

        objects.pvc(site.api, ns, "audit", "64Mi", SC)  # a PVC made later joins the same group
        audit = ldev_of(array, objects.bound(site.api, ns, "audit")).id
        joined = wait_copy(site, ns, lambda c: status_of(c).get("volumeCount") == 3
                           and status_of(c).get("state") == "Protected", "the third PVC joining")  # fmt: skip
        later = group_pairs(array, handles | {audit})
        assert len(later) == 3 and len({p.group_name for p in later}) == 1
        assert joined["status"]["journalGroup"] == pairs[0].group_name

        cut_link(sites)  # the backup stops pulling; orders go on: the recovery point ages past the RPO
        try:
            at_risk = wait_copy(site, ns, lambda c: conditions(c).get("RPOMet") == "False", "RPOMet False")
            assert at_risk["status"]["state"] == "AtRisk"
        finally:
            restore_link(sites)
        wait_copy(site, ns, lambda c: conditions(c).get("RPOMet") == "True", "RPOMet True again")
        print(kubectl(site, "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=Namespace"))
        events = client.CoreV1Api(site.api).list_namespaced_event(ns).items
        reasons = {e.reason for e in events if e.involved_object.kind == "Namespace"}
        assert {"VolumeJoining", "Replicating", "RecoveryPointTooOld", "WithinRPO"} <= reasons, reasons

        svols = [p.remote_ldev_id for p in later]
        label(site, ns, {key: None for key in LABEL})
        wait_copy(site, ns, lambda c: not c, "the ConsistentCopy removed")
        wait_progressing(lambda: group_pairs(array, handles | {audit}), lambda left: not left, "pairs ended")
        assert not [p for p in backup.ListPairs(pb.ListPairsRequest()).pairs if p.local_ldev_id in svols]
        for svol in svols:  # the backup keeps its data
            assert backup.GetLdev(pb.GetLdevRequest(id=svol)).size_bytes == 64 << 20
            backup.DeleteLdev(pb.DeleteLdevRequest(id=svol))
        claims = client.CoreV1Api(site.api).list_namespaced_persistent_volume_claim(ns).items
        assert not [c.metadata.name for c in claims if MEMBER_LABEL in (c.metadata.labels or {})]


def cut_link(sites: Sites) -> None:
    assert sites.backup.array is not None and sites.backup.array.process is not None
    os.kill(sites.backup.array.process.pid, signal.SIGSTOP)


def restore_link(sites: Sites) -> None:
    assert sites.backup.array is not None and sites.backup.array.process is not None
    os.kill(sites.backup.array.process.pid, signal.SIGCONT)
