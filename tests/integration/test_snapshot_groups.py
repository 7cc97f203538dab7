"""Snapshot groups are taken at one instant: proven under concurrent writers.

Two writers each own a pair of LDEVs and, step after step, write record i to
the first LDEV of the pair, wait for the acknowledgement, then write record i
to the second. In every group snapshot each LDEV's records must form a prefix
(0..k-1, nothing after) and the second LDEV of a pair may never hold a record
the first lacks. The control takes the two snapshots one after the other
instead, and must find violations: the checker can fail.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib

import pytest

from ccopy_api import array_pb2 as pb
from tests.integration.nbd_raw import RawClient

RECORD = 512
RECORDS = 4096  # 2 MiB of records per LDEV
SIZE = RECORDS * RECORD


def record(i: int, ldev: int) -> bytes:
    body = struct.pack(">QQ", i, ldev) + bytes(RECORD - 20)
    return body + struct.pack(">I", zlib.crc32(body))


def prefix_length(data: bytes, ldev: int) -> int:
    """How many records form a valid prefix; fails on a gap or garbage after it."""
    n = 0
    while n < RECORDS and data[n * RECORD : (n + 1) * RECORD] == record(n, ldev):
        n += 1
    tail = data[n * RECORD :]
    assert tail.count(0) == len(tail), f"LDEV {ldev}: records after a gap at {n}"
    return n


class PairWriter(threading.Thread):
    def __init__(self, address: str, first: str, second: str, ids: tuple[int, int]) -> None:
        super().__init__(daemon=True)
        self.a, self.b = RawClient(address), RawClient(address)
        self.a.go(first)
        self.b.go(second)
        self.ids = ids
        self.stop = threading.Event()
        self.written = 0

    def run(self) -> None:
        for i in range(RECORDS):
            if self.stop.is_set():
                break
            assert self.a.write(i * RECORD, record(i, self.ids[0])) == 0
            assert self.b.write(i * RECORD, record(i, self.ids[1])) == 0
            self.written = i + 1
        self.a.close()
        self.b.close()


def read_export(address: str, export: str) -> bytes:
    client = RawClient(address)
    client.go(export)
    error, data = client.read(0, SIZE)
    assert error == 0
    client.disconnect()  # the snapshot is free to delete once this returns
    return data


@pytest.fixture
def four_ldevs(stub, make_ldev):
    return [make_ldev(f"rec{i}", SIZE).id for i in range(4)]


def run_writers(array_proc, ldev_ids) -> list[PairWriter]:
    names = [f"rec{i}" for i in range(4)]
    writers = [
        PairWriter(array_proc.nbd_address, names[0], names[1], (ldev_ids[0], ldev_ids[1])),
        PairWriter(array_proc.nbd_address, names[2], names[3], (ldev_ids[2], ldev_ids[3])),
    ]
    for writer in writers:
        writer.start()
    return writers


def test_two_hundred_group_snapshots_under_writers_hold_prefixes(array_proc, stub, four_ldevs):
    writers = run_writers(array_proc, four_ldevs)
    groups, stalls = [], []
    while len(groups) < 200:
        group = stub.CreateSnapshotGroup(pb.CreateSnapshotGroupRequest(name=f"g{len(groups)}", ldev_ids=four_ldevs))
        groups.append(group)
        stalls.append(group.stall_micros)
        time.sleep(0.002)
    for writer in writers:
        writer.stop.set()
        writer.join(30)
    assert all(w.written > 0 for w in writers)
    moved = set()
    for group in groups:
        by_ldev = {s.ldev_id: s for s in group.snapshots}
        lengths = [prefix_length(read_export(array_proc.nbd_address, by_ldev[i].export_name), i) for i in four_ldevs]
        assert lengths[1] <= lengths[0], f"{group.name}: LDEV 2 holds a record LDEV 1 lacks"
        assert lengths[3] <= lengths[2], f"{group.name}: LDEV 4 holds a record LDEV 3 lacks"
        moved.add(tuple(lengths))
        shown = stub.GetSnapshotGroup(pb.GetSnapshotGroupRequest(id=group.id))
        assert shown.stall_micros == group.stall_micros  # showing it later tells what taking it did
        stub.DeleteSnapshotGroup(pb.DeleteSnapshotGroupRequest(id=group.id))
    assert len(moved) > 10, "the writers barely moved during the snapshots: the test proved little"
    print(f"group stall over 200 groups: max {max(stalls)} us, median {sorted(stalls)[100]} us")


def test_control_separate_snapshots_collapse(array_proc, stub, four_ldevs):
    """Snapshot LDEV 1, let the writer run on, snapshot LDEV 2: the pair collapses."""
    writers = run_writers(array_proc, four_ldevs)
    violations = 0
    for n in range(60):
        first = stub.CreateSnapshot(pb.CreateSnapshotRequest(name=f"x-{n}", ldev_id=four_ldevs[0]))
        time.sleep(0.005)
        second = stub.CreateSnapshot(pb.CreateSnapshotRequest(name=f"y-{n}", ldev_id=four_ldevs[1]))
        a = prefix_length(read_export(array_proc.nbd_address, first.export_name), four_ldevs[0])
        b = prefix_length(read_export(array_proc.nbd_address, second.export_name), four_ldevs[1])
        violations += b > a
        for snap in (first, second):
            stub.DeleteSnapshot(pb.DeleteSnapshotRequest(id=snap.id))
    for writer in writers:
        writer.stop.set()
        writer.join(30)
    assert violations > 0, "separate snapshots never showed a record of LDEV 2 without LDEV 1"
