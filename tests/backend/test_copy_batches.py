"""Copies for snapshots made durable in batches: the copies of every write queued while a
batch syncs share the next batch's one sync, no write reaches the LDEV before its copy is
durable (the power-cut order of tests/backend/test_cow_group_commit.py), and a failed copy
sends its batch's writes the blocking way, where each fails only on its own copy."""

from __future__ import annotations

import errno
import random
import threading
import time
from pathlib import Path

import pytest

from backend import copy_batches
from backend.copy_batches import CopyBatches
from backend.write_path import HostWrite, WriteKind, WritePath
from tests.backend.test_cow_group_commit import (
    CHUNK,
    SIZE,
    Target,
    logged_target,
    make_target,
    no_journal_path,
    snapshot,
)


class Outcomes:
    """What each write's `done` was told, and a wait for all of them."""

    def __init__(self) -> None:
        self.results: dict[int, BaseException | None] = {}
        self.changed = threading.Condition()

    def done_for(self, key: int):
        def done(exc: BaseException | None) -> None:
            with self.changed:
                self.results[key] = exc
                self.changed.notify_all()

        return done

    def wait(self, count: int) -> dict[int, BaseException | None]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.results) >= count, 30), self.results
            return dict(self.results)


def copier(target: Target) -> tuple[WritePath, CopyBatches, Outcomes]:
    path = no_journal_path()
    return path, CopyBatches(path, target), Outcomes()


def submit(batches: CopyBatches, path: WritePath, outcomes: Outcomes, key: int, op: HostWrite) -> None:
    """As the NBD server does: once the copier says the copies are durable, the write goes on
    through the one write path (here on the copier's thread; the server writes on its loop)."""

    def copies_ready(failed: BaseException | None) -> None:
        if failed is not None:
            outcomes.done_for(key)(failed)
            return
        try:
            path.apply(batches.target, op, SIZE, False)
        except Exception as exc:
            outcomes.done_for(key)(exc)
        else:
            outcomes.done_for(key)(None)

    batches.submit(op.offset, op.length, copies_ready)


def test_writes_queued_while_a_batch_syncs_share_the_next_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target, cow, log = logged_target(tmp_path, monkeypatch)
    in_first_sync, release = log.hold_the_first_sync()
    old = snapshot(target, 1)
    path, batches, outcomes = copier(target)
    ops = {chunk: HostWrite(WriteKind.DATA, chunk * CHUNK + 512, 4096, bytes([chunk]) * 4096) for chunk in range(1, 8)}
    submit(batches, path, outcomes, 1, ops[1])
    assert in_first_sync.wait(30)
    for chunk in range(2, 8):  # arrive while the first batch syncs
        submit(batches, path, outcomes, chunk, ops[chunk])
    time.sleep(0.05)
    assert target.file.read(2 * CHUNK + 512, 4096) == old[2 * CHUNK + 512 : 2 * CHUNK + 512 + 4096], "wrote early"
    release.set()
    assert outcomes.wait(7) == dict.fromkeys(range(1, 8))
    monkeypatch.undo()
    assert (batches.batches, batches.writes) == (2, 7)
    assert (log.count("copy"), cow.syncs) == (7, 2), "six writes, one sync"
    assert log.writes_before_their_copy_was_durable() == []
    for chunk, op in ops.items():
        assert target.file.read(op.offset, 4096) == bytes([chunk]) * 4096
    assert cow.read(target.file, 1, 0, SIZE) == old


def test_a_failed_copy_sends_its_batch_the_blocking_way_where_only_the_write_that_needs_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    target = make_target(tmp_path)
    cow = target.cow
    assert cow is not None
    old = snapshot(target, 1)
    real_copy = cow._copy

    def store_full_for_chunk_3(ldev, chunk: int) -> None:
        if chunk == 3:
            raise OSError(errno.ENOSPC, "snapshot store is full")
        real_copy(ldev, chunk)

    monkeypatch.setattr(cow, "_copy", store_full_for_chunk_3)
    path, batches, outcomes = copier(target)
    ops = {1: HostWrite(WriteKind.DATA, 3 * CHUNK, 4096, b"a" * 4096), 2: HostWrite(WriteKind.ZEROES, CHUNK, 4096)}
    with batches._changed:  # both queue before the copier may take any: one batch
        for key, op in ops.items():
            batches.submit(op.offset, op.length, outcomes.done_for(key))
    results = outcomes.wait(2)
    assert batches.writes == 2 and all(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in results.values())
    assert target.file.read(0, SIZE) == old, "a failed copy writes nothing"
    with pytest.raises(OSError) as full:  # the blocking way: each write copies for itself
        path.apply(target, ops[1], SIZE, False)
    assert full.value.errno == errno.ENOSPC
    path.apply(target, ops[2], SIZE, False)
    assert target.file.read(CHUNK, 4096) == bytes(4096) and target.file.read(3 * CHUNK, 4096) == old[3 * CHUNK :][:4096]
    assert cow.read(target.file, 1, 0, SIZE) == old


def test_concurrent_writers_and_snapshots_keep_the_order_and_every_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    target, cow, log = logged_target(tmp_path, monkeypatch)
    path, batches, outcomes = copier(target)
    expected = {1: snapshot(target, 1)}
    rng = random.Random(7)
    for key in range(600):
        offset = rng.randrange(SIZE // 4096) * 4096
        submit(batches, path, outcomes, key, HostWrite(WriteKind.DATA, offset, 4096, rng.randbytes(4096)))
        if key % 150 == 149:  # a snapshot while writes are queued and in flight
            time.sleep(0.005)
            expected[len(expected) + 1] = snapshot(target, len(expected) + 1)
    assert set(outcomes.wait(600).values()) == {None}
    monkeypatch.undo()
    assert log.count("write") == 600 and log.count("copy") > 0
    assert log.writes_before_their_copy_was_durable() == []
    for gen, content in expected.items():
        assert cow.read(target.file, gen, 0, SIZE) == content, f"snapshot {gen}"
    assert cow.syncs < log.count("copy"), "copies share syncs"


def test_the_drain_thread_ends_when_idle_and_the_next_write_starts_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(copy_batches, "IDLE_SECONDS", 0.01)
    target = make_target(tmp_path)
    snapshot(target, 1)
    path, batches, outcomes = copier(target)

    submit(batches, path, outcomes, 1, HostWrite(WriteKind.DATA, 0, 4096, b"x" * 4096))
    outcomes.wait(1)
    deadline = time.monotonic() + 30
    while batches._draining and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not batches._draining, "the drain thread did not end"
    submit(batches, path, outcomes, 2, HostWrite(WriteKind.DATA, CHUNK, 4096, b"y" * 4096))
    assert outcomes.wait(2) == {1: None, 2: None}
    assert target.file.read(CHUNK, 4096) == b"y" * 4096


def test_a_caller_that_cannot_be_told_does_not_stop_the_copier(tmp_path: Path):
    """An NBD connection whose event loop closed meanwhile raises when told; the rest of the
    batch and every later write are still told."""
    target = make_target(tmp_path)
    snapshot(target, 1)
    path, batches, outcomes = copier(target)

    def gone(_failed: BaseException | None) -> None:
        raise RuntimeError("Event loop is closed")

    with batches._changed:  # one batch: the caller that raises first
        batches.submit(0, 4096, gone)
        submit(batches, path, outcomes, 1, HostWrite(WriteKind.DATA, CHUNK, 4096, b"a" * 4096))
    assert outcomes.wait(1) == {1: None}
    submit(batches, path, outcomes, 2, HostWrite(WriteKind.DATA, 2 * CHUNK, 4096, b"b" * 4096))
    assert outcomes.wait(2) == {1: None, 2: None}
    assert target.file.read(2 * CHUNK, 4096) == b"b" * 4096
