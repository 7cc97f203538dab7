"""Replication of a two-volume journal group across restarts of either array, against the model.

As `test_in_process_model.py` (the same model of acknowledged writes, the same faults on
the backup's pulls), with the group taken through COPY, PAIR, a split (PSUS) and a
journal-full suspension (PFUS), and either array restarted, cleanly or as a crash leaves
it (`tests/replication/loopback.py` `Sites`), at random points of each. Whenever the
backup's pairs are consistent its S-VOLs hold a prefix of the writes, and after the last
resync every S-VOL equals its P-VOL: no write taken while a pair was suspended is lost to
a restart, whether or not its P-VOL was written before the restart.

The control turns change tracking off for LDEVs opened after a restart (their bitmap
made only when a write of theirs meets the full journal, as before the fix) and must be
caught by the final comparison.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from backend.model import PairState
from backend.replication.journal_groups import JournalGroups
from backend.sessions import Session
from backend.write_path import HostWrite, WriteKind
from ccopy.waiting import wait_progressing
from tests.replication.loopback import Sites
from tests.replication.test_in_process_model import BLOCK, SIZE, Model, backup_states, backup_view

JOURNAL = 1 << 20  # the smallest journal: a link down for long enough fills it (PFUS)
CONSISTENT = {PairState.PAIR, PairState.PSUS, PairState.PFUS}
NAMES = ("sales", "stock")


@pytest.fixture
def sites(tmp_path: Path):
    sites = Sites(tmp_path)
    yield sites
    sites.close()


class Run:
    """One seeded run: hosts write both P-VOLs through sessions reopened after every restart."""

    def __init__(self, sites: Sites, seed: int) -> None:
        self.sites = sites
        self.rng = random.Random(seed)
        self.pvols = [sites.main.create_ldev(name, SIZE, open_to_all=True).id for name in NAMES]
        self.sessions: dict[int, Session] = {}
        self.open_sessions()
        for session in self.sessions.values():  # data before the pairs exist: the initial copy takes it
            session.write(HostWrite(WriteKind.DATA, 0, SIZE, self.rng.randbytes(SIZE)))
        self.model = Model({ldev: self.pvol(ldev) for ldev in self.pvols})
        self.svol_of: dict[int, int] = {}
        self.seen_k: list[int] = []
        self.restarted_in: Counter[PairState] = Counter()

    def open_sessions(self) -> None:
        main = self.sites.main
        self.sessions = {ldev: main.sessions.open(name) for ldev, name in zip(self.pvols, NAMES, strict=True)}

    def pvol(self, ldev: int) -> bytes:
        return self.sites.main.runtimes.get(ldev).file.read(0, SIZE)

    def main_states(self) -> set[PairState]:
        return {pair.state for pair in self.sites.main.store.list_pairs()}

    # -- what the hosts and the people do ---------------------------------------------------
    def write(self, ldev: int | None = None, blocks: int | None = None) -> None:
        ldev = self.rng.choice(self.pvols) if ldev is None else ldev
        offset = self.rng.randrange(SIZE // BLOCK) * BLOCK
        data = self.rng.randbytes(min((blocks or self.rng.choice((1, 2, 4))) * BLOCK, SIZE - offset))
        self.sessions[ldev].write(HostWrite(WriteKind.DATA, offset, len(data), data))
        self.model.writes.append((ldev, offset, data))  # acknowledged: in the model

    def restart(self, side: str | None = None) -> None:
        side = side or self.rng.choice(("main", "backup"))
        states = self.main_states()
        self.restarted_in.update(states)
        if side == "main":
            for session in self.sessions.values():
                session.close()
        self.sites.restart(side, crash=self.rng.random() < 0.5)
        if side == "main":
            self.open_sessions()

    def check(self) -> None:
        """The backup, if consistent now, holds a prefix of the writes no shorter than before."""
        if backup_states(self.sites.backup) <= CONSISTENT:
            self.seen_k.append(self.model.find(backup_view(self.sites.backup, self.svol_of)))

    def steps(self, count: int, restart_chance: float, toggle_link: bool = True) -> None:
        to_main = self.sites.to_main
        for step in range(count):
            self.write()
            if toggle_link and self.rng.random() < (0.3 if to_main.down else 0.05):
                to_main.down = not to_main.down
            if self.rng.random() < restart_chance:
                self.restart()
            if step % 8 == 0:
                self.check()

    def settle(self) -> None:
        """Link up, a resync if the group is split or suspended, and the backup caught up."""
        self.sites.to_main.down = False
        if self.sites.main.store.find_journal_group_by_name("shop").split_seq is not None:
            self.sites.main.pair_ops.resync("shop")
        wait_caught_up(self.sites)

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> None:
        sites, rng = self.sites, self.rng
        sites.to_main.down = True  # the initial copies wait: a restart finds the pairs in COPY
        pairs = [sites.main.pairs.create_pair("shop", ldev, JOURNAL) for ldev in self.pvols]
        self.svol_of = {pair.local_ldev: pair.remote_ldev for pair in pairs}
        self.steps(rng.randrange(1, 6), 0.0, toggle_link=False)
        self.restart()
        sites.to_main.down = False
        sites.to_main.lose_answers = sites.to_main.damage_batches = 0.05
        self.steps(40, 0.04)  # PAIR, with restarts now and then
        self.settle()
        self.restart()  # in PAIR, caught up
        self.steps(5, 0.0, toggle_link=False)
        sites.main.pair_ops.split("shop")  # PSUS: restarted at a random point of it
        self.steps(30, 0.0, toggle_link=False)
        self.restart()
        self.steps(10, 0.0, toggle_link=False)
        self.settle()
        self.fill_the_journal()  # PFUS: the main array restarted right after it suspended
        self.restart("main")
        for _ in range(12):  # both P-VOLs written after the restart, the one that filled the journal or not
            self.write(ldev=self.pvols[0])
            self.write(ldev=self.pvols[1])
        if rng.random() < 0.5:
            self.restart("backup")
        self.settle()
        self.steps(20, 0.05)
        self.settle()

    def fill_the_journal(self) -> None:
        """The link down and one P-VOL written until the journal is full: the group is PFUS and
        the other P-VOL has not been written since (the case a restart used to lose)."""
        self.sites.to_main.down = True
        victim = self.rng.choice(self.pvols)
        for _ in range(4 * JOURNAL // (16 * BLOCK)):  # the journal holds less than a quarter of this
            if self.main_states() == {PairState.PFUS}:
                return
            self.write(victim, 16)
        raise AssertionError(f"the journal never filled up: {self.main_states()}")


def wait_caught_up(sites: Sites) -> None:
    def observe() -> tuple:
        main, backup = sites.main, sites.backup
        journal = main.journal_groups.journals[main.store.find_journal_group_by_name("shop").id]
        applied = backup.store.find_journal_group_by_name("shop").applied_seq
        return applied, journal.next_seq - 1, tuple(sorted(backup_states(backup)))

    wait_progressing(observe, lambda s: s[0] == s[1] and set(s[2]) == {PairState.PAIR}, "backup catching up")


def run_and_compare(sites: Sites, seed: int) -> Run:
    run = Run(sites, seed)
    run.run()
    backup = backup_view(sites.backup, run.svol_of)
    assert backup == {ldev: run.pvol(ldev) for ldev in run.pvols}, "an S-VOL differs from its P-VOL after the resync"
    assert run.model.find(backup) == len(run.model.writes)
    report = sites.main.verifier.verify("shop")  # the array's own check agrees, at one consistent point
    assert report.differing == [] and report.record.regions_compared == 2 * -(-SIZE // report.record.region_bytes)
    return run


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_write_is_lost_to_a_restart(sites, seed):
    run = run_and_compare(sites, seed)
    # Not vacuous: both arrays restarted, both ways, in every state the run is about, and
    # the backup was seen mid-way moving forward.
    assert {"main", "backup"} <= {key.split()[0] for key in sites.restarts}, sites.restarts
    assert {PairState.COPY, PairState.PAIR, PairState.PSUS, PairState.PFUS} <= set(run.restarted_in), run.restarted_in
    assert len(run.seen_k) >= 5 and run.seen_k == sorted(run.seen_k) and 0 < max(run.seen_k) < len(run.model.writes)


def test_writes_untracked_after_a_restart_are_caught(sites, monkeypatch):
    """The control: LDEVs opened after a restart get a bitmap only if one exists already."""
    route_on_open = JournalGroups.route_on_open

    def forgetful(self, ldev_id):
        journal, _tracked = route_on_open(self, ldev_id)
        return journal, False

    monkeypatch.setattr(JournalGroups, "route_on_open", forgetful)
    with pytest.raises(AssertionError, match=r"differs from its P-VOL|no prefix"):
        run_and_compare(sites, seed=1)


def test_a_base_snapshot_no_pair_names_is_dropped_at_start(sites):
    """A crash between a base's cut and the pair naming it leaves a hidden snapshot nothing
    would ever drop, and every write to the P-VOL would preserve old chunks for it."""
    main = sites.main
    ldev = main.create_ldev("sales", SIZE, open_to_all=True)
    sites.to_main.down = True  # the initial copy waits: the pair's own base stays named
    pair = main.pairs.create_pair("shop", ldev.id, JOURNAL)
    main.snapshots.create_snapshot("diff-base-left-by-a-crash", ldev.id, hidden=True)
    main = sites.restart("main", crash=True)
    kept = {s.name: s.id for s in main.store.list_snapshots(include_hidden=True)}
    assert "diff-base-left-by-a-crash" not in kept
    assert list(kept.values()) == [pair.base_snapshot]
