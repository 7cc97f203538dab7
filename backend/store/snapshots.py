"""Snapshots and snapshot groups."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping

from backend.errors import AlreadyExists, NotFound
from backend.model import SnapshotGroupRecord, SnapshotRecord, SnapshotState
from backend.store.database import Database
from backend.store.rows import snapshot_group_record, snapshot_record


class SnapshotRows(Database):
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
        return None if row is None else snapshot_record(row)

    def find_snapshot_by_name(self, name: str) -> SnapshotRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM snapshot WHERE name=?", (name,)).fetchone()
        return None if row is None else snapshot_record(row)

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
            return [snapshot_record(row) for row in self._db.execute(sql, params).fetchall()]

    def find_snapshot_group(self, group_id: int) -> SnapshotGroupRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM snapshot_group WHERE id=?", (group_id,)).fetchone()
        return None if row is None else snapshot_group_record(row)

    def find_snapshot_group_by_name(self, name: str) -> SnapshotGroupRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM snapshot_group WHERE name=?", (name,)).fetchone()
        return None if row is None else snapshot_group_record(row)

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
            return [snapshot_group_record(row) for row in self._db.execute(sql, params).fetchall()]
