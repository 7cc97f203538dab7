"""The link to the other array: backend.replication.remote.RemoteArray over its management API."""

from __future__ import annotations

import time
from collections.abc import Generator
from functools import cached_property

import grpc

from backend import errors
from backend.api.error_table import ERROR_TABLE
from backend.api.lag_messages import unapplied_from
from backend.journal import Unapplied
from backend.replication.remote import BaseChunk, DigestPart, JournalBatch, LinkDown, PVolFacts
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.rpc import TlsFiles, client_channel

MESSAGE_BYTES = 64 << 20
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MESSAGE_BYTES),
    ("grpc.max_send_message_length", MESSAGE_BYTES),
]
# The link must come back within a fraction of a second after a cut: gRPC's
# default reconnect backoff (1 s, growing to 2 min) would leave replication
# idle long after the network healed.
LINK_OPTIONS = [
    *CHANNEL_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.keepalive_time_ms", 10000),
]
# A verify's answers come as the backup digests its S-VOLs: long for large ones.
VERIFY_TIMEOUT = 6 * 3600.0
_BY_CODE = {code: cls for cls, code in ERROR_TABLE.items()}


class RemoteClient:
    def __init__(self, address: str, tls: TlsFiles | None = None, timeout: float = 30.0, delay: float = 0.0) -> None:
        self.address = address
        self.delay = delay  # emulated round-trip time of a long link, added to every call
        self.channel = client_channel(address, tls, LINK_OPTIONS)
        self.stub = pb_grpc.ArrayStub(self.channel)
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: str, request: object, timeout: float | None = None) -> object:
        if self.delay:
            time.sleep(self.delay)
        try:
            return getattr(self.stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise self._domain_error(exc) from exc

    def _domain_error(self, exc: grpc.RpcError) -> errors.ArrayError:
        """The other array's status as the domain error it stands for (no answer: LinkDown)."""
        code = exc.code()  # type: ignore[attr-defined]
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return LinkDown(f"array at {self.address}: {exc.details()}")  # type: ignore[attr-defined]
        return _BY_CODE.get(code, errors.ArrayError)(f"remote: {exc.details()}")  # type: ignore[attr-defined]

    @cached_property
    def serial(self) -> int:
        return self._call("GetArrayInfo", pb.GetArrayInfoRequest()).serial  # type: ignore[attr-defined]

    def prepare_secondary(
        self,
        group_name: str,
        capacity: int,
        main_serial: int,
        pvol: PVolFacts,
        svol_id: int = 0,
    ) -> int:
        request = pb.PrepareSecondaryRequest(
            group_name=group_name, capacity_bytes=capacity, main_serial=main_serial, pvol_id=pvol.id,
            pvol_name=pvol.name, size_bytes=pvol.size, svol_id=svol_id, open_to_all=pvol.open_to_all,
            labels=dict(pvol.labels),
        )  # fmt: skip
        return self._call("PrepareSecondary", request).svol_id  # type: ignore[attr-defined]

    def start_copy(self, group_name: str, pvol_id: int, base_snapshot: int) -> None:
        self._call(
            "StartCopy", pb.StartCopyRequest(group_name=group_name, pvol_id=pvol_id, base_snapshot_id=base_snapshot)
        )

    def fence(self, group_name: str) -> None:
        self._call("FenceJournalGroup", pb.FenceJournalGroupRequest(name=group_name, fenced=True))

    def failback(self, group_name: str) -> None:
        self._call("Failback", pb.FailbackRequest(group_name=group_name), timeout=120)

    def group_view(self, group_name: str) -> pb.JournalGroup:
        """The other array's view of a group (for `GetPeerJournalGroup`); LinkDown if it does not answer."""
        return self._call("GetJournalGroup", pb.GetJournalGroupRequest(name=group_name), timeout=10)  # type: ignore[return-value]

    def split(self, group_name: str) -> int:
        return self._call("SplitPairs", pb.SplitPairsRequest(group_name=group_name)).split_seq  # type: ignore[attr-defined]

    def describe_unapplied(self, group_name: str, applied_seq: int) -> Unapplied:
        request = pb.DescribeUnappliedRequest(group_name=group_name, applied_seq=applied_seq)
        return unapplied_from(self._call("DescribeUnapplied", request))  # type: ignore[arg-type]

    def prepare_resync(self, group_name: str) -> dict[int, bytes]:
        return _bitmaps(self._call("PrepareResync", pb.PrepareResyncRequest(group_name=group_name)))

    def delete_secondary(self, group_name: str, pvol_id: int) -> None:
        self._call("DeleteSecondary", pb.DeleteSecondaryRequest(group_name=group_name, pvol_id=pvol_id))

    def delete_group(self, group_name: str) -> None:
        self._call("DeleteJournalGroup", pb.DeleteJournalGroupRequest(name=group_name))

    def demote(self, group_name: str, applied_seq: int, last_seq: int) -> dict[int, bytes]:
        request = pb.DemoteRequest(group_name=group_name, applied_seq=applied_seq, last_seq=last_seq)
        return _bitmaps(self._call("Demote", request))

    def pull_journal(
        self, group_name: str, from_seq: int, applied_seq: int, max_bytes: int, wait: float
    ) -> JournalBatch:
        request = pb.PullJournalRequest(
            group_name=group_name, from_seq=from_seq, applied_seq=applied_seq, max_bytes=max_bytes,
            wait_ms=int(wait * 1000),
        )  # fmt: skip
        answer = self._call("PullJournal", request, timeout=self.timeout + wait)
        return JournalBatch(
            answer.records,  # type: ignore[attr-defined]
            answer.split_seq if answer.split else None, answer.svol_writable,  # type: ignore[attr-defined]
            pb.PairState.Name(answer.split_state) if answer.split_state else "PSUS",  # type: ignore[attr-defined]
            answer.synchronous, unapplied_from(answer.unapplied),  # type: ignore[attr-defined]
        )  # fmt: skip

    def read_base(self, pvol_id: int, snapshot_id: int, offset: int, max_bytes: int, end: int = 0) -> BaseChunk:
        request = pb.ReadBaseRequest(
            pvol_id=pvol_id, snapshot_id=snapshot_id, offset=offset, max_bytes=max_bytes, end_offset=end
        )
        answer = self._call("ReadBase", request)
        pieces = [(p.offset, p.data) for p in answer.pieces]  # type: ignore[attr-defined]
        return BaseChunk(pieces, answer.next_offset, answer.total_bytes)  # type: ignore[attr-defined]

    def complete_initial_copy(self, group_name: str, pvol_id: int) -> None:
        self._call("CompleteInitialCopy", pb.CompleteInitialCopyRequest(group_name=group_name, pvol_id=pvol_id))

    def secondary_digests(
        self, group_name: str, seq: int, region_bytes: int, at_split: bool
    ) -> Generator[DigestPart, None, None]:
        request = pb.SecondaryDigestsRequest(
            group_name=group_name, seq=seq, region_bytes=region_bytes, at_split=at_split
        )
        if self.delay:
            time.sleep(self.delay)
        answers = self.stub.SecondaryDigests(request, timeout=VERIFY_TIMEOUT)
        try:
            for answer in answers:
                yield DigestPart(
                    answer.cut, answer.pvol_id, answer.svol_id, answer.size_bytes, answer.first_region,
                    answer.digests, answer.changed,
                )  # fmt: skip
        except grpc.RpcError as exc:
            raise self._domain_error(exc) from exc
        finally:
            answers.cancel()  # closed early (the verify failed here): the backup drops its snapshots


def _bitmaps(answer: object) -> dict[int, bytes]:
    """A DiffBitmaps answer as {LDEV id: bits}."""
    return {b.pvol_id: b.bits for b in answer.bitmaps}  # type: ignore[attr-defined]
