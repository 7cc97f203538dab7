"""The backup's own view of its lag (backend/replication/lag.py) against the truth, on a real journal.

The main array's journal answers a pull made at applied sequence A0; the backup then
applies on to A1 and the main array is lost. What the backup reports from that answer
must be the truth as of the contact: the records and journal bytes acknowledged at the
main site and not applied, never fewer, and a span of time no shorter than theirs.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from backend.journal import Journal
from backend.journal_record import HEADER_BYTES, RecordKind
from backend.replication.lag import Applied, BackupLag, Heard, backup_lag, heard_from


@st.composite
def histories(draw):
    sizes = draw(st.lists(st.integers(0, 3000), min_size=0, max_size=40))
    n = len(sizes)
    a0 = draw(st.integers(0, n))  # applied when the pull left
    a1 = draw(st.integers(a0, n))  # applied when the main array was lost
    return sizes, a0, a1


def replay(folder: Path, sizes: list[int], a0: int) -> tuple[Journal, list[int], list[int]]:
    """A journal holding `sizes` as writes, the backup's confirmations through a0 trimmed;
    the records' journal sizes and main-site times."""
    journal = Journal(folder, capacity=1 << 30)
    for index, size in enumerate(sizes):
        journal.append(RecordKind.WRITE if size else RecordKind.TRIM, 1, index * 4096, size or 4096, b"x" * size)
    journal.trim_through(a0)
    stamps = [0] * (len(sizes) + 1)  # seq -> timestamp; read the untrimmed ones back
    for record in journal.read(a0 + 1, 1 << 30) if a0 < len(sizes) else []:
        stamps[record.seq] = record.timestamp_ns
    return journal, [HEADER_BYTES + s for s in sizes], stamps


@given(histories())
def test_the_backup_reports_exactly_what_was_missing_as_of_last_contact(tmp_path_factory, history):
    sizes, a0, a1 = history
    journal, journal_sizes, stamps = replay(tmp_path_factory.mktemp("j"), sizes, a0)
    answer = journal.unapplied(a0)
    journal.close()
    cumulative = [0]
    for size in journal_sizes:
        cumulative.append(cumulative[-1] + size)
    at_pull = Applied(a0, cumulative[a0], stamps[a0] if a0 > 0 else 0)
    heard = Heard.from_json(heard_from(answer, at_pull).to_json())  # kept durably as JSON
    now = Applied(a1, cumulative[a1], stamps[a1] if a1 > a0 else at_pull.write_ns)
    lag = backup_lag(heard, now)

    n = len(sizes)
    assert (lag.records, lag.bytes) == (n - a1, cumulative[n] - cumulative[a1])
    assert lag.contact_ns == answer.as_of_ns and lag.recovery_point_ns == now.write_ns
    if n > a1:
        true_span = (stamps[n] - stamps[a1 + 1]) / 1e9
        assert lag.seconds >= true_span
        assert lag.newest_write_ns == stamps[n]
    else:
        assert lag.seconds == 0 and lag.age(answer.as_of_ns + 10**9) == 0


def test_the_answer_counts_records_the_pull_did_not_carry(tmp_path):
    """The trial's case: records acknowledged at the main site after the batch in flight
    are counted by the answer even though no record travelled with it."""
    journal, _, _ = replay(tmp_path / "j", [100] * 8, a0=1)
    answer = journal.unapplied(1)
    journal.close()
    lag = backup_lag(heard_from(answer, Applied(1, 0, 0)), Applied(1, 0, 0))
    assert (lag.records, lag.bytes) == (7, 7 * (HEADER_BYTES + 100))


def test_never_heard_reports_nothing_known_rather_than_zero_loss():
    lag = backup_lag(None, Applied(5, 500, 42))
    assert lag == BackupLag(recovery_point_ns=42) and lag.contact_ns == 0

