"""Generated from proto/csiaddons/: the csi-addons Identity, replication and volumegroup services."""
