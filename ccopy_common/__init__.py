"""What every Consistent Copy process shares, the bottom layer: the version, the driver's
name, and (in its modules) gRPC plumbing, errors, ids, locks, logging and the array client."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("consistent-copy")
except metadata.PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0.0.0+unknown"

# The CSI driver's name: the CSI Identity, the csi-addons Identity, the
# StorageClass provisioner, PV.spec.csi.driver and the replication classes'
# provisioner must all say exactly this.
DEFAULT_DRIVER_NAME = "ldev.csi.consistentcopy.io"

# On every S-VOL an array makes: `<main array serial>:<P-VOL LDEV number, hex>`
# (proto/array.proto, PrepareSecondary). It stays when the pair ends, so the kept
# copy still says where it came from.
SVOL_OF_LABEL = "ccopy.svol-of"
