"""A site on a real node: the image built from the Dockerfile (about a minute), a control
plane, a node that runs the chart's Pods from that image, and the site's array.

The sites live as long as this package's tests (tests/kubelet/sites.py); the image is built
once a session (tests/conftest.py). Where the pieces cannot be had (no podman or
mmdebstrap, no shared Kubernetes kit, not root), the tests skip and say which is missing;
`make test` installs them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.control_plane import K8S_BIN
from tests.e2e.site import Sites
from tests.kubelet.image import Images
from tests.kubelet.site import NodeSite
from tests.kubelet.sites import node_sites as node_sites_running
from tests.kubelet.sites import real_nodes_missing


@pytest.fixture(scope="package")
def node_sites(images: Images, tmp_path_factory) -> Iterator[Sites]:
    if why := real_nodes_missing():
        pytest.skip(why)
    with node_sites_running(images, tmp_path_factory.mktemp("kubelet")) as both:
        yield both


@pytest.fixture(scope="package")
def node_site(node_sites: Sites) -> NodeSite:
    return node_sites.main  # type: ignore[return-value]  # NodeSites start NodeSite


def kubectl(site: NodeSite, *argv: str) -> str:
    done = subprocess.run([str(K8S_BIN / "kubectl"), "--kubeconfig", str(site.plane.admin), *argv],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, f"kubectl {' '.join(argv)}: {done.stderr}"
    return done.stdout
