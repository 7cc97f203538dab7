"""Failback: the old main array comes back as the backup, and only the differences move."""

from __future__ import annotations

import os

import grpc

from backend.diff_bitmap import REGION_BYTES
from ccopy_api import array_pb2 as pb
from tests.api.test_array_api import code_of
from tests.replication.conftest import when_linked
from tests.replication.test_remote_copy import write
from tests.replication.test_split_resync import digest, paired_shop

MIB = 1 << 20
R = REGION_BYTES


def test_failback_after_a_forced_takeover_copies_only_the_differences(sites):
    pairs = paired_shop(sites)
    svol = {name: sites.backup_stub.GetLdev(pb.GetLdevRequest(id=p.remote_ldev_id)) for name, p in pairs.items()}
    failback = pb.FailbackRequest(group_name="shop")
    assert code_of(sites.backup_stub.Failback, failback) == grpc.StatusCode.FAILED_PRECONDITION  # PAIR, not SSWS

    sites.backup.stop()  # the link is cut ...
    write(sites.main.nbd_address, "sales", 6 * MIB, os.urandom(R))  # ... this sale never reaches the backup
    sites.main.kill()  # and the main site dies
    sites.backup.start()
    sites.reconnect()
    taken = sites.backup_stub.Takeover(pb.TakeoverRequest(group_name="shop", force=True))
    assert {p.state for p in taken.group.pairs} == {pb.SSWS} and not taken.given_up.exact
    for offset in (MIB, 9 * MIB):  # business goes on at the backup site
        write(sites.backup.nbd_address, svol["stock"].export_name, offset, os.urandom(R))

    sites.main.start()  # the old main site returns
    sites.reconnect()
    group = when_linked(sites.backup_stub.Failback, failback)
    assert group.role == "main" and {p.state for p in group.pairs} <= {pb.COPY, pb.PAIR}
    old_main = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))
    assert old_main.role == "backup"

    old_main = sites.wait_in_sync("shop", swapped=True)  # in sync, the other way round
    for name in pairs:
        assert digest(sites.main.nbd_address, name) == digest(sites.backup.nbd_address, svol[name].export_name)
        assert sites.main_stub.GetLdev(pb.GetLdevRequest(name=name)).read_only  # an S-VOL now
    moved = {p.local_ldev_id: p.copied_bytes for p in old_main.pairs}
    stock_id = sites.main_stub.GetLdev(pb.GetLdevRequest(name="stock")).id
    sales_id = sites.main_stub.GetLdev(pb.GetLdevRequest(name="sales")).id
    assert moved == {stock_id: 2 * R, sales_id: R}  # the backup's two writes, and the sale it never had

    write(sites.backup.nbd_address, svol["sales"].export_name, 0, b"journaled the other way")
    sites.wait_in_sync("shop", swapped=True)
    assert digest(sites.main.nbd_address, "sales") == digest(sites.backup.nbd_address, svol["sales"].export_name)

    # Swap back: a lossless takeover at the old main array while both answer, then a failback from there.
    back = sites.main_stub.Takeover(pb.TakeoverRequest(group_name="shop", force=True))
    assert back.given_up.exact and back.given_up.records == 0
    group = when_linked(sites.main_stub.Failback, failback)
    assert group.role == "main"
    sites.wait_in_sync("shop")  # the original direction again
    write(sites.main.nbd_address, "stock", 3 * MIB, os.urandom(R))
    sites.wait_in_sync("shop")
    for name in pairs:
        assert digest(sites.main.nbd_address, name) == digest(sites.backup.nbd_address, svol[name].export_name)
