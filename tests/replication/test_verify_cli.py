"""`ccopy ctl pair verify` against two real array processes: equal while hosts write over
NBD, an S-VOL damaged in its sparse file behind the backup array's back reported region
by region (exit 3), repaired by split, verify --repair and resync --verify (exit 0), the
last verify in `journal show` and the metrics, and each refusal one line and exit 1."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ccopy_api import array_pb2 as pb
from ccopy_common.ldev_id import format_ldev_id
from tests.integration.nbd_raw import RawClient
from tests.replication.conftest import start_sites, stop_sites
from tests.replication.test_metrics import scrape, value
from tests.replication.test_split_resync import SIZE, paired_shop

MIB = 1 << 20


def ctl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ccopy", "ctl", "--array", address, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def verify_snapshots(pool: Path) -> list[str]:
    """The verify snapshots in a running array's store (read beside it: SQLite in WAL mode)."""
    db = sqlite3.connect(f"file:{pool / 'pool.db'}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT name FROM snapshot WHERE name LIKE 'verify-%'")]
    finally:
        db.close()


@pytest.fixture
def shop(tmp_path: Path):
    """Two P-VOLs of 32 MiB with data, paired into `shop` and caught up; the main array with metrics."""
    sites = start_sites(tmp_path, "--metrics", "127.0.0.1:0")
    yield sites, paired_shop(sites), tmp_path
    stop_sites(sites)


def test_equal_while_hosts_write_then_a_damaged_svol_region_is_reported_and_repaired(shop):
    sites, pairs, tmp_path = shop
    main = sites.main.api_address
    stop, written = threading.Event(), [0]

    def hosts() -> None:  # both P-VOLs written over NBD all along
        clients = {name: RawClient(sites.main.nbd_address) for name in pairs}
        for name, client in clients.items():
            client.go(name)
        while not stop.is_set():
            for client in clients.values():
                assert client.write((written[0] * 8192) % SIZE, os.urandom(8192)) == 0
            written[0] += 1
        for client in clients.values():
            client.close()

    writer = threading.Thread(target=hosts)
    writer.start()
    try:
        for _ in range(2):
            before = written[0]
            equal = ctl(main, "pair", "verify", "shop")
            assert equal.returncode == 0, equal.stderr
            assert "none: equal" in equal.stdout and "64 regions of 1MiB" in equal.stdout
            assert written[0] > before  # the hosts wrote while it verified
    finally:
        stop.set()
        writer.join()
    sites.wait_in_sync("shop")

    # Behind the backup array's back: 512 bytes into the stock S-VOL's sparse file, at 5 MiB + 4 KiB.
    svol = pairs["stock"].remote_ldev_id
    with open(tmp_path / "backup" / "ldevs" / f"{svol:06x}.ldev", "r+b") as raw:
        raw.seek(5 * MIB + 4096)
        raw.write(b"\xab" * 512)
    found = ctl(main, "pair", "verify", "shop")
    assert found.returncode == 3, found.stderr
    assert "1 region(s) DIFFER" in found.stdout
    lines = found.stdout.splitlines()
    stock = pairs["stock"].local_display_id
    assert lines[-3] == "differing regions of shop:"
    assert lines[-1].split() == [stock, "stock", format_ldev_id(svol), str(5 * MIB), "(5MiB)", "1MiB"]
    as_json = json.loads(ctl(main, "-o", "json", "pair", "verify", "shop").stdout)
    assert [(r["pvol_name"], int(r["offset"]), int(r["length"])) for r in as_json["differing"]] == [
        ("stock", 5 * MIB, MIB)
    ]

    shown = ctl(main, "journal", "show", "shop").stdout
    assert "last verify" in shown and "1 region(s) DIFFER (64 regions)" in shown
    samples = scrape(sites.main.metrics_address)
    assert value(samples, "ccopy_journal_last_verify_differing_regions", group="shop", role="main") == 1
    verified_at = value(samples, "ccopy_journal_last_verify_timestamp_seconds", group="shop", role="main")
    last = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop")).last_verify
    assert verified_at == pytest.approx(last.verified_at.ToNanoseconds() / 1e9)

    refused = ctl(main, "pair", "verify", "shop", "--repair")  # PAIR: split first
    assert refused.returncode == 1 and "FAILED_PRECONDITION" in refused.stderr and "split it first" in refused.stderr
    assert ctl(main, "pair", "split", "shop").returncode == 0
    sites.wait_backup_states("shop", pb.PSUS)
    repaired = ctl(main, "pair", "verify", "shop", "--repair")
    assert repaired.returncode == 3 and "marked for the next resync" in repaired.stdout, repaired.stdout
    resynced = ctl(main, "pair", "resync", "shop", "--verify")
    assert resynced.returncode == 0, resynced.stdout + resynced.stderr
    assert "then verified" in resynced.stdout and "none: equal" in resynced.stdout
    assert "equal (64 regions)" in ctl(main, "journal", "show", "shop").stdout
    samples = scrape(sites.main.metrics_address)
    assert value(samples, "ccopy_journal_last_verify_differing_regions", group="shop", role="main") == 0
    for side in ("main", "backup"):  # every verify's hidden snapshots went
        assert verify_snapshots(tmp_path / side) == []


def test_refusals_are_one_line_and_exit_1(shop):
    sites, _, _ = shop
    main, backup = sites.main.api_address, sites.backup.api_address
    for address, args, words in (
        (main, ("pair", "verify", "nope"), "error: NOT_FOUND: journal group 'nope' not found"),
        (backup, ("pair", "verify", "shop"), "error: FAILED_PRECONDITION: journal group 'shop' is the backup side"),
    ):
        result = ctl(address, *args)
        assert result.returncode == 1 and result.stderr.startswith(words), result.stderr
        assert result.stderr.count("\n") == 1 and not result.stdout
    sites.backup.stop()
    down = ctl(main, "pair", "verify", "shop")
    assert down.returncode == 1 and down.stderr.startswith("error: UNAVAILABLE: array at "), down.stderr
    assert down.stderr.count("\n") == 1
    assert "never (ccopy ctl pair verify)" in ctl(main, "journal", "show", "shop").stdout
