"""The journal store: one sequence, durable appends, reads, trims, recovery."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from backend import journal as journal_module
from backend.journal import Journal
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
    assert journal.pending() == (0, 0)
    assert len(list((tmp_path / "j").glob("*.seg"))) == 1  # the active segment stays for the next appends
    journal.append(RecordKind.WRITE, 7, 0, 3, b"new")
    assert journal.read(1, 100)[0].seq == 12  # the sequence never restarts
    journal.close()


def test_an_append_wakes_the_long_poll_waiting_for_it(tmp_path: Path):
    """Appends wake the backup's long poll only when one waits (the host's write skips the
    call otherwise): a poll parked before the append must still hear of it."""
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    heard: list[bool] = []
    poll = threading.Thread(target=lambda: heard.append(journal.wait_for(1, timeout=60)))
    poll.start()
    while journal._pollers == 0:  # parked: the record below does not exist yet for it
        assert poll.is_alive()
        time.sleep(0.001)
    journal.append(RecordKind.WRITE, 7, 0, 3, b"new")
    poll.join(timeout=30)
    assert heard == [True]  # woken by the append, not by its 60 s timeout
    assert journal._pollers == 0
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
    assert reopened.append(RecordKind.WRITE, 7, 0, 2, b"ok") == 6
    reopened.close()


def test_recovery_respects_what_was_confirmed(tmp_path: Path):
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    fill(journal, 8)
    journal.close()
    reopened = Journal(tmp_path / "j", capacity=1 << 30, confirmed_seq=5)
    assert [r.seq for r in reopened.read(1, 1 << 20)] == [6, 7, 8]
    reopened.close()


def test_a_break_in_the_chain_ends_the_journal_and_later_segments_are_dropped(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 4096)
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    fill(journal, 12)
    journal.close()
    segments = sorted((tmp_path / "j").glob("*.seg"), key=lambda p: int(p.stem, 16))
    assert len(segments) > 2
    second = int(segments[1].stem, 16)
    with open(segments[1], "r+b") as f:  # its second record never reached the disk whole
        f.seek(1100)
        f.write(b"\xff\xff")
    reopened = Journal(tmp_path / "j", capacity=1 << 30)
    kept = [r.seq for r in reopened.read(1, 1 << 20)]
    assert kept == list(range(1, second + 1))  # the chain up to the damaged record, nothing after it
    assert sorted(int(p.stem, 16) for p in (tmp_path / "j").glob("*.seg")) == [1, second]
    assert reopened.append(RecordKind.WRITE, 7, 0, 2, b"ok") == second + 1
    reopened.sync()
    reopened.close()
    again = Journal(tmp_path / "j", capacity=1 << 30)  # the cut is stable, the new record follows the chain
    assert [r.seq for r in again.read(1, 1 << 20)] == [*range(1, second + 1), second + 1]
    again.close()


def test_preallocated_zeros_end_a_segment_and_the_chain_goes_on_in_the_next(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 8192)
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    fill(journal, 30, size=3000)  # two records per segment, the rest of each is zeros
    journal.sync()
    journal.close()
    segments = list((tmp_path / "j").glob("*.seg"))
    assert len(segments) == 15 and all(p.stat().st_size == 8192 for p in segments)
    reopened = Journal(tmp_path / "j", capacity=1 << 30)
    assert [r.seq for r in reopened.read(1, 1 << 30)] == list(range(1, 31))
    reopened.close()


def test_sync_makes_every_segment_written_since_the_last_sync_durable(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 4096)
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    synced: list[int] = []
    monkeypatch.setattr(journal_module.os, "fdatasync", synced.append)
    fill(journal, 10)  # rolls over several times without waiting for the disk
    assert synced == []
    journal.sync()
    assert len(synced) == len(journal.segments) >= 3
    journal.sync()
    assert len(synced) == len(journal.segments)  # nothing new to sync
    monkeypatch.undo()
    journal.close()


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


def test_a_small_journal_whose_records_are_confirmed_never_fills(tmp_path: Path):
    journal = Journal(tmp_path / "j", capacity=1 << 20)
    for _ in range(200):  # 200 x 40 KiB = 8x the capacity, each confirmed by the backup
        seq = journal.append(RecordKind.WRITE, 7, 0, 40 << 10, os.urandom(40 << 10))
        assert seq is not None
        journal.trim_through(seq)
    assert not journal.overflowed and journal.usage_bytes() <= 1 << 20
    journal.close()


def test_trimmed_segments_are_reused_and_their_old_records_never_come_back(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 4096)
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    fill(journal, 30)  # 10 segments of 3 records
    journal.trim_through(27)
    assert len(list((tmp_path / "j").glob("*.spare"))) == journal_module.SPARE_SEGMENTS
    fill(journal, 4)  # 31..33 and 34 go to the two spares; after 34 its file still holds records 5 and 6
    assert list((tmp_path / "j").glob("*.spare")) == []  # reused, not preallocated anew
    journal.sync()
    journal.close()
    reopened = Journal(tmp_path / "j", capacity=1 << 30, confirmed_seq=27)
    assert [r.seq for r in reopened.read(1, 1 << 20)] == list(range(28, 35))
    assert reopened.next_seq == 35
    reopened.close()


def test_a_reused_file_still_under_its_old_name_is_not_part_of_the_chain(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 4096)
    journal = Journal(tmp_path / "j", capacity=1 << 30)
    fill(journal, 9)  # segments 1, 4, 7
    journal.sync()
    journal.close()
    folder = tmp_path / "j"
    # Power loss after segment 1 was trimmed and reused for records 10.. but before
    # either rename reached the disk: its old name holds newer records.
    reused = Journal(tmp_path / "elsewhere", capacity=1 << 30)
    for _ in range(9):
        reused.append(RecordKind.WRITE, 7, 0, 1000, b"n" * 1000)
    reused.close()
    newest = max((tmp_path / "elsewhere").glob("*.seg"), key=lambda p: int(p.stem, 16))  # starts at record 7
    (folder / "0000000000000001.seg").write_bytes(newest.read_bytes())
    reopened = Journal(folder, capacity=1 << 30, confirmed_seq=3)
    assert [r.seq for r in reopened.read(1, 1 << 20)] == list(range(4, 10))  # 4..9 survive, nothing of "1"
    assert reopened.next_seq == 10
    reopened.close()


def test_inflow_control_holds_a_write_until_the_backup_makes_room(tmp_path: Path):
    import threading

    journal = Journal(tmp_path / "j", capacity=1 << 20)
    journal.inflow_control, journal.overflow_watch = True, 30.0
    first = journal.append(RecordKind.WRITE, 7, 0, 900 << 10, os.urandom(900 << 10))
    done: list[int | None] = []
    big = os.urandom(200 << 10)  # does not fit next to the first
    writer = threading.Thread(target=lambda: done.append(journal.append(RecordKind.WRITE, 7, 0, len(big), big)))
    writer.start()
    writer.join(0.3)
    assert writer.is_alive() and not done  # held: the journal is full
    journal.trim_through(first)  # the backup confirmed: room again
    writer.join(10)
    assert done == [first + 1] and not journal.overflowed
    journal.close()


def test_inflow_control_gives_up_after_the_watch_time_and_the_journal_overflows(tmp_path: Path):
    journal = Journal(tmp_path / "j", capacity=1 << 20)
    journal.inflow_control, journal.overflow_watch = True, 0.2
    full: list[int] = []
    journal.on_full = full.append
    first = journal.append(RecordKind.WRITE, 7, 0, 900 << 10, os.urandom(900 << 10))
    assert journal.append(RecordKind.WRITE, 7, 0, 200 << 10, os.urandom(200 << 10)) is None
    assert journal.overflowed and full == [first]
    journal.close()


def test_a_pull_reads_outside_the_lock_and_no_segment_closes_under_it(tmp_path: Path, monkeypatch):
    """A pull's pread does not hold the journal's lock (host writes append meanwhile), and a
    trim that retires the segment being read waits for the read to end."""
    import threading

    from backend.journal_record import decode_all

    journal = Journal(tmp_path / "j", capacity=1 << 20)  # 128 KiB segments
    fill(journal, 300)  # several segments
    first_segment_fd = journal.segments[0].fd
    reading, release = threading.Event(), threading.Event()
    real_pread = os.pread

    def slow_pread(fd: int, size: int, offset: int) -> bytes:
        data = real_pread(fd, size, offset)
        if fd == first_segment_fd and not reading.is_set():
            reading.set()
            assert release.wait(30)
        return data

    monkeypatch.setattr(os, "pread", slow_pread)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(journal.read_raw(1, 1 << 30)))
    reader.start()
    assert reading.wait(30)
    journal.append(RecordKind.WRITE, 7, 0, 3, b"new")  # not held up by the read
    trimmer = threading.Thread(target=journal.trim_through, args=(300,))
    trimmer.start()
    trimmer.join(0.5)  # a trim that did not wait would be done by now (a slow machine only hides it)
    assert trimmer.is_alive(), "the segment being read was retired under the read"
    release.set()
    reader.join(30)
    trimmer.join(30)
    assert not trimmer.is_alive()
    assert [r.seq for r in decode_all(got[0])] == list(range(1, 301))
    assert journal.read(301, 100)[0].data == b"new"
    journal.close()
