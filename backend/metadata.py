"""The array's one metadata store: SQLite in WAL mode inside the pool folder.

This module owns the schema and its migrations (PRAGMA user_version). Every
change is one transaction, committed with synchronous=FULL, so metadata that a
call reported as changed survives kill -9 and power loss.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from backend.errors import AlreadyExists, NotFound, ResourceExhausted
from ccopy_common.ldev_id import MAX_LDEV_ID, format_ldev_id

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
    # 2: snapshots (their id is their generation: later snapshots have larger ids),
    #    snapshot groups, per-LDEV chunk size, clone sources.
    """
    ALTER TABLE ldev ADD COLUMN chunk_size INTEGER NOT NULL DEFAULT 65536;
    ALTER TABLE ldev ADD COLUMN clone_source INTEGER;
    CREATE TABLE snapshot_group (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    );
    CREATE TABLE snapshot (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        ldev_id INTEGER NOT NULL REFERENCES ldev(id),
        group_id INTEGER REFERENCES snapshot_group(id),
        size INTEGER NOT NULL,
        state TEXT NOT NULL,
        hidden INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    );
    CREATE INDEX snapshot_by_ldev ON snapshot(ldev_id);
    CREATE INDEX snapshot_by_group ON snapshot(group_id);
    """,
    # 3: host access control (publications) and per-LDEV QoS limits.
    """
    ALTER TABLE ldev ADD COLUMN require_publication INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE ldev ADD COLUMN max_iops INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE ldev ADD COLUMN max_mbps INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE publication (
        token TEXT PRIMARY KEY,
        ldev_id INTEGER NOT NULL REFERENCES ldev(id) ON DELETE CASCADE,
        host_id TEXT NOT NULL,
        read_only INTEGER NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (ldev_id, host_id)
    );
    """,
    # 4: publications may advertise growth headroom (online expansion on hosts).
    """
    ALTER TABLE publication ADD COLUMN max_size INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: journal groups (consistency groups of asynchronous remote copy).
    """
    CREATE TABLE journal_group (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        capacity INTEGER NOT NULL,
        confirmed_seq INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE journal_member (
        ldev_id INTEGER PRIMARY KEY REFERENCES ldev(id) ON DELETE CASCADE,
        group_id INTEGER NOT NULL REFERENCES journal_group(id)
    );
    """,
    # 6: pairs of asynchronous remote copy; a journal group is on the main
    #    (P-VOL) side or the backup (S-VOL) side, where it records what it applied.
    """
    ALTER TABLE journal_group ADD COLUMN role TEXT NOT NULL DEFAULT 'main';
    ALTER TABLE journal_group ADD COLUMN applied_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE journal_group ADD COLUMN remote_serial INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE pair (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id INTEGER NOT NULL REFERENCES journal_group(id),
        role TEXT NOT NULL,
        local_ldev INTEGER NOT NULL UNIQUE REFERENCES ldev(id),
        remote_ldev INTEGER NOT NULL,
        remote_serial INTEGER NOT NULL,
        state TEXT NOT NULL,
        base_snapshot INTEGER,
        created_at REAL NOT NULL
    );
    """,
    # 7: a split journal group (split_seq not NULL): the main array stopped journaling
    #    after split_seq; the backup applies through it, then its S-VOLs are split
    #    (writable if asked).
    """
    ALTER TABLE journal_group ADD COLUMN split_seq INTEGER;
    ALTER TABLE journal_group ADD COLUMN svol_writable INTEGER NOT NULL DEFAULT 0;
    """,
    # 8: what a takeover gave up: writes acknowledged at the main site, never applied here.
    """
    ALTER TABLE journal_group ADD COLUMN given_up TEXT;
    """,
    # 9: synchronous groups (TrueCopy style): a P-VOL write is acknowledged once applied at the backup.
    """
    ALTER TABLE journal_group ADD COLUMN synchronous INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: inflow control: when the journal is full, host writes wait up to the data
    #     overflow watch time for room before the group suspends (PFUS).
    """
    ALTER TABLE journal_group ADD COLUMN inflow_control INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE journal_group ADD COLUMN overflow_watch REAL NOT NULL DEFAULT 60;
    """,
    # 11: the declared recovery point objective of a group (status and metrics only; 0: none).
    """
    ALTER TABLE journal_group ADD COLUMN rpo_seconds REAL NOT NULL DEFAULT 0;
    """,
    # 12: a main-side group fenced (demoted): its P-VOLs refuse host writes until the other
    #     site takes over (then a failback turns it around) or it is promoted again.
    """
    ALTER TABLE journal_group ADD COLUMN fenced INTEGER NOT NULL DEFAULT 0;
    """,
    # 13: hosts (the nodes a CSI node plugin registers): who may be published to, and how many
    #     LDEVs each may hold at once (0: no limit).
    """
    CREATE TABLE host (
        host_id TEXT PRIMARY KEY,
        max_volumes INTEGER NOT NULL DEFAULT 0,
        registered_at REAL NOT NULL
    );
    """,
    # 14: the backup's own view of its lag (backend/replication/lag.py): journal bytes applied in all
    #     and the main-site time of the newest write applied (the recovery point), made
    #     durable with applied_seq; and the main array's latest account (JSON of Heard).
    """
    ALTER TABLE journal_group ADD COLUMN applied_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE journal_group ADD COLUMN applied_write_ns INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE journal_group ADD COLUMN heard TEXT;
    """,
    # 15: how long host writes waited at the barrier when a snapshot group was taken, kept so
    #     that showing the group later reports what its creation did.
    """
    ALTER TABLE snapshot_group ADD COLUMN stall_micros INTEGER NOT NULL DEFAULT 0;
    """,
    # 16: host access is deny-by-default; an LDEV reachable by every host says so. LDEVs made
    #     before (without "requires publication") stay open, so existing pools keep working.
    """
    ALTER TABLE ldev ADD COLUMN open_to_all INTEGER NOT NULL DEFAULT 0;
    UPDATE ldev SET open_to_all = 1 - require_publication;
    ALTER TABLE ldev DROP COLUMN require_publication;
    """,
)


class LdevState(StrEnum):
    CREATING = "CREATING"
    NORMAL = "NORMAL"
    DELETING = "DELETING"
    # A clone whose data is still being copied; not exported until NORMAL.
    COPYING = "COPYING"


class SnapshotState(StrEnum):
    # Reserved; becomes NORMAL once the barrier marked it. Dropped on restart.
    CREATING = "CREATING"
    NORMAL = "NORMAL"


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
    chunk_size: int = 65536
    clone_source: int | None = None
    # Every host may open it by name; otherwise only hosts it is published to (backend/host_access.py).
    open_to_all: bool = False
    max_iops: int = 0
    max_mbps: int = 0

    @property
    def display_id(self) -> str:
        return format_ldev_id(self.id)


@dataclass(frozen=True)
class Publication:
    """A host's right to open an LDEV over NBD, named by a secret token."""

    token: str
    ldev_id: int
    host_id: str
    read_only: bool
    created_at: float
    # The host is told the export is this big (if larger than the LDEV), so it
    # can grow in place when the LDEV is expanded; I/O past the LDEV still fails.
    max_size: int = 0


@dataclass(frozen=True)
class HostRecord:
    """A host a node plugin registered: how many LDEVs it may hold, and holds now."""

    host_id: str
    max_volumes: int  # 0: no limit
    published_ldevs: int


@dataclass(frozen=True)
class SnapshotRecord:
    id: int
    name: str
    ldev_id: int
    group_id: int | None
    size: int
    state: SnapshotState
    hidden: bool
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotGroupRecord:
    id: int
    name: str
    state: SnapshotState
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    stall_micros: int = 0  # how long host writes waited at the barrier that took it


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
    def insert_ldev(
        self,
        name: str,
        size: int,
        read_only: bool,
        labels: Mapping[str, str],
        chunk_size: int = 65536,
        clone_source: int | None = None,
        open_to_all: bool = False,
        qos: tuple[int, int] = (0, 0),
    ) -> LdevRecord:
        """Reserve `name` in state CREATING, with its host-access rule and QoS in the same
        transaction: no crash can leave it open to every host. Raises AlreadyExists if taken."""
        now = time.time()
        with self.transaction() as db:
            try:
                cursor = db.execute(
                    "INSERT INTO ldev(name, size, state, read_only, created_at, updated_at, chunk_size, clone_source,"
                    " open_to_all, max_iops, max_mbps) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (name, size, LdevState.CREATING.value, int(read_only), now, now, chunk_size, clone_source,
                     int(open_to_all), qos[0], qos[1]),
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

    def update_ldev(
        self,
        ldev_id: int,
        *,
        state: LdevState | None = None,
        size: int | None = None,
        clear_clone_source: bool = False,
    ) -> LdevRecord:
        with self.transaction() as db:
            if clear_clone_source:
                db.execute("UPDATE ldev SET clone_source=NULL WHERE id=?", (ldev_id,))
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
            chunk_size=row["chunk_size"],
            clone_source=row["clone_source"],
            open_to_all=bool(row["open_to_all"]),
            max_iops=row["max_iops"],
            max_mbps=row["max_mbps"],
        )

    def set_ldev_access(
        self,
        ldev_id: int,
        *,
        open_to_all: bool | None = None,
        qos: tuple[int, int] | None = None,
        read_only: bool | None = None,
    ) -> LdevRecord:
        with self.transaction() as db:
            if read_only is not None:
                db.execute("UPDATE ldev SET read_only=? WHERE id=?", (int(read_only), ldev_id))
            if open_to_all is not None:
                db.execute("UPDATE ldev SET open_to_all=? WHERE id=?", (int(open_to_all), ldev_id))
            if qos is not None:
                db.execute("UPDATE ldev SET max_iops=?, max_mbps=? WHERE id=?", (qos[0], qos[1], ldev_id))
            db.execute("UPDATE ldev SET updated_at=? WHERE id=?", (time.time(), ldev_id))
        return self.get_ldev(ldev_id)

    # -- publications ---------------------------------------------------------
    def upsert_publication(
        self, token: str, ldev_id: int, host_id: str, read_only: bool, max_size: int = 0
    ) -> Publication:
        """One publication per (LDEV, host); an existing one keeps its token."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM publication WHERE ldev_id=? AND host_id=?", (ldev_id, host_id)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO publication(token, ldev_id, host_id, read_only, created_at, max_size)"
                    " VALUES (?,?,?,?,?,?)",
                    (token, ldev_id, host_id, int(read_only), time.time(), max_size),
                )
                row = db.execute("SELECT * FROM publication WHERE token=?", (token,)).fetchone()
        return _publication(row)

    def delete_publication(self, ldev_id: int, host_id: str) -> Publication | None:
        with self.transaction() as db:
            row = db.execute("SELECT * FROM publication WHERE ldev_id=? AND host_id=?", (ldev_id, host_id)).fetchone()
            if row is not None:
                db.execute("DELETE FROM publication WHERE token=?", (row["token"],))
        return None if row is None else _publication(row)

    def find_publication(self, token: str) -> Publication | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM publication WHERE token=?", (token,)).fetchone()
        return None if row is None else _publication(row)

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
        return None if row is None else _journal_group(row)

    def find_journal_group_by_name(self, name: str) -> JournalGroupRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM journal_group WHERE name=?", (name,)).fetchone()
        return None if row is None else _journal_group(row)

    def get_journal_group(self, group_id: int) -> JournalGroupRecord:
        record = self.find_journal_group(group_id)
        if record is None:
            raise NotFound(f"journal group {group_id} not found")
        return record

    def list_journal_groups(self) -> list[JournalGroupRecord]:
        with self._lock:
            return [_journal_group(r) for r in self._db.execute("SELECT * FROM journal_group ORDER BY id")]

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
        return _pair(row)

    def find_pair_by_ldev(self, ldev_id: int) -> PairRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM pair WHERE local_ldev=?", (ldev_id,)).fetchone()
        return None if row is None else _pair(row)

    def list_pairs(self, group_id: int | None = None) -> list[PairRecord]:
        sql, params = "SELECT * FROM pair", []
        if group_id is not None:
            sql += " WHERE group_id=?"
            params.append(group_id)
        with self._lock:
            return [_pair(r) for r in self._db.execute(sql + " ORDER BY id", params).fetchall()]

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

    def upsert_host(self, host_id: str, max_volumes: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO host(host_id, max_volumes, registered_at) VALUES (?,?,?) "
                "ON CONFLICT(host_id) DO UPDATE SET max_volumes=excluded.max_volumes",
                (host_id, max_volumes, time.time()),
            )

    def find_host(self, host_id: str) -> HostRecord | None:
        """The host and the LDEVs published to it now; None for a host never registered."""
        with self._lock:
            row = self._db.execute("SELECT max_volumes FROM host WHERE host_id=?", (host_id,)).fetchone()
            if row is None:
                return None
            count = self._db.execute("SELECT COUNT(*) FROM publication WHERE host_id=?", (host_id,)).fetchone()[0]
        return HostRecord(host_id, row["max_volumes"], count)

    def list_publications(self, ldev_id: int | None = None) -> list[Publication]:
        sql, params = "SELECT * FROM publication", []
        if ldev_id is not None:
            sql += " WHERE ldev_id=?"
            params.append(ldev_id)
        with self._lock:
            return [_publication(r) for r in self._db.execute(sql + " ORDER BY created_at", params).fetchall()]

    # -- snapshots -----------------------------------------------------------
    def insert_snapshot_group(
        self, name: str, members: list[tuple[str, int, int]], labels: Mapping[str, str], hidden: bool = False
    ) -> tuple[SnapshotGroupRecord | None, list[SnapshotRecord]]:
        """Reserve a group (when `name`) and its member snapshots, all CREATING, in one transaction.

        `members` are (snapshot name, LDEV id, size). Snapshot ids are allocated here,
        in member order, and are the snapshots' generations.
        """
        now = time.time()
        encoded = json.dumps(dict(labels), sort_keys=True)
        with self.transaction() as db:
            group_id = None
            if name:
                try:
                    group_id = db.execute(
                        "INSERT INTO snapshot_group(name, state, labels, created_at) VALUES (?,?,?,?)",
                        (name, SnapshotState.CREATING.value, encoded, now),
                    ).lastrowid
                except sqlite3.IntegrityError as exc:
                    raise AlreadyExists(f"snapshot group name {name!r} is taken") from exc
            ids = []
            for snap_name, ldev_id, size in members:
                try:
                    ids.append(
                        db.execute(
                            "INSERT INTO snapshot(name, ldev_id, group_id, size, state, hidden, labels, created_at)"
                            " VALUES (?,?,?,?,?,?,?,?)",
                            (snap_name, ldev_id, group_id, size, SnapshotState.CREATING.value, int(hidden),
                             encoded if not name else "{}", now),
                        ).lastrowid
                    )  # fmt: skip
                except sqlite3.IntegrityError as exc:
                    raise AlreadyExists(f"snapshot name {snap_name!r} is taken") from exc
        group = self.get_snapshot_group(group_id) if group_id is not None else None
        return group, [self.get_snapshot(i) for i in ids if i is not None]

    def mark_snapshots_normal(self, snapshot_ids: list[int], group_id: int | None, stall_micros: int = 0) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE snapshot SET state=? WHERE id=?", [(SnapshotState.NORMAL.value, i) for i in snapshot_ids]
            )
            if group_id is not None:
                db.execute(
                    "UPDATE snapshot_group SET state=?, stall_micros=? WHERE id=?",
                    (SnapshotState.NORMAL.value, stall_micros, group_id),
                )

    def delete_snapshots(self, snapshot_ids: list[int], group_id: int | None = None) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM snapshot WHERE id=?", [(i,) for i in snapshot_ids])
            if group_id is not None:
                db.execute("DELETE FROM snapshot_group WHERE id=?", (group_id,))

    def find_snapshot(self, snapshot_id: int) -> SnapshotRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM snapshot WHERE id=?", (snapshot_id,)).fetchone()
        return None if row is None else _snapshot(row)

    def find_snapshot_by_name(self, name: str) -> SnapshotRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM snapshot WHERE name=?", (name,)).fetchone()
        return None if row is None else _snapshot(row)

    def get_snapshot(self, snapshot_id: int) -> SnapshotRecord:
        record = self.find_snapshot(snapshot_id)
        if record is None:
            raise NotFound(f"snapshot {snapshot_id} not found")
        return record

    def list_snapshots(
        self,
        ldev_id: int | None = None,
        group_id: int | None = None,
        after_id: int = -1,
        limit: int | None = None,
        include_hidden: bool = False,
    ) -> list[SnapshotRecord]:
        sql, params = "SELECT * FROM snapshot WHERE id > ?", [after_id]
        if ldev_id is not None:
            sql += " AND ldev_id=?"
            params.append(ldev_id)
        if group_id is not None:
            sql += " AND group_id=?"
            params.append(group_id)
        if not include_hidden:
            sql += " AND hidden=0"
        sql += " ORDER BY id" + (" LIMIT ?" if limit is not None else "")
        if limit is not None:
            params.append(limit)
        with self._lock:
            return [_snapshot(row) for row in self._db.execute(sql, params).fetchall()]

    def find_snapshot_group(self, group_id: int) -> SnapshotGroupRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM snapshot_group WHERE id=?", (group_id,)).fetchone()
        return None if row is None else _group(row)

    def find_snapshot_group_by_name(self, name: str) -> SnapshotGroupRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM snapshot_group WHERE name=?", (name,)).fetchone()
        return None if row is None else _group(row)

    def get_snapshot_group(self, group_id: int) -> SnapshotGroupRecord:
        record = self.find_snapshot_group(group_id)
        if record is None:
            raise NotFound(f"snapshot group {group_id} not found")
        return record

    def list_snapshot_groups(self, after_id: int = -1, limit: int | None = None) -> list[SnapshotGroupRecord]:
        sql, params = "SELECT * FROM snapshot_group WHERE id > ? ORDER BY id", [after_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            return [_group(row) for row in self._db.execute(sql, params).fetchall()]


@dataclass(frozen=True)
class JournalGroupRecord:
    id: int
    name: str
    capacity: int
    confirmed_seq: int
    created_at: float
    role: str = "main"  # main: P-VOLs, journal kept here; backup: S-VOLs, journal applied here
    applied_seq: int = 0
    remote_serial: int = 0
    split_seq: int | None = None  # None: not split
    svol_writable: bool = False
    given_up: str | None = None  # JSON of the last takeover's DataGivenUp (backend.replication.takeover)
    synchronous: bool = False
    inflow_control: bool = False
    overflow_watch: float = 60.0
    rpo_seconds: float = 0.0  # declared objective, for status and metrics; 0: none
    fenced: bool = False  # main side demoted: hosts may not write its P-VOLs
    applied_bytes: int = 0  # backup: journal bytes applied in all (backend.replication.lag.Applied)
    applied_write_ns: int = 0  # backup: main-site time of the newest write applied
    heard: str | None = None  # backup: JSON of the main array's latest account (backend.replication.lag.Heard)


def _journal_group(row: sqlite3.Row) -> JournalGroupRecord:
    return JournalGroupRecord(
        row["id"], row["name"], row["capacity"], row["confirmed_seq"], row["created_at"],
        row["role"], row["applied_seq"], row["remote_serial"], row["split_seq"], bool(row["svol_writable"]),
        row["given_up"], bool(row["synchronous"]), bool(row["inflow_control"]), row["overflow_watch"],
        row["rpo_seconds"], bool(row["fenced"]), row["applied_bytes"], row["applied_write_ns"], row["heard"],
    )  # fmt: skip


class PairState(StrEnum):
    SMPL = "SMPL"
    COPY = "COPY"
    PAIR = "PAIR"
    PSUS = "PSUS"
    PSUE = "PSUE"
    PFUS = "PFUS"
    SSWS = "SSWS"


@dataclass(frozen=True)
class PairRecord:
    id: int
    group_id: int
    role: str  # main (this array holds the P-VOL) or backup (the S-VOL)
    local_ldev: int
    remote_ldev: int
    remote_serial: int
    state: PairState
    base_snapshot: int | None
    created_at: float


def _pair(row: sqlite3.Row) -> PairRecord:
    return PairRecord(
        row["id"], row["group_id"], row["role"], row["local_ldev"], row["remote_ldev"], row["remote_serial"],
        PairState(row["state"]), row["base_snapshot"], row["created_at"],
    )  # fmt: skip


def _publication(row: sqlite3.Row) -> Publication:
    return Publication(
        token=row["token"],
        ldev_id=row["ldev_id"],
        host_id=row["host_id"],
        read_only=bool(row["read_only"]),
        created_at=row["created_at"],
        max_size=row["max_size"],
    )


def _snapshot(row: sqlite3.Row) -> SnapshotRecord:
    return SnapshotRecord(
        id=row["id"],
        name=row["name"],
        ldev_id=row["ldev_id"],
        group_id=row["group_id"],
        size=row["size"],
        state=SnapshotState(row["state"]),
        hidden=bool(row["hidden"]),
        created_at=row["created_at"],
        labels=json.loads(row["labels"]),
    )


def _group(row: sqlite3.Row) -> SnapshotGroupRecord:
    return SnapshotGroupRecord(
        id=row["id"],
        name=row["name"],
        state=SnapshotState(row["state"]),
        created_at=row["created_at"],
        labels=json.loads(row["labels"]),
        stall_micros=row["stall_micros"],
    )
