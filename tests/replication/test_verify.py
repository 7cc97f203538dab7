"""Online verify of a journal group, in one process (backend/replication/verify.py): two
arrays linked through the loopback, the backup's S-VOL files damaged behind its back.

Equal while hosts write (the consistent point is one sequence on both sides), exactly the
damaged region reported, repair marks it for the resync after which the group verifies
equal again, the failures refused before anything is left behind (snapshots, a held
journal).
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.array import Array
from backend.errors import Busy, FailedPrecondition, NotFound
from backend.journal import Journal
from backend.ldev_io import LdevFile
from backend.model import PairState
from backend.pool import Pool
from backend.replication import verify as verify_module
from backend.replication.digests import REGION_BYTES
from backend.replication.remote import LinkDown
from backend.write_path import HostWrite, WriteKind
from ccopy.waiting import wait_progressing
from tests.replication.loopback import Loopback, link

SIZE = 8 << 20
MIB = 1 << 20


class VerifyLoopback(Loopback):
    """The loopback with a hook run just before the verify's call reaches the backup."""

    before_backup: Callable[[int], None] | None = None

    def secondary_digests(self, group_name: str, seq: int, region_bytes: int, at_split: bool):
        if self.before_backup is not None and not self.down:
            self.before_backup(seq)
        return super().secondary_digests(group_name, seq, region_bytes, at_split)


@pytest.fixture
def arrays(tmp_path: Path):
    main = Array(Pool(tmp_path / "main", serial=1))
    backup = Array(Pool(tmp_path / "backup", serial=2))
    link(main, backup)
    main.link.remote = VerifyLoopback(backup)
    yield main, backup
    backup.close()
    main.close()


def shop(main: Array, backup: Array) -> dict[str, tuple[int, int]]:
    """Two P-VOLs with data, paired into `shop`, caught up: (P-VOL, S-VOL) by name."""
    rng = random.Random(7)
    found = {}
    for name in ("sales", "stock"):
        pvol = main.create_ldev(name, SIZE, open_to_all=True).id
        session = main.sessions.open(name)
        session.write(HostWrite(WriteKind.DATA, 0, 3 * MIB, rng.randbytes(3 * MIB)))
        session.close()
        found[name] = (pvol, main.pairs.create_pair("shop", pvol, 16 << 20).remote_ldev)
    wait_caught_up(main, backup)
    return found


def wait_caught_up(main: Array, backup: Array) -> None:
    def observe() -> tuple:
        journal = main.journal_groups.journals[main.store.find_journal_group_by_name("shop").id]
        group = backup.store.find_journal_group_by_name("shop")
        states = {p.state for p in main.store.list_pairs()} | {p.state for p in backup.store.list_pairs()}
        return group.applied_seq, journal.next_seq - 1, tuple(sorted(states))

    wait_progressing(observe, lambda s: s[0] == s[1] and s[2] == (PairState.PAIR,), "backup catching up")


def write(array: Array, name: str, offset: int, data: bytes) -> None:
    session = array.sessions.open(name)
    session.write(HostWrite(WriteKind.DATA, offset, len(data), data))
    session.close()


def damage(backup: Array, svol: int, offset: int, data: bytes) -> None:
    """Behind the array's back: straight into the S-VOL's sparse file."""
    fd = os.open(backup.pool.ldev_path(svol), os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def leftovers(array: Array) -> list[str]:
    return [s.name for s in array.store.list_snapshots(include_hidden=True) if s.name.startswith("verify-")]


def test_a_pair_group_verifies_equal_while_hosts_write(arrays):
    main, backup = arrays
    shop(main, backup)
    stop = threading.Event()
    written = [0]

    def hosts() -> None:
        rng = random.Random(3)
        sessions = {name: main.sessions.open(name) for name in ("sales", "stock")}
        while not stop.is_set():
            name, offset = rng.choice(("sales", "stock")), rng.randrange(SIZE // 4096) * 4096
            sessions[name].write(HostWrite(WriteKind.DATA, offset, 4096, rng.randbytes(4096)))
            written[0] += 1
        for session in sessions.values():
            session.close()

    writer = threading.Thread(target=hosts)
    writer.start()
    try:
        seqs = []
        for _ in range(3):
            report = main.verifier.verify("shop")
            assert report.differing == [], report
            assert report.record.regions_compared == 2 * SIZE // REGION_BYTES and not report.record.at_split
            seqs.append(report.record.seq)
            before = written[0]
            wait_progressing(lambda: written[0], lambda n, before=before: n > before + 20, "hosts writing")
    finally:
        stop.set()
        writer.join()
    assert seqs == sorted(seqs) and seqs[-1] > seqs[0]  # each verify was at a later point of the writes
    assert leftovers(main) == leftovers(backup) == []
    assert journal_of(main).held_after is None
    wait_caught_up(main, backup)  # the journal flows again


def journal_of(main: Array) -> Journal:
    return main.journal_groups.journals[main.store.find_journal_group_by_name("shop").id]


def test_a_write_between_the_two_cuts_reaches_the_backup_only_after_its_cut(arrays):
    main, backup = arrays
    shop(main, backup)

    def write_between(seq: int) -> None:
        write(main, "sales", 0, b"\x05" * 4096)  # journaled as seq + 1, after the main array's cut
        assert journal_of(main).read_raw(seq + 1, 1 << 20) == b""  # held until the backup cut at seq

    main.link.remote.before_backup = write_between
    report = main.verifier.verify("shop")
    assert report.differing == []
    assert journal_of(main).held_after is None
    wait_caught_up(main, backup)  # and then it flows


def test_control_without_the_hold_the_backup_passes_the_point(arrays, monkeypatch):
    """The control of the test above: a journal that hands out the write made between the two
    cuts lets the backup apply past the point, and the backup refuses to cut there."""
    main, backup = arrays
    shop(main, backup)
    monkeypatch.setattr(Journal, "hold_shipping", lambda self, after_seq: None)

    def write_between(seq: int) -> None:
        write(main, "sales", 0, b"\x05" * 4096)
        group = backup.store.find_journal_group_by_name("shop").id
        wait_progressing(lambda: backup.store.get_journal_group(group).applied_seq, lambda a: a > seq, "applied")

    main.link.remote.before_backup = write_between
    with pytest.raises(FailedPrecondition, match="past the verify point"):
        main.verifier.verify("shop")
    assert leftovers(main) == leftovers(backup) == []


def test_snapshots_a_crash_left_are_dropped_at_start(tmp_path):
    array = Array(Pool(tmp_path / "main", serial=1))
    ldev = array.create_ldev("sales", SIZE).id
    array.snapshots.create_hidden_set("verify-0123", [ldev])
    array.snapshots.create_snapshot("kept", ldev)
    array.close()
    array = Array(Pool(tmp_path / "main", serial=1))
    try:
        assert [s.name for s in array.store.list_snapshots(include_hidden=True)] == ["kept"]
    finally:
        array.close()


def test_a_damaged_svol_region_is_reported_with_its_offset(arrays):
    main, backup = arrays
    volumes = shop(main, backup)
    pvol, svol = volumes["stock"]
    damage(backup, svol, 5 * MIB + 4096, b"\xab" * 512)
    report = main.verifier.verify("shop")
    assert [(r.pvol_id, r.svol_id, r.offset, r.length) for r in report.differing] == [(pvol, svol, 5 * MIB, MIB)]
    last = main.store.find_last_verify(main.store.find_journal_group_by_name("shop").id)
    assert (last.regions_differing, last.repaired, last.seq) == (1, False, report.record.seq)
    with pytest.raises(FailedPrecondition, match="split it first"):
        main.verifier.verify("shop", repair=True)  # PAIR: nothing would copy the marks


def test_a_hole_and_zeroes_are_equal(arrays):
    main, backup = arrays
    volumes = shop(main, backup)
    _, svol = volumes["sales"]
    write(main, "sales", 6 * MIB, bytes(MIB))  # zeroes written on the P-VOL (allocated there)
    wait_caught_up(main, backup)
    hole = LdevFile(backup.pool.ldev_path(svol))  # the S-VOL's copy of them made a hole, behind its back
    hole.punch_hole(6 * MIB, MIB)
    assert hole.is_hole(6 * MIB, MIB)
    hole.close()
    assert main.verifier.verify("shop").differing == []


def test_repair_of_a_split_group_then_resync_verifies_equal(arrays):
    main, backup = arrays
    volumes = shop(main, backup)
    pvol, svol = volumes["sales"]
    damage(backup, svol, 2 * MIB, b"\x01" * 4096)
    main.pair_ops.split("shop")
    wait_progressing(lambda: {p.state for p in backup.store.list_pairs()}, lambda s: s == {PairState.PSUS}, "split")
    write(main, "stock", 7 * MIB, b"\x02" * 4096)  # after the split: marked, not compared

    report = main.verifier.verify("shop", repair=True)
    assert report.record.at_split and report.record.repaired and report.record.regions_skipped == 1
    assert [(r.pvol_id, r.offset) for r in report.differing] == [(pvol, 2 * MIB)]
    assert main.runtimes.get(pvol).diff.extents() == [(2 * MIB, MIB)]  # marked for the resync

    main.pair_ops.resync("shop")
    wait_caught_up(main, backup)
    after = main.verifier.verify("shop")
    assert after.differing == [] and not after.record.at_split
    assert leftovers(main) == leftovers(backup) == []


def test_refusals_leave_nothing_behind(arrays):
    main, backup = arrays
    shop(main, backup)
    with pytest.raises(NotFound):
        main.verifier.verify("nope")
    with pytest.raises(FailedPrecondition, match="backup side here"):
        backup.verifier.verify("shop")
    main.link.remote.down = True
    with pytest.raises(LinkDown):
        main.verifier.verify("shop")
    main.link.remote.down = False
    assert leftovers(main) == leftovers(backup) == []
    assert journal_of(main).held_after is None
    assert main.store.find_last_verify(main.store.find_journal_group_by_name("shop").id) is None


def test_a_backup_that_fails_mid_way_drops_its_snapshots_and_so_does_the_main(arrays, monkeypatch):
    main, backup = arrays
    shop(main, backup)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the main array's first digests are already in
            raise OSError(5, "I/O error reading the S-VOL")
        return real(*args, **kwargs)

    real = verify_module.digests.snapshot_digests
    monkeypatch.setattr(verify_module.digests, "snapshot_digests", failing)
    with pytest.raises(OSError, match="I/O error"):
        main.verifier.verify("shop")
    assert leftovers(main) == leftovers(backup) == []


def test_a_backup_that_does_not_catch_up_is_busy(arrays, monkeypatch):
    main, backup = arrays
    shop(main, backup)
    monkeypatch.setattr(verify_module, "CATCH_UP_STALL", 0.3)
    backup.replicators.halt(backup.store.find_journal_group_by_name("shop").id)
    write(main, "sales", 0, b"\x03" * 4096)  # journaled, never applied
    with pytest.raises(Busy, match="stayed at sequence"):
        main.verifier.verify("shop")
    assert leftovers(main) == leftovers(backup) == []


def test_a_long_verify_reports_its_progress_on_both_sides(arrays, monkeypatch, caplog):
    main, backup = arrays
    shop(main, backup)
    monkeypatch.setattr(verify_module.digests, "PROGRESS_EVERY", -1.0)  # every region: as if each took long
    with caplog.at_level("INFO", logger="backend.replication.digests"):
        main.verifier.verify("shop")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("verify_progress")]
    for side in ("main", "backup"):
        mine = [line for line in lines if f"side={side} " in line]
        assert len(mine) == 2 * SIZE // REGION_BYTES, lines
        assert mine[-1].endswith(f"bytes_done={2 * SIZE} bytes_total={2 * SIZE}")
