"""What GetVolumeReplicationInfo reports: a journal group's state in the
csi-addons terms a person reads in VolumeReplication status (HEALTHY,
DEGRADED, ERROR, a message that says what to do), when it was last verified and
what that found, and the recovery point.

Pure: from one array's view of the group (`pb.JournalGroup`) and the declared
RPO. The first rule that matches wins, worst first. The recovery point is the
main site's time of the oldest write the backup has not applied: every write
acknowledged before it is at the backup. Nothing pending: the backup holds
everything, the recovery point is now. A suspended or split group has no
moving recovery point; none is reported, so the manager keeps its last one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccopy_api import array_pb2 as pb
from ccopy_common.loss_words import given_up_words, moment
from ccopy_common.units import format_size

HEALTHY, DEGRADED, ERROR = "HEALTHY", "DEGRADED", "ERROR"
# The backup hears from the main array at least every half second while the link works.
STALE_CONTACT_SECONDS = 30.0
RESYNC_HINT = "once the cause is gone, resync it at the main array (ccopy ctl pair resync)"


@dataclass(frozen=True)
class ReplicationInfo:
    status: str
    message: str
    recovery_point_ns: int | None  # main-site wall clock; None: not moving
    lag_seconds: float


def replication_info(group: pb.JournalGroup, rpo_seconds: float, now_ns: int) -> ReplicationInfo:
    states = {p.state for p in group.pairs}
    name = group.name

    def info(status: str, message: str, moving: bool = True) -> ReplicationInfo:
        point = now_ns - int(group.lag_seconds * 1e9) if moving else None
        return ReplicationInfo(status, message + last_verify(group), point, group.lag_seconds)

    if not states:
        return info(ERROR, f"journal group {name}: no volume is paired; enable replication", moving=False)
    if pb.PSUE in states:
        return info(ERROR, f"journal group {name} suspended by an error (PSUE): the other array was not heard "
                    f"from or failed; {RESYNC_HINT}", moving=False)  # fmt: skip
    if pb.PFUS in states or group.overflowed:
        return info(ERROR, f"journal group {name} suspended, journal full (PFUS): the link did not keep up; "
                    f"{RESYNC_HINT}; a larger journalCapacity gives more room", moving=False)  # fmt: skip
    if group.fenced:
        return info(DEGRADED, f"journal group {name} demoted (fenced): hosts cannot write here; the other site "
                    "takes over, then fails back to this one", moving=False)  # fmt: skip
    if pb.PSUS in states or group.split:
        return info(ERROR, f"journal group {name} split (PSUS) at sequence {group.split_seq}: the backup holds "
                    f"that point; {RESYNC_HINT}", moving=False)  # fmt: skip
    if pb.SSWS in states:
        return info(DEGRADED, f"journal group {name} taken over here (SSWS): these volumes are the primary and "
                    f"are not replicated until the other site is demoted and resynced{given_up(group)}",
                    moving=False)  # fmt: skip
    if pb.COPY in states:
        copied = sum(p.copied_bytes for p in group.pairs)
        total = sum(p.copy_total_bytes for p in group.pairs)
        progress = f": {format_size(copied)} of {format_size(total)}" if total else ""
        return info(DEGRADED, f"journal group {name} copying (COPY){progress}; consistent once every pair is PAIR",
                    moving=False)  # fmt: skip
    silent = (now_ns - group.last_contact.ToNanoseconds()) / 1e9 if group.HasField("last_contact") else 0.0
    if group.role == "backup" and silent > STALE_CONTACT_SECONDS:
        return info(DEGRADED, f"journal group {name}: the main array has not answered since "
                    f"{moment(group.last_contact)} ({silent:.0f} s): the lag shown is as of then")  # fmt: skip
    if pb.PAIR in states and group.last_verify.regions_differing and not group.last_verify.repaired:
        return info(DEGRADED, f"journal group {name}: the S-VOLs differ from the P-VOLs where the last verify "
                    f"compared them; split, verify --repair and resync it at the main array")  # fmt: skip
    if group.journal_nearly_full:
        used = 100 * group.usage_bytes // max(group.capacity_bytes, 1)
        return info(DEGRADED, f"journal group {name} journal {used}% full (PFUL): the link is not keeping up")
    if rpo_seconds and group.lag_seconds > rpo_seconds:
        return info(DEGRADED, f"journal group {name}: recovery point {group.lag_seconds:.1f} s old, "
                    f"above the RPO of {rpo_seconds:g} s")  # fmt: skip
    return info(HEALTHY, f"journal group {name}: {len(group.pairs)} volume(s) in PAIR, recovery point "
                f"{group.lag_seconds:.1f} s old")  # fmt: skip


def given_up(group: pb.JournalGroup) -> str:
    """What the last takeover gave up, for the message; empty when none was recorded."""
    if not group.HasField("given_up"):
        return ""
    return f"; the takeover gave up {given_up_words(group.given_up)}"


def last_verify(group: pb.JournalGroup) -> str:
    """When the group was last verified and what was found (main side, where verify runs)."""
    if group.role == "backup":
        return ""
    if not group.HasField("last_verify"):
        return "; not verified yet (ccopy ctl pair verify)"
    last = group.last_verify
    if not last.regions_differing:
        return f"; last verified {moment(last.verified_at)}: equal"
    repaired = ", marked for the next resync" if last.repaired else ""
    return f"; last verified {moment(last.verified_at)}: {last.regions_differing} region(s) differ{repaired}"
