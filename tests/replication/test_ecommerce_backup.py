"""Proofs 2 and 3 on real software: SQLite on ext4 over NBD at the main site.

While orders flow (stock change committed, then the sale, by two processes),
50 snapshot groups are taken of the S-VOLs at the backup at random moments;
each is cloned, mounted (ext4 replays its journal) and checked: both
databases pass PRAGMA integrity_check and no sale lacks its stock change.
When the orders stop and the lag is zero, every S-VOL equals its P-VOL.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from ccopy import ecommerce
from ccopy.ecommerce import check
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from csi_driver.attach import attached, mounted, nbd_uri
from tests.conftest import require_root, require_tools, wait_for
from tests.replication.conftest import export_of, read_all

SIZE = 128 << 20
SPLITS = 50
ORDERS_AT_MOST = 3600.0  # seconds; the tests stop the orders themselves


@pytest.fixture(autouse=True)
def node_tools():
    require_root()
    require_tools("nbdfuse", "losetup", "mkfs.ext4", "fusermount3")


@contextmanager
def orders_at_main_site(stub: pb_grpc.ArrayStub, nbd_address: str, tmp_path: Path):
    """The shop at the main site: LDEVs stock and sales, ext4 over NBD, SQLite on each, and the
    order loop running on them until `ecommerce.stop`, yielded once orders flow (killed if still running)."""
    for name in ("stock", "sales"):
        stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=name, size_bytes=SIZE))
    mounts = {name: tmp_path / "main" / name for name in ("stock", "sales")}
    with (
        attached(nbd_uri(nbd_address, "stock"), tmp_path / "fuse-stock") as stock_dev,
        attached(nbd_uri(nbd_address, "sales"), tmp_path / "fuse-sales") as sales_dev,
    ):
        for device in (stock_dev, sales_dev):
            subprocess.run(["mkfs.ext4", "-q", "-F", device], check=True)
        with mounted(stock_dev, mounts["stock"]), mounted(sales_dev, mounts["sales"]):
            orders = ecommerce.start(mounts["stock"], mounts["sales"], ORDERS_AT_MOST)
            try:
                yield orders
            finally:
                if orders.poll() is None:
                    orders.kill()
                    orders.wait()


def test_fifty_backup_split_points_are_all_consistent_and_the_end_is_identical(sites, tmp_path):
    with orders_at_main_site(sites.main_stub, sites.main.nbd_address, tmp_path) as orders:
        pairs = {}
        for name in ("stock", "sales"):
            ldev = sites.main_stub.GetLdev(pb.GetLdevRequest(name=name))
            pairs[name] = sites.main_stub.CreatePair(pb.CreatePairRequest(group_name="shop", pvol_id=ldev.id))
        svols = [pairs["stock"].remote_ldev_id, pairs["sales"].remote_ldev_id]
        sites.wait_backup_states("shop", pb.PAIR)
        rng = random.Random(50)
        groups = []
        for n in range(SPLITS):
            time.sleep(rng.uniform(0.02, 0.2))
            groups.append(
                sites.backup_stub.CreateSnapshotGroup(pb.CreateSnapshotGroupRequest(name=f"split-{n}", ldev_ids=svols))
            )
        assert ecommerce.stop(orders) == 0
    seen = []
    for group in groups:
        by_svol = {s.ldev_id: s.id for s in group.snapshots}
        clones = {}
        for name, svol in zip(("stock", "sales"), svols, strict=True):
            clone = sites.backup_stub.CloneLdev(
                pb.CloneLdevRequest(open_to_all=True, name=f"{group.name}-{name}", snapshot_id=by_svol[svol])
            )
            while sites.backup_stub.GetLdev(pb.GetLdevRequest(id=clone.id)).state != pb.LDEV_STATE_NORMAL:
                time.sleep(0.02)
            clones[name] = clone
        copies = {name: tmp_path / "copies" / group.name / name for name in clones}
        with (
            attached(nbd_uri(sites.backup.nbd_address, clones["stock"].export_name), tmp_path / "f1") as one,
            attached(nbd_uri(sites.backup.nbd_address, clones["sales"].export_name), tmp_path / "f2") as two,
            mounted(one, copies["stock"]),
            mounted(two, copies["sales"]),
        ):
            seen.append(check(copies["stock"], copies["sales"]))
        for clone in clones.values():  # the NBD close reaches the array a moment after the detach
            assert wait_for(lambda c=clone: sites.backup_stub.GetLdev(pb.GetLdevRequest(id=c.id)).open_sessions == 0)
            sites.backup_stub.DeleteLdev(pb.DeleteLdevRequest(id=clone.id))
        sites.backup_stub.DeleteSnapshotGroup(pb.DeleteSnapshotGroupRequest(id=group.id))
    assert len(seen) == SPLITS
    # Pairing began after the first whole order was committed: every split point must hold it.
    assert min(sold for _, sold in seen) >= 1, f"a split point lost an order committed before pairing: {seen}"
    assert seen[-1][0] > seen[0][0], f"the orders did not move during the split points: {seen[0]} .. {seen[-1]}"

    # Proof 3: orders stopped, file systems unmounted: once the lag is zero, S-VOL == P-VOL.
    sites.wait_in_sync("shop")
    for name, pair in pairs.items():
        main_bytes = read_all(sites.main.nbd_address, name, SIZE)
        backup_bytes = read_all(sites.backup.nbd_address, export_of(sites.backup_stub, pair.remote_ldev_id), SIZE)
        assert hashlib.sha256(main_bytes).hexdigest() == hashlib.sha256(backup_bytes).hexdigest(), name
