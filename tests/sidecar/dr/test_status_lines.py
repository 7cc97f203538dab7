"""`ccopy dr status` in words: what a person reads about each site at a disaster."""

from __future__ import annotations

from replication_sidecar.dr.commands import status_lines

BACKUP = {
    "state": "Replicating", "role": "Secondary", "message": "copying; 2 records behind as of last contact",
    "volumes": [{"pvc": "sales", "volumeHandle": "ccv1-32002-000001", "pairState": "PAIR"}],
    "recoveryPoint": "2026-12-02T10:00:00.000Z", "recoveryPointAgeSeconds": 1.5, "rpoSeconds": 30,
    "lastContact": "2026-12-02T10:00:01.000Z", "behindAsOfLastContact": {"records": 2, "bytes": 8192, "seconds": 0.25},
}  # fmt: skip


def test_a_backup_says_its_volumes_recovery_point_and_how_far_behind_in_the_takeovers_units():
    lines = status_lines("backup", "shop", BACKUP)
    assert lines[0] == "backup: Replicating (role Secondary); copying; 2 records behind as of last contact"
    assert lines[1] == "  sales: ccv1-32002-000001 PAIR"
    assert lines[2] == "  recovery point 2026-12-02T10:00:00.000Z (1.5 s old, RPO 30 s)"
    assert lines[3] == ("  behind the main site as of last contact 2026-12-02T10:00:01.000Z: "
                        "2 records, 8KiB, 0.250 s of writes")  # fmt: skip


def test_a_takeover_says_what_it_gave_up_and_a_missing_status_is_named():
    given_up = "at least 2 records, 8KiB, 0.250 s of writes"
    taken = {**BACKUP, "role": "Primary", "takeover": {"givenUp": given_up}}
    assert status_lines("backup", "shop", taken)[-1] == f"  takeover gave up: {given_up}"
    assert status_lines("main", "shop", {}) == ["main: no ConsistentCopy for namespace shop here"]
    assert "no RPO declared" in status_lines("main", "shop", {**BACKUP, "rpoSeconds": None})[2]
