"""Takeover at the backup: refused when unsafe, lossless when the main array answers,
at a consistent sequence with an estimate of the loss when it was killed mid-load."""

from __future__ import annotations

from pathlib import Path

import grpc

from ccopy.waiting import replication_progress, wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from tests.api.test_array_api import code_of
from tests.integration.nbd_raw import RawClient
from tests.replication.conftest import read_all
from tests.replication.test_ordering_under_faults import RECORDS_END, Harness, prefix
from tests.replication.test_remote_copy import write
from tests.replication.test_split_resync import digest, paired_shop

MIB = 1 << 20


def test_takeover_refused_while_pair_then_forced_with_the_main_array_answering_gives_up_nothing(sites):
    pairs = paired_shop(sites)
    write(sites.main.nbd_address, "sales", 2 * MIB, b"last sale" * 1000)
    request = pb.TakeoverRequest(group_name="shop")
    assert code_of(sites.backup_stub.Takeover, request) == grpc.StatusCode.FAILED_PRECONDITION  # PAIR: force
    assert code_of(sites.main_stub.Takeover, request) == grpc.StatusCode.FAILED_PRECONDITION  # the main side

    taken = sites.backup_stub.Takeover(pb.TakeoverRequest(group_name="shop", force=True))
    assert {p.state for p in taken.group.pairs} == {pb.SSWS}
    assert taken.given_up.exact and taken.given_up.records == 0 and taken.given_up.bytes == 0
    main = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop"))
    assert main.split and taken.group.applied_seq == main.main_seq  # drained to the last write
    for name, pair in pairs.items():
        svol = sites.backup_stub.GetLdev(pb.GetLdevRequest(id=pair.remote_ldev_id))
        assert not svol.read_only
        assert digest(sites.backup.nbd_address, svol.export_name) == digest(sites.main.nbd_address, name)
    write(sites.backup.nbd_address, svol.export_name, 0, b"written at the backup site")  # a writable primary
    again = sites.backup_stub.Takeover(pb.TakeoverRequest(group_name="shop"))
    assert {p.state for p in again.group.pairs} == {pb.SSWS} and again.given_up.exact  # idempotent


def test_forced_takeover_after_the_main_array_died_mid_load_is_consistent(tmp_path: Path):
    h = Harness(tmp_path, ["shop", "shop"])
    try:
        with grpc.insecure_channel(h.backup.api_address) as channel:
            stub = pb_grpc.ArrayStub(channel)
            wait_progressing(
                lambda: stub.GetJournalGroup(pb.GetJournalGroupRequest(name="shop")),
                lambda g: {p.state for p in g.pairs} == {pb.PAIR}, "the initial copy", progress=replication_progress,
            )  # fmt: skip
            h.writer.start()
            wait_progressing(lambda: h.writer.acked, lambda acked: acked >= 200, "the writer")
            h.main.kill()  # the main site is gone, mid-write
            h.writer.stop.set()
            taken = stub.Takeover(pb.TakeoverRequest(group_name="shop", force=True))
            assert {p.state for p in taken.group.pairs} == {pb.SSWS}
            assert not taken.given_up.exact  # estimated: the main array did not answer
            assert taken.given_up.records == max(0, taken.group.main_seq - taken.group.applied_seq)
            two = prefix(read_all(h.backup.nbd_address, h.exports[2], RECORDS_END), 2)
            one = prefix(read_all(h.backup.nbd_address, h.exports[1], RECORDS_END), 1)
            assert two <= one and one >= 100  # a consistent point, and most of what was acknowledged
            client = RawClient(h.backup.nbd_address)
            client.go(h.exports[2])
            assert client.write(RECORDS_END, b"business goes on at the backup site") == 0
            client.close()
    finally:
        h.writer.stop.set()
        h.link.close()
        h.backup.stop()
