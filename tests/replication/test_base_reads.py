"""Reads of a base snapshot in parts (initial copy, resync): each part is read in order up
to its end, the parts side by side, and together they give exactly the snapshot's data,
each byte once, whatever was written after the snapshot."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backend.array import Array
from backend.pool import Pool
from backend.replication import replicator
from backend.replication.replicator import BaseReader
from backend.write_path import HostWrite, WriteKind

MIB = 1 << 20
SIZE = 5 * MIB


@pytest.fixture
def array(tmp_path: Path):
    a = Array(Pool(tmp_path / "pool", serial=1))
    yield a
    a.close()


def base_with_holes(array: Array) -> tuple[int, int, bytes]:
    """An LDEV with data in three places (one across a part boundary), a snapshot of it,
    and writes after the snapshot; (LDEV, snapshot, what the snapshot holds)."""
    ldev = array.create_ldev("pvol", SIZE, open_to_all=True)
    session = array.sessions.open("pvol")
    content = bytearray(SIZE)
    for offset, length in ((0, 300_000), (2 * MIB - 4096, 12288), (4 * MIB + 65536, MIB - 65536)):
        data = os.urandom(length)
        session.write(HostWrite(WriteKind.DATA, offset, length, data))
        content[offset : offset + length] = data
    snapshot = array.snapshots.create_snapshot("base", ldev.id)
    session.write(HostWrite(WriteKind.DATA, 2 * MIB - 4096, 8192, b"n" * 8192))  # after it: not in the base
    session.write(HostWrite(WriteKind.DATA, 3 * MIB, 4096, b"n" * 4096))
    session.close()
    return ldev.id, snapshot.id, bytes(content)


def test_a_part_is_read_up_to_its_end_and_the_total_comes_first(array: Array):
    ldev, snapshot, content = base_with_holes(array)
    seen = bytearray(SIZE)
    allocated = 0
    first = array.pairs.read_base(ldev, snapshot, 0, 64 << 10, 2 * MIB)
    assert first.total_bytes >= 300_000 + 12288 + (MIB - 65536)  # the file system's blocks, rounded up
    for part_start, part_end in ((0, 2 * MIB), (2 * MIB, 4 * MIB), (4 * MIB, 0)):
        offset = part_start
        while True:
            chunk = array.pairs.read_base(ldev, snapshot, offset, 64 << 10, part_end)
            assert offset == part_start or chunk.total_bytes == 0
            for start, data in chunk.pieces:
                assert start >= part_start and start + len(data) <= (part_end or SIZE)
                assert not any(seen[start : start + len(data)]), "a byte sent twice"
                seen[start : start + len(data)] = data
                allocated += len(data)
            if not chunk.next_offset:
                break
            assert chunk.next_offset > offset
            offset = chunk.next_offset
    assert bytes(seen) == content
    assert allocated == first.total_bytes


class Remote:
    """The main array's side of the link, in process: read_base only."""

    def __init__(self, array: Array) -> None:
        self.array = array
        self.ends: list[int] = []

    def read_base(self, pvol_id: int, snapshot_id: int, offset: int, max_bytes: int, end: int = 0):
        self.ends.append(end)
        return self.array.pairs.read_base(pvol_id, snapshot_id, offset, max_bytes, end)


def test_the_reader_asks_for_every_part_at_once_and_misses_nothing(array: Array, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(replicator, "PART_BYTES", MIB)
    monkeypatch.setattr(replicator, "PULL_BYTES", 128 << 10)
    ldev, snapshot, content = base_with_holes(array)
    remote = Remote(array)
    seen = bytearray(SIZE)
    with ThreadPoolExecutor(max_workers=replicator.READ_AHEAD) as executor:
        reader = BaseReader(executor, remote, ldev, snapshot, SIZE)  # type: ignore[arg-type]
        while (chunk := reader.next()) is not None:
            for start, data in chunk.pieces:
                assert not any(seen[start : start + len(data)]), "a byte sent twice"
                seen[start : start + len(data)] = data
    assert bytes(seen) == content
    assert sorted(set(remote.ends)) == [MIB, 2 * MIB, 3 * MIB, 4 * MIB, SIZE], "one part per MiB, each to its end"
