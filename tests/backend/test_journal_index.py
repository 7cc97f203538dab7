"""The native index of unconfirmed journal records (backend/native/journal_index.c), driven
through the binding against a list that does the same in Python: filing, trimming, the
account after a sequence and the runs a pull reads must agree for any history."""

from __future__ import annotations

import subprocess
import sys

import pytest
from backend._nbdcore import JournalCore
from hypothesis import given, settings
from hypothesis import strategies as st

HEADER = 44


def model_runs(entries: list[tuple], from_seq: int, until: int, max_bytes: int) -> list[tuple[int, int, int]]:
    runs: list[tuple[int, int, int]] = []
    total = 0
    for seq, segment, offset, size, _ in entries:
        if seq < from_seq:
            continue
        if seq >= until or (total and total + size > max_bytes):
            break
        if runs and runs[-1][0] == segment and runs[-1][1] + runs[-1][2] == offset:
            runs[-1] = (segment, runs[-1][1], runs[-1][2] + size)
        else:
            runs.append((segment, offset, size))
        total += size
    return runs


def model_after(entries: list[tuple], seq: int) -> tuple[int, int, int]:
    later = [e for e in entries if e[0] > seq]
    return len(later), sum(e[3] for e in later), later[0][4] if later else 0


# A history: records of random sizes, a new segment now and then, trims now and then.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("file"), st.integers(HEADER, HEADER + 1 << 16), st.booleans()),
        st.tuples(st.just("trim"), st.integers(0, 40), st.just(False)),
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(steps, st.integers(1, 1 << 18), st.integers(0, 10))
def test_the_index_agrees_with_a_list_over_any_history(history, max_bytes, probe):
    core = JournalCore(1 << 40)
    entries: list[tuple] = []
    seq, segment, offset = 1, 1, 0
    for action, value, new_segment in history:
        if action == "file":
            if new_segment:
                segment, offset = seq, 0
            core.file(seq, segment, offset, value, 1000 + seq)
            entries.append((seq, segment, offset, value, 1000 + seq))
            seq, offset = seq + 1, offset + value
        else:
            through = (entries[0][0] + value - 1) if entries else 0
            dropped = [e for e in entries if e[0] <= through]
            assert core.trim(through) == (dropped[-1][4] if dropped else None)
            entries = [e for e in entries if e[0] > through]
        assert core.pending == len(entries)
    assert core.entries() == entries
    core.next_seq = seq  # as recovery sets it after filing: every record filed may be shipped
    first = entries[0][0] if entries else 1
    for from_seq in (1, first, first + probe):
        assert core.runs(from_seq, max_bytes) == model_runs(entries, from_seq, seq, max_bytes)
        assert core.after(from_seq - 1) == model_after(entries, from_seq - 1)


def test_a_record_out_of_sequence_is_refused_and_changes_nothing():
    core = JournalCore(1 << 30)
    core.file(5, 5, 0, 100, 1)
    with pytest.raises(ValueError, match="does not follow"):
        core.file(7, 5, 100, 100, 2)
    assert core.entries() == [(5, 5, 0, 100, 1)]


def test_a_held_journal_hands_out_no_record_past_the_hold():
    """A verify's cut: runs stop at held_after even though later records are filed."""
    core = JournalCore(1 << 30)
    for seq in range(1, 6):
        core.file(seq, 1, (seq - 1) * 100, 100, seq)
    core.next_seq = 6
    core.held_after = 3
    assert core.runs(1, 1 << 20) == [(1, 0, 300)]
    assert core.runs(4, 1 << 20) == []
    core.held_after = None
    assert core.runs(4, 1 << 20) == [(1, 300, 200)]


# Run in a child process: a deadlock holds the GIL for good, so no thread of the test could notice.
LOCK_RACE = """
import sys, threading, time
from backend._nbdcore import JournalCore
core = JournalCore(1 << 30)
ask = {
    "pending": lambda: core.pending,
    "after": lambda: core.after(0),
    "runs": lambda: core.runs(1, 1 << 20),
    "entries": lambda: core.entries(),
    "trim": lambda: core.trim(0),
    "set_active": lambda: core.set_active(-1, 0, 0),
}[sys.argv[1]]
holding = threading.Event()

def hold_and_compute():
    with core:
        holding.set()
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # Python work: it needs the GIL back, again and again
            sum(range(1000))

holder = threading.Thread(target=hold_and_compute)
holder.start()
holding.wait()
for _ in range(50):
    ask()
holder.join()
print("done")
"""


@pytest.mark.parametrize("ask", ["pending", "after", "runs", "entries", "trim", "set_active"])
def test_asking_the_index_while_a_python_thread_holds_the_lock_waits_without_the_interpreter(ask):
    """A thread holding the journal's lock may need the interpreter to finish (trimming closes
    segments in Python): a call that waits for the lock while keeping the GIL deadlocks both
    (seen: GetJournalGroup's pending() against a pull retiring a segment)."""
    try:
        run = subprocess.run([sys.executable, "-c", LOCK_RACE, ask], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{ask}: deadlock, the lock's holder and the asker wait on each other")
    assert run.returncode == 0 and run.stdout.strip() == "done", run.stderr
