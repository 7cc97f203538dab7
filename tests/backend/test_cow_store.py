"""Copy-on-write semantics against a simple model: every snapshot reads exactly
its point in time, through writes, deletions and reopening the store."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.cow_store import HEADER_BYTES, CowStore
from backend.ldev_io import LdevFile, create_sparse

CHUNK = 4096
SIZE = 16 * CHUNK


class Model:
    """Expected contents: the live LDEV and a frozen copy per snapshot."""

    def __init__(self) -> None:
        self.live = bytearray(SIZE)
        self.snapshots: dict[int, bytes] = {}


def apply_write(store: CowStore, ldev: LdevFile, model: Model, offset: int, data: bytes) -> None:
    store.preserve(ldev, offset, len(data))
    ldev.write(offset, data)
    model.live[offset : offset + len(data)] = data


def apply_trim(store: CowStore, ldev: LdevFile, model: Model, offset: int, length: int) -> None:
    store.preserve(ldev, offset, length)
    ldev.punch_hole(offset, length)
    model.live[offset : offset + length] = bytes(length)


def check(store: CowStore, ldev: LdevFile, model: Model) -> None:
    for gen, expected in model.snapshots.items():
        assert store.read(ldev, gen, 0, SIZE) == expected, f"snapshot {gen} drifted"
    assert ldev.read(0, SIZE) == bytes(model.live)


@pytest.fixture
def files(tmp_path: Path):
    create_sparse(tmp_path / "ldev", SIZE)
    ldev = LdevFile(tmp_path / "ldev")
    yield tmp_path, ldev
    ldev.close()


operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, SIZE - 1), st.integers(1, 3 * CHUNK), st.integers(1, 255)),
        st.tuples(st.just("trim"), st.integers(0, SIZE - 1), st.integers(1, 3 * CHUNK), st.just(0)),
        st.tuples(st.just("snapshot"), st.just(0), st.just(0), st.just(0)),
        st.tuples(st.just("delete"), st.integers(0, 10), st.just(0), st.just(0)),
        st.tuples(st.just("reopen"), st.just(0), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=150)
@given(operations)
def test_snapshots_match_the_model(tmp_path_factory, ops):
    folder = tmp_path_factory.mktemp("cow")
    create_sparse(folder / "ldev", SIZE)
    ldev = LdevFile(folder / "ldev")
    store = CowStore(folder / "ldev.cow", CHUNK, [])
    model = Model()
    gen = 0
    for op, a, b, c in ops:
        if op == "write":
            length = min(b, SIZE - a)
            apply_write(store, ldev, model, a, bytes([c]) * length)
        elif op == "trim":
            apply_trim(store, ldev, model, a, min(b, SIZE - a))
        elif op == "snapshot":
            gen += 1
            store.add_gen(gen)
            model.snapshots[gen] = bytes(model.live)
        elif op == "delete" and model.snapshots:
            victim = sorted(model.snapshots)[a % len(model.snapshots)]
            store.drop_gen(victim)
            del model.snapshots[victim]
        elif op == "reopen":
            store.close()
            store = CowStore(folder / "ldev.cow", CHUNK, sorted(model.snapshots))
        check(store, ldev, model)
    # Nothing is kept that no snapshot needs.
    used = sum(len(v) for v in store.versions.values())
    if not model.snapshots:
        assert used == 0
    store.close()
    ldev.close()


def test_each_chunk_is_copied_once_per_snapshot_interval(files):
    folder, ldev = files
    store = CowStore(folder / "ldev.cow", CHUNK, [])
    ldev.write(0, b"a" * SIZE)
    store.add_gen(1)
    assert store.preserve(ldev, 0, CHUNK) == 1
    assert store.preserve(ldev, 100, 10) == 0  # same chunk, already preserved
    store.add_gen(2)
    store.add_gen(3)
    assert store.preserve(ldev, 0, 2 * CHUNK) == 2  # chunk 0 for gens 2-3, chunk 1 for gens 1-3
    versions = store.versions
    assert [(v.from_gen, v.to_gen) for v in versions[0]] == [(0, 1), (1, 3)]
    assert [(v.from_gen, v.to_gen) for v in versions[1]] == [(0, 3)]
    store.close()


def test_holes_cost_no_space_and_deleting_frees_space(files):
    folder, ldev = files
    store = CowStore(folder / "ldev.cow", CHUNK, [])
    store.add_gen(1)
    store.preserve(ldev, 0, SIZE)  # all holes
    assert store.allocated_bytes() < 2 * 16 * HEADER_BYTES  # headers only (+ file system metadata)
    ldev.write(0, os.urandom(SIZE))
    store.add_gen(2)
    store.preserve(ldev, 0, SIZE)
    assert store.allocated_bytes() >= SIZE
    store.drop_gen(2)
    store.drop_gen(1)
    assert store.versions == {}
    assert store.allocated_bytes() < SIZE  # data punched, only zeroed headers remain
    store.close()


def test_torn_slot_is_never_trusted(files):
    folder, ldev = files
    ldev.write(0, b"x" * SIZE)
    store = CowStore(folder / "ldev.cow", CHUNK, [])
    store.add_gen(1)
    store.preserve(ldev, 0, 2 * CHUNK)
    store.close()
    # Corrupt the data of slot 0 as a crash mid-write would.
    with open(folder / "ldev.cow", "r+b") as f:
        f.seek(HEADER_BYTES + 10)
        f.write(b"garbage")
    reopened = CowStore(folder / "ldev.cow", CHUNK, [1])
    assert len(reopened.versions) == 1  # the damaged slot was dropped, the whole one kept
    reopened.close()


def test_versions_nobody_needs_are_freed_on_open(files):
    folder, ldev = files
    ldev.write(0, b"y" * SIZE)
    store = CowStore(folder / "ldev.cow", CHUNK, [])
    store.add_gen(5)
    store.preserve(ldev, 0, SIZE)
    store.close()
    reopened = CowStore(folder / "ldev.cow", CHUNK, [])  # snapshot 5 was deleted meanwhile
    assert reopened.versions == {}
    assert len(reopened.free_slots) == 16
    reopened.close()


def test_snapshot_extents_follow_the_view(files):
    folder, ldev = files
    store = CowStore(folder / "ldev.cow", CHUNK, [])
    ldev.write(CHUNK, b"d" * CHUNK)
    store.add_gen(1)
    store.preserve(ldev, 0, SIZE)
    ldev.write(0, b"n" * CHUNK)  # after the snapshot: the snapshot still sees a hole here
    ldev.punch_hole(CHUNK, CHUNK)  # and still sees data here
    runs = [(e.offset, e.length, e.is_hole) for e in store.extents(ldev, 1, 0, SIZE)]
    merged: list[tuple[int, int, bool]] = []
    for offset, length, hole in runs:
        if merged and merged[-1][2] == hole:
            merged[-1] = (merged[-1][0], merged[-1][1] + length, hole)
        else:
            merged.append((offset, length, hole))
    assert merged == [(0, CHUNK, True), (CHUNK, CHUNK, False), (2 * CHUNK, SIZE - 2 * CHUNK, True)]
    assert [c for c, _ in store.chunk_states(ldev, 1, SIZE)] == [1]
    store.close()


def test_sixty_four_snapshots_each_keep_their_instant(files):
    folder, ldev = files
    store = CowStore(folder / "ldev.cow", CHUNK, [])
    rng = random.Random(7)
    model = Model()
    for gen in range(1, 65):
        store.add_gen(gen)
        model.snapshots[gen] = bytes(model.live)
        for _ in range(3):
            offset = rng.randrange(0, SIZE - 100)
            length = min(rng.randrange(1, 2 * CHUNK), SIZE - offset)
            apply_write(store, ldev, model, offset, bytes([gen]) * length)
    check(store, ldev, model)
    store.close()


def test_control_a_write_that_skips_copy_on_write_is_caught(files):
    """The model check can fail: overwrite without preserving and it notices."""
    folder, ldev = files
    store = CowStore(folder / "ldev.cow", CHUNK, [])
    model = Model()
    apply_write(store, ldev, model, 0, b"a" * CHUNK)
    store.add_gen(1)
    model.snapshots[1] = bytes(model.live)
    ldev.write(0, b"b" * CHUNK)  # the bug under test: no preserve() first
    model.live[0:CHUNK] = b"b" * CHUNK
    with pytest.raises(AssertionError, match="drifted"):
        check(store, ldev, model)
    store.close()
