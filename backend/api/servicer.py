"""ccopy.array.v1.Array servicer: validate, translate, call the array.

Domain errors propagate as exceptions; `error_table.ERROR_TABLE` (used by the
interceptor) turns them into status codes in one place.
"""

from __future__ import annotations

import grpc

from backend import errors
from backend.api.convert import (
    decode_page_token,
    encode_page_token,
    group_message,
    host_message,
    ldev_message,
    publication_message,
    snapshot_message,
)
from backend.api.replication import ReplicationRpcs
from backend.api.verify import VerifyRpcs
from backend.array import Array
from backend.model import LdevRecord
from backend.nbd.constants import MAX_REQUEST_BYTES
from backend.snapshots import ExtentPage
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common import __version__
from ccopy_common.ldev_id import MAX_LDEV_ID

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_EXTENTS = 1000


def _require_id(ldev_id: int) -> int:
    if ldev_id > MAX_LDEV_ID:
        raise errors.InvalidArgument(f"LDEV id {ldev_id} exceeds {MAX_LDEV_ID}")
    return ldev_id


def _page_size(requested: int) -> int:
    if requested > MAX_PAGE_SIZE:
        raise errors.InvalidArgument(f"page_size is at most {MAX_PAGE_SIZE}")
    return requested or DEFAULT_PAGE_SIZE


def _paged(records: list, size: int, kind: str) -> tuple[list, str]:
    """Split a query of size+1 rows into a page and the next token."""
    page, more = records[:size], len(records) > size
    return page, encode_page_token(kind, page[-1].id) if more else ""


def _extent_page(page: ExtentPage) -> pb.ExtentPage:
    return pb.ExtentPage(
        extents=[pb.Extent(offset=o, length=n) for o, n in page.extents],
        next_offset=page.next_offset,
        chunk_size_bytes=page.chunk_size,
        size_bytes=page.size,
    )


class ArrayServicer(ReplicationRpcs, VerifyRpcs, pb_grpc.ArrayServicer):
    def __init__(self, array: Array, nbd_address: str) -> None:
        self.array = array
        self.nbd_address = nbd_address

    def _ldev(self, record: LdevRecord) -> pb.Ldev:
        return ldev_message(self.array, record)

    def GetArrayInfo(self, request: pb.GetArrayInfoRequest, context: grpc.ServicerContext) -> pb.ArrayInfo:
        return pb.ArrayInfo(
            serial=self.array.serial,
            version=__version__,
            nbd_address=self.nbd_address,
            max_ldev_id=MAX_LDEV_ID,
            max_request_bytes=MAX_REQUEST_BYTES,
            nbd_hosts_by_certificate=self.array.hosts_by_certificate,
        )

    def CreateLdev(self, request: pb.CreateLdevRequest, context: grpc.ServicerContext) -> pb.Ldev:
        if not request.name:
            raise errors.InvalidArgument("name is required")
        if request.size_bytes == 0:
            raise errors.InvalidArgument("size_bytes is required")
        record = self.array.create_ldev(
            request.name,
            request.size_bytes,
            dict(request.labels),
            request.read_only,
            open_to_all=request.open_to_all,
            qos=(request.max_iops, request.max_mbps),
        )
        return self._ldev(record)

    def DeleteLdev(self, request: pb.DeleteLdevRequest, context: grpc.ServicerContext) -> pb.DeleteLdevResponse:
        self.array.delete_ldev(_require_id(request.id), cascade=request.cascade)
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
        size = _page_size(request.page_size)
        after = decode_page_token("ldev", request.page_token)
        records = self.array.list_ldevs(after, size + 1, dict(request.label_selector))
        page, token = _paged(records, size, "ldev")
        return pb.ListLdevsResponse(ldevs=[self._ldev(r) for r in page], next_page_token=token)

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

    # -- snapshots -------------------------------------------------------------
    def CreateSnapshot(self, request: pb.CreateSnapshotRequest, context: grpc.ServicerContext) -> pb.Snapshot:
        if not request.name:
            raise errors.InvalidArgument("name is required")
        snapshot = self.array.snapshots.create_snapshot(
            request.name, _require_id(request.ldev_id), dict(request.labels)
        )
        return snapshot_message(snapshot)

    def DeleteSnapshot(
        self, request: pb.DeleteSnapshotRequest, context: grpc.ServicerContext
    ) -> pb.DeleteSnapshotResponse:
        self.array.snapshots.delete_snapshot(request.id)
        return pb.DeleteSnapshotResponse()

    def GetSnapshot(self, request: pb.GetSnapshotRequest, context: grpc.ServicerContext) -> pb.Snapshot:
        which = request.WhichOneof("ref")
        if which == "id":
            snapshot = self.array.store.get_snapshot(request.id)
        elif which == "name":
            found = self.array.store.find_snapshot_by_name(request.name)
            if found is None:
                raise errors.NotFound(f"snapshot named {request.name!r} not found")
            snapshot = found
        else:
            raise errors.InvalidArgument("give the snapshot id or name")
        if snapshot.hidden:
            raise errors.NotFound(f"snapshot {snapshot.id} not found")
        return snapshot_message(snapshot)

    def ListSnapshots(
        self, request: pb.ListSnapshotsRequest, context: grpc.ServicerContext
    ) -> pb.ListSnapshotsResponse:
        size = _page_size(request.page_size)
        after = decode_page_token("snapshot", request.page_token)
        records = self.array.store.list_snapshots(
            ldev_id=request.ldev_id or None, group_id=request.group_id or None, after_id=after, limit=size + 1
        )
        page, token = _paged(records, size, "snapshot")
        return pb.ListSnapshotsResponse(snapshots=[snapshot_message(s) for s in page], next_page_token=token)

    def CreateSnapshotGroup(
        self, request: pb.CreateSnapshotGroupRequest, context: grpc.ServicerContext
    ) -> pb.SnapshotGroup:
        if not request.name:
            raise errors.InvalidArgument("name is required")
        ids = [_require_id(i) for i in request.ldev_ids]
        taken = self.array.snapshots.create_group(request.name, ids, dict(request.labels))
        assert taken.group is not None
        return group_message(taken.group, taken.snapshots)

    def DeleteSnapshotGroup(
        self, request: pb.DeleteSnapshotGroupRequest, context: grpc.ServicerContext
    ) -> pb.DeleteSnapshotGroupResponse:
        self.array.snapshots.delete_group(request.id)
        return pb.DeleteSnapshotGroupResponse()

    def GetSnapshotGroup(self, request: pb.GetSnapshotGroupRequest, context: grpc.ServicerContext) -> pb.SnapshotGroup:
        which = request.WhichOneof("ref")
        if which == "id":
            group = self.array.store.get_snapshot_group(request.id)
        elif which == "name":
            found = self.array.store.find_snapshot_group_by_name(request.name)
            if found is None:
                raise errors.NotFound(f"snapshot group named {request.name!r} not found")
            group = found
        else:
            raise errors.InvalidArgument("give the snapshot group id or name")
        return group_message(group, self.array.store.list_snapshots(group_id=group.id))

    def ListSnapshotGroups(
        self, request: pb.ListSnapshotGroupsRequest, context: grpc.ServicerContext
    ) -> pb.ListSnapshotGroupsResponse:
        size = _page_size(request.page_size)
        after = decode_page_token("group", request.page_token)
        page, token = _paged(self.array.store.list_snapshot_groups(after, size + 1), size, "group")
        groups = [group_message(g, self.array.store.list_snapshots(group_id=g.id)) for g in page]
        return pb.ListSnapshotGroupsResponse(groups=groups, next_page_token=token)

    # -- clones, restore, changed blocks -------------------------------------------
    def CloneLdev(self, request: pb.CloneLdevRequest, context: grpc.ServicerContext) -> pb.Ldev:
        if not request.name:
            raise errors.InvalidArgument("name is required")
        which = request.WhichOneof("source")
        if which is None:
            raise errors.InvalidArgument("give the clone source: snapshot_id or ldev_id")
        record = self.array.cloner.clone(
            request.name,
            request.size_bytes or None,
            dict(request.labels),
            source_snapshot=request.snapshot_id if which == "snapshot_id" else None,
            source_ldev=_require_id(request.ldev_id) if which == "ldev_id" else None,
            open_to_all=request.open_to_all,
            qos=(request.max_iops, request.max_mbps),
        )
        return self._ldev(record)

    def RestoreLdev(self, request: pb.RestoreLdevRequest, context: grpc.ServicerContext) -> pb.Ldev:
        return self._ldev(self.array.snapshots.restore(_require_id(request.ldev_id), request.snapshot_id))

    def GetAllocatedExtents(
        self, request: pb.GetAllocatedExtentsRequest, context: grpc.ServicerContext
    ) -> pb.ExtentPage:
        page = self.array.snapshots.allocated(
            request.snapshot_id, request.starting_offset, request.max_results or DEFAULT_EXTENTS
        )
        return _extent_page(page)

    def GetChangedExtents(self, request: pb.GetChangedExtentsRequest, context: grpc.ServicerContext) -> pb.ExtentPage:
        page = self.array.snapshots.changed(
            request.base_snapshot_id,
            request.target_snapshot_id,
            request.starting_offset,
            request.max_results or DEFAULT_EXTENTS,
        )
        return _extent_page(page)

    # -- host access and QoS ------------------------------------------------------
    def PublishLdev(self, request: pb.PublishLdevRequest, context: grpc.ServicerContext) -> pb.Publication:
        publication = self.array.publish(
            _require_id(request.ldev_id), request.host_id, request.read_only, request.max_size_bytes
        )
        return publication_message(self.array, publication)

    def RegisterHost(self, request: pb.RegisterHostRequest, context: grpc.ServicerContext) -> pb.Host:
        return host_message(self.array.register_host(request.host_id, request.max_volumes))

    def GetHost(self, request: pb.GetHostRequest, context: grpc.ServicerContext) -> pb.Host:
        return host_message(self.array.get_host(request.host_id))

    def UnpublishLdev(
        self, request: pb.UnpublishLdevRequest, context: grpc.ServicerContext
    ) -> pb.UnpublishLdevResponse:
        if not request.host_id:
            raise errors.InvalidArgument("host_id is required")
        self.array.unpublish(_require_id(request.ldev_id), request.host_id)
        return pb.UnpublishLdevResponse()

    def ListPublications(
        self, request: pb.ListPublicationsRequest, context: grpc.ServicerContext
    ) -> pb.ListPublicationsResponse:
        publications = self.array.publications(request.ldev_id or None)
        return pb.ListPublicationsResponse(publications=[publication_message(self.array, p) for p in publications])

    def SetLdevQos(self, request: pb.SetLdevQosRequest, context: grpc.ServicerContext) -> pb.Ldev:
        return self._ldev(self.array.set_qos(_require_id(request.ldev_id), request.max_iops, request.max_mbps))

    def SetLdevAccess(self, request: pb.SetLdevAccessRequest, context: grpc.ServicerContext) -> pb.Ldev:
        return self._ldev(self.array.set_open_to_all(_require_id(request.ldev_id), request.open_to_all))
