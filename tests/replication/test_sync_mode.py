"""Synchronous mode: a write is acknowledged only once the backup applied it."""

from __future__ import annotations

import os

from ccopy_api import array_pb2 as pb
from tests.integration.nbd_raw import RawClient

MIB = 1 << 20


def test_every_acknowledged_write_is_already_at_the_backup(sites):
    ldev = sites.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="ledger", size_bytes=8 * MIB))
    request = pb.CreatePairRequest(group_name="bank", pvol_id=ldev.id, synchronous=True)
    pair = sites.main_stub.CreatePair(request)
    sites.wait_in_sync("bank")
    svol = sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pair.remote_ldev_id)).export_name
    host, backup = RawClient(sites.main.nbd_address), RawClient(sites.backup.nbd_address)
    host.go("ledger")
    backup.go(svol)
    for i in range(30):
        data = os.urandom(4096)
        assert host.write(i * 4096, data) == 0
        assert backup.read(i * 4096, 4096) == (0, data), f"write {i} acknowledged before the backup had it"
    host.close()
    backup.close()
    main = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="bank"))
    assert main.synchronous and main.confirmed_seq == main.main_seq == 30
