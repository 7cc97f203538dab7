"""csi-addons on a real API server: the sidecar registers, the manager reaches our
replication server through it, and a VolumeReplication of a PVC pairs its LDEV with
an S-VOL on the backup site's array.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from ccopy.waiting import replication_progress, wait_progressing
from ccopy_api import array_pb2 as pb
from tests.e2e import objects
from tests.e2e.conftest import SC, ldev_of
from tests.e2e.csi_addons import DRIVER_NAMESPACE, wait_connected

pytestmark = pytest.mark.timeout(900)
REPLICATION = ("replication.storage.openshift.io", "v1alpha1")
SECRET_KEYS = "replication.storage.openshift.io/replication-secret-"


def test_sidecar_registers_and_manager_connects_at_both_sites(sites):
    for site in (sites.main, sites.backup):
        assert site.csi_addons is not None
        node = wait_connected(site, site.csi_addons)
        assert node["spec"]["driver"]["name"] == site.driver
        assert node["spec"]["driver"]["nodeID"] == site.node_name
        capabilities = node["status"]["capabilities"]
        for wanted in ("service.CONTROLLER_SERVICE", "volume_replication.VOLUME_REPLICATION"):
            assert wanted in capabilities, capabilities
        lease = client.CoordinationV1Api(site.api).read_namespaced_lease(
            site.driver.replace(".", "-") + "-csi-addons", DRIVER_NAMESPACE
        )
        assert lease.spec.holder_identity == site.csi_addons.pod  # the sidecar serves replication calls


def test_volume_replication_pairs_a_pvc_with_the_backup_array(site, sites, ns, array):
    group, version = REPLICATION
    custom, core = objects.custom(site.api), client.CoreV1Api(site.api)
    assert site.csi_addons is not None
    wait_connected(site, site.csi_addons)
    secret = f"replication-{ns}"  # the sidecar reads the class's secret even with nothing in it
    core.create_namespaced_secret(DRIVER_NAMESPACE, client.V1Secret(metadata=client.V1ObjectMeta(name=secret)))
    custom.create_cluster_custom_object(
        group, version, "volumereplicationclasses",
        {"apiVersion": f"{group}/{version}", "kind": "VolumeReplicationClass", "metadata": {"name": ns},
         "spec": {"provisioner": site.driver,
                  "parameters": {"mode": "async", "rpoSeconds": "30", SECRET_KEYS + "name": secret,
                                 SECRET_KEYS + "namespace": DRIVER_NAMESPACE}}},
    )  # fmt: skip
    try:
        objects.pvc(site.api, ns, "sales", "64Mi", SC)
        ldev = ldev_of(array, objects.bound(site.api, ns, "sales"))
        custom.create_namespaced_custom_object(
            group, version, ns, "volumereplications",
            {"apiVersion": f"{group}/{version}", "kind": "VolumeReplication", "metadata": {"name": "sales"},
             "spec": {"volumeReplicationClass": ns, "replicationState": "primary",
                      "dataSource": {"apiGroup": "", "kind": "PersistentVolumeClaim", "name": "sales"}}},
        )  # fmt: skip
        replication = objects.await_object(
            lambda: custom.get_namespaced_custom_object(group, version, ns, "volumereplications", "sales"),
            lambda vr: (vr.get("status") or {}).get("state") == "Primary",
            "VolumeReplication primary",
        )
        completed = {c["type"]: c["status"] for c in replication["status"]["conditions"]}
        assert completed.get("Completed") == "True", replication["status"]

        backup = sites.backup_array()
        pairs = wait_progressing(
            lambda: [p for p in array.ListPairs(pb.ListPairsRequest()).pairs if p.local_ldev_id == ldev.id],
            lambda found: len(found) == 1 and found[0].state == pb.PAIR,
            f"LDEV {ldev.display_id} paired with the backup array",
            progress=lambda found: replication_progress(*(array.GetJournalGroup(
                pb.GetJournalGroupRequest(name=p.group_name)) for p in found)),
        )  # fmt: skip
        pair = pairs[0]
        backup_serial = backup.GetArrayInfo(pb.GetArrayInfoRequest()).serial
        assert pair.remote_serial == backup_serial
        secondary = backup.GetLdev(pb.GetLdevRequest(id=pair.remote_ldev_id))
        assert secondary.size_bytes == ldev.size_bytes

        custom.delete_namespaced_custom_object(group, version, ns, "volumereplications", "sales")
        objects.gone(
            lambda: [vr["metadata"]["name"] for vr in custom.list_namespaced_custom_object(
                group, version, ns, "volumereplications")["items"]],
            "sales", "VolumeReplication",
        )  # fmt: skip
        left = [p for p in array.ListPairs(pb.ListPairsRequest()).pairs if p.local_ldev_id == ldev.id]
        assert not left, f"DisableVolumeReplication left the pair: {left}"
        at_backup = [p for p in backup.ListPairs(pb.ListPairsRequest()).pairs if p.local_ldev_id == secondary.id]
        assert not at_backup, f"the backup array still pairs the S-VOL: {at_backup}"
        groups = [g.name for g in backup.ListJournalGroups(pb.ListJournalGroupsRequest()).groups]
        assert pair.group_name not in groups, f"the backup array kept the journal group: {groups}"
        kept = backup.GetLdev(pb.GetLdevRequest(id=secondary.id))  # the backup keeps its copy, an ordinary LDEV
        assert not kept.read_only
        backup.DeleteLdev(pb.DeleteLdevRequest(id=secondary.id))
    finally:
        custom.delete_cluster_custom_object(group, version, "volumereplicationclasses", ns)
        core.delete_namespaced_secret(secret, DRIVER_NAMESPACE)
