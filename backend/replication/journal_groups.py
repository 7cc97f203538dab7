"""Journal groups: the consistency groups of asynchronous remote copy.

A journal group owns one journal (backend.journal) and the P-VOLs whose
writes it records in one sequence. Joining a group takes effect between two
writes of the LDEV (under its write lock), never in the middle of one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from backend.errors import AlreadyExists, ArrayError, FailedPrecondition, InvalidArgument
from backend.journal import Journal
from backend.model import JournalGroupRecord, PairState
from backend.pool import validate_name
from backend.replication.pair_states import SUSPENDED, UNPAIRED_MEMBER, PairOp, next_state, write_route
from backend.replication.ports import ReplicatorControl
from backend.replication.remote import RemoteLink
from backend.services import ArrayServices
from backend.write_path import WriteTarget

log = logging.getLogger(__name__)

MIN_CAPACITY = 1 << 20
CONFIRM_PERSIST_SECONDS = 1.0


class JournalGroups:
    def __init__(self, services: ArrayServices, link: RemoteLink) -> None:
        self.store = services.store
        self.pool = services.pool
        self.runtimes = services.runtimes
        self.name_locks = services.name_locks
        self.id_locks = services.id_locks
        self.link = link
        # The backup's apply loops, above this module: wired by the array once they exist.
        self.replicators: ReplicatorControl | None = None
        self.journals: dict[int, Journal] = {}
        self._confirm_persisted: dict[int, float] = {}  # group id -> monotonic time
        for group in self.store.list_journal_groups():
            self.journals[group.id] = self._open(group)

    def close(self) -> None:
        for group_id, journal in self.journals.items():
            if journal.confirmed_seq:
                self.store.set_confirmed(group_id, journal.confirmed_seq)
            journal.close()

    def _open(self, group: JournalGroupRecord) -> Journal:
        journal = Journal(
            self.path(group.id), group.capacity, group.confirmed_seq, synchronous=group.synchronous,
            inflow_control=group.inflow_control, overflow_watch=group.overflow_watch,
        )  # fmt: skip
        journal.on_full = lambda last_seq: self._suspend_when_full(group.id, last_seq)
        return journal

    # -- the one owner of where an LDEV's writes go (journal, bitmap) ---------------------
    def route_on_open(self, ldev_id: int) -> tuple[Journal | None, bool]:
        """Where the writes of an LDEV opened now go, from its pair's stored state (the table
        `write_route`): (the journal its writes take the group's sequence in, or None;
        whether they mark its differential bitmap). Asked at every open, so a restart,
        clean or not, routes writes exactly as the state did before it."""
        group_id = self.store.journal_group_of(ldev_id)
        pair = self.store.find_pair_by_ldev(ldev_id)
        route = write_route(pair.role, pair.state) if pair is not None else None
        if route is None:
            route = UNPAIRED_MEMBER if group_id is not None else write_route("main", PairState.SMPL)
        journal = self.journals.get(group_id) if route.journal and group_id is not None else None
        return journal, route.track

    def route_writes(self, runtime: WriteTarget, side: str, state: PairState, group_id: int) -> None:
        """From the next write on, the LDEV's writes go where a pair on `side` in `state` sends
        them (call under its write lock, before the state is stored: a bitmap is durable
        before any write may need it, and a crash in between is routed the same at open)."""
        route = write_route(side, state)
        if route.track:
            self.runtimes.track_changes(runtime)
        if route.journal:
            self.start_journaling(runtime, group_id)
        else:
            self.stop_journaling(runtime)

    def start_journaling(self, runtime: WriteTarget, group_id: int) -> None:
        """From the next write on, the LDEV's writes take the group's sequence (call under its write lock)."""
        runtime.journal = self.journals[group_id]

    def stop_journaling(self, runtime: WriteTarget) -> None:
        """From the next write on, the LDEV's writes are not journaled (call under its write lock)."""
        runtime.journal = None

    def journal_full(self, runtime: WriteTarget) -> None:
        """The write path's call when the journal took no more (under the write lock): the LDEV
        stops journaling and marks its differential bitmap instead, for the resync."""
        self.stop_journaling(runtime)
        self.runtimes.track_changes(runtime)

    def set_inflow_control(
        self, group_id: int, inflow_control: bool, overflow_watch: float | None = None
    ) -> JournalGroupRecord:
        """Journal full: throttle host writes for up to `overflow_watch` seconds (None: as set), or suspend at once."""
        if overflow_watch is None:
            overflow_watch = self.store.get_journal_group(group_id).overflow_watch
        if overflow_watch <= 0:
            raise InvalidArgument("the data overflow watch time must be positive")
        self.store.set_inflow_control(group_id, inflow_control, overflow_watch)
        journal = self.journals[group_id]
        journal.inflow_control, journal.overflow_watch = inflow_control, overflow_watch
        return self.store.get_journal_group(group_id)

    def set_rpo(self, group_id: int, rpo_seconds: float) -> JournalGroupRecord:
        """The declared recovery point objective: status and metrics compare the lag with it."""
        if not 0 <= rpo_seconds < float("inf"):
            raise InvalidArgument("the recovery point objective must be 0 (none) or a positive number of seconds")
        self.store.set_rpo(group_id, rpo_seconds)
        return self.store.get_journal_group(group_id)

    def _suspend_when_full(self, group_id: int, last_seq: int) -> None:
        """The journal took its last record: the group is PFUS from there, durably, before any write goes on.

        Universal Replicator's default (no inflow control): host writes are
        never failed nor slowed; they mark differential bitmaps from now on
        and a resync copies those regions.
        """
        with self.store.transaction():
            self.store.set_split(group_id, last_seq)
            for pair in self.store.list_pairs(group_id):
                self.store.update_pair(pair.id, state=next_state(pair.state, PairOp.JOURNAL_FULL))
        log.warning("journal_group_suspended group=%d state=PFUS last_seq=%d", group_id, last_seq)

    def split_point(self, group: JournalGroupRecord) -> int | None:
        """The last sequence a split or suspended group holds, as this side knows it (None: not split).

        The main side stores it when it splits; the backup follows on its next pull and
        holds what it applied through it, so its suspended pairs say where it stopped."""
        if group.role == "main":
            return group.split_seq
        if any(pair.state in SUSPENDED for pair in self.store.list_pairs(group.id)):
            return group.applied_seq
        return None

    def overflowed(self, group: JournalGroupRecord) -> bool:
        """The group was suspended by a full journal (PFUS), as this side knows it: from the
        stored pair states, which outlive a restart (the journal's own flag does not) and
        say it at the backup too, whose journal never overflows; or from the journal, which
        says it from the full write on, before the states are stored."""
        if self.journals[group.id].overflowed:
            return True
        return any(pair.state is PairState.PFUS for pair in self.store.list_pairs(group.id))

    def path(self, group_id: int) -> Path:
        return self.pool.root / "journals" / f"{group_id:06x}"

    def create(
        self, name: str, capacity: int, role: str = "main", remote_serial: int = 0, synchronous: bool = False
    ) -> JournalGroupRecord:
        """Idempotent by name, capacity and mode."""
        validate_name(name)
        if capacity < MIN_CAPACITY:
            raise InvalidArgument("a journal needs at least 1 MiB")
        with self.name_locks.hold(f"journal:{name}"):
            existing = self.store.find_journal_group_by_name(name)
            if existing is not None:
                if existing.capacity != capacity:
                    raise AlreadyExists(f"journal group {name!r} exists with capacity {existing.capacity}")
                if existing.synchronous != synchronous:
                    mode = "synchronous" if existing.synchronous else "asynchronous"
                    raise AlreadyExists(f"journal group {name!r} exists, {mode}")
                return existing
            group = self.store.insert_journal_group(name, capacity, role, remote_serial, synchronous)
            self.journals[group.id] = self._open(group)
        if role == "backup":
            self.replicators.ensure(group.id)
        log.info("journal_group_created group=%d name=%s capacity=%d", group.id, name, capacity)
        return group

    def delete_named(self, name: str) -> None:
        """`delete` by name; a group gone already is success (the main side retries after a lost answer)."""
        group = self.store.find_journal_group_by_name(name)
        if group is not None:
            self.delete(group.id)

    def delete(self, group_id: int) -> None:
        """Delete a group with no pair left; the main side also deletes the backup's empty side
        (if the link is down it stays there, empty, and says so in the log)."""
        group = self.store.get_journal_group(group_id)
        if self.store.list_pairs(group_id) or self.store.journal_members(group_id):
            raise FailedPrecondition(f"journal group {group.name!r} still has pairs")
        if group.role == "backup":
            self.replicators.halt(group_id)
        journal = self.journals.pop(group_id, None)
        if journal is not None:
            journal.close()
        self.store.delete_journal_group(group_id)
        folder = self.path(group_id)
        for path in sorted(folder.glob("*"), reverse=True):
            path.unlink()
        if folder.exists():
            folder.rmdir()
        log.info("journal_group_deleted group=%d name=%s", group_id, group.name)
        remote = self.link.remote
        if group.role == "main" and remote is not None:
            try:
                remote.delete_group(group.name)
            except ArrayError as exc:  # LinkDown too
                log.warning("journal_group_backup_side_kept name=%s error=%s", group.name, exc)

    def add_member(self, group_id: int, ldev_id: int) -> None:
        """From the next write on, the LDEV's writes are journaled in the group's sequence."""
        with self.id_locks.hold(ldev_id):
            self.store.get_journal_group(group_id)
            self.store.get_ldev(ldev_id)
            self.store.add_journal_member(group_id, ldev_id)
            runtime = self.runtimes.get(ldev_id)
            with runtime.lock:
                self.start_journaling(runtime, group_id)
        log.info("journal_member_added group=%d ldev=%06x", group_id, ldev_id)

    def remove_member(self, ldev_id: int) -> None:
        with self.id_locks.hold(ldev_id):
            runtime = self.runtimes.get(ldev_id)
            with runtime.lock:
                self.stop_journaling(runtime)
            self.store.remove_journal_member(ldev_id)

    def confirm(self, group_id: int, seq: int) -> None:
        """The backup applied everything through `seq` durably: trim it here.

        The confirmed sequence is written to the store (an fsync) before a
        journal segment is retired, and at most once a second otherwise: an
        fsync per batch would stall the hosts' writes on the file system's
        journal commits, and a stale value after a restart only re-sends
        records the backup skips.
        """
        journal = self.journals[group_id]
        journal.trim_through(seq, before_retiring=lambda confirmed: self._persist_confirmed(group_id, confirmed))
        if time.monotonic() - self._confirm_persisted.get(group_id, 0.0) > CONFIRM_PERSIST_SECONDS:
            self._persist_confirmed(group_id, journal.confirmed_seq)

    def _persist_confirmed(self, group_id: int, seq: int) -> None:
        self.store.set_confirmed(group_id, seq)
        self._confirm_persisted[group_id] = time.monotonic()
