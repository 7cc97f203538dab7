"""The journal store: one sequence, durable appends, reads, trims, recovery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend import journal as journal_module
from backend.journal import Journal, JournalDamaged
from backend.journal_record import RecordKind


def fill(journal: Journal, count: int, size: int = 1000) -> None:
    for i in range(count):
        journal.append(RecordKind.WRITE, 7, i * size, size, bytes([i % 256]) * size)


def test_sequence_read_and_trim(tmp_path: Path):
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    fill(journal, 10)
    journal.append(RecordKind.TRIM, 8, 0, 4096)
    assert [r.seq for r in journal.read(1, 1 << 20)] == list(range(1, 12))
    assert [r.seq for r in journal.read(5, 2500)] == [5, 6]  # about max_bytes
    assert journal.read(11, 10)[0].kind is RecordKind.TRIM  # always at least one
    assert journal.pending()[0] == 11
    journal.trim_through(6)
    assert next(r.seq for r in journal.read(1, 1 << 20)) == 7
    journal.trim_through(11)
    assert journal.pending() == (0, 0) and journal.usage_bytes() == 0
    assert list((tmp_path / "j").glob("*.seg")) == []  # space given back
    journal.append(RecordKind.WRITE, 7, 0, 3, b"new")
    assert journal.read(1, 100)[0].seq == 12  # the sequence never restarts
    journal.close()


def test_recovery_keeps_synced_records_and_cuts_a_torn_tail(tmp_path: Path):
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    fill(journal, 5)
    journal.sync()
    journal.close()
    segment = next((tmp_path / "j").glob("*.seg"))
    with open(segment, "ab") as f:
        f.write(b"CCJ1\x01\x00\x00\x00" + b"\x00" * 10)  # a record torn by a crash
    reopened = Journal(tmp_path / "j", capacity=1 << 30)
    assert [r.seq for r in reopened.read(1, 1 << 20)] == [1, 2, 3, 4, 5]
    assert reopened.next_seq == 6
    assert reopened.append(RecordKind.WRITE, 7, 0, 2, b"ok").seq == 6
    reopened.close()


def test_recovery_respects_what_was_confirmed(tmp_path: Path):
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    fill(journal, 8)
    journal.close()
    reopened = Journal(tmp_path / "j", capacity=1 << 30, confirmed_seq=5)
    assert [r.seq for r in reopened.read(1, 1 << 20)] == [6, 7, 8]
    reopened.close()


def test_damage_in_an_older_segment_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 4096)
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    fill(journal, 12)
    journal.close()
    segments = sorted((tmp_path / "j").glob("*.seg"))
    assert len(segments) > 2
    with open(segments[0], "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff")
    with pytest.raises(JournalDamaged):
        Journal(tmp_path / "j", capacity=1 << 30)


def test_segments_roll_and_trim_whole(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 4096)
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    fill(journal, 20)
    count = len(list((tmp_path / "j").glob("*.seg")))
    assert count >= 5
    journal.trim_through(10)
    assert len(list((tmp_path / "j").glob("*.seg"))) < count
    assert [r.seq for r in journal.read(11, 1 << 20)] == list(range(11, 21))
    journal.close()
    reopened = Journal(tmp_path / "j", capacity=1 << 30, confirmed_seq=10)
    assert reopened.next_seq == 21
    reopened.close()


def test_a_full_journal_overflows_instead_of_failing(tmp_path: Path):
    journal = Journal(tmp_path / "j", capacity=5000)
    fill(journal, 3)
    assert journal.append(RecordKind.WRITE, 7, 0, 4000, os.urandom(4000)) is None
    assert journal.overflowed
    journal.close()
