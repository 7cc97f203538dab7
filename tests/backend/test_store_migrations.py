"""A pool made by any earlier version opens: from every schema version, with a row in
each of its tables, the migrations reach the schema a new pool gets and keep every row;
an LDEV kept from then is still there, whole; a newer pool is refused, untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from backend.errors import FailedPrecondition
from backend.model import LdevState
from backend.store import MetadataStore
from backend.store.schema import MIGRATIONS


def at_version(path: Path, version: int) -> sqlite3.Connection:
    """A database as version `version` of the array left it (its first migrations only)."""
    db = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:version], start=1):
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version={number}")
    return db


def schema(path: Path) -> dict[str, list[tuple]]:
    """Every table's and index's columns as SQLite reports them (order and defaults included)."""
    db = sqlite3.connect(path)
    try:
        names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")]
        found = {}
        for name in names:
            kind = db.execute("SELECT type FROM sqlite_master WHERE name=?", (name,)).fetchone()[0]
            pragma = "table_info" if kind == "table" else "index_info"
            found[f"{kind} {name}"] = db.execute(f"PRAGMA {pragma}({name})").fetchall()
        found["user_version"] = db.execute("PRAGMA user_version").fetchall()
        return found
    finally:
        db.close()


@pytest.fixture(scope="module")
def new_schema(tmp_path_factory) -> dict[str, list[tuple]]:
    path = tmp_path_factory.mktemp("new") / "metadata.db"
    MetadataStore(path).close()
    return schema(path)


def seed_every_table(db: sqlite3.Connection) -> dict[str, int]:
    """One row in every table the version has, every required column filled: the later
    migrations run over data, as they do on a pool in use. Rows by table."""
    values = {"INTEGER": 1, "REAL": 1.0, "TEXT": "1", "BLOB": b"1"}
    listed = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
    tables = [row[0] for row in db.execute(listed)]
    for table in tables:
        columns = db.execute(f"PRAGMA table_info({table})").fetchall()  # cid, name, type, notnull, default, pk
        filled = {name: values[kind.upper()] for _, name, kind, required, default, _ in columns
                  if required and default is None}  # fmt: skip
        marks = ", ".join("?" * len(filled))
        db.execute(f"INSERT INTO {table}({', '.join(filled)}) VALUES ({marks})", tuple(filled.values()))
    return {table: 1 for table in tables}


@pytest.mark.parametrize("version", range(len(MIGRATIONS)))
def test_every_earlier_version_reaches_the_new_schema_with_its_rows(tmp_path, version, new_schema):
    path = tmp_path / "metadata.db"
    db = at_version(path, version)
    seeded = seed_every_table(db)
    db.close()
    MetadataStore(path).close()
    assert schema(path) == new_schema
    db = sqlite3.connect(path)
    kept = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in seeded}
    db.close()
    assert kept == seeded


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS)))
def test_an_ldev_of_every_earlier_version_is_kept(tmp_path, version):
    path = tmp_path / "metadata.db"
    db = at_version(path, version)
    db.execute("INSERT INTO ldev(name, size, state, read_only, created_at, updated_at) "
               "VALUES ('kept', 4096, 'NORMAL', 1, 1, 2)")  # fmt: skip
    db.execute("INSERT INTO ldev_label(ldev_id, key, value) VALUES (1, 'app', 'shop')")
    db.close()
    store = MetadataStore(path)
    try:
        kept = store.get_ldev(1)
        assert (kept.name, kept.size, kept.state, kept.read_only) == ("kept", 4096, LdevState.NORMAL, True)
        assert dict(kept.labels) == {"app": "shop"}
        # Made before deny-by-default host access: it stays open, as it was (migration 16); made after, closed.
        assert kept.open_to_all == (version < 16)
        assert (kept.max_iops, kept.max_mbps, kept.chunk_size) == (0, 0, 65536)
        # And the pool goes on: a new LDEV gets the next number.
        assert store.insert_ldev("new", 4096, False, {}).id == 2
    finally:
        store.close()


def test_a_database_from_a_newer_version_is_not_touched(tmp_path):
    path = tmp_path / "metadata.db"
    at_version(path, len(MIGRATIONS)).execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    before = path.read_bytes()
    with pytest.raises(FailedPrecondition, match="newer than this array"):
        MetadataStore(path)
    assert path.read_bytes() == before
