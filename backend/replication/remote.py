"""What the replication domain needs from the other array, as a protocol.

The domain (pairs, replicator) calls these; backend.api.remote_client
implements them over the management API (gRPC, TLS/mTLS). Keeping the
protocol here keeps the domain free of gRPC, and lets tests cut the link.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from backend.errors import ArrayError, FailedPrecondition
from backend.journal import Unapplied


class LinkDown(ArrayError):
    """The other array does not answer; replication retries."""

    retryable = True


@dataclass(frozen=True)
class JournalBatch:
    # Records as stored, back to back: the backup checks each record's CRC
    # (backend.journal_record.decode_all), so the check covers the whole way.
    records: bytes
    split_seq: int | None = None  # the group is split after this sequence (None: not split)
    svol_writable: bool = False  # ... and the S-VOLs become writable once it is applied
    split_state: str = "PSUS"  # how the main side was split: PSUS, PSUE or PFUS
    synchronous: bool = False  # writers wait: confirm at once, do not linger
    unapplied: Unapplied = field(default_factory=Unapplied)  # past the pull's applied_seq, as of this answer


@dataclass(frozen=True)
class BaseChunk:
    """Allocated data of a P-VOL's base snapshot, from an offset on."""

    pieces: list[tuple[int, bytes]]
    next_offset: int  # 0 when the copy is complete
    total_bytes: int  # allocated bytes in all (for progress)


@dataclass(frozen=True)
class PVolFacts:
    """What the backup array needs of a P-VOL to make its S-VOL: its id, name and size, its
    host-access rule, and its labels (a PVC's metadata travels in them to the backup site)."""

    id: int
    name: str
    size: int
    open_to_all: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DigestPart:
    """One answer of the backup to a verify (backend.replication.verify). The first says that
    its S-VOLs' snapshots are cut at the sequence asked (`cut`); each next one carries the
    region digests of one S-VOL from `first_region` on, and the first of each S-VOL, at a
    split point, its differential bitmap (the regions hosts wrote there since the split)."""

    cut: bool = False
    pvol_id: int = 0
    svol_id: int = 0
    size: int = 0
    first_region: int = 0
    digests: bytes = b""
    changed: bytes = b""


class RemoteArray(Protocol):
    serial: int

    # Asked of the backup array by the main array.
    def prepare_secondary(
        self,
        group_name: str,
        capacity: int,
        main_serial: int,
        pvol: PVolFacts,
        svol_id: int = 0,
    ) -> int: ...

    def start_copy(self, group_name: str, pvol_id: int, base_snapshot: int) -> None: ...

    # Asked of the array that took over by the old main array, once fenced.
    def failback(self, group_name: str) -> None: ...

    # Asked of the main array by a backup taking over: no host writes there from now on.
    def fence(self, group_name: str) -> None: ...

    def prepare_resync(self, group_name: str) -> dict[int, bytes]:
        """Snapshot group of the S-VOLs kept, S-VOLs read-only; their bitmaps by P-VOL id."""
        ...

    # Asked of the main array by the backup array.
    def pull_journal(
        self, group_name: str, from_seq: int, applied_seq: int, max_bytes: int, wait: float
    ) -> JournalBatch:
        """Records from `from_seq` on; the backup applied (durably) through `applied_seq`, trimmable."""
        ...

    def read_base(self, pvol_id: int, snapshot_id: int, offset: int, max_bytes: int, end: int = 0) -> BaseChunk:
        """About `max_bytes` of the base's data from `offset` up to `end` (0: its end)."""
        ...

    def split(self, group_name: str) -> int:
        """Split the group at the main array (a takeover drains up to it); the split sequence."""
        ...

    def describe_unapplied(self, group_name: str, applied_seq: int) -> Unapplied: ...

    def delete_secondary(self, group_name: str, pvol_id: int) -> None:
        """The pair of this P-VOL is deleted: its S-VOL becomes an ordinary LDEV."""
        ...

    def delete_group(self, group_name: str) -> None:
        """The main side deleted the group (no pair left): the backup deletes its empty side."""
        ...

    def demote(self, group_name: str, applied_seq: int, last_seq: int) -> dict[int, bytes]:
        """Failback: the old main array becomes the backup; its differing regions by our LDEV id."""
        ...

    def complete_initial_copy(self, group_name: str, pvol_id: int) -> None: ...

    def secondary_digests(
        self, group_name: str, seq: int, region_bytes: int, at_split: bool
    ) -> Generator[DigestPart, None, None]:
        """The backup's side of a verify: once it applied exactly through `seq`, a cut, then its
        S-VOLs' digests. Closing the generator early ends the backup's side too."""
        ...


class RemoteLink:
    """The other array, once the API process links one (`--remote`); tests put a fake here."""

    def __init__(self) -> None:
        self.remote: RemoteArray | None = None

    def get(self) -> RemoteArray:
        if self.remote is None:
            raise FailedPrecondition("this array has no remote array linked (--remote)")
        return self.remote
