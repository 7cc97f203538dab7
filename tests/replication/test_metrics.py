"""The array's Prometheus metrics, scraped over HTTP and parsed with prometheus_client's
own parser: NBD latency and errors per LDEV, copy-on-write, pool, and per journal group
and pair the state, sequences, lag, RPO and journal space."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccopy_api import array_pb2 as pb
from tests.integration.nbd_raw import FLUSH, RawClient
from tests.replication.conftest import start_sites, stop_sites
from tests.replication.test_remote_copy import write

MIB = 1 << 20


def scrape(address: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def metered_sites(tmp_path: Path):
    pair = start_sites(tmp_path, "--metrics", "127.0.0.1:0")
    yield pair
    stop_sites(pair)


def test_data_path_metrics_count_requests_errors_and_copy_on_write(metered_sites):
    stub, address = metered_sites.main_stub, metered_sites.main.nbd_address
    ldev = stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="stock", size_bytes=8 * MIB))
    stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="frozen", size_bytes=MIB, read_only=True))
    for n in range(5):
        write(address, "stock", n * MIB, os.urandom(MIB))
    stub.CreateSnapshot(pb.CreateSnapshotRequest(name="before", ldev_id=ldev.id))
    write(address, "stock", 0, os.urandom(2 * MIB))  # 2 MiB over a snapshot: 32 chunks of 64 KiB preserved
    client = RawClient(address)
    client.go("frozen")
    assert client.write(0, b"x" * 512) != 0  # EPERM: an error
    client.request(FLUSH, cookie=7)
    assert client.simple_reply()[0] == 0
    client.disconnect()

    samples = scrape(metered_sites.main.metrics_address)
    stock = ldev.display_id
    assert value(samples, "ccopy_nbd_request_seconds_count", ldev=stock, command="WRITE") == 6
    assert value(samples, "ccopy_nbd_request_seconds_bucket", ldev=stock, command="WRITE", le="+Inf") == 6
    assert value(samples, "ccopy_nbd_request_seconds_sum", ldev=stock, command="WRITE") > 0
    frozen = stub.GetLdev(pb.GetLdevRequest(name="frozen")).display_id
    assert value(samples, "ccopy_nbd_errors_total", ldev=frozen, command="WRITE") == 1
    assert value(samples, "ccopy_nbd_request_seconds_count", ldev=frozen, command="FLUSH") == 1
    assert value(samples, "ccopy_cow_chunks_copied_total", ldev=stock) == 32
    assert value(samples, "ccopy_cow_syncs_total", ldev=stock) == 1  # one write's 32 copies: one sync
    assert value(samples, "ccopy_pool_bytes", kind="provisioned") == 9 * MIB
    assert value(samples, "ccopy_ldevs") == 2


def test_journal_group_metrics_follow_the_pairs_and_the_declared_rpo(metered_sites):
    sites = metered_sites
    group = pb.CreateJournalGroupRequest(name="shop", capacity_bytes=64 * MIB, rpo_seconds=30)
    sites.main_stub.CreateJournalGroup(group)
    for name in ("stock", "sales"):
        ldev = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=name, size_bytes=4 * MIB))
        sites.main_stub.CreatePair(pb.CreatePairRequest(group_name="shop", pvol_id=ldev.id))
    sites.wait_in_sync("shop")
    write(sites.main.nbd_address, "stock", 0, os.urandom(MIB))
    sites.wait_in_sync("shop")
    main_view = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))

    main = scrape(sites.main.metrics_address)
    at = {"group": "shop", "role": "main"}
    assert value(main, "ccopy_journal_sequence", kind="main", **at) == main_view.main_seq >= 1
    assert value(main, "ccopy_journal_rpo_seconds", **at) == 30
    assert value(main, "ccopy_journal_rpo_exceeded", **at) == 0
    assert value(main, "ccopy_journal_bytes", kind="capacity", **at) == 64 * MIB
    for pair in main_view.pairs:
        assert value(main, "ccopy_pair_state", ldev=pair.local_display_id, state="PAIR", **at) == 1
        assert value(main, "ccopy_pair_state", ldev=pair.local_display_id, state="PSUE", **at) == 0

    backup = scrape(sites.backup.metrics_address)
    assert value(backup, "ccopy_journal_sequence", group="shop", role="backup", kind="applied") == main_view.main_seq

    sites.main_stub.SplitPairs(pb.SplitPairsRequest(group_name="shop"))
    split = scrape(sites.main.metrics_address)
    states = {value(split, "ccopy_pair_state", ldev=p.local_display_id, state="PSUS", **at) for p in main_view.pairs}
    assert states == {1}
