"""Takeover on real software: the main site becomes unreachable while orders run; the backup takes over
with force and its S-VOLs, mounted as they are, hold databases that open cleanly with no sale lacking its
stock change."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from ccopy import ecommerce
from ccopy.ecommerce import check
from ccopy.launch import ArrayProcessHandle, free_port
from ccopy.waiting import replication_progress, wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from csi_driver.attach import attached, mounted, nbd_uri
from tests.conftest import require_root, require_tools
from tests.replication.link import CuttableLink
from tests.replication.test_ecommerce_backup import orders_at_main_site

SIZE = 128 << 20


@pytest.fixture(autouse=True)
def node_tools():
    require_root()
    require_tools("nbdfuse", "losetup", "mkfs.ext4", "fusermount3")


def test_forced_takeover_mid_orders_gives_databases_that_open_cleanly(tmp_path: Path):
    main_api, backup_api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    link = CuttableLink(main_api, delay=0.002)
    main = ArrayProcessHandle(
        pool=tmp_path / "main", serial=1, log_path=tmp_path / "main.log", api=main_api,
        extra_args=["--remote", backup_api],
    ).start()  # fmt: skip
    backup = ArrayProcessHandle(
        pool=tmp_path / "backup", serial=2, log_path=tmp_path / "backup.log", api=backup_api,
        extra_args=["--remote", link.address],
    ).start()  # fmt: skip
    try:
        with grpc.insecure_channel(main_api) as m, grpc.insecure_channel(backup_api) as b:
            main_stub, backup_stub = pb_grpc.ArrayStub(m), pb_grpc.ArrayStub(b)
            with orders_at_main_site(main_stub, main.nbd_address, tmp_path) as orders:
                svols = {}
                for name in ("stock", "sales"):
                    ldev = main_stub.GetLdev(pb.GetLdevRequest(name=name))
                    pair = main_stub.CreatePair(pb.CreatePairRequest(group_name="shop", pvol_id=ldev.id))
                    svols[name] = pair.remote_ldev_id
                wait_progressing(
                    lambda: backup_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop")),
                    lambda g: {p.state for p in g.pairs} == {pb.PAIR}, "the initial copy",
                    progress=replication_progress,
                )  # fmt: skip
                time.sleep(1.5)  # orders replicate for a while ...
                link.cut()  # ... then the main site is gone, mid-order
                taken = backup_stub.Takeover(pb.TakeoverRequest(group_name="shop", force=True), timeout=60)
                assert {p.state for p in taken.group.pairs} == {pb.SSWS} and not taken.given_up.exact
                assert ecommerce.stop(orders) == 0  # the main site's hosts never noticed
            exports = {n: backup_stub.GetLdev(pb.GetLdevRequest(id=i)).export_name for n, i in svols.items()}
            copies = {name: tmp_path / "backup" / name for name in exports}
            with (
                attached(nbd_uri(backup.nbd_address, exports["stock"]), tmp_path / "b1") as one,
                attached(nbd_uri(backup.nbd_address, exports["sales"]), tmp_path / "b2") as two,
                mounted(one, copies["stock"]),  # writable: ext4 replays its journal on the S-VOL itself
                mounted(two, copies["sales"]),
            ):
                changes, sales = check(copies["stock"], copies["sales"])
            assert sales > 0 and changes >= sales
    finally:
        link.close()
        main.stop()
        backup.stop()
