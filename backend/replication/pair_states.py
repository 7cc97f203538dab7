"""Pair states and the operations that move them, as one table.

The states are Hitachi's: SMPL (not paired), COPY (initial copy or resync
running), PAIR (the backup follows the journal), PSUS (split by the user),
PSUE (suspended by an error, e.g. the link down past a timeout), PFUS
(suspended because the journal filled up), SSWS (the backup took over: the
S-VOL is a writable primary).

Every operation is idempotent where repeating it is harmless (splitting a
split pair, resyncing a pair that is PAIR), and every unsafe request is
refused with the reason, before anything changes. Whether the link is up is
the caller's business (resync needs it; takeover with force does not).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from backend.errors import FailedPrecondition
from backend.model import PairState


class PairOp(StrEnum):
    CREATE = "create"
    COPY_DONE = "copy-done"
    SPLIT = "split"
    SUSPEND_ERROR = "suspend-error"
    JOURNAL_FULL = "journal-full"
    RESYNC = "resync"
    RESYNC_TARGET = "resync-target"  # in a resync, at the backup: its S-VOLs take the differences
    TAKEOVER = "takeover"
    FAILBACK = "failback"
    DEMOTE = "demote"  # in a failback, at the old main array: its pairs become the copying side
    DELETE = "delete"


class UnsafeTransition(FailedPrecondition):
    """The operation is not allowed in the pair's state; nothing changed."""


S = PairState
SUSPENDED = (S.PSUS, S.PSUE, S.PFUS)

# (state, operation) -> next state; anything else is refused, with the reason below.
_ALLOWED: dict[tuple[PairState, PairOp], PairState] = {
    (S.SMPL, PairOp.CREATE): S.COPY,
    (S.COPY, PairOp.CREATE): S.COPY,
    (S.PAIR, PairOp.CREATE): S.PAIR,
    (S.COPY, PairOp.COPY_DONE): S.PAIR,
    (S.PAIR, PairOp.COPY_DONE): S.PAIR,
    (S.PAIR, PairOp.SPLIT): S.PSUS,
    (S.COPY, PairOp.SUSPEND_ERROR): S.PSUE,
    (S.PAIR, PairOp.SUSPEND_ERROR): S.PSUE,
    (S.COPY, PairOp.JOURNAL_FULL): S.PFUS,
    (S.PAIR, PairOp.JOURNAL_FULL): S.PFUS,
    (S.PAIR, PairOp.RESYNC): S.PAIR,
    (S.COPY, PairOp.RESYNC): S.COPY,
    (S.SSWS, PairOp.TAKEOVER): S.SSWS,
    (S.SSWS, PairOp.FAILBACK): S.COPY,
    **{(state, PairOp.DEMOTE): S.COPY for state in (S.COPY, S.PAIR, *SUSPENDED)},
    # The backup may not have seen the main side's split yet: PAIR and COPY are allowed here, and
    # the backup answers Busy until it applied through the split (pair_ops.prepare_resync).
    **{(state, PairOp.RESYNC_TARGET): S.COPY for state in (S.COPY, S.PAIR, *SUSPENDED)},
    **{(state, PairOp.SPLIT): state for state in SUSPENDED},  # already suspended: stays as it is
    **{(state, PairOp.SUSPEND_ERROR): state for state in SUSPENDED},
    **{(state, PairOp.JOURNAL_FULL): state for state in SUSPENDED},
    **{(state, PairOp.RESYNC): S.COPY for state in SUSPENDED},
    **{(state, PairOp.TAKEOVER): S.SSWS for state in SUSPENDED},
    **{(state, PairOp.DELETE): S.SMPL for state in PairState if state is not S.SMPL},
    (S.SMPL, PairOp.DELETE): S.SMPL,
}

_REFUSALS: dict[tuple[PairState, PairOp], str] = {
    (S.COPY, PairOp.SPLIT): "the initial copy has not finished: the S-VOL is not consistent yet",
    (S.COPY, PairOp.TAKEOVER): "the S-VOL holds an unfinished copy: it is not consistent and cannot take over",
    (S.PAIR, PairOp.TAKEOVER): "the pair is PAIR: take over with force, or split first",
    (S.SSWS, PairOp.RESYNC): "the S-VOL took over: resync in the reverse direction with failback",
    (S.SSWS, PairOp.RESYNC_TARGET): "the S-VOL took over: resync in the reverse direction with failback",
    (S.SSWS, PairOp.SPLIT): "the S-VOL took over: it is not replicating",
    (S.SSWS, PairOp.SUSPEND_ERROR): "the S-VOL took over: it is not replicating",
    (S.SSWS, PairOp.JOURNAL_FULL): "the S-VOL took over: it is not replicating",
    (S.SSWS, PairOp.CREATE): "the S-VOL took over: fail back or delete the pair first",
    (S.SSWS, PairOp.COPY_DONE): "the S-VOL took over: it is not copying",
    (S.SSWS, PairOp.DEMOTE): "the S-VOL took over here: this array fails back, the other one is demoted",
}
_REFUSED_IN_ANY_OTHER_STATE = {
    PairOp.FAILBACK: "only a pair whose S-VOL took over (SSWS) fails back",
    PairOp.COPY_DONE: "no copy is running",
    PairOp.CREATE: "the pair exists and is suspended: resync it",
}


def next_state(state: PairState, op: PairOp, force: bool = False) -> PairState:
    """The state `op` leads to from `state`; raises UnsafeTransition with the reason when refused.

    `force` only matters for TAKEOVER from PAIR: the main array does not
    answer, so the backup takes over at the last sequence it applied.
    """
    if state is S.PAIR and op is PairOp.TAKEOVER and force:
        return S.SSWS
    allowed = _ALLOWED.get((state, op))
    if allowed is not None:
        return allowed
    if state is S.SMPL:
        reason = "the volume is not paired"
    else:
        reason = _REFUSALS.get((state, op)) or _REFUSED_IN_ANY_OTHER_STATE[op]
    raise UnsafeTransition(f"{op.value} refused in {state.value}: {reason}")


@dataclass(frozen=True)
class WriteRoute:
    """Where the host writes of one LDEV go, besides its data."""

    journal: bool  # into its journal group's sequence (the backup applies them in order)
    track: bool  # into its differential bitmap (a resync or failback copies those regions)


# (side of the pair, state) -> route. Whatever is not copying tracks: every write a
# suspended P-VOL or a taken-over (or writable split) S-VOL takes is marked, durably,
# from the instant of the suspension, so no resync can miss it. An S-VOL that copies
# is written only by its apply loop, whose writes the journal already orders.
_ROUTES: dict[tuple[str, PairState], WriteRoute] = {
    **{(side, S.SMPL): WriteRoute(journal=False, track=False) for side in ("main", "backup")},
    ("main", S.COPY): WriteRoute(journal=True, track=False),
    ("main", S.PAIR): WriteRoute(journal=True, track=False),
    ("backup", S.COPY): WriteRoute(journal=False, track=False),
    ("backup", S.PAIR): WriteRoute(journal=False, track=False),
    **{(side, state): WriteRoute(journal=False, track=True) for side in ("main", "backup") for state in SUSPENDED},
    **{(side, S.SSWS): WriteRoute(journal=False, track=True) for side in ("main", "backup")},
}
# A journal member with no pair (a journal group used on its own) journals all its writes.
UNPAIRED_MEMBER = WriteRoute(journal=True, track=False)


def write_route(side: str, state: PairState) -> WriteRoute:
    """Where the writes of an LDEV on `side` ("main": P-VOL, "backup": S-VOL) of a pair in `state` go."""
    return _ROUTES[(side, state)]
