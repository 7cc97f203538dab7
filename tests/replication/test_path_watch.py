"""Path watch: with the backup silent past the watch time the group is suspended by error (PSUE)."""

from __future__ import annotations

import os
import time

from backend.diff_bitmap import REGION_BYTES
from ccopy.waiting import replication_progress, wait_progressing
from ccopy_api import array_pb2 as pb
from tests.replication.conftest import when_linked
from tests.replication.test_remote_copy import write
from tests.replication.test_split_resync import SIZE, digest, paired_shop

MIB = 1 << 20


def test_a_silent_backup_suspends_the_group_and_resync_catches_up(sites):
    sites.main.stop()
    sites.main.extra_args += ["--path-watch-seconds", "1"]
    sites.main.start()
    sites.reconnect()
    pairs = paired_shop(sites)
    sites.backup.stop()  # the link is down
    write(sites.main.nbd_address, "sales", 3 * MIB, os.urandom(REGION_BYTES))  # journaled: never pulled
    deadline = time.monotonic() + 60  # the watch acts after 1 s; room for a loaded machine
    while not suspended(status := sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert {p.state for p in status.pairs} == {pb.PSUE}
    write(sites.main.nbd_address, "stock", 5 * MIB, os.urandom(REGION_BYTES))  # after: in the bitmap
    assert sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop")).main_seq == status.split_seq

    sites.backup.start()
    sites.reconnect()
    backup = sites.wait_backup_states("shop", pb.PSUE)  # applied the journal up to the suspension, then PSUE
    assert backup.applied_seq == status.split_seq
    when_linked(sites.main_stub.ResyncPairs, pb.ResyncPairsRequest(group_name="shop"))
    sites.wait_in_sync("shop")
    for name, pair in pairs.items():
        svol = sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pair.remote_ldev_id)).export_name
        assert digest(sites.backup.nbd_address, svol) == digest(sites.main.nbd_address, name)


def suspended(group: pb.JournalGroup) -> bool:
    """Split, and every pair marked: the array records the two one after the other, so a
    reader can see the split before the pairs' PSUE."""
    return group.split and all(p.state == pb.PSUE for p in group.pairs)


def slow_sites(sites, watch_seconds: str = "1") -> None:
    """A 1 s watch at the main array, and a backup whose every call to it takes 250 ms
    (a long link): an initial copy of a few MiB then outlasts the watch time."""
    sites.main.stop()
    sites.backup.stop()
    sites.main.extra_args += ["--path-watch-seconds", watch_seconds]
    sites.backup.extra_args += ["--link-delay-ms", "250"]
    sites.main.start()
    sites.backup.start()
    sites.reconnect()


def pair_with_data(sites, name: str = "stock") -> pb.Pair:
    ldev = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=name, size_bytes=SIZE))
    write(sites.main.nbd_address, name, 0, os.urandom(24 * MIB))  # six pieces of the initial copy
    request = pb.CreatePairRequest(group_name="shop", pvol_id=ldev.id, journal_capacity_bytes=64 * MIB)
    return sites.main_stub.CreatePair(request)


def test_an_initial_copy_longer_than_the_watch_time_keeps_the_group_watched_not_suspended(sites):
    slow_sites(sites)
    time.sleep(1.5)  # the array has been up longer than the watch time: a new group still gets all of it
    pair = pair_with_data(sites)
    copying_seen = []

    def main_view() -> pb.JournalGroup:
        main = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))
        assert not main.split, f"suspended while the backup was copying: {main}"
        if main.pairs[0].state == pb.COPY:
            copying_seen.append(main)
        return main

    wait_progressing(
        main_view, lambda main: main.pairs[0].state == pb.PAIR, "the initial copy",
        progress=lambda _: replication_progress(*sites.group_views("shop")),
    )  # fmt: skip
    sites.wait_in_sync("shop")
    svol = sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pair.remote_ldev_id)).export_name
    assert digest(sites.backup.nbd_address, svol) == digest(sites.main.nbd_address, "stock")
    assert copying_seen, "the copy was never seen running: the test did not outlast the watch"


def test_a_backup_down_mid_initial_copy_follows_the_suspension_and_resyncs_whole(sites):
    slow_sites(sites)
    pair = pair_with_data(sites)
    deadline = time.monotonic() + 60  # room for a loaded machine
    while not sites.backup_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop")).pairs[0].copied_bytes:
        assert time.monotonic() < deadline, "the initial copy never started"
        time.sleep(0.02)
    sites.backup.kill()  # mid-copy: the main array hears nothing for longer than the watch time
    deadline = time.monotonic() + 60  # the watch acts after 1 s; room for a loaded machine
    while not suspended(status := sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert {p.state for p in status.pairs} == {pb.PSUE}

    sites.backup.start()  # its base snapshot is gone: it must learn why instead of asking forever
    sites.reconnect()
    sites.wait_backup_states("shop", pb.PSUE)
    assert sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pair.remote_ldev_id)).read_only  # half copied
    when_linked(sites.main_stub.ResyncPairs, pb.ResyncPairsRequest(group_name="shop"))
    sites.wait_in_sync("shop")
    svol = sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pair.remote_ldev_id)).export_name
    assert digest(sites.backup.nbd_address, svol) == digest(sites.main.nbd_address, "stock")
