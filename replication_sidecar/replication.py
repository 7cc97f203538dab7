"""csi-addons replication service: VolumeReplication calls mapped onto journal groups.

A source is one volume (its own journal group, named by its volume id) or a
volume group (its journal group). What each call does, by the side this
array holds:

- Enable: main side, pair the volume(s) (idempotent); backup side, nothing to pair.
- Disable: main side, delete the pairs (the S-VOLs stay as LDEVs); backup side, the
  main site decides.
- Promote: main side, primary already, or demoted: unfenced unless the other site
  took over. Backup side, a takeover: lossless when the main site answers and was
  demoted; FAILED_PRECONDITION when it does not answer (then `force`); UNAVAILABLE
  while it is still primary.
- Demote: main side, fence (hosts stop writing, replication drains); backup side,
  secondary already.
- Resync: a demoted main side the other site took over asks it to fail back; a split
  or suspended one is resynced; `ready` once every pair is PAIR.
- GetVolumeReplicationInfo: `status.replication_info` of this array's view.
- GetReplicationDestinationInfo: the S-VOLs' ids at the backup array (at the backup
  side: FAILED_PRECONDITION, this is the destination).

The manager retries PromoteVolume with `force` right after
FAILED_PRECONDITION, so that code means only "the main site does not answer":
while the main site is still primary the answer is UNAVAILABLE (the manager
backs off and asks again), so no promotion ever makes two primaries unless a
person forces it.
"""

from __future__ import annotations

import logging
import time

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from ccopy import ids
from ccopy.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ccopy_api import array_pb2 as pb
from ccopy_api.csiaddons import replication_pb2 as rp
from ccopy_api.csiaddons import replication_pb2_grpc as rp_grpc
from replication_sidecar.journal_groups import BACKUP, JournalGroups
from replication_sidecar.parameters import parse_parameters
from replication_sidecar.status import replication_info

log = logging.getLogger(__name__)

SUSPENDED = {pb.PSUS, pb.PSUE, pb.PFUS}
Status = rp.GetVolumeReplicationInfoResponse


class ReplicationServicer(rp_grpc.ControllerServicer):
    def __init__(self, groups: JournalGroups) -> None:
        self.groups = groups

    # -- the source of a call --------------------------------------------------------------
    def source(self, source: rp.ReplicationSource) -> tuple[pb.Ldev | None, str]:
        """(the volume, for a volume source; the journal group name, whether it exists or not)."""
        kind = source.WhichOneof("type")
        if kind == "volume":
            ldev = self.groups.volume(source.volume.volume_id)
            pair = self.groups.pair_of(ldev.id)
            return ldev, pair.group_name if pair else source.volume.volume_id
        if kind == "volumegroup":
            return None, self.groups.name_of(source.volumegroup.volume_group_id)
        raise InvalidArgument("replication_source must name a volume or a volume group")

    def existing(self, source: rp.ReplicationSource) -> pb.JournalGroup:
        _, name = self.source(source)
        group = self.groups.find(name)
        if group is None:
            raise NotFound(f"{describe(source)} is not replicated")
        return group

    # -- the calls ---------------------------------------------------------------------------
    def EnableVolumeReplication(
        self, request: rp.EnableVolumeReplicationRequest, context: grpc.ServicerContext
    ) -> rp.EnableVolumeReplicationResponse:
        parameters = parse_parameters(request.parameters)
        ldev, name = self.source(request.replication_source)
        with self.groups.locks.hold(name):
            group = self.groups.find(name)
            if ldev is not None and (group is None or group.role != BACKUP):
                self.own_group_only(ldev, name, request.replication_source)
                group = self.groups.ensure(name, parameters)
                self.groups.set_members(group, [ldev], add_only=True)
            elif group is None:
                raise NotFound(f"{describe(request.replication_source)} does not exist")
            elif group.role != BACKUP and "rpoSeconds" in request.parameters:
                update = pb.UpdateJournalGroupRequest(name=name, rpo_seconds=parameters.rpo_seconds)
                self.groups.array.call("UpdateJournalGroup", update)
        return rp.EnableVolumeReplicationResponse()

    def DisableVolumeReplication(
        self, request: rp.DisableVolumeReplicationRequest, context: grpc.ServicerContext
    ) -> rp.DisableVolumeReplicationResponse:
        ldev, name = self.source(request.replication_source)
        with self.groups.locks.hold(name):
            group = self.groups.find(name)
            if group is None or group.role == BACKUP:  # gone already, or the main site's to end
                return rp.DisableVolumeReplicationResponse()
            if ldev is not None:
                self.own_group_only(ldev, name, request.replication_source)
            group = self.groups.set_members(group, [])
            if ldev is not None:  # a volume's own group goes with its pair
                self.groups.delete(group)
        return rp.DisableVolumeReplicationResponse()

    def PromoteVolume(
        self, request: rp.PromoteVolumeRequest, context: grpc.ServicerContext
    ) -> rp.PromoteVolumeResponse:
        group = self.existing(request.replication_source)
        with self.groups.locks.hold(group.name):
            if group.role == BACKUP:
                self.take_over(group, request.force)
            elif group.fenced:
                self.unfence(group, request.force)
        return rp.PromoteVolumeResponse()  # primary here (already, or now)

    def take_over(self, group: pb.JournalGroup, force: bool) -> None:
        """At the backup: lossless while the main site answers and was demoted; without it,
        only with force. FAILED_PRECONDITION means exactly "the main site does not answer"."""
        if group.pairs and all(p.state == pb.SSWS for p in group.pairs):
            return
        if not force:
            peer = self.groups.peer(group.name)
            if peer is None:
                raise FailedPrecondition(
                    f"journal group {group.name}: the main site does not answer; promoting gives up the writes it "
                    "did not send (force to take over)"
                )
            if not peer.fenced:
                raise Unavailable(f"journal group {group.name} is still primary at the main site: demote it first")
        taken = self.groups.array.call("Takeover", pb.TakeoverRequest(group_name=group.name, force=True), timeout=120)
        lost = taken.given_up
        log.warning(
            "promoted group=%s forced=%s given_up_records=%d given_up_bytes=%d given_up_seconds=%.3f exact=%s",
            group.name, force, lost.records, lost.bytes, lost.seconds, lost.exact,
        )  # fmt: skip

    def unfence(self, group: pb.JournalGroup, force: bool) -> None:
        """A demoted main side becomes primary again, unless the other site took over meanwhile."""
        peer = self.groups.peer(group.name)
        if peer is None and not force:
            raise FailedPrecondition(
                f"journal group {group.name}: the other site does not answer and may have taken over; force to "
                "write here again"
            )
        if peer is not None and any(p.state == pb.SSWS for p in peer.pairs):
            raise Unavailable(f"journal group {group.name}: the other site took over and is primary; fail back first")
        self.groups.array.call("FenceJournalGroup", pb.FenceJournalGroupRequest(name=group.name, fenced=False))
        log.info("promoted group=%s unfenced=true", group.name)

    def DemoteVolume(self, request: rp.DemoteVolumeRequest, context: grpc.ServicerContext) -> rp.DemoteVolumeResponse:
        group = self.existing(request.replication_source)
        if group.role == BACKUP:
            if any(p.state == pb.SSWS for p in group.pairs):
                raise Unavailable(
                    f"journal group {group.name} was taken over here: the other site must fail back first "
                    "(demote and resync it there)"
                )
            return rp.DemoteVolumeResponse()  # secondary already
        if not group.fenced:
            with self.groups.locks.hold(group.name):
                self.groups.array.call("FenceJournalGroup", pb.FenceJournalGroupRequest(name=group.name, fenced=True))
            log.warning("demoted group=%s fenced=true", group.name)
        return rp.DemoteVolumeResponse()

    def ResyncVolume(self, request: rp.ResyncVolumeRequest, context: grpc.ServicerContext) -> rp.ResyncVolumeResponse:
        group = self.existing(request.replication_source)
        states = {p.state for p in group.pairs}
        if group.role != BACKUP and group.fenced:  # demoted: once the other site took over, it fails back to us
            peer = self.groups.peer(group.name)
            if peer is not None and peer.pairs and all(p.state == pb.SSWS for p in peer.pairs):
                try:
                    with self.groups.locks.hold(group.name):
                        request_ = pb.FailbackRequest(group_name=group.name)
                        self.groups.array.call("RequestFailback", request_, timeout=150)
                    log.warning("failback_requested group=%s", group.name)
                except Unavailable as exc:  # the link is just back: the manager asks again in 30 s
                    log.info("failback_not_yet group=%s reason=%s", group.name, exc)
            return rp.ResyncVolumeResponse(ready=False)
        if group.role != BACKUP and states & SUSPENDED:
            with self.groups.locks.hold(group.name):
                self.groups.array.call("ResyncPairs", pb.ResyncPairsRequest(group_name=group.name), timeout=120)
            log.info("resync_started group=%s from=%s", group.name, sorted(pb.PairState.Name(s) for s in states))
            return rp.ResyncVolumeResponse(ready=False)
        return rp.ResyncVolumeResponse(ready=bool(states) and states == {pb.PAIR})

    def GetVolumeReplicationInfo(
        self, request: rp.GetVolumeReplicationInfoRequest, context: grpc.ServicerContext
    ) -> rp.GetVolumeReplicationInfoResponse:
        group = self.existing(request.replication_source)
        info = replication_info(group, group.rpo_seconds, time.time_ns())
        answer = rp.GetVolumeReplicationInfoResponse(
            status=Status.Status.Value(info.status), status_message=info.message
        )
        if info.recovery_point_ns is not None:
            answer.last_sync_time.CopyFrom(Timestamp(seconds=info.recovery_point_ns // 10**9,
                                                     nanos=info.recovery_point_ns % 10**9))  # fmt: skip
            answer.last_sync_duration.CopyFrom(Duration(seconds=int(info.lag_seconds),
                                                        nanos=int(info.lag_seconds % 1 * 1e9)))  # fmt: skip
        return answer

    def GetReplicationDestinationInfo(
        self, request: rp.GetReplicationDestinationInfoRequest, context: grpc.ServicerContext
    ) -> rp.GetReplicationDestinationInfoResponse:
        source = request.replication_source
        group = self.existing(source)
        if group.role == BACKUP:
            raise FailedPrecondition(f"journal group {group.name}: this array holds the destination")
        if not group.pairs:
            raise NotFound(f"journal group {group.name} has no volumes: no destination yet")
        serial = group.pairs[0].remote_serial
        copies = {self.groups.volume_id(p.local_ldev_id): ids.volume_id(p.remote_serial, p.remote_ldev_id)
                  for p in group.pairs}  # fmt: skip
        destination = rp.ReplicationDestination()
        if source.WhichOneof("type") == "volume":
            destination.volume.volume_id = copies[source.volume.volume_id]
        else:
            destination.volumegroup.volume_group_id = self.groups.group_id(group, serial)
            destination.volumegroup.volume_ids.update(copies)
        return rp.GetReplicationDestinationInfoResponse(replication_destination=destination)

    # -- rules -------------------------------------------------------------------------------
    def own_group_only(self, ldev: pb.Ldev, name: str, source: rp.ReplicationSource) -> None:
        """A volume replicated inside a volume group is the group's: a call on the volume alone
        would split it from its consistency group."""
        if name != source.volume.volume_id:
            raise FailedPrecondition(
                f"volume {source.volume.volume_id} is replicated in volume group {name}; act on the group"
            )


def describe(source: rp.ReplicationSource) -> str:
    if source.WhichOneof("type") == "volume":
        return f"volume {source.volume.volume_id}"
    return f"volume group {source.volumegroup.volume_group_id}"
