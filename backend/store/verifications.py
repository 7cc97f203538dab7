"""The last verify of each journal group (backend.replication.verify): one row a group,
replaced by the next verify that runs to its end, gone with the group."""

from __future__ import annotations

from dataclasses import astuple, fields

from backend.model import VerifyRecord
from backend.store.database import Database
from backend.store.rows import verify_record

_COLUMNS = ", ".join(f.name for f in fields(VerifyRecord))  # the table's columns, in the record's order
_MARKS = ", ".join("?" * len(fields(VerifyRecord)))


class VerifyRows(Database):
    def set_last_verify(self, record: VerifyRecord) -> None:
        """Durable when it returns (one transaction); the group's earlier result is replaced."""
        values = tuple(int(v) if isinstance(v, bool) else v for v in astuple(record))
        with self.transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO journal_group_verify({_COLUMNS}) VALUES ({_MARKS})", values)

    def find_last_verify(self, group_id: int) -> VerifyRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM journal_group_verify WHERE group_id=?", (group_id,)).fetchone()
        return None if row is None else verify_record(row)
