"""Host access control (publish/unpublish, fencing) and QoS on the data path."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from csi_driver.attach import nbd_uri
from tests.api.test_array_api import code_of
from tests.integration.clients import qemu_io
from tests.integration.nbd_raw import RawClient, closed_by_server

MIB = 1 << 20
ERR_POLICY = (1 << 31) + 2
ERR_UNKNOWN = (1 << 31) + 6
EPERM = 1


def restricted(stub, name: str = "guarded", **kwargs) -> pb.Ldev:
    return stub.CreateLdev(pb.CreateLdevRequest(name=name, size_bytes=8 * MIB, **kwargs))


def test_only_published_hosts_reach_a_restricted_ldev(array_proc, stub):
    ldev = restricted(stub)
    plain = RawClient(array_proc.nbd_address)
    assert plain.go("guarded")[-1][1] == ERR_POLICY  # not by its name, for a host without a certificate
    plain.close()
    node_a = stub.PublishLdev(pb.PublishLdevRequest(ldev_id=ldev.id, host_id="node-a"))
    assert node_a.export_name.startswith("pub/") and len(node_a.export_name) > 20
    qemu_io(nbd_uri(array_proc.nbd_address, node_a.export_name), "write -P 0x5a 0 1M", "read -P 0x5a 0 1M")
    again = stub.PublishLdev(pb.PublishLdevRequest(ldev_id=ldev.id, host_id="node-a"))
    assert again.export_name == node_a.export_name  # idempotent
    other_mode = pb.PublishLdevRequest(ldev_id=ldev.id, host_id="node-a", read_only=True)
    assert code_of(stub.PublishLdev, other_mode) == grpc.StatusCode.ALREADY_EXISTS

    node_b = stub.PublishLdev(pb.PublishLdevRequest(ldev_id=ldev.id, host_id="node-b", read_only=True))
    reader = RawClient(array_proc.nbd_address)
    reader.go(node_b.export_name)
    assert reader.transmission_flags & 2  # NBD_FLAG_READ_ONLY
    assert reader.write(0, b"x" * 512) == EPERM
    assert reader.read(0, 4) == (0, b"\x5a" * 4)
    reader.close()
    shown = stub.GetLdev(pb.GetLdevRequest(id=ldev.id))
    assert not shown.open_to_all and sorted(shown.published_hosts) == ["node-a", "node-b"]
    listed = stub.ListPublications(pb.ListPublicationsRequest(ldev_id=ldev.id)).publications
    assert sorted(p.host_id for p in listed) == ["node-a", "node-b"]


def test_unpublish_fences_the_host_at_once(array_proc, stub):
    ldev = restricted(stub)
    publication = stub.PublishLdev(pb.PublishLdevRequest(ldev_id=ldev.id, host_id="node-a"))
    client = RawClient(array_proc.nbd_address)
    client.go(publication.export_name)
    assert client.write(0, b"before" * 10) == 0
    stub.UnpublishLdev(pb.UnpublishLdevRequest(ldev_id=ldev.id, host_id="node-a"))
    assert closed_by_server(client.sock)
    client.close()
    late = RawClient(array_proc.nbd_address)
    assert late.go(publication.export_name)[-1][1] == ERR_UNKNOWN
    late.close()
    stub.UnpublishLdev(pb.UnpublishLdevRequest(ldev_id=ldev.id, host_id="node-a"))  # idempotent


def test_an_ldev_can_be_deleted_as_soon_as_its_unpublish_returns(array_proc, stub):
    """Unpublish returns once the cut sessions are closed: DeleteVolume right after
    ControllerUnpublishVolume never meets "open NBD sessions" (csi-sanity does exactly this)."""
    for n in range(10):
        ldev = restricted(stub, f"short-lived-{n}")
        publication = stub.PublishLdev(pb.PublishLdevRequest(ldev_id=ldev.id, host_id="node-a"))
        client = RawClient(array_proc.nbd_address)
        client.go(publication.export_name)
        assert client.write(0, b"x" * 4096) == 0
        stub.UnpublishLdev(pb.UnpublishLdevRequest(ldev_id=ldev.id, host_id="node-a"))
        stub.DeleteLdev(pb.DeleteLdevRequest(id=ldev.id))  # at once
        client.close()


def test_publications_survive_kill_9_and_go_with_the_ldev(array_proc, stub):
    ldev = restricted(stub)
    publication = stub.PublishLdev(pb.PublishLdevRequest(ldev_id=ldev.id, host_id="node-a"))
    array_proc.kill()
    array_proc.start()
    qemu_io(nbd_uri(array_proc.nbd_address, publication.export_name), "write -P 1 0 4k", "flush")
    with grpc.insecure_channel(array_proc.api_address) as channel:
        after = pb_grpc.ArrayStub(channel)
        after.DeleteLdev(pb.DeleteLdevRequest(id=ldev.id))
        assert after.ListPublications(pb.ListPublicationsRequest()).publications == []


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (pb.PublishLdevRequest(ldev_id=999, host_id="n"), grpc.StatusCode.NOT_FOUND),
        (pb.PublishLdevRequest(ldev_id=1, host_id=""), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.PublishLdevRequest(ldev_id=1, host_id="x" * 300), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_publish_errors(stub, request_, code):
    restricted(stub)
    assert code_of(stub.PublishLdev, request_) == code


def timed_writes(address: str, export: str, count: int, size: int) -> float:
    client = RawClient(address)
    client.go(export)
    start = time.monotonic()
    for i in range(count):
        assert client.write((i * size) % (8 * MIB - size), b"q" * size) == 0
    elapsed = time.monotonic() - start
    client.close()
    return elapsed


def test_iops_limit_holds_requests_and_can_be_lifted(array_proc, stub):
    ldev = stub.CreateLdev(pb.CreateLdevRequest(name="slow", size_bytes=8 * MIB, max_iops=50, open_to_all=True))
    # 60 writes at 50 IOPS: the 5-request burst goes at once, the other 55 take 1.1 s.
    assert timed_writes(array_proc.nbd_address, "slow", 60, 4096) >= 1.0
    stub.SetLdevQos(pb.SetLdevQosRequest(ldev_id=ldev.id))
    assert stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).max_iops == 0
    assert timed_writes(array_proc.nbd_address, "slow", 60, 4096) < 1.0  # the control: unlimited is fast


def test_bandwidth_limit_and_sharing_across_connections(array_proc, stub):
    ldev = stub.CreateLdev(pb.CreateLdevRequest(name="narrow", size_bytes=8 * MIB, open_to_all=True))
    stub.SetLdevQos(pb.SetLdevQosRequest(ldev_id=ldev.id, max_mbps=10))
    assert stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).max_mbps == 10
    # 6 MB at 10 MB/s (1 MB burst): at least 0.5 s.
    assert timed_writes(array_proc.nbd_address, "narrow", 6, 1_000_000) >= 0.45
    stub.SetLdevQos(pb.SetLdevQosRequest(ldev_id=ldev.id, max_iops=40))
    results: list[float] = []
    workers = [
        threading.Thread(target=lambda: results.append(timed_writes(array_proc.nbd_address, "narrow", 30, 4096)))
        for _ in range(2)
    ]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    # 60 writes against one 40 IOPS limit shared by both connections: about 1.4 s in all.
    assert time.monotonic() - start >= 1.2
