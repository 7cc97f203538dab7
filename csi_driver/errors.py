"""Errors of the CSI plugin, one per status code the CSI spec asks for.

The servicers raise these; `ERROR_TABLE` (used by the shared interceptor)
turns them into status codes. `from_array` translates the array's own
statuses, so an array answer becomes the CSI answer the spec wants.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from backend.errors import Busy


class CsiError(Exception):
    code = grpc.StatusCode.INTERNAL


class InvalidArgument(CsiError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CsiError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CsiError):
    code = grpc.StatusCode.ALREADY_EXISTS


class OutOfRange(CsiError):
    code = grpc.StatusCode.OUT_OF_RANGE


class FailedPrecondition(CsiError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(CsiError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Aborted(CsiError):
    """Another operation on the same volume is in flight; the CO retries."""

    code = grpc.StatusCode.ABORTED


class Unavailable(CsiError):
    code = grpc.StatusCode.UNAVAILABLE


_BY_CODE = {cls.code: cls for cls in CsiError.__subclasses__()}

ERROR_TABLE: Mapping[type[BaseException], grpc.StatusCode] = {
    **{cls: cls.code for cls in CsiError.__subclasses__()},
    Busy: grpc.StatusCode.ABORTED,
}


def from_array(exc: grpc.RpcError) -> CsiError:
    code = exc.code()  # type: ignore[attr-defined]
    cls = _BY_CODE.get(code, CsiError)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        cls = Unavailable
    return cls(f"array: {exc.details()}")  # type: ignore[attr-defined]
