"""kill -9 of the backup array, then of the main array, in the middle of a resync: it resumes and ends equal."""

from __future__ import annotations

import hashlib
import os
import time

from ccopy_api import array_pb2 as pb
from tests.replication.conftest import read_all, when_linked
from tests.replication.test_remote_copy import write

MIB = 1 << 20
SIZE = 128 * MIB


def copying_started(sites) -> bool:
    try:
        pairs = sites.backup_stub.ListPairs(pb.ListPairsRequest(group_name="big")).pairs
    except Exception:
        return False
    return any(p.state == pb.COPY and p.copied_bytes > 0 for p in pairs)


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_resync_survives_kill_9_of_either_array(sites):
    names = ("a", "b")
    for name in names:
        ldev = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=name, size_bytes=SIZE))
        sites.main_stub.CreatePair(pb.CreatePairRequest(group_name="big", pvol_id=ldev.id))
    sites.wait_in_sync("big")
    sites.main_stub.SplitPairs(pb.SplitPairsRequest(group_name="big"))
    for name in names:  # most of both volumes changes while split
        for offset in range(0, 96 * MIB, 4 * MIB):
            write(sites.main.nbd_address, name, offset, os.urandom(4 * MIB))

    sites.main_stub.ResyncPairs(pb.ResyncPairsRequest(group_name="big"))
    wait_for(lambda: copying_started(sites))
    sites.backup.kill()
    sites.backup.start()
    sites.reconnect()
    wait_for(lambda: copying_started(sites))  # the copy started again after the restart
    sites.main.kill()
    sites.main.start()
    sites.reconnect()
    when_linked(sites.main_stub.ResyncPairs, pb.ResyncPairsRequest(group_name="big"))  # idempotent, no harm
    sites.wait_in_sync("big")
    for pair in sites.main_stub.ListPairs(pb.ListPairsRequest(group_name="big")).pairs:
        name = sites.main_stub.GetLdev(pb.GetLdevRequest(id=pair.local_ldev_id)).name
        svol = sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pair.remote_ldev_id)).export_name
        main = hashlib.sha256(read_all(sites.main.nbd_address, name, SIZE)).digest()
        assert hashlib.sha256(read_all(sites.backup.nbd_address, svol, SIZE)).digest() == main, name
    assert "replication_retry" in sites.backup.log_path.read_text()  # the copy did lose the main array
