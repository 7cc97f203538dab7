"""The pool's lifecycle, thin provisioning and crash recovery, without any server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, OutOfRange
from backend.model import LdevState
from backend.pool import Pool

TIB = 1 << 40


@pytest.fixture
def pool(tmp_path: Path):
    p = Pool(tmp_path / "pool", serial=7)
    yield p
    p.close()


def test_one_tib_ldev_allocates_nothing(pool: Pool):
    record = pool.create_ldev("big", TIB, {}, False)
    path = pool.ldev_path(record.id)
    assert path.stat().st_size == TIB
    assert path.stat().st_blocks == 0
    assert pool.allocated_bytes(record.id) == 0
    assert pool.capacity().provisioned_bytes == TIB


def test_create_is_idempotent_by_name_and_size(pool: Pool):
    first = pool.create_ldev("vol", 1 << 20, {"a": "1"}, False)
    again = pool.create_ldev("vol", 1 << 20, {}, False)
    assert again.id == first.id
    with pytest.raises(AlreadyExists):
        pool.create_ldev("vol", 2 << 20, {}, False)


@pytest.mark.parametrize("name", ["", "a/b", "tab\there", "x" * 129, "nul\x00"])
def test_bad_names_are_invalid(pool: Pool, name: str):
    with pytest.raises(InvalidArgument):
        pool.create_ldev(name, 1 << 20, {}, False)


@pytest.mark.parametrize("size", [0, -512, 1000, 513])
def test_bad_sizes_are_invalid(pool: Pool, size: int):
    with pytest.raises(InvalidArgument):
        pool.create_ldev("vol", size, {}, False)


def test_expand_grows_and_refuses_to_shrink(pool: Pool):
    record = pool.create_ldev("vol", 1 << 20, {}, False)
    grown = pool.expand_ldev(record, 4 << 20)
    assert grown.size == 4 << 20
    assert pool.ldev_path(record.id).stat().st_size == 4 << 20
    assert pool.expand_ldev(grown, 4 << 20).size == 4 << 20
    with pytest.raises(OutOfRange):
        pool.expand_ldev(grown, 1 << 20)


def test_ids_are_never_reused(pool: Pool):
    first = pool.create_ldev("a", 1 << 20, {}, False)
    pool.delete_ldev(first)
    second = pool.create_ldev("a", 1 << 20, {}, False)
    assert second.id > first.id
    assert not pool.ldev_path(first.id).exists()


def test_metadata_survives_reopen(tmp_path: Path):
    pool = Pool(tmp_path / "pool", serial=7)
    record = pool.create_ldev("vol", 8 << 20, {"pvc": "shop/sales"}, True)
    pool.close()
    reopened = Pool(tmp_path / "pool", serial=7)
    again = reopened.store.get_ldev(record.id)
    assert (again.name, again.size, dict(again.labels), again.read_only) == (
        "vol",
        8 << 20,
        {"pvc": "shop/sales"},
        True,
    )
    assert again.state is LdevState.NORMAL
    reopened.close()


def test_pool_belongs_to_one_serial(tmp_path: Path):
    Pool(tmp_path / "pool", serial=7).close()
    with pytest.raises(FailedPrecondition):
        Pool(tmp_path / "pool", serial=8)


def test_recovery_finishes_interrupted_create_and_delete(tmp_path: Path):
    pool = Pool(tmp_path / "pool", serial=7)
    # A create that stopped after reserving the name, before the file existed:
    creating = pool.store.insert_ldev("half-created", 1 << 20, False, {})
    # A delete that stopped after marking the LDEV:
    deleting = pool.create_ldev("half-deleted", 1 << 20, {}, False)
    pool.store.update_ldev(deleting.id, state=LdevState.DELETING)
    # A file nobody owns:
    orphan = pool.ldev_dir / "0000ff.ldev"
    orphan.write_bytes(b"x")
    pool.close()

    pool = Pool(tmp_path / "pool", serial=7)
    finished = pool.store.get_ldev(creating.id)
    assert finished.state is LdevState.NORMAL
    assert pool.ldev_path(creating.id).stat().st_size == 1 << 20
    with pytest.raises(NotFound):
        pool.store.get_ldev(deleting.id)
    assert not pool.ldev_path(deleting.id).exists()
    assert not orphan.exists()
    pool.close()


def test_capacity_reports_allocation_per_ldev(pool: Pool):
    a = pool.create_ldev("a", 16 << 20, {}, False)
    pool.create_ldev("b", 16 << 20, {}, False)
    with open(pool.ldev_path(a.id), "r+b") as f:
        f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    capacity = pool.capacity()
    by_name = {x.record.name: x.allocated_bytes for x in capacity.ldevs}
    assert by_name["a"] >= 1 << 20
    assert by_name["b"] == 0
    assert capacity.total_bytes > capacity.free_bytes > 0
    assert capacity.allocated_bytes == by_name["a"]
