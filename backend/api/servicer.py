"""ccopy.array.v1.Array servicer: validate, translate, call the array.

Domain errors propagate as exceptions; `ERROR_TABLE` (used by the
interceptor) turns them into status codes in one place.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from backend import errors
from backend.array import Array
from backend.ldev_id import MAX_LDEV_ID, format_ldev_id
from backend.metadata import LdevRecord, LdevState
from backend.nbd.constants import MAX_REQUEST_BYTES
from ccopy import __version__
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc

ERROR_TABLE: Mapping[type[BaseException], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Busy: grpc.StatusCode.ABORTED,
}

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_STATES = {
    LdevState.CREATING: pb.LDEV_STATE_CREATING,
    LdevState.NORMAL: pb.LDEV_STATE_NORMAL,
    LdevState.DELETING: pb.LDEV_STATE_DELETING,
}


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def encode_page_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"ldev:{last_id}".encode()).decode()


def decode_page_token(token: str) -> int:
    if not token:
        return -1
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind == "ldev" and value.isdigit():
            return int(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise errors.InvalidArgument(f"page_token {token!r} was not issued by this array")


def _require_id(ldev_id: int) -> int:
    if ldev_id > MAX_LDEV_ID:
        raise errors.InvalidArgument(f"LDEV id {ldev_id} exceeds {MAX_LDEV_ID}")
    return ldev_id


class ArrayServicer(pb_grpc.ArrayServicer):
    def __init__(self, array: Array, nbd_address: str) -> None:
        self.array = array
        self.nbd_address = nbd_address

    def _ldev(self, record: LdevRecord) -> pb.Ldev:
        return pb.Ldev(
            id=record.id,
            display_id=format_ldev_id(record.id),
            name=record.name,
            size_bytes=record.size,
            allocated_bytes=self.array.allocated_bytes(record.id),
            state=_STATES[record.state],
            labels=dict(record.labels),
            read_only=record.read_only,
            export_name=record.name,
            open_sessions=self.array.open_sessions(record.id),
            created_at=_timestamp(record.created_at),
            updated_at=_timestamp(record.updated_at),
        )

    def GetArrayInfo(self, request: pb.GetArrayInfoRequest, context: grpc.ServicerContext) -> pb.ArrayInfo:
        return pb.ArrayInfo(
            serial=self.array.serial,
            version=__version__,
            nbd_address=self.nbd_address,
            max_ldev_id=MAX_LDEV_ID,
            max_request_bytes=MAX_REQUEST_BYTES,
        )

    def CreateLdev(self, request: pb.CreateLdevRequest, context: grpc.ServicerContext) -> pb.Ldev:
        if not request.name:
            raise errors.InvalidArgument("name is required")
        if request.size_bytes == 0:
            raise errors.InvalidArgument("size_bytes is required")
        record = self.array.create_ldev(request.name, request.size_bytes, dict(request.labels), request.read_only)
        return self._ldev(record)

    def DeleteLdev(self, request: pb.DeleteLdevRequest, context: grpc.ServicerContext) -> pb.DeleteLdevResponse:
        self.array.delete_ldev(_require_id(request.id))
        return pb.DeleteLdevResponse()

    def ExpandLdev(self, request: pb.ExpandLdevRequest, context: grpc.ServicerContext) -> pb.Ldev:
        if request.new_size_bytes == 0:
            raise errors.InvalidArgument("new_size_bytes is required")
        return self._ldev(self.array.expand_ldev(_require_id(request.id), request.new_size_bytes))

    def GetLdev(self, request: pb.GetLdevRequest, context: grpc.ServicerContext) -> pb.Ldev:
        which = request.WhichOneof("ref")
        if which == "id":
            return self._ldev(self.array.get_ldev(_require_id(request.id)))
        if which == "name":
            return self._ldev(self.array.get_ldev_by_name(request.name))
        raise errors.InvalidArgument("give the LDEV id or name")

    def ListLdevs(self, request: pb.ListLdevsRequest, context: grpc.ServicerContext) -> pb.ListLdevsResponse:
        if request.page_size > MAX_PAGE_SIZE:
            raise errors.InvalidArgument(f"page_size is at most {MAX_PAGE_SIZE}")
        size = request.page_size or DEFAULT_PAGE_SIZE
        after = decode_page_token(request.page_token)
        records = self.array.list_ldevs(after, size + 1, dict(request.label_selector))
        page, more = records[:size], len(records) > size
        return pb.ListLdevsResponse(
            ldevs=[self._ldev(r) for r in page],
            next_page_token=encode_page_token(page[-1].id) if more else "",
        )

    def UpdateLdevLabels(self, request: pb.UpdateLdevLabelsRequest, context: grpc.ServicerContext) -> pb.Ldev:
        overlap = set(request.set) & set(request.remove)
        if overlap:
            raise errors.InvalidArgument(f"labels both set and removed: {sorted(overlap)}")
        record = self.array.update_labels(_require_id(request.id), dict(request.set), list(request.remove))
        return self._ldev(record)

    def GetPool(self, request: pb.GetPoolRequest, context: grpc.ServicerContext) -> pb.Pool:
        capacity = self.array.capacity()
        return pb.Pool(
            path=capacity.path,
            total_bytes=capacity.total_bytes,
            free_bytes=capacity.free_bytes,
            provisioned_bytes=capacity.provisioned_bytes,
            allocated_bytes=capacity.allocated_bytes,
            ldev_count=len(capacity.ldevs),
            ldevs=[
                pb.LdevAllocation(
                    id=a.record.id,
                    display_id=a.record.display_id,
                    name=a.record.name,
                    size_bytes=a.record.size,
                    allocated_bytes=a.allocated_bytes,
                )
                for a in capacity.ldevs
            ],
        )
