"""GetVolumeReplicationInfo's rules, state by state: the worst state of any pair wins,
and only a group that is copying journal records reports a recovery point."""

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ccopy_api import array_pb2 as pb
from replication_sidecar.status import DEGRADED, ERROR, HEALTHY, replication_info

NOW = 1_800_000_000 * 10**9


def group(*states: int, **fields) -> pb.JournalGroup:
    pairs = [pb.Pair(state=s, copied_bytes=fields.pop("copied", 0), copy_total_bytes=fields.pop("total", 0))
             for s in states]  # fmt: skip
    return pb.JournalGroup(name="shop", pairs=pairs, capacity_bytes=100, **fields)


@pytest.mark.parametrize(
    ("view", "status", "words", "moving"),
    [
        (group(pb.PAIR, pb.PAIR, lag_seconds=0.25), HEALTHY, "2 volume(s) in PAIR", True),
        (group(), ERROR, "no volume is paired", False),
        (group(pb.PAIR, pb.PSUE), ERROR, "PSUE", False),
        (group(pb.PAIR, pb.PFUS), ERROR, "PFUS", False),
        (group(pb.PAIR, overflowed=True), ERROR, "journal full", False),
        (group(pb.PSUS, pb.PSUS, split=True, split_seq=42), ERROR, "split (PSUS) at sequence 42", False),
        (group(pb.SSWS, pb.SSWS), DEGRADED, "taken over", False),
        (group(pb.COPY, pb.PAIR, copied=1 << 20, total=4 << 20), DEGRADED, "1MiB of 4MiB", False),
        (group(pb.PAIR, journal_nearly_full=True, usage_bytes=85), DEGRADED, "85% full", True),
        (group(pb.PAIR, lag_seconds=12.0), DEGRADED, "above the RPO of 5 s", True),
        (group(pb.PSUE, pb.COPY), ERROR, "PSUE", False),  # the worst state wins
    ],
)
def test_status_by_state(view, status, words, moving):
    info = replication_info(view, rpo_seconds=5.0, now_ns=NOW)
    assert info.status == status and words in info.message and "shop" in info.message
    assert (info.recovery_point_ns is not None) == moving


def test_recovery_point_is_the_oldest_unapplied_write():
    info = replication_info(group(pb.PAIR, lag_seconds=2.5), rpo_seconds=0, now_ns=NOW)
    assert info.status == HEALTHY and info.recovery_point_ns == NOW - 2_500_000_000


def test_a_takeover_says_what_it_gave_up():
    contact = Timestamp(seconds=NOW // 10**9 - 5)
    lost = pb.DataGivenUp(records=7, bytes=51 << 10, seconds=0.065, exact=False, last_contact=contact)
    message = replication_info(group(pb.SSWS, given_up=lost), rpo_seconds=0, now_ns=NOW).message
    assert "gave up at least 7 records, 51KiB, 0.065 s" in message and "cannot be known" in message
    assert "gave up" not in replication_info(group(pb.SSWS), rpo_seconds=0, now_ns=NOW).message


def test_a_backup_that_lost_contact_says_since_when():
    view = group(pb.PAIR, lag_seconds=0.0, role="backup", last_contact=Timestamp(seconds=NOW // 10**9 - 90))
    info = replication_info(view, rpo_seconds=0, now_ns=NOW)
    assert info.status == DEGRADED and "has not answered since" in info.message and "90 s" in info.message
    fresh = group(pb.PAIR, role="backup", last_contact=Timestamp(seconds=NOW // 10**9 - 1))
    assert replication_info(fresh, rpo_seconds=0, now_ns=NOW).status == HEALTHY


def test_no_objective_declared_never_degrades_by_lag():
    assert replication_info(group(pb.PAIR, lag_seconds=3600.0), rpo_seconds=0, now_ns=NOW).status == HEALTHY


def test_the_last_verify_is_in_the_message_and_a_difference_degrades():
    when = Timestamp(seconds=NOW // 10**9 - 60)
    assert "not verified yet" in replication_info(group(pb.PAIR), rpo_seconds=0, now_ns=NOW).message
    equal = replication_info(group(pb.PAIR, last_verify=pb.VerifySummary(verified_at=when, regions_compared=8)),
                             rpo_seconds=0, now_ns=NOW)  # fmt: skip
    assert equal.status == HEALTHY and "last verified 2027-01-15T07:59:00.000+00:00: equal" in equal.message
    found = pb.VerifySummary(verified_at=when, regions_compared=8, regions_differing=2)
    differ = replication_info(group(pb.PAIR, last_verify=found), rpo_seconds=0, now_ns=NOW)
    assert differ.status == DEGRADED and "2 region(s) differ" in differ.message and "verify --repair" in differ.message
    found.repaired = True  # marked: the next resync copies them
    marked = replication_info(group(pb.PAIR, last_verify=found), rpo_seconds=0, now_ns=NOW)
    assert marked.status == HEALTHY and "marked for the next resync" in marked.message
    assert "verif" not in replication_info(group(pb.PAIR, role="backup"), rpo_seconds=0, now_ns=NOW).message
