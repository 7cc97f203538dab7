"""The array's journal groups as the csi-addons services see them.

A csi-addons volume group is a journal group: one sequence orders the writes
of all its volumes, so the backup is always one consistent point of all of
them. Its id names the journal group (`ccj1-<serial>-<name in hex>`): the
group has the same name on both arrays, so the other site's id is known
without asking it.

Membership is pairing, on the array where the group is the main side: a
volume joins the group by being paired into it (COPY, then PAIR, while the
others stay in PAIR) and leaves by its pair being deleted (its S-VOL stays as
an ordinary LDEV at the backup). There is no list of members apart from the
pairs, so the array is the one truth. On the backup side the members are the
S-VOLs, decided at the main site: calls there check and report, never pair.

A single volume replicated on its own (a VolumeReplication of one PVC) gets a
journal group of its own, named by its volume id.
"""

from __future__ import annotations

import logging
from functools import cached_property

from ccopy_api import array_pb2 as pb
from ccopy_common import SVOL_OF_LABEL, ids
from ccopy_common.array_client import ArrayClient
from ccopy_common.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ccopy_common.locks import KeyLocks
from replication_sidecar.decisions import BACKUP
from replication_sidecar.parameters import GroupParameters

log = logging.getLogger(__name__)

# Calls that drain or copy at the arrays; well inside the manager's 3 min per call.
TAKEOVER_TIMEOUT = 120.0
FAILBACK_TIMEOUT = 150.0


class JournalGroups:
    def __init__(self, array: ArrayClient) -> None:
        self.array = array
        self.locks = KeyLocks("journal group", Aborted)  # a second call on the same group: ABORTED, the manager retries

    @cached_property
    def serial(self) -> int:
        return self.array.serial

    # -- lookups ---------------------------------------------------------------------
    def volume(self, volume_id: str) -> pb.Ldev:
        if not volume_id:
            raise InvalidArgument("a volume id is required")
        parsed = ids.parse(volume_id, "volume", self.serial)
        ldev = self.array.maybe("GetLdev", pb.GetLdevRequest(id=parsed.number)) if parsed else None
        if ldev is None:
            raise NotFound(f"volume {volume_id} is not a volume of array {self.serial}")
        return ldev

    def volume_id(self, ldev_id: int, serial: int | None = None) -> str:
        return ids.volume_id(self.serial if serial is None else serial, ldev_id)

    def pairs_by_ldev(self) -> dict[int, pb.Pair]:
        """Every pair of this array, by its local LDEV: one call for a whole membership."""
        return {p.local_ldev_id: p for p in self.array.call("ListPairs", pb.ListPairsRequest()).pairs}

    def pair_of(self, ldev_id: int) -> pb.Pair | None:
        return self.pairs_by_ldev().get(ldev_id)

    def find(self, name: str) -> pb.JournalGroup | None:
        return self.array.maybe("GetJournalGroup", pb.GetJournalGroupRequest(name=name))

    def name_of(self, group_id: str) -> str:
        """The journal group a volume group id names; NOT_FOUND for another array's or a malformed one."""
        if not group_id:
            raise InvalidArgument("a volume group id is required")
        name = ids.parse_journal_group_id(group_id, self.serial)
        if name is None:
            raise NotFound(f"volume group {group_id} is not a volume group of array {self.serial}")
        return name

    def must(self, name: str, missing: str = "") -> pb.JournalGroup:
        group = self.find(name)
        if group is None:
            raise NotFound(missing or f"journal group {name} does not exist")
        return group

    def get(self, group_id: str) -> pb.JournalGroup:
        group = self.find(self.name_of(group_id))
        if group is None:
            raise NotFound(f"volume group {group_id} does not exist")
        return group

    def peer(self, name: str) -> pb.JournalGroup | None:
        """The other array's view of the group, through this array's link; None when it does not answer."""
        try:
            return self.array.call("GetPeerJournalGroup", pb.GetJournalGroupRequest(name=name))
        except Unavailable:
            return None

    def group_id(self, group: pb.JournalGroup, serial: int | None = None) -> str:
        return ids.journal_group_id(self.serial if serial is None else serial, group.name)

    def all(self) -> list[pb.JournalGroup]:
        groups = self.array.call("ListJournalGroups", pb.ListJournalGroupsRequest()).groups
        return sorted(groups, key=lambda g: g.name)

    def backup_group_of(self, ldevs: list[pb.Ldev]) -> pb.JournalGroup | None:
        """The backup-side group whose S-VOLs these are, or None if none of them is an S-VOL.
        S-VOLs of several groups, or S-VOLs mixed with other volumes, cannot be one group."""
        everyone = self.pairs_by_ldev()
        pairs = {ldev.id: everyone.get(ldev.id) for ldev in ldevs}
        backup = {p.group_name for p in pairs.values() if p is not None and p.role == BACKUP}
        if not backup:
            return None
        if len(backup) > 1 or any(p is None or p.role != BACKUP for p in pairs.values()):
            raise FailedPrecondition(
                "these volumes cannot be one group: S-VOLs belong to the journal group the main site paired them in"
            )
        return self.must(backup.pop())

    # -- main side: membership is pairing ------------------------------------------------
    def ensure(self, name: str, parameters: GroupParameters) -> pb.JournalGroup:
        """The main-side group, created empty if new; ALREADY_EXISTS if it exists with another
        capacity or mode; FAILED_PRECONDITION if it is the backup side here."""
        existing = self.find(name)
        if existing is not None and existing.role == BACKUP:
            raise FailedPrecondition(f"journal group {name} is the backup side on array {self.serial}")
        return self.array.call(
            "CreateJournalGroup",
            pb.CreateJournalGroupRequest(
                name=name, capacity_bytes=parameters.journal_capacity, synchronous=parameters.synchronous,
                rpo_seconds=parameters.rpo_seconds,
            ),
        )  # fmt: skip

    def create_with(self, name: str, parameters: GroupParameters, ldevs: list[pb.Ldev]) -> pb.JournalGroup:
        """The main-side group with these volumes paired into it (more may be in it already);
        volumes that cannot join are refused before the group is made."""
        self.check_joining(name, ldevs)
        return self.set_members(self.ensure(name, parameters), ldevs, add_only=True)

    def check_joining(self, name: str, ldevs: list[pb.Ldev]) -> None:
        """FAILED_PRECONDITION for a volume replicated in another group, or the copy a backup
        kept when its pair ended."""
        everyone = self.pairs_by_ldev()
        for ldev in ldevs:
            pair = everyone.get(ldev.id)
            if pair is not None and pair.group_name != name:
                raise FailedPrecondition(
                    f"volume {self.volume_id(ldev.id)} is replicated in journal group {pair.group_name} already "
                    "(a volume belongs to one group)"
                )
            if pair is None and SVOL_OF_LABEL in ldev.labels:
                raise FailedPrecondition(kept_copy(self.volume_id(ldev.id), ldev.labels[SVOL_OF_LABEL]))

    def set_members(self, group: pb.JournalGroup, ldevs: list[pb.Ldev], add_only: bool = False) -> pb.JournalGroup:
        """Pair the volumes not yet in the group, and (unless `add_only`) delete the pairs of those
        no longer listed. A volume that cannot join is refused before anything changes."""
        wanted = {ldev.id: ldev for ldev in ldevs}
        current = {p.local_ldev_id for p in group.pairs}
        joining = [ldev for ldev_id, ldev in wanted.items() if ldev_id not in current]
        self.check_joining(group.name, joining)
        for ldev in joining:
            self.array.call(
                "CreatePair",
                pb.CreatePairRequest(
                    group_name=group.name, pvol_id=ldev.id, journal_capacity_bytes=group.capacity_bytes,
                    synchronous=group.synchronous,
                ),
            )  # fmt: skip
            log.info("volume_joined group=%s ldev=%06x", group.name, ldev.id)
        if not add_only:
            for ldev_id in sorted(current - set(wanted)):
                self.array.call("DeletePair", pb.DeletePairRequest(pvol_id=ldev_id))
                log.info("volume_left group=%s ldev=%06x", group.name, ldev_id)
        return self.array.call("GetJournalGroup", pb.GetJournalGroupRequest(name=group.name))

    def check_backup_members(self, group: pb.JournalGroup, ldevs: list[pb.Ldev]) -> None:
        """On the backup side nothing is paired here: every volume named must be an S-VOL of the group."""
        svols = {p.local_ldev_id for p in group.pairs}
        strangers = [self.volume_id(ldev.id) for ldev in ldevs if ldev.id not in svols]
        if strangers:
            raise FailedPrecondition(
                f"{strangers} are not S-VOLs of journal group {group.name}: on the backup side membership "
                "follows the main site's pairs"
            )

    # -- the group's state --------------------------------------------------------------
    def set_rpo(self, name: str, rpo_seconds: float) -> None:
        self.array.call("UpdateJournalGroup", pb.UpdateJournalGroupRequest(name=name, rpo_seconds=rpo_seconds))

    def fence(self, name: str, fenced: bool) -> None:
        self.array.call("FenceJournalGroup", pb.FenceJournalGroupRequest(name=name, fenced=fenced))

    def take_over(self, name: str) -> pb.DataGivenUp:
        """The backup's S-VOLs become primaries; the array fences the main side if it answers."""
        answer = self.array.call("Takeover", pb.TakeoverRequest(group_name=name, force=True), timeout=TAKEOVER_TIMEOUT)
        return answer.given_up

    def request_failback(self, name: str) -> None:
        self.array.call("RequestFailback", pb.FailbackRequest(group_name=name), timeout=FAILBACK_TIMEOUT)

    def resync(self, name: str) -> None:
        self.array.call("ResyncPairs", pb.ResyncPairsRequest(group_name=name), timeout=TAKEOVER_TIMEOUT)

    def delete(self, group: pb.JournalGroup) -> None:
        """A main-side group without volumes goes; one with volumes is in use. The backup side's
        group is the main site's to end (it goes with its pairs): nothing changes here."""
        if group.role == BACKUP:
            return
        if group.pairs:
            raise FailedPrecondition(
                f"volume group {group.name} still has {len(group.pairs)} volume(s); remove them first"
            )
        self.array.call("DeleteJournalGroup", pb.DeleteJournalGroupRequest(name=group.name))


def kept_copy(volume_id: str, svol_of: str) -> str:
    """Why the copy a backup kept when its pair ended is not paired from here: the only link
    leads back to the array it came from, so a secondary group the csi-addons manager still
    reconciles would copy the backup's data over the main site's as a new group."""
    serial, _, ldev = svol_of.partition(":")
    return (
        f"volume {volume_id} is the copy this array kept of LDEV {ldev} of array {serial} when that pair "
        "ended; pairing it would copy it back to that array. Replicate a clone of it (a PVC with it as "
        "dataSource) if that is meant"
    )
