"""The kernel path: NBD export -> nbdfuse -> loop device -> ext4/xfs -> files."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from ccopy_api import array_pb2 as pb
from csi_driver.attach import attach, detach, loop_backing_file, nbd_uri
from tests.conftest import require_root, require_tools, wait_for

MIB = 1 << 20


def sums(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir()) if p.is_file()}


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_file_system_written_through_nbd_remounts_intact(array_proc, make_ldev, stub, tmp_path: Path, fs: str):
    require_root()
    require_tools("nbdfuse", "losetup", f"mkfs.{fs}", "fusermount3")
    ldev = make_ldev(f"fs-{fs}", 512 * MIB)
    uri = nbd_uri(array_proc.nbd_address, ldev.name)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    attachment = attach(uri, tmp_path / "fuse")
    try:
        assert attachment.device and attachment.device.startswith("/dev/loop")
        subprocess.run([f"mkfs.{fs}", "-q", attachment.device], check=True, capture_output=True)
        subprocess.run(["mount", attachment.device, str(mnt)], check=True)
        for i in range(5):
            (mnt / f"f{i}").write_bytes(os.urandom((i + 1) * MIB))
        (mnt / "small.txt").write_text("sale 1: 3 x widget\n")
        written = sums(mnt)
        subprocess.run(["umount", str(mnt)], check=True)
        detach(attachment)
        assert wait_for(lambda: stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).open_sessions == 0)

        attachment = attach(uri, tmp_path / "fuse")
        assert attachment.device
        fsck = ["e2fsck", "-f", "-n"] if fs == "ext4" else ["xfs_repair", "-n"]
        subprocess.run([*fsck, attachment.device], check=True, capture_output=True)
        subprocess.run(["mount", attachment.device, str(mnt)], check=True)
        assert sums(mnt) == written
        subprocess.run(["umount", str(mnt)], check=True)
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["umount", str(mnt)], check=False)
        detach(attachment)
    assert not os.path.ismount(tmp_path / "fuse")
    losetup = subprocess.run(["losetup", "-j", str(tmp_path / "fuse" / "nbd")], capture_output=True, text=True)
    assert losetup.stdout.strip() == ""  # no loop device left behind


def test_failed_attach_leaves_nothing_behind(array_proc, tmp_path: Path):
    require_root()
    require_tools("nbdfuse")
    from csi_driver.attach import AttachError
    from csi_driver.fuse_connections import LocalConnections

    with pytest.raises(AttachError):
        uri = nbd_uri(array_proc.nbd_address, "no-such-ldev")
        attach(uri, tmp_path / "fuse", connector=LocalConnections(timeout=10))
    assert not os.path.ismount(tmp_path / "fuse")


def test_kernel_nbd_route_when_the_kernel_has_nbd(array_proc, make_ldev, tmp_path: Path):
    """The route nodes with the nbd module take: nbd-client -> /dev/nbdN -> loop."""
    require_root()
    from csi_driver.attach import kernel_nbd_available

    if not kernel_nbd_available():
        pytest.skip("the kernel has no nbd module here (/dev/nbd0 missing) or nbd-client is not installed")
    make_ldev("kernel-route", 64 * MIB)
    attachment = attach(nbd_uri(array_proc.nbd_address, "kernel-route"), tmp_path / "fuse", size_limit=32 * MIB)
    try:
        assert attachment.nbd_device and attachment.device
        with open(attachment.device, "r+b") as device:
            device.write(b"k" * 4096)
            device.flush()
            os.fsync(device.fileno())
    finally:
        detach(attachment)


@pytest.mark.parametrize("known_by", ["binding", "path"])
def test_detach_never_touches_a_loop_device_that_is_no_longer_ours(known_by, array_proc, make_ldev, tmp_path):
    """A loop number saved at attach time may be freed and handed to someone else's file:
    detach leaves that device alone (and still cleans up its own FUSE mount), whether it knows
    its loop device by the binding recorded at attach or, without one, by its file's path."""
    require_root()
    require_tools("nbdfuse", "losetup", "fusermount3")
    make_ldev("ours", 16 << 20)
    attachment = attach(nbd_uri(array_proc.nbd_address, "ours"), tmp_path / "fuse")
    saved = attachment.device
    if known_by == "binding" and not attachment.binding:
        pytest.skip("this kernel numbers no bindings of a loop device (diskseq: Linux 5.15)")
    subprocess.run(["losetup", "-d", saved], check=True)  # freed behind the plugin's back ...
    stranger = tmp_path / "someone-else.img"
    stranger.write_bytes(bytes(1 << 20))
    theirs = subprocess.run(["losetup", "--find", "--show", str(stranger)], check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    try:
        attachment.device = theirs  # ... and the number now names another file's device
        if known_by == "path":
            attachment.binding = ""
        detach(attachment)
        assert loop_backing_file(theirs) == str(stranger)  # still attached: not ours to detach
        assert not os.path.ismount(tmp_path / "fuse")
    finally:
        subprocess.run(["losetup", "-d", theirs], check=False)
