"""What a watch passes on: changes to the fields a reconcile reads, not another
controller's heartbeat or a list rewritten in a new order."""

from __future__ import annotations

from kubernetes import client

from replication_sidecar.backup_site.runner import PVC_FIELDS
from replication_sidecar.namespace_operator.runner import group_digest


def vgr(members: list[str], state: str = "Primary", sync_time: str = "2026-12-02T17:00:00Z") -> dict:
    return {
        "metadata": {"uid": "u1"},
        "spec": {"replicationState": "primary"},
        "status": {"state": state, "message": "volume is marked primary", "lastSyncTime": sync_time,
                   "persistentVolumeClaimsRefList": [{"name": name} for name in members]},
    }  # fmt: skip


def test_a_group_rewritten_in_another_order_or_with_a_new_sync_time_is_no_change():
    assert group_digest(vgr(["a", "b", "c"])) == group_digest(vgr(["c", "a", "b"], sync_time="2026-12-02T17:00:10Z"))


def test_a_member_or_a_state_that_changes_is_one():
    assert group_digest(vgr(["a", "b"])) != group_digest(vgr(["a", "b", "c"]))
    assert group_digest(vgr(["a"])) != group_digest(vgr(["a"], state="Secondary"))


def test_typed_objects_are_digested_by_their_json_field_names():
    def pvc(labels: dict, finalizers: list[str]) -> client.V1PersistentVolumeClaim:
        return client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(labels=labels, finalizers=finalizers, annotations={"seen": "now"}),
            spec=client.V1PersistentVolumeClaimSpec(volume_name="pv-1"),
        )

    assert PVC_FIELDS(pvc({"a": "1"}, ["f"])) == PVC_FIELDS(pvc({"a": "1"}, ["f"]))
    assert PVC_FIELDS(pvc({"a": "1"}, ["f"])) != PVC_FIELDS(pvc({"a": "1"}, []))  # the group let go of it
    assert PVC_FIELDS(pvc({"a": "1"}, ["f"]))[-1] == "pv-1"


def test_a_server_that_answers_with_the_wrong_certificate_is_not_said_not_to_answer():
    from urllib3 import HTTPConnectionPool
    from urllib3.exceptions import MaxRetryError, NewConnectionError, SSLError

    from replication_sidecar.kube_watch import describe

    pool = HTTPConnectionPool("10.0.0.1", 6443)
    tls = MaxRetryError(pool, "/api", SSLError("certificate verify failed: IP address mismatch"))
    assert describe(tls) == ("TLS with the API server at 10.0.0.1:6443 failed: certificate verify failed: IP "
                             "address mismatch")  # fmt: skip
    refused = MaxRetryError(pool, "/api", NewConnectionError(pool, "[Errno 111] Connection refused"))
    assert describe(refused).startswith("the API server at 10.0.0.1:6443 does not answer: ")
