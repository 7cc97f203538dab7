"""The one typed configuration of a CSI plugin process (parsed in `ccopy csi`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ccopy_common import DEFAULT_DRIVER_NAME
from ccopy_common.rpc import TlsFiles


@dataclass(frozen=True)
class CsiConfig:
    endpoint: str  # unix:///path/csi.sock (or host:port for tests)
    node_id: str
    array: str  # management API HOST:PORT
    driver_name: str = DEFAULT_DRIVER_NAME
    mode: str = "all"  # controller | node | all
    site: str = "main"  # topology segment value of this array's site
    state_dir: Path = Path("/var/lib/ccopy-csi")
    max_volumes_per_node: int = 0
    # NBD address nodes should dial; empty: the array's own answer.
    nbd_address: str = ""
    tls: TlsFiles = field(default_factory=TlsFiles)
    # The node's identity on the NBD data path: its client certificate (common name = node_id)
    # and key, and the CA of the array's NBD certificate. Needed where the array requires them.
    nbd_tls: TlsFiles = field(default_factory=TlsFiles)
    # The group whose members may connect to a unix endpoint (node-driver-registrar and
    # livenessprobe run as another user than a root node plugin); None: the owner only.
    socket_group: int | None = None
    # The node's volume keeper (unix endpoint), which holds the nbdfuse connections where the
    # plugin's restarts do not reach them (a container); empty: the plugin holds them itself.
    keeper: str = ""

    @property
    def controller(self) -> bool:
        return self.mode in ("controller", "all")

    @property
    def node(self) -> bool:
        return self.mode in ("node", "all")
