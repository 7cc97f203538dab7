"""Step 4 of the write path: P-VOL writes become journal records, one sequence per group."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from backend.array import Array
from backend.errors import AlreadyExists, FailedPrecondition
from backend.journal_record import RecordKind
from backend.pool import Pool
from backend.write_path import HostWrite, WriteKind

MIB = 1 << 20


@pytest.fixture
def array(tmp_path: Path):
    a = Array(Pool(tmp_path / "pool", serial=1))
    yield a
    a.close()


def test_writes_to_two_pvols_share_one_sequence_in_order(array: Array):
    stock = array.create_ldev("stock", 8 * MIB, open_to_all=True)
    sales = array.create_ldev("sales", 8 * MIB, open_to_all=True)
    group = array.journal_groups.create("shop", 64 * MIB)
    array.journal_groups.add_member(group.id, stock.id)
    array.journal_groups.add_member(group.id, sales.id)
    a, b = array.sessions.open("stock"), array.sessions.open("sales")
    a.write(HostWrite(WriteKind.DATA, 0, 5, b"-1 wd"))
    b.write(HostWrite(WriteKind.DATA, 512, 4, b"sale"))
    a.write(HostWrite(WriteKind.TRIM, MIB, MIB))
    b.write(HostWrite(WriteKind.ZEROES, 0, 4096, keep_allocated=True))
    records = array.journal_groups.journals[group.id].read(1, 1 << 20)
    assert [(r.seq, r.ldev_id, r.kind, r.offset, r.length, r.data) for r in records] == [
        (1, stock.id, RecordKind.WRITE, 0, 5, b"-1 wd"),
        (2, sales.id, RecordKind.WRITE, 512, 4, b"sale"),
        (3, stock.id, RecordKind.TRIM, MIB, MIB, b""),
        (4, sales.id, RecordKind.ZEROES, 0, 4096, b""),
    ]
    assert records[3].keep_allocated
    assert all(x.timestamp_ns <= y.timestamp_ns for x, y in itertools.pairwise(records))
    a.close()
    b.close()


def test_non_members_are_not_journaled_and_membership_is_exclusive(array: Array):
    plain = array.create_ldev("plain", MIB, open_to_all=True)
    group = array.journal_groups.create("g", 8 * MIB)
    other = array.journal_groups.create("h", 8 * MIB)
    session = array.sessions.open("plain")
    session.write(HostWrite(WriteKind.DATA, 0, 3, b"abc"))
    assert array.journal_groups.journals[group.id].pending() == (0, 0)
    array.journal_groups.add_member(group.id, plain.id)
    with pytest.raises(AlreadyExists):
        array.journal_groups.add_member(other.id, plain.id)
    with pytest.raises(FailedPrecondition):
        array.journal_groups.delete(group.id)
    session.write(HostWrite(WriteKind.DATA, 0, 3, b"def"))
    assert array.journal_groups.journals[group.id].pending()[0] == 1
    array.journal_groups.remove_member(plain.id)
    session.write(HostWrite(WriteKind.DATA, 0, 3, b"ghi"))
    assert array.journal_groups.journals[group.id].pending()[0] == 1
    array.journal_groups.delete(group.id)
    session.close()


def test_flush_and_fua_make_the_journal_durable(array: Array):
    ldev = array.create_ldev("d", MIB, open_to_all=True)
    group = array.journal_groups.create("g", 8 * MIB)
    array.journal_groups.add_member(group.id, ldev.id)
    journal = array.journal_groups.journals[group.id]
    session = array.sessions.open("d")
    session.write(HostWrite(WriteKind.DATA, 0, 4, b"data"))
    assert journal._dirty
    session.flush()
    assert not journal._dirty
    session.write(HostWrite(WriteKind.DATA, 0, 4, b"more", fua=True))
    assert not journal._dirty
    session.close()


def test_journal_survives_reopening_and_confirmation_trims(tmp_path: Path):
    array = Array(Pool(tmp_path / "pool", serial=1))
    ldev = array.create_ldev("p", 4 * MIB, open_to_all=True)
    group = array.journal_groups.create("g", 64 * MIB)
    array.journal_groups.add_member(group.id, ldev.id)
    session = array.sessions.open("p")
    for i in range(6):
        session.write(HostWrite(WriteKind.DATA, i * 4096, 4096, os.urandom(4096)))
    session.flush()
    session.close()
    array.journal_groups.confirm(group.id, 4)
    array.close()
    array = Array(Pool(tmp_path / "pool", serial=1))
    journal = array.journal_groups.journals[group.id]
    assert [r.seq for r in journal.read(1, 1 << 20)] == [5, 6]
    session = array.sessions.open("p")  # still a member after the restart
    session.write(HostWrite(WriteKind.DATA, 0, 1, b"x"))
    assert journal.read(7, 100)[0].seq == 7
    session.close()
    array.close()
