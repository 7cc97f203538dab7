"""Node-side attach: an LDEV's NBD export becomes a local block device.

Two routes, chosen by what the node has:
- kernel nbd (/dev/nbd* and nbd-client): NBD -> /dev/nbdN -> /dev/loopM;
- otherwise (common in VMs and containers) nbdfuse exposes the export as a
  file on a FUSE mount: NBD -> nbdfuse -> /dev/loopM.
Both end in a loop device so the device can be capped below the export's
size and grown in place later (`grow`). Over TLS (an `nbds://` URI, with the
node's GnuTLS certificate folder) the FUSE route is taken, and nbdkit's nbd
plugin speaks TLS to the array for nbdfuse, which takes no certificate paths.
Detach undoes every step it made, in reverse, even after a partial attach.

The CSI node service (NodeStageVolume) uses this; so do the demo and tests.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from csi_driver.fuse_connections import FUSE_FILE, LOCAL, Connector
from csi_driver.mounts import is_mount_point
from csi_driver.nbd_commands import AttachError, run, run_while_busy

log = logging.getLogger(__name__)


def nbd_uri(address: str, export: str, tls: bool = False) -> str:
    from urllib.parse import quote

    return f"{'nbds' if tls else 'nbd'}://{address}/{quote(export, safe='')}"


@dataclass
class Attachment:
    uri: str
    fuse_dir: Path
    device: str | None = None
    # The kernel nbd device under the loop device, on the kernel route.
    nbd_device: str | None = None
    # Which binding of the loop device is ours (loop_binding), read right after binding it.
    binding: str = ""

    @property
    def backing_file(self) -> Path:
        return self.fuse_dir / FUSE_FILE

    def loop_is_ours(self) -> bool:
        """The loop device is still bound as we bound it: a number saved at attach time may
        since have been freed and given to someone else.

        The binding recorded at attach says so whatever the file's name, which is the path
        the loop device was bound through in the mount namespace that bound it: once that
        namespace is gone (the node plugin's container restarted while a keeper holds the
        FUSE mount) the kernel names the file from the FUSE mount's root (`/nbd`), and after
        nbdfuse died `(deleted)` follows. Without a recorded binding (a kernel before 5.15, a
        record of an older plugin) the name must be our file's path, live or deleted."""
        named = loop_backing_file(self.device) if self.device is not None else None
        if named is None:
            return False
        if self.binding:
            return loop_binding(self.device) == self.binding
        if self.nbd_device:
            return named == self.nbd_device
        expected = os.path.realpath(self.backing_file)
        return named in (expected, f"{expected} (deleted)")


def attach(
    uri: str,
    fuse_dir: Path,
    read_only: bool = False,
    size_limit: int = 0,
    tls_certificates: Path | None = None,
    connector: Connector = LOCAL,
) -> Attachment:
    """Have `connector` serve `uri` as a file at `fuse_dir` and bind a loop device to it.

    `size_limit` caps the device below the export's size: an export with growth
    headroom shows only what the LDEV holds now, and `grow` raises the cap later.
    `tls_certificates`: the GnuTLS folder (ca-cert.pem, client-cert.pem,
    client-key.pem) an `nbds://` URI needs.
    """
    if kernel_nbd_available() and not uri.startswith("nbds:"):
        return _attach_kernel(uri, fuse_dir, read_only, size_limit)
    attachment = Attachment(uri=uri, fuse_dir=fuse_dir)
    connector.connect(uri, fuse_dir, read_only, tls_certificates)
    try:
        flags = ["--read-only"] if read_only else []
        if size_limit:
            flags += ["--sizelimit", str(size_limit)]
        attachment.device = run("losetup", "--find", "--show", "--direct-io=off", *flags, str(attachment.backing_file))
        attachment.binding = loop_binding(attachment.device)
    except BaseException:
        detach(attachment, connector)
        raise
    log.info("attached uri=%s device=%s fuse_dir=%s", uri, attachment.device, fuse_dir)
    return attachment


def kernel_nbd_available() -> bool:
    return Path("/dev/nbd0").exists() and shutil.which("nbd-client") is not None


def _free_nbd_device() -> str:
    for block in sorted(Path("/sys/block").glob("nbd*"), key=lambda p: int(p.name[3:])):
        if not (block / "pid").exists():
            return f"/dev/{block.name}"
    raise AttachError("no free /dev/nbd device")


def _attach_kernel(uri: str, fuse_dir: Path, read_only: bool, size_limit: int) -> Attachment:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    nbd = _free_nbd_device()
    attachment = Attachment(uri=uri, fuse_dir=fuse_dir, nbd_device=nbd)
    argv = ["nbd-client", parsed.hostname or "", str(parsed.port or 10809), nbd, "-N", unquote(parsed.path[1:])]
    run(*argv, *(["-readonly"] if read_only else []))
    try:
        flags = (["--read-only"] if read_only else []) + (["--sizelimit", str(size_limit)] if size_limit else [])
        attachment.device = run("losetup", "--find", "--show", *flags, nbd)
        attachment.binding = loop_binding(attachment.device)
    except BaseException:
        detach(attachment)
        raise
    log.info("attached uri=%s device=%s nbd=%s", uri, attachment.device, nbd)
    return attachment


def detach(attachment: Attachment, connector: Connector = LOCAL) -> None:
    """Remove the loop device, then have `connector` unmount FUSE and end nbdfuse. Safe to
    call twice.

    The loop device is detached only while it still backs onto this attachment's
    file: a number saved at attach time may since have been freed and given to
    someone else's device, which must never be touched. A FUSE mount still busy
    raises AttachError (detach_lazily can finish the job)."""
    _release_devices(attachment)
    connector.disconnect(attachment.fuse_dir)  # nothing to do on the kernel route
    log.info("detached uri=%s", attachment.uri)


def _release_devices(attachment: Attachment) -> None:
    """Detach the loop device, if it is still ours (a busy one is marked to clear itself once
    unused), and the kernel NBD device under it; forget both."""
    if attachment.device:
        if attachment.loop_is_ours():
            run("losetup", "-d", attachment.device)
        else:
            log.warning("loop_not_ours device=%s uri=%s: left alone", attachment.device, attachment.uri)
        attachment.device = None
    if attachment.nbd_device:
        run("nbd-client", "-d", attachment.nbd_device)
        attachment.nbd_device = None


def detach_lazily(attachment: Attachment, connector: Connector = LOCAL) -> None:
    """What detach() could not finish, for a teardown after a failure, when something still
    holds the file system on the loop device: the loop device is let go (the kernel frees it
    with its last user), the FUSE mount taken out of the tree at once, and nbdfuse killed, so
    that whoever still reads gets errors instead of a hang. Safe after a partial detach()."""
    _release_devices(attachment)
    connector.disconnect(attachment.fuse_dir, lazily=True)
    log.warning("detached_lazily uri=%s", attachment.uri)


def unmount(mountpoint: Path, busy_for: float = 20.0) -> None:
    """Unmount, retrying while busy; AttachError when it is still busy after `busy_for` seconds."""
    run_while_busy("umount", str(mountpoint), seconds=busy_for)


def unmount_lazily(mountpoint: Path) -> None:
    """Take a mount out of the tree at once (umount --lazy), for a teardown after a failure:
    the kernel lets the file system go with its last user. Nothing is flushed for whoever
    reads the device next, so this is no way to end a run that goes on."""
    if is_mount_point(mountpoint):
        run("umount", "--lazy", str(mountpoint))


def loop_backing_file(device: str) -> str | None:
    """The file (or device) a loop device reads from now; None if it is not a bound loop device."""
    try:
        return (Path("/sys/block") / Path(device).name / "loop" / "backing_file").read_text().strip()
    except OSError:
        return None


def disk_sequence(device: str) -> int:
    """The kernel's disk sequence number of a block device: one counter for every disk, raised
    at every loop bind and detach, so a later binding has a larger one. 0 where the kernel has
    none (before Linux 5.15)."""
    try:
        return int((Path("/sys/block") / Path(device).name / "diskseq").read_text())
    except (OSError, ValueError):
        return 0


def loop_binding(device: str) -> str:
    """What names one binding of a loop device for as long as it lasts: its disk sequence
    number with this boot's id (the numbers start over at boot); '' where there is none."""
    sequence = disk_sequence(device)
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
    return f"{boot}/{sequence}" if sequence else ""


@contextmanager
def attached(uri: str, fuse_dir: Path, read_only: bool = False, tls_certificates: Path | None = None) -> Iterator[str]:
    """The block device of `uri` for the duration of the block; detached on exit."""
    attachment = attach(uri, fuse_dir, read_only, tls_certificates=tls_certificates)
    try:
        assert attachment.device is not None
        yield attachment.device
    finally:
        detach(attachment)


@contextmanager
def mounted(device: str, mountpoint: Path, options: str | None = None) -> Iterator[Path]:
    """`device` mounted at `mountpoint` for the duration of the block."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    run("mount", *(["-o", options] if options else []), device, str(mountpoint))
    try:
        yield mountpoint
    finally:
        unmount(mountpoint)


# Linux loop device ioctls (linux/loop.h) and struct loop_info64's layout:
# five u64 (device, inode, rdevice, offset, sizelimit), then the rest.
LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
LOOP_SET_CAPACITY = 0x4C07
_LOOP_INFO64_BYTES = 232
_SIZELIMIT_OFFSET = 32


def grow(device: str, new_size: int, attempts: int = 20) -> int:
    """Raise a loop device's size limit in place (the file system stays mounted).

    Returns the device's new size. The kernel refuses (EAGAIN) while pages it
    just invalidated are dirtied again; that is retried.
    """
    import fcntl
    import struct

    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for attempt in range(attempts):
            info = bytearray(_LOOP_INFO64_BYTES)
            fcntl.ioctl(fd, LOOP_GET_STATUS64, info)
            struct.pack_into("=Q", info, _SIZELIMIT_OFFSET, new_size)
            try:
                fcntl.ioctl(fd, LOOP_SET_STATUS64, bytes(info))
                break
            except OSError as exc:
                if exc.errno != 11 or attempt == attempts - 1:  # EAGAIN
                    raise AttachError(f"cannot resize {device}: {exc}") from exc
                time.sleep(0.05)
        fcntl.ioctl(fd, LOOP_SET_CAPACITY, 0)
        size = os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)
    log.info("grown device=%s size=%d", device, size)
    return size
