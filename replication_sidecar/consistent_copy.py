"""Our `ConsistentCopy` object (CRD in charts/consistent-copy/crds): one per protected
namespace at each site, the report a person reads with `kubectl get consistentcopy -A`.
The namespace operator writes it at the main site, the backup-site registrar at the
backup site; both through these two functions."""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from replication_sidecar.group_replication import MANAGED_BY, OBJECT_NAME

GROUP = "consistentcopy.io"
VERSION = "v1alpha1"
KIND = "ConsistentCopy"
PLURAL = "consistentcopies"

log = logging.getLogger(__name__)


def write_consistent_copy(
    custom: client.CustomObjectsApi, namespace: str, spec: dict[str, Any], status: dict[str, Any], manager: str
) -> None:
    """Write `status`; the object is made with `spec` the first time (one request after that)."""
    try:
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, OBJECT_NAME, {"status": status})
        return
    except ApiException as exc:
        if exc.status != 404:
            raise
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": OBJECT_NAME, "namespace": namespace, "labels": {MANAGED_BY: manager}},
        "spec": spec,
    }
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    except ApiException as exc:
        if exc.status != 409:  # made meanwhile
            raise
    log.info("consistent_copy_created namespace=%s by=%s", namespace, manager)
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, OBJECT_NAME, {"status": status})


def delete_consistent_copy(custom: client.CustomObjectsApi, namespace: str) -> None:
    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, OBJECT_NAME)
    except ApiException as exc:
        if exc.status != 404:
            raise
    log.info("consistent_copy_deleted namespace=%s", namespace)
