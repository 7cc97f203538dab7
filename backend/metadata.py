"""The array's one metadata store: SQLite in WAL mode inside the pool folder.

This module owns the schema and its migrations (PRAGMA user_version). Every
change is one transaction, committed with synchronous=FULL, so metadata that a
call reported as changed survives kill -9 and power loss.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from backend.errors import AlreadyExists, NotFound, ResourceExhausted
from backend.ldev_id import MAX_LDEV_ID, format_ldev_id

MIGRATIONS: tuple[str, ...] = (
    # 1: LDEVs and their labels.
    """
    CREATE TABLE array_setting (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE ldev (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL CHECK (size > 0),
        state TEXT NOT NULL,
        read_only INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE ldev_label (
        ldev_id INTEGER NOT NULL REFERENCES ldev(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (ldev_id, key)
    );
    """,
)


class LdevState(StrEnum):
    CREATING = "CREATING"
    NORMAL = "NORMAL"
    DELETING = "DELETING"


@dataclass(frozen=True)
class LdevRecord:
    id: int
    name: str
    size: int
    state: LdevState
    read_only: bool
    created_at: float
    updated_at: float
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def display_id(self) -> str:
        return format_ldev_id(self.id)


class MetadataStore:
    """Thread-safe access to the pool's SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; durable when the block exits normally."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- array settings --------------------------------------------------
    def setting(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM array_setting WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO array_setting(key, value) VALUES (?, ?)", (key, value))

    # -- LDEVs -----------------------------------------------------------
    def insert_ldev(self, name: str, size: int, read_only: bool, labels: Mapping[str, str]) -> LdevRecord:
        """Reserve `name` in state CREATING. Raises AlreadyExists if taken."""
        now = time.time()
        with self.transaction() as db:
            try:
                cursor = db.execute(
                    "INSERT INTO ldev(name, size, state, read_only, created_at, updated_at) VALUES (?,?,?,?,?,?)",
                    (name, size, LdevState.CREATING.value, int(read_only), now, now),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"LDEV name {name!r} is taken") from exc
            ldev_id = cursor.lastrowid
            if ldev_id is None or ldev_id > MAX_LDEV_ID:
                raise ResourceExhausted(f"no free LDEV number (max {format_ldev_id(MAX_LDEV_ID)})")
            db.executemany(
                "INSERT INTO ldev_label(ldev_id, key, value) VALUES (?,?,?)",
                [(ldev_id, k, v) for k, v in labels.items()],
            )
        return self.get_ldev(ldev_id)

    def find_ldev(self, ldev_id: int) -> LdevRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM ldev WHERE id=?", (ldev_id,)).fetchone()
            return None if row is None else self._record(row)

    def find_ldev_by_name(self, name: str) -> LdevRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM ldev WHERE name=?", (name,)).fetchone()
            return None if row is None else self._record(row)

    def get_ldev(self, ldev_id: int) -> LdevRecord:
        record = self.find_ldev(ldev_id)
        if record is None:
            raise NotFound(f"LDEV {format_ldev_id(ldev_id)} not found")
        return record

    def list_ldevs(
        self, after_id: int = -1, limit: int | None = None, label_selector: Mapping[str, str] | None = None
    ) -> list[LdevRecord]:
        """LDEVs with id > after_id in id order, all labels of the selector matching."""
        sql = "SELECT * FROM ldev WHERE id > ?"
        params: list[object] = [after_id]
        for key, value in (label_selector or {}).items():
            sql += " AND EXISTS (SELECT 1 FROM ldev_label l WHERE l.ldev_id = ldev.id AND l.key=? AND l.value=?)"
            params += [key, value]
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            return [self._record(row) for row in self._db.execute(sql, params).fetchall()]

    def update_ldev(self, ldev_id: int, *, state: LdevState | None = None, size: int | None = None) -> LdevRecord:
        with self.transaction() as db:
            if state is not None:
                db.execute("UPDATE ldev SET state=? WHERE id=?", (state.value, ldev_id))
            if size is not None:
                db.execute("UPDATE ldev SET size=? WHERE id=?", (size, ldev_id))
            db.execute("UPDATE ldev SET updated_at=? WHERE id=?", (time.time(), ldev_id))
        return self.get_ldev(ldev_id)

    def update_labels(self, ldev_id: int, set_labels: Mapping[str, str], remove: list[str]) -> LdevRecord:
        with self.transaction() as db:
            db.executemany("DELETE FROM ldev_label WHERE ldev_id=? AND key=?", [(ldev_id, k) for k in remove])
            db.executemany(
                "INSERT OR REPLACE INTO ldev_label(ldev_id, key, value) VALUES (?,?,?)",
                [(ldev_id, k, v) for k, v in set_labels.items()],
            )
            db.execute("UPDATE ldev SET updated_at=? WHERE id=?", (time.time(), ldev_id))
        return self.get_ldev(ldev_id)

    def delete_ldev(self, ldev_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM ldev WHERE id=?", (ldev_id,))

    def _record(self, row: sqlite3.Row) -> LdevRecord:
        labels = dict(self._db.execute("SELECT key, value FROM ldev_label WHERE ldev_id=?", (row["id"],)).fetchall())
        return LdevRecord(
            id=row["id"],
            name=row["name"],
            size=row["size"],
            state=LdevState(row["state"]),
            read_only=bool(row["read_only"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            labels=labels,
        )
