"""Pure rules of the CSI controller: capabilities, sizes, parameters, topology.

No I/O here, so every rule is unit-tested directly; the servicers call these
before they touch the array.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ccopy_api import csi_pb2 as csi
from ccopy_common.errors import InvalidArgument, OutOfRange

MIB = 1 << 20
DEFAULT_SIZE = 1 << 30
FS_TYPES = ("ext4", "xfs")
# The smallest file system mkfs makes: xfsprogs 5.19 and newer refuse xfs under 300 MiB.
FS_FLOORS = {"xfs": 300 * MIB}
TOPOLOGY_KEY = "topology.ldev.csi.consistentcopy.io/site"
LABEL_PREFIX = "csi.consistentcopy.io/"
K8S_PREFIX = "csi.storage.k8s.io/"
MUTABLE_KEYS = ("maxIOPS", "maxMBps")

Mode = csi.VolumeCapability.AccessMode
SINGLE_NODE_MODES = {Mode.SINGLE_NODE_WRITER, Mode.SINGLE_NODE_SINGLE_WRITER, Mode.SINGLE_NODE_MULTI_WRITER}
READ_ONLY_MODES = {Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY}
SUPPORTED_MODES = SINGLE_NODE_MODES | READ_ONLY_MODES | {Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_MULTI_WRITER}
_LDEV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# What a PV at the backup site needs of the volume, kept on the LDEV (pairing copies labels to the S-VOL).
VOLUME_MODE_LABEL = LABEL_PREFIX + "volume-mode"  # Filesystem | Block
ACCESS_MODES_LABEL = LABEL_PREFIX + "access-modes"  # Kubernetes access modes, comma-separated
FS_TYPE_LABEL = LABEL_PREFIX + "fs-type"
K8S_ACCESS_MODES = {  # external-provisioner's mapping, read backwards
    Mode.SINGLE_NODE_WRITER: "ReadWriteOnce",
    Mode.SINGLE_NODE_MULTI_WRITER: "ReadWriteOnce",
    Mode.SINGLE_NODE_SINGLE_WRITER: "ReadWriteOncePod",
    Mode.MULTI_NODE_READER_ONLY: "ReadOnlyMany",
    Mode.MULTI_NODE_MULTI_WRITER: "ReadWriteMany",
}


def capability_problem(capability: csi.VolumeCapability) -> str | None:
    """Why we cannot serve this capability, or None when we can."""
    access = capability.WhichOneof("access_type")
    if access is None:
        return "volume capability needs block or mount access"
    mode = capability.access_mode.mode
    if mode == Mode.UNKNOWN:
        return "volume capability needs an access mode"
    if mode not in SUPPORTED_MODES:
        return f"access mode {Mode.Mode.Name(mode)} is not supported"
    if mode == Mode.MULTI_NODE_MULTI_WRITER and access != "block":
        return "several writers on several nodes need block access (no cluster file system here)"
    if access == "mount" and capability.mount.fs_type not in ("", *FS_TYPES):
        return f"file system {capability.mount.fs_type!r} is not supported (ext4, xfs)"
    return None


def capability_labels(capabilities: Iterable[csi.VolumeCapability]) -> dict[str, str]:
    """The volume mode, access modes and file system a volume was asked with, as LDEV labels."""
    capabilities = list(capabilities)
    modes = sorted(
        {K8S_ACCESS_MODES[c.access_mode.mode] for c in capabilities if c.access_mode.mode in K8S_ACCESS_MODES}
    )
    labels = {
        VOLUME_MODE_LABEL: "Block" if any(c.HasField("block") for c in capabilities) else "Filesystem",
        ACCESS_MODES_LABEL: ",".join(modes),
    }
    fs_type = next((c.mount.fs_type for c in capabilities if c.HasField("mount") and c.mount.fs_type), "")
    return labels | ({FS_TYPE_LABEL: fs_type} if fs_type else {})


def check_capabilities(capabilities: Iterable[csi.VolumeCapability], required: bool = True) -> None:
    capabilities = list(capabilities)
    if required and not capabilities:
        raise InvalidArgument("volume_capabilities is required")
    for capability in capabilities:
        problem = capability_problem(capability)
        if problem:
            raise InvalidArgument(problem)


def file_system_floor(capabilities: Iterable[csi.VolumeCapability]) -> int:
    """The least size a volume asked with these capabilities needs for its file system to be
    made at NodeStage: given at CreateVolume (more than asked, as the spec allows, or
    OUT_OF_RANGE under limit_bytes), instead of a stage that fails for good."""
    return max((FS_FLOORS.get(c.mount.fs_type, 0) for c in capabilities if c.HasField("mount")), default=0)


def volume_size(capacity: csi.CapacityRange | None, floor: int = 0, needs: str = "the source") -> int:
    """The size to provision: at least `required` and `floor` (what `needs` it), whole MiB, at most `limit`."""
    required = capacity.required_bytes if capacity else 0
    limit = capacity.limit_bytes if capacity else 0
    if required < 0 or limit < 0:
        raise InvalidArgument("capacity bytes cannot be negative")
    if limit and required > limit:
        raise InvalidArgument(f"required_bytes {required} exceeds limit_bytes {limit}")
    wanted = max(required, floor) or min(DEFAULT_SIZE, limit or DEFAULT_SIZE)
    size = max(MIB, -(-wanted // MIB) * MIB)
    if limit and size > limit:
        if floor > limit:
            raise OutOfRange(f"{needs} needs {floor} bytes, more than limit_bytes {limit}")
        size = -(-wanted // 512) * 512  # no whole MiB fits: the nearest sector multiple
        if size > limit:
            raise OutOfRange(f"no size in whole sectors fits between {required} and {limit} bytes")
    return size


def fits(size: int, capacity: csi.CapacityRange | None) -> bool:
    if capacity is None:
        return True
    return size >= capacity.required_bytes and (not capacity.limit_bytes or size <= capacity.limit_bytes)


@dataclass(frozen=True)
class Qos:
    max_iops: int = 0
    max_mbps: int = 0


def parse_mutable(parameters: Mapping[str, str]) -> Qos:
    """maxIOPS and maxMBps (non-negative integers); any other key is refused."""
    unknown = sorted(set(parameters) - set(MUTABLE_KEYS))
    if unknown:
        raise InvalidArgument(f"unknown mutable parameter(s) {unknown}; allowed: {list(MUTABLE_KEYS)}")
    values = {}
    for key in MUTABLE_KEYS:
        raw = parameters.get(key, "0")
        if not raw.isdigit() or int(raw) > 0xFFFFFFFF:
            raise InvalidArgument(f"{key} must be a non-negative integer, not {raw!r}")
        values[key] = int(raw)
    return Qos(values["maxIOPS"], values["maxMBps"])


def parse_parameters(parameters: Mapping[str, str]) -> dict[str, str]:
    """StorageClass parameters -> LDEV labels. Only the CO's own keys are known."""
    labels = {}
    for key, value in parameters.items():
        if not key.startswith(K8S_PREFIX):
            raise InvalidArgument(f"unknown parameter {key!r}")
        labels[LABEL_PREFIX + "k8s-" + key.removeprefix(K8S_PREFIX)] = value
    return labels


def ldev_name(csi_name: str) -> str:
    """An LDEV name for a CSI name: itself when it is a safe name, else a digest."""
    if _LDEV_NAME.match(csi_name):
        return csi_name
    return "csi-" + hashlib.sha256(csi_name.encode()).hexdigest()[:40]


def check_name(name: str, what: str = "name") -> None:
    if not name:
        raise InvalidArgument(f"{what} is required")
    if len(name.encode()) > 128:
        raise InvalidArgument(f"{what} is longer than 128 bytes")
    if any((ord(c) < 0x20 and c not in "\t\n\r") or 0x7F <= ord(c) <= 0x9F for c in name):
        raise InvalidArgument(f"{what} contains a control character")


def topology_allows(requirement: csi.TopologyRequirement | None, site: str) -> bool:
    if requirement is None or not requirement.requisite:
        return True
    return any(t.segments.get(TOPOLOGY_KEY) == site for t in requirement.requisite)
