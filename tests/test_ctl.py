"""`ccopy ctl` as a person and a script use it: real processes, real array."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def ctl(array_proc, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ccopy", "ctl", "--array", array_proc.api_address, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_ldev_lifecycle_in_tables_and_json(array_proc):
    out = ctl(array_proc, "ldev", "create", "sales-db", "--size", "10GiB", "--label", "app=shop").stdout
    header, row = out.splitlines()
    assert header.split()[:6] == ["ID", "NAME", "SIZE", "ALLOCATED", "SNAPSHOTS", "STATE"]
    assert row.split()[:6] == ["00:00:01", "sales-db", "10GiB", "0B", "0", "NORMAL"]
    ctl(array_proc, "ldev", "create", "stock-db", "--size", "1G")

    listed = json.loads(ctl(array_proc, "-o", "json", "ldev", "list").stdout)
    assert [(x["display_id"], x["name"], x["size_bytes"]) for x in listed] == [
        ("00:00:01", "sales-db", str(10 << 30)),
        ("00:00:02", "stock-db", str(1 << 30)),
    ]
    by_label = json.loads(ctl(array_proc, "-o", "json", "ldev", "list", "--selector", "app=shop").stdout)
    assert [x["name"] for x in by_label] == ["sales-db"]

    expanded = json.loads(ctl(array_proc, "-o", "json", "ldev", "expand", "sales-db", "--size", "20GiB").stdout)
    assert expanded["size_bytes"] == str(20 << 30)
    labelled = json.loads(
        ctl(array_proc, "-o", "json", "ldev", "label", "00:00:01", "--set", "tier=gold", "--remove", "app").stdout
    )
    assert labelled["labels"] == {"tier": "gold"}
    shown = ctl(array_proc, "ldev", "show", "2").stdout
    assert "stock-db" in shown and "display_id" in shown

    pool = json.loads(ctl(array_proc, "-o", "json", "pool", "show").stdout)
    assert pool["ldev_count"] == 2 and int(pool["provisioned_bytes"]) == (21 << 30)
    assert "PROVISIONED" in ctl(array_proc, "pool", "show").stdout

    assert "deleted LDEV 00:00:02" in ctl(array_proc, "ldev", "delete", "stock-db").stdout
    assert "serial" in ctl(array_proc, "array", "info").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ldev", "show", "00:00:99"), "error: NOT_FOUND: LDEV 00:00:99 not found"),
        (("ldev", "show", "nope"), "error: NOT_FOUND: LDEV named 'nope' not found"),
        (("ldev", "create", "x", "--size", "lots"), "ccopy ctl ldev create: error: --size lots: not a size"),
        (("ldev", "create", "x", "--size", "1000"), "error: INVALID_ARGUMENT: LDEV size must be a positive multiple"),
        (("ldev", "create", "x", "--size", "1M", "--label", "novalue"),
         "ccopy ctl ldev create: error: --label novalue: not KEY=VALUE"),
    ],
)
def test_errors_are_one_line_and_exit_1(array_proc, args, message):
    result = ctl(array_proc, *args, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1


def test_conflicting_create_is_already_exists(array_proc):
    ctl(array_proc, "ldev", "create", "dup", "--size", "1M")
    result = ctl(array_proc, "ldev", "create", "dup", "--size", "2M", check=False)
    assert result.returncode == 1 and result.stderr.startswith("error: ALREADY_EXISTS:")


def test_unreachable_array_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ccopy", "ctl", "--array", "127.0.0.1:1", "pool", "show"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "CCOPY_LOG_LEVEL": "ERROR"},
    )
    assert result.returncode == 1 and result.stderr.startswith("error: UNAVAILABLE:")
    assert result.stderr.count("\n") == 1


def test_snapshot_group_clone_restore_and_extents_from_the_cli(array_proc):
    ctl(array_proc, "ldev", "create", "sales", "--size", "16MiB")
    ctl(array_proc, "ldev", "create", "stock", "--size", "16MiB")
    snap = json.loads(ctl(array_proc, "-o", "json", "snapshot", "create", "s1", "--ldev", "sales").stdout)
    assert snap["name"] == "s1" and snap["ready"] is True and snap["export_name"] == "snapshots/s1"
    group_out = ctl(array_proc, "snapshot-group", "create", "nightly", "--ldev", "sales", "--ldev", "stock").stdout
    assert "2 snapshots, writes held" in group_out
    group = json.loads(ctl(array_proc, "-o", "json", "group", "show", "nightly").stdout)
    assert sorted(s["ldev_display_id"] for s in group["snapshots"]) == ["00:00:01", "00:00:02"]
    listed = json.loads(ctl(array_proc, "-o", "json", "snapshot", "list", "--ldev", "sales").stdout)
    assert [s["name"] for s in listed] == ["s1", "nightly-000001"]

    clone = json.loads(ctl(array_proc, "-o", "json", "ldev", "clone", "sales-copy", "--from-snapshot", "s1").stdout)
    assert clone["state"] == "LDEV_STATE_NORMAL" and clone["size_bytes"] == str(16 << 20)
    live_clone = json.loads(
        ctl(array_proc, "-o", "json", "ldev", "clone", "big", "--from-ldev", "stock", "--size", "32MiB").stdout
    )
    assert live_clone["size_bytes"] == str(32 << 20)
    assert (
        json.loads(ctl(array_proc, "-o", "json", "ldev", "restore", "sales", "--snapshot", "s1").stdout)["name"]
        == "sales"
    )
    extents = json.loads(ctl(array_proc, "-o", "json", "snapshot", "extents", "s1").stdout)
    assert extents["total_bytes"] == "0"
    diff = ctl(array_proc, "snapshot", "extents", "nightly-000001", "--base", "s1").stdout
    assert "changed since snapshot" in diff

    refused = ctl(array_proc, "snapshot", "delete", "nightly-000001", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("error: FAILED_PRECONDITION:")
    refused = ctl(array_proc, "ldev", "delete", "sales", check=False)
    assert refused.returncode == 1 and "snapshot" in refused.stderr
    smaller = ctl(array_proc, "ldev", "clone", "tiny", "--from-snapshot", "s1", "--size", "1MiB", check=False)
    assert smaller.returncode == 1 and smaller.stderr.startswith("error: OUT_OF_RANGE:")
    assert "deleted snapshot group" in ctl(array_proc, "group", "delete", "nightly").stdout
    assert "deleted LDEV" in ctl(array_proc, "ldev", "delete", "sales", "--cascade").stdout


def test_publish_unpublish_and_qos_from_the_cli(array_proc):
    ctl(array_proc, "ldev", "create", "pubvol", "--size", "4MiB")
    published = json.loads(ctl(array_proc, "-o", "json", "ldev", "publish", "pubvol", "--host", "node-1").stdout)
    assert published["host_id"] == "node-1" and published["export_name"].startswith("pub/")
    shown = json.loads(ctl(array_proc, "-o", "json", "ldev", "show", "pubvol").stdout)
    assert shown["published_hosts"] == ["node-1"]
    assert (
        "unpublished 00:00:01 from node-1" in ctl(array_proc, "ldev", "unpublish", "pubvol", "--host", "node-1").stdout
    )
    limited = json.loads(ctl(array_proc, "-o", "json", "ldev", "qos", "pubvol", "--max-iops", "500").stdout)
    assert limited["max_iops"] == 500
    refused = ctl(array_proc, "ldev", "qos", "pubvol", "--max-iops", "-5", check=False)
    assert refused.returncode == 1


def test_takeover_summary_never_reads_as_nothing_lost_when_nothing_is_known():
    from google.protobuf.timestamp_pb2 import Timestamp

    from ccopy_api import array_pb2 as pb
    from ccopy_common.loss_words import given_up_words

    contact = Timestamp(seconds=1_800_000_000, nanos=250_000_000)
    exact = given_up_words(pb.DataGivenUp(records=0, exact=True, last_contact=contact))
    assert exact.startswith("0 records") and "counted by the main array" in exact
    floor = given_up_words(pb.DataGivenUp(records=7, bytes=51_000, seconds=0.8, last_contact=contact))
    assert "at least 7 records" in floor and "2027-01-15T08:00:00.250+00:00" in floor
    assert "cannot be known" in floor
    never = given_up_words(pb.DataGivenUp())
    assert "unknown" in never and "0 records" not in never
    nothing_then = given_up_words(pb.DataGivenUp(records=0, last_contact=contact))
    assert nothing_then.startswith("unknown: nothing acknowledged by the main site was missing here as of last "
                                   "contact at 2027-01-15T08:00:00.250+00:00, but writes after")  # fmt: skip
    assert "0 records" not in nothing_then and "cannot be known" in nothing_then
