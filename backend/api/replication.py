"""Remote-copy RPCs of the array service: a mixin of ArrayServicer.

The pair and journal-group RPCs are for administrators; the rest is the link
between arrays (the backup array pulls the main array's journal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import grpc

from backend import errors
from backend.api.lag_messages import stamp, unapplied_message
from backend.api.verify import summary_message
from backend.array import Array
from backend.model import JournalGroupRecord, PairRecord
from backend.replication.remote import PVolFacts
from backend.replication.takeover import DataGivenUp
from ccopy_api import array_pb2 as pb
from ccopy_common.ldev_id import format_ldev_id

if TYPE_CHECKING:
    from backend.api.remote_client import RemoteClient

MAX_WAIT_MS = 5000
DEFAULT_JOURNAL_CAPACITY = 1 << 30


def pair_message(array: Array, pair: PairRecord) -> pb.Pair:
    replicator = array.replicators.get(pair.group_id)
    copied, total = replicator.copy_progress.get(pair.id, (0, 0)) if replicator else (0, 0)
    ldev = array.store.find_ldev(pair.local_ldev)
    return pb.Pair(
        id=pair.id,
        group_name=array.store.get_journal_group(pair.group_id).name,
        role=pair.role,
        local_ldev_id=pair.local_ldev,
        local_display_id=format_ldev_id(pair.local_ldev),
        remote_ldev_id=pair.remote_ldev,
        remote_serial=pair.remote_serial,
        state=pb.PairState.Value(pair.state.value),
        copied_bytes=copied,
        copy_total_bytes=total,
        local_name=ldev.name if ldev else "",
        export_name=ldev.name if ldev else "",
    )


def group_message(array: Array, group: JournalGroupRecord) -> pb.JournalGroup:
    journal = array.journal_groups.journals[group.id]
    status = array.pairs.group_status(group)
    pairs = array.store.list_pairs(group.id)
    split_seq = array.journal_groups.split_point(group)
    return pb.JournalGroup(
        id=group.id,
        name=group.name,
        role=group.role,
        capacity_bytes=group.capacity,
        usage_bytes=journal.usage_bytes(),
        main_seq=int(status.get("main_seq", 0)),
        confirmed_seq=journal.confirmed_seq,
        applied_seq=group.applied_seq,
        pending_records=int(status.get("pending_records", 0)),
        pending_bytes=int(status.get("pending_bytes", 0)),
        lag_seconds=status.get("lag_seconds", 0.0),
        transfer_bytes_per_second=status.get("transfer_bytes_per_second", 0.0),
        remote_serial=group.remote_serial,
        pairs=[pair_message(array, p) for p in pairs],
        overflowed=array.journal_groups.overflowed(group),
        split=split_seq is not None,
        split_seq=split_seq or 0,
        journal_nearly_full=journal.nearly_full(),
        synchronous=group.synchronous,
        inflow_control=journal.inflow_control,
        data_overflow_watch_seconds=journal.overflow_watch,
        rpo_seconds=group.rpo_seconds,
        fenced=group.fenced,
        given_up=given_up_message(DataGivenUp.from_json(group.given_up)) if group.given_up else None,
        last_contact=stamp(int(status.get("last_contact_ns", 0))),
        recovery_point=stamp(int(status.get("recovery_point_ns", 0))),
        last_verify=summary_message(array.store.find_last_verify(group.id)),
    )


def given_up_message(given_up: DataGivenUp) -> pb.DataGivenUp:
    return pb.DataGivenUp(
        records=given_up.records, bytes=given_up.bytes, seconds=given_up.seconds, exact=given_up.exact,
        last_contact=stamp(given_up.last_contact_ns), recovery_point=stamp(given_up.recovery_point_ns),
    )  # fmt: skip


def bitmaps_message(bits: dict[int, bytes]) -> pb.DiffBitmaps:
    return pb.DiffBitmaps(bitmaps=[pb.ResyncBitmap(pvol_id=k, bits=v) for k, v in bits.items()])


class ReplicationRpcs:
    array: Array

    def CreatePair(self, request: pb.CreatePairRequest, context: grpc.ServicerContext) -> pb.Pair:
        if not request.group_name:
            raise errors.InvalidArgument("group_name is required")
        capacity = request.journal_capacity_bytes or DEFAULT_JOURNAL_CAPACITY
        pair = self.array.pairs.create_pair(
            request.group_name, request.pvol_id, capacity, request.svol_id, request.synchronous
        )
        return pair_message(self.array, pair)

    def CreateJournalGroup(
        self, request: pb.CreateJournalGroupRequest, context: grpc.ServicerContext
    ) -> pb.JournalGroup:
        capacity = request.capacity_bytes or DEFAULT_JOURNAL_CAPACITY
        group = self.array.journal_groups.create(request.name, capacity, role="main", synchronous=request.synchronous)
        if group.rpo_seconds != request.rpo_seconds:  # the objective is declared, not part of the identity
            group = self.array.journal_groups.set_rpo(group.id, request.rpo_seconds)
        return group_message(self.array, group)

    def DeleteJournalGroup(
        self, request: pb.DeleteJournalGroupRequest, context: grpc.ServicerContext
    ) -> pb.DeleteJournalGroupResponse:
        self.array.journal_groups.delete_named(request.name)
        return pb.DeleteJournalGroupResponse()

    def ListJournalGroups(
        self, request: pb.ListJournalGroupsRequest, context: grpc.ServicerContext
    ) -> pb.ListJournalGroupsResponse:
        groups = self.array.store.list_journal_groups()
        return pb.ListJournalGroupsResponse(groups=[group_message(self.array, g) for g in groups])

    def FenceJournalGroup(self, request: pb.FenceJournalGroupRequest, context: grpc.ServicerContext) -> pb.JournalGroup:
        return group_message(self.array, self.array.pair_ops.fence(request.name, request.fenced))

    def GetPeerJournalGroup(self, request: pb.GetJournalGroupRequest, context: grpc.ServicerContext) -> pb.JournalGroup:
        remote = cast("RemoteClient", self.array.link.get())  # the API process links with a RemoteClient
        return remote.group_view(request.name)

    def RequestFailback(self, request: pb.FailbackRequest, context: grpc.ServicerContext) -> pb.JournalGroup:
        return group_message(self.array, self.array.failbacks.request(request.group_name))

    def ListPairs(self, request: pb.ListPairsRequest, context: grpc.ServicerContext) -> pb.ListPairsResponse:
        group_id = None
        if request.group_name:
            group = self.array.store.find_journal_group_by_name(request.group_name)
            if group is None:
                raise errors.NotFound(f"journal group {request.group_name!r} not found")
            group_id = group.id
        pairs = self.array.store.list_pairs(group_id)
        return pb.ListPairsResponse(pairs=[pair_message(self.array, p) for p in pairs])

    def GetJournalGroup(self, request: pb.GetJournalGroupRequest, context: grpc.ServicerContext) -> pb.JournalGroup:
        group = self.array.store.find_journal_group_by_name(request.name)
        if group is None:
            raise errors.NotFound(f"journal group {request.name!r} not found")
        return group_message(self.array, group)

    def DeletePair(self, request: pb.DeletePairRequest, context: grpc.ServicerContext) -> pb.DeletePairResponse:
        self.array.pair_ops.delete_pair(request.pvol_id)
        return pb.DeletePairResponse()

    def DeleteSecondary(
        self, request: pb.DeleteSecondaryRequest, context: grpc.ServicerContext
    ) -> pb.DeletePairResponse:
        self.array.pair_ops.delete_secondary(request.group_name, request.pvol_id)
        return pb.DeletePairResponse()

    def UpdateJournalGroup(
        self, request: pb.UpdateJournalGroupRequest, context: grpc.ServicerContext
    ) -> pb.JournalGroup:
        group = self.array.store.find_journal_group_by_name(request.name)
        if group is None:
            raise errors.NotFound(f"journal group {request.name!r} not found")
        if request.HasField("rpo_seconds"):
            group = self.array.journal_groups.set_rpo(group.id, request.rpo_seconds)
        if request.HasField("inflow_control") or request.data_overflow_watch_seconds:
            inflow = request.inflow_control if request.HasField("inflow_control") else group.inflow_control
            watch = request.data_overflow_watch_seconds or None  # 0: keep the current one
            group = self.array.journal_groups.set_inflow_control(group.id, inflow, watch)
        return group_message(self.array, group)

    def SplitPairs(self, request: pb.SplitPairsRequest, context: grpc.ServicerContext) -> pb.JournalGroup:
        group = self.array.pair_ops.split(request.group_name, request.svol_writable)
        return group_message(self.array, group)

    def ResyncPairs(self, request: pb.ResyncPairsRequest, context: grpc.ServicerContext) -> pb.JournalGroup:
        group = self.array.pair_ops.resync(request.group_name)
        return group_message(self.array, group)

    def Takeover(self, request: pb.TakeoverRequest, context: grpc.ServicerContext) -> pb.TakeoverResponse:
        group, given_up = self.array.takeovers.takeover(request.group_name, request.force)
        return pb.TakeoverResponse(
            group=group_message(self.array, group),
            given_up=given_up_message(given_up),
        )

    def Failback(self, request: pb.FailbackRequest, context: grpc.ServicerContext) -> pb.JournalGroup:
        return group_message(self.array, self.array.failbacks.failback(request.group_name))

    # -- the link -----------------------------------------------------------------
    def PrepareSecondary(
        self, request: pb.PrepareSecondaryRequest, context: grpc.ServicerContext
    ) -> pb.PrepareSecondaryResponse:
        pvol = PVolFacts(
            request.pvol_id, request.pvol_name, request.size_bytes, request.open_to_all, dict(request.labels)
        )
        svol = self.array.pairs.prepare_secondary(
            request.group_name, request.capacity_bytes, request.main_serial, pvol, request.svol_id
        )
        return pb.PrepareSecondaryResponse(svol_id=svol)

    def StartCopy(self, request: pb.StartCopyRequest, context: grpc.ServicerContext) -> pb.StartCopyResponse:
        self.array.pairs.start_copy(request.group_name, request.pvol_id, request.base_snapshot_id)
        return pb.StartCopyResponse()

    def DescribeUnapplied(self, request: pb.DescribeUnappliedRequest, context: grpc.ServicerContext) -> pb.Unapplied:
        return unapplied_message(self.array.pairs.describe_unapplied(request.group_name, request.applied_seq))

    def PrepareResync(self, request: pb.PrepareResyncRequest, context: grpc.ServicerContext) -> pb.DiffBitmaps:
        return bitmaps_message(self.array.pair_ops.prepare_resync(request.group_name))

    def Demote(self, request: pb.DemoteRequest, context: grpc.ServicerContext) -> pb.DiffBitmaps:
        return bitmaps_message(self.array.failbacks.demote(request.group_name, request.applied_seq, request.last_seq))

    def PullJournal(self, request: pb.PullJournalRequest, context: grpc.ServicerContext) -> pb.PullJournalResponse:
        wait = min(request.wait_ms, MAX_WAIT_MS) / 1000
        batch = self.array.pairs.pull_journal(
            request.group_name, request.from_seq, request.applied_seq, request.max_bytes or 1 << 20, wait
        )
        return pb.PullJournalResponse(
            records=batch.records,
            # For backups of earlier versions, which read these two instead of `unapplied`.
            main_next_seq=batch.unapplied.newest_seq + 1,
            main_oldest_ns=batch.unapplied.oldest_write_ns,
            split=batch.split_seq is not None,
            split_seq=batch.split_seq or 0,
            svol_writable=batch.svol_writable,
            split_state=pb.PairState.Value(batch.split_state),
            synchronous=batch.synchronous,
            unapplied=unapplied_message(batch.unapplied),
        )

    def ReadBase(self, request: pb.ReadBaseRequest, context: grpc.ServicerContext) -> pb.ReadBaseResponse:
        chunk = self.array.pairs.read_base(
            request.pvol_id, request.snapshot_id, request.offset, request.max_bytes or 4 << 20, request.end_offset
        )
        return pb.ReadBaseResponse(
            pieces=[pb.BasePiece(offset=o, data=d) for o, d in chunk.pieces],
            next_offset=chunk.next_offset,
            total_bytes=chunk.total_bytes,
        )

    def CompleteInitialCopy(
        self, request: pb.CompleteInitialCopyRequest, context: grpc.ServicerContext
    ) -> pb.CompleteInitialCopyResponse:
        self.array.pairs.complete_initial_copy(request.group_name, request.pvol_id)
        return pb.CompleteInitialCopyResponse()
