"""The connection to the pool's SQLite database (WAL, synchronous=FULL): its schema
brought up to date when opened, transactions, and the array's settings. What is
reported as changed survives kill -9 and power loss.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backend.errors import FailedPrecondition
from backend.store.schema import MIGRATIONS


class Database:
    """Thread-safe access to the database: one connection, one lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0  # transactions open in the thread holding the lock
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):  # a downgrade: refused before anything is written
            self._db.close()
            raise FailedPrecondition(
                f"{path}: the pool's metadata is schema {version}, newer than this array's {len(MIGRATIONS)}: "
                "run the newer ccopy that made it"
            )
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
        """One write transaction, durable when the outermost block exits normally.

        A change of several rows (a demote, a split) opens one and calls the row
        methods inside it: each of theirs joins it as a savepoint, so the change
        commits once, whole, or not at all; an inner block that fails rolls back
        its own rows only.
        """
        with self._lock:
            if self._depth:
                name = f"inner{self._depth}"
                self._db.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield self._db
                except BaseException:
                    self._db.execute(f"ROLLBACK TO {name}")
                    self._db.execute(f"RELEASE {name}")
                    raise
                finally:
                    self._depth -= 1
                self._db.execute(f"RELEASE {name}")
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            self._db.execute("COMMIT")

    # -- array settings --------------------------------------------------
    def setting(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM array_setting WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO array_setting(key, value) VALUES (?, ?)", (key, value))
