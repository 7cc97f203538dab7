"""The paper's flow with every Pod of the chart run by a kubelet, at two sites: an application
writes on a PVC at the main site, one label on its namespace, and the namespace operator (a
Pod at the main site) makes it one consistency group copied to the backup array, where the
registrar (a Pod at the backup site) makes the PVC of the same name, Bound."""

from __future__ import annotations

from kubernetes import client

from replication_sidecar.consistent_copy import GROUP, PLURAL, VERSION
from replication_sidecar.namespace_operator.model import MEMBER_LABEL, OBJECT_NAME
from tests.e2e.objects import await_object
from tests.e2e.site import Sites
from tests.kubelet.app import new_app
from tests.kubelet.conftest import kubectl

LABEL = {"consistentcopy.io/backup": "ConsistentCopyToCloud"}


def test_one_label_and_the_applications_volume_is_copied_to_the_backup_site(node_sites: Sites):
    main, backup = node_sites.main, node_sites.backup
    app = new_app(main)
    assert app.said(app.running_pod()) == f"first={app.namespace} starts=1 fs=ext4"
    client.CoreV1Api(main.api).patch_namespace(app.namespace, {"metadata": {"labels": LABEL}})
    custom = client.CustomObjectsApi(main.api)

    def copy() -> dict:
        try:
            return custom.get_namespaced_custom_object(GROUP, VERSION, app.namespace, PLURAL, OBJECT_NAME)
        except client.ApiException as exc:
            if exc.status == 404:
                return {}
            raise

    protected = await_object(copy, lambda found: (found.get("status") or {}).get("state") == "Protected",
                             f"{app.namespace} Protected")  # fmt: skip
    assert [(v["pvc"], v["pairState"]) for v in protected["status"]["volumes"]] == [("data", "PAIR")]

    core = client.CoreV1Api(backup.api)

    def backup_claims() -> dict[str, client.V1PersistentVolumeClaim]:
        try:
            return {c.metadata.name: c for c in core.list_namespaced_persistent_volume_claim(app.namespace).items}
        except client.ApiException as exc:
            if exc.status == 404:
                return {}
            raise

    claims = await_object(backup_claims, lambda found: "data" in found and found["data"].status.phase == "Bound",
                          "the application's PVC bound at the backup site")  # fmt: skip
    assert claims["data"].metadata.labels[MEMBER_LABEL] == app.namespace
    print(kubectl(main, "get", "consistentcopy", "-A"))
    print(kubectl(backup, "get", "pvc,pods", "-A", "-o", "wide"))
    client.CoreV1Api(main.api).patch_namespace(app.namespace, {"metadata": {"labels": dict.fromkeys(LABEL)}})
    await_object(copy, lambda found: not found, f"{app.namespace}'s copy ended")
    app.delete()
