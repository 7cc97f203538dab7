"""Journal groups: the consistency groups of asynchronous remote copy.

A journal group owns one journal (backend.journal) and the P-VOLs whose
writes it records in one sequence. Joining a group takes effect between two
writes of the LDEV (under its write lock), never in the middle of one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from backend.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from backend.journal import Journal
from backend.metadata import JournalGroupRecord
from backend.pool import validate_name

if TYPE_CHECKING:
    from backend.array import Array

log = logging.getLogger(__name__)

MIN_CAPACITY = 1 << 20


class JournalGroups:
    def __init__(self, array: Array) -> None:
        self.array = array
        self.store = array.store
        self.journals: dict[int, Journal] = {}
        for group in self.store.list_journal_groups():
            self.journals[group.id] = Journal(self.path(group.id), group.capacity, group.confirmed_seq)

    def close(self) -> None:
        for journal in self.journals.values():
            journal.close()

    def path(self, group_id: int) -> Path:
        return self.array.pool.root / "journals" / f"{group_id:06x}"

    def create(self, name: str, capacity: int, role: str = "main", remote_serial: int = 0) -> JournalGroupRecord:
        """Idempotent by name and capacity."""
        validate_name(name)
        if capacity < MIN_CAPACITY:
            raise InvalidArgument("a journal needs at least 1 MiB")
        with self.array.name_locks.hold(f"journal:{name}"):
            existing = self.store.find_journal_group_by_name(name)
            if existing is not None:
                if existing.capacity != capacity:
                    raise AlreadyExists(f"journal group {name!r} exists with capacity {existing.capacity}")
                return existing
            group = self.store.insert_journal_group(name, capacity, role, remote_serial)
            self.journals[group.id] = Journal(self.path(group.id), capacity)
        if role == "backup":
            self.array.replicators.ensure(group.id)
        log.info("journal_group_created group=%d name=%s capacity=%d", group.id, name, capacity)
        return group

    def delete(self, group_id: int) -> None:
        group = self.store.get_journal_group(group_id)
        if self.store.journal_members(group_id):
            raise FailedPrecondition(f"journal group {group.name!r} still has P-VOLs")
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

    def add_member(self, group_id: int, ldev_id: int) -> None:
        """From the next write on, the LDEV's writes are journaled in the group's sequence."""
        with self.array.id_locks.hold(ldev_id):
            self.store.get_journal_group(group_id)
            self.array.get_ldev(ldev_id)
            self.store.add_journal_member(group_id, ldev_id)
            runtime = self.array.runtime(ldev_id)
            with runtime.lock:
                runtime.journal = self.journals[group_id]
        log.info("journal_member_added group=%d ldev=%06x", group_id, ldev_id)

    def remove_member(self, ldev_id: int) -> None:
        with self.array.id_locks.hold(ldev_id):
            runtime = self.array.runtime(ldev_id)
            with runtime.lock:
                runtime.journal = None
            self.store.remove_journal_member(ldev_id)

    def confirm(self, group_id: int, seq: int) -> None:
        """The backup applied everything through `seq` durably: trim it here."""
        self.store.set_confirmed(group_id, seq)
        self.journals[group_id].trim_through(seq)
