"""The pure part of the least-privilege check: what a user asked for, read from audit
events as kube-apiserver writes them, against the rules granted."""

from __future__ import annotations

import json

from tests.e2e import rbac

USER = "system:serviceaccount:ccopy-system:consistentcopy-controller"


def event(verb: str, resource: str, group: str = "", agent: str = "csi-addons-sidecar/v0.14.0", code: int = 200,
          subresource: str = "", user: str = USER) -> dict:  # fmt: skip
    ref = {"resource": resource, "apiGroup": group, **({"subresource": subresource} if subresource else {})}
    return {"user": {"username": user}, "userAgent": agent, "verb": verb, "objectRef": ref,
            "responseStatus": {"code": code}}  # fmt: skip


def test_a_request_counts_for_its_user_and_program_only():
    events = [
        event("get", "pods"),
        event("patch", "consistentcopies", "consistentcopy.io", subresource="status"),
        event("list", "secrets", agent="csi-provisioner/v6.3.0"),
        event("delete", "pods", user="someone-else"),
        {"user": {"username": USER}, "userAgent": "csi-addons-sidecar/x", "verb": "get"},  # discovery: no objectRef
    ]
    assert rbac.used(events, USER, "csi-addons-sidecar/") == {
        ("", "pods", "get"), ("consistentcopy.io", "consistentcopies/status", "patch")}  # fmt: skip
    assert rbac.used(events, USER) == rbac.used(events, USER, "csi-addons-sidecar/") | {("", "secrets", "list")}


def test_a_granted_verb_no_request_needed_is_named():
    rules: list[rbac.Rule] = [("", ("pods", "secrets"), ("get", "list")), ("apps", ("replicasets",), ("get",))]
    asked = {("", "pods", "get"), ("", "secrets", "list"), ("apps", "replicasets", "get"), ("", "nodes", "get")}
    assert rbac.unused(rules, asked) == [("", "pods", "list"), ("", "secrets", "get")]
    assert rbac.unused(rules, asked | {("", "pods", "list"), ("", "secrets", "get")}) == []


def test_a_refusal_is_named_by_program_verb_and_resource():
    events = [event("get", "pods"), event("update", "leases", "coordination.k8s.io", code=403),
              event("update", "leases", "coordination.k8s.io", code=403)]  # fmt: skip
    assert rbac.forbidden(events) == ["csi-addons-sidecar/v0.14.0 update leases"]
    assert rbac.forbidden(events[:1]) == []


def test_the_audit_log_is_read_whole_lines_only_while_the_api_server_writes_it():
    first = '{"auditID": "a", "verb": "get", "stage": "ResponseStarted"}'
    later = '{"auditID": "a", "verb": "get", "stage": "ResponseComplete"}'
    other = '{"auditID": "b", "verb": "list"}'
    torn = other[:20]  # what a read sees while the API server is mid-line
    assert rbac.audit_events(f"{first}\n{later}\n{torn}") == [json.loads(first)]
    assert rbac.audit_events(f"{first}\n{later}\n{other}\n") == [json.loads(first), json.loads(other)]
    assert rbac.audit_events("") == []
