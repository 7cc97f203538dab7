"""The CSI controller's pure rules: ids, capabilities, sizes, parameters."""

import pytest

from ccopy_api import csi_pb2 as csi
from ccopy_common.errors import InvalidArgument, OutOfRange
from csi_driver.volumes import (
    MIB,
    capability_labels,
    capability_problem,
    file_system_floor,
    ldev_name,
    parse_mutable,
    parse_parameters,
    topology_allows,
    volume_size,
)

Mode = csi.VolumeCapability.AccessMode


def cap(access="mount", mode=Mode.SINGLE_NODE_WRITER, fs=""):
    capability = csi.VolumeCapability(access_mode=Mode(mode=mode))
    if access == "mount":
        capability.mount.fs_type = fs
    elif access == "block":
        capability.block.SetInParent()
    return capability


@pytest.mark.parametrize(
    ("capability", "ok"),
    [
        (cap(), True),
        (cap("block"), True),
        (cap(fs="xfs", mode=Mode.SINGLE_NODE_MULTI_WRITER), True),
        (cap(mode=Mode.MULTI_NODE_READER_ONLY), True),
        (cap("block", Mode.MULTI_NODE_MULTI_WRITER), True),
        (cap("mount", Mode.MULTI_NODE_MULTI_WRITER), False),
        (cap(mode=Mode.MULTI_NODE_SINGLE_WRITER), False),
        (cap(mode=Mode.UNKNOWN), False),
        (cap(None), False),
        (cap(fs="ntfs"), False),
    ],
)
def test_capabilities(capability, ok):
    assert (capability_problem(capability) is None) == ok


@pytest.mark.parametrize(
    ("required", "limit", "floor", "size"),
    [
        (0, 0, 0, 1 << 30),
        (1, 0, 0, MIB),
        (MIB + 1, 0, 0, 2 * MIB),
        (0, 10 * MIB, 0, 10 * MIB),
        (5 * MIB, 5 * MIB, 0, 5 * MIB),
        (0, 0, 3 * MIB, 3 * MIB),
        (1000, 2048, 0, 1024),  # no whole MiB fits: the smallest 512-multiple that does
    ],
)
def test_sizes(required, limit, floor, size):
    assert volume_size(csi.CapacityRange(required_bytes=required, limit_bytes=limit), floor) == size


def test_size_errors():
    with pytest.raises(InvalidArgument):
        volume_size(csi.CapacityRange(required_bytes=-1))
    with pytest.raises(InvalidArgument):
        volume_size(csi.CapacityRange(required_bytes=10, limit_bytes=5))
    with pytest.raises(OutOfRange):
        volume_size(csi.CapacityRange(limit_bytes=MIB), floor=2 * MIB)


def test_an_xfs_volume_is_given_the_least_size_mkfs_makes():
    assert file_system_floor([cap(fs="xfs")]) == 300 * MIB
    assert file_system_floor([cap(fs="ext4"), cap("block")]) == file_system_floor([cap(fs="")]) == 0
    assert volume_size(csi.CapacityRange(required_bytes=100 * MIB), file_system_floor([cap(fs="xfs")])) == 300 * MIB
    with pytest.raises(OutOfRange, match="the file system needs"):
        volume_size(csi.CapacityRange(required_bytes=MIB, limit_bytes=200 * MIB), 300 * MIB, "the file system")


def test_mutable_parameters():
    assert parse_mutable({"maxIOPS": "500"}).max_iops == 500
    for bad in ({"maxIOPS": "-1"}, {"maxMBps": "fast"}, {"colour": "red"}):
        with pytest.raises(InvalidArgument):
            parse_mutable(bad)


def test_parameters_only_know_the_cos_keys():
    labels = parse_parameters({"csi.storage.k8s.io/pvc/name": "sales"})
    assert labels == {"csi.consistentcopy.io/k8s-pvc/name": "sales"}
    with pytest.raises(InvalidArgument):
        parse_parameters({"replicas": "3"})


def test_ldev_names_and_topology():
    assert ldev_name("pvc-1234") == "pvc-1234"
    assert ldev_name("sanity/with slash").startswith("csi-")
    assert ldev_name("a b") != ldev_name("a  b")
    key = "topology.ldev.csi.consistentcopy.io/site"
    requirement = csi.TopologyRequirement(requisite=[csi.Topology(segments={key: "main"})])
    assert topology_allows(requirement, "main") and not topology_allows(requirement, "backup")
    assert topology_allows(None, "main")


def test_capabilities_become_the_labels_a_backup_pv_is_made_from():
    block = csi.VolumeCapability(block=csi.VolumeCapability.BlockVolume())
    block.access_mode.mode = Mode.MULTI_NODE_MULTI_WRITER
    reader = csi.VolumeCapability(block=csi.VolumeCapability.BlockVolume())
    reader.access_mode.mode = Mode.MULTI_NODE_READER_ONLY
    assert capability_labels([block, reader]) == {
        "csi.consistentcopy.io/volume-mode": "Block",
        "csi.consistentcopy.io/access-modes": "ReadOnlyMany,ReadWriteMany",
    }
    xfs = csi.VolumeCapability(mount=csi.VolumeCapability.MountVolume(fs_type="xfs"))
    xfs.access_mode.mode = Mode.SINGLE_NODE_SINGLE_WRITER
    assert capability_labels([xfs]) == {
        "csi.consistentcopy.io/volume-mode": "Filesystem",
        "csi.consistentcopy.io/access-modes": "ReadWriteOncePod",
        "csi.consistentcopy.io/fs-type": "xfs",
    }
