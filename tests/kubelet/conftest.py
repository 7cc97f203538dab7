"""A site on a real node: the image built from the Dockerfile (about a minute), a control
plane, a node that runs the chart's Pods from that image, and the site's array.

Both live as long as this package's tests: the node makes / a shared mount and runs a
kubelet, which no other test should see. Where the pieces cannot be had (no podman or
mmdebstrap, no shared Kubernetes kit, not root), the tests skip and say which is missing;
`make test` installs them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import require_root
from tests.e2e.conftest import require_kubernetes
from tests.e2e.control_plane import K8S_BIN, missing_binaries
from tests.kubelet import image
from tests.kubelet.image import Images
from tests.kubelet.node import NODE_BINARIES, missing_kit
from tests.kubelet.site import NodeSite


def require_real_node() -> None:
    require_root()
    require_kubernetes()
    missing = missing_binaries(NODE_BINARIES)
    if missing:
        pytest.skip(f"no {', '.join(missing)} under {K8S_BIN}: run ../shared/k8s/install.sh (make test does)")
    if why := missing_kit():
        pytest.skip(why)


@pytest.fixture(scope="package")
def images(tmp_path_factory) -> Images:
    require_root()
    if missing := image.missing_tools():
        pytest.skip(f"cannot build images without {', '.join(missing)}: apt-get install {' '.join(missing)}"
                    " (make test does)")  # fmt: skip
    return image.build_all(tmp_path_factory.mktemp("images"))


@dataclass
class NodeSites:
    main: NodeSite
    backup: NodeSite


@pytest.fixture(scope="package")
def node_sites(images: Images, tmp_path_factory) -> Iterator[NodeSites]:
    """Two clusters on one machine, each with its node and its array, the arrays linked."""
    require_real_node()
    folder = tmp_path_factory.mktemp("kubelet")
    main = NodeSite("main", folder / "main", images, serial=41001, network=61)
    backup = NodeSite("backup", folder / "backup", images, serial=42002, network=62)
    try:
        main.start_plane()
        backup.start_plane()
        yield NodeSites(main.start(remote=backup), backup.start(remote=main))
    finally:
        backup.stop()  # the node that made / shared last gives it back first (node-down.sh)
        main.stop()
        left = main.leftovers() + backup.leftovers()
        assert not left, f"left after the sites stopped: {left}"


@pytest.fixture(scope="package")
def node_site(node_sites: NodeSites) -> NodeSite:
    return node_sites.main


def kubectl(site: NodeSite, *argv: str) -> str:
    done = subprocess.run([str(K8S_BIN / "kubectl"), "--kubeconfig", str(site.plane.admin), *argv],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, f"kubectl {' '.join(argv)}: {done.stderr}"
    return done.stdout
