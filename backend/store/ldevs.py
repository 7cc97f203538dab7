"""LDEVs with their labels, the hosts and the publications that let them open LDEVs."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping

from backend.errors import AlreadyExists, NotFound, ResourceExhausted
from backend.model import HostRecord, LdevRecord, LdevState, Publication
from backend.store.database import Database
from backend.store.rows import publication_record
from ccopy_common.ldev_id import MAX_LDEV_ID, format_ldev_id


class LdevRows(Database):
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
        return publication_record(row)

    def delete_publication(self, ldev_id: int, host_id: str) -> Publication | None:
        with self.transaction() as db:
            row = db.execute("SELECT * FROM publication WHERE ldev_id=? AND host_id=?", (ldev_id, host_id)).fetchone()
            if row is not None:
                db.execute("DELETE FROM publication WHERE token=?", (row["token"],))
        return None if row is None else publication_record(row)

    def find_publication(self, token: str) -> Publication | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM publication WHERE token=?", (token,)).fetchone()
        return None if row is None else publication_record(row)

    def list_publications(self, ldev_id: int | None = None) -> list[Publication]:
        sql, params = "SELECT * FROM publication", []
        if ldev_id is not None:
            sql += " WHERE ldev_id=?"
            params.append(ldev_id)
        with self._lock:
            return [publication_record(r) for r in self._db.execute(sql + " ORDER BY created_at", params).fetchall()]

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
