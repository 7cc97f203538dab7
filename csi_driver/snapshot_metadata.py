"""CSI SnapshotMetadata service: allocated and changed extents, streamed.

The array reports chunk-granular extents of its CoW snapshots; they go out as
VARIABLE_LENGTH block metadata, a page of the array per response message.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from ccopy_api import array_pb2 as pb
from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from ccopy_common.array_client import ArrayClient
from ccopy_common.errors import InvalidArgument, OutOfRange
from csi_driver.controller import ControllerServicer

DEFAULT_RESULTS = 1000


def _check(starting_offset: int, max_results: int) -> int:
    if starting_offset < 0:
        raise InvalidArgument("starting_offset cannot be negative")
    if max_results < 0:
        raise InvalidArgument("max_results cannot be negative")
    return max_results or DEFAULT_RESULTS


def _stream(array: ArrayClient, method: str, make_request, start: int, per_page: int, response_type):
    offset = start
    first = True
    while True:
        page = array.call(method, make_request(offset, per_page))
        if first and start >= page.size_bytes and page.size_bytes:
            raise OutOfRange(f"starting_offset {start} is past the snapshot's {page.size_bytes} bytes")
        first = False
        yield response_type(
            block_metadata_type=csi.VARIABLE_LENGTH,
            volume_capacity_bytes=page.size_bytes,
            block_metadata=[csi.BlockMetadata(byte_offset=e.offset, size_bytes=e.length) for e in page.extents],
        )
        if not page.next_offset:
            return
        offset = page.next_offset


class SnapshotMetadataServicer(csi_grpc.SnapshotMetadataServicer):
    def __init__(self, array: ArrayClient, controller: ControllerServicer) -> None:
        self.array = array
        self.controller = controller

    def GetMetadataAllocated(
        self, request: csi.GetMetadataAllocatedRequest, context: grpc.ServicerContext
    ) -> Iterator[csi.GetMetadataAllocatedResponse]:
        if not request.snapshot_id:
            raise InvalidArgument("snapshot_id is required")
        per_page = _check(request.starting_offset, request.max_results)
        snapshot = self.controller.snapshot(request.snapshot_id)
        yield from _stream(
            self.array,
            "GetAllocatedExtents",
            lambda offset, n: pb.GetAllocatedExtentsRequest(
                snapshot_id=snapshot.id, starting_offset=offset, max_results=n
            ),
            request.starting_offset,
            per_page,
            csi.GetMetadataAllocatedResponse,
        )

    def GetMetadataDelta(
        self, request: csi.GetMetadataDeltaRequest, context: grpc.ServicerContext
    ) -> Iterator[csi.GetMetadataDeltaResponse]:
        if not request.base_snapshot_id or not request.target_snapshot_id:
            raise InvalidArgument("base_snapshot_id and target_snapshot_id are required")
        per_page = _check(request.starting_offset, request.max_results)
        base = self.controller.snapshot(request.base_snapshot_id)
        target = self.controller.snapshot(request.target_snapshot_id)
        yield from _stream(
            self.array,
            "GetChangedExtents",
            lambda offset, n: pb.GetChangedExtentsRequest(
                base_snapshot_id=base.id, target_snapshot_id=target.id, starting_offset=offset, max_results=n
            ),
            request.starting_offset,
            per_page,
            csi.GetMetadataDeltaResponse,
        )
