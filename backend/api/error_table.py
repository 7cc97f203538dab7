"""The array's domain errors and their gRPC status codes, in one table both ways:
the servicer's interceptor maps a raised error to its code, and the remote link's
client maps a peer array's code back to the same error."""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from backend import errors
from backend.replication.remote import LinkDown

ERROR_TABLE: Mapping[type[BaseException], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Busy: grpc.StatusCode.ABORTED,
    LinkDown: grpc.StatusCode.UNAVAILABLE,
}
