"""Domain errors of the array.

The domain raises these and nothing transport-specific; each server (gRPC API,
NBD) maps them to its own codes in one table. `retryable` tells a caller whether
the same request may succeed later without being changed.
"""

from __future__ import annotations


class ArrayError(Exception):
    """Base of every error the array reports on purpose."""

    retryable = False


class InvalidArgument(ArrayError):
    """The request is malformed; retrying it unchanged cannot succeed."""


class NotFound(ArrayError):
    """The named object (LDEV, export) does not exist."""


class PermissionDenied(ArrayError):
    """The caller (a host) may not use the object: it is not published to it."""


class AlreadyExists(ArrayError):
    """An object of that name exists with other, incompatible properties."""


class OutOfRange(ArrayError):
    """A size or offset is outside what the object or pool allows."""


class FailedPrecondition(ArrayError):
    """The object's state forbids the operation (e.g. an LDEV in use)."""


class ResourceExhausted(ArrayError):
    """The pool has no room or no free identifiers."""

    retryable = True


class Busy(ArrayError):
    """Another operation holds the same object; retry after it finishes."""

    retryable = True
