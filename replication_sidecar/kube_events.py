"""Events on a Namespace, the way a person finds them (`kubectl describe namespace NS`).
An Event is a report: failing to make one is logged and blocks nothing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from replication_sidecar.kube_watch import api_message

log = logging.getLogger(__name__)


def namespace_event(core: client.CoreV1Api, namespace: str, kind: str, reason: str, message: str, component: str):
    now = datetime.now(UTC)
    # The Namespace is cluster-scoped, yet the API server wants the reference's namespace to be the Event's.
    subject = client.V1ObjectReference(api_version="v1", kind="Namespace", name=namespace, namespace=namespace)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{component}.", namespace=namespace),
        involved_object=subject, reason=reason, message=message[:1024], type=kind, count=1,
        first_timestamp=now, last_timestamp=now, source=client.V1EventSource(component=component),
    )  # fmt: skip
    try:
        core.create_namespaced_event(namespace, event)
    except ApiException as exc:
        log.warning("event_failed namespace=%s reason=%s why=%r", namespace, reason, api_message(exc))
        return
    log.info("event namespace=%s type=%s reason=%s message=%r", namespace, kind, reason, message)
