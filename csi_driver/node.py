"""CSI Node service: an LDEV becomes a block device, then a mount or a device file.

NodeStageVolume attaches the volume's NBD export (from ControllerPublish's
publish_context) with nbdfuse + a loop device, makes a file system when the
device is blank (mount access) and mounts it at the staging path.
NodePublishVolume bind-mounts the staging mount (mount access) or the device
(block access) onto the target path. Unpublish and Unstage undo exactly what
they made. What is staged is kept on disk (node_state), so a restarted plugin
still unstages what its predecessor staged.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import grpc

from ccopy_api import array_pb2 as pb
from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc
from ccopy_common import ids
from ccopy_common.array_client import ArrayClient
from ccopy_common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    Unavailable,
)
from ccopy_common.locks import KeyLocks
from ccopy_common.pki import Issued, x509_folder
from csi_driver.attach import AttachError, Attachment, attach, detach, grow, nbd_uri
from csi_driver.config import CsiConfig
from csi_driver.fuse_connections import LOCAL, Connector
from csi_driver.mounts import (
    MountError,
    bind,
    device_size,
    file_system_of,
    format_if_blank,
    grow_file_system,
    is_mount_point,
    mount,
    unmount,
)
from csi_driver.node_state import NodeState, StagedVolume
from csi_driver.volumes import READ_ONLY_MODES, TOPOLOGY_KEY, capability_problem

log = logging.getLogger(__name__)
SINGLE_WRITER = csi.VolumeCapability.AccessMode.SINGLE_NODE_SINGLE_WRITER
RPC = csi.NodeServiceCapability.RPC
NODE_CAPABILITIES = [
    RPC.STAGE_UNSTAGE_VOLUME,
    RPC.GET_VOLUME_STATS,
    RPC.EXPAND_VOLUME,
    RPC.VOLUME_CONDITION,
    RPC.SINGLE_NODE_MULTI_WRITER,
]


def _require(value: object, name: str) -> None:
    if not value:
        raise InvalidArgument(f"{name} is required")


def _check_capability(capability: csi.VolumeCapability) -> str:
    problem = capability_problem(capability)
    if problem:
        raise InvalidArgument(problem)
    return "block" if capability.HasField("block") else "mount"


def node_certificates(config: CsiConfig) -> Path | None:
    """The node's GnuTLS certificate folder for NBD over TLS, made from its files at start;
    None without a certificate."""
    files = config.nbd_tls
    if files.cert is None or files.key is None or files.ca is None:
        return None
    return x509_folder(config.state_dir / "nbd-tls", "client", files.ca, Issued(files.cert, files.key))


def connector_for(config: CsiConfig) -> Connector:
    """Who holds the node's nbdfuse connections: its volume keeper, or this process."""
    if not config.keeper:
        return LOCAL
    from csi_driver.keeper import KeeperClient

    return KeeperClient(config.keeper)


def attachment_of(staged: StagedVolume) -> Attachment:
    """The attachment a stage record describes."""
    return Attachment(
        uri=staged.nbd_uri, fuse_dir=Path(staged.fuse_dir), device=staged.device,
        nbd_device=staged.nbd_device or None, binding=staged.binding,
    )  # fmt: skip


class NodeServicer(csi_grpc.NodeServicer):
    def __init__(self, config: CsiConfig, array: ArrayClient) -> None:
        self.config = config
        self.array = array
        self.state = NodeState(config.state_dir)
        self.locks = KeyLocks("volume", Aborted)
        self.tls_certificates = node_certificates(config)
        self.connector = connector_for(config)

    # -- stage / unstage -----------------------------------------------------------
    def NodeStageVolume(
        self, request: csi.NodeStageVolumeRequest, context: grpc.ServicerContext
    ) -> csi.NodeStageVolumeResponse:
        _require(request.volume_id, "volume_id")
        _require(request.staging_target_path, "staging_target_path")
        if not request.HasField("volume_capability"):
            raise InvalidArgument("volume_capability is required")
        access = _check_capability(request.volume_capability)
        export = request.publish_context.get("nbdExport")
        address = request.publish_context.get("nbdAddress")
        if not export or not address:
            raise InvalidArgument("publish_context lacks nbdExport/nbdAddress: was the volume ControllerPublished?")
        read_only = request.publish_context.get("readOnly") == "true" or (
            request.volume_capability.access_mode.mode in READ_ONLY_MODES
        )
        with self.locks.hold(request.volume_id):
            staged = self.state.get(request.volume_id)
            if staged is not None and not attachment_of(staged).loop_is_ours():
                # A record outliving its volume (the node restarted, or a pool was made anew and
                # the id repeats) must not stand in for the new one: clear it, then stage afresh.
                log.warning("stale_stage_state volume=%s device=%s: cleared", staged.volume_id, staged.device)
                self._clear(staged)
                staged = None
            if staged is not None:
                if staged.staging_path != request.staging_target_path or staged.access != access:
                    raise AlreadyExists(f"volume is staged at {staged.staging_path} for {staged.access} access")
                return csi.NodeStageVolumeResponse()
            tls = request.publish_context.get("nbdTls") == "true"
            if tls and self.tls_certificates is None:
                raise FailedPrecondition(
                    "the array's data path requires client certificates: start the node plugin with "
                    "--nbd-cert, --nbd-key and --nbd-ca (a certificate whose common name is the node id)"
                )
            self._stage(request, access, nbd_uri(address, export, tls), read_only)
        return csi.NodeStageVolumeResponse()

    def _clear(self, staged: StagedVolume) -> None:
        """What a stale record may have left: mounts at its paths, its FUSE mount (never a loop
        device that is not its own: detach checks)."""
        for path in (*staged.targets, staged.staging_path):
            with contextlib.suppress(MountError):
                unmount(Path(path))
        with contextlib.suppress(AttachError):
            detach(attachment_of(staged), self.connector)
        self.state.remove(staged.volume_id)

    def ldev_size(self, volume_id: str) -> int:
        """The volume's size now, from the array (the export may advertise more)."""
        parsed = ids.parse(volume_id, "volume", self.array.serial)
        if parsed is None:
            raise NotFound(f"volume {volume_id!r} is not a volume of this array")
        ldev = self.array.maybe("GetLdev", pb.GetLdevRequest(id=parsed.number))
        if ldev is None:
            raise NotFound(f"volume {volume_id!r} does not exist")
        return ldev.size_bytes

    def _stage(self, request: csi.NodeStageVolumeRequest, access: str, uri: str, read_only: bool) -> None:
        work = self.state.work_dir(request.volume_id)
        size = self.ldev_size(request.volume_id)
        try:
            attachment = attach(uri, work, read_only=read_only, size_limit=size, tls_certificates=self.tls_certificates,
                                connector=self.connector)  # fmt: skip
        except AttachError as exc:
            raise Unavailable(f"cannot attach {request.volume_id}: {exc}") from exc
        assert attachment.device is not None
        staged = StagedVolume(
            volume_id=request.volume_id,
            staging_path=request.staging_target_path,
            access=access,
            device=attachment.device,
            fuse_dir=str(work),
            nbd_uri=uri,
            read_only=read_only,
            nbd_device=attachment.nbd_device or "",
            binding=attachment.binding,
        )
        try:
            if access == "mount":
                wanted = request.volume_capability.mount.fs_type or "ext4"
                if read_only:
                    staged.fs_type = file_system_of(attachment.device) or wanted
                    if not file_system_of(attachment.device):
                        raise FailedPrecondition("a read-only volume without a file system cannot be mounted")
                else:
                    staged.fs_type = format_if_blank(attachment.device, wanted)
                flags = list(request.volume_capability.mount.mount_flags)
                mount(attachment.device, Path(request.staging_target_path), staged.fs_type, flags, read_only)
            self.state.put(staged)
        except (MountError, FailedPrecondition) as exc:
            if access == "mount":
                unmount(Path(request.staging_target_path))
            detach(attachment, self.connector)
            if isinstance(exc, FailedPrecondition):
                raise
            raise FailedPrecondition(f"cannot stage {request.volume_id}: {exc}") from exc

    def NodeUnstageVolume(
        self, request: csi.NodeUnstageVolumeRequest, context: grpc.ServicerContext
    ) -> csi.NodeUnstageVolumeResponse:
        _require(request.volume_id, "volume_id")
        _require(request.staging_target_path, "staging_target_path")
        with self.locks.hold(request.volume_id):
            staged = self.state.get(request.volume_id)
            if staged is None:
                return csi.NodeUnstageVolumeResponse()  # already unstaged
            try:
                unmount(Path(staged.staging_path))
                detach(attachment_of(staged), self.connector)
            except (MountError, AttachError) as exc:
                raise FailedPrecondition(f"cannot unstage {request.volume_id}: {exc}") from exc
            self.state.remove(request.volume_id)
        return csi.NodeUnstageVolumeResponse()

    # -- publish / unpublish --------------------------------------------------------
    def NodePublishVolume(
        self, request: csi.NodePublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi.NodePublishVolumeResponse:
        _require(request.volume_id, "volume_id")
        _require(request.staging_target_path, "staging_target_path")
        _require(request.target_path, "target_path")
        if not request.HasField("volume_capability"):
            raise InvalidArgument("volume_capability is required")
        access = _check_capability(request.volume_capability)
        read_only = request.readonly or request.volume_capability.access_mode.mode in READ_ONLY_MODES
        with self.locks.hold(request.volume_id):
            staged = self.state.get(request.volume_id)
            if staged is None or staged.staging_path != request.staging_target_path:
                raise FailedPrecondition(f"volume {request.volume_id} is not staged at {request.staging_target_path}")
            if staged.access != access:
                raise AlreadyExists(f"volume is staged for {staged.access} access, not {access}")
            others = [t for t in staged.targets if t != request.target_path]
            if others and request.volume_capability.access_mode.mode == SINGLE_WRITER:
                raise FailedPrecondition(f"volume {request.volume_id} is single-writer and published at {others[0]}")
            source = staged.device if access == "block" else staged.staging_path
            try:
                bind(source, Path(request.target_path), read_only, is_file=access == "block")
            except MountError as exc:
                raise FailedPrecondition(f"cannot publish {request.volume_id}: {exc}") from exc
            if request.target_path not in staged.targets:
                staged.targets.append(request.target_path)
                self.state.put(staged)
        return csi.NodePublishVolumeResponse()

    def NodeUnpublishVolume(
        self, request: csi.NodeUnpublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi.NodeUnpublishVolumeResponse:
        _require(request.volume_id, "volume_id")
        _require(request.target_path, "target_path")
        target = Path(request.target_path)
        with self.locks.hold(request.volume_id):
            try:
                unmount(target)
            except MountError as exc:
                raise FailedPrecondition(f"cannot unpublish {request.volume_id}: {exc}") from exc
            if target.is_dir():
                target.rmdir()
            elif target.exists():
                target.unlink()
            staged = self.state.get(request.volume_id)
            if staged is not None and request.target_path in staged.targets:
                staged.targets.remove(request.target_path)
                self.state.put(staged)
        return csi.NodeUnpublishVolumeResponse()

    # -- expansion -------------------------------------------------------------------
    def NodeExpandVolume(
        self, request: csi.NodeExpandVolumeRequest, context: grpc.ServicerContext
    ) -> csi.NodeExpandVolumeResponse:
        """Grow the device to the LDEV's new size, then the file system, online."""
        _require(request.volume_id, "volume_id")
        _require(request.volume_path, "volume_path")
        if request.HasField("volume_capability"):
            _check_capability(request.volume_capability)
        with self.locks.hold(request.volume_id):
            staged = self.state.get(request.volume_id)
            if staged is None or not Path(request.volume_path).exists():
                raise NotFound(f"volume {request.volume_id} is not staged or not at {request.volume_path}")
            size = self.ldev_size(request.volume_id)
            required = request.capacity_range.required_bytes if request.HasField("capacity_range") else 0
            if required > size:
                raise OutOfRange(f"the volume is {size} bytes; expand it on the controller before the node")
            try:
                grown = grow(staged.device, size)
                if staged.access == "mount" and not staged.read_only:
                    grow_file_system(staged.device, Path(staged.staging_path), staged.fs_type)
            except (AttachError, MountError) as exc:
                raise FailedPrecondition(f"cannot grow {request.volume_id}: {exc}") from exc
        return csi.NodeExpandVolumeResponse(capacity_bytes=grown)

    # -- information ---------------------------------------------------------------
    def NodeGetVolumeStats(
        self, request: csi.NodeGetVolumeStatsRequest, context: grpc.ServicerContext
    ) -> csi.NodeGetVolumeStatsResponse:
        _require(request.volume_id, "volume_id")
        _require(request.volume_path, "volume_path")
        staged = self.state.get(request.volume_id)
        path = Path(request.volume_path)
        if staged is None or not path.exists():
            raise NotFound(f"volume {request.volume_id} is not at {request.volume_path}")
        condition = self._condition(staged)
        usage: list[csi.VolumeUsage] = []
        if condition.abnormal:
            pass
        elif staged.access == "block":
            usage.append(csi.VolumeUsage(total=device_size(staged.device), unit=csi.VolumeUsage.BYTES))
        else:
            stats = os.statvfs(path)
            usage.append(
                csi.VolumeUsage(
                    total=stats.f_blocks * stats.f_frsize,
                    available=stats.f_bavail * stats.f_frsize,
                    used=(stats.f_blocks - stats.f_bfree) * stats.f_frsize,
                    unit=csi.VolumeUsage.BYTES,
                )
            )
            usage.append(
                csi.VolumeUsage(
                    total=stats.f_files,
                    available=stats.f_ffree,
                    used=stats.f_files - stats.f_ffree,
                    unit=csi.VolumeUsage.INODES,
                )
            )
        return csi.NodeGetVolumeStatsResponse(usage=usage, volume_condition=condition)

    def _condition(self, staged: StagedVolume) -> csi.VolumeCondition:
        """Abnormal when the NBD connection behind the device is gone."""
        try:
            if staged.nbd_device:  # kernel route: the nbd driver knows its connection
                name = Path(staged.nbd_device).name
                if not Path(f"/sys/block/{name}/pid").exists():
                    raise OSError(f"{staged.nbd_device} is disconnected")
                backing = Path(staged.nbd_device)
            else:
                if not is_mount_point(Path(staged.fuse_dir)):
                    raise OSError("nbdfuse is not mounted")
                backing = Path(staged.fuse_dir) / "nbd"
            with open(backing, "rb") as f:
                f.read(512)
        except OSError as exc:
            return csi.VolumeCondition(abnormal=True, message=f"NBD connection to the array is gone: {exc}")
        return csi.VolumeCondition(abnormal=False, message=f"attached as {staged.device}")

    def NodeGetCapabilities(
        self, request: csi.NodeGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi.NodeGetCapabilitiesResponse:
        return csi.NodeGetCapabilitiesResponse(
            capabilities=[csi.NodeServiceCapability(rpc=RPC(type=t)) for t in NODE_CAPABILITIES]
        )

    def NodeGetInfo(self, request: csi.NodeGetInfoRequest, context: grpc.ServicerContext) -> csi.NodeGetInfoResponse:
        """Kubelet asks this when the node plugin registers: the moment the node joins, so the
        array learns the host and its attach limit here (the controller checks both)."""
        self.register()
        return csi.NodeGetInfoResponse(
            node_id=self.config.node_id,
            max_volumes_per_node=self.config.max_volumes_per_node,
            accessible_topology=csi.Topology(segments={TOPOLOGY_KEY: self.config.site}),
        )

    def register(self) -> None:
        request = pb.RegisterHostRequest(host_id=self.config.node_id, max_volumes=self.config.max_volumes_per_node)
        self.array.call("RegisterHost", request)
        log.info("node_registered node=%s max_volumes=%d", self.config.node_id, self.config.max_volumes_per_node)
