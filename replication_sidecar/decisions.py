"""What PromoteVolume, DemoteVolume and ResyncVolume do, decided from plain views.

Pure: from this array's view of the journal group, the other array's view
(None when it does not answer) and `force`, one `Decision`; the servicer then
does it under the group's lock. Every case is tested (tests/sidecar/
test_decisions.py), as the pair-state table is.

The promises these rules keep:
- FAILED_PRECONDITION from PromoteVolume means only "the main site does not
  answer": the manager retries with force at once, so any other refusal is
  UNAVAILABLE (the manager backs off and asks again).
- A promotion without force loses nothing: it waits until the main site is
  demoted (fenced), every pair is PAIR and the backup applied every record
  the main site has; a forced one fences the main site if it answers (the
  array does), so there are never two primaries.
- A demoted main side is promoted again only while the other site has not
  taken over and is known not to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ccopy_api import array_pb2 as pb

MAIN, BACKUP = "main", "backup"
SUSPENDED = {pb.PSUS, pb.PSUE, pb.PFUS}


class Act(Enum):
    NOTHING = "nothing"  # already so: success
    TAKEOVER = "takeover"  # the backup's S-VOLs become primaries (Takeover, force)
    FENCE = "fence"  # demote the main side
    UNFENCE = "unfence"  # promote a demoted main side again
    FAILBACK = "failback"  # ask the site that took over to fail back to this one
    RESYNC = "resync"  # copy the differences of a split or suspended group
    WAIT = "wait"  # not now: UNAVAILABLE, the manager asks again
    REFUSE = "refuse"  # FAILED_PRECONDITION: the main site does not answer (Promote only)


@dataclass(frozen=True)
class Decision:
    act: Act
    why: str = ""
    ready: bool = False  # ResyncVolume's answer


def taken_over(view: pb.JournalGroup | None) -> bool:
    """Every pair of the group is SSWS in this view: that side took over."""
    return view is not None and bool(view.pairs) and all(p.state == pb.SSWS for p in view.pairs)


def all_paired(view: pb.JournalGroup) -> bool:
    return bool(view.pairs) and all(p.state == pb.PAIR for p in view.pairs)


def promote(local: pb.JournalGroup, peer: pb.JournalGroup | None, force: bool) -> Decision:
    name = local.name
    if local.role == MAIN:
        if not local.fenced:
            return Decision(Act.NOTHING)
        if local.split and not force:
            return Decision(Act.WAIT, f"journal group {name} is demoted and split: the other site is taking over or "
                            "took over (fail back instead); if none is, resync it first")  # fmt: skip
        if peer is None:
            if force:
                return Decision(Act.UNFENCE)
            return Decision(Act.WAIT, f"journal group {name}: the other site does not answer and may have taken over")
        if any(p.state == pb.SSWS for p in peer.pairs):
            return Decision(Act.WAIT, f"journal group {name}: the other site took over and is primary; fail back first")
        return Decision(Act.UNFENCE)
    if taken_over(local):
        return Decision(Act.NOTHING)
    if force:
        return Decision(Act.TAKEOVER)
    if peer is None:
        return Decision(Act.REFUSE, f"journal group {name}: the main site does not answer; promoting gives up the "
                        "writes it did not send (force to take over)")  # fmt: skip
    if not peer.fenced:
        return Decision(Act.WAIT, f"journal group {name} is still primary at the main site: demote it first")
    if not (all_paired(local) and all_paired(peer)):
        states = sorted({pb.PairState.Name(p.state) for p in [*local.pairs, *peer.pairs]})
        return Decision(Act.WAIT, f"journal group {name} is {'/'.join(states)}, not PAIR: the backup does not hold "
                        "everything; resync (or let the copy finish) first")  # fmt: skip
    if local.applied_seq < peer.main_seq:  # the main site is fenced: main_seq no longer moves
        return Decision(Act.WAIT, f"journal group {name}: draining, {peer.main_seq - local.applied_seq} record(s) "
                        f"to apply (applied {local.applied_seq} of {peer.main_seq})")  # fmt: skip
    return Decision(Act.TAKEOVER)


def demote(local: pb.JournalGroup) -> Decision:
    if local.role == MAIN:
        return Decision(Act.NOTHING) if local.fenced else Decision(Act.FENCE)
    if any(p.state == pb.SSWS for p in local.pairs):
        return Decision(Act.WAIT, f"journal group {local.name} was taken over here: the other site must be demoted "
                        "and fail back first")  # fmt: skip
    return Decision(Act.NOTHING)


def resync(local: pb.JournalGroup, peer: pb.JournalGroup | None) -> Decision:
    states = {p.state for p in local.pairs}
    if local.role == MAIN and local.fenced:
        if taken_over(peer):
            return Decision(Act.FAILBACK)
        if peer is not None and states & SUSPENDED and not any(p.state == pb.SSWS for p in peer.pairs):
            return Decision(Act.RESYNC)  # demoted while split or suspended: catch the backup up first
        return Decision(Act.NOTHING)  # waiting for the other site to take over
    if local.role == MAIN and states & SUSPENDED:
        return Decision(Act.RESYNC)
    return Decision(Act.NOTHING, ready=all_paired(local) and not local.fenced)
