"""Every pair state against every operation: allowed (to which state) or refused (with a reason)."""

from __future__ import annotations

import pytest

from backend.errors import FailedPrecondition
from backend.model import PairState
from backend.replication.pair_states import PairOp, UnsafeTransition, next_state

OPS = [
    PairOp.CREATE, PairOp.COPY_DONE, PairOp.SPLIT, PairOp.SUSPEND_ERROR, PairOp.JOURNAL_FULL,
    PairOp.RESYNC, PairOp.TAKEOVER, PairOp.FAILBACK, PairOp.DEMOTE, PairOp.RESYNC_TARGET, PairOp.DELETE,
]  # fmt: skip
# One row per state, one column per operation above; "-" is a refusal.
TABLE = """
SMPL  COPY  -     -     -     -     -     -     -     -     -     SMPL
COPY  COPY  PAIR  -     PSUE  PFUS  COPY  -     -     COPY  COPY  SMPL
PAIR  PAIR  PAIR  PSUS  PSUE  PFUS  PAIR  -     -     COPY  COPY  SMPL
PSUS  -     -     PSUS  PSUS  PSUS  COPY  SSWS  -     COPY  COPY  SMPL
PSUE  -     -     PSUE  PSUE  PSUE  COPY  SSWS  -     COPY  COPY  SMPL
PFUS  -     -     PFUS  PFUS  PFUS  COPY  SSWS  -     COPY  COPY  SMPL
SSWS  -     -     -     -     -     -     SSWS  COPY  -     -     SMPL
"""
CASES = [
    (PairState(row.split()[0]), op, cell)
    for row in TABLE.strip().splitlines()
    for op, cell in zip(OPS, row.split()[1:], strict=True)
]


def test_the_table_covers_every_state_and_operation():
    assert {(s, o) for s, o, _ in CASES} == {(s, o) for s in PairState for o in PairOp}


@pytest.mark.parametrize(("state", "op", "expected"), CASES, ids=[f"{s.value}-{o.value}" for s, o, _ in CASES])
def test_transition(state: PairState, op: PairOp, expected: str):
    if expected == "-":
        with pytest.raises(UnsafeTransition) as refused:
            next_state(state, op)
        assert state.value in str(refused.value) and op.value in str(refused.value)
        assert isinstance(refused.value, FailedPrecondition)  # FAILED_PRECONDITION over gRPC
    else:
        assert next_state(state, op) is PairState(expected)


def test_takeover_while_pair_needs_force():
    with pytest.raises(UnsafeTransition, match="force"):
        next_state(PairState.PAIR, PairOp.TAKEOVER)
    assert next_state(PairState.PAIR, PairOp.TAKEOVER, force=True) is PairState.SSWS


def test_force_does_not_make_an_unfinished_copy_take_over():
    with pytest.raises(UnsafeTransition, match="not consistent"):
        next_state(PairState.COPY, PairOp.TAKEOVER, force=True)


def test_repeating_an_operation_changes_nothing():
    for state, op in (
        (PairState.PSUS, PairOp.SPLIT),
        (PairState.PAIR, PairOp.RESYNC),
        (PairState.SSWS, PairOp.TAKEOVER),
    ):
        assert next_state(state, op) is state
