"""The one typed configuration of a replication sidecar process (parsed in `ccopy replication`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ccopy_common import DEFAULT_DRIVER_NAME
from ccopy_common.rpc import TlsFiles


@dataclass(frozen=True)
class ReplicationConfig:
    endpoint: str  # unix:///path/csi-addons.sock (or host:port for tests)
    array: str  # management API HOST:PORT of this site's array
    driver_name: str = DEFAULT_DRIVER_NAME
    tls: TlsFiles = field(default_factory=TlsFiles)
    metrics: str = ""  # HOST:PORT of Prometheus /metrics; empty: none
