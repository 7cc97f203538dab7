"""Group commit of copy-on-write copies: writers share one fdatasync of the CoW store,
and still no LDEV write reaches a chunk before that chunk's copy is on stable storage.

kill -9 cannot tell a missing fdatasync (the page cache survives it), so the order is
checked the way a power cut would see it: every syscall is logged, and each write to
the LDEV must come after an fdatasync of the store that began after the copy of the
chunk it overwrites was written and ended before the LDEV write.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backend.cow_store import HEADER_BYTES, CowStore, decode_header
from backend.diff_bitmap import DiffBitmap
from backend.journal import Journal
from backend.ldev_io import LdevFile, create_sparse
from backend.write_path import HostWrite, WriteKind, WritePath

CHUNK = 16 * 1024
SIZE = 64 * CHUNK


@dataclass
class Target:
    ldev_id: int
    file: LdevFile
    cow: CowStore | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    journal: Journal | None = None
    diff: DiffBitmap | None = None
    fenced: bool = False


class SyscallLog:
    """pwrite and fdatasync of the LDEV and its CoW store, in the order they happened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, ldev_fd: int, cow_fd: int) -> None:
        self.events: list[tuple] = []
        self.lock = threading.Lock()
        self.ldev_fd, self.cow_fd = ldev_fd, cow_fd
        self.before_sync = lambda: None
        real_pwrite, real_sync = os.pwrite, os.fdatasync

        def pwrite(fd: int, data, offset: int) -> int:
            written = real_pwrite(fd, data, offset)
            if fd == self.cow_fd and len(data) > HEADER_BYTES:
                decoded = decode_header(bytes(data[:HEADER_BYTES]), 0)
                assert decoded is not None
                self._add("copy", decoded[0].chunk)
            elif fd == self.ldev_fd:
                for chunk in range(offset // CHUNK, (offset + len(data) - 1) // CHUNK + 1):
                    self._add("write", chunk)
            return written

        def fdatasync(fd: int) -> None:
            if fd == self.cow_fd:
                self.before_sync()
                self._add("sync_start", None)
            real_sync(fd)
            if fd == self.cow_fd:
                self._add("sync_end", None)

        monkeypatch.setattr(os, "pwrite", pwrite)
        monkeypatch.setattr(os, "fdatasync", fdatasync)

    def hold_the_first_sync(self) -> tuple[threading.Event, threading.Event]:
        """The first sync of the store waits until released: (it started, release it)."""
        started, release = threading.Event(), threading.Event()

        def hold() -> None:
            if not started.is_set():
                started.set()
                assert release.wait(30)

        self.before_sync = hold
        return started, release

    def _add(self, kind: str, chunk: int | None) -> None:
        with self.lock:
            self.events.append((kind, chunk))

    def writes_before_their_copy_was_durable(self) -> list[int]:
        """Indexes of LDEV writes to a chunk whose newest copy no finished sync covers."""
        copied_at: dict[int, int] = {}  # chunk -> index of its newest copy
        sync_started: list[int] = []
        durable_up_to = -1  # copies at indexes before this are on stable storage
        bad = []
        for i, (kind, chunk) in enumerate(self.events):
            if kind == "copy":
                copied_at[chunk] = i
            elif kind == "sync_start":
                sync_started.append(i)
            elif kind == "sync_end":
                durable_up_to = max(durable_up_to, sync_started.pop(0))
            elif kind == "write" and chunk in copied_at and copied_at[chunk] > durable_up_to:
                bad.append(i)
        return bad

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.events if k == kind)


def make_target(tmp_path: Path, cow_class: type[CowStore] = CowStore) -> Target:
    create_sparse(tmp_path / "ldev", SIZE)
    ldev = LdevFile(tmp_path / "ldev")
    ldev.write(0, random.Random(1).randbytes(SIZE))
    return Target(1, ldev, cow_class(tmp_path / "ldev.cow", CHUNK, []))


def logged_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cow_class: type[CowStore] = CowStore
) -> tuple[Target, CowStore, SyscallLog]:
    """A target, its CoW store, and the log of their pwrites and syncs."""
    target = make_target(tmp_path, cow_class)
    assert target.cow is not None
    return target, target.cow, SyscallLog(monkeypatch, target.file.fd, target.cow.fd)


def no_journal_path() -> WritePath:
    return WritePath(journal_full=lambda _target: None)


def snapshot(target: Target, gen: int) -> bytes:
    """Take a snapshot the way the array does (under the LDEV's lock); its expected content."""
    assert target.cow is not None
    with target.lock:
        target.cow.add_gen(gen)
        return target.file.read(0, SIZE)


def run_writers(target: Target, threads: int = 8, writes: int = 150, snapshots: int = 4) -> dict[int, bytes]:
    """Concurrent 4 KiB writers while snapshots are taken; what each snapshot must read."""
    path = no_journal_path()
    expected = {1: snapshot(target, 1)}

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(writes):
            offset = rng.randrange(SIZE // 4096) * 4096
            path.apply(target, HostWrite(WriteKind.DATA, offset, 4096, rng.randbytes(4096)), SIZE, False)

    workers = [threading.Thread(target=writer, args=(seed,)) for seed in range(threads)]
    for worker in workers:
        worker.start()
    for gen in range(2, snapshots + 1):
        time.sleep(0.01)
        expected[gen] = snapshot(target, gen)
    for worker in workers:
        worker.join()
    return expected


def test_no_ldev_write_overtakes_the_sync_of_its_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target, cow, log = logged_target(tmp_path, monkeypatch)
    expected = run_writers(target)
    monkeypatch.undo()
    assert log.count("copy") > 0 and log.count("write") == 8 * 150
    assert log.writes_before_their_copy_was_durable() == []
    for gen, content in expected.items():
        assert cow.read(target.file, gen, 0, SIZE) == content, f"snapshot {gen}"


class CowStoreWithoutSync(CowStore):
    """The control: it calls its copies durable without syncing them."""

    def make_durable(self, ticket: int) -> None:
        self._durable_epoch = max(self._durable_epoch, ticket)


def test_the_order_check_catches_a_store_that_skips_the_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target, _, log = logged_target(tmp_path, monkeypatch, CowStoreWithoutSync)
    run_writers(target, threads=2, writes=40, snapshots=1)
    monkeypatch.undo()
    assert log.writes_before_their_copy_was_durable() != []


def test_writers_queued_behind_a_sync_share_the_next_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A syncs alone; B and C copy while it syncs and then share one sync: 3 copies, 2 syncs."""
    target, cow, log = logged_target(tmp_path, monkeypatch)
    in_first_sync, release = log.hold_the_first_sync()
    old = snapshot(target, 1)
    path = no_journal_path()

    def write(chunk: int) -> threading.Thread:
        op = HostWrite(WriteKind.DATA, chunk * CHUNK, 4096, bytes([chunk + 1]) * 4096)
        thread = threading.Thread(target=path.apply, args=(target, op, SIZE, False))
        thread.start()
        return thread

    threads = [write(0)]
    assert in_first_sync.wait(30)
    threads += [write(1), write(2)]
    deadline = time.monotonic() + 30
    while cow._staged_epoch < 3 and time.monotonic() < deadline:  # B and C copied and wait for the sync
        time.sleep(0.001)
    assert cow._staged_epoch == 3
    assert target.file.read(CHUNK, 4096) == old[CHUNK : CHUNK + 4096], "B wrote before its copy was durable"
    release.set()
    for thread in threads:
        thread.join(30)
    monkeypatch.undo()
    assert (log.count("copy"), cow.syncs, log.count("sync_end")) == (3, 2, 2)
    assert log.writes_before_their_copy_was_durable() == []
    for chunk in range(3):
        assert target.file.read(chunk * CHUNK, 4096) == bytes([chunk + 1]) * 4096
    assert cow.read(target.file, 1, 0, SIZE) == old


def test_only_writes_that_copy_or_wait_for_a_copy_leave_the_event_loop(tmp_path: Path):
    target = make_target(tmp_path)
    cow = target.cow
    assert cow is not None
    assert not cow.must_stage(0, 4096), "no snapshot: nothing to copy"
    snapshot(target, 1)
    assert cow.must_stage(0, 4096)
    ticket = cow.stage(target.file, 0, 4096)
    assert ticket and cow.must_stage(0, 4096), "copied but not durable yet"
    cow.make_durable(ticket)
    assert not cow.must_stage(0, 4096) and cow.must_stage(CHUNK, 4096)
    assert cow.must_stage(CHUNK - 1, 2), "a write across two chunks needs the second one's copy"
    snapshot(target, 2)
    assert cow.must_stage(0, 4096), "a newer snapshot needs a newer copy"


def test_a_run_of_writes_copied_ahead_takes_one_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy loop's answer or a batch of journal records: copy_ahead preserves every chunk the
    run will overwrite with one sync, and the writes after it sync nothing more."""
    target, cow, log = logged_target(tmp_path, monkeypatch)
    old = snapshot(target, 1)
    path = no_journal_path()
    ranges = [(chunk * CHUNK + 512, 4096) for chunk in (3, 9, 10, 40)] + [(SIZE - 100, 100)]
    path.copy_ahead(target, ranges)
    assert (log.count("copy"), log.count("sync_end")) == (5, 1)
    for offset, length in ranges:
        path.apply(target, HostWrite(WriteKind.DATA, offset, length, b"w" * length), SIZE, False)
    monkeypatch.undo()
    assert (log.count("copy"), log.count("sync_end")) == (5, 1)
    assert log.writes_before_their_copy_was_durable() == []
    assert cow.read(target.file, 1, 0, SIZE) == old
    path.copy_ahead(Target(2, target.file, None), ranges)  # no snapshots kept: nothing to do
