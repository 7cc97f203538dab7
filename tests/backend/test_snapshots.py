"""Snapshots, groups, clones, restore and changed blocks through the Array domain."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from backend.array import Array
from backend.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, OutOfRange
from backend.model import LdevState
from backend.pool import Pool
from backend.write_path import HostWrite, WriteKind

MIB = 1 << 20
CHUNK = 64 * 1024


@pytest.fixture
def array(tmp_path: Path):
    a = Array(Pool(tmp_path / "pool", serial=1))
    yield a
    a.close()


def write(array: Array, name: str, offset: int, data: bytes) -> None:
    session = array.sessions.open(name)
    session.write(HostWrite(WriteKind.DATA, offset, len(data), data))
    session.close()


def read(array: Array, export: str, offset: int, length: int) -> bytes:
    session = array.sessions.open(export)
    data = session.read(offset, length)
    session.close()
    return data


def wait_clone(array: Array, ldev_id: int) -> None:
    assert array.cloner.wait(ldev_id, 30)
    assert array.get_ldev(ldev_id).state is LdevState.NORMAL


def test_snapshot_reads_its_instant_while_the_ldev_moves_on(array: Array):
    ldev = array.create_ldev("vol", 4 * MIB, open_to_all=True)
    write(array, "vol", 0, b"A" * MIB)
    snap = array.snapshots.create_snapshot("s1", ldev.id)
    write(array, "vol", 0, b"B" * MIB)
    assert read(array, "snapshots/s1", 0, MIB) == b"A" * MIB
    assert read(array, "vol", 0, MIB) == b"B" * MIB
    assert snap.size == 4 * MIB and array.sessions.describe("snapshots/s1").read_only


def test_creation_is_instant_whatever_the_size(array: Array):
    small = array.create_ldev("small", MIB, open_to_all=True)
    huge = array.create_ldev("huge", 1 << 40, open_to_all=True)
    write(array, "huge", (1 << 40) - MIB, os.urandom(MIB))
    timings = []
    for ldev in (small, huge):
        start = time.perf_counter()
        array.snapshots.create_snapshot(f"t-{ldev.name}", ldev.id)
        timings.append(time.perf_counter() - start)
    assert array.snapshot_bytes(huge.id) == 0  # nothing copied
    assert max(timings) < 0.5


def test_snapshot_idempotency_and_conflicts(array: Array):
    a = array.create_ldev("a", MIB, open_to_all=True)
    b = array.create_ldev("b", MIB, open_to_all=True)
    first = array.snapshots.create_snapshot("s", a.id)
    assert array.snapshots.create_snapshot("s", a.id).id == first.id
    with pytest.raises(AlreadyExists):
        array.snapshots.create_snapshot("s", b.id)
    with pytest.raises(NotFound):
        array.snapshots.create_snapshot("t", 999)
    with pytest.raises(InvalidArgument):
        array.snapshots.create_snapshot("bad/name", a.id)


def test_deleting_an_ldev_with_snapshots_needs_cascade(array: Array):
    ldev = array.create_ldev("vol", MIB, open_to_all=True)
    write(array, "vol", 0, b"x" * MIB)
    array.snapshots.create_snapshot("s", ldev.id)
    write(array, "vol", 0, b"y" * MIB)
    with pytest.raises(FailedPrecondition):
        array.delete_ldev(ldev.id)
    array.delete_ldev(ldev.id, cascade=True)
    assert array.store.find_snapshot_by_name("s") is None
    assert not array.runtimes.cow_path(ldev.id).exists()


def test_snapshot_in_use_cannot_be_deleted_and_deleting_frees_space(array: Array):
    ldev = array.create_ldev("vol", 4 * MIB, open_to_all=True)
    write(array, "vol", 0, os.urandom(4 * MIB))
    snap = array.snapshots.create_snapshot("s", ldev.id)
    write(array, "vol", 0, os.urandom(4 * MIB))
    assert array.snapshot_bytes(ldev.id) >= 4 * MIB
    session = array.sessions.open("snapshots/s")
    with pytest.raises(FailedPrecondition):
        array.snapshots.delete_snapshot(snap.id)
    session.close()
    array.snapshots.delete_snapshot(snap.id)
    assert array.snapshot_bytes(ldev.id) < MIB
    with pytest.raises(NotFound):
        array.sessions.open("snapshots/s")


def test_group_members_are_taken_together_and_deleted_as_a_unit(array: Array):
    ids = [array.create_ldev(f"v{i}", MIB).id for i in range(3)]
    taken = array.snapshots.create_group("g", ids)
    assert taken.group is not None and len(taken.snapshots) == 3
    assert len({s.id for s in taken.snapshots}) == 3
    again = array.snapshots.create_group("g", list(reversed(ids)))
    assert again.group is not None and again.group.id == taken.group.id
    with pytest.raises(AlreadyExists):
        array.snapshots.create_group("g", ids[:2])
    with pytest.raises(FailedPrecondition):
        array.snapshots.delete_snapshot(taken.snapshots[0].id)
    with pytest.raises(InvalidArgument):
        array.snapshots.create_group("dup", [ids[0], ids[0]])
    array.snapshots.delete_group(taken.group.id)
    assert array.store.list_snapshots() == []


def test_restore_rolls_back_and_keeps_newer_snapshots(array: Array):
    ldev = array.create_ldev("vol", 2 * MIB, open_to_all=True)
    write(array, "vol", 0, b"1" * MIB)
    s1 = array.snapshots.create_snapshot("s1", ldev.id)
    write(array, "vol", 0, b"2" * MIB)
    write(array, "vol", MIB, b"2" * MIB)
    array.snapshots.create_snapshot("s2", ldev.id)
    write(array, "vol", 0, b"3" * 100)
    session = array.sessions.open("vol")
    with pytest.raises(FailedPrecondition):
        array.snapshots.restore(ldev.id, s1.id)
    session.close()
    array.snapshots.restore(ldev.id, s1.id)
    assert read(array, "vol", 0, 2 * MIB) == b"1" * MIB + bytes(MIB)
    assert read(array, "snapshots/s2", 0, 2 * MIB) == b"2" * (2 * MIB)
    assert read(array, "snapshots/s1", 0, 2 * MIB) == b"1" * MIB + bytes(MIB)


def test_restore_of_a_grown_ldev_zeroes_the_new_space(array: Array):
    ldev = array.create_ldev("vol", MIB, open_to_all=True)
    write(array, "vol", 0, b"o" * MIB)
    snap = array.snapshots.create_snapshot("s", ldev.id)
    array.expand_ldev(ldev.id, 2 * MIB)
    write(array, "vol", 0, b"n" * (2 * MIB))
    array.snapshots.restore(ldev.id, snap.id)
    assert read(array, "vol", 0, 2 * MIB) == b"o" * MIB + bytes(MIB)


def test_clone_of_a_snapshot_is_thin_and_independent(array: Array):
    ldev = array.create_ldev("src", 64 * MIB, open_to_all=True)
    data = os.urandom(MIB)
    write(array, "src", 10 * MIB, data)
    snap = array.snapshots.create_snapshot("s", ldev.id)
    write(array, "src", 10 * MIB, b"z" * MIB)
    clone = array.cloner.clone("copy", None, {}, source_snapshot=snap.id, open_to_all=True)
    wait_clone(array, clone.id)
    assert read(array, "copy", 10 * MIB, MIB) == data
    assert array.allocated_bytes(clone.id) <= 2 * MIB
    write(array, "copy", 0, b"c" * 10)
    assert read(array, "src", 0, 10) == bytes(10)  # independent


def test_clone_of_a_live_ldev_uses_a_hidden_snapshot(array: Array):
    ldev = array.create_ldev("src", 8 * MIB, open_to_all=True)
    write(array, "src", 0, b"L" * (8 * MIB))
    clone = array.cloner.clone("copy", 16 * MIB, {}, source_ldev=ldev.id, open_to_all=True)
    wait_clone(array, clone.id)
    assert read(array, "copy", 0, 8 * MIB) == b"L" * (8 * MIB)
    assert array.get_ldev(clone.id).size == 16 * MIB
    assert array.store.list_snapshots(include_hidden=True) == []  # hidden snapshot gone


def test_clone_into_a_smaller_ldev_is_out_of_range(array: Array):
    ldev = array.create_ldev("src", 8 * MIB, open_to_all=True)
    with pytest.raises(OutOfRange):
        array.cloner.clone("copy", 4 * MIB, {}, source_ldev=ldev.id, open_to_all=True)
    assert array.store.find_ldev_by_name("copy") is None
    assert array.store.list_snapshots(include_hidden=True) == []


def test_snapshot_being_cloned_cannot_be_deleted(array: Array):
    ldev = array.create_ldev("src", 8 * MIB, open_to_all=True)
    snap = array.snapshots.create_snapshot("s", ldev.id)
    # Holding the source's lock keeps the copy from starting, so the clone is
    # certainly still COPYING when the delete is tried (an empty source would
    # otherwise finish before the next line runs).
    with array.runtimes.get(ldev.id).lock:
        clone = array.cloner.clone("copy", None, {}, source_snapshot=snap.id, open_to_all=True)
        assert array.get_ldev(clone.id).state is LdevState.COPYING
        with pytest.raises(FailedPrecondition, match="being cloned"):
            array.snapshots.delete_snapshot(snap.id)
    wait_clone(array, clone.id)
    array.snapshots.delete_snapshot(snap.id)


def test_allocated_and_changed_extents(array: Array):
    ldev = array.create_ldev("vol", 8 * MIB, open_to_all=True)
    write(array, "vol", 0, b"a" * CHUNK)
    write(array, "vol", 4 * MIB, b"b" * (2 * CHUNK))
    s1 = array.snapshots.create_snapshot("s1", ldev.id)
    write(array, "vol", 4 * MIB, b"c" * 10)
    write(array, "vol", 6 * MIB, b"d" * CHUNK)
    s2 = array.snapshots.create_snapshot("s2", ldev.id)
    write(array, "vol", 7 * MIB, b"e" * CHUNK)  # after s2: in neither

    page = array.snapshots.allocated(s1.id, 0, 100)
    assert page.extents == [(0, CHUNK), (4 * MIB, 2 * CHUNK)] and page.next_offset == 0
    page = array.snapshots.allocated(s2.id, 0, 100)
    assert page.extents == [(0, CHUNK), (4 * MIB, 2 * CHUNK), (6 * MIB, CHUNK)]
    first = array.snapshots.allocated(s2.id, 0, 1)
    assert first.extents == [(0, CHUNK)] and first.next_offset == 4 * MIB
    rest = array.snapshots.allocated(s2.id, first.next_offset, 100)
    assert rest.extents == [(4 * MIB, 2 * CHUNK), (6 * MIB, CHUNK)]

    delta = array.snapshots.changed(s1.id, s2.id, 0, 100)
    assert delta.extents == [(4 * MIB, CHUNK), (6 * MIB, CHUNK)]
    other = array.create_ldev("other", MIB, open_to_all=True)
    s3 = array.snapshots.create_snapshot("s3", other.id)
    with pytest.raises(InvalidArgument):
        array.snapshots.changed(s1.id, s3.id, 0, 10)


def test_snapshots_survive_reopening_the_array(tmp_path: Path):
    array = Array(Pool(tmp_path / "pool", serial=1))
    ldev = array.create_ldev("vol", MIB, open_to_all=True)
    write(array, "vol", 0, b"before" * 100)
    array.snapshots.create_snapshot("s", ldev.id)
    write(array, "vol", 0, b"after!" * 100)
    array.close()
    array = Array(Pool(tmp_path / "pool", serial=1))
    assert read(array, "snapshots/s", 0, 600) == b"before" * 100
    assert read(array, "vol", 0, 600) == b"after!" * 100
    array.close()


def test_chunk_size_must_be_sane(tmp_path: Path):
    with pytest.raises(InvalidArgument):
        Array(Pool(tmp_path / "pool", serial=1), chunk_size=3000)


def test_an_ldevs_writes_leave_the_native_path_exactly_while_a_snapshot_lives(array: Array):
    """The gate's route follows the live snapshots (a hidden one too: a pair's base): while one
    lives, writes take the write path's copy-on-write; once none is left, the connection
    threads write the data themselves again."""
    from backend._nbdcore import ROUTE_PLAIN, ROUTE_PYTHON

    ldev = array.create_ldev("v", MIB, open_to_all=True)
    gate = array.runtimes.get(ldev.id).gate
    assert gate.route == ROUTE_PLAIN
    first = array.snapshots.create_snapshot("s1", ldev.id)
    second = array.snapshots.create_snapshot("s2", ldev.id)
    assert gate.route == ROUTE_PYTHON
    array.snapshots.delete_snapshot(first.id)
    assert gate.route == ROUTE_PYTHON
    array.snapshots.delete_snapshot(second.id)
    assert gate.route == ROUTE_PLAIN
