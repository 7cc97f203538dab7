"""Watching the API server the way every controller must: list, then watch from the listed
version; on 410 Gone list afresh; on any other failure (connection refused, a CRD not
installed, a timeout) log it with the server's words and try again after a backoff that
doubles up to a minute. Shared by the namespace operator and the backup-site registrar;
nothing here ends the process."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, SSLError

log = logging.getLogger(__name__)
MAX_BACKOFF = 60.0
WATCH_SECONDS = 300


def backoff(attempt: int) -> float:
    return min(2.0**attempt, MAX_BACKOFF)


def api_message(exc: ApiException) -> str:
    """The API server's own words (its Status message), not only the HTTP status."""
    try:
        detail = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        detail = ""
    return f"API server {exc.status} {exc.reason}" + (f": {detail}" if detail else "")


def describe(exc: BaseException) -> str:
    """One line a person reads: the API server's words, or why it did not answer."""
    if isinstance(exc, ApiException):
        return api_message(exc)
    if isinstance(exc, MaxRetryError):
        pool = exc.pool
        where = f"{pool.host}:{pool.port}" if pool is not None else "?"
        reason = exc.reason.__cause__ or exc.reason if exc.reason is not None else exc
        if isinstance(exc.reason, SSLError):  # it answered: its certificate is not the one trusted
            return f"TLS with the API server at {where} failed: {reason}"
        return f"the API server at {where} does not answer: {reason}"
    return f"{type(exc).__name__}: {exc}"


def watch_forever(
    name: str, lister: Callable[..., Any], args: tuple, on_object: Callable[[Any], None], stop: threading.Event,
    digest: Callable[[Any], Hashable] | None = None, **filters: str,
) -> None:  # fmt: skip
    """Call `on_object` for every listed object and every watched change, until `stop`. A
    watch the server ends (every WATCH_SECONDS) resumes from the last version seen, without
    listing again: a quiet cluster costs one request per watch per WATCH_SECONDS.

    `digest`: the part of an object the caller decides on. A change that leaves it equal
    (another controller's status heartbeat, a timestamp) is not passed on; a deletion is."""
    attempt = 0
    version = ""
    seen: dict[str, Hashable] = {}

    def changed(event: dict) -> bool:
        if digest is None:
            return True
        key = uid(event["object"])
        if event["type"] == "DELETED":
            seen.pop(key, None)
            return True
        now = digest(event["object"])
        before, seen[key] = seen.get(key), now
        return before != now

    while not stop.is_set():
        try:
            if not version:
                items, version = _items(lister(*args, **filters))
                for item in items:
                    if digest is not None:
                        seen[uid(item)] = digest(item)
                    on_object(item)
            attempt = 0
            watcher = watch.Watch()
            stream = watcher.stream(lister, *args, resource_version=version, timeout_seconds=WATCH_SECONDS, **filters)
            for event in stream:
                if stop.is_set():
                    return
                if changed(event):
                    on_object(event["object"])
            version = watcher.resource_version or version  # the newest seen, bookmarks included
        except ApiException as exc:
            version = ""
            if exc.status == 410:  # the version is too old: list afresh at once
                continue
            attempt += 1
            why = "the CRD is not installed" if exc.status == 404 else describe(exc)
            _wait(name, attempt, why, stop)
        except Exception as exc:  # connection refused, reset, timeouts
            version = ""
            attempt += 1
            _wait(name, attempt, describe(exc), stop)


def start_watch(
    name: str, lister: Callable[..., Any], args: tuple, on_object: Callable[[Any], None], stop: threading.Event,
    digest: Callable[[Any], Hashable] | None = None, **filters: str,
) -> threading.Thread:  # fmt: skip
    thread = threading.Thread(
        target=watch_forever, args=(name, lister, args, on_object, stop, digest), kwargs=filters, daemon=True,
        name=name,
    )  # fmt: skip
    thread.start()
    return thread


def _wait(name: str, attempt: int, why: str, stop: threading.Event) -> None:
    delay = backoff(attempt)
    log.warning("watch_failed kind=%s attempt=%d retry_in=%.0fs reason=%r", name, attempt, delay, why)
    stop.wait(delay)


def uid(obj: Any) -> str:
    return str(obj["metadata"]["uid"] if isinstance(obj, dict) else obj.metadata.uid)


def field(obj: Any, *path: str) -> Any:
    """A field of a typed object or of a custom object's dict, by its JSON path (None if absent)."""
    for name in path:
        if obj is None:
            return None
        if isinstance(obj, dict):
            obj = obj.get(name)
        else:
            python_names = {json_name: attr for attr, json_name in obj.attribute_map.items()}
            obj = getattr(obj, python_names.get(name, name), None)
    return obj


def frozen(value: Any) -> Hashable:
    """A hashable copy of a field's value (dicts and lists of the API types included)."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return tuple(sorted((k, frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(frozen(v) for v in value)
    return value


def fields_digest(*paths: tuple[str, ...]) -> Callable[[Any], Hashable]:
    """A digest of the named fields: `fields_digest(("metadata", "labels"), ("spec",))`."""
    return lambda obj: tuple(frozen(field(obj, *path)) for path in paths)


def _items(listed: Any) -> tuple[list[Any], str]:
    if isinstance(listed, dict):
        return listed.get("items", []), listed["metadata"]["resourceVersion"]
    return listed.items, listed.metadata.resource_version
