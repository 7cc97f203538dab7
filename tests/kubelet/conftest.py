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


@pytest.fixture(scope="package")
def node_site(images: Images, tmp_path_factory) -> Iterator[NodeSite]:
    require_real_node()
    site = NodeSite("main", tmp_path_factory.mktemp("kubelet") / "main", images, serial=41001)
    try:
        yield site.start()
    finally:
        site.stop()
        left = site.leftovers()
        assert not left, f"left after the site stopped: {left}"


def kubectl(site: NodeSite, *argv: str) -> str:
    done = subprocess.run([str(K8S_BIN / "kubectl"), "--kubeconfig", str(site.plane.admin), *argv],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, f"kubectl {' '.join(argv)}: {done.stderr}"
    return done.stdout
