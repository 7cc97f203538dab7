"""The array's domain types: LDEVs, their publications and hosts, snapshots and snapshot
groups, journal groups and pairs, with their states. Plain values: the store
(backend.store) reads and writes them, every manager passes them around, and
none of them knows SQLite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ccopy_common.ldev_id import format_ldev_id


class LdevState(StrEnum):
    CREATING = "CREATING"
    NORMAL = "NORMAL"
    DELETING = "DELETING"
    # A clone whose data is still being copied; not exported until NORMAL.
    COPYING = "COPYING"

class SnapshotState(StrEnum):
    # Reserved; becomes NORMAL once the barrier marked it. Dropped on restart.
    CREATING = "CREATING"
    NORMAL = "NORMAL"

@dataclass(frozen=True)
class LdevRecord:
    id: int
    name: str
    size: int
    state: LdevState
    read_only: bool
    created_at: float
    updated_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    chunk_size: int = 65536
    clone_source: int | None = None
    # Every host may open it by name; otherwise only hosts it is published to (backend/host_access.py).
    open_to_all: bool = False
    max_iops: int = 0
    max_mbps: int = 0

    @property
    def display_id(self) -> str:
        return format_ldev_id(self.id)

@dataclass(frozen=True)
class Publication:
    """A host's right to open an LDEV over NBD, named by a secret token."""

    token: str
    ldev_id: int
    host_id: str
    read_only: bool
    created_at: float
    # The host is told the export is this big (if larger than the LDEV), so it
    # can grow in place when the LDEV is expanded; I/O past the LDEV still fails.
    max_size: int = 0

@dataclass(frozen=True)
class HostRecord:
    """A host a node plugin registered: how many LDEVs it may hold, and holds now."""

    host_id: str
    max_volumes: int  # 0: no limit
    published_ldevs: int

@dataclass(frozen=True)
class SnapshotRecord:
    id: int
    name: str
    ldev_id: int
    group_id: int | None
    size: int
    state: SnapshotState
    hidden: bool
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)

@dataclass(frozen=True)
class SnapshotGroupRecord:
    id: int
    name: str
    state: SnapshotState
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    stall_micros: int = 0  # how long host writes waited at the barrier that took it

@dataclass(frozen=True)
class JournalGroupRecord:
    id: int
    name: str
    capacity: int
    confirmed_seq: int
    created_at: float
    role: str = "main"  # main: P-VOLs, journal kept here; backup: S-VOLs, journal applied here
    applied_seq: int = 0
    remote_serial: int = 0
    split_seq: int | None = None  # None: not split
    svol_writable: bool = False
    given_up: str | None = None  # JSON of the last takeover's DataGivenUp (backend.replication.takeover)
    synchronous: bool = False
    inflow_control: bool = False
    overflow_watch: float = 60.0
    rpo_seconds: float = 0.0  # declared objective, for status and metrics; 0: none
    fenced: bool = False  # main side demoted: hosts may not write its P-VOLs
    applied_bytes: int = 0  # backup: journal bytes applied in all (backend.replication.lag.Applied)
    applied_write_ns: int = 0  # backup: main-site time of the newest write applied
    heard: str | None = None  # backup: JSON of the main array's latest account (backend.replication.lag.Heard)

class PairState(StrEnum):
    SMPL = "SMPL"
    COPY = "COPY"
    PAIR = "PAIR"
    PSUS = "PSUS"
    PSUE = "PSUE"
    PFUS = "PFUS"
    SSWS = "SSWS"

@dataclass(frozen=True)
class PairRecord:
    id: int
    group_id: int
    role: str  # main (this array holds the P-VOL) or backup (the S-VOL)
    local_ldev: int
    remote_ldev: int
    remote_serial: int
    state: PairState
    base_snapshot: int | None
    created_at: float


@dataclass(frozen=True)
class VerifyRecord:
    """The last verify of a journal group that ran to its end (backend.replication.verify)."""

    group_id: int
    verified_at: float  # unix time it ended
    seq: int  # the journal sequence both sides were compared at
    at_split: bool  # compared at the split point, where neither side's bitmap is marked
    region_bytes: int
    regions_compared: int
    regions_differing: int
    regions_skipped: int
    bytes_compared: int
    repaired: bool  # the differing regions were marked for the next resync
    seconds: float
