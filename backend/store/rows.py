"""Rows of the metadata database made domain records (backend.model)."""

from __future__ import annotations

import json
import sqlite3

from backend.model import (
    JournalGroupRecord,
    PairRecord,
    PairState,
    Publication,
    SnapshotGroupRecord,
    SnapshotRecord,
    SnapshotState,
    VerifyRecord,
)


def journal_group_record(row: sqlite3.Row) -> JournalGroupRecord:
    return JournalGroupRecord(
        row["id"], row["name"], row["capacity"], row["confirmed_seq"], row["created_at"],
        row["role"], row["applied_seq"], row["remote_serial"], row["split_seq"], bool(row["svol_writable"]),
        row["given_up"], bool(row["synchronous"]), bool(row["inflow_control"]), row["overflow_watch"],
        row["rpo_seconds"], bool(row["fenced"]), row["applied_bytes"], row["applied_write_ns"], row["heard"],
    )  # fmt: skip

def pair_record(row: sqlite3.Row) -> PairRecord:
    return PairRecord(
        row["id"], row["group_id"], row["role"], row["local_ldev"], row["remote_ldev"], row["remote_serial"],
        PairState(row["state"]), row["base_snapshot"], row["created_at"],
    )  # fmt: skip

def publication_record(row: sqlite3.Row) -> Publication:
    return Publication(
        token=row["token"],
        ldev_id=row["ldev_id"],
        host_id=row["host_id"],
        read_only=bool(row["read_only"]),
        created_at=row["created_at"],
        max_size=row["max_size"],
    )

def snapshot_record(row: sqlite3.Row) -> SnapshotRecord:
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

def snapshot_group_record(row: sqlite3.Row) -> SnapshotGroupRecord:
    return SnapshotGroupRecord(
        id=row["id"],
        name=row["name"],
        state=SnapshotState(row["state"]),
        created_at=row["created_at"],
        labels=json.loads(row["labels"]),
        stall_micros=row["stall_micros"],
    )

def verify_record(row: sqlite3.Row) -> VerifyRecord:
    return VerifyRecord(
        row["group_id"], row["verified_at"], row["seq"], bool(row["at_split"]), row["region_bytes"],
        row["regions_compared"], row["regions_differing"], row["regions_skipped"], row["bytes_compared"],
        bool(row["repaired"]), row["seconds"],
    )  # fmt: skip
