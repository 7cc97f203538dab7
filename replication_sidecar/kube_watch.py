"""Watching the API server the way every controller must: list, then watch from the listed
version; on 410 Gone list afresh; on any other failure (connection refused, a CRD not
installed, a timeout) log it with the server's words and try again after a backoff that
doubles up to a minute. Shared by the namespace operator and the backup-site registrar;
nothing here ends the process."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

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
    if isinstance(exc, ApiException):
        return api_message(exc)
    return f"{type(exc).__name__}: {exc}"


def watch_forever(
    name: str, lister: Callable[..., Any], args: tuple, on_object: Callable[[Any], None], stop: threading.Event,
    **filters: str,
) -> None:  # fmt: skip
    """Call `on_object` for every listed object and every watched change, until `stop`."""
    attempt = 0
    while not stop.is_set():
        try:
            items, version = _items(lister(*args, **filters))
            for item in items:
                on_object(item)
            attempt = 0
            stream = watch.Watch().stream(
                lister, *args, resource_version=version, timeout_seconds=WATCH_SECONDS, **filters
            )
            for event in stream:
                if stop.is_set():
                    return
                on_object(event["object"])
        except ApiException as exc:
            if exc.status == 410:  # the version is too old: list afresh at once
                continue
            attempt += 1
            why = "the CRD is not installed" if exc.status == 404 else describe(exc)
            _wait(name, attempt, why, stop)
        except Exception as exc:  # connection refused, reset, timeouts
            attempt += 1
            _wait(name, attempt, describe(exc), stop)


def start_watch(
    name: str, lister: Callable[..., Any], args: tuple, on_object: Callable[[Any], None], stop: threading.Event,
    **filters: str,
) -> threading.Thread:  # fmt: skip
    thread = threading.Thread(
        target=watch_forever, args=(name, lister, args, on_object, stop), kwargs=filters, daemon=True, name=name
    )
    thread.start()
    return thread


def _wait(name: str, attempt: int, why: str, stop: threading.Event) -> None:
    delay = backoff(attempt)
    log.warning("watch_failed kind=%s attempt=%d retry_in=%.0fs reason=%r", name, attempt, delay, why)
    stop.wait(delay)


def _items(listed: Any) -> tuple[list[Any], str]:
    if isinstance(listed, dict):
        return listed.get("items", []), listed["metadata"]["resourceVersion"]
    return listed.items, listed.metadata.resource_version
