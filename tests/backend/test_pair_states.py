"""Every pair state against every operation: allowed (to which state) or refused (with a reason)."""

from __future__ import annotations

import pytest

from backend.errors import FailedPrecondition
from backend.model import PairState
from backend.replication.pair_states import PairOp, UnsafeTransition, WriteRoute, next_state, write_route

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


# Where each side's writes go in each state: J journal, T differential bitmap, - neither.
ROUTES = """
       SMPL COPY PAIR PSUS PSUE PFUS SSWS
main   -    J    J    T    T    T    T
backup -    -    -    T    T    T    T
"""


def _routes() -> list[tuple[str, PairState, WriteRoute]]:
    header, *rows = ROUTES.strip().splitlines()
    states = [PairState(name) for name in header.split()]
    cases = []
    for row in rows:
        side, *cells = row.split()
        for state, cell in zip(states, cells, strict=True):
            cases.append((side, state, WriteRoute(journal="J" in cell, track="T" in cell)))
    return cases


def test_the_routes_cover_every_side_and_state():
    assert {(side, state) for side, state, _ in _routes()} == {(s, t) for s in ("main", "backup") for t in PairState}


@pytest.mark.parametrize(("side", "state", "route"), _routes(), ids=[f"{s}-{t.value}" for s, t, _ in _routes()])
def test_write_route(side: str, state: PairState, route: WriteRoute):
    assert write_route(side, state) == route


def test_every_state_a_suspension_or_takeover_reaches_tracks_writes():
    """Whatever a pair can be suspended or taken over into, its writes are marked for the resync."""
    reached = {next_state(s, op, force=True) for s in (PairState.COPY, PairState.PAIR)
               for op in (PairOp.SPLIT, PairOp.SUSPEND_ERROR, PairOp.JOURNAL_FULL, PairOp.TAKEOVER)
               if (s, op) != (PairState.COPY, PairOp.SPLIT) and (s, op) != (PairState.COPY, PairOp.TAKEOVER)}
    assert reached == {PairState.PSUS, PairState.PSUE, PairState.PFUS, PairState.SSWS}
    assert all(write_route(side, state).track for side in ("main", "backup") for state in reached)
