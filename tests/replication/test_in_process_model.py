"""Replication of a two-volume journal group, in one process, checked against a model.

Two arrays talk through `tests/replication/loopback.py`: the link goes down and comes
back, answers are lost after the work was done, journal batches arrive damaged. Hosts
write both P-VOLs all along; the group is split and resynced once. The model is the
list of acknowledged writes. Whenever the backup's pairs are consistent (PAIR, or split),
its two S-VOLs, read at one instant, must equal the P-VOLs after exactly the first k
writes for some k, and k never goes back: the backup never holds a sale without the
stock change before it, and never forgets one. At the end, with the link healthy, the
S-VOLs equal the P-VOLs.
"""

from __future__ import annotations

import dataclasses
import random
from functools import partial
from pathlib import Path

import pytest

from backend.array import Array
from backend.model import PairState
from backend.pool import Pool
from backend.replication.remote import LinkDown
from backend.replication.replicator import Replicator
from backend.write_path import HostWrite, WriteKind
from ccopy.waiting import wait_progressing
from tests.replication.loopback import link

SIZE = 256 << 10
BLOCK = 4096
STEPS = 240
CONSISTENT = {PairState.PAIR, PairState.PSUS}
COPYING = {PairState.PAIR, PairState.COPY}


def pulled_or_split(before: int, seen: tuple[int, set[PairState]]) -> bool:
    pulls, not_copying = seen
    return pulls > before or bool(not_copying)


class Model:
    """The P-VOLs' contents after the first k acknowledged writes, walked forward only."""

    def __init__(self, initial: dict[int, bytes]) -> None:
        self.writes: list[tuple[int, int, bytes]] = []
        self.k = 0
        self.at_k = {ldev: bytearray(data) for ldev, data in initial.items()}

    def find(self, seen: dict[int, bytes]) -> int:
        """The k at or after the last one found whose state is `seen`; fails if none."""
        while True:
            if all(self.at_k[ldev] == data for ldev, data in seen.items()):
                return self.k
            if self.k == len(self.writes):
                raise AssertionError(f"the backup holds no prefix of the writes at or after write {self.k}")
            ldev, offset, data = self.writes[self.k]
            self.at_k[ldev][offset : offset + len(data)] = data
            self.k += 1


def backup_view(backup: Array, svol_of: dict[int, int]) -> dict[int, bytes]:
    """Both S-VOLs at one instant (their write locks held), by P-VOL id."""
    with backup.runtimes.hold_writes(svol_of.values()) as runtimes:
        by_svol = {runtime.ldev_id: runtime.file.read(0, SIZE) for runtime in runtimes}
    return {pvol: by_svol[svol] for pvol, svol in svol_of.items()}


def backup_states(backup: Array) -> set[PairState]:
    return {pair.state for pair in backup.store.list_pairs()}


@pytest.fixture
def arrays(tmp_path: Path):
    main = Array(Pool(tmp_path / "main", serial=1))
    backup = Array(Pool(tmp_path / "backup", serial=2))
    yield main, backup
    backup.close()
    main.close()


def wait_caught_up(main: Array, backup: Array, group_name: str) -> None:
    def observe() -> tuple:
        journal = main.journal_groups.journals[main.store.find_journal_group_by_name(group_name).id]
        group = backup.store.find_journal_group_by_name(group_name)
        return (group.applied_seq, journal.next_seq - 1, tuple(sorted(backup_states(backup))))

    wait_progressing(observe, lambda s: s[0] == s[1] and set(s[2]) == {PairState.PAIR}, "backup catching up")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_backup_is_always_a_prefix_of_the_writes(arrays, seed):
    run(*arrays, seed)


def test_a_backup_that_applies_a_write_wrongly_is_caught(arrays, monkeypatch):
    """The control: a replicator that zeroes every 7th record's data instead of applying it."""
    apply = Replicator.apply

    def zeroing(self, records, by_pvol, applied):
        records = [dataclasses.replace(r, data=bytes(len(r.data))) if r.seq % 7 == 0 else r for r in records]
        return apply(self, records, by_pvol, applied)

    monkeypatch.setattr(Replicator, "apply", zeroing)
    with pytest.raises(AssertionError, match="no prefix"):
        run(*arrays, seed=1)


def run(main: Array, backup: Array, seed: int) -> None:
    rng = random.Random(seed)
    _, to_main = link(main, backup, seed)
    pvols = [main.create_ldev(name, SIZE, open_to_all=True).id for name in ("sales", "stock")]
    sessions = {ldev: main.sessions.open(name) for ldev, name in zip(pvols, ("sales", "stock"), strict=True)}
    for session in sessions.values():  # data before the pairs exist: the initial copy takes it
        session.write(HostWrite(WriteKind.DATA, 0, SIZE, rng.randbytes(SIZE)))
    model = Model({ldev: main.runtimes.get(ldev).file.read(0, SIZE) for ldev in pvols})
    pairs = [main.pairs.create_pair("shop", ldev, 16 << 20) for ldev in pvols]
    svol_of = {pair.local_ldev: pair.remote_ldev for pair in pairs}
    to_main.lose_answers = to_main.damage_batches = 0.1  # the backup's pulls and base reads

    seen_k, checks, split_at = [], 0, rng.randrange(STEPS // 3, STEPS // 2)

    def tries() -> int:
        """The backup's tries to reach the main array: pulls, base reads while it copies (an
        initial copy or a resync), telling it a copy is done: without them a link that went
        down then would stay down, as this loop toggles it only between tries."""
        return sum(to_main.calls.values())

    for step in range(STEPS):
        ldev = rng.choice(pvols)
        offset = rng.randrange(SIZE // BLOCK) * BLOCK
        data = rng.randbytes(min(rng.choice((1, 2, 4)) * BLOCK, SIZE - offset))
        sessions[ldev].write(HostWrite(WriteKind.DATA, offset, len(data), data))
        model.writes.append((ldev, offset, data))  # acknowledged: in the model
        if rng.random() < (0.3 if to_main.down else 0.04):
            to_main.down = not to_main.down
        if step % 3 == 0:  # the backup pulls (or tries to) between the hosts' writes, until it is split
            backup.replicators.wake(backup.store.find_journal_group_by_name("shop").id)
            wait_progressing(lambda: (tries(), backup_states(backup) - COPYING),
                             partial(pulled_or_split, tries()), "a pull")  # fmt: skip
        if step == split_at:  # a split needs the initial copies done
            to_main.down = False
            wait_progressing(lambda: {p.state for p in main.store.list_pairs()}, lambda s: s == {PairState.PAIR},
                             "the initial copies")  # fmt: skip
            main.pair_ops.split("shop")
        if step == split_at + 40:
            to_main.down = False  # a resync needs the link; the backup may not have seen the split yet
            main.pair_ops.resync("shop")
        if step % 12 == 0 and backup_states(backup) <= CONSISTENT:
            seen_k.append(model.find(backup_view(backup, svol_of)))
            checks += 1

    to_main.down, to_main.lose_answers, to_main.damage_batches = False, 0.0, 0.0
    wait_caught_up(main, backup, "shop")
    assert model.find(backup_view(backup, svol_of)) == len(model.writes)
    assert backup_view(backup, svol_of) == {ldev: main.runtimes.get(ldev).file.read(0, SIZE) for ldev in pvols}
    # The run was not vacuous: the backup was checked mid-way and moved, and every fault happened.
    assert checks >= 5 and seen_k == sorted(seen_k) and 0 < max(seen_k) < len(model.writes)
    assert {"down", "answer lost", "batch damaged"} <= set(to_main.faults), to_main.faults


def test_a_resync_whose_answer_was_lost_still_takes_back_what_the_backup_wrote(arrays):
    """The backup's S-VOLs were written while split; the main array's resync reaches the
    backup, which hands over its bitmaps, and the answer is lost. The retry must get the
    same bitmaps, or those regions would keep the backup's writes after the resync."""
    main, backup = arrays
    to_backup, _ = link(main, backup)
    pvol = main.create_ldev("sales", SIZE, open_to_all=True)
    main.sessions.open("sales").write(HostWrite(WriteKind.DATA, 0, SIZE, random.Random(5).randbytes(SIZE)))
    pair = main.pairs.create_pair("shop", pvol.id, 16 << 20)
    wait_caught_up(main, backup, "shop")
    main.pair_ops.split("shop", svol_writable=True)
    wait_progressing(lambda: backup_states(backup), lambda s: s == {PairState.PSUS}, "the backup splitting")
    svol = backup.sessions.open(backup.store.get_ldev(pair.remote_ldev).name)
    svol.write(HostWrite(WriteKind.DATA, 8 * BLOCK, BLOCK, b"\xee" * BLOCK))  # a test run at the backup site
    svol.close()
    to_backup.lose_answers = 1.0
    with pytest.raises(LinkDown, match="answer was lost"):
        main.pair_ops.resync("shop")
    to_backup.lose_answers = 0.0
    main.pair_ops.resync("shop")
    wait_caught_up(main, backup, "shop")
    assert backup_view(backup, {pvol.id: pair.remote_ldev}) == {pvol.id: main.runtimes.get(pvol.id).file.read(0, SIZE)}


def test_a_p_vols_writes_go_to_the_native_journal_route_once_paired_and_back_when_split(arrays):
    """Pairing cuts a hidden base snapshot: while the initial copy reads it, the P-VOL's writes
    take the write path's copy-on-write; in PAIR they are journaled by the connection threads;
    split, they mark the differential bitmap through the write path again."""
    from backend._nbdcore import ROUTE_JOURNAL, ROUTE_PLAIN, ROUTE_PYTHON

    main, backup = arrays
    link(main, backup)
    pvol = main.create_ldev("sales", SIZE, open_to_all=True)
    gate = main.runtimes.get(pvol.id).gate
    assert gate.route == ROUTE_PLAIN
    main.pairs.create_pair("shop", pvol.id, 16 << 20)
    wait_caught_up(main, backup, "shop")
    wait_progressing(lambda: gate.route, lambda route: route == ROUTE_JOURNAL, "the base snapshot going")
    main.pair_ops.split("shop")
    assert gate.route == ROUTE_PYTHON
