"""Snapshot, group, clone, restore and extent RPCs: results and status codes."""

from __future__ import annotations

import grpc
import pytest

from ccopy_api import array_pb2 as pb
from tests.api.test_array_api import code_of
from tests.conftest import wait_for
from tests.integration.nbd_raw import RawClient

MIB = 1 << 20


def test_snapshot_rpcs(stub, make_ldev):
    ldev = make_ldev("v", 8 * MIB)
    snap = stub.CreateSnapshot(pb.CreateSnapshotRequest(name="s", ldev_id=ldev.id, labels={"k": "v"}))
    assert snap.ready and snap.ldev_display_id == ldev.display_id and dict(snap.labels) == {"k": "v"}
    assert stub.GetSnapshot(pb.GetSnapshotRequest(name="s")).id == snap.id
    assert stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).snapshot_count == 1
    for i in range(4):
        stub.CreateSnapshot(pb.CreateSnapshotRequest(name=f"p{i}", ldev_id=ldev.id))
    names, token = [], ""
    while True:
        page = stub.ListSnapshots(pb.ListSnapshotsRequest(ldev_id=ldev.id, page_size=2, page_token=token))
        names += [s.name for s in page.snapshots]
        token = page.next_page_token
        if not token:
            break
    assert names == ["s", "p0", "p1", "p2", "p3"]


@pytest.mark.parametrize(
    ("method", "request_", "code"),
    [
        ("GetSnapshot", pb.GetSnapshotRequest(id=999), grpc.StatusCode.NOT_FOUND),
        ("GetSnapshot", pb.GetSnapshotRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        ("DeleteSnapshot", pb.DeleteSnapshotRequest(id=999), grpc.StatusCode.NOT_FOUND),
        ("GetSnapshotGroup", pb.GetSnapshotGroupRequest(id=999), grpc.StatusCode.NOT_FOUND),
        ("DeleteSnapshotGroup", pb.DeleteSnapshotGroupRequest(id=999), grpc.StatusCode.NOT_FOUND),
        ("CreateSnapshot", pb.CreateSnapshotRequest(name="x", ldev_id=999), grpc.StatusCode.NOT_FOUND),
        ("CreateSnapshot", pb.CreateSnapshotRequest(ldev_id=1), grpc.StatusCode.INVALID_ARGUMENT),
        ("CreateSnapshotGroup", pb.CreateSnapshotGroupRequest(name="g"), grpc.StatusCode.INVALID_ARGUMENT),
        ("CreateSnapshotGroup", pb.CreateSnapshotGroupRequest(name="g", ldev_ids=[999]), grpc.StatusCode.NOT_FOUND),
        ("CloneLdev", pb.CloneLdevRequest(name="c"), grpc.StatusCode.INVALID_ARGUMENT),
        ("CloneLdev", pb.CloneLdevRequest(name="c", snapshot_id=999), grpc.StatusCode.NOT_FOUND),
        ("CloneLdev", pb.CloneLdevRequest(name="c", ldev_id=999), grpc.StatusCode.NOT_FOUND),
        ("RestoreLdev", pb.RestoreLdevRequest(ldev_id=1, snapshot_id=999), grpc.StatusCode.NOT_FOUND),
        ("GetAllocatedExtents", pb.GetAllocatedExtentsRequest(snapshot_id=999), grpc.StatusCode.NOT_FOUND),
        (
            "GetChangedExtents",
            pb.GetChangedExtentsRequest(base_snapshot_id=1, target_snapshot_id=999),
            grpc.StatusCode.NOT_FOUND,
        ),
        ("ListSnapshots", pb.ListSnapshotsRequest(page_token="bogus"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_error_codes(stub, make_ldev, method, request_, code):
    ldev = make_ldev("one", MIB)
    stub.CreateSnapshot(pb.CreateSnapshotRequest(name="first", ldev_id=ldev.id))
    assert code_of(getattr(stub, method), request_) == code


def test_refusals_that_protect_data(stub, make_ldev, array_proc):
    a = make_ldev("a", 8 * MIB)
    b = make_ldev("b", 8 * MIB)
    snap = stub.CreateSnapshot(pb.CreateSnapshotRequest(name="s", ldev_id=a.id))
    assert code_of(stub.DeleteLdev, pb.DeleteLdevRequest(id=a.id)) == grpc.StatusCode.FAILED_PRECONDITION
    smaller = pb.CloneLdevRequest(name="c", snapshot_id=snap.id, size_bytes=4 * MIB)
    assert code_of(stub.CloneLdev, smaller) == grpc.StatusCode.OUT_OF_RANGE
    wrong = pb.RestoreLdevRequest(ldev_id=b.id, snapshot_id=snap.id)
    assert code_of(stub.RestoreLdev, wrong) == grpc.StatusCode.INVALID_ARGUMENT
    client = RawClient(array_proc.nbd_address)
    client.go("a")
    restore = pb.RestoreLdevRequest(ldev_id=a.id, snapshot_id=snap.id)
    assert code_of(stub.RestoreLdev, restore) == grpc.StatusCode.FAILED_PRECONDITION
    client.request(2)
    client.close()
    assert wait_for(lambda: stub.GetLdev(pb.GetLdevRequest(id=a.id)).open_sessions == 0)
    stub.RestoreLdev(restore)
    group = stub.CreateSnapshotGroup(pb.CreateSnapshotGroupRequest(name="g", ldev_ids=[a.id, b.id]))
    member = group.snapshots[0].id
    assert code_of(stub.DeleteSnapshot, pb.DeleteSnapshotRequest(id=member)) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(stub.DeleteLdev, pb.DeleteLdevRequest(id=b.id, cascade=True)) == grpc.StatusCode.FAILED_PRECONDITION
    stub.DeleteSnapshotGroup(pb.DeleteSnapshotGroupRequest(id=group.id))
    stub.DeleteLdev(pb.DeleteLdevRequest(id=a.id, cascade=True))
    assert code_of(stub.GetSnapshot, pb.GetSnapshotRequest(id=snap.id)) == grpc.StatusCode.NOT_FOUND


def test_clone_reports_progress_and_finishes(stub, make_ldev, array_proc):
    ldev = make_ldev("src", 256 * MIB)
    client = RawClient(array_proc.nbd_address)
    client.go("src")
    for i in range(0, 64, 2):
        assert client.write(i * MIB, bytes([i + 1]) * MIB) == 0
    client.close()
    clone = stub.CloneLdev(pb.CloneLdevRequest(name="copy", ldev_id=ldev.id, labels={"from": "src"}, open_to_all=True))
    assert clone.state in (pb.LDEV_STATE_COPYING, pb.LDEV_STATE_NORMAL)
    assert wait_for(lambda: stub.GetLdev(pb.GetLdevRequest(id=clone.id)).state == pb.LDEV_STATE_NORMAL, 60)
    done = stub.GetLdev(pb.GetLdevRequest(id=clone.id))
    assert dict(done.labels) == {"from": "src"} and 32 * MIB <= done.allocated_bytes < 40 * MIB
    check = RawClient(array_proc.nbd_address)
    check.go("copy")
    for i in range(0, 64, 2):
        assert check.read(i * MIB, MIB) == (0, bytes([i + 1]) * MIB)
    check.close()
    assert stub.ListSnapshots(pb.ListSnapshotsRequest()).snapshots == []  # the hidden source is gone
