"""Path watch: with the backup silent past the watch time the group is suspended by error (PSUE)."""

from __future__ import annotations

import os
import time

from backend.diff_bitmap import REGION_BYTES
from ccopy_api import array_pb2 as pb
from tests.replication.conftest import when_linked
from tests.replication.test_remote_copy import write
from tests.replication.test_split_resync import digest, paired_shop, wait_backup_states

MIB = 1 << 20


def test_a_silent_backup_suspends_the_group_and_resync_catches_up(sites):
    sites.main.stop()
    sites.main.extra_args += ["--path-watch-seconds", "1"]
    sites.main.start()
    sites.reconnect()
    pairs = paired_shop(sites)
    sites.backup.stop()  # the link is down
    write(sites.main.nbd_address, "sales", 3 * MIB, os.urandom(REGION_BYTES))  # journaled: never pulled
    deadline = time.monotonic() + 15
    while not (status := sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))).split:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert {p.state for p in status.pairs} == {pb.PSUE}
    write(sites.main.nbd_address, "stock", 5 * MIB, os.urandom(REGION_BYTES))  # after: in the bitmap
    assert sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop")).main_seq == status.split_seq

    sites.backup.start()
    sites.reconnect()
    backup = wait_backup_states(sites, "shop", pb.PSUE)  # applied the journal up to the suspension, then PSUE
    assert backup.applied_seq == status.split_seq
    when_linked(sites.main_stub.ResyncPairs, pb.ResyncPairsRequest(group_name="shop"))
    sites.wait_in_sync("shop")
    for name, pair in pairs.items():
        svol = sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pair.remote_ldev_id)).export_name
        assert digest(sites.backup.nbd_address, svol) == digest(sites.main.nbd_address, name)
