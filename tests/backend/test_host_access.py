"""Deny-by-default host access: the pure decisions, the array's use of them (with hosts
named as a client certificate would name them), and the migration of existing pools."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from backend.array import Array
from backend.errors import NotFound, PermissionDenied
from backend.host_access import ANONYMOUS, refusal_by_name, refusal_by_publication
from backend.pool import Pool
from backend.store import MetadataStore
from backend.store.schema import MIGRATIONS
from backend.write_path import HostWrite, WriteKind

MIB = 1 << 20


@pytest.mark.parametrize(
    ("open_to_all", "published_to", "host", "allowed"),
    [
        (True, [], ANONYMOUS, True),
        (True, [], "node-9", True),
        (False, [], ANONYMOUS, False),
        (False, ["node-1"], ANONYMOUS, False),  # published, but who is asking is unknown
        (False, ["node-1"], "node-1", True),
        (False, ["node-1"], "node-2", False),
        (False, ["node-1", "node-2"], "node-2", True),
    ],
)
def test_by_name_only_open_ldevs_or_the_hosts_they_are_published_to(open_to_all, published_to, host, allowed):
    assert (refusal_by_name("LDEV 00:00:01", open_to_all, published_to, host) is None) is allowed


def test_a_publication_is_its_hosts_alone():
    assert refusal_by_publication("node-1", ANONYMOUS) is None  # the secret name is the proof
    assert refusal_by_publication("node-1", "node-1") is None
    assert "for host 'node-1', not for 'node-2'" in str(refusal_by_publication("node-1", "node-2"))


@pytest.fixture
def array(tmp_path: Path):
    a = Array(Pool(tmp_path / "pool", serial=1))
    yield a
    a.close()


def test_a_certificate_host_opens_its_ldev_by_name_with_its_publications_mode(array: Array):
    ldev = array.create_ldev("vol", 4 * MIB)
    assert not ldev.open_to_all  # deny by default
    with pytest.raises(PermissionDenied):
        array.sessions.open("vol", "node-1")
    array.publish(ldev.id, "node-1", read_only=True)
    session = array.sessions.open("vol", "node-1")
    assert session.read_only  # the publication's mode applies, however the host came in
    with pytest.raises(PermissionDenied):
        array.sessions.open("vol", "node-2")
    with pytest.raises(PermissionDenied):
        array.sessions.open("vol")
    session.on_revoke = session.close  # what the NBD server does: hang up
    array.unpublish(ldev.id, "node-1")  # cuts the session it opened by name
    assert session.closed
    with pytest.raises(NotFound):
        array.sessions.describe("no-such-ldev", "node-1")


def test_a_leaked_publication_name_opens_nothing_for_another_certificate(array: Array):
    ldev = array.create_ldev("vol", 4 * MIB)
    publication = array.publish(ldev.id, "node-1", read_only=False)
    secret = array.publication_export(publication)
    assert secret.startswith("pub/")
    array.sessions.open(secret).close()  # no certificate: the secret name is the proof
    with pytest.raises(PermissionDenied, match="for host 'node-1', not for 'node-2'"):
        array.sessions.open(secret, "node-2")


def test_opening_and_closing_an_ldev_to_every_host(array: Array):
    ldev = array.create_ldev("vol", 4 * MIB)
    assert "vol" not in array.sessions.export_names()
    array.set_open_to_all(ldev.id, True)
    assert array.sessions.export_names() == ["vol"]
    session = array.sessions.open("vol")
    session.write(HostWrite(WriteKind.DATA, 0, 512, b"x" * 512, fua=True))
    array.set_open_to_all(ldev.id, False)
    assert array.sessions.export_names() == [] and array.sessions.export_names("node-1") == []
    with pytest.raises(PermissionDenied):
        array.sessions.open("vol")
    session.close()


def test_an_ldev_shows_an_export_name_only_where_some_host_may_open_it_by_name(tmp_path: Path):
    plain = Array(Pool(tmp_path / "plain", serial=1))
    certified = Array(Pool(tmp_path / "certified", serial=2), hosts_by_certificate=True)
    try:
        for array in (plain, certified):
            array.create_ldev("open", MIB, open_to_all=True)
            array.create_ldev("closed", MIB)
        assert plain.export_by_name(plain.get_ldev_by_name("open")) == "open"
        assert plain.export_by_name(plain.get_ldev_by_name("closed")) == ""  # only publications' names work here
        assert certified.export_by_name(certified.get_ldev_by_name("closed")) == "closed"
    finally:
        plain.close()
        certified.close()


def test_a_repeated_create_closes_an_open_ldev_but_never_opens_a_closed_one(array: Array):
    array.create_ldev("left-open", MIB, open_to_all=True)
    assert not array.create_ldev("left-open", MIB).open_to_all  # e.g. a CSI retry after a crash
    array.create_ldev("closed", MIB)
    assert not array.create_ldev("closed", MIB, open_to_all=True).open_to_all


def test_existing_pools_keep_their_ldevs_open_and_their_csi_volumes_closed(tmp_path: Path):
    """A pool made before host access was deny-by-default (schema 15): LDEVs made with
    `ldev create` were open to every host and stay so; those requiring publication close."""
    path = tmp_path / "pool.db"
    db = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS[:15], start=1):
        db.executescript(script)
        db.execute(f"PRAGMA user_version={number}")
    for name, required in (("made-by-ctl", 0), ("pvc-1", 1)):
        db.execute(
            "INSERT INTO ldev(name, size, state, read_only, created_at, updated_at, require_publication)"
            " VALUES (?, 1048576, 'NORMAL', 0, 0, 0, ?)",
            (name, required),
        )
    db.commit()
    db.close()
    store = MetadataStore(path)
    try:
        assert {r.name: r.open_to_all for r in store.list_ldevs()} == {"made-by-ctl": True, "pvc-1": False}
    finally:
        store.close()
