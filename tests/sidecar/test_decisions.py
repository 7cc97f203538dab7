"""Every case of the Promote, Demote and Resync rules (replication_sidecar.decisions),
with the promises they keep: FAILED_PRECONDITION only when the main site does not answer,
nothing lost without force, never two primaries."""

import pytest

from ccopy_api import array_pb2 as pb
from replication_sidecar.decisions import Act, demote, promote, resync


def view(role: str, *states: int, **fields) -> pb.JournalGroup:
    return pb.JournalGroup(name="shop", role=role, pairs=[pb.Pair(state=s) for s in states], **fields)


MAIN_PAIR = view("main", pb.PAIR, pb.PAIR, main_seq=90)
MAIN_FENCED = view("main", pb.PAIR, pb.PAIR, main_seq=90, fenced=True)
MAIN_FENCED_SPLIT = view("main", pb.PSUS, pb.PSUS, main_seq=90, fenced=True, split=True)
MAIN_FENCED_PFUS = view("main", pb.PFUS, pb.PFUS, main_seq=90, fenced=True, split=True)
MAIN_FENCED_CONFIRMING = view("main", pb.PAIR, pb.PAIR, main_seq=90, fenced=True, pending_records=4)
BACKUP_PAIR = view("backup", pb.PAIR, pb.PAIR, applied_seq=90)
BACKUP_BEHIND = view("backup", pb.PAIR, pb.PAIR, applied_seq=86)
BACKUP_COPY = view("backup", pb.COPY, pb.PAIR, applied_seq=90)
BACKUP_PFUS = view("backup", pb.PFUS, pb.PFUS, applied_seq=80)
TAKEN_OVER = view("backup", pb.SSWS, pb.SSWS)
GONE = None


@pytest.mark.parametrize(
    ("local", "peer", "force", "act", "words"),
    [
        # the main side
        (MAIN_PAIR, BACKUP_PAIR, False, Act.NOTHING, ""),
        (MAIN_PAIR, GONE, False, Act.NOTHING, ""),
        (MAIN_FENCED, BACKUP_PAIR, False, Act.UNFENCE, ""),  # a relocation called off
        (MAIN_FENCED, TAKEN_OVER, False, Act.WAIT, "took over"),
        (MAIN_FENCED, TAKEN_OVER, True, Act.WAIT, "took over"),  # never two primaries, even forced
        (MAIN_FENCED, GONE, False, Act.WAIT, "may have taken over"),  # never FAILED_PRECONDITION here
        (MAIN_FENCED, GONE, True, Act.UNFENCE, ""),  # a person forced it
        (MAIN_FENCED_SPLIT, BACKUP_PAIR, False, Act.WAIT, "taking over"),  # a takeover split us: in progress
        # the backup side
        (TAKEN_OVER, GONE, False, Act.NOTHING, ""),
        (BACKUP_PAIR, GONE, False, Act.REFUSE, "does not answer"),  # the one FAILED_PRECONDITION
        (BACKUP_PAIR, GONE, True, Act.TAKEOVER, ""),
        (BACKUP_PAIR, MAIN_PAIR, False, Act.WAIT, "still primary"),
        (BACKUP_PAIR, MAIN_PAIR, True, Act.TAKEOVER, ""),  # forced: the array fences the main side
        (BACKUP_PAIR, MAIN_FENCED, False, Act.TAKEOVER, ""),  # planned: lossless
        (BACKUP_BEHIND, MAIN_FENCED, False, Act.WAIT, "draining, 4 record(s)"),
        (BACKUP_PAIR, MAIN_FENCED_CONFIRMING, False, Act.TAKEOVER, ""),  # applied all; confirming is bookkeeping
        (BACKUP_COPY, MAIN_FENCED, False, Act.WAIT, "COPY"),
        (BACKUP_PFUS, MAIN_FENCED_PFUS, False, Act.WAIT, "PFUS"),  # writes since the suspension: resync first
    ],
)
def test_promote(local, peer, force, act, words):
    decision = promote(local, peer, force)
    assert decision.act is act and words in decision.why


@pytest.mark.parametrize(
    ("local", "act"),
    [
        (MAIN_PAIR, Act.FENCE),
        (MAIN_FENCED, Act.NOTHING),
        (BACKUP_PAIR, Act.NOTHING),
        (TAKEN_OVER, Act.WAIT),
    ],
)
def test_demote(local, act):
    assert demote(local).act is act


@pytest.mark.parametrize(
    ("local", "peer", "act", "ready"),
    [
        (MAIN_PAIR, BACKUP_PAIR, Act.NOTHING, True),
        (view("main", pb.PSUE, pb.PSUE, split=True), BACKUP_PAIR, Act.RESYNC, False),
        (view("main", pb.COPY, pb.PAIR), BACKUP_PAIR, Act.NOTHING, False),
        (MAIN_FENCED, BACKUP_PAIR, Act.NOTHING, False),  # waiting for the other site to take over
        (MAIN_FENCED_SPLIT, TAKEN_OVER, Act.FAILBACK, False),  # it did: fail back to us
        (MAIN_FENCED_PFUS, BACKUP_PFUS, Act.RESYNC, False),  # demoted while suspended: catch up first
        (MAIN_FENCED_SPLIT, GONE, Act.NOTHING, False),
        (BACKUP_PAIR, MAIN_PAIR, Act.NOTHING, True),
        (BACKUP_COPY, MAIN_PAIR, Act.NOTHING, False),
        (BACKUP_PFUS, MAIN_PAIR, Act.NOTHING, False),  # the main site resyncs
        # the main site ended the pairs: nothing here copies anything anywhere, and nothing is ready
        (view("backup"), GONE, Act.NOTHING, False),
        (view("main", fenced=True), view("backup"), Act.NOTHING, False),
    ],
)
def test_resync(local, peer, act, ready):
    decision = resync(local, peer)
    assert (decision.act, decision.ready) == (act, ready)
