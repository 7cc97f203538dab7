"""Two array processes, main and backup site, linked to each other."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from ccopy.launch import ArrayProcessHandle, free_port
from ccopy.waiting import replication_progress, wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from tests.integration.nbd_raw import RawClient


@dataclass
class Sites:
    main: ArrayProcessHandle
    backup: ArrayProcessHandle
    main_stub: pb_grpc.ArrayStub
    backup_stub: pb_grpc.ArrayStub
    channels: list[grpc.Channel]

    def reconnect(self) -> None:
        for channel in self.channels:
            channel.close()
        main = grpc.insecure_channel(self.main.api_address)
        backup = grpc.insecure_channel(self.backup.api_address)
        self.channels = [main, backup]
        self.main_stub, self.backup_stub = pb_grpc.ArrayStub(main), pb_grpc.ArrayStub(backup)

    def group_views(self, group: str, swapped: bool = False) -> tuple[pb.JournalGroup, pb.JournalGroup]:
        """(view of the array holding the P-VOLs, view of the one holding the S-VOLs) of a journal
        group; `swapped` after a failback, when the backup array holds the P-VOLs."""
        request = pb.GetJournalGroupRequest(name=group)
        views = self.main_stub.GetJournalGroup(request), self.backup_stub.GetJournalGroup(request)
        return (views[1], views[0]) if swapped else views

    def wait_in_sync(self, group: str, swapped: bool = False, stall: float = 60.0) -> pb.JournalGroup:
        """Until every pair is PAIR and the S-VOLs' array applied all the P-VOLs' array has (the
        S-VOLs' view is returned); fails only when the copy or the catch-up stops moving for
        `stall` seconds."""

        def in_sync(views: tuple[pb.JournalGroup, pb.JournalGroup]) -> bool:
            main, backup = views
            paired = main.pairs and all(p.state == pb.PAIR for p in list(main.pairs) + list(backup.pairs))
            return bool(paired) and backup.applied_seq == main.main_seq and main.pending_records == 0

        views = wait_progressing(
            lambda: self.group_views(group, swapped), in_sync, f"group {group} reaching PAIR, in sync",
            progress=lambda v: replication_progress(*v), stall=stall,
        )  # fmt: skip
        return views[1]

    def wait_backup_states(self, group: str, *states: int, stall: float = 60.0) -> pb.JournalGroup:
        """Until the backup shows every pair of `group` in one of `states`."""
        request = pb.GetJournalGroupRequest(name=group)
        return wait_progressing(
            lambda: self.backup_stub.GetJournalGroup(request),
            lambda g: bool(g.pairs) and all(p.state in states for p in g.pairs),
            f"group {group} at the backup reaching {[pb.PairState.Name(s) for s in states]}",
            progress=replication_progress, stall=stall,
        )  # fmt: skip


def start_sites(tmp_path: Path, *extra_args: str, serials: tuple[int, int] = (1001, 2002)) -> Sites:
    """A main and a backup array process, each linked to the other (`extra_args` to both)."""
    main_api, backup_api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    main = ArrayProcessHandle(
        pool=tmp_path / "main", serial=serials[0], log_path=tmp_path / "main.log", api=main_api,
        extra_args=["--remote", backup_api, *extra_args],
    ).start()  # fmt: skip
    backup = ArrayProcessHandle(
        pool=tmp_path / "backup", serial=serials[1], log_path=tmp_path / "backup.log", api=backup_api,
        extra_args=["--remote", main_api, *extra_args],
    ).start()  # fmt: skip
    pair = Sites(main, backup, None, None, [])  # type: ignore[arg-type]
    pair.reconnect()
    return pair


def stop_sites(pair: Sites) -> None:
    for channel in pair.channels:
        channel.close()
    pair.main.stop()
    pair.backup.stop()


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[Sites]:
    pair = start_sites(tmp_path)
    yield pair
    stop_sites(pair)


def when_linked(call, request, timeout: float = 60.0):
    """Call an RPC that needs the other array, until the link is back after a restart."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call(request)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def export_of(stub: pb_grpc.ArrayStub, ldev_id: int) -> str:
    return stub.GetLdev(pb.GetLdevRequest(id=ldev_id)).export_name


def read_all(address: str, export: str, size: int) -> bytes:
    client = RawClient(address)
    client.go(export)
    out = bytearray()
    while len(out) < size:
        error, data = client.read(len(out), min(8 << 20, size - len(out)))
        assert error == 0
        out += data
    client.disconnect()
    return bytes(out)
