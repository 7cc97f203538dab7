"""How far behind the backup is, as the backup itself sees it.

After a disaster the backup's view is the only one left, so it must not
depend on the main array answering. Every pull answer (idle ones included: the
long poll answers at least every half second) tells the backup what the main
array holds past the backup's applied sequence; the backup keeps the newest
answer durably (`Heard`) beside what it has applied (`Applied`), and the lag is
their difference, as of that last contact. Writes the main site acknowledged
after the last contact cannot be known here; every figure is a floor, and
says as of when.

Pure functions: the replicator, the status, the metrics and the takeover all
read the lag here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from backend.journal import Unapplied
from backend.model import JournalGroupRecord


@dataclass(frozen=True)
class Applied:
    """What the S-VOLs of a group hold (durable with the applied sequence)."""

    seq: int = 0
    bytes: int = 0  # journal bytes of every record applied here, cumulative
    write_ns: int = 0  # main-site time of the newest write applied: the recovery point (0: none)


@dataclass(frozen=True)
class Heard:
    """The main array's latest account of a group, as the backup received it."""

    contact_ns: int  # main-site time the account was made: the last contact
    main_seq: int  # the newest sequence the main array had given a write
    through_bytes: int  # Applied.bytes once main_seq is applied here
    oldest_write_ns: int  # main-site time of the oldest write not applied here then (0: none)
    newest_write_ns: int  # main-site time of the newest write the main array acknowledged (0: none)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str | None) -> Heard | None:
        return Heard(**json.loads(text)) if text else None


@dataclass(frozen=True)
class BackupLag:
    """Writes the main site acknowledged that are not at the backup, as of last contact."""

    records: int = 0
    bytes: int = 0
    oldest_write_ns: int = 0  # the oldest of them (main-site time; 0: none)
    newest_write_ns: int = 0  # the newest write the main site acknowledged (0: unknown)
    contact_ns: int = 0  # when the backup last heard from the main array (0: never)
    recovery_point_ns: int = 0  # main-site time of the newest write the backup holds (0: none)

    @property
    def seconds(self) -> float:
        """From the oldest write missing here to the newest the main site acknowledged."""
        return (self.newest_write_ns - self.oldest_write_ns) / 1e9 if self.records else 0.0

    def age(self, now_ns: int) -> float:
        """Seconds since the oldest write missing here was acknowledged (0 when none is)."""
        return max(0.0, (now_ns - self.oldest_write_ns) / 1e9) if self.records else 0.0


def applied_of(group: JournalGroupRecord) -> Applied:
    return Applied(group.applied_seq, group.applied_bytes, group.applied_write_ns)


def heard_from(answer: Unapplied, applied_at_pull: Applied) -> Heard:
    """A pull answer, which counts past the applied sequence the pull carried. The contact
    is dated by the main array's clock: every write it acknowledged before then is counted,
    so "as of last contact" holds exactly, whatever the link's delay or the clocks' skew."""
    return Heard(
        contact_ns=answer.as_of_ns,
        main_seq=answer.newest_seq,
        through_bytes=applied_at_pull.bytes + answer.bytes,
        oldest_write_ns=answer.oldest_write_ns,
        newest_write_ns=answer.newest_write_ns,
    )


def backup_lag(heard: Heard | None, applied: Applied) -> BackupLag:
    """The lag as of the last contact, from what was heard and what is applied since.

    Records applied after the contact leave the count; the oldest missing write is
    then no older than the newest applied one.
    """
    if heard is None:
        return BackupLag(recovery_point_ns=applied.write_ns)
    records = max(0, heard.main_seq - applied.seq)
    if not records:
        return BackupLag(0, 0, 0, heard.newest_write_ns, heard.contact_ns, applied.write_ns)
    return BackupLag(
        records=records,
        bytes=max(0, heard.through_bytes - applied.bytes),
        oldest_write_ns=max(heard.oldest_write_ns, applied.write_ns),
        newest_write_ns=heard.newest_write_ns,
        contact_ns=heard.contact_ns,
        recovery_point_ns=applied.write_ns,
    )
