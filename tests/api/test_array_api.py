"""The management API over a real gRPC connection: results and status codes."""

from __future__ import annotations

import threading

import grpc
import pytest

from ccopy_api import array_pb2 as pb
from tests.conftest import wait_for
from tests.integration.nbd_raw import RawClient

MIB = 1 << 20
TIB = 1 << 40


def code_of(call, *args) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call(*args)
    return err.value.code()


def test_array_info(stub, array_proc):
    info = stub.GetArrayInfo(pb.GetArrayInfoRequest())
    assert info.serial == 20001 and info.nbd_address == array_proc.nbd_address
    assert info.max_request_bytes == 32 * MIB and info.version


def test_create_get_and_idempotency(stub):
    ldev = stub.CreateLdev(pb.CreateLdevRequest(name="pvc-1", size_bytes=TIB, labels={"ns": "shop"}))
    assert ldev.display_id == "00:00:01" and ldev.state == pb.LDEV_STATE_NORMAL
    assert ldev.allocated_bytes == 0 and dict(ldev.labels) == {"ns": "shop"}
    assert ldev.export_name == "" and not ldev.open_to_all  # closed: hosts need a publication
    again = stub.CreateLdev(pb.CreateLdevRequest(name="pvc-1", size_bytes=TIB))
    assert again.id == ldev.id
    assert (
        code_of(stub.CreateLdev, pb.CreateLdevRequest(name="pvc-1", size_bytes=2 * TIB))
        == grpc.StatusCode.ALREADY_EXISTS
    )
    assert stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).name == "pvc-1"
    assert stub.GetLdev(pb.GetLdevRequest(name="pvc-1")).id == ldev.id


@pytest.mark.parametrize(
    "request_",
    [
        pb.CreateLdevRequest(name="", size_bytes=MIB),
        pb.CreateLdevRequest(name="x", size_bytes=0),
        pb.CreateLdevRequest(name="x", size_bytes=1000),
        pb.CreateLdevRequest(name="a/b", size_bytes=MIB),
        pb.CreateLdevRequest(name="x" * 200, size_bytes=MIB),
        pb.CreateLdevRequest(name="x", size_bytes=MIB, labels={"": "empty key"}),
        pb.CreateLdevRequest(name="x", size_bytes=MIB, labels={f"k{i}": "v" for i in range(65)}),
    ],
)
def test_invalid_create_requests(stub, request_):
    assert code_of(stub.CreateLdev, request_) == grpc.StatusCode.INVALID_ARGUMENT
    assert not stub.ListLdevs(pb.ListLdevsRequest()).ldevs  # nothing half-made


@pytest.mark.parametrize("size", [1 << 63, (1 << 64) - 512, 1 << 60])
def test_size_beyond_what_the_pool_can_hold_is_out_of_range(stub, array_proc, size):
    # 2^60 fits the API but not an ext4 pool (its files stop at 16 TiB).
    if size < 1 << 63 and file_system_allows(array_proc.pool, size):
        pytest.skip(f"the pool's file system holds files of {size} bytes, so this limit does not exist here")
    assert code_of(stub.CreateLdev, pb.CreateLdevRequest(name="huge", size_bytes=size)) == grpc.StatusCode.OUT_OF_RANGE
    assert not stub.ListLdevs(pb.ListLdevsRequest()).ldevs
    ldev = stub.CreateLdev(pb.CreateLdevRequest(name="small", size_bytes=MIB))
    expand = pb.ExpandLdevRequest(id=ldev.id, new_size_bytes=size)
    assert code_of(stub.ExpandLdev, expand) == grpc.StatusCode.OUT_OF_RANGE
    assert stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).size_bytes == MIB


def file_system_allows(folder, size: int) -> bool:
    probe = folder / "size-probe"
    try:
        with open(probe, "wb") as f:
            f.truncate(size)
        return True
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)


def test_not_found_everywhere(stub):
    assert code_of(stub.GetLdev, pb.GetLdevRequest(id=99)) == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.GetLdev, pb.GetLdevRequest(name="nope")) == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.DeleteLdev, pb.DeleteLdevRequest(id=99)) == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.ExpandLdev, pb.ExpandLdevRequest(id=99, new_size_bytes=MIB)) == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.UpdateLdevLabels, pb.UpdateLdevLabelsRequest(id=99)) == grpc.StatusCode.NOT_FOUND


def test_invalid_references(stub):
    assert code_of(stub.GetLdev, pb.GetLdevRequest()) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.GetLdev, pb.GetLdevRequest(id=1 << 30)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.ListLdevs, pb.ListLdevsRequest(page_token="garbage")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.ListLdevs, pb.ListLdevsRequest(page_size=5000)) == grpc.StatusCode.INVALID_ARGUMENT


def test_expand_grows_never_shrinks(stub):
    ldev = stub.CreateLdev(pb.CreateLdevRequest(name="grow", size_bytes=8 * MIB))
    assert stub.ExpandLdev(pb.ExpandLdevRequest(id=ldev.id, new_size_bytes=16 * MIB)).size_bytes == 16 * MIB
    assert stub.ExpandLdev(pb.ExpandLdevRequest(id=ldev.id, new_size_bytes=16 * MIB)).size_bytes == 16 * MIB
    shrink = pb.ExpandLdevRequest(id=ldev.id, new_size_bytes=8 * MIB)
    assert code_of(stub.ExpandLdev, shrink) == grpc.StatusCode.OUT_OF_RANGE
    unaligned = pb.ExpandLdevRequest(id=ldev.id, new_size_bytes=16 * MIB + 1)
    assert code_of(stub.ExpandLdev, unaligned) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.ExpandLdev, pb.ExpandLdevRequest(id=ldev.id)) == grpc.StatusCode.INVALID_ARGUMENT


def test_delete_is_refused_while_a_host_is_connected(stub, array_proc):
    ldev = stub.CreateLdev(pb.CreateLdevRequest(name="busy", size_bytes=MIB, open_to_all=True))
    client = RawClient(array_proc.nbd_address)
    client.go("busy")
    assert stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).open_sessions == 1
    assert code_of(stub.DeleteLdev, pb.DeleteLdevRequest(id=ldev.id)) == grpc.StatusCode.FAILED_PRECONDITION
    client.request(2)  # NBD_CMD_DISC
    client.close()
    assert wait_for(lambda: stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).open_sessions == 0)
    stub.DeleteLdev(pb.DeleteLdevRequest(id=ldev.id))
    assert code_of(stub.GetLdev, pb.GetLdevRequest(id=ldev.id)) == grpc.StatusCode.NOT_FOUND


def test_list_pages_in_id_order_and_filters_by_labels(stub):
    for i in range(7):
        stub.CreateLdev(
            pb.CreateLdevRequest(name=f"v{i}", size_bytes=MIB, labels={"parity": "even" if i % 2 == 0 else "odd"})
        )
    seen, token, pages = [], "", 0
    while True:
        page = stub.ListLdevs(pb.ListLdevsRequest(page_size=3, page_token=token))
        seen += [ldev.name for ldev in page.ldevs]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"v{i}" for i in range(7)] and pages == 3
    odd = stub.ListLdevs(pb.ListLdevsRequest(label_selector={"parity": "odd"}))
    assert [ldev.name for ldev in odd.ldevs] == ["v1", "v3", "v5"]


def test_labels_set_and_remove(stub):
    ldev = stub.CreateLdev(pb.CreateLdevRequest(name="lab", size_bytes=MIB, labels={"a": "1", "b": "2"}))
    after = stub.UpdateLdevLabels(pb.UpdateLdevLabelsRequest(id=ldev.id, set={"c": "3", "a": "9"}, remove=["b"]))
    assert dict(after.labels) == {"a": "9", "c": "3"}
    both = pb.UpdateLdevLabelsRequest(id=ldev.id, set={"a": "1"}, remove=["a"])
    assert code_of(stub.UpdateLdevLabels, both) == grpc.StatusCode.INVALID_ARGUMENT


def test_pool_capacity(stub):
    stub.CreateLdev(pb.CreateLdevRequest(name="p1", size_bytes=TIB))
    stub.CreateLdev(pb.CreateLdevRequest(name="p2", size_bytes=MIB))
    pool = stub.GetPool(pb.GetPoolRequest())
    assert pool.ldev_count == 2 and pool.provisioned_bytes == TIB + MIB and pool.allocated_bytes == 0
    assert pool.total_bytes >= pool.free_bytes > 0
    assert [(a.display_id, a.name) for a in pool.ldevs] == [("00:00:01", "p1"), ("00:00:02", "p2")]


def test_concurrent_creates_of_one_name_make_one_ldev(stub):
    results: list[object] = []

    def create() -> None:
        try:
            results.append(stub.CreateLdev(pb.CreateLdevRequest(name="race", size_bytes=MIB)).id)
        except grpc.RpcError as exc:
            results.append(exc.code())

    threads = [threading.Thread(target=create) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = {r for r in results if isinstance(r, int)}
    assert len(ids) == 1
    assert all(isinstance(r, int) or r == grpc.StatusCode.ABORTED for r in results)
    assert len(stub.ListLdevs(pb.ListLdevsRequest()).ldevs) == 1
