"""Errors of the servers in front of the array (the CSI plugin, the replication
sidecar), one per status code their specifications ask for.

The servicers and their domain modules raise these; `ERROR_TABLE` (used by the
shared interceptor) turns them into status codes. `from_array` translates the
array's own statuses, so an array answer becomes the answer the spec wants.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc


class ServiceError(Exception):
    code = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class OutOfRange(ServiceError):
    code = grpc.StatusCode.OUT_OF_RANGE


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Aborted(ServiceError):
    """Another operation on the same volume is in flight; the CO retries."""

    code = grpc.StatusCode.ABORTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


_BY_CODE = {cls.code: cls for cls in ServiceError.__subclasses__()}

ERROR_TABLE: Mapping[type[BaseException], grpc.StatusCode] = {cls: cls.code for cls in ServiceError.__subclasses__()}


def from_array(exc: grpc.RpcError) -> ServiceError:
    code = exc.code()  # type: ignore[attr-defined]
    cls = _BY_CODE.get(code, ServiceError)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        cls = Unavailable
    return cls(f"array: {exc.details()}")  # type: ignore[attr-defined]


class StartupError(Exception):
    """A process cannot start for a reason its user must fix (credentials, a setting): its
    message is the one line `ccopy` prints before exiting with status 1, not a traceback."""
