"""The backup site's ConsistentCopy over plain values: how far behind, as this site alone
knows it; a silent main site; a takeover's loss record said once; a failback."""

from __future__ import annotations

import dataclasses

from replication_sidecar.backup_site.model import (
    ApplyConsistentCopy,
    BackupGroup,
    DeleteConsistentCopy,
    Event,
    GivenUp,
    Observed,
    RegistrarConfig,
)
from replication_sidecar.backup_site.reconcile import reconcile
from tests.sidecar.backup_site.test_reconcile import apply, of, svol

NOW = 1_800_000_000 * 10**9
CONFIG = RegistrarConfig()
HANDLES = ("ccv1-2002-000001", "ccv1-2002-000002")


def group(state: str = "PAIR", lag: float = 0.2, contact_age: float = 0.3, **kw) -> BackupGroup:
    return BackupGroup(
        "vgrcontent-x", "backup", {h: state for h in HANDLES}, "HEALTHY", "2 volume(s) in PAIR",
        NOW - int(lag * 1e9), rpo_seconds=30.0, last_contact_ns=NOW - int(contact_age * 1e9), pending_records=3,
        pending_bytes=12288, lag_seconds=lag, **kw,
    )  # fmt: skip


def seen(journal: BackupGroup | None = None, **kw) -> Observed:
    svols = tuple(dataclasses.replace(svol(i, name), group="vgrcontent-x") for i, name in ((1, "stock"), (2, "sales")))
    groups = {"vgrcontent-x": journal} if journal else {}
    return Observed(svols, namespaces=frozenset({"shop"}), journal_groups=groups, now_ns=NOW, **kw)


def status(actions) -> dict:
    (write,) = of(actions, ApplyConsistentCopy)
    return write.status


def reasons(actions) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status(actions)["conditions"]}


def test_a_backup_in_pair_receives_and_says_how_far_behind_as_of_last_contact():
    actions = reconcile(seen(group()), CONFIG)
    got = status(actions)
    assert got["site"] == "backup" and got["role"] == "Secondary" and got["state"] == "Receiving"
    assert got["volumeCount"] == 2 and [v["pvc"] for v in got["volumes"]] == ["stock", "sales"]
    assert {v["pairState"] for v in got["volumes"]} == {"PAIR"}
    assert got["behindAsOfLastContact"] == {"records": 3, "bytes": 12288, "seconds": 0.2}
    assert got["recoveryPointAgeSeconds"] == 0.2 and got["lastContactAgeSeconds"] == 0.3
    assert reasons(actions) == {"Ready": ("True", "Receiving"), "RPOMet": ("True", "WithinRPO"),
                                "MainSiteInContact": ("True", "InContact")}  # fmt: skip
    assert {e.type for e in of(actions, Event)} == {"Normal"}


def test_before_the_journal_group_is_known_it_is_registering_not_a_warning():
    actions = reconcile(seen(None), CONFIG)
    assert status(actions)["state"] == "Registering" and {e.type for e in of(actions, Event)} == {"Normal"}


def test_an_old_recovery_point_is_behind_and_a_silent_main_site_is_said_with_the_time_of_last_contact():
    behind = reconcile(seen(group(lag=45.0)), CONFIG)
    assert status(behind)["state"] == "Behind" and reasons(behind)["RPOMet"] == ("False", "RecoveryPointTooOld")
    silent = reconcile(seen(group(lag=45.0, contact_age=40.0)), CONFIG)
    got = status(silent)
    assert got["state"] == "MainSiteSilent" and reasons(silent)["MainSiteInContact"] == ("False", "MainSiteSilent")
    assert "has not answered since" in got["message"] and "ccopy dr failover" in got["message"]
    assert ("Warning", "MainSiteSilent") in {(e.type, e.reason) for e in of(silent, Event)}


def test_a_takeover_records_what_it_gave_up_in_the_status_and_one_warning():
    lost = GivenUp(7, 51 << 10, 0.065, False, NOW - 2 * 10**9, NOW - 3 * 10**9, "at least 7 records, 51.0KiB ...")
    taken = group("SSWS", given_up=lost)
    first = reconcile(seen(taken), CONFIG)
    got = status(first)
    assert got["role"] == "Primary" and got["state"] == "TakenOver" and got["behindAsOfLastContact"] is not None
    assert got["takeover"] == {"givenUp": lost.words, "records": 7, "bytes": 51 << 10, "seconds": 0.065,
                               "exact": False, "lastContact": "2027-01-15T07:59:58Z",
                               "recoveryPoint": "2027-01-15T07:59:57Z"}  # fmt: skip
    warnings = [e for e in of(first, Event) if e.reason == "TakeoverGaveUp"]
    assert len(warnings) == 1 and warnings[0].type == "Warning" and lost.words in warnings[0].message
    again = reconcile(apply(seen(taken), first), CONFIG)
    assert of(again, Event) == []  # said once


def test_after_a_failback_this_site_is_the_primary_replicating_to_the_main_site():
    reversed_ = dataclasses.replace(group(), role="main", last_contact_ns=None)
    actions = reconcile(seen(reversed_), CONFIG)
    assert status(actions)["state"] == "Primary" and status(actions)["behindAsOfLastContact"] is None
    assert reasons(actions)["Ready"] == ("True", "ReplicatingToMain")


def test_ages_alone_are_written_only_when_a_status_is_due_and_the_object_goes_with_the_pairs():
    first = seen(group())
    written = apply(first, reconcile(first, CONFIG))
    older = dataclasses.replace(written, now_ns=NOW + 10**9, status_due=False)
    assert reconcile(older, CONFIG) == []  # one second older: nothing to write yet
    assert of(reconcile(dataclasses.replace(older, status_due=True), CONFIG), ApplyConsistentCopy)
    unpaired = dataclasses.replace(written, svols=tuple(dataclasses.replace(s, paired=False) for s in written.svols))
    assert DeleteConsistentCopy("shop") in reconcile(unpaired, CONFIG)
