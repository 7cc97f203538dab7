"""The replication sidecar: the csi-addons Identity, replication and volume group
services over one array (`ccopy replication`); later the namespace operator and the
backup-site registration."""
