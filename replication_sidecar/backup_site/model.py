"""Plain values the registrar decides on: the S-VOLs of this site's array (their labels
carry the main PVC's metadata), what exists in this cluster, and what to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccopy_common import DEFAULT_DRIVER_NAME
from replication_sidecar.group_replication import MANAGED_BY as MANAGED_BY  # re-exported for the registrar

PVC_LABEL = "csi.consistentcopy.io/"  # the CSI plugin's LDEV label prefix (csi_driver.volumes)
PVC_NAMESPACE = PVC_LABEL + "k8s-pvc/namespace"
PVC_NAME = PVC_LABEL + "k8s-pvc/name"
VOLUME_MODE = PVC_LABEL + "volume-mode"
ACCESS_MODES = PVC_LABEL + "access-modes"
FS_TYPE = PVC_LABEL + "fs-type"
REGISTRAR = "consistentcopy-backup-site"


@dataclass(frozen=True)
class RegistrarConfig:
    driver: str = DEFAULT_DRIVER_NAME
    group_class: str = "consistentcopy-group"
    replication_class: str = "consistentcopy"
    storage_class: str = ""  # of the backup PVs and PVCs; "" binds them to each other only


@dataclass(frozen=True)
class SVol:
    """An S-VOL of this array, with the labels pairing copied from its P-VOL."""

    volume_handle: str  # the CSI volume id of the S-VOL at this array
    size: int
    labels: dict[str, str]
    paired: bool  # in a pair either way (also reversed after a failback); False once the pair was deleted
    group: str = ""  # the journal group of its pair ("" unpaired)


@dataclass(frozen=True)
class SeenPv:
    name: str
    volume_handle: str
    managed: bool  # made by the registrar
    phase: str = "Bound"


@dataclass(frozen=True)
class SeenPvc:
    namespace: str
    name: str
    volume_name: str
    managed: bool
    labels: dict[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()
    deleting: bool = False


@dataclass(frozen=True)
class GivenUp:
    """What the last takeover at this site gave up (backend: DataGivenUp)."""

    records: int
    bytes: int
    seconds: float
    exact: bool  # counted by the main array; else a floor as of the last contact
    last_contact_ns: int | None
    recovery_point_ns: int | None
    words: str  # as `ccopy ctl` and the VolumeReplication's message say it (ccopy_common.loss_words)


@dataclass(frozen=True)
class BackupGroup:
    """A journal group of this array, as this array sees it (the main site's may be gone)."""

    name: str
    role: str  # backup: receiving; main: this site is the primary after a failback
    pair_states: dict[str, str]  # S-VOL volume handle -> SMPL, COPY, PAIR, PSUS, PSUE, PFUS, SSWS
    status: str  # HEALTHY, DEGRADED, ERROR (replication_sidecar.status)
    message: str
    recovery_point_ns: int | None  # None: not moving
    rpo_seconds: float = 0.0  # declared in the class; 0: none
    last_contact_ns: int | None = None  # when this array last heard from the main array
    pending_records: int = 0  # acknowledged at the main site, not applied here, as of last contact
    pending_bytes: int = 0
    lag_seconds: float = 0.0
    given_up: GivenUp | None = None


@dataclass(frozen=True)
class Observed:
    svols: tuple[SVol, ...]
    pvs: tuple[SeenPv, ...] = ()
    pvcs: tuple[SeenPvc, ...] = ()
    namespaces: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()  # namespaces holding our secondary VolumeGroupReplication
    journal_groups: dict[str, BackupGroup] = field(default_factory=dict)  # by name
    consistent_copies: dict[str, dict[str, Any]] = field(default_factory=dict)  # ours, by namespace
    now_ns: int = 0
    status_due: bool = True  # write statuses whose only change is an age (else only real changes)


# -- what to do ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateNamespace:
    name: str


@dataclass(frozen=True)
class CreatePv:
    body: dict[str, Any]


@dataclass(frozen=True)
class CreatePvc:
    body: dict[str, Any]


@dataclass(frozen=True)
class LabelPvc:
    namespace: str
    name: str
    value: str | None  # None: remove the member label


@dataclass(frozen=True)
class DeletePvc:
    namespace: str
    name: str


@dataclass(frozen=True)
class CreateGroupReplication:
    namespace: str
    body: dict[str, Any]


@dataclass(frozen=True)
class DeleteGroupReplication:
    namespace: str


@dataclass(frozen=True)
class ApplyConsistentCopy:
    """Create the namespace's ConsistentCopy if absent, then write `status`."""

    namespace: str
    status: dict[str, Any]


@dataclass(frozen=True)
class DeleteConsistentCopy:
    namespace: str


@dataclass(frozen=True)
class Event:
    namespace: str
    type: str  # Normal, Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Warning:
    """Something the registrar will not do, said once per pass (an Event and a log line)."""

    namespace: str
    reason: str
    message: str


Action = (
    CreateNamespace | CreatePv | CreatePvc | LabelPvc | DeletePvc | CreateGroupReplication | DeleteGroupReplication
    | ApplyConsistentCopy | DeleteConsistentCopy | Event | Warning
)  # fmt: skip
