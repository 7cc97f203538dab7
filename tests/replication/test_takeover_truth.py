"""A forced takeover after kill -9 of the main array tells the truth about what was lost.

A writer keeps the main array busier than a slow link can carry, so the backup knows
of writes it has not received; the link is then cut (the backup's last contact), the
writer goes on, and the main array is killed, then the backup too (restarted: what it
heard must have been kept durably). The backup's report must equal what the
dead array's journal held as of that contact (read back from its segment files), never
less, and must say that writes after the contact cannot be known: there were some.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import grpc
import pytest

from backend.journal import Journal
from ccopy.launch import ArrayProcessHandle, free_port
from ccopy.waiting import replication_progress, wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from tests.integration.nbd_raw import RawClient
from tests.replication.link import CuttableLink

MIB = 1 << 20
RECORD = 256 << 10
SIZE = 64 * MIB
LINK_DELAY = 0.25  # each hop: a pull carries at most 4 MiB per round trip, the writer outpaces it


class Writer(threading.Thread):
    """256 KiB writes round the LDEV, each acknowledged before the next."""

    def __init__(self, address: str, export: str) -> None:
        super().__init__(daemon=True)
        self.address, self.export = address, export
        self.acked = 0
        self.stop = threading.Event()

    def run(self) -> None:
        client = RawClient(self.address)
        client.go(self.export)
        try:
            while not self.stop.is_set():
                offset = (self.acked * RECORD) % SIZE
                if client.write(offset, bytes([self.acked % 251]) * RECORD) != 0:
                    return
                self.acked += 1
        except OSError:
            return  # the main array was killed under the write


@pytest.mark.timeout(600)
def test_forced_takeover_reports_what_the_dead_main_array_held_as_of_last_contact(tmp_path: Path):
    main_api, backup_api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    link = CuttableLink(main_api, delay=LINK_DELAY)
    main = ArrayProcessHandle(pool=tmp_path / "main", serial=31, log_path=tmp_path / "main.log", api=main_api,
                              extra_args=["--remote", backup_api]).start()  # fmt: skip
    backup = ArrayProcessHandle(pool=tmp_path / "backup", serial=32, log_path=tmp_path / "backup.log",
                                api=backup_api, extra_args=["--remote", link.address]).start()  # fmt: skip
    writer: Writer | None = None
    try:
        with grpc.insecure_channel(main_api) as m, grpc.insecure_channel(backup_api) as b:
            main_stub, backup_stub = pb_grpc.ArrayStub(m), pb_grpc.ArrayStub(b)
            ldev = main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="orders", size_bytes=SIZE))
            main_stub.CreatePair(pb.CreatePairRequest(group_name="shop", pvol_id=ldev.id))
            request = pb.GetJournalGroupRequest(name="shop")
            wait_progressing(
                lambda: backup_stub.GetJournalGroup(request), lambda g: {p.state for p in g.pairs} == {pb.PAIR},
                "the initial copy", progress=replication_progress,
            )  # fmt: skip
            group_id = main_stub.GetJournalGroup(request).id

            writer = Writer(main.nbd_address, ldev.export_name)
            writer.start()
            # The backup has heard of writes it does not hold yet: the link carries less than the writer writes.
            wait_progressing(
                lambda: backup_stub.GetJournalGroup(request), lambda g: g.pending_records > 0 and g.applied_seq > 0,
                "the backup hearing of writes it has not received", progress=replication_progress,
            )  # fmt: skip
            link.cut()  # the last contact
            acked_at_cut = writer.acked
            wait_progressing(lambda: writer.acked, lambda acked: acked >= acked_at_cut + 20, "writes after the cut")
            main.kill()  # the main site is gone; its files are what it acknowledged
            writer.stop.set()
            seen = backup_stub.GetJournalGroup(request)
            assert seen.HasField("last_contact") and seen.pending_records > 0  # the backup's own view of its lag
        backup.kill()  # and the backup crashes too: what it heard was kept durably
        backup.start()
        with grpc.insecure_channel(backup_api) as b:
            taken = pb_grpc.ArrayStub(b).Takeover(pb.TakeoverRequest(group_name="shop", force=True), timeout=120)
            lost, applied = taken.given_up, taken.group.applied_seq

        truth = read_journal(tmp_path / "main" / "journals" / f"{group_id:06x}", tmp_path / "dead-journal")
        contact = lost.last_contact.ToNanoseconds()
        missing = [(seq, size, ts) for seq, size, ts in truth if seq > applied]
        as_of_contact = [(seq, size, ts) for seq, size, ts in missing if ts <= contact]
        after = len(missing) - len(as_of_contact)
        print(f"given up: {lost.records} records, {lost.bytes} bytes, {lost.seconds:.3f} s as of contact; "
              f"truth then: {len(as_of_contact)} records; after the contact: {after}")  # fmt: skip
        assert not lost.exact and lost.HasField("last_contact")
        assert len(as_of_contact) > 0, "the scenario must leave the backup behind at its last contact"
        assert lost.records == len(as_of_contact) and lost.bytes == sum(size for _, size, _ in as_of_contact)
        span = (as_of_contact[-1][2] - as_of_contact[0][2]) / 1e9
        assert lost.seconds >= span
        assert len(missing) > len(as_of_contact), "writes after the contact existed: the report must not be all"
        stamps = {seq: ts for seq, _, ts in truth}
        if applied in stamps:  # still in the dead journal unless its segment was retired
            assert lost.recovery_point.ToNanoseconds() == stamps[applied]
    finally:
        if writer is not None:
            writer.stop.set()
        link.close()
        main.kill()
        backup.stop()


def read_journal(folder: Path, copy: Path) -> list[tuple[int, int, int]]:
    """(sequence, journal bytes, main-site time) of every record in a dead array's journal
    files, read from a copy (opening a journal may cut a torn tail)."""
    shutil.copytree(folder, copy)
    journal = Journal(copy, capacity=1 << 40)
    try:
        return [(e.seq, e.size, e.timestamp_ns) for e in journal.entries]
    finally:
        journal.close()
