"""The remote link inside one process: two `Array`s call each other through the domain's
`RemoteArray` protocol, as their APIs would (backend/api/replication.py), with faults a
test turns on: the link down (nothing reaches the other array), answers lost (the other
array did the work, the caller hears LinkDown), journal batches damaged on the way.

No gRPC, no processes: a replication scenario runs in a fraction of a second, so a test
can run many of them against a model. `Sites` restarts either array over its pool, cleanly
or as a crash would leave it. The subprocess tests keep kill -9 and the wire.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.array import Array
from backend.journal import Unapplied
from backend.pool import Pool
from backend.replication.remote import BaseChunk, JournalBatch, LinkDown, PVolFacts


class Loopback:
    def __init__(self, other: Array, seed: int = 0) -> None:
        self.other = other
        self.serial = other.serial
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.down = False
        self.lose_answers = 0.0  # chance an answer is lost after the other array did the work
        self.damage_batches = 0.0  # chance a journal batch arrives with one byte flipped
        self.faults: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()  # attempts, the refused ones too

    def _chance(self, p: float) -> bool:
        with self.lock:
            return self.rng.random() < p

    def _call(self, name: str, action: Callable[[], Any]) -> Any:
        with self.lock:
            self.calls[name] += 1
        if self.down:
            self.faults["down"] += 1
            raise LinkDown(f"{name}: the link is down")
        answer = action()
        if self._chance(self.lose_answers):
            self.faults["answer lost"] += 1
            raise LinkDown(f"{name}: the answer was lost")
        return answer

    # -- asked of the backup -----------------------------------------------------------
    def prepare_secondary(self, group_name: str, capacity: int, main_serial: int, pvol: PVolFacts,
                          svol_id: int = 0) -> int:  # fmt: skip
        return self._call("prepare_secondary", lambda: self.other.pairs.prepare_secondary(
            group_name, capacity, main_serial, pvol, svol_id))  # fmt: skip

    def start_copy(self, group_name: str, pvol_id: int, base_snapshot: int) -> None:
        self._call("start_copy", lambda: self.other.pairs.start_copy(group_name, pvol_id, base_snapshot))

    def prepare_resync(self, group_name: str) -> dict[int, bytes]:
        return self._call("prepare_resync", lambda: self.other.pair_ops.prepare_resync(group_name))

    def delete_secondary(self, group_name: str, pvol_id: int) -> None:
        self._call("delete_secondary", lambda: self.other.pair_ops.delete_secondary(group_name, pvol_id))

    def delete_group(self, group_name: str) -> None:
        self._call("delete_group", lambda: self.other.journal_groups.delete_named(group_name))

    def demote(self, group_name: str, applied_seq: int, last_seq: int) -> dict[int, bytes]:
        return self._call("demote", lambda: self.other.failbacks.demote(group_name, applied_seq, last_seq))

    def failback(self, group_name: str) -> None:
        self._call("failback", lambda: self.other.failbacks.failback(group_name))

    def secondary_digests(self, group_name: str, seq: int, region_bytes: int, at_split: bool):
        """The backup's side of a verify: a generator, so only its opening can meet the link down."""
        return self._call("secondary_digests", lambda: self.other.verifier.secondary_digests(
            group_name, seq, region_bytes, at_split))  # fmt: skip

    # -- asked of the main array ---------------------------------------------------------
    def pull_journal(self, group_name: str, from_seq: int, applied_seq: int, max_bytes: int,
                     wait: float) -> JournalBatch:  # fmt: skip
        batch = self._call("pull_journal", lambda: self.other.pairs.pull_journal(
            group_name, from_seq, applied_seq, max_bytes, min(wait, 0.2)))  # fmt: skip
        if batch.records and self._chance(self.damage_batches):
            self.faults["batch damaged"] += 1
            damaged = bytearray(batch.records)
            damaged[self.rng.randrange(len(damaged))] ^= 0x40
            batch = dataclasses.replace(batch, records=bytes(damaged))
        return batch

    def read_base(self, pvol_id: int, snapshot_id: int, offset: int, max_bytes: int, end: int = 0) -> BaseChunk:
        return self._call("read_base", lambda: self.other.pairs.read_base(pvol_id, snapshot_id, offset, max_bytes, end))

    def complete_initial_copy(self, group_name: str, pvol_id: int) -> None:
        self._call("complete_initial_copy", lambda: self.other.pairs.complete_initial_copy(group_name, pvol_id))

    def split(self, group_name: str) -> int:
        return self._call("split", lambda: self.other.pair_ops.split(group_name).split_seq or 0)

    def fence(self, group_name: str) -> None:
        self._call("fence", lambda: self.other.pair_ops.fence(group_name, True))

    def describe_unapplied(self, group_name: str, applied_seq: int) -> Unapplied:
        return self._call("describe_unapplied", lambda: self.other.pairs.describe_unapplied(group_name, applied_seq))


def link(main: Array, backup: Array, seed: int = 0) -> tuple[Loopback, Loopback]:
    """Each array's remote is the other, through a loopback: (main's, backup's)."""
    to_backup, to_main = Loopback(backup, seed), Loopback(main, seed + 1)
    main.link.remote = to_backup
    backup.link.remote = to_main
    return to_backup, to_main


def stop(array: Array, crash: bool) -> None:
    """End an array: cleanly (`Array.close`), or as kill -9 leaves it: its threads stop and its
    files close with nothing synced nor persisted on the way out (no confirmed sequence
    written, no LDEV synced, nothing in memory kept). What reached the kernel stays, as it
    does for a killed process; power loss is the subprocess and torn-write tests' business."""
    if not crash:
        array.close()
        return
    array.path_watch.stop()
    array.replicators.stop()
    array.cloner.stop()
    for journal in array.journal_groups.journals.values():
        for segment in journal.segments:
            segment.close()
    for runtime in array.runtimes.all():
        runtime.close()
    array.pool.close()


class Sites:
    """A main and a backup array, each over its own pool, linked by loopbacks; a test restarts
    either one at any point, and the loopbacks (their faults, their counters) reach the new one."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        self.main = Array(Pool(root / "main", serial=1))
        self.backup = Array(Pool(root / "backup", serial=2))
        self.to_backup, self.to_main = link(self.main, self.backup, seed)
        self.restarts: Counter[str] = Counter()  # "main crash", "backup clean", ...

    def restart(self, side: str, crash: bool) -> Array:
        """Stop `side` ("main" or "backup") and start it again over the same pool, as the array
        process does (`backend.api.server.start_array`: the backup's apply loops start)."""
        old = self.main if side == "main" else self.backup
        stop(old, crash)
        new = Array(Pool(old.pool.root, old.serial))
        if side == "main":
            self.main = self.to_main.other = new
        else:
            self.backup = self.to_backup.other = new
        self.main.link.remote, self.backup.link.remote = self.to_backup, self.to_main
        new.replicators.start()
        self.restarts[f"{side} {'crash' if crash else 'clean'}"] += 1
        return new

    def close(self) -> None:
        self.backup.close()
        self.main.close()
