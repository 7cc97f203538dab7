"""Two sites on real nodes, for the flows of tests/e2e and the tests of tests/kubelet: two
clusters on one machine, each with its node and its array, the arrays linked.

Each package starts its pair and stops it when its tests are done: a node makes / a shared
mount and runs a kubelet, which the tests of other packages should not see.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.control_plane import K8S_BIN, missing_binaries
from tests.e2e.site import Sites, kubernetes_missing
from tests.kubelet import image
from tests.kubelet.image import Images
from tests.kubelet.node import NODE_BINARIES, missing_kit
from tests.kubelet.site import NodeSite


def real_nodes_missing() -> str:
    """Why real nodes cannot be had here, or ''."""
    if os.geteuid() != 0:
        return "a node needs root (make test runs pytest as root)"
    if why := kubernetes_missing():
        return why
    if missing := missing_binaries(NODE_BINARIES):
        return f"no {', '.join(missing)} under {K8S_BIN}: run ../shared/k8s/install.sh (make test does)"
    if why := missing_kit():
        return why
    return image.tools_missing()


@contextmanager
def node_sites(images: Images, folder: Path) -> Iterator[Sites]:
    """Started, then stopped: nothing may be left mounted, attached or running after."""
    main = NodeSite("main", folder / "main", images, serial=41001, network=61)
    backup = NodeSite("backup", folder / "backup", images, serial=42002, network=62)
    try:
        main.start_plane()
        backup.start_plane()
        yield Sites(main.start(remote=backup), backup.start(remote=main))
    finally:
        backup.stop()  # the node that made / shared last gives it back first (node-down.sh)
        main.stop()
        left = main.leftovers() + backup.leftovers()
        assert not left, f"left after the sites stopped: {left}"
