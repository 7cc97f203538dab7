"""Journal groups, their members and their pairs."""

from __future__ import annotations

import sqlite3
import time

from backend.errors import AlreadyExists, NotFound
from backend.model import JournalGroupRecord, PairRecord, PairState
from backend.store.database import Database
from backend.store.rows import journal_group_record, pair_record
from ccopy_common.ldev_id import format_ldev_id


class ReplicationRows(Database):
    # -- journal groups ------------------------------------------------------------
    def insert_journal_group(
        self, name: str, capacity: int, role: str = "main", remote_serial: int = 0, synchronous: bool = False
    ) -> JournalGroupRecord:
        with self.transaction() as db:
            try:
                group_id = db.execute(
                    "INSERT INTO journal_group(name, capacity, created_at, role, remote_serial, synchronous) "
                    "VALUES (?,?,?,?,?,?)",
                    (name, capacity, time.time(), role, remote_serial, int(synchronous)),
                ).lastrowid
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"journal group name {name!r} is taken") from exc
        assert group_id is not None
        return self.get_journal_group(group_id)

    def find_journal_group(self, group_id: int) -> JournalGroupRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM journal_group WHERE id=?", (group_id,)).fetchone()
        return None if row is None else journal_group_record(row)

    def find_journal_group_by_name(self, name: str) -> JournalGroupRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM journal_group WHERE name=?", (name,)).fetchone()
        return None if row is None else journal_group_record(row)

    def get_journal_group(self, group_id: int) -> JournalGroupRecord:
        record = self.find_journal_group(group_id)
        if record is None:
            raise NotFound(f"journal group {group_id} not found")
        return record

    def list_journal_groups(self) -> list[JournalGroupRecord]:
        with self._lock:
            return [journal_group_record(r) for r in self._db.execute("SELECT * FROM journal_group ORDER BY id")]

    def set_confirmed(self, group_id: int, seq: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE journal_group SET confirmed_seq=MAX(confirmed_seq, ?) WHERE id=?", (seq, group_id))

    def set_split(self, group_id: int, split_seq: int | None, svol_writable: bool = False) -> None:
        """split_seq None ends the split (resync)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE journal_group SET split_seq=?, svol_writable=? WHERE id=?",
                (split_seq, int(svol_writable), group_id),
            )

    def set_inflow_control(self, group_id: int, inflow_control: bool, overflow_watch: float) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE journal_group SET inflow_control=?, overflow_watch=? WHERE id=?",
                (int(inflow_control), overflow_watch, group_id),
            )

    def set_fenced(self, group_id: int, fenced: bool) -> None:
        with self.transaction() as db:
            db.execute("UPDATE journal_group SET fenced=? WHERE id=?", (int(fenced), group_id))

    def set_rpo(self, group_id: int, rpo_seconds: float) -> None:
        with self.transaction() as db:
            db.execute("UPDATE journal_group SET rpo_seconds=? WHERE id=?", (rpo_seconds, group_id))

    def set_given_up(self, group_id: int, given_up: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE journal_group SET given_up=? WHERE id=?", (given_up, group_id))

    def set_applied(self, group_id: int, seq: int, nbytes: int, write_ns: int, heard: str) -> None:
        """Durable record of what the backup applied (after the S-VOLs were synced): the
        sequence, the journal bytes applied in all, the newest write's main-site time, and
        the main array's latest account (backend.replication.lag), all in one transaction."""
        with self.transaction() as db:
            db.execute(
                "UPDATE journal_group SET applied_seq=MAX(applied_seq, ?), applied_bytes=?, applied_write_ns=?, "
                "heard=? WHERE id=?",
                (seq, nbytes, write_ns, heard, group_id),
            )

    def set_heard(self, group_id: int, heard: str) -> None:
        """The main array's latest account of a group (an answer that brought no record)."""
        with self.transaction() as db:
            db.execute("UPDATE journal_group SET heard=? WHERE id=?", (heard, group_id))

    def reverse_roles(self, group_id: int, role: str, applied_seq: int) -> None:
        """Failback: the group and its pairs change sides; the new backup applies from applied_seq + 1."""
        with self.transaction() as db:
            db.execute(
                "UPDATE journal_group SET role=?, applied_seq=?, split_seq=NULL, svol_writable=0, given_up=NULL, "
                "fenced=0, heard=NULL WHERE id=?",
                (role, applied_seq, group_id),
            )
            db.execute("UPDATE pair SET role=? WHERE group_id=?", (role, group_id))

    # -- pairs -------------------------------------------------------------------------
    def insert_pair(
        self,
        group_id: int,
        role: str,
        local_ldev: int,
        remote_ldev: int,
        remote_serial: int,
        state: PairState,
        base_snapshot: int | None = None,
    ) -> PairRecord:
        with self.transaction() as db:
            try:
                pair_id = db.execute(
                    "INSERT INTO pair(group_id, role, local_ldev, remote_ldev, remote_serial, state, base_snapshot,"
                    " created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (group_id, role, local_ldev, remote_ldev, remote_serial, state.value, base_snapshot, time.time()),
                ).lastrowid
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"LDEV {format_ldev_id(local_ldev)} is already in a pair") from exc
        assert pair_id is not None
        return self.get_pair(pair_id)

    def get_pair(self, pair_id: int) -> PairRecord:
        with self._lock:
            row = self._db.execute("SELECT * FROM pair WHERE id=?", (pair_id,)).fetchone()
        if row is None:
            raise NotFound(f"pair {pair_id} not found")
        return pair_record(row)

    def find_pair_by_ldev(self, ldev_id: int) -> PairRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM pair WHERE local_ldev=?", (ldev_id,)).fetchone()
        return None if row is None else pair_record(row)

    def list_pairs(self, group_id: int | None = None) -> list[PairRecord]:
        sql, params = "SELECT * FROM pair", []
        if group_id is not None:
            sql += " WHERE group_id=?"
            params.append(group_id)
        with self._lock:
            return [pair_record(r) for r in self._db.execute(sql + " ORDER BY id", params).fetchall()]

    def update_pair(
        self, pair_id: int, *, state: PairState | None = None, clear_base: bool = False, base: int | None = None
    ) -> PairRecord:
        with self.transaction() as db:
            if state is not None:
                db.execute("UPDATE pair SET state=? WHERE id=?", (state.value, pair_id))
            if clear_base:
                db.execute("UPDATE pair SET base_snapshot=NULL WHERE id=?", (pair_id,))
            if base is not None:
                db.execute("UPDATE pair SET base_snapshot=? WHERE id=?", (base, pair_id))
        return self.get_pair(pair_id)

    def delete_pair(self, pair_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM pair WHERE id=?", (pair_id,))

    def delete_journal_group(self, group_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM journal_group WHERE id=?", (group_id,))

    def add_journal_member(self, group_id: int, ldev_id: int) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT group_id FROM journal_member WHERE ldev_id=?", (ldev_id,)).fetchone()
            if row is not None and row[0] != group_id:
                raise AlreadyExists(f"LDEV {format_ldev_id(ldev_id)} is in journal group {row[0]}")
            db.execute("INSERT OR IGNORE INTO journal_member(ldev_id, group_id) VALUES (?,?)", (ldev_id, group_id))

    def remove_journal_member(self, ldev_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM journal_member WHERE ldev_id=?", (ldev_id,))

    def journal_members(self, group_id: int) -> list[int]:
        with self._lock:
            rows = self._db.execute("SELECT ldev_id FROM journal_member WHERE group_id=? ORDER BY ldev_id", (group_id,))
            return [r[0] for r in rows]

    def journal_group_of(self, ldev_id: int) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT group_id FROM journal_member WHERE ldev_id=?", (ldev_id,)).fetchone()
        return None if row is None else row[0]
