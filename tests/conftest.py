"""Fixtures that start real things: array processes on free ports, temp pools."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from hypothesis import HealthCheck, settings

from ccopy.launch import ArrayProcessHandle
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.pki import CertificateAuthority
from csi_driver.attach import disk_sequence

if TYPE_CHECKING:
    from tests.kubelet.image import Images

# Property tests check what the code does, not how fast the machine is: a
# deadline or a "too slow" health check fails them on a loaded CI machine.
settings.register_profile(
    "any-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("any-machine")


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"machine lacks {', '.join(missing)} (make test installs them)")


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for mount and loop devices (make test runs pytest as root)")


def bound_loops() -> dict[str, str]:
    """Every bound loop device and the name the kernel gives its file, read from this mount
    namespace (a file bound through another one is named as that one sees it)."""
    names = {}
    for backing in sorted(Path("/sys/block").glob("loop*/loop/backing_file")):
        with contextlib.suppress(OSError):  # detached meanwhile
            names[f"/dev/{backing.parent.parent.name}"] = backing.read_text().strip()
    return names


# The newest binding before this session: loop devices bound earlier are not this session's.
BEFORE_SESSION = max((disk_sequence(f"/dev/{block.name}") for block in Path("/sys/block").iterdir()), default=0)


def orphan_loops() -> list[str]:
    """Loop devices bound during this session whose file cannot be reached from here: bound
    through a mount namespace that is gone (a container's), or to a file deleted since. Only
    what bound them, knowing its binding, can tell them its own; where no container runs, each
    is a leak. (On a kernel without disk sequence numbers no loop device counts.)"""
    return [
        f"loop {device} ({name}): its file is out of reach" for device, name in bound_loops().items()
        if disk_sequence(device) > BEFORE_SESSION and not os.path.exists(name.removesuffix(" (deleted)"))
    ]  # fmt: skip


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    """A CA with a server certificate (127.0.0.1) and a client one, and a rogue CA with its own client."""
    require_tools("openssl")
    d = tmp_path_factory.mktemp("pki")
    ca, rogue_ca = CertificateAuthority(d, "ca"), CertificateAuthority(d, "rogue-ca")
    ca.issue("server", san="IP:127.0.0.1,DNS:localhost")
    ca.issue("client")
    rogue_ca.issue("rogue")
    return d


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Images:
    """Every image a real node runs: ours built from the Dockerfile, and the sidecars' (about a
    minute, once a session)."""
    from tests.kubelet import image

    require_root()
    if why := image.tools_missing():
        pytest.skip(why)
    return image.build_all(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session", autouse=True)
def nothing_left_attached():
    """After the whole suite: no mount, loop device or FUSE mount of a test remains."""
    yield

    mounts = [line for line in Path("/proc/mounts").read_text().splitlines() if "pytest-of-" in line]
    # Ours: under pytest's temp folders, or (the kernel route) on /dev/nbd*; not other users' devices.
    loops = [f"loop {device} ({name})" for device, name in bound_loops().items()
             if "pytest-of-" in name or name.startswith("/dev/nbd")]  # fmt: skip
    stale = mounts + loops + orphan_loops()
    assert not stale, f"left mounted or attached after the suite: {stale}"


@pytest.fixture
def array_proc(tmp_path: Path) -> Iterator[ArrayProcessHandle]:
    handle = ArrayProcessHandle(pool=tmp_path / "pool", serial=20001, log_path=tmp_path / "array.log")
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture
def stub(array_proc: ArrayProcessHandle) -> Iterator[pb_grpc.ArrayStub]:
    with grpc.insecure_channel(array_proc.api_address) as channel:
        yield pb_grpc.ArrayStub(channel)


@pytest.fixture
def tls_array(tmp_path: Path):
    """An array requiring TLS and client certificates on NBD (tests/integration/tls_array.py)."""
    from tests.integration import tls_array as tls

    require_tools("openssl", "nbdinfo", "nbdcopy", "qemu-img", "qemu-io")
    with tls.tls_array(tmp_path) as made:
        yield made


@pytest.fixture
def make_ldev(stub: pb_grpc.ArrayStub):
    """An LDEV every host may open by name: the tests using it are about the data path, not
    host access (tests/integration/test_host_access.py is)."""

    def make(name: str, size: int = 64 << 20, read_only: bool = False, **labels: str) -> pb.Ldev:
        request = pb.CreateLdevRequest(name=name, size_bytes=size, read_only=read_only, labels=labels, open_to_all=True)
        return stub.CreateLdev(request)

    return make


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.02) -> bool:
    """Poll until `predicate()` is true (for effects that cross a socket close)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
