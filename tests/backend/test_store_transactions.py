"""A change of several rows is one transaction: the row methods called inside an open one
join it, so another reader sees all of it or none, and a failure leaves none of it."""

from __future__ import annotations

import sqlite3

import pytest

from backend.errors import AlreadyExists
from backend.store import MetadataStore


@pytest.fixture
def store(tmp_path):
    made = MetadataStore(tmp_path / "metadata.db")
    yield made
    made.close()


def names_seen_by_another_reader(store: MetadataStore) -> list[str]:
    reader = sqlite3.connect(store.path)
    try:
        return [row[0] for row in reader.execute("SELECT name FROM ldev ORDER BY id")]
    finally:
        reader.close()


def test_rows_of_one_change_appear_together(store):
    with store.transaction():
        store.insert_ldev("sales", 4096, False, {})
        store.insert_ldev("stock", 4096, False, {})
        assert names_seen_by_another_reader(store) == []  # nothing committed yet
    assert names_seen_by_another_reader(store) == ["sales", "stock"]


def test_a_failure_in_the_change_leaves_none_of_it(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_ldev("sales", 4096, False, {})
        store.set_ldev_access(1, read_only=True)
        raise RuntimeError("crash between two rows")
    assert names_seen_by_another_reader(store) == []
    assert store.find_ldev_by_name("sales") is None


def test_an_inner_failure_caught_takes_back_its_own_rows_only(store):
    with store.transaction():
        store.insert_ldev("sales", 4096, False, {})
        with pytest.raises(AlreadyExists):
            store.insert_ldev("sales", 4096, False, {})  # refused inside: its savepoint rolls back
        store.insert_ldev("stock", 4096, False, {})
    assert names_seen_by_another_reader(store) == ["sales", "stock"]


def test_alone_each_row_method_is_its_own_transaction(store):
    store.insert_ldev("sales", 4096, False, {})
    assert names_seen_by_another_reader(store) == ["sales"]
