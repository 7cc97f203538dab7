"""One id per request, across processes: the CLI, the CSI plugin and the replication
sidecar send it to the array in the `x-request-id` metadata, every server takes it
from there (or makes one) for the time it serves the call, and every log line
written meanwhile carries it (`request=<id>`, added by ccopy_common.logfmt).

So the array's lines for a CreateVolume carry the id the plugin logged for it,
and a streaming call's lines (GetMetadataAllocated's array pages) carry its id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import grpc

METADATA_KEY = "x-request-id"

_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def current() -> str | None:
    return _current.get()


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def from_metadata(metadata: Any) -> str:
    """The caller's id, or a new one when it sent none."""
    sent = dict(metadata or ()).get(METADATA_KEY)
    return sent if sent else new_id()


@contextmanager
def use(request_id: str) -> Iterator[str]:
    """While a server serves one call, or a client acts for one: its id is the current one."""
    token = _current.set(request_id)
    try:
        yield request_id
    finally:
        _current.reset(token)


class _ClientCallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class SendRequestId(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Every call a client makes carries the current request id (a new one outside any)."""

    def _with_id(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [(k, v) for k, v in (details.metadata or ()) if k != METADATA_KEY]
        metadata.append((METADATA_KEY, current() or new_id()))
        return _ClientCallDetails(details, metadata)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._with_id(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._with_id(details), request)
