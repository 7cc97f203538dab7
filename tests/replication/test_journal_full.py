"""A small journal and a cut link: PFUL, then PFUS without failing a host write; resync copies only the changes."""

from __future__ import annotations

import os

from backend.diff_bitmap import REGION_BYTES
from ccopy_api import array_pb2 as pb
from tests.replication.test_remote_copy import write
from tests.replication.test_split_resync import digest

MIB = 1 << 20
R = REGION_BYTES
WRITES = 40


def test_journal_full_suspends_the_group_and_resync_makes_it_equal(sites):
    ldev = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="orders", size_bytes=32 * MIB))
    request = pb.CreatePairRequest(group_name="crm", pvol_id=ldev.id, journal_capacity_bytes=MIB)
    pair = sites.main_stub.CreatePair(request)
    sites.wait_in_sync("crm")
    sites.backup.stop()  # the link is cut: nothing drains the journal

    def status() -> pb.JournalGroup:
        return sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="crm"))

    blocks = [os.urandom(R) for _ in range(WRITES)]
    for i in range(13):  # about 832 KiB journaled
        write(sites.main.nbd_address, "orders", i * R, blocks[i])
    assert status().journal_nearly_full and not status().split  # PFUL: a warning, still journaling
    for i in range(13, WRITES):  # every write succeeds although the journal cannot take them
        write(sites.main.nbd_address, "orders", i * R, blocks[i])
    suspended = status()
    assert suspended.split and {p.state for p in suspended.pairs} == {pb.PFUS}
    journaled = suspended.split_seq
    assert 13 <= journaled < WRITES and suspended.main_seq == journaled  # nothing journaled after the gap

    sites.backup.start()
    sites.reconnect()
    backup = sites.wait_backup_states("crm", pb.PFUS)  # applied what the journal held, then suspended too
    assert backup.applied_seq == journaled

    sites.main_stub.ResyncPairs(pb.ResyncPairsRequest(group_name="crm"))
    sites.wait_in_sync("crm")
    svol_export = sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pair.remote_ldev_id)).export_name
    assert digest(sites.backup.nbd_address, svol_export) == digest(sites.main.nbd_address, "orders")
    (moved,) = [p.copied_bytes for p in sites.backup_stub.ListPairs(pb.ListPairsRequest(group_name="crm")).pairs]
    assert moved == (WRITES - journaled) * R  # only the regions written while suspended
    assert not status().journal_nearly_full and not status().split


def test_with_inflow_control_a_full_journal_holds_writes_until_the_backup_drains_it(sites):
    import threading

    ldev = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="orders", size_bytes=32 * MIB))
    sites.main_stub.CreatePair(pb.CreatePairRequest(group_name="crm", pvol_id=ldev.id, journal_capacity_bytes=MIB))
    sites.wait_in_sync("crm")
    group = sites.main_stub.UpdateJournalGroup(
        pb.UpdateJournalGroupRequest(name="crm", inflow_control=True, data_overflow_watch_seconds=60)
    )
    assert group.inflow_control and group.data_overflow_watch_seconds == 60
    sites.backup.stop()
    for i in range(14):  # about 900 KiB: the next write does not fit
        write(sites.main.nbd_address, "orders", i * R, os.urandom(R))
    held = threading.Thread(target=write, args=(sites.main.nbd_address, "orders", 20 * R, os.urandom(4 * R)))
    held.start()
    held.join(1.0)
    assert held.is_alive()  # the host waits instead of the group suspending
    sites.backup.start()
    sites.reconnect()
    held.join(30)
    assert not held.is_alive()
    status = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="crm"))
    assert not status.split and {p.state for p in status.pairs} == {pb.PAIR}
    sites.wait_in_sync("crm")
