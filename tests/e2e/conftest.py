"""Two sites, each a real control plane with the storage sidecars, their arrays linked.

Started once for the e2e tests (about 25 s) and stopped by PID at the end. Where the
Kubernetes binaries cannot be had (a clone without ../shared/k8s), the tests skip and
say how to get them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ccopy.launch import free_ports
from tests.conftest import require_root, require_tools
from tests.e2e.control_plane import CONTROL_PLANE_BINARIES, K8S_BIN, K8S_CRDS, missing_binaries
from tests.e2e.site import SIDECAR_BINARIES, Site


@dataclass
class Sites:
    main: Site
    backup: Site


def require_kubernetes() -> None:
    missing = missing_binaries(CONTROL_PLANE_BINARIES + SIDECAR_BINARIES)
    if missing or not any(K8S_CRDS.glob("*.yaml")):
        pytest.skip(
            f"Kubernetes binaries or CRDs not found ({', '.join(missing) or 'CRDs'} under {K8S_BIN}, {K8S_CRDS}): "
            "run ../shared/k8s/install.sh (make test does) or set CCOPY_K8S_BIN and CCOPY_K8S_CRDS"
        )


@pytest.fixture(scope="session")
def sites(tmp_path_factory) -> Iterator[Sites]:
    require_root()
    require_tools("nbdfuse", "losetup", "mkfs.ext4", "fusermount3", "openssl")
    require_kubernetes()
    main_api, backup_api = (f"127.0.0.1:{port}" for port in free_ports(2))
    folder = tmp_path_factory.mktemp("e2e")
    main = Site("main", folder / "main", serial=31001, array_api=main_api, remote=backup_api)
    backup = Site("backup", folder / "backup", serial=32002, array_api=backup_api, remote=main_api)
    try:
        yield Sites(main.start(), backup.start())
    finally:
        backup.stop()
        main.stop()
        left = main.processes.alive() + backup.processes.alive()
        assert not left, f"still running after the sites stopped: {left}"
