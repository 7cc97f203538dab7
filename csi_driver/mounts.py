"""Block devices and mounts on the node: format when blank, mount, bind, unmount.

Thin wrappers over util-linux and e2fsprogs/xfsprogs; each raises MountError
with the command's own message, and each is safe to repeat.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path


class MountError(Exception):
    pass


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise MountError(f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()}")
    return result.stdout.strip()


def file_system_of(device: str) -> str:
    """The file system type on the device, or "" when it holds none."""
    result = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", device], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def format_if_blank(device: str, fs_type: str) -> str:
    """Make a file system only on a blank device; never reformat data."""
    existing = file_system_of(device)
    if existing:
        return existing
    if fs_type == "xfs":
        run("mkfs.xfs", "-q", device)
    else:
        run("mkfs.ext4", "-q", "-F", "-E", "nodiscard", device)
    return fs_type


def is_mount_point(path: Path) -> bool:
    """`path` is a mount point, a dead one too: the FUSE mount of an nbdfuse that died (the
    array went away) answers every look with ENOTCONN, which os.path.ismount takes for "not
    a mount"; left there, it makes every later stage of the volume on this node fail."""
    if os.path.ismount(path):
        return True
    try:
        path.lstat()
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def mount(device: str, target: Path, fs_type: str, flags: list[str], read_only: bool) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if is_mount_point(target):
        return
    options = list(flags) + (["ro"] if read_only else [])
    run("mount", "-t", fs_type, *(["-o", ",".join(options)] if options else []), device, str(target))


def bind(source: str, target: Path, read_only: bool, is_file: bool) -> None:
    """Bind `source` (a directory or a device) onto `target`, read-only if asked."""
    if is_file:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
    if is_mount_point(target):
        return
    run("mount", "--bind", source, str(target))
    if read_only:
        run("mount", "-o", "remount,bind,ro", str(target))


def unmount(target: Path) -> None:
    if is_mount_point(target):
        run("umount", str(target))


def device_size(device: str) -> int:
    return int(run("blockdev", "--getsize64", device))


def grow_file_system(device: str, mount_point: Path | None, fs_type: str) -> None:
    if fs_type == "xfs":
        if mount_point is None:
            raise MountError("xfs grows only while mounted")
        run("xfs_growfs", str(mount_point))
    else:
        run("resize2fs", device)
