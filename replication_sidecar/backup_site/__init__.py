"""The backup-site registrar: for every S-VOL its own array holds, the PV, the PVC of the
main site's name and a secondary VolumeGroupReplication, so that failover and failback
are standard Kubernetes edits. It needs no credentials for the main site.

`model` holds the plain values, `reconcile` the pure decisions.
"""
