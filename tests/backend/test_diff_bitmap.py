"""Differential bitmaps: marks, extents, persistence, and durable before the data they describe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend import diff_bitmap as diff_module
from backend import ldev_io
from backend.array import Array
from backend.diff_bitmap import REGION_BYTES, BitmapMismatch, DiffBitmap
from backend.pool import Pool
from backend.write_path import HostWrite, WriteKind

MIB = 1 << 20
R = REGION_BYTES


def test_marks_become_merged_extents_clipped_to_the_ldev(tmp_path: Path):
    bitmap = DiffBitmap(tmp_path / "a.bits", size=10 * R + 100)
    bitmap.mark(R + 1, 1)  # one byte dirties its whole region
    bitmap.mark(2 * R, R)  # adjacent: merged
    bitmap.mark(10 * R + 50, 10)  # the last, partial region
    bitmap.mark(0, 0)  # nothing
    assert bitmap.extents() == [(R, 2 * R), (10 * R, 100)]
    assert bitmap.marked() == 3
    bitmap.close()


@pytest.mark.parametrize("seed", range(5))
def test_extents_are_exactly_the_marked_regions(tmp_path: Path, seed: int):
    """Against the plain definition: a region is in an extent iff one of its bytes was written."""
    import random

    rng = random.Random(seed)
    regions = rng.randrange(1, 300)
    size = (regions - 1) * R + rng.randrange(1, R + 1)
    bitmap = DiffBitmap(tmp_path / "m.bits", size=size)
    written = set()
    for _ in range(rng.randrange(0, 60)):
        offset = rng.randrange(size)
        length = rng.randrange(1, min(3 * R, size - offset) + 1)
        bitmap.mark(offset, length)
        written.update(range(offset // R, (offset + length - 1) // R + 1))
    covered = {r for start, length in bitmap.extents() for r in range(start // R, -(-(start + length) // R))}
    assert covered == written
    assert all(start + length <= size for start, length in bitmap.extents())
    assert bitmap.marked() == len(written)
    bitmap.close()


def test_marks_survive_a_restart_and_the_file_must_match_the_ldev(tmp_path: Path):
    bitmap = DiffBitmap(tmp_path / "a.bits", size=MIB)
    bitmap.mark(5 * R, 3 * R)
    bitmap.close()
    again = DiffBitmap(tmp_path / "a.bits", size=MIB)
    assert again.extents() == [(5 * R, 3 * R)]
    again.close()
    with pytest.raises(BitmapMismatch):
        DiffBitmap(tmp_path / "a.bits", size=MIB, region_bytes=R * 2)


def test_merging_the_other_sides_marks(tmp_path: Path):
    here, there = DiffBitmap(tmp_path / "a.bits", size=MIB), DiffBitmap(tmp_path / "b.bits", size=MIB)
    here.mark(0, R)
    there.mark(3 * R, R)
    here.merge(there.snapshot_bits())
    assert here.extents() == [(0, R), (3 * R, R)]
    with pytest.raises(BitmapMismatch):
        here.merge(b"\x00")
    here.discard()
    assert not (tmp_path / "a.bits").exists()
    there.close()


def test_only_the_first_write_to_a_region_waits_for_the_disk(tmp_path: Path, monkeypatch):
    bitmap = DiffBitmap(tmp_path / "a.bits", size=MIB)
    synced: list[int] = []
    monkeypatch.setattr(diff_module.os, "fdatasync", synced.append)
    bitmap.mark(0, 4096)
    bitmap.mark(4096, 4096)  # same region
    assert len(synced) == 1
    bitmap.mark(R, 1)
    assert len(synced) == 2
    monkeypatch.undo()
    bitmap.close()


def test_the_bit_is_durable_before_the_write_touches_the_data(tmp_path: Path, monkeypatch):
    array = Array(Pool(tmp_path / "pool", serial=1))
    try:
        ldev = array.create_ldev("p", 8 * MIB, open_to_all=True)
        session = array.sessions.open("p")
        runtime = array.runtimes.get(ldev.id)
        with runtime.lock:
            array.runtimes.track_changes(runtime)
        events: list[str] = []
        real_sync, real_write = os.fdatasync, ldev_io.LdevFile.write
        bitmap_fd = runtime.diff.fd if runtime.diff else -1

        def fdatasync(fd: int) -> None:
            events.append("bitmap durable" if fd == bitmap_fd else "other sync")
            real_sync(fd)

        def write(self, offset: int, data) -> None:
            events.append("data written")
            real_write(self, offset, data)

        monkeypatch.setattr(diff_module.os, "fdatasync", fdatasync)
        monkeypatch.setattr(ldev_io.LdevFile, "write", write)
        session.write(HostWrite(WriteKind.DATA, 3 * R, 512, b"x" * 512))
        session.write(HostWrite(WriteKind.DATA, 3 * R + 512, 512, b"y" * 512))
        session.write(HostWrite(WriteKind.TRIM, 6 * R, R))
        assert events == ["bitmap durable", "data written", "data written", "bitmap durable"]
        monkeypatch.undo()
        session.close()
        array.close()
        array = Array(Pool(tmp_path / "pool", serial=1))  # tracking goes on after a restart
        assert array.runtimes.get(ldev.id).diff is not None
        assert array.runtimes.get(ldev.id).diff.extents() == [(3 * R, R), (6 * R, R)]
        array.delete_ldev(ldev.id)
        assert not array.runtimes.bitmap_path(ldev.id).exists()
    finally:
        array.close()
