"""Plain values the operator decides on: what it observed of one namespace (read by the
thin client from the API server and the array) and what it asks to be done. No
Kubernetes or gRPC types: the reconcile functions and their tests use these only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccopy_common import DEFAULT_DRIVER_NAME
from replication_sidecar.consistent_copy import GROUP as GROUP
from replication_sidecar.consistent_copy import KIND as KIND
from replication_sidecar.consistent_copy import PLURAL as PLURAL
from replication_sidecar.consistent_copy import VERSION as VERSION

# Re-exported: the operator's modules and tests name them from here.
from replication_sidecar.group_replication import MANAGED_BY as MANAGED_BY
from replication_sidecar.group_replication import MEMBER_LABEL as MEMBER_LABEL
from replication_sidecar.group_replication import OBJECT_NAME as OBJECT_NAME

OPERATOR_NAME = "consistentcopy-namespace-operator"
RPO_ANNOTATION = f"{GROUP}/rpo-seconds"


@dataclass(frozen=True)
class OperatorConfig:
    label_key: str = f"{GROUP}/backup"
    label_value: str = "ConsistentCopyToCloud"
    driver: str = DEFAULT_DRIVER_NAME
    group_class: str = "consistentcopy-group"  # VolumeGroupReplicationClass
    replication_class: str = "consistentcopy"  # VolumeReplicationClass
    max_group_pvcs: int = 100  # the csi-addons manager's default limit for one group
    # Declared RPO when the namespace does not say: the shipped replication classes' rpoSeconds, which
    # is all the backup site knows (the csi-addons manager hands it the class's parameters only).
    rpo_seconds: float = 30.0


@dataclass(frozen=True)
class Pvc:
    name: str
    storage_class: str = ""
    phase: str = "Pending"  # Pending, Bound, Lost
    volume_handle: str = ""  # the bound PV's CSI volume id
    labels: dict[str, str] = field(default_factory=dict)
    deleting: bool = False


@dataclass(frozen=True)
class GroupReplication:
    """Our VolumeGroupReplication as observed: its status inlines the VolumeReplication's."""

    state: str = ""  # Primary, Secondary, Unknown, "" before the first reconcile
    message: str = ""
    members: tuple[str, ...] = ()  # status.persistentVolumeClaimsRefList names
    deleting: bool = False


@dataclass(frozen=True)
class ArrayPair:
    pvol: str  # LDEV display id at this array
    svol: str  # the S-VOL's LDEV number at the backup array
    state: str  # SMPL, COPY, PAIR, PSUS, PSUE, PFUS, SSWS
    copied_bytes: int = 0
    total_bytes: int = 0


@dataclass(frozen=True)
class ArrayGroup:
    """The journal group behind the VolumeGroupReplication, as the array reports it."""

    name: str
    pairs: dict[str, ArrayPair]  # by P-VOL volume handle
    status: str  # HEALTHY, DEGRADED, ERROR (replication_sidecar.status)
    message: str
    recovery_point_ns: int | None
    usage_bytes: int = 0
    capacity_bytes: int = 0
    journal_full: bool = False  # PFUS or overflowed
    journal_nearly_full: bool = False  # PFUL


@dataclass(frozen=True)
class Observed:
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    pvcs: tuple[Pvc, ...] = ()
    storage_classes: dict[str, str] = field(default_factory=dict)  # name -> provisioner
    group_class_exists: bool = True
    csi_addons_installed: bool = True
    vgr: GroupReplication | None = None
    consistent_copy: dict[str, Any] | None = None  # our object as read (spec, status), None: absent
    array: ArrayGroup | None = None
    array_problem: str = ""  # why the array could not be read ("" when it was, or not asked)
    now_ns: int = 0


# -- what to do ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelPvc:
    pvc: str
    value: str | None  # None: remove the member label


@dataclass(frozen=True)
class CreateGroupReplication:
    body: dict[str, Any]


@dataclass(frozen=True)
class DeleteGroupReplication:
    pass


@dataclass(frozen=True)
class ApplyConsistentCopy:
    """Create the object with `spec` if absent, then write `status`."""

    spec: dict[str, Any]
    status: dict[str, Any]


@dataclass(frozen=True)
class DeleteConsistentCopy:
    pass


@dataclass(frozen=True)
class Event:
    type: str  # Normal, Warning
    reason: str
    message: str


Action = LabelPvc | CreateGroupReplication | DeleteGroupReplication | ApplyConsistentCopy | DeleteConsistentCopy | Event
