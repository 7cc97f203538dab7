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

from ccopy_api import array_pb2 as pb
from ccopy_api.csiaddons import replication_pb2 as rp
from ccopy_api.csiaddons import replication_pb2_grpc as rp_grpc
from ccopy_common import ids
from ccopy_common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from replication_sidecar import decisions
from replication_sidecar.decisions import BACKUP, Act
from replication_sidecar.journal_groups import JournalGroups
from replication_sidecar.parameters import parse_parameters
from replication_sidecar.status import replication_info

log = logging.getLogger(__name__)

Status = rp.GetVolumeReplicationInfoResponse


class ReplicationServicer(rp_grpc.ControllerServicer):
    """Validates, resolves the source to its journal group, and carries out what the
    rules decide (`decisions`), under the group's lock, from views read under it."""

    def __init__(self, groups: JournalGroups) -> None:
        self.groups = groups

    # -- the source of a call --------------------------------------------------------------
    def source(self, source: rp.ReplicationSource) -> tuple[pb.Ldev | None, str]:
        """(the volume, for a volume source; the name of its journal group, which may not exist yet).

        A volume replicated alone has a group of its own (`vr-<volume id>`, named at the
        site that enabled it); a volume in a volume group answers with that group."""
        kind = source.WhichOneof("type")
        if kind == "volume":
            ldev = self.groups.volume(source.volume.volume_id)
            pair = self.groups.pair_of(ldev.id)
            return ldev, pair.group_name if pair else single_group(self.groups.volume_id(ldev.id))
        if kind == "volumegroup":
            return None, self.groups.name_of(source.volumegroup.volume_group_id)
        raise InvalidArgument("replication_source must name a volume or a volume group")

    def existing(self, source: rp.ReplicationSource) -> pb.JournalGroup:
        _, name = self.source(source)
        return self.groups.must(name, f"{describe(source)} is not replicated")

    # -- the calls ---------------------------------------------------------------------------
    def EnableVolumeReplication(
        self, request: rp.EnableVolumeReplicationRequest, context: grpc.ServicerContext
    ) -> rp.EnableVolumeReplicationResponse:
        parameters = parse_parameters(request.parameters)
        ldev, name = self.source(request.replication_source)
        with self.groups.locks.hold(name):
            group = self.groups.find(name)
            if ldev is not None and (group is None or group.role != BACKUP):
                own_group_only(name, request.replication_source)
                self.groups.create_with(name, parameters, [ldev])
            elif group is None:
                raise NotFound(f"{describe(request.replication_source)} does not exist")
            elif group.role != BACKUP and "rpoSeconds" in request.parameters:
                self.groups.set_rpo(name, parameters.rpo_seconds)  # the group's other settings are its own
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
                own_group_only(name, request.replication_source)
            group = self.groups.set_members(group, [])
            if ldev is not None:  # a volume's own group goes with its pair
                self.groups.delete(group)
        return rp.DisableVolumeReplicationResponse()

    def PromoteVolume(
        self, request: rp.PromoteVolumeRequest, context: grpc.ServicerContext
    ) -> rp.PromoteVolumeResponse:
        name = self.existing(request.replication_source).name
        with self.groups.locks.hold(name):
            local = self.groups.must(name)
            decision = decisions.promote(local, self.groups.peer(name), request.force)
            self.carry_out(decision, local, request.force)
        return rp.PromoteVolumeResponse()

    def DemoteVolume(self, request: rp.DemoteVolumeRequest, context: grpc.ServicerContext) -> rp.DemoteVolumeResponse:
        name = self.existing(request.replication_source).name
        rpo = parse_parameters(request.parameters).rpo_seconds if "rpoSeconds" in request.parameters else None
        with self.groups.locks.hold(name):
            local = self.groups.must(name)
            self.carry_out(decisions.demote(local), local)
            if rpo is not None and local.rpo_seconds != rpo:
                # The manager never enables a secondary; its class's RPO reaches the backup here, for
                # the backup's reports (metrics, the registrar's ConsistentCopy).
                self.groups.set_rpo(name, rpo)
        return rp.DemoteVolumeResponse()

    def ResyncVolume(self, request: rp.ResyncVolumeRequest, context: grpc.ServicerContext) -> rp.ResyncVolumeResponse:
        name = self.existing(request.replication_source).name
        with self.groups.locks.hold(name):
            local = self.groups.must(name)
            decision = decisions.resync(local, self.groups.peer(name))
            self.carry_out(decision, local)
        return rp.ResyncVolumeResponse(ready=decision.ready)

    def carry_out(self, decision: decisions.Decision, local: pb.JournalGroup, forced: bool = False) -> None:
        act, name = decision.act, local.name
        if act is Act.WAIT:
            raise Unavailable(decision.why)
        if act is Act.REFUSE:
            raise FailedPrecondition(decision.why)
        if act is Act.TAKEOVER:
            try:
                lost = self.groups.take_over(name)
            except FailedPrecondition as exc:
                if forced:
                    raise
                raise Unavailable(f"journal group {name}: not now: {exc}") from exc  # only force may be refused
            log.warning(
                "promoted group=%s forced=%s given_up_records=%d given_up_bytes=%d given_up_seconds=%.3f exact=%s",
                name, forced, lost.records, lost.bytes, lost.seconds, lost.exact,
            )  # fmt: skip
        elif act in (Act.FENCE, Act.UNFENCE):
            self.groups.fence(name, act is Act.FENCE)
            log.warning("%s group=%s", "demoted" if act is Act.FENCE else "promoted_again", name)
        elif act is Act.FAILBACK:
            try:
                self.groups.request_failback(name)
                log.warning("failback_requested group=%s", name)
            except Unavailable as exc:  # the link is just back: the manager asks again in 30 s
                log.info("failback_not_yet group=%s reason=%s", name, exc)
        elif act is Act.RESYNC:
            self.groups.resync(name)
            log.info("resync_started group=%s", name)

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
        """The other site's copies: the S-VOLs at the main site, the P-VOLs at the backup site."""
        source = request.replication_source
        ldev, _ = self.source(source)
        group = self.existing(source)
        if not group.pairs:
            raise NotFound(f"journal group {group.name} has no volumes: no destination yet")
        copies = {self.groups.volume_id(p.local_ldev_id): ids.volume_id(p.remote_serial, p.remote_ldev_id)
                  for p in group.pairs}  # fmt: skip
        destination = rp.ReplicationDestination()
        if ldev is not None:
            destination.volume.volume_id = copies[self.groups.volume_id(ldev.id)]
        else:
            destination.volumegroup.volume_group_id = self.groups.group_id(group, group.pairs[0].remote_serial)
            destination.volumegroup.volume_ids.update(copies)
        return rp.GetReplicationDestinationInfoResponse(replication_destination=destination)


SINGLE_PREFIX = "vr-"


def single_group(volume_id: str) -> str:
    """The journal group of a volume replicated on its own (a VolumeReplication of one PVC)."""
    return SINGLE_PREFIX + volume_id


def own_group_only(name: str, source: rp.ReplicationSource) -> None:
    """A volume replicated inside a volume group is the group's: a call on the volume alone
    would split it from its consistency group. (After a relocation the volume's own group
    keeps the name it got at the first site: the prefix, not the id, says it is its own.)"""
    if not name.startswith(SINGLE_PREFIX):
        raise FailedPrecondition(
            f"volume {source.volume.volume_id} is replicated in volume group {name}; act on the group"
        )


def describe(source: rp.ReplicationSource) -> str:
    """The source as a person reads it in an error message."""
    if source.WhichOneof("type") == "volume":
        return f"volume {source.volume.volume_id}"
    return f"volume group {source.volumegroup.volume_group_id}"
